use serde::{Deserialize, Serialize};

/// `RTDETRDecoder(nc, ch, hd, nq, ndp, nh, ndl, d_ffn)` sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Number of classes.
    pub nc: usize,
    /// Widths of the input maps (one per level).
    pub in_channels: Vec<usize>,
    /// Hidden width (256).
    pub hidden: usize,
    /// Number of queries (300).
    pub queries: usize,
    /// Sampling points per level and head (4).
    pub points: usize,
    /// Attention heads (8).
    pub heads: usize,
    /// Decoder layers (6).
    pub layers: usize,
    /// Feed-forward width of each layer (1024).
    pub ffn: usize,
    /// Contrastive denoising in training (configurations saved without it read the defaults).
    #[serde(default)]
    pub denoising: DenoisingConfig,
}

/// `RTDETRDecoder(nd=100, label_noise_ratio=0.5, box_noise_scale=1.0)`: the contrastive denoising
/// queries of training, read by the decoder, the trainer and `rtdetr bench --train`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DenoisingConfig {
    /// Most denoising queries per group (`num_denoising`).
    pub queries: usize,
    /// Probability of replacing a label, times two (`label_noise_ratio`).
    pub label_noise: f32,
    /// Box jitter relative to the box size (`box_noise_scale`).
    pub box_noise: f32,
}

impl Default for DenoisingConfig {
    fn default() -> Self {
        Self {
            queries: 100,
            label_noise: 0.5,
            box_noise: 1.0,
        }
    }
}

impl DecoderConfig {
    /// The seed's decoder, `RTDETRDecoder(nc, [256, 256, 256])`.
    pub fn rtdetr(nc: usize) -> Self {
        Self {
            nc,
            in_channels: vec![256; 3],
            hidden: 256,
            queries: 300,
            points: 4,
            heads: 8,
            layers: 6,
            ffn: 1024,
            denoising: DenoisingConfig::default(),
        }
    }

    /// Number of feature levels.
    pub fn levels(&self) -> usize {
        self.in_channels.len()
    }
}
