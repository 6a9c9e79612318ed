use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::{parse_labels, Label, Problem};
use crate::{Error, Result};

/// One folder or list file, or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Split {
    /// A folder of images or a `.txt` list of image paths.
    One(String),
    /// Several of them.
    Many(Vec<String>),
}

/// Class names as a list or a mapping from index.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NameTable {
    List(Vec<String>),
    Map(BTreeMap<usize, String>),
}

/// An ultralytics `data.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct DataYaml {
    /// Dataset root; relative to the yaml file when relative.
    #[serde(default)]
    pub path: Option<String>,
    /// Training images.
    pub train: Split,
    /// Validation images.
    pub val: Split,
    /// Test images, if any.
    #[serde(default)]
    pub test: Option<Split>,
    #[serde(default)]
    names: Option<NameTable>,
    /// Number of classes, when names are not given.
    #[serde(default)]
    pub nc: Option<usize>,
}

impl DataYaml {
    /// Reads and parses a data.yaml, naming the file on error.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::from(e).in_file(path))?;
        crate::data::parse_yaml(&text)
            .map_err(|e| Error::Data(format!("not a dataset yaml: {e}")).in_file(path))
    }

    /// How many classes the yaml declares (the largest index + 1 for a mapping), without
    /// building the names.
    pub fn class_count(&self) -> usize {
        match &self.names {
            Some(NameTable::List(list)) => list.len(),
            Some(NameTable::Map(map)) => map.keys().max().map_or(0, |m| m.saturating_add(1)),
            None => self.nc.unwrap_or(0),
        }
    }

    /// Class names by index (numbers where only `nc` is given).
    pub fn names(&self) -> Vec<String> {
        match &self.names {
            Some(NameTable::List(list)) => list.clone(),
            Some(NameTable::Map(map)) => {
                let n = map.keys().max().map_or(0, |m| m + 1);
                (0..n)
                    .map(|i| map.get(&i).cloned().unwrap_or_else(|| i.to_string()))
                    .collect()
            }
            None => (0..self.nc.unwrap_or(0)).map(|i| i.to_string()).collect(),
        }
    }
}

/// `img2label_paths`: the label file of an image, `.../images/x.jpg` → `.../labels/x.txt` (the
/// last folder named `images` becomes `labels`). Works on the path's components, so a name that
/// is not UTF-8 keeps its label file.
pub fn label_path(image: &Path) -> PathBuf {
    let parts: Vec<_> = image.components().collect();
    let folders = parts.len().saturating_sub(1);
    let images = parts[..folders]
        .iter()
        .rposition(|c| c.as_os_str() == "images");
    let mut out: PathBuf = parts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if Some(i) == images {
                std::ffi::OsStr::new("labels")
            } else {
                c.as_os_str()
            }
        })
        .collect();
    out.set_extension("txt");
    out
}

/// An image and its boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The image file.
    pub image: PathBuf,
    /// Its boxes (none for a background image).
    pub labels: Vec<Label>,
}

/// The images that decode (checked in parallel with [`crate::image_io::verify_image`]), and a
/// problem for each of the others.
pub(crate) fn readable_images(images: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<Problem>) {
    use rayon::prelude::*;
    let checked: Vec<_> = images
        .into_par_iter()
        .map(|image| {
            let verdict = crate::image_io::verify_image(&image);
            (image, verdict)
        })
        .collect();
    let mut readable = Vec::with_capacity(checked.len());
    let mut problems = Vec::new();
    for (image, verdict) in checked {
        match verdict {
            Ok(_) => readable.push(image),
            Err(e) => problems.push(Problem {
                message: format!("skipped: {}", e.without_file()),
                path: image,
                line: None,
            }),
        }
    }
    (readable, problems)
}

/// The usable images of one split, and what was wrong with the others.
#[derive(Debug, Clone)]
pub struct YoloDataset {
    /// Images with valid labels (or none: background).
    pub samples: Vec<Sample>,
    /// Images skipped, missing files and bad label lines.
    pub problems: Vec<Problem>,
    /// Class names.
    pub names: Vec<String>,
}

