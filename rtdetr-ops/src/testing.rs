//! Helpers of the crate's unit tests.

use candle::{DType, Tensor};

/// `max |a − b|` over all elements, as f64, whatever the dtype.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64))
        .and_then(|m| m.to_scalar::<f64>())
        .unwrap_or_else(|e| panic!("comparing {:?} with {:?}: {e}", a.shape(), b.shape()))
}
