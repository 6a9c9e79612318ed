use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rtdetr::data::{open_split, Augment, YoloDataset};
use rtdetr::train::{AugmentConfig, TrainConfig, TrainSetup, Trainer};
use rtdetr::{ModelConfig, Variant};

use crate::device;

/// Arguments of `rtdetr train`.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset: an ultralytics data.yaml (YOLO labels beside the images), or a COCO
    /// `instances_train*.json` (images in `../images/NAME`, `../NAME` or beside it; val from the
    /// `instances_val*.json` next to it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model variant: s, m, l or xl.
    #[arg(long, default_value = "s", value_parser = clap::builder::PossibleValuesParser::new(["s", "m", "l", "xl"]))]
    variant: String,
    /// A model configuration (JSON `ModelConfig`) instead of a variant, e.g. a small one for CPU.
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Initial weights: a converted checkpoint, or a backbone under `model.0.` (from scratch when absent).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Epochs.
    #[arg(long, default_value_t = 100, value_parser = crate::flags::positive)]
    epochs: usize,
    /// Images per batch (gradients are accumulated to --nbs).
    #[arg(long, default_value_t = 16, value_parser = crate::flags::positive)]
    batch: usize,
    /// Training and validation size (a multiple of 32).
    #[arg(long, default_value_t = 640, value_parser = crate::flags::imgsz)]
    imgsz: usize,
    /// Nominal batch size: gradients are accumulated over round(nbs/batch) batches.
    #[arg(long, default_value_t = 64, value_parser = crate::flags::positive)]
    nbs: usize,
    /// Initial learning rate (default 'auto': 0.002·5/(4+nc)).
    #[arg(long, value_parser = crate::flags::positive_real)]
    lr0: Option<f64>,
    /// Cosine learning-rate decay instead of linear.
    #[arg(long)]
    cos_lr: bool,
    /// Warm-up epochs.
    #[arg(long, default_value_t = 3.0, value_parser = crate::flags::non_negative)]
    warmup_epochs: f64,
    /// Seed of initialisation, data order, augmentation and denoising noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No augmentation (otherwise mosaic, random affine, HSV jitter and horizontal flip).
    #[arg(long)]
    no_augment: bool,
    /// Mosaic probability (0 turns it off).
    #[arg(long, default_value_t = 1.0, value_parser = crate::flags::fraction_f32)]
    mosaic: f32,
    /// Mosaic is off for the last N epochs (0 keeps it on).
    #[arg(long, default_value_t = 10)]
    close_mosaic: usize,
    /// Also save the training state every N optimizer steps within an epoch, so that a killed run
    /// resumes mid-epoch (0: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    save_period_steps: u64,
    /// Output folder (default runs/detect/train, train2, ..., the first free one).
    #[arg(long)]
    save_dir: Option<PathBuf>,
    /// Reuse runs/detect/train instead of numbering a new folder.
    #[arg(long)]
    exist_ok: bool,
    /// Continue the run in this folder from its last saved state (an epoch end, or an optimizer
    /// step within an epoch with --save-period-steps).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn report(data: &YoloDataset, split: &str) {
    for problem in &data.problems {
        eprintln!("warning: {problem}");
    }
    let boxes: usize = data.samples.iter().map(|s| s.labels.len()).sum();
    eprintln!(
        "{split}: {} images ({} backgrounds), {boxes} boxes, {} problems",
        data.samples.len(),
        data.backgrounds(),
        data.problems.len()
    );
}

