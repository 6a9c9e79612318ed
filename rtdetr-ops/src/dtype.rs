//! The one float-dtype dispatch of the crate's ops.

/// Runs `$body` with the type alias `$T` bound to the element type of `$dtype`, for each listed
/// `Variant: type`, and wraps the result in `$Storage::Variant` (a `CpuStorage`, or candle's
/// `CudaStorageSlice`); any other dtype is an error naming `$what` and the supported ones.
///
/// ```text
/// let out = float_dispatch!("depthwise conv", s1.dtype(), CpuStorage, |T| {
///     forward::<T>(g, cpu_slice(s1, l1)?, cpu_slice(s2, l2)?)
/// }, F32: f32, F64: f64);
/// ```
macro_rules! float_dispatch {
    ($what:expr, $dtype:expr, $Storage:ident, |$T:ident| $body:expr, $($variant:ident: $ty:ty),+ $(,)?) => {
        match $dtype {
            $(candle::DType::$variant => {
                #[allow(dead_code)]
                type $T = $ty;
                $Storage::$variant($body)
            })+
            other => candle::bail!(
                "{}: unsupported dtype {:?} (supported: {})",
                $what,
                other,
                stringify!($($ty),+)
            ),
        }
    };
}
