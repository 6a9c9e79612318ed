//! Depthwise 2-D convolution as a direct kernel, on the CPU and on CUDA.
//!
//! candle runs a grouped convolution as one convolution per group followed by a `cat`, which
//! for depthwise layers is 20× slower than a direct loop (and slower still backwards). On CUDA
//! the same three operations run as kernels of `kernels/depthwise.cu` (f32, f64, bf16).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::geometry::Geometry;
use crate::activation::Epilogue;
use crate::cpu::cpu_slice;

/// Depthwise convolution: `xs: [B, C, H, W]`, `weight: [C, 1, KH, KW]`, symmetric zero padding.
///
/// Equal to `xs.conv2d(weight, padding, stride, 1, C)`. On the CPU (f32, f64) and on CUDA (f32,
/// f64, bf16) it runs a direct kernel with its own backward pass; other devices and dtypes use
/// candle's grouped convolution.
///
/// # Shapes
/// `xs: [B, C, H, W]` → `[B, C, (H + 2·padding − KH)/stride + 1, (W + 2·padding − KW)/stride + 1]`
pub fn depthwise_conv2d(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let geometry = geometry(xs, weight, stride, padding)?;
    if !xs.device().is_cpu() && !has_cuda_kernel(xs) {
        return xs.conv2d(weight, padding, stride, 1, geometry.c);
    }
    xs.contiguous()?.apply_op2(
        &weight.contiguous()?,
        Depthwise {
            g: geometry,
            pass: Pass::Forward,
            epilogue: None,
        },
    )
}

/// [`depthwise_conv2d`] of f32 CPU tensors followed by `epilogue`, plane by plane; no gradient.
pub(crate) fn depthwise_fused(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    epilogue: Epilogue,
) -> Result<Tensor> {
    let op = Depthwise {
        g: geometry(xs, weight, stride, padding)?,
        pass: Pass::Forward,
        epilogue: Some(epilogue),
    };
    xs.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &op)
}

/// Whether `kernels/depthwise.cu` covers `xs`'s device and dtype.
fn has_cuda_kernel(xs: &Tensor) -> bool {
    use candle::DType;
    cfg!(feature = "cuda")
        && xs.device().is_cuda()
        && matches!(xs.dtype(), DType::F32 | DType::F64 | DType::BF16)
}

/// Checks a depthwise weight against its input.
fn geometry(xs: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Geometry> {
    let (wc, one, kh, kw) = weight.dims4()?;
    if wc != xs.dim(1)? || one != 1 {
        candle::bail!(
            "depthwise conv: weight {:?} does not fit input {:?} (expected [{}, 1, KH, KW])",
            weight.shape(),
            xs.shape(),
            xs.dim(1)?
        )
    }
    Geometry::new(xs.dims4()?, (kh, kw), stride, padding, "depthwise conv")
}

/// Calls `f(oy, iy, ky, kx, (lo, hi))` for every tap of the kernel that falls inside the input,
/// `lo..hi` being the output columns it reaches, in a fixed order.
#[inline(always)]
fn for_each_tap(g: &Geometry, mut f: impl FnMut(usize, usize, usize, usize, (usize, usize))) {
    for oy in 0..g.oh {
        for ky in 0..g.kh {
            let Some(iy) = (oy * g.stride + ky)
                .checked_sub(g.padding)
                .filter(|&i| i < g.h)
            else {
                continue;
            };
            for kx in 0..g.kw {
                let (lo, hi, _) = g.valid(kx, g.w, g.ow);
                f(oy, iy, ky, kx, (lo, hi));
            }
        }
    }
}

/// `out[i] += a·xs[i·stride]`.
#[inline(always)]
fn axpy<T: WithDType>(out: &mut [T], a: T, xs: &[T], stride: usize) {
    if stride == 1 {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o += a * x;
        }
    } else {
        for (o, &x) in out.iter_mut().zip(xs.iter().step_by(stride)) {
            *o += a * x;
        }
    }
}

