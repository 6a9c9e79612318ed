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
        }
    }

    /// Number of feature levels.
    pub fn levels(&self) -> usize {
        self.in_channels.len()
    }
}
