//! ultralytics' validation metrics, the figures of its `val` table: per class, precision and
//! recall at the confidence that maximises the smoothed mean F1, and AP at IoU 0.50:0.95 by
//! 101-point interpolation (ultralytics 8.4.190 `DetectionValidator.match_predictions`,
//! `ap_per_class`, `compute_ap`, `DetMetrics`). These differ from the COCO evaluator's
//! ([`crate::coco`]): ultralytics matches greedily per image over all its predictions and
//! interpolates its own precision envelope.

use std::fmt::Write as _;

use crate::{coco, Detection};

/// IoU thresholds 0.50, 0.55, ..., 0.95 as `torch.linspace(0.5, 0.95, 10)` computes them in f32.
pub fn iou_thresholds() -> [f32; 10] {
    let (start, end, steps) = (0.5f32, 0.95f32, 10usize);
    let step = (end - start) / (steps - 1) as f32;
    std::array::from_fn(|i| {
        if i < steps / 2 {
            start + step * i as f32
        } else {
            end - step * (steps - i - 1) as f32
        }
    })
}

/// IoU of two xyxy boxes, in f32 and in the order of ultralytics' `box_iou` (eps 1e-7).
fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter + 1e-7)
}

/// Which predictions are true positives at each IoU threshold. `predictions` in descending
/// confidence; each claims, per threshold, the unclaimed target of its class with the highest IoU
/// (the first of equals), as ultralytics' greedy `match_predictions`.
pub fn match_predictions(
    predictions: &[Detection],
    targets: &[([f32; 4], usize)],
) -> Vec<[bool; 10]> {
    let thresholds = iou_thresholds();
    let mut correct = vec![[false; 10]; predictions.len()];
    if targets.is_empty() {
        return correct;
    }
    let mut claimed = vec![[false; 10]; targets.len()];
    for (j, p) in predictions.iter().enumerate() {
        let iou: Vec<f32> = targets
            .iter()
            .map(|&(b, c)| {
                if c == p.class_id {
                    box_iou(b, p.bbox)
                } else {
                    0.0
                }
            })
            .collect();
        for (t, &threshold) in thresholds.iter().enumerate() {
            let mut best = (0, f32::NEG_INFINITY);
            for (k, &v) in iou.iter().enumerate() {
                let available = if claimed[k][t] { 0.0 } else { v };
                if available > best.1 {
                    best = (k, available);
                }
            }
            if best.1 >= threshold {
                correct[j][t] = true;
                claimed[best.0][t] = true;
            }
        }
    }
    correct
}

/// `np.linspace(0, 1, n)`.
fn linspace01(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    (0..n)
        .map(|i| if i == n - 1 { 1.0 } else { i as f64 * step })
        .collect()
}

/// `np.interp(x, xp, fp, left)` for increasing `xp` (equal values allowed), right = `fp[-1]`.
fn interp(x: f64, xp: &[f64], fp: &[f64], left: f64) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return left;
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    let j = xp.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (x - xp[j]) + fp[j]
}

/// AP of one precision-recall curve: ultralytics' `compute_ap` (sentinels, precision envelope,
/// trapezoid over 101 recall points).
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut mrec = Vec::with_capacity(recall.len() + 3);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(recall.last().copied().unwrap_or(1.0));
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(precision.len() + 3);
    mpre.push(1.0);
    mpre.extend_from_slice(precision);
    mpre.extend([0.0, 0.0]);
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    let x = linspace01(101);
    let y: Vec<f64> = x
        .iter()
        .map(|&v| interp(v, &mrec, &mpre, mpre[0]))
        .collect();
    (1..x.len())
        .map(|i| (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0)
        .sum()
}

/// `smooth(y, 0.1)`: a box filter of 10 % of the length, edges padded with the end values.
fn smooth(y: &[f64]) -> Vec<f64> {
    let nf = ((y.len() as f64 * 0.1 * 2.0).round() as usize) / 2 + 1;
    let half = nf / 2;
    let padded: Vec<f64> = std::iter::repeat_n(y[0], half)
        .chain(y.iter().copied())
        .chain(std::iter::repeat_n(y[y.len() - 1], half))
        .collect();
    let w = 1.0 / nf as f64;
    padded
        .windows(nf)
        .map(|win| win.iter().map(|v| v * w).sum())
        .collect()
}

/// One class's row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMetrics {
    /// Class id.
    pub class: usize,
    /// Images holding at least one target of the class.
    pub images: usize,
    /// Targets of the class.
    pub instances: usize,
    /// Precision at the max-F1 confidence.
    pub precision: f64,
    /// Recall at the max-F1 confidence.
    pub recall: f64,
    /// AP at IoU 0.50, 0.55, ..., 0.95.
    pub ap: [f64; 10],
}

