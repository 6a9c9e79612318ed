//! `x·Wᵀ + b` as one CPU op with its own backward, in f32 and f64.
//!
//! candle's linear layer is a matrix product and a broadcast add: the graph keeps the product as
//! well as the output (34 MB for each of the decoder's six value projections over 8400 tokens at
//! batch 4), and the bias gradient is candle's reduction over the leading dimensions, which runs
//! on one thread with strided reads (about 0.1 s for 4×8400 tokens). Here the product and the
//! bias add share one output, and the bias gradient is a parallel column sum. The forward
//! rounds exactly as candle's (the same gemm call, then the add).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::cpu::{cpu_slice, product};

/// Rows of the output per parallel job of the bias add and the bias gradient.
const ROWS_PER_JOB: usize = 256;

struct LinearOp {
    rows: usize,
    in_dim: usize,
    out_dim: usize,
}

fn parallelism(rows: usize) -> gemm::Parallelism {
    match candle::utils::get_num_threads() {
        threads if threads > 1 && rows >= 64 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    }
}

impl LinearOp {
    fn forward<T: WithDType>(&self, xs: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
        let (rows, in_dim, out_dim) = (self.rows, self.in_dim, self.out_dim);
        let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
        let mut out = vec![zero; rows * out_dim];
        // SAFETY: xs is rows × in_dim and weight out_dim × in_dim row-major (its transpose read
        // through strides), out rows × out_dim.
        unsafe {
            let dims = (rows, out_dim, in_dim);
            let strided = parallelism(rows);
            product(
                dims,
                &mut out,
                xs,
                (in_dim, 1),
                weight,
                (1, in_dim),
                one,
                zero,
                strided,
            )
        }
        out.par_chunks_mut(ROWS_PER_JOB * out_dim).for_each(|rows| {
            for row in rows.chunks_exact_mut(out_dim) {
                row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b);
            }
        });
        out
    }

    /// `(grad_xs, grad_weight, grad_bias)` from the output gradient `grad` (`rows × out`).
    fn backward<T: WithDType>(
        &self,
        xs: &[T],
        weight: &[T],
        grad: &[T],
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (rows, in_dim, out_dim) = (self.rows, self.in_dim, self.out_dim);
        let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
        let mut grad_xs = vec![zero; rows * in_dim];
        let mut grad_w = vec![zero; out_dim * in_dim];
        // SAFETY: grad is rows × out_dim, weight out_dim × in_dim, xs rows × in_dim, all
        // row-major; gradᵀ is read through strides.
        unsafe {
            // grad_xs (rows × in) = grad (rows × out) · weight (out × in)
            let (dims, threads) = ((rows, in_dim, out_dim), parallelism(rows));
            let (g, w) = ((out_dim, 1), (in_dim, 1));
            product(dims, &mut grad_xs, grad, g, weight, w, one, zero, threads);
            // grad_w (out × in) = gradᵀ (out × rows) · xs (rows × in)
            let (dims, threads) = ((out_dim, in_dim, rows), parallelism(out_dim));
            let (gt, x) = ((1, out_dim), (in_dim, 1));
            product(dims, &mut grad_w, grad, gt, xs, x, one, zero, threads);
        }
        // Partial sums of fixed row blocks, added in block order: the same bits for any thread
        // count or work stealing (rayon's `reduce` tree follows the splits).
        let partials: Vec<Vec<T>> = grad
            .par_chunks(ROWS_PER_JOB * out_dim)
            .map(|rows| {
                let mut sums = vec![zero; out_dim];
                for row in rows.chunks_exact(out_dim) {
                    sums.iter_mut().zip(row).for_each(|(s, &g)| *s += g);
                }
                sums
            })
            .collect();
        let grad_b = partials.into_iter().fold(vec![zero; out_dim], |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
            a
        });
        (grad_xs, grad_w, grad_b)
    }

    fn backward_of<T: WithDType>(
        &self,
        (xs, weight, bias): (&Tensor, &Tensor, &Tensor),
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [(sx, lx), (sw, lw), (sg, lg)] = [xs, weight, grad].map(|t| t.storage_and_layout());
        let (gx, gw, gb) = match (&*sx, &*sw, &*sg) {
            (Storage::Cpu(sx), Storage::Cpu(sw), Storage::Cpu(sg)) => {
                self.backward::<T>(cpu_slice(sx, lx)?, cpu_slice(sw, lw)?, cpu_slice(sg, lg)?)
            }
            _ => candle::bail!("linear: the op's backward runs on the CPU only"),
        };
        let dev = xs.device();
        Ok((
            Some(Tensor::from_vec(gx, xs.shape(), dev)?),
            Some(Tensor::from_vec(gw, weight.shape(), dev)?),
            Some(Tensor::from_vec(gb, bias.shape(), dev)?),
        ))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (x, w, b) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
                CpuStorage::F32(self.forward::<f32>(x, w, b))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (x, w, b) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
                CpuStorage::F64(self.forward::<f64>(x, w, b))
            }
            _ => candle::bail!(
                "linear: f32 or f64 operands of one dtype, got {:?}, {:?} and {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        Ok((out, (self.rows, self.out_dim).into()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        match xs.dtype() {
            DType::F32 => self.backward_of::<f32>((xs, weight, bias), &grad),
            DType::F64 => self.backward_of::<f64>((xs, weight, bias), &grad),
            dtype => candle::bail!("linear: f32 or f64 operands, got {dtype:?}"),
        }
    }
}

