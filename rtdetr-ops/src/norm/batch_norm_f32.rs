//! The f32 plane loops of training batch norm: element work in f32 lanes, sums in 16 f32 lanes
//! per block of [`BLOCK`] elements and the blocks added in f64, compiled for AVX-512 and AVX2
//! and picked at run time. In f64 scalar code (the generic path, kept for f64 tensors) the norms
//! took a sixth of a training step.

use multiversion::multiversion;

use crate::activation::exp_f32;

const LANES: usize = 16;

/// Elements summed in f32 lanes (64 per lane) before the lanes are added into the f64 total:
/// short enough that f32 rounding stays near 1e-7 relative, long enough to vectorise.
const BLOCK: usize = 1024;

/// One channel's statistics and affine parameters, in f32.
#[derive(Clone, Copy, Debug)]
pub(super) struct Channel {
    pub mean: f32,
    pub inv_std: f32,
    pub weight: f32,
    pub bias: f32,
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-z))
}

#[inline(always)]
fn lanes_total(lanes: &[f32; LANES]) -> f64 {
    lanes.iter().map(|&v| v as f64).sum()
}

/// Σ x.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn plane_sum(xs: &[f32]) -> f64 {
    let mut total = 0.0;
    for block in xs.chunks(BLOCK) {
        let mut acc = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                acc[l] += c[l];
            }
        }
        total += lanes_total(&acc) + chunks.remainder().iter().map(|&v| v as f64).sum::<f64>();
    }
    total
}

/// Σ (x − mean)².
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn plane_squared_deviation(xs: &[f32], mean: f32) -> f64 {
    let mut total = 0.0;
    for block in xs.chunks(BLOCK) {
        let mut acc = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                let d = c[l] - mean;
                acc[l] += d * d;
            }
        }
        let tail = chunks.remainder().iter();
        total += lanes_total(&acc) + tail.map(|&v| ((v - mean) * (v - mean)) as f64).sum::<f64>();
    }
    total
}

/// `out = act(x · scale + shift)`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn normalize_plane(out: &mut [f32], xs: &[f32], scale: f32, shift: f32, silu: bool) {
    for (o, &x) in out.iter_mut().zip(xs) {
        let z = x * scale + shift;
        *o = if silu { z * sigmoid(z) } else { z };
    }
}

/// The gradient `dz` at the pre-activation (`grad` itself without SiLU) into `dz`, and the
/// plane's `(Σ dz, Σ dz·x̂)`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn pre_activation_grad_plane(
    dz: &mut [f32],
    xs: &[f32],
    grad: &[f32],
    ch: Channel,
    silu: bool,
) -> (f64, f64) {
    #[inline(always)]
    fn one(x: f32, g: f32, ch: Channel, silu: bool) -> (f32, f32) {
        let xhat = (x - ch.mean) * ch.inv_std;
        let dz = if silu {
            let z = xhat * ch.weight + ch.bias;
            let s = sigmoid(z);
            g * (s * (1.0 + z * (1.0 - s)))
        } else {
            g
        };
        (dz, xhat)
    }
    let (mut sum, mut sum_xhat) = (0.0, 0.0);
    let blocks = dz
        .chunks_mut(BLOCK)
        .zip(xs.chunks(BLOCK).zip(grad.chunks(BLOCK)));
    for (dz, (xs, grad)) in blocks {
        let (mut acc, mut acc_xhat) = ([0f32; LANES], [0f32; LANES]);
        let mut d = dz.chunks_exact_mut(LANES);
        let (mut x, mut g) = (xs.chunks_exact(LANES), grad.chunks_exact(LANES));
        for (d, (x, g)) in (&mut d).zip((&mut x).zip(&mut g)) {
            for l in 0..LANES {
                let (v, xhat) = one(x[l], g[l], ch, silu);
                d[l] = v;
                acc[l] += v;
                acc_xhat[l] += v * xhat;
            }
        }
        sum += lanes_total(&acc);
        sum_xhat += lanes_total(&acc_xhat);
        let tail = d
            .into_remainder()
            .iter_mut()
            .zip(x.remainder().iter().zip(g.remainder()));
        for (d, (&x, &g)) in tail {
            let (v, xhat) = one(x, g, ch, silu);
            *d = v;
            sum += v as f64;
            sum_xhat += (v * xhat) as f64;
        }
    }
    (sum, sum_xhat)
}

/// `dx = weight · inv_std · (dz − mean(dz) − x̂ · mean(dz·x̂))` in place over `dz`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn input_grad_plane(
    dz: &mut [f32],
    xs: &[f32],
    ch: Channel,
    mean_dz: f32,
    mean_dz_xhat: f32,
) {
    let k = ch.weight * ch.inv_std;
    for (d, &x) in dz.iter_mut().zip(xs) {
        let xhat = (x - ch.mean) * ch.inv_std;
        *d = k * (*d - mean_dz - xhat * mean_dz_xhat);
    }
}
