//! AVX512-BF16 dot products (`vdpbf16ps`) for full convolutions and linear layers on CPUs
//! without AMX tiles (AMD Zen 4 and 5, Intel Cooper Lake): each f32 lane adds the products of
//! one bf16 pair, twice the multiplies of an f32 FMA per instruction.
//!
//! Written by hand for the same reason as `amx`: no maintained Rust crate multiplies bf16 on
//! these instructions (gemm 0.17 has f32, f64 and f16 kernels). The intrinsics are stable since
//! Rust 1.89.
//!
//! Convolution: a vector is 16 consecutive output pixels of one channel, so the input keeps the
//! channel-pair layout of `amx` (`[pairs][pixels]` words, 16 pixels of one pair are one load)
//! and each weight word is broadcast; a block is [`CHANNELS`] output channels × [`VECTORS`]
//! pixel tiles, 24 accumulators, stored straight into the NCHW output with the bias and SiLU.
//! Weights: `[m_blocks][taps][pairs][CHANNELS]` words.
//!
//! Linear: a vector is 16 consecutive output features of one row (the output is row-major), so
//! each input word is broadcast; a block is [`ROWS`] rows × [`COLUMN_VECTORS`] · 16 features.
//! Weights: `[n_blocks][pairs][COLUMN_VECTORS · 16]` words.

use std::sync::OnceLock;

use crate::activation::Epilogue;
use crate::amx::PixelTile;
use crate::bf16::SharedOut;

/// Output channels per convolution block.
pub(crate) const CHANNELS: usize = 8;
/// Pixel tiles (vectors of 16 pixels) per convolution block.
pub(crate) const VECTORS: usize = 3;
/// Input rows per linear block.
pub(crate) const ROWS: usize = 6;
/// Vectors of 16 output features per linear block.
pub(crate) const COLUMN_VECTORS: usize = 4;
/// Output features per linear block.
pub(crate) const COLUMNS: usize = 16 * COLUMN_VECTORS;
/// Input pairs summed per pass over the rows: `GEMM_CHUNK · COLUMNS` words of weights, 16 KiB.
const GEMM_CHUNK: usize = 64;

/// Whether this CPU has `vdpbf16ps` (and the rest of AVX-512 F).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// One image's convolution operands in the layouts of the module doc.
pub(crate) struct Operands<'a> {
    pub weights: &'a [u32],
    pub input: &'a [u32],
    /// Pixels between consecutive channel pairs of `input`.
    pub pair_stride: usize,
    /// Pixel offset of each tap, in the order of the weights' tap blocks.
    pub taps: &'a [usize],
    /// Channel pairs summed (`⌈C / 2⌉`).
    pub pairs: usize,
    /// Blocks of [`CHANNELS`] output channels.
    pub m_blocks: usize,
}

/// Where a convolution's blocks go: the `[C_out, plane]` output of one image.
pub(crate) struct Output<'a> {
    pub dst: SharedOut,
    pub c_out: usize,
    pub plane: usize,
    pub epilogue: &'a Epilogue,
}

impl Operands<'_> {
    /// Panics unless every read of `tiles` stays inside the operands' slices.
    fn check(&self, tiles: &[PixelTile], out: &Output) {
        assert!(self.pairs > 0 && self.m_blocks * CHANNELS >= out.c_out);
        assert!(out.epilogue.bias.len() >= out.c_out);
        assert!(self.weights.len() >= self.m_blocks * self.taps.len() * self.pairs * CHANNELS);
        let last_pixel = tiles.iter().map(|t| t.input).max().unwrap_or(0)
            + self.taps.iter().max().copied().unwrap_or(0)
            + 16;
        assert!(self.input.len() >= (self.pairs - 1) * self.pair_stride + last_pixel);
        assert!(tiles
            .iter()
            .all(|t| t.len <= 16 && t.output + t.len <= out.plane));
    }
}

