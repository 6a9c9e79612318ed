use candle::{Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};

/// `F.layer_norm` over the last axis: from differentiable primitives when a gradient is needed
/// (candle-nn's fused layer norm drops the gradients of its input, weight and bias), with that
/// fused kernel otherwise.
///
/// # Shapes
/// `xs: [..., dim]`, `weight`, `bias: [dim]` → same shape as `xs`
pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if !xs.track_op() && !weight.track_op() && !bias.track_op() {
        return candle_nn::ops::layer_norm(&xs.contiguous()?, weight, bias, eps as f32);
    }
    let centered = xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// `nn.LayerNorm(dim)` (eps 1e-5) through [`layer_norm`].
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

const EPS: f64 = 1e-5;

impl LayerNorm {
    /// Loads `weight` and `bias` of `dim` elements.
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.))?;
        Ok(Self { weight, bias })
    }

    /// `weight`, `bias` and eps.
    pub fn parts(&self) -> (&Tensor, &Tensor, f64) {
        (&self.weight, &self.bias, EPS)
    }
}

impl Module for LayerNorm {
    /// # Shapes
    /// `xs: [..., dim]` → same shape
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        layer_norm(xs, &self.weight, &self.bias, EPS)
    }
}

#[cfg(test)]
mod tests {
    use super::layer_norm;
    use crate::testing::max_abs_diff;
    use candle::{Device, Tensor, Var};

    #[test]
    fn fused_and_differentiable_paths_agree() {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0.3f32, 2.0, (3, 5, 16), &dev).unwrap();
        let weight = Tensor::randn(1f32, 0.5, 16, &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.5, 16, &dev).unwrap();
        let fused = layer_norm(&xs, &weight, &bias, 1e-5).unwrap();
        let tracked = Var::from_tensor(&xs).unwrap();
        let composite = layer_norm(&tracked, &weight, &bias, 1e-5).unwrap();
        let diff = max_abs_diff(&fused, &composite);
        assert!(diff < 1e-5, "{diff}");
        let grads = composite
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&tracked).is_some());
    }
}
