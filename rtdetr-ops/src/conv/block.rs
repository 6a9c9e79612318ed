//! What the blocked convolution kernels share: an output that parallel jobs write in disjoint
//! column blocks, the matrix product of one block straight into its place, and the epilogue over
//! that block while it is in cache.

use crate::activation::Epilogue;

/// A row-major `rows × cols` output written by parallel jobs, each into its own columns.
#[derive(Clone, Copy)]
pub(super) struct BlockedOut {
    ptr: *mut f32,
    cols: usize,
}
// SAFETY: jobs write disjoint column blocks of the output.
unsafe impl Send for BlockedOut {}
unsafe impl Sync for BlockedOut {}

/// How the jobs of one convolution split the threads: parallel jobs when there are enough to go
/// round, else one thread per job and the matrix product split by gemm.
pub(super) fn parallelism(jobs: usize) -> gemm::Parallelism {
    let threads = candle::utils::get_num_threads();
    if jobs >= 2 * threads {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    }
}

impl BlockedOut {
    /// `out` seen as rows of `cols` columns.
    pub fn new(out: &mut [f32], cols: usize) -> Self {
        Self {
            ptr: out.as_mut_ptr(),
            cols,
        }
    }

    /// Writes `lhs · rhs` (`m × k` and `k × n`, row-major with row strides `k` and `rhs_stride`)
    /// into the `m × n` block whose first element is `at`.
    ///
    /// # Safety
    /// The block lies inside the output, no other job writes it while this runs, and `lhs` and
    /// `rhs` hold the matrices their strides describe.
    pub unsafe fn multiply(
        self,
        at: usize,
        (m, n, k): (usize, usize, usize),
        lhs: &[f32],
        rhs: &[f32],
        rhs_stride: usize,
        parallelism: gemm::Parallelism,
    ) {
        gemm::gemm(
            m,
            n,
            k,
            self.ptr.add(at),
            1,
            self.cols as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }

    /// Applies `epilogue` to the `channels × n` block whose first element is `at`, row `c` being
    /// output channel `c`.
    ///
    /// # Safety
    /// As for [`Self::multiply`]: the block is inside the output and this job's alone.
    pub unsafe fn finish(self, at: usize, channels: usize, n: usize, epilogue: &Epilogue) {
        for channel in 0..channels {
            let row = std::slice::from_raw_parts_mut(self.ptr.add(at + channel * self.cols), n);
            epilogue.apply(channel, row);
        }
    }
}
