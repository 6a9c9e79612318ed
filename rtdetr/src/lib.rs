//! RT-DETR with an EfficientNetV2 backbone, assembled from the workspace's crates.
//!
//! For now this holds the model variants and the weight [`Manifest`]: every tensor a module asks
//! for, by its state_dict key, with its shape, found without allocating the weights.
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
pub mod data;
mod flops;
mod load;
mod manifest;
mod model;
pub mod postprocess;
pub mod preprocess;
pub mod train;
mod variant;

pub use flops::{gflops, thop_ops};
pub use load::{
    infer_config, read_metadata, tensor_shapes, KeyReport, LoadError, Shapes, CONFIG_KEY,
};
pub use manifest::{Entry, Manifest};
pub use model::{ModelConfig, ModelOutput, RtDetr};
pub use variant::Variant;
