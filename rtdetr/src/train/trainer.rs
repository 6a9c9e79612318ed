use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use detr_loss::DetrLoss;
use rtdetr_decoder::{CdnNoise, GroundTruth};
use serde::{Deserialize, Serialize};

use crate::coco::{self, Summary};
use crate::data::geometry::Affine;
use crate::data::{mix_seed, spawn_epoch, Augment, Sample};
use crate::postprocess::{postprocess, Filter};
use crate::train::{clip_grad_norm, detection_loss, gradients, AdamW, Ema, Schedule};
use crate::{checkpoint, preprocess, ModelConfig, RtDetr, CONFIG_KEY};

/// Training hyper-parameters (ultralytics `default.yaml` values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch: usize,
    /// Training and validation size.
    pub imgsz: usize,
    /// Initial learning rate; `None` is 'auto': `round(0.002·5/(4+nc), 6)`.
    pub lr0: Option<f64>,
    /// Final learning-rate factor.
    pub lrf: f64,
    /// Cosine instead of linear decay.
    pub cos_lr: bool,
    /// Warm-up epochs.
    pub warmup_epochs: f64,
    /// Nominal batch size the gradients are accumulated to.
    pub nbs: usize,
    /// Weight decay at the nominal batch size.
    pub weight_decay: f64,
    /// Gradient clipping norm.
    pub max_norm: f64,
    /// Seed of data order, augmentation, denoising noise and stochastic depth.
    pub seed: u64,
    /// Augmentation, none when `None`.
    pub augment: Option<AugmentConfig>,
    /// Mosaic is off for the last `close_mosaic` epochs (all of them when `epochs ≤ close_mosaic`,
    /// as ultralytics); 0 keeps it on.
    #[serde(default)]
    pub close_mosaic: usize,
    /// Within an epoch, the state is also saved every this many optimizer steps (0: only at
    /// epoch ends), so a run killed mid-epoch resumes from its last such step.
    #[serde(default)]
    pub save_period_steps: u64,
}

/// Serializable [`Augment`]. Fields missing from older run states read as 0 (off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Horizontal flip probability.
    pub fliplr: f32,
    /// HSV gains.
    pub hsv: [f32; 3],
    /// Mosaic probability.
    #[serde(default)]
    pub mosaic: f32,
    /// Affine rotation range in degrees.
    #[serde(default)]
    pub degrees: f32,
    /// Affine translation fraction.
    #[serde(default)]
    pub translate: f32,
    /// Affine scale gain.
    #[serde(default)]
    pub scale: f32,
    /// Affine shear range in degrees.
    #[serde(default)]
    pub shear: f32,
}

impl AugmentConfig {
    /// The loader's view of these settings.
    pub fn augment(&self) -> Augment {
        Augment {
            fliplr: self.fliplr,
            hsv: self.hsv,
            mosaic: self.mosaic,
            affine: Affine {
                degrees: self.degrees,
                translate: self.translate,
                scale: self.scale,
                shear: self.shear,
            },
        }
    }
}

impl From<Augment> for AugmentConfig {
    fn from(a: Augment) -> Self {
        Self {
            fliplr: a.fliplr,
            hsv: a.hsv,
            mosaic: a.mosaic,
            degrees: a.affine.degrees,
            translate: a.affine.translate,
            scale: a.affine.scale,
            shear: a.affine.shear,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        let a = Augment::default();
        Self {
            epochs: 100,
            batch: 16,
            imgsz: 640,
            lr0: None,
            lrf: 0.01,
            cos_lr: false,
            warmup_epochs: 3.0,
            nbs: 64,
            weight_decay: 0.0005,
            max_norm: 10.0,
            seed: 0,
            augment: Some(a.into()),
            close_mosaic: 10,
            save_period_steps: 0,
        }
    }
}

/// Mean loss terms of an epoch and the validation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch index (from 0).
    pub epoch: usize,
    /// Mean main-layer GIoU loss.
    pub giou_loss: f64,
    /// Mean main-layer classification loss.
    pub cls_loss: f64,
    /// Mean main-layer L1 loss.
    pub l1_loss: f64,
    /// Validation mAP50 of the EMA weights.
    pub map50: f64,
    /// Validation mAP50-95 of the EMA weights.
    pub map50_95: f64,
    /// Learning rate of the weight group at the end of the epoch.
    pub lr: f64,
}

