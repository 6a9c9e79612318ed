//! A dataset split as a COCO ground truth, numbered as [`crate::validate`] numbers it (image `i`
//! of the split is image id `i + 1`, class `c` is category `c`), so that results written with
//! those ids (`rtdetr detect --data`) can be scored against it.

use crate::coco;
use crate::data::{Label, YoloDataset};
use crate::image_io::upright_dimensions;
use crate::Result;

impl Label {
    /// The box as COCO `[x, y, w, h]` in pixels of a `width × height` image.
    pub fn coco_bbox(&self, width: f64, height: f64) -> [f64; 4] {
        let [cx, cy, w, h] = self.bbox.map(f64::from);
        [
            (cx - w / 2.0) * width,
            (cy - h / 2.0) * height,
            w * width,
            h * height,
        ]
    }
}

/// The COCO ground truth of `split` (image sizes read from the image headers).
pub fn coco_ground_truth(split: &YoloDataset) -> Result<coco::Dataset> {
    let mut gt = coco::Dataset {
        categories: coco::Category::numbered(&split.names),
        ..coco::Dataset::default()
    };
    for (i, sample) in split.samples.iter().enumerate() {
        let id = i as u64 + 1;
        let (w, h) = upright_dimensions(&sample.image)?;
        gt.images.push(coco::Image {
            id,
            file_name: sample.image.display().to_string(),
            width: w,
            height: h,
        });
        for label in &sample.labels {
            let bbox = label.coco_bbox(w as f64, h as f64);
            gt.annotations.push(coco::Annotation {
                id: gt.annotations.len() as u64 + 1,
                image_id: id,
                category_id: label.class as u64,
                bbox,
                area: Some(bbox[2] * bbox[3]),
                iscrowd: 0,
            });
        }
    }
    Ok(gt)
}
