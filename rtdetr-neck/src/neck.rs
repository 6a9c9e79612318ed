use candle::{Module, Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::upsample_nearest2x;
use serde::{Deserialize, Serialize};

use crate::{Aifi, Conv, RepC3};

/// Sizes of the neck (ultralytics `rtdetr-*.yaml` head up to the decoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeckConfig {
    /// Widths of the backbone's P3, P4, P5 maps.
    pub in_channels: [usize; 3],
    /// Width of every neck map (256).
    pub hidden: usize,
    /// AIFI feed-forward width (1024).
    pub ffn: usize,
    /// AIFI attention heads (8).
    pub heads: usize,
    /// RepConv blocks per RepC3 (3).
    pub blocks: usize,
}

impl NeckConfig {
    /// The seed's neck on backbone maps of the given widths.
    pub fn rtdetr(in_channels: [usize; 3]) -> Self {
        Self {
            in_channels,
            hidden: 256,
            ffn: 1024,
            heads: 8,
            blocks: 3,
        }
    }
}

/// The three maps the decoder reads, and the AIFI output.
#[derive(Debug, Clone)]
pub struct NeckOutput {
    /// Stride 8 (`model.12`).
    pub x3: Tensor,
    /// Stride 16 (`model.15`).
    pub f4: Tensor,
    /// Stride 32 (`model.18`).
    pub f5: Tensor,
    /// AIFI's output (`model.2`).
    pub aifi: Tensor,
}

/// `model.1` .. `model.18` of the seed model: input projections, AIFI, top-down FPN and
/// bottom-up PAN with RepC3 blocks. Upsample and concat layers (4, 6, 9, 11, 14, 17) have no
/// weights.
#[derive(Debug, Clone)]
pub struct Neck {
    proj5: Conv,
    aifi: Aifi,
    lateral5: Conv,
    proj4: Conv,
    fpn4: RepC3,
    lateral4: Conv,
    proj3: Conv,
    fpn3: RepC3,
    down3: Conv,
    pan4: RepC3,
    down4: Conv,
    pan5: RepC3,
}

impl Neck {
    /// `vb` points at the Sequential (`model`): layer i reads `vb.pp(i)`.
    pub fn new(cfg: &NeckConfig, vb: VarBuilder) -> Result<Self> {
        let [p3, p4, p5] = cfg.in_channels;
        let hd = cfg.hidden;
        let repc3 = |i: usize| RepC3::new(2 * hd, hd, cfg.blocks, vb.pp(i));
        Ok(Self {
            proj5: Conv::new(p5, hd, 1, 1, false, vb.pp(1))?,
            aifi: Aifi::new(hd, cfg.ffn, cfg.heads, vb.pp(2))?,
            lateral5: Conv::new(hd, hd, 1, 1, true, vb.pp(3))?,
            proj4: Conv::new(p4, hd, 1, 1, false, vb.pp(5))?,
            fpn4: repc3(7)?,
            lateral4: Conv::new(hd, hd, 1, 1, true, vb.pp(8))?,
            proj3: Conv::new(p3, hd, 1, 1, false, vb.pp(10))?,
            fpn3: repc3(12)?,
            down3: Conv::new(hd, hd, 3, 2, true, vb.pp(13))?,
            pan4: repc3(15)?,
            down4: Conv::new(hd, hd, 3, 2, true, vb.pp(16))?,
            pan5: repc3(18)?,
        })
    }

