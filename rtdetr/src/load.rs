use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use candle::{DType, Device};
use candle_nn::VarBuilder;

use crate::{Manifest, ModelConfig, RtDetr, Variant};

/// How a weights file differs from what a model loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Keys the model needs that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that the model does not use.
    pub unexpected: Vec<String>,
    /// `(key, expected shape, shape in the file)`.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl KeyReport {
    /// Compares a file's tensor shapes with a model's manifest. PyTorch's `num_batches_tracked`
    /// counters are accepted beside the batch norms they belong to.
    pub fn compare(manifest: &Manifest, file: &BTreeMap<String, Vec<usize>>) -> Self {
        let wanted: HashMap<&str, &Vec<usize>> = manifest
            .entries
            .iter()
            .map(|e| (e.key.as_str(), &e.shape))
            .collect();
        let mut report = Self::default();
        for entry in &manifest.entries {
            match file.get(&entry.key) {
                None => report.missing.push(entry.key.clone()),
                Some(shape) if *shape != entry.shape => {
                    report
                        .mismatched
                        .push((entry.key.clone(), entry.shape.clone(), shape.clone()))
                }
                Some(_) => {}
            }
        }
        for key in file.keys() {
            let counter_of_known_bn = key
                .strip_suffix("num_batches_tracked")
                .is_some_and(|bn| wanted.contains_key(format!("{bn}running_mean").as_str()));
            if !wanted.contains_key(key.as_str()) && !counter_of_known_bn {
                report.unexpected.push(key.clone());
            }
        }
        report
    }

    /// No missing, unexpected or mis-shaped key.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        let list = |keys: &[String]| {
            let mut s = keys
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if keys.len() > SHOWN {
                s.push_str(&format!(", … ({} in all)", keys.len()));
            }
            s
        };
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected {}", list(&self.unexpected)));
        }
        for (key, want, got) in self.mismatched.iter().take(SHOWN) {
            parts.push(format!("{key} has shape {got:?}, expected {want:?}"));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The weights file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Format {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The variant or class count cannot be told from the tensors.
    #[error("{path}: {message}")]
    Infer {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tensors do not fit the model.
    #[error("{path}: the weights do not fit the model: {report}")]
    Keys {
        /// The weights file.
        path: PathBuf,
        /// The differences.
        report: KeyReport,
    },
    /// Building the model failed.
    #[error("{path}: {source}")]
    Candle {
        /// The weights file.
        path: PathBuf,
        /// The underlying error.
        source: candle::Error,
    },
}

/// A weights-description error from any message.
fn weights(message: impl ToString) -> crate::Error {
    crate::Error::Weights(message.to_string())
}

/// Tensor shapes by name.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// The shape of every tensor in a safetensors buffer (its header only).
pub fn tensor_shapes(bytes: &[u8]) -> crate::Result<Shapes> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(weights)?;
    crate::unique_keys::check_unique_keys(bytes).map_err(weights)?;
    Ok(header
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.shape.clone()))
        .collect())
}

/// The detector a set of tensors belongs to: the class count from `model.19.enc_score_head.weight`,
/// the variant from the backbone's keys and shapes (each unless given).
pub fn infer_config(
    shapes: &BTreeMap<String, Vec<usize>>,
    variant: Option<Variant>,
    nc: Option<usize>,
) -> crate::Result<ModelConfig> {
    const SCORE_HEAD: &str = "model.19.enc_score_head.weight";
    let nc = match nc {
        Some(nc) => nc,
        None => match shapes.get(SCORE_HEAD).map(Vec::as_slice) {
            Some(&[nc, _]) => nc,
            Some(shape) => {
                return Err(weights(format!(
                    "{SCORE_HEAD} has shape {shape:?}, expected [nc, 256]"
                )))
            }
            None => {
                return Err(weights(format!(
                    "no {SCORE_HEAD}: not an RT-DETR checkpoint (pass the class count)"
                )))
            }
        },
    };
    let variant = match variant {
        Some(v) => v,
        None => {
            let backbone: BTreeMap<&str, &Vec<usize>> = shapes
                .iter()
                .filter_map(|(k, s)| Some((k.strip_prefix("model.0.")?, s)))
                .collect();
            let fits = |v: &Variant| {
                Manifest::backbone(*v).is_ok_and(|m| {
                    m.entries
                        .iter()
                        .all(|e| backbone.get(e.key.as_str()) == Some(&&e.shape))
                        && m.entries.len()
                            == backbone
                                .keys()
                                .filter(|k| !k.ends_with("num_batches_tracked"))
                                .count()
                })
            };
            Variant::ALL.into_iter().find(fits).ok_or_else(|| {
                weights(format!(
                    "the {} model.0 tensors match none of the s, m, l, xl backbones (pass --variant to see the differences)",
                    backbone.len()
                ))
            })?
        }
    };
    Ok(ModelConfig::new(variant, nc))
}

