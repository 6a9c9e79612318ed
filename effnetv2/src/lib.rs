//! EfficientNetV2 backbone (variants s, m, l, xl) on candle, returning the last four
//! distinct-resolution feature maps (strides 4, 8, 16, 32).
//!
//! Port of the seed's PyTorch EfficientNetV2 (`shared/reference/effnetv2_seed.py`). Weight keys
//! equal that module's `state_dict()` keys, so a safetensors file saved from it loads unchanged.
//! The crate holds the layers, configurations and forward passes; the kernels they run
//! (convolutions, batch norm, bias+activation, the seedable generator) are `rtdetr-ops`'.
//!
//! ```
//! use candle::{DType, Device, Tensor};
//! use candle_nn::{ModuleT, VarBuilder};
//! use effnetv2::{Config, EfficientNetV2};
//!
//! let dev = Device::Cpu;
//! let cfg = Config::s();
//! let model = EfficientNetV2::new(&cfg, VarBuilder::zeros(DType::F32, &dev))?;
//! let maps = model.forward_t(&Tensor::zeros((1, 3, 64, 64), DType::F32, &dev)?, false)?;
//! let widths: Vec<usize> = maps.iter().map(|m| m.dim(1).unwrap()).collect();
//! assert_eq!(widths, cfg.widths());
//! # Ok::<(), candle::Error>(())
//! ```

mod config;
mod conv_bn_act;
mod mbconv;
mod model;
mod squeeze_excite;
mod stochastic_depth;

pub use config::{adjust_channels, Config, MbConvConfig};
pub use conv_bn_act::ConvBnAct;
pub use mbconv::MbConv;
pub use model::EfficientNetV2;
pub use squeeze_excite::SqueezeExcite;
pub use stochastic_depth::StochasticDepth;
