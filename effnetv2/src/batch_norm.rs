use candle::{Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder};

/// ultralytics' `initialize_weights` overrides every `BatchNorm2d` of the model (backbone included)
/// to eps 1e-3 and momentum 0.03; PyTorch's defaults would be 1e-5 and 0.1.
pub const BN_EPS: f64 = 1e-3;
/// See [`BN_EPS`].
pub const BN_MOMENTUM: f64 = 0.03;

/// `nn.BatchNorm2d` with the model's eps and momentum.
///
/// Training mode normalises with the biased batch variance over (N, H, W) and updates the running
/// statistics with the unbiased one, as PyTorch does.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm2d {
    /// Loads `weight`, `bias`, `running_mean` and `running_var` of `channels` elements.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
        })
    }

    /// Per-channel `(scale, shift)` of the evaluation-mode affine map `x·scale + shift`, the form
    /// that folds into a preceding convolution.
    pub fn scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = (&self.weight / (self.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        Ok((scale, shift))
    }

    /// Current running mean.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// Current running variance.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    fn forward_eval(&self, xs: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.scale_shift()?;
        let c = scale.dim(0)?;
        xs.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)
    }

    fn forward_train(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let n = b * h * w;
        if n < 2 {
            candle::bail!(
                "batch norm in training mode needs more than one value per channel, got {:?}",
                xs.shape()
            )
        }
        let mean = xs.mean_keepdim((0, 2, 3))?;
        let centered = xs.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let ys = centered.broadcast_div(&(&var + BN_EPS)?.sqrt()?)?;
        let ys = ys
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;

        let mean = mean.detach().flatten_all()?;
        let unbiased = (var.detach().flatten_all()? * (n as f64 / (n - 1) as f64))?;
        let keep = 1.0 - BN_MOMENTUM;
        self.running_mean
            .set(&((self.running_mean.as_tensor() * keep)? + (mean * BN_MOMENTUM)?)?)?;
        self.running_var
            .set(&((self.running_var.as_tensor() * keep)? + (unbiased * BN_MOMENTUM)?)?)?;
        Ok(ys)
    }
}

impl ModuleT for BatchNorm2d {
    /// # Shapes
    /// `xs: [B, C, H, W]` → `[B, C, H, W]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(xs)
        } else {
            self.forward_eval(xs)
        }
    }
}
