//! Training pieces with ultralytics' semantics: parameter groups, AdamW, gradient clipping, the
//! learning-rate schedule with warm-up, and the EMA of the weights.

mod ema;
mod init;
mod loss;
mod optim;
pub mod plot;
mod schedule;
mod trainer;

pub use ema::Ema;
pub use init::initialize;
pub use loss::detection_loss;
pub use optim::{clip_grad_norm, gradients, param_group, AdamW, ParamGroup};
pub use schedule::Schedule;
pub use trainer::{evaluate, mosaic_open, AugmentConfig, EpochStats, TrainConfig, Trainer};