impl YoloDataset {
    /// Loads split `train`, `val` or `test` of a data.yaml. Images whose label file has any bad
    /// line are skipped (each problem reported with file and line), as ultralytics does.
    pub fn from_yaml(yaml: &Path, split: &str) -> Result<Self> {
        let data = DataYaml::read(yaml)?;
        if data.class_count() > crate::MAX_CLASSES {
            return Err(Error::Data(format!(
                "{} classes declared (`names`/`nc`), at most {} are supported",
                data.class_count(),
                crate::MAX_CLASSES
            ))
            .in_file(yaml));
        }
        let names = data.names();
        if names.is_empty() {
            return Err(Error::Data("no `names` or `nc`".into()).in_file(yaml));
        }
        let base = yaml.parent().unwrap_or(Path::new("."));
        let root = match &data.path {
            Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
            Some(p) => base.join(p),
            None => base.to_path_buf(),
        };
        let entries = match (split, &data.test) {
            ("train", _) => &data.train,
            ("val", _) => &data.val,
            ("test", Some(t)) => t,
            _ => return Err(Error::Data(format!("no split {split:?}")).in_file(yaml)),
        };
        let sources = match entries {
            Split::One(s) => vec![s.clone()],
            Split::Many(v) => v.clone(),
        };
        let mut problems = Vec::new();
        let mut images = Vec::new();
        for source in sources {
            let path = root.join(&source);
            if path.is_dir() {
                let found = crate::image_io::find_images(&path)
                    .map_err(|e| Error::from(e).in_file(&path))?;
                images.extend(found);
            } else if path.is_file() {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Error::from(e).in_file(&path))?;
                for (i, line) in text
                    .lines()
                    .map(str::trim)
                    .enumerate()
                    .filter(|(_, l)| !l.is_empty())
                {
                    let image = if Path::new(line).is_absolute() {
                        PathBuf::from(line)
                    } else {
                        root.join(line)
                    };
                    if image.is_file() {
                        images.push(image);
                    } else {
                        problems.push(Problem {
                            path: path.clone(),
                            line: Some(i + 1),
                            message: format!("missing image {}", image.display()),
                        });
                    }
                }
            } else {
                return Err(Error::Data(format!(
                    "{split} source {} does not exist",
                    path.display()
                ))
                .in_file(yaml));
            }
        }
        let (images, unreadable) = readable_images(images);
        problems.extend(unreadable);
        let mut sharing: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for image in &images {
            sharing
                .entry(label_path(image))
                .or_default()
                .push(image.clone());
        }
        let mut samples = Vec::with_capacity(images.len());
        for image in images {
            let labels_file = label_path(&image);
            let others = &sharing[&labels_file];
            if others.len() > 1 && labels_file.is_file() {
                let names: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
                problems.push(Problem {
                    path: image,
                    line: None,
                    message: format!(
                        "skipped: {} are all labelled by {}; rename all but one",
                        names.join(", "),
                        labels_file.display()
                    ),
                });
                continue;
            }
            let text = match std::fs::read_to_string(&labels_file) {
                Ok(t) => t,
                // No label file: a background image.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    problems.push(Problem {
                        path: labels_file,
                        line: None,
                        message: format!("unreadable: {e}"),
                    });
                    continue;
                }
            };
            let (labels, bad) = parse_labels(&labels_file, &text, names.len());
            if bad.is_empty() {
                samples.push(Sample { image, labels });
            } else {
                problems.extend(bad);
                problems.push(Problem {
                    path: image,
                    line: None,
                    message: "skipped: its labels have problems".into(),
                });
            }
        }
        Ok(Self {
            samples,
            problems,
            names,
        })
    }

    /// Images without boxes.
    pub fn backgrounds(&self) -> usize {
        self.samples.iter().filter(|s| s.labels.is_empty()).count()
    }
}
