//! `RTDETRPredictor.postprocess`: from the head's top-k `[cx, cy, w, h, score, class]` rows to
//! boxes in original-image pixels. No NMS: the decoder's queries do not overlap by design.

use candle::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in pixels of the original image.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Sigmoid class score.
    pub score: f32,
    /// Class index.
    pub class_id: usize,
}

/// Which detections to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Keep scores strictly above this (ultralytics `conf`, 0.25 in predict).
    pub conf: f32,
    /// Keep at most this many per image, best first (`max_det`, 300).
    pub max_det: usize,
    /// Keep only these classes (`classes`), all when `None`.
    pub classes: Option<Vec<usize>>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            conf: 0.25,
            max_det: 300,
            classes: None,
        }
    }
}

/// Converts the head's rows of each image to boxes in its original `(height, width)`: xywh →
/// xyxy, score filter, class filter, the first `max_det`, then scaling by the original size (the
/// model saw the image stretched, so x scales by the width and y by the height).
///
/// # Shapes
/// `rows: [B, K, 6]` sorted by score, `sizes.len() == B`
pub fn postprocess(
    rows: &Tensor,
    sizes: &[(usize, usize)],
    filter: &Filter,
) -> Result<Vec<Vec<Detection>>> {
    let rows: Vec<Vec<Vec<f32>>> = rows.to_dtype(candle::DType::F32)?.to_vec3()?;
    if rows.len() != sizes.len() {
        candle::bail!(
            "postprocess: {} images of predictions for {} sizes",
            rows.len(),
            sizes.len()
        )
    }
    Ok(rows
        .iter()
        .zip(sizes)
        .map(|(image, &(height, width))| {
            image
                .iter()
                .filter(|r| r[4] > filter.conf)
                .filter(|r| {
                    filter
                        .classes
                        .as_ref()
                        .is_none_or(|keep| keep.contains(&(r[5] as usize)))
                })
                .take(filter.max_det)
                .map(|r| {
                    let (half_w, half_h) = (r[2] / 2.0, r[3] / 2.0);
                    let (w, h) = (width as f32, height as f32);
                    Detection {
                        bbox: [
                            (r[0] - half_w) * w,
                            (r[1] - half_h) * h,
                            (r[0] + half_w) * w,
                            (r[1] + half_h) * h,
                        ],
                        score: r[4],
                        class_id: r[5] as usize,
                    }
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn filters_and_scales() {
        let rows = Tensor::new(
            &[[
                [0.5f32, 0.5, 0.25, 0.5, 0.9, 2.0],
                [0.25, 0.75, 0.5, 0.5, 0.6, 0.0],
                [0.1, 0.1, 0.1, 0.1, 0.25, 1.0],
            ]],
            &Device::Cpu,
        )
        .unwrap();
        let all = postprocess(&rows, &[(100, 200)], &Filter::default()).unwrap();
        assert_eq!(all[0].len(), 2, "0.25 is not above conf 0.25");
        assert_eq!(
            all[0][0],
            Detection {
                bbox: [75.0, 25.0, 125.0, 75.0],
                score: 0.9,
                class_id: 2
            }
        );
        assert_eq!(all[0][1].bbox, [0.0, 50.0, 100.0, 100.0]);
        let only0 = Filter {
            classes: Some(vec![0]),
            ..Filter::default()
        };
        assert_eq!(
            postprocess(&rows, &[(100, 200)], &only0).unwrap()[0].len(),
            1
        );
        let one = Filter {
            max_det: 1,
            conf: 0.0,
            classes: None,
        };
        assert_eq!(postprocess(&rows, &[(100, 200)], &one).unwrap()[0].len(), 1);
    }
}
