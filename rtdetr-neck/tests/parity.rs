//! Parity of AIFI, RepC3 and the whole neck with ultralytics 8.4.190 on the reduced detector
//! (hidden 32, 4 heads, RepC3 n=2; batch 2, 256×320 input). Fixtures: `fixtures/gen/regen.sh`
//! (gen_detector.py writes fixtures/data/detector_tiny.*).

use candle::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::VarBuilder;
use fixtures::{assert_close, Fixture, Tol};
use rtdetr_neck::{Aifi, Neck, NeckConfig, RepC3, RepConv};

struct Case {
    cfg: NeckConfig,
    io: Fixture,
    vb: VarBuilder<'static>,
}

fn case() -> Case {
    let dev = Device::Cpu;
    let io = fixtures::load("detector_tiny.io", &dev).unwrap();
    let json: serde_json::Value = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    let size = |k: &str| json[k].as_u64().unwrap() as usize;
    let width = |k: &str| io.get(k).unwrap().dim(1).unwrap();
    let cfg = NeckConfig {
        in_channels: [width("P3"), width("P4"), width("P5")],
        hidden: size("hidden"),
        ffn: size("ffn"),
        heads: size("heads"),
        blocks: size("blocks"),
    };
    let weights = fixtures::load("detector_tiny.weights", &dev).unwrap();
    let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, &dev).pp("model");
    Case { cfg, io, vb }
}

#[test]
fn aifi() {
    let c = case();
    let aifi = Aifi::new(c.cfg.hidden, c.cfg.ffn, c.cfg.heads, c.vb.pp(2)).unwrap();
    let got = aifi.forward(c.io.get("x5").unwrap()).unwrap();
    assert_close(
        &got,
        c.io.get("aifi").unwrap(),
        Tol::Parity,
        "AIFI (model.2)",
    );
}

#[test]
fn rep_c3() {
    let c = case();
    let hd = c.cfg.hidden;
    let mut rep_c3 = RepC3::new(2 * hd, hd, c.cfg.blocks, c.vb.pp(7)).unwrap();
    let xs = c.io.get("c7").unwrap();
    let want = c.io.get("x11").unwrap();
    let unfused = rep_c3.forward_t(xs, false).unwrap();
    assert_close(&unfused, want, Tol::Parity, "RepC3 (model.7)");
    rep_c3.set_fused(true).unwrap();
    let fused = rep_c3.forward_t(xs, false).unwrap();
    assert_close(&fused, want, Tol::Parity, "fused RepC3 (model.7)");
}

#[test]
fn neck_unfused_and_fused() {
    let c = case();
    let mut neck = Neck::new(&c.cfg, c.vb.clone()).unwrap();
    let get = |k: &str| c.io.get(k).unwrap();
    for fused in [false, true] {
        neck.set_fused(fused).unwrap();
        let out = neck
            .forward_t(get("P3"), get("P4"), get("P5"), false)
            .unwrap();
        for (name, got) in [
            ("aifi", &out.aifi),
            ("X3", &out.x3),
            ("F4", &out.f4),
            ("F5", &out.f5),
        ] {
            assert_close(
                got,
                get(name),
                Tol::Parity,
                &format!("{name} (fused {fused})"),
            );
        }
    }
}

#[test]
fn rep_conv_fused_equals_unfused() {
    let c = case();
    let hd = c.cfg.hidden;
    let mut rep = RepConv::new(hd, hd, c.vb.pp(12).pp("m").pp(1)).unwrap();
    let xs = Tensor::randn(0f32, 1., (2, hd, 9, 7), &Device::Cpu).unwrap();
    let unfused = rep.forward_t(&xs, false).unwrap();
    rep.fuse().unwrap();
    let fused = rep.forward_t(&xs, false).unwrap();
    assert_close(
        &fused,
        &unfused,
        Tol::Close,
        "RepConv fused vs two branches",
    );
    let train = rep.forward_t(&xs, true).unwrap();
    assert!(
        fixtures::check_close(&train, &unfused, Tol::Parity, "train").is_err(),
        "training uses batch statistics"
    );
}
