//! What a run reports as it goes: per-epoch results, `results.csv` and `results.png`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint;

/// Mean loss terms of an epoch and the validation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch index (from 0).
    pub epoch: usize,
    /// Mean main-layer GIoU loss.
    pub giou_loss: f64,
    /// Mean main-layer classification loss.
    pub cls_loss: f64,
    /// Mean main-layer L1 loss.
    pub l1_loss: f64,
    /// Validation mAP50 of the EMA weights.
    pub map50: f64,
    /// Validation mAP50-95 of the EMA weights.
    pub map50_95: f64,
    /// Learning rate of the weight group at the end of the epoch.
    pub lr: f64,
}

/// Writes `results.csv` and `results.png` (one panel per column) of `history` into `dir`, each
/// atomically.
pub(super) fn write_results(dir: &Path, history: &[EpochStats]) -> std::io::Result<()> {
    let mut csv = String::from("epoch,train/giou_loss,train/cls_loss,train/l1_loss,metrics/mAP50(B),metrics/mAP50-95(B),lr/pg0\n");
    for s in history {
        csv.push_str(&format!(
            "{},{:.5},{:.5},{:.5},{:.5},{:.5},{:.6}\n",
            s.epoch + 1,
            s.giou_loss,
            s.cls_loss,
            s.l1_loss,
            s.map50,
            s.map50_95,
            s.lr
        ));
    }
    checkpoint::write_atomic(&dir.join("results.csv"), csv.as_bytes())?;
    let column = |f: fn(&EpochStats) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let series = vec![
        ("train/giou_loss".to_string(), column(|s| s.giou_loss)),
        ("train/cls_loss".to_string(), column(|s| s.cls_loss)),
        ("train/l1_loss".to_string(), column(|s| s.l1_loss)),
        ("metrics/mAP50(B)".to_string(), column(|s| s.map50)),
        ("metrics/mAP50-95(B)".to_string(), column(|s| s.map50_95)),
        ("lr/pg0".to_string(), column(|s| s.lr)),
    ];
    crate::train::plot::write_png(&dir.join("results.png"), &series)
}
