//! The assembled detector against ultralytics 8.4.190 + the seed backbone, on the reduced detector
//! (batch 2, 256×320 input): backbone, neck and decoder outputs, unfused and with RepConv fused;
//! strict loading; thop operation count and parameter count. Fixtures: `fixtures/gen/regen.sh`
//! (gen_detector.py writes fixtures/data/detector_tiny.*).

mod common;

use candle::Device;
use common::{input, tiny_config};
use fixtures::{assert_close, Fixture, Tol};
use rtdetr::{Manifest, RtDetr};

fn check_forward(model: &RtDetr, io: &Fixture, what: &str) {
    let out = model.forward_t(&input(io), false).unwrap();
    let get = |k: &str| io.get(k).unwrap();
    for (i, name) in ["P3", "P4", "P5"].iter().enumerate() {
        assert_close(
            &out.backbone[i + 1],
            get(name),
            Tol::Parity,
            &format!("{what}: {name}"),
        );
    }
    for (name, got) in [
        ("X3", &out.neck.x3),
        ("F4", &out.neck.f4),
        ("F5", &out.neck.f5),
    ] {
        assert_close(got, get(name), Tol::Parity, &format!("{what}: {name}"));
    }
    assert_close(
        &out.decoder.boxes,
        get("dec.boxes"),
        Tol::Parity,
        &format!("{what}: boxes"),
    );
    assert_close(
        &out.decoder.logits,
        get("dec.logits"),
        Tol::Parity,
        &format!("{what}: logits"),
    );
    let worst = assert_close(
        &out.decoder.detections,
        get("dec.detections"),
        Tol::Parity,
        what,
    );
    eprintln!("{what}: detections max |diff| {worst:.2e}");
}

#[test]
fn whole_detector_unfused_and_fused() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let cfg = tiny_config(&io);
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let mut model = RtDetr::load_with_config(&path, &cfg, &Device::Cpu).unwrap();
    check_forward(&model, &io, "fused, as loaded");
    model.set_fused(false).unwrap();
    check_forward(&model, &io, "unfused");
}

#[test]
fn parameter_and_operation_counts() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let cfg = tiny_config(&io);
    let params: usize = io.meta("parameters").unwrap().parse().unwrap();
    assert_eq!(Manifest::model(&cfg).unwrap().parameter_count(), params);
    let ops: u64 = io.meta("thop_ops").unwrap().parse().unwrap();
    let (_, _, h, w) = io.get("input_u8").unwrap().dims4().unwrap();
    assert_eq!(rtdetr::thop_ops(&cfg, h, w), ops);
}
