//! Trains a detector on a YOLO `data.yaml` (or writes the synthetic shapes set first) and prints
//! each epoch's validation mAP.
//!
//! `cargo run --release -p rtdetr --example train -- [data.yaml] [epochs]`: without a yaml, a
//! small synthetic set is written to `runs/example/data`; weights go to `runs/example/train`.

use std::path::PathBuf;

use candle::Device;
use rtdetr::data::{write_dataset, YoloDataset};
use rtdetr::train::{TrainConfig, TrainSetup, Trainer};
use rtdetr::{ModelConfig, Variant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let yaml = match args.next() {
        Some(path) => PathBuf::from(path),
        None => {
            let root = PathBuf::from("runs/example/data");
            write_dataset(&root, 16, 4, 128, 0)?;
            root.join("data.yaml")
        }
    };
    let epochs = args.next().map(|e| e.parse()).transpose()?.unwrap_or(3);
    let train = YoloDataset::from_yaml(&yaml, "train")?;
    let val = YoloDataset::from_yaml(&yaml, "val")?;
    let mut trainer = Trainer::new(TrainSetup {
        model: ModelConfig::new(Variant::S, train.names.len()),
        train: TrainConfig {
            epochs,
            batch: 4,
            imgsz: 128,
            ..TrainConfig::default()
        },
        names: train.names,
        train_samples: train.samples,
        val_samples: val.samples,
        weights: None,
        save_dir: PathBuf::from("runs/example/train"),
        device: Device::cuda_if_available(0)?,
    })?;
    for _ in 0..epochs {
        let stats = trainer.run_epoch(|_, _, _| {})?;
        println!(
            "epoch {}: mAP50-95 {:.4}, mAP50 {:.4}",
            stats.epoch + 1,
            stats.map50_95,
            stats.map50
        );
    }
    println!(
        "weights: {}",
        trainer.save_dir().join("best.safetensors").display()
    );
    Ok(())
}
