use serde::Deserialize;

use super::{input_args, tool};
use crate::{Error, Result};

/// What a video source holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Width of the frames as decoded, upright (a phone video's rotation applied), in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frames per second (the stream's average rate; 30 when it gives none).
    pub fps: f64,
    /// Frames the container declares, when it does (streams and some formats do not).
    pub frames: Option<u64>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    width: Option<usize>,
    height: Option<usize>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Tags {
    rotate: Option<String>,
}

impl Stream {
    /// The display rotation in degrees (a display matrix, or the older `rotate` tag).
    fn rotation(&self) -> f64 {
        let matrix = self.side_data_list.iter().find_map(|d| d.rotation);
        let tag = self.tags.rotate.as_deref().and_then(|r| r.parse().ok());
        matrix.or(tag).unwrap_or(0.0)
    }
}

fn rate(text: Option<&str>) -> Option<f64> {
    let (num, den) = text?.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then_some(num / den)
}

/// The first video stream of `source` (a file, URL or webcam), read with `ffprobe`.
pub fn probe(source: &str) -> Result<VideoInfo> {
    let fail = |why: String| Error::Data(format!("{source}: {why}"));
    let mut cmd = tool("ffprobe")?;
    cmd.args(["-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,avg_frame_rate,r_frame_rate,nb_frames:stream_side_data=rotation:stream_tags=rotate")
        .args(["-of", "json"])
        .args(input_args(source));
    let out = cmd
        .output()
        .map_err(|e| fail(format!("running ffprobe: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .last()
            .unwrap_or("ffprobe failed")
            .trim()
            .to_string();
        return Err(fail(format!("not a readable video ({why})")));
    }
    let probe: Probe =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("ffprobe's answer: {e}")))?;
    let Some(stream) = probe.streams.into_iter().next() else {
        return Err(fail("no video stream".into()));
    };
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        return Err(fail("the video stream has no frame size".into()));
    };
    // ffmpeg turns frames upright when it decodes them: a quarter turn swaps the sides.
    let quarter = (stream.rotation().rem_euclid(180.0) - 90.0).abs() < 1.0;
    let (width, height) = if quarter {
        (height, width)
    } else {
        (width, height)
    };
    let pixels = width.checked_mul(height).map(|p| p as u64);
    if width == 0 || height == 0 || pixels.is_none_or(|p| p > crate::image_io::MAX_IMAGE_PIXELS) {
        return Err(fail(format!("frame size {width}×{height} is out of range")));
    }
    let fps = rate(stream.avg_frame_rate.as_deref())
        .or_else(|| rate(stream.r_frame_rate.as_deref()))
        .unwrap_or(30.0);
    Ok(VideoInfo {
        width,
        height,
        fps,
        frames: stream
            .nb_frames
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0),
    })
}
