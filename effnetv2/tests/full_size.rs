//! Full-size parity of s, m, l and xl with the seed's PyTorch EfficientNetV2 at batch 2, 128×128:
//! eval (f32) and train-mode (f64, see gen_backbone.py) outputs, running statistics, and gradients
//! of the input and a sample of weights.
//! The reference is generated on demand (PyTorch venv, weights up to 800 MB), so these are ignored
//! by default. Run:
//!
//! ```text
//! cargo test --release -p effnetv2 --test full_size -- --ignored --test-threads 1
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle::Device;
use effnetv2::Config;

const SIZE: usize = 128;

fn reference(variant: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures");
    let io = root
        .join("full")
        .join(format!("backbone_{variant}_{SIZE}.io.safetensors"));
    if !io.exists() {
        let status = Command::new(root.join("gen").join("full.sh"))
            .args([variant, &SIZE.to_string()])
            .status()
            .expect("running fixtures/gen/full.sh");
        assert!(status.success(), "fixtures/gen/full.sh {variant} failed");
    }
    io
}

fn full_size(variant: &str) {
    let io_path = reference(variant);
    let weights = io_path.with_file_name(format!("backbone_{variant}_{SIZE}.weights.safetensors"));
    let io = fixtures::load_file(&io_path, &Device::Cpu).unwrap();
    let mut cfg = Config::variant(variant).unwrap();
    cfg.stochastic_depth = 0.0;
    for (mode, train) in [("eval", false), ("train", true)] {
        let (model, varmap) = common::trainable(&cfg, &weights, common::dtype_of(&io, mode));
        assert!(common::check_gradients(&model, &varmap, &io, train) >= 4);
        if train {
            common::check_running_stats(&varmap, &io);
        }
    }
}

#[test]
#[ignore = "generates an 80 MB PyTorch reference; see the file header"]
fn full_size_s() {
    full_size("s");
}

#[test]
#[ignore = "generates a 200 MB PyTorch reference; see the file header"]
fn full_size_m() {
    full_size("m");
}

#[test]
#[ignore = "generates a 470 MB PyTorch reference; see the file header"]
fn full_size_l() {
    full_size("l");
}

#[test]
#[ignore = "generates an 820 MB PyTorch reference; see the file header"]
fn full_size_xl() {
    full_size("xl");
}
