use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use rtdetr::{Detection, Detector, DetectorOptions};
use serde::Serialize;

use crate::names::Names;
use crate::{coco_ids, device, output, sources};

/// Arguments of `rtdetr detect`.
#[derive(clap::Args)]
pub struct Args {
    /// Images, folders (searched recursively, sorted) or glob patterns (jpg, png, bmp, webp);
    /// video files (mp4, avi, mkv, mov, webm, ...), stream URLs (rtsp://, http(s)://, ...) and
    /// webcams (an index or /dev/videoN).
    #[arg(required = true)]
    sources: Vec<String>,
    /// On videos, process every n-th frame.
    #[arg(long, default_value_t = 1, value_parser = crate::flags::positive)]
    vid_stride: usize,
    /// On videos, also write each processed frame, annotated, to `frames/<video>_<n>.jpg`.
    #[arg(long)]
    save_frames: bool,
    /// Weights: a safetensors file with the PyTorch state_dict keys (see `rtdetr convert`).
    #[arg(long)]
    weights: PathBuf,
    /// Inference size: images are stretched to imgsz×imgsz (a multiple of 32). Default: the size
    /// the weights were trained at (their `imgsz` metadata), else 640.
    #[arg(long, value_parser = crate::flags::imgsz)]
    imgsz: Option<usize>,
    /// Keep detections scoring above this.
    #[arg(long, default_value_t = 0.25, value_parser = crate::flags::fraction_f32)]
    conf: f32,
    /// Keep at most this many detections per image.
    #[arg(long, default_value_t = 300, value_parser = crate::flags::positive)]
    max_det: usize,
    /// Keep only these class indices, e.g. `--classes 0,2`.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<usize>>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1, value_parser = crate::flags::positive)]
    batch: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Float type: f32, or bf16 (on the CPU the full convolutions and linear layers multiply
    /// bf16 operands on AMX tiles or AVX512-BF16, the rest stays f32; on CUDA bf16 weights).
    #[arg(long, default_value = "f32", value_parser = crate::flags::dtype)]
    dtype: candle::DType,
    /// Folder for annotated images and `labels/` (default runs/detect/predict, predict2, ..., the
    /// first free one).
    #[arg(long)]
    save_dir: Option<PathBuf>,
    /// Reuse runs/detect/predict instead of numbering a new folder.
    #[arg(long)]
    exist_ok: bool,
    /// Do not write annotated images.
    #[arg(long)]
    no_draw: bool,
    /// Write all detections as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write `labels/<image>.txt` in the save folder: `class cx cy w h`, normalised.
    #[arg(long)]
    save_txt: bool,
    /// With --save-txt, add each detection's score: `class cx cy w h conf`.
    #[arg(long)]
    save_conf: bool,
    /// Write COCO results (image_id, category_id, bbox [x, y, w, h], score) to this file.
    #[arg(long)]
    save_coco: Option<PathBuf>,
    /// With --save-coco, take the image and category ids from this dataset (a COCO
    /// instances json, or a data.yaml's val split as `val --data` numbers it), so that `val`
    /// can score the file. Without it: the stem when it is a number, else the stem as a string;
    /// the class index.
    #[arg(long, requires = "save_coco")]
    data: Option<PathBuf>,
    /// Class names: a data.yaml, a JSON list or object, or one name per line (default: the
    /// weights' `names` metadata, else numbers).
    #[arg(long)]
    names: Option<PathBuf>,
    /// Model variant (s, m, l, xl) when it cannot be told from the weights.
    #[arg(long)]
    variant: Option<String>,
}

/// One detection in the `--json` output.
#[derive(Debug, Serialize)]
pub struct JsonDetection {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    class_id: usize,
    class_name: String,
}

/// One image in the `--json` output.
#[derive(Debug, Serialize)]
pub struct JsonImage {
    path: String,
    width: usize,
    height: usize,
    detections: Vec<JsonDetection>,
}

#[derive(Debug, Serialize)]
struct CocoResult {
    image_id: serde_json::Value,
    category_id: u64,
    bbox: [f64; 4],
    score: f64,
}

fn round(v: f32, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v as f64 * p).round() / p
}

