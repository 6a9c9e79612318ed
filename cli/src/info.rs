use std::fmt::Write as _;

use anyhow::Context;
use effnetv2::MbConvConfig;
use rtdetr::{Manifest, ModelConfig, Variant};

/// Arguments of `rtdetr info`.
#[derive(clap::Args)]
pub struct Args {
    /// An ONNX file to describe instead (inputs, outputs, operator counts, metadata).
    model: Option<std::path::PathBuf>,
    /// Model variant: s, m, l or xl.
    #[arg(long, default_value = "s", value_parser = clap::builder::PossibleValuesParser::new(["s", "m", "l", "xl"]))]
    variant: String,
    /// Number of classes (sizes the detection heads).
    #[arg(long, default_value_t = 80, value_parser = crate::flags::class_count)]
    nc: usize,
    /// Image size for the GFLOPs figure (a multiple of 32).
    #[arg(long, default_value_t = 640, value_parser = crate::flags::imgsz)]
    imgsz: usize,
    /// One row per backbone block instead of one per stage.
    #[arg(long)]
    blocks: bool,
}

/// One row of the table.
struct Row {
    layer: String,
    key: String,
    module: String,
    shape: String,
    params: usize,
}

fn block_kind(block: &MbConvConfig) -> &'static str {
    match (block.expand_ratio, block.fused) {
        (1, _) => "ConvBNAct 3x3",
        (_, true) => "Fused-MBConv",
        _ => "MBConv+SE",
    }
}

fn backbone_rows(cfg: &ModelConfig, manifest: &Manifest, per_block: bool) -> Vec<Row> {
    let bb = &cfg.backbone;
    let blocks = bb.blocks();
    let strides = bb.block_strides();
    let mut rows = vec![Row {
        layer: "model.0".into(),
        key: "stem".into(),
        module: "ConvBNAct 3x3 s2".into(),
        shape: format!("3->{} /2", bb.stem_ch()),
        params: manifest.parameter_count_under("model.0.stem"),
    }];
    let mut first = 0;
    for stage in &bb.stages {
        let range = first..first + stage.layers;
        first = range.end;
        let groups: Vec<std::ops::Range<usize>> = if per_block {
            range.map(|i| i..i + 1).collect()
        } else {
            vec![range]
        };
        for group in groups {
            let params = group
                .clone()
                .map(|i| manifest.parameter_count_under(&format!("model.0.blocks.{i}")))
                .sum();
            let key = if group.len() == 1 {
                format!("blocks.{}", group.start)
            } else {
                format!("blocks.{}-{}", group.start, group.end - 1)
            };
            let (head, tail) = (&blocks[group.start], &blocks[group.end - 1]);
            rows.push(Row {
                layer: "model.0".into(),
                key,
                module: block_kind(head).into(),
                shape: format!(
                    "{}->{} /{}",
                    head.in_ch,
                    tail.block_out_ch(),
                    strides[group.end - 1]
                ),
                params,
            });
        }
    }
    rows
}

fn neck_rows(cfg: &ModelConfig, manifest: &Manifest) -> Vec<Row> {
    let n = &cfg.neck;
    let (hd, [p3, p4, p5]) = (n.hidden, n.in_channels);
    let rep_c3 = format!("RepC3 n={}", n.blocks);
    let layers: [(&str, String); 18] = [
        ("Conv 1x1", format!("{p5}->{hd} /32")),
        ("AIFI", format!("{hd}, ffn {}, {} heads", n.ffn, n.heads)),
        ("Conv 1x1 SiLU", format!("{hd}->{hd} /32")),
        ("Upsample x2", "/16".into()),
        ("Conv 1x1", format!("{p4}->{hd} /16")),
        ("Concat", format!("{}", 2 * hd)),
        (&rep_c3, format!("{}->{hd} /16", 2 * hd)),
        ("Conv 1x1 SiLU", format!("{hd}->{hd} /16")),
        ("Upsample x2", "/8".into()),
        ("Conv 1x1", format!("{p3}->{hd} /8")),
        ("Concat", format!("{}", 2 * hd)),
        (&rep_c3, format!("{}->{hd} /8 (X3)", 2 * hd)),
        ("Conv 3x3 s2 SiLU", format!("{hd}->{hd} /16")),
        ("Concat", format!("{}", 2 * hd)),
        (&rep_c3, format!("{}->{hd} /16 (F4)", 2 * hd)),
        ("Conv 3x3 s2 SiLU", format!("{hd}->{hd} /32")),
        ("Concat", format!("{}", 2 * hd)),
        (&rep_c3, format!("{}->{hd} /32 (F5)", 2 * hd)),
    ];
    layers
        .into_iter()
        .enumerate()
        .map(|(i, (module, shape))| Row {
            layer: format!("model.{}", i + 1),
            key: String::new(),
            module: module.to_string(),
            shape,
            params: manifest.parameter_count_under(&format!("model.{}", i + 1)),
        })
        .collect()
}

