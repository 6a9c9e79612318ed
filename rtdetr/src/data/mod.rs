//! Training data: datasets in the ultralytics YOLO format (a `data.yaml` naming image folders or
//! list files, with one `labels/<image>.txt` per image, `class cx cy w h` normalised) or COCO
//! `instances_*.json` files with an image folder, the loader and the augmentations.

mod augment;
mod coco_json;
pub mod geometry;
mod ground_truth;
mod labels;
mod loader;
mod synthetic;
mod yaml;
mod yolo;

pub use augment::{augment, Augment};
pub use coco_json::{from_coco_json, image_folder, open_split, split_file};
pub use ground_truth::coco_ground_truth;
pub use labels::{parse_labels, Label, Problem};
pub use loader::{load_augmented, load_sample, mix_seed, spawn_epoch, Batch, Loaded};
pub use synthetic::write_dataset;
pub use yaml::{flow_depth, parse_yaml, MAX_YAML_BYTES, MAX_YAML_DEPTH};
pub use yolo::{label_path, DataYaml, Sample, Split, YoloDataset};
