//! `rtdetr`: one binary for RT-DETR with an EfficientNetV2 backbone.

mod info;

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
    /// Print the layer table and parameter counts of a model variant.
    Info(info::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(args) => info::run(args),
    }
}
