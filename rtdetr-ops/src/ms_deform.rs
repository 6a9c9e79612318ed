//! Multi-scale deformable sampling, the op inside ultralytics' `MSDeformAttn`: for each query
//! and head, the attention-weighted sum of bilinear samples (`F.grid_sample` semantics) over
//! feature levels and points. One pass on the CPU (f32) and on CUDA (`kernels/ms_deform.cu`),
//! with its own backward; a composite of gathers ([`sample_bilinear`]) elsewhere.

use candle::{DType, Result, Tensor};
use rayon::prelude::*;

/// Bilinear sampling of `value` maps at normalised locations, as
/// `F.grid_sample(value, 2·loc − 1, mode='bilinear', padding_mode='zeros', align_corners=False)`:
/// pixel `(loc_x·w − 0.5, loc_y·h − 0.5)`, neighbours outside the map contribute zero. Built from
/// gathers, so it is differentiable in `value` and `loc` on every device.
///
/// # Shapes
/// `value: [B, G, h·w, D]` (row-major), `loc: [B, G, N, 2]` (x, y) → `[B, G, N, D]`
pub fn sample_bilinear(value: &Tensor, h: usize, w: usize, loc: &Tensor) -> Result<Tensor> {
    let (b, g, hw, d) = value.dims4()?;
    if hw != h * w {
        candle::bail!("sample_bilinear: {hw} values for a {h}×{w} map")
    }
    let n = loc.dim(2)?;
    let px = (loc.narrow(3, 0, 1)?.squeeze(3)? * w as f64)?.affine(1.0, -0.5)?;
    let py = (loc.narrow(3, 1, 1)?.squeeze(3)? * h as f64)?.affine(1.0, -0.5)?;
    let x0 = px.detach().floor()?;
    let y0 = py.detach().floor()?;
    let fx = (&px - &x0)?;
    let fy = (&py - &y0)?;
    let inside = |t: &Tensor, size: usize| -> Result<Tensor> {
        let lo = t.ge(0f64)?.to_dtype(value.dtype())?;
        let hi = t.lt(size as f64)?.to_dtype(value.dtype())?;
        lo * hi
    };
    let mut out: Option<Tensor> = None;
    for (dy, dx) in [(0., 0.), (0., 1.), (1., 0.), (1., 1.)] {
        let xi = (&x0 + dx)?;
        let yi = (&y0 + dy)?;
        let wx = if dx == 0. {
            fx.affine(-1.0, 1.0)?
        } else {
            fx.clone()
        };
        let wy = if dy == 0. {
            fy.affine(-1.0, 1.0)?
        } else {
            fy.clone()
        };
        let weight = ((wx * wy)? * (inside(&xi, w)? * inside(&yi, h)?)?)?;
        let flat = (yi.clamp(0f64, (h - 1) as f64)? * w as f64)?
            .add(&xi.clamp(0f64, (w - 1) as f64)?)?
            .to_dtype(DType::U32)?;
        let index = flat
            .unsqueeze(3)?
            .broadcast_as((b, g, n, d))?
            .contiguous()?;
        let term = value
            .gather(&index, 2)?
            .broadcast_mul(&weight.unsqueeze(3)?)?;
        out = Some(match out {
            None => term,
            Some(acc) => (acc + term)?,
        });
    }
    out.ok_or_else(|| candle::Error::Msg("unreachable".into()))
}

/// The whole sampling in one pass ([`SampleOp`]): for each query and head, the attention-weighted
/// sum of bilinear samples (as [`sample_bilinear`]) over levels and points. The CPU runs it for
/// f32 (evaluation and training; the gather-based composite keeps about 400 MB of gathered copies
/// per layer for a batch of 4); CUDA runs `kernels/ms_deform.cu` for evaluation (f32, f64, bf16)
/// and training (f32, f64).
///
/// Operands: `value: [B, S, dim]`, `loc: [B, Q, heads, L·P, 2]`, `weights: [B, Q, heads, L·P]`,
/// contiguous → `[B, Q, dim]`.
#[derive(Debug, Clone)]
struct Sampler {
    shapes: Vec<(usize, usize)>,
    heads: usize,
    points: usize,
}

