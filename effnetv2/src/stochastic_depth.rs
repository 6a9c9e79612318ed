use candle::{Result, Tensor};
use rtdetr_ops::SplitMix64;

/// The seed's `StochasticDepth(prob, "row")`: in training, each sample of the batch keeps the
/// residual branch with probability `1 − prob`, scaled by `1/(1 − prob)`; identity otherwise.
#[derive(Debug, Clone)]
pub struct StochasticDepth {
    prob: f64,
    rng: SplitMix64,
}

impl StochasticDepth {
    /// Drops the branch with probability `prob`, drawing from `rng`.
    pub fn new(prob: f64, rng: SplitMix64) -> Self {
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
        let sd = StochasticDepth::new(0.25, SplitMix64::new(7));
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
}
