//! 2-D convolution without bias, dispatched to the fastest kernel for its shape: the direct
//! [`depthwise_conv2d`], a matrix product for 1×1 stride-1 convolutions, banded unfold + gemm for
//! other full convolutions on the CPU ([`conv2d_unfolded`]), or candle's conv2d.

mod bf16;
mod block;
mod depthwise;
mod geometry;
mod pointwise;
mod unfold;
mod unfold_backward;

use candle::{DType, Result, Tensor};

use crate::activation::{bias_act, Epilogue};

pub use depthwise::depthwise_conv2d;
pub use unfold::conv2d_unfolded;

/// `F.conv2d(xs, weight, stride=stride, padding=padding, groups=groups)` without bias.
///
/// # Shapes
/// `xs: [B, C_in, H, W]`, `weight: [C_out, C_in/groups, KH, KW]` → `[B, C_out, OH, OW]`
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (c_out, per_group, kh, kw) = weight.dims4()?;
    if groups > 1 && per_group == 1 && c_out == groups {
        depthwise_conv2d(xs, weight, stride, padding)
    } else if (kh, kw, stride, padding, groups) == (1, 1, 1, 0, 1) {
        pointwise_conv2d(xs, weight)
    } else if groups == 1 && xs.device().is_cpu() {
        conv2d_unfolded(xs, weight, stride, padding)
    } else {
        xs.conv2d(weight, padding, stride, 1, groups)
    }
}

/// `act(conv2d(xs, weight) + bias)` for evaluation (no gradient), `act` SiLU when `silu`, else
/// the identity: the convolution with a folded batch norm. On the CPU in f32 the bias and
/// activation are applied inside the convolution, block by block while its output is in cache;
/// elsewhere it is [`conv2d`] followed by [`bias_act`].
///
/// # Shapes
/// `xs: [B, C_in, H, W]`, `weight: [C_out, C_in/groups, KH, KW]`, `bias: [C_out]` →
/// `[B, C_out, OH, OW]`
pub fn conv2d_bias_act(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding, groups): (usize, usize, usize),
    silu: bool,
) -> Result<Tensor> {
    let (c_out, per_group, kh, kw) = weight.dims4()?;
    if bias.dims() != [c_out] {
        candle::bail!("conv2d: bias {:?} for {c_out} channels", bias.shape())
    }
    let f32_cpu =
        xs.device().is_cpu() && [xs.dtype(), weight.dtype(), bias.dtype()] == [DType::F32; 3];
    if !f32_cpu {
        return bias_act(&conv2d(xs, weight, stride, padding, groups)?, bias, silu);
    }
    let epilogue = Epilogue {
        bias: bias.to_vec1()?,
        silu,
    };
    let depthwise = groups > 1 && per_group == 1 && c_out == groups;
    let describe = || {
        let (b, c_in, h, w) = xs.dims4().unwrap_or_default();
        let (oh, ow) = (
            (h + 2 * padding).saturating_sub(kh) / stride + 1,
            (w + 2 * padding).saturating_sub(kw) / stride + 1,
        );
        let kind = if depthwise { "depthwise" } else { "conv" };
        (
            format!("{kind} {kh}×{kw} s{stride}"),
            format!("[{b}, {c_in}, {h}, {w}] → [{c_out}, {oh}, {ow}]"),
            (2 * b * c_out * oh * ow * per_group * kh * kw) as u64,
        )
    };
    let bf16 = crate::precision::precision() == crate::Precision::Bf16
        && groups == 1
        && bf16::worth_it(xs.dim(1)?);
    crate::profile::timed(describe, || {
        if bf16 {
            bf16::conv2d_bias_act_bf16(xs, weight, (stride, padding), epilogue)
        } else if depthwise {
            depthwise::depthwise_fused(xs, weight, stride, padding, epilogue)
        } else if (kh, kw, stride, padding, groups) == (1, 1, 1, 0, 1) {
            pointwise::pointwise_fused(xs, weight, epilogue)
        } else if groups == 1 {
            unfold::conv2d_unfolded_fused(xs, weight, stride, padding, epilogue)
        } else {
            bias_act(&conv2d(xs, weight, stride, padding, groups)?, bias, silu)
        }
    })
}

