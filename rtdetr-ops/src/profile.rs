//! Opt-in per-layer timing of the convolutions, linear layers and deformable sampling, for the
//! profile table of BENCHMARKS.md
//! (`rtdetr bench --layers`). Off by default; when off a layer pays one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// One timed layer call.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// What ran, e.g. `conv 3×3 s2` or `depthwise 5×5 s1`.
    pub kind: String,
    /// `[B, C_in, H, W] → [C_out, OH, OW]`.
    pub shape: String,
    /// Floating-point operations (2 per multiply-accumulate).
    pub flops: u64,
    /// Wall time of the call.
    pub seconds: f64,
}

/// Starts (`true`) or stops recording.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The records so far, emptied.
pub fn take() -> Vec<Record> {
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, recording its time under `describe()`'s (kind, shape, flops) when enabled.
pub(crate) fn timed<T>(
    describe: impl FnOnce() -> (String, String, u64),
    f: impl FnOnce() -> T,
) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    let (kind, shape, flops) = describe();
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Record {
            kind,
            shape,
            flops,
            seconds,
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_when_enabled() {
        // Other tests may run convolutions meanwhile: only this test's records count.
        let describe = || ("probe".to_string(), "[1]".to_string(), 2);
        let mine = |records: Vec<Record>| records.into_iter().filter(|r| r.kind == "probe").count();
        assert_eq!(timed(describe, || 7), 7);
        assert_eq!(mine(take()), 0);
        enable(true);
        timed(describe, || ());
        enable(false);
        assert_eq!(mine(take()), 1);
    }
}
