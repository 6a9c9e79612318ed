//! Convergence: a small detector trained from scratch on a small synthetic set reaches mAP50 > 0.5
//! on its own training images within a CI budget (release, 2 CPU cores, about 45 s). Environment:
//! `RTDETR_CONVERGE_SEED` changes the seed (dataset and run) to check that it is not luck,
//! `RTDETR_CONVERGE_EPOCHS` the length of the run (100),
//! `RTDETR_CONVERGE_TRACE` prints the losses and the training-set mAP50 every 5 epochs.

use candle::Device;
use effnetv2::{Config, MbConvConfig};
use rtdetr::data::{write_dataset, YoloDataset};
use rtdetr::train::{TrainConfig, TrainSetup, Trainer};
use rtdetr::ModelConfig;
use rtdetr::{evaluate, Detector, DetectorOptions};
use rtdetr_decoder::DecoderConfig;
use rtdetr_neck::NeckConfig;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The demo's small detector, narrower: a five-stage backbone 16→64 channels, a 48-wide neck
/// and a 3-layer decoder with 20 queries.
fn small(nc: usize) -> ModelConfig {
    let row = MbConvConfig::row;
    let backbone = Config {
        stages: vec![
            row((1, 3, 1, 16, 16, 1, false, true)),
            row((4, 3, 2, 16, 24, 1, false, true)),
            row((4, 3, 2, 24, 32, 1, true, false)),
            row((4, 3, 2, 32, 48, 1, true, false)),
            row((4, 3, 2, 48, 64, 1, true, false)),
        ],
        stochastic_depth: 0.0,
    };
    let w = backbone.widths();
    ModelConfig {
        neck: NeckConfig {
            in_channels: [w[1], w[2], w[3]],
            hidden: 48,
            ffn: 96,
            heads: 4,
            blocks: 1,
        },
        decoder: DecoderConfig {
            nc,
            in_channels: vec![48; 3],
            hidden: 48,
            queries: 20,
            points: 4,
            heads: 4,
            layers: 3,
            ffn: 96,
            denoising: Default::default(),
        },
        backbone,
    }
}

#[test]
fn small_model_fits_its_training_set() {
    // As the CLI does: candle's element-wise pool parks early instead of spinning (3× faster
    // training on 2 cores). Set before any candle work, and this file has no other test.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    let seed = env("RTDETR_CONVERGE_SEED", 0) as u64;
    // 8 images (one a background) of 64², batch 2 with one optimizer step per batch, 100 epochs:
    // 400 steps. Measured: training-set mAP50 0.870, 1.000, 0.988, 0.883 (seeds 0-3), ~43 s each.
    // At 60 epochs the result swung between 0.47 and 0.91 with the seed and with float rounding
    // (mAP still oscillates while the learning rate is high), too close to the threshold.
    let (epochs, images, imgsz, batch) = (env("RTDETR_CONVERGE_EPOCHS", 100), 8, 64, 2);
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), images, 1, imgsz as u32, seed).unwrap();
    let yaml = dir.path().join("data.yaml");
    let train = YoloDataset::from_yaml(&yaml, "train").unwrap();
    let val = YoloDataset::from_yaml(&yaml, "val").unwrap();
    let cfg = TrainConfig {
        epochs,
        batch,
        imgsz,
        lr0: Some(0.004),
        // one optimizer step per batch
        nbs: batch,
        warmup_epochs: 1.0,
        seed,
        augment: None,
        ..TrainConfig::default()
    };
    let names = train.names.clone();
    let samples = train.samples.clone();
    let mut trainer = Trainer::new(TrainSetup {
        model: small(names.len()),
        train: cfg,
        names: names.clone(),
        train_samples: train.samples,
        val_samples: val.samples,
        weights: None,
        save_dir: dir.path().join("run"),
        device: Device::Cpu,
    })
    .unwrap();
    let start = std::time::Instant::now();
    for epoch in 0..epochs {
        let s = trainer.run_epoch(|_, _, _| {}).unwrap();
        if std::env::var("RTDETR_CONVERGE_TRACE").is_ok() && (epoch + 1) % 5 == 0 {
            let m = evaluate(&ema_detector(&trainer, &names, imgsz), &samples, 8).unwrap();
            eprintln!(
                "epoch {}: giou {:.3} cls {:.3} l1 {:.3}, train mAP50 {:.3} ({:.0} s)",
                epoch + 1,
                s.giou_loss,
                s.cls_loss,
                s.l1_loss,
                m.map50(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    let summary = evaluate(&ema_detector(&trainer, &names, imgsz), &samples, 8).unwrap();
    let map50 = summary.map50();
    eprintln!(
        "seed {seed}: training-set mAP50 {map50:.3}, mAP50-95 {:.3} after {epochs} epochs in {:.0} s",
        summary.map50_95(),
        start.elapsed().as_secs_f64()
    );
    assert!(map50 > 0.5, "training-set mAP50 {map50:.3} ≤ 0.5");
}

/// The EMA weights as a validation detector (conf 0.001) at `imgsz`.
fn ema_detector(trainer: &Trainer, names: &[String], imgsz: usize) -> Detector {
    let options = DetectorOptions {
        imgsz: Some(imgsz),
        ..DetectorOptions::validation()
    };
    Detector::from_model(trainer.ema_model().unwrap(), names.to_vec(), options).unwrap()
}
