use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle::DType;
use rtdetr::{infer_config, KeyReport, Manifest, ModelConfig, Variant, CONFIG_KEY};
use weight_convert::{convert_file, Options, Source};

/// Arguments of `rtdetr convert`.
#[derive(clap::Args)]
pub struct Args {
    /// The weights to convert: an ultralytics `best.pt`, a state-dict `.pt`/`.pth`, an official
    /// EfficientNetV2 `.npy`, or timm/torchvision weights. With `--hub`, the file in the repository.
    input: Option<String>,
    /// The safetensors file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Treat the input as this kind instead of detecting it from its content.
    #[arg(long, value_enum)]
    from: Option<From>,
    /// Element type of the floating-point tensors written.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Model variant (s, m, l, xl) to check against, when it cannot be told from the tensors.
    #[arg(long)]
    variant: Option<Variant>,
    /// Class count to check against, when it cannot be told from the tensors.
    #[arg(long)]
    nc: Option<usize>,
    /// A model configuration JSON (as stored in `rtdetr_config` metadata) for custom sizes
    /// (default: a safetensors input's own `rtdetr_config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Prepended to every key, e.g. `model.0.` to merge a converted backbone into a detector.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Download from this Hugging Face Hub repository (honours HF_ENDPOINT, HF_HOME and
    /// HF_HUB_OFFLINE) and convert the download.
    #[arg(long)]
    hub: Option<String>,
    /// The hub revision (branch, tag or commit).
    #[arg(long, requires = "hub")]
    revision: Option<String>,
}

/// `--from` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum From {
    Ultralytics,
    StateDict,
    Npy,
    Timm,
    Torchvision,
}

/// `--dtype` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Dtype {
    F32,
    F16,
}

/// What the converted tensors were checked against.
#[derive(Debug)]
pub struct Checked {
    /// `s`, `m`, `l`, `xl` or `custom`.
    pub variant: String,
    /// Class count (detectors only).
    pub nc: Option<usize>,
    /// Trainable parameters.
    pub parameters: usize,
    /// The detector configuration, stored beside the weights.
    pub config: Option<ModelConfig>,
}

/// Runs `rtdetr convert`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let input = match &args.hub {
        Some(repo) => {
            weight_convert::hub::download(repo, args.revision.as_deref(), args.input.as_deref())?
        }
        None => PathBuf::from(
            args.input
                .as_deref()
                .context("give the file to convert (or --hub REPO_ID)")?,
        ),
    };
    let from = args.from.map(|f| match f {
        From::Ultralytics => Source::Ultralytics,
        From::StateDict => Source::StateDict,
        From::Npy => Source::OfficialNpy,
        From::Timm => Source::Timm,
        From::Torchvision => Source::Torchvision,
    });
    let converted = convert_file(
        &input,
        &Options {
            from,
            prefix: args.prefix.clone(),
        },
    )?;
    let shapes: BTreeMap<String, Vec<usize>> = converted
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    let config = args
        .config
        .as_ref()
        .map(|path| -> anyhow::Result<ModelConfig> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a model configuration", path.display()))
        })
        .transpose()?;
    let stored = converted
        .metadata
        .get(CONFIG_KEY)
        .map(|json| serde_json::from_str::<ModelConfig>(json))
        .transpose()
        .with_context(|| {
            format!(
                "{}: metadata {CONFIG_KEY} is not a model configuration",
                input.display()
            )
        })?;
    let config = config.or(stored);
    let checked = check(&shapes, &args.prefix, config, args.variant, args.nc)
        .map_err(|e| anyhow::anyhow!("{}: converted, but {e:#}", input.display()))?;
    let dtype = match args.dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
    };
    let tensors = converted.to_dtype(dtype)?;
    let mut metadata: HashMap<String, String> = converted.metadata.clone().into_iter().collect();
    metadata.insert("source".into(), converted.source.to_string());
    if let Some(cfg) = &checked.config {
        metadata.insert(CONFIG_KEY.into(), serde_json::to_string(cfg)?);
    }
    rtdetr::checkpoint::save_atomic(&args.output, &tensors, metadata)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{} ({}) -> {}: variant {}, {} classes, {} parameters, {} tensors ({} ignored)",
        input.display(),
        converted.source,
        args.output.display(),
        checked.variant,
        checked
            .nc
            .map_or_else(|| "no".to_string(), |n| n.to_string()),
        checked.parameters,
        tensors.len(),
        converted.ignored.len()
    );
    Ok(())
}

