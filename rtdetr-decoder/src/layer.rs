use candle::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use rtdetr_neck::MultiheadAttention;
use rtdetr_onnx::{GraphBuilder, Sampler};
use rtdetr_ops::{LayerNorm, Linear};

use crate::MsDeformAttn;

/// ultralytics `DeformableTransformerDecoderLayer` (post-norm): self-attention among the queries,
/// deformable cross-attention into the feature maps, ReLU feed-forward.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    self_attn: MultiheadAttention,
    norm1: LayerNorm,
    cross_attn: MsDeformAttn,
    norm2: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    norm3: LayerNorm,
}

impl DecoderLayer {
    /// `DeformableTransformerDecoderLayer(dim, heads, ffn, n_levels=levels, n_points=points)`.
    pub fn new(
        dim: usize,
        heads: usize,
        ffn: usize,
        levels: usize,
        points: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            self_attn: MultiheadAttention::new(dim, heads, vb.pp("self_attn"))?,
            norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
            cross_attn: MsDeformAttn::new(dim, levels, heads, points, vb.pp("cross_attn"))?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
            linear1: rtdetr_ops::linear(dim, ffn, vb.pp("linear1"))?,
            linear2: rtdetr_ops::linear(ffn, dim, vb.pp("linear2"))?,
            norm3: LayerNorm::new(dim, vb.pp("norm3"))?,
        })
    }

    /// # Shapes
    /// `embed, query_pos: [B, Q, dim]`, `boxes: [B, Q, 4]`, `feats: [B, S, dim]`,
    /// `blocked: [Q, Q]` (1 = masked) → `[B, Q, dim]`
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        embed: &Tensor,
        boxes: &Tensor,
        feats: &Tensor,
        shapes: &[(usize, usize)],
        blocked: Option<&Tensor>,
        query_pos: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let q = (embed + query_pos)?;
        let attended = self.self_attn.forward(&q, &q, embed, blocked)?;
        let embed = self.norm1.forward(&(embed + attended)?)?;
        let sampled =
            self.cross_attn
                .forward(&(&embed + query_pos)?, boxes, feats, shapes, train)?;
        let embed = self.norm2.forward(&(embed + sampled)?)?;
        let ffn = self
            .linear2
            .forward(&self.linear1.forward(&embed)?.relu()?)?;
        self.norm3.forward(&(embed + ffn)?)
    }

    /// The evaluation-mode layer as ONNX nodes for `queries` queries.
    #[allow(clippy::too_many_arguments)]
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        embed: &str,
        boxes: &str,
        feats: &str,
        shapes: &[(usize, usize)],
        query_pos: &str,
        queries: usize,
        sampler: Sampler,
    ) -> Result<String> {
        let at = |name: &str| format!("{scope}.{name}");
        let norm = |g: &mut GraphBuilder, name: &str, x: &str, ln: &LayerNorm| {
            let (w, b, eps) = ln.parts();
            g.layer_norm(&at(name), x, w, b, eps)
        };
        let q = g.node(scope, "Add", &[embed, query_pos], vec![]);
        let attended =
            self.self_attn
                .to_onnx(g, &at("self_attn"), &q, &q, embed, queries, queries)?;
        let x = g.node(scope, "Add", &[embed, &attended], vec![]);
        let embed = norm(g, "norm1", &x, &self.norm1)?;
        let q = g.node(scope, "Add", &[&embed, query_pos], vec![]);
        let sampled = self.cross_attn.to_onnx(
            g,
            &at("cross_attn"),
            &q,
            boxes,
            feats,
            shapes,
            queries,
            sampler,
        )?;
        let x = g.node(scope, "Add", &[&embed, &sampled], vec![]);
        let embed = norm(g, "norm2", &x, &self.norm2)?;
        let l1 = &self.linear1;
        let hidden = g.linear(&at("linear1"), &embed, l1.weight(), l1.bias())?;
        let hidden = g.node(&at("linear1"), "Relu", &[&hidden], vec![]);
        let l2 = &self.linear2;
        let ffn = g.linear(&at("linear2"), &hidden, l2.weight(), l2.bias())?;
        let x = g.node(scope, "Add", &[&embed, &ffn], vec![]);
        norm(g, "norm3", &x, &self.norm3)
    }
}
