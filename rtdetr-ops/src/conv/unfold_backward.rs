//! Backward of the banded f32 convolution: both gradients from one unfold per band.
//!
//! Through tensors the backward unfolds the whole batch (`B·C·KH·KW·OH·OW` floats, 350 MB for
//! each 3×3 layer of EfficientNetV2-S's first stage at batch 4 and 640×640), multiplies it into a
//! weight gradient per image, builds a column gradient of the same size and folds it. Here each
//! band of output rows is unfolded into cache once and serves both products: the weight gradient
//! accumulates `grad · bandᵀ` per image, the input gradient folds `weightᵀ · grad` band by band.

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::block::parallelism;
use super::geometry::Geometry;
use super::unfold::unfold_band;
use crate::cpu::cpu_slice;

/// `(xs, weight, grad) → [grad_xs, grad_weight]` flattened one after the other, for
/// `xs: [B, C, H, W]`, `weight: [O, C, KH, KW]`, `grad: [B, O, OH, OW]`, all f32 and contiguous.
pub(super) struct ConvGemmGrad {
    pub g: Geometry,
    pub out_channels: usize,
    pub band_bytes: usize,
    pub min_band_columns: usize,
}

impl ConvGemmGrad {
    fn backward(&self, xs: &[f32], weight: &[f32], grad: &[f32]) -> Vec<f32> {
        let g = &self.g;
        let (rows, cols, o) = (g.rows(), g.cols(), self.out_channels);
        let band_rows = (self.band_bytes / (4 * rows * g.ow))
            .max(self.min_band_columns.div_ceil(g.ow))
            .clamp(1, g.oh);
        let image_len = g.c * g.plane();
        let mut out = vec![0f32; g.b * image_len + o * rows];
        let (grad_xs, grad_w) = out.split_at_mut(g.b * image_len);
        let mut per_image_grad_w = vec![0f32; g.b * o * rows];
        // Images in parallel and the bands of an image in turn: neighbouring bands fold into
        // shared input rows.
        let parallelism = parallelism(g.b);
        grad_xs
            .par_chunks_mut(image_len)
            .zip(per_image_grad_w.par_chunks_mut(o * rows))
            .enumerate()
            .for_each(|(image, (grad_x, grad_w))| {
                let xs = &xs[image * image_len..][..image_len];
                let grad = &grad[image * o * cols..][..o * cols];
                let mut band = vec![0f32; rows * band_rows * g.ow];
                let mut grad_band = vec![0f32; rows * band_rows * g.ow];
                for oy0 in (0..g.oh).step_by(band_rows) {
                    let n = band_rows.min(g.oh - oy0) * g.ow;
                    let (band, grad_band) = (&mut band[..rows * n], &mut grad_band[..rows * n]);
                    unfold_band(g, xs, oy0, band);
                    let grad_out = &grad[oy0 * g.ow..];
                    // SAFETY: grad_out's o rows of n columns (row stride cols) end inside the
                    // image's o×cols gradient; band and grad_band hold rows×n, grad_w o×rows and
                    // weight o×rows, all row-major; the transposes are read through strides.
                    unsafe {
                        // grad_w (o × rows) += grad_out (o × n) · bandᵀ (n × rows)
                        gemm::gemm(
                            o,
                            rows,
                            n,
                            grad_w.as_mut_ptr(),
                            1,
                            rows as isize,
                            true,
                            grad_out.as_ptr(),
                            1,
                            cols as isize,
                            band.as_ptr(),
                            n as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            parallelism,
                        );
                        // grad_band (rows × n) = weightᵀ (rows × o) · grad_out (o × n)
                        gemm::gemm(
                            rows,
                            n,
                            o,
                            grad_band.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            weight.as_ptr(),
                            rows as isize,
                            1,
                            grad_out.as_ptr(),
                            1,
                            cols as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            parallelism,
                        );
                    }
                    fold_band(g, grad_band, oy0, grad_x);
                }
            });
        for image in per_image_grad_w.chunks_exact(o * rows) {
            for (total, &part) in grad_w.iter_mut().zip(image) {
                *total += part;
            }
        }
        out
    }
}

/// The adjoint of [`unfold_band`]: adds the band's `C·KH·KW` rows of `n` columns (output rows
/// `oy0..oy0 + n / OW`) into the input pixels they were read from.
fn fold_band(g: &Geometry, band: &[f32], oy0: usize, image: &mut [f32]) {
    let n = band.len() / g.rows();
    for (c, xs) in image.chunks_exact_mut(g.plane()).enumerate() {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (x_lo, x_hi, ix0) = g.valid(kx, g.w, g.ow);
                let row = &band[((c * g.kh + ky) * g.kw + kx) * n..][..n];
                for (oy, seg) in (oy0..).zip(row.chunks_exact(g.ow)) {
                    let iy = (oy * g.stride + ky)
                        .checked_sub(g.padding)
                        .filter(|&iy| iy < g.h);
                    let Some(iy) = iy else {
                        continue;
                    };
                    let dst = &mut xs[iy * g.w..][ix0..g.w];
                    let src = &seg[x_lo..x_hi];
                    if g.stride == 1 {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (d, &s) in dst.iter_mut().step_by(g.stride).zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp3 for ConvGemmGrad {
    fn name(&self) -> &'static str {
        "conv2d-gemm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let out = self.backward(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
                let len = out.len();
                Ok((CpuStorage::F32(out), len.into()))
            }
            _ => candle::bail!(
                "conv2d-gemm-grad: f32 only, got {:?}, {:?} and {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        }
    }
}
