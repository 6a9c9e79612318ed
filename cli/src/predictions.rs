//! Reading a COCO results file for `val`, with every wrong field named by its entry: a file from
//! `detect --save-coco` without `--data` holds string image ids and class indices, and the
//! evaluator would otherwise refuse it with a parse error or score it as zero.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};
use rtdetr::coco::{Dataset, Detection};
use serde_json::Value;

const HINT: &str = "`rtdetr detect --save-coco FILE --data DATASET` writes the dataset's ids";

fn id(entry: &Value, field: &str, at: usize) -> anyhow::Result<u64> {
    match entry.get(field) {
        None => bail!("entry {at}: no {field}"),
        Some(Value::String(s)) => {
            bail!("entry {at}: {field} is the string {s:?}; COCO ids are numbers ({HINT})")
        }
        Some(v) => v
            .as_u64()
            .with_context(|| format!("entry {at}: {field} {v} is not a non-negative integer")),
    }
}

fn number(entry: &Value, field: &str, at: usize) -> anyhow::Result<f64> {
    match entry.get(field) {
        None => bail!("entry {at}: no {field}"),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .with_context(|| format!("entry {at}: {field} {v} is not a finite number")),
    }
}

fn bbox(entry: &Value, at: usize) -> anyhow::Result<[f64; 4]> {
    let values = match entry.get("bbox") {
        None => bail!("entry {at}: no bbox"),
        Some(Value::Array(values)) if values.len() == 4 => values,
        Some(v) => bail!("entry {at}: bbox {v} is not [x, y, w, h]"),
    };
    let mut out = [0.0; 4];
    for (slot, v) in out.iter_mut().zip(values) {
        *slot = v
            .as_f64()
            .filter(|x| x.is_finite())
            .with_context(|| format!("entry {at}: bbox value {v} is not a finite number"))?;
    }
    if out[2] < 0.0 || out[3] < 0.0 {
        bail!("entry {at}: bbox {values:?} has a negative width or height");
    }
    Ok(out)
}

/// The results in `path`, each checked against `gt`: an image id the ground truth lacks is an
/// error (as in pycocotools); category ids it lacks are not scored, and said once.
pub fn read(path: &Path, gt: &Dataset) -> anyhow::Result<Vec<Detection>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = || -> anyhow::Result<Vec<Detection>> {
        let entries = match serde_json::from_str(&text).context("not a COCO results file")? {
            Value::Array(entries) => entries,
            _ => bail!("expected a JSON list of results [{{image_id, category_id, bbox, score}}]"),
        };
        let images: HashSet<u64> = gt.images.iter().map(|im| im.id).collect();
        let categories: HashSet<u64> = gt.categories.iter().map(|c| c.id).collect();
        let mut unknown_category = None;
        let mut unknown_count = 0;
        let mut out = Vec::with_capacity(entries.len());
        for (at, entry) in entries.iter().enumerate() {
            if !entry.is_object() {
                bail!("entry {at} is not an object");
            }
            let detection = Detection {
                image_id: id(entry, "image_id", at)?,
                category_id: id(entry, "category_id", at)?,
                bbox: bbox(entry, at)?,
                score: number(entry, "score", at)?,
            };
            if !images.contains(&detection.image_id) {
                bail!(
                    "entry {at}: image_id {} is not an image of the ground truth ({HINT})",
                    detection.image_id
                );
            }
            if !categories.contains(&detection.category_id) {
                unknown_count += 1;
                unknown_category.get_or_insert((at, detection.category_id));
            }
            out.push(detection);
        }
        if let Some((at, category)) = unknown_category {
            let mut known: Vec<u64> = categories.into_iter().collect();
            known.sort_unstable();
            eprintln!(
                "warning: {unknown_count} results have a category_id the ground truth lacks (first: entry {at}, category_id {category}; its ids: {known:?}); they are not scored"
            );
        }
        Ok(out)
    };
    parsed().with_context(|| path.display().to_string())
}
