use candle::{Module, Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::SplitMix64;

use crate::{ConvBnAct, MbConvConfig, SqueezeExcite, StochasticDepth};

/// The layers of one block, named like the keys of the seed's `block` Sequential.
#[derive(Debug, Clone)]
enum Body {
    /// Expand ratio 1: `fused` 3×3 ConvBNAct.
    Single { fused: ConvBnAct },
    /// Fused-MBConv: `fused` 3×3 expand, `fused_point_wise` 1×1 project.
    Fused {
        fused: ConvBnAct,
        fused_point_wise: ConvBnAct,
    },
    /// MBConv: `linear_bottleneck` 1×1 expand, `depth_wise`, `se`, `point_wise` 1×1 project.
    Inverted {
        linear_bottleneck: ConvBnAct,
        depth_wise: ConvBnAct,
        se: SqueezeExcite,
        point_wise: ConvBnAct,
    },
}

/// The seed's `MBConv` block (plain, fused or expand-1), with the stochastic-depth residual.
#[derive(Debug, Clone)]
pub struct MbConv {
    body: Body,
    skip: bool,
    stochastic_depth: StochasticDepth,
}

impl MbConv {
    /// Block `cfg` whose residual branch is dropped with probability `drop_prob` in training.
    pub fn new(
        cfg: &MbConvConfig,
        drop_prob: f64,
        rng: SplitMix64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = cfg;
        let inter = c.inter_ch();
        let vb = vb.pp("block");
        let body = if c.expand_ratio == 1 {
            Body::Single {
                fused: ConvBnAct::new(c.in_ch, inter, c.kernel, c.stride, 1, true, vb.pp("fused"))?,
            }
        } else if c.fused {
            Body::Fused {
                fused: ConvBnAct::new(c.in_ch, inter, c.kernel, c.stride, 1, true, vb.pp("fused"))?,
                fused_point_wise: ConvBnAct::new(
                    inter,
                    c.out_ch,
                    1,
                    1,
                    1,
                    false,
                    vb.pp("fused_point_wise"),
                )?,
            }
        } else {
            if !c.use_se {
                candle::bail!(
                    "MBConv {}: non-fused blocks without SE are not part of the seed's design",
                    vb.prefix()
                )
            }
            Body::Inverted {
                linear_bottleneck: ConvBnAct::new(
                    c.in_ch,
                    inter,
                    1,
                    1,
                    1,
                    true,
                    vb.pp("linear_bottleneck"),
                )?,
                depth_wise: ConvBnAct::new(
                    inter,
                    inter,
                    c.kernel,
                    c.stride,
                    inter,
                    true,
                    vb.pp("depth_wise"),
                )?,
                se: SqueezeExcite::new(inter, 4 * c.expand_ratio, vb.pp("se"))?,
                point_wise: ConvBnAct::new(inter, c.out_ch, 1, 1, 1, false, vb.pp("point_wise"))?,
            }
        };
        let skip = c.use_skip();
        if skip && c.block_out_ch() != c.in_ch {
            candle::bail!(
                "MBConv {}: residual block outputs {} channels, not {}",
                vb.prefix(),
                c.block_out_ch(),
                c.in_ch
            )
        }
        Ok(Self {
            body,
            skip,
            stochastic_depth: StochasticDepth::new(drop_prob, rng),
        })
    }

    /// Folds (or unfolds) every batch norm of the block for evaluation.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        match &mut self.body {
            Body::Single { fused: conv } => conv.set_fused(fused),
            Body::Fused {
                fused: conv,
                fused_point_wise,
            } => {
                conv.set_fused(fused)?;
                fused_point_wise.set_fused(fused)
            }
            Body::Inverted {
                linear_bottleneck,
                depth_wise,
                point_wise,
                ..
            } => {
                linear_bottleneck.set_fused(fused)?;
                depth_wise.set_fused(fused)?;
                point_wise.set_fused(fused)
            }
        }
    }

    /// The block's stride (that of its first spatial convolution).
    pub fn stride(&self) -> usize {
        match &self.body {
            Body::Single { fused } | Body::Fused { fused, .. } => fused.stride(),
            Body::Inverted { depth_wise, .. } => depth_wise.stride(),
        }
    }

    /// The evaluation-mode block as ONNX nodes; `scope` is its state_dict prefix.
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let at = |name: &str| format!("{scope}.block.{name}");
        let ys = match &self.body {
            Body::Single { fused } => fused.to_onnx(g, &at("fused"), xs)?,
            Body::Fused {
                fused,
                fused_point_wise,
            } => {
                let ys = fused.to_onnx(g, &at("fused"), xs)?;
                fused_point_wise.to_onnx(g, &at("fused_point_wise"), &ys)?
            }
            Body::Inverted {
                linear_bottleneck,
                depth_wise,
                se,
                point_wise,
            } => {
                let ys = linear_bottleneck.to_onnx(g, &at("linear_bottleneck"), xs)?;
                let ys = depth_wise.to_onnx(g, &at("depth_wise"), &ys)?;
                let ys = se.to_onnx(g, &at("se"), &ys)?;
                point_wise.to_onnx(g, &at("point_wise"), &ys)?
            }
        };
        Ok(if self.skip {
            g.node(scope, "Add", &[xs, &ys], vec![])
        } else {
            ys
        })
    }

    /// Whether the block adds its input back.
    pub fn has_skip(&self) -> bool {
        self.skip
    }
}

impl ModuleT for MbConv {
    /// # Shapes
    /// `xs: [B, in_ch, H, W]` → `[B, out_ch, ⌈H/stride⌉, ⌈W/stride⌉]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let ys = match &self.body {
            Body::Single { fused } => fused.forward_t(xs, train)?,
            Body::Fused {
                fused,
                fused_point_wise,
            } => fused
                .forward_t(xs, train)?
                .apply_t(fused_point_wise, train)?,
            Body::Inverted {
                linear_bottleneck,
                depth_wise,
                se,
                point_wise,
            } => {
                let ys = linear_bottleneck
                    .forward_t(xs, train)?
                    .apply_t(depth_wise, train)?;
                let gated = point_wise.forward_gated_t(&ys, &se.gate(&ys)?, train)?;
                match gated {
                    Some(ys) => ys,
                    None => se.forward(&ys)?.apply_t(point_wise, train)?,
                }
            }
        };
        if self.skip {
            xs + self.stochastic_depth.forward_t(&ys, train)?
        } else {
            Ok(ys)
        }
    }
}
