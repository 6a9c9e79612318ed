//! Parameter counts equal the seed's (`sum(p.numel() for p in model.parameters())` of
//! `efficientnet_v2(...)` and of `SeedRTDETR(variant, nc)`).

use rtdetr::{Manifest, ModelConfig, Variant};

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
fn detector_parameter_counts() {
    let expected = [
        (Variant::S, 1, 38_307_379),
        (Variant::S, 80, 38_469_724),
        (Variant::M, 1, 70_734_295),
        (Variant::M, 80, 70_896_640),
        (Variant::L, 1, 134_995_523),
        (Variant::L, 80, 135_157_868),
        (Variant::Xl, 1, 224_608_251),
        (Variant::Xl, 80, 224_770_596),
    ];
    let failures: Vec<String> = expected
        .iter()
        .filter_map(|&(variant, nc, want)| {
            let manifest = Manifest::model(&ModelConfig::new(variant, nc)).unwrap();
            let got = manifest.parameter_count();
            (got != want).then(|| format!("{variant} nc={nc}: {got} parameters, expected {want}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn s_decoder_and_backbone_split() {
    // spec §0.1: backbone 19,847,248 + head 18,460,131, of which the decoder is 7,303,907 (nc=1).
    let manifest = Manifest::model(&ModelConfig::new(Variant::S, 1)).unwrap();
    assert_eq!(manifest.parameter_count_under("model.0"), 19_847_248);
    assert_eq!(manifest.parameter_count_under("model.19"), 7_303_907);
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

#[test]
fn detector_keys_are_the_seed_state_dict_keys() {
    // Examples of spec §0.3 (checked there against SeedRTDETR().state_dict()).
    let manifest = Manifest::model(&ModelConfig::new(Variant::S, 1)).unwrap();
    let shape = |k: &str| {
        manifest
            .get(k)
            .unwrap_or_else(|| panic!("missing {k}"))
            .shape
            .clone()
    };
    assert_eq!(shape("model.1.conv.weight"), [256, 256, 1, 1]);
    assert_eq!(shape("model.2.ma.in_proj_weight"), [768, 256]);
    assert_eq!(shape("model.5.conv.weight"), [256, 160, 1, 1]);
    assert_eq!(shape("model.10.conv.weight"), [256, 64, 1, 1]);
    assert_eq!(shape("model.7.m.2.conv1.conv.weight"), [256, 256, 3, 3]);
    assert_eq!(shape("model.13.conv.weight"), [256, 256, 3, 3]);
    assert_eq!(
        shape("model.19.decoder.layers.5.cross_attn.sampling_offsets.weight"),
        [192, 256]
    );
    assert_eq!(shape("model.19.query_pos_head.layers.0.weight"), [512, 4]);
    assert_eq!(shape("model.19.enc_bbox_head.layers.2.weight"), [4, 256]);
    assert_eq!(shape("model.19.denoising_class_embed.weight"), [1, 256]);
    assert!(manifest.get("model.7.cv3.conv.weight").is_none());
    assert!(manifest.get("model.19.tgt_embed.weight").is_none());
}
