//! Validation: a model's COCO mAP on a dataset split, as ultralytics' `val` computes it.

use candle::Device;

use crate::coco::{self, Summary};
use crate::data::Sample;
use crate::postprocess::{postprocess, Filter};
use crate::{preprocess, Result, RtDetr};

/// mAP of `model` on `samples` (images stretched to `imgsz`, predictions at conf 0.001 and up to
/// 300 per image, boxes in original pixels), with the COCO evaluator.
pub fn evaluate(
    model: &RtDetr,
    samples: &[Sample],
    names: &[String],
    imgsz: usize,
    batch: usize,
    device: &Device,
) -> Result<Summary> {
    let mut gt = coco::Dataset {
        categories: names
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
    let filter = Filter {
        conf: 0.001,
        max_det: 300,
        classes: None,
    };
    for chunk in samples.chunks(batch.max(1)) {
        let loaded: Vec<_> = chunk
            .iter()
            .map(|s| crate::data::load_sample(s, imgsz, None))
            .collect::<Result<_>>()?;
        let raw: Vec<(&[u8], usize, usize)> = loaded
            .iter()
            .map(|l| (l.pixels.as_slice(), imgsz, imgsz))
            .collect();
        let images = preprocess::to_batch(&raw, imgsz, device)?;
        let rows = model
            .forward_t(&images, false)?
            .decoder
            .detections
            .to_device(&Device::Cpu)?;
        let sizes: Vec<(usize, usize)> = loaded.iter().map(|l| l.original).collect();
        for ((dets, l), sample) in postprocess(&rows, &sizes, &filter)?
            .into_iter()
            .zip(&loaded)
            .zip(chunk)
        {
            let id = gt.images.len() as u64 + 1;
            let (h, w) = (l.original.0 as f64, l.original.1 as f64);
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
