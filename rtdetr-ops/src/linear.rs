//! `nn.Linear`: on the CPU in f32 and f64 one op with its own backward (`linear_cpu`); in bf16
//! evaluation ([`crate::with_precision`]) on a CPU with AMX or AVX512-BF16 the product runs on
//! bf16 tiles or vectors (the input converted row by row, the weight packed once and kept, the
//! bias added as each block leaves the kernel); candle's layer elsewhere.

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::amx::{self, Block, GemmOperands, TILE_DEPTH, TILE_ROWS};
use crate::bf16::{bf16_bits, pair_word, Bf16Kernel, PackedLayout, SharedOut};
use crate::dpbf16::{self, COLUMNS, ROWS};

/// `y = x Wᵀ + b` with the state_dict keys `weight` and `bias`.
#[derive(Clone, Debug)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    /// `weight: [out, in]`, `bias: [out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self(candle_nn::Linear::new(weight, bias))
    }

    /// `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }

    /// `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.0.bias()
    }
}

/// `nn.Linear(in_dim, out_dim)` with PyTorch's default initialisation, as `candle_nn::linear`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear(candle_nn::linear(in_dim, out_dim, vb)?))
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let bf16 = crate::precision::precision() == crate::Precision::Bf16
            && xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && self.weight().dtype() == DType::F32
            && xs.rank() >= 2;
        let describe = || {
            let (out_dim, in_dim) = self.weight().dims2().unwrap_or_default();
            let rows = xs.elem_count() / in_dim.max(1);
            (
                "linear".to_string(),
                format!("[{rows}, {in_dim}] → [{out_dim}]"),
                (2 * rows * in_dim * out_dim) as u64,
            )
        };
        crate::profile::timed(describe, || match (bf16, self.bias()) {
            (true, _) => self.forward_bf16(xs, Bf16Kernel::native()),
            (false, Some(bias)) if crate::linear_cpu::runs(xs, self.weight(), bias) => {
                crate::linear_cpu::linear_cpu(xs, self.weight(), bias)
            }
            (false, _) => self.0.forward(xs),
        })
    }
}

impl Linear {
    /// The bf16 product on `kernel`; without bf16 instructions candle's f32 product (rounding
    /// the operands alone would gain nothing).
    fn forward_bf16(&self, xs: &Tensor, kernel: Bf16Kernel) -> Result<Tensor> {
        if kernel == Bf16Kernel::Rounded {
            return self.0.forward(xs);
        }
        let (out_dim, in_dim) = self.weight().dims2()?;
        let dims = xs.dims();
        if dims[dims.len() - 1] != in_dim {
            candle::bail!(
                "linear: input {:?} for weight {:?}",
                xs.shape(),
                self.weight().shape()
            )
        }
        let rows = xs.elem_count() / in_dim;
        let bias = match self.bias() {
            Some(b) => b.to_dtype(DType::F32)?.to_vec1()?,
            None => vec![0.0; out_dim],
        };
        let op = LinearBf16 {
            kernel,
            rows,
            in_dim,
            out_dim,
            bias,
            weight_id: self.weight().id(),
        };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank ≥ 2") = out_dim;
        xs.contiguous()?
            .reshape((rows, in_dim))?
            .apply_op2_no_bwd(&self.weight().contiguous()?, &op)?
            .reshape(shape)
    }
}

struct LinearBf16 {
    /// [`Bf16Kernel::Tiles`] or [`Bf16Kernel::Vectors`].
    kernel: Bf16Kernel,
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    bias: Vec<f32>,
    weight_id: candle::TensorId,
}

impl LinearBf16 {
    fn k_blocks(&self) -> usize {
        self.in_dim.div_ceil(TILE_DEPTH)
    }

    fn n_blocks(&self) -> usize {
        self.out_dim.div_ceil(2 * TILE_ROWS) * 2
    }

    fn pairs(&self) -> usize {
        self.in_dim.div_ceil(2)
    }

    /// `W [out, in]` → `[n_blocks][pairs][COLUMNS]` words of `(W[n][k], W[n][k+1])` (the layout
    /// of [`dpbf16`]), zeros past `out` and `in`.
    fn pack_vectors(&self, weight: &[f32]) -> Vec<u32> {
        let pairs = self.pairs();
        let mut packed = vec![0u32; self.out_dim.div_ceil(COLUMNS) * pairs * COLUMNS];
        packed
            .par_chunks_mut(pairs * COLUMNS)
            .enumerate()
            .for_each(|(nb, dst)| {
                for col in 0..COLUMNS {
                    let n = nb * COLUMNS + col;
                    let Some(row) = weight.get(n * self.in_dim..(n + 1) * self.in_dim) else {
                        break;
                    };
                    for (pair, w) in row.chunks(2).enumerate() {
                        dst[pair * COLUMNS + col] =
                            pair_word(w[0], w.get(1).copied().unwrap_or(0.0));
                    }
                }
            });
        packed
    }

