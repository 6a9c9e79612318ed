use serde::{Deserialize, Serialize};

/// One row of the seed's structure table (`MBConvConfig`): a stage of `layers` identical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbConvConfig {
    /// Channel expansion of the block's hidden layer.
    pub expand_ratio: usize,
    /// Kernel size of the spatial convolution.
    pub kernel: usize,
    /// Stride of the stage's first block (the others use 1).
    pub stride: usize,
    /// Input channels of the stage's first block.
    pub in_ch: usize,
    /// Output channels of every block of the stage.
    pub out_ch: usize,
    /// Number of blocks in the stage.
    pub layers: usize,
    /// Squeeze-and-excitation after the depthwise convolution (MBConv only).
    pub use_se: bool,
    /// Fused-MBConv (one full 3×3 convolution) instead of 1×1 expand + depthwise.
    pub fused: bool,
}

impl MbConvConfig {
    /// A row in the seed's tuple order:
    /// `(expand_ratio, kernel, stride, in_ch, out_ch, layers, use_se, fused)`.
    pub const fn row(
        (expand_ratio, kernel, stride, in_ch, out_ch, layers, use_se, fused): (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            bool,
            bool,
        ),
    ) -> Self {
        Self {
            expand_ratio,
            kernel,
            stride,
            in_ch,
            out_ch,
            layers,
            use_se,
            fused,
        }
    }

    /// Hidden width of the block, `adjust_channels(in_ch, expand_ratio)`.
    pub fn inter_ch(&self) -> usize {
        adjust_channels(self.in_ch, self.expand_ratio)
    }

    /// Output width: a single fused conv (expand ratio 1) outputs its hidden width.
    pub fn block_out_ch(&self) -> usize {
        if self.expand_ratio == 1 {
            self.inter_ch()
        } else {
            self.out_ch
        }
    }

    /// Residual connection: stride 1 and equal in/out widths.
    pub fn use_skip(&self) -> bool {
        self.stride == 1 && self.in_ch == self.out_ch
    }
}

/// `MBConvConfig.adjust_channels`: `channel·factor` rounded to a multiple of 8, never below 90 %.
pub fn adjust_channels(channel: usize, factor: usize) -> usize {
    const DIVISIBLE: usize = 8;
    let wanted = channel * factor;
    let rounded = ((wanted + DIVISIBLE / 2) / DIVISIBLE * DIVISIBLE).max(DIVISIBLE);
    if (rounded as f64) < 0.9 * wanted as f64 {
        rounded + DIVISIBLE
    } else {
        rounded
    }
}

/// Structure of an EfficientNetV2 backbone (`get_efficientnet_v2_structure` plus the
/// stochastic-depth rate of `efficientnet_v2()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The structure table, one row per stage.
    pub stages: Vec<MbConvConfig>,
    /// Maximum stochastic-depth drop probability; block k of n drops with `stochastic_depth·k/n`.
    #[serde(default = "default_stochastic_depth")]
    pub stochastic_depth: f64,
}

fn default_stochastic_depth() -> f64 {
    0.2
}

impl Config {
    fn from_rows(rows: &[MbConvConfig]) -> Self {
        Self {
            stages: rows.to_vec(),
            stochastic_depth: default_stochastic_depth(),
        }
    }

    /// `efficientnet_v2_s`.
    pub fn s() -> Self {
        type R = MbConvConfig;
        Self::from_rows(&[
            R::row((1, 3, 1, 24, 24, 2, false, true)),
            R::row((4, 3, 2, 24, 48, 4, false, true)),
            R::row((4, 3, 2, 48, 64, 4, false, true)),
            R::row((4, 3, 2, 64, 128, 6, true, false)),
            R::row((6, 3, 1, 128, 160, 9, true, false)),
            R::row((6, 3, 2, 160, 256, 15, true, false)),
        ])
    }

    /// `efficientnet_v2_m`.
    pub fn m() -> Self {
        type R = MbConvConfig;
        Self::from_rows(&[
            R::row((1, 3, 1, 24, 24, 3, false, true)),
            R::row((4, 3, 2, 24, 48, 5, false, true)),
            R::row((4, 3, 2, 48, 80, 5, false, true)),
            R::row((4, 3, 2, 80, 160, 7, true, false)),
            R::row((6, 3, 1, 160, 176, 14, true, false)),
            R::row((6, 3, 2, 176, 304, 18, true, false)),
            R::row((6, 3, 1, 304, 512, 5, true, false)),
        ])
    }