/// `--names` as a list by class id (gaps named by their number), `None` without the flag.
fn class_names(args: &Args) -> anyhow::Result<Option<Vec<String>>> {
    let Some(path) = &args.names else {
        return Ok(None);
    };
    let names = Names::from_file(path)?;
    Ok(Some((0..names.len()).map(|i| names.get(i)).collect()))
}

/// A stem for `source` unique within the run (`bus`, then `bus_1`, ...), shared by its annotated
/// image, its label file and its COCO image id.
pub(crate) fn unique_stem(source: &Path, taken: &mut HashSet<String>) -> String {
    let stem = source
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let mut candidate = stem.clone();
    let mut n = 1;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{stem}_{n}");
        n += 1;
    }
    candidate
}

fn yolo_lines(detections: &[Detection], width: usize, height: usize, conf: bool) -> String {
    let (w, h) = (width as f32, height as f32);
    detections
        .iter()
        .map(|d| {
            let [x1, y1, x2, y2] = d.bbox;
            let (cx, cy, bw, bh) = (
                (x1 + x2) / 2.0 / w,
                (y1 + y2) / 2.0 / h,
                (x2 - x1) / w,
                (y2 - y1) / h,
            );
            let line = format!("{} {cx:.6} {cy:.6} {bw:.6} {bh:.6}", d.class_id);
            match conf {
                true => format!("{line} {:.6}\n", d.score),
                false => format!("{line}\n"),
            }
        })
        .collect()
}

/// Milliseconds spent per phase.
#[derive(Default)]
struct Timing {
    decode: f64,
    detect: f64,
}