/// `xs[i·stride] += a·ys[i]`.
fn scatter_axpy<T: WithDType>(xs: &mut [T], a: T, ys: &[T], stride: usize) {
    if stride == 1 {
        for (x, &y) in xs.iter_mut().zip(ys) {
            *x += a * y;
        }
    } else {
        for (x, &y) in xs.iter_mut().step_by(stride).zip(ys) {
            *x += a * y;
        }
    }
}

/// `Σ ys[i]·xs[i·stride]`, in independent partial sums: float addition is not reassociated by
/// the compiler, so a single accumulator would serialise the loop on the add latency.
fn dot<T: WithDType>(ys: &[T], xs: &[T], stride: usize) -> T {
    const LANES: usize = 8;
    let mut acc = [T::zero(); LANES];
    let full = ys.len() / LANES * LANES;
    if stride == 1 {
        for (y, x) in ys.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
            for lane in 0..LANES {
                acc[lane] += y[lane] * x[lane];
            }
        }
    } else {
        for (chunk, y) in ys.chunks_exact(LANES).enumerate() {
            for lane in 0..LANES {
                acc[lane] += y[lane] * xs[(chunk * LANES + lane) * stride];
            }
        }
    }
    for i in full..ys.len() {
        acc[0] += ys[i] * xs[i * stride];
    }
    acc.iter().fold(T::zero(), |sum, &a| sum + a)
}

/// One output plane of the forward pass, taps in [`for_each_tap`]'s order. Written out without
/// that helper's closure: a closure is compiled apart from the vector builds that inline this.
#[inline(always)]
fn forward_plane<T: WithDType>(g: &Geometry, xs: &[T], taps: &[T], out: &mut [T]) {
    for oy in 0..g.oh {
        for ky in 0..g.kh {
            let Some(iy) = (oy * g.stride + ky)
                .checked_sub(g.padding)
                .filter(|&i| i < g.h)
            else {
                continue;
            };
            for kx in 0..g.kw {
                let (lo, hi, _) = g.valid(kx, g.w, g.ow);
                let first = lo * g.stride + kx - g.padding;
                let row = &xs[iy * g.w..][first..g.w];
                axpy(
                    &mut out[oy * g.ow..][lo..hi],
                    taps[ky * g.kw + kx],
                    row,
                    g.stride,
                );
            }
        }
    }
}

/// [`forward_plane`] for f32 compiled for AVX-512, picked at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_plane_avx512(g: &Geometry, xs: &[f32], taps: &[f32], out: &mut [f32]) {
    forward_plane(g, xs, taps, out)
}

/// [`forward_plane`] for f32 compiled for AVX2 + FMA, picked at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_plane_avx2(g: &Geometry, xs: &[f32], taps: &[f32], out: &mut [f32]) {
    forward_plane(g, xs, taps, out)
}

fn forward_plane_f32(g: &Geometry, xs: &[f32], taps: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_plane_avx512(g, xs, taps, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_plane_avx2(g, xs, taps, out) };
    }
    forward_plane(g, xs, taps, out)
}

/// Scratch of [`forward_plane_padded`]: the zero-padded input plane and the output rows at the
/// padded pitch.
#[derive(Default)]
struct Padded {
    input: Vec<f32>,
    rows: Vec<f32>,
}