    /// `efficientnet_v2_l`.
    pub fn l() -> Self {
        type R = MbConvConfig;
        Self::from_rows(&[
            R::row((1, 3, 1, 32, 32, 4, false, true)),
            R::row((4, 3, 2, 32, 64, 7, false, true)),
            R::row((4, 3, 2, 64, 96, 7, false, true)),
            R::row((4, 3, 2, 96, 192, 10, true, false)),
            R::row((6, 3, 1, 192, 224, 19, true, false)),
            R::row((6, 3, 2, 224, 384, 25, true, false)),
            R::row((6, 3, 1, 384, 640, 7, true, false)),
        ])
    }

    /// `efficientnet_v2_xl`.
    pub fn xl() -> Self {
        type R = MbConvConfig;
        Self::from_rows(&[
            R::row((1, 3, 1, 32, 32, 4, false, true)),
            R::row((4, 3, 2, 32, 64, 8, false, true)),
            R::row((4, 3, 2, 64, 96, 8, false, true)),
            R::row((4, 3, 2, 96, 192, 16, true, false)),
            R::row((6, 3, 1, 192, 256, 24, true, false)),
            R::row((6, 3, 2, 256, 512, 32, true, false)),
            R::row((6, 3, 1, 512, 640, 8, true, false)),
        ])
    }

    /// The named variant (`"s"`, `"m"`, `"l"`, `"xl"`), if it exists.
    pub fn variant(name: &str) -> Option<Self> {
        match name {
            "s" => Some(Self::s()),
            "m" => Some(Self::m()),
            "l" => Some(Self::l()),
            "xl" => Some(Self::xl()),
            _ => None,
        }
    }

    /// One entry per block, as `make_layers` expands the table: after a stage's first block the
    /// input width becomes the output width and the stride becomes 1.
    pub fn blocks(&self) -> Vec<MbConvConfig> {
        let mut blocks = Vec::new();
        for stage in &self.stages {
            let mut block = *stage;
            for _ in 0..stage.layers {
                blocks.push(block);
                block.in_ch = block.out_ch;
                block.stride = 1;
            }
        }
        blocks
    }

    /// Stochastic-depth drop probability of each block (`get_sd_prob`).
    pub fn drop_probs(&self) -> Vec<f64> {
        let n = self.blocks().len();
        (0..n)
            .map(|k| self.stochastic_depth * k as f64 / n as f64)
            .collect()
    }

    /// Stem output width (the first stage's input width).
    pub fn stem_ch(&self) -> usize {
        self.stages.first().map_or(0, |s| s.in_ch)
    }

    /// Total stride of each block's output.
    pub fn block_strides(&self) -> Vec<usize> {
        let mut stride = 2;
        self.blocks()
            .iter()
            .map(|b| {
                stride *= b.stride;
                stride
            })
            .collect()
    }

    /// Widths of the returned maps for an input large enough that every stage's resolution is
    /// distinct: the last block of each of the last four strides.
    pub fn widths(&self) -> Vec<usize> {
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for (block, stride) in self.blocks().iter().zip(self.block_strides()) {
            match groups.iter_mut().find(|(s, _)| *s == stride) {
                Some(group) => group.1 = block.block_out_ch(),
                None => groups.push((stride, block.block_out_ch())),
            }
        }
        let skip = groups.len().saturating_sub(4);
        groups[skip..].iter().map(|&(_, width)| width).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjust_channels_matches_the_seed() {
        // python: [MBConvConfig.adjust_channels(c, f) for c, f in [(24,1),(24,4),(128,6),(160,6),(3,1),(20,1)]]
        let got: Vec<usize> = [(24, 1), (24, 4), (128, 6), (160, 6), (3, 1), (20, 1)]
            .iter()
            .map(|&(c, f)| adjust_channels(c, f))
            .collect();
        assert_eq!(got, [24, 96, 768, 960, 8, 24]);
    }

    #[test]
    fn widths_of_the_four_variants() {
        assert_eq!(Config::s().widths(), [48, 64, 160, 256]);
        assert_eq!(Config::m().widths(), [48, 80, 176, 512]);
        assert_eq!(Config::l().widths(), [64, 96, 224, 640]);
        assert_eq!(Config::xl().widths(), [64, 96, 256, 640]);
    }

    #[test]
    fn block_count_and_drop_probs() {
        let cfg = Config::s();
        assert_eq!(cfg.blocks().len(), 40);
        let probs = cfg.drop_probs();
        assert_eq!(probs[0], 0.0);
        assert!((probs[39] - 0.2 * 39.0 / 40.0).abs() < 1e-15);
    }
}