fn decoder_rows(cfg: &ModelConfig, manifest: &Manifest) -> Vec<Row> {
    let d = &cfg.decoder;
    let parts = [
        (
            "input_proj",
            "Conv 1x1 + BN".to_string(),
            format!("{} levels", d.levels()),
        ),
        (
            "decoder.layers",
            format!("{} deformable layers", d.layers),
            format!("{} heads, {} points", d.heads, d.points),
        ),
        (
            "query_pos_head",
            "MLP".into(),
            format!("4->{}->{}", 2 * d.hidden, d.hidden),
        ),
        (
            "enc_output",
            "Linear + LayerNorm".into(),
            format!("{0}->{0}", d.hidden),
        ),
        (
            "enc_score_head",
            "Linear".into(),
            format!("{}->{}", d.hidden, d.nc),
        ),
        ("enc_bbox_head", "MLP".into(), format!("{}->4", d.hidden)),
        (
            "dec_score_head",
            format!("{} x Linear", d.layers),
            format!("{}->{}", d.hidden, d.nc),
        ),
        (
            "dec_bbox_head",
            format!("{} x MLP", d.layers),
            format!("{}->4", d.hidden),
        ),
        (
            "denoising_class_embed",
            "Embedding".into(),
            format!("{}x{}", d.nc, d.hidden),
        ),
    ];
    parts
        .into_iter()
        .map(|(key, module, shape)| Row {
            layer: "model.19".into(),
            key: key.into(),
            module,
            shape,
            params: manifest.parameter_count_under(&format!("model.19.{key}")),
        })
        .collect()
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table `rtdetr info` prints.
fn render(variant: Variant, nc: usize, imgsz: usize, per_block: bool) -> anyhow::Result<String> {
    anyhow::ensure!(
        imgsz > 0 && imgsz.is_multiple_of(32),
        "--imgsz {imgsz} is not a positive multiple of 32"
    );
    let cfg = ModelConfig::new(variant, nc);
    let manifest = Manifest::model(&cfg).context("building the model")?;
    let rows: Vec<Row> = [
        backbone_rows(&cfg, &manifest, per_block),
        neck_rows(&cfg, &manifest),
        decoder_rows(&cfg, &manifest),
    ]
    .into_iter()
    .flatten()
    .collect();
    let total = manifest.parameter_count();
    let listed: usize = rows.iter().map(|r| r.params).sum();
    anyhow::ensure!(
        listed == total,
        "the layer table covers {listed} of {total} parameters"
    );

    let mut out = String::new();
    writeln!(
        out,
        "RT-DETR-EfficientNetV2-{} (nc={nc})",
        variant.name().to_uppercase()
    )?;
    writeln!(
        out,
        "{:<9} {:<22} {:<22} {:<24} {:>12}",
        "layer", "key", "module", "channels / stride", "params"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<9} {:<22} {:<22} {:<24} {:>12}",
            r.layer,
            r.key,
            r.module,
            r.shape,
            thousands(r.params)
        )?;
    }
    let backbone = manifest.parameter_count_under("model.0");
    let decoder = manifest.parameter_count_under("model.19");
    writeln!(
        out,
        "{} parameters (backbone {}, neck {}, decoder {}), {:.1} GFLOPs at {imgsz}x{imgsz}",
        thousands(total),
        thousands(backbone),
        thousands(total - backbone - decoder),
        thousands(decoder),
        rtdetr::gflops(&cfg, imgsz, imgsz)
    )?;
    Ok(out)
}

/// Prints the layer table of the chosen variant.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.model {
        let model = rtdetr::onnx::read_model(path)?;
        print!("{}", rtdetr::onnx::Summary::of(&model));
        return Ok(());
    }
    let variant: Variant = args.variant.parse()?;
    print!("{}", render(variant, args.nc, args.imgsz, args.blocks)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_of_the_seed_model() {
        let s = render(Variant::S, 1, 640, false).unwrap();
        assert!(s.contains("38,307,379 parameters (backbone 19,847,248, neck 11,156,224, decoder 7,303,907), 107.5 GFLOPs at 640x640"), "{s}");
        assert!(s.contains("blocks.10-15"), "{s}");
        let xl = render(Variant::Xl, 80, 640, true).unwrap();
        assert!(xl.contains("224,770,596 parameters"), "{xl}");
        assert!(xl.contains("blocks.99 "), "{xl}");
        assert!(render(Variant::S, 1, 300, false).is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(38_307_379), "38,307,379");
    }
}
