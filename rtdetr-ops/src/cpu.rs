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

/// `dst (m × n, row stride n) = lhs · rhs`, each operand given with its (row, column) strides.
///
/// # Safety
/// `lhs` must hold `m × k` elements and `rhs` `k × n` at the strides given; `dst` `m × n`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product<T: 'static>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
    one: T,
    zero: T,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        false,
        lhs.as_ptr(),
        lhs_cs as isize,
        lhs_rs as isize,
        rhs.as_ptr(),
        rhs_cs as isize,
        rhs_rs as isize,
        zero,
        one,
        false,
        false,
        false,
        parallelism,
    )
}
