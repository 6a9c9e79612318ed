use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rtdetr::coco::{evaluate, Dataset, Detection};
use serde::Serialize;

use crate::output;

/// Arguments of `rtdetr val`.
#[derive(clap::Args)]
pub struct Args {
    /// COCO ground truth (`instances_*.json`).
    #[arg(long)]
    gt: PathBuf,
    /// COCO results to evaluate (`[{image_id, category_id, bbox, score}]`, e.g. from `detect --save-coco`).
    #[arg(long)]
    predictions: PathBuf,
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

/// Evaluates a COCO results file against a COCO ground truth, as pycocotools' COCOeval (bbox).
pub fn run(args: Args) -> anyhow::Result<()> {
    let gt: Dataset = read_json(&args.gt, "instances")?;
    let dts: Vec<Detection> = read_json(&args.predictions, "results")?;
    let summary =
        evaluate(&gt, &dts).map_err(|e| anyhow::anyhow!("{}: {e}", args.predictions.display()))?;
    let name_of = |id: u64| {
        gt.categories
            .iter()
            .find(|c| c.id == id)
            .map_or("", |c| c.name.as_str())
    };
    let mut out = String::new();
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
        let report = Report {
            map50_95: summary.map50_95(),
            map50: summary.map50(),
            stats: summary.stats,
            per_class,
        };
        output::write_json(path, &report)?;
    }
    Ok(())
}
