//! The training loop end to end on a synthetic set with the reduced detector: checkpoints and
//! results are written, and a run stopped after an epoch and resumed ends with exactly the weights
//! of an uninterrupted run. (A run killed mid-epoch is tested inside the crate,
//! `src/train/kill_tests.rs`, where the kill hook is visible.)

use std::path::Path;

use candle::Device;
use rtdetr::data::{write_dataset, YoloDataset};
use rtdetr::train::{TrainConfig, TrainSetup, Trainer};
use rtdetr::ModelConfig;

fn tiny_config() -> ModelConfig {
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let meta = rtdetr::read_metadata(&path).unwrap();
    let mut cfg: ModelConfig = serde_json::from_str(&meta[rtdetr::CONFIG_KEY]).unwrap();
    cfg.decoder.nc = 2;
    cfg.decoder.queries = 10;
    cfg
}

fn trainer(root: &Path, save: &Path, epochs: usize) -> Trainer {
    let train = YoloDataset::from_yaml(&root.join("data.yaml"), "train").unwrap();
    let val = YoloDataset::from_yaml(&root.join("data.yaml"), "val").unwrap();
    let cfg = TrainConfig {
        epochs,
        batch: 4,
        imgsz: 64,
        warmup_epochs: 1.0,
        // mosaic in the first epoch, closed in the second
        close_mosaic: 1,
        ..TrainConfig::default()
    };
    Trainer::new(TrainSetup {
        model: tiny_config(),
        train: cfg,
        names: train.names,
        train_samples: train.samples,
        val_samples: val.samples,
        weights: None,
        save_dir: save.to_path_buf(),
        device: Device::Cpu,
    })
    .unwrap()
}

#[test]
fn checkpoints_and_exact_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data, 8, 3, 64, 1).unwrap();

    let straight = dir.path().join("straight");
    let mut run = trainer(&data, &straight, 2);
    let first = run.run_epoch(|_, _, _| {}).unwrap();
    assert!(first.giou_loss.is_finite() && first.cls_loss.is_finite() && first.l1_loss.is_finite());
    assert!((0.0..=1.0).contains(&first.map50) || first.map50 == -1.0);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let png = straight.join("results.png");
    let first_png = inode(&png);
    run.run_epoch(|_, _, _| {}).unwrap();
    // results.png: one panel per results.csv column, replaced by a rename (a new inode), no
    // temporary file left behind
    assert_ne!(inode(&png), first_png, "results.png rewritten in place");
    let plot = image::open(&png).unwrap();
    assert_eq!((plot.width(), plot.height()), rtdetr::train::plot::size(6));
    let leftovers: Vec<_> = std::fs::read_dir(&straight)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for file in [
        "last.safetensors",
        "best.safetensors",
        "last.state.safetensors",
        "results.csv",
    ] {
        assert!(straight.join(file).exists(), "{file}");
    }
    let csv = std::fs::read_to_string(straight.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The EMA checkpoint loads as a detector on its own.
    rtdetr::RtDetr::load(straight.join("last.safetensors"), &Device::Cpu, None, None).unwrap();

    let resumed = dir.path().join("resumed");
    let mut run = trainer(&data, &resumed, 2);
    run.run_epoch(|_, _, _| {}).unwrap();
    drop(run);
    let train = YoloDataset::from_yaml(&data.join("data.yaml"), "train").unwrap();
    let val = YoloDataset::from_yaml(&data.join("data.yaml"), "val").unwrap();
    let mut run =
        Trainer::resume(resumed.clone(), train.samples, val.samples, Device::Cpu).unwrap();
    assert_eq!(run.epochs_done(), 1);
    run.run_epoch(|_, _, _| {}).unwrap();

    let a =
        candle::safetensors::load(straight.join("last.state.safetensors"), &Device::Cpu).unwrap();
    let b =
        candle::safetensors::load(resumed.join("last.state.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    let mut differing: Vec<String> = a
        .iter()
        .filter(|(k, t)| fixtures::check_close(&b[*k], t, fixtures::Tol::Exact, k).is_err())
        .map(|(k, _)| k.clone())
        .collect();
    differing.sort();
    assert!(
        differing.is_empty(),
        "{} of {} tensors differ: {:?}",
        differing.len(),
        a.len(),
        &differing[..differing.len().min(12)]
    );
}
