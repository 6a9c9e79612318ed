//! The image and category ids `detect --save-coco` writes. Without a dataset they are
//! ultralytics' (`int(stem)` when the stem is a number, else the stem; the class index); with
//! `--data` they are the dataset's, so that `val` can score the file: a COCO json's own image and
//! category ids, or for a data.yaml the numbering `val --data` gives its val split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Ids from a dataset.
pub struct DatasetIds {
    source: PathBuf,
    images: HashMap<PathBuf, u64>,
    categories: Vec<u64>,
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

impl DatasetIds {
    /// Reads the val split of `data`: a COCO `instances_*.json` (`instances_val*.json` beside
    /// it: its images, found in its image folder) or a data.yaml.
    pub fn read(data: &Path) -> anyhow::Result<Self> {
        let is_json = data
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let (images, categories) = if is_json {
            let data = rtdetr::data::split_file(data, "val");
            let data = data.as_path();
            let text = std::fs::read_to_string(data)
                .with_context(|| format!("reading {}", data.display()))?;
            let gt: rtdetr::coco::Dataset = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a COCO instances file", data.display()))?;
            let folder = rtdetr::data::image_folder(data);
            let images = gt
                .images
                .iter()
                .map(|im| (canonical(&folder.join(&im.file_name)), im.id))
                .collect();
            let mut categories: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
            categories.sort_unstable();
            (images, categories)
        } else {
            let split = rtdetr::data::open_split(data, "val")?;
            let images = split
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| (canonical(&s.image), i as u64 + 1))
                .collect();
            (images, (0..split.names.len() as u64).collect())
        };
        Ok(Self {
            source: data.to_path_buf(),
            images,
            categories,
        })
    }

    /// The image id of `path`.
    pub fn image(&self, path: &Path) -> anyhow::Result<u64> {
        match self.images.get(&canonical(path)) {
            Some(&id) => Ok(id),
            None => bail!(
                "{}: not an image of {} (--data gives the ids of its val images)",
                path.display(),
                self.source.display()
            ),
        }
    }

    /// The category id of class `class`.
    pub fn category(&self, class: usize) -> anyhow::Result<u64> {
        match self.categories.get(class) {
            Some(&id) => Ok(id),
            None => bail!(
                "class {class} has no category in {} ({} categories)",
                self.source.display(),
                self.categories.len()
            ),
        }
    }

    /// Checks that the model's classes all have a category.
    pub fn check_classes(&self, nc: usize) -> anyhow::Result<()> {
        if nc > self.categories.len() {
            bail!(
                "the weights have {nc} classes, {} has {} categories",
                self.source.display(),
                self.categories.len()
            );
        }
        Ok(())
    }
}

/// ultralytics' id of an image stem: the number when it is one, else the stem.
pub fn stem_id(stem: &str) -> serde_json::Value {
    match stem.parse::<u64>() {
        Ok(id) => id.into(),
        Err(_) => stem.into(),
    }
}
