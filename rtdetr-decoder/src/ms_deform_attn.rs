use candle::{DType, Result, Tensor, D};
use candle_nn::{Init, Linear, Module, VarBuilder};
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

/// The whole sampling of [`MsDeformAttn`] in one pass: for each query and head, the
/// attention-weighted sum of bilinear samples (as [`sample_bilinear`]) over levels and points.
/// The CPU runs it for f32 (evaluation and training; the gather-based composite keeps about
/// 400 MB of gathered copies per layer for a batch of 4); CUDA runs `kernels/ms_deform.cu` for evaluation (f32, f64, bf16) and training (f32, f64),
/// with the backward pass of [`GradValue`] and [`GradSampling`].
///
/// Operands: `value: [B, S, dim]`, `loc: [B, Q, heads, L·P, 2]`, `weights: [B, Q, heads, L·P]`,
/// contiguous → `[B, Q, dim]`.
#[derive(Debug, Clone)]
struct Sampler {
    shapes: Vec<(usize, usize)>,
    heads: usize,
    points: usize,
}

impl candle::CustomOp3 for Sampler {
    fn name(&self) -> &'static str {
        "ms-deform-sample"
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
        fn slice<'a>(s: &'a candle::CpuStorage, l: &candle::Layout) -> Result<&'a [f32]> {
            match (s, l.contiguous_offsets()) {
                (candle::CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
                _ => candle::bail!("ms-deform-sample: contiguous f32 operands only"),
            }
        }
        let (value, loc, weights) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
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
        let (b, s, dim) = l1.shape().dims3()?;
        let q = l2.shape().dims()[1];
        let sizes = self.sizes(b, q, s, dim);
        let storage = self.launch("ms_deform_fwd", [(s1, l1), (s2, l2), (s3, l3)], sizes)?;
        Ok((storage, (b, q, dim).into()))
    }

    fn bwd(
        &self,
        value: &Tensor,
        loc: &Tensor,
        weights: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_value = grad.apply_op3_no_bwd(loc, weights, &GradValue(self.clone()))?;
        // [B, Q, heads, L·P, 3]: d/dx and d/dy without the attention weight, d/dweight.
        let parts = value.apply_op3_no_bwd(loc, &grad, &GradSampling(self.clone()))?;
        let grad_loc = parts
            .narrow(4, 0, 2)?
            .broadcast_mul(&weights.unsqueeze(4)?)?;
        let grad_weights = parts.narrow(4, 2, 1)?.squeeze(4)?;
        Ok((Some(grad_value), Some(grad_loc), Some(grad_weights)))
    }
}

