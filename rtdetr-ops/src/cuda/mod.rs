//! Launch glue for `kernels/*.cu`, compiled to PTX by `build.rs` and JIT-loaded by the driver on
//! first use through candle's `CudaDevice`: the module table, and [`launch`], through which every
//! kernel of the crate runs.

mod params;

use candle::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle::cuda_backend::{kernel_name, WrapErr};
use candle::{CudaDevice, Layout, Result, WithDType};

pub(crate) use params::{Levels, Params};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// One PTX module: a name for candle's module cache and its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Module {
    name: &'static str,
    ptx: &'static str,
}

/// `kernels/depthwise.cu`.
pub(crate) const DEPTHWISE: Module = Module {
    name: "rtdetr_ops_depthwise",
    ptx: ptx::DEPTHWISE,
};

/// `kernels/ms_deform.cu`.
pub(crate) const MS_DEFORM: Module = Module {
    name: "rtdetr_ops_ms_deform",
    ptx: ptx::MS_DEFORM,
};

/// `kernels/topk.cu`.
pub(crate) const TOPK: Module = Module {
    name: "rtdetr_ops_topk",
    ptx: ptx::TOPK,
};

/// The elements of a contiguous operand.
pub(crate) fn view<'a, T>(slice: &'a CudaSlice<T>, layout: &Layout) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle::bail!("custom op operands must be contiguous"),
    }
}

/// `threads` threads in blocks of 256 (the kernels loop with a grid stride, so any grid works).
pub(crate) fn elementwise(threads: usize) -> LaunchConfig {
    let blocks = threads.div_ceil(256).clamp(1, 1 << 20);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A kernel's output buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Out {
    /// `len` elements that the kernel writes in full (left uninitialised).
    Written(usize),
    /// `len` zeros that the kernel accumulates into.
    Accumulated(usize),
}

/// Launches `{name}_{dtype of the inputs}(inputs..., out, params...)` of `module` and returns
/// `out`.
pub(crate) fn launch<T, U, P>(
    dev: &CudaDevice,
    module: Module,
    name: &str,
    inputs: &[(&CudaSlice<T>, &Layout)],
    out: Out,
    cfg: LaunchConfig,
    params: &P,
) -> Result<CudaSlice<U>>
where
    T: DeviceRepr + WithDType,
    U: DeviceRepr + ValidAsZeroBits,
    P: Params + ?Sized,
{
    let func = dev.get_or_load_custom_func(&kernel_name::<T>(name), module.name, module.ptx)?;
    let views = inputs
        .iter()
        .map(|(s, l)| view(s, l))
        .collect::<Result<Vec<_>>>()?;
    let out = match out {
        Out::Accumulated(len) => dev.alloc_zeros::<U>(len.max(1))?,
        // SAFETY: the kernel writes every element before anything reads it.
        Out::Written(len) => unsafe { dev.alloc::<U>(len.max(1))? },
    };
    let mut builder = func.builder();
    for v in &views {
        builder.arg(v);
    }
    builder.arg(&out);
    params.push(&mut builder);
    // SAFETY: every kernel of `kernels/` takes its input pointers, its output pointer, then the
    // parameters `P` pushes, in that order.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(out)
}
