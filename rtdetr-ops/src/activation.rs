//! `act(x + bias)` in one pass over the activation, for evaluation with batch norm folded into
//! the preceding convolution (unfused, that is three to four passes: scale, shift, activation).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::cpu::cpu_slice;

struct BiasAct {
    silu: bool,
    channels: usize,
    plane: usize,
}

/// `exp(x)` for f32 from adds, multiplies and bit operations only, so that a loop over it
/// vectorises: `2^n · p(r)` with `x = n·ln2 + r` (Cody-Waite split of ln2, round-to-nearest by
/// the 1.5·2^23 trick) and a degree-7 Taylor polynomial on |r| ≤ ln2/2; relative error below
/// 2e-7 on [-87, 87], inputs clamped there. The integer `n` is read from the bits of
/// `n + 1.5·2^23` (whose unit is its last mantissa bit): a float-to-int `as` cast saturates and
/// compiles to one scalar conversion per lane.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    f32::from_bits(exponent << 23) * p
}

#[inline(always)]
fn silu_plane(plane: &mut [f32], bias: f32) {
    for v in plane.iter_mut() {
        let y = *v + bias;
        *v = y / (1.0 + exp_f32(-y));
    }
}

#[inline(always)]
fn add_plane(plane: &mut [f32], bias: f32) {
    plane.iter_mut().for_each(|v| *v += bias);
}

#[inline(always)]
fn bias_act_plane(plane: &mut [f32], bias: f32, silu: bool) {
    if silu {
        silu_plane(plane, bias)
    } else {
        add_plane(plane, bias)
    }
}

/// [`bias_act_plane`] compiled for AVX2 + FMA, picked at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_act_plane_avx2(plane: &mut [f32], bias: f32, silu: bool) {
    bias_act_plane(plane, bias, silu)
}

/// [`bias_act_plane`] for AVX-512, picked at run time; SiLU through [`avx512::silu`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bias_act_plane_avx512(plane: &mut [f32], bias: f32, silu: bool) {
    if silu {
        avx512::bias_silu_plane(plane, bias)
    } else {
        add_plane(plane, bias)
    }
}

/// SiLU on 16 lanes: [`exp_f32`]'s steps in intrinsics, and the division by `1 + e^-y` as a
/// reciprocal estimate refined by one Newton step (`vdivps` alone took half of SiLU's time).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `y · sigmoid(y)`, within 3e-7 relative of `y / (1 + exp(-y))`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn silu(y: __m512) -> __m512 {
        const ROUND: f32 = 12_582_912.0;
        let x = _mm512_min_ps(
            _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), y), _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(87.0),
        );
        let shifted = _mm512_fmadd_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
            _mm512_set1_ps(ROUND),
        );
        let n = _mm512_sub_ps(shifted, _mm512_set1_ps(ROUND));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let bits = _mm512_add_epi32(
            _mm512_sub_epi32(
                _mm512_castps_si512(shifted),
                _mm512_set1_epi32(ROUND.to_bits() as i32),
            ),
            _mm512_set1_epi32(127),
        );
        let e = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)), p);
        let d = _mm512_add_ps(e, _mm512_set1_ps(1.0));
        let rcp = _mm512_rcp14_ps(d);
        let rcp = _mm512_mul_ps(rcp, _mm512_fnmadd_ps(d, rcp, _mm512_set1_ps(2.0)));
        _mm512_mul_ps(y, rcp)
    }

    /// `v = silu(v + bias)` over `plane`.
    #[target_feature(enable = "avx512f")]
    pub fn bias_silu_plane(plane: &mut [f32], bias: f32) {
        let b = _mm512_set1_ps(bias);
        let mut chunks = plane.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: `c` holds 16 floats.
            unsafe {
                let v = _mm512_loadu_ps(c.as_ptr());
                _mm512_storeu_ps(c.as_mut_ptr(), silu(_mm512_add_ps(v, b)));
            }
        }
        let tail = chunks.into_remainder();
        let mask = ((1u32 << tail.len()) - 1) as u16;
        // SAFETY: the mask covers only the `tail.len()` floats of `tail`.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, tail.as_ptr());
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, silu(_mm512_add_ps(v, b)));
        }
    }
}

/// `v = act(v + bias)` over `plane` in place, with the widest vectors the CPU has.
pub(crate) fn bias_act_in_place(plane: &mut [f32], bias: f32, silu: bool) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { bias_act_plane_avx512(plane, bias, silu) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { bias_act_plane_avx2(plane, bias, silu) };
    }
    bias_act_plane(plane, bias, silu)
}

