//! The CUDA path: the project's kernels against the CPU (depthwise convolution, deformable
//! sampling, top-k; forward and backward), the parity fixtures on the GPU in f32 (backbone_tiny,
//! detector_tiny, decoder_tiny, train_tiny with its loss terms and weight gradients), and bf16
//! inference of detector_tiny within `Tol::Bf16`.
//!
//! Built only with `--features cuda` (`cargo test --release --features cuda -p rtdetr --test gpu`
//! or `scripts/gpu-suite.sh`); every test prints "skipped: no CUDA device" and passes when no
//! GPU opens. Fixtures: `fixtures/gen/regen.sh`.
#![cfg(feature = "cuda")]
// train_step.rs, reused whole, brings its own `mod common`.
#![allow(clippy::duplicate_mod)]

mod common;
#[path = "train_step.rs"]
mod train_step;

use candle::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use fixtures::{assert_close, check_close, Fixture, Tol};
use rtdetr::{ModelOutput, RtDetr};
use rtdetr_decoder::MsDeformAttn;
use rtdetr_ops::topk;

/// GPU 0, or `None` after saying the test is skipped.
fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(dev) => Some(dev),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn randn(shape: &[usize], dev: &Device) -> Tensor {
    Tensor::randn(0f32, 1., shape, &Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

/// d(Σ ys·probe)/d(each var), in order.
fn grads_of(ys: &Tensor, probe: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let probe = probe.to_device(ys.device()).unwrap();
    let grads = (ys * probe).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| grads.get(v).expect("a gradient").clone())
        .collect()
}

#[test]
fn depthwise_kernels_equal_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cases = [
        ([2, 8, 17, 23], 3, 1, 1),
        ([2, 8, 16, 20], 3, 2, 1),
        ([1, 6, 15, 9], 5, 2, 2),
        ([2, 4, 7, 7], 3, 1, 0),
        ([1, 3, 9, 11], 3, 3, 2),
    ];
    for (shape, k, stride, padding) in cases {
        let what = format!("{shape:?} k{k} s{stride} p{padding}");
        let xs = randn(&shape, &Device::Cpu);
        let w = randn(&[shape[1], 1, k, k], &Device::Cpu);
        let mut results = Vec::new();
        for dev in [&Device::Cpu, &gpu] {
            let xs = Var::from_tensor(&xs.to_device(dev).unwrap()).unwrap();
            let w = Var::from_tensor(&w.to_device(dev).unwrap()).unwrap();
            let ys = rtdetr_ops::depthwise_conv2d(&xs, &w, stride, padding).unwrap();
            let probe = Tensor::ones(ys.dims(), DType::F32, &Device::Cpu)
                .unwrap()
                .cumsum(D::Minus1)
                .unwrap()
                .sin()
                .unwrap();
            let grads = grads_of(&ys, &probe, &[&xs, &w]);
            results.push((ys, grads));
        }
        let (cpu, cuda) = (&results[0], &results[1]);
        assert!(cuda.0.device().is_cuda());
        assert_close(&cuda.0, &cpu.0, Tol::Parity, &format!("{what}: forward"));
        assert_close(&cuda.1[0], &cpu.1[0], Tol::Parity, &format!("{what}: d/dx"));
        assert_close(&cuda.1[1], &cpu.1[1], Tol::Parity, &format!("{what}: d/dw"));

        let bf16 = rtdetr_ops::depthwise_conv2d(
            &xs.to_device(&gpu).unwrap().to_dtype(DType::BF16).unwrap(),
            &w.to_device(&gpu).unwrap().to_dtype(DType::BF16).unwrap(),
            stride,
            padding,
        )
        .unwrap();
        assert_close(&bf16, &cpu.0, Tol::Bf16, &format!("{what}: bf16 forward"));
    }
}

#[test]
fn deformable_sampling_equals_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _ = MsDeformAttn::new(32, 3, 4, 4, vb).unwrap();
    // Offsets large enough to push samples off the maps (zero padding).
    let weights: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (v.as_tensor() * 3.0).unwrap()))
        .collect();
    let shapes = [(9, 7), (5, 4), (2, 3)];
    let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let value = randn(&[2, s, 32], &Device::Cpu);
    let query = randn(&[2, 11, 32], &Device::Cpu);
    let boxes = Tensor::rand(0f32, 1., (2, 11, 4), &Device::Cpu).unwrap();
    let probe = randn(&[2, 11, 32], &Device::Cpu);
    for train in [false, true] {
        let mut results = Vec::new();
        for dev in [&Device::Cpu, &gpu] {
            let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, dev);
            let attn = MsDeformAttn::new(32, 3, 4, 4, vb).unwrap();
            let vars: Vec<Var> = [&value, &query, &boxes]
                .iter()
                .map(|t| Var::from_tensor(&t.to_device(dev).unwrap()).unwrap())
                .collect();
            let ys = attn
                .forward(&vars[1], &vars[2], &vars[0], &shapes, train)
                .unwrap();
            let grads = grads_of(&ys, &probe, &[&vars[0], &vars[1], &vars[2]]);
            results.push((ys, grads));
        }
        let (cpu, cuda) = (&results[0], &results[1]);
        assert_close(&cuda.0, &cpu.0, Tol::Parity, &format!("train {train}: out"));
        for (i, name) in ["value", "query", "boxes"].iter().enumerate() {
            assert_close(
                &cuda.1[i],
                &cpu.1[i],
                Tol::Grad,
                &format!("train {train}: d/d{name}"),
            );
        }
    }
}