/// `act(W_b · x_b + bias)` for each image `b` of `xs` with its own 1×1 weight (e.g. a projection
/// whose input channels a squeeze-excitation gate scales: `W · diag(g_b)`); evaluation only. On
/// the CPU in f32 it runs as [`conv2d_bias_act`]'s fused 1×1 kernel.
///
/// # Shapes
/// `xs: [B, C_in, H, W]`, `weights: [B, C_out, C_in]`, `bias: [C_out]` → `[B, C_out, H, W]`
pub fn pointwise_per_image_bias_act(
    xs: &Tensor,
    weights: &Tensor,
    bias: &Tensor,
    silu: bool,
) -> Result<Tensor> {
    let (b, c_in, h, w) = xs.dims4()?;
    let (_, c_out, _) = weights.dims3()?;
    let f32_cpu =
        xs.device().is_cpu() && [xs.dtype(), weights.dtype(), bias.dtype()] == [DType::F32; 3];
    if !f32_cpu {
        let ys = weights.matmul(&xs.reshape((b, c_in, h * w))?)?;
        return bias_act(&ys.reshape((b, c_out, h, w))?, bias, silu);
    }
    let epilogue = Epilogue {
        bias: bias.to_vec1()?,
        silu,
    };
    let describe = || gated_layer((b, c_in, h, w), c_out);
    crate::profile::timed(describe, || {
        pointwise::pointwise_fused(xs, weights, epilogue)
    })
}

/// `act(W · (g_b ⊙ x_b) + bias)` for each image `b` of `xs`: a folded 1×1 convolution of the
/// input scaled per image and input channel by `gate` (squeeze-excitation), without
/// materialising the scaled input; evaluation only. In f32 the gate scales the weight's columns
/// (`W · diag(g_b)`, [`pointwise_per_image_bias_act`]); in bf16 ([`crate::with_precision`]) it
/// scales the input as the input is converted to bf16, so the weight's tiles are packed once.
///
/// # Shapes
/// `xs: [B, C_in, H, W]`, `weight: [C_out, C_in, 1, 1]`, `gate: [B, C_in]`, `bias: [C_out]` →
/// `[B, C_out, H, W]`
pub fn pointwise_gated_bias_act(
    xs: &Tensor,
    weight: &Tensor,
    gate: &Tensor,
    bias: &Tensor,
    silu: bool,
) -> Result<Tensor> {
    let (b, c_in, h, w) = xs.dims4()?;
    let c_out = weight.dim(0)?;
    let bf16 = crate::precision::precision() == crate::Precision::Bf16
        && xs.device().is_cpu()
        && [xs.dtype(), weight.dtype(), gate.dtype(), bias.dtype()] == [DType::F32; 4];
    if !bf16 {
        return pointwise_per_image_bias_act(xs, &gated_weights(weight, gate)?, bias, silu);
    }
    let epilogue = Epilogue {
        bias: bias.to_vec1()?,
        silu,
    };
    let describe = || gated_layer((b, c_in, h, w), c_out);
    crate::profile::timed(describe, || {
        bf16::pointwise_gated_bias_act_bf16(xs, weight, gate, epilogue)
    })
}

/// `W · (g_b ⊙ x_b)` for each image `b` of `xs`: a 1×1 convolution of the input scaled per
/// image and input channel by `gate`, computed as the product with the per-image weight
/// `W · diag(g_b)`, so that the scaled input is neither materialised nor, in training, kept for
/// backward and reduced over for the gate's gradient. Differentiable, any device.
///
/// # Shapes
/// `xs: [B, C_in, H, W]`, `weight: [C_out, C_in, 1, 1]`, `gate: [B, C_in]` → `[B, C_out, H, W]`
pub fn pointwise_gated(xs: &Tensor, weight: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (b, c_in, h, w) = xs.dims4()?;
    let weights = gated_weights(weight, gate)?;
    let c_out = weights.dim(1)?;
    weights
        .matmul(&xs.reshape((b, c_in, h * w))?)?
        .reshape((b, c_out, h, w))
}

/// `[B, C_out, C_in]`: the 1×1 `weight`'s columns scaled by each image's `gate` (`[B, C_in]`).
fn gated_weights(weight: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (c_out, c_in, _, _) = weight.dims4()?;
    let b = gate.dim(0)?;
    weight
        .reshape((1, c_out, c_in))?
        .broadcast_mul(&gate.reshape((b, 1, c_in))?)
}

/// The profile's name, shape and FLOPs of a gated 1×1 layer.
fn gated_layer(
    (b, c_in, h, w): (usize, usize, usize, usize),
    c_out: usize,
) -> (String, String, u64) {
    (
        "conv 1×1 s1 (gated)".to_string(),
        format!("[{b}, {c_in}, {h}, {w}] → [{c_out}, {h}, {w}]"),
        (2 * b * c_out * c_in * h * w) as u64,
    )
}

/// A 1×1 convolution as one matrix product per image.
fn pointwise_conv2d(xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (b, c_in, h, w) = xs.dims4()?;
    let c_out = weight.dim(0)?;
    let weight = weight
        .reshape((1, c_out, c_in))?
        .broadcast_as((b, c_out, c_in))?;
    // [B, C, H, W] -> [B, C, H*W]
    let xs = xs.reshape((b, c_in, h * w))?;
    weight.matmul(&xs)?.reshape((b, c_out, h, w))
}

