//! Video files, streams and webcams through FFmpeg's command-line tools (`ffprobe` to read what a
//! source holds, `ffmpeg` to decode it to RGB frames and to encode annotated frames to H.264):
//! the binaries of any FFmpeg install, so no libav headers or bindings have to match the machine's
//! version. `scripts/install-ffmpeg.sh` installs them on Debian and Ubuntu. Without the `video`
//! feature only [`is_video_source`] is here.

#[cfg(feature = "video")]
mod probe;
#[cfg(feature = "video")]
mod reader;
#[cfg(feature = "video")]
mod writer;

use std::path::Path;

#[cfg(feature = "video")]
pub use probe::{probe, VideoInfo};
#[cfg(feature = "video")]
pub use reader::VideoReader;
#[cfg(feature = "video")]
pub use writer::VideoWriter;

/// File extensions read as video.
pub const VIDEO_EXTENSIONS: [&str; 12] = [
    "mp4", "avi", "mkv", "mov", "webm", "m4v", "mpg", "mpeg", "wmv", "flv", "ts", "gif",
];

/// Whether `source` names a video: a file with a video extension, a stream URL (rtsp, rtmp,
/// http(s), udp, tcp), a webcam index (`0`) or a V4L2 device (`/dev/video0`).
pub fn is_video_source(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    let stream = [
        "rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    let webcam = source.parse::<u32>().is_ok() || source.starts_with("/dev/video");
    stream || webcam || has_video_extension(Path::new(source))
}

/// Whether `path` has one of [`VIDEO_EXTENSIONS`].
pub fn has_video_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The video files under `dir`, recursively and sorted, walked as
/// [`find_images`](crate::image_io::find_images) walks.
pub fn find_videos(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    crate::image_io::find_files(dir, &has_video_extension)
}

/// Whether this build reads and writes video (the `video` feature).
pub const ENABLED: bool = cfg!(feature = "video");

/// The arguments that open `source` as FFmpeg input (`-f v4l2` for a webcam).
#[cfg(feature = "video")]
fn input_args(source: &str) -> Vec<String> {
    let device = match source.parse::<u32>() {
        Ok(index) => Some(format!("/dev/video{index}")),
        Err(_) if source.starts_with("/dev/video") => Some(source.to_string()),
        Err(_) => None,
    };
    match device {
        Some(device) => vec!["-f".into(), "v4l2".into(), "-i".into(), device],
        None => vec!["-i".into(), source.to_string()],
    }
}

/// `program` (ffmpeg or ffprobe) ready to run, or an error saying how to install it.
#[cfg(feature = "video")]
fn tool(program: &str) -> crate::Result<std::process::Command> {
    use std::process::Command;
    let found = Command::new(program)
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Err(crate::Error::Run(format!(
            "{program} was not found on PATH: video needs FFmpeg's command-line tools \
             (Debian/Ubuntu: `apt install ffmpeg`, or run scripts/install-ffmpeg.sh)"
        )));
    }
    let mut cmd = Command::new(program);
    cmd.args(["-hide_banner", "-v", "error"]);
    if program == "ffmpeg" {
        cmd.arg("-nostdin");
    }
    Ok(cmd)
}
