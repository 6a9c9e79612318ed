use candle::{Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::SplitMix64;

use crate::{Config, ConvBnAct, MbConv};

/// The seed's `EfficientNetV2` without a classifier: `stem` and `blocks.0 ..`.
#[derive(Debug, Clone)]
pub struct EfficientNetV2 {
    stem: ConvBnAct,
    blocks: Vec<MbConv>,
    rng: SplitMix64,
}

impl EfficientNetV2 {
    /// Builds the backbone of `cfg`; `vb` points at the module (`stem.0.weight` is `vb.pp("stem")`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let Some(first) = cfg.stages.first() else {
            candle::bail!("EfficientNetV2: the structure table has no stage")
        };
        let stem = ConvBnAct::new(3, first.in_ch, 3, 2, 1, true, vb.pp("stem"))?;
        let rng = SplitMix64::default();
        let blocks = cfg
            .blocks()
            .iter()
            .zip(cfg.drop_probs())
            .enumerate()
            .map(|(i, (block, prob))| MbConv::new(block, prob, rng.clone(), vb.pp("blocks").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self { stem, blocks, rng })
    }

    /// Folds every batch norm into its convolution for evaluation (`true`), or goes back to
    /// running them (`false`). Training always runs them; fold again after training.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.stem.set_fused(fused)?;
        for block in &mut self.blocks {
            block.set_fused(fused)?;
        }
        Ok(())
    }

    /// The generator of the stochastic-depth masks (seed it for reproducible training).
    pub fn drop_path_rng(&self) -> &SplitMix64 {
        &self.rng
    }
}

impl EfficientNetV2 {
    /// Runs the stem and every block, and returns the last output of each distinct spatial size,
    /// keeping the last four (in order of first appearance, as the seed's dict does).
    ///
    /// # Shapes
    /// `xs: [B, 3, H, W]` → 4 maps `[B, widths[i], H/s, W/s]` for s = 4, 8, 16, 32 (fewer when the
    /// input is so small that strides collapse to the same size)
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut xs = self.stem.forward_t(xs, train)?;
        let mut by_size: Vec<((usize, usize), Tensor)> = Vec::new();
        for block in &self.blocks {
            xs = block.forward_t(&xs, train)?;
            let size = (xs.dim(2)?, xs.dim(3)?);
            match by_size.iter_mut().find(|(s, _)| *s == size) {
                Some(entry) => entry.1 = xs.clone(),
                None => by_size.push((size, xs.clone())),
            }
        }
        let skip = by_size.len().saturating_sub(4);
        Ok(by_size.into_iter().skip(skip).map(|(_, map)| map).collect())
    }

    /// The evaluation-mode backbone as ONNX nodes for `[N, 3, height, width]` input: the same four
    /// maps as [`EfficientNetV2::forward_t`], chosen from the block strides (the sizes are fixed
    /// when the graph is written). `scope` is the module's state_dict prefix (`model.0`).
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        xs: &str,
        (height, width): (usize, usize),
    ) -> Result<Vec<String>> {
        let down = |(h, w): (usize, usize), s: usize| (h.div_ceil(s), w.div_ceil(s));
        let mut size = down((height, width), self.stem.stride());
        let mut xs = self.stem.to_onnx(g, &format!("{scope}.stem"), xs)?;
        let mut by_size: Vec<((usize, usize), String)> = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            xs = block.to_onnx(g, &format!("{scope}.blocks.{i}"), &xs)?;
            size = down(size, block.stride());
            match by_size.iter_mut().find(|(s, _)| *s == size) {
                Some(entry) => entry.1 = xs.clone(),
                None => by_size.push((size, xs.clone())),
            }
        }
        let skip = by_size.len().saturating_sub(4);
        Ok(by_size.into_iter().skip(skip).map(|(_, map)| map).collect())
    }
}
