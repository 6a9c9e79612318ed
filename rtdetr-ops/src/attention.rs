//! Scaled dot-product attention `softmax(q·kᵀ/√d, blocked → −∞)·v` as one CPU op whose backward
//! recomputes the probabilities from `q` and `k`.
//!
//! Through candle tensors a training pass keeps six `[B·heads, Lq, Lk]` intermediates (scores,
//! scaled, masked, and the softmax's shifted, exponentiated and normalised values) until backward
//! ends: for the decoder's ~500 queries (300 + denoising) at batch 4 that is ~190 MB per layer,
//! more than the rest of the layer. Here nothing of that size outlives the op; backward redoes
//! one `[Lq, d]·[d, Lk]` product per head to get the probabilities back.

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType, D};
use rayon::prelude::*;

use crate::cpu::{cpu_slice, product};

/// The element types the op runs in, with their softmax rows: f32's are vectorised
/// ([`crate::softmax_rows`]).
trait Real: WithDType {
    /// `row ← softmax(row / root)`, `blocked` entries at −∞.
    fn softmax_row(row: &mut [Self], blocked: Option<&[bool]>, root: Self);
    /// `g ← p·(g − p·g)/root`.
    fn softmax_grad_row(p: &[Self], g: &mut [Self], root: Self);
}

impl Real for f32 {
    fn softmax_row(row: &mut [f32], blocked: Option<&[bool]>, root: f32) {
        crate::softmax_rows::softmax_row(row, blocked, root)
    }

    fn softmax_grad_row(p: &[f32], g: &mut [f32], root: f32) {
        crate::softmax_rows::softmax_grad_row(p, g, root)
    }
}

impl Real for f64 {
    fn softmax_row(row: &mut [f64], blocked: Option<&[bool]>, root: f64) {
        let mut max = f64::NEG_INFINITY;
        for (j, s) in row.iter_mut().enumerate() {
            *s = match blocked {
                Some(b) if b[j] => f64::NEG_INFINITY,
                _ => *s / root,
            };
            max = max.max(*s);
        }
        let mut sum = 0.0;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        row.iter_mut().for_each(|s| *s /= sum);
    }

    fn softmax_grad_row(p: &[f64], g: &mut [f64], root: f64) {
        let dot: f64 = p.iter().zip(g.iter()).map(|(p, g)| p * g).sum();
        for (&p, g) in p.iter().zip(g.iter_mut()) {
            *g = p * (*g - dot) / root;
        }
    }
}

/// One head's operands: `[L, d]` row-major slices.
struct Head<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
}

/// [`product`] on the calling thread: the heads already run in parallel.
///
/// # Safety
/// As [`product`].
#[allow(clippy::too_many_arguments)]
unsafe fn head_product<T: 'static>(
    dims: (usize, usize, usize),
    dst: &mut [T],
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    one: T,
    zero: T,
) {
    let serial = gemm::Parallelism::None;
    product(
        dims,
        dst,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        one,
        zero,
        serial,
    )
}

struct Attention {
    /// `[Lq, Lk]`, `true` where a query may not attend to a key.
    blocked: Option<Vec<bool>>,
}

impl Attention {
    /// The probabilities `softmax(q·kᵀ/√d, blocked → −∞)` of one head into `p` (`[Lq, Lk]`),
    /// in the order candle's softmax takes: shift by the row maximum, exponentiate, divide by
    /// the row sum.
    fn probabilities<T: Real>(&self, head: &Head<T>, d: usize, p: &mut [T]) {
        let (lq, lk) = (head.q.len() / d, head.k.len() / d);
        let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
        // SAFETY: q is lq × d and k lk × d row-major; kᵀ is read through its strides.
        unsafe { head_product((lq, lk, d), p, head.q, (d, 1), head.k, (1, d), one, zero) };
        let root = T::from_f64((d as f64).sqrt());
        for (i, row) in p.chunks_exact_mut(lk).enumerate() {
            let blocked = self.blocked.as_deref().map(|b| &b[i * lk..][..lk]);
            T::softmax_row(row, blocked, root);
        }
    }

    /// `[B, H, Lq, d]` output of all heads, heads in parallel.
    fn forward<T: Real>(&self, q: &[T], k: &[T], v: &[T], dims: Dims) -> Vec<T> {
        let Dims { lq, lk, d, .. } = dims;
        let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
        let mut out = vec![zero; q.len()];
        out.par_chunks_mut(lq * d).enumerate().for_each(|(h, out)| {
            let head = dims.head(h, q, k, v);
            let mut p = vec![zero; lq * lk];
            self.probabilities(&head, d, &mut p);
            // SAFETY: p is lq × lk and v lk × d, row-major.
            unsafe { head_product((lq, d, lk), out, &p, (lk, 1), head.v, (d, 1), one, zero) };
        });
        out
    }

