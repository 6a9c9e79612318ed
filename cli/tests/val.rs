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
