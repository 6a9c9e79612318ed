//! The reduced detector of the fixtures.

use candle::{DType, Tensor};
use fixtures::Fixture;
use rtdetr::ModelConfig;
use rtdetr_decoder::DecoderConfig;
use rtdetr_neck::NeckConfig;

/// The reduced detector's sizes, from the fixture's `config` metadata (gen_detector.py).
#[allow(dead_code)]
pub fn tiny_config(io: &Fixture) -> ModelConfig {
    let json: serde_json::Value = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    let size = |k: &str| json[k].as_u64().unwrap() as usize;
    let backbone: effnetv2::Config = serde_json::from_value(json["backbone"].clone()).unwrap();
    let w = backbone.widths();
    let hidden = size("hidden");
    ModelConfig {
        neck: NeckConfig {
            in_channels: [w[1], w[2], w[3]],
            hidden,
            ffn: size("ffn"),
            heads: size("heads"),
            blocks: size("blocks"),
        },
        decoder: DecoderConfig {
            nc: size("nc"),
            in_channels: vec![hidden; 3],
            hidden,
            queries: size("queries"),
            points: 4,
            heads: size("heads"),
            layers: size("layers"),
            ffn: size("decoder_ffn"),
            denoising: Default::default(),
        },
        backbone,
    }
}

/// The model input: the stored uint8 pixels / 255, as the reference computed it.
#[allow(dead_code)]
pub fn input(io: &Fixture) -> Tensor {
    (io.get("input_u8").unwrap().to_dtype(DType::F32).unwrap() / 255.0).unwrap()
}
