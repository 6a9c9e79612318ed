use candle::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};

/// The seed's `SEUnit`: global average pool, 1×1 conv `fc1` (bias) → SiLU → 1×1 conv `fc2` (bias)
/// → sigmoid, and the input scaled by the result.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
}

fn conv1x1(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<(Tensor, Tensor)> {
    let init = Init::Randn {
        mean: 0.,
        stdev: (2. / c_out as f64).sqrt(),
    };
    let weight = vb.get_with_hints((c_out, c_in, 1, 1), "weight", init)?;
    let bias = vb.get_with_hints(c_out, "bias", Init::Const(0.))?;
    Ok((weight.reshape((c_out, c_in))?, bias))
}

fn linear(xs: &Tensor, (weight, bias): &(Tensor, Tensor)) -> Result<Tensor> {
    xs.matmul(&weight.t()?)?.broadcast_add(bias)
}

impl SqueezeExcite {
    /// `SEUnit(channels, reduction)`: the hidden width is `channels / reduction`.
    pub fn new(channels: usize, reduction: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = channels / reduction;
        if hidden == 0 {
            candle::bail!(
                "SEUnit {}: {channels} channels reduced by {reduction} leave none",
                vb.prefix()
            )
        }
        Ok(Self {
            fc1: conv1x1(channels, hidden, vb.pp("fc1"))?,
            fc2: conv1x1(hidden, channels, vb.pp("fc2"))?,
        })
    }
}

impl SqueezeExcite {
    /// The per-channel gate the input is scaled by.
    ///
    /// # Shapes
    /// `xs: [B, C, H, W]` → `[B, C]`
    pub fn gate(&self, xs: &Tensor) -> Result<Tensor> {
        let pooled = xs.mean((2, 3))?;
        let hidden = linear(&pooled, &self.fc1)?.silu()?;
        candle_nn::ops::sigmoid(&linear(&hidden, &self.fc2)?)
    }
}

impl Module for SqueezeExcite {
    /// # Shapes
    /// `xs: [B, C, H, W]` → `[B, C, H, W]`
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = xs.dims4()?;
        xs.broadcast_mul(&self.gate(xs)?.reshape((b, c, 1, 1))?)
    }
}
