//! Contrastive denoising queries for training (ultralytics `get_cdn_group`, 8.4.190): noised
//! copies of the ground truth, positive (noise within half the box size) and negative (between
//! one and one and a half), prepended to the matching queries with an attention mask that keeps
//! the groups apart.

use candle::{Result, Tensor};

use crate::DenoisingConfig;

/// Ground truth of a batch, boxes of all images in order.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// Class of each box.
    pub cls: Vec<usize>,
    /// Normalised `[cx, cy, w, h]` of each box.
    pub boxes: Vec<[f32; 4]>,
    /// Number of boxes of each image.
    pub groups: Vec<usize>,
}

/// The random draws of one call, in the reference's order: `rand(2G·T)` for the label mask,
/// `randint(0, nc)` for each masked label, `randint(0, 2)` and `rand` for each box coordinate.
/// Injected so that tests can replay the reference's stream; [`CdnNoise::sample`] draws fresh ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CdnNoise {
    /// Uniform [0, 1) per denoising label; below `label_noise/2` the label is redrawn.
    pub label_rand: Vec<f32>,
    /// The redrawn labels, one per masked label, in order.
    pub new_labels: Vec<usize>,
    /// 0 or 1 per box coordinate (`2G·T·4`), the noise sign.
    pub sign_bits: Vec<u8>,
    /// Uniform [0, 1) per box coordinate, the noise size.
    pub parts: Vec<f32>,
    /// For each image with more than `num_dn` boxes, the (sorted) local indices of the boxes
    /// that get denoising queries; empty for the other images.
    pub keep: Vec<Vec<usize>>,
}

impl CdnNoise {
    /// Fresh draws for `copies` noised boxes (`2G·T`), from `uniform` (values in [0, 1)).
    pub fn sample(
        copies: usize,
        nc: usize,
        label_noise: f32,
        mut uniform: impl FnMut() -> f32,
    ) -> Self {
        let label_rand: Vec<f32> = (0..copies).map(|_| uniform()).collect();
        let masked = label_rand
            .iter()
            .filter(|&&r| r < label_noise * 0.5)
            .count();
        let new_labels = (0..masked)
            .map(|_| ((uniform() * nc as f32) as usize).min(nc - 1))
            .collect();
        let sign_bits = (0..copies * 4).map(|_| u8::from(uniform() < 0.5)).collect();
        let parts = (0..copies * 4).map(|_| uniform()).collect();
        Self {
            label_rand,
            new_labels,
            sign_bits,
            parts,
            keep: vec![],
        }
    }

    /// Fresh draws for the boxes of `groups` (boxes per image) with at most `dn.queries` boxes
    /// per image, from `uniform` (values in [0, 1)).
    pub fn for_batch(
        groups: &[usize],
        nc: usize,
        dn: &DenoisingConfig,
        mut uniform: impl FnMut() -> f32,
    ) -> Self {
        let (num_dn, label_noise) = (dn.queries, dn.label_noise);
        let keep: Vec<Vec<usize>> = groups
            .iter()
            .map(|&n| {
                if n <= num_dn {
                    return vec![];
                }
                // A uniform random subset of num_dn boxes (partial Fisher-Yates), sorted.
                let mut order: Vec<usize> = (0..n).collect();
                for i in 0..num_dn {
                    let j = i + ((uniform() * (n - i) as f32) as usize).min(n - i - 1);
                    order.swap(i, j);
                }
                let mut kept = order[..num_dn].to_vec();
                kept.sort_unstable();
                kept
            })
            .collect();
        let max_gt = groups.iter().map(|&n| n.min(num_dn)).max().unwrap_or(0);
        let total: usize = groups.iter().map(|&n| n.min(num_dn)).sum();
        let copies = num_dn
            .checked_div(max_gt)
            .map_or(0, |groups| 2 * groups * total);
        Self {
            keep,
            ..Self::sample(copies, nc, label_noise, uniform)
        }
    }
}

