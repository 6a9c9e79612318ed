//! Datasets in the ultralytics YOLO format: a `data.yaml` naming image folders or list files,
//! with one `labels/<image>.txt` per image (`class cx cy w h`, normalised).

mod augment;
pub mod geometry;
mod labels;
mod loader;
mod synthetic;
mod yolo;

pub use augment::{augment, Augment};
pub use labels::{parse_labels, Label, Problem};
pub use loader::{load_augmented, load_sample, mix_seed, spawn_epoch, Batch, Loaded};
pub use synthetic::write_dataset;
pub use yolo::{label_path, DataYaml, Sample, Split, YoloDataset};
