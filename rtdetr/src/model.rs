use candle::{Result, Tensor};
use candle_nn::VarBuilder;
use effnetv2::EfficientNetV2;
use rtdetr_decoder::{
    CdnNoise, DecoderConfig, DecoderOutput, GroundTruth, RtDetrDecoder, TrainOutput,
};
use rtdetr_neck::{Neck, NeckConfig, NeckOutput};
use serde::{Deserialize, Serialize};

use crate::Variant;

/// Sizes of the whole detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The backbone's structure table (`model.0`).
    pub backbone: effnetv2::Config,
    /// The neck (`model.1` .. `model.18`).
    pub neck: NeckConfig,
    /// The decoder head (`model.19`).
    pub decoder: DecoderConfig,
}

impl ModelConfig {
    /// The seed's RT-DETR-EfficientNetV2 of `variant` for `nc` classes.
    pub fn new(variant: Variant, nc: usize) -> Self {
        let backbone = variant.backbone();
        let [_, p3, p4, p5]: [usize; 4] = backbone.widths().try_into().unwrap_or([0; 4]);
        Self {
            backbone,
            neck: NeckConfig::rtdetr([p3, p4, p5]),
            decoder: DecoderConfig::rtdetr(nc),
        }
    }

    /// Number of classes.
    pub fn nc(&self) -> usize {
        self.decoder.nc
    }
}

/// Backbone maps, neck maps and decoder outputs of one forward pass.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// The backbone's four maps (strides 4, 8, 16, 32).
    pub backbone: Vec<Tensor>,
    /// The neck's maps.
    pub neck: NeckOutput,
    /// The decoder's outputs; `detections` is what the PyTorch model returns in eval mode.
    pub decoder: DecoderOutput,
}

/// RT-DETR with an EfficientNetV2 backbone: the seed's `model.0` .. `model.19`.
#[derive(Debug, Clone)]
pub struct RtDetr {
    cfg: ModelConfig,
    backbone: EfficientNetV2,
    neck: Neck,
    decoder: RtDetrDecoder,
}

impl RtDetr {
    /// `vb` points at the model's root: the backbone reads `model.0.*`, the decoder `model.19.*`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("model");
        let widths = cfg.backbone.widths();
        if widths.len() != 4 || widths[1..] != cfg.neck.in_channels {
            candle::bail!(
                "the backbone outputs widths {widths:?}, the neck expects P3..P5 of {:?}",
                cfg.neck.in_channels
            )
        }
        if cfg.decoder.in_channels != vec![cfg.neck.hidden; 3] {
            candle::bail!(
                "the decoder reads {:?}, the neck gives 3 × {}",
                cfg.decoder.in_channels,
                cfg.neck.hidden
            )
        }
        Ok(Self {
            cfg: cfg.clone(),
            backbone: EfficientNetV2::new(&cfg.backbone, vb.pp(0))?,
            neck: Neck::new(&cfg.neck, vb.clone())?,
            decoder: RtDetrDecoder::new(&cfg.decoder, vb.pp(19))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The backbone.
    pub fn backbone(&self) -> &EfficientNetV2 {
        &self.backbone
    }

    /// The neck.
    pub fn neck(&self) -> &Neck {
        &self.neck
    }

    /// The decoder head.
    pub fn decoder(&self) -> &RtDetrDecoder {
        &self.decoder
    }

    /// Prepares evaluation (`true`, what [`RtDetr::load`] does): every batch norm folded into
    /// its convolution and every RepConv's two branches fused into one 3×3 convolution; `false`
    /// goes back to the layers as trained. Training always runs the unfused layers; fuse again
    /// after training changes the weights.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.backbone.set_fused(fused)?;
        self.neck.set_fused(fused)?;
        self.decoder.set_fused(fused)
    }

    /// The training pass: batch-statistics batch norms, stochastic depth, and the decoder's
    /// denoising queries built from `gt` with `noise` (see [`CdnNoise::sample`]).
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` → boxes and logits `[L, B, num_dn + K, ·]`
    pub fn forward_train(
        &self,
        images: &Tensor,
        gt: &GroundTruth,
        noise: &CdnNoise,
    ) -> Result<TrainOutput> {
        let (p3, p4, p5) = self.backbone_maps(images, true)?;
        let neck = self.neck.forward_t(&p3, &p4, &p5, true)?;
        self.decoder
            .forward_train(&[neck.x3, neck.f4, neck.f5], gt, noise)
    }

    fn backbone_maps(&self, images: &Tensor, train: bool) -> Result<(Tensor, Tensor, Tensor)> {
        let (_, c, h, w) = images.dims4()?;
        if c != 3 || !h.is_multiple_of(32) || !w.is_multiple_of(32) || h == 0 || w == 0 {
            candle::bail!(
                "RT-DETR takes [B, 3, H, W] with H and W multiples of 32, got {:?}",
                images.shape()
            )
        }
        match self.backbone.forward_t(images, train)?.as_slice() {
            [_, p3, p4, p5] => Ok((p3.clone(), p4.clone(), p5.clone())),
            maps => candle::bail!("the backbone returned {} maps, expected 4", maps.len()),
        }
    }

    /// # Shapes
    /// `images: [B, 3, H, W]`, RGB in [0, 1], H and W multiples of 32 →
    /// `decoder.detections: [B, min(queries, queries·nc), 6]`
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<ModelOutput> {
        let (_, c, h, w) = images.dims4()?;
        if c != 3 || !h.is_multiple_of(32) || !w.is_multiple_of(32) || h == 0 || w == 0 {
            candle::bail!(
                "RT-DETR takes [B, 3, H, W] with H and W multiples of 32, got {:?}",
                images.shape()
            )
        }
        let backbone = self.backbone.forward_t(images, train)?;
        let [_, p3, p4, p5] = backbone.as_slice() else {
            candle::bail!("the backbone returned {} maps, expected 4", backbone.len())
        };
        let neck = self.neck.forward_t(p3, p4, p5, train)?;
        let decoder = self
            .decoder
            .forward(&[neck.x3.clone(), neck.f4.clone(), neck.f5.clone()], train)?;
        Ok(ModelOutput {
            backbone,
            neck,
            decoder,
        })
    }
}
