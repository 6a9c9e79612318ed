//! Numeric flags that no run can use are refused when the command line is read, naming the
//! flag and what is allowed, before any file is opened (no panic, no NaN loss, no huge
//! allocation).

use std::process::Command;

#[test]
fn unusable_numbers_are_refused_up_front() {
    let cases: &[&[&str]] = &[
        &["train", "--data", "d.yaml", "--batch", "0"],
        &["train", "--data", "d.yaml", "--epochs", "0"],
        &["train", "--data", "d.yaml", "--nbs", "0"],
        &["train", "--data", "d.yaml", "--mosaic", "nan"],
        &["train", "--data", "d.yaml", "--mosaic", "1.5"],
        &["train", "--data", "d.yaml", "--lr0", "nan"],
        &["train", "--data", "d.yaml", "--warmup-epochs=-1"],
        &["train", "--data", "d.yaml", "--imgsz", "100000"],
        &["train", "--data", "d.yaml", "--imgsz", "100"],
        &[
            "detect",
            "x.jpg",
            "--weights",
            "w.safetensors",
            "--conf",
            "NaN",
        ],
        &[
            "detect",
            "x.jpg",
            "--weights",
            "w.safetensors",
            "--max-det",
            "0",
        ],
        &[
            "detect",
            "x.jpg",
            "--weights",
            "w.safetensors",
            "--imgsz",
            "0",
        ],
        &["val", "--weights", "w", "--data", "d.yaml", "--batch", "0"],
        &["bench", "--train", "--nc", "0"],
        &["bench", "--iters", "0"],
        &["bench", "--nc", "100000000"],
        &["info", "--imgsz", "18446744073709551584"],
        &["demo", "--epochs", "0"],
        &["demo", "--images", "0"],
    ];
    for args in cases {
        let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} was accepted");
        let flag = args
            .iter()
            .rev()
            .find(|a| a.starts_with("--"))
            .unwrap()
            .split('=')
            .next()
            .unwrap();
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