impl ClassMetrics {
    /// AP at IoU 0.50.
    pub fn ap50(&self) -> f64 {
        self.ap[0]
    }

    /// AP averaged over IoU 0.50:0.95.
    pub fn ap50_95(&self) -> f64 {
        self.ap.iter().sum::<f64>() / 10.0
    }
}

/// The table's figures: one row per class that has targets, and their means (the `all` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// Images evaluated.
    pub images: usize,
    /// Targets in all images.
    pub instances: usize,
    /// Classes with targets, in class order.
    pub classes: Vec<ClassMetrics>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl Metrics {
    /// Mean precision over the classes with targets.
    pub fn precision(&self) -> f64 {
        mean(self.classes.iter().map(|c| c.precision))
    }

    /// Mean recall.
    pub fn recall(&self) -> f64 {
        mean(self.classes.iter().map(|c| c.recall))
    }

    /// mAP at IoU 0.50.
    pub fn map50(&self) -> f64 {
        mean(self.classes.iter().map(ClassMetrics::ap50))
    }

    /// mAP at IoU 0.50:0.95.
    pub fn map50_95(&self) -> f64 {
        mean(self.classes.iter().flat_map(|c| c.ap))
    }

    /// ultralytics' `val` table: a header, the `all` row and, with more than one class, a row
    /// per class with targets (`names[class]`, or the id when `names` has no entry).
    pub fn table(&self, names: &[String]) -> String {
        let mut out = format!(
            "{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}\n",
            "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)"
        );
        let row = |out: &mut String, name: &str, images, instances, figures: [f64; 4]| {
            let _ = write!(out, "{name:>22}{images:>11}{instances:>11}");
            for v in figures {
                let _ = write!(out, "{:>11}", format_g3(v));
            }
            out.push('\n');
        };
        let all = [
            self.precision(),
            self.recall(),
            self.map50(),
            self.map50_95(),
        ];
        row(&mut out, "all", self.images, self.instances, all);
        if names.len() > 1 {
            for c in &self.classes {
                let name = names.get(c.class).cloned().unwrap_or(c.class.to_string());
                let figures = [c.precision, c.recall, c.ap50(), c.ap50_95()];
                row(&mut out, &name, c.images, c.instances, figures);
            }
        }
        out.pop();
        out
    }
}

/// C's `%.3g`: three significant digits, trailing zeros dropped, exponent form below 1e-4.
fn format_g3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa.to_string()), exp.abs())
    } else {
        trim(format!("{v:.*}", (2 - exp) as usize))
    }
}

