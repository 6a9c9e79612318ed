//! Parity of the backbone with the seed's PyTorch EfficientNetV2 on a reduced structure table:
//! eval and train-mode outputs, running statistics, and gradients of every parameter.
//! Fixtures: `fixtures/gen/regen.sh` (gen_backbone.py writes fixtures/data/backbone_tiny.*).

mod common;

use std::path::PathBuf;

use candle::{DType, Device};
use candle_nn::VarBuilder;
use effnetv2::{Config, EfficientNetV2};
use fixtures::{assert_close, Fixture, Tol};

fn tiny() -> (Config, Fixture, PathBuf) {
    let io = fixtures::load("backbone_tiny.io", &Device::Cpu).unwrap();
    let cfg: Config = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    (
        cfg,
        io,
        fixtures::data_dir().join("backbone_tiny.weights.safetensors"),
    )
}

#[test]
fn eval_forward_from_the_state_dict_file() {
    let (cfg, io, _) = tiny();
    let weights = fixtures::load("backbone_tiny.weights", &Device::Cpu).unwrap();
    assert!(weights
        .tensors
        .keys()
        .any(|k| k.ends_with("num_batches_tracked")));
    let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, &Device::Cpu);
    let model = EfficientNetV2::new(&cfg, vb).unwrap();
    let outs = model.forward_t(io.get("input").unwrap(), false).unwrap();
    common::check_outputs(&outs, &io, "eval");
    let widths: Vec<usize> = outs.iter().map(|o| o.dim(1).unwrap()).collect();
    assert_eq!(widths, cfg.widths());
}

#[test]
fn train_forward_uses_batch_statistics_and_updates_running_stats() {
    let (cfg, io, weights) = tiny();
    let (model, varmap) = common::trainable(&cfg, &weights, DType::F32);
    let outs = model.forward_t(io.get("input").unwrap(), true).unwrap();
    common::check_outputs(&outs, &io, "train");
    common::check_running_stats(&varmap, &io);
}

/// Gradients of every parameter and of the input in one mode.
fn gradients_of_every_parameter(train: bool) {
    let (cfg, io, weights) = tiny();
    let (model, varmap) = common::trainable(&cfg, &weights, DType::F32);
    let compared = common::check_gradients(&model, &varmap, &io, train);
    let vars = varmap.data().lock().unwrap();
    let params = vars.keys().filter(|k| !k.contains("running_")).count();
    assert_eq!(
        compared, params,
        "the fixture holds every parameter's gradient"
    );
}

#[test]
fn eval_gradients_of_every_parameter() {
    gradients_of_every_parameter(false);
}

#[test]
fn train_gradients_of_every_parameter() {
    gradients_of_every_parameter(true);
}

#[test]
fn eval_is_deterministic_and_leaves_running_stats_alone() {
    let (cfg, io, weights) = tiny();
    let (model, varmap) = common::trainable(&cfg, &weights, DType::F32);
    let key = "blocks.0.block.fused.1.running_mean";
    let before = varmap.data().lock().unwrap()[key]
        .as_tensor()
        .copy()
        .unwrap();
    let xs = io.get("input").unwrap();
    let a = model.forward_t(xs, false).unwrap();
    let b = model.forward_t(xs, false).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert_close(a, b, Tol::Exact, "two eval runs");
    }
    let after = varmap.data().lock().unwrap()[key]
        .as_tensor()
        .copy()
        .unwrap();
    assert_close(&after, &before, Tol::Exact, "running mean after eval");
}

#[test]
fn folded_batch_norms_give_the_same_eval_outputs() {
    let (cfg, io, weights) = tiny();
    let (mut model, _varmap) = common::trainable(&cfg, &weights, DType::F32);
    model.set_fused(true).unwrap();
    let outs = model.forward_t(io.get("input").unwrap(), false).unwrap();
    common::check_outputs(&outs, &io, "eval");
    let train = model.forward_t(io.get("input").unwrap(), true).unwrap();
    common::check_outputs(&train, &io, "train");
}
