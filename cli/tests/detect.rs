//! `rtdetr detect` end to end on the reduced detector's weights: the JSON equals the reference
//! predictor's boxes, and folders, corrupt images, class filters and the txt/COCO outputs behave.
//! Fixtures: `fixtures/gen/regen.sh` (gen_detector.py writes detector_tiny.weights.safetensors,
//! with class names in its metadata, detect/e2e.png and detect_e2e.safetensors).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle::Device;

const TOL_SCORE: f32 = 1e-4;
const TOL_BOX_PX: f32 = 0.05;

fn data(name: &str) -> PathBuf {
    fixtures::data_dir().join(name)
}

fn detect(args: &[&str]) -> Output {
    let weights = data("detector_tiny.weights.safetensors");
    Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .arg("detect")
        .args(args)
        .args([
            "--weights",
            weights.to_str().unwrap(),
            "--imgsz",
            "256",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn json_equals_the_reference_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let image = data("detect/e2e.png");
    let run = detect(&[
        image.to_str().unwrap(),
        "--conf",
        "0",
        "--no-draw",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = json(&out);
    let got = &got.as_array().unwrap()[0];
    assert_eq!(
        (got["width"].as_u64(), got["height"].as_u64()),
        (Some(256), Some(256))
    );

    let want = fixtures::load("detect_e2e", &Device::Cpu).unwrap();
    let want: Vec<Vec<f32>> = want.get("expected").unwrap().to_vec2().unwrap();
    let dets = got["detections"].as_array().unwrap();
    assert_eq!(dets.len(), want.len());
    let names = ["cat", "dog", "traffic light"];
    for (i, (d, w)) in dets.iter().zip(&want).enumerate() {
        let class = w[5] as usize;
        assert_eq!(d["class_id"].as_u64(), Some(class as u64), "detection {i}");
        assert_eq!(
            d["class_name"].as_str(),
            Some(names[class]),
            "names come from the weights' metadata"
        );
        let score = d["score"].as_f64().unwrap() as f32;
        assert!(
            (score - w[4]).abs() <= TOL_SCORE,
            "detection {i}: score {score} vs {}",
            w[4]
        );
        for (k, v) in d["box"].as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap() as f32;
            assert!(
                (v - w[k]).abs() <= TOL_BOX_PX,
                "detection {i} box[{k}]: {v} vs {}",
                w[k]
            );
        }
    }
}

/// `--dtype bf16`: the reference predictor's detections (f32) rank by rank within bf16's 1/32 in
/// score; an unknown float type is refused when the command line is read.
#[test]
fn bf16_detections_stay_within_the_bf16_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let image = data("detect/e2e.png");
    let run = detect(&[
        image.to_str().unwrap(),
        "--conf",
        "0",
        "--no-draw",
        "--dtype",
        "bf16",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = json(&out);
    let dets = got.as_array().unwrap()[0]["detections"]
        .as_array()
        .unwrap()
        .clone();
    let want = fixtures::load("detect_e2e", &Device::Cpu).unwrap();
    let want: Vec<Vec<f32>> = want.get("expected").unwrap().to_vec2().unwrap();
    assert_eq!(dets.len(), want.len());
    for (rank, (d, w)) in dets.iter().zip(&want).enumerate() {
        let score = d["score"].as_f64().unwrap() as f32;
        assert!(
            (score - w[4]).abs() <= 1.0 / 32.0,
            "rank {rank}: score {score} vs {}",
            w[4]
        );
    }

    let refused = detect(&[image.to_str().unwrap(), "--dtype", "f16"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("f32 or bf16"), "{stderr}");
}

fn copy_image(to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(data("detect/e2e.png"), to).unwrap();
}

#[test]
fn folders_are_searched_recursively_in_order_and_images_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    for rel in ["b.png", "a/z.png", "a/c.png", "notes.txt"] {
        copy_image(&root.join(rel));
    }
    let out = dir.path().join("out.json");
    let save = dir.path().join("runs");
    let run = detect(&[
        root.to_str().unwrap(),
        "--conf",
        "0.5",
        "--json",
        out.to_str().unwrap(),
        "--save-dir",
        save.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let paths: Vec<String> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    let rel: Vec<&str> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(root.to_str().unwrap())
                .unwrap()
                .trim_start_matches('/')
        })
        .collect();
    assert_eq!(rel, ["a/c.png", "a/z.png", "b.png"]);
    for name in ["c.png", "z.png", "b.png"] {
        let drawn = image::open(save.join(name)).unwrap();
        assert_eq!((drawn.width(), drawn.height()), (256, 256));
    }
}

#[test]
fn a_corrupt_image_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    copy_image(&dir.path().join("good.png"));
    std::fs::write(
        dir.path().join("bad.jpg"),
        b"\xff\xd8\xff not really a jpeg",
    )
    .unwrap();
    copy_image(&dir.path().join("later.png"));
    let out = dir.path().join("out.json");
    let run = detect(&[
        dir.path().to_str().unwrap(),
        "--no-draw",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(
        !run.status.success(),
        "exits non-zero when an image could not be read"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("bad.jpg"), "{stderr}");
    assert!(
        stderr.contains("1 of 3 images could not be read"),
        "{stderr}"
    );
    assert_eq!(
        json(&out).as_array().unwrap().len(),
        2,
        "the good images are still processed"
    );
}

fn classes(args: &[&str]) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let image = data("detect/e2e.png");
    let mut all = vec![
        image.to_str().unwrap(),
        "--conf",
        "0",
        "--no-draw",
        "--json",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let run = detect(&all);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = json(&out);
    got[0]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["class_id"].as_u64().unwrap())
        .collect()
}

#[test]
fn classes_filter() {
    // The filter applies to the head's top-k rows, as in ultralytics: classes outside the list
    // are dropped, never replaced by lower-ranked rows.
    let all = classes(&[]);
    assert!(!all.is_empty());
    let keep = all[0];
    let other = (keep + 1) % 3;
    let expect_keep: Vec<u64> = all.iter().copied().filter(|&c| c == keep).collect();
    let expect_other: Vec<u64> = all.iter().copied().filter(|&c| c == other).collect();
    assert_eq!(classes(&["--classes", &keep.to_string()]), expect_keep);
    assert_eq!(classes(&["--classes", &other.to_string()]), expect_other);
    assert_eq!(
        classes(&["--classes", &format!("{other},{keep}")]),
        all,
        "a comma-separated list"
    );
}

#[test]
fn txt_and_coco_formats() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("000000000042.png");
    copy_image(&image);
    let save = dir.path().join("runs");
    let coco = dir.path().join("coco.json");
    let out = dir.path().join("out.json");
    let run = detect(&[
        image.to_str().unwrap(),
        "--conf",
        "0.1",
        "--no-draw",
        "--save-txt",
        "--save-conf",
        "--save-dir",
        save.to_str().unwrap(),
        "--save-coco",
        coco.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dets = json(&out)[0]["detections"].as_array().unwrap().clone();
    assert!(!dets.is_empty());

    let txt = std::fs::read_to_string(save.join("labels").join("000000000042.txt")).unwrap();
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(lines.len(), dets.len());
    for (line, d) in lines.iter().zip(&dets) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(
            fields[0].parse::<u64>().unwrap(),
            d["class_id"].as_u64().unwrap()
        );
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() / 256.0)
            .collect();
        let want = [
            (b[0] + b[2]) / 2.0,
            (b[1] + b[3]) / 2.0,
            b[2] - b[0],
            b[3] - b[1],
            d["score"].as_f64().unwrap(),
        ];
        for (f, w) in fields[1..].iter().zip(want) {
            assert!((f.parse::<f64>().unwrap() - w).abs() < 1e-5, "{line}");
        }
    }

    let coco = json(&coco);
    let coco = coco.as_array().unwrap();
    assert_eq!(coco.len(), dets.len());
    for (c, d) in coco.iter().zip(&dets) {
        assert_eq!(
            c["image_id"].as_u64(),
            Some(42),
            "numeric file stems become integer ids"
        );
        assert_eq!(c["category_id"], d["class_id"]);
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = [b[0], b[1], b[2] - b[0], b[3] - b[1]];
        for (v, w) in c["bbox"].as_array().unwrap().iter().zip(want) {
            assert!((v.as_f64().unwrap() - w).abs() < 1e-3);
        }
        assert!((c["score"].as_f64().unwrap() - d["score"].as_f64().unwrap()).abs() < 1e-5);
    }
}

#[test]
fn weights_that_do_not_fit_name_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixtures::load("backbone_tiny.weights", &Device::Cpu).unwrap();
    let path = dir.path().join("backbone.safetensors");
    candle::safetensors::save(&weights.tensors, &path).unwrap();
    let image = data("detect/e2e.png");
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args([
            "detect",
            image.to_str().unwrap(),
            "--weights",
            path.to_str().unwrap(),
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("backbone.safetensors")
            && stderr.contains("model.19.enc_score_head.weight"),
        "{stderr}"
    );
}

#[test]
fn flags_that_do_not_fit_the_weights_are_one_line_errors_without_a_backtrace() {
    let image = data("detect/e2e.png");
    let image = image.to_str().unwrap();
    let weights = data("detector_tiny.weights.safetensors");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
            .arg("detect")
            .args(args)
            .arg("--weights")
            .arg(&weights)
            .args(["--device", "cpu", "--no-draw"])
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    for (args, says) in [
        (
            vec![image, "--classes", "5"],
            "class 5 does not exist: the model has 3 classes (0..=2)",
        ),
        (vec![image, "--variant", "xl"], "not variant xl"),
    ] {
        let stderr = run(&args);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("backtrace"), "{stderr}");
    }
    // Values no run can use are refused by the flag parser: its one line and clap's --help hint.
    for (args, says) in [
        (
            vec![image, "--conf", "1.5"],
            "'1.5' for '--conf <CONF>': must lie in [0, 1]",
        ),
        (
            vec![image, "--imgsz", "100"],
            "'100' for '--imgsz <IMGSZ>': not a multiple of 32",
        ),
    ] {
        let stderr = run(&args);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(says),
            "{args:?}: {stderr}"
        );
        assert!(lines.len() == 1 || lines[1].contains("--help"), "{stderr}");
        assert!(!stderr.contains("backtrace"), "{stderr}");
    }
    // A missing file: its cause said once.
    let missing = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(["detect", image, "--weights", "no/such.safetensors"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn runs_number_their_folders_and_same_named_images_get_unique_stems() {
    let dir = tempfile::tempdir().unwrap();
    copy_image(&dir.path().join("a/bus.png"));
    copy_image(&dir.path().join("b/bus.png"));
    let weights = data("detector_tiny.weights.safetensors");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
            .current_dir(dir.path())
            .args([
                "detect",
                "a",
                "b",
                "--conf",
                "0.1",
                "--save-txt",
                "--imgsz",
                "256",
            ])
            .args(["--device", "cpu", "--save-coco", "coco.json", "--weights"])
            .arg(&weights)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[]);
    run(&[]);
    let predict = dir.path().join("runs/detect/predict");
    let predict2 = dir.path().join("runs/detect/predict2");
    assert!(predict.is_dir() && predict2.is_dir());
    run(&["--exist-ok"]);
    assert!(
        !dir.path().join("runs/detect/predict3").exists(),
        "--exist-ok reuses predict"
    );
    for file in ["bus.png", "bus_1.png", "labels/bus.txt", "labels/bus_1.txt"] {
        assert!(predict2.join(file).is_file(), "{file}");
    }
    // Without --save-conf a label line is `class cx cy w h`.
    let txt = std::fs::read_to_string(predict2.join("labels/bus.txt")).unwrap();
    assert!(txt.lines().all(|l| l.split(' ').count() == 5), "{txt}");
    let coco = json(&dir.path().join("coco.json"));
    let ids: std::collections::BTreeSet<&str> = coco
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["bus", "bus_1"]);
}

/// Outputs of an image whose name is not UTF-8 keep its name (lossily), not `image.*`.
#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_keep_their_stem() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    copy_image(&dir.path().join("in").join(odd));
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .current_dir(dir.path())
        .args([
            "detect",
            "in",
            "--save-txt",
            "--imgsz",
            "256",
            "--device",
            "cpu",
        ])
        .args(["--save-dir", "out", "--weights"])
        .arg(data("detector_tiny.weights.safetensors"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = dir.path().join("out");
    assert!(out.join("caf\u{FFFD}.png").is_file());
    assert!(out.join("labels/caf\u{FFFD}.txt").is_file());
}
