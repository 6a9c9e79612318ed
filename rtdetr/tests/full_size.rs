//! Full-size parity of RT-DETR-EfficientNetV2-S (nc=80) at 320×320 with the seed model: backbone,
//! neck and decoder outputs and the final detections, with the variant and class count inferred
//! from the weights and RepConv fused. The reference (150 MB of weights) is generated on demand,
//! so the test is ignored by default. Run:
//!
//! ```text
//! cargo test --release -p rtdetr --test full_size -- --ignored
//! ```

use std::path::Path;
use std::process::Command;

use candle::{DType, Device};
use fixtures::{assert_close, Tol};
use rtdetr::{ModelConfig, RtDetr, Variant};

#[test]
#[ignore = "generates a 150 MB PyTorch reference; see the file header"]
fn s_at_320() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures");
    let io_path = root.join("full").join("detector_s_320.io.safetensors");
    if !io_path.exists() {
        let status = Command::new(root.join("gen").join("full_detector.sh"))
            .status()
            .unwrap();
        assert!(status.success(), "fixtures/gen/full_detector.sh failed");
    }
    let io = fixtures::load_file(&io_path, &Device::Cpu).unwrap();
    let weights = io_path.with_file_name("detector_s_320.weights.safetensors");
    let model = RtDetr::load(&weights, &Device::Cpu, None, None).unwrap();
    assert_eq!(model.config(), &ModelConfig::new(Variant::S, 80));

    let images = (io.get("input_u8").unwrap().to_dtype(DType::F32).unwrap() / 255.0).unwrap();
    let out = model.forward_t(&images, false).unwrap();
    let get = |k: &str| io.get(k).unwrap();
    for (i, name) in ["P3", "P4", "P5"].iter().enumerate() {
        assert_close(&out.backbone[i + 1], get(name), Tol::Parity, name);
    }
    for (name, got) in [
        ("aifi", &out.neck.aifi),
        ("X3", &out.neck.x3),
        ("F4", &out.neck.f4),
        ("F5", &out.neck.f5),
    ] {
        assert_close(got, get(name), Tol::Parity, name);
    }
    let index = out.decoder.queries.index.to_dtype(DType::I64).unwrap();
    assert_close(
        &index,
        get("dec.index"),
        Tol::Exact,
        "selected token indices",
    );
    assert_close(
        &out.decoder.boxes,
        get("dec.boxes"),
        Tol::Parity,
        "every layer's boxes",
    );
    assert_close(
        &out.decoder.logits,
        get("dec.logits"),
        Tol::Parity,
        "every layer's logits",
    );
    let worst = assert_close(
        &out.decoder.detections,
        get("dec.detections"),
        Tol::Parity,
        "detections",
    );
    eprintln!("s@320: detections max |diff| {worst:.2e}");
}
