//! Builds an ONNX graph node by node.

use std::collections::{HashMap, HashSet};

use candle::{bail, DType, Result, Tensor};

use crate::proto::{
    AttributeProto, AttributeType, DataType, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};

/// The operator sets a graph can be written for: GridSample needs 16.
pub const OPSETS: std::ops::RangeInclusive<i64> = 16..=21;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen when the graph runs (`batch`).
    Named(String),
}

/// An attribute of a node.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// Builds one ONNX graph node by node. Values are named by the node that makes them; nodes are
/// named `scope/Op` after the module (its state_dict prefix) that writes them.
#[derive(Debug)]
pub struct GraphBuilder {
    opset: i64,
    float: DataType,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    names: HashSet<String>,
    int_constants: HashMap<Vec<i64>, String>,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            Dim::Named(s) => Dimension {
                dim_value: None,
                dim_param: Some(s.clone()),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: None,
    }
}

/// The IR version that goes with an operator set (onnx/helper.py's `OP_SET_ID_VERSION_MAP`).
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}

impl GraphBuilder {
    /// A graph for operator set `opset` whose float values are f32, or f16 with `half`.
    pub fn new(opset: i64, half: bool) -> Result<Self> {
        if !OPSETS.contains(&opset) {
            bail!(
                "ONNX opset {opset} is not supported: choose {} to {} (GridSample needs 16)",
                OPSETS.start(),
                OPSETS.end()
            )
        }
        Ok(Self {
            opset,
            float: if half {
                DataType::Float16
            } else {
                DataType::Float
            },
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            names: HashSet::new(),
            int_constants: HashMap::new(),
        })
    }

    /// The operator set.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The element type of float values (f32, or f16 for a half graph).
    pub fn float_type(&self) -> DataType {
        self.float
    }

    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// A graph input of the float type.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        let name = self.unique(name);
        self.inputs.push(value_info(&name, self.float, dims));
        name
    }

    /// A node with one output, named `scope/op`; returns the output.
    pub fn node(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.node_outputs(scope, op, inputs, 1, attributes)
            .remove(0)
    }

    /// A node with `outputs` outputs (`scope/op:0`, `:1`, ...).
    pub fn node_outputs(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attributes: Vec<AttributeProto>,
    ) -> Vec<String> {
        let name = self.unique(&format!("{scope}/{op}"));
        let output: Vec<String> = if outputs == 1 {
            vec![name.clone()]
        } else {
            (0..outputs).map(|i| format!("{name}:{i}")).collect()
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name: Some(name),
            op_type: Some(op.into()),
            attribute: attributes,
            doc_string: None,
            domain: None,
        });
        output
    }

    /// A weight (any float dtype) stored as an initializer of the graph's float type.
    pub fn weight(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let dims: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
        let values = tensor
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(self.floats(name, &values, &dims))
    }

    /// A float constant of the graph's float type.
    pub fn floats(&mut self, name: &str, values: &[f32], dims: &[i64]) -> String {
        let raw: Vec<u8> = match self.float {
            DataType::Float16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let data_type = self.float;
        self.initializer(name, data_type, dims, raw)
    }

    /// An f32 constant whatever the graph's float type (`Resize` scales are always f32).
    pub fn floats_f32(&mut self, name: &str, values: &[f32], dims: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DataType::Float, dims, raw)
    }

    /// A scalar float constant (shape `[]`).
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        self.floats(name, &[value], &[])
    }

    /// A 1-D i64 constant (shapes, axes, indices); equal constants are stored once.
    pub fn ints(&mut self, values: &[i64]) -> String {
        if let Some(name) = self.int_constants.get(values) {
            return name.clone();
        }
        let text: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let name = self.initializer(
            &format!("const/i64[{}]", text.join(",")),
            DataType::Int64,
            &[values.len() as i64],
            raw,
        );
        self.int_constants.insert(values.to_vec(), name.clone());
        name
    }

    fn initializer(
        &mut self,
        name: &str,
        data_type: DataType,
        dims: &[i64],
        raw: Vec<u8>,
    ) -> String {
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(data_type as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// The model: `value` renamed to the output `name` of shape `dims`, with metadata.
    pub fn finish(
        mut self,
        outputs: &[(&str, &str, Vec<Dim>)],
        metadata: &[(String, String)],
        producer_version: &str,
    ) -> ModelProto {
        let mut output = Vec::new();
        for (value, name, dims) in outputs {
            self.node("output", "Identity", &[value], vec![]);
            let last = self.nodes.last_mut().expect("a node was just added");
            last.output = vec![name.to_string()];
            output.push(value_info(name, self.float, dims));
        }
        ModelProto {
            ir_version: Some(ir_version(self.opset)),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(self.opset),
            }],
            producer_name: Some("rtdetr-rs".into()),
            producer_version: Some(producer_version.into()),
            domain: None,
            model_version: None,
            doc_string: None,
            graph: Some(GraphProto {
                node: self.nodes,
                name: Some("main_graph".into()),
                initializer: self.initializers,
                doc_string: None,
                input: self.inputs,
                output,
                value_info: Vec::new(),
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: Some(k.clone()),
                    value: Some(v.clone()),
                })
                .collect(),
        }
    }
}
