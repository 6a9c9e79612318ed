use candle::{Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder};

use super::batch_norm_train::batch_norm_train;

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

    /// `act(bn(xs))` with `act` SiLU or the identity; in training on the CPU as one op that does
    /// not keep the pre-activation for backward.
    pub fn forward_act(&self, xs: &Tensor, train: bool, silu: bool) -> Result<Tensor> {
        let fused = train
            && xs.device().is_cpu()
            && matches!(xs.dtype(), candle::DType::F32 | candle::DType::F64);
        if fused {
            return self.forward_train(xs, silu);
        }
        let ys = self.forward_t(xs, train)?;
        if silu {
            ys.silu()
        } else {
            Ok(ys)
        }
    }

    fn forward_train(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let n = b * h * w;
        if n < 2 {
            candle::bail!(
                "batch norm in training mode needs more than one value per channel, got {:?}",
                xs.shape()
            )
        }
        let (ys, mean, var) = if xs.device().is_cpu()
            && matches!(xs.dtype(), candle::DType::F32 | candle::DType::F64)
        {
            let (ys, mean, var) = batch_norm_train(xs, &self.weight, &self.bias, BN_EPS, silu)?;
            let dtype = self.running_mean.dtype();
            let stat = |v: Vec<f64>| Tensor::from_vec(v, c, xs.device())?.to_dtype(dtype);
            (ys, stat(mean)?, stat(var)?)
        } else {
            let (ys, mean, var) = self.forward_train_composite(xs)?;
            (if silu { ys.silu()? } else { ys }, mean, var)
        };
        let unbiased = (var * (n as f64 / (n - 1) as f64))?;
        let keep = 1.0 - BN_MOMENTUM;
        self.running_mean
            .set(&((self.running_mean.as_tensor() * keep)? + (mean * BN_MOMENTUM)?)?)?;
        self.running_var
            .set(&((self.running_var.as_tensor() * keep)? + (unbiased * BN_MOMENTUM)?)?)?;
        Ok(ys)
    }

    /// Training mode from candle ops (any device): output, batch mean and biased variance.
    fn forward_train_composite(&self, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let c = xs.dim(1)?;
        let mean = xs.mean_keepdim((0, 2, 3))?;
        let centered = xs.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let ys = centered.broadcast_div(&(&var + BN_EPS)?.sqrt()?)?;
        let ys = ys
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        Ok((
            ys,
            mean.detach().flatten_all()?,
            var.detach().flatten_all()?,
        ))
    }
}

impl ModuleT for BatchNorm2d {
    /// # Shapes
    /// `xs: [B, C, H, W]` → `[B, C, H, W]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(xs, false)
        } else {
            self.forward_eval(xs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn training_op_equals_the_composite_in_values_gradients_and_running_stats() {
        let dev = Device::Cpu;
        for silu in [false, true] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
            let weight = Var::from_tensor(&Tensor::randn(1f64, 0.5, 3, &dev).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f64, 0.5, 3, &dev).unwrap()).unwrap();
            let [bn, twin] = [0, 1].map(|i| {
                let b = BatchNorm2d::new(3, vb.pp(i)).unwrap();
                BatchNorm2d {
                    weight: weight.as_tensor().clone(),
                    bias: bias.as_tensor().clone(),
                    ..b
                }
            });
            let xs = Tensor::randn(0.7f64, 2.0, (2, 3, 4, 5), &dev).unwrap();
            let xs = Var::from_tensor(&xs).unwrap();
            let probe = Tensor::randn(0f64, 1.0, (2, 3, 4, 5), &dev).unwrap();

            let fast = bn.forward_act(&xs, true, silu).unwrap();
            let (slow, mean, var) = twin.forward_train_composite(&xs).unwrap();
            let slow = if silu { slow.silu().unwrap() } else { slow };
            assert!(max_abs_diff(&fast, &slow) < 1e-12, "silu {silu}");
            let backward = |ys: &Tensor| (ys * &probe).unwrap().sum_all().unwrap().backward();
            let (grads_fast, grads_slow) = (backward(&fast).unwrap(), backward(&slow).unwrap());
            for var in [&xs, &weight, &bias] {
                let (g1, g2) = (grads_fast.get(var).unwrap(), grads_slow.get(var).unwrap());
                assert!(max_abs_diff(g1, g2) < 1e-12, "silu {silu}: {g1} vs {g2}");
            }
            let n = 2.0 * 4.0 * 5.0;
            let want_mean = (mean * BN_MOMENTUM).unwrap();
            let want_var = var
                .affine(n / (n - 1.0) * BN_MOMENTUM, 1.0 - BN_MOMENTUM)
                .unwrap();
            assert!(max_abs_diff(bn.running_mean(), &want_mean) < 1e-12);
            assert!(max_abs_diff(bn.running_var(), &want_var) < 1e-12);
        }
    }

    /// The f32 plane loops against the f64 generic op, on planes that are not a multiple of
    /// the 16 lanes and planes longer than one f32 summation block.
    #[test]
    fn f32_training_op_equals_the_f64_op() {
        let dev = Device::Cpu;
        let relative = |a: &Tensor, b: &Tensor| {
            let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            max_abs_diff(&a.to_dtype(DType::F64).unwrap(), b) / scale.to_scalar::<f64>().unwrap()
        };
        for shape in [(2, 3, 7, 9), (2, 3, 40, 41), (1, 5, 1, 17)] {
            for silu in [false, true] {
                let xs = Tensor::randn(0.7f64, 2.0, shape, &dev).unwrap();
                let weight = Tensor::randn(1f64, 0.5, shape.1, &dev).unwrap();
                let bias = Tensor::randn(0f64, 0.5, shape.1, &dev).unwrap();
                let probe = Tensor::randn(0f64, 1.0, shape, &dev).unwrap();
                let run = |dtype: DType| {
                    let vars = [&xs, &weight, &bias]
                        .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap());
                    let (ys, mean, var) = batch_norm_train(
                        vars[0].as_tensor(),
                        vars[1].as_tensor(),
                        vars[2].as_tensor(),
                        BN_EPS,
                        silu,
                    )
                    .unwrap();
                    let loss = (&ys * probe.to_dtype(dtype).unwrap())
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    let grads = loss.backward().unwrap();
                    let grads = vars.map(|v| grads.get(&v).unwrap().clone());
                    (ys, grads, mean, var)
                };
                let (ys32, grads32, mean32, var32) = run(DType::F32);
                let (ys64, grads64, mean64, var64) = run(DType::F64);
                let case = format!("{shape:?} silu {silu}");
                assert!(relative(&ys32, &ys64) < 1e-6, "{case}: output");
                for (name, (g32, g64)) in ["x", "weight", "bias"]
                    .iter()
                    .zip(grads32.iter().zip(&grads64))
                {
                    assert!(relative(g32, g64) < 1e-5, "{case}: d{name}");
                }
                for (a, b) in mean32.iter().zip(&mean64).chain(var32.iter().zip(&var64)) {
                    assert!(
                        (a - b).abs() < 1e-6 * b.abs().max(1.0),
                        "{case}: moments {a} vs {b}"
                    );
                }
            }
        }
    }
}
