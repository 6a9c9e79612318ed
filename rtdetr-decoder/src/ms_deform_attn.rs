use candle::{Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use rtdetr_onnx::graph::attr_int;
use rtdetr_onnx::{GraphBuilder, Sampler};
use rtdetr_ops::Linear;

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

        let out = rtdetr_ops::ms_deform_sample(&value, &loc, &weights, shapes, train)?;
        self.output_proj.forward(&out)
    }
}

impl MsDeformAttn {
    /// The layer as ONNX nodes for `queries` queries, sampling with `GridSample` or with
    /// `GatherElements` (the same bilinear weights, for runtimes without `GridSample`).
    ///
    /// # Shapes
    /// `query: [N, K, dim]`, `boxes: [N, K, 4]`, `value: [N, S, dim]` → `[N, K, dim]`
    #[allow(clippy::too_many_arguments)]
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        query: &str,
        boxes: &str,
        value: &str,
        shapes: &[(usize, usize)],
        queries: usize,
        sampler: Sampler,
    ) -> Result<String> {
        if shapes.len() != self.levels {
            candle::bail!(
                "MSDeformAttn: {} levels given, built for {}",
                shapes.len(),
                self.levels
            )
        }
        let at = |name: &str| format!("{scope}.{name}");
        let lin = |g: &mut GraphBuilder, name: &str, x: &str, layer: &Linear| {
            g.linear(&at(name), x, layer.weight(), layer.bias())
        };
        let dim = self.value_proj.weight().dim(0)?;
        let (heads, points, k) = (self.heads as i64, self.points as i64, queries as i64);
        let total = self.levels as i64 * points;
        let value = lin(g, "value_proj", value, &self.value_proj)?;
        let offsets = lin(g, "sampling_offsets", query, &self.sampling_offsets)?;
        let offsets = g.reshape(scope, &offsets, &[0, k, heads, total, 2]);
        let weights = lin(g, "attention_weights", query, &self.attention_weights)?;
        let weights = g.reshape(scope, &weights, &[0, k, heads, total]);
        let weights = g.softmax(scope, &weights, -1);
        let centre = g.slice(scope, boxes, 2, 0, 2);
        let centre = g.reshape(scope, &centre, &[0, k, 1, 1, 2]);
        let size = g.slice(scope, boxes, 2, 2, 4);
        let size = g.reshape(scope, &size, &[0, k, 1, 1, 2]);
        let spread = g.node(scope, "Mul", &[&offsets, &size], vec![]);
        let step = g.scalar(&at("offset_scale"), 0.5 / self.points as f32);
        let spread = g.node(scope, "Mul", &[&spread, &step], vec![]);
        let loc = g.node(scope, "Add", &[&centre, &spread], vec![]);
        // [N, K, heads, L·P] -> [N·heads, K, L·P]
        let weights = g.transpose(scope, &weights, &[0, 2, 1, 3]);
        let sampled = match sampler {
            Sampler::GridSample => {
                self.grid_sample_onnx(g, scope, &value, &loc, &weights, shapes, (k, dim as i64))
            }
            Sampler::Gather => {
                self.gather_onnx(g, scope, &value, &loc, &weights, shapes, (k, dim as i64))
            }
        };
        lin(g, "output_proj", &sampled, &self.output_proj)
    }

    /// ultralytics' `multi_scale_deformable_attn_pytorch`: one `GridSample` per level.
    #[allow(clippy::too_many_arguments)]
    fn grid_sample_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        value: &str,
        loc: &str,
        weights: &str,
        shapes: &[(usize, usize)],
        (k, dim): (i64, i64),
    ) -> String {
        let (heads, points) = (self.heads as i64, self.points as i64);
        let dh = dim / heads;
        let two = g.scalar(&format!("{scope}.two"), 2.0);
        let one = g.scalar(&format!("{scope}.one"), 1.0);
        let grid = g.node(scope, "Mul", &[loc, &two], vec![]);
        let grid = g.node(scope, "Sub", &[&grid, &one], vec![]);
        let grid = g.transpose(scope, &grid, &[0, 2, 1, 3, 4]);
        let mut start = 0;
        let mut levels = Vec::with_capacity(shapes.len());
        for (l, &(h, w)) in shapes.iter().enumerate() {
            let hw = (h * w) as i64;
            let v = g.slice(scope, value, 1, start, start + hw);
            start += hw;
            let v = g.transpose(scope, &v, &[0, 2, 1]);
            let v = g.reshape(scope, &v, &[-1, dh, h as i64, w as i64]);
            let l = l as i64;
            let grid_l = g.slice(scope, &grid, 3, l * points, (l + 1) * points);
            let grid_l = g.reshape(scope, &grid_l, &[-1, k, points, 2]);
            levels.push(g.grid_sample(scope, &v, &grid_l));
        }
        let refs: Vec<&str> = levels.iter().map(String::as_str).collect();
        let sampled = g.concat(scope, &refs, 3);
        let total = shapes.len() as i64 * points;
        let w = g.reshape(scope, weights, &[-1, 1, k, total]);
        let weighted = g.node(scope, "Mul", &[&sampled, &w], vec![]);
        let summed = g.reduce(scope, "ReduceSum", &weighted, &[3], false);
        let out = g.reshape(scope, &summed, &[-1, dim, k]);
        g.transpose(scope, &out, &[0, 2, 1])
    }

    /// The same bilinear sampling (zero padding, `align_corners=False`) from four
    /// `GatherElements` per level.
    #[allow(clippy::too_many_arguments)]
    fn gather_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        value: &str,
        loc: &str,
        weights: &str,
        shapes: &[(usize, usize)],
        (k, dim): (i64, i64),
    ) -> String {
        let (heads, points) = (self.heads as i64, self.points as i64);
        let dh = dim / heads;
        let total = shapes.len() as i64 * points;
        let weights = g.reshape(scope, weights, &[-1, k, total]);
        let loc = g.transpose(scope, loc, &[0, 2, 1, 3, 4]);
        let float = g.float_type() as i64;
        let one = g.scalar(&format!("{scope}.one"), 1.0);
        let half = g.scalar(&format!("{scope}.half"), 0.5);
        let zero = g.scalar(&format!("{scope}.zero"), 0.0);
        let expand = g.ints(&[1, 1, dh]);
        let mut start = 0;
        let mut acc: Option<String> = None;
        for (l, &(h, w)) in shapes.iter().enumerate() {
            let hw = (h * w) as i64;
            let v = g.slice(scope, value, 1, start, start + hw);
            start += hw;
            let v = g.reshape(scope, &v, &[0, hw, heads, dh]);
            let v = g.transpose(scope, &v, &[0, 2, 1, 3]);
            let v = g.reshape(scope, &v, &[-1, hw, dh]);
            let l = l as i64;
            let loc_l = g.slice(scope, &loc, 3, l * points, (l + 1) * points);
            let loc_l = g.reshape(scope, &loc_l, &[-1, k * points, 2]);
            // Pixel coordinates of the sample, as grid_sample with align_corners=False.
            let pixel = |g: &mut GraphBuilder, axis: i64, size: usize| {
                let c = g.slice(scope, &loc_l, 2, axis, axis + 1);
                let s = g.scalar(&format!("{scope}.size{size}"), size as f32);
                let c = g.node(scope, "Mul", &[&c, &s], vec![]);
                let c = g.node(scope, "Sub", &[&c, &half], vec![]);
                let c0 = g.node(scope, "Floor", &[&c], vec![]);
                let frac = g.node(scope, "Sub", &[&c, &c0], vec![]);
                let c1 = g.node(scope, "Add", &[&c0, &one], vec![]);
                let rest = g.node(scope, "Sub", &[&one, &frac], vec![]);
                let last = g.scalar(&format!("{scope}.last{size}"), size as f32 - 1.0);
                [(c0, rest), (c1, frac)].map(|(c, weight)| {
                    let clipped = g.node(scope, "Clip", &[&c, &zero, &last], vec![]);
                    let inside = g.node(scope, "Equal", &[&clipped, &c], vec![]);
                    let index = g.node(scope, "Cast", &[&clipped], vec![attr_int("to", 7)]);
                    (index, inside, weight)
                })
            };
            let xs = pixel(g, 0, w);
            let ys = pixel(g, 1, h);
            let width = g.ints(&[w as i64]);
            let mut sampled: Option<String> = None;
            for (yi, y_inside, y_weight) in &ys {
                let row = g.node(scope, "Mul", &[yi, &width], vec![]);
                for (xi, x_inside, x_weight) in &xs {
                    let index = g.node(scope, "Add", &[&row, xi], vec![]);
                    let index = g.node(scope, "Expand", &[&index, &expand], vec![]);
                    let corner = g.node(
                        scope,
                        "GatherElements",
                        &[&v, &index],
                        vec![attr_int("axis", 1)],
                    );
                    let inside = g.node(scope, "And", &[y_inside, x_inside], vec![]);
                    let inside = g.node(scope, "Cast", &[&inside], vec![attr_int("to", float)]);
                    let weight = g.node(scope, "Mul", &[y_weight, x_weight], vec![]);
                    let weight = g.node(scope, "Mul", &[&weight, &inside], vec![]);
                    let term = g.node(scope, "Mul", &[&corner, &weight], vec![]);
                    sampled = Some(match sampled {
                        Some(s) => g.node(scope, "Add", &[&s, &term], vec![]),
                        None => term,
                    });
                }
            }
            let sampled = sampled.expect("four corners");
            let sampled = g.reshape(scope, &sampled, &[-1, k, points, dh]);
            let w_l = g.slice(scope, &weights, 2, l * points, (l + 1) * points);
            let w_l = g.unsqueeze(scope, &w_l, &[3]);
            let weighted = g.node(scope, "Mul", &[&sampled, &w_l], vec![]);
            let level = g.reduce(scope, "ReduceSum", &weighted, &[2], false);
            acc = Some(match acc {
                Some(a) => g.node(scope, "Add", &[&a, &level], vec![]),
                None => level,
            });
        }
        let out = g.reshape(
            scope,
            &acc.expect("at least one level"),
            &[-1, heads, k, dh],
        );
        let out = g.transpose(scope, &out, &[0, 2, 1, 3]);
        g.reshape(scope, &out, &[0, k, dim])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// The module in f32 (the fused sampler, evaluation and training) against the same weights in
    /// f64 (the gather composite on the CPU), with samples pushed off the maps.
    #[test]
    fn fused_f32_equals_the_f64_composite() {
        use candle::DType;
        use candle_nn::VarMap;
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let attn64 = MsDeformAttn::new(
            32,
            3,
            4,
            4,
            VarBuilder::from_varmap(&varmap, DType::F64, &dev),
        )
        .unwrap();
        // Offsets large enough to push samples off the maps.
        for var in varmap.all_vars() {
            var.set(&(var.as_tensor() * 3.0).unwrap()).unwrap();
        }
        let weights = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().to_dtype(DType::F32).unwrap()))
            .collect();
        let vb32 = VarBuilder::from_tensors(weights, DType::F32, &dev);
        let attn32 = MsDeformAttn::new(32, 3, 4, 4, vb32).unwrap();
        let shapes = [(9, 7), (5, 4), (2, 3)];
        let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
        let value = Tensor::randn(0f64, 1., (2, s, 32), &dev).unwrap();
        let query = Tensor::randn(0f64, 1., (2, 11, 32), &dev).unwrap();
        let boxes = Tensor::rand(0f64, 1., (2, 11, 4), &dev).unwrap();
        let want = attn64
            .forward(&query, &boxes, &value, &shapes, false)
            .unwrap();
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        for train in [false, true] {
            let got = attn32
                .forward(&f32(&query), &f32(&boxes), &f32(&value), &shapes, train)
                .unwrap();
            let diff = (got.to_dtype(DType::F64).unwrap() - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(diff < 1e-4, "train {train}: {diff}");
        }
    }
}
