/// ultralytics' learning-rate schedule: a per-epoch factor `lf(epoch)` (linear, or cosine with
/// `cos_lr`) from 1 to `lrf`, and a warm-up over the first iterations that raises the learning
/// rates (from 0, biases from `warmup_bias_lr`) and the gradient accumulation (from 1 to
/// `nbs / batch`) linearly.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Initial learning rate (`lr0`).
    pub lr0: f64,
    /// Final factor (`lrf`, 0.01).
    pub lrf: f64,
    /// Number of epochs.
    pub epochs: usize,
    /// Cosine instead of linear decay (`cos_lr`).
    pub cosine: bool,
    /// Warm-up length in epochs (`warmup_epochs`, 3).
    pub warmup_epochs: f64,
    /// Starting learning rate of the bias group (`warmup_bias_lr`; 0 with the 'auto' optimizer).
    pub warmup_bias_lr: f64,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Accumulation target `max(round(nbs / batch), 1)`.
    pub accumulate: usize,
}

/// `np.interp(x, [0, x1], [y0, y1])` for 0 ≤ x ≤ x1.
fn interp(x: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    if x1 <= 0.0 {
        return y1;
    }
    y0 + (y1 - y0) * (x / x1)
}

impl Schedule {
    /// `lf(epoch)`.
    pub fn factor(&self, epoch: usize) -> f64 {
        let (e, n) = (epoch as f64, self.epochs as f64);
        if self.cosine {
            ((1.0 - (e * std::f64::consts::PI / n).cos()) / 2.0).max(0.0) * (self.lrf - 1.0) + 1.0
        } else {
            (1.0 - e / n).max(0.0) * (1.0 - self.lrf) + self.lrf
        }
    }

    /// Warm-up iterations: `round(min(warmup_epochs, epochs − 1) · batches per epoch)`.
    pub fn warmup_iterations(&self) -> usize {
        let epochs = self.warmup_epochs.min(self.epochs.saturating_sub(1) as f64);
        if epochs > 0.0 {
            (epochs * self.batches_per_epoch as f64).round() as usize
        } else {
            0
        }
    }

    /// Learning rates of the weight, norm and bias groups for iteration `ni` (counted from the
    /// start of training) in `epoch`.
    pub fn lr(&self, epoch: usize, ni: usize) -> [f64; 3] {
        let target = self.lr0 * self.factor(epoch);
        let nw = self.warmup_iterations();
        if nw > 0 && ni <= nw {
            let (x, x1) = (ni as f64, nw as f64);
            let rise = interp(x, x1, 0.0, target);
            [rise, rise, interp(x, x1, self.warmup_bias_lr, target)]
        } else {
            [target; 3]
        }
    }

    /// Gradient accumulation at iteration `ni`: rises from 1 to the target during warm-up.
    pub fn accumulate(&self, ni: usize) -> usize {
        let nw = self.warmup_iterations();
        if nw > 0 && ni <= nw {
            let v = interp(ni as f64, nw as f64, 1.0, self.accumulate as f64);
            (v.round_ties_even() as usize).max(1)
        } else {
            self.accumulate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cosine: bool) -> Schedule {
        Schedule {
            lr0: 0.002,
            lrf: 0.01,
            epochs: 10,
            cosine,
            warmup_epochs: 3.0,
            warmup_bias_lr: 0.0,
            batches_per_epoch: 50,
            accumulate: 4,
        }
    }

    #[test]
    fn factors() {
        // python: lf = lambda x: max(1 - x / 10, 0) * (1.0 - 0.01) + 0.01 ; [lf(0), lf(5), lf(10)]
        let s = schedule(false);
        assert_eq!([s.factor(0), s.factor(5), s.factor(10)], [1.0, 0.505, 0.01]);
        // python: one_cycle(1, 0.01, 10)(5) == 0.505
        let c = schedule(true);
        assert!((c.factor(5) - 0.505).abs() < 1e-12 && c.factor(0) == 1.0);
        assert!((c.factor(10) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn warm_up() {
        let s = schedule(false);
        assert_eq!(s.warmup_iterations(), 150);
        assert_eq!(s.lr(0, 0), [0.0, 0.0, 0.0]);
        let mid = s.lr(1, 75);
        assert!((mid[0] - 0.5 * 0.002 * s.factor(1)).abs() < 1e-15);
        assert_eq!(s.lr(3, 151), [0.002 * s.factor(3); 3]);
        // np.interp(75, [0, 150], [1, 4]).round() == 2 (2.5 rounds to even)
        assert_eq!(
            (
                s.accumulate(0),
                s.accumulate(75),
                s.accumulate(150),
                s.accumulate(400)
            ),
            (1, 2, 4, 4)
        );
        let short = Schedule { epochs: 1, ..s };
        assert_eq!(
            short.warmup_iterations(),
            0,
            "the last epoch is never warm-up"
        );
    }
}