/// The per-channel bias and activation that a convolution applies to its output while the
/// output is still in cache (evaluation with batch norm folded).
#[derive(Clone, Debug)]
pub(crate) struct Epilogue {
    pub bias: Vec<f32>,
    pub silu: bool,
}

impl Epilogue {
    /// Applies the epilogue to a row of output channel `channel`.
    pub fn apply(&self, channel: usize, row: &mut [f32]) {
        bias_act_in_place(row, self.bias[channel], self.silu)
    }
}

/// The f32 case, free of conversions and libm calls so that it vectorises.
fn kernel_f32(op: &BiasAct, xs: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = xs.to_vec();
    out.par_chunks_mut(op.plane)
        .enumerate()
        .for_each(|(i, plane)| {
            bias_act_in_place(plane, bias[i % op.channels], op.silu);
        });
    out
}

fn kernel<T: WithDType>(op: &BiasAct, xs: &[T], bias: &[T]) -> Vec<T> {
    let mut out = xs.to_vec();
    out.par_chunks_mut(op.plane)
        .enumerate()
        .for_each(|(i, plane)| {
            let b = bias[i % op.channels].to_f64() as f32;
            for v in plane.iter_mut() {
                let y = v.to_f64() as f32 + b;
                *v = T::from_f64(if op.silu {
                    (y / (1.0 + (-y).exp())) as f64
                } else {
                    y as f64
                });
            }
        });
    out
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(kernel_f32(self, cpu_slice(s1, l1)?, cpu_slice(s2, l2)?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(kernel(self, cpu_slice(s1, l1)?, cpu_slice(s2, l2)?))
            }
            _ => candle::bail!(
                "bias-act: unsupported dtypes {:?}, {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// `xs + bias` per channel, then SiLU when `silu`; evaluation only (no gradient).
///
/// # Shapes
/// `xs: [B, C, H, W]`, `bias: [C]` → `[B, C, H, W]`
pub fn bias_act(xs: &Tensor, bias: &Tensor, silu: bool) -> Result<Tensor> {
    let (_, c, h, w) = xs.dims4()?;
    if bias.dims() != [c] {
        candle::bail!("bias-act: bias {:?} for {c} channels", bias.shape())
    }
    if !xs.device().is_cpu() {
        let ys = xs.broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
        return if silu { ys.silu() } else { Ok(ys) };
    }
    let op = BiasAct {
        silu,
        channels: c,
        plane: h * w,
    };
    xs.contiguous()?.apply_op2_no_bwd(&bias.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::Device;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        for i in -8700..=8700 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
        }
        assert!(worst < 2e-7, "{worst}");
    }

    /// Each compiled path the machine can run, against the portable one (odd length).
    #[test]
    fn every_vector_path_equals_the_portable_one() {
        let plane: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 2000) as f32 / 50.0 - 20.0)
            .collect();
        for silu in [false, true] {
            let mut want = plane.clone();
            bias_act_plane(&mut want, 0.3, silu);
            let close = |got: &[f32], path: &str| {
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{path} silu {silu}: {g} vs {w}"
                    );
                }
            };
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    let mut got = plane.clone();
                    // SAFETY: the features were detected.
                    unsafe { bias_act_plane_avx2(&mut got, 0.3, silu) };
                    close(&got, "avx2");
                }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    let mut got = plane.clone();
                    // SAFETY: the features were detected.
                    unsafe { bias_act_plane_avx512(&mut got, 0.3, silu) };
                    close(&got, "avx512");
                }
            }
            let mut got = plane.clone();
            bias_act_in_place(&mut got, 0.3, silu);
            close(&got, "dispatched");
        }
    }

    #[test]
    fn equals_broadcast_add_then_silu() {
        let xs = Tensor::randn(0f32, 2., (2, 3, 4, 5), &Device::Cpu).unwrap();
        let bias = Tensor::randn(0f32, 1., 3, &Device::Cpu).unwrap();
        for silu in [false, true] {
            let want = xs
                .broadcast_add(&bias.reshape((1, 3, 1, 1)).unwrap())
                .unwrap();
            let want = if silu { want.silu().unwrap() } else { want };
            let got = bias_act(&xs, &bias, silu).unwrap();
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-6, "silu {silu}: {diff}");
        }
    }
}
