//! The colour and flip augmentations of the RT-DETR trainer: HSV jitter and horizontal flip
//! (ultralytics `RandomHSV(0.015, 0.7, 0.4)` and `RandomFlip(0.5)`), applied last, to an image of
//! the training size (after mosaic and affine, see [`crate::data::geometry`]).

use crate::data::geometry::Affine;
use crate::data::Label;

/// Augmentation strengths (ultralytics defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip (`fliplr`).
    pub fliplr: f32,
    /// Hue, saturation and value gains (`hsv_h`, `hsv_s`, `hsv_v`).
    pub hsv: [f32; 3],
    /// Probability of a 4-image mosaic (`mosaic`) while mosaic is not closed.
    pub mosaic: f32,
    /// The random affine (`degrees`, `translate`, `scale`, `shear`).
    pub affine: Affine,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            fliplr: 0.5,
            hsv: [0.015, 0.7, 0.4],
            mosaic: 1.0,
            affine: Affine::default(),
        }
    }
}

/// OpenCV's 8-bit RGB → HSV (hue in 0..180).
fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (f32, f32, f32) {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let v = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = v - min;
    let s = if v > 0.0 { delta / v * 255.0 } else { 0.0 };
    let mut h = if delta == 0.0 {
        0.0
    } else if v == r {
        60.0 * (g - b) / delta
    } else if v == g {
        120.0 + 60.0 * (b - r) / delta
    } else {
        240.0 + 60.0 * (r - g) / delta
    };
    if h < 0.0 {
        h += 360.0;
    }
    (h / 2.0, s, v)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [u8; 3] {
    let (h, s) = (h * 2.0, s / 255.0);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r + m, g + m, b + m].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// Applies the augmentations to an RGB image of `size × size` and its labels, drawing from
/// `uniform` (values in [0, 1)).
pub fn augment(
    pixels: &mut [u8],
    size: usize,
    labels: &mut [Label],
    aug: &Augment,
    mut uniform: impl FnMut() -> f32,
) {
    // r = U(-1, 1)·gains; 8.3.79+ LUTs: hue shifted by r0·180 (mod 180), saturation and value
    // scaled by 1 + r, truncated to integers, saturation 0 kept at 0.
    let r: Vec<f64> = aug
        .hsv
        .iter()
        .map(|&g| (uniform() as f64 * 2.0 - 1.0) * g as f64)
        .collect();
    if aug.hsv.iter().any(|&g| g > 0.0) {
        let hue: Vec<f32> = (0..256)
            .map(|x| (x as f64 + r[0] * 180.0).rem_euclid(180.0).floor() as f32)
            .collect();
        let mut sat: Vec<f32> = (0..256)
            .map(|x| (x as f64 * (r[1] + 1.0)).clamp(0.0, 255.0).floor() as f32)
            .collect();
        sat[0] = 0.0;
        let val: Vec<f32> = (0..256)
            .map(|x| (x as f64 * (r[2] + 1.0)).clamp(0.0, 255.0).floor() as f32)
            .collect();
        for px in pixels.chunks_exact_mut(3) {
            let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
            let rgb = hsv_to_rgb(
                hue[h as usize % 256],
                sat[s as usize % 256],
                val[v as usize % 256],
            );
            px.copy_from_slice(&rgb);
        }
    }
    if uniform() < aug.fliplr {
        for row in pixels.chunks_exact_mut(size * 3) {
            for x in 0..size / 2 {
                for c in 0..3 {
                    row.swap(x * 3 + c, (size - 1 - x) * 3 + c);
                }
            }
        }
        for l in labels.iter_mut() {
            l.bbox[0] = 1.0 - l.bbox[0];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_and_flip() {
        for rgb in [
            [255u8, 0, 0],
            [12, 200, 99],
            [128, 128, 128],
            [0, 0, 0],
            [250, 250, 10],
        ] {
            let (h, s, v) = rgb_to_hsv(rgb[0], rgb[1], rgb[2]);
            let back = hsv_to_rgb(h, s, v);
            for (a, b) in back.iter().zip(rgb) {
                assert!((*a as i32 - b as i32).abs() <= 1, "{rgb:?} -> {back:?}");
            }
        }
        // 2×2 image, left column red, right column blue; a flip with no colour change swaps them.
        let mut px = vec![255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255];
        let mut labels = [Label {
            class: 0,
            bbox: [0.25, 0.5, 0.5, 1.0],
        }];
        let aug = Augment {
            fliplr: 1.0,
            hsv: [0.0; 3],
            ..Augment::default()
        };
        augment(&mut px, 2, &mut labels, &aug, || 0.5);
        assert_eq!(px[..6], [0, 0, 255, 255, 0, 0]);
        assert_eq!(labels[0].bbox[0], 0.75);
    }
}