/// Trains (or resumes) a detector and validates it after every epoch.
pub fn run(args: Args) -> anyhow::Result<()> {
    let dev = device::parse(&args.device)?;
    let mut trainer = match &args.resume {
        Some(dir) => {
            let meta = rtdetr::read_metadata(dir.join("last.state.safetensors"))?;
            let data = meta
                .get("data")
                .context("the run does not record its dataset")?;
            let train = open_split(Path::new(data), "train")?;
            let val = open_split(Path::new(data), "val")?;
            Trainer::resume(dir.clone(), train.samples, val.samples, dev)?
        }
        None => {
            let data_path = args
                .data
                .as_deref()
                .context("--data is required (or --resume DIR)")?;
            if args.imgsz == 0 || !args.imgsz.is_multiple_of(32) {
                bail!("--imgsz {} is not a positive multiple of 32", args.imgsz);
            }
            let train = open_split(data_path, "train")?;
            let val = open_split(data_path, "val")?;
            report(&train, "train");
            report(&val, "val");
            if train.samples.is_empty() {
                bail!("{}: no usable training images", data_path.display());
            }
            let nc = train.names.len();
            let model = match &args.model_config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let mut cfg: ModelConfig = serde_json::from_str(&text).with_context(|| {
                        format!("{}: not a model configuration", path.display())
                    })?;
                    cfg.decoder.nc = nc;
                    cfg
                }
                None => ModelConfig::new(args.variant.parse::<Variant>()?, nc),
            };
            let cfg = TrainConfig {
                epochs: args.epochs,
                batch: args.batch,
                imgsz: args.imgsz,
                nbs: args.nbs,
                lr0: args.lr0,
                cos_lr: args.cos_lr,
                warmup_epochs: args.warmup_epochs,
                seed: args.seed,
                augment: if args.no_augment {
                    None
                } else {
                    Some(AugmentConfig {
                        mosaic: args.mosaic,
                        ..Augment::default().into()
                    })
                },
                close_mosaic: args.close_mosaic,
                save_period_steps: args.save_period_steps,
                ..TrainConfig::default()
            };
            let save_dir = args.save_dir.clone().unwrap_or_else(|| {
                crate::run_dir::next(Path::new("runs/detect"), "train", args.exist_ok)
            });
            let data_abs =
                std::fs::canonicalize(data_path).unwrap_or_else(|_| data_path.to_path_buf());
            let mut t = Trainer::new(TrainSetup {
                model,
                train: cfg,
                names: train.names,
                train_samples: train.samples,
                val_samples: val.samples,
                weights: args.weights.clone(),
                save_dir,
                device: dev,
            })?;
            t.set_note("data", &data_abs.display().to_string());
            t
        }
    };
    let epochs = trainer.config().epochs;
    eprintln!(
        "training to {} for {epochs} epochs",
        trainer.save_dir().display()
    );
    while trainer.epochs_done() < epochs {
        let epoch = trainer.epochs_done();
        let bar = indicatif::ProgressBar::new(trainer.batches_per_epoch() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {bar:25} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(trainer.batches_done_in_epoch() as u64);
        bar.reset_eta();
        bar.set_message("first batch ...");
        bar.enable_steady_tick(std::time::Duration::from_secs(1));
        let stats = trainer.run_epoch(|i, _, [giou, cls, l1]| {
            bar.set_position(i as u64 + 1);
            bar.set_message(format!("giou {giou:.3} cls {cls:.3} l1 {l1:.3}"));
        })?;
        bar.finish_and_clear();
        eprintln!(
            "epoch {}/{epochs}: giou {:.3} cls {:.3} l1 {:.3} | val mAP50-95 {:.4} mAP50 {:.4}",
            epoch + 1,
            stats.giou_loss,
            stats.cls_loss,
            stats.l1_loss,
            stats.map50_95,
            stats.map50
        );
    }
    print_summary(&trainer, &args.device)?;
    Ok(())
}

/// The closing summary, as ultralytics prints it after training: the best epoch and its mAP, the
/// ultralytics' per-class table of `best.safetensors` on the validation images, and where
/// everything is.
pub fn print_summary(trainer: &Trainer, device: &str) -> anyhow::Result<()> {
    let dir = trainer.save_dir();
    let best = trainer
        .history()
        .iter()
        .max_by(|a, b| a.map50_95.total_cmp(&b.map50_95));
    let Some(best) = best else {
        return Ok(());
    };
    eprintln!(
        "\nbest epoch {}: mAP50-95 {:.4}, mAP50 {:.4}",
        best.epoch + 1,
        best.map50_95,
        best.map50
    );
    let weights = dir.join("best.safetensors");
    let options = rtdetr::DetectorOptions {
        imgsz: Some(trainer.config().imgsz),
        device: crate::device::parse(device)?,
        names: Some(trainer.names().to_vec()),
        ..rtdetr::DetectorOptions::validation()
    };
    let detector = rtdetr::Detector::from_file(&weights, options)?;
    let validation = rtdetr::validate(&detector, trainer.val_samples(), trainer.config().batch)?;
    eprintln!(
        "{}\nCOCO mAP50-95 {:.4}, mAP50 {:.4}",
        validation.metrics.table(trainer.names()),
        validation.coco.map50_95(),
        validation.coco.map50()
    );
    eprintln!(
        "\nweights: {} (best), {} (last)",
        weights.display(),
        dir.join("last.safetensors").display()
    );
    eprintln!(
        "results: {}, {}",
        dir.join("results.csv").display(),
        dir.join("results.png").display()
    );
    Ok(())
}
