use std::sync::{Arc, Mutex};

/// A seedable random source (SplitMix64) behind a shared handle: clones draw from one sequence.
///
/// candle's CPU generator cannot be seeded, so everything random in a training run draws here:
/// initialisation, data order, augmentation, denoising noise and stochastic depth. The state can
/// be saved and restored to resume a run exactly.
#[derive(Debug, Clone, Default)]
pub struct SplitMix64(Arc<Mutex<u64>>);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(seed)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state, to be restored with [`SplitMix64::set_state`].
    pub fn state(&self) -> u64 {
        *self.lock()
    }

    /// Restarts the sequence from `state`.
    pub fn set_state(&self, state: u64) {
        *self.lock() = state;
    }

    /// A uniform sample in [0, 1).
    pub fn uniform(&self) -> f64 {
        let mut state = self.lock();
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn same_state_same_sequence() {
        let rng = SplitMix64::new(3);
        let state = rng.state();
        let first: Vec<f64> = (0..5).map(|_| rng.uniform()).collect();
        rng.set_state(state);
        let again: Vec<f64> = (0..5).map(|_| rng.uniform()).collect();
        assert_eq!(first, again);
        assert!(first.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn clones_share_one_sequence() {
        let (a, b) = (SplitMix64::new(9), SplitMix64::new(9));
        let shared = a.clone();
        let interleaved = [a.uniform(), shared.uniform()];
        assert_eq!(interleaved, [b.uniform(), b.uniform()]);
    }
}
