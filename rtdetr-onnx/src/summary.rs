//! Reading, writing and summarising ONNX files.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::{DataType, ModelProto, TensorProto, ValueInfoProto};

/// A protobuf message cannot exceed 2 GiB, so neither can a model file without external data.
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Why an ONNX file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{}: not an ONNX model ({why})", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads an ONNX model (weights inside the file; at most 2 GiB).
pub fn read_model(path: &Path) -> Result<ModelProto, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |why: String| Error::Invalid {
        path: path.to_path_buf(),
        why,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(invalid(format!(
            "{len} bytes, more than a protobuf message can hold"
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| invalid(e.to_string()))?;
    if model.graph.is_none() {
        return Err(invalid("no graph".into()));
    }
    Ok(model)
}

/// Writes `model` to `path` through a file beside it, so a failed write leaves nothing half-written.
pub fn write_model(path: &Path, model: &ModelProto) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = model.encode_to_vec();
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            why: format!(
                "{} bytes, more than a protobuf message can hold",
                bytes.len()
            ),
        });
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = PathBuf::from(partial);
    let written = std::fs::File::create(&partial)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&partial, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(io(e));
    }
    Ok(())
}

/// One graph input or output: name, element type and dimensions (`batch` for a symbolic one).
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// Value name.
    pub name: String,
    /// Element type (`float32`, `float16`, ...).
    pub elem: String,
    /// Dimensions: sizes or symbolic names.
    pub dims: Vec<String>,
}

/// What an ONNX file holds, for `rtdetr info model.onnx`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The writer (`producer_name producer_version`).
    pub producer: String,
    /// IR version.
    pub ir_version: i64,
    /// Default-domain operator set.
    pub opset: i64,
    /// Graph inputs other than initializers.
    pub inputs: Vec<Port>,
    /// Graph outputs.
    pub outputs: Vec<Port>,
    /// Nodes per operator type.
    pub ops: BTreeMap<String, usize>,
    /// Weight tensors and their elements in total.
    pub initializers: (usize, u64),
    /// `metadata_props` in file order.
    pub metadata: Vec<(String, String)>,
}

fn elem_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(DataType::Float) => "float32".into(),
        Ok(DataType::Float16) => "float16".into(),
        Ok(DataType::Double) => "float64".into(),
        Ok(DataType::Int64) => "int64".into(),
        Ok(DataType::Int32) => "int32".into(),
        Ok(DataType::Uint8) => "uint8".into(),
        Ok(DataType::Bool) => "bool".into(),
        _ => format!("type {code}"),
    }
}

fn port(value: &ValueInfoProto) -> Port {
    let tensor = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let dims = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match (&d.dim_value, &d.dim_param) {
                    (Some(v), _) => v.to_string(),
                    (None, Some(p)) => p.clone(),
                    (None, None) => "?".into(),
                })
                .collect()
        })
        .unwrap_or_default();
    Port {
        name: value.name.clone().unwrap_or_default(),
        elem: tensor
            .and_then(|t| t.elem_type)
            .map(elem_name)
            .unwrap_or_else(|| "?".into()),
        dims,
    }
}

fn elements(t: &TensorProto) -> u64 {
    t.dims.iter().map(|&d| d.max(0) as u64).product()
}

impl Summary {
    /// The summary of `model`.
    pub fn of(model: &ModelProto) -> Self {
        let graph = model.graph.clone().unwrap_or_default();
        let weights: std::collections::HashSet<&str> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let mut ops = BTreeMap::new();
        for node in &graph.node {
            *ops.entry(node.op_type.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        Self {
            producer: format!(
                "{} {}",
                model.producer_name.as_deref().unwrap_or("?"),
                model.producer_version.as_deref().unwrap_or("")
            )
            .trim()
            .to_string(),
            ir_version: model.ir_version.unwrap_or(0),
            opset: model
                .opset_import
                .iter()
                .find(|o| o.domain.as_deref().unwrap_or("").is_empty())
                .and_then(|o| o.version)
                .unwrap_or(0),
            inputs: graph
                .input
                .iter()
                .filter(|v| !weights.contains(v.name.as_deref().unwrap_or("")))
                .map(port)
                .collect(),
            outputs: graph.output.iter().map(port).collect(),
            ops,
            initializers: (
                graph.initializer.len(),
                graph.initializer.iter().map(elements).sum(),
            ),
            metadata: model
                .metadata_props
                .iter()
                .map(|p| {
                    (
                        p.key.clone().unwrap_or_default(),
                        p.value.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "producer   {}", self.producer)?;
        writeln!(f, "ir/opset   {} / {}", self.ir_version, self.opset)?;
        for (label, ports) in [("input ", &self.inputs), ("output", &self.outputs)] {
            for p in ports {
                writeln!(
                    f,
                    "{label}     {} {} [{}]",
                    p.name,
                    p.elem,
                    p.dims.join(", ")
                )?;
            }
        }
        let (n, elems) = self.initializers;
        writeln!(f, "weights    {n} tensors, {elems} values")?;
        let nodes: usize = self.ops.values().sum();
        writeln!(f, "nodes      {nodes}")?;
        for (op, count) in &self.ops {
            writeln!(f, "  {op:<20} {count}")?;
        }
        for (k, v) in &self.metadata {
            writeln!(f, "meta       {k}: {v}")?;
        }
        Ok(())
    }
}
