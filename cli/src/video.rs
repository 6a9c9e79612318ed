//! `rtdetr detect` on videos, streams and webcams: frames in order (every `--vid-stride`-th),
//! batched through the detector, an annotated MP4 at the source's size and rate, per-frame JSON
//! lines, and optional per-frame label files and annotated frames, ultralytics' names.

// Without the `video` feature only the error that says how to get it is used.
#![cfg_attr(not(feature = "video"), allow(dead_code))]

use std::path::Path;

use rtdetr::{Detection, Detector};
use serde::Serialize;

/// What to write for a video.
pub struct VideoOutputs {
    /// Process every n-th frame.
    pub stride: usize,
    /// Frames per forward pass.
    pub batch: usize,
    /// Write the annotated video.
    pub draw: bool,
    /// Also write each processed frame, annotated, to `frames/<stem>_<n>.jpg`.
    pub save_frames: bool,
    /// Write `labels/<stem>_<n>.txt` per processed frame (with scores when `save_conf`).
    pub save_txt: bool,
    /// Scores in the label files.
    pub save_conf: bool,
}

#[derive(Serialize)]
struct FrameLine<'a> {
    frame: u64,
    time_s: f64,
    detections: &'a [Detection],
}

/// The file stem for a source: a file's stem, else `stream` or `webcamN`.
pub fn stem(source: &str) -> String {
    if source.contains("://") {
        return "stream".into();
    }
    if let Ok(n) = source.parse::<u32>() {
        return format!("webcam{n}");
    }
    Path::new(source)
        .file_stem()
        .map_or_else(|| "video".into(), |s| s.to_string_lossy().into_owned())
}

/// Frames processed and detections found, or the first error (after what was read is written).
#[cfg(feature = "video")]
pub fn detect(
    detector: &Detector,
    source: &str,
    save_dir: &Path,
    outputs: &VideoOutputs,
    label_lines: impl Fn(&[Detection], usize, usize) -> String,
) -> anyhow::Result<(u64, usize)> {
    use std::io::Write;

    use anyhow::Context;
    use rtdetr::video::{VideoReader, VideoWriter};

    use crate::output;
    let mut reader = VideoReader::open(source)?;
    let info = reader.info().clone();
    let stem = stem(source);
    std::fs::create_dir_all(save_dir)
        .with_context(|| format!("creating {}", save_dir.display()))?;
    let mut writer = match outputs.draw {
        true => Some(VideoWriter::create(
            &save_dir.join(format!("{stem}.mp4")),
            info.width as u32,
            info.height as u32,
            info.fps,
        )?),
        false => None,
    };
    let jsonl = save_dir.join(format!("{stem}.jsonl"));
    let partial = save_dir.join(format!("{stem}.jsonl.partial"));
    let mut lines = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let progress = match info.frames {
        Some(n) => indicatif::ProgressBar::new(n.div_ceil(outputs.stride as u64)),
        None => indicatif::ProgressBar::new_spinner(),
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{stem} {{bar:30}} {{pos}}/{{len}} frames {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut processed, mut found) = (0u64, 0usize);
    let mut pending: Vec<(u64, image::RgbImage)> = Vec::with_capacity(outputs.batch);
    let mut failure = None;
    loop {
        let next = match reader.next_strided(outputs.stride) {
            Ok(frame) => frame,
            Err(e) => {
                failure = Some(e);
                None
            }
        };
        let at_end = next.is_none();
        if let Some(frame) = next {
            progress.inc(1);
            pending.push(frame);
        }
        if pending.len() < outputs.batch && !at_end {
            continue;
        }
        let raw: Vec<(&[u8], usize, usize)> = pending
            .iter()
            .map(|(_, f)| {
                (
                    f.as_raw().as_slice(),
                    f.height() as usize,
                    f.width() as usize,
                )
            })
            .collect();
        let results = if raw.is_empty() {
            Vec::new()
        } else {
            detector.detect_rgb(&raw)?
        };
        for ((index, mut frame), detections) in pending.drain(..).zip(results) {
            processed += 1;
            found += detections.len();
            let line = FrameLine {
                frame: index,
                time_s: index as f64 / info.fps,
                detections: &detections,
            };
            serde_json::to_writer(&mut lines, &line)?;
            lines.write_all(b"\n")?;
            if outputs.save_txt {
                let file = save_dir
                    .join("labels")
                    .join(format!("{stem}_{processed}.txt"));
                let text = label_lines(&detections, info.width, info.height);
                output::write_atomic(&file, text.as_bytes())?;
            }
            if outputs.draw || outputs.save_frames {
                rtdetr::draw::annotate(&mut frame, &detections);
            }
            if outputs.save_frames {
                output::write_image(
                    &save_dir
                        .join("frames")
                        .join(format!("{stem}_{processed}.jpg")),
                    &frame,
                )?;
            }
            if let Some(writer) = writer.as_mut() {
                writer.write(&frame)?;
            }
        }
        if at_end {
            break;
        }
    }
    progress.finish_and_clear();
    lines.flush()?;
    drop(lines);
    std::fs::rename(&partial, &jsonl).with_context(|| format!("writing {}", jsonl.display()))?;
    if let Some(writer) = writer {
        writer.finish()?;
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok((processed, found)),
    }
}

/// Without the `video` feature: how to get it.
#[cfg(not(feature = "video"))]
pub fn detect(
    _: &Detector,
    source: &str,
    _: &Path,
    _: &VideoOutputs,
    _: impl Fn(&[Detection], usize, usize) -> String,
) -> anyhow::Result<(u64, usize)> {
    anyhow::bail!(
        "{source}: this rtdetr was built without video support; rebuild with the `video` feature \
         (cargo install rtdetr-cli --features video) and install FFmpeg"
    )
}
