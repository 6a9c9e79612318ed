//! torchvision's `efficientnet_v2_{s,m,l}` keys → ours.
//!
//! Every backbone tensor maps one to one with the same shape and layout, and torchvision pads
//! symmetrically like ours, so a converted torchvision backbone computes the same numbers.

use std::collections::{BTreeMap, BTreeSet};

use crate::rename::{by_table, flat_blocks, two_indices, unknown, Rename};
use crate::Result;

// features.S.I.block.J.K with MBConv: 0 expand, 1 depthwise, 2 squeeze-excite, 3 project
const MBCONV: &[(&str, &str)] = &[
    ("block.0.0.", "linear_bottleneck.0."),
    ("block.0.1.", "linear_bottleneck.1."),
    ("block.1.0.", "depth_wise.0."),
    ("block.1.1.", "depth_wise.1."),
    ("block.2.fc1.", "se.fc1."),
    ("block.2.fc2.", "se.fc2."),
    ("block.3.0.", "point_wise.0."),
    ("block.3.1.", "point_wise.1."),
];
// FusedMBConv: 0 the 3×3 expansion (or the only conv at expand ratio 1), 1 project
const FUSED: &[(&str, &str)] = &[
    ("block.0.0.", "fused.0."),
    ("block.0.1.", "fused.1."),
    ("block.1.0.", "fused_point_wise.0."),
    ("block.1.1.", "fused_point_wise.1."),
];
const STEM: &[(&str, &str)] = &[("features.0.0.", "stem.0."), ("features.0.1.", "stem.1.")];

/// Whether `keys` look like a torchvision EfficientNet.
pub fn detect(keys: &[String]) -> bool {
    keys.iter().any(|k| k.starts_with("features.0.0."))
}

/// The fate of each key. The last `features.N` (a 1×1 conv to 1280) and `classifier` are the
/// classification head and are ignored.
pub fn rename(keys: &[String]) -> Result<Vec<Rename>> {
    let mut blocks: BTreeMap<(usize, usize), BTreeSet<bool>> = BTreeMap::new();
    for k in keys {
        if let Some((s, i, rest)) = two_indices(k, "features.") {
            if s > 0 && rest.starts_with("block.") {
                blocks
                    .entry((s, i))
                    .or_default()
                    .insert(rest.starts_with("block.2.fc1."));
            }
        }
    }
    let last_stage = blocks.keys().map(|(s, _)| *s).max().unwrap_or(0);
    let flat = flat_blocks(blocks.keys().copied());
    let mut bad = Vec::new();
    let out = keys
        .iter()
        .map(|k| {
            if k.ends_with("num_batches_tracked") || k.starts_with("classifier.") {
                return Rename::Ignore;
            }
            let mapped = match two_indices(k, "features.") {
                Some((s, _, _)) if s > last_stage => return Rename::Ignore,
                Some((s, i, rest)) if s > 0 => blocks.get(&(s, i)).and_then(|kinds| {
                    let table = if kinds.contains(&true) { MBCONV } else { FUSED };
                    by_table(rest, table).map(|r| format!("blocks.{}.block.{r}", flat[&(s, i)]))
                }),
                _ => by_table(k, STEM),
            };
            mapped.map(Rename::To).unwrap_or_else(|| {
                bad.push(k.clone());
                Rename::Ignore
            })
        })
        .collect();
    unknown("torchvision EfficientNetV2", bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_kinds_and_head() {
        let keys: Vec<String> = [
            "features.0.0.weight",
            "features.0.1.bias",
            "features.1.0.block.0.0.weight",
            "features.2.0.block.1.1.running_var",
            "features.3.0.block.1.0.weight",
            "features.3.0.block.2.fc1.weight",
            "features.3.0.block.3.1.weight",
            "features.4.0.weight",
            "classifier.1.weight",
        ]
        .map(String::from)
        .to_vec();
        let to = |s: &str| Rename::To(s.into());
        assert_eq!(
            rename(&keys).unwrap(),
            [
                to("stem.0.weight"),
                to("stem.1.bias"),
                to("blocks.0.block.fused.0.weight"),
                to("blocks.1.block.fused_point_wise.1.running_var"),
                to("blocks.2.block.depth_wise.0.weight"),
                to("blocks.2.block.se.fc1.weight"),
                to("blocks.2.block.point_wise.1.weight"),
                Rename::Ignore,
                Rename::Ignore,
            ]
        );
    }
}
