//! How a float type runs on a device: the type the weights are stored in and the precision the
//! convolutions multiply in.

use candle::{DType, Device};
pub use rtdetr_ops::Precision;

/// `(stored, multiplied)` for a model asked to run in `dtype` on `device`. On the CPU, bf16
/// keeps weights and activations in f32 and multiplies the full convolutions with bf16
/// operands (AMX tiles or AVX512-BF16 where the CPU has them), as `torch.autocast("cpu", torch.bfloat16)` runs
/// convolutions; elsewhere the weights themselves are converted to `dtype`.
pub fn execution(device: &Device, dtype: DType) -> (DType, Precision) {
    match (device.is_cpu(), dtype) {
        (true, DType::BF16) => (DType::F32, Precision::Bf16),
        _ => (dtype, Precision::F32),
    }
}

/// Says once, on the first bf16 request on a CPU without bf16 instructions (AMX tiles or
/// AVX512-BF16), that bf16 runs there as rounded f32 convolutions (slower than f32) and f32
/// linear layers.
pub fn warn_if_emulated(precision: Precision) {
    if precision == Precision::Bf16 && !rtdetr_ops::precision::bf16_is_native() {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "warning: this CPU has no bf16 instructions (AMX or AVX512-BF16); bf16 runs as \
                 bf16-rounded f32 (same results, slower than --dtype f32)"
            )
        });
    }
}
