//! Validation: a model's COCO mAP on a dataset split, as ultralytics' `val` computes it.

use crate::coco::{self, Summary};
use crate::data::Sample;
use crate::image_io::open_upright;
use crate::{Detector, Result};

/// mAP of `detector` on `samples` (images read upright, `batch` per forward pass; use
/// [`DetectorOptions::validation`](crate::DetectorOptions::validation) for ultralytics' conf 0.001),
/// with the COCO evaluator.
pub fn evaluate(detector: &Detector, samples: &[Sample], batch: usize) -> Result<Summary> {
    let mut gt = coco::Dataset {
        categories: detector
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| coco::Category {
                id: i as u64,
                name: n.clone(),
            })
            .collect(),
        ..coco::Dataset::default()
    };
    let mut detections = Vec::new();
    for chunk in samples.chunks(batch.max(1)) {
        let images: Vec<image::RgbImage> = chunk
            .iter()
            .map(|s| Ok(open_upright(&s.image)?.to_rgb8()))
            .collect::<Result<_>>()?;
        let raw: Vec<(&[u8], usize, usize)> = images
            .iter()
            .map(|i| {
                (
                    i.as_raw().as_slice(),
                    i.height() as usize,
                    i.width() as usize,
                )
            })
            .collect();
        for ((dets, &(_, h, w)), sample) in
            detector.detect_rgb(&raw)?.into_iter().zip(&raw).zip(chunk)
        {
            let id = gt.images.len() as u64 + 1;
            let (h, w) = (h as f64, w as f64);
            gt.images.push(coco::Image {
                id,
                file_name: sample.image.display().to_string(),
                width: w as u32,
                height: h as u32,
            });
            for label in &sample.labels {
                let [cx, cy, bw, bh] = label.bbox.map(f64::from);
                let bbox = [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, bw * w, bh * h];
                let ann = coco::Annotation {
                    id: gt.annotations.len() as u64 + 1,
                    image_id: id,
                    category_id: label.class as u64,
                    bbox,
                    area: Some(bbox[2] * bbox[3]),
                    iscrowd: 0,
                };
                gt.annotations.push(ann);
            }
            detections.extend(dets.iter().map(|d| coco::Detection {
                image_id: id,
                category_id: d.class_id as u64,
                bbox: [
                    d.bbox[0] as f64,
                    d.bbox[1] as f64,
                    (d.bbox[2] - d.bbox[0]) as f64,
                    (d.bbox[3] - d.bbox[1]) as f64,
                ],
                score: d.score as f64,
            }));
        }
    }
    coco::evaluate(&gt, &detections)
}
