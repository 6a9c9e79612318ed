use candle::{DType, Result, Tensor};

use crate::{box_iou_giou, Targets};

/// Per image: the matched query indices and the global indices of their ground-truth boxes.
pub type Matches = Vec<(Vec<usize>, Vec<usize>)>;

/// The minimum-cost assignment of `rows × cols` (row-major) as scipy's `linear_sum_assignment`
/// (min(rows, cols) pairs, rows ascending). Non-finite costs count as 0.
pub fn assign(costs: &[f64], rows: usize, cols: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    if costs.len() != rows * cols {
        candle::bail!(
            "assignment: {} costs for a {rows}×{cols} matrix",
            costs.len()
        )
    }
    let costs: Vec<f64> = costs
        .iter()
        .map(|&c| if c.is_finite() { c } else { 0.0 })
        .collect();
    lsap::solve(rows, cols, &costs, false)
        .map_err(|e| candle::Error::Msg(format!("linear sum assignment failed: {e:?}")))
}

/// ultralytics `HungarianMatcher` (`use_fl=True`): the assignment of queries to ground-truth
/// boxes minimising `2·focal class cost + 5·L1 + 2·(1 − GIoU)`.
#[derive(Debug, Clone, PartialEq)]
pub struct HungarianMatcher {
    /// Weight of the class cost (2).
    pub cost_class: f32,
    /// Weight of the L1 box cost (5).
    pub cost_bbox: f32,
    /// Weight of the GIoU cost (2).
    pub cost_giou: f32,
    /// Focal cost α (0.25).
    pub alpha: f32,
    /// Focal cost γ (2).
    pub gamma: f32,
}

impl Default for HungarianMatcher {
    fn default() -> Self {
        Self {
            cost_class: 2.0,
            cost_bbox: 5.0,
            cost_giou: 2.0,
            alpha: 0.25,
            gamma: 2.0,
        }
    }
}

impl HungarianMatcher {
    /// The cost of assigning a query with class probability `p` (for the box's class) and box
    /// `pred` to the ground-truth box `gt`. NaN or infinite costs count as 0, as in the reference,
    /// so a bad prediction can never stall the assignment.
    pub fn cost(&self, p: f32, pred: [f32; 4], gt: [f32; 4]) -> f32 {
        let c = self.raw_cost(p, pred, gt);
        if c.is_finite() {
            c
        } else {
            0.0
        }
    }

    fn raw_cost(&self, p: f32, pred: [f32; 4], gt: [f32; 4]) -> f32 {
        let neg = (1.0 - self.alpha) * p.powf(self.gamma) * -(1.0 - p + 1e-8).ln();
        let pos = self.alpha * (1.0 - p).powf(self.gamma) * -(p + 1e-8).ln();
        let l1: f32 = pred.iter().zip(&gt).map(|(a, b)| (a - b).abs()).sum();
        let (_, giou) = box_iou_giou(pred, gt);
        self.cost_class * (pos - neg) + self.cost_bbox * l1 + self.cost_giou * (1.0 - giou)
    }

    /// Matches every image of one layer's predictions (detached).
    ///
    /// # Shapes
    /// `boxes: [B, K, 4]`, `logits: [B, K, nc]`
    pub fn match_layer(
        &self,
        boxes: &Tensor,
        logits: &Tensor,
        targets: &Targets,
    ) -> Result<Matches> {
        let (b, k, nc) = logits.dims3()?;
        if targets.groups.len() != b {
            candle::bail!(
                "matcher: {} images of predictions, {} of targets",
                b,
                targets.groups.len()
            )
        }
        let boxes: Vec<Vec<Vec<f32>>> = boxes.detach().to_dtype(DType::F32)?.to_vec3()?;
        let logits: Vec<Vec<Vec<f32>>> = logits.detach().to_dtype(DType::F32)?.to_vec3()?;
        let gt_boxes: Vec<Vec<f32>> = targets.boxes.to_dtype(DType::F32)?.to_vec2()?;
        let mut matches = Vec::with_capacity(b);
        let mut offset = 0;
        for (image, &n) in targets.groups.iter().enumerate() {
            let gt = offset..offset + n;
            offset += n;
            if n == 0 {
                matches.push((vec![], vec![]));
                continue;
            }
            let mut costs = Vec::with_capacity(k * n);
            for q in 0..k {
                let pred = [
                    boxes[image][q][0],
                    boxes[image][q][1],
                    boxes[image][q][2],
                    boxes[image][q][3],
                ];
                for j in gt.clone() {
                    let class = targets.cls[j];
                    if class >= nc {
                        candle::bail!("matcher: ground-truth class {class} with {nc} classes")
                    }
                    let p = 1.0 / (1.0 + (-logits[image][q][class]).exp());
                    let g = &gt_boxes[j];
                    costs.push(self.cost(p, pred, [g[0], g[1], g[2], g[3]]) as f64);
                }
            }
            let (rows, cols) = assign(&costs, k, n)?;
            matches.push((rows, cols.into_iter().map(|c| c + gt.start).collect()));
        }
        Ok(matches)
    }
}
