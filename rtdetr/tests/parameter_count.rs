//! Parameter counts of the four backbones equal the seed's
//! (`sum(p.numel() for p in efficientnet_v2(f'efficientnet_v2_{v}').parameters())`).

use rtdetr::{Manifest, Variant};

#[test]
fn backbone_parameter_counts() {
    let expected = [
        (Variant::S, 19_847_248),
        (Variant::M, 52_200_436),
        (Variant::L, 116_412_512),
        (Variant::Xl, 206_017_048),
    ];
    let failures: Vec<String> = expected
        .iter()
        .filter_map(|&(variant, want)| {
            let got = Manifest::backbone(variant).unwrap().parameter_count();
            (got != want).then(|| format!("{variant}: {got} parameters, expected {want}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backbone_keys_are_the_seed_state_dict_keys() {
    let manifest = Manifest::backbone(Variant::S).unwrap();
    for key in [
        "stem.0.weight",
        "stem.1.running_var",
        "blocks.0.block.fused.0.weight",
        "blocks.2.block.fused_point_wise.1.bias",
        "blocks.10.block.linear_bottleneck.0.weight",
        "blocks.10.block.depth_wise.0.weight",
        "blocks.10.block.se.fc1.weight",
        "blocks.39.block.se.fc2.bias",
        "blocks.39.block.point_wise.1.running_mean",
    ] {
        assert!(manifest.get(key).is_some(), "missing {key}");
    }
    assert_eq!(
        manifest
            .get("blocks.10.block.depth_wise.0.weight")
            .unwrap()
            .shape,
        [256, 1, 3, 3]
    );
    assert!(manifest.get("blocks.40.block.fused.0.weight").is_none());
    let per_block: usize = (0..40)
        .map(|i| manifest.parameter_count_under(&format!("blocks.{i}")))
        .sum();
    assert_eq!(
        per_block + manifest.parameter_count_under("stem"),
        manifest.parameter_count()
    );
}
