use candle::{DType, Device, Result, Tensor};

use rtdetr_decoder::DnMeta;

use crate::{iou_giou, HungarianMatcher, Matches};

/// Ground truth of a batch: boxes of all images in order, with per-image counts.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Class of each box.
    pub cls: Vec<usize>,
    /// Normalised `[cx, cy, w, h]`. `[N, 4]`
    pub boxes: Tensor,
    /// Number of boxes of each image (`gt_groups`).
    pub groups: Vec<usize>,
}

/// Class, L1 and GIoU terms, gains applied.
#[derive(Debug, Clone)]
pub struct LayerLoss {
    /// Varifocal (focal without boxes) classification loss.
    pub class: Tensor,
    /// L1 box loss.
    pub bbox: Tensor,
    /// GIoU box loss.
    pub giou: Tensor,
}

impl LayerLoss {
    fn zeros(device: &Device) -> Result<Self> {
        let z = Tensor::zeros((), DType::F32, device)?;
        Ok(Self {
            class: z.clone(),
            bbox: z.clone(),
            giou: z,
        })
    }

    fn add(&self, other: &Self) -> Result<Self> {
        Ok(Self {
            class: (&self.class + &other.class)?,
            bbox: (&self.bbox + &other.bbox)?,
            giou: (&self.giou + &other.giou)?,
        })
    }
}

/// The twelve terms of `RTDETRDetectionLoss`.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// The last decoder layer.
    pub main: LayerLoss,
    /// Σ over the encoder output and the other decoder layers.
    pub aux: LayerLoss,
    /// The last layer's denoising queries (zero without boxes).
    pub dn: LayerLoss,
    /// Σ over the other layers' denoising queries.
    pub aux_dn: LayerLoss,
}

impl LossTerms {
    /// `(name, value)` with ultralytics' names (`loss_class`, `loss_bbox_aux`, `loss_giou_dn`, ...).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(12);
        for (suffix, part) in [
            ("", &self.main),
            ("_aux", &self.aux),
            ("_dn", &self.dn),
            ("_aux_dn", &self.aux_dn),
        ] {
            for (name, t) in [
                ("class", &part.class),
                ("bbox", &part.bbox),
                ("giou", &part.giou),
            ] {
                out.push((format!("loss_{name}{suffix}"), t.clone()));
            }
        }
        out
    }

    /// The sum of all twelve terms, what training minimises.
    pub fn total(&self) -> Result<Tensor> {
        let terms: Vec<Tensor> = self.named().into_iter().map(|(_, t)| t).collect();
        Tensor::stack(&terms, 0)?.sum_all()
    }
}

/// `RTDETRDetectionLoss(nc, use_vfl=True)` with its defaults: gains class 1, bbox 5, GIoU 2;
/// varifocal and focal α 0.25, γ 1.5; auxiliary losses on.
#[derive(Debug, Clone)]
pub struct DetrLoss {
    /// Number of classes.
    pub nc: usize,
    /// Gain of the classification term.
    pub gain_class: f64,
    /// Gain of the L1 term.
    pub gain_bbox: f64,
    /// Gain of the GIoU term.
    pub gain_giou: f64,
    /// α of the varifocal and focal losses.
    pub alpha: f64,
    /// γ of the varifocal and focal losses.
    pub gamma: f64,
    /// The matcher.
    pub matcher: HungarianMatcher,
}

impl DetrLoss {
    /// The reference configuration for `nc` classes.
    pub fn new(nc: usize) -> Self {
        Self {
            nc,
            gain_class: 1.0,
            gain_bbox: 5.0,
            gain_giou: 2.0,
            alpha: 0.25,
            gamma: 1.5,
            matcher: HungarianMatcher::default(),
        }
    }

    /// `max(x, 0) − x·t + log(1 + exp(−|x|))`, the stable BCE with logits.
    fn bce_with_logits(x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let softplus = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
        (x.relu()? - (x * t)?)? + softplus
    }

