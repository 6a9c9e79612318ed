//! timm's `tf_efficientnetv2_{s,m,l,xl}` (and `efficientnetv2_*`) keys → ours.
//!
//! Every backbone tensor maps one to one with the same shape and layout; only names differ.
//! Numbers differ where padding does: timm's `tf_` models pad stride-2 convolutions the
//! TensorFlow 'SAME' way (more on the bottom/right), ours pads symmetrically (`(k - 1) / 2`).

use std::collections::{BTreeMap, BTreeSet};

use crate::rename::{by_table, flat_blocks, two_indices, unknown, Rename};
use crate::Result;

// blocks.S.I.conv / bn1 (ConvBnAct, expand ratio 1) -> blocks.N.block.fused.{0,1}
const CONV_BN_ACT: &[(&str, &str)] = &[("conv.", "fused.0."), ("bn1.", "fused.1.")];
// EdgeResidual (Fused-MBConv)
const EDGE_RESIDUAL: &[(&str, &str)] = &[
    ("conv_exp.", "fused.0."),
    ("bn1.", "fused.1."),
    ("conv_pwl.", "fused_point_wise.0."),
    ("bn2.", "fused_point_wise.1."),
];
// InvertedResidual (MBConv with squeeze-excite)
const INVERTED_RESIDUAL: &[(&str, &str)] = &[
    ("conv_pw.", "linear_bottleneck.0."),
    ("bn1.", "linear_bottleneck.1."),
    ("conv_dw.", "depth_wise.0."),
    ("bn2.", "depth_wise.1."),
    ("se.conv_reduce.", "se.fc1."),
    ("se.conv_expand.", "se.fc2."),
    ("conv_pwl.", "point_wise.0."),
    ("bn3.", "point_wise.1."),
];
// The stem; conv_head, bn2 and classifier are the classification head, which we do not have.
const TOP: &[(&str, &str)] = &[("conv_stem.", "stem.0."), ("bn1.", "stem.1.")];
const HEAD: &[&str] = &["conv_head.", "bn2.", "classifier."];

/// Whether `keys` look like a timm EfficientNet.
pub fn detect(keys: &[String]) -> bool {
    keys.iter().any(|k| k.starts_with("conv_stem."))
}

/// The fate of each key.
pub fn rename(keys: &[String]) -> Result<Vec<Rename>> {
    let mut parts: BTreeMap<(usize, usize), BTreeSet<&str>> = BTreeMap::new();
    for k in keys {
        if let Some((s, i, rest)) = two_indices(k, "blocks.") {
            let first = rest.split('.').next().unwrap_or("");
            parts.entry((s, i)).or_default().insert(first);
        }
    }
    let flat = flat_blocks(parts.keys().copied());
    let mut bad = Vec::new();
    let out = keys
        .iter()
        .map(|k| {
            if k.ends_with("num_batches_tracked") || HEAD.iter().any(|h| k.starts_with(h)) {
                return Rename::Ignore;
            }
            let mapped = match two_indices(k, "blocks.") {
                Some((s, i, rest)) => {
                    let kinds = &parts[&(s, i)];
                    let table = if kinds.contains("conv_dw") {
                        INVERTED_RESIDUAL
                    } else if kinds.contains("conv_exp") {
                        EDGE_RESIDUAL
                    } else {
                        CONV_BN_ACT
                    };
                    by_table(rest, table).map(|r| format!("blocks.{}.block.{r}", flat[&(s, i)]))
                }
                None => by_table(k, TOP),
            };
            mapped.map(Rename::To).unwrap_or_else(|| {
                bad.push(k.clone());
                Rename::Ignore
            })
        })
        .collect();
    unknown("timm EfficientNetV2", bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_kinds_and_flat_indices() {
        let keys: Vec<String> = [
            "conv_stem.weight",
            "bn1.running_var",
            "blocks.0.0.conv.weight",
            "blocks.0.1.bn1.bias",
            "blocks.1.0.conv_exp.weight",
            "blocks.1.0.bn2.weight",
            "blocks.2.0.conv_dw.weight",
            "blocks.2.0.bn3.running_mean",
            "blocks.2.0.se.conv_reduce.bias",
            "conv_head.weight",
            "classifier.bias",
        ]
        .map(String::from)
        .to_vec();
        let got = rename(&keys).unwrap();
        let to = |s: &str| Rename::To(s.into());
        assert_eq!(
            got,
            [
                to("stem.0.weight"),
                to("stem.1.running_var"),
                to("blocks.0.block.fused.0.weight"),
                to("blocks.1.block.fused.1.bias"),
                to("blocks.2.block.fused.0.weight"),
                to("blocks.2.block.fused_point_wise.1.weight"),
                to("blocks.3.block.depth_wise.0.weight"),
                to("blocks.3.block.point_wise.1.running_mean"),
                to("blocks.3.block.se.fc1.bias"),
                Rename::Ignore,
                Rename::Ignore,
            ]
        );
        assert!(rename(&["blocks.0.0.weird.weight".to_string()]).is_err());
    }
}
