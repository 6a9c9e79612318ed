//! The attention op's softmax rows in f32, built for AVX-512 and AVX2 and chosen at run time.
//!
//! Sums run in 16 fixed lanes so that every build (and the generic one) gives the same bits; the
//! row maximum is exact in any order.

use multiversion::multiversion;

const LANES: usize = 16;

#[inline(always)]
fn lane_sum(lanes: &[f32; LANES]) -> f32 {
    lanes.iter().sum()
}

/// `row ← softmax(row / root)` with `blocked` entries at −∞: shift by the row maximum,
/// exponentiate, divide by the row sum.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn softmax_row(row: &mut [f32], blocked: Option<&[bool]>, root: f32) {
    match blocked {
        Some(b) => row
            .iter_mut()
            .zip(b)
            .for_each(|(s, &b)| *s = if b { f32::NEG_INFINITY } else { *s / root }),
        None => row.iter_mut().for_each(|s| *s /= root),
    }
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = crate::activation::exp_f32(c[l] - max);
            sum[l] += c[l];
        }
    }
    let mut total = lane_sum(&sum);
    for s in chunks.into_remainder() {
        *s = crate::activation::exp_f32(*s - max);
        total += *s;
    }
    row.iter_mut().for_each(|s| *s /= total);
}

/// The gradient of the scores from that of the probabilities `g` (in place): `p·(g − p·g)/root`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn softmax_grad_row(p: &[f32], g: &mut [f32], root: f32) {
    let mut dot = [0f32; LANES];
    let (mut pc, mut gc) = (p.chunks_exact(LANES), g.chunks_exact(LANES));
    for (p, g) in (&mut pc).zip(&mut gc) {
        for l in 0..LANES {
            dot[l] += p[l] * g[l];
        }
    }
    let mut total = lane_sum(&dot);
    for (p, g) in pc.remainder().iter().zip(gc.remainder()) {
        total += p * g;
    }
    for (&p, g) in p.iter().zip(g.iter_mut()) {
        *g = p * (*g - total) / root;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 softmax on rows shorter than, equal to and longer than the lanes, with
    /// and without blocked entries.
    #[test]
    fn rows_match_an_f64_softmax_and_its_gradient() {
        let rng = crate::SplitMix64::new(7);
        for n in [1, 5, 16, 17, 45, 228] {
            let x: Vec<f32> = (0..n)
                .map(|_| (rng.uniform() as f32 - 0.5) * 20.0)
                .collect();
            let blocked: Vec<bool> = (0..n).map(|i| i > 0 && rng.uniform() > 0.7).collect();
            for mask in [None, Some(&blocked[..])] {
                let root = 4f32;
                let mut row = x.clone();
                softmax_row(&mut row, mask, root);
                let scaled: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| match mask {
                        Some(b) if b[i] => f64::NEG_INFINITY,
                        _ => v as f64 / root as f64,
                    })
                    .collect();
                let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scaled.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (i, (&got, &e)) in row.iter().zip(&e).enumerate() {
                    assert!((got as f64 - e / sum).abs() < 1e-6, "n {n} entry {i}");
                }
                let g: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
                let mut grad = g.clone();
                softmax_grad_row(&row, &mut grad, root);
                let dot: f64 = row.iter().zip(&g).map(|(&p, &g)| p as f64 * g as f64).sum();
                for (i, ((&p, &g), &got)) in row.iter().zip(&g).zip(&grad).enumerate() {
                    let want = p as f64 * (g as f64 - dot) / root as f64;
                    assert!((got as f64 - want).abs() < 1e-6, "n {n} gradient {i}");
                }
            }
        }
    }
}