    /// `y = x Wᵀ + b` on AVX512-BF16 vectors.
    fn forward_vectors(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        let layout = PackedLayout {
            kernel: "linear-vectors",
            shape: [self.out_dim, self.in_dim, 0, 0],
        };
        let rhs = crate::bf16::packed(self.weight_id, layout, || self.pack_vectors(weight));
        let row_words = self.pairs();
        let row_blocks = self.rows.div_ceil(ROWS);
        let mut scratch = crate::huge::scratch(row_blocks * ROWS * row_words);
        let len = self.rows * self.out_dim;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SharedOut(out.as_mut_ptr());
        // Each job converts its own rows, so a call wakes the threads once; a layer of a few
        // million multiplies (the decoder's 300 queries) is not split finer than ~4 MFLOP.
        let flops = 2 * self.rows * self.in_dim * self.out_dim;
        let jobs = (4 * candle::utils::get_num_threads())
            .min(flops >> 22)
            .max(1);
        let per_job = row_blocks.div_ceil(jobs);
        let n_blocks = self.out_dim.div_ceil(COLUMNS);
        scratch
            .as_mut_slice()
            .par_chunks_mut(per_job * ROWS * row_words)
            .enumerate()
            .for_each(|(job, lhs)| {
                let first = job * per_job * ROWS;
                let rows = (self.rows - first).min(per_job * ROWS);
                let xs = &xs[first * self.in_dim..][..rows * self.in_dim];
                for (dst, x) in lhs.chunks_mut(row_words).zip(xs.chunks(self.in_dim)) {
                    convert_row(dst, x);
                }
                let ops = dpbf16::GemmOperands {
                    lhs,
                    row_words,
                    rhs: &rhs,
                    pairs: self.pairs(),
                    n_blocks,
                };
                // SAFETY: rows `first..first + rows` of the [rows, out_dim] output are this
                // job's alone.
                unsafe {
                    let dst = dst.add(first * self.out_dim);
                    let shape = (rows, self.out_dim);
                    dpbf16::run_gemm(&ops, 0..rows.div_ceil(ROWS), shape, &self.bias, dst)
                }
            });
        crate::huge::keep(scratch);
        // SAFETY: the jobs cover every row, and each row every column.
        unsafe { out.set_len(len) };
        out
    }

    /// `W [out, in]` → `[n_blocks][k_blocks][16 pairs][16 columns]` words of `(W[n][k], W[n][k+1])`,
    /// zeros past `out` and `in`.
    fn pack(&self, weight: &[f32]) -> Vec<u32> {
        let (k_blocks, tile) = (self.k_blocks(), TILE_ROWS * TILE_ROWS);
        let mut packed = vec![0u32; self.n_blocks() * k_blocks * tile];
        packed
            .par_chunks_mut(k_blocks * tile)
            .enumerate()
            .for_each(|(nb, dst)| {
                for col in 0..TILE_ROWS {
                    let n = nb * TILE_ROWS + col;
                    let Some(row) = weight.get(n * self.in_dim..(n + 1) * self.in_dim) else {
                        break;
                    };
                    for (pair, w) in row.chunks(2).enumerate() {
                        let (kb, p) = (pair / TILE_ROWS, pair % TILE_ROWS);
                        dst[kb * tile + p * TILE_ROWS + col] =
                            pair_word(w[0], w.get(1).copied().unwrap_or(0.0));
                    }
                }
            });
        packed
    }

    fn forward(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        if self.kernel != Bf16Kernel::Tiles {
            return self.forward_vectors(xs, weight);
        }
        let layout = PackedLayout {
            kernel: "linear-tiles",
            shape: [self.out_dim, self.in_dim, 0, 0],
        };
        let rhs = crate::bf16::packed(self.weight_id, layout, || self.pack(weight));
        let row_words = self.k_blocks() * TILE_ROWS;
        let row_blocks = self.rows.div_ceil(2 * TILE_ROWS);
        let mut scratch = crate::huge::scratch(row_blocks * 2 * TILE_ROWS * row_words);
        let lhs = scratch.as_mut_slice();
        lhs.par_chunks_mut(row_words)
            .zip(xs.par_chunks(self.in_dim))
            .for_each(|(dst, x)| convert_row(dst, x));
        let ops = GemmOperands {
            lhs,
            rhs: &rhs,
            k_blocks: self.k_blocks(),
            n_blocks: self.n_blocks(),
        };
        // Every element is written once by `emit`, so the output is not zeroed first.
        let len = self.rows * self.out_dim;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SharedOut(out.as_mut_ptr());
        let threads = candle::utils::get_num_threads();
        let per_job = row_blocks.div_ceil(4 * threads).max(1);
        (0..row_blocks.div_ceil(per_job))
            .into_par_iter()
            .for_each(|job| {
                let blocks = job * per_job..((job + 1) * per_job).min(row_blocks);
                amx::run_gemm(&ops, blocks, |r0, n0, block| {
                    // SAFETY: each job writes only its own rows of the output.
                    unsafe { self.emit(r0, n0, block, dst) }
                })
            });
        crate::huge::keep(scratch);
        // SAFETY: the row blocks cover every row and each block every column below `out_dim`,
        // so `emit` initialised all `len` elements.
        unsafe { out.set_len(len) };
        out
    }

