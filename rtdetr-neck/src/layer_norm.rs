use candle::{Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};

/// `nn.LayerNorm(dim)` over the last axis, eps 1e-5, from differentiable primitives when a
/// gradient is needed (candle-nn's fused LayerNorm drops the gradients of its input, weight and
/// bias), with that fused kernel otherwise.
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
}

impl Module for LayerNorm {
    /// # Shapes
    /// `xs: [..., dim]` → same shape
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if !xs.track_op() && !self.weight.track_op() && !self.bias.track_op() {
            // No gradient needed: candle's fused kernel.
            return candle_nn::ops::layer_norm(
                &xs.contiguous()?,
                &self.weight,
                &self.bias,
                EPS as f32,
            );
        }
        let centered = xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        centered
            .broadcast_div(&(var + EPS)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}
