use candle::cuda_backend::cudarc::driver::{DeviceRepr, LaunchArgs, PushKernelArg};
use candle::Result;

/// The arguments a kernel takes after its output pointer.
pub(crate) trait Params {
    /// Pushes them onto `args`, in the kernel's order.
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>);
}

/// `size_t` parameters.
impl Params for [usize] {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        for p in self {
            args.arg(p);
        }
    }
}

impl<const N: usize> Params for [usize; N] {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        self.as_slice().push(args)
    }
}

/// A struct passed by value, then `size_t` parameters (`kernels/ms_deform.cu`).
impl<const N: usize> Params for (Levels, [usize; N]) {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        args.arg(&self.0);
        self.1.push(args)
    }
}

/// Most feature levels `kernels/ms_deform.cu` takes (its `MAX_LEVELS`).
pub(crate) const MAX_LEVELS: usize = 8;

/// The level shapes for `kernels/ms_deform.cu`, passed by value (its `struct Levels`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels {
    h: [usize; MAX_LEVELS],
    w: [usize; MAX_LEVELS],
    start: [usize; MAX_LEVELS],
}

// SAFETY: plain `#[repr(C)]` data laid out as the kernel's struct (3 × 8 `size_t`).
unsafe impl DeviceRepr for Levels {}

impl Levels {
    /// `(h, w)` per level, at most [`MAX_LEVELS`]; each level starts where the previous ends.
    pub fn new(shapes: &[(usize, usize)]) -> Result<Self> {
        if shapes.len() > MAX_LEVELS {
            candle::bail!(
                "ms-deform-sample on CUDA: {} levels, at most {MAX_LEVELS}",
                shapes.len()
            )
        }
        let mut levels = Self {
            h: [0; MAX_LEVELS],
            w: [0; MAX_LEVELS],
            start: [0; MAX_LEVELS],
        };
        let mut start = 0;
        for (i, &(h, w)) in shapes.iter().enumerate() {
            (levels.h[i], levels.w[i], levels.start[i]) = (h, w, start);
            start += h * w;
        }
        Ok(levels)
    }
}
