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
    /// The frames: images, folders (sorted by name) or glob patterns, tracked as one sequence.
    #[arg(required = true)]
    sources: Vec<String>,
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
    image: String,
    tracks: Vec<TrackRow<'a>>,
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
    let frames = sources::expand(&args.sources)?;
    let save_dir = args
        .save_dir
        .clone()
        .unwrap_or_else(|| crate::run_dir::next(Path::new("runs/track"), "track", args.exist_ok));
    let options = DetectorOptions {
        conf: args.conf,
        classes: args.classes.clone(),
        imgsz: args.imgsz,
        device: device::parse(&args.device)?,
        ..DetectorOptions::default()
    };
    let detector = Detector::from_file(&args.weights, options)?;
    std::fs::create_dir_all(&save_dir)
        .with_context(|| format!("creating {}", save_dir.display()))?;
    let mut tracker = ByteTrack::new(config);
    let progress = indicatif::ProgressBar::new(frames.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} frames {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut lines = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (i, path) in frames.iter().enumerate() {
        let image = rtdetr::image_io::open_upright(path)
            .with_context(|| format!("frame {i} of the sequence"))?;
        let detections = detector.detect(&image)?;
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
            let mut canvas = image.to_rgb8();
            for row in &rows {
                let label = format!("id:{} {} {:.2}", row.id, row.class_name, row.score);
                rtdetr::draw::draw_box(&mut canvas, row.bbox, row.class_id, &label);
            }
            let name = path
                .file_name()
                .map_or_else(|| format!("{i}.png").into(), |n| n.to_owned());
            output::write_image(&save_dir.join(name), &canvas)?;
        }
        let line = FrameRow {
            frame: i,
            image: path.display().to_string(),
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
    println!(
        "{} frames, {} tracks; results in {}",
        frames.len(),
        ids.len(),
        save_dir.display()
    );
    Ok(())
}
