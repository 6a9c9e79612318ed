//! Parity of RTDETRDecoder's internals (encoder tokens, anchors, selected queries, every layer's
//! boxes and logits, final detections) with ultralytics 8.4.190 on reduced sizes (hidden 32,
//! 4 heads, 20 queries, 3 layers, 3 classes). Fixtures: `fixtures/gen/regen.sh` (gen_detector.py
//! writes detector_tiny.* and decoder_tiny.*; the latter's 52×60 level has invalid anchors).

use candle::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use fixtures::{assert_close, Fixture, Tol};
use rtdetr_decoder::{generate_anchors, DecoderConfig, RtDetrDecoder};

fn decoder(io: &Fixture) -> RtDetrDecoder {
    let json: serde_json::Value = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    let size = |k: &str| json[k].as_u64().unwrap() as usize;
    let cfg = DecoderConfig {
        nc: size("nc"),
        in_channels: vec![size("hidden"); 3],
        hidden: size("hidden"),
        queries: size("queries"),
        points: 4,
        heads: size("heads"),
        layers: size("layers"),
        ffn: size("decoder_ffn"),
        denoising: Default::default(),
    };
    let weights = fixtures::load("detector_tiny.weights", &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, &Device::Cpu);
    RtDetrDecoder::new(&cfg, vb.pp("model").pp(19)).unwrap()
}

/// Same +inf positions, then the finite values within `Tol::Parity`.
fn assert_close_with_inf(got: &Tensor, want: &Tensor, what: &str) {
    let inf_got = got.eq(f32::INFINITY).unwrap();
    let inf_want = want.eq(f32::INFINITY).unwrap();
    assert_close(
        &inf_got.to_dtype(DType::F32).unwrap(),
        &inf_want.to_dtype(DType::F32).unwrap(),
        Tol::Exact,
        what,
    );
    let zeros = want.zeros_like().unwrap();
    let finite = |t: &Tensor| inf_want.where_cond(&zeros, t).unwrap();
    assert_close(&finite(got), &finite(want), Tol::Parity, what);
}

fn check(io: &Fixture, maps: &[Tensor]) {
    let decoder = decoder(io);
    let get = |k: &str| io.get(k).unwrap();
    let (feats, shapes) = decoder.encoder_input(maps, false).unwrap();
    if let Ok(want) = io.get("dec.feats") {
        assert_close(&feats, want, Tol::Parity, "encoder tokens");
    }
    let anchors = generate_anchors(&shapes, &Device::Cpu).unwrap();
    assert_close_with_inf(&anchors.logits, get("dec.anchors"), "anchors");
    assert_close(&anchors.valid, get("dec.valid"), Tol::Exact, "valid mask");

    let out = decoder.forward(maps, false).unwrap();
    let index = out.queries.index.to_dtype(DType::I64).unwrap();
    assert_close(
        &index,
        get("dec.index"),
        Tol::Exact,
        "selected token indices",
    );
    assert_close(
        &out.queries.enc_boxes,
        get("dec.enc_boxes"),
        Tol::Parity,
        "encoder boxes",
    );
    assert_close(
        &out.queries.enc_logits,
        get("dec.enc_logits"),
        Tol::Parity,
        "encoder logits",
    );
    assert_close(
        &out.boxes,
        get("dec.boxes"),
        Tol::Parity,
        "every layer's boxes",
    );
    assert_close(
        &out.logits,
        get("dec.logits"),
        Tol::Parity,
        "every layer's logits",
    );
    assert_close(
        &out.detections,
        get("dec.detections"),
        Tol::Parity,
        "detections",
    );
}

#[test]
fn decoder_on_the_reduced_detector_maps() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let maps: Vec<Tensor> = ["X3", "F4", "F5"]
        .iter()
        .map(|k| io.get(k).unwrap().clone())
        .collect();
    check(&io, &maps);
}

#[test]
fn decoder_with_invalid_anchors() {
    let io = fixtures::load("decoder_tiny.io", &Device::Cpu).unwrap();
    let valid = io
        .get("dec.valid")
        .unwrap()
        .min_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(valid, 0.0, "the case has invalid anchors");
    let maps: Vec<Tensor> = (0..3)
        .map(|i| io.get(&format!("map.{i}")).unwrap().clone())
        .collect();
    check(&io, &maps);
}
