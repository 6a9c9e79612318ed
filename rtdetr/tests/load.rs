//! Strict loading: unknown, missing and mis-shaped keys are named; the variant and class count
//! are inferred from the tensor shapes.

mod common;

use std::collections::{BTreeMap, HashMap};

use candle::{DType, Device, Tensor};
use rtdetr::{infer_config, LoadError, Manifest, ModelConfig, RtDetr, Variant};

fn tiny_weights() -> HashMap<String, Tensor> {
    fixtures::load("detector_tiny.weights", &Device::Cpu)
        .unwrap()
        .tensors
}

fn tiny_config() -> ModelConfig {
    common::tiny_config(&fixtures::load("detector_tiny.io", &Device::Cpu).unwrap())
}

fn write(tensors: &HashMap<String, Tensor>) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .suffix(".safetensors")
        .tempfile()
        .unwrap();
    candle::safetensors::save(tensors, file.path()).unwrap();
    file.into_temp_path()
}

fn load_error(tensors: &HashMap<String, Tensor>) -> String {
    let path = write(tensors);
    match RtDetr::load_with_config(&path, &tiny_config(), &Device::Cpu) {
        Ok(_) => panic!("loaded weights that do not fit"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_reference_state_dict_loads() {
    let path = write(&tiny_weights());
    RtDetr::load_with_config(&path, &tiny_config(), &Device::Cpu).unwrap();
}

#[test]
fn missing_key_is_named() {
    let mut w = tiny_weights();
    w.remove("model.7.m.1.conv1.bn.running_var").unwrap();
    let err = load_error(&w);
    assert!(
        err.contains("missing model.7.m.1.conv1.bn.running_var"),
        "{err}"
    );
}

#[test]
fn unexpected_key_is_named() {
    let mut w = tiny_weights();
    w.insert(
        "model.19.tgt_embed.weight".into(),
        Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load_error(&w);
    assert!(
        err.contains("unexpected model.19.tgt_embed.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let mut w = tiny_weights();
    w.insert(
        "model.2.fc1.weight".into(),
        Tensor::zeros((7, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load_error(&w);
    assert!(
        err.contains("model.2.fc1.weight has shape [7, 32], expected [64, 32]"),
        "{err}"
    );
}

#[test]
fn not_safetensors_is_a_format_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"PK\x03\x04 this is a zip, not safetensors").unwrap();
    match RtDetr::load(file.path(), &Device::Cpu, None, None) {
        Err(LoadError::Format { path, .. }) => assert_eq!(path, file.path()),
        other => panic!("expected a format error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn variant_and_class_count_are_inferred_from_shapes() {
    for variant in Variant::ALL {
        for nc in [1, 80] {
            let manifest = Manifest::model(&ModelConfig::new(variant, nc)).unwrap();
            let mut shapes: BTreeMap<String, Vec<usize>> = manifest
                .entries
                .into_iter()
                .map(|e| (e.key, e.shape))
                .collect();
            shapes.insert("model.0.stem.1.num_batches_tracked".into(), vec![]);
            let cfg = infer_config(&shapes, None, None).unwrap();
            assert_eq!(cfg, ModelConfig::new(variant, nc), "{variant} nc={nc}");
        }
    }
    let err = infer_config(&BTreeMap::new(), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.19.enc_score_head.weight"), "{err}");
}

/// Weights holding NaN (a diverged run) or infinities are refused with the tensor named, in f32
/// and f16, rather than loading into a model that detects nothing.
#[test]
fn non_finite_weights_are_refused() {
    let name = "model.19.dec_score_head.0.bias";
    for (value, dtype) in [(f32::NAN, DType::F32), (f32::INFINITY, DType::F16)] {
        let mut tensors = tiny_weights();
        let t = &tensors[name];
        let poisoned = Tensor::full(value, t.shape(), &Device::Cpu).unwrap();
        tensors.insert(name.into(), poisoned);
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    if t.dtype() == DType::F32 {
                        t.to_dtype(dtype).unwrap()
                    } else {
                        t
                    },
                )
            })
            .collect();
        let error = load_error(&tensors);
        assert!(
            error.contains("1 tensors hold NaN or infinite values") && error.contains(name),
            "{error}"
        );
    }
}
