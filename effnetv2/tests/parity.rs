//! Parity of the backbone with the seed's PyTorch EfficientNetV2 on a reduced structure table.
//! Fixtures: `fixtures/gen/regen.sh` (gen_backbone.py writes backbone_tiny.*).

use candle::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use effnetv2::{Config, EfficientNetV2};
use fixtures::{assert_close, check_close, Fixture, Tol};

fn tiny() -> (Config, Fixture) {
    let io = fixtures::load("backbone_tiny.io", &Device::Cpu).unwrap();
    let cfg: Config = serde_json::from_str(io.meta("config").unwrap()).unwrap();
    (cfg, io)
}

/// The model with trainable weights loaded from the fixture, so gradients reach every parameter.
fn trainable(cfg: &Config) -> (EfficientNetV2, VarMap) {
    let varmap = VarMap::new();
    let model = EfficientNetV2::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut varmap = varmap;
    varmap
        .load(fixtures::data_dir().join("backbone_tiny.weights.safetensors"))
        .unwrap();
    (model, varmap)
}

/// In train mode a BN bias whose output only reaches later train-mode BNs (through residuals) has
/// a gradient of exactly zero; both sides then hold f32 rounding noise, which has no relative
/// error to check. Below this fraction of the model's largest gradient a tensor counts as zero.
const ZERO_GRADIENT_FLOOR: f64 = 1e-6;

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn check_outputs(outs: &[Tensor], io: &Fixture, mode: &str) {
    assert_eq!(outs.len(), 4, "{mode}: the backbone returns four maps");
    for (i, out) in outs.iter().enumerate() {
        let what = format!("{mode}.out.{i}");
        assert_close(out, io.get(&what).unwrap(), Tol::Parity, &what);
    }
}

fn probe_loss(outs: &[Tensor], io: &Fixture) -> Tensor {
    let terms: Vec<Tensor> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (o * io.get(&format!("probe.{i}")).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
        })
        .collect();
    Tensor::stack(&terms, 0).unwrap().sum_all().unwrap()
}

/// Checks d(probe loss)/d(input) and d/d(every parameter), reporting every failing tensor.
fn check_gradients(train: bool) {
    let (cfg, io) = tiny();
    let mode = if train { "train" } else { "eval" };
    let (model, varmap) = trainable(&cfg);
    let xs = Var::from_tensor(io.get("input").unwrap()).unwrap();
    let outs = model.forward_t(&xs, train).unwrap();
    check_outputs(&outs, &io, mode);
    let grads = probe_loss(&outs, &io).backward().unwrap();

    let mut failures = Vec::new();
    let mut compared = 0;
    let want_input = io.get(&format!("{mode}.grad.input")).unwrap();
    let got_input = grads.get(&xs).expect("no gradient reached the input");
    if let Err(m) = check_close(got_input, want_input, Tol::Grad, "input") {
        failures.push(m.to_string());
    }
    let want_grads = io.with_prefix(&format!("{mode}.grad."));
    let floor = ZERO_GRADIENT_FLOOR * want_grads.values().map(max_abs).fold(0.0, f64::max);
    for (name, want) in want_grads {
        if name == "input" {
            continue;
        }
        let vars = varmap.data().lock().unwrap();
        let var = vars
            .get(&name)
            .unwrap_or_else(|| panic!("the model has no parameter {name}"));
        let Some(got) = grads.get(var) else {
            failures.push(format!("{name}: no gradient"));
            continue;
        };
        compared += 1;
        if max_abs(&want) < floor {
            if max_abs(got) >= floor {
                failures.push(format!(
                    "{name}: gradient is zero in exact arithmetic, got max |{}|",
                    max_abs(got)
                ));
            }
        } else if let Err(m) = check_close(got, &want, Tol::Grad, &name) {
            failures.push(m.to_string());
        }
    }
    let params = varmap
        .data()
        .lock()
        .unwrap()
        .keys()
        .filter(|k| !k.contains("running_"))
        .count();
    assert_eq!(
        compared, params,
        "every parameter's gradient is in the fixture"
    );
    assert!(
        failures.is_empty(),
        "{mode} gradients:\n{}",
        failures.join("\n")
    );
}

#[test]
fn eval_forward_from_the_state_dict_file() {
    let (cfg, io) = tiny();
    let weights = fixtures::load("backbone_tiny.weights", &Device::Cpu).unwrap();
    assert!(weights
        .tensors
        .keys()
        .any(|k| k.ends_with("num_batches_tracked")));
    let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, &Device::Cpu);
    let model = EfficientNetV2::new(&cfg, vb).unwrap();
    let outs = model.forward_t(io.get("input").unwrap(), false).unwrap();
    check_outputs(&outs, &io, "eval");
    let widths: Vec<usize> = outs.iter().map(|o| o.dim(1).unwrap()).collect();
    assert_eq!(widths, cfg.widths());
}

#[test]
fn train_forward_uses_batch_statistics_and_updates_running_stats() {
    let (cfg, io) = tiny();
    let (model, varmap) = trainable(&cfg);
    let outs = model.forward_t(io.get("input").unwrap(), true).unwrap();
    check_outputs(&outs, &io, "train");
    let expected = io.with_prefix("train.state.");
    assert!(!expected.is_empty());
    let vars = varmap.data().lock().unwrap();
    for (name, want) in expected {
        let got = vars
            .get(&name)
            .unwrap_or_else(|| panic!("no buffer {name}"));
        assert_close(got.as_tensor(), &want, Tol::Parity, &name);
    }
}

#[test]
fn eval_gradients() {
    check_gradients(false);
}

#[test]
fn train_gradients() {
    check_gradients(true);
}

#[test]
fn eval_is_deterministic_and_leaves_running_stats_alone() {
    let (cfg, io) = tiny();
    let (model, varmap) = trainable(&cfg);
    let before = varmap.data().lock().unwrap()["blocks.0.block.fused.1.running_mean"]
        .as_tensor()
        .copy()
        .unwrap();
    let xs = io.get("input").unwrap();
    let a = model.forward_t(xs, false).unwrap();
    let b = model.forward_t(xs, false).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert_close(a, b, Tol::Exact, "two eval runs");
    }
    let after = varmap.data().lock().unwrap()["blocks.0.block.fused.1.running_mean"]
        .as_tensor()
        .copy()
        .unwrap();
    assert_close(&after, &before, Tol::Exact, "running mean after eval");
}
