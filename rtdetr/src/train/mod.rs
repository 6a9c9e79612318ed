//! Training pieces with ultralytics' semantics: parameter groups, AdamW, gradient clipping.

mod optim;

pub use optim::{clip_grad_norm, param_group, AdamW, ParamGroup};
