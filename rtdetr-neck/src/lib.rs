//! RT-DETR's neck: the hybrid encoder of ultralytics' `rtdetr-*.yaml` as the seed wires it
//! (AIFI on the stride-32 map, then a RepC3 FPN/PAN), producing the three maps the decoder reads.
//!
//! Port of ultralytics 8.4.190 `nn/modules/{conv,block,transformer}.py` (Conv, RepConv, RepC3,
//! AIFI); weight keys equal the seed model's `model.1` .. `model.18` state_dict keys.
//! [`MultiheadAttention`] (`nn.MultiheadAttention`) is the one layer the decoder reuses; the ops
//! (convolution, batch and layer norm, bias+activation) come from `rtdetr-ops`.
//!
//! ```
//! use candle::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use rtdetr_neck::{Neck, NeckConfig};
//!
//! let dev = Device::Cpu;
//! let cfg = NeckConfig::rtdetr([64, 160, 256]);
//! let neck = Neck::new(&cfg, VarBuilder::zeros(DType::F32, &dev).pp("model"))?;
//! let p3 = Tensor::zeros((1, 64, 8, 8), DType::F32, &dev)?;
//! let p4 = Tensor::zeros((1, 160, 4, 4), DType::F32, &dev)?;
//! let p5 = Tensor::zeros((1, 256, 2, 2), DType::F32, &dev)?;
//! let out = neck.forward_t(&p3, &p4, &p5, false)?;
//! assert_eq!(out.f5.dims(), &[1, 256, 2, 2]);
//! # Ok::<(), candle::Error>(())
//! ```

mod aifi;
mod attention;
mod conv;
mod neck;
mod rep_c3;
mod rep_conv;

pub use aifi::{sincos_position_embedding, Aifi};
pub use attention::MultiheadAttention;
pub use conv::Conv;
pub use neck::{Neck, NeckConfig, NeckOutput};
pub use rep_c3::RepC3;
pub use rep_conv::RepConv;
