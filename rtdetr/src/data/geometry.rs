//! The geometric augmentations of ultralytics' `v8_transforms`: the 4-image `Mosaic` and
//! `RandomPerspective` (affine only), with boxes clipped and filtered by `box_candidates`.
//! The random draws are arguments, so the reference's own draws can be replayed.

use crate::data::Label;

/// Fill value of the mosaic canvas and of the warp border.
pub const BORDER: u8 = 114;

/// A box in pixels, `[x1, y1, x2, y2]`, with its class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelBox {
    /// Class index.
    pub class: usize,
    /// `[x1, y1, x2, y2]` in pixels.
    pub xyxy: [f32; 4],
}

/// Normalised cxcywh labels of a `w × h` image → pixel boxes shifted by `pad` (ultralytics
/// `xywh2xyxy`, `denormalize`, `add_padding`, in f32).
pub fn to_pixels(labels: &[Label], w: usize, h: usize, pad: (f32, f32)) -> Vec<PixelBox> {
    labels
        .iter()
        .map(|l| {
            let [cx, cy, bw, bh] = l.bbox;
            let (dw, dh) = (bw / 2.0, bh / 2.0);
            let (sw, sh) = (w as f32, h as f32);
            PixelBox {
                class: l.class,
                xyxy: [
                    (cx - dw) * sw + pad.0,
                    (cy - dh) * sh + pad.1,
                    (cx + dw) * sw + pad.0,
                    (cy + dh) * sh + pad.1,
                ],
            }
        })
        .collect()
}

/// Pixel boxes of a `w × h` image → normalised cxcywh labels (ultralytics `Format`).
pub fn to_labels(boxes: &[PixelBox], w: usize, h: usize) -> Vec<Label> {
    let (iw, ih) = ((1.0 / w as f64) as f32, (1.0 / h as f64) as f32);
    boxes
        .iter()
        .map(|b| {
            let [x1, y1, x2, y2] = b.xyxy;
            Label {
                class: b.class,
                bbox: [
                    (x1 + x2) / 2.0 * iw,
                    (y1 + y2) / 2.0 * ih,
                    (x2 - x1) * iw,
                    (y2 - y1) * ih,
                ],
            }
        })
        .collect()
}

/// The mosaic centre for images of `size`: `(xc, yc)`, each `int(U(size/2, 3·size/2))`, from two
/// draws in [0, 1) taken in ultralytics' order (yc first).
pub fn mosaic_center(size: usize, mut uniform: impl FnMut() -> f64) -> (usize, usize) {
    let s = size as f64;
    let mut draw = || (s / 2.0 + uniform() * s) as usize;
    let yc = draw();
    let xc = draw();
    (xc, yc)
}

/// Ultralytics `Mosaic(n=4)` for four RGB images of `size × size` (already stretched): a
/// `2·size` square canvas filled with 114, the images placed top-left, top-right, bottom-left and
/// bottom-right of `center` (`(xc, yc)`), their boxes shifted, clipped to the canvas, and those
/// of zero area dropped. Returns the canvas and its boxes.
pub fn mosaic4(
    images: [(&[u8], &[Label]); 4],
    size: usize,
    center: (usize, usize),
) -> (Vec<u8>, Vec<PixelBox>) {
    let (s, (xc, yc)) = (size as i64, (center.0 as i64, center.1 as i64));
    let side = 2 * size;
    let mut canvas = vec![BORDER; side * side * 3];
    let mut boxes = Vec::new();
    for (i, (pixels, labels)) in images.into_iter().enumerate() {
        let (w, h) = (s, s);
        let (x1a, y1a, x2a, y2a, x1b, y1b) = match i {
            0 => {
                let (x1a, y1a) = ((xc - w).max(0), (yc - h).max(0));
                (x1a, y1a, xc, yc, w - (xc - x1a), h - (yc - y1a))
            }
            1 => {
                let (y1a, x2a) = ((yc - h).max(0), (xc + w).min(2 * s));
                (xc, y1a, x2a, yc, 0, h - (yc - y1a))
            }
            2 => {
                let (x1a, y2a) = ((xc - w).max(0), (yc + h).min(2 * s));
                (x1a, yc, xc, y2a, w - (xc - x1a), 0)
            }
            _ => (xc, yc, (xc + w).min(2 * s), (yc + h).min(2 * s), 0, 0),
        };
        let cols = (x2a - x1a) as usize;
        for row in 0..(y2a - y1a) as usize {
            let dst = ((y1a as usize + row) * side + x1a as usize) * 3;
            let src = ((y1b as usize + row) * size + x1b as usize) * 3;
            canvas[dst..dst + cols * 3].copy_from_slice(&pixels[src..src + cols * 3]);
        }
        let pad = ((x1a - x1b) as f32, (y1a - y1b) as f32);
        boxes.extend(to_pixels(labels, size, size, pad));
    }
    let limit = side as f32;
    for b in &mut boxes {
        b.xyxy = b.xyxy.map(|v| v.clamp(0.0, limit));
    }
    boxes.retain(|b| (b.xyxy[2] - b.xyxy[0]) * (b.xyxy[3] - b.xyxy[1]) > 0.0);
    (canvas, boxes)
}

