//! The predictor's and dataset's image preparation: a stretch to `size × size` (no letterbox, no
//! aspect ratio kept) bit-exact with `cv2.resize(img, (size, size), interpolation=INTER_LINEAR)`
//! on uint8 images, then RGB in [0, 1] as NCHW f32.

use candle::{Device, Result, Tensor};

/// cv2's fixed-point scale of interpolation weights (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

/// Source index and the two fixed-point weights of each destination coordinate.
struct Taps {
    index: Vec<isize>,
    weights: Vec<(i32, i32)>,
}

/// `resizeGeneric_`'s coefficients: half-pixel centres computed in f32, weights rounded to 11
/// bits independently. Columns clamp the weight at the borders (`xmin`/`xmax`); rows do not,
/// their out-of-range source rows are clamped later instead.
fn taps(src: usize, dst: usize, clamp_weights: bool) -> Taps {
    let scale = src as f64 / dst as f64;
    let mut index = Vec::with_capacity(dst);
    let mut weights = Vec::with_capacity(dst);
    for d in 0..dst {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let mut s = f.floor() as isize;
        let mut frac = f - s as f32;
        if clamp_weights && s < 0 {
            (s, frac) = (0, 0.0);
        }
        if clamp_weights && s >= src as isize - 1 {
            (s, frac) = (src as isize - 1, 0.0);
        }
        index.push(s);
        weights.push((
            ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32,
            (frac * COEF_SCALE).round_ties_even() as i32,
        ));
    }
    Taps { index, weights }
}

/// Stretches an interleaved uint8 image (`height × width × channels`, row-major) to
/// `out_height × out_width`, bit-exact with OpenCV's `INTER_LINEAR` (its SIMD vertical pass:
/// `((S0>>4)·β0>>16) + ((S1>>4)·β1>>16)`, rounded by 2 bits). An image of the target size is
/// returned unchanged.
pub fn resize_linear(
    pixels: &[u8],
    (height, width, channels): (usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<u8> {
    assert_eq!(
        pixels.len(),
        height * width * channels,
        "pixel buffer does not match its size"
    );
    if (height, width) == (out_height, out_width) {
        return pixels.to_vec();
    }
    let cols = taps(width, out_width, true);
    let rows = taps(height, out_height, false);
    let horizontal = |y: usize| -> Vec<i32> {
        let src = &pixels[y * width * channels..][..width * channels];
        let mut out = Vec::with_capacity(out_width * channels);
        for (&x, &(a0, a1)) in cols.index.iter().zip(&cols.weights) {
            let x0 = x as usize;
            let x1 = (x0 + 1).min(width - 1);
            for c in 0..channels {
                out.push(src[x0 * channels + c] as i32 * a0 + src[x1 * channels + c] as i32 * a1);
            }
        }
        out
    };
    let clamp_row = |y: isize| y.clamp(0, height as isize - 1) as usize;
    let mut out = Vec::with_capacity(out_height * out_width * channels);
    for (&y, &(b0, b1)) in rows.index.iter().zip(&rows.weights) {
        let (r0, r1) = (horizontal(clamp_row(y)), horizontal(clamp_row(y + 1)));
        for (&s0, &s1) in r0.iter().zip(&r1) {
            let v = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
            out.push(((v + 2) >> 2).clamp(0, 255) as u8);
        }
    }
    out
}

/// RGB uint8 images, each stretched to `size × size`, as one `[B, 3, size, size]` f32 batch in
/// [0, 1] (`/255`, no mean or std).
pub fn to_batch(images: &[(&[u8], usize, usize)], size: usize, device: &Device) -> Result<Tensor> {
    let mut planes = Vec::with_capacity(images.len() * 3 * size * size);
    for &(pixels, height, width) in images {
        if pixels.len() != height * width * 3 {
            candle::bail!(
                "an RGB image of {height}×{width} needs {} bytes, got {}",
                height * width * 3,
                pixels.len()
            )
        }
        let resized = resize_linear(pixels, (height, width, 3), (size, size));
        // HWC -> CHW
        for c in 0..3 {
            planes.extend(resized.iter().skip(c).step_by(3).map(|&p| p as f32 / 255.0));
        }
    }
    Tensor::from_vec(planes, (images.len(), 3, size, size), device)
}
