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
    // The closing summary: ultralytics' table of best.safetensors and where the files are.
    assert!(
        stderr.contains("Box(P") && stderr.lines().any(|l| l.trim_start().starts_with("all ")),
        "{stderr}"
    );
    assert!(stderr.contains("best.safetensors (best)"), "{stderr}");
    for file in [
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
        "results.csv",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    // The weights carry their training size and arguments; val and detect use that size.
    let best = rtdetr::read_metadata(run.join("best.safetensors")).unwrap();
    assert_eq!(best["imgsz"], "64");
    let args: serde_json::Value = serde_json::from_str(&best["train_args"]).unwrap();
    assert_eq!(
        (args["imgsz"].as_u64(), args["epochs"].as_u64()),
        (Some(64), Some(1))
    );
    let detect = Command::new(bin)
        .args([
            "detect",
            "--no-draw",
            "--device",
            "cpu",
            "--imgsz",
            "96",
            "--weights",
        ])
        .arg(run.join("best.safetensors"))
        .arg(data.join("images/val"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&detect.stderr);
    assert!(detect.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: --imgsz 96, but the weights were trained at 64")
            && stderr.contains("(1, 3, 96, 96)"),
        "{stderr}"
    );
    let out = dir.path().join("val.json");
    let val = Command::new(bin)
        .args(["val", "--batch", "2", "--device", "cpu", "--weights"])
        .arg(run.join("best.safetensors"))
        .arg("--data")
        .arg(data.join("data.yaml"))
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&val.stderr);
    assert!(val.status.success(), "{stderr}");
    assert!(
        !stderr.contains("note: --imgsz"),
        "val used the stored size: {stderr}"
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

    // The same val split as COCO instances (ids 1, 2) with its image folder gives the same mAP.
    let val_set = rtdetr::data::YoloDataset::from_yaml(&data.join("data.yaml"), "val").unwrap();
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, s) in val_set.samples.iter().enumerate() {
        let name = s.image.file_name().unwrap().to_string_lossy().to_string();
        images.push(serde_json::json!({"id": i + 1, "file_name": name, "width": 64, "height": 64}));
        for l in &s.labels {
            let [cx, cy, w, h] = l.bbox.map(|v| v as f64 * 64.0);
            annotations.push(serde_json::json!({
                "id": annotations.len() + 1, "image_id": i + 1, "category_id": l.class + 1,
                "bbox": [cx - w / 2.0, cy - h / 2.0, w, h], "area": w * h, "iscrowd": 0}));
        }
    }
    let coco = serde_json::json!({"images": images, "annotations": annotations, "categories":
        [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}]});
    std::fs::create_dir_all(data.join("annotations")).unwrap();
    let json = data.join("annotations/instances_val.json");
    std::fs::write(&json, coco.to_string()).unwrap();
    let out_coco = dir.path().join("val_coco.json");
    let val = Command::new(bin)
        .args(["val", "--batch", "2", "--device", "cpu", "--weights"])
        .arg(run.join("best.safetensors"))
        .arg("--data")
        .arg(&json)
        .arg("--json")
        .arg(&out_coco)
        .output()
        .unwrap();
    assert!(
        val.status.success(),
        "{}",
        String::from_utf8_lossy(&val.stderr)
    );
    let coco_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_coco).unwrap()).unwrap();
    for key in ["map50_95", "map50"] {
        let (a, b) = (
            report[key].as_f64().unwrap(),
            coco_report[key].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{key}: yaml {a}, coco {b}");
    }
}

/// The `run` state of a `last.state.safetensors`, if the file is there.
fn run_state(dir: &std::path::Path) -> Option<serde_json::Value> {
    let meta = rtdetr::read_metadata(dir.join("last.state.safetensors")).ok()?;
    serde_json::from_str(meta.get("run")?).ok()
}

#[test]
fn killed_mid_epoch_then_resumed_ends_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    rtdetr::data::write_dataset(&data, 6, 2, 64, 5).unwrap();
    let meta =
        rtdetr::read_metadata(fixtures::data_dir().join("detector_tiny.weights.safetensors"))
            .unwrap();
    let config = dir.path().join("model.json");
    std::fs::write(&config, &meta[rtdetr::CONFIG_KEY]).unwrap();
    let bin = env!("CARGO_BIN_EXE_rtdetr");
    let train = |save: &std::path::Path| {
        let mut c = Command::new(bin);
        c.args([
            "train",
            "--epochs",
            "2",
            "--batch",
            "1",
            "--nbs",
            "1",
            "--imgsz",
            "64",
            "--device",
            "cpu",
            "--save-period-steps",
            "1",
            "--close-mosaic",
            "1",
            "--data",
        ])
        .arg(data.join("data.yaml"))
        .arg("--model-config")
        .arg(&config)
        .arg("--save-dir")
        .arg(save)
        .stderr(std::process::Stdio::null());
        c
    };
    let straight = dir.path().join("straight");
    assert!(train(&straight).status().unwrap().success());

    // SIGKILL as soon as a mid-epoch state is on disk.
    let killed = dir.path().join("killed");
    let mut child = train(&killed).spawn().unwrap();
    let mut stopped_at = None;
    while child.try_wait().unwrap().is_none() {
        if let Some(run) = run_state(&killed) {
            if run["batch_in_epoch"].as_u64().unwrap_or(0) > 0 {
                child.kill().unwrap();
                child.wait().unwrap();
                stopped_at = Some((run["next_epoch"].clone(), run["batch_in_epoch"].clone()));
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        stopped_at.is_some(),
        "the run ended before a mid-epoch save was seen"
    );
    let resumed = Command::new(bin)
        .args(["train", "--device", "cpu", "--resume"])
        .arg(&killed)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    let a = candle::safetensors::load(
        straight.join("last.state.safetensors"),
        &candle::Device::Cpu,
    )
    .unwrap();
    let b = candle::safetensors::load(killed.join("last.state.safetensors"), &candle::Device::Cpu)
        .unwrap();
    assert_eq!(a.len(), b.len());
    let differing: Vec<&String> = a
        .iter()
        .filter(|(k, t)| fixtures::check_close(&b[*k], t, fixtures::Tol::Exact, k).is_err())
        .map(|(k, _)| k)
        .collect();
    assert!(
        differing.is_empty(),
        "killed at {stopped_at:?}: {} tensors differ: {differing:?}",
        differing.len()
    );
    assert_eq!(
        std::fs::read_to_string(straight.join("results.csv")).unwrap(),
        std::fs::read_to_string(killed.join("results.csv")).unwrap()
    );
}
