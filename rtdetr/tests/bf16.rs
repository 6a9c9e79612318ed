//! bf16 inference on the CPU (`rtdetr_ops::with_precision(Precision::Bf16, ..)`, what
//! `--dtype bf16` and `DetectorOptions::dtype = BF16` run) against the PyTorch reference in f32:
//! every stage's output and the final detections within `Tol::Bf16`. AMX tiles where this CPU has
//! them, else bf16-rounded f32 (both kernel paths are also tested against a scalar reference in
//! `rtdetr-ops`).

mod common;

use candle::{DType, Device};
use common::{input, tiny_config};
use fixtures::{assert_close, Tol};
use rtdetr::{Detector, DetectorOptions, Precision, RtDetr};

#[test]
fn detector_tiny_in_bf16_within_the_bf16_tolerance() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let cfg = tiny_config(&io);
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let model = RtDetr::load_with_config(&path, &cfg, &Device::Cpu).unwrap();
    let images = input(&io);
    let out =
        rtdetr_ops::with_precision(Precision::Bf16, || model.forward_t(&images, false)).unwrap();
    let get = |k: &str| io.get(k).unwrap();
    for (i, name) in ["P3", "P4", "P5"].iter().enumerate() {
        assert_close(&out.backbone[i + 1], get(name), Tol::Bf16, name);
    }
    for (name, got) in [
        ("X3", &out.neck.x3),
        ("F4", &out.neck.f4),
        ("F5", &out.neck.f5),
    ] {
        assert_close(got, get(name), Tol::Bf16, name);
    }
    let decoder = model.decoder();
    let (feats, _) = decoder
        .encoder_input(
            &[
                out.neck.x3.clone(),
                out.neck.f4.clone(),
                out.neck.f5.clone(),
            ],
            false,
        )
        .unwrap();
    assert_close(&feats, get("dec.feats"), Tol::Bf16, "encoder tokens");
    // bf16 moves near-tied encoder scores (random weights tie often), so the top-k may order
    // the queries otherwise, or pick others: the encoder's and the last layer's boxes and logits
    // are compared query by query where both picked the same token (most of them), the final
    // detections' scores rank by rank.
    let index = |t: &candle::Tensor| -> Vec<Vec<i64>> {
        t.to_dtype(DType::I64).unwrap().to_vec2().unwrap()
    };
    let (got_index, want_index) = (index(&out.decoder.queries.index), index(get("dec.index")));
    let rows = |t: &candle::Tensor| -> Vec<Vec<Vec<f32>>> { t.to_vec3().unwrap() };
    let last = |t: &candle::Tensor| t.get(t.dim(0).unwrap() - 1).unwrap();
    let (boxes, logits) = (last(&out.decoder.boxes), last(&out.decoder.logits));
    let (want_boxes, want_logits) = (last(get("dec.boxes")), last(get("dec.logits")));
    let mut shared = 0;
    for (got, want) in [
        (&out.decoder.queries.enc_boxes, get("dec.enc_boxes")),
        (&out.decoder.queries.enc_logits, get("dec.enc_logits")),
        (&boxes, &want_boxes),
        (&logits, &want_logits),
    ] {
        let (got, want) = (rows(got), rows(want));
        let allowed = want
            .iter()
            .flatten()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            / 32.0;
        shared = 0;
        for b in 0..got.len() {
            for (k, query) in got_index[b].iter().enumerate() {
                let Some(k_ref) = want_index[b].iter().position(|q| q == query) else {
                    continue;
                };
                shared += 1;
                for (x, y) in got[b][k].iter().zip(&want[b][k_ref]) {
                    assert!((x - y).abs() <= allowed, "query {query}: {x} vs {y}");
                }
            }
        }
    }
    let queries = got_index.iter().map(Vec::len).sum::<usize>();
    assert!(
        4 * shared >= queries,
        "only {shared} of {queries} queries picked by both"
    );
    let scores = |t: &candle::Tensor| -> Vec<Vec<f32>> {
        let mut s: Vec<Vec<f32>> = t
            .narrow(2, 4, 1)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .to_vec2()
            .unwrap();
        s.iter_mut().for_each(|s| s.sort_by(|a, b| b.total_cmp(a)));
        s
    };
    let (got, want) = (
        scores(&out.decoder.detections),
        scores(get("dec.detections")),
    );
    for (b, (got, want)) in got.iter().zip(&want).enumerate() {
        for (rank, (x, y)) in got.iter().zip(want).enumerate() {
            assert!(
                (x - y).abs() <= 1.0 / 32.0,
                "image {b}, rank {rank}: score {x} vs {y}"
            );
        }
    }
    eprintln!("bf16: {shared} of {queries} queries picked by both");
    // The f32 pass afterwards is f32 again: the precision was scoped.
    let f32 = model.forward_t(&images, false).unwrap();
    assert_close(
        &f32.decoder.detections,
        get("dec.detections"),
        Tol::Parity,
        "f32 after bf16",
    );
}

/// `DetectorOptions { dtype: BF16 }` on the CPU keeps f32 weights and runs the bf16 convolutions:
/// scores that differ from f32's (so bf16 did run) by at most `Tol::Bf16`'s 1/32, rank by rank.
#[test]
fn detector_options_bf16_on_the_cpu() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let cfg = tiny_config(&io);
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let u8 = io.get("input_u8").unwrap().get(0).unwrap();
    let (_, h, w) = u8.dims3().unwrap();
    let detector = |dtype| {
        let model = RtDetr::load_with_config(&path, &cfg, &Device::Cpu).unwrap();
        let options = DetectorOptions {
            dtype,
            conf: 0.0,
            imgsz: Some(h.max(w)),
            ..Default::default()
        };
        Detector::from_model(model, vec![], options).unwrap()
    };
    let hwc: Vec<u8> = u8
        .permute((1, 2, 0))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let images = [(hwc.as_slice(), h, w)];
    let scores = |dtype| {
        let found = detector(dtype).detect_rgb(&images).unwrap().remove(0);
        found.iter().map(|d| d.score).collect::<Vec<_>>()
    };
    let (want, got) = (scores(DType::F32), scores(DType::BF16));
    assert_eq!(want.len(), got.len());
    assert_ne!(
        want, got,
        "bf16 gave f32's scores bit for bit: it did not run"
    );
    for (rank, (a, b)) in want.iter().zip(&got).enumerate() {
        assert!((a - b).abs() <= 1.0 / 32.0, "rank {rank}: {a} vs {b}");
    }
}
