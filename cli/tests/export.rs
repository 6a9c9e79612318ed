//! `rtdetr export` and `rtdetr info model.onnx` on the reduced detector fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rtdetr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(args)
        .output()
        .unwrap()
}

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data/detector_tiny.weights.safetensors")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn export_then_info() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny.onnx");
    let w = weights();
    let out = rtdetr(&[
        "export",
        "--weights",
        w.to_str().unwrap(),
        "--imgsz",
        "256,320",
        "--dynamic",
        "-o",
        onnx.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("images [batch, 3, 256, 320] -> output0 [batch, 20, 7]"),
        "{}",
        text(&out)
    );
    let info = rtdetr(&["info", onnx.to_str().unwrap()]);
    let shown = text(&info);
    assert!(info.status.success(), "{shown}");
    assert!(
        shown.contains("input      images float32 [batch, 3, 256, 320]"),
        "{shown}"
    );
    assert!(shown.contains("GridSample"), "{shown}");
    assert!(
        shown.contains("names: {0: 'cat', 1: 'dog', 2: 'traffic light'}"),
        "{shown}"
    );
}

#[test]
fn a_failed_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny.onnx");
    let w = weights();
    let out = rtdetr(&[
        "export",
        "--weights",
        w.to_str().unwrap(),
        "--opset",
        "12",
        "-o",
        onnx.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("opset 12 is not supported"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sizes_and_files_that_cannot_work_are_named() {
    let w = weights();
    let out = rtdetr(&["export", "--weights", w.to_str().unwrap(), "--imgsz", "250"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a multiple of 32"),
        "{}",
        text(&out)
    );
    let out = rtdetr(&["export", "--weights", "missing.safetensors"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("missing.safetensors"), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x0a\xff\xff\xff").unwrap();
    let out = rtdetr(&["info", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bad.onnx: not an ONNX model"),
        "{}",
        text(&out)
    );
}
