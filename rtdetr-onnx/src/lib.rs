//! Writes and reads ONNX models: a graph builder whose helpers are the layers of a detector
//! (convolution, linear, layer norm, attention pieces, `GridSample`), and a reader that summarises any
//! ONNX file (inputs, outputs, operator counts, metadata).
//!
//! Written here rather than taken from a crate: the ONNX crates on crates.io either generate their
//! messages with `protoc` at build time (candle-onnx, onnx-pb), which CI machines lack, or come with a
//! whole inference engine (tract-onnx). The messages are derived with prost, the maintained protobuf
//! crate, from the subset of `onnx.proto` that a graph needs ([`proto`]).

pub mod graph;
pub mod ops;
pub mod proto;
pub mod summary;

pub use graph::{Dim, GraphBuilder, OPSETS};
pub use ops::Sampler;
pub use summary::{read_model, write_model, Summary};
