//! `rtdetr bench` in its three modes writes the figures it promises (timings themselves are
//! measured in BENCHMARKS.md, not checked here).

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(["bench", "--variant", "s", "--nc", "3", "--imgsz", "64"])
        .args(["--iters", "2", "--device", "cpu", "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn positive(report: &serde_json::Value, key: &str) -> f64 {
    let value = report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {report}"));
    assert!(value > 0.0, "{key} = {value}");
    value
}

#[test]
fn eval_profile_and_train_reports() {
    let eval = bench(&[]);
    assert_eq!(eval["mode"], "eval");
    assert!(positive(&eval, "min_ms") <= positive(&eval, "median_ms"));
    positive(&eval, "images_per_s");
    assert!(eval.get("parts_median_ms").is_none());

    let profiled = bench(&["--profile"]);
    for part in ["backbone", "neck", "decoder"] {
        assert!(profiled["parts_median_ms"][part].as_f64().unwrap() > 0.0);
    }

    let train = bench(&["--train", "--batch", "2"]);
    assert_eq!(train["mode"], "train");
    assert_eq!(train["batch"], 2);
    positive(&train, "median_ms");
}
