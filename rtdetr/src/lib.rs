//! RT-DETR with an EfficientNetV2 backbone, assembled from the workspace's crates. The front door
//! is [`Detector`]: load weights once, detect in decoded images (class names, the training image
//! size, preprocessing and postprocessing handled). Below it: the model ([`RtDetr`],
//! [`ModelConfig`]) and its strict loading from state_dict-keyed safetensors, the
//! weight [`Manifest`] (every tensor a module asks for, by its state_dict key, with its shape,
//! found without allocating the weights), thop-exact GFLOPs, the cv2-exact stretch resize and the
//! predictor's postprocess, the COCO evaluator, and, behind the `train` feature (on by default),
//! YOLO/COCO datasets with ultralytics' augmentations, validation ([`evaluate`]) and the trainer
//! ([`train`]). A crate that only detects can turn `train` off and pull neither YAML, datasets
//! nor plotting.
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
mod flops;
pub mod image_io;
mod load;
mod manifest;
mod model;
pub mod postprocess;
pub mod preprocess;
#[cfg(feature = "train")]
pub mod train;
mod variant;

pub use detector::{
    imgsz_from_metadata, names_from_metadata, Detection, Detector, DetectorOptions, DEFAULT_IMGSZ,
};
pub use error::{Error, Result};
#[cfg(feature = "train")]
pub use eval::evaluate;
pub use flops::{gflops, thop_ops};
pub use load::{
    infer_config, read_metadata, tensor_shapes, KeyReport, LoadError, Shapes, CONFIG_KEY,
};
pub use manifest::{Entry, Manifest};
pub use model::{ModelConfig, ModelOutput, RtDetr};
pub use variant::Variant;

/// The README's Rust snippets, compiled as doc tests (not run: they name weights files).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeSnippets;
