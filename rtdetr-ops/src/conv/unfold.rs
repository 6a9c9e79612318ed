//! Full (`groups = 1`) convolution as im2col and one matrix product per image.
//!
//! candle's CPU conv2d reaches about a third of its own matmul's throughput on the 3×3
//! convolutions of this model; unfolding the input once and calling the matmul directly closes
//! most of that gap. The unfold has its own backward (fold), so the path trains too, and its
//! input gradient is right for any H/W (candle's conv2d backward fails when H and W leave
//! different remainders by the stride).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::block::{parallelism, BlockedOut};
use super::geometry::Geometry;
use super::unfold_backward::ConvGemmGrad;
use crate::activation::Epilogue;
use crate::cpu::cpu_slice;

/// The unfold of one convolution.
type Unfold = Geometry;

impl Geometry {
    /// Rows of the unfolded matrix, `C·KH·KW`.
    pub(super) fn rows(&self) -> usize {
        self.c * self.taps()
    }

    /// Columns of the unfolded matrix, `OH·OW`.
    pub(super) fn cols(&self) -> usize {
        self.out_plane()
    }
}

/// `[B, C, H, W]` → `[B, C·KH·KW, OH·OW]`: column `oy·OW + ox` of row `(c·KH + ky)·KW + kx` holds
/// `x[c, oy·s + ky − p, ox·s + kx − p]` (zero outside).
fn unfold<T: WithDType>(g: &Unfold, xs: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.b * g.rows() * g.cols()];
    unfold_into(g, xs, &mut out);
    out
}

