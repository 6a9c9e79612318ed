use std::io::Read;
use std::process::{Child, ChildStdout, Stdio};
use std::thread::JoinHandle;

use image::RgbImage;

use super::{input_args, probe, tool, VideoInfo};
use crate::{Error, Result};

/// Decoded RGB frames of a video source, in order, from an `ffmpeg` child process.
#[derive(Debug)]
pub struct VideoReader {
    source: String,
    info: VideoInfo,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    read: u64,
    done: bool,
}

impl VideoReader {
    /// Opens `source` (a file, URL, webcam index or device) at its own size and rate.
    pub fn open(source: &str) -> Result<Self> {
        let info = probe(source)?;
        let mut cmd = tool("ffmpeg")?;
        cmd.args(input_args(source))
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Data(format!("{source}: running ffmpeg: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Drained on its own thread so that a chatty decoder never blocks on a full pipe.
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Self {
            source: source.to_string(),
            info,
            child,
            stdout,
            stderr: Some(stderr),
            read: 0,
            done: false,
        })
    }

    /// Size, rate and declared length.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Frames read so far.
    pub fn frames_read(&self) -> u64 {
        self.read
    }

    fn failure(&mut self, why: &str) -> Error {
        self.done = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let detail = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            });
        let detail = detail.map_or(String::new(), |d| format!(" ({})", d.trim()));
        Error::Data(format!(
            "{}: {why} at frame {}{detail}",
            self.source, self.read
        ))
    }

    /// The next frame, `None` at the end; a decoder failure or a stream shorter than the container
    /// declares is an error naming the source and the frame reached.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        if self.done {
            return Ok(None);
        }
        let (w, h) = (self.info.width, self.info.height);
        let mut buf = vec![0u8; w * h * 3];
        let mut filled = 0;
        while filled < buf.len() {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failure(&format!("reading decoded frames: {e}"))),
            }
        }
        if filled == 0 {
            let status = self.child.wait();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                return Err(self.failure("decoding failed"));
            }
            if let Some(declared) = self.info.frames.filter(|&n| self.read < n) {
                return Err(self.failure(&format!(
                    "the stream ended early (truncated? {declared} frames declared)"
                )));
            }
            self.done = true;
            return Ok(None);
        }
        if filled < buf.len() {
            return Err(self.failure("the last frame is incomplete"));
        }
        self.read += 1;
        Ok(RgbImage::from_raw(w as u32, h as u32, buf))
    }
}

impl VideoReader {
    /// The next frame whose index (from 0) is a multiple of `stride`, with that index; the
    /// frames between are decoded and dropped (`--vid-stride`).
    pub fn next_strided(&mut self, stride: usize) -> Result<Option<(u64, RgbImage)>> {
        let stride = stride.max(1) as u64;
        while let Some(frame) = self.next_frame()? {
            let index = self.read - 1;
            if index.is_multiple_of(stride) {
                return Ok(Some((index, frame)));
            }
        }
        Ok(None)
    }
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
