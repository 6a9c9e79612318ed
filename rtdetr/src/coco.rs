//! COCO bbox evaluation, a port of pycocotools' `COCOeval` (`evaluate`, `accumulate`,
//! `summarize`) for `iouType='bbox'`: IoU thresholds 0.50:0.05:0.95, 101 recall points, maxDets
//! 1/10/100, area ranges all/small/medium/large, crowd boxes handled as in pycocotools.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// An image of a COCO ground-truth file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// Image id.
    pub id: u64,
    /// File name, if given.
    #[serde(default)]
    pub file_name: String,
    /// Width in pixels, if given.
    #[serde(default)]
    pub width: u32,
    /// Height in pixels, if given.
    #[serde(default)]
    pub height: u32,
}

/// A ground-truth box.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Annotation {
    /// Annotation id (must be positive, as pycocotools assumes).
    pub id: u64,
    /// Its image.
    pub image_id: u64,
    /// Its category.
    pub category_id: u64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Area used for the area ranges (pycocotools reads this field, not the box).
    #[serde(default)]
    pub area: Option<f64>,
    /// Crowd regions never count as misses and may match many detections.
    #[serde(default)]
    pub iscrowd: u8,
}

/// A category.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    /// Category id.
    pub id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

impl Category {
    /// One category per class name, class `i` as category id `i`.
    pub fn numbered(names: &[String]) -> Vec<Category> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Category {
                id: i as u64,
                name: n.clone(),
            })
            .collect()
    }
}

/// A COCO `instances_*.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dataset {
    /// The images.
    pub images: Vec<Image>,
    /// The boxes.
    pub annotations: Vec<Annotation>,
    /// The categories.
    pub categories: Vec<Category>,
}

/// One detection of a COCO results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    /// Its image.
    pub image_id: u64,
    /// Its category.
    pub category_id: u64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Confidence.
    pub score: f64,
}

/// The twelve numbers pycocotools prints, and AP per category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `COCOeval.stats`: AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100, AR
    /// small/medium/large (−1 where undefined).
    pub stats: [f64; 12],
    /// `(category id, AP@[.5:.95], AP50)` at maxDets 100, area all.
    pub per_class: Vec<(u64, f64, f64)>,
}

impl Summary {
    /// mAP@[.5:.95].
    pub fn map50_95(&self) -> f64 {
        self.stats[0]
    }

    /// mAP@.5.
    pub fn map50(&self) -> f64 {
        self.stats[1]
    }
}

const MAX_DETS: [usize; 3] = [1, 10, 100];
const AREAS: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];

/// `np.linspace(start, stop, n)`, bit for bit.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// `maskUtils.iou` for boxes: IoU, or intersection over the detection's area for crowd truths.
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let union = if crowd {
        d[2] * d[3]
    } else {
        d[2] * d[3] + g[2] * g[3] - inter
    };
    inter / union
}

