use std::path::PathBuf;

use anyhow::Context;
use effnetv2::{Config, MbConvConfig};
use rtdetr::data::{write_dataset, YoloDataset};
use rtdetr::train::{TrainConfig, TrainSetup, Trainer};
use rtdetr::ModelConfig;
use rtdetr_decoder::DecoderConfig;
use rtdetr_neck::NeckConfig;

use crate::device;

/// Arguments of `rtdetr demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder for the synthetic dataset, the run and the detections.
    #[arg(long, default_value = "runs/demo")]
    dir: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 40, value_parser = crate::flags::positive)]
    epochs: usize,
    /// Image size.
    #[arg(long, default_value_t = 128, value_parser = crate::flags::imgsz)]
    imgsz: usize,
    /// Training images (validation: a quarter as many).
    #[arg(long, default_value_t = 96, value_parser = crate::flags::positive)]
    images: usize,
    /// Training seed: weight initialisation, augmentation and batch order (the dataset is the
    /// same for every seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.002)]
    lr0: f64,
    /// Mosaic is off for the last this many epochs.
    #[arg(long, default_value_t = 10)]
    close_mosaic: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// A detector small enough to train in minutes on a CPU: a five-stage EfficientNetV2-style
/// backbone 16→96 channels, a 64-wide neck and a 3-layer decoder with 30 queries.
pub fn small_config(nc: usize) -> ModelConfig {
    let row = MbConvConfig::row;
    let backbone = Config {
        stages: vec![
            row((1, 3, 1, 16, 16, 1, false, true)),
            row((4, 3, 2, 16, 32, 1, false, true)),
            row((4, 3, 2, 32, 48, 2, true, false)),
            row((4, 3, 2, 48, 64, 2, true, false)),
            row((4, 3, 2, 64, 96, 1, true, false)),
        ],
        stochastic_depth: 0.0,
    };
    let w = backbone.widths();
    ModelConfig {
        neck: NeckConfig {
            in_channels: [w[1], w[2], w[3]],
            hidden: 64,
            ffn: 128,
            heads: 4,
            blocks: 1,
        },
        decoder: DecoderConfig {
            nc,
            in_channels: vec![64; 3],
            hidden: 64,
            queries: 30,
            points: 4,
            heads: 4,
            layers: 3,
            ffn: 128,
            denoising: Default::default(),
        },
        backbone,
    }
}

/// The whole job offline: a synthetic dataset, a short training run of a small detector,
/// validation, and detection on the held-out images with annotated copies.
pub fn run(args: Args) -> anyhow::Result<()> {
    let dev = device::parse(&args.device)?;
    let data = args.dir.join("data");
    write_dataset(
        &data,
        args.images,
        (args.images / 4).max(2),
        args.imgsz as u32,
        0,
    )
    .with_context(|| format!("writing the synthetic dataset to {}", data.display()))?;
    let yaml = data.join("data.yaml");
    let train = YoloDataset::from_yaml(&yaml, "train")?;
    let val = YoloDataset::from_yaml(&yaml, "val")?;
    eprintln!(
        "synthetic dataset: {} train, {} val images in {}",
        train.samples.len(),
        val.samples.len(),
        data.display()
    );
    let cfg = TrainConfig {
        epochs: args.epochs,
        // Batches of 4, one optimizer step each: twice the steps of batch 8 for the same images,
        // which a DETR trained from scratch needs more than larger batches (best val mAP50
        // 0.39–0.64 over seeds and builds at 40 epochs against 0.28 with batch 8; BENCHMARKS.md).
        // Accumulating to 64 would leave a few dozen steps in the run.
        batch: 4,
        imgsz: args.imgsz,
        lr0: Some(args.lr0),
        close_mosaic: args.close_mosaic,
        nbs: 4,
        warmup_epochs: 1.0,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let save_dir = args.dir.join("train");
    let val_images: Vec<String> = val
        .samples
        .iter()
        .map(|s| s.image.display().to_string())
        .collect();
    let mut trainer = Trainer::new(TrainSetup {
        model: small_config(train.names.len()),
        train: cfg,
        names: train.names,
        train_samples: train.samples,
        val_samples: val.samples,
        weights: None,
        save_dir: save_dir.clone(),
        device: dev,
    })?;
    let start = std::time::Instant::now();
    for epoch in 0..args.epochs {
        let s = trainer.run_epoch(|_, _, _| {})?;
        eprintln!(
            "epoch {}/{}: giou {:.3} cls {:.3} l1 {:.3} | val mAP50-95 {:.3} mAP50 {:.3} ({:.0} s)",
            epoch + 1,
            args.epochs,
            s.giou_loss,
            s.cls_loss,
            s.l1_loss,
            s.map50_95,
            s.map50,
            start.elapsed().as_secs_f64()
        );
    }
    let weights = save_dir.join("best.safetensors");
    eprintln!("trained in {:.0} s", start.elapsed().as_secs_f64());
    crate::train::print_summary(&trainer, &args.device)?;
    eprintln!("\ndetecting on the validation images");
    let mut detect_args = vec!["detect".to_string()];
    detect_args.extend(val_images);
    detect_args.extend([
        "--weights".into(),
        weights.display().to_string(),
        "--imgsz".into(),
        args.imgsz.to_string(),
        "--conf".into(),
        "0.25".into(),
        "--device".into(),
        args.device.clone(),
        "--save-dir".into(),
        args.dir.join("detect").display().to_string(),
        "--json".into(),
        args.dir
            .join("detect")
            .join("detections.json")
            .display()
            .to_string(),
    ]);
    crate::run_args(detect_args)?;
    eprintln!(
        "\ndemo done: annotated images in {}, training curves in {}",
        args.dir.join("detect").display(),
        save_dir.join("results.png").display()
    );
    Ok(())
}
