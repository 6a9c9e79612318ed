use candle::Result;

/// Sizes of one 2-D convolution of `[B, C, H, W]` with a `KH×KW` kernel, shared by the CPU
/// kernels (depthwise, unfold/fold), which all work plane by plane and row by row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Geometry {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Geometry {
    /// Checks that the kernel fits the padded input; `what` names the operation in errors.
    pub fn new(
        (b, c, h, w): (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        padding: usize,
        what: &str,
    ) -> Result<Self> {
        if stride == 0 || h + 2 * padding < kh || w + 2 * padding < kw {
            candle::bail!("{what}: input [{b}, {c}, {h}, {w}] too small for kernel {kh}×{kw}, padding {padding}, stride {stride}")
        }
        let oh = (h + 2 * padding - kh) / stride + 1;
        let ow = (w + 2 * padding - kw) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            kh,
            kw,
            oh,
            ow,
            stride,
            padding,
        })
    }

    /// Input pixels per plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Output pixels per plane.
    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// Kernel taps.
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// For kernel offset `k` along an axis of `size` input pixels and `out` outputs: the outputs
    /// `lo..hi` whose input index `o·stride + k − padding` is inside, and that index for `lo`.
    #[inline(always)]
    pub fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = if p > k { (p - k).div_ceil(s) } else { 0 };
        let hi = if size + p > k {
            ((size + p - k - 1) / s + 1).min(out)
        } else {
            0
        };
        let hi = hi.max(lo);
        (lo, hi, (lo * s + k).saturating_sub(p))
    }
}
