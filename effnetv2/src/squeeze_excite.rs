use candle::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use rtdetr_onnx::GraphBuilder;

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

impl SqueezeExcite {
    /// As ONNX nodes: `GlobalAveragePool`, two 1×1 `Conv`s with SiLU and sigmoid, and the `Mul`.
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let pooled = g.node(scope, "GlobalAveragePool", &[xs], vec![]);
        let conv = |g: &mut GraphBuilder, name: &str, x: &str, (w, b): &(Tensor, Tensor)| {
            let (o, i) = w.dims2()?;
            g.conv(
                &format!("{scope}.{name}"),
                x,
                (&w.reshape((o, i, 1, 1))?, b),
                1,
                0,
                1,
            )
        };
        let hidden = conv(g, "fc1", &pooled, &self.fc1)?;
        let hidden = g.silu(&format!("{scope}.fc1"), &hidden);
        let gate = conv(g, "fc2", &hidden, &self.fc2)?;
        let gate = g.node(&format!("{scope}.fc2"), "Sigmoid", &[&gate], vec![]);
        Ok(g.node(scope, "Mul", &[xs, &gate], vec![]))
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
