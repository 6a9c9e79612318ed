//! The kernels of rtdetr-rs: every general op that the model crates (`effnetv2`, `rtdetr-neck`,
//! `rtdetr-decoder`) build their layers from, with its CPU and CUDA forward and backward passes.
//!
//! Written by hand because candle 0.11 lacks them or runs them far from the machine's speed
//! (`shared/spec/candle-gaps.md`): grouped convolutions run as one convolution per group, the CPU
//! conv2d reaches a third of its own matmul, training-mode batch norm keeps five full-size
//! intermediates, the fused layer norm has no gradient, there is no deformable sampling and no
//! top-k, and the CPU generator cannot be seeded. No maintained crate offers these on candle
//! tensors with their backward passes.
//!
//! Laid out by op family, as rten does:
//! - [`conv`]: [`conv2d`] dispatch to the direct depthwise kernel, 1×1 matrix products, or
//!   convolution as banded unfold + gemm, each with its own backward; in bf16 evaluation
//!   ([`with_precision`]) full convolutions on AMX tiles or AVX512-BF16 vectors;
//! - [`Linear`]: on the CPU one op whose backward reduces the bias gradient in parallel (candle's
//!   keeps the product and the output and sums the bias on one thread), or in bf16 evaluation a
//!   product on AMX tiles (`amx`: the `tdpbf16ps` kernels in inline assembly) or AVX512-BF16
//!   vectors (`dpbf16`: `vdpbf16ps` intrinsics); no maintained crate multiplies bf16 on either;
//! - [`attention()`]: scaled dot-product attention as one op that recomputes its probabilities in
//!   backward instead of keeping six `[B·heads, Lq, Lk]` intermediates;
//! - [`norm`]: [`BatchNorm2d`] (evaluation affine map; training as one op that recomputes instead
//!   of storing) and a differentiable [`LayerNorm`];
//! - [`bias_act`]: `act(x + bias)` in one pass, for folded evaluation;
//! - [`ms_deform`]: multi-scale deformable bilinear sampling (grid_sample semantics) and its
//!   gradients;
//! - [`topk`]: `torch.topk` order, with a CUDA kernel;
//! - [`upsample_nearest2x`]: `nn.Upsample(scale_factor=2)` whose gradient accumulates;
//! - [`SplitMix64`]: the seedable random source of the whole project;
//! - `cuda` (feature `cuda`): the launch glue for `kernels/*.cu`, compiled to PTX by one
//!   `build.rs` and sharing `kernels/common.cuh`.
//!
//! ```
//! use candle::{DType, Device, Tensor};
//!
//! let dev = Device::Cpu;
//! let xs = Tensor::ones((1, 4, 8, 8), DType::F32, &dev)?;
//! let depthwise = Tensor::ones((4, 1, 3, 3), DType::F32, &dev)?;
//! let ys = rtdetr_ops::conv2d(&xs, &depthwise, 2, 1, 4)?;
//! assert_eq!(ys.dims(), &[1, 4, 4, 4]);
//! let ys = rtdetr_ops::bias_act(&ys, &Tensor::zeros(4, DType::F32, &dev)?, true)?;
//! assert_eq!(ys.dims(), &[1, 4, 4, 4]);
//! # Ok::<(), candle::Error>(())
//! ```

#[macro_use]
mod dtype;
mod activation;
mod amx;
mod attention;
mod bf16;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod dpbf16;
mod huge;
mod linear;
mod linear_cpu;
mod rng;
mod softmax_rows;
#[cfg(test)]
mod testing;

pub mod conv;
pub mod ms_deform;
pub mod norm;
pub mod precision;
pub mod profile;
mod topk;
mod upsample;

pub use activation::bias_act;
pub use attention::attention;
pub use conv::{
    conv2d, conv2d_bias_act, depthwise_conv2d, pointwise_gated, pointwise_gated_bias_act,
    pointwise_per_image_bias_act,
};
pub use linear::{linear, Linear};
pub use ms_deform::{ms_deform_sample, sample_bilinear};
pub use norm::{BatchNorm2d, LayerNorm, BN_EPS, BN_MOMENTUM};
pub use precision::{with_precision, Precision};
pub use rng::SplitMix64;
pub use topk::topk;
pub use upsample::upsample_nearest2x;
