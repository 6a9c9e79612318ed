//! A run killed mid-epoch (through the crate-private kill hook, `Trainer::set_stop_at_step`)
//! resumes from its last periodic save to exactly the weights of an uninterrupted run.

use std::path::Path;

use candle::Device;

use crate::data::{write_dataset, YoloDataset};
use crate::train::{TrainConfig, TrainSetup, Trainer};
use crate::ModelConfig;

fn tiny_config() -> ModelConfig {
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let meta = crate::read_metadata(&path).unwrap();
    let mut cfg: ModelConfig = serde_json::from_str(&meta[crate::CONFIG_KEY]).unwrap();
    cfg.decoder.nc = 2;
    cfg.decoder.queries = 10;
    cfg
}

#[test]
fn killed_mid_epoch_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data, 8, 2, 64, 2).unwrap();
    let yaml = data.join("data.yaml");
    let make = |save: &Path| {
        let train = YoloDataset::from_yaml(&yaml, "train").unwrap();
        let val = YoloDataset::from_yaml(&yaml, "val").unwrap();
        let cfg = TrainConfig {
            epochs: 2,
            batch: 2,
            imgsz: 64,
            // accumulation over 2 batches after the warm-up
            nbs: 4,
            warmup_epochs: 1.0,
            close_mosaic: 1,
            save_period_steps: 1,
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
    };
    let straight = dir.path().join("straight");
    let mut run = make(&straight);
    run.run_epoch(|_, _, _| {}).unwrap();
    run.run_epoch(|_, _, _| {}).unwrap();

    // Killed after optimizer steps 2 (epoch 0) and then 5 (epoch 1), resumed each time.
    let killed = dir.path().join("killed");
    let mut run = make(&killed);
    run.set_stop_at_step(Some(2));
    assert!(run.run_epoch(|_, _, _| {}).is_err());
    drop(run);
    let resume = || {
        let train = YoloDataset::from_yaml(&yaml, "train").unwrap();
        let val = YoloDataset::from_yaml(&yaml, "val").unwrap();
        Trainer::resume(killed.clone(), train.samples, val.samples, Device::Cpu).unwrap()
    };
    let mut run = resume();
    assert_eq!(run.epochs_done(), 0);
    assert!(run.batches_done_in_epoch() > 0, "resumed mid-epoch");
    run.set_stop_at_step(Some(5));
    run.run_epoch(|_, _, _| {}).unwrap();
    assert!(run.run_epoch(|_, _, _| {}).is_err());
    drop(run);
    let mut run = resume();
    assert_eq!(run.epochs_done(), 1);
    assert!(run.batches_done_in_epoch() > 0, "resumed mid-epoch");
    run.run_epoch(|_, _, _| {}).unwrap();
    assert_eq!(run.epochs_done(), 2);

    let a =
        candle::safetensors::load(straight.join("last.state.safetensors"), &Device::Cpu).unwrap();
    let b = candle::safetensors::load(killed.join("last.state.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    let differing: Vec<&String> = a
        .iter()
        .filter(|(k, t)| fixtures::check_close(&b[*k], t, fixtures::Tol::Exact, k).is_err())
        .map(|(k, _)| k)
        .collect();
    assert!(
        differing.is_empty(),
        "{} tensors differ: {differing:?}",
        differing.len()
    );
    assert_eq!(
        std::fs::read_to_string(straight.join("results.csv")).unwrap(),
        std::fs::read_to_string(killed.join("results.csv")).unwrap()
    );
}

/// A state whose training config no run can use (here a batch of 0, as a hand-edited or
/// corrupted `last.state.safetensors` may hold) is refused on resume, naming the file.
#[test]
fn a_resumed_state_is_checked_like_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data, 2, 2, 64, 2).unwrap();
    let yaml = data.join("data.yaml");
    let (train, val) = (
        YoloDataset::from_yaml(&yaml, "train").unwrap(),
        YoloDataset::from_yaml(&yaml, "val").unwrap(),
    );
    let save = dir.path().join("run");
    let cfg = TrainConfig {
        epochs: 1,
        batch: 2,
        imgsz: 64,
        ..TrainConfig::default()
    };
    let mut run = Trainer::new(TrainSetup {
        model: tiny_config(),
        train: cfg,
        names: train.names.clone(),
        train_samples: train.samples.clone(),
        val_samples: val.samples.clone(),
        weights: None,
        save_dir: save.clone(),
        device: Device::Cpu,
    })
    .unwrap();
    run.run_epoch(|_, _, _| {}).unwrap();

    let path = save.join("last.state.safetensors");
    let mut meta = crate::read_metadata(&path).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&meta["run"]).unwrap();
    state["train"]["batch"] = 0.into();
    meta.insert("run".into(), state.to_string());
    let tensors = candle::safetensors::load(&path, &Device::Cpu).unwrap();
    safetensors::serialize_to_file(&tensors, Some(meta.into_iter().collect()), &path).unwrap();

    let err = Trainer::resume(save, train.samples, val.samples, Device::Cpu)
        .err()
        .expect("a batch of 0 resumed")
        .to_string();
    assert!(
        err.contains("last.state.safetensors") && err.contains("batch must be at least 1"),
        "{err}"
    );
}
