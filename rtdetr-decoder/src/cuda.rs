//! Launch glue for the crate's CUDA kernels (`kernels/*.cu`, compiled to PTX by `build.rs` and
//! JIT-loaded by the driver on first use through candle's `CudaDevice`).

use candle::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};
use candle::cuda_backend::{kernel_name, WrapErr};
use candle::{CudaDevice, Layout, Result, WithDType};
pub(crate) use effnetv2::cuda::{alloc_out, elementwise, view, Module};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// `kernels/ms_deform.cu`.
pub(crate) const MS_DEFORM: Module = Module {
    name: "rtdetr_decoder_ms_deform",
    ptx: ptx::MS_DEFORM,
};

/// `kernels/topk.cu`.
pub(crate) const TOPK: Module = Module {
    name: "rtdetr_decoder_topk",
    ptx: ptx::TOPK,
};

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

/// Launches `{name}_{dtype}(inputs..., out, levels, sizes...)` of `kernels/ms_deform.cu` over
/// `threads` threads and returns `out`, `len` elements, zero-filled first when `zeroed` (for
/// kernels that accumulate into it), otherwise left for the kernel to write in full.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_ms_deform<T: DeviceRepr + WithDType + ValidAsZeroBits>(
    dev: &CudaDevice,
    name: &str,
    inputs: [(&CudaSlice<T>, &Layout); 3],
    (len, zeroed): (usize, bool),
    threads: usize,
    levels: &Levels,
    sizes: &[usize; 7],
) -> Result<CudaSlice<T>> {
    let module = MS_DEFORM;
    let func = dev.get_or_load_custom_func(&kernel_name::<T>(name), module.name, module.ptx)?;
    let views = inputs
        .iter()
        .map(|(s, l)| view(s, l))
        .collect::<Result<Vec<_>>>()?;
    let out = alloc_out(dev, len, zeroed)?;
    let mut builder = func.builder();
    for v in &views {
        builder.arg(v);
    }
    builder.arg(&out);
    builder.arg(levels);
    for s in sizes {
        builder.arg(s);
    }
    // SAFETY: the argument list matches the kernel's signature (three inputs, the output, the
    // levels, seven size_t's).
    unsafe { builder.launch(elementwise(threads)) }.w()?;
    Ok(out)
}
