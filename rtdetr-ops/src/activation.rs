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
/// 2e-7 on [-87, 87], inputs clamped there.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

#[inline(always)]
fn silu_plane(plane: &mut [f32], bias: f32) {
    for v in plane.iter_mut() {
        let y = *v + bias;
        *v = y / (1.0 + exp_f32(-y));
    }
}

/// [`silu_plane`] compiled for AVX2 + FMA, picked at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_plane_avx2(plane: &mut [f32], bias: f32) {
    silu_plane(plane, bias)
}

/// [`silu_plane`] compiled for AVX-512, picked at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn silu_plane_avx512(plane: &mut [f32], bias: f32) {
    silu_plane(plane, bias)
}

fn silu_plane_dispatch(plane: &mut [f32], bias: f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { silu_plane_avx512(plane, bias) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { silu_plane_avx2(plane, bias) };
    }
    silu_plane(plane, bias)
}

/// The f32 case, free of conversions and libm calls so that it vectorises.
fn kernel_f32(op: &BiasAct, xs: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut out = xs.to_vec();
    out.par_chunks_mut(op.plane)
        .enumerate()
        .for_each(|(i, plane)| {
            let b = bias[i % op.channels];
            if op.silu {
                silu_plane_dispatch(plane, b);
            } else {
                plane.iter_mut().for_each(|v| *v += b);
            }
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
