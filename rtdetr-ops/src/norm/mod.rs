//! Normalisation: `nn.BatchNorm2d` (evaluation as a foldable affine map, training as one CPU op
//! with its own backward) and `nn.LayerNorm` (differentiable when a gradient is needed).

mod batch_norm;
mod batch_norm_f32;
mod batch_norm_train;
mod layer_norm;

pub use batch_norm::{BatchNorm2d, BN_EPS, BN_MOMENTUM};
pub use batch_norm_train::batch_norm_train;
pub use layer_norm::{layer_norm, LayerNorm};
