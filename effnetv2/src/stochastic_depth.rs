use std::sync::{Arc, Mutex};

use candle::{Result, Tensor};

/// The seedable random source of stochastic depth (SplitMix64), shared by all blocks of a model.
///
/// candle's CPU generator cannot be seeded, so training runs draw their masks here instead; the
/// state can be saved and restored to resume a run exactly.
#[derive(Debug, Clone, Default)]
pub struct DropPathRng(Arc<Mutex<u64>>);

impl DropPathRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(seed)))
    }

    /// The current state, to be restored with [`DropPathRng::set_state`].
    pub fn state(&self) -> u64 {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Restarts the sequence from `state`.
    pub fn set_state(&self, state: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// A uniform sample in [0, 1).
    pub fn uniform(&self) -> f64 {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The seed's `StochasticDepth(prob, "row")`: in training, each sample of the batch keeps the
/// residual branch with probability `1 − prob`, scaled by `1/(1 − prob)`; identity otherwise.
#[derive(Debug, Clone)]
pub struct StochasticDepth {
    prob: f64,
    rng: DropPathRng,
}

impl StochasticDepth {
    /// Drops the branch with probability `prob`, drawing from `rng`.
    pub fn new(prob: f64, rng: DropPathRng) -> Self {
        Self { prob, rng }
    }

    /// The drop probability.
    pub fn prob(&self) -> f64 {
        self.prob
    }

    /// # Shapes
    /// `xs: [B, ...]` → same shape
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if self.prob == 0.0 || !train {
            return Ok(xs.clone());
        }
        let survival = 1.0 - self.prob;
        let batch = xs.dim(0)?;
        let mask: Vec<f32> = (0..batch)
            .map(|_| {
                if self.rng.uniform() < survival {
                    (1.0 / survival) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mut shape = vec![1; xs.rank()];
        shape[0] = batch;
        let mask = Tensor::from_vec(mask, shape, xs.device())?.to_dtype(xs.dtype())?;
        xs.broadcast_mul(&mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    #[test]
    fn keeps_rows_at_the_survival_rate_and_rescales_them() {
        let sd = StochasticDepth::new(0.25, DropPathRng::new(7));
        let xs = Tensor::ones((4000, 1), DType::F32, &Device::Cpu).unwrap();
        let ys: Vec<f32> = sd
            .forward_t(&xs, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let kept = ys.iter().filter(|&&y| y != 0.0).count() as f64 / ys.len() as f64;
        assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
        assert!(ys
            .iter()
            .all(|&y| y == 0.0 || (y - 1.0 / 0.75).abs() < 1e-6));
        let eval: Vec<f32> = sd
            .forward_t(&xs, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(eval.iter().all(|&y| y == 1.0));
    }

    #[test]
    fn same_state_same_masks() {
        let rng = DropPathRng::new(3);
        let state = rng.state();
        let first: Vec<f64> = (0..5).map(|_| rng.uniform()).collect();
        rng.set_state(state);
        let again: Vec<f64> = (0..5).map(|_| rng.uniform()).collect();
        assert_eq!(first, again);
    }
}
