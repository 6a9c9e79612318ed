//! Training with ultralytics' semantics, in pieces: the hyper-parameters ([`TrainConfig`]), the
//! parameter groups, AdamW and gradient clipping, the learning-rate schedule with warm-up, the EMA
//! of the weights, one step ([`step`]), the run ([`Trainer`]), its saved state and resume, and
//! its reports (`results.csv`, [`plot`]).

mod config;
mod ema;
mod init;
#[cfg(test)]
mod kill_tests;
mod loss;
mod optim;
pub mod plot;
mod report;
mod schedule;
mod state;
pub mod step;
mod trainer;

pub use config::{AugmentConfig, TrainConfig};
pub use ema::Ema;
pub use init::initialize;
pub use loss::detection_loss;
pub use optim::{clip_grad_norm, gradients, param_group, AdamW, ParamGroup};
pub use report::EpochStats;
pub use schedule::Schedule;
pub use trainer::{mosaic_open, TrainSetup, Trainer};
