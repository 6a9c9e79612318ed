//! glibc malloc settings for inference and training loops.

/// Keeps freed activation buffers in the process instead of handing them back to the kernel.
///
/// glibc serves blocks above its mmap threshold (at most 32 MiB) with fresh mappings and trims
/// the heap top after frees, so every step page-faults its large activations in again, zeroed
/// by the kernel: about 6 % of a 640×640 forward, and a fifth of a training step at batch 4,
/// whose activations are mostly above 32 MiB. Serving every block from the heap and never
/// trimming it lets the next step reuse the memory; the peak footprint is unchanged (measured
/// in BENCHMARKS.md). glibc still maps memory itself where the heap cannot grow.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
