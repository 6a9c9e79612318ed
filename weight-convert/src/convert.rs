use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use candle::{DType, Tensor};

use crate::elem::{to_tensor, Elem};
use crate::npy::{self, Npy};
use crate::pickle::{Id, Pickle, Value};
use crate::rename::Rename;
use crate::torch::TorchZip;
use crate::{official, timm, torchvision, Error, Result};

/// The kinds of weights files the converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An ultralytics `best.pt`/`last.pt`: a `torch.save`d dict whose `ema` or `model` entry is
    /// the whole pickled module tree (or a bare pickled module).
    Ultralytics,
    /// A plain state dict (`.pt`/`.pth` or safetensors) already in our key names.
    StateDict,
    /// The official EfficientNetV2 release: an `.npy` dict of TensorFlow-named arrays.
    OfficialNpy,
    /// timm `tf_efficientnetv2_*` names (safetensors or `.pth`).
    Timm,
    /// torchvision `efficientnet_v2_*` names (`.pth` or safetensors).
    Torchvision,
}

impl Source {
    /// All sources, as `--from` lists them.
    pub const ALL: [Source; 5] = [
        Source::Ultralytics,
        Source::StateDict,
        Source::OfficialNpy,
        Source::Timm,
        Source::Torchvision,
    ];

    /// The `--from` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Source::Ultralytics => "ultralytics",
            Source::StateDict => "state-dict",
            Source::OfficialNpy => "npy",
            Source::Timm => "timm",
            Source::Torchvision => "torchvision",
        }
    }

    /// Whether the output is a backbone alone (keys relative to `model.0`).
    pub fn is_backbone(self) -> bool {
        matches!(
            self,
            Source::OfficialNpy | Source::Timm | Source::Torchvision
        )
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!("unknown source {s:?} (expected ultralytics, state-dict, npy, timm or torchvision)")
            })
    }
}

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Force the source kind instead of detecting it from the content.
    pub from: Option<Source>,
    /// Prepended to every output key (e.g. `model.0.` for a backbone to merge into a detector).
    pub prefix: String,
}

/// Tensors under our keys, with what was learnt about them.
#[derive(Debug, Clone)]
pub struct Converted {
    /// What the input was.
    pub source: Source,
    /// `(our key, tensor)` in the source's order; floats keep the source's dtype.
    pub tensors: Vec<(String, Tensor)>,
    /// `names` (class names as a JSON object) and `imgsz` where the source had them.
    pub metadata: BTreeMap<String, String>,
    /// Source tensors dropped on purpose (classifier head, `num_batches_tracked`, ...).
    pub ignored: Vec<String>,
}

impl Converted {
    /// Casts every floating-point tensor to `dtype` (integers stay as they are).
    pub fn to_dtype(&self, dtype: DType) -> Result<Vec<(String, Tensor)>> {
        self.tensors
            .iter()
            .map(|(k, t)| {
                let t = if t.dtype().is_float() {
                    t.to_dtype(dtype)?
                } else {
                    t.clone()
                };
                Ok((k.clone(), t))
            })
            .collect()
    }
}

/// The container a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A `torch.save` zip (PyTorch ≥ 1.6).
    TorchZip,
    /// A NumPy `.npy` file.
    Npy,
    /// A safetensors file.
    Safetensors,
}

