//! Datasets in the ultralytics YOLO format: a `data.yaml` naming image folders or list files,
//! with one `labels/<image>.txt` per image (`class cx cy w h`, normalised).

mod labels;
mod yolo;

pub use labels::{parse_labels, Label, Problem};
pub use yolo::{label_path, DataYaml, Sample, Split, YoloDataset};
