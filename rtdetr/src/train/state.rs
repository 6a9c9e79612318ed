//! The saved state of a run: what `last.state.safetensors` holds, resuming from it, and writing
//! the checkpoints.

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{EpochStats, TrainConfig, TrainSetup, Trainer};
use crate::data::Sample;
use crate::{checkpoint, Error, ModelConfig, Result, CONFIG_KEY};

/// What a run needs to continue exactly where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunState {
    pub(super) model: ModelConfig,
    pub(super) train: TrainConfig,
    pub(super) names: Vec<String>,
    pub(super) next_epoch: usize,
    pub(super) optimizer_steps: u64,
    pub(super) ema_updates: u64,
    /// −∞ before the first validation (written as JSON `null`).
    #[serde(deserialize_with = "null_is_minus_infinity")]
    pub(super) best_fitness: f64,
    pub(super) history: Vec<EpochStats>,
    #[serde(default)]
    pub(super) notes: std::collections::BTreeMap<String, String>,
    /// Batches of `next_epoch` already done (a mid-epoch save), 0 at epoch ends.
    #[serde(default)]
    pub(super) batch_in_epoch: usize,
    /// Sums of the main-layer losses over those batches.
    #[serde(default)]
    pub(super) epoch_sums: [f64; 3],
}

fn null_is_minus_infinity<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

impl Trainer {
    /// Continues the run saved in `save_dir` (its `last.state.safetensors`).
    pub fn resume(
        save_dir: PathBuf,
        train: Vec<Sample>,
        val: Vec<Sample>,
        device: Device,
    ) -> Result<Self> {
        let path = save_dir.join("last.state.safetensors");
        let in_file = |e: Error| e.in_file(&path);
        let meta = crate::read_metadata(&path)?;
        let run = meta
            .get("run")
            .ok_or_else(|| in_file(Error::Run("no run state".into())))?;
        let state: RunState = serde_json::from_str(run)
            .map_err(|e| in_file(Error::Run(format!("bad run state: {e}"))))?;
        state.train.check().map_err(in_file)?;
        let mut t = Self::new(TrainSetup {
            model: state.model.clone(),
            train: state.train.clone(),
            names: state.names.clone(),
            train_samples: train,
            val_samples: val,
            weights: None,
            save_dir,
            device,
        })?;
        let tensors = candle::safetensors::load(&path, &t.device).map_err(|e| in_file(e.into()))?;
        for (name, var) in t
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::Run("poisoned variable map".into()))?
            .iter()
        {
            var.set(
                tensors
                    .get(name)
                    .ok_or_else(|| in_file(Error::Run(format!("lacks {name}"))))?,
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
                        .ok_or_else(|| in_file(Error::Run(format!("lacks ema.{k}"))))?,
                ))
            })
            .collect::<Result<_>>()?;
        t.ema.updates = state.ema_updates;
        t.state = state;
        Ok(t)
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
            ("imgsz".to_string(), self.state.train.imgsz.to_string()),
            (
                "train_args".to_string(),
                serde_json::to_string(&self.state.train).unwrap_or_default(),
            ),
        ])
    }

    /// Writes `last.safetensors` (EMA weights), `best.safetensors` when `improved`,
    /// `last.state.safetensors` (everything to resume), `results.csv` and `results.png`, each
    /// atomically.
    pub(super) fn save(&self, improved: bool) -> Result<()> {
        let io = |e: std::io::Error| Error::from(e).in_file(&self.save_dir);
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
        super::report::write_results(&self.save_dir, &self.state.history).map_err(io)
    }

    /// Writes `last.state.safetensors`: the weights, EMA, optimizer moments and the run state.
    pub(super) fn save_state(&self, epoch: usize) -> Result<()> {
        let io = |e: std::io::Error| Error::from(e).in_file(&self.save_dir);
        let mut state: Vec<(String, Tensor)> = self
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::Run("poisoned variable map".into()))?
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
            serde_json::to_string(&self.state).map_err(|e| Error::Run(e.to_string()))?,
        );
        checkpoint::save_atomic(&self.save_dir.join("last.state.safetensors"), &state, meta)
            .map_err(io)
    }
}