/// Computes every output channel of `tiles` (in groups of [`VECTORS`]) into `out`, with the
/// bias and activation.
///
/// # Panics
/// If [`available`] is false, or a read would leave the operands.
///
/// # Safety
/// No other job writes the pixels of `tiles` in `out`, whose `dst` holds `c_out · plane` floats.
pub(crate) unsafe fn run(ops: &Operands, tiles: &[PixelTile], out: &Output) {
    assert!(available(), "AVX512-BF16 is not available on this CPU");
    ops.check(tiles, out);
    #[cfg(target_arch = "x86_64")]
    for group in tiles.chunks(VECTORS) {
        for m in 0..ops.m_blocks {
            // SAFETY: `check` bounded every read, the caller every write.
            unsafe { kernel::conv_block(ops, m, group, out) }
        }
    }
}

/// A linear layer's operands: `lhs` row-major `[rows][row_words]` words of two bf16 (rows a
/// multiple of [`ROWS`], `row_words ≥ pairs`), `rhs` packed as the module doc says.
pub(crate) struct GemmOperands<'a> {
    pub lhs: &'a [u32],
    pub row_words: usize,
    pub rhs: &'a [u32],
    pub pairs: usize,
    pub n_blocks: usize,
}

/// Rows `ROWS·r .. ROWS·r + ROWS` of `lhs · rhs + bias` for each `r` in `row_blocks` (those
/// below `rows`), every column below `out_dim`, into the row-major `[rows, out_dim]` output.
///
/// # Panics
/// If [`available`] is false, or a read would leave the operands.
///
/// # Safety
/// No other job writes these rows of `dst`, which holds `rows · out_dim` floats.
pub(crate) unsafe fn run_gemm(
    ops: &GemmOperands,
    row_blocks: std::ops::Range<usize>,
    (rows, out_dim): (usize, usize),
    bias: &[f32],
    dst: SharedOut,
) {
    assert!(available(), "AVX512-BF16 is not available on this CPU");
    assert!(ops.pairs > 0 && ops.row_words >= ops.pairs && ops.n_blocks * COLUMNS >= out_dim);
    assert!(ops.lhs.len() >= row_blocks.end * ROWS * ops.row_words);
    assert!(ops.rhs.len() >= ops.n_blocks * ops.pairs * COLUMNS);
    assert!(bias.len() >= out_dim && row_blocks.end <= rows.div_ceil(ROWS));
    #[cfg(target_arch = "x86_64")]
    // Column blocks and chunks of K outside: a chunk of one block's weights (16 KiB) stays in
    // L1 while the rows stream past; the partial sums wait in the output.
    for n in 0..ops.n_blocks {
        for k0 in (0..ops.pairs).step_by(GEMM_CHUNK) {
            let pairs = k0..(k0 + GEMM_CHUNK).min(ops.pairs);
            for r in row_blocks.clone() {
                // SAFETY: the asserts bounded every read, the caller every write.
                unsafe { kernel::gemm_block(ops, r, n, pairs.clone(), (rows, out_dim), bias, dst) }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{GemmOperands, Operands, Output, CHANNELS, COLUMNS, COLUMN_VECTORS, ROWS, VECTORS};
    use crate::activation::avx512::silu;
    use crate::amx::PixelTile;
    use crate::bf16::SharedOut;

    #[inline(always)]
    unsafe fn load(at: *const u32) -> __m512bh {
        std::mem::transmute(_mm512_loadu_si512(at.cast()))
    }

    #[inline(always)]
    unsafe fn broadcast(at: *const u32) -> __m512bh {
        std::mem::transmute(_mm512_set1_epi32(at.read() as i32))
    }

    /// Output channels `CHANNELS·m ..` of the pixel tiles `group` (≤ [`VECTORS`]; a short group
    /// repeats its last tile and drops the copies).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn conv_block(ops: &Operands, m: usize, group: &[PixelTile], out: &Output) {
        let last = group[group.len() - 1];
        let mut base = [ops.input.as_ptr(); VECTORS];
        for (v, b) in base.iter_mut().enumerate() {
            *b = b.add(group.get(v).unwrap_or(&last).input);
        }
        let mut acc = [[_mm512_setzero_ps(); VECTORS]; CHANNELS];
        let mut w = ops
            .weights
            .as_ptr()
            .add(m * ops.taps.len() * ops.pairs * CHANNELS);
        for &tap in ops.taps {
            let mut at = tap;
            for _ in 0..ops.pairs {
                let mut x = [load(base[0].add(at)); VECTORS];
                for v in 1..VECTORS {
                    x[v] = load(base[v].add(at));
                }
                for (c, acc) in acc.iter_mut().enumerate() {
                    let wc = broadcast(w.add(c));
                    for v in 0..VECTORS {
                        acc[v] = _mm512_dpbf16_ps(acc[v], x[v], wc);
                    }
                }
                w = w.add(CHANNELS);
                at += ops.pair_stride;
            }
        }
        // The epilogue reads a copy: indexing the accumulators themselves at run time makes
        // LLVM keep them on the stack, storing all 24 at every step.
        let mut sums = [[0f32; 16]; CHANNELS * VECTORS];
        for c in 0..CHANNELS {
            for v in 0..VECTORS {
                _mm512_storeu_ps(sums[c * VECTORS + v].as_mut_ptr(), acc[c][v]);
            }
        }
        for c in 0..CHANNELS {
            let channel = m * CHANNELS + c;
            if channel >= out.c_out {
                break;
            }
            let bias = _mm512_set1_ps(out.epilogue.bias[channel]);
            for v in 0..VECTORS {
                let Some(tile) = group.get(v) else { break };
                let y = _mm512_add_ps(_mm512_loadu_ps(sums[c * VECTORS + v].as_ptr()), bias);
                let y = if out.epilogue.silu { silu(y) } else { y };
                let mask = ((1u32 << tile.len) - 1) as u16;
                let dst = out.dst.0.add(channel * out.plane + tile.output);
                _mm512_mask_storeu_ps(dst, mask, y);
            }
        }
    }

    /// Rows `ROWS·r ..` and columns `COLUMNS·n ..` of the product, plus the bias.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn gemm_block(
        ops: &GemmOperands,
        r: usize,
        n: usize,
        pairs: std::ops::Range<usize>,
        (rows, out_dim): (usize, usize),
        bias: &[f32],
        dst: SharedOut,
    ) {
        let n0 = n * COLUMNS;
        let mut acc = [[_mm512_setzero_ps(); COLUMN_VECTORS]; ROWS];
        if pairs.start > 0 {
            for (i, acc) in acc.iter_mut().enumerate() {
                let row = r * ROWS + i;
                if row >= rows {
                    break;
                }
                for (v, sum) in acc.iter_mut().enumerate() {
                    let col = n0 + 16 * v;
                    if col >= out_dim {
                        break;
                    }
                    let mask = ((1u32 << (out_dim - col).min(16)) - 1) as u16;
                    *sum = _mm512_maskz_loadu_ps(mask, dst.0.add(row * out_dim + col));
                }
            }
        }
        let lhs = ops.lhs.as_ptr().add(r * ROWS * ops.row_words);
        let mut rhs = ops
            .rhs
            .as_ptr()
            .add((n * ops.pairs + pairs.start) * COLUMNS);
        for k in pairs.clone() {
            let mut b = [load(rhs); COLUMN_VECTORS];
            for (v, b) in b.iter_mut().enumerate().skip(1) {
                *b = load(rhs.add(16 * v));
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = broadcast(lhs.add(i * ops.row_words + k));
                for v in 0..COLUMN_VECTORS {
                    acc[v] = _mm512_dpbf16_ps(acc[v], a, b[v]);
                }
            }
            rhs = rhs.add(COLUMNS);
        }
        let done = pairs.end == ops.pairs;
        for (i, acc) in acc.iter().enumerate() {
            let row = r * ROWS + i;
            if row >= rows {
                break;
            }
            for (v, &sum) in acc.iter().enumerate() {
                let col = n0 + 16 * v;
                if col >= out_dim {
                    break;
                }
                let len = (out_dim - col).min(16);
                let mask = ((1u32 << len) - 1) as u16;
                let dst = dst.0.add(row * out_dim + col);
                let y = match done {
                    true => _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col))),
                    false => sum,
                };
                _mm512_mask_storeu_ps(dst, mask, y);
            }
        }
    }
}
