//! `rtdetr train` and `rtdetr val --weights --data` on a small synthetic set with a small model:
//! one epoch, checkpoints that load, and a validation run on them.

use std::process::Command;

#[test]
fn train_one_epoch_then_validate_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rtdetr::data::write_dataset(&data, 6, 2, 64, 3).unwrap();
    let meta =
        rtdetr::read_metadata(fixtures::data_dir().join("detector_tiny.weights.safetensors"))
            .unwrap();
    let config = dir.path().join("model.json");
    std::fs::write(&config, &meta[rtdetr::CONFIG_KEY]).unwrap();
    let run = dir.path().join("run");
    let bin = env!("CARGO_BIN_EXE_rtdetr");
    let train = Command::new(bin)
        .args([
            "train", "--epochs", "1", "--batch", "3", "--imgsz", "64", "--device", "cpu", "--data",
        ])
        .arg(data.join("data.yaml"))
        .arg("--model-config")
        .arg(&config)
        .arg("--save-dir")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{stderr}");
    assert!(
        stderr.contains("epoch 1/1") && stderr.contains("mAP50-95"),
        "{stderr}"
    );
    for file in [
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
        "results.csv",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    let out = dir.path().join("val.json");
    let val = Command::new(bin)
        .args([
            "val",
            "--imgsz",
            "64",
            "--batch",
            "2",
            "--device",
            "cpu",
            "--weights",
        ])
        .arg(run.join("best.safetensors"))
        .arg("--data")
        .arg(data.join("data.yaml"))
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        val.status.success(),
        "{}",
        String::from_utf8_lossy(&val.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(report["map50_95"].is_number() && report["map50"].is_number());
    let names: Vec<&str> = report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rectangle", "ellipse"]);
}
