use candle::{CpuStorage, Layout, Result, WithDType};

/// The elements of a contiguous CPU operand, an error when its dtype is not `T`.
pub(crate) fn cpu_slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle::bail!("custom op operands must be contiguous"),
    }
}
