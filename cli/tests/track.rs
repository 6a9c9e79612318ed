//! `rtdetr track` over a sequence of frames with the reduced detector fixture.

use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/data")
        .join(name)
}

#[test]
fn a_still_scene_keeps_its_track_ids() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..4 {
        std::fs::copy(
            fixture("detect/e2e.png"),
            frames.join(format!("{i:03}.png")),
        )
        .unwrap();
    }
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(["track", frames.to_str().unwrap(), "--weights"])
        .arg(fixture("detector_tiny.weights.safetensors"))
        .args(["--imgsz", "256", "--save-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&run.stderr).to_string() + &String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{text}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("tracks.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let ids = |frame: usize| -> Vec<u64> {
        let mut v: Vec<u64> = lines[frame]["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
        v.sort();
        v
    };
    // Every detection of the first frame starts a confirmed track (ByteTrack confirms on frame 1);
    // the same image again keeps every id.
    assert!(!ids(0).is_empty(), "{text}");
    for f in 1..4 {
        assert_eq!(ids(f), ids(0), "frame {f}");
    }
    assert_eq!(lines[2]["frame"], 2);
    assert!(out.join("001.png").exists());
}

#[test]
fn frames_of_equal_names_keep_their_own_copies() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::copy(
            fixture("detect/e2e.png"),
            dir.path().join(sub).join("frame.png"),
        )
        .unwrap();
    }
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .arg("track")
        .args([dir.path().join("a"), dir.path().join("b")])
        .arg("--weights")
        .arg(fixture("detector_tiny.weights.safetensors"))
        .args(["--imgsz", "256", "--save-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("frame.png").exists() && out.join("frame_1.png").exists());
}

#[test]
fn a_tracker_file_of_another_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("botsort.yaml");
    std::fs::write(&yaml, "tracker_type: botsort\ntrack_high_thresh: 0.3\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args([
            "track",
            "x.png",
            "--weights",
            "w.safetensors",
            "--tracker",
            yaml.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        text.contains("botsort.yaml") && text.contains("not supported"),
        "{text}"
    );
    std::fs::write(&yaml, "tracker_type: bytetrack\ntrack_hihg_thresh: 0.3\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args([
            "track",
            "x.png",
            "--weights",
            "w.safetensors",
            "--tracker",
            yaml.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(text.contains("track_hihg_thresh"), "{text}");
}
