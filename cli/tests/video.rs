//! `rtdetr detect` and `rtdetr track` on videos made by ffmpeg (`scripts/install-ffmpeg.sh`):
//! as many annotated frames out as frames read (counted by ffprobe), JSON lines per frame,
//! `--vid-stride 2` halving them, ultralytics' per-frame label names, and a truncated file
//! reported with its name and the frame reached.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data/detector_tiny.weights.safetensors")
}

/// `frames` frames of ffmpeg's moving test pattern at 10 fps (moov first, so a cut file still opens).
fn clip(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x128:rate=10",
        ])
        .arg("-frames:v")
        .arg(frames.to_string())
        .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/install-ffmpeg.sh installs it)");
    assert!(status.success());
    path
}

fn rtdetr(args: &[&str], video: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtdetr"))
        .args(args)
        .arg(video)
        .arg("--weights")
        .arg(weights())
        .args(["--imgsz", "128", "--save-dir"])
        .arg(out)
        .output()
        .unwrap()
}

fn count_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn detect_writes_every_frame_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4", 12);
    let out = dir.path().join("all");
    let run = rtdetr(&["detect", "--batch", "4"], &video, &out);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(count_frames(&out.join("clip.mp4")), 12);
    let lines = json_lines(&out.join("clip.jsonl"));
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[3]["frame"], 3);
    assert!((lines[3]["time_s"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!(lines[3]["detections"].is_array());
}

#[test]
fn vid_stride_halves_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4", 12);
    let out = dir.path().join("half");
    let run = rtdetr(
        &["detect", "--vid-stride", "2", "--save-txt", "--save-frames"],
        &video,
        &out,
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(count_frames(&out.join("clip.mp4")), 6);
    let frames: Vec<u64> = json_lines(&out.join("clip.jsonl"))
        .iter()
        .map(|l| l["frame"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, [0, 2, 4, 6, 8, 10]);
    // ultralytics numbers label files and frames by processed frame, from 1.
    for n in 1..=6 {
        assert!(
            out.join(format!("labels/clip_{n}.txt")).exists(),
            "clip_{n}.txt"
        );
        assert!(
            out.join(format!("frames/clip_{n}.jpg")).exists(),
            "clip_{n}.jpg"
        );
    }
    assert!(!out.join("labels/clip_7.txt").exists());
}

#[test]
fn a_truncated_video_is_named_with_the_frame_reached() {
    let dir = tempfile::tempdir().unwrap();
    let whole = clip(dir.path(), "whole.mp4", 40);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("cut");
    let run = rtdetr(&["detect"], &cut, &out);
    let text = stderr(&run);
    assert!(!run.status.success());
    assert!(
        text.contains("cut.mp4") && text.contains("at frame"),
        "{text}"
    );
    // What was read is written, and playable.
    let lines = json_lines(&out.join("cut.jsonl")).len() as u64;
    assert!(lines > 0 && lines < 40, "{lines}");
    assert_eq!(count_frames(&out.join("cut.mp4")), lines);
}

#[test]
fn track_follows_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4", 8);
    let out = dir.path().join("track");
    let run = rtdetr(&["track"], &video, &out);
    assert!(run.status.success(), "{}", stderr(&run));
    let lines = json_lines(&out.join("tracks.jsonl"));
    assert_eq!(lines.len(), 8);
    assert!(lines[7]["time_s"].as_f64().unwrap() > 0.6);
    assert_eq!(count_frames(&out.join("clip.mp4")), 8);
}

#[test]
fn a_folder_gives_its_images_and_its_videos() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("mixed");
    std::fs::create_dir(&folder).unwrap();
    clip(&folder, "clip.mp4", 3);
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data/detect/e2e.png");
    std::fs::copy(png, folder.join("still.png")).unwrap();
    let out = dir.path().join("out");
    let run = rtdetr(&["detect"], &folder, &out);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(count_frames(&out.join("clip.mp4")), 3);
    assert!(out.join("still.png").exists());
}

/// Serves `body` over HTTP on a loopback port to every request, as a stream source.
fn serve(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(&body));
        }
    });
    format!("http://{addr}/clip.mp4")
}

#[test]
fn an_http_stream_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4", 5);
    let url = serve(std::fs::read(&video).unwrap());
    let out = dir.path().join("out");
    let run = rtdetr(&["detect"], Path::new(&url), &out);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(json_lines(&out.join("stream.jsonl")).len(), 5);
    assert_eq!(count_frames(&out.join("stream.mp4")), 5);
}