/// One output plane of a stride-1 convolution with `padding = KH/2 = KW/2`, summed tap by tap
/// over the whole plane at once: the input is copied into a zero-padded plane of pitch
/// `W + 2p`, so that every tap is one multiply-add over `OH · (W + 2p)` contiguous values
/// (the two padding columns of each row computed and dropped). On small planes (20×20 in the
/// last stages) the row-by-row kernel spends its time on range logic and vector tails. The taps
/// are summed in [`forward_plane`]'s order and a tap on padding adds zero, so the values are the
/// same.
#[inline(always)]
fn forward_plane_padded(
    g: &Geometry,
    xs: &[f32],
    taps: &[f32],
    out: &mut [f32],
    scratch: &mut Padded,
) {
    let (p, pitch) = (g.padding, g.w + 2 * g.padding);
    let len = g.oh * pitch;
    scratch.input.clear();
    scratch.input.resize((g.h + 2 * p) * pitch + g.kw, 0.0);
    for (y, row) in xs.chunks_exact(g.w).enumerate() {
        scratch.input[(y + p) * pitch + p..][..g.w].copy_from_slice(row);
    }
    scratch.rows.clear();
    scratch.rows.resize(len, 0.0);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let a = taps[ky * g.kw + kx];
            let src = &scratch.input[ky * pitch + kx..][..len];
            for (o, &x) in scratch.rows.iter_mut().zip(src) {
                *o += a * x;
            }
        }
    }
    for (dst, src) in out
        .chunks_exact_mut(g.ow)
        .zip(scratch.rows.chunks_exact(pitch))
    {
        dst.copy_from_slice(&src[..g.ow]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_plane_padded_avx512(
    g: &Geometry,
    xs: &[f32],
    taps: &[f32],
    out: &mut [f32],
    scratch: &mut Padded,
) {
    forward_plane_padded(g, xs, taps, out, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_plane_padded_avx2(
    g: &Geometry,
    xs: &[f32],
    taps: &[f32],
    out: &mut [f32],
    scratch: &mut Padded,
) {
    forward_plane_padded(g, xs, taps, out, scratch)
}

fn forward_plane_padded_f32(
    g: &Geometry,
    xs: &[f32],
    taps: &[f32],
    out: &mut [f32],
    scratch: &mut Padded,
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_plane_padded_avx512(g, xs, taps, out, scratch) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_plane_padded_avx2(g, xs, taps, out, scratch) };
    }
    forward_plane_padded(g, xs, taps, out, scratch)
}

/// Whether [`forward_plane_padded`] computes `g`: stride 1, "same" padding, odd kernels.
fn padded_fits(g: &Geometry) -> bool {
    g.stride == 1 && g.kh == g.kw && g.kh % 2 == 1 && g.padding == g.kh / 2
}

fn forward_kernel<T: WithDType>(g: &Geometry, xs: &[T], weight: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.b * g.c * g.out_plane()];
    out.par_chunks_mut(g.out_plane())
        .enumerate()
        .for_each(|(plane, out)| {
            let xs = &xs[plane * g.plane()..][..g.plane()];
            let taps = &weight[(plane % g.c) * g.taps()..][..g.taps()];
            forward_plane(g, xs, taps, out);
        });
    out
}

/// The f32 forward pass with the widest vectors the CPU has, `epilogue` applied to each plane
/// as soon as it is complete.
fn forward_kernel_f32(
    g: &Geometry,
    xs: &[f32],
    weight: &[f32],
    epilogue: Option<&Epilogue>,
) -> Vec<f32> {
    let mut out = vec![0f32; g.b * g.c * g.out_plane()];
    let padded = padded_fits(g);
    out.par_chunks_mut(g.out_plane()).enumerate().for_each_init(
        Padded::default,
        |scratch, (plane, out)| {
            let xs = &xs[plane * g.plane()..][..g.plane()];
            let channel = plane % g.c;
            let taps = &weight[channel * g.taps()..][..g.taps()];
            if padded {
                forward_plane_padded_f32(g, xs, taps, out, scratch);
            } else {
                forward_plane_f32(g, xs, taps, out);
            }
            if let Some(epilogue) = epilogue {
                epilogue.apply(channel, out);
            }
        },
    );
    out
}

fn grad_input_kernel<T: WithDType>(g: &Geometry, grad: &[T], weight: &[T]) -> Vec<T> {
    let mut grad_xs = vec![T::zero(); g.b * g.c * g.plane()];
    grad_xs
        .par_chunks_mut(g.plane())
        .enumerate()
        .for_each(|(plane, grad_xs)| {
            let grad = &grad[plane * g.out_plane()..][..g.out_plane()];
            let taps = &weight[(plane % g.c) * g.taps()..][..g.taps()];
            for_each_tap(g, |oy, iy, ky, kx, (lo, hi)| {
                let first = lo * g.stride + kx - g.padding;
                let row = &mut grad_xs[iy * g.w..][first..g.w];
                scatter_axpy(
                    row,
                    taps[ky * g.kw + kx],
                    &grad[oy * g.ow..][lo..hi],
                    g.stride,
                );
            });
        });
    grad_xs
}

fn grad_weight_kernel<T: WithDType>(g: &Geometry, xs: &[T], grad: &[T]) -> Vec<T> {
    let mut grad_w = vec![T::zero(); g.c * g.taps()];
    grad_w
        .par_chunks_mut(g.taps())
        .enumerate()
        .for_each(|(channel, grad_w)| {
            for batch in 0..g.b {
                let plane = batch * g.c + channel;
                let xs = &xs[plane * g.plane()..][..g.plane()];
                let grad = &grad[plane * g.out_plane()..][..g.out_plane()];
                for_each_tap(g, |oy, iy, ky, kx, (lo, hi)| {
                    let first = lo * g.stride + kx - g.padding;
                    let row = &xs[iy * g.w..][first..g.w];
                    grad_w[ky * g.kw + kx] += dot(&grad[oy * g.ow..][lo..hi], row, g.stride);
                });
            }
        });
    grad_w
}

/// Launches `{name}_{dtype}(xs, w, out, b, c, h, w, kh, kw, oh, ow, stride, padding)` of
/// `kernels/depthwise.cu` on two operands of one dtype, `out` holding `len` elements.
#[cfg(feature = "cuda")]
#[allow(clippy::too_many_arguments)]
fn launch_cuda(
    name: &str,
    g: &Geometry,
    cfg: candle::cuda_backend::cudarc::driver::LaunchConfig,
    len: usize,
    (s1, l1): (&candle::CudaStorage, &Layout),
    (s2, l2): (&candle::CudaStorage, &Layout),
) -> Result<candle::CudaStorage> {
    use crate::cuda::{launch, Out, DEPTHWISE};
    use candle::cuda_backend::CudaStorageSlice;
    let dev = s1.device();
    let params = [
        g.b, g.c, g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.stride, g.padding,
    ];
    let slice = float_dispatch!("depthwise conv on CUDA", s1.dtype(), CudaStorageSlice, |T| {
        launch::<T, T, _>(
            dev,
            DEPTHWISE,
            name,
            &[(s1.as_cuda_slice::<T>()?, l1), (s2.as_cuda_slice::<T>()?, l2)],
            Out::Written(len),
            cfg,
            &params,
        )?
    }, F32: f32, F64: f64, BF16: half::bf16);
    Ok(candle::CudaStorage {
        slice,
        device: dev.clone(),
    })
}

/// Which of the three depthwise kernels an op runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pass {
    /// `(xs, weight)` → ys.
    Forward,
    /// `(dy, weight)` → dx.
    GradInput,
    /// `(xs, dy)` → d weight.
    GradWeight,
}