/// Whether [`linear_cpu`] runs these operands.
pub(crate) fn runs(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
    xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype()
        && bias.dtype() == xs.dtype()
        && xs.rank() >= 1
}

/// `xs·weightᵀ + bias` over the last dimension of `xs`.
///
/// # Shapes
/// `xs: [..., in]`, `weight: [out, in]`, `bias: [out]` → `[..., out]`
pub(crate) fn linear_cpu(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (out_dim, in_dim) = weight.dims2()?;
    let dims = xs.dims();
    if dims.last() != Some(&in_dim) || bias.dims() != [out_dim] {
        candle::bail!(
            "linear: input {:?}, weight {:?} and bias {:?} do not match",
            xs.shape(),
            weight.shape(),
            bias.shape()
        )
    }
    let rows = xs.elem_count() / in_dim.max(1);
    let op = LinearOp {
        rows,
        in_dim,
        out_dim,
    };
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("rank ≥ 1") = out_dim;
    let xs = xs.contiguous()?.reshape((rows, in_dim))?;
    let (weight, bias) = (weight.contiguous()?, bias.contiguous()?);
    let ys = if xs.track_op() || weight.track_op() || bias.track_op() {
        xs.apply_op3(&weight, &bias, op)?
    } else {
        xs.apply_op3_no_bwd(&weight, &bias, &op)?
    };
    ys.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::{Device, Module, Var};

    /// The op against candle's linear layer: the output bit for bit, and the three gradients,
    /// for batched and 2-d inputs, a transposed input, and row counts that are not multiples of
    /// a parallel job.
    #[test]
    fn op_equals_candles_linear_in_values_and_gradients() {
        let dev = Device::Cpu;
        for (lead, in_dim, out_dim) in [
            (vec![3usize, 7], 5usize, 9usize),
            (vec![600], 16, 3),
            (vec![2, 301], 33, 17),
        ] {
            for dtype in [DType::F64, DType::F32] {
                let var = |shape: &[usize]| {
                    let t = Tensor::randn(0f64, 1.0, shape, &dev).unwrap();
                    Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
                };
                let mut x_shape = lead.clone();
                x_shape.push(in_dim);
                let (xs, weight, bias) = (var(&x_shape), var(&[out_dim, in_dim]), var(&[out_dim]));
                let mut y_shape = lead.clone();
                y_shape.push(out_dim);
                let probe = Tensor::randn(0f64, 1.0, y_shape.as_slice(), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let reference = candle_nn::Linear::new(
                    weight.as_tensor().clone(),
                    Some(bias.as_tensor().clone()),
                );
                let fast = linear_cpu(&xs, &weight, &bias).unwrap();
                let slow = reference.forward(&xs).unwrap();
                let case = format!("{x_shape:?} → {out_dim} {dtype:?}");
                assert_eq!(max_abs_diff(&fast, &slow), 0.0, "{case}: output");
                let grads = |ys: &Tensor| {
                    (ys * &probe)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap()
                };
                let (gf, gs) = (grads(&fast), grads(&slow));
                let tol = if dtype == DType::F64 { 1e-11 } else { 2e-4 };
                for (name, v) in [("x", &xs), ("weight", &weight), ("bias", &bias)] {
                    let (a, e) = (gf.get(v).unwrap(), gs.get(v).unwrap());
                    assert!(max_abs_diff(a, e) < tol, "{case}: d{name}");
                }
            }
        }
        let xs = Tensor::randn(0f32, 1.0, (6, 4), &dev).unwrap().t().unwrap();
        let weight = Tensor::randn(0f32, 1.0, (3, 6), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        let reference = candle_nn::Linear::new(weight.clone(), Some(bias.clone()));
        let diff = max_abs_diff(
            &linear_cpu(&xs, &weight, &bias).unwrap(),
            &reference.forward(&xs.contiguous().unwrap()).unwrap(),
        );
        assert_eq!(diff, 0.0, "transposed input");
    }

    /// The bias gradient sums 8400 rows in parallel: its bits must not depend on the thread count,
    /// or a training seed would give another run on another machine.
    #[test]
    fn gradients_have_the_same_bits_on_any_thread_count() {
        let dev = Device::Cpu;
        let var = |shape: &[usize]| Var::randn(0f32, 1.0, shape, &dev).unwrap();
        let (xs, weight, bias) = (var(&[4, 2100, 8]), var(&[16, 8]), var(&[16]));
        let probe = Tensor::randn(0f32, 1.0, (4, 2100, 16), &dev).unwrap();
        let grads_on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let ys = linear_cpu(&xs, &weight, &bias).unwrap();
                let g = (ys * &probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                [&xs, &weight, &bias].map(|v| g.get(v).unwrap().flatten_all().unwrap())
            })
        };
        let one = grads_on(1);
        for threads in [2, 3, 7] {
            for (name, (a, b)) in ["x", "weight", "bias"]
                .iter()
                .zip(one.iter().zip(grads_on(threads)))
            {
                let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
                let same = a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "d{name}: {threads} threads differ from 1");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let xs = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
        let weight = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(linear_cpu(&xs, &weight, &bias).is_err());
        let weight = Tensor::zeros((3, 5), DType::F32, &dev).unwrap();
        assert!(linear_cpu(&xs, &weight, &Tensor::zeros(4, DType::F32, &dev).unwrap()).is_err());
    }
}
