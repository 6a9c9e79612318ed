//! Video through FFmpeg: a clip of a white square moving on black, encoded losslessly by ffmpeg
//! from frames made here, read back frame by frame (the square where it was drawn), written again
//! with `VideoWriter` (as many frames, playable), and broken files refused with their name.
//! Needs ffmpeg and ffprobe (`scripts/install-ffmpeg.sh`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use image::{Rgb, RgbImage};
use rtdetr::video::{is_video_source, probe, VideoReader, VideoWriter};

const W: u32 = 96;
const H: u32 = 64;
const FRAMES: u32 = 15;

/// Frame `i`: a 12×12 white square with its top-left corner at (4 + 5i, 20).
fn frame(i: u32) -> RgbImage {
    let mut img = RgbImage::new(W, H);
    for y in 20..32 {
        for x in 4 + 5 * i..16 + 5 * i {
            img.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    img
}

/// The clip, encoded by ffmpeg from raw frames (FFV1 in Matroska: lossless).
fn make_clip(path: &Path) {
    let mut child = Command::new("ffmpeg")
        .args([
            "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
        ])
        .arg(format!("{W}x{H}"))
        .args(["-r", "10", "-i", "-", "-c:v", "ffv1"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs (scripts/install-ffmpeg.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..FRAMES {
        stdin.write_all(frame(i).as_raw()).unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// Centre of the bright pixels.
fn centre(img: &RgbImage) -> (f32, f32) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[0] > 128 {
            sx += x as f32;
            sy += y as f32;
            n += 1.0;
        }
    }
    (sx / n, sy / n)
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

#[test]
fn frames_come_back_in_order_where_they_were_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("square.mkv");
    make_clip(&clip);
    let info = probe(clip.to_str().unwrap()).unwrap();
    assert_eq!(
        (info.width, info.height, info.fps),
        (W as usize, H as usize, 10.0)
    );
    let mut reader = VideoReader::open(clip.to_str().unwrap()).unwrap();
    let out = dir.path().join("copy.mp4");
    let mut writer = VideoWriter::create(&out, W, H, info.fps).unwrap();
    let mut i = 0;
    while let Some(img) = reader.next_frame().unwrap() {
        let (cx, cy) = centre(&img);
        assert!(
            (cx - (9.5 + 5.0 * i as f32)).abs() < 0.5 && (cy - 25.5).abs() < 0.5,
            "frame {i}: {cx}, {cy}"
        );
        writer.write(&img).unwrap();
        i += 1;
    }
    assert_eq!(i, FRAMES);
    assert!(!out.exists(), "the video appears only when finished");
    writer.finish().unwrap();
    assert_eq!(count_frames(&out), FRAMES as u64);
}

#[test]
fn an_unfinished_writer_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.mp4");
    let mut writer = VideoWriter::create(&out, W, H, 10.0).unwrap();
    writer.write(&frame(0)).unwrap();
    assert!(writer
        .write(&RgbImage::new(W + 2, H))
        .unwrap_err()
        .to_string()
        .contains("never.mp4"));
    drop(writer);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn broken_videos_are_named_with_the_frame_reached() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=128x96:rate=10",
        ])
        .args([
            "-frames:v",
            "40",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut reader = VideoReader::open(cut.to_str().unwrap()).unwrap();
    let err = loop {
        match reader.next_frame() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a truncated file must not end quietly"),
            Err(e) => break e.to_string(),
        }
    };
    let reached = reader.frames_read();
    assert!(reached > 0 && reached < 40, "{reached}");
    assert!(
        err.contains("cut.mp4") && err.contains(&format!("at frame {reached}")),
        "{err}"
    );

    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"not a video at all").unwrap();
    let err = VideoReader::open(junk.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.mp4") && err.contains("not a readable video"),
        "{err}"
    );
}

#[test]
fn sources_that_are_video() {
    for s in [
        "clip.MP4",
        "a/b.mkv",
        "rtsp://cam/1",
        "https://x/y.m3u8",
        "0",
        "/dev/video2",
    ] {
        assert!(is_video_source(s), "{s}");
    }
    for s in ["photo.jpg", "folder", "mp4", "clip.mp4.txt"] {
        assert!(!is_video_source(s), "{s}");
    }
}

#[test]
fn a_rotated_video_comes_back_upright() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("square.mkv");
    make_clip(&clip);
    // A phone video: the same frames with a quarter-turn display rotation in the container
    // (ffmpeg 5.1 sets it only when copying a stream).
    let upright = dir.path().join("upright.mp4");
    let rotated = dir.path().join("rotated.mp4");
    let steps: [(&Path, &[&str], &Path); 2] = [
        (&clip, &["-c:v", "libx264", "-qp", "0"], &upright),
        (
            &upright,
            &["-c", "copy", "-metadata:s:v:0", "rotate=90"],
            &rotated,
        ),
    ];
    for (input, codec, output) in steps {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(input)
            .args(codec)
            .arg(output)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let info = probe(rotated.to_str().unwrap()).unwrap();
    assert_eq!((info.width, info.height), (H as usize, W as usize));
    let mut reader = VideoReader::open(rotated.to_str().unwrap()).unwrap();
    let first = reader.next_frame().unwrap().unwrap();
    assert_eq!(first.dimensions(), (H, W));
    // A rotation of 90 turns the frame a quarter counter-clockwise: the square near the left
    // edge, at (9.5, 25.5), ends near the bottom, at (25.5, 95 − 9.5).
    let (cx, cy) = centre(&first);
    assert!(
        (cx - 25.5).abs() < 1.0 && (cy - 85.5).abs() < 1.0,
        "{cx}, {cy}"
    );
}
