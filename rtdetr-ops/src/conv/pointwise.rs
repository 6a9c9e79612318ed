//! A 1×1 convolution with its bias and activation, for evaluation: one matrix product per block
//! of output columns, the epilogue applied to each block while it is in cache. Unfused, the
//! output of a large 1×1 layer (tens of MB at 640×640) leaves the cache before a separate pass
//! reads it back, twice (a copy and the activation).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::block::{parallelism, BlockedOut};
use crate::activation::Epilogue;
use crate::cpu::cpu_slice;

/// Bytes of input and output columns per block: a block's columns of both fit the core's L2
/// next to the packed weights.
const BLOCK_BYTES: usize = 512 << 10;

struct PointwiseFused {
    images: usize,
    c_in: usize,
    c_out: usize,
    plane: usize,
    block_bytes: usize,
    /// One `[C_out, C_in]` weight per image rather than one for all.
    weight_per_image: bool,
    epilogue: Epilogue,
}

impl PointwiseFused {
    fn forward(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        let (k, o, cols) = (self.c_in, self.c_out, self.plane);
        let block = (self.block_bytes / (4 * (k + o)))
            .next_multiple_of(16)
            .clamp(16, cols.next_multiple_of(16));
        let blocks = cols.div_ceil(block);
        let mut out = vec![0f32; self.images * o * cols];
        let dst = BlockedOut::new(&mut out, cols);
        let parallelism = parallelism(self.images * blocks);
        (0..self.images * blocks).into_par_iter().for_each(|job| {
            let (image, j0) = (job / blocks, (job % blocks) * block);
            let n = block.min(cols - j0);
            let rhs = &xs[image * k * cols + j0..];
            let first = if self.weight_per_image {
                image * o * k
            } else {
                0
            };
            let lhs = &weight[first..][..o * k];
            let at = image * o * cols + j0;
            // SAFETY: the o×n block at column j0 of image `image`'s o×cols output is this job's
            // alone; lhs is o×k and rhs the k×n block at column j0 of the image's k×cols input.
            unsafe {
                dst.multiply(at, (o, n, k), lhs, rhs, cols, parallelism);
                dst.finish(at, o, n, &self.epilogue);
            }
        });
        out
    }
}

impl CustomOp2 for PointwiseFused {
    fn name(&self) -> &'static str {
        "conv1x1-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok((
                CpuStorage::F32(self.forward(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?)),
                (self.images, self.c_out, self.plane).into(),
            )),
            _ => candle::bail!(
                "conv1x1-bias-act: f32 only, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        }
    }
}

/// A 1×1 stride-1 convolution of f32 CPU tensors followed by `epilogue`; no gradient. `weight`
/// is `[C_out, C_in, 1, 1]`, or `[B, C_out, C_in]` for a weight per image.
pub(crate) fn pointwise_fused(xs: &Tensor, weight: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
    pointwise_fused_in_blocks(xs, weight, epilogue, BLOCK_BYTES)
}

fn pointwise_fused_in_blocks(
    xs: &Tensor,
    weight: &Tensor,
    epilogue: Epilogue,
    block_bytes: usize,
) -> Result<Tensor> {
    let (b, c_in, h, w) = xs.dims4()?;
    let (c_out, wc, weight_per_image) = match *weight.dims() {
        [c_out, wc, 1, 1] => (c_out, wc, false),
        [wb, c_out, wc] if wb == b => (c_out, wc, true),
        _ => candle::bail!(
            "conv2d: weight {:?} is not a 1×1 weight or one per image for input {:?}",
            weight.shape(),
            xs.shape()
        ),
    };
    if wc != c_in {
        candle::bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.shape(),
            xs.shape()
        )
    }
    let op = PointwiseFused {
        images: b,
        c_in,
        c_out,
        plane: h * w,
        block_bytes,
        weight_per_image,
        epilogue,
    };
    xs.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &op)?
        .reshape((b, c_out, h, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::Device;

    /// Blocks of 16 columns up to the whole plane, planes not a multiple of 16, batch 2.
    #[test]
    fn equals_conv_then_bias_act() {
        for (b, c_in, c_out, h, w) in [(2, 5, 7, 9, 11), (1, 16, 3, 4, 4), (2, 3, 33, 1, 17)] {
            let xs = Tensor::randn(0f32, 1., (b, c_in, h, w), &Device::Cpu).unwrap();
            let weight = Tensor::randn(0f32, 1., (c_out, c_in, 1, 1), &Device::Cpu).unwrap();
            let bias = Tensor::randn(0f32, 1., c_out, &Device::Cpu).unwrap();
            let conv = xs.conv2d(&weight, 0, 1, 1, 1).unwrap();
            for silu in [false, true] {
                let want = crate::bias_act(&conv, &bias, silu).unwrap();
                for block_bytes in [4 * 16 * (c_in + c_out), 4 * 48 * (c_in + c_out), 1 << 20] {
                    let epilogue = Epilogue {
                        bias: bias.to_vec1().unwrap(),
                        silu,
                    };
                    let got =
                        pointwise_fused_in_blocks(&xs, &weight, epilogue, block_bytes).unwrap();
                    let diff = max_abs_diff(&got, &want);
                    assert!(
                        diff < 1e-5,
                        "{b}×{c_in}→{c_out} {h}×{w}, {block_bytes} B: {diff}"
                    );
                }
            }
        }
    }
}