/// Collects predictions and targets image by image, as ultralytics' validator does, and computes
/// the table's figures.
#[derive(Debug, Default)]
pub struct Accumulator {
    images: usize,
    tp: Vec<[bool; 10]>,
    conf: Vec<f32>,
    pred_class: Vec<usize>,
    target_class: Vec<usize>,
    images_with_class: Vec<usize>,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image: its predictions (any order; xyxy pixels) and its targets (xyxy pixels in
    /// the same space, class).
    pub fn add_image(&mut self, predictions: &[Detection], targets: &[([f32; 4], usize)]) {
        let mut sorted: Vec<Detection> = predictions.to_vec();
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.images += 1;
        self.tp.extend(match_predictions(&sorted, targets));
        self.conf.extend(sorted.iter().map(|d| d.score));
        self.pred_class.extend(sorted.iter().map(|d| d.class_id));
        self.target_class.extend(targets.iter().map(|t| t.1));
        let mut present: Vec<usize> = targets.iter().map(|t| t.1).collect();
        present.sort_unstable();
        present.dedup();
        self.images_with_class.extend(present);
    }

    /// ultralytics' `ap_per_class` over everything added.
    pub fn metrics(&self) -> Metrics {
        let mut order: Vec<usize> = (0..self.conf.len()).collect();
        order.sort_by(|&a, &b| self.conf[b].total_cmp(&self.conf[a]));
        let mut classes: Vec<usize> = self.target_class.clone();
        classes.sort_unstable();
        classes.dedup();
        let x = linspace01(1000);
        let mut rows = Vec::with_capacity(classes.len());
        let mut p_curves = Vec::with_capacity(classes.len());
        let mut r_curves = Vec::with_capacity(classes.len());
        for &c in &classes {
            let count = |v: &[usize]| v.iter().filter(|&&k| k == c).count();
            let n_labels = count(&self.target_class);
            let mine: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| self.pred_class[i] == c)
                .collect();
            let mut ap = [0.0; 10];
            let (mut p_curve, mut r_curve) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            if !mine.is_empty() {
                let neg_conf: Vec<f64> = mine.iter().map(|&i| -f64::from(self.conf[i])).collect();
                for (t, ap_t) in ap.iter_mut().enumerate() {
                    let (mut tpc, mut fpc) = (0.0, 0.0);
                    let (mut recall, mut precision) = (Vec::new(), Vec::new());
                    for &i in &mine {
                        if self.tp[i][t] {
                            tpc += 1.0;
                        } else {
                            fpc += 1.0;
                        }
                        recall.push(tpc / (n_labels as f64 + 1e-16));
                        precision.push(tpc / (tpc + fpc));
                    }
                    if t == 0 {
                        for (k, &xv) in x.iter().enumerate() {
                            r_curve[k] = interp(-xv, &neg_conf, &recall, 0.0);
                            p_curve[k] = interp(-xv, &neg_conf, &precision, 1.0);
                        }
                    }
                    *ap_t = compute_ap(&recall, &precision);
                }
            }
            rows.push(ClassMetrics {
                class: c,
                images: count(&self.images_with_class),
                instances: n_labels,
                precision: 0.0,
                recall: 0.0,
                ap,
            });
            p_curves.push(p_curve);
            r_curves.push(r_curve);
        }
        if !rows.is_empty() {
            let mean_f1: Vec<f64> = (0..x.len())
                .map(|k| {
                    let sum: f64 = p_curves
                        .iter()
                        .zip(&r_curves)
                        .map(|(p, r)| 2.0 * p[k] * r[k] / (p[k] + r[k] + 1e-16))
                        .sum();
                    sum / rows.len() as f64
                })
                .collect();
            let smoothed = smooth(&mean_f1);
            let best =
                smoothed
                    .iter()
                    .enumerate()
                    .fold(0, |best, (k, &v)| if v > smoothed[best] { k } else { best });
            for ((row, p), r) in rows.iter_mut().zip(&p_curves).zip(&r_curves) {
                row.precision = p[best];
                row.recall = r[best];
            }
        }
        Metrics {
            images: self.images,
            instances: self.target_class.len(),
            classes: rows,
        }
    }
}

/// ultralytics' figures for a COCO ground truth and results file: classes are the positions of
/// `gt.categories`; crowd boxes and detections of unlisted categories or images are left out.
pub fn from_coco(gt: &coco::Dataset, detections: &[coco::Detection]) -> Metrics {
    use std::collections::HashMap;
    let class_of: HashMap<u64, usize> = gt
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let xyxy = |b: [f64; 4]| [b[0], b[1], b[0] + b[2], b[1] + b[3]].map(|v| v as f32);
    let mut targets: HashMap<u64, Vec<([f32; 4], usize)>> = HashMap::new();
    for a in gt.annotations.iter().filter(|a| a.iscrowd == 0) {
        if let Some(&c) = class_of.get(&a.category_id) {
            targets
                .entry(a.image_id)
                .or_default()
                .push((xyxy(a.bbox), c));
        }
    }
    let mut predictions: HashMap<u64, Vec<Detection>> = HashMap::new();
    for d in detections {
        if let Some(&c) = class_of.get(&d.category_id) {
            predictions.entry(d.image_id).or_default().push(Detection {
                bbox: xyxy(d.bbox),
                score: d.score as f32,
                class_id: c,
                class_name: String::new(),
            });
        }
    }
    let mut acc = Accumulator::new();
    for im in &gt.images {
        acc.add_image(
            predictions.get(&im.id).map_or(&[], Vec::as_slice),
            targets.get(&im.id).map_or(&[], Vec::as_slice),
        );
    }
    acc.metrics()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_c_percent_g() {
        for (v, s) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (0.31, "0.31"),
            (0.123456, "0.123"),
            (0.9996, "1"),
            (0.00012345, "0.000123"),
            (0.0000123, "1.23e-05"),
            (123.4, "123"),
            (1234.0, "1.23e+03"),
        ] {
            assert_eq!(format_g3(v), s, "{v}");
        }
    }

    #[test]
    fn interp_follows_numpy() {
        let xp = [0.0, 1.0, 1.0, 2.0];
        let fp = [0.0, 1.0, 3.0, 5.0];
        assert_eq!(interp(-1.0, &xp, &fp, 9.0), 9.0);
        assert_eq!(interp(0.5, &xp, &fp, 9.0), 0.5);
        assert_eq!(interp(1.0, &xp, &fp, 9.0), 3.0, "the last of equal xp");
        assert_eq!(interp(1.5, &xp, &fp, 9.0), 4.0);
        assert_eq!(interp(3.0, &xp, &fp, 9.0), 5.0);
    }
}