/// Runs the detector over every image and writes what was asked for.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (mut videos, mut image_sources) = (Vec::new(), Vec::new());
    for source in &args.sources {
        let path = Path::new(source);
        if path.is_dir() {
            let found = rtdetr::video::find_videos(path)
                .with_context(|| format!("reading folder {}", path.display()))?;
            let has_images = !rtdetr::image_io::find_images(path)?.is_empty();
            if found.is_empty() && !has_images {
                bail!("{source}: no images or videos in this folder");
            }
            videos.extend(found.iter().map(|p| p.display().to_string()));
            if has_images {
                image_sources.push(source.clone());
            }
        } else if rtdetr::video::is_video_source(source) {
            videos.push(source.clone());
        } else {
            image_sources.push(source.clone());
        }
    }
    let images = match image_sources.is_empty() {
        true => Vec::new(),
        false => sources::expand(&image_sources)?,
    };
    let save_dir = args.save_dir.clone().unwrap_or_else(|| {
        crate::run_dir::next(Path::new("runs/detect"), "predict", args.exist_ok)
    });
    let device = device::parse(&args.device)?;
    let variant = args
        .variant
        .as_deref()
        .map(str::parse::<rtdetr::Variant>)
        .transpose()?;
    let options = DetectorOptions {
        conf: args.conf,
        max_det: args.max_det,
        classes: args.classes.clone(),
        imgsz: args.imgsz,
        device,
        dtype: args.dtype,
        variant,
        names: class_names(&args)?,
    };
    let detector = Detector::from_file(&args.weights, options)?;
    let ids = match &args.data {
        Some(data) => {
            let ids = coco_ids::DatasetIds::read(data)?;
            ids.check_classes(detector.model().config().nc())?;
            for path in &images {
                ids.image(path)?;
            }
            Some(ids)
        }
        None => None,
    };
    let imgsz = detector.imgsz();
    if let (Some(given), Some(trained)) = (args.imgsz, detector.stored_imgsz()) {
        if given != trained {
            eprintln!("note: --imgsz {given}, but the weights were trained at {trained}");
        }
    }

    let progress = indicatif::ProgressBar::new(images.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if images.len() <= 1 {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut timing = Timing::default();
    let mut json = Vec::new();
    let mut coco = Vec::new();
    let mut failed = 0;
    let mut done = 0;
    let mut taken = HashSet::new();
    for chunk in images.chunks(args.batch) {
        let start = Instant::now();
        let mut decoded = Vec::with_capacity(chunk.len());
        for path in chunk {
            match rtdetr::image_io::open_upright(path) {
                Ok(img) => decoded.push((path, img.to_rgb8())),
                Err(e) => {
                    failed += 1;
                    progress.suspend(|| eprintln!("{e}"));
                }
            }
        }
        progress.inc(chunk.len() as u64);
        if decoded.is_empty() {
            continue;
        }
        let raw: Vec<(&[u8], usize, usize)> = decoded
            .iter()
            .map(|(_, img)| {
                (
                    img.as_raw().as_slice(),
                    img.height() as usize,
                    img.width() as usize,
                )
            })
            .collect();
        let t1 = Instant::now();
        let results = detector.detect_rgb(&raw)?;
        let t2 = Instant::now();
        timing.decode += (t1 - start).as_secs_f64() * 1e3;
        timing.detect += (t2 - t1).as_secs_f64() * 1e3;
        done += decoded.len();

        for ((path, mut img), detections) in decoded.into_iter().zip(results) {
            let (width, height) = (img.width() as usize, img.height() as usize);
            let stem = unique_stem(path, &mut taken);
            if !args.no_draw {
                rtdetr::draw::annotate(&mut img, &detections);
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("png");
                output::write_image(&save_dir.join(format!("{stem}.{ext}")), &img)?;
            }
            if args.save_txt {
                let file = save_dir.join("labels").join(format!("{stem}.txt"));
                let lines = yolo_lines(&detections, width, height, args.save_conf);
                output::write_atomic(&file, lines.as_bytes())?;
            }
            if args.save_coco.is_some() {
                let image_id = match &ids {
                    Some(ids) => ids.image(path)?.into(),
                    None => coco_ids::stem_id(&stem),
                };
                for d in &detections {
                    let category_id = match &ids {
                        Some(ids) => ids.category(d.class_id)?,
                        None => d.class_id as u64,
                    };
                    coco.push(CocoResult {
                        image_id: image_id.clone(),
                        category_id,
                        bbox: [
                            round(d.bbox[0], 3),
                            round(d.bbox[1], 3),
                            round(d.bbox[2] - d.bbox[0], 3),
                            round(d.bbox[3] - d.bbox[1], 3),
                        ],
                        score: round(d.score, 5),
                    });
                }
            }
            let detections = detections
                .into_iter()
                .map(|d| JsonDetection {
                    bbox: d.bbox,
                    score: d.score,
                    class_name: d.class_name,
                    class_id: d.class_id,
                })
                .collect();
            json.push(JsonImage {
                path: path.display().to_string(),
                width,
                height,
                detections,
            });
        }
    }
    progress.finish_and_clear();

    if let Some(path) = &args.json {
        output::write_json(path, &json)?;
    }
    if let Some(path) = &args.save_coco {
        output::write_json(path, &coco)?;
    }
    let found: usize = json.iter().map(|j| j.detections.len()).sum();
    let per = |ms: f64| ms / done.max(1) as f64;
    let outputs = crate::video::VideoOutputs {
        stride: args.vid_stride,
        batch: args.batch,
        draw: !args.no_draw,
        save_frames: args.save_frames,
        save_txt: args.save_txt,
        save_conf: args.save_conf,
    };
    let mut failed_videos = 0;
    for source in &videos {
        let lines = |d: &[Detection], w: usize, h: usize| yolo_lines(d, w, h, outputs.save_conf);
        let start = Instant::now();
        match crate::video::detect(&detector, source, &save_dir, &outputs, lines) {
            Ok((frames, found)) => eprintln!(
                "{source}: {frames} frames, {found} detections, {:.1} frames/s",
                frames as f64 / start.elapsed().as_secs_f64().max(1e-9)
            ),
            Err(e) => {
                failed_videos += 1;
                eprintln!("{}", crate::one_line(&e));
            }
        }
    }
    if images.is_empty() {
        if failed_videos > 0 {
            bail!(
                "{failed_videos} of {} videos could not be read to the end",
                videos.len()
            );
        }
        eprintln!("Results saved to {}", save_dir.display());
        return Ok(());
    }
    eprintln!(
        "{done} images, {found} detections. Speed: {:.1}ms decode, {:.1}ms detect (preprocess, inference, postprocess) per image at shape ({}, 3, {imgsz}, {imgsz})",
        per(timing.decode),
        per(timing.detect),
        args.batch,
    );
    if !args.no_draw || args.save_txt {
        eprintln!("Results saved to {}", save_dir.display());
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", images.len());
    }
    if failed_videos > 0 {
        bail!(
            "{failed_videos} of {} videos could not be read to the end",
            videos.len()
        );
    }
    Ok(())
}
