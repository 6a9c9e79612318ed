//! `rtdetr`: one binary for RT-DETR with an EfficientNetV2 backbone.

mod allocator;
mod bench;
mod bench_train;
mod coco_ids;
mod convert;
mod demo;
mod detect;
mod device;
mod export;
mod flags;
mod info;
mod names;
mod output;
mod peak;
mod predictions;
mod run_dir;
mod sources;
mod track;
mod train;
mod val;
mod video;

use clap::{Parser, Subcommand};

/// RT-DETR with an EfficientNetV2 backbone, in Rust.
#[derive(Parser)]
#[command(name = "rtdetr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole job offline on a built-in default: a synthetic dataset, a short training run of
    /// a small detector, validation and detection.
    Demo(demo::Args),
    /// Detect objects in images.
    Detect(detect::Args),
    /// Train (or fine-tune) on a YOLO-format dataset.
    Train(train::Args),
    /// Time the detector's forward pass on random input.
    Bench(bench::Args),
    /// Print the layer table, parameter count and GFLOPs of a model variant.
    Info(info::Args),
    /// Convert weights (ultralytics .pt, state dicts, official EfficientNetV2 .npy, timm,
    /// torchvision, or a Hugging Face Hub download) to safetensors with this model's keys.
    Convert(convert::Args),
    /// Export weights to ONNX (ultralytics' RT-DETR export contract).
    Export(export::Args),
    /// Track objects over a sequence of frames (ByteTrack, as ultralytics' track mode).
    Track(track::Args),
    /// Evaluate COCO results against a COCO ground truth (mAP50-95, mAP50, per-class AP).
    Val(val::Args),
}

fn main() -> std::process::ExitCode {
    // candle's element-wise thread pool spins 25,000 rounds after every job by default; on small
    // machines the spinning worker starves the matmul threads (training ran 3× slower). Parking
    // early costs nothing measurable. Set before the pool starts, while only this thread runs.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    // The whole command runs on a worker of candle's thread pool: each parallel section of a
    // small op is then a fork on that pool instead of a wake-up of sleeping threads by a thread
    // outside it (the demo's small model trained 1.6× faster; BENCHMARKS.md).
    match candle::Device::Cpu.with_context(|| dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one line, each cause once: a user error is a message, not a
/// backtrace (whatever `RUST_BACKTRACE` says), and many of our errors already quote their cause.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Runs a command line given as words (after the program name).
fn run_args(args: Vec<String>) -> anyhow::Result<()> {
    dispatch(Cli::try_parse_from(
        std::iter::once("rtdetr".to_string()).chain(args),
    )?)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Info(args) => info::run(args),
        Command::Val(args) => val::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Export(args) => export::run(args),
        Command::Track(args) => track::run(args),
    }
}
