//! Checks shared by the reduced (committed) and full-size (generated on demand) parity tests.

use std::path::Path;

use candle::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use effnetv2::{Config, EfficientNetV2};
use fixtures::{assert_close, check_close, Fixture, Tol};

/// In train mode a BN bias whose output only reaches later train-mode BNs (through residuals) has
/// a gradient of exactly zero; both sides then hold f32 rounding noise, which has no relative
/// error to check. Below this fraction of the case's largest gradient a tensor counts as zero.
const ZERO_GRADIENT_FLOOR: f64 = 1e-6;

/// The model with trainable `dtype` weights loaded from `weights`, so gradients reach every
/// parameter.
pub fn trainable(cfg: &Config, weights: &Path, dtype: DType) -> (EfficientNetV2, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
    let model = EfficientNetV2::new(cfg, vb).unwrap();
    let file = fixtures::load_file(weights, &Device::Cpu).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        var.set(&file.get(name).unwrap().to_dtype(dtype).unwrap())
            .unwrap();
    }
    (model, varmap)
}

/// The precision the fixture's `mode` case was computed in.
pub fn dtype_of(io: &Fixture, mode: &str) -> DType {
    io.get(&format!("{mode}.out.0")).unwrap().dtype()
}

fn max_abs(t: &Tensor) -> f64 {
    let t = t.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

/// Compares the four maps with `<mode>.out.<i>` and returns the largest absolute difference.
pub fn check_outputs(outs: &[Tensor], io: &Fixture, mode: &str) -> f64 {
    assert_eq!(outs.len(), 4, "{mode}: the backbone returns four maps");
    let mut worst = 0f64;
    for (i, out) in outs.iter().enumerate() {
        let what = format!("{mode}.out.{i}");
        worst = worst.max(assert_close(
            out,
            io.get(&what).unwrap(),
            Tol::Parity,
            &what,
        ));
    }
    let dtype = outs[0].dtype();
    eprintln!(
        "{}: {mode} ({dtype:?}) outputs max |diff| {worst:.2e}",
        io.path().display()
    );
    worst
}

/// Train-mode running statistics after one forward equal `train.state.*`.
pub fn check_running_stats(varmap: &VarMap, io: &Fixture) {
    let expected = io.with_prefix("train.state.");
    assert!(
        !expected.is_empty(),
        "the fixture has no running statistics"
    );
    let vars = varmap.data().lock().unwrap();
    for (name, want) in expected {
        let got = vars
            .get(&name)
            .unwrap_or_else(|| panic!("no buffer {name}"));
        assert_close(got.as_tensor(), &want, Tol::Parity, &name);
    }
}

fn probe_loss(outs: &[Tensor], io: &Fixture) -> Tensor {
    let terms: Vec<Tensor> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let probe = io
                .get(&format!("probe.{i}"))
                .unwrap()
                .to_dtype(o.dtype())
                .unwrap();
            (o * probe).unwrap().sum_all().unwrap()
        })
        .collect();
    Tensor::stack(&terms, 0).unwrap().sum_all().unwrap()
}

/// Runs forward in `train` or eval mode, checks the outputs, then d(Σ <out_i, probe_i>) with
/// respect to the input and to every parameter in `<mode>.grad.*`, reporting every failure.
/// Returns the number of parameters compared.
pub fn check_gradients(
    model: &EfficientNetV2,
    varmap: &VarMap,
    io: &Fixture,
    train: bool,
) -> usize {
    let mode = if train { "train" } else { "eval" };
    let xs = io
        .get("input")
        .unwrap()
        .to_dtype(dtype_of(io, mode))
        .unwrap();
    let xs = Var::from_tensor(&xs).unwrap();
    let outs = model.forward_t(&xs, train).unwrap();
    check_outputs(&outs, io, mode);
    let grads = probe_loss(&outs, io).backward().unwrap();

    let want = io.with_prefix(&format!("{mode}.grad."));
    let floor = ZERO_GRADIENT_FLOOR * want.values().map(max_abs).fold(0.0, f64::max);
    let vars = varmap.data().lock().unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut worst_relative = 0f64;
    for (name, want) in &want {
        let got = if name == "input" {
            grads.get(&xs)
        } else {
            let var = vars
                .get(name)
                .unwrap_or_else(|| panic!("the model has no parameter {name}"));
            compared += 1;
            grads.get(var)
        };
        let Some(got) = got else {
            failures.push(format!("{name}: no gradient"));
            continue;
        };
        if max_abs(want) < floor {
            if max_abs(got) >= floor {
                failures.push(format!(
                    "{name}: zero in exact arithmetic, got max {}",
                    max_abs(got)
                ));
            }
            continue;
        }
        match check_close(got, want, Tol::Grad, name) {
            Ok(diff) => worst_relative = worst_relative.max(diff / max_abs(want)),
            Err(m) => failures.push(m.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{mode} gradients:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{}: {mode} gradients of {compared} parameters and the input, worst max|diff|/max|want| {worst_relative:.2e}",
        io.path().display()
    );
    compared
}
