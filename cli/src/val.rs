use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rtdetr::coco::{evaluate, Dataset};
use serde::Serialize;

use crate::output;

/// Arguments of `rtdetr val`: either a model on a dataset (`--weights` and `--data`), or a COCO
/// results file against a COCO ground truth (`--gt` and `--predictions`).
#[derive(clap::Args)]
pub struct Args {
    /// Weights to evaluate on the dataset's val split.
    #[arg(long, requires = "data", conflicts_with_all = ["gt", "predictions"])]
    weights: Option<PathBuf>,
    /// Dataset: an ultralytics data.yaml or a COCO instances_*.json (its val split). With
    /// --weights, the model is run on it; with --predictions, it is their ground truth.
    #[arg(long, conflicts_with = "gt")]
    data: Option<PathBuf>,
    /// Validation size (a multiple of 32). Default: the size the weights were trained at (their
    /// `imgsz` metadata), else 640.
    #[arg(long, value_parser = crate::flags::imgsz)]
    imgsz: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = crate::flags::positive)]
    batch: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Float type: f32, or bf16 (on the CPU the full convolutions and linear layers multiply
    /// bf16 operands on AMX tiles or AVX512-BF16, the rest stays f32; on CUDA bf16 weights).
    #[arg(long, default_value = "f32", value_parser = crate::flags::dtype)]
    dtype: candle::DType,
    /// COCO ground truth (`instances_*.json`).
    #[arg(long, requires = "predictions")]
    gt: Option<PathBuf>,
    /// COCO results to evaluate (`[{image_id, category_id, bbox, score}]`, e.g. from `detect
    /// --save-coco --data`) against --gt or --data.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    map50_95: f64,
    map50: f64,
    stats: [f64; 12],
    per_class: Vec<ClassAp<'a>>,
    /// The figures of ultralytics' table.
    ultralytics: Table<'a>,
}

#[derive(Serialize)]
struct Table<'a> {
    precision: f64,
    recall: f64,
    map50: f64,
    map50_95: f64,
    per_class: Vec<TableRow<'a>>,
}

#[derive(Serialize)]
struct TableRow<'a> {
    class: usize,
    name: &'a str,
    images: usize,
    instances: usize,
    precision: f64,
    recall: f64,
    map50: f64,
    map50_95: f64,
}

#[derive(Serialize)]
struct ClassAp<'a> {
    category_id: u64,
    name: &'a str,
    ap50_95: f64,
    ap50: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a COCO {what} file", path.display()))
}

/// The ground truth of `data`'s val split: a COCO json as it is, a data.yaml numbered as
/// `detect --data` numbers it.
fn ground_truth(data: &Path) -> anyhow::Result<Dataset> {
    if data
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let split = rtdetr::data::split_file(data, "val");
        return read_json(&split, "instances");
    }
    let split = rtdetr::data::open_split(data, "val")?;
    for problem in &split.problems {
        eprintln!("warning: {problem}");
    }
    Ok(rtdetr::data::coco_ground_truth(&split)?)
}

const NAMES: [&str; 12] = [
    "AP @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AP @[IoU=0.50      | area=   all | maxDets=100]",
    "AP @[IoU=0.75      | area=   all | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area= large | maxDets=100]",
];

/// Evaluates a model on a dataset's val split, or a COCO results file against a COCO ground
/// truth: ultralytics' table (P, R, mAP50, mAP50-95 per class) and pycocotools' COCOeval (bbox).
pub fn run(args: Args) -> anyhow::Result<()> {
    let (gt, summary, metrics) = match (&args.weights, &args.data, &args.gt, &args.predictions) {
        (Some(weights), Some(data), _, _) => {
            let dev = crate::device::parse(&args.device)?;
            let val = rtdetr::data::open_split(data, "val")?;
            for problem in &val.problems {
                eprintln!("warning: {problem}");
            }
            let options = rtdetr::DetectorOptions {
                imgsz: args.imgsz,
                device: dev,
                dtype: args.dtype,
                names: Some(val.names.clone()),
                ..rtdetr::DetectorOptions::validation()
            };
            let detector = rtdetr::Detector::from_file(weights, options)?;
            if detector.model().config().nc() != val.names.len() {
                anyhow::bail!(
                    "{}: the weights have {} classes, the dataset {}",
                    weights.display(),
                    detector.model().config().nc(),
                    val.names.len()
                );
            }
            if let (Some(given), Some(trained)) = (args.imgsz, detector.stored_imgsz()) {
                if given != trained {
                    eprintln!("note: --imgsz {given}, but the weights were trained at {trained}");
                }
            }
            let validation = rtdetr::validate(&detector, &val.samples, args.batch)?;
            let categories = rtdetr::coco::Category::numbered(&val.names);
            (
                Dataset {
                    categories,
                    ..Dataset::default()
                },
                validation.coco,
                validation.metrics,
            )
        }
        (None, data, gt_path, Some(predictions)) => {
            let gt = match (data, gt_path) {
                (_, Some(gt_path)) => read_json(gt_path, "instances")?,
                (Some(data), None) => ground_truth(data)?,
                (None, None) => anyhow::bail!("--predictions needs a ground truth: --gt or --data"),
            };
            let dts = crate::predictions::read(predictions, &gt)?;
            let summary = evaluate(&gt, &dts)
                .map_err(|e| anyhow::anyhow!("{}: {e}", predictions.display()))?;
            let metrics = rtdetr::val_metrics::from_coco(&gt, &dts);
            (gt, summary, metrics)
        }
        _ => anyhow::bail!("give --weights and --data, or --predictions with --gt or --data"),
    };
    let name_of = |id: u64| {
        gt.categories
            .iter()
            .find(|c| c.id == id)
            .map_or("", |c| c.name.as_str())
    };
    let names: Vec<String> = gt.categories.iter().map(|c| c.name.clone()).collect();
    let mut out = format!("{}\n\nCOCO (pycocotools):\n", metrics.table(&names));
    for (name, value) in NAMES.iter().zip(summary.stats) {
        writeln!(out, " {name} = {value:.3}")?;
    }
    writeln!(
        out,
        "\n{:>6}  {:<20} {:>9} {:>7}",
        "class", "name", "AP50-95", "AP50"
    )?;
    for &(id, ap, ap50) in &summary.per_class {
        writeln!(out, "{id:>6}  {:<20} {ap:>9.3} {ap50:>7.3}", name_of(id))?;
    }
    print!("{out}");
    if let Some(path) = &args.json {
        let per_class = summary
            .per_class
            .iter()
            .map(|&(category_id, ap50_95, ap50)| ClassAp {
                category_id,
                name: name_of(category_id),
                ap50_95,
                ap50,
            })
            .collect();
        let table = Table {
            precision: metrics.precision(),
            recall: metrics.recall(),
            map50: metrics.map50(),
            map50_95: metrics.map50_95(),
            per_class: metrics
                .classes
                .iter()
                .map(|c| TableRow {
                    class: c.class,
                    name: names.get(c.class).map_or("", String::as_str),
                    images: c.images,
                    instances: c.instances,
                    precision: c.precision,
                    recall: c.recall,
                    map50: c.ap50(),
                    map50_95: c.ap50_95(),
                })
                .collect(),
        };
        let report = Report {
            map50_95: summary.map50_95(),
            map50: summary.map50(),
            stats: summary.stats,
            per_class,
            ultralytics: table,
        };
        output::write_json(path, &report)?;
    }
    Ok(())
}