#[test]
fn topk_equals_the_cpu_on_long_rows_and_ties() {
    let Some(gpu) = gpu() else { return };
    let n = 20_000;
    // Few distinct values (many ties), ±0, ±inf, in a scrambled order.
    let row = |r: usize| -> Vec<f32> {
        (0..n)
            .map(|i| match (i * 7919 + r * 31) % n {
                j if j % 997 == 0 => f32::NEG_INFINITY,
                j if j % 991 == 0 => f32::INFINITY,
                j if j % 13 == 0 => -0.0,
                j if j % 11 == 0 => 0.0,
                j => ((j % 50) as f32 - 25.0) / 8.0,
            })
            .collect()
    };
    let data: Vec<f32> = (0..3).flat_map(row).collect();
    let cpu = Tensor::from_vec(data, (3, n), &Device::Cpu).unwrap();
    let cuda = cpu.to_device(&gpu).unwrap();
    for k in [1, 300, 8193, n] {
        let (want_v, want_i) = topk(&cpu, k).unwrap();
        let (got_v, got_i) = topk(&cuda, k).unwrap();
        assert!(got_i.device().is_cuda());
        assert_eq!(
            got_i.to_vec2::<u32>().unwrap(),
            want_i.to_vec2::<u32>().unwrap(),
            "k {k}: indices"
        );
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&got_v), bits(&want_v), "k {k}: values");
    }
    // 8400 anchors of a 640×640 image, random scores, batch 4.
    let scores = Tensor::rand(0f32, 1., (4, 8400), &Device::Cpu).unwrap();
    let (_, want) = topk(&scores, 300).unwrap();
    let (_, got) = topk(&scores.to_device(&gpu).unwrap(), 300).unwrap();
    assert_eq!(
        got.to_vec2::<u32>().unwrap(),
        want.to_vec2::<u32>().unwrap()
    );
}

/// backbone_tiny's weights as trainable variables on `dev`.
fn backbone(dev: &Device) -> (effnetv2::EfficientNetV2, VarMap, Fixture) {
    let io = fixtures::load("backbone_tiny.io", dev).unwrap();
    let cfg: effnetv2::Config = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    let varmap = VarMap::new();
    let model =
        effnetv2::EfficientNetV2::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))
            .unwrap();
    let weights = fixtures::load("backbone_tiny.weights", dev).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        var.set(weights.get(name).unwrap()).unwrap();
    }
    (model, varmap, io)
}

