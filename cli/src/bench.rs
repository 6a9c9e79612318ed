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
    #[arg(long, default_value_t = 80, value_parser = crate::flags::class_count)]
    nc: usize,
    /// Input size (a multiple of 32).
    #[arg(long, default_value_t = 640, value_parser = crate::flags::imgsz)]
    imgsz: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1, value_parser = crate::flags::positive)]
    batch: usize,
    /// Timed forward passes (after one warm-up pass).
    #[arg(long, default_value_t = 10, value_parser = crate::flags::positive)]
    iters: usize,
    /// Weights to time instead of random ones.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Float type of the forward pass: f32, or bf16 (on the CPU: the full convolutions and
    /// linear layers multiply bf16 operands on AMX tiles or AVX512-BF16, the rest stays f32; on
    /// CUDA: bf16 weights).
    #[arg(long, default_value = "f32", value_parser = crate::flags::dtype)]
    dtype: DType,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also time the backbone, the neck and the decoder separately (median ms of each), with
    /// the GFLOP/s each reaches against the machine's measured f32 FMA peak.
    #[arg(long)]
    profile: bool,
    /// Also time every convolution (with its bias and activation), linear layer and deformable
    /// sampling, and print them grouped by kind and shape, slowest first: the per-layer table of
    /// BENCHMARKS.md (`--json` adds it).
    #[arg(long, conflicts_with_all = ["profile", "train"])]
    layers: bool,
    /// Only measure the machine's f32 FMA peak (one thread and every thread), and the bf16
    /// vector peak where the CPU has AVX512-BF16, and exit.
    #[arg(long, conflicts_with_all = ["weights", "profile", "train"])]
    peak: bool,
    /// Time training steps instead (train-mode forward with denoising, loss, backward, gradient
    /// clipping, AdamW) on a random batch with 5 boxes per image; random initial weights.
    #[arg(long, conflicts_with_all = ["weights", "profile"])]
    train: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
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
    /// thop's GFLOPs of one image (ultralytics' count) times the batch, per median second.
    gflop_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts_median_ms: Option<Parts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts_gflop_per_s: Option<Parts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_gflop_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layers: Vec<Layer>,
}

/// One kind and shape of convolution, per forward pass.
#[derive(Debug, Serialize)]
struct Layer {
    kind: String,
    shape: String,
    calls: f64,
    mflop: f64,
    ms: f64,
    gflop_per_s: f64,
}

