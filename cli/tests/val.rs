//! `rtdetr val --gt --predictions` prints ultralytics' table and the COCOeval summary and writes the JSON figures equal to
//! pycocotools' (fixtures/data/coco, from gen_coco.py).

use std::process::Command;

#[test]
fn coco_results_file() {
    let coco = fixtures::data_dir().join("coco");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("val.json");
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(["val", "--gt"])
        .arg(coco.join("instances.json"))
        .arg("--predictions")
        .arg(coco.join("results.json"))
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("AP @[IoU=0.50:0.95 | area=   all | maxDets=100]"),
        "{stdout}"
    );
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(coco.join("expected.json")).unwrap())
            .unwrap();
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 5e-4
    };
    assert!(close(&got["map50_95"], &want["stats"][0]));
    assert!(close(&got["map50"], &want["stats"][1]));
    assert_eq!(got["per_class"].as_array().unwrap().len(), 3);

    // ultralytics' table comes first, its figures in the JSON beside COCO's.
    let header = stdout.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "Class",
            "Images",
            "Instances",
            "Box(P",
            "R",
            "mAP50",
            "mAP50-95)"
        ]
    );
    let all: Vec<&str> = stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&all[..2], ["all", "12"], "{stdout}");
    let table = &got["ultralytics"];
    assert_eq!(table["per_class"].as_array().unwrap().len(), 3);
    let map50 = table["map50"].as_f64().unwrap();
    assert!(map50 > 0.0 && map50 <= 1.0);
}

#[test]
fn a_broken_results_file_is_named() {
    let coco = fixtures::data_dir().join("coco");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(["val", "--gt"])
        .arg(coco.join("instances.json"))
        .arg("--predictions")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("not a COCO results file"),
        "{stderr}"
    );
}

fn rtdetr(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ids(path: &std::path::Path, field: &str) -> std::collections::BTreeSet<String> {
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let results = results.as_array().unwrap();
    assert!(!results.is_empty());
    results.iter().map(|r| r[field].to_string()).collect()
}

/// `detect --save-coco --data` writes the dataset's image and category ids, which `val` scores;
/// without `--data` the string ids of non-numeric stems are refused with the entry and the fix.
#[test]
fn detect_results_with_dataset_ids_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let weights = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let weights = weights.to_str().unwrap();
    std::fs::create_dir_all(root.join("images/val")).unwrap();
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::create_dir_all(root.join("labels/val")).unwrap();
    for name in ["bus.png", "car7.png"] {
        std::fs::copy(
            fixtures::data_dir().join("detect/e2e.png"),
            root.join("images/val").join(name),
        )
        .unwrap();
        std::fs::write(
            root.join("labels/val").join(name.replace("png", "txt")),
            "1 0.5 0.5 0.4 0.4\n",
        )
        .unwrap();
    }
    let (w, h) = image::image_dimensions(root.join("images/val/bus.png")).unwrap();
    let json = format!(
        r#"{{"images": [{{"id": 101, "file_name": "bus.png", "width": {w}, "height": {h}}},
                      {{"id": 102, "file_name": "car7.png", "width": {w}, "height": {h}}}],
            "annotations": [{{"id": 1, "image_id": 101, "category_id": 9, "bbox": [10, 10, 50, 40], "area": 2000}}],
            "categories": [{{"id": 11, "name": "c"}}, {{"id": 5, "name": "a"}}, {{"id": 9, "name": "b"}}]}}"#
    );
    std::fs::write(root.join("annotations/instances_val.json"), json).unwrap();
    std::fs::write(
        root.join("data.yaml"),
        "train: images/val\nval: images/val\nnames: [a, b, c]\n",
    )
    .unwrap();
    let detect = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "detect",
            "images/val",
            "--weights",
            weights,
            "--conf",
            "0.001",
        ];
        args.extend([
            "--imgsz",
            "256",
            "--device",
            "cpu",
            "--no-draw",
            "--save-coco",
            out,
        ]);
        args.extend(extra);
        rtdetr(root, &args)
    };

    ok(&detect(
        "coco.json",
        &["--data", "annotations/instances_val.json"],
    ));
    assert!(ids(&root.join("coco.json"), "image_id")
        .is_subset(&["101", "102"].map(String::from).into()));
    assert!(ids(&root.join("coco.json"), "category_id")
        .is_subset(&["5", "9", "11"].map(String::from).into()));
    let gt = "annotations/instances_val.json";
    ok(&rtdetr(
        root,
        &["val", "--gt", gt, "--predictions", "coco.json"],
    ));
    ok(&rtdetr(
        root,
        &["val", "--data", gt, "--predictions", "coco.json"],
    ));

    ok(&detect("yolo.json", &["--data", "data.yaml"]));
    assert!(
        ids(&root.join("yolo.json"), "image_id").is_subset(&["1", "2"].map(String::from).into())
    );
    ok(&rtdetr(
        root,
        &["val", "--data", "data.yaml", "--predictions", "yolo.json"],
    ));

    ok(&detect("stems.json", &[]));
    assert!(ids(&root.join("stems.json"), "image_id").contains("\"bus\""));
    let refused = rtdetr(root, &["val", "--gt", gt, "--predictions", "stems.json"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("stems.json")
            && stderr.contains("image_id is the string")
            && stderr.contains("--data DATASET"),
        "{stderr}"
    );

    // An image outside the dataset is refused before any inference.
    std::fs::copy(root.join("images/val/bus.png"), root.join("stray.png")).unwrap();
    let mut args = vec![
        "detect",
        "stray.png",
        "--weights",
        weights,
        "--save-coco",
        "x.json",
    ];
    args.extend(["--data", gt, "--device", "cpu"]);
    let stray = rtdetr(root, &args);
    let stderr = String::from_utf8_lossy(&stray.stderr);
    assert!(
        !stray.status.success() && stderr.contains("stray.png: not an image of"),
        "{stderr}"
    );
}

