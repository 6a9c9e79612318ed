use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use candle::{Device, Tensor};
use rayon::prelude::*;

use crate::data::geometry::{mosaic4, mosaic_center, random_affine, to_labels, to_pixels};
use crate::data::{augment, Augment, Label, Sample};
use crate::preprocess;
use crate::Result;

/// A training batch: images stretched to the training size, their boxes, and where they came from.
#[derive(Debug)]
pub struct Batch {
    /// `[B, 3, S, S]`, RGB in [0, 1].
    pub images: Tensor,
    /// Boxes of every image in order (normalised cxcywh).
    pub labels: Vec<Vec<Label>>,
    /// The image files.
    pub paths: Vec<PathBuf>,
    /// Original `(height, width)` of each image.
    pub sizes: Vec<(usize, usize)>,
}

/// One decoded, stretched and augmented training image.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// RGB pixels of `size × size`.
    pub pixels: Vec<u8>,
    /// Its boxes after augmentation.
    pub labels: Vec<Label>,
    /// Original `(height, width)`.
    pub original: (usize, usize),
}

/// Decodes an image, stretches it to `size × size` (cv2-exact) and applies `aug` with draws from
/// the SplitMix64 stream of `seed`.
pub fn load_sample(sample: &Sample, size: usize, aug: Option<(&Augment, u64)>) -> Result<Loaded> {
    let img = crate::image_io::open_upright(&sample.image)?.to_rgb8();
    let (h, w) = (img.height() as usize, img.width() as usize);
    let mut pixels = preprocess::resize_linear(img.as_raw(), (h, w, 3), (size, size));
    let mut labels = sample.labels.clone();
    if let Some((aug, seed)) = aug {
        let rng = rtdetr_ops::SplitMix64::new(seed);
        augment(&mut pixels, size, &mut labels, aug, || rng.uniform() as f32);
    }
    Ok(Loaded {
        pixels,
        labels,
        original: (h, w),
    })
}

/// The training view of sample `index`: decoded and stretched to `size × size`, then, with draws
/// from the SplitMix64 stream of `seed`, ultralytics' `v8_transforms` order: a 4-image mosaic
/// (with probability `aug.mosaic`, when `mosaic` is on; the three other images drawn uniformly
/// from `samples`), the random affine to `size × size`, HSV jitter and horizontal flip. The
/// result depends only on `seed`, not on thread timing.
pub fn load_augmented(
    samples: &[Sample],
    index: usize,
    size: usize,
    aug: &Augment,
    mosaic: bool,
    seed: u64,
) -> Result<Loaded> {
    let rng = rtdetr_ops::SplitMix64::new(seed);
    let uniform = || rng.uniform();
    let first = load_sample(&samples[index], size, None)?;
    let original = first.original;
    let (canvas, side, boxes) = if mosaic && aug.mosaic > 0.0 && uniform() < aug.mosaic as f64 {
        let others: Vec<usize> = (0..3)
            .map(|_| ((uniform() * samples.len() as f64) as usize).min(samples.len() - 1))
            .collect();
        let rest: Vec<Loaded> = others
            .iter()
            .map(|&i| load_sample(&samples[i], size, None))
            .collect::<std::result::Result<_, _>>()?;
        let center = mosaic_center(size, uniform);
        let inputs = [&first, &rest[0], &rest[1], &rest[2]]
            .map(|l| (l.pixels.as_slice(), l.labels.as_slice()));
        let (canvas, boxes) = mosaic4(inputs, size, center);
        (canvas, 2 * size, boxes)
    } else {
        let boxes = to_pixels(&first.labels, size, size, (0.0, 0.0));
        (first.pixels, size, boxes)
    };
    let (mut pixels, boxes) = if aug.affine.is_identity() && side == size {
        (canvas, boxes)
    } else {
        let draws = aug.affine.draw(uniform);
        random_affine(&canvas, side, side, &boxes, &draws, size)
    };
    let mut labels = to_labels(&boxes, size, size);
    augment(&mut pixels, size, &mut labels, aug, || rng.uniform() as f32);
    Ok(Loaded {
        pixels,
        labels,
        original,
    })
}

/// Stable 64-bit mix of several values, for per-step seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let rng = rtdetr_ops::SplitMix64::new(0x5eed);
    for &p in parts {
        rng.set_state(rng.state() ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.uniform();
    }
    rng.state()
}

/// The batches of one epoch in `order`, decoded on a background thread (images of a batch in
/// parallel) and handed over through a two-batch queue, so the model does not wait on decoding.
/// With `aug`, each image goes through [`load_augmented`] (mosaic only when `mosaic`). `order`
/// starts at batch `first_batch` of the epoch (after a mid-epoch resume), which keeps the
/// augmentation draws of every batch.
#[allow(clippy::too_many_arguments)]
pub fn spawn_epoch(
    samples: Arc<Vec<Sample>>,
    order: Vec<usize>,
    first_batch: usize,
    batch: usize,
    size: usize,
    aug: Option<Augment>,
    mosaic: bool,
    seed: u64,
    device: Device,
) -> Receiver<Result<Batch>> {
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        for (k, chunk) in order.chunks(batch).enumerate() {
            let bi = first_batch + k;
            let loaded: Vec<Result<_>> = chunk
                .par_iter()
                .enumerate()
                .map(|(j, &i)| match &aug {
                    Some(a) => {
                        let seed = mix_seed(&[seed, bi as u64, j as u64]);
                        load_augmented(&samples, i, size, a, mosaic, seed)
                    }
                    None => load_sample(&samples[i], size, None),
                })
                .collect();
            let result = loaded
                .into_iter()
                .collect::<Result<Vec<_>>>()
                .and_then(|items| {
                    let raw: Vec<(&[u8], usize, usize)> = items
                        .iter()
                        .map(|l| (l.pixels.as_slice(), size, size))
                        .collect();
                    let images = preprocess::to_batch(&raw, size, &device)?;
                    Ok(Batch {
                        images,
                        labels: items.iter().map(|l| l.labels.clone()).collect(),
                        paths: chunk.iter().map(|&i| samples[i].image.clone()).collect(),
                        sizes: items.iter().map(|l| l.original).collect(),
                    })
                });
            if tx.send(result).is_err() {
                return;
            }
        }
    });
    rx
}
