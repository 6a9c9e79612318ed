//! Validation: a model's mAP on a dataset split, by the COCO evaluator and by ultralytics'
//! own metrics (its `val` table).

use crate::coco::{self, Summary};
use crate::data::Sample;
use crate::image_io::open_upright;
use crate::val_metrics::{Accumulator, Metrics};
use crate::{Detector, Result};

/// Both evaluations of one pass over a split.
#[derive(Clone, Debug)]
pub struct Validation {
    /// pycocotools' COCOeval figures.
    pub coco: Summary,
    /// ultralytics' table figures (P, R at max F1, its mAP50 and mAP50-95).
    pub metrics: Metrics,
}

/// COCO mAP of `detector` on `samples`: [`validate`]'s COCO half.
pub fn evaluate(detector: &Detector, samples: &[Sample], batch: usize) -> Result<Summary> {
    Ok(validate(detector, samples, batch)?.coco)
}

/// Detects in `samples` (images read upright, `batch` per forward pass; use
/// [`DetectorOptions::validation`](crate::DetectorOptions::validation) for ultralytics' conf
/// 0.001) and scores the detections with the COCO evaluator and with ultralytics' metrics.
pub fn validate(detector: &Detector, samples: &[Sample], batch: usize) -> Result<Validation> {
    let mut table = Accumulator::new();
    let mut gt = coco::Dataset {
        categories: coco::Category::numbered(detector.names()),
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
            let targets: Vec<([f32; 4], usize)> = sample
                .labels
                .iter()
                .map(|l| {
                    let [cx, cy, bw, bh] = l.bbox.map(f64::from);
                    let xyxy = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
                    let scale = [w, h, w, h];
                    (
                        std::array::from_fn(|k| (xyxy[k] * scale[k]) as f32),
                        l.class,
                    )
                })
                .collect();
            table.add_image(&dets, &targets);
            for label in &sample.labels {
                let bbox = label.coco_bbox(w, h);
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
    Ok(Validation {
        coco: coco::evaluate(&gt, &detections)?,
        metrics: table.metrics(),
    })
}