    /// `(grad_q, grad_k, grad_v)` from the output gradient `grad` (`[B, H, Lq, d]`).
    fn backward<T: Real>(
        &self,
        (q, k, v): (&[T], &[T], &[T]),
        grad: &[T],
        dims: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims { lq, lk, d, .. } = dims;
        let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
        let (mut grad_q, mut grad_k, mut grad_v) = (
            vec![zero; q.len()],
            vec![zero; k.len()],
            vec![zero; v.len()],
        );
        let root = T::from_f64((d as f64).sqrt());
        grad_q
            .par_chunks_mut(lq * d)
            .zip(grad_k.par_chunks_mut(lk * d))
            .zip(grad_v.par_chunks_mut(lk * d))
            .enumerate()
            .for_each(|(h, ((grad_q, grad_k), grad_v))| {
                let head = dims.head(h, q, k, v);
                let grad = &grad[h * lq * d..][..lq * d];
                let mut p = vec![zero; lq * lk];
                let mut grad_s = vec![zero; lq * lk];
                self.probabilities(&head, d, &mut p);
                // SAFETY: every operand is row-major at the sizes given (p: lq × lk, grad:
                // lq × d, q: lq × d, k and v: lk × d); transposes are read through strides.
                unsafe {
                    // grad_v (lk × d) = pᵀ · grad
                    head_product((lk, d, lq), grad_v, &p, (1, lk), grad, (d, 1), one, zero);
                    // grad_p (lq × lk) = grad · vᵀ
                    head_product(
                        (lq, lk, d),
                        &mut grad_s,
                        grad,
                        (d, 1),
                        head.v,
                        (1, d),
                        one,
                        zero,
                    );
                }
                // Softmax backward, then through the division by √d.
                for (p, g) in p.chunks_exact(lk).zip(grad_s.chunks_exact_mut(lk)) {
                    T::softmax_grad_row(p, g, root);
                }
                // SAFETY: as above; grad_s is lq × lk.
                unsafe {
                    // grad_q (lq × d) = grad_s · k
                    head_product(
                        (lq, d, lk),
                        grad_q,
                        &grad_s,
                        (lk, 1),
                        head.k,
                        (d, 1),
                        one,
                        zero,
                    );
                    // grad_k (lk × d) = grad_sᵀ · q
                    head_product(
                        (lk, d, lq),
                        grad_k,
                        &grad_s,
                        (1, lk),
                        head.q,
                        (d, 1),
                        one,
                        zero,
                    );
                }
            });
        (grad_q, grad_k, grad_v)
    }
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    lq: usize,
    lk: usize,
    d: usize,
}

impl Dims {
    fn head<'a, T>(&self, h: usize, q: &'a [T], k: &'a [T], v: &'a [T]) -> Head<'a, T> {
        let (lq, lk, d) = (self.lq, self.lk, self.d);
        Head {
            q: &q[h * lq * d..][..lq * d],
            k: &k[h * lk * d..][..lk * d],
            v: &v[h * lk * d..][..lk * d],
        }
    }
}

fn dims(q: &Layout, k: &Layout) -> Result<Dims> {
    let (_, _, lq, d) = q.shape().dims4()?;
    let lk = k.shape().dims4()?.2;
    Ok(Dims { lq, lk, d })
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
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
        let dims = dims(l1, l2)?;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let [q, k, v] = [(s1, l1), (s2, l2), (s3, l3)].map(|(s, l)| cpu_slice(s, l));
                CpuStorage::F32(self.forward::<f32>(q?, k?, v?, dims))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let [q, k, v] = [(s1, l1), (s2, l2), (s3, l3)].map(|(s, l)| cpu_slice(s, l));
                CpuStorage::F64(self.forward::<f64>(q?, k?, v?, dims))
            }
            _ => candle::bail!(
                "attention: f32 or f64 operands of one dtype, got {:?}, {:?} and {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dims, dtype) = (dims(q.layout(), k.layout())?, q.dtype());
        let grads = match dtype {
            DType::F32 => self.backward_of::<f32>(q, k, v, &grad, dims)?,
            DType::F64 => self.backward_of::<f64>(q, k, v, &grad, dims)?,
            _ => candle::bail!("attention: f32 or f64 operands, got {dtype:?}"),
        };
        let [gq, gk, gv] = grads;
        Ok((Some(gq), Some(gk), Some(gv)))
    }
}

impl Attention {
    fn backward_of<T: Real>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grad: &Tensor,
        dims: Dims,
    ) -> Result<[Tensor; 3]> {
        let (q_, k_, v_) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let [(sq, lq), (sk, lk), (sv, lv), (sg, lg)] =
            [&q_, &k_, &v_, grad].map(|t| t.storage_and_layout());
        let (gq, gk, gv) = match (&*sq, &*sk, &*sv, &*sg) {
            (Storage::Cpu(sq), Storage::Cpu(sk), Storage::Cpu(sv), Storage::Cpu(sg)) => {
                let (q, k, v) = (cpu_slice(sq, lq)?, cpu_slice(sk, lk)?, cpu_slice(sv, lv)?);
                self.backward::<T>((q, k, v), cpu_slice(sg, lg)?, dims)
            }
            _ => candle::bail!("attention: the op's backward runs on the CPU only"),
        };
        let dev = q.device();
        Ok([
            Tensor::from_vec(gq, q.shape(), dev)?,
            Tensor::from_vec(gk, k.shape(), dev)?,
            Tensor::from_vec(gv, v.shape(), dev)?,
        ])
    }
}

