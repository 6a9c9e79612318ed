use candle::{Result, Tensor, D};
use candle_nn::{Init, Linear, Module, VarBuilder};

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