/// [`unfold`] of `xs.len() / (C·H·W)` images into `out`, which must hold zeros wherever the
/// kernel falls on padding.
fn unfold_into<T: WithDType>(g: &Unfold, xs: &[T], out: &mut [T]) {
    let plane = g.h * g.w;
    let taps = g.kh * g.kw;
    out.par_chunks_mut(taps * g.cols())
        .zip(xs.par_chunks(plane))
        .for_each(|(out, xs)| {
            for ky in 0..g.kh {
                let (y_lo, y_hi, iy0) = g.valid(ky, g.h, g.oh);
                for kx in 0..g.kw {
                    let (x_lo, x_hi, ix0) = g.valid(kx, g.w, g.ow);
                    let row = &mut out[(ky * g.kw + kx) * g.cols()..][..g.cols()];
                    for (n, oy) in (y_lo..y_hi).enumerate() {
                        let src = &xs[(iy0 + n * g.stride) * g.w..][..g.w];
                        let dst = &mut row[oy * g.ow..][x_lo..x_hi];
                        if g.stride == 1 {
                            dst.copy_from_slice(&src[ix0..ix0 + dst.len()]);
                        } else {
                            for (d, &s) in dst.iter_mut().zip(src[ix0..].iter().step_by(g.stride)) {
                                *d = s;
                            }
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`unfold`]: sums every column entry back into its input pixel.
fn fold<T: WithDType>(g: &Unfold, cols: &[T]) -> Vec<T> {
    let plane = g.h * g.w;
    let taps = g.kh * g.kw;
    let mut out = vec![T::zero(); g.b * g.c * plane];
    out.par_chunks_mut(plane).enumerate().for_each(|(bc, xs)| {
        let cols = &cols[bc * taps * g.cols()..][..taps * g.cols()];
        for ky in 0..g.kh {
            let (y_lo, y_hi, iy0) = g.valid(ky, g.h, g.oh);
            for kx in 0..g.kw {
                let (x_lo, x_hi, ix0) = g.valid(kx, g.w, g.ow);
                let row = &cols[(ky * g.kw + kx) * g.cols()..][..g.cols()];
                for (n, oy) in (y_lo..y_hi).enumerate() {
                    let dst = &mut xs[(iy0 + n * g.stride) * g.w..][..g.w];
                    let src = &row[oy * g.ow..][x_lo..x_hi];
                    for (d, &s) in dst[ix0..].iter_mut().step_by(g.stride).zip(src) {
                        *d += s;
                    }
                }
            }
        }
    });
    out
}

struct Im2Col(Unfold);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = float_dispatch!("im2col", s.dtype(), CpuStorage, |T| {
            unfold::<T>(g, cpu_slice(s, l)?)
        }, F32: f32, F64: f64);
        Ok((out, (g.b, g.rows(), g.cols()).into()))
    }

    fn bwd(&self, _xs: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

struct Col2Im(Unfold);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = float_dispatch!("col2im", s.dtype(), CpuStorage, |T| {
            fold::<T>(g, cpu_slice(s, l)?)
        }, F32: f32, F64: f64);
        Ok((out, (g.b, g.c, g.h, g.w).into()))
    }
}

/// Bytes of unfolded input per band: small enough to stay in the core's cache, next to the packed
/// weights, between the unfold and the matrix product that reads it back (measured: 256 KiB runs
/// the 3×3 convolutions of EfficientNetV2-S 1.1–2× faster than one unfold of the whole image).
const BAND_BYTES: usize = 256 << 10;

/// The fewest output columns per band, whatever the band's bytes: gemm packs the whole weight
/// matrix on every call, which for the 256-channel layers (2304 rows, 28 columns in 256 KiB)
/// costs as much as the product (measured with `rtdetr bench --layers`: 144 → 186 GFLOP/s).
const MIN_BAND_COLUMNS: usize = 128;

/// [`unfold`] of the output rows `oy0..oy0 + n / OW` of one image into `out` (`C·KH·KW` rows of
/// `n` columns), zeros included.
pub(super) fn unfold_band(g: &Unfold, image: &[f32], oy0: usize, out: &mut [f32]) {
    let n = out.len() / g.rows();
    let plane = g.h * g.w;
    for (c, xs) in image.chunks_exact(plane).enumerate() {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (x_lo, x_hi, ix0) = g.valid(kx, g.w, g.ow);
                let row = &mut out[((c * g.kh + ky) * g.kw + kx) * n..][..n];
                for (oy, seg) in (oy0..).zip(row.chunks_exact_mut(g.ow)) {
                    let iy = (oy * g.stride + ky)
                        .checked_sub(g.padding)
                        .filter(|&iy| iy < g.h);
                    let Some(iy) = iy else {
                        seg.fill(0.0);
                        continue;
                    };
                    seg[..x_lo].fill(0.0);
                    seg[x_hi..].fill(0.0);
                    let src = &xs[iy * g.w..][ix0..];
                    let dst = &mut seg[x_lo..x_hi];
                    if g.stride == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        for (d, &s) in dst.iter_mut().zip(src.iter().step_by(g.stride)) {
                            *d = s;
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// The unfolded band of the last convolution run on this thread.
    static BAND: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Convolution forward as unfold + gemm per band of output rows; backward band by band too
/// ([`ConvGemmGrad`]).
struct ConvGemm {
    g: Unfold,
    out_channels: usize,
    band_bytes: usize,
    min_band_columns: usize,
    epilogue: Option<Epilogue>,
}

impl ConvGemm {
    /// Unfolds bands of output rows small enough to stay in cache and multiplies each with the
    /// weights straight into its columns of the output; bands run in parallel.
    fn forward_f32(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        let g = &self.g;
        let (rows, cols, o) = (g.rows(), g.cols(), self.out_channels);
        let band_rows = (self.band_bytes / (4 * rows * g.ow))
            .max(self.min_band_columns.div_ceil(g.ow))
            .clamp(1, g.oh);
        let bands = g.oh.div_ceil(band_rows);
        let mut out = vec![0f32; g.b * o * cols];
        let dst = BlockedOut::new(&mut out, cols);
        let image_len = g.c * g.h * g.w;
        let parallelism = parallelism(g.b * bands);
        (0..g.b * bands).into_par_iter().for_each(|job| {
            let (image, band) = (job / bands, job % bands);
            let oy0 = band * band_rows;
            let n = (band_rows.min(g.oh - oy0)) * g.ow;
            // Taken out of the thread-local for the product: a parallel gemm lets this thread
            // steal another band while it waits, and that band must not find the cell borrowed.
            let mut buffer = BAND.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
            buffer.resize(rows * n.max(band_rows * g.ow), 0.0);
            let band_buffer = &mut buffer[..rows * n];
            unfold_band(g, &xs[image * image_len..][..image_len], oy0, band_buffer);
            let at = image * o * cols + oy0 * g.ow;
            // SAFETY: the o×n block at column oy0·OW of image `image`'s o×cols output is this
            // band's alone; the weight is o×rows, the band rows×n, each inside its slice.
            unsafe {
                dst.multiply(at, (o, n, rows), weight, band_buffer, n, parallelism);
                if let Some(epilogue) = &self.epilogue {
                    dst.finish(at, o, n, epilogue);
                }
            }
            BAND.with(|cell| {
                let mut kept = cell.borrow_mut();
                if kept.capacity() < buffer.capacity() {
                    *kept = buffer;
                }
            });
        });
        out
    }
}

impl candle::CustomOp2 for ConvGemm {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let shape: Shape = (g.b, self.out_channels, g.oh, g.ow).into();
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok((
                CpuStorage::F32(self.forward_f32(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?)),
                shape,
            )),
            _ => candle::bail!(
                "conv2d-gemm: f32 only, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        }
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = ConvGemmGrad {
            g: self.g,
            out_channels: self.out_channels,
            band_bytes: self.band_bytes,
            min_band_columns: self.min_band_columns,
        };
        let both = xs.apply_op3_no_bwd(weight, &grad.contiguous()?, &op)?;
        let split = xs.elem_count();
        let grad_xs = both.narrow(0, 0, split)?.reshape(xs.shape())?;
        let grad_w = both
            .narrow(0, split, weight.elem_count())?
            .reshape(weight.shape())?;
        Ok((Some(grad_xs), Some(grad_w)))
    }
}

/// `F.conv2d(xs, weight, stride, padding)` without bias, `groups = 1`, as im2col + matmul.
///
/// # Shapes
/// `xs: [B, C, H, W]`, `weight: [O, C, KH, KW]` → `[B, O, (H + 2p − KH)/s + 1, (W + 2p − KW)/s + 1]`
pub fn conv2d_unfolded(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (o, wc, kh, kw) = weight.dims4()?;
    if wc != xs.dim(1)? {
        candle::bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.shape(),
            xs.shape()
        )
    }
    let g = Geometry::new(xs.dims4()?, (kh, kw), stride, padding, "conv2d")?;
    let (b, oh, ow) = (g.b, g.oh, g.ow);
    if xs.dtype() == candle::DType::F32 && weight.dtype() == candle::DType::F32 {
        let op = ConvGemm {
            g,
            out_channels: o,
            band_bytes: BAND_BYTES,
            min_band_columns: MIN_BAND_COLUMNS,
            epilogue: None,
        };
        return xs.contiguous()?.apply_op2(&weight.contiguous()?, op);
    }
    let cols = xs.contiguous()?.apply_op1(Im2Col(g))?;
    let weight = weight
        .reshape((1, o, g.rows()))?
        .broadcast_as((b, o, g.rows()))?;
    weight.matmul(&cols)?.reshape((b, o, oh, ow))
}

/// [`conv2d_unfolded`] of f32 CPU tensors followed by `epilogue`, applied band by band while the
/// band's output is in cache; evaluation only (no gradient).
pub(crate) fn conv2d_unfolded_fused(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    epilogue: Epilogue,
) -> Result<Tensor> {
    let (o, _, kh, kw) = weight.dims4()?;
    let g = Geometry::new(xs.dims4()?, (kh, kw), stride, padding, "conv2d")?;
    let op = ConvGemm {
        g,
        out_channels: o,
        band_bytes: BAND_BYTES,
        min_band_columns: MIN_BAND_COLUMNS,
        epilogue: Some(epilogue),
    };
    xs.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::{DType, Device, Var};

    fn random(shape: &[usize]) -> Tensor {
        Tensor::randn(0f64, 1., shape, &Device::Cpu).unwrap()
    }

    /// (input, weight, stride, padding), all with H and W leaving the same remainder so candle's
    /// own backward works as the reference.
    const SAME_REMAINDER: &[([usize; 4], [usize; 4], usize, usize)] = &[
        ([2, 3, 8, 10], [4, 3, 3, 3], 1, 1),
        ([1, 2, 9, 7], [3, 2, 3, 3], 2, 1),
        ([2, 4, 6, 6], [5, 4, 1, 1], 1, 0),
        ([1, 3, 11, 9], [2, 3, 5, 5], 2, 2),
        ([1, 2, 8, 5], [2, 2, 3, 3], 3, 0),
    ];

    #[test]
    fn forward_and_gradients_equal_candle_conv2d() {
        for &(xs_shape, w_shape, stride, padding) in SAME_REMAINDER {
            let xs = Var::from_tensor(&random(&xs_shape)).unwrap();
            let w = Var::from_tensor(&random(&w_shape)).unwrap();
            let ours = conv2d_unfolded(&xs, &w, stride, padding).unwrap();
            let theirs = xs.conv2d(&w, padding, stride, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(
                max_abs_diff(&ours, &theirs) < 1e-12,
                "{xs_shape:?} {w_shape:?}"
            );
            let probe = random(ours.dims());
            let g1 = (ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for var in [&xs, &w] {
                assert!(
                    max_abs_diff(g1.get(var).unwrap(), g2.get(var).unwrap()) < 1e-10,
                    "{xs_shape:?} {w_shape:?}"
                );
            }
        }
    }

    #[test]
    fn input_gradient_with_different_remainders_matches_finite_differences() {
        // 5×6 with stride 2: the case candle's conv2d backward rejects.
        let xs = random(&[1, 2, 5, 6]);
        let w = random(&[3, 2, 3, 3]);
        let probe = random(&[1, 3, 3, 3]);
        let loss = |xs: &Tensor| -> f64 {
            (conv2d_unfolded(xs, &w, 2, 1).unwrap() * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let var = Var::from_tensor(&xs).unwrap();
        let grads = (conv2d_unfolded(&var, &w, 2, 1).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let analytic: Vec<f64> = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = xs.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for (i, &g) in analytic.iter().enumerate() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                Tensor::from_vec(v, xs.shape(), &Device::Cpu).unwrap()
            };
            let numeric = (loss(&at(eps)) - loss(&at(-eps))) / (2. * eps);
            assert!(
                (numeric - g).abs() < 1e-6 * (1. + g.abs()),
                "index {i}: {numeric} vs {g}"
            );
        }
    }

    #[test]
    fn f32_bands_equal_candle_conv2d() {
        // Bands of one output row up to the whole image, strides 1 and 2, batch 2.
        for (xs_shape, w_shape, stride, padding) in [
            ([2, 3, 11, 7], [5, 3, 3, 3], 1, 1),
            ([2, 4, 12, 9], [3, 4, 3, 3], 2, 1),
            ([1, 2, 7, 5], [4, 2, 5, 5], 1, 2),
        ] {
            let xs = random(&xs_shape).to_dtype(DType::F32).unwrap();
            let w = random(&w_shape).to_dtype(DType::F32).unwrap();
            let want = xs.conv2d(&w, padding, stride, 1, 1).unwrap();
            let kernel = (w_shape[2], w_shape[3]);
            let g = Geometry::new(xs.dims4().unwrap(), kernel, stride, padding, "test").unwrap();
            let bias = random(&[w_shape[0]]).to_dtype(DType::F32).unwrap();
            let epilogues = [None, Some(false), Some(true)];
            for (band_rows, silu) in [1, 2, 3, g.oh]
                .into_iter()
                .flat_map(|r| epilogues.map(|e| (r, e)))
            {
                let op = ConvGemm {
                    g,
                    out_channels: w_shape[0],
                    band_bytes: band_rows * 4 * g.rows() * g.ow,
                    min_band_columns: 1,
                    epilogue: silu.map(|silu| Epilogue {
                        bias: bias.to_vec1().unwrap(),
                        silu,
                    }),
                };
                let got = xs.apply_op2_no_bwd(&w, &op).unwrap();
                let want = match silu {
                    None => want.clone(),
                    Some(silu) => crate::bias_act(&want, &bias, silu).unwrap(),
                };
                assert_eq!(got.dims(), want.dims());
                let diff = max_abs_diff(
                    &got.to_dtype(DType::F64).unwrap(),
                    &want.to_dtype(DType::F64).unwrap(),
                );
                assert!(
                    diff < 1e-5,
                    "{xs_shape:?} {w_shape:?} bands of {band_rows}, epilogue {silu:?}: {diff}"
                );
            }
        }
    }

    #[test]
    fn f32_band_gradients_equal_the_f64_unfold() {
        // Different remainders by the stride, 5×5 kernels, channels and widths off any block,
        // bands of one row up to the whole image, batch 1 and 3.
        for (xs_shape, w_shape, stride, padding) in [
            ([3, 3, 11, 7], [5, 3, 3, 3], 1, 1),
            ([2, 5, 9, 12], [3, 5, 3, 3], 2, 1),
            ([1, 2, 7, 5], [4, 2, 5, 5], 1, 2),
            ([2, 17, 5, 6], [6, 17, 3, 3], 2, 1),
        ] {
            let xs64 = Var::from_tensor(&random(&xs_shape)).unwrap();
            let w64 = Var::from_tensor(&random(&w_shape)).unwrap();
            let out = conv2d_unfolded(&xs64, &w64, stride, padding).unwrap();
            let probe = random(out.dims());
            let want = (out * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let kernel = (w_shape[2], w_shape[3]);
            let [b, c, h, w] = xs_shape;
            let g = Geometry::new((b, c, h, w), kernel, stride, padding, "test").unwrap();
            for band_rows in [1, 2, 3, g.oh] {
                let f32_var = |v: &Var| Var::from_tensor(&v.to_dtype(DType::F32).unwrap());
                let (xs, w) = (f32_var(&xs64).unwrap(), f32_var(&w64).unwrap());
                let op = ConvGemm {
                    g,
                    out_channels: w_shape[0],
                    band_bytes: band_rows * 4 * g.rows() * g.ow,
                    min_band_columns: 1,
                    epilogue: None,
                };
                let out = xs.apply_op2(&w, op).unwrap();
                let probe = probe.to_dtype(DType::F32).unwrap();
                let got = (out * probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                for (ours, theirs) in [(&xs, &xs64), (&w, &w64)] {
                    let ours = got.get(ours).unwrap().to_dtype(DType::F64).unwrap();
                    let theirs = want.get(theirs).unwrap();
                    assert_eq!(ours.dims(), theirs.dims());
                    let diff = max_abs_diff(&ours, theirs);
                    assert!(
                        diff < 1e-4,
                        "{xs_shape:?} {w_shape:?} bands of {band_rows}: {diff}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_path() {
        let xs = random(&[1, 3, 9, 9]).to_dtype(DType::F32).unwrap();
        let w = random(&[4, 3, 3, 3]).to_dtype(DType::F32).unwrap();
        let ours = conv2d_unfolded(&xs, &w, 2, 1).unwrap();
        let theirs = xs.conv2d(&w, 1, 2, 1, 1).unwrap();
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5);
    }
}
