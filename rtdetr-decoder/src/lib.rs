//! RT-DETR's decoder head: input projections, anchors, encoder-side query selection, deformable
//! transformer decoder layers with per-layer box refinement, and the top-k postprocess.
//!
//! Port of ultralytics 8.4.190 `RTDETRDecoder` (`nn/modules/head.py`, `transformer.py`,
//! `utils.py`); weight keys equal the seed model's `model.19.*` state_dict keys (relative to it).
//! Training mode ([`RtDetrDecoder::forward_train`]) prepends contrastive denoising queries
//! ([`DenoisingConfig`]) and returns every layer's outputs for the loss. The deformable sampling,
//! top-k, batch and layer norms come from `rtdetr-ops`; `MultiheadAttention` is the neck's (the
//! same `nn.MultiheadAttention` in both).
//!
//! ```
//! use candle::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use rtdetr_decoder::{DecoderConfig, RtDetrDecoder};
//!
//! let dev = Device::Cpu;
//! let mut cfg = DecoderConfig::rtdetr(3);
//! cfg.hidden = 32; cfg.ffn = 64; cfg.queries = 10; cfg.layers = 2; cfg.in_channels = vec![32; 3];
//! let decoder = RtDetrDecoder::new(&cfg, VarBuilder::zeros(DType::F32, &dev))?;
//! let maps: Vec<Tensor> = [8, 4, 2]
//!     .iter()
//!     .map(|&s| Tensor::zeros((1, 32, s, s), DType::F32, &dev))
//!     .collect::<candle::Result<_>>()?;
//! let out = decoder.forward(&maps, false)?;
//! assert_eq!(out.detections.dims(), &[1, 10, 6]);
//! # Ok::<(), candle::Error>(())
//! ```

mod anchors;
mod config;
mod decoder;
mod denoising;
mod layer;
mod mlp;
mod ms_deform_attn;

pub use anchors::{generate_anchors, inverse_sigmoid, Anchors};
pub use config::{DecoderConfig, DenoisingConfig};
pub use decoder::{DecoderOutput, QueryInit, RtDetrDecoder, TrainOutput};
pub use denoising::{cdn_group, CdnNoise, Denoising, DnMeta, GroundTruth};
pub use layer::DecoderLayer;
pub use mlp::Mlp;
pub use ms_deform_attn::MsDeformAttn;