/// Recognises the container from the content.
pub fn sniff(bytes: &[u8]) -> Result<Container> {
    if bytes.is_empty() {
        return Err(Error::Malformed("empty file".into()));
    }
    if bytes.starts_with(crate::zip::MAGIC) {
        return Ok(Container::TorchZip);
    }
    if bytes.starts_with(npy::MAGIC) {
        return Ok(Container::Npy);
    }
    if let (Some(len), Some(b'{')) = (bytes.get(..8), bytes.get(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(len);
        let n = u64::from_le_bytes(a);
        if n >= 2 && n <= bytes.len() as u64 - 8 {
            return Ok(Container::Safetensors);
        }
    }
    if bytes[0] == 0x80 {
        return Err(Error::Unsupported(
            "a bare pickle (legacy torch.save before PyTorch 1.6?): re-save it with torch.save"
                .into(),
        ));
    }
    let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(Error::Malformed(format!(
        "not a torch.save zip, .npy or safetensors file (starts with {head})"
    )))
}

/// Reads and converts the file at `path`; errors name the file.
pub fn convert_file(path: &Path, opts: &Options) -> Result<Converted> {
    let bytes = std::fs::read(path).map_err(|e| Error::from(e).in_file(path))?;
    convert_bytes(&bytes, opts).map_err(|e| e.in_file(path))
}

/// Converts a file held in memory.
pub fn convert_bytes(bytes: &[u8], opts: &Options) -> Result<Converted> {
    let container = sniff(bytes)?;
    let forced = opts.from;
    let (read, kind) = match container {
        Container::TorchZip => read_torch(bytes, forced)?,
        Container::Npy => (read_npy(bytes)?, Source::OfficialNpy),
        Container::Safetensors => (read_safetensors(bytes)?, Source::StateDict),
    };
    let Read {
        names,
        mut tensors,
        metadata,
    } = read;
    let source = match (forced, kind) {
        (Some(Source::OfficialNpy), k) if k != Source::OfficialNpy => {
            return Err(Error::Unsupported(format!(
                "--from npy, but this is a {container:?} file"
            )))
        }
        (Some(f), Source::OfficialNpy) if f != Source::OfficialNpy => {
            return Err(Error::Unsupported(format!(
                "--from {f}, but this is an .npy file"
            )))
        }
        (Some(Source::Ultralytics), k) if k != Source::Ultralytics => {
            return Err(Error::Unsupported(
                "--from ultralytics, but the file holds no pickled module (a plain state dict?)"
                    .into(),
            ))
        }
        (Some(f), _) => f,
        (None, Source::StateDict) if timm::detect(&names) => Source::Timm,
        (None, Source::StateDict) if torchvision::detect(&names) => Source::Torchvision,
        (None, k) => k,
    };
    let renames = match source {
        Source::OfficialNpy => official::rename(&names)?,
        Source::Timm => timm::rename(&names)?,
        Source::Torchvision => torchvision::rename(&names)?,
        Source::Ultralytics | Source::StateDict => names
            .iter()
            .map(|k| {
                if k.ends_with("num_batches_tracked") {
                    Rename::Ignore
                } else {
                    Rename::To(k.strip_prefix("module.").unwrap_or(k).to_string())
                }
            })
            .collect(),
    };
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    let mut seen = HashSet::new();
    for ((name, rename), t) in names.iter().zip(renames).zip(tensors.drain(..)) {
        match rename {
            Rename::Ignore => ignored.push(name.clone()),
            Rename::To(key) => {
                let t = match source {
                    Source::OfficialNpy => official::to_torch_layout(name, t)?,
                    _ => t,
                };
                let key = format!("{}{key}", opts.prefix);
                if !seen.insert(key.clone()) {
                    return Err(Error::Mapping(format!("two source tensors map to {key}")));
                }
                out.push((key, t));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Mapping(format!(
            "no weight tensors found (as {source}; {} ignored)",
            ignored.len()
        )));
    }
    Ok(Converted {
        source,
        tensors: out,
        metadata,
        ignored,
    })
}

/// Named tensors read from a container, before renaming.
struct Read {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    metadata: BTreeMap<String, String>,
}

fn read_torch(bytes: &[u8], forced: Option<Source>) -> Result<(Read, Source)> {
    let mut tz = TorchZip::open(bytes)?;
    let root = tz.pickle.root;
    let p = &tz.pickle;
    let module = if tz.is_module(root) {
        Some(root)
    } else {
        ["ema", "model"]
            .into_iter()
            .filter_map(|k| p.dict_get(root, k))
            .find(|&m| tz.is_module(m))
    };
    let (entries, metadata, kind) = if let Some(m) = module {
        let mut metadata = BTreeMap::new();
        if let Some(names) = [root, m]
            .into_iter()
            .find_map(|o| attr(p, o, "names"))
            .and_then(|n| names_json(p, n))
        {
            metadata.insert("names".to_string(), names);
        }
        let imgsz = attr(p, root, "train_args")
            .and_then(|a| attr(p, a, "imgsz"))
            .or_else(|| attr(p, m, "args").and_then(|a| attr(p, a, "imgsz")))
            .and_then(|i| imgsz(p, i));
        if let Some(i) = imgsz {
            metadata.insert("imgsz".to_string(), i.to_string());
        }
        (tz.module_state_dict(m)?, metadata, Source::Ultralytics)
    } else {
        let dict = [root]
            .into_iter()
            .chain(
                ["state_dict", "model_state_dict", "model", "ema"]
                    .into_iter()
                    .filter_map(|k| p.dict_get(root, k)),
            )
            .find(|&d| {
                p.dict(d)
                    .is_some_and(|e| e.iter().any(|(_, v)| matches!(p.get(*v), Value::Tensor(_))))
            })
            .ok_or_else(|| {
                Error::Mapping(match forced {
                    Some(f) => format!("no tensors found to convert as {f}"),
                    None => "neither a pickled module nor a dict of tensors".to_string(),
                })
            })?;
        let entries = p
            .dict(dict)
            .unwrap_or_default()
            .iter()
            .filter(|(_, v)| matches!(p.get(*v), Value::Tensor(_)))
            .map(|&(k, v)| {
                p.str(k)
                    .map(|k| (k.to_string(), v))
                    .ok_or_else(|| Error::Malformed("state dict key is not a string".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        (entries, BTreeMap::new(), Source::StateDict)
    };
    let mut names = Vec::with_capacity(entries.len());
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, id) in entries {
        let t = tz
            .tensor(id)
            .map_err(|e| Error::Malformed(format!("tensor {name}: {e}")))?;
        names.push(name);
        tensors.push(t);
    }
    Ok((
        Read {
            names,
            tensors,
            metadata,
        },
        kind,
    ))
}

/// `obj[key]` for a dict, `obj.key` for an inert object with a dict state.
fn attr(p: &Pickle, obj: Id, key: &str) -> Option<Id> {
    p.dict_get(obj, key)
        .or_else(|| p.state(obj).and_then(|s| p.dict_get(s, key)))
        .filter(|&v| !matches!(p.get(v), Value::None))
}

/// ultralytics `names` (`{0: 'cat', ...}` or `['cat', ...]`) as a JSON object.
fn names_json(p: &Pickle, id: Id) -> Option<String> {
    let map: BTreeMap<String, String> = match p.get(id) {
        Value::Dict(entries) => entries
            .iter()
            .map(|&(k, v)| Some((p.int(k)?.to_string(), p.str(v)?.to_string())))
            .collect::<Option<_>>()?,
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, &v)| Some((i.to_string(), p.str(v)?.to_string())))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    serde_json::to_string(&map).ok()
}

fn imgsz(p: &Pickle, id: Id) -> Option<i64> {
    p.int(id)
        .or_else(|| p.seq(id).and_then(|s| s.first()).and_then(|&i| p.int(i)))
        .filter(|&i| i > 0)
}

fn read_npy(bytes: &[u8]) -> Result<Read> {
    let p = match npy::read(bytes)? {
        Npy::Object(p) => p,
        Npy::Array(_) => {
            return Err(Error::Mapping(
                "a single numeric array, not a dict of named weights".into(),
            ))
        }
    };
    let item = npy::object_item(&p)?;
    let entries = p
        .dict(item)
        .ok_or_else(|| Error::Mapping("the npy object is not a dict".into()))?;
    let mut names = Vec::new();
    let mut tensors = Vec::new();
    for &(k, v) in entries {
        let Some(name) = p.str(k) else { continue };
        if !matches!(p.get(v), Value::Array(_)) {
            continue;
        }
        let t = npy::array_tensor(&p, v).map_err(|e| Error::Malformed(format!("{name}: {e}")))?;
        names.push(name.to_string());
        tensors.push(t);
    }
    Ok(Read {
        names,
        tensors,
        metadata: BTreeMap::new(),
    })
}

fn read_safetensors(bytes: &[u8]) -> Result<Read> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Malformed(format!("safetensors: {e}")))?;
    crate::unique_keys::check_unique_keys(bytes)
        .map_err(|e| Error::Malformed(format!("safetensors: {e}")))?;
    let mut names = Vec::new();
    let mut tensors = Vec::new();
    let mut list = st.tensors();
    list.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    for (name, view) in list {
        let elem = match view.dtype() {
            Dtype::F16 => Elem::F16,
            Dtype::BF16 => Elem::Bf16,
            Dtype::F32 => Elem::F32,
            Dtype::F64 => Elem::F64,
            Dtype::BOOL => Elem::Bool,
            Dtype::U8 => Elem::U8,
            Dtype::I8 => Elem::I8,
            Dtype::I16 => Elem::I16,
            Dtype::I32 => Elem::I32,
            Dtype::I64 => Elem::I64,
            d => {
                return Err(Error::Unsupported(format!(
                    "{name}: safetensors dtype {d:?}"
                )))
            }
        };
        tensors.push(to_tensor(elem, false, false, view.shape(), view.data())?);
        names.push(name);
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Malformed(format!("safetensors: {e}")))?;
    let metadata = header
        .metadata()
        .iter()
        .flatten()
        .filter(|(k, _)| KEPT_METADATA.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Read {
        names,
        tensors,
        metadata,
    })
}

/// The metadata a safetensors input keeps through conversion: what the detector reads.
const KEPT_METADATA: [&str; 3] = ["names", "imgsz", "rtdetr_config"];
