//! One training step, as the trainer runs it and `rtdetr bench --train` times it.

use candle::{Tensor, Var};
use detr_loss::DetrLoss;
use rtdetr_decoder::{CdnNoise, GroundTruth};
use rtdetr_ops::SplitMix64;

use crate::train::{clip_grad_norm, detection_loss, gradients, AdamW};
use crate::{Result, RtDetr};

/// What one batch contributes to an optimizer step.
#[derive(Debug)]
pub struct BatchGradients {
    /// The total loss.
    pub loss: f32,
    /// The last decoder layer's (GIoU, class, L1) terms.
    pub terms: [f64; 3],
    /// The gradient of each optimizer variable, in the optimizer's order.
    pub grads: Vec<Option<Tensor>>,
}

/// The denoising draws of a batch from the stream of `seed`, with the decoder's own settings.
pub fn denoising_noise(model: &RtDetr, gt: &GroundTruth, seed: u64) -> CdnNoise {
    let decoder = &model.config().decoder;
    let rng = SplitMix64::new(seed);
    CdnNoise::for_batch(&gt.groups, decoder.nc, &decoder.denoising, || {
        rng.uniform() as f32
    })
}

/// The training forward pass (denoising queries from `noise`), RTDETRDetectionLoss and the
/// backward pass for one batch.
pub fn batch_gradients(
    model: &RtDetr,
    loss: &DetrLoss,
    vars: &[Var],
    images: &Tensor,
    gt: &GroundTruth,
    noise: &CdnNoise,
) -> Result<BatchGradients> {
    let out = model.forward_train(images, gt, noise)?;
    let (total, terms) = detection_loss(loss, &out, gt)?;
    let value = total.to_scalar::<f32>()?;
    let grads = gradients(&total.backward()?, vars);
    Ok(BatchGradients {
        loss: value,
        terms,
        grads,
    })
}

/// Adds `more` into the running sums `acc` (gradient accumulation over batches).
pub fn accumulate(acc: &mut [Option<Tensor>], more: Vec<Option<Tensor>>) -> Result<()> {
    for (a, g) in acc.iter_mut().zip(more) {
        *a = match (a.take(), g) {
            (Some(a), Some(g)) => Some((a + g)?),
            (a, g) => a.or(g),
        };
    }
    Ok(())
}

/// Clips the summed gradients at `max_norm` and takes one AdamW step.
pub fn optimizer_step(
    optimizer: &mut AdamW,
    grads: &mut [Option<Tensor>],
    max_norm: f64,
) -> Result<()> {
    clip_grad_norm(grads, max_norm)?;
    optimizer.step(grads)?;
    Ok(())
}