/// `RandomPerspective` settings (ultralytics `degrees`, `translate`, `scale`, `shear`; the
/// `perspective` term is not supported and is 0 as in the RT-DETR defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Maximum rotation in degrees.
    pub degrees: f32,
    /// Maximum translation as a fraction of the output size.
    pub translate: f32,
    /// Scale gain: scales are drawn from `U(1 − scale, 1 + scale)`.
    pub scale: f32,
    /// Maximum shear in degrees.
    pub shear: f32,
}

impl Default for Affine {
    fn default() -> Self {
        Self {
            degrees: 0.0,
            translate: 0.1,
            scale: 0.5,
            shear: 0.0,
        }
    }
}

/// The random values of one affine transform, as ultralytics draws them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineDraws {
    /// Rotation in degrees.
    pub angle: f64,
    /// Scale factor.
    pub scale: f64,
    /// Shear angles (x, y) in degrees.
    pub shear: [f64; 2],
    /// Translation as fractions of the output size (x, y), around 0.5.
    pub translate: [f64; 2],
}

impl Affine {
    /// Whether the transform is always the identity (nothing to warp).
    pub fn is_identity(&self) -> bool {
        self.degrees == 0.0 && self.translate == 0.0 && self.scale == 0.0 && self.shear == 0.0
    }

    /// Draws the transform from values in [0, 1), in ultralytics' order (angle, scale, shear x,
    /// shear y, translate x, translate y).
    pub fn draw(&self, mut uniform: impl FnMut() -> f64) -> AffineDraws {
        let mut between = |lo: f64, hi: f64| lo + (hi - lo) * uniform();
        let (d, sc, sh, t) = (
            self.degrees as f64,
            self.scale as f64,
            self.shear as f64,
            self.translate as f64,
        );
        let angle = between(-d, d);
        let scale = between(1.0 - sc, 1.0 + sc);
        let shear = [between(-sh, sh), between(-sh, sh)];
        let translate = [between(0.5 - t, 0.5 + t), between(0.5 - t, 0.5 + t)];
        AffineDraws {
            angle,
            scale,
            shear,
            translate,
        }
    }
}

