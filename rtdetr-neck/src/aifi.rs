use candle::{Device, Result, Tensor};
use candle_nn::{Module, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::{LayerNorm, Linear};

use crate::MultiheadAttention;

/// ultralytics `AIFI(c1, cm, num_heads)`: one post-norm transformer encoder layer over the
/// flattened map, with a 2-D sin-cos position embedding added to queries and keys.
#[derive(Debug, Clone)]
pub struct Aifi {
    ma: MultiheadAttention,
    fc1: Linear,
    fc2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
}

/// `AIFI.build_2d_sincos_position_embedding(w, h, dim)` (8.4.180 and later): for token
/// `t = y·w + x`, `[sin(y·ω), cos(y·ω), sin(x·ω), cos(x·ω)]` with `ω_j = 10000^(−j/(dim/4))`.
///
/// # Shapes
/// → `[1, h·w, dim]`
pub fn sincos_position_embedding(
    w: usize,
    h: usize,
    dim: usize,
    device: &Device,
) -> Result<Tensor> {
    if !dim.is_multiple_of(4) {
        candle::bail!("sin-cos position embedding: dimension {dim} is not a multiple of 4")
    }
    let quarter = dim / 4;
    let omega: Vec<f32> = (0..quarter)
        .map(|j| 1.0 / 10000f32.powf(j as f32 / quarter as f32))
        .collect();
    let mut table = Vec::with_capacity(h * w * dim);
    for y in 0..h {
        for x in 0..w {
            let (y, x) = (y as f32, x as f32);
            table.extend(omega.iter().map(|o| (y * o).sin()));
            table.extend(omega.iter().map(|o| (y * o).cos()));
            table.extend(omega.iter().map(|o| (x * o).sin()));
            table.extend(omega.iter().map(|o| (x * o).cos()));
        }
    }
    Tensor::from_vec(table, (1, h * w, dim), device)
}

impl Aifi {
    /// `AIFI(dim, ffn, heads)`.
    pub fn new(dim: usize, ffn: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ma: MultiheadAttention::new(dim, heads, vb.pp("ma"))?,
            fc1: rtdetr_ops::linear(dim, ffn, vb.pp("fc1"))?,
            fc2: rtdetr_ops::linear(ffn, dim, vb.pp("fc2"))?,
            norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
        })
    }
}

impl Aifi {
    /// The layer as ONNX nodes on a `[N, C, h, w]` map (the position embedding is a constant of
    /// that size).
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        xs: &str,
        (h, w): (usize, usize),
    ) -> Result<String> {
        let c = self.fc2.weight().dim(0)?;
        let at = |name: &str| format!("{scope}.{name}");
        let flat = g.reshape(scope, xs, &[0, c as i64, (h * w) as i64]);
        let src = g.transpose(scope, &flat, &[0, 2, 1]);
        let pos = sincos_position_embedding(w, h, c, &Device::Cpu)?;
        let pos = g.weight(&at("pos_embed"), &pos)?;
        let q = g.node(scope, "Add", &[&src, &pos], vec![]);
        let attended = self.ma.to_onnx(g, &at("ma"), &q, &q, &src, h * w, h * w)?;
        let src = g.node(scope, "Add", &[&src, &attended], vec![]);
        let (nw, nb, eps) = self.norm1.parts();
        let src = g.layer_norm(&at("norm1"), &src, nw, nb, eps)?;
        let hidden = g.linear(&at("fc1"), &src, self.fc1.weight(), self.fc1.bias())?;
        let hidden = g.gelu_erf(&at("act"), &hidden);
        let ffn = g.linear(&at("fc2"), &hidden, self.fc2.weight(), self.fc2.bias())?;
        let src = g.node(scope, "Add", &[&src, &ffn], vec![]);
        let (nw, nb, eps) = self.norm2.parts();
        let src = g.layer_norm(&at("norm2"), &src, nw, nb, eps)?;
        let ys = g.transpose(scope, &src, &[0, 2, 1]);
        Ok(g.reshape(scope, &ys, &[0, c as i64, h as i64, w as i64]))
    }
}

impl Module for Aifi {
    /// # Shapes
    /// `xs: [B, C, H, W]` → `[B, C, H, W]`
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        // [B, C, H, W] -> [B, H*W, C]
        let src = xs.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let pos = sincos_position_embedding(w, h, c, xs.device())?.to_dtype(xs.dtype())?;
        let q = src.broadcast_add(&pos)?;
        let attended = self.ma.forward(&q, &q, &src, None)?;
        let src = self.norm1.forward(&(src + attended)?)?;
        let ffn = self.fc2.forward(&self.fc1.forward(&src)?.gelu_erf()?)?;
        let src = self.norm2.forward(&(src + ffn)?)?;
        // [B, H*W, C] -> [B, C, H, W]
        src.transpose(1, 2)?.reshape((b, c, h, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::DType;

    #[test]
    fn embedding_rows_follow_the_token_order() {
        // python: AIFI.build_2d_sincos_position_embedding(3, 2, 8, like=torch.zeros(1))[0, 4]
        // token 4 = (y 1, x 1); ω = [1, 0.01]
        let pos = sincos_position_embedding(3, 2, 8, &Device::Cpu).unwrap();
        let row: Vec<f32> = pos.get(0).unwrap().get(4).unwrap().to_vec1().unwrap();
        let want = [
            1f32.sin(),
            0.01f32.sin(),
            1f32.cos(),
            0.01f32.cos(),
            1f32.sin(),
            0.01f32.sin(),
            1f32.cos(),
            0.01f32.cos(),
        ];
        for (g, w) in row.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{row:?}");
        }
        let row5: Vec<f32> = pos.get(0).unwrap().get(5).unwrap().to_vec1().unwrap();
        assert!((row5[4] - 2f32.sin()).abs() < 1e-7 && (row5[0] - 1f32.sin()).abs() < 1e-7);
        assert_eq!(pos.dtype(), DType::F32);
    }
}
