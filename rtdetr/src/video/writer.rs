use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};

use image::RgbImage;

use super::tool;
use crate::{Error, Result};

/// An H.264 MP4 (MPEG-4 part 2 where FFmpeg lacks libx264) written frame by frame through an
/// `ffmpeg` child process. Frames go to a file beside the target, renamed by
/// [`VideoWriter::finish`]; a writer dropped unfinished (or a killed run) leaves no file under the
/// target's name.
#[derive(Debug)]
pub struct VideoWriter {
    path: PathBuf,
    partial: PathBuf,
    size: (u32, u32),
    child: Child,
    stdin: Option<ChildStdin>,
    finished: bool,
}

fn has_libx264() -> bool {
    let out = tool("ffmpeg").and_then(|mut c| {
        c.arg("-encoders")
            .output()
            .map_err(|e| Error::Run(format!("ffmpeg -encoders: {e}")))
    });
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libx264"))
}

impl VideoWriter {
    /// Starts writing `width`×`height` frames at `fps` to `path`.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        let codec = if has_libx264() { "libx264" } else { "mpeg4" };
        let mut name = path.as_os_str().to_owned();
        name.push(".partial.mp4");
        let partial = PathBuf::from(name);
        let mut cmd = tool("ffmpeg")?;
        cmd.args(["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
            .arg(format!("{width}x{height}"))
            .arg("-r")
            .arg(format!("{fps}"))
            .args(["-i", "-", "-an", "-c:v", codec, "-pix_fmt", "yuv420p"])
            // yuv420p needs even sides.
            .args([
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ])
            .arg(&partial)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Run(format!("{}: running ffmpeg: {e}", path.display())))?;
        let stdin = child.stdin.take();
        Ok(Self {
            path: path.to_path_buf(),
            partial,
            size: (width, height),
            child,
            stdin,
            finished: false,
        })
    }

    /// Appends a frame of the writer's size.
    pub fn write(&mut self, frame: &RgbImage) -> Result<()> {
        if frame.dimensions() != self.size {
            return Err(Error::Run(format!(
                "{}: frame of {:?}, the video is {:?}",
                self.path.display(),
                frame.dimensions(),
                self.size
            )));
        }
        let stdin = self.stdin.as_mut().expect("open until finish");
        if let Err(e) = stdin.write_all(frame.as_raw()) {
            return Err(self.encoder_error(&format!("writing a frame: {e}")));
        }
        Ok(())
    }

    fn encoder_error(&mut self, why: &str) -> Error {
        self.stdin = None;
        let _ = self.child.kill();
        let tail = stderr_tail(&mut self.child);
        let _ = std::fs::remove_file(&self.partial);
        self.finished = true;
        Error::Run(format!("{}: {why}{tail}", self.path.display()))
    }

    /// Ends the stream and moves the finished file to its name.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.stdin = None;
        let status = self.child.wait();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            return Err(self.encoder_error("encoding failed"));
        }
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| Error::Run(format!("{}: {e}", self.path.display())))?;
        self.finished = true;
        Ok(self.path.clone())
    }
}

/// The last line ffmpeg wrote to stderr, as ` (line)`, once it has ended.
fn stderr_tail(child: &mut Child) -> String {
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut text);
    }
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or(String::new(), |l| format!(" ({})", l.trim()))
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
