use std::sync::{Arc, Mutex};

use candle::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::Variant;

/// One tensor a module loads: its state_dict key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key, e.g. `blocks.3.block.fused.0.weight`.
    pub key: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl Entry {
    /// Running statistics are state, not parameters (`named_buffers` in PyTorch).
    pub fn is_buffer(&self) -> bool {
        self.key.ends_with("running_mean") || self.key.ends_with("running_var")
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor a model asks its `VarBuilder` for, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The requested tensors.
    pub entries: Vec<Entry>,
}

/// A backend that records each request and answers with a zero broadcast to the shape, so a
/// model of any size is built without allocating its weights.
struct Recorder(Arc<Mutex<Vec<Entry>>>);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let entry = Entry {
            key: name.to_string(),
            shape: s.dims().to_vec(),
        };
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle::bail!("manifest: {name} was requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

impl Manifest {
    /// Records the tensors `build` requests from the `VarBuilder` it is given.
    pub fn record<T>(build: impl FnOnce(VarBuilder) -> Result<T>) -> Result<Self> {
        let entries = Arc::new(Mutex::new(Vec::new()));
        let backend: Box<dyn candle_nn::var_builder::SimpleBackend> =
            Box::new(Recorder(entries.clone()));
        build(VarBuilder::from_backend(backend, DType::F32, Device::Cpu))?;
        let entries = entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        Ok(Self { entries })
    }

    /// The backbone of `variant`, keys relative to the backbone (`stem.0.weight`).
    pub fn backbone(variant: Variant) -> Result<Self> {
        Self::record(|vb| effnetv2::EfficientNetV2::new(&variant.backbone(), vb))
    }

    /// The whole detector, keys from the root (`model.0.stem.0.weight` .. `model.19.*`).
    pub fn model(cfg: &crate::ModelConfig) -> Result<Self> {
        Self::record(|vb| crate::RtDetr::new(cfg, vb))
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Trainable parameters (buffers excluded), as PyTorch's `sum(p.numel() for p in parameters())`.
    pub fn parameter_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !e.is_buffer())
            .map(Entry::numel)
            .sum()
    }

    /// Parameters whose key starts with `prefix` followed by `.`.
    pub fn parameter_count_under(&self, prefix: &str) -> usize {
        self.entries
            .iter()
            .filter(|e| !e.is_buffer())
            .filter(|e| {
                e.key
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(Entry::numel)
            .sum()
    }
}