type Mat3 = [[f32; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0f32; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    out
}

/// Ultralytics' `M = T·S·R·P·C` (f32) for a `src_w × src_h` input and an `out × out` output.
pub fn affine_matrix(src_w: usize, src_h: usize, out: usize, d: &AffineDraws) -> Mat3 {
    let mut c = [[1f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    c[0][2] = (-(src_w as f64) / 2.0) as f32;
    c[1][2] = (-(src_h as f64) / 2.0) as f32;
    let (sin, cos) = d.angle.to_radians().sin_cos();
    let (alpha, beta) = (cos * d.scale, sin * d.scale);
    let r = [
        [alpha as f32, beta as f32, 0.0],
        [-beta as f32, alpha as f32, 0.0],
        [0.0, 0.0, 1.0],
    ];
    let s = [
        [1.0, d.shear[0].to_radians().tan() as f32, 0.0],
        [d.shear[1].to_radians().tan() as f32, 1.0, 0.0],
        [0.0, 0.0, 1.0],
    ];
    let t = [
        [1.0, 0.0, (d.translate[0] * out as f64) as f32],
        [0.0, 1.0, (d.translate[1] * out as f64) as f32],
        [0.0, 0.0, 1.0],
    ];
    matmul(&matmul(&matmul(&t, &s), &r), &c)
}

/// `cv2.warpAffine(src, M[:2], (out, out), INTER_LINEAR, BORDER_CONSTANT 114)` for an RGB image
/// of `src_w × src_h`, with OpenCV 5's arithmetic: the inverse map in f64 rounded to f32, source
/// coordinates by fused multiply-add, bilinear weights in f32 and rounding half to even.
pub fn warp_affine(src: &[u8], src_w: usize, src_h: usize, m: &Mat3, out: usize) -> Vec<u8> {
    let [a, b, c] = m[0].map(f64::from);
    let [d, e, f] = m[1].map(f64::from);
    let det = a * e - b * d;
    let det = if det != 0.0 { 1.0 / det } else { 0.0 };
    let (ia, ie, ib, id) = (e * det, a * det, -b * det, -d * det);
    let (ic, iff) = (-ia * c - ib * f, -id * c - ie * f);
    let inv = [ia, ib, ic, id, ie, iff].map(|v| v as f32);
    let mut dst = vec![0u8; out * out * 3];
    let fetch = |ix: i64, iy: i64, ch: usize| -> f32 {
        if ix >= 0 && iy >= 0 && (ix as usize) < src_w && (iy as usize) < src_h {
            src[(iy as usize * src_w + ix as usize) * 3 + ch] as f32
        } else {
            BORDER as f32
        }
    };
    for y in 0..out {
        let row_x = y as f32 * inv[1] + inv[2];
        let row_y = y as f32 * inv[4] + inv[5];
        for x in 0..out {
            let sx = inv[0].mul_add(x as f32, row_x);
            let sy = inv[3].mul_add(x as f32, row_y);
            let (fx, fy) = (sx.floor(), sy.floor());
            let (ax, ay) = (sx - fx, sy - fy);
            let (ix, iy) = (fx as i64, fy as i64);
            for ch in 0..3 {
                let (p00, p01) = (fetch(ix, iy, ch), fetch(ix + 1, iy, ch));
                let (p10, p11) = (fetch(ix, iy + 1, ch), fetch(ix + 1, iy + 1, ch));
                let v0 = ax.mul_add(p01 - p00, p00);
                let v1 = ax.mul_add(p11 - p10, p10);
                let v = ay.mul_add(v1 - v0, v0);
                dst[(y * out + x) * 3 + ch] = v.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
    dst
}

/// Ultralytics `box_candidates`: the box after augmentation (`after`) is wider and taller than
/// 2 px, keeps more than `area_thr` of the area of `before` (scaled by the transform's scale) and
/// has an aspect ratio below 100.
pub fn box_candidate(before: &[f32; 4], after: &[f32; 4], area_thr: f32) -> bool {
    let eps = 1e-16f32;
    let (w1, h1) = (before[2] - before[0], before[3] - before[1]);
    let (w2, h2) = (after[2] - after[0], after[3] - after[1]);
    let ar = (w2 / (h2 + eps)).max(h2 / (w2 + eps));
    w2 > 2.0 && h2 > 2.0 && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < 100.0
}

/// Ultralytics `RandomPerspective.apply_bboxes` + clip + `box_candidates` (area threshold 0.1):
/// the boxes' corners through `m`, their extent clipped to the `out × out` image, and the boxes
/// that lost too much dropped.
pub fn transform_boxes(boxes: &[PixelBox], m: &Mat3, scale: f32, out: usize) -> Vec<PixelBox> {
    let limit = out as f32;
    boxes
        .iter()
        .filter_map(|b| {
            let [x1, y1, x2, y2] = b.xyxy;
            let corners = [(x1, y1), (x2, y2), (x1, y2), (x2, y1)];
            let mut xs = [0f32; 4];
            let mut ys = [0f32; 4];
            for (k, (x, y)) in corners.into_iter().enumerate() {
                xs[k] = x * m[0][0] + y * m[0][1] + m[0][2];
                ys[k] = x * m[1][0] + y * m[1][1] + m[1][2];
            }
            let min = |v: &[f32; 4]| v.iter().copied().fold(f32::INFINITY, f32::min);
            let max = |v: &[f32; 4]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let after = [
                min(&xs).clamp(0.0, limit),
                min(&ys).clamp(0.0, limit),
                max(&xs).clamp(0.0, limit),
                max(&ys).clamp(0.0, limit),
            ];
            let before = b.xyxy.map(|v| v * scale);
            box_candidate(&before, &after, 0.1).then_some(PixelBox {
                class: b.class,
                xyxy: after,
            })
        })
        .collect()
}

/// Warps an RGB image of `src_w × src_h` and its pixel boxes with the transform `draws`, to
/// `out × out` (ultralytics `RandomPerspective` with `size = (out, out)`).
pub fn random_affine(
    pixels: &[u8],
    src_w: usize,
    src_h: usize,
    boxes: &[PixelBox],
    draws: &AffineDraws,
    out: usize,
) -> (Vec<u8>, Vec<PixelBox>) {
    let m = affine_matrix(src_w, src_h, out, draws);
    (
        warp_affine(pixels, src_w, src_h, &m, out),
        transform_boxes(boxes, &m, draws.scale as f32, out),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_warp_keeps_the_image() {
        let px: Vec<u8> = (0..4 * 4 * 3).map(|v| v as u8).collect();
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(warp_affine(&px, 4, 4, &id, 4), px);
    }
}
