//! Launch glue for the crate's CUDA kernels (`kernels/*.cu`, compiled to PTX by `build.rs` and
//! JIT-loaded by the driver on first use through candle's `CudaDevice`). The generic pieces are
//! public (hidden from the docs) so that `rtdetr-decoder` launches its kernels the same way.

use candle::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle::cuda_backend::{kernel_name, WrapErr};
use candle::{CudaDevice, Layout, Result, WithDType};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// One PTX module: a name for candle's module cache and its text.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub name: &'static str,
    pub ptx: &'static str,
}

/// `kernels/depthwise.cu`.
pub(crate) const DEPTHWISE: Module = Module {
    name: "effnetv2_depthwise",
    ptx: ptx::DEPTHWISE,
};

/// The elements of a contiguous operand.
pub fn view<'a, T>(slice: &'a CudaSlice<T>, layout: &Layout) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle::bail!("custom op operands must be contiguous"),
    }
}

/// `threads` threads in blocks of 256 (the kernels loop with a grid stride, so any grid works).
pub fn elementwise(threads: usize) -> LaunchConfig {
    let blocks = threads.div_ceil(256).clamp(1, 1 << 20);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A kernel's output of `len` elements: zero-filled when `zeroed` (for kernels that accumulate
/// into it), otherwise left for the kernel, which must write every element.
pub fn alloc_out<T: DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    len: usize,
    zeroed: bool,
) -> Result<CudaSlice<T>> {
    if zeroed {
        dev.alloc_zeros::<T>(len.max(1))
    } else {
        // SAFETY: callers launch a kernel that writes every element before anything reads it.
        unsafe { dev.alloc::<T>(len.max(1)) }
    }
}

/// Launches `{name}_{dtype}(inputs..., out, params...)` from `module` and returns `out`, `len`
/// elements, zero-filled first when `zeroed` (for kernels that accumulate into it), otherwise
/// left for the kernel to write in full.
pub(crate) fn launch<T: DeviceRepr + WithDType + ValidAsZeroBits>(
    dev: &CudaDevice,
    module: Module,
    name: &str,
    inputs: &[(&CudaSlice<T>, &Layout)],
    (len, zeroed): (usize, bool),
    cfg: LaunchConfig,
    params: &[usize],
) -> Result<CudaSlice<T>> {
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
    for p in params {
        builder.arg(p);
    }
    // SAFETY: the argument list matches the kernel's signature (pointers, then size_t's).
    unsafe { builder.launch(cfg) }.w()?;
    Ok(out)
}
