//! COCO `instances_*.json` datasets with an image folder, read as ultralytics' `convert_coco`
//! would convert them: crowd boxes skipped, `[x, y, w, h]` pixels → normalised cxcywh, boxes of
//! zero width or height dropped, and category ids mapped to contiguous classes (sorted by id,
//! names from `categories`). Every listed image counts, those without boxes as backgrounds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::coco;
use crate::data::{Label, Problem, Sample, YoloDataset};
use crate::{Error, Result};

/// Where the images of `instances_<name>.json` are looked for, first existing folder wins:
/// `<dir>/../images/<name>`, `<dir>/../<name>`, `<dir>/images/<name>`, `<dir>/<name>`,
/// `<dir>/images`, then `<dir>` itself (`<dir>` is the json's folder).
pub fn image_folder(json: &Path) -> PathBuf {
    let dir = json.parent().unwrap_or(Path::new("."));
    let stem = json
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = stem.strip_prefix("instances_").unwrap_or(&stem).to_string();
    let up = dir.join("..");
    [
        up.join("images").join(&name),
        up.join(&name),
        dir.join("images").join(&name),
        dir.join(&name),
        dir.join("images"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .unwrap_or_else(|| dir.to_path_buf())
}

/// The json of another split: `instances_train2017.json` → `instances_val2017.json` for `val`.
pub fn split_file(json: &Path, split: &str) -> PathBuf {
    let name = json
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    match (split, name.rfind("train")) {
        ("train", _) | (_, None) => json.to_path_buf(),
        (_, Some(i)) => json.with_file_name(format!("{}{split}{}", &name[..i], &name[i + 5..])),
    }
}

/// Reads a COCO instances file and its images (see [`image_folder`]). An annotation naming an
/// unknown image or category, or a box outside its image, is a problem and its image is skipped;
/// a missing image file is a problem; crowd and zero-size boxes are left out, as ultralytics does.
pub fn from_coco_json(json: &Path) -> Result<YoloDataset> {
    let text = std::fs::read_to_string(json).map_err(|e| Error::from(e).in_file(json))?;
    let data: coco::Dataset = serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("not a COCO instances file: {e}")).in_file(json))?;
    if data.categories.is_empty() {
        return Err(Error::Data("no categories".into()).in_file(json));
    }
    if data.categories.len() > crate::MAX_CLASSES {
        return Err(Error::Data(format!(
            "{} categories, at most {} are supported",
            data.categories.len(),
            crate::MAX_CLASSES
        ))
        .in_file(json));
    }
    let mut categories = data.categories.clone();
    categories.sort_by_key(|c| c.id);
    let class_of: HashMap<u64, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let names = categories
        .iter()
        .map(|c| {
            if c.name.is_empty() {
                c.id.to_string()
            } else {
                c.name.clone()
            }
        })
        .collect();
    let folder = image_folder(json);
    let mut problems = Vec::new();
    let problem = |message: String| Problem {
        path: json.to_path_buf(),
        line: None,
        message,
    };
    let mut by_image: BTreeMap<u64, Vec<&coco::Annotation>> = BTreeMap::new();
    let known: HashMap<u64, usize> = data
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    for ann in &data.annotations {
        if known.contains_key(&ann.image_id) {
            by_image.entry(ann.image_id).or_default().push(ann);
        } else {
            problems.push(problem(format!(
                "annotation {} names image {}, which is not listed",
                ann.id, ann.image_id
            )));
        }
    }
    // Every listed image is decoded once; in parallel, as the YOLO scan does.
    let verdicts: Vec<_> = {
        use rayon::prelude::*;
        data.images
            .par_iter()
            .map(|im| {
                let path = folder.join(&im.file_name);
                path.is_file().then(|| crate::image_io::verify_image(&path))
            })
            .collect()
    };
    let mut samples = Vec::with_capacity(data.images.len());
    for (im, verdict) in data.images.iter().zip(verdicts) {
        let path = folder.join(&im.file_name);
        let Some(verdict) = verdict else {
            problems.push(problem(format!(
                "image {} ({}): missing file {}",
                im.id,
                im.file_name,
                path.display()
            )));
            continue;
        };
        let (w, h) = match verdict {
            Ok(_) if im.width > 0 && im.height > 0 => (im.width as f64, im.height as f64),
            Ok((w, h)) => (w as f64, h as f64),
            Err(e) => {
                problems.push(Problem {
                    path: path.clone(),
                    line: None,
                    message: format!("skipped: {}", e.without_file()),
                });
                continue;
            }
        };
        let mut labels: Vec<Label> = Vec::new();
        let mut bad = false;
        for ann in by_image.get(&im.id).map(Vec::as_slice).unwrap_or(&[]) {
            if ann.iscrowd != 0 {
                continue;
            }
            let Some(&class) = class_of.get(&ann.category_id) else {
                problems.push(problem(format!(
                    "annotation {} (image {}): category {} is not listed",
                    ann.id, im.id, ann.category_id
                )));
                bad = true;
                continue;
            };
            let [x, y, bw, bh] = ann.bbox;
            let bbox = [(x + bw / 2.0) / w, (y + bh / 2.0) / h, bw / w, bh / h];
            if bbox[2] <= 0.0 || bbox[3] <= 0.0 {
                continue;
            }
            if bbox.iter().any(|v| !v.is_finite() || *v < 0.0 || *v > 1.01) {
                problems.push(problem(format!(
                    "annotation {} (image {}): box {:?} is outside the {w}×{h} image",
                    ann.id, im.id, ann.bbox
                )));
                bad = true;
                continue;
            }
            let label = Label {
                class,
                bbox: bbox.map(|v| v as f32),
            };
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        if bad {
            problems.push(Problem {
                path,
                line: None,
                message: "skipped: its annotations have problems".into(),
            });
        } else {
            samples.push(Sample {
                image: path,
                labels,
            });
        }
    }
    Ok(YoloDataset {
        samples,
        problems,
        names,
    })
}

/// One split of a dataset given as an ultralytics `data.yaml` or a COCO `instances_*.json`
/// (told apart by the extension; for a json, other splits are the sibling file named with the
/// split instead of `train`, see [`split_file`]).
pub fn open_split(path: &Path, split: &str) -> Result<YoloDataset> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let file = split_file(path, split);
        if !file.is_file() {
            return Err(
                Error::Data(format!("no {split} split (looked for {})", file.display()))
                    .in_file(path),
            );
        }
        from_coco_json(&file)
    } else {
        YoloDataset::from_yaml(path, split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_splits() {
        let p = Path::new("/d/annotations/instances_train2017.json");
        assert_eq!(
            split_file(p, "val"),
            Path::new("/d/annotations/instances_val2017.json")
        );
        assert_eq!(split_file(p, "train"), p);
        let v = Path::new("/d/instances_val.json");
        assert_eq!(split_file(v, "val"), v);
    }
}