    /// The block's rows below `rows` and columns below `out_dim`, plus the bias, into place.
    ///
    /// # Safety
    /// Rows `r0..r0 + 32` of the output are this job's alone.
    unsafe fn emit(&self, r0: usize, n0: usize, block: &Block, dst: SharedOut) {
        let cols = (self.out_dim - n0).min(2 * TILE_ROWS);
        let bias = &self.bias[n0..][..cols];
        for (i, src) in block.chunks_exact(2 * TILE_ROWS).enumerate() {
            let r = r0 + i;
            if r >= self.rows {
                break;
            }
            let row = std::slice::from_raw_parts_mut(dst.0.add(r * self.out_dim + n0), cols);
            for ((y, &v), &b) in row.iter_mut().zip(src).zip(bias) {
                *y = v + b;
            }
        }
    }
}

/// One input row into words of two bf16, zeros past its end (the K padding must be zero: it
/// meets the weight's zero padding, and stale words could hold infinities).
fn convert_row(dst: &mut [u32], x: &[f32]) {
    assert!(x.len() <= 2 * dst.len());
    if cfg!(target_endian = "big") {
        let mut words = dst.iter_mut();
        for (d, w) in words.by_ref().zip(x.chunks(2)) {
            *d = pair_word(w[0], w.get(1).copied().unwrap_or(0.0));
        }
        return words.for_each(|d| *d = 0);
    }
    // SAFETY: two u16 halves per u32 word (little-endian: the first is the low half), within
    // `dst`'s bytes.
    let halves =
        unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u16>(), 2 * dst.len()) };
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { convert_halves_avx512(halves, x) };
    }
    convert_halves(halves, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn convert_halves_avx512(halves: &mut [u16], x: &[f32]) {
    convert_halves(halves, x)
}

#[inline(always)]
fn convert_halves(halves: &mut [u16], x: &[f32]) {
    let (values, padding) = halves.split_at_mut(x.len());
    for (h, &v) in values.iter_mut().zip(x) {
        *h = bf16_bits(v);
    }
    padding.fill(0);
}

impl CustomOp2 for LinearBf16 {
    fn name(&self) -> &'static str {
        "linear-bf16"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok((
                CpuStorage::F32(self.forward(
                    crate::cpu::cpu_slice(s1, l1)?,
                    crate::cpu::cpu_slice(s2, l2)?,
                )),
                (self.rows, self.out_dim).into(),
            )),
            _ => candle::bail!(
                "linear-bf16: f32 operands only, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// Against the product of the bf16-rounded operands in f64: rows and widths not multiples
    /// of 32 (or odd), a 3-d input, with and without bias; each case twice (the second finds the
    /// packed weight); each kernel this CPU runs (the fallback is candle's f32 linear, to f32
    /// accuracy).
    #[test]
    fn equals_the_bf16_rounded_product() {
        let dev = Device::Cpu;
        for (shape, in_dim, out_dim, bias) in [
            (vec![7, 5], 5, 3, true),
            (vec![2, 45, 33], 33, 70, true),
            (vec![100, 256], 256, 256, false),
            (vec![1, 64], 64, 1, true),
        ] {
            let xs = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.2, (out_dim, in_dim), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1., out_dim, &dev).unwrap());
            let layer = Linear::new(w.clone(), b.clone());
            for kernel in Bf16Kernel::runnable() {
                let f64 = |t: &Tensor| match kernel != Bf16Kernel::Rounded {
                    true => t
                        .to_dtype(DType::BF16)
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap(),
                    false => t.to_dtype(DType::F64).unwrap(),
                };
                let (xs64, w64) = (f64(&xs), f64(&w));
                let want = xs64.broadcast_matmul(&w64.t().unwrap()).unwrap();
                let want = match &b {
                    Some(b) => want
                        .broadcast_add(&b.to_dtype(DType::F64).unwrap())
                        .unwrap(),
                    None => want,
                };
                for _ in 0..2 {
                    let got = layer.forward_bf16(&xs, kernel).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let diff =
                        crate::testing::max_abs_diff(&got.to_dtype(DType::F64).unwrap(), &want);
                    assert!(diff < 2e-5, "{kernel:?} {shape:?} → {out_dim}: {diff}");
                }
            }
        }
    }
}