/// Scaled dot-product attention of every head, `softmax(q·kᵀ/√d)·v` with the entries where
/// `blocked` is nonzero set to −∞ before the softmax (`nn.MultiheadAttention`'s boolean
/// `attn_mask`). One op with its own backward on the CPU in f32 and f64; candle ops elsewhere.
///
/// # Shapes
/// `q: [B, H, Lq, d]`, `k, v: [B, H, Lk, d]`, `blocked: [Lq, Lk]` → `[B, H, Lq, d]`
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, blocked: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, lq, d) = q.dims4()?;
    let lk = k.dim(2)?;
    if k.dims4()? != (b, h, lk, d) || v.dims4()? != (b, h, lk, d) {
        candle::bail!(
            "attention: q {:?}, k {:?} and v {:?} do not match",
            q.shape(),
            k.shape(),
            v.shape()
        )
    }
    if let Some(blocked) = blocked {
        if blocked.dims() != [lq, lk] {
            candle::bail!(
                "attention: mask {:?} for {lq} queries and {lk} keys",
                blocked.shape()
            )
        }
    }
    let runs = q.device().is_cpu() && matches!(q.dtype(), DType::F32 | DType::F64);
    if !runs {
        return composite(q, k, v, blocked);
    }
    let blocked = match blocked {
        Some(mask) => Some(
            mask.flatten_all()?
                .ne(0u8)?
                .to_vec1::<u8>()?
                .into_iter()
                .map(|m| m != 0)
                .collect(),
        ),
        None => None,
    };
    let op = Attention { blocked };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    if q.track_op() || k.track_op() || v.track_op() {
        q.apply_op3(&k, &v, op)
    } else {
        q.apply_op3_no_bwd(&k, &v, &op)
    }
}

/// [`attention`] from candle ops.
fn composite(q: &Tensor, k: &Tensor, v: &Tensor, blocked: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let mut scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    if let Some(blocked) = blocked {
        let (lq, lk) = blocked.dims2()?;
        let neg_inf = Tensor::full(f32::NEG_INFINITY, (lq, lk), q.device())?.to_dtype(q.dtype())?;
        let mask = blocked.where_cond(&neg_inf, &neg_inf.zeros_like()?)?;
        scores = scores.broadcast_add(&mask)?;
    }
    let attn = if scores.track_op() {
        candle_nn::ops::softmax(&scores, D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?
    };
    attn.matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use candle::{Device, Var};

    /// The op against the candle composite: outputs and the three gradients, with and without
    /// a mask, in f64 (tight) and f32, for head sizes and lengths that are not multiples of the
    /// vector width, and more keys than queries.
    #[test]
    fn op_equals_the_composite_in_values_and_gradients() {
        let dev = Device::Cpu;
        for (b, h, lq, lk, d) in [(2, 3, 7, 7, 5), (1, 2, 5, 19, 8), (3, 1, 33, 17, 3)] {
            let blocked = Tensor::rand(0f32, 1.0, (lq, lk), &dev)
                .unwrap()
                .gt(0.7)
                .unwrap();
            // Every query keeps its first key, so that no row is blocked entirely.
            let keep = Tensor::arange(0u32, lk as u32, &dev)
                .unwrap()
                .ne(0u32)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .broadcast_as((lq, lk))
                .unwrap();
            let blocked = (blocked * keep).unwrap();
            for mask in [None, Some(&blocked)] {
                for (dtype, tol_value, tol_grad) in
                    [(DType::F64, 1e-12, 1e-11), (DType::F32, 2e-6, 1e-5)]
                {
                    let make = |l: usize, mean: f64| {
                        Var::from_tensor(
                            &Tensor::randn(mean, 1.5, (b, h, l, d), &dev)
                                .unwrap()
                                .to_dtype(dtype)
                                .unwrap(),
                        )
                        .unwrap()
                    };
                    let (q, k, v) = (make(lq, 0.2), make(lk, -0.1), make(lk, 0.0));
                    let probe = Tensor::randn(0f64, 1.0, (b, h, lq, d), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let fast = attention(&q, &k, &v, mask).unwrap();
                    let slow = composite(&q, &k, &v, mask).unwrap();
                    let case = format!("{:?} {dtype:?} mask {}", (b, h, lq, lk, d), mask.is_some());
                    assert!(max_abs_diff(&fast, &slow) < tol_value, "{case}: output");
                    let grads = |ys: &Tensor| {
                        (ys * &probe)
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .backward()
                            .unwrap()
                    };
                    let (gf, gs) = (grads(&fast), grads(&slow));
                    for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                        let (a, e) = (gf.get(var).unwrap(), gs.get(var).unwrap());
                        assert!(max_abs_diff(a, e) < tol_grad, "{case}: d{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 5, 4), DType::F32, &dev).unwrap();
        assert!(attention(&q, &k, &q, None).is_err());
        let mask = Tensor::zeros((3, 4), DType::U8, &dev).unwrap();
        assert!(attention(&q, &k, &k, Some(&mask)).is_err());
    }
}
