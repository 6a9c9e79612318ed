use candle::{Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use rtdetr_onnx::graph::attr_int;
use rtdetr_onnx::{GraphBuilder, Sampler};
use rtdetr_ops::{topk, BatchNorm2d, LayerNorm, Linear};

use crate::{generate_anchors, inverse_sigmoid, DecoderConfig, DecoderLayer, Mlp};

/// `sigmoid(x) = 1 / (1 + exp(−x))`, the form that maps the `+inf` of invalid anchors to 1.
fn sigmoid(xs: &Tensor) -> Result<Tensor> {
    (xs.neg()?.exp()? + 1.0)?.recip()
}

/// Rows `index[b]` of `xs[b]`.
///
/// # Shapes
/// `xs: [B, S, C]`, `index: [B, K]` → `[B, K, C]`
fn gather_rows(xs: &Tensor, index: &Tensor) -> Result<Tensor> {
    let (b, _, c) = xs.dims3()?;
    let k = index.dim(1)?;
    xs.contiguous()?.gather(
        &index.unsqueeze(2)?.broadcast_as((b, k, c))?.contiguous()?,
        1,
    )
}

/// The queries the encoder side selects (`_get_decoder_input`).
#[derive(Debug, Clone)]
pub struct QueryInit {
    /// Query content: the selected encoder features. `[B, K, hidden]`
    pub embed: Tensor,
    /// Reference boxes in logit space (`+inf` for invalid anchors). `[B, K, 4]`
    pub ref_logits: Tensor,
    /// `sigmoid(ref_logits)`, the encoder's boxes for the loss. `[B, K, 4]`
    pub enc_boxes: Tensor,
    /// Class logits of the selected tokens, for the loss. `[B, K, nc]`
    pub enc_logits: Tensor,
    /// Indices of the selected tokens into the flattened levels. `[B, K]` u32
    pub index: Tensor,
}

/// Everything the decoder computes in one pass.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// Top-k over (query, class) pairs of the last layer: `[cx, cy, w, h, score, class]`,
    /// normalised, sorted by score. `[B, K, 6]`
    pub detections: Tensor,
    /// Every layer's refined boxes (cx, cy, w, h in [0, 1]). `[L, B, K, 4]`
    pub boxes: Tensor,
    /// Every layer's class logits. `[L, B, K, nc]`
    pub logits: Tensor,
    /// The selected queries.
    pub queries: QueryInit,
}

/// What the decoder gives the loss in training.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// Every layer's boxes, denoising queries first. `[L, B, num_dn + K, 4]`
    pub boxes: Tensor,
    /// Every layer's class logits, denoising queries first. `[L, B, num_dn + K, nc]`
    pub logits: Tensor,
    /// The encoder's selected queries (their boxes and logits enter the loss).
    pub queries: QueryInit,
    /// Denoising bookkeeping; `None` when the batch has no boxes.
    pub dn: Option<crate::DnMeta>,
}

/// ultralytics `RTDETRDecoder` (with `learnt_init_query=False`).
#[derive(Debug, Clone)]
pub struct RtDetrDecoder {
    cfg: DecoderConfig,
    input_proj: Vec<(Tensor, BatchNorm2d)>,
    input_proj_folded: Option<Vec<(Tensor, Tensor)>>,
    layers: Vec<DecoderLayer>,
    query_pos_head: Mlp,
    enc_output: (Linear, LayerNorm),
    enc_score_head: Linear,
    enc_bbox_head: Mlp,
    dec_score_head: Vec<Linear>,
    dec_bbox_head: Vec<Mlp>,
    denoising_class_embed: Tensor,
}

