use candle::backprop::GradStore;
use candle::{DType, Result, Tensor, Var};
use candle_nn::VarMap;

/// ultralytics' optimizer parameter groups (`BaseTrainer.build_optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    /// Convolution, linear, attention and embedding weights: weight decay applies.
    Weight,
    /// Weights of BatchNorm and LayerNorm: no decay.
    Norm,
    /// Every parameter with "bias" in its name: no decay.
    Bias,
}

/// The group of parameter `name` of `rank` dimensions. The only one-dimensional weights of the
/// model are those of its norms.
pub fn param_group(name: &str, rank: usize) -> ParamGroup {
    if name.contains("bias") {
        ParamGroup::Bias
    } else if rank == 1 {
        ParamGroup::Norm
    } else {
        ParamGroup::Weight
    }
}

/// The gradients of `vars` in `grads`, in order.
pub fn gradients(grads: &GradStore, vars: &[Var]) -> Vec<Option<Tensor>> {
    vars.iter().map(|v| grads.get(v).cloned()).collect()
}

/// `torch.nn.utils.clip_grad_norm_`: scales every gradient by `max_norm / (‖g‖ + 1e-6)` when that
/// is below 1, and returns the total 2-norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sum = 0f64;
    for g in grads.iter().flatten() {
        sum += g
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let norm = sum.sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

struct Slot {
    name: String,
    var: Var,
    group: ParamGroup,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// `torch.optim.AdamW` over the model's parameters (running statistics excluded), with the
/// three ultralytics groups: decoupled weight decay on [`ParamGroup::Weight`] only, and one
/// learning rate per group so that warm-up can treat biases apart.
pub struct AdamW {
    slots: Vec<Slot>,
    step: u64,
    /// Learning rate of the weight, norm and bias groups.
    pub lr: [f64; 3],
    /// Weight decay of the weight group.
    pub weight_decay: f64,
    /// `(β1, β2)`.
    pub betas: (f64, f64),
    /// `ε`.
    pub eps: f64,
}

impl AdamW {
    /// Every variable of `varmap` except batch-norm running statistics, sorted by name.
    pub fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let mut named: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::Msg("the variable map's lock is poisoned".into()))?
            .iter()
            .filter(|(name, _)| !name.contains("running_"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    group: param_group(&name, var.rank()),
                    exp_avg: var.zeros_like()?,
                    exp_avg_sq: var.zeros_like()?,
                    name,
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            slots,
            step: 0,
            lr: [lr; 3],
            weight_decay,
            betas: (0.9, 0.999),
            eps: 1e-8,
        })
    }

    /// The optimised variables.
    pub fn vars(&self) -> Vec<Var> {
        self.slots.iter().map(|s| s.var.clone()).collect()
    }

    /// `(name, group)` of every optimised variable.
    pub fn groups(&self) -> Vec<(&str, ParamGroup)> {
        self.slots
            .iter()
            .map(|s| (s.name.as_str(), s.group))
            .collect()
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The moments by parameter name (`adam.m.<name>`, `adam.v.<name>`), to save a run.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("adam.m.{}", s.name), s.exp_avg.clone()),
                    (format!("adam.v.{}", s.name), s.exp_avg_sq.clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by [`AdamW::state`] and the step count.
    pub fn restore(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        steps: u64,
    ) -> Result<()> {
        for slot in &mut self.slots {
            let get = |k: String| {
                tensors
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| candle::Error::Msg(format!("optimizer state lacks {k}")))
            };
            slot.exp_avg = get(format!("adam.m.{}", slot.name))?;
            slot.exp_avg_sq = get(format!("adam.v.{}", slot.name))?;
        }
        self.step = steps;
        Ok(())
    }

    /// One update from `grads` (aligned with [`AdamW::vars`]); variables without a gradient are
    /// left as they are (their moments too), as PyTorch skips parameters whose `.grad` is None.
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        if grads.len() != self.slots.len() {
            candle::bail!(
                "AdamW: {} gradients for {} parameters",
                grads.len(),
                self.slots.len()
            )
        }
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        for (slot, grad) in self.slots.iter_mut().zip(grads) {
            let Some(grad) = grad else {
                continue;
            };
            let lr = self.lr[slot.group as usize];
            let decay = if slot.group == ParamGroup::Weight {
                self.weight_decay
            } else {
                0.0
            };
            let param = (slot.var.as_tensor().detach() * (1.0 - lr * decay))?;
            slot.exp_avg = (&slot.exp_avg + ((grad - &slot.exp_avg)? * (1.0 - b1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * b2)? + (grad.sqr()? * (1.0 - b2))?)?;
            let denom = ((slot.exp_avg_sq.sqrt()? / bias2_sqrt)? + self.eps)?;
            let update = ((&slot.exp_avg / denom)? * (lr / bias1))?;
            slot.var.set(&(param - update)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_ultralytics() {
        assert_eq!(
            param_group("model.19.enc_score_head.bias", 1),
            ParamGroup::Bias
        );
        assert_eq!(param_group("model.2.ma.in_proj_bias", 1), ParamGroup::Bias);
        assert_eq!(param_group("model.2.norm1.weight", 1), ParamGroup::Norm);
        assert_eq!(param_group("model.0.stem.1.weight", 1), ParamGroup::Norm);
        assert_eq!(
            param_group("model.2.ma.in_proj_weight", 2),
            ParamGroup::Weight
        );
        assert_eq!(
            param_group("model.19.denoising_class_embed.weight", 2),
            ParamGroup::Weight
        );
        assert_eq!(param_group("model.0.stem.0.weight", 4), ParamGroup::Weight);
    }
}
