//! `rtdetr bench --train`: the time of one training step (forward in train mode with denoising
//! queries, the loss, backward, gradient clipping and an AdamW step) on a random batch, through
//! the trainer's own step functions (`rtdetr::train::step`).

use std::time::Instant;

use anyhow::bail;
use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use detr_loss::DetrLoss;
use rtdetr::train::step::{batch_gradients, denoising_noise, optimizer_step};
use rtdetr::train::{initialize, AdamW};
use rtdetr::{ModelConfig, RtDetr};
use rtdetr_decoder::GroundTruth;
use rtdetr_ops::SplitMix64;

/// Boxes per image of the random batch.
const BOXES_PER_IMAGE: usize = 5;

/// Milliseconds of each timed step (after one warm-up step), in order.
pub fn time_steps(
    cfg: &ModelConfig,
    batch: usize,
    imgsz: usize,
    iters: usize,
    dev: &Device,
) -> anyhow::Result<Vec<f64>> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let varmap = VarMap::new();
    let model = RtDetr::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
    initialize(&varmap, cfg.nc(), 0)?;
    let mut optimizer = AdamW::new(&varmap, 1e-4, 5e-4)?;
    let vars = optimizer.vars();
    let loss = DetrLoss::new(cfg.nc());
    let rng = SplitMix64::new(0);
    let images = Tensor::rand(0f32, 1., (batch, 3, imgsz, imgsz), dev)?;
    let n = batch * BOXES_PER_IMAGE;
    let gt = GroundTruth {
        cls: (0..n)
            .map(|_| (rng.uniform() * cfg.nc() as f64) as usize % cfg.nc())
            .collect(),
        boxes: (0..n)
            .map(|_| {
                let u = || rng.uniform() as f32;
                [
                    0.2 + 0.6 * u(),
                    0.2 + 0.6 * u(),
                    0.1 + 0.3 * u(),
                    0.1 + 0.3 * u(),
                ]
            })
            .collect(),
        groups: vec![BOXES_PER_IMAGE; batch],
    };
    let max_norm = rtdetr::train::TrainConfig::default().max_norm;
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let start = Instant::now();
        let noise = denoising_noise(&model, &gt, i as u64);
        let mut step = batch_gradients(&model, &loss, &vars, &images, &gt, &noise)?;
        optimizer_step(&mut optimizer, &mut step.grads, max_norm)?;
        dev.synchronize()?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}
