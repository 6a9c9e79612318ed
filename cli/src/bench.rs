use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use candle::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rtdetr::{ModelConfig, RtDetr, Variant};
use serde::Serialize;

use crate::{device, output};

/// Arguments of `rtdetr bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Model variant: s, m, l or xl (ignored with --weights, which tell it).
    #[arg(long, default_value = "s", value_parser = clap::builder::PossibleValuesParser::new(["s", "m", "l", "xl"]))]
    variant: String,
    /// Number of classes (ignored with --weights).
    #[arg(long, default_value_t = 80)]
    nc: usize,
    /// Input size (a multiple of 32).
    #[arg(long, default_value_t = 640)]
    imgsz: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed forward passes (after one warm-up pass).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Weights to time instead of random ones.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    variant: String,
    nc: usize,
    imgsz: usize,
    batch: usize,
    device: String,
    iters: usize,
    median_ms: f64,
    min_ms: f64,
    mean_ms: f64,
    images_per_s: f64,
}

/// Times eval forward passes of the detector (RepConv fused) on random input.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.imgsz == 0 || !args.imgsz.is_multiple_of(32) {
        bail!("--imgsz {} is not a positive multiple of 32", args.imgsz);
    }
    if args.iters == 0 || args.batch == 0 {
        bail!("--iters and --batch must be at least 1");
    }
    let dev = device::parse(&args.device)?;
    let model = match &args.weights {
        Some(path) => RtDetr::load(path, &dev, None, None)?,
        None => {
            let variant: Variant = args.variant.parse().map_err(anyhow::Error::msg)?;
            let cfg = ModelConfig::new(variant, args.nc);
            let varmap = VarMap::new();
            RtDetr::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
            // Plain tensors, as loaded weights are: variables would make every op record a graph.
            let tensors = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned variable map"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect();
            let mut model = RtDetr::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, &dev))?;
            model.set_fused(true)?;
            model
        }
    };
    let cfg = model.config().clone();
    let xs = Tensor::rand(0f32, 1., (args.batch, 3, args.imgsz, args.imgsz), &dev)?;
    model.forward_t(&xs, false)?;
    dev.synchronize()?;
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let start = Instant::now();
        model.forward_t(&xs, false)?;
        dev.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let report = Report {
        variant: variant_name(&cfg, &args.variant, args.weights.is_some()),
        nc: cfg.nc(),
        imgsz: args.imgsz,
        batch: args.batch,
        device: format!("{dev:?}"),
        iters: args.iters,
        median_ms: median,
        min_ms: times[0],
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        images_per_s: args.batch as f64 * 1e3 / median,
    };
    let report = Report {
        variant: variant_name(&cfg, &args.variant, args.weights.is_some()),
        ..report
    };
    println!(
        "rtdetr bench: {} nc={} {}x{} batch {} on {}: median {:.1} ms, min {:.1} ms, {:.2} images/s ({} iterations)",
        report.variant, report.nc, args.imgsz, args.imgsz, args.batch, report.device, report.median_ms, report.min_ms, report.images_per_s, args.iters
    );
    if let Some(path) = &args.json {
        output::write_json(path, &report)?;
    }
    Ok(())
}

fn variant_name(cfg: &ModelConfig, requested: &str, from_weights: bool) -> String {
    if !from_weights {
        return requested.to_string();
    }
    Variant::ALL
        .into_iter()
        .find(|v| v.backbone() == cfg.backbone)
        .map_or_else(|| "custom".to_string(), |v| v.name().to_string())
}