impl RtDetrDecoder {
    /// `vb` points at the decoder module (`model.19`).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let hd = cfg.hidden;
        let input_proj = cfg
            .in_channels
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let vb = vb.pp("input_proj").pp(i);
                let bound = (6.0 / (c + hd) as f64).sqrt();
                let init = Init::Uniform {
                    lo: -bound,
                    up: bound,
                };
                let weight = vb.pp(0).get_with_hints((hd, c, 1, 1), "weight", init)?;
                Ok((weight, BatchNorm2d::new(hd, vb.pp(1))?))
            })
            .collect::<Result<_>>()?;
        let layers = (0..cfg.layers)
            .map(|i| {
                let vb = vb.pp("decoder").pp("layers").pp(i);
                DecoderLayer::new(hd, cfg.heads, cfg.ffn, cfg.levels(), cfg.points, vb)
            })
            .collect::<Result<_>>()?;
        let score_head = |vb: VarBuilder| rtdetr_ops::linear(hd, cfg.nc, vb);
        let bbox_head = |vb: VarBuilder| Mlp::new(hd, hd, 4, 3, vb);
        Ok(Self {
            cfg: cfg.clone(),
            input_proj,
            input_proj_folded: None,
            layers,
            query_pos_head: Mlp::new(4, 2 * hd, hd, 2, vb.pp("query_pos_head"))?,
            enc_output: (
                rtdetr_ops::linear(hd, hd, vb.pp("enc_output").pp(0))?,
                LayerNorm::new(hd, vb.pp("enc_output").pp(1))?,
            ),
            enc_score_head: score_head(vb.pp("enc_score_head"))?,
            enc_bbox_head: bbox_head(vb.pp("enc_bbox_head"))?,
            dec_score_head: (0..cfg.layers)
                .map(|i| score_head(vb.pp("dec_score_head").pp(i)))
                .collect::<Result<_>>()?,
            dec_bbox_head: (0..cfg.layers)
                .map(|i| bbox_head(vb.pp("dec_bbox_head").pp(i)))
                .collect::<Result<_>>()?,
            denoising_class_embed: vb.get_with_hints(
                (cfg.nc, hd),
                "denoising_class_embed.weight",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
            )?,
        })
    }

    /// Folds the input projections' batch norms into their convolutions for evaluation
    /// (`true`), or goes back to running them (`false`). Training always runs them.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.input_proj_folded = if fused {
            let fold = |(weight, bn): &(Tensor, BatchNorm2d)| -> Result<(Tensor, Tensor)> {
                let (scale, shift) = bn.scale_shift()?;
                Ok((weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?, shift))
            };
            Some(self.input_proj.iter().map(fold).collect::<Result<_>>()?)
        } else {
            None
        };
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The class embeddings of denoising queries (`denoising_class_embed.weight`). `[nc, hidden]`
    pub fn denoising_class_embed(&self) -> &Tensor {
        &self.denoising_class_embed
    }

    /// Projects each level (1×1 conv + batch norm) and flattens them into one token sequence
    /// (`_get_encoder_input`).
    ///
    /// # Shapes
    /// `maps[i]: [B, in_channels[i], H_i, W_i]` → `([B, S, hidden], [(H_i, W_i)])`, S = Σ H_i·W_i
    pub fn encoder_input(
        &self,
        maps: &[Tensor],
        train: bool,
    ) -> Result<(Tensor, Vec<(usize, usize)>)> {
        if maps.len() != self.input_proj.len() {
            candle::bail!(
                "RTDETRDecoder: {} maps given, built for {}",
                maps.len(),
                self.input_proj.len()
            )
        }
        let mut flat = Vec::with_capacity(maps.len());
        let mut shapes = Vec::with_capacity(maps.len());
        for (i, (xs, (weight, bn))) in maps.iter().zip(&self.input_proj).enumerate() {
            let ys = match (&self.input_proj_folded, train) {
                (Some(folded), false) => {
                    let (weight, bias) = &folded[i];
                    rtdetr_ops::conv2d_bias_act(xs, weight, bias, (1, 0, 1), false)?
                }
                _ => rtdetr_ops::conv2d(xs, weight, 1, 0, 1)?.apply_t(bn, train)?,
            };
            let (_, _, h, w) = ys.dims4()?;
            shapes.push((h, w));
            // [B, C, H, W] -> [B, H*W, C]
            flat.push(ys.flatten_from(2)?.transpose(1, 2)?);
        }
        Ok((Tensor::cat(&flat, 1)?, shapes))
    }

    /// Scores every token with the encoder head and keeps the `queries` best as the decoder's
    /// initial queries and reference boxes (`_get_decoder_input`). In training the queries and
    /// boxes are detached, as in the reference.
    pub fn select_queries(
        &self,
        feats: &Tensor,
        shapes: &[(usize, usize)],
        train: bool,
    ) -> Result<QueryInit> {
        let anchors = generate_anchors(shapes, feats.device())?;
        let valid = anchors.valid.to_dtype(feats.dtype())?;
        let memory = self.enc_output.0.forward(&feats.broadcast_mul(&valid)?)?;
        let memory = self.enc_output.1.forward(&memory)?;
        let logits = self.enc_score_head.forward(&memory)?;
        let k = self.cfg.queries.min(feats.dim(1)?);
        let (_, index) = topk(&logits.max(D::Minus1)?, k)?;
        let embed = gather_rows(&memory, &index)?;
        let b = feats.dim(0)?;
        let anchor_logits =
            anchors
                .logits
                .to_dtype(feats.dtype())?
                .broadcast_as((b, feats.dim(1)?, 4))?;
        let ref_logits =
            (self.enc_bbox_head.forward(&embed)? + gather_rows(&anchor_logits, &index)?)?;
        let enc_boxes = sigmoid(&ref_logits)?;
        let enc_logits = gather_rows(&logits, &index)?;
        let (embed, ref_logits) = if train {
            (embed.detach(), ref_logits.detach())
        } else {
            (embed, ref_logits)
        };
        Ok(QueryInit {
            embed,
            ref_logits,
            enc_boxes,
            enc_logits,
            index,
        })
    }

    /// Runs the decoder layers from `embed` and reference boxes `ref_logits` (logit space), refining
    /// the boxes after each layer (`DeformableTransformerDecoder.forward`). Training detaches the
    /// reference between layers; every layer's boxes and logits are returned.
    ///
    /// # Shapes
    /// `embed: [B, Q, hidden]`, `ref_logits: [B, Q, 4]`, `feats: [B, S, hidden]`,
    /// `blocked: [Q, Q]` → `([L, B, Q, 4], [L, B, Q, nc])`
    pub fn forward_queries(
        &self,
        embed: &Tensor,
        ref_logits: &Tensor,
        feats: &Tensor,
        shapes: &[(usize, usize)],
        blocked: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, Tensor)> {
        let mut output = embed.clone();
        let mut reference = sigmoid(ref_logits)?;
        let mut last_refined: Option<Tensor> = None;
        let mut boxes = Vec::with_capacity(self.layers.len());
        let mut logits = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let query_pos = self.query_pos_head.forward(&reference)?;
            output = layer.forward(
                &output, &reference, feats, shapes, blocked, &query_pos, train,
            )?;
            let delta = self.dec_bbox_head[i].forward(&output)?;
            let refined = sigmoid(&(&delta + inverse_sigmoid(&reference)?)?)?;
            logits.push(self.dec_score_head[i].forward(&output)?);
            if train {
                // The loss sees each layer's box through the undetached previous box.
                let through = match &last_refined {
                    Some(prev) => sigmoid(&(&delta + inverse_sigmoid(prev)?)?)?,
                    None => refined.clone(),
                };
                boxes.push(through);
                reference = refined.detach();
                last_refined = Some(refined);
            } else {
                boxes.push(refined.clone());
                reference = refined;
            }
        }
        Ok((Tensor::stack(&boxes, 0)?, Tensor::stack(&logits, 0)?))
    }

    /// `RTDETRDecoder.postprocess`: the top-k (query, class) pairs of the last layer by sigmoid
    /// score, as `[cx, cy, w, h, score, class]`.
    ///
    /// # Shapes
    /// `boxes: [B, Q, 4]`, `logits: [B, Q, nc]` → `[B, min(Q, Q·nc), 6]`
    pub fn postprocess(&self, boxes: &Tensor, logits: &Tensor) -> Result<Tensor> {
        let (b, q, nc) = logits.dims3()?;
        let scores = sigmoid(logits)?.reshape((b, q * nc))?;
        let k = q.min(q * nc);
        let (values, index) = topk(&scores, k)?;
        // On the device, in integers: index = query·nc + class.
        let nc_u32 = Tensor::new(nc as u32, index.device())?;
        let query = index.broadcast_div(&nc_u32)?;
        let class = (&index - query.broadcast_mul(&nc_u32)?)?;
        let class = class.unsqueeze(2)?.to_dtype(boxes.dtype())?;
        let picked = gather_rows(boxes, &query)?;
        Tensor::cat(&[picked, values.unsqueeze(2)?, class], 2)
    }

    /// The training pass (`RTDETRDecoder.forward` with a batch): batch-statistics batch norms,
    /// detached query selection, contrastive denoising queries from `gt` and `noise` prepended
    /// with their attention mask, every layer's outputs.
    pub fn forward_train(
        &self,
        maps: &[Tensor],
        gt: &crate::GroundTruth,
        noise: &crate::CdnNoise,
    ) -> Result<TrainOutput> {
        let (feats, shapes) = self.encoder_input(maps, true)?;
        let queries = self.select_queries(&feats, &shapes, true)?;
        let k = queries.embed.dim(1)?;
        let dn = crate::cdn_group(
            gt,
            self.cfg.nc,
            k,
            &self.denoising_class_embed,
            &self.cfg.denoising,
            noise,
        )?;
        let (boxes, logits) = match &dn {
            Some(dn) => {
                let embed = Tensor::cat(&[&dn.embed, &queries.embed], 1)?;
                let refs = Tensor::cat(&[&dn.ref_logits, &queries.ref_logits], 1)?;
                self.forward_queries(&embed, &refs, &feats, &shapes, Some(&dn.blocked), true)?
            }
            None => self.forward_queries(
                &queries.embed,
                &queries.ref_logits,
                &feats,
                &shapes,
                None,
                true,
            )?,
        };
        Ok(TrainOutput {
            boxes,
            logits,
            queries,
            dn: dn.map(|d| d.meta),
        })
    }

    /// The evaluation (or denoising-free training) pass: maps in, every layer's boxes and logits
    /// and the final detections out.
    ///
    /// # Shapes
    /// `maps[i]: [B, in_channels[i], H_i, W_i]`
    pub fn forward(&self, maps: &[Tensor], train: bool) -> Result<DecoderOutput> {
        let (feats, shapes) = self.encoder_input(maps, train)?;
        let queries = self.select_queries(&feats, &shapes, train)?;
        let (boxes, logits) = self.forward_queries(
            &queries.embed,
            &queries.ref_logits,
            &feats,
            &shapes,
            None,
            train,
        )?;
        let last = self.layers.len() - 1;
        let detections = self.postprocess(&boxes.get(last)?, &logits.get(last)?)?;
        Ok(DecoderOutput {
            detections,
            boxes,
            logits,
            queries,
        })
    }

    /// The evaluation pass as ONNX nodes up to the last layer's boxes `[N, K, 4]` (cx, cy, w, h
    /// normalised) and sigmoid class scores `[N, K, nc]`, with the anchors of `shapes` as
    /// constants. `scope` is the module's state_dict prefix (`model.19`).
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        maps: &[&str],
        shapes: &[(usize, usize)],
        sampler: Sampler,
    ) -> Result<(String, String)> {
        if maps.len() != self.input_proj.len() || shapes.len() != maps.len() {
            candle::bail!(
                "RTDETRDecoder: {} maps given, built for {}",
                maps.len(),
                self.input_proj.len()
            )
        }
        let at = |name: &str| format!("{scope}.{name}");
        let hd = self.cfg.hidden;
        let mut flat = Vec::with_capacity(maps.len());
        for (i, (xs, (weight, bn))) in maps.iter().zip(&self.input_proj).enumerate() {
            let (scale, shift) = bn.scale_shift()?;
            let weight = weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
            let ys = g.conv(
                &at(&format!("input_proj.{i}.0")),
                xs,
                (&weight, &shift),
                1,
                0,
                1,
            )?;
            let ys = g.reshape(scope, &ys, &[0, hd as i64, -1]);
            flat.push(g.transpose(scope, &ys, &[0, 2, 1]));
        }
        let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
        let feats = g.concat(scope, &refs, 1);
        let tokens: usize = shapes.iter().map(|(h, w)| h * w).sum();

        let anchors = generate_anchors(shapes, &candle::Device::Cpu)?;
        let valid = g.weight(&at("anchors.valid"), &anchors.valid)?;
        let masked = g.node(scope, "Mul", &[&feats, &valid], vec![]);
        let (linear, norm) = &self.enc_output;
        let memory = g.linear(&at("enc_output.0"), &masked, linear.weight(), linear.bias())?;
        let (w, b, eps) = norm.parts();
        let memory = g.layer_norm(&at("enc_output.1"), &memory, w, b, eps)?;
        let head = &self.enc_score_head;
        let logits = g.linear(&at("enc_score_head"), &memory, head.weight(), head.bias())?;
        let best = g.reduce(scope, "ReduceMax", &logits, &[-1], false);
        let k = self.cfg.queries.min(tokens);
        let (_, index) = g.topk(scope, &best, k, 1);
        let embed = g.gather_rows(scope, &memory, &index, hd);
        let anchor_logits = g.weight(&at("anchors.logits"), &anchors.logits.squeeze(0)?)?;
        let anchor_rows = g.node(
            scope,
            "Gather",
            &[&anchor_logits, &index],
            vec![attr_int("axis", 0)],
        );
        let delta = self
            .enc_bbox_head
            .to_onnx(g, &at("enc_bbox_head"), &embed)?;
        let ref_logits = g.node(scope, "Add", &[&delta, &anchor_rows], vec![]);

        let zero = g.scalar(&at("zero"), 0.0);
        let one = g.scalar(&at("one"), 1.0);
        let eps = g.scalar(&at("inverse_sigmoid_eps"), 1e-5);
        let inverse_sigmoid = |g: &mut GraphBuilder, x: &str| {
            let x = g.node(scope, "Clip", &[x, &zero, &one], vec![]);
            let num = g.node(scope, "Clip", &[&x, &eps], vec![]);
            let rest = g.node(scope, "Sub", &[&one, &x], vec![]);
            let den = g.node(scope, "Clip", &[&rest, &eps], vec![]);
            let ratio = g.node(scope, "Div", &[&num, &den], vec![]);
            g.node(scope, "Log", &[&ratio], vec![])
        };
        let mut reference = g.node(scope, "Sigmoid", &[&ref_logits], vec![]);
        let mut output = embed;
        for (i, layer) in self.layers.iter().enumerate() {
            let query_pos = self
                .query_pos_head
                .to_onnx(g, &at("query_pos_head"), &reference)?;
            let layer_scope = at(&format!("decoder.layers.{i}"));
            output = layer.to_onnx(
                g,
                &layer_scope,
                &output,
                &reference,
                &feats,
                shapes,
                &query_pos,
                k,
                sampler,
            )?;
            let delta =
                self.dec_bbox_head[i].to_onnx(g, &at(&format!("dec_bbox_head.{i}")), &output)?;
            let base = inverse_sigmoid(g, &reference);
            let refined = g.node(scope, "Add", &[&delta, &base], vec![]);
            reference = g.node(scope, "Sigmoid", &[&refined], vec![]);
        }
        let last = self.layers.len() - 1;
        let head = &self.dec_score_head[last];
        let logits = g.linear(
            &at(&format!("dec_score_head.{last}")),
            &output,
            head.weight(),
            head.bias(),
        )?;
        let scores = g.node(scope, "Sigmoid", &[&logits], vec![]);
        Ok((reference, scores))
    }

    /// [`RtDetrDecoder::postprocess`] as ONNX nodes, on sigmoid `scores`: the top-k (query, class)
    /// pairs as `[cx, cy, w, h, score, class]`, `[N, min(Q, Q·nc), 6]`.
    pub fn postprocess_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        boxes: &str,
        scores: &str,
        queries: usize,
    ) -> String {
        let nc = self.cfg.nc;
        let flat = g.reshape(scope, scores, &[0, (queries * nc) as i64]);
        let (values, index) = g.topk(scope, &flat, queries.min(queries * nc), 1);
        let classes = g.ints(&[nc as i64]);
        let query = g.node(scope, "Div", &[&index, &classes], vec![]);
        let first = g.node(scope, "Mul", &[&query, &classes], vec![]);
        let class = g.node(scope, "Sub", &[&index, &first], vec![]);
        let class = g.node(
            scope,
            "Cast",
            &[&class],
            vec![attr_int("to", g.float_type() as i64)],
        );
        let class = g.unsqueeze(scope, &class, &[2]);
        let values = g.unsqueeze(scope, &values, &[2]);
        let picked = g.gather_rows(scope, boxes, &query, 4);
        g.concat(scope, &[&picked, &values, &class], 2)
    }
}
