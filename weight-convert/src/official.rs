//! The official EfficientNetV2 release (`efficientnetv2-s.npy` ...): TensorFlow variable names
//! and layouts → ours, exactly as the seed's `load_npy` maps them.

use std::collections::BTreeSet;

use candle::Tensor;

use crate::rename::{by_table, unknown, Rename};
use crate::Result;

/// The suffix of the averaged weights the seed loads.
pub const EMA: &str = "/ExponentialMovingAverage";

// Fused-MBConv (no depthwise kernel in the block): conv2d expands (or is the only conv), conv2d_1 projects.
const FUSED: &[(&str, &str)] = &[
    ("conv2d/", "fused.0."),
    ("tpu_batch_normalization/", "fused.1."),
    ("conv2d_1/", "fused_point_wise.0."),
    ("tpu_batch_normalization_1/", "fused_point_wise.1."),
];
// MBConv: conv2d expands, depthwise_conv2d, se/conv2d{,_1}, conv2d_1 projects; BNs numbered in order.
const MBCONV: &[(&str, &str)] = &[
    ("conv2d/", "linear_bottleneck.0."),
    ("tpu_batch_normalization/", "linear_bottleneck.1."),
    ("depthwise_conv2d/", "depth_wise.0."),
    ("tpu_batch_normalization_1/", "depth_wise.1."),
    ("se/conv2d/", "se.fc1."),
    ("se/conv2d_1/", "se.fc2."),
    ("conv2d_1/", "point_wise.0."),
    ("tpu_batch_normalization_2/", "point_wise.1."),
];
const STEM: &[(&str, &str)] = &[
    ("stem/conv2d/", "stem.0."),
    ("stem/tpu_batch_normalization/", "stem.1."),
];
// TensorFlow variable -> PyTorch parameter.
const VARIABLE: &[(&str, &str)] = &[
    ("kernel", "weight"),
    ("depthwise_kernel", "weight"),
    ("bias", "bias"),
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
];

/// Whether `keys` look like the official TensorFlow names.
pub fn detect(keys: &[String]) -> bool {
    keys.iter()
        .any(|k| k.starts_with("stem/") || k.starts_with("blocks_"))
}

fn block_of(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("blocks_")?;
    let (n, rest) = rest.split_once('/')?;
    Some((n.parse().ok()?, rest))
}

fn variable(path: &str) -> Option<String> {
    let (layer, var) = path.rsplit_once('/')?;
    let (_, to) = VARIABLE.iter().find(|(from, _)| *from == var)?;
    Some(format!("{layer}/{to}"))
}

/// The fate of each key. When the file holds `…/ExponentialMovingAverage` copies (the seed loads
/// those), the raw variables are ignored; `head/*` (the classifier) and anything outside
/// `stem/` and `blocks_N/` (global step, optimizer slots) are ignored.
pub fn rename(keys: &[String]) -> Result<Vec<Rename>> {
    let has_ema = keys.iter().any(|k| k.ends_with(EMA));
    let mbconv: BTreeSet<usize> = keys
        .iter()
        .filter_map(|k| block_of(k))
        .filter(|(_, rest)| rest.starts_with("depthwise_conv2d/"))
        .map(|(n, _)| n)
        .collect();
    let mut bad = Vec::new();
    let out = keys
        .iter()
        .map(|k| {
            let name = match (has_ema, k.strip_suffix(EMA)) {
                (true, Some(name)) => name,
                (false, None) => k.as_str(),
                _ => return Rename::Ignore,
            };
            let mapped = if let Some((n, rest)) = block_of(name) {
                let table = if mbconv.contains(&n) { MBCONV } else { FUSED };
                variable(rest)
                    .and_then(|r| by_table(&r, table))
                    .map(|r| format!("blocks.{n}.block.{r}"))
            } else if name.starts_with("stem/") {
                variable(name).and_then(|r| by_table(&r, STEM))
            } else {
                return Rename::Ignore;
            };
            mapped.map(Rename::To).unwrap_or_else(|| {
                bad.push(k.clone());
                Rename::Ignore
            })
        })
        .collect();
    unknown("official EfficientNetV2", bad)?;
    Ok(out)
}

/// TensorFlow layout → PyTorch, as the seed's `npz_dim_convertor`: 4-d kernels `[h, w, in, out]`
/// → `[out, in, h, w]`, except a last dimension of 1 (depthwise `[h, w, c, 1]` → `[c, 1, h, w]`);
/// 2-d kernels are transposed; biases and scales squeezed.
pub fn to_torch_layout(name: &str, t: Tensor) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let t = if name.contains("kernel") {
        match dims.as_slice() {
            [_, _, _, 1] => t.permute((2, 3, 0, 1))?,
            [_, _, _, _] => t.permute((3, 2, 0, 1))?,
            [_, _] => t.t()?,
            _ => t,
        }
    } else if (name.contains("scale") || name.contains("bias")) && dims.len() > 1 {
        t.flatten_all()?
    } else {
        t
    };
    Ok(t.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seed() {
        let e = |s: &str| format!("{s}{EMA}");
        let keys = vec![
            e("stem/conv2d/kernel"),
            e("stem/tpu_batch_normalization/moving_variance"),
            e("blocks_0/conv2d/kernel"),
            e("blocks_3/conv2d_1/kernel"),
            e("blocks_3/tpu_batch_normalization_1/beta"),
            e("blocks_7/depthwise_conv2d/depthwise_kernel"),
            e("blocks_7/tpu_batch_normalization_1/gamma"),
            e("blocks_7/conv2d_1/kernel"),
            e("blocks_7/se/conv2d_1/bias"),
            "blocks_7/conv2d_1/kernel".to_string(),
            e("head/dense/kernel"),
            "global_step".to_string(),
        ];
        let to = |s: &str| Rename::To(s.into());
        assert_eq!(
            rename(&keys).unwrap(),
            [
                to("stem.0.weight"),
                to("stem.1.running_var"),
                to("blocks.0.block.fused.0.weight"),
                to("blocks.3.block.fused_point_wise.0.weight"),
                to("blocks.3.block.fused_point_wise.1.bias"),
                to("blocks.7.block.depth_wise.0.weight"),
                to("blocks.7.block.depth_wise.1.weight"),
                to("blocks.7.block.point_wise.0.weight"),
                to("blocks.7.block.se.fc2.bias"),
                Rename::Ignore,
                Rename::Ignore,
                Rename::Ignore,
            ]
        );
        assert!(rename(&[e("blocks_1/mystery/kernel")]).is_err());
    }

    #[test]
    fn layouts() {
        let dev = candle::Device::Cpu;
        let k = Tensor::zeros((3, 3, 8, 16), candle::DType::F32, &dev).unwrap();
        assert_eq!(
            to_torch_layout("a/kernel", k).unwrap().dims(),
            [16, 8, 3, 3]
        );
        let dw = Tensor::zeros((3, 3, 8, 1), candle::DType::F32, &dev).unwrap();
        assert_eq!(
            to_torch_layout("a/depthwise_kernel", dw).unwrap().dims(),
            [8, 1, 3, 3]
        );
    }
}
