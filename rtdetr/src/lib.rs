//! RT-DETR with an EfficientNetV2 backbone, assembled from the workspace's crates.
//!
//! Load weights once, detect in decoded images, draw, train:
//!
//! ```no_run
//! use rtdetr::{Detection, Detector, DetectorOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Class names and the training image size come from the weights' metadata.
//! let options = DetectorOptions { conf: 0.25, ..Default::default() };
//! let detector = Detector::from_file("best.safetensors", options)?;
//!
//! // Upright as cv2.imread reads it (EXIF orientation applied); boxes in the image's pixels.
//! let image = rtdetr::image_io::open_upright("bus.jpg")?;
//! let detections: Vec<Detection> = detector.detect(&image)?;
//! for d in &detections {
//!     println!("{} {:.2} {:?}", d.class_name, d.score, d.bbox);
//! }
//! rtdetr::draw::annotated(&image, &detections).save("bus_annotated.jpg")?;
//!
//! // Train on a YOLO data.yaml; every epoch validates and saves best/last weights.
//! use rtdetr::data::YoloDataset;
//! use rtdetr::train::{TrainConfig, TrainSetup, Trainer};
//! let (train, val) = (
//!     YoloDataset::from_yaml("data.yaml".as_ref(), "train")?,
//!     YoloDataset::from_yaml("data.yaml".as_ref(), "val")?,
//! );
//! let mut trainer = Trainer::new(TrainSetup {
//!     model: rtdetr::ModelConfig::new(rtdetr::Variant::S, train.names.len()),
//!     train: TrainConfig { epochs: 10, imgsz: 320, ..TrainConfig::default() },
//!     names: train.names,
//!     train_samples: train.samples,
//!     val_samples: val.samples,
//!     weights: None,
//!     save_dir: "runs/detect/train".into(),
//!     device: candle::Device::Cpu,
//! })?;
//! for _ in 0..10 {
//!     let stats = trainer.run_epoch(|_, _, _| {})?;
//!     println!("epoch {}: mAP50-95 {:.3}", stats.epoch + 1, stats.map50_95);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The front door is [`Detector`] (class names, the training image size, preprocessing and
//! postprocessing handled) and [`draw`]. Below it: the model ([`RtDetr`], [`ModelConfig`]) and
//! its strict loading from state_dict-keyed safetensors, the weight [`Manifest`] (every tensor a
//! module asks for, by its state_dict key, with its shape, found without allocating the
//! weights), thop-exact GFLOPs, the cv2-exact stretch resize and the predictor's postprocess,
//! the COCO evaluator and ultralytics' validation metrics ([`val_metrics`]), and, behind the
//! `train` feature (on by default), YOLO/COCO datasets with ultralytics' augmentations,
//! validation ([`validate`]) and the trainer ([`train`]). A crate that only detects can turn
//! `train` off and pull neither YAML, datasets nor plotting; `draw` (on by default) brings the
//! annotation with its bundled font.
//!
//! ```
//! use rtdetr::{Manifest, Variant};
//!
//! let manifest = Manifest::backbone(Variant::S)?;
//! assert_eq!(manifest.parameter_count(), 19_847_248);
//! assert!(manifest.get("stem.0.weight").is_some());
//! # Ok::<(), candle::Error>(())
//! ```

pub mod checkpoint;
pub mod coco;
#[cfg(feature = "train")]
pub mod data;
mod detector;
#[cfg(feature = "draw")]
pub mod draw;
mod error;
#[cfg(feature = "train")]
mod eval;
mod export;
mod flops;
pub mod image_io;
mod load;
mod manifest;
mod model;
pub mod postprocess;
mod precision;
pub mod preprocess;
#[cfg(feature = "train")]
pub mod train;
mod unique_keys;
pub mod val_metrics;
mod variant;
pub mod video;

pub use detector::{
    imgsz_from_metadata, names_from_metadata, Detection, Detector, DetectorOptions, DEFAULT_IMGSZ,
    MAX_CLASSES, MAX_IMGSZ,
};
pub use error::{Error, Result};
#[cfg(feature = "train")]
pub use eval::{evaluate, validate, Validation};
pub use export::{Batch, ExportOptions};
pub use flops::{gflops, thop_ops, thop_ops_by_part};
pub use load::{
    infer_config, read_metadata, tensor_shapes, KeyReport, LoadError, Shapes, CONFIG_KEY,
};
pub use manifest::{Entry, Manifest};
pub use model::{ModelConfig, ModelOutput, RtDetr};
pub use precision::{execution, warn_if_emulated, Precision};
pub use rtdetr_onnx::{self as onnx, Sampler};
pub use variant::Variant;

/// The README's Rust snippets, compiled as doc tests (not run: they name weights files).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeSnippets;
