use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use detr_loss::DetrLoss;
use rtdetr_decoder::GroundTruth;

use super::state::RunState;
use super::step::{accumulate, batch_gradients, denoising_noise, optimizer_step};
use super::{AdamW, Ema, EpochStats, Schedule, TrainConfig};
use crate::coco::Summary;
use crate::data::{mix_seed, spawn_epoch, Sample};
use crate::{evaluate, Detector, DetectorOptions, Error, ModelConfig, Result, RtDetr};

/// Everything a new run starts from.
#[derive(Debug, Clone)]
pub struct TrainSetup {
    /// The detector's sizes.
    pub model: ModelConfig,
    /// Hyper-parameters.
    pub train: TrainConfig,
    /// Class names, stored in the checkpoints.
    pub names: Vec<String>,
    /// Training images and labels.
    pub train_samples: Vec<Sample>,
    /// Validation images and labels.
    pub val_samples: Vec<Sample>,
    /// Starting weights: a full checkpoint, or any file whose keys are a subset of the model's
    /// (e.g. a converted backbone under `model.0.`); `None` initialises as ultralytics does.
    pub weights: Option<PathBuf>,
    /// The output folder.
    pub save_dir: PathBuf,
    /// Where the model trains.
    pub device: Device,
}

/// A training run: model, optimizer, EMA and data, writing into `save_dir`.
pub struct Trainer {
    pub(super) varmap: VarMap,
    pub(super) model: RtDetr,
    pub(super) optimizer: AdamW,
    pub(super) ema: Ema,
    pub(super) schedule: Schedule,
    pub(super) loss: DetrLoss,
    pub(super) train: Arc<Vec<Sample>>,
    pub(super) val: Vec<Sample>,
    pub(super) device: Device,
    pub(super) save_dir: PathBuf,
    pub(super) state: RunState,
    pub(super) stop_at_step: Option<u64>,
}

