use serde::{Deserialize, Serialize};

use crate::data::geometry::Affine;
use crate::data::Augment;

/// Training hyper-parameters (ultralytics `default.yaml` values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch: usize,
    /// Training and validation size.
    pub imgsz: usize,
    /// Initial learning rate; `None` is 'auto': `round(0.002·5/(4+nc), 6)`.
    pub lr0: Option<f64>,
    /// Final learning-rate factor.
    pub lrf: f64,
    /// Cosine instead of linear decay.
    pub cos_lr: bool,
    /// Warm-up epochs.
    pub warmup_epochs: f64,
    /// Nominal batch size the gradients are accumulated to.
    pub nbs: usize,
    /// Weight decay at the nominal batch size.
    pub weight_decay: f64,
    /// Gradient clipping norm.
    pub max_norm: f64,
    /// Seed of data order, augmentation, denoising noise and stochastic depth.
    pub seed: u64,
    /// Augmentation, none when `None`.
    pub augment: Option<AugmentConfig>,
    /// Mosaic is off for the last `close_mosaic` epochs (all of them when `epochs ≤ close_mosaic`,
    /// as ultralytics); 0 keeps it on.
    #[serde(default)]
    pub close_mosaic: usize,
    /// Within an epoch, the state is also saved every this many optimizer steps (0: only at
    /// epoch ends), so a run killed mid-epoch resumes from its last such step.
    #[serde(default)]
    pub save_period_steps: u64,
}

/// Serializable [`Augment`]. Fields missing from older run states read as 0 (off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Horizontal flip probability.
    pub fliplr: f32,
    /// HSV gains.
    pub hsv: [f32; 3],
    /// Mosaic probability.
    #[serde(default)]
    pub mosaic: f32,
    /// Affine rotation range in degrees.
    #[serde(default)]
    pub degrees: f32,
    /// Affine translation fraction.
    #[serde(default)]
    pub translate: f32,
    /// Affine scale gain.
    #[serde(default)]
    pub scale: f32,
    /// Affine shear range in degrees.
    #[serde(default)]
    pub shear: f32,
}

impl TrainConfig {
    /// Refuses values no run can use (a zero batch, a NaN rate, a probability above 1, ...), as
    /// the CLI's flags are checked, so that a hand-written config or a resumed state fails with
    /// a message instead of a panic or a NaN loss.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |what: &str, why: &str| Err(crate::Error::Options(format!("{what} {why}")));
        for (what, n) in [
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("nbs", self.nbs),
        ] {
            if n == 0 {
                return bad(what, "must be at least 1");
            }
        }
        if self.imgsz == 0 || !self.imgsz.is_multiple_of(32) || self.imgsz > crate::MAX_IMGSZ {
            return bad(
                &format!("imgsz {}", self.imgsz),
                &format!(
                    "must be a positive multiple of 32, at most {}",
                    crate::MAX_IMGSZ
                ),
            );
        }
        let reals = [
            ("lr0", self.lr0.unwrap_or(1.0), false),
            ("lrf", self.lrf, true),
            ("warmup_epochs", self.warmup_epochs, true),
            ("weight_decay", self.weight_decay, true),
            ("max_norm", self.max_norm, false),
        ];
        for (what, v, zero_ok) in reals {
            if !v.is_finite() || v < 0.0 || (v == 0.0 && !zero_ok) {
                let floor = if zero_ok { "at least 0" } else { "above 0" };
                return bad(
                    &format!("{what} {v}"),
                    &format!("must be finite and {floor}"),
                );
            }
        }
        if let Some(a) = &self.augment {
            for (what, p) in [("fliplr", a.fliplr), ("mosaic", a.mosaic)] {
                if !(0.0..=1.0).contains(&p) {
                    return bad(&format!("{what} {p}"), "must lie in [0, 1]");
                }
            }
            let gains = [
                a.hsv[0],
                a.hsv[1],
                a.hsv[2],
                a.degrees,
                a.translate,
                a.scale,
                a.shear,
            ];
            if gains.iter().any(|g| !g.is_finite() || *g < 0.0) {
                return bad("augmentation gains", "must be finite and at least 0");
            }
        }
        Ok(())
    }
}

impl AugmentConfig {
    /// The loader's view of these settings.
    pub fn augment(&self) -> Augment {
        Augment {
            fliplr: self.fliplr,
            hsv: self.hsv,
            mosaic: self.mosaic,
            affine: Affine {
                degrees: self.degrees,
                translate: self.translate,
                scale: self.scale,
                shear: self.shear,
            },
        }
    }
}

impl From<Augment> for AugmentConfig {
    fn from(a: Augment) -> Self {
        Self {
            fliplr: a.fliplr,
            hsv: a.hsv,
            mosaic: a.mosaic,
            degrees: a.affine.degrees,
            translate: a.affine.translate,
            scale: a.affine.scale,
            shear: a.affine.shear,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        let a = Augment::default();
        Self {
            epochs: 100,
            batch: 16,
            imgsz: 640,
            lr0: None,
            lrf: 0.01,
            cos_lr: false,
            warmup_epochs: 3.0,
            nbs: 64,
            weight_decay: 0.0005,
            max_norm: 10.0,
            seed: 0,
            augment: Some(a.into()),
            close_mosaic: 10,
            save_period_steps: 0,
        }
    }
}