/// One pass of the depthwise convolution; only the forward pass is differentiated.
struct Depthwise {
    g: Geometry,
    pass: Pass,
    /// Evaluation only (forward, f32, CPU): the bias and activation applied to each output plane.
    epilogue: Option<Epilogue>,
}

impl Depthwise {
    fn out_shape(&self) -> Shape {
        let g = &self.g;
        match self.pass {
            Pass::Forward => (g.b, g.c, g.oh, g.ow).into(),
            Pass::GradInput => (g.b, g.c, g.h, g.w).into(),
            Pass::GradWeight => (g.c, 1, g.kh, g.kw).into(),
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "depthwise-conv2d",
            Pass::GradInput => "depthwise-conv2d-grad-input",
            Pass::GradWeight => "depthwise-conv2d-grad-weight",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        if let (Pass::Forward, CpuStorage::F32(_)) = (self.pass, s1) {
            let (xs, weight) = (cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?);
            let out = forward_kernel_f32(g, xs, weight, self.epilogue.as_ref());
            return Ok((CpuStorage::F32(out), self.out_shape()));
        }
        let out = float_dispatch!("depthwise conv", s1.dtype(), CpuStorage, |T| {
            let (a, b) = (cpu_slice::<T>(s1, l1)?, cpu_slice::<T>(s2, l2)?);
            match self.pass {
                Pass::Forward => forward_kernel(g, a, b),
                Pass::GradInput => grad_input_kernel(g, a, b),
                Pass::GradWeight => grad_weight_kernel(g, a, b),
            }
        }, F32: f32, F64: f64);
        Ok((out, self.out_shape()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle::CudaStorage,
        l1: &Layout,
        s2: &candle::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle::CudaStorage, Shape)> {
        let shape = self.out_shape();
        let len = shape.elem_count();
        let (name, cfg) = match self.pass {
            Pass::Forward => ("depthwise_fwd", crate::cuda::elementwise(len)),
            Pass::GradInput => ("depthwise_grad_input", crate::cuda::elementwise(len)),
            // One block of 256 threads (the kernel's shared-memory size) per weight element.
            Pass::GradWeight => (
                "depthwise_grad_weight",
                candle::cuda_backend::cudarc::driver::LaunchConfig {
                    grid_dim: (len as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
            ),
        };
        let out = launch_cuda(name, &self.g, cfg, len, (s1, l1), (s2, l2))?;
        Ok((out, shape))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.pass != Pass::Forward {
            candle::bail!("{}: no second derivative", self.name())
        }
        let g = self.g;
        let grad = grad.contiguous()?;
        let grad_xs = grad.apply_op2_no_bwd(
            weight,
            &Depthwise {
                g,
                pass: Pass::GradInput,
                epilogue: None,
            },
        )?;
        let grad_w = xs.apply_op2_no_bwd(
            &grad,
            &Depthwise {
                g,
                pass: Pass::GradWeight,
                epilogue: None,
            },
        )?;
        Ok((Some(grad_xs), Some(grad_w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::{DType, Device, Var};

    fn random(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::randn(0f32, 1., shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    #[derive(Debug, Clone, Copy)]
    struct Case {
        shape: [usize; 4],
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
    }

    const fn case(
        shape: [usize; 4],
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
    ) -> Case {
        Case {
            shape,
            kernel,
            stride,
            padding,
        }
    }

    /// Odd and even sizes, strides 1 to 3, no padding, padding wider than the kernel's half,
    /// rectangular kernels.
    const CASES: &[Case] = &[
        case([2, 3, 7, 9], (3, 3), 1, 1),
        case([1, 4, 8, 6], (3, 3), 2, 1),
        case([2, 2, 9, 7], (5, 5), 2, 2),
        case([1, 3, 6, 10], (3, 3), 1, 0),
        case([1, 2, 5, 5], (3, 3), 3, 2),
        case([2, 2, 6, 7], (1, 3), 1, 1),
    ];

    #[test]
    fn forward_and_gradients_equal_grouped_conv() {
        for &case @ Case {
            shape,
            kernel: (kh, kw),
            stride,
            padding,
        } in CASES
        {
            let c = shape[1];
            let xs = Var::from_tensor(&random(&shape, DType::F64)).unwrap();
            let w = Var::from_tensor(&random(&[c, 1, kh, kw], DType::F64)).unwrap();
            let ours = depthwise_conv2d(&xs, &w, stride, padding).unwrap();
            let reference = xs.conv2d(&w, padding, stride, 1, c).unwrap();
            assert_eq!(ours.dims(), reference.dims(), "{case:?}");
            assert!(max_abs_diff(&ours, &reference) < 1e-12);

            let probe = random(ours.dims(), DType::F64);
            let ours = (ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let reference = (reference * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for var in [&xs, &w] {
                let (a, b) = (ours.get(var).unwrap(), reference.get(var).unwrap());
                assert!(max_abs_diff(a, b) < 1e-12, "{case:?}");
            }
        }
    }

    #[test]
    fn gradients_equal_finite_differences() {
        let eps = 1e-6;
        for &case @ Case {
            shape,
            kernel: (kh, kw),
            stride,
            padding,
        } in CASES
        {
            let c = shape[1];
            let xs = random(&shape, DType::F64);
            let w = random(&[c, 1, kh, kw], DType::F64);
            let probe_shape = depthwise_conv2d(&xs, &w, stride, padding)
                .unwrap()
                .dims()
                .to_vec();
            let probe = random(&probe_shape, DType::F64);
            let loss = |xs: &Tensor, w: &Tensor| -> f64 {
                let ys = depthwise_conv2d(xs, w, stride, padding).unwrap();
                (ys * &probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let xs_var = Var::from_tensor(&xs).unwrap();
            let w_var = Var::from_tensor(&w).unwrap();
            let ys = depthwise_conv2d(&xs_var, &w_var, stride, padding).unwrap();
            let grads = (ys * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();

            for (which, var) in [(0, &xs_var), (1, &w_var)] {
                let analytic: Vec<f64> = grads
                    .get(var)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let base = var
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for (i, &grad) in analytic.iter().enumerate() {
                    let nudged = |delta: f64| {
                        let mut v = base.clone();
                        v[i] += delta;
                        Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()
                    };
                    let (plus, minus) = (nudged(eps), nudged(-eps));
                    let numeric = if which == 0 {
                        (loss(&plus, &w) - loss(&minus, &w)) / (2. * eps)
                    } else {
                        (loss(&xs, &plus) - loss(&xs, &minus)) / (2. * eps)
                    };
                    assert!(
                        (numeric - grad).abs() < 1e-6 * (1. + grad.abs()),
                        "{case:?} operand {which} index {i}: {numeric} vs {grad}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_matches_f64() {
        let xs = random(&[2, 8, 12, 12], DType::F64);
        let w = random(&[8, 1, 3, 3], DType::F64);
        let exact = depthwise_conv2d(&xs, &w, 2, 1).unwrap();
        let single = depthwise_conv2d(
            &xs.to_dtype(DType::F32).unwrap(),
            &w.to_dtype(DType::F32).unwrap(),
            2,
            1,
        )
        .unwrap();
        assert!(max_abs_diff(&single.to_dtype(DType::F64).unwrap(), &exact) < 1e-5);
    }

    /// `kernels/depthwise.cu`'s gradients, mirrored loop for loop (one input pixel gathering
    /// from the outputs its taps reach; one weight summing over batch and outputs), against the
    /// CPU kernels.
    #[test]
    fn cuda_kernel_index_math_equals_the_cpu_kernels() {
        for &case @ Case {
            shape,
            kernel,
            stride,
            padding,
        } in CASES
        {
            let g = Geometry::new(
                (shape[0], shape[1], shape[2], shape[3]),
                kernel,
                stride,
                padding,
                "test",
            )
            .unwrap();
            let values =
                |n: usize| -> Vec<f64> { (0..n).map(|i| (i as f64 * 0.37).sin()).collect() };
            let (xs, w, gy) = (
                values(g.b * g.c * g.plane()),
                values(g.c * g.taps()),
                values(g.b * g.c * g.out_plane()),
            );
            let (s, p) = (stride as i64, padding as i64);
            let mut gx = vec![0f64; xs.len()];
            for (i, out) in gx.iter_mut().enumerate() {
                let (ix, iy) = ((i % g.w) as i64, ((i / g.w) % g.h) as i64);
                let plane = i / g.plane();
                let ch = plane % g.c;
                for ky in 0..g.kh as i64 {
                    let ny = iy + p - ky;
                    if ny < 0 || ny % s != 0 || ny / s >= g.oh as i64 {
                        continue;
                    }
                    for kx in 0..g.kw as i64 {
                        let nx = ix + p - kx;
                        if nx < 0 || nx % s != 0 || nx / s >= g.ow as i64 {
                            continue;
                        }
                        let o = (ny / s) as usize * g.ow + (nx / s) as usize;
                        *out += w[ch * g.taps() + ky as usize * g.kw + kx as usize]
                            * gy[plane * g.out_plane() + o];
                    }
                }
            }
            let mut gw = vec![0f64; w.len()];
            for (block, out) in gw.iter_mut().enumerate() {
                let (ch, tap) = (block / g.taps(), block % g.taps());
                let (ky, kx) = ((tap / g.kw) as i64, (tap % g.kw) as i64);
                for j in 0..g.b * g.out_plane() {
                    let (batch, o) = (j / g.out_plane(), j % g.out_plane());
                    let iy = (o / g.ow) as i64 * s + ky - p;
                    let ix = (o % g.ow) as i64 * s + kx - p;
                    if iy < 0 || iy >= g.h as i64 || ix < 0 || ix >= g.w as i64 {
                        continue;
                    }
                    let plane = batch * g.c + ch;
                    *out += gy[plane * g.out_plane() + o]
                        * xs[plane * g.plane() + iy as usize * g.w + ix as usize];
                }
            }
            let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
            assert!(close(&gx, &grad_input_kernel(&g, &gy, &w)), "{case:?} d/dx");
            assert!(
                close(&gw, &grad_weight_kernel(&g, &xs, &gy)),
                "{case:?} d/dw"
            );
        }
    }

    /// Each compiled f32 path the machine can run, against the portable one: odd widths, strides
    /// 1 and 2, kernels 3 and 5.
    #[test]
    fn every_vector_path_equals_the_portable_one() {
        for (h, w, k, stride) in [
            (9, 13, 3, 1),
            (20, 20, 3, 1),
            (7, 11, 5, 1),
            (17, 31, 3, 2),
            (8, 19, 5, 2),
        ] {
            let g = Geometry::new((1, 1, h, w), (k, k), stride, k / 2, "test").unwrap();
            let xs: Vec<f32> = (0..h * w)
                .map(|i| ((i * 37) % 101) as f32 / 25.0 - 2.0)
                .collect();
            let taps: Vec<f32> = (0..k * k).map(|i| i as f32 / 7.0 - 0.5).collect();
            let mut want = vec![0f32; g.out_plane()];
            forward_plane(&g, &xs, &taps, &mut want);
            if padded_fits(&g) {
                let mut got = vec![0f32; g.out_plane()];
                forward_plane_padded(&g, &xs, &taps, &mut got, &mut Padded::default());
                assert_eq!(
                    got, want,
                    "padded {h}×{w} k{k}: same sums in the same order"
                );
                forward_plane_padded_f32(&g, &xs, &taps, &mut got, &mut Padded::default());
                assert_eq!(got, want, "padded, dispatched");
            }
            let close = |got: &[f32], path: &str| {
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{path} {h}×{w} k{k} s{stride}: {a} vs {b}"
                    );
                }
            };
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    let mut got = vec![0f32; g.out_plane()];
                    // SAFETY: the features were detected.
                    unsafe { forward_plane_avx2(&g, &xs, &taps, &mut got) };
                    close(&got, "avx2");
                }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    let mut got = vec![0f32; g.out_plane()];
                    // SAFETY: the features were detected.
                    unsafe { forward_plane_avx512(&g, &xs, &taps, &mut got) };
                    close(&got, "avx512");
                }
            }
        }
    }

    #[test]
    fn mismatched_weight_is_an_error() {
        let xs = random(&[1, 3, 8, 8], DType::F32);
        let w = random(&[4, 1, 3, 3], DType::F32);
        let err = depthwise_conv2d(&xs, &w, 1, 1).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
    }
}
