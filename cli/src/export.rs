//! `rtdetr export`: safetensors weights to an ONNX model.

use std::path::PathBuf;

use anyhow::Context;
use candle::{DType, Device};
use rtdetr::onnx::{write_model, Summary};
use rtdetr::{Batch, ExportOptions, RtDetr, Sampler};

/// Arguments of `rtdetr export`.
#[derive(clap::Args)]
pub struct Args {
    /// Safetensors weights (any file `rtdetr convert` writes or `rtdetr train` saves).
    #[arg(long)]
    weights: PathBuf,
    /// Output format (ONNX is the only one).
    #[arg(long, default_value = "onnx", value_parser = clap::builder::PossibleValuesParser::new(["onnx"]))]
    format: String,
    /// Input size: N for N×N or H,W (multiples of 32; default: the weights' `imgsz` metadata,
    /// else 640). The graph takes only this size.
    #[arg(long, value_delimiter = ',', num_args = 1..=2, value_parser = crate::flags::imgsz)]
    imgsz: Vec<usize>,
    /// Fixed batch size.
    #[arg(long, default_value_t = 1, value_parser = crate::flags::positive, conflicts_with = "dynamic")]
    batch: usize,
    /// Any batch size (the input's first dimension is named `batch`).
    #[arg(long)]
    dynamic: bool,
    /// f16 weights, input, activations and output (for GPU runtimes; ONNX Runtime's CPU provider
    /// lacks f16 kernels for most of these operators).
    #[arg(long)]
    half: bool,
    /// ONNX operator set (16 to 21; GridSample needs 16).
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// Deformable-attention sampling: `grid-sample` (ONNX Runtime, OpenVINO, TensorRT ≥ 8.5) or
    /// `gather` (the same bilinear sampling from GatherElements, for runtimes without GridSample).
    #[arg(long, default_value = "grid-sample", value_parser = clap::builder::PossibleValuesParser::new(["grid-sample", "gather"]))]
    sampler: String,
    /// Output ultralytics 8.4's top-k detections `[N, 300, 6]` (cx, cy, w, h, score, class) instead
    /// of every query's boxes and class scores `[N, 300, 4 + nc]`.
    #[arg(long)]
    topk: bool,
    /// Output file (default: the weights' path with `.onnx`).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = RtDetr::load_as(&args.weights, &Device::Cpu, DType::F32, None, None)?;
    let meta = rtdetr::read_metadata(&args.weights)?;
    let names = rtdetr::names_from_metadata(&meta)
        .map_err(|e| e.in_file(&args.weights))?
        .unwrap_or_default();
    let imgsz = match args.imgsz.as_slice() {
        [n] => (*n, *n),
        [h, w] => (*h, *w),
        _ => {
            let stored =
                rtdetr::imgsz_from_metadata(&meta).map_err(|e| e.in_file(&args.weights))?;
            let n = stored.unwrap_or(rtdetr::DEFAULT_IMGSZ);
            (n, n)
        }
    };
    let options = ExportOptions {
        imgsz,
        batch: if args.dynamic {
            Batch::Dynamic
        } else {
            Batch::Fixed(args.batch)
        },
        half: args.half,
        opset: args.opset,
        sampler: if args.sampler == "gather" {
            Sampler::Gather
        } else {
            Sampler::GridSample
        },
        topk: args.topk,
        names,
    };
    let onnx = model
        .to_onnx(&options)
        .with_context(|| format!("exporting {}", args.weights.display()))?;
    let output = args
        .output
        .unwrap_or_else(|| args.weights.with_extension("onnx"));
    write_model(&output, &onnx)?;
    let summary = Summary::of(&onnx);
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    let port = |p: &rtdetr::onnx::summary::Port| format!("{} [{}]", p.name, p.dims.join(", "));
    println!(
        "wrote {} ({:.1} MB, opset {}): {} -> {}",
        output.display(),
        size as f64 / 1e6,
        summary.opset,
        summary
            .inputs
            .iter()
            .map(port)
            .collect::<Vec<_>>()
            .join(", "),
        summary
            .outputs
            .iter()
            .map(port)
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(())
}
