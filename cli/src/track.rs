//! `rtdetr track`: detection and ByteTrack over a sequence of frames (images in order).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rtdetr::{Detector, DetectorOptions};
use rtdetr_track::{ByteTrack, ByteTrackConfig, TrackInput};
use serde::Serialize;

use crate::{device, output, sources};

/// Arguments of `rtdetr track`.
#[derive(clap::Args)]
pub struct Args {
    /// The frames: images, folders (sorted by name) or glob patterns, tracked as one sequence;
    /// or one video file, stream URL or webcam.
    #[arg(required = true)]
    sources: Vec<String>,
    /// On a video, process every n-th frame.
    #[arg(long, default_value_t = 1, value_parser = crate::flags::positive)]
    vid_stride: usize,
    /// Weights: a safetensors file with the PyTorch state_dict keys.
    #[arg(long)]
    weights: PathBuf,
    /// `bytetrack`, or a tracker YAML in ultralytics' format (`tracker_type: bytetrack` and the
    /// keys of its `bytetrack.yaml`; missing keys keep its defaults).
    #[arg(long, default_value = "bytetrack")]
    tracker: String,
    /// Detections scoring above this reach the tracker (0.1, ultralytics' track default: the
    /// second association needs the low-score ones).
    #[arg(long, default_value_t = 0.1, value_parser = crate::flags::fraction_f32)]
    conf: f32,
    /// Inference size (a multiple of 32; default: the weights' imgsz metadata, else 640).
    #[arg(long, value_parser = crate::flags::imgsz)]
    imgsz: Option<usize>,
    /// Keep only these class indices, e.g. `--classes 0,2`.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<usize>>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Float type: f32, or bf16 (on the CPU the full convolutions and linear layers multiply
    /// bf16 operands on AMX tiles or AVX512-BF16, the rest stays f32; on CUDA bf16 weights).
    #[arg(long, default_value = "f32", value_parser = crate::flags::dtype)]
    dtype: candle::DType,
    /// Output folder (default runs/track/track, track2, ..., the first free one): `tracks.jsonl`
    /// and the annotated frames.
    #[arg(long)]
    save_dir: Option<PathBuf>,
    /// Reuse runs/track/track instead of numbering a new folder.
    #[arg(long)]
    exist_ok: bool,
    /// Do not write annotated frames.
    #[arg(long)]
    no_draw: bool,
}

/// One track of a frame in `tracks.jsonl`.
#[derive(Serialize)]
struct TrackRow<'a> {
    id: u64,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    class_id: usize,
    class_name: &'a str,
}

/// One line of `tracks.jsonl`.
#[derive(Serialize)]
struct FrameRow<'a> {
    frame: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_s: Option<f64>,
    tracks: Vec<TrackRow<'a>>,
}

/// Where the frames come from, and where their annotated copies go.
// One per run: the size of the video variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Frames {
    /// The frames, and the names their annotated copies took (equal names get `_1`, `_2`, ...).
    Images(Vec<PathBuf>, std::collections::HashSet<String>),
    #[cfg(feature = "video")]
    Video {
        reader: rtdetr::video::VideoReader,
        writer: Option<rtdetr::video::VideoWriter>,
        stride: usize,
    },
}

/// One frame: its index in the source, its image file (for a sequence) or time (for a video).
struct Frame {
    index: usize,
    image: Option<PathBuf>,
    time_s: Option<f64>,
    pixels: image::DynamicImage,
}

impl Frames {
    fn open(args: &Args, save_dir: &Path) -> anyhow::Result<Self> {
        match args.sources.as_slice() {
            [one] if rtdetr::video::is_video_source(one) && !Path::new(one).is_dir() => {
                Self::video(one, args, save_dir)
            }
            sources => Ok(Frames::Images(
                sources::expand(sources)?,
                Default::default(),
            )),
        }
    }

    #[cfg(feature = "video")]
    fn video(source: &str, args: &Args, save_dir: &Path) -> anyhow::Result<Self> {
        let reader = rtdetr::video::VideoReader::open(source)?;
        let info = reader.info().clone();
        let writer = match args.no_draw {
            true => None,
            false => {
                let path = save_dir.join(format!("{}.mp4", crate::video::stem(source)));
                Some(rtdetr::video::VideoWriter::create(
                    &path,
                    info.width as u32,
                    info.height as u32,
                    info.fps,
                )?)
            }
        };
        Ok(Frames::Video {
            reader,
            writer,
            stride: args.vid_stride,
        })
    }

    #[cfg(not(feature = "video"))]
    fn video(source: &str, _: &Args, _: &Path) -> anyhow::Result<Self> {
        bail!("{source}: this rtdetr was built without video support; rebuild with the `video` feature")
    }

    fn len(&self) -> Option<u64> {
        match self {
            Frames::Images(paths, _) => Some(paths.len() as u64),
            #[cfg(feature = "video")]
            Frames::Video { reader, stride, .. } => {
                reader.info().frames.map(|n| n.div_ceil(*stride as u64))
            }
        }
    }