/// Which pass of the sampling an op runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pass {
    /// `(value, loc, weights)` → `[B, Q, dim]`.
    Forward,
    /// `(grad_out, loc, weights)` → d`value` `[B, S, dim]`.
    GradValue,
    /// `(value, loc, grad_out)` → `[B, Q, heads, L·P, 3]`: d/dx and d/dy without the attention
    /// weight, and d/dweight.
    GradSampling,
}

/// One pass of [`Sampler`] as a candle op; only the forward pass is differentiated (through the
/// other two).
struct SampleOp {
    sampler: Sampler,
    pass: Pass,
}

#[cfg(feature = "cuda")]
impl SampleOp {
    /// `(b, q, s, dim)` from the operands' layouts and the output shape.
    fn sizes(
        &self,
        l1: &candle::Layout,
        l2: &candle::Layout,
    ) -> Result<([usize; 4], candle::Shape)> {
        let sm = &self.sampler;
        let q = l2.shape().dims()[1];
        let (b, first, dim) = l1.shape().dims3()?;
        let (s, shape): (usize, candle::Shape) = match self.pass {
            Pass::Forward => (first, (b, q, dim).into()),
            Pass::GradValue => (sm.tokens(), (b, sm.tokens(), dim).into()),
            Pass::GradSampling => (
                first,
                (b, q, sm.heads, sm.shapes.len() * sm.points, 3).into(),
            ),
        };
        Ok(([b, q, s, dim], shape))
    }
}

impl candle::CustomOp3 for SampleOp {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "ms-deform-sample",
            Pass::GradValue => "ms-deform-grad-value",
            Pass::GradSampling => "ms-deform-grad-sampling",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &candle::CpuStorage,
        l1: &candle::Layout,
        s2: &candle::CpuStorage,
        l2: &candle::Layout,
        s3: &candle::CpuStorage,
        l3: &candle::Layout,
    ) -> Result<(candle::CpuStorage, candle::Shape)> {
        let operands = [(s1, l1), (s2, l2), (s3, l3)];
        match self.pass {
            Pass::Forward => self.sampler.forward_cpu(operands),
            Pass::GradValue => self.sampler.grad_value_cpu(operands),
            Pass::GradSampling => self.sampler.grad_sampling_cpu(operands),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle::CudaStorage,
        l1: &candle::Layout,
        s2: &candle::CudaStorage,
        l2: &candle::Layout,
        s3: &candle::CudaStorage,
        l3: &candle::Layout,
    ) -> Result<(candle::CudaStorage, candle::Shape)> {
        let ([b, q, s, dim], shape) = self.sizes(l1, l2)?;
        let name = match self.pass {
            Pass::Forward => "ms_deform_fwd",
            Pass::GradValue => "ms_deform_grad_value",
            Pass::GradSampling => "ms_deform_grad_sampling",
        };
        let sizes = self.sampler.sizes(b, q, s, dim);
        let storage = self
            .sampler
            .launch(name, [(s1, l1), (s2, l2), (s3, l3)], sizes)?;
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        value: &Tensor,
        loc: &Tensor,
        weights: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.pass != Pass::Forward {
            candle::bail!("{}: no second derivative", self.name())
        }
        let pass = |pass| SampleOp {
            sampler: self.sampler.clone(),
            pass,
        };
        let grad = grad.contiguous()?;
        let grad_value = grad.apply_op3_no_bwd(loc, weights, &pass(Pass::GradValue))?;
        let parts = value.apply_op3_no_bwd(loc, &grad, &pass(Pass::GradSampling))?;
        let grad_loc = parts
            .narrow(4, 0, 2)?
            .broadcast_mul(&weights.unsqueeze(4)?)?;
        let grad_weights = parts.narrow(4, 2, 1)?.squeeze(4)?;
        Ok((Some(grad_value), Some(grad_loc), Some(grad_weights)))
    }
}