/// Denoising bookkeeping (`dn_meta`).
#[derive(Debug, Clone, PartialEq)]
pub struct DnMeta {
    /// Positive query slots of each image, group-major (`dn_pos_idx`).
    pub pos_idx: Vec<Vec<usize>>,
    /// Global indices of each image's boxes (`dn_gt_idx`).
    pub gt_idx: Vec<Vec<usize>>,
    /// Number of denoising groups (`dn_num_group`).
    pub num_group: usize,
    /// Denoising and matching query counts (`dn_num_split`).
    pub num_split: (usize, usize),
}

impl DnMeta {
    /// Per image, the positive denoising slots and the boxes they reconstruct
    /// (`get_dn_match_indices`).
    pub fn matches(&self) -> Vec<(Vec<usize>, Vec<usize>)> {
        self.pos_idx
            .iter()
            .zip(&self.gt_idx)
            .map(|(pos, gt)| {
                (
                    pos.clone(),
                    gt.iter()
                        .copied()
                        .cycle()
                        .take(gt.len() * self.num_group)
                        .collect(),
                )
            })
            .collect()
    }
}

/// The denoising queries of a batch.
#[derive(Debug, Clone)]
pub struct Denoising {
    /// Class embeddings of the noised labels, zero in padding slots. `[B, num_dn, hidden]`
    pub embed: Tensor,
    /// Noised boxes in logit space, zero in padding slots. `[B, num_dn, 4]`
    pub ref_logits: Tensor,
    /// 1 where a query may not attend to a key. `[num_dn + K, num_dn + K]` u8
    pub blocked: Tensor,
    /// The bookkeeping the loss needs.
    pub meta: DnMeta,
}

/// `torch.logit(x, eps)`.
fn logit(x: f32, eps: f32) -> f32 {
    let x = x.clamp(eps, 1.0 - eps);
    (x / (1.0 - x)).ln()
}

