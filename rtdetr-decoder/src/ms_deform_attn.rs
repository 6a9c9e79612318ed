use candle::{DType, Result, Tensor, D};
use candle_nn::{Init, Linear, Module, VarBuilder};

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

/// The whole sampling of [`MsDeformAttn`] in one pass for evaluation on the CPU: for each query
/// and head, the attention-weighted sum of bilinear samples (as [`sample_bilinear`]) over levels
/// and points. No gradient; training uses the gather-based composite.
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
        use rayon::prelude::*;
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
        let (b, q, dim) = query.dims3()?;
        let (heads, points) = (self.heads, self.points);
        let dh = dim / heads;
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

        if !train && value.device().is_cpu() && value.dtype() == candle::DType::F32 {
            let op = Sampler {
                shapes: shapes.to_vec(),
                heads,
                points,
            };
            let out = value.contiguous()?.apply_op3_no_bwd(
                &loc.contiguous()?,
                &weights.contiguous()?,
                &op,
            )?;
            return self.output_proj.forward(&out);
        }
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
        self.output_proj
            .forward(&out.transpose(1, 2)?.reshape((b, q, dim))?)
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