    /// Fuses (or unfuses) every RepConv and folds every batch norm for evaluation.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        for conv in [
            &mut self.proj5,
            &mut self.lateral5,
            &mut self.proj4,
            &mut self.lateral4,
            &mut self.proj3,
            &mut self.down3,
            &mut self.down4,
        ] {
            conv.set_fused(fused)?;
        }
        for repc3 in [
            &mut self.fpn4,
            &mut self.fpn3,
            &mut self.pan4,
            &mut self.pan5,
        ] {
            repc3.set_fused(fused)?;
        }
        Ok(())
    }

    /// # Shapes
    /// `p3: [B, c3, H/8, W/8]`, `p4: [B, c4, H/16, W/16]`, `p5: [B, c5, H/32, W/32]` →
    /// `x3, f4, f5: [B, hidden, H/s, W/s]` for s = 8, 16, 32 (H and W multiples of 32)
    pub fn forward_t(
        &self,
        p3: &Tensor,
        p4: &Tensor,
        p5: &Tensor,
        train: bool,
    ) -> Result<NeckOutput> {
        let aifi = self.aifi.forward(&self.proj5.forward_t(p5, train)?)?;
        let y5 = self.lateral5.forward_t(&aifi, train)?;
        let x = Tensor::cat(
            &[&upsample_nearest2x(&y5)?, &self.proj4.forward_t(p4, train)?],
            1,
        )?;
        let y4 = self
            .lateral4
            .forward_t(&self.fpn4.forward_t(&x, train)?, train)?;
        let x = Tensor::cat(
            &[&upsample_nearest2x(&y4)?, &self.proj3.forward_t(p3, train)?],
            1,
        )?;
        let x3 = self.fpn3.forward_t(&x, train)?;
        let x = Tensor::cat(&[&self.down3.forward_t(&x3, train)?, &y4], 1)?;
        let f4 = self.pan4.forward_t(&x, train)?;
        let x = Tensor::cat(&[&self.down4.forward_t(&f4, train)?, &y5], 1)?;
        let f5 = self.pan5.forward_t(&x, train)?;
        Ok(NeckOutput { x3, f4, f5, aifi })
    }

    /// The evaluation-mode neck as ONNX nodes (`Resize` nearest ×2 for the upsamples); `p5_size`
    /// is the stride-32 map's `(h, w)`. Returns `x3, f4, f5`.
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        [p3, p4, p5]: [&str; 3],
        p5_size: (usize, usize),
    ) -> Result<[String; 3]> {
        let up = |g: &mut GraphBuilder, i: usize, x: &str| {
            let scales = g.floats_f32(&format!("model.{i}.scales"), &[1.0, 1.0, 2.0, 2.0], &[4]);
            let attributes = vec![
                rtdetr_onnx::graph::attr_string("mode", "nearest"),
                rtdetr_onnx::graph::attr_string("nearest_mode", "floor"),
                rtdetr_onnx::graph::attr_string("coordinate_transformation_mode", "asymmetric"),
            ];
            g.node(
                &format!("model.{i}"),
                "Resize",
                &[x, "", &scales],
                attributes,
            )
        };
        let cat = |g: &mut GraphBuilder, i: usize, a: &str, b: &str| {
            g.concat(&format!("model.{i}"), &[a, b], 1)
        };
        let x = self.proj5.to_onnx(g, "model.1", p5)?;
        let aifi = self.aifi.to_onnx(g, "model.2", &x, p5_size)?;
        let y5 = self.lateral5.to_onnx(g, "model.3", &aifi)?;
        let u = up(g, 4, &y5);
        let p4 = self.proj4.to_onnx(g, "model.5", p4)?;
        let x = cat(g, 6, &u, &p4);
        let x = self.fpn4.to_onnx(g, "model.7", &x)?;
        let y4 = self.lateral4.to_onnx(g, "model.8", &x)?;
        let u = up(g, 9, &y4);
        let p3 = self.proj3.to_onnx(g, "model.10", p3)?;
        let x = cat(g, 11, &u, &p3);
        let x3 = self.fpn3.to_onnx(g, "model.12", &x)?;
        let d = self.down3.to_onnx(g, "model.13", &x3)?;
        let x = cat(g, 14, &d, &y4);
        let f4 = self.pan4.to_onnx(g, "model.15", &x)?;
        let d = self.down4.to_onnx(g, "model.16", &f4)?;
        let x = cat(g, 17, &d, &y5);
        let f5 = self.pan5.to_onnx(g, "model.18", &x)?;
        Ok([x3, f4, f5])
    }
}