#[test]
fn backbone_tiny_outputs_and_gradients_on_cuda() {
    let Some(gpu) = gpu() else { return };
    for (train, mode) in [(false, "eval"), (true, "train")] {
        let (model, varmap, io) = backbone(&gpu);
        let xs = Var::from_tensor(io.get("input").unwrap()).unwrap();
        let outs = model.forward_t(&xs, train).unwrap();
        let mut loss = Tensor::zeros((), DType::F32, &gpu).unwrap();
        for (i, out) in outs.iter().enumerate() {
            assert_close(
                out,
                io.get(&format!("{mode}.out.{i}")).unwrap(),
                Tol::Parity,
                &format!("{mode}: out {i}"),
            );
            let probe = io.get(&format!("probe.{i}")).unwrap();
            loss = (loss + (out * probe).unwrap().sum_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        let want = io.with_prefix(&format!("{mode}.grad."));
        let max_abs = |t: &Tensor| -> f64 {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        // As effnetv2/tests/common: train-mode gradients that are zero in exact arithmetic
        // hold rounding noise on both sides and are skipped.
        let floor = 1e-6 * want.values().map(max_abs).fold(0.0, f64::max);
        let vars = varmap.data().lock().unwrap();
        let mut failures = Vec::new();
        for (name, want) in &want {
            let got = if name == "input" {
                grads.get(&xs)
            } else {
                grads.get(&vars[name])
            };
            let got = got.unwrap_or_else(|| panic!("{mode}: no gradient reaches {name}"));
            if max_abs(want) < floor {
                continue;
            }
            if let Err(m) = check_close(got, want, Tol::Grad, &format!("{mode}: d/d{name}")) {
                failures.push(m.to_string());
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// detector_tiny on `dev` in `dtype`, RepConv fused as loaded.
fn detector(dev: &Device, dtype: DType) -> (RtDetr, Fixture) {
    let io = fixtures::load("detector_tiny.io", dev).unwrap();
    let cfg = common::tiny_config(&io);
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let model = if dtype == DType::F32 {
        RtDetr::load_with_config(&path, &cfg, dev).unwrap()
    } else {
        // SAFETY: the fixture file is not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], dtype, dev) }.unwrap();
        let mut model = RtDetr::new(&cfg, vb).unwrap();
        model.set_fused(true).unwrap();
        model
    };
    (model, io)
}

/// The backbone, neck and decoder outputs against the fixture at `tol`; detections (whose order
/// follows near-tied scores) only at `Tol::Parity`.
fn check_detector(out: &ModelOutput, io: &Fixture, tol: Tol, what: &str) {
    let get = |k: &str| io.get(k).unwrap();
    for (i, name) in ["P3", "P4", "P5"].iter().enumerate() {
        assert_close(
            &out.backbone[i + 1],
            get(name),
            tol,
            &format!("{what}: {name}"),
        );
    }
    for (name, got) in [
        ("X3", &out.neck.x3),
        ("F4", &out.neck.f4),
        ("F5", &out.neck.f5),
    ] {
        assert_close(got, get(name), tol, &format!("{what}: {name}"));
    }
    let index = out.decoder.queries.index.to_dtype(DType::I64).unwrap();
    if tol == Tol::Parity {
        assert_close(
            &index,
            get("dec.index"),
            Tol::Exact,
            &format!("{what}: index"),
        );
    } else if check_close(&index, get("dec.index"), Tol::Exact, what).is_err() {
        // bf16 may swap near-tied encoder scores; the boxes then follow other queries.
        eprintln!("{what}: bf16 selected other queries; decoder outputs not compared");
        return;
    }
    assert_close(
        &out.decoder.boxes,
        get("dec.boxes"),
        tol,
        &format!("{what}: boxes"),
    );
    assert_close(
        &out.decoder.logits,
        get("dec.logits"),
        tol,
        &format!("{what}: logits"),
    );
    if tol == Tol::Parity {
        assert_close(
            &out.decoder.detections,
            get("dec.detections"),
            tol,
            &format!("{what}: detections"),
        );
    }
}

#[test]
fn detector_tiny_on_cuda_fused_and_unfused() {
    let Some(gpu) = gpu() else { return };
    let (mut model, io) = detector(&gpu, DType::F32);
    let images = common::input(&io);
    assert!(images.device().is_cuda());
    let out = model.forward_t(&images, false).unwrap();
    check_detector(&out, &io, Tol::Parity, "fused");
    model.set_fused(false).unwrap();
    let out = model.forward_t(&images, false).unwrap();
    check_detector(&out, &io, Tol::Parity, "unfused");
}

#[test]
fn detector_tiny_in_bf16_within_the_bf16_tolerance() {
    let Some(gpu) = gpu() else { return };
    let (model, io) = detector(&gpu, DType::BF16);
    let images = common::input(&io).to_dtype(DType::BF16).unwrap();
    let out = model.forward_t(&images, false).unwrap();
    assert_eq!(out.decoder.boxes.dtype(), DType::BF16);
    check_detector(&out, &io, Tol::Bf16, "bf16");
}

#[test]
fn decoder_tiny_with_invalid_anchors_on_cuda() {
    let Some(gpu) = gpu() else { return };
    let (model, _) = detector(&gpu, DType::F32);
    let io = fixtures::load("decoder_tiny.io", &gpu).unwrap();
    let maps: Vec<Tensor> = (0..3)
        .map(|i| io.get(&format!("map.{i}")).unwrap().clone())
        .collect();
    let out = model.decoder().forward(&maps, false).unwrap();
    let get = |k: &str| io.get(k).unwrap();
    let index = out.queries.index.to_dtype(DType::I64).unwrap();
    assert_close(&index, get("dec.index"), Tol::Exact, "index");
    assert_close(&out.boxes, get("dec.boxes"), Tol::Parity, "boxes");
    assert_close(&out.logits, get("dec.logits"), Tol::Parity, "logits");
    assert_close(
        &out.detections,
        get("dec.detections"),
        Tol::Parity,
        "detections",
    );
}

#[test]
fn train_tiny_loss_and_gradients_on_cuda() {
    let Some(gpu) = gpu() else { return };
    train_step::check(&gpu);
}