/// `np.argsort(keys, kind='mergesort')`: a stable sort.
fn stable_order<T: PartialOrd>(keys: &[T]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .partial_cmp(&keys[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order
}

/// Per (image, category, area) matching at maxDets 100 (`evaluateImg`).
struct ImageEval {
    scores: Vec<f64>,
    /// `[T][D]` matched (true positive).
    matched: Vec<Vec<bool>>,
    /// `[T][D]` ignored.
    ignored: Vec<Vec<bool>>,
    /// Number of truths that count.
    counted: usize,
}

fn evaluate_image(
    gts: &[&Annotation],
    dts: &[&Detection],
    area: (f64, f64),
    thresholds: &[f64],
) -> Option<ImageEval> {
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    let gt_ignore: Vec<u8> = gts
        .iter()
        .map(|g| {
            let a = g.area.unwrap_or(g.bbox[2] * g.bbox[3]);
            u8::from(g.iscrowd != 0 || a < area.0 || a > area.1)
        })
        .collect();
    let gt_order = stable_order(&gt_ignore);
    let gts: Vec<&Annotation> = gt_order.iter().map(|&i| gts[i]).collect();
    let gt_ignore: Vec<bool> = gt_order.iter().map(|&i| gt_ignore[i] == 1).collect();
    let neg_scores: Vec<f64> = dts.iter().map(|d| -d.score).collect();
    let dts: Vec<&Detection> = stable_order(&neg_scores)
        .into_iter()
        .take(MAX_DETS[2])
        .map(|i| dts[i])
        .collect();
    let ious: Vec<Vec<f64>> = dts
        .iter()
        .map(|d| {
            gts.iter()
                .map(|g| iou(&d.bbox, &g.bbox, g.iscrowd != 0))
                .collect()
        })
        .collect();

    let (t, dn, gn) = (thresholds.len(), dts.len(), gts.len());
    let mut gt_taken = vec![vec![false; gn]; t];
    let mut matched = vec![vec![false; dn]; t];
    let mut ignored = vec![vec![false; dn]; t];
    for (ti, &thr) in thresholds.iter().enumerate() {
        for di in 0..dn {
            let mut best = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for gi in 0..gn {
                if gt_taken[ti][gi] && gts[gi].iscrowd == 0 {
                    continue;
                }
                if let Some(mi) = m {
                    if !gt_ignore[mi] && gt_ignore[gi] {
                        break;
                    }
                }
                if ious[di][gi] < best {
                    continue;
                }
                best = ious[di][gi];
                m = Some(gi);
            }
            if let Some(mi) = m {
                ignored[ti][di] = gt_ignore[mi];
                matched[ti][di] = gts[mi].id != 0;
                gt_taken[ti][mi] = true;
            }
        }
    }
    for (di, d) in dts.iter().enumerate() {
        let a = d.bbox[2] * d.bbox[3];
        if a < area.0 || a > area.1 {
            for ti in 0..t {
                ignored[ti][di] |= !matched[ti][di];
            }
        }
    }
    Some(ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        counted: gt_ignore.iter().filter(|&&i| !i).count(),
    })
}

/// Evaluates `detections` against `gt` as `COCOeval(gt, gt.loadRes(detections), 'bbox')`
/// followed by `evaluate()`, `accumulate()`, `summarize()`. Detections of images outside the
/// ground truth are an error, as in pycocotools; categories outside it are not evaluated.
pub fn evaluate(gt: &Dataset, detections: &[Detection]) -> crate::Result<Summary> {
    let image_ids: BTreeMap<u64, ()> = gt.images.iter().map(|i| (i.id, ())).collect();
    if let Some(d) = detections
        .iter()
        .find(|d| !image_ids.contains_key(&d.image_id))
    {
        return Err(crate::Error::Eval(format!(
            "results refer to image {} which the ground truth does not have",
            d.image_id
        )));
    }
    let mut cat_ids: Vec<u64> = gt
        .categories
        .iter()
        .map(|c| c.id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    cat_ids.sort_unstable();
    let mut gts: HashMap<(u64, u64), Vec<&Annotation>> = HashMap::new();
    for a in &gt.annotations {
        gts.entry((a.image_id, a.category_id)).or_default().push(a);
    }
    let mut dts: HashMap<(u64, u64), Vec<&Detection>> = HashMap::new();
    for d in detections {
        dts.entry((d.image_id, d.category_id)).or_default().push(d);
    }
    let thresholds = linspace(0.5, 0.95, 10);
    let recall_points = linspace(0.0, 1.0, 101);
    let (t, r, k, a, m) = (
        thresholds.len(),
        recall_points.len(),
        cat_ids.len(),
        AREAS.len(),
        MAX_DETS.len(),
    );
    // precision[t][r][k][a][m], recall[t][k][a][m]
    let mut precision = vec![-1.0f64; t * r * k * a * m];
    let mut recall = vec![-1.0f64; t * k * a * m];
    let p_at = |ti: usize, ri: usize, ki: usize, ai: usize, mi: usize| {
        (((ti * r + ri) * k + ki) * a + ai) * m + mi
    };
    let r_at = |ti: usize, ki: usize, ai: usize, mi: usize| ((ti * k + ki) * a + ai) * m + mi;
    let empty_g: Vec<&Annotation> = vec![];
    let empty_d: Vec<&Detection> = vec![];
    for (ki, &cat) in cat_ids.iter().enumerate() {
        for (ai, &area) in AREAS.iter().enumerate() {
            let evals: Vec<ImageEval> = image_ids
                .keys()
                .filter_map(|&img| {
                    let g = gts.get(&(img, cat)).unwrap_or(&empty_g);
                    let d = dts.get(&(img, cat)).unwrap_or(&empty_d);
                    evaluate_image(g, d, area, &thresholds)
                })
                .collect();
            for (mi, &max_det) in MAX_DETS.iter().enumerate() {
                let mut scores = Vec::new();
                let mut tp_flags = vec![Vec::new(); t];
                let mut fp_flags = vec![Vec::new(); t];
                for e in &evals {
                    let n = e.scores.len().min(max_det);
                    scores.extend_from_slice(&e.scores[..n]);
                    for ti in 0..t {
                        for di in 0..n {
                            let (hit, skip) = (e.matched[ti][di], e.ignored[ti][di]);
                            tp_flags[ti].push(hit && !skip);
                            fp_flags[ti].push(!hit && !skip);
                        }
                    }
                }
                let counted: usize = evals.iter().map(|e| e.counted).sum();
                if counted == 0 {
                    continue;
                }
                let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
                let order = stable_order(&neg);
                for ti in 0..t {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &i in &order {
                        tp += f64::from(u8::from(tp_flags[ti][i]));
                        fp += f64::from(u8::from(fp_flags[ti][i]));
                        rc.push(tp / counted as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[r_at(ti, ki, ai, mi)] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..pr.len()).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (ri, &x) in recall_points.iter().enumerate() {
                        let pi = rc.partition_point(|&v| v < x);
                        precision[p_at(ti, ri, ki, ai, mi)] = pr.get(pi).copied().unwrap_or(0.0);
                    }
                }
            }
        }
    }
    let mean_defined = |values: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = values.filter(|&x| x > -1.0).collect();
        if v.is_empty() {
            -1.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let ap = |iou: Option<usize>, ai: usize, mi: usize| {
        let ts: Vec<usize> = iou.map_or((0..t).collect(), |ti| vec![ti]);
        mean_defined(
            &mut ts
                .iter()
                .flat_map(|&ti| (0..r).flat_map(move |ri| (0..k).map(move |ki| (ti, ri, ki))))
                .map(|(ti, ri, ki)| precision[p_at(ti, ri, ki, ai, mi)]),
        )
    };
    let ar = |ai: usize, mi: usize| {
        mean_defined(
            &mut (0..t)
                .flat_map(|ti| (0..k).map(move |ki| (ti, ki)))
                .map(|(ti, ki)| recall[r_at(ti, ki, ai, mi)]),
        )
    };
    let stats = [
        ap(None, 0, 2),
        ap(Some(0), 0, 2),
        ap(Some(5), 0, 2),
        ap(None, 1, 2),
        ap(None, 2, 2),
        ap(None, 3, 2),
        ar(0, 0),
        ar(0, 1),
        ar(0, 2),
        ar(1, 2),
        ar(2, 2),
        ar(3, 2),
    ];
    let per_class = cat_ids
        .iter()
        .enumerate()
        .map(|(ki, &cat)| {
            let all = mean_defined(
                &mut (0..t)
                    .flat_map(|ti| (0..r).map(move |ri| (ti, ri)))
                    .map(|(ti, ri)| precision[p_at(ti, ri, ki, 0, 2)]),
            );
            let at50 = mean_defined(&mut (0..r).map(|ri| precision[p_at(0, ri, ki, 0, 2)]));
            (cat, all, at50)
        })
        .collect();
    Ok(Summary { stats, per_class })
}
