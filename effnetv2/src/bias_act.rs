//! `act(x + bias)` in one pass over the activation, for evaluation with batch norm folded into
//! the preceding convolution (unfused, that is three to four passes: scale, shift, activation).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

struct BiasAct {
    silu: bool,
    channels: usize,
    plane: usize,
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
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle::bail!("bias-act: operands must be contiguous")
        };
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(b)) => {
                CpuStorage::F32(kernel(self, &x[a0..a1], &b[b0..b1]))
            }
            (CpuStorage::F64(x), CpuStorage::F64(b)) => {
                CpuStorage::F64(kernel(self, &x[a0..a1], &b[b0..b1]))
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
    use candle::Device;

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
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-6, "silu {silu}: {diff}");
        }
    }
}