/// Checks that `shapes` load strictly into a detector (keys under `model.`) or a backbone
/// (keys after `prefix`): no missing, unexpected or mis-shaped tensor.
pub fn check(
    shapes: &BTreeMap<String, Vec<usize>>,
    prefix: &str,
    config: Option<ModelConfig>,
    variant: Option<Variant>,
    nc: Option<usize>,
) -> anyhow::Result<Checked> {
    if shapes.keys().all(|k| k.starts_with("model.")) && prefix.is_empty() {
        let cfg = match config {
            Some(cfg) => cfg,
            None => infer_config(shapes, variant, nc)?,
        };
        let manifest = Manifest::model(&cfg)?;
        let report = KeyReport::compare(&manifest, shapes);
        if !report.is_clean() {
            bail!("the tensors do not load into the detector: {report}");
        }
        let variant = Variant::ALL
            .into_iter()
            .find(|v| ModelConfig::new(*v, cfg.nc()) == cfg)
            .map_or_else(|| "custom".to_string(), |v| v.to_string());
        return Ok(Checked {
            variant,
            nc: Some(cfg.nc()),
            parameters: manifest.parameter_count(),
            config: Some(cfg),
        });
    }
    let local: BTreeMap<String, Vec<usize>> = shapes
        .iter()
        .map(|(k, s)| (k.strip_prefix(prefix).unwrap_or(k).to_string(), s.clone()))
        .collect();
    let inferring = config.is_none() && variant.is_none();
    let candidates: Vec<(String, effnetv2::Config)> = match (config, variant) {
        (Some(cfg), _) => vec![("custom".into(), cfg.backbone)],
        (None, Some(v)) => vec![(v.to_string(), v.backbone())],
        (None, None) => Variant::ALL
            .into_iter()
            .map(|v| (v.to_string(), v.backbone()))
            .collect(),
    };
    let mut reports = Vec::new();
    for (name, cfg) in candidates {
        let manifest = Manifest::record(|vb| effnetv2::EfficientNetV2::new(&cfg, vb))?;
        let report = KeyReport::compare(&manifest, &local);
        if report.is_clean() {
            return Ok(Checked {
                variant: name,
                nc: None,
                parameters: manifest.parameter_count(),
                config: None,
            });
        }
        reports.push(format!("{name}: {report}"));
    }
    if inferring {
        bail!(
            "its {} tensors (stem.0.weight {:?}) match none of the s, m, l, xl backbones \
             (pass --variant or --config to see the differences)",
            local.len(),
            local.get("stem.0.weight")
        )
    }
    bail!(
        "the tensors do not load into the backbone: {}",
        reports.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(file: &str) -> Vec<(String, Vec<usize>)> {
        let path = fixtures::data_dir().join("convert").join(file);
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        map.into_iter()
            .map(|(k, v)| {
                let s = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                (k, s)
            })
            .collect()
    }

    /// The full-size S key lists of timm, torchvision and the official release (written by
    /// gen_convert.py from the real libraries) rename onto exactly our S backbone, and the
    /// variant is inferred from them.
    #[test]
    fn full_size_names_map_onto_the_s_backbone() {
        for (file, rename) in [
            (
                "names_timm_tf_efficientnetv2_s.json",
                weight_convert::timm::rename as fn(&[String]) -> _,
            ),
            (
                "names_torchvision_efficientnet_v2_s.json",
                weight_convert::torchvision::rename,
            ),
            ("names_official_s.json", weight_convert::official::rename),
        ] {
            let list = names(file);
            let keys: Vec<String> = list.iter().map(|(k, _)| k.clone()).collect();
            let renames = rename(&keys).unwrap();
            let mut shapes = BTreeMap::new();
            for ((key, shape), r) in list.iter().zip(renames) {
                if let weight_convert::rename::Rename::To(to) = r {
                    let shape = if file.contains("official") {
                        let t = candle::Tensor::zeros(
                            shape.as_slice(),
                            DType::F32,
                            &candle::Device::Cpu,
                        )
                        .unwrap();
                        weight_convert::official::to_torch_layout(key, t)
                            .unwrap()
                            .dims()
                            .to_vec()
                    } else {
                        shape.clone()
                    };
                    shapes.insert(to, shape);
                }
            }
            let checked =
                check(&shapes, "", None, None, None).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(checked.variant, "s", "{file}");
            assert_eq!(checked.parameters, 19_847_248, "{file}");
        }
    }
}