/// What a run needs to continue exactly where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    model: ModelConfig,
    train: TrainConfig,
    names: Vec<String>,
    next_epoch: usize,
    optimizer_steps: u64,
    ema_updates: u64,
    /// −∞ before the first validation (written as JSON `null`).
    #[serde(deserialize_with = "null_is_minus_infinity")]
    best_fitness: f64,
    history: Vec<EpochStats>,
    #[serde(default)]
    notes: std::collections::BTreeMap<String, String>,
    /// Batches of `next_epoch` already done (a mid-epoch save), 0 at epoch ends.
    #[serde(default)]
    batch_in_epoch: usize,
    /// Sums of the main-layer losses over those batches.
    #[serde(default)]
    epoch_sums: [f64; 3],
}

fn null_is_minus_infinity<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// A training run: model, optimizer, EMA and data, writing into `save_dir`.
pub struct Trainer {
    varmap: VarMap,
    model: RtDetr,
    optimizer: AdamW,
    ema: Ema,
    schedule: Schedule,
    loss: DetrLoss,
    train: Arc<Vec<Sample>>,
    val: Vec<Sample>,
    device: Device,
    save_dir: PathBuf,
    state: RunState,
    stop_at_step: Option<u64>,
}

fn error(message: String) -> candle::Error {
    candle::Error::Msg(message)
}