/// Each wrong field of a results file is named with its entry.
#[test]
fn results_fields_are_checked_one_by_one() {
    let coco = fixtures::data_dir().join("coco");
    let dir = tempfile::tempdir().unwrap();
    let gt = coco.join("instances.json");
    let gt_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gt).unwrap()).unwrap();
    let image = gt_json["images"][0]["id"].clone();
    let category = gt_json["categories"][0]["id"].clone();
    let good = serde_json::json!({"image_id": image, "category_id": category, "bbox": [1, 2, 3, 4], "score": 0.5});
    let cases = [
        (serde_json::json!({"a": 1}), "expected a JSON list"),
        (serde_json::json!([good, 3]), "entry 1 is not an object"),
        (
            serde_json::json!([{"category_id": category, "bbox": [1, 2, 3, 4], "score": 0.5}]),
            "entry 0: no image_id",
        ),
        (
            serde_json::json!([{"image_id": -1, "category_id": category, "bbox": [1, 2, 3, 4], "score": 0.5}]),
            "entry 0: image_id -1 is not a non-negative integer",
        ),
        (
            serde_json::json!([good, {"image_id": image, "category_id": "cat", "bbox": [1, 2, 3, 4], "score": 0.5}]),
            "entry 1: category_id is the string \"cat\"",
        ),
        (
            serde_json::json!([{"image_id": image, "category_id": category, "bbox": [1, 2, 3], "score": 0.5}]),
            "entry 0: bbox [1,2,3] is not [x, y, w, h]",
        ),
        (
            serde_json::json!([{"image_id": image, "category_id": category, "bbox": [1, 2, -3, 4], "score": 0.5}]),
            "negative width",
        ),
        (
            serde_json::json!([{"image_id": image, "category_id": category, "bbox": [1, 2, 3, 4], "score": "high"}]),
            "entry 0: score \"high\" is not a finite number",
        ),
        (
            serde_json::json!([{"image_id": 987654, "category_id": category, "bbox": [1, 2, 3, 4], "score": 0.5}]),
            "entry 0: image_id 987654 is not an image of the ground truth",
        ),
    ];
    for (i, (content, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("r{i}.json"));
        std::fs::write(&path, content.to_string()).unwrap();
        let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
            .args(["val", "--gt"])
            .arg(&gt)
            .arg("--predictions")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{content}");
        assert!(
            stderr.contains(message) && stderr.contains(&format!("r{i}.json")),
            "{message:?} not in {stderr}"
        );
    }
}

/// Weights of 3 classes on a dataset of 2 are refused, not scored.
#[test]
fn weights_and_dataset_must_agree_on_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::copy(
        fixtures::data_dir().join("detect/e2e.png"),
        root.join("images/a.png"),
    )
    .unwrap();
    std::fs::write(
        root.join("data.yaml"),
        "train: images\nval: images\nnames: [a, b]\n",
    )
    .unwrap();
    let weights = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let run = rtdetr(
        root,
        &[
            "val",
            "--weights",
            weights.to_str().unwrap(),
            "--data",
            "data.yaml",
            "--device",
            "cpu",
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("the weights have 3 classes, the dataset 2"),
        "{stderr}"
    );
}