    fn next(&mut self, done: usize) -> anyhow::Result<Option<Frame>> {
        match self {
            Frames::Images(paths, _) => {
                let Some(path) = paths.get(done) else {
                    return Ok(None);
                };
                let pixels = rtdetr::image_io::open_upright(path)
                    .with_context(|| format!("frame {done} of the sequence"))?;
                Ok(Some(Frame {
                    index: done,
                    image: Some(path.clone()),
                    time_s: None,
                    pixels,
                }))
            }
            #[cfg(feature = "video")]
            Frames::Video { reader, stride, .. } => {
                let Some((index, frame)) = reader.next_strided(*stride)? else {
                    return Ok(None);
                };
                Ok(Some(Frame {
                    index: index as usize,
                    image: None,
                    time_s: Some(index as f64 / reader.info().fps),
                    pixels: image::DynamicImage::ImageRgb8(frame),
                }))
            }
        }
    }

    fn save(
        &mut self,
        frame: &Frame,
        canvas: &image::RgbImage,
        save_dir: &Path,
    ) -> anyhow::Result<()> {
        match self {
            Frames::Images(_, taken) => {
                let path = frame.image.as_ref().expect("a sequence frame has a file");
                let stem = crate::detect::unique_stem(path, taken);
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("png");
                output::write_image(&save_dir.join(format!("{stem}.{ext}")), canvas)?;
            }
            #[cfg(feature = "video")]
            Frames::Video { writer, .. } => {
                if let Some(writer) = writer.as_mut() {
                    writer.write(canvas)?;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        #[cfg(feature = "video")]
        if let Frames::Video {
            writer: Some(writer),
            ..
        } = self
        {
            writer.finish()?;
        }
        Ok(())
    }
}

fn tracker_config(spec: &str) -> anyhow::Result<ByteTrackConfig> {
    if spec == "bytetrack" || spec == "bytetrack.yaml" {
        return Ok(ByteTrackConfig::default());
    }
    let path = Path::new(spec);
    let text = std::fs::read_to_string(path).with_context(|| format!("tracker {spec}"))?;
    let not_yaml = || format!("{}: not a tracker YAML", path.display());
    let mut map: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&text).with_context(not_yaml)?;
    match map.remove("tracker_type") {
        Some(serde_yaml_ng::Value::String(t)) if t == "bytetrack" => {}
        other => bail!(
            "{}: tracker_type {:?} is not supported (bytetrack is)",
            path.display(),
            other
        ),
    }
    serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map)).with_context(not_yaml)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = tracker_config(&args.tracker)?;
    let save_dir = args
        .save_dir
        .clone()
        .unwrap_or_else(|| crate::run_dir::next(Path::new("runs/track"), "track", args.exist_ok));
    let options = DetectorOptions {
        conf: args.conf,
        classes: args.classes.clone(),
        imgsz: args.imgsz,
        device: device::parse(&args.device)?,
        dtype: args.dtype,
        ..DetectorOptions::default()
    };
    let detector = Detector::from_file(&args.weights, options)?;
    std::fs::create_dir_all(&save_dir)
        .with_context(|| format!("creating {}", save_dir.display()))?;
    let mut frames = Frames::open(&args, &save_dir)?;
    let mut tracker = ByteTrack::new(config);
    let progress = match frames.len() {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} frames {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut lines = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut done = 0;
    let mut failure = None;
    loop {
        let frame = match frames.next(done) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        done += 1;
        let detections = detector.detect(&frame.pixels)?;
        let inputs: Vec<TrackInput> = detections
            .iter()
            .map(|d| TrackInput {
                xyxy: d.bbox,
                score: d.score,
                class: d.class_id,
            })
            .collect();
        let tracks = tracker.update(&inputs);
        let names = detector.names();
        let rows: Vec<TrackRow> = tracks
            .iter()
            .map(|t| TrackRow {
                id: t.id,
                bbox: t.xyxy,
                score: t.score,
                class_id: t.class,
                class_name: names.get(t.class).map_or("?", String::as_str),
            })
            .collect();
        ids.extend(tracks.iter().map(|t| t.id));
        if !args.no_draw {
            let mut canvas = frame.pixels.to_rgb8();
            for row in &rows {
                let label = format!("id:{} {} {:.2}", row.id, row.class_name, row.score);
                rtdetr::draw::draw_box(&mut canvas, row.bbox, row.class_id, &label);
            }
            frames.save(&frame, &canvas, &save_dir)?;
        }
        let line = FrameRow {
            frame: frame.index,
            image: frame.image.as_ref().map(|p| p.display().to_string()),
            time_s: frame.time_s,
            tracks: rows,
        };
        lines.push(serde_json::to_string(&line)?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let jsonl = save_dir.join("tracks.jsonl");
    let mut bytes = Vec::new();
    for line in &lines {
        writeln!(bytes, "{line}")?;
    }
    output::write_atomic(&jsonl, &bytes)?;
    frames.finish()?;
    println!(
        "{done} frames, {} tracks; results in {}",
        ids.len(),
        save_dir.display()
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