/// Groups `records` of `iters` forward passes by kind and shape, slowest first.
fn layers(records: Vec<rtdetr_ops::profile::Record>, iters: usize) -> Vec<Layer> {
    let mut groups: Vec<Layer> = Vec::new();
    let n = iters as f64;
    for r in records {
        let at = match groups
            .iter()
            .position(|g| g.kind == r.kind && g.shape == r.shape)
        {
            Some(at) => at,
            None => {
                groups.push(Layer {
                    kind: r.kind,
                    shape: r.shape,
                    calls: 0.0,
                    mflop: 0.0,
                    ms: 0.0,
                    gflop_per_s: 0.0,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.calls += 1.0 / n;
        g.mflop += r.flops as f64 / 1e6 / n;
        g.ms += r.seconds * 1e3 / n;
    }
    for g in &mut groups {
        g.gflop_per_s = g.mflop / g.ms;
    }
    groups.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    groups
}

/// Median milliseconds of each part of the forward pass.
#[derive(Debug, Serialize)]
struct Parts {
    backbone: f64,
    neck: f64,
    decoder: f64,
}

/// Times eval forward passes of the detector (RepConv fused) on random input.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.peak {
        let threads = candle::utils::get_num_threads();
        let peak = crate::peak::measure(threads);
        println!(
            "f32 FMA peak ({}): {:.1} GFLOP/s on 1 thread, {:.1} GFLOP/s on {} threads",
            peak.isa, peak.one_thread, peak.all_threads, peak.threads
        );
        if let Some((one, all)) = crate::peak::measure_bf16(threads) {
            println!(
                "bf16 dot peak (AVX512-BF16 vdpbf16ps): {one:.1} GFLOP/s on 1 thread, {all:.1} GFLOP/s on {threads} threads"
            );
        }
        return Ok(());
    }
    let dev = device::parse(&args.device)?;
    // Before any model work: rayon's idle workers spin for a while and would share the cores.
    let peak = (args.profile && dev.is_cpu())
        .then(|| crate::peak::measure(candle::utils::get_num_threads()).all_threads);
    if args.train {
        let variant: Variant = args.variant.parse()?;
        let cfg = ModelConfig::new(variant, args.nc);
        let mut times =
            crate::bench_train::time_steps(&cfg, args.batch, args.imgsz, args.iters, &dev)?;
        return report(&args, "train", &cfg, &dev, &mut times, (None, None, vec![]));
    }
    let (stored, precision) = rtdetr::execution(&dev, args.dtype);
    rtdetr::warn_if_emulated(precision);
    rtdetr_ops::with_precision(precision, || time_eval(&args, &dev, stored, peak))
}

/// The eval half of [`run`], in the precision it is called with.
fn time_eval(
    args: &Args,
    dev: &candle::Device,
    stored: DType,
    peak: Option<f64>,
) -> anyhow::Result<()> {
    let model = match &args.weights {
        Some(path) => RtDetr::load_as(path, dev, stored, None, None)?,
        None => {
            let variant: Variant = args.variant.parse()?;
            let cfg = ModelConfig::new(variant, args.nc);
            let varmap = VarMap::new();
            RtDetr::new(&cfg, VarBuilder::from_varmap(&varmap, stored, dev))?;
            // Plain tensors, as loaded weights are: variables would make every op record a graph.
            let tensors = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned variable map"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect();
            let mut model = RtDetr::new(&cfg, VarBuilder::from_tensors(tensors, stored, dev))?;
            model.set_fused(true)?;
            model
        }
    };
    let cfg = model.config().clone();
    let xs =
        Tensor::rand(0f32, 1., (args.batch, 3, args.imgsz, args.imgsz), dev)?.to_dtype(stored)?;
    model.forward_t(&xs, false)?;
    dev.synchronize()?;
    let mut times = Vec::with_capacity(args.iters);
    let mut parts = [vec![], vec![], vec![]];
    rtdetr_ops::profile::take();
    rtdetr_ops::profile::enable(args.layers);
    for _ in 0..args.iters {
        let start = Instant::now();
        if args.profile {
            let split = forward_by_part(&model, &xs)?;
            for (part, ms) in parts.iter_mut().zip(split) {
                part.push(ms);
            }
        } else {
            model.forward_t(&xs, false)?;
            dev.synchronize()?;
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    rtdetr_ops::profile::enable(false);
    let layers = layers(rtdetr_ops::profile::take(), args.iters);
    let parts = args.profile.then(|| {
        let [backbone, neck, decoder] = parts.map(|mut part| median(&mut part));
        Parts {
            backbone,
            neck,
            decoder,
        }
    });
    report(args, "eval", &cfg, dev, &mut times, (parts, peak, layers))
}

/// Prints the figures of `times` (and writes them with `--json`).
fn report(
    args: &Args,
    mode: &'static str,
    cfg: &ModelConfig,
    dev: &candle::Device,
    times: &mut [f64],
    (parts, peak, layers): (Option<Parts>, Option<f64>, Vec<Layer>),
) -> anyhow::Result<()> {
    let median_ms = median(times);
    let ops = rtdetr::thop_ops_by_part(cfg, args.imgsz, args.imgsz);
    let rate = |ops: u64, ms: f64| 2.0 * ops as f64 * args.batch as f64 / (ms * 1e6);
    let parts_gflop_per_s = parts.as_ref().map(|p| Parts {
        backbone: rate(ops[0], p.backbone),
        neck: rate(ops[1], p.neck),
        decoder: rate(ops[2], p.decoder),
    });
    let report = Report {
        mode,
        variant: variant_name(cfg, &args.variant, args.weights.is_some()),
        nc: cfg.nc(),
        imgsz: args.imgsz,
        batch: args.batch,
        device: format!("{dev:?}"),
        iters: args.iters,
        median_ms,
        min_ms: times[0],
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        images_per_s: args.batch as f64 * 1e3 / median_ms,
        gflop_per_s: rate(ops.iter().sum(), median_ms),
        parts_median_ms: parts,
        parts_gflop_per_s,
        peak_gflop_per_s: peak,
        layers,
    };
    println!(
        "rtdetr bench ({mode}): {} nc={} {}x{} batch {} on {}: median {:.1} ms, min {:.1} ms, {:.2} images/s ({} iterations)",
        report.variant, report.nc, args.imgsz, args.imgsz, args.batch, report.device, report.median_ms, report.min_ms, report.images_per_s, args.iters
    );
    if let (Some(ms), Some(rate)) = (&report.parts_median_ms, &report.parts_gflop_per_s) {
        println!(
            "  backbone {:.1} ms, neck {:.1} ms, decoder {:.1} ms (medians); {:.0} / {:.0} / {:.0} GFLOP/s, whole {:.0}",
            ms.backbone, ms.neck, ms.decoder, rate.backbone, rate.neck, rate.decoder, report.gflop_per_s
        );
    }
    if let Some(peak) = report.peak_gflop_per_s {
        println!(
            "  measured f32 FMA peak {peak:.0} GFLOP/s: backbone {:.0} %, whole {:.0} %",
            report
                .parts_gflop_per_s
                .as_ref()
                .map_or(0.0, |r| 100.0 * r.backbone / peak),
            100.0 * report.gflop_per_s / peak
        );
    }
    if !report.layers.is_empty() {
        println!("\n| layer | shape | calls | MFLOP | ms | GFLOP/s |\n|---|---|---|---|---|---|");
        let mut total = 0.0;
        for l in &report.layers {
            total += l.ms;
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.0} |",
                l.kind,
                l.shape,
                l.calls.round(),
                l.mflop,
                l.ms,
                l.gflop_per_s
            );
        }
        println!(
            "| everything else | | | | {:.1} | |",
            (report.mean_ms - total).max(0.0)
        );
    }
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

/// Sorts `times` and returns their median.
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

/// One eval forward pass, timed per part (with a device synchronisation after each).
fn forward_by_part(model: &RtDetr, xs: &Tensor) -> anyhow::Result<[f64; 3]> {
    let dev = xs.device();
    let start = Instant::now();
    let maps = model.backbone().forward_t(xs, false)?;
    dev.synchronize()?;
    let backbone = start.elapsed().as_secs_f64() * 1e3;
    let [_, p3, p4, p5] = maps.as_slice() else {
        bail!("the backbone returned {} maps, expected 4", maps.len())
    };
    let start = Instant::now();
    let neck = model.neck().forward_t(p3, p4, p5, false)?;
    dev.synchronize()?;
    let neck_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    model
        .decoder()
        .forward(&[neck.x3, neck.f4, neck.f5], false)?;
    dev.synchronize()?;
    Ok([backbone, neck_ms, start.elapsed().as_secs_f64() * 1e3])
}
