use std::fmt::Write as _;

use anyhow::Context;
use effnetv2::MbConvConfig;
use rtdetr::{Manifest, Variant};

/// Arguments of `rtdetr info`.
#[derive(clap::Args)]
pub struct Args {
    /// Model variant: s, m, l or xl.
    #[arg(long, default_value = "s", value_parser = clap::builder::PossibleValuesParser::new(["s", "m", "l", "xl"]))]
    variant: String,
    /// Number of classes (sizes the detection head).
    #[arg(long, default_value_t = 80)]
    nc: usize,
    /// One row per block instead of one per stage.
    #[arg(long)]
    blocks: bool,
}

/// One row of the table: a run of consecutive backbone blocks (or the stem).
struct Row {
    name: String,
    kind: &'static str,
    c_in: usize,
    c_out: usize,
    stride: usize,
    params: usize,
}

fn block_kind(block: &MbConvConfig) -> &'static str {
    match (block.expand_ratio, block.fused) {
        (1, _) => "ConvBNAct 3x3",
        (_, true) => "Fused-MBConv",
        _ => "MBConv+SE",
    }
}

fn backbone_rows(variant: Variant, per_block: bool) -> anyhow::Result<Vec<Row>> {
    let cfg = variant.backbone();
    let manifest = Manifest::backbone(variant).context("building the backbone")?;
    let blocks = cfg.blocks();
    let strides = cfg.block_strides();
    let mut rows = vec![Row {
        name: "stem".into(),
        kind: "ConvBNAct 3x3 s2",
        c_in: 3,
        c_out: cfg.stem_ch(),
        stride: 2,
        params: manifest.parameter_count_under("stem"),
    }];
    let mut first = 0;
    for stage in &cfg.stages {
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
                .map(|i| manifest.parameter_count_under(&format!("blocks.{i}")))
                .sum();
            let name = if group.len() == 1 {
                format!("blocks.{}", group.start)
            } else {
                format!("blocks.{}-{}", group.start, group.end - 1)
            };
            rows.push(Row {
                name,
                kind: block_kind(&blocks[group.start]),
                c_in: blocks[group.start].in_ch,
                c_out: blocks[group.end - 1].block_out_ch(),
                stride: strides[group.end - 1],
                params,
            });
        }
    }
    let listed: usize = rows.iter().map(|r| r.params).sum();
    anyhow::ensure!(
        listed == manifest.parameter_count(),
        "layer table covers {listed} of {} parameters",
        manifest.parameter_count()
    );
    Ok(rows)
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
fn render(variant: Variant, nc: usize, per_block: bool) -> anyhow::Result<String> {
    let rows = backbone_rows(variant, per_block)?;
    let total: usize = rows.iter().map(|r| r.params).sum();
    let mut out = String::new();
    writeln!(
        out,
        "RT-DETR-EfficientNetV2-{} (nc={nc})",
        variant.name().to_uppercase()
    )?;
    writeln!(
        out,
        "{:<10} {:<16} {:<18} {:>9} {:>6} {:>13}",
        "layer", "key", "module", "in->out", "stride", "params"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<10} {:<16} {:<18} {:>9} {:>6} {:>13}",
            "model.0",
            r.name,
            r.kind,
            format!("{}->{}", r.c_in, r.c_out),
            r.stride,
            thousands(r.params)
        )?;
    }
    let widths = variant.backbone().widths();
    writeln!(
        out,
        "backbone (model.0): {} parameters, outputs {widths:?} at strides [4, 8, 16, 32]",
        thousands(total)
    )?;
    writeln!(
        out,
        "neck (model.1-18) and decoder (model.19): not in this build yet"
    )?;
    Ok(out)
}

/// Prints the layer table of the chosen variant.
pub fn run(args: Args) -> anyhow::Result<()> {
    let variant: Variant = args.variant.parse().map_err(anyhow::Error::msg)?;
    print!("{}", render(variant, args.nc, args.blocks)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_totals_are_the_backbone_counts() {
        let s = render(Variant::S, 1, false).unwrap();
        assert!(
            s.contains("backbone (model.0): 19,847,248 parameters"),
            "{s}"
        );
        assert!(s.contains("blocks.10-15"), "{s}");
        let xl = render(Variant::Xl, 80, true).unwrap();
        assert!(xl.contains("206,017,048"), "{xl}");
        assert!(xl.contains("blocks.99 "), "{xl}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(38_307_379), "38,307,379");
    }
}