impl RtDetr {
    /// Loads a safetensors file whose keys are the PyTorch state_dict keys (`model.0.*` ..
    /// `model.19.*`). The model's sizes come from the file's [`CONFIG_KEY`] metadata when it has
    /// one (custom configurations), else the variant and class count are inferred where not given. Every missing,
    /// unexpected or mis-shaped tensor is reported by name. The model comes ready for inference,
    /// RepConv fused (see [`RtDetr::set_fused`]).
    pub fn load(
        path: impl AsRef<Path>,
        device: &Device,
        variant: Option<Variant>,
        nc: Option<usize>,
    ) -> Result<Self, LoadError> {
        Self::load_as(path, device, DType::F32, variant, nc)
    }

    /// [`RtDetr::load`] with the weights converted to `dtype` on `device`. A `variant` that the
    /// weights contradict is an error.
    pub fn load_as(
        path: impl AsRef<Path>,
        device: &Device,
        dtype: DType,
        variant: Option<Variant>,
        nc: Option<usize>,
    ) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let (bytes, shapes) = read(path)?;
        let infer = |e: crate::Error| LoadError::Infer {
            path: path.into(),
            message: e.to_string(),
        };
        let cfg = match stored_config(&bytes).map_err(infer)? {
            Some(cfg) => cfg,
            None => infer_config(&shapes, variant, nc).map_err(infer)?,
        };
        if let Some(v) = variant.filter(|v| v.backbone() != cfg.backbone) {
            let told = Variant::ALL
                .into_iter()
                .find(|t| t.backbone() == cfg.backbone);
            let is = told.map_or("a custom backbone".to_string(), |t| format!("variant {t}"));
            return Err(infer(crate::Error::Options(format!(
                "the weights are {is}, not variant {v}"
            ))));
        }
        Self::from_buffer(path, bytes, &shapes, &cfg, device, dtype)
    }

    /// Loads a safetensors file into a model of the given configuration, strictly, RepConv fused.
    pub fn load_with_config(
        path: impl AsRef<Path>,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let (bytes, shapes) = read(path)?;
        Self::from_buffer(path, bytes, &shapes, cfg, device, DType::F32)
    }

    fn from_buffer(
        path: &Path,
        bytes: Vec<u8>,
        shapes: &BTreeMap<String, Vec<usize>>,
        cfg: &ModelConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, LoadError> {
        let candle_error = |source| LoadError::Candle {
            path: path.into(),
            source,
        };
        let manifest = Manifest::model(cfg).map_err(candle_error)?;
        let report = KeyReport::compare(&manifest, shapes);
        if !report.is_clean() {
            return Err(LoadError::Keys {
                path: path.into(),
                report,
            });
        }
        non_finite(&bytes).map_err(|message| LoadError::Format {
            path: path.into(),
            message,
        })?;
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, dtype, device).map_err(candle_error)?;
        let mut model = RtDetr::new(cfg, vb).map_err(candle_error)?;
        model.set_fused(true).map_err(candle_error)?;
        Ok(model)
    }
}

/// Refuses weights holding NaN or infinite values (a diverged run saved as best, a broken
/// conversion): such a model detects nothing, silently.
fn non_finite(bytes: &[u8]) -> Result<(), String> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut bad: Vec<String> = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let finite = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .all(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7F80_0000 != 0x7F80_0000),
            Dtype::F16 => data
                .chunks_exact(2)
                .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7C00 != 0x7C00),
            Dtype::BF16 => data
                .chunks_exact(2)
                .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7F80 != 0x7F80),
            Dtype::F64 => data
                .chunks_exact(8)
                .all(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()).is_finite()),
            _ => true,
        };
        if !finite {
            bad.push(name);
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    Err(format!(
        "{} tensors hold NaN or infinite values (first: {}); such weights detect nothing",
        bad.len(),
        bad[0]
    ))
}

/// Metadata key of a JSON [`ModelConfig`] stored beside the weights (custom sizes).
pub const CONFIG_KEY: &str = "rtdetr_config";

/// The [`CONFIG_KEY`] configuration in a safetensors buffer's metadata, if any.
fn stored_config(bytes: &[u8]) -> crate::Result<Option<ModelConfig>> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(weights)?;
    match header.metadata().as_ref().and_then(|m| m.get(CONFIG_KEY)) {
        None => Ok(None),
        Some(json) => serde_json::from_str(json).map(Some).map_err(|e| {
            weights(format!(
                "metadata {CONFIG_KEY} is not a model configuration: {e}"
            ))
        }),
    }
}

/// The file's bytes and the shapes its header declares.
fn read(path: &Path) -> Result<(Vec<u8>, Shapes), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    let shapes = tensor_shapes(&bytes).map_err(|e| LoadError::Format {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok((bytes, shapes))
}

/// The `__metadata__` strings of a safetensors file (class names, image size, ...), reading the
/// header only.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<HashMap<String, String>, LoadError> {
    use std::io::Read;
    let path = path.as_ref();
    let io = |source| LoadError::Io {
        path: path.into(),
        source,
    };
    let format = |message: String| LoadError::Format {
        path: path.into(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| format("shorter than its 8-byte header length".into()))?;
    let len = u64::from_le_bytes(len);
    let file_len = file.metadata().map_err(io)?.len();
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(format(format!(
            "header length {len} exceeds the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format(format!("header is not JSON: {e}")))?;
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}