impl Sampler {
    /// The forward pass on the CPU (f32): operands `value`, `loc`, `weights` → `[B, Q, dim]`.
    fn forward_cpu(
        &self,
        [(s1, l1), (s2, l2), (s3, l3)]: [(&candle::CpuStorage, &candle::Layout); 3],
    ) -> Result<(candle::CpuStorage, candle::Shape)> {
        let what = "ms-deform-sample";
        let value = f32_operand(what, s1, l1)?;
        let (loc, weights) = (f32_operand(what, s2, l2)?, f32_operand(what, s3, l3)?);
        let (b, s, dim) = l1.shape().dims3()?;
        let q = l2.shape().dims()[1];
        let (heads, points, levels) = (self.heads, self.points, self.shapes.len());
        let dh = dim / heads;
        let starts: Vec<usize> = self
            .shapes
            .iter()
            .scan(0, |acc, &(h, w)| {
                let start = *acc;
                *acc += h * w;
                Some(start)
            })
            .collect();
        let mut out = vec![0f32; b * q * dim];
        out.par_chunks_mut(dim).enumerate().for_each(|(bq, out)| {
            let batch = bq / q;
            let value = &value[batch * s * dim..][..s * dim];
            for head in 0..heads {
                let acc = &mut out[head * dh..][..dh];
                for (level, (&(h, w), &start)) in self.shapes.iter().zip(&starts).enumerate() {
                    for p in 0..points {
                        let i = ((bq * heads + head) * levels + level) * points + p;
                        let aw = weights[i];
                        let px = loc[2 * i] * w as f32 - 0.5;
                        let py = loc[2 * i + 1] * h as f32 - 0.5;
                        let (x0, y0) = (px.floor(), py.floor());
                        let (fx, fy) = (px - x0, py - y0);
                        for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                            let y = y0 as i64 + dy;
                            if y < 0 || y >= h as i64 {
                                continue;
                            }
                            for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                                let x = x0 as i64 + dx;
                                if x < 0 || x >= w as i64 {
                                    continue;
                                }
                                let token = start + y as usize * w + x as usize;
                                let row = &value[token * dim + head * dh..][..dh];
                                let k = aw * wx * wy;
                                for (a, &v) in acc.iter_mut().zip(row) {
                                    *a += k * v;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok((candle::CpuStorage::F32(out), (b, q, dim).into()))
    }

    /// d out/d`value` on the CPU (f32): operands `grad_out: [B, Q, dim]`, `loc`, `weights` →
    /// `[B, S, dim]`; mirrors `ms_deform_grad_value`.
    fn grad_value_cpu(
        &self,
        [(s1, l1), (s2, l2), (s3, l3)]: [(&candle::CpuStorage, &candle::Layout); 3],
    ) -> Result<(candle::CpuStorage, candle::Shape)> {
        let what = "ms-deform-grad-value";
        let grad = f32_operand(what, s1, l1)?;
        let (loc, weights) = (f32_operand(what, s2, l2)?, f32_operand(what, s3, l3)?);
        let (b, q, dim) = l1.shape().dims3()?;
        let (heads, points, s) = (self.heads, self.points, self.tokens());
        let table = level_table(&self.shapes);
        let levels = table.len();
        let dh = dim / heads;
        let mut out = vec![0f32; b * s * dim];
        // Images in parallel: each scatters only into its own value rows. A value element still
        // sums its contributions in (query, level, point, corner) order.
        out.par_chunks_mut(s * dim)
            .zip(grad.par_chunks(q * dim))
            .enumerate()
            .for_each(|(batch, (out, grad))| {
                for (o, g) in grad.chunks_exact(dim).enumerate() {
                    let bq = batch * q + o;
                    for (head, g) in g.chunks_exact(dh).enumerate() {
                        for (level, &lv) in table.iter().enumerate() {
                            for p in 0..points {
                                let i = ((bq * heads + head) * levels + level) * points + p;
                                let aw = weights[i];
                                for_each_corner(loc, i, lv, |token, wx, wy, _, _| {
                                    let k = aw * wx * wy;
                                    let row = &mut out[token * dim + head * dh..][..dh];
                                    for (o, &g) in row.iter_mut().zip(g) {
                                        *o += g * k;
                                    }
                                });
                            }
                        }
                    }
                }
            });
        Ok((candle::CpuStorage::F32(out), (b, s, dim).into()))
    }

    /// d out/d`loc` before the attention weight, and d out/d`weights`, on the CPU (f32): operands
    /// `value`, `loc`, `grad_out: [B, Q, dim]` → `[B, Q, heads, L·P, 3]`; mirrors
    /// `ms_deform_grad_sampling`.
    fn grad_sampling_cpu(
        &self,
        [(s1, l1), (s2, l2), (s3, l3)]: [(&candle::CpuStorage, &candle::Layout); 3],
    ) -> Result<(candle::CpuStorage, candle::Shape)> {
        let what = "ms-deform-grad-sampling";
        let value = f32_operand(what, s1, l1)?;
        let (loc, grad) = (f32_operand(what, s2, l2)?, f32_operand(what, s3, l3)?);
        let (b, s, dim) = l1.shape().dims3()?;
        let q = l3.shape().dims()[1];
        let (heads, points) = (self.heads, self.points);
        let table = level_table(&self.shapes);
        let levels = table.len();
        let dh = dim / heads;
        let samples = b * q * heads * levels * points;
        let mut out = vec![0f32; samples * 3];
        out.par_chunks_mut(3).enumerate().for_each(|(i, out)| {
            let level = (i / points) % levels;
            let head = (i / (points * levels)) % heads;
            let bq = i / (points * levels * heads);
            let batch = bq / q;
            let (h, w, _) = table[level];
            let g = &grad[bq * dim + head * dh..][..dh];
            let (mut gx, mut gy, mut gw) = (0f32, 0f32, 0f32);
            for_each_corner(loc, i, table[level], |token, wx, wy, sx, sy| {
                let v = &value[(batch * s + token) * dim + head * dh..][..dh];
                let dot: f32 = g.iter().zip(v).map(|(a, b)| a * b).sum();
                gw += wx * wy * dot;
                gx += sx * wy * dot;
                gy += wx * sy * dot;
            });
            out.copy_from_slice(&[gx * w as f32, gy * h as f32, gw]);
        });
        Ok((
            candle::CpuStorage::F32(out),
            (b, q, heads, levels * points, 3).into(),
        ))
    }

    /// The size arguments of the kernels: `b, q, s, dim, heads, levels, points`.
    #[cfg(feature = "cuda")]
    fn sizes(&self, b: usize, q: usize, s: usize, dim: usize) -> [usize; 7] {
        [b, q, s, dim, self.heads, self.shapes.len(), self.points]
    }

    /// Total tokens over the levels.
    fn tokens(&self) -> usize {
        self.shapes.iter().map(|(h, w)| h * w).sum()
    }

    /// Runs `{name}_{dtype}` of `kernels/ms_deform.cu` on three operands of one dtype:
    /// `ms_deform_fwd` (f32, f64, bf16; one thread per output element, `[B, Q, dim]`),
    /// `ms_deform_grad_value` (f32, f64; one thread per `grad_out` element, scattering into a
    /// zeroed `[B, S, dim]`) or `ms_deform_grad_sampling` (f32, f64; one thread per sample,
    /// `[B, Q, heads, L·P, 3]`).
    #[cfg(feature = "cuda")]
    fn launch(
        &self,
        name: &str,
        operands: [(&candle::CudaStorage, &candle::Layout); 3],
        sizes: [usize; 7],
    ) -> Result<candle::CudaStorage> {
        use crate::cuda::{launch, Levels, Out, MS_DEFORM};
        use candle::backend::BackendStorage;
        use candle::cuda_backend::CudaStorageSlice;
        let [b, q, s, dim, heads, levels, points] = sizes;
        let samples = b * q * heads * levels * points;
        let (out, threads) = match name {
            "ms_deform_fwd" => (Out::Written(b * q * dim), b * q * dim),
            "ms_deform_grad_value" => (Out::Accumulated(b * s * dim), b * q * dim),
            _ => (Out::Written(samples * 3), samples),
        };
        let params = (Levels::new(&self.shapes)?, sizes);
        let [(s1, l1), (s2, l2), (s3, l3)] = operands;
        let dev = s1.device();
        let cfg = crate::cuda::elementwise(threads);
        if s1.dtype() == candle::DType::BF16 && name != "ms_deform_fwd" {
            candle::bail!("{name}: bf16 has no backward on CUDA (train in f32)")
        }
        let slice = float_dispatch!(name, s1.dtype(), CudaStorageSlice, |T| {
            let inputs = [
                (s1.as_cuda_slice::<T>()?, l1),
                (s2.as_cuda_slice::<T>()?, l2),
                (s3.as_cuda_slice::<T>()?, l3),
            ];
            launch::<T, T, _>(dev, MS_DEFORM, name, &inputs, out, cfg, &params)?
        }, F32: f32, F64: f64, BF16: half::bf16);
        Ok(candle::CudaStorage {
            slice,
            device: dev.clone(),
        })
    }
}

/// The contiguous f32 elements of an operand.
fn f32_operand<'a>(what: &str, s: &'a candle::CpuStorage, l: &candle::Layout) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (candle::CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle::bail!("{what}: contiguous f32 operands only"),
    }
}

/// Visits the in-map bilinear corners of sample `i` at `level` like the kernels do:
/// `f(token, wx, wy, sx, sy)` with the corner weights and the signs of their derivatives in the
/// fractional offsets.
fn for_each_corner(
    loc: &[f32],
    i: usize,
    (h, w, start): (usize, usize, usize),
    mut f: impl FnMut(usize, f32, f32, f32, f32),
) {
    let px = loc[2 * i] * w as f32 - 0.5;
    let py = loc[2 * i + 1] * h as f32 - 0.5;
    let (x0, y0) = (px.floor(), py.floor());
    let (fx, fy) = (px - x0, py - y0);
    for (dy, wy, sy) in [(0, 1.0 - fy, -1.0), (1, fy, 1.0)] {
        let y = y0 as i64 + dy;
        if y < 0 || y >= h as i64 {
            continue;
        }
        for (dx, wx, sx) in [(0, 1.0 - fx, -1.0), (1, fx, 1.0)] {
            let x = x0 as i64 + dx;
            if x < 0 || x >= w as i64 {
                continue;
            }
            f(start + y as usize * w + x as usize, wx, wy, sx, sy);
        }
    }
}

/// `(h, w, first token)` of each level.
fn level_table(shapes: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut start = 0;
    shapes
        .iter()
        .map(|&(h, w)| {
            start += h * w;
            (h, w, start - h * w)
        })
        .collect()
}

/// Whether [`Sampler`] runs for `value` (else the gather-based composite does): f32 on the CPU
/// (with gradients); on CUDA f32/f64 (with gradients) and bf16 evaluation, up to 8 levels.
fn sampler_runs(value: &Tensor, levels: usize, train: bool) -> bool {
    use candle::DType::{BF16, F32, F64};
    let dtype = value.dtype();
    if value.device().is_cpu() {
        return dtype == F32;
    }
    cfg!(feature = "cuda")
        && value.device().is_cuda()
        && levels <= 8
        && (matches!(dtype, F32 | F64) || (dtype == BF16 && !train))
}

/// [`Sampler`] from differentiable candle ops (gathers through [`sample_bilinear`]), level by
/// level: what any device or dtype without a kernel runs (f64 on the CPU).
fn composite(
    value: &Tensor,
    loc: &Tensor,
    weights: &Tensor,
    shapes: &[(usize, usize)],
    heads: usize,
    points: usize,
) -> Result<Tensor> {
    let (b, q) = (loc.dim(0)?, loc.dim(1)?);
    let dim = value.dim(2)?;
    let dh = dim / heads;
    let mut out: Option<Tensor> = None;
    let mut start = 0;
    for (level, &(h, w)) in shapes.iter().enumerate() {
        // [B, h*w, dim] -> [B, heads, h*w, dh]
        let v = value
            .narrow(1, start, h * w)?
            .reshape((b, h * w, heads, dh))?
            .transpose(1, 2)?
            .contiguous()?;
        start += h * w;
        // [B, Q, heads, P, 2] -> [B, heads, Q*P, 2]
        let loc = loc
            .narrow(3, level * points, points)?
            .transpose(1, 2)?
            .reshape((b, heads, q * points, 2))?;
        let sampled = sample_bilinear(&v, h, w, &loc)?;
        // [B, Q, heads, P] -> [B, heads, Q*P, 1]
        let aw = weights
            .narrow(3, level * points, points)?
            .transpose(1, 2)?
            .reshape((b, heads, q * points, 1))?;
        let level_out = sampled
            .broadcast_mul(&aw)?
            .reshape((b, heads, q, points, dh))?
            .sum(3)?;
        out = Some(match out {
            None => level_out,
            Some(acc) => (acc + level_out)?,
        });
    }
    let Some(out) = out else {
        candle::bail!("MSDeformAttn: no levels")
    };
    if start != value.dim(1)? {
        candle::bail!(
            "MSDeformAttn: shapes cover {start} of {} values",
            value.dim(1)?
        )
    }
    // [B, heads, Q, dh] -> [B, Q, dim]
    out.transpose(1, 2)?.reshape((b, q, dim))
}

/// The sampling of `MSDeformAttn`: `out[b, q, head·dh + d] = Σ_{level, point}
/// weights[b, q, head, level·P + point] · bilinear(value of `level`, loc[b, q, head, level·P + point])[d]`,
/// bilinear as [`sample_bilinear`]. Differentiable in all three operands when `train`; without it
/// no backward graph is kept.
///
/// Runs one fused pass for f32 on the CPU and for f32/f64 (and bf16 evaluation) on CUDA with up to
/// 8 levels, the gather composite otherwise.
///
/// # Shapes
/// `value: [B, S, dim]` with S = Σ h·w over `shapes` (levels stacked, each row-major),
/// `loc: [B, Q, heads, L·P, 2]` (x, y in [0, 1]), `weights: [B, Q, heads, L·P]` → `[B, Q, dim]`
pub fn ms_deform_sample(
    value: &Tensor,
    loc: &Tensor,
    weights: &Tensor,
    shapes: &[(usize, usize)],
    train: bool,
) -> Result<Tensor> {
    let (_, s, dim) = value.dims3()?;
    let (_, _, heads, lp, two) = loc.dims5()?;
    let levels = shapes.len();
    if two != 2 || levels == 0 || lp % levels != 0 || heads == 0 || dim % heads != 0 {
        candle::bail!(
            "ms-deform-sample: loc {:?} does not fit {levels} levels and value {:?}",
            loc.shape(),
            value.shape()
        )
    }
    let tokens: usize = shapes.iter().map(|(h, w)| h * w).sum();
    if tokens != s {
        candle::bail!("ms-deform-sample: shapes cover {tokens} of {s} values")
    }
    let points = lp / levels;
    if !sampler_runs(value, levels, train) {
        return composite(value, loc, weights, shapes, heads, points);
    }
    let op = SampleOp {
        sampler: Sampler {
            shapes: shapes.to_vec(),
            heads,
            points,
        },
        pass: Pass::Forward,
    };
    let (value, loc, weights) = (
        value.contiguous()?,
        loc.contiguous()?,
        weights.contiguous()?,
    );
    if !train {
        let describe = || {
            let (b, q) = (loc.dim(0).unwrap_or(0), loc.dim(1).unwrap_or(0));
            (
                "deformable sampling".to_string(),
                format!("[{b}, {s}, {dim}] at [{q}, {heads}, {lp}]"),
                // 4 corners × (multiply-add for the bilinear weight) per channel and sample.
                (8 * b * q * lp * dim) as u64,
            )
        };
        return crate::profile::timed(describe, || value.apply_op3_no_bwd(&loc, &weights, &op));
    }
    value.apply_op3(&loc, &weights, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::Device;

    /// Loop-based reference of grid_sample(bilinear, zeros, align_corners=False).
    fn naive(value: &[f64], h: usize, w: usize, x: f64, y: f64) -> f64 {
        let (px, py) = (x * w as f64 - 0.5, y * h as f64 - 0.5);
        let (x0, y0) = (px.floor(), py.floor());
        let mut acc = 0.0;
        for (dy, dx) in [(0., 0.), (0., 1.), (1., 0.), (1., 1.)] {
            let (xi, yi) = (x0 + dx, y0 + dy);
            let wgt = (1.0 - (px - xi).abs()) * (1.0 - (py - yi).abs());
            if xi >= 0.0 && yi >= 0.0 && (xi as usize) < w && (yi as usize) < h {
                acc += wgt * value[yi as usize * w + xi as usize];
            }
        }
        acc
    }

    /// The backward pass of [`Sampler`] (what CUDA trains with; its CPU f32 versions mirror the
    /// kernels) against autograd through the composite, with samples on and off the maps.
    #[test]
    fn sampler_gradients_equal_the_composite() {
        use candle::Var;
        let dev = Device::Cpu;
        let shapes = [(5, 7), (3, 4), (2, 2)];
        let (b, q, heads, points, dim) = (2, 6, 2, 3, 8);
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let lp = shapes.len() * points;
        let value = Var::from_tensor(&Tensor::randn(0f32, 1., (b, s, dim), &dev).unwrap()).unwrap();
        let loc =
            Var::from_tensor(&Tensor::rand(-0.2f32, 1.2, (b, q, heads, lp, 2), &dev).unwrap())
                .unwrap();
        let weights =
            Var::from_tensor(&Tensor::rand(0f32, 1., (b, q, heads, lp), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1., (b, q, dim), &dev).unwrap();
        let ours = ms_deform_sample(&value, &loc, &weights, &shapes, true).unwrap();
        let reference = composite(&value, &loc, &weights, &shapes, heads, points).unwrap();
        assert!(max_abs_diff(&ours, &reference) < 1e-5);
        let grads = (ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let want = (reference * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, var) in [("value", &value), ("loc", &loc), ("weights", &weights)] {
            let (got, want) = (grads.get(var).unwrap(), want.get(var).unwrap());
            let scale = max_abs_diff(want, &want.zeros_like().unwrap());
            let diff = max_abs_diff(got, want);
            assert!(
                diff < 1e-4 * scale.max(1.0),
                "{name}: {diff} (scale {scale})"
            );
        }
    }

    #[test]
    fn matches_a_loop_reference_inside_on_edges_and_outside() {
        let (h, w) = (3, 5);
        let value: Vec<f64> = (0..h * w).map(|i| (i as f64 * 0.37).sin()).collect();
        let locs = [
            (0.5, 0.5),
            (0.0, 0.0),
            (1.0, 1.0),
            (0.95, 0.1),
            (-0.3, 0.5),
            (1.2, 1.3),
            (0.13, 0.71),
        ];
        let v = Tensor::from_vec(value.clone(), (1, 1, h * w, 1), &Device::Cpu).unwrap();
        let flat: Vec<f64> = locs.iter().flat_map(|&(x, y)| [x, y]).collect();
        let loc = Tensor::from_vec(flat, (1, 1, locs.len(), 2), &Device::Cpu).unwrap();
        let got: Vec<f64> = sample_bilinear(&v, h, w, &loc)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (&(x, y), g) in locs.iter().zip(got) {
            let want = naive(&value, h, w, x, y);
            assert!((g - want).abs() < 1e-12, "({x}, {y}): {g} vs {want}");
        }
    }
}