impl Trainer {
    /// A new run from scratch or from `setup.weights`.
    pub fn new(setup: TrainSetup) -> Result<Self> {
        let TrainSetup {
            model,
            train: train_cfg,
            names,
            train_samples: train,
            val_samples: val,
            weights,
            save_dir,
            device,
        } = setup;
        train_cfg.check()?;
        let varmap = VarMap::new();
        let net = RtDetr::new(
            &model,
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
        )?;
        crate::train::initialize(&varmap, model.nc(), train_cfg.seed)?;
        if let Some(path) = &weights {
            let in_file = |e: Error| e.in_file(path);
            let tensors =
                candle::safetensors::load(path, &device).map_err(|e| in_file(e.into()))?;
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| Error::Run("poisoned variable map".into()))?;
            if let Some(unknown) = tensors
                .keys()
                .find(|k| !vars.contains_key(*k) && !k.ends_with("num_batches_tracked"))
            {
                return Err(in_file(Error::Run(format!(
                    "{unknown} is not a parameter of this model"
                ))));
            }
            for (name, var) in vars.iter() {
                if let Some(t) = tensors.get(name) {
                    var.set(&t.to_dtype(DType::F32)?)?;
                }
            }
        }
        let nc = model.nc();
        let lr0 = train_cfg
            .lr0
            .unwrap_or_else(|| (0.002 * 5.0 / (4 + nc) as f64 * 1e6).round() / 1e6);
        let accumulate = ((train_cfg.nbs as f64 / train_cfg.batch as f64).round() as usize).max(1);
        let decay =
            train_cfg.weight_decay * (train_cfg.batch * accumulate) as f64 / train_cfg.nbs as f64;
        let optimizer = AdamW::new(&varmap, lr0, decay)?;
        let schedule = Schedule {
            lr0,
            lrf: train_cfg.lrf,
            epochs: train_cfg.epochs,
            cosine: train_cfg.cos_lr,
            warmup_epochs: train_cfg.warmup_epochs,
            warmup_bias_lr: 0.0,
            batches_per_epoch: train.len().div_ceil(train_cfg.batch),
            accumulate,
        };
        let ema = Ema::new(&varmap)?;
        let state = RunState {
            model,
            train: train_cfg,
            names,
            next_epoch: 0,
            optimizer_steps: 0,
            ema_updates: 0,
            best_fitness: f64::NEG_INFINITY,
            history: vec![],
            notes: Default::default(),
            batch_in_epoch: 0,
            epoch_sums: [0.0; 3],
        };
        Ok(Self {
            varmap,
            model: net,
            optimizer,
            ema,
            schedule,
            loss: DetrLoss::new(nc),
            train: Arc::new(train),
            val,
            device,
            save_dir,
            state,
            stop_at_step: None,
        })
    }

    /// Simulates a kill (for the resume tests): `run_epoch` returns an error right after
    /// optimizer step `step` (and its periodic save, if one falls there).
    #[cfg(test)]
    pub(crate) fn set_stop_at_step(&mut self, step: Option<u64>) {
        self.stop_at_step = step;
    }

    /// Batches of the current epoch already done (non-zero after resuming a mid-epoch save).
    pub fn batches_done_in_epoch(&self) -> usize {
        self.state.batch_in_epoch
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.schedule.batches_per_epoch
    }

    /// The validation images and labels.
    pub fn val_samples(&self) -> &[Sample] {
        &self.val
    }

    /// The class names.
    pub fn names(&self) -> &[String] {
        &self.state.names
    }

    /// Epochs done so far.
    pub fn epochs_done(&self) -> usize {
        self.state.next_epoch
    }

    /// Per-epoch results so far.
    pub fn history(&self) -> &[EpochStats] {
        &self.state.history
    }

    /// The output folder.
    pub fn save_dir(&self) -> &Path {
        &self.save_dir
    }

    /// A string recorded in the checkpoints' metadata (e.g. `data`, the dataset yaml to resume with).
    pub fn set_note(&mut self, key: &str, value: &str) {
        self.state.notes.insert(key.to_string(), value.to_string());
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.state.train
    }

    /// Runs one epoch (or its rest, after resuming a mid-epoch save), validates the EMA weights
    /// and writes the checkpoints. `on_batch` is called after every batch with (batch index,
    /// batches, mean [giou, cls, l1] so far).
    ///
    /// On the CPU the epoch runs on a worker of candle's thread pool, so that each parallel op forks
    /// on that pool rather than waking its threads from outside (1.8× on the demo's small model;
    /// free when the caller is already there, as the `rtdetr` binary is).
    pub fn run_epoch(
        &mut self,
        on_batch: impl FnMut(usize, usize, [f64; 3]) + Send,
    ) -> Result<EpochStats> {
        let device = self.device.clone();
        device.with_context(|| self.run_epoch_here(on_batch))
    }

    fn run_epoch_here(
        &mut self,
        mut on_batch: impl FnMut(usize, usize, [f64; 3]),
    ) -> Result<EpochStats> {
        let epoch = self.state.next_epoch;
        let cfg = self.state.train.clone();
        let nb = self.schedule.batches_per_epoch;
        let seed = cfg.seed;
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let rng = rtdetr_ops::SplitMix64::new(mix_seed(&[seed, epoch as u64, 1]));
        for i in (1..order.len()).rev() {
            let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
        let aug = cfg.augment.map(|a| a.augment());
        let start = self.state.batch_in_epoch;
        let batches = spawn_epoch(
            self.train.clone(),
            order[(start * cfg.batch).min(order.len())..].to_vec(),
            start,
            cfg.batch,
            cfg.imgsz,
            aug,
            self.mosaic_on(epoch),
            mix_seed(&[seed, epoch as u64, 2]),
            self.device.clone(),
        );
        let vars = self.optimizer.vars();
        let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut pending = 0;
        let mut sums = self.state.epoch_sums;
        for (k, batch) in batches.iter().enumerate() {
            let i = start + k;
            let batch = batch?;
            let ni = i + nb * epoch;
            self.optimizer.lr = self.schedule.lr(epoch, ni);
            let accumulate_over = self.schedule.accumulate(ni);
            let gt = GroundTruth {
                cls: batch.labels.iter().flatten().map(|l| l.class).collect(),
                boxes: batch.labels.iter().flatten().map(|l| l.bbox).collect(),
                groups: batch.labels.iter().map(Vec::len).collect(),
            };
            let noise = denoising_noise(&self.model, &gt, mix_seed(&[seed, ni as u64, 3]));
            self.model
                .backbone()
                .drop_path_rng()
                .set_state(mix_seed(&[seed, ni as u64, 4]));
            let step = batch_gradients(&self.model, &self.loss, &vars, &batch.images, &gt, &noise)?;
            if !step.loss.is_finite() {
                return Err(Error::Training(format!(
                    "loss became {} at epoch {epoch}, batch {i}; stopping (the last checkpoint is kept)",
                    step.loss
                )));
            }
            for (s, v) in sums.iter_mut().zip(step.terms) {
                *s += v;
            }
            accumulate(&mut acc, step.grads)?;
            pending += 1;
            if pending >= accumulate_over {
                optimizer_step(&mut self.optimizer, &mut acc, cfg.max_norm)?;
                acc.iter_mut().for_each(|a| *a = None);
                pending = 0;
                self.ema.update(&self.varmap)?;
                let steps = self.optimizer.steps();
                let period = cfg.save_period_steps;
                if period > 0 && steps.is_multiple_of(period) && i + 1 < nb {
                    self.state.batch_in_epoch = i + 1;
                    self.state.epoch_sums = sums;
                    self.state.optimizer_steps = steps;
                    self.state.ema_updates = self.ema.updates;
                    self.save_state(epoch)?;
                }
                if self.stop_at_step == Some(steps) {
                    return Err(Error::Training(format!(
                        "stopped after optimizer step {steps} (epoch {epoch}, batch {i})"
                    )));
                }
            }
            let n = (i + 1) as f64;
            on_batch(i, nb, sums.map(|s| s / n));
        }
        let means = sums.map(|s| s / nb.max(1) as f64);
        let summary = self.validate()?;
        let stats = EpochStats {
            epoch,
            giou_loss: means[0],
            cls_loss: means[1],
            l1_loss: means[2],
            map50: summary.map50(),
            map50_95: summary.map50_95(),
            lr: self.optimizer.lr[0],
        };
        self.state.history.push(stats.clone());
        self.state.next_epoch += 1;
        self.state.batch_in_epoch = 0;
        self.state.epoch_sums = [0.0; 3];
        self.state.optimizer_steps = self.optimizer.steps();
        self.state.ema_updates = self.ema.updates;
        let improved = stats.map50_95 > self.state.best_fitness;
        if improved {
            self.state.best_fitness = stats.map50_95;
        }
        self.save(improved)?;
        Ok(stats)
    }

    /// Whether epoch `epoch` uses mosaic: not in the last `close_mosaic` epochs (ultralytics closes
    /// it once `epoch ≥ epochs − close_mosaic`, so never when `epochs ≤ close_mosaic`).
    pub fn mosaic_on(&self, epoch: usize) -> bool {
        let cfg = &self.state.train;
        mosaic_open(epoch, cfg.epochs, cfg.close_mosaic)
    }

    /// The EMA weights as an evaluation model (batch norms folded, RepConv fused).
    pub fn ema_model(&self) -> Result<RtDetr> {
        let vb = VarBuilder::from_tensors(
            self.ema.shadow.clone().into_iter().collect(),
            DType::F32,
            &self.device,
        );
        let mut model = RtDetr::new(&self.state.model, vb)?;
        model.set_fused(true)?;
        Ok(model)
    }

    /// mAP of the EMA weights on the validation images (conf 0.001, as ultralytics validates).
    pub fn validate(&self) -> Result<Summary> {
        let cfg = &self.state.train;
        let options = DetectorOptions {
            imgsz: Some(cfg.imgsz),
            device: self.device.clone(),
            ..DetectorOptions::validation()
        };
        let detector = Detector::from_model(self.ema_model()?, self.state.names.clone(), options)?;
        evaluate(&detector, &self.val, cfg.batch)
    }
}

/// Whether `epoch` of `epochs` uses mosaic with `close_mosaic` (see [`Trainer::mosaic_on`]).
pub fn mosaic_open(epoch: usize, epochs: usize, close_mosaic: usize) -> bool {
    close_mosaic == 0 || (epoch as i64) < epochs as i64 - close_mosaic as i64
}

#[cfg(test)]
mod tests {
    use super::mosaic_open;

    #[test]
    fn mosaic_closes_for_the_last_epochs() {
        let on: Vec<bool> = (0..12).map(|e| mosaic_open(e, 12, 10)).collect();
        assert_eq!(on.iter().filter(|&&b| b).count(), 2);
        assert!(on[0] && on[1] && !on[2]);
        assert!(
            (0..5).all(|e| !mosaic_open(e, 5, 10)),
            "epochs ≤ close_mosaic: never"
        );
        assert!((0..5).all(|e| mosaic_open(e, 5, 0)));
    }
}
