//! `rtdetr`: one binary for RT-DETR with an EfficientNetV2 backbone.

mod bench;
mod detect;
mod device;
mod draw;
mod info;
mod names;
mod output;
mod sources;
mod val;

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
    /// Detect objects in images.
    Detect(detect::Args),
    /// Time the detector's forward pass on random input.
    Bench(bench::Args),
    /// Print the layer table, parameter count and GFLOPs of a model variant.
    Info(info::Args),
    /// Evaluate COCO results against a COCO ground truth (mAP50-95, mAP50, per-class AP).
    Val(val::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Detect(args) => detect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Info(args) => info::run(args),
        Command::Val(args) => val::run(args),
    }
}