/// Builds the denoising queries (`get_cdn_group` in training, with the decoder's `dn`); `None`
/// when the batch has no boxes. Images with more than `dn.queries` boxes contribute the subset
/// `noise.keep` names.
pub fn cdn_group(
    gt: &GroundTruth,
    nc: usize,
    num_queries: usize,
    class_embed: &Tensor,
    dn: &DenoisingConfig,
    noise: &CdnNoise,
) -> Result<Option<Denoising>> {
    let (num_dn, label_noise, box_noise) = (dn.queries, dn.label_noise, dn.box_noise);
    let all: usize = gt.groups.iter().sum();
    if gt.cls.len() != all || gt.boxes.len() != all {
        candle::bail!(
            "denoising: {} classes and {} boxes for {all} ground truths",
            gt.cls.len(),
            gt.boxes.len()
        )
    }
    // Global indices of the boxes that get queries (all of them, unless an image has too many).
    let mut chosen = Vec::with_capacity(all);
    let mut kept_groups = Vec::with_capacity(gt.groups.len());
    let mut offset = 0;
    for (image, &n) in gt.groups.iter().enumerate() {
        if n > num_dn {
            let keep = noise
                .keep
                .get(image)
                .filter(|k| k.len() == num_dn && k.iter().all(|&i| i < n));
            let keep = keep.ok_or_else(|| {
                candle::Error::Msg(format!(
                    "denoising: image {image} has {n} boxes and no subset of {num_dn} to keep"
                ))
            })?;
            chosen.extend(keep.iter().map(|&i| offset + i));
            kept_groups.push(num_dn);
        } else {
            chosen.extend(offset..offset + n);
            kept_groups.push(n);
        }
        offset += n;
    }
    let gt = &GroundTruth {
        cls: chosen.iter().map(|&i| gt.cls[i]).collect(),
        boxes: chosen.iter().map(|&i| gt.boxes[i]).collect(),
        groups: kept_groups,
    };
    let max_gt = gt.groups.iter().copied().max().unwrap_or(0);
    if num_dn == 0 || max_gt == 0 {
        return Ok(None);
    }
    let total = chosen.len();
    let groups = num_dn / max_gt;
    let copies = 2 * groups * total;
    if noise.label_rand.len() != copies
        || noise.sign_bits.len() != copies * 4
        || noise.parts.len() != copies * 4
    {
        candle::bail!("denoising: noise drawn for the wrong number of queries")
    }

    // Labels: every copy of every box, some redrawn.
    let mut labels: Vec<usize> = (0..copies).map(|i| gt.cls[i % total]).collect();
    let mut redrawn = noise.new_labels.iter();
    for (label, &r) in labels.iter_mut().zip(&noise.label_rand) {
        if r < label_noise * 0.5 {
            *label = *redrawn
                .next()
                .ok_or_else(|| candle::Error::Msg("denoising: too few redrawn labels".into()))?;
        }
    }
    // Boxes: corners moved by up to half the size (positives) or 1 to 1.5 times it (negatives).
    let mut boxes = Vec::with_capacity(copies * 4);
    for i in 0..copies {
        let [cx, cy, w, h] = gt.boxes[i % total];
        let negative = (i / total) % 2 == 1;
        let corners = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        let diff = [
            w * 0.5 * box_noise,
            h * 0.5 * box_noise,
            w * 0.5 * box_noise,
            h * 0.5 * box_noise,
        ];
        let mut moved = [0f32; 4];
        for j in 0..4 {
            let sign = f32::from(noise.sign_bits[4 * i + j]) * 2.0 - 1.0;
            let part = (noise.parts[4 * i + j] + if negative { 1.0 } else { 0.0 }) * sign;
            moved[j] = (corners[j] + part * diff[j]).clamp(0.0, 1.0);
        }
        let xywh = [
            (moved[0] + moved[2]) / 2.0,
            (moved[1] + moved[3]) / 2.0,
            moved[2] - moved[0],
            moved[3] - moved[1],
        ];
        boxes.extend(xywh.map(|v| logit(v, 1e-6)));
    }

    // Slots: copy c of the j-th box of its image goes to c·max_gt + j.
    let images = gt.groups.len();
    let dn = 2 * groups * max_gt;
    let mut image_of = Vec::with_capacity(total);
    let mut local = Vec::with_capacity(total);
    for (image, &n) in gt.groups.iter().enumerate() {
        image_of.extend(std::iter::repeat_n(image, n));
        local.extend(0..n);
    }
    let slot = |i: usize| image_of[i % total] * dn + (i / total) * max_gt + local[i % total];
    let device = class_embed.device();
    let hidden = class_embed.dim(1)?;
    let slots = Tensor::from_vec(
        (0..copies).map(|i| slot(i) as u32).collect::<Vec<_>>(),
        copies,
        device,
    )?;
    let label_index = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        copies,
        device,
    )?;
    if labels.iter().any(|&l| l >= nc) {
        candle::bail!("denoising: a label is not below nc = {nc}")
    }
    let rows = class_embed.index_select(&label_index, 0)?;
    let embed = Tensor::zeros((images * dn, hidden), class_embed.dtype(), device)?
        .index_add(&slots, &rows, 0)?;
    let mut padded_boxes = vec![0f32; images * dn * 4];
    for i in 0..copies {
        padded_boxes[slot(i) * 4..][..4].copy_from_slice(&boxes[4 * i..][..4]);
    }
    let ref_logits =
        Tensor::from_vec(padded_boxes, (images, dn, 4), device)?.to_dtype(class_embed.dtype())?;

    let size = dn + num_queries;
    let group_of = |q: usize| q / (2 * max_gt);
    let blocked: Vec<u8> = (0..size * size)
        .map(|i| {
            let (q, k) = (i / size, i % size);
            u8::from(k < dn && (q >= dn || group_of(q) != group_of(k)))
        })
        .collect();

    let mut offset = 0;
    let mut pos_idx = Vec::with_capacity(images);
    let mut gt_idx = Vec::with_capacity(images);
    for &n in &gt.groups {
        pos_idx.push(
            (0..groups)
                .flat_map(|g| (0..n).map(move |j| j + 2 * max_gt * g))
                .collect(),
        );
        gt_idx.push(chosen[offset..offset + n].to_vec());
        offset += n;
    }
    Ok(Some(Denoising {
        embed: embed.reshape((images, dn, hidden))?,
        ref_logits,
        blocked: Tensor::from_vec(blocked, (size, size), device)?,
        meta: DnMeta {
            pos_idx,
            gt_idx,
            num_group: groups,
            num_split: (dn, num_queries),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    fn gt(groups: &[usize]) -> GroundTruth {
        let n: usize = groups.iter().sum();
        GroundTruth {
            cls: (0..n).map(|i| i % 3).collect(),
            boxes: (0..n)
                .map(|i| [0.3 + 0.001 * i as f32, 0.5, 0.2, 0.1])
                .collect(),
            groups: groups.to_vec(),
        }
    }

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    #[test]
    fn groups_slots_and_mask() {
        let embed = Tensor::randn(0f32, 1., (3, 8), &Device::Cpu).unwrap();
        let gt = gt(&[2, 0, 3]);
        let noise = CdnNoise::for_batch(&gt.groups, 3, &DenoisingConfig::default(), lcg(1));
        let dn = cdn_group(&gt, 3, 10, &embed, &DenoisingConfig::default(), &noise)
            .unwrap()
            .unwrap();
        // max 3 boxes -> 33 groups of 6 queries
        assert_eq!(dn.meta.num_group, 33);
        assert_eq!(dn.meta.num_split, (198, 10));
        assert_eq!(dn.meta.pos_idx[0][..4], [0, 1, 6, 7]);
        assert!(dn.meta.pos_idx[1].is_empty());
        assert_eq!(dn.meta.gt_idx[2], [2, 3, 4]);
        let blocked: Vec<Vec<u8>> = dn.blocked.to_vec2().unwrap();
        assert_eq!(blocked[0][5], 0, "same group");
        assert_eq!(blocked[0][6], 1, "another group");
        assert_eq!(
            blocked[200][3], 1,
            "matching queries do not see denoising ones"
        );
        assert_eq!(blocked[3][200], 0, "denoising queries see matching ones");
        // Image 1 has no boxes: all its slots are padding (zero embedding, zero logits).
        let image1 = dn
            .embed
            .get(1)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(image1, 0.0);
        assert_eq!(dn.embed.dtype(), DType::F32);
    }

    #[test]
    fn no_boxes_no_queries_and_crowds_are_cut() {
        let embed = Tensor::randn(0f32, 1., (3, 8), &Device::Cpu).unwrap();
        let empty = gt(&[0, 0]);
        let noise = CdnNoise::for_batch(&empty.groups, 3, &DenoisingConfig::default(), lcg(2));
        assert!(
            cdn_group(&empty, 3, 10, &embed, &DenoisingConfig::default(), &noise)
                .unwrap()
                .is_none()
        );
        let crowd = gt(&[150, 4]);
        let noise = CdnNoise::for_batch(&crowd.groups, 3, &DenoisingConfig::default(), lcg(3));
        let dn = cdn_group(&crowd, 3, 10, &embed, &DenoisingConfig::default(), &noise)
            .unwrap()
            .unwrap();
        assert_eq!(dn.meta.num_group, 1);
        assert_eq!(dn.meta.gt_idx[0].len(), 100);
        assert!(dn.meta.gt_idx[0].windows(2).all(|w| w[0] < w[1]) && dn.meta.gt_idx[0][99] < 150);
        assert_eq!(dn.meta.gt_idx[1], [150, 151, 152, 153]);
    }
}