#[cfg(test)]
mod tests {
    use super::conv2d;
    use crate::testing::max_abs_diff;
    use candle::{Device, Tensor, Var};

    /// Every dispatch arm (depthwise, 1×1, unfolded 3×3 at strides 1 and 2, grouped) against
    /// candle's conv2d, values and gradients. Even sizes: candle's own conv2d backward fails when H
    /// and W leave different remainders by the stride.
    #[test]
    fn every_path_equals_candle_conv2d() {
        let dev = Device::Cpu;
        for (c_in, c_out, k, stride, padding, groups) in [
            (6, 6, 3, 1, 1, 6),
            (6, 5, 1, 1, 0, 1),
            (4, 5, 3, 1, 1, 1),
            (4, 5, 3, 2, 1, 1),
            (6, 4, 3, 1, 1, 2),
        ] {
            let xs =
                Var::from_tensor(&Tensor::randn(0f64, 1., (2, c_in, 8, 6), &dev).unwrap()).unwrap();
            let w = Tensor::randn(0f64, 1., (c_out, c_in / groups, k, k), &dev).unwrap();
            let w = Var::from_tensor(&w).unwrap();
            let ours = conv2d(&xs, &w, stride, padding, groups).unwrap();
            let want = xs.conv2d(&w, padding, stride, 1, groups).unwrap();
            assert!(max_abs_diff(&ours, &want) < 1e-12);
            let probe = Tensor::randn(0f64, 1., ours.dims(), &dev).unwrap();
            let g1 = (ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (want * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let case = (c_in, c_out, k, stride, groups);
            assert!(
                max_abs_diff(g1.get(&w).unwrap(), g2.get(&w).unwrap()) < 1e-10,
                "{case:?}"
            );
            assert!(
                max_abs_diff(g1.get(&xs).unwrap(), g2.get(&xs).unwrap()) < 1e-10,
                "{case:?}"
            );
        }
    }

    /// The gated 1×1 product against the convolution of the gated input: values and the
    /// gradients of input, weight and gate, batch 2, odd sizes.
    #[test]
    fn gated_pointwise_equals_the_convolution_of_the_gated_input() {
        let dev = Device::Cpu;
        let var = |shape: &[usize]| {
            Var::from_tensor(&Tensor::randn(0f64, 1., shape, &dev).unwrap()).unwrap()
        };
        let (xs, w, gate) = (var(&[2, 5, 3, 7]), var(&[4, 5, 1, 1]), var(&[2, 5]));
        let ours = super::pointwise_gated(&xs, &w, &gate).unwrap();
        let gated = xs
            .broadcast_mul(&gate.reshape((2, 5, 1, 1)).unwrap())
            .unwrap();
        let want = gated.conv2d(&w, 0, 1, 1, 1).unwrap();
        assert!(max_abs_diff(&ours, &want) < 1e-12);
        let probe = Tensor::randn(0f64, 1., ours.dims(), &dev).unwrap();
        let grads = |ys: &Tensor| {
            (ys * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g1, g2) = (grads(&ours), grads(&want));
        for (name, v) in [("x", &xs), ("weight", &w), ("gate", &gate)] {
            let diff = max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(diff < 1e-12, "d{name}: {diff}");
        }
    }

    /// Every fused arm (depthwise at strides 1 and 2, 1×1, 3×3 at strides 1 and 2, grouped) in
    /// f32 against the convolution in f64 followed by the bias and activation; odd widths, batch
    /// 2, channels not multiples of 16.
    #[test]
    fn fused_bias_act_equals_conv_then_bias_act() {
        use super::conv2d_bias_act;
        use candle::DType;
        let dev = Device::Cpu;
        for (c_in, c_out, k, stride, padding, groups) in [
            (19, 19, 3, 1, 1, 19),
            (19, 19, 5, 2, 2, 19),
            (17, 23, 1, 1, 0, 1),
            (5, 21, 3, 1, 1, 1),
            (5, 21, 3, 2, 1, 1),
            (6, 4, 3, 1, 1, 2),
        ] {
            let xs = Tensor::randn(0f64, 1., (2, c_in, 9, 13), &dev).unwrap();
            let w = Tensor::randn(0f64, 0.5, (c_out, c_in / groups, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f64, 1., c_out, &dev).unwrap();
            let conv = xs.conv2d(&w, padding, stride, 1, groups).unwrap();
            let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            for silu in [false, true] {
                let want = crate::bias_act(&conv, &bias, silu).unwrap();
                let got = conv2d_bias_act(
                    &f32(&xs),
                    &f32(&w),
                    &f32(&bias),
                    (stride, padding, groups),
                    silu,
                )
                .unwrap();
                let diff = max_abs_diff(&got.to_dtype(DType::F64).unwrap(), &want);
                let case = (c_in, c_out, k, stride, groups, silu);
                assert!(diff < 2e-5, "{case:?}: {diff}");
            }
        }
    }
}