    /// The three terms of one layer for given matches (`DETRLoss._get_loss`).
    ///
    /// # Shapes
    /// `boxes: [B, K, 4]`, `logits: [B, K, nc]`
    pub fn layer(
        &self,
        boxes: &Tensor,
        logits: &Tensor,
        targets: &Targets,
        matches: &Matches,
    ) -> Result<LayerLoss> {
        let (b, k, nc) = logits.dims3()?;
        if nc != self.nc {
            candle::bail!("loss: logits have {nc} classes, the loss {}", self.nc)
        }
        let device = logits.device();
        let mut flat_query = Vec::new();
        let mut gt_index = Vec::new();
        for (image, (queries, gts)) in matches.iter().enumerate() {
            if queries.len() != gts.len() {
                candle::bail!(
                    "loss: image {image} matches {} queries to {} boxes",
                    queries.len(),
                    gts.len()
                )
            }
            flat_query.extend(queries.iter().map(|&q| (image * k + q) as u32));
            gt_index.extend(gts.iter().map(|&g| g as u32));
        }
        let n = flat_query.len();

        let (matched, gt, iou) = if n > 0 {
            let flat_query = Tensor::from_vec(flat_query.clone(), n, device)?;
            let matched = boxes.reshape((b * k, 4))?.index_select(&flat_query, 0)?;
            let gt = targets
                .boxes
                .index_select(&Tensor::from_vec(gt_index.clone(), n, device)?, 0)?;
            let (iou, _) = iou_giou(&matched.detach(), &gt)?;
            (
                Some(matched),
                Some(gt),
                iou.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            )
        } else {
            (None, None, vec![])
        };

        let mut one_hot = vec![0f32; b * k * nc];
        let mut score = vec![0f32; b * k * nc];
        for ((&q, &g), &iou) in flat_query.iter().zip(&gt_index).zip(&iou) {
            let at = q as usize * nc + targets.cls[g as usize];
            one_hot[at] = 1.0;
            score[at] = iou;
        }
        let one_hot = Tensor::from_vec(one_hot, (b, k, nc), device)?.to_dtype(logits.dtype())?;
        let score = Tensor::from_vec(score, (b, k, nc), device)?.to_dtype(logits.dtype())?;
        let p = candle_nn::ops::sigmoid(logits)?;
        let class = if n > 0 {
            // VarifocalLoss: negatives weighted α·σ(x)^γ, positives by their IoU target.
            let weight =
                ((p.powf(self.gamma)? * self.alpha)? * one_hot.affine(-1.0, 1.0)?)?.add(&score)?;
            (Self::bce_with_logits(logits, &score)? * weight)?.sum_all()?
        } else {
            // FocalLoss with target 0: (1 − p_t)^γ = σ(x)^γ, α factor 1 − α.
            let bce = Self::bce_with_logits(logits, &one_hot)?;
            ((bce * p.powf(self.gamma)?)? * (1.0 - self.alpha))?.sum_all()?
        };
        // `.mean(1).sum()` then `/ (max(n, 1) / K)`
        let class = ((class / k as f64)? / (n.max(1) as f64 / k as f64))? * self.gain_class;

        let (bbox, giou) = match (matched, gt) {
            (Some(matched), Some(gt)) => {
                let l1 = ((&matched - &gt)?.abs()?.sum_all()? * self.gain_bbox)? / n as f64;
                let (_, giou) = iou_giou(&matched, &gt)?;
                let giou = ((giou.affine(-1.0, 1.0)?.sum_all()? / n as f64)? * self.gain_giou)?;
                (l1?, giou)
            }
            _ => {
                let z = Tensor::zeros((), logits.dtype(), device)?;
                (z.clone(), z)
            }
        };
        Ok(LayerLoss {
            class: class?,
            bbox,
            giou,
        })
    }

    /// Main and auxiliary terms over stacked layers (`DETRLoss.forward`): the last layer is the
    /// main one; every layer is matched on its own unless `fixed` matches are given.
    ///
    /// # Shapes
    /// `boxes: [L, B, K, 4]`, `logits: [L, B, K, nc]`
    pub fn layers(
        &self,
        boxes: &Tensor,
        logits: &Tensor,
        targets: &Targets,
        fixed: Option<&Matches>,
    ) -> Result<(LayerLoss, LayerLoss)> {
        let layers = boxes.dim(0)?;
        let mut aux = LayerLoss::zeros(boxes.device())?;
        let mut main = None;
        for l in 0..layers {
            let (bl, sl) = (boxes.get(l)?, logits.get(l)?);
            let matches = match fixed {
                Some(m) => m.clone(),
                None => self.matcher.match_layer(&bl, &sl, targets)?,
            };
            let loss = self.layer(&bl, &sl, targets, &matches)?;
            if l + 1 == layers {
                main = Some(loss);
            } else {
                aux = aux.add(&loss)?;
            }
        }
        let main = main.ok_or_else(|| candle::Error::Msg("loss: no layers".into()))?;
        Ok((main, aux))
    }

    /// `RTDETRDetectionLoss.forward`: `boxes`/`logits` stack the encoder's top-k output and every
    /// decoder layer's matching queries; `dn` the denoising queries of every decoder layer with
    /// their bookkeeping (none when the batch has no boxes: the four denoising terms are then 0).
    pub fn forward(
        &self,
        boxes: &Tensor,
        logits: &Tensor,
        dn: Option<(&Tensor, &Tensor, &DnMeta)>,
        targets: &Targets,
    ) -> Result<LossTerms> {
        let (main, aux) = self.layers(boxes, logits, targets, None)?;
        let (dn, aux_dn) = match dn {
            Some((dn_boxes, dn_logits, meta)) => {
                self.layers(dn_boxes, dn_logits, targets, Some(&meta.matches()))?
            }
            None => (
                LayerLoss::zeros(boxes.device())?,
                LayerLoss::zeros(boxes.device())?,
            ),
        };
        Ok(LossTerms {
            main,
            aux,
            dn,
            aux_dn,
        })
    }
}