impl Trainer {
    /// A new run from scratch or from `weights` (a full checkpoint, or any file whose keys are a
    /// subset of the model's, e.g. a converted backbone under `model.0.`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: ModelConfig,
        train_cfg: TrainConfig,
        names: Vec<String>,
        train: Vec<Sample>,
        val: Vec<Sample>,
        weights: Option<&Path>,
        save_dir: PathBuf,
        device: Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let net = RtDetr::new(
            &model,
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
        )?;
        crate::train::initialize(&varmap, model.nc(), train_cfg.seed)?;
        if let Some(path) = weights {
            let tensors = candle::safetensors::load(path, &device)
                .map_err(|e| error(format!("{}: {e}", path.display())))?;
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| error("poisoned variable map".into()))?;
            if let Some(unknown) = tensors
                .keys()
                .find(|k| !vars.contains_key(*k) && !k.ends_with("num_batches_tracked"))
            {
                return Err(error(format!(
                    "{}: {unknown} is not a parameter of this model",
                    path.display()
                )));
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

    /// Continues the run saved in `save_dir` (its `last.state.safetensors`).
    pub fn resume(
        save_dir: PathBuf,
        train: Vec<Sample>,
        val: Vec<Sample>,
        device: Device,
    ) -> Result<Self> {
        let path = save_dir.join("last.state.safetensors");
        let meta = crate::read_metadata(&path).map_err(|e| error(e.to_string()))?;
        let state: RunState = serde_json::from_str(
            meta.get("run")
                .ok_or_else(|| error(format!("{}: no run state", path.display())))?,
        )
        .map_err(|e| error(format!("{}: bad run state: {e}", path.display())))?;
        let mut t = Self::new(
            state.model.clone(),
            state.train.clone(),
            state.names.clone(),
            train,
            val,
            None,
            save_dir,
            device,
        )?;
        let tensors = candle::safetensors::load(&path, &t.device)?;
        for (name, var) in t
            .varmap
            .data()
            .lock()
            .map_err(|_| error("poisoned variable map".into()))?
            .iter()
        {
            var.set(
                tensors
                    .get(name)
                    .ok_or_else(|| error(format!("{}: lacks {name}", path.display())))?,
            )?;
        }
        t.optimizer.restore(&tensors, state.optimizer_steps)?;
        t.ema.shadow = t
            .ema
            .shadow
            .keys()
            .map(|k| {
                Ok((
                    k.clone(),
                    tensors
                        .get(&format!("ema.{k}"))
                        .cloned()
                        .ok_or_else(|| error(format!("lacks ema.{k}")))?,
                ))
            })
            .collect::<Result<_>>()?;
        t.ema.updates = state.ema_updates;
        t.state = state;
        Ok(t)
    }

    /// Test hook that simulates a kill: `run_epoch` returns an error right after optimizer step
    /// `step` (and its periodic save, if one falls there).
    pub fn set_stop_at_step(&mut self, step: Option<u64>) {
        self.stop_at_step = step;
    }

    /// Batches of the current epoch already done (non-zero after resuming a mid-epoch save).
    pub fn batches_done_in_epoch(&self) -> usize {
        self.state.batch_in_epoch
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
    pub fn run_epoch(
        &mut self,
        mut on_batch: impl FnMut(usize, usize, [f64; 3]),
    ) -> Result<EpochStats> {
        let epoch = self.state.next_epoch;
        let cfg = self.state.train.clone();
        let nb = self.schedule.batches_per_epoch;
        let seed = cfg.seed;
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let rng = effnetv2::DropPathRng::new(mix_seed(&[seed, epoch as u64, 1]));
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
            let batch = batch.map_err(error)?;
            let ni = i + nb * epoch;
            self.optimizer.lr = self.schedule.lr(epoch, ni);
            let accumulate = self.schedule.accumulate(ni);
            let gt = GroundTruth {
                cls: batch.labels.iter().flatten().map(|l| l.class).collect(),
                boxes: batch.labels.iter().flatten().map(|l| l.bbox).collect(),
                groups: batch.labels.iter().map(Vec::len).collect(),
            };
            let noise_rng = effnetv2::DropPathRng::new(mix_seed(&[seed, ni as u64, 3]));
            let noise = CdnNoise::for_batch(&gt.groups, self.state.model.nc(), 100, 0.5, || {
                noise_rng.uniform() as f32
            });
            self.model
                .backbone()
                .drop_path_rng()
                .set_state(mix_seed(&[seed, ni as u64, 4]));
            let out = self.model.forward_train(&batch.images, &gt, &noise)?;
            let total = detection_loss(&self.loss, &out, &gt)?;
            let value = total.0.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(error(format!("loss became {value} at epoch {epoch}, batch {i}; stopping (the last checkpoint is kept)")));
            }
            for (s, v) in sums.iter_mut().zip(total.1) {
                *s += v;
            }
            let grads = gradients(&total.0.backward()?, &vars);
            for (a, g) in acc.iter_mut().zip(grads) {
                *a = match (a.take(), g) {
                    (Some(a), Some(g)) => Some((a + g)?),
                    (a, g) => a.or(g),
                };
            }
            pending += 1;
            if pending >= accumulate {
                clip_grad_norm(&mut acc, cfg.max_norm)?;
                self.optimizer.step(&acc)?;
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
                    return Err(error(format!(
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
        evaluate(
            &self.ema_model()?,
            &self.val,
            &self.state.names,
            cfg.imgsz,
            cfg.batch,
            &self.device,
        )
    }

    fn metadata(&self, epoch: usize) -> HashMap<String, String> {
        let mut meta = self.base_metadata(epoch);
        meta.extend(self.state.notes.iter().map(|(k, v)| (k.clone(), v.clone())));
        meta
    }

    fn base_metadata(&self, epoch: usize) -> HashMap<String, String> {
        let names: HashMap<String, &String> = self
            .state
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), n))
            .collect();
        HashMap::from([
            (
                "names".to_string(),
                serde_json::to_string(&names).unwrap_or_default(),
            ),
            (
                CONFIG_KEY.to_string(),
                serde_json::to_string(&self.state.model).unwrap_or_default(),
            ),
            ("epoch".to_string(), epoch.to_string()),
        ])
    }

    /// Writes `last.safetensors` (EMA weights), `best.safetensors` when `improved`,
    /// `last.state.safetensors` (everything to resume), `results.csv` and `results.png`, each
    /// atomically.
    fn save(&self, improved: bool) -> Result<()> {
        let io = |e: std::io::Error| {
            error(format!(
                "writing checkpoints to {}: {e}",
                self.save_dir.display()
            ))
        };
        let epoch = self.state.next_epoch;
        let ema: Vec<(String, Tensor)> = self
            .ema
            .shadow
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        checkpoint::save_atomic(
            &self.save_dir.join("last.safetensors"),
            &ema,
            self.metadata(epoch),
        )
        .map_err(io)?;
        if improved {
            checkpoint::save_atomic(
                &self.save_dir.join("best.safetensors"),
                &ema,
                self.metadata(epoch),
            )
            .map_err(io)?;
        }
        self.save_state(epoch)?;
        self.write_results()
    }

    /// Writes `last.state.safetensors`: the weights, EMA, optimizer moments and the run state.
    fn save_state(&self, epoch: usize) -> Result<()> {
        let io = |e: std::io::Error| {
            error(format!(
                "writing checkpoints to {}: {e}",
                self.save_dir.display()
            ))
        };
        let mut state: Vec<(String, Tensor)> = self
            .varmap
            .data()
            .lock()
            .map_err(|_| error("poisoned variable map".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        state.extend(
            self.ema
                .shadow
                .iter()
                .map(|(k, v)| (format!("ema.{k}"), v.clone())),
        );
        state.extend(self.optimizer.state());
        let mut meta = self.metadata(epoch);
        meta.insert(
            "run".into(),
            serde_json::to_string(&self.state).map_err(|e| error(e.to_string()))?,
        );
        checkpoint::save_atomic(&self.save_dir.join("last.state.safetensors"), &state, meta)
            .map_err(io)
    }

    /// Writes `results.csv` and `results.png` (one panel per column), each atomically.
    fn write_results(&self) -> Result<()> {
        let io = |e: std::io::Error| {
            error(format!(
                "writing checkpoints to {}: {e}",
                self.save_dir.display()
            ))
        };
        let mut csv = String::from("epoch,train/giou_loss,train/cls_loss,train/l1_loss,metrics/mAP50(B),metrics/mAP50-95(B),lr/pg0\n");
        for s in &self.state.history {
            csv.push_str(&format!(
                "{},{:.5},{:.5},{:.5},{:.5},{:.5},{:.6}\n",
                s.epoch + 1,
                s.giou_loss,
                s.cls_loss,
                s.l1_loss,
                s.map50,
                s.map50_95,
                s.lr
            ));
        }
        checkpoint::write_atomic(&self.save_dir.join("results.csv"), csv.as_bytes()).map_err(io)?;
        let h = &self.state.history;
        let column = |f: fn(&EpochStats) -> f64| h.iter().map(f).collect::<Vec<f64>>();
        let series = vec![
            ("train/giou_loss".to_string(), column(|s| s.giou_loss)),
            ("train/cls_loss".to_string(), column(|s| s.cls_loss)),
            ("train/l1_loss".to_string(), column(|s| s.l1_loss)),
            ("metrics/mAP50(B)".to_string(), column(|s| s.map50)),
            ("metrics/mAP50-95(B)".to_string(), column(|s| s.map50_95)),
            ("lr/pg0".to_string(), column(|s| s.lr)),
        ];
        crate::train::plot::write_png(&self.save_dir.join("results.png"), &series).map_err(io)
    }
}

/// Whether `epoch` of `epochs` uses mosaic with `close_mosaic` (see [`Trainer::mosaic_on`]).
pub fn mosaic_open(epoch: usize, epochs: usize, close_mosaic: usize) -> bool {
    close_mosaic == 0 || (epoch as i64) < epochs as i64 - close_mosaic as i64
}

/// mAP of `model` on `samples` (images stretched to `imgsz`, predictions at conf 0.001 and up to
/// 300 per image, boxes in original pixels), with the COCO evaluator.
pub fn evaluate(
    model: &RtDetr,
    samples: &[Sample],
    names: &[String],
    imgsz: usize,
    batch: usize,
    device: &Device,
) -> Result<Summary> {
    let mut gt = coco::Dataset {
        categories: names
            .iter()
            .enumerate()
            .map(|(i, n)| coco::Category {
                id: i as u64,
                name: n.clone(),
            })
            .collect(),
        ..coco::Dataset::default()
    };
    let mut detections = Vec::new();
    let filter = Filter {
        conf: 0.001,
        max_det: 300,
        classes: None,
    };
    for chunk in samples.chunks(batch.max(1)) {
        let loaded: Vec<_> = chunk
            .iter()
            .map(|s| crate::data::load_sample(s, imgsz, None).map_err(error))
            .collect::<Result<_>>()?;
        let raw: Vec<(&[u8], usize, usize)> = loaded
            .iter()
            .map(|l| (l.pixels.as_slice(), imgsz, imgsz))
            .collect();
        let images = preprocess::to_batch(&raw, imgsz, device)?;
        let rows = model
            .forward_t(&images, false)?
            .decoder
            .detections
            .to_device(&Device::Cpu)?;
        let sizes: Vec<(usize, usize)> = loaded.iter().map(|l| l.original).collect();
        for ((dets, l), sample) in postprocess(&rows, &sizes, &filter)?
            .into_iter()
            .zip(&loaded)
            .zip(chunk)
        {
            let id = gt.images.len() as u64 + 1;
            let (h, w) = (l.original.0 as f64, l.original.1 as f64);
            gt.images.push(coco::Image {
                id,
                file_name: sample.image.display().to_string(),
                width: w as u32,
                height: h as u32,
            });
            for label in &sample.labels {
                let [cx, cy, bw, bh] = label.bbox.map(f64::from);
                let bbox = [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, bw * w, bh * h];
                let ann = coco::Annotation {
                    id: gt.annotations.len() as u64 + 1,
                    image_id: id,
                    category_id: label.class as u64,
                    bbox,
                    area: Some(bbox[2] * bbox[3]),
                    iscrowd: 0,
                };
                gt.annotations.push(ann);
            }
            detections.extend(dets.iter().map(|d| coco::Detection {
                image_id: id,
                category_id: d.class_id as u64,
                bbox: [
                    d.bbox[0] as f64,
                    d.bbox[1] as f64,
                    (d.bbox[2] - d.bbox[0]) as f64,
                    (d.bbox[3] - d.bbox[1]) as f64,
                ],
                score: d.score as f64,
            }));
        }
    }
    coco::evaluate(&gt, &detections).map_err(error)
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