impl Sampler {
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
        use crate::cuda::launch_ms_deform as run;
        use candle::backend::BackendStorage;
        use candle::cuda_backend::CudaStorageSlice as S;
        let [b, q, s, dim, heads, levels, points] = sizes;
        let samples = b * q * heads * levels * points;
        let (len, zeroed, threads) = match name {
            "ms_deform_fwd" => (b * q * dim, false, b * q * dim),
            "ms_deform_grad_value" => (b * s * dim, true, b * q * dim),
            _ => (samples * 3, false, samples),
        };
        let lv = crate::cuda::Levels::new(&self.shapes)?;
        let [(s1, l1), (s2, l2), (s3, l3)] = operands;
        let dev = s1.device();
        let out = (len, zeroed);
        let slice = match (&s1.slice, &s2.slice, &s3.slice) {
            (S::F32(a), S::F32(b), S::F32(c)) => S::F32(run(
                dev,
                name,
                [(a, l1), (b, l2), (c, l3)],
                out,
                threads,
                &lv,
                &sizes,
            )?),
            (S::F64(a), S::F64(b), S::F64(c)) => S::F64(run(
                dev,
                name,
                [(a, l1), (b, l2), (c, l3)],
                out,
                threads,
                &lv,
                &sizes,
            )?),
            (S::BF16(a), S::BF16(b), S::BF16(c)) if name == "ms_deform_fwd" => S::BF16(run(
                dev,
                name,
                [(a, l1), (b, l2), (c, l3)],
                out,
                threads,
                &lv,
                &sizes,
            )?),
            _ => candle::bail!(
                "{name}: unsupported dtypes {:?}, {:?}, {:?} on CUDA",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
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

/// d[`Sampler`]/d`value`: operands `grad_out: [B, Q, dim]`, `loc`, `weights` → `[B, S, dim]`.
/// The f32 CPU version mirrors `ms_deform_grad_value`.
struct GradValue(Sampler);

impl candle::CustomOp3 for GradValue {
    fn name(&self) -> &'static str {
        "ms-deform-grad-value"
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
        let what = self.name();
        let grad = f32_operand(what, s1, l1)?;
        let (loc, weights) = (f32_operand(what, s2, l2)?, f32_operand(what, s3, l3)?);
        let (b, q, dim) = l1.shape().dims3()?;
        let (heads, points, s) = (self.0.heads, self.0.points, self.0.tokens());
        let table = level_table(&self.0.shapes);
        let levels = table.len();
        let dh = dim / heads;
        let mut out = vec![0f32; b * s * dim];
        // Images in parallel: each scatters only into its own value rows.
        out.par_chunks_mut(s * dim)
            .zip(grad.par_chunks(q * dim))
            .enumerate()
            .for_each(|(batch, (out, grad))| {
                for (o, &g) in grad.iter().enumerate() {
                    let (bq, c) = (batch * q + o / dim, o % dim);
                    let head = c / dh;
                    for (level, &lv) in table.iter().enumerate() {
                        for p in 0..points {
                            let i = ((bq * heads + head) * levels + level) * points + p;
                            let aw = weights[i];
                            for_each_corner(loc, i, lv, |token, wx, wy, _, _| {
                                out[token * dim + c] += g * (aw * wx * wy);
                            });
                        }
                    }
                }
            });
        Ok((candle::CpuStorage::F32(out), (b, s, dim).into()))
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
        let (b, q, dim) = l1.shape().dims3()?;
        let s = self.0.tokens();
        let sizes = self.0.sizes(b, q, s, dim);
        let storage = self.0.launch(
            "ms_deform_grad_value",
            [(s1, l1), (s2, l2), (s3, l3)],
            sizes,
        )?;
        Ok((storage, (b, s, dim).into()))
    }
}

/// d[`Sampler`]/d`loc` before the attention weight, and d[`Sampler`]/d`weights`: operands
/// `value`, `loc`, `grad_out: [B, Q, dim]` → `[B, Q, heads, L·P, 3]`. The f32 CPU version
/// mirrors `ms_deform_grad_sampling`.
struct GradSampling(Sampler);

impl candle::CustomOp3 for GradSampling {
    fn name(&self) -> &'static str {
        "ms-deform-grad-sampling"
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
        let what = self.name();
        let value = f32_operand(what, s1, l1)?;
        let (loc, grad) = (f32_operand(what, s2, l2)?, f32_operand(what, s3, l3)?);
        let (b, s, dim) = l1.shape().dims3()?;
        let q = l3.shape().dims()[1];
        let (heads, points) = (self.0.heads, self.0.points);
        let table = level_table(&self.0.shapes);
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
        let (b, s, dim) = l1.shape().dims3()?;
        let q = l3.shape().dims()[1];
        let sizes = self.0.sizes(b, q, s, dim);
        let (heads, lp) = (self.0.heads, self.0.shapes.len() * self.0.points);
        let storage = self.0.launch(
            "ms_deform_grad_sampling",
            [(s1, l1), (s2, l2), (s3, l3)],
            sizes,
        )?;
        Ok((storage, (b, q, heads, lp, 3).into()))
    }
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

/// ultralytics `MSDeformAttn(d_model, n_levels, n_heads, n_points)` with 4-d (box) references.
#[derive(Debug, Clone)]
pub struct MsDeformAttn {
    sampling_offsets: Linear,
    attention_weights: Linear,
    value_proj: Linear,
    output_proj: Linear,
    heads: usize,
    levels: usize,
    points: usize,
}

fn linear(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = (6.0 / (c_in + c_out) as f64).sqrt();
    let weight = vb.get_with_hints(
        (c_out, c_in),
        "weight",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    let bias = vb.get_with_hints(c_out, "bias", Init::Const(0.))?;
    Ok(Linear::new(weight, Some(bias)))
}

impl MsDeformAttn {
    /// `MSDeformAttn(dim, levels, heads, points)`.
    pub fn new(
        dim: usize,
        levels: usize,
        heads: usize,
        points: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle::bail!(
                "MSDeformAttn {}: {dim} channels do not split into {heads} heads",
                vb.prefix()
            )
        }
        let samples = heads * levels * points;
        Ok(Self {
            sampling_offsets: linear(dim, samples * 2, vb.pp("sampling_offsets"))?,
            attention_weights: linear(dim, samples, vb.pp("attention_weights"))?,
            value_proj: linear(dim, dim, vb.pp("value_proj"))?,
            output_proj: linear(dim, dim, vb.pp("output_proj"))?,
            heads,
            levels,
            points,
        })
    }

    /// Each query samples `points` locations per head and level around its reference box
    /// (`centre + offset / points · size · 0.5`) and sums them with softmax weights taken jointly
    /// over levels and points.
    ///
    /// # Shapes
    /// `query: [B, Q, dim]`, `boxes: [B, Q, 4]` (cx, cy, w, h in [0, 1]), `value: [B, S, dim]` with
    /// S = Σ h·w over `shapes` → `[B, Q, dim]`
    pub fn forward(
        &self,
        query: &Tensor,
        boxes: &Tensor,
        value: &Tensor,
        shapes: &[(usize, usize)],
        train: bool,
    ) -> Result<Tensor> {
        let (b, q, _) = query.dims3()?;
        let (heads, points) = (self.heads, self.points);
        if shapes.len() != self.levels {
            candle::bail!(
                "MSDeformAttn: {} levels given, built for {}",
                shapes.len(),
                self.levels
            )
        }
        let value = self.value_proj.forward(value)?;
        let total = self.levels * points;
        let offsets = self
            .sampling_offsets
            .forward(query)?
            .reshape((b, q, heads, total, 2))?;
        let weights = self
            .attention_weights
            .forward(query)?
            .reshape((b, q, heads, total))?;
        let weights = candle_nn::ops::softmax(&weights, D::Minus1)?;
        let centre = boxes.narrow(2, 0, 2)?.reshape((b, q, 1, 1, 2))?;
        let size = boxes.narrow(2, 2, 2)?.reshape((b, q, 1, 1, 2))?;
        let loc =
            centre.broadcast_add(&(offsets.broadcast_mul(&size)? * (0.5 / points as f64))?)?;

        if sampler_runs(&value, shapes.len(), train) {
            let op = Sampler {
                shapes: shapes.to_vec(),
                heads,
                points,
            };
            let (value, loc, weights) = (
                value.contiguous()?,
                loc.contiguous()?,
                weights.contiguous()?,
            );
            let out = if train {
                value.apply_op3(&loc, &weights, op)?
            } else {
                value.apply_op3_no_bwd(&loc, &weights, &op)?
            };
            return self.output_proj.forward(&out);
        }
        let out = composite(&value, &loc, &weights, shapes, heads, points)?;
        self.output_proj.forward(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn evaluation_kernel_equals_the_differentiable_composite() {
        use candle::DType;
        use candle_nn::VarMap;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let attn = MsDeformAttn::new(32, 3, 4, 4, vb).unwrap();
        // Offsets large enough to push samples off the maps.
        for var in varmap.all_vars() {
            var.set(&(var.as_tensor() * 3.0).unwrap()).unwrap();
        }
        let shapes = [(9, 7), (5, 4), (2, 3)];
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let value = Tensor::randn(0f32, 1., (2, s, 32), &Device::Cpu).unwrap();
        let query = Tensor::randn(0f32, 1., (2, 11, 32), &Device::Cpu).unwrap();
        let boxes = Tensor::rand(0f32, 1., (2, 11, 4), &Device::Cpu).unwrap();
        let fast = attn
            .forward(&query, &boxes, &value, &shapes, false)
            .unwrap();
        let composite = attn.forward(&query, &boxes, &value, &shapes, true).unwrap();
        let diff = (fast - composite)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    /// The backward pass of [`Sampler`] (what CUDA trains with; its CPU f32 versions mirror the
    /// kernels) against autograd through the composite, with samples on and off the maps.
    #[test]
    fn sampler_gradients_equal_the_composite() {
        use candle::{DType, Var};
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
        let op = Sampler {
            shapes: shapes.to_vec(),
            heads,
            points,
        };
        let ours = value.apply_op3(&loc, &weights, op).unwrap();
        let reference = composite(&value, &loc, &weights, &shapes, heads, points).unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(max_diff(&ours, &reference) < 1e-5);
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
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let diff = max_diff(got, want);
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
