//! Intel AMX bf16 tiles (`tdpbf16ps`) for full convolutions: the products of bf16 operands
//! summed in f32, 16 output channels × 16 pixels per tile, four tiles at a time.
//!
//! Written by hand: no maintained Rust crate multiplies on AMX (gemm 0.17 has f32, f64 and f16
//! kernels; oneDNN has no maintained Rust binding), and the AMX intrinsics are unstable, so the
//! tile instructions are inline assembly (stable). Linux hands out the tile registers only after
//! an `arch_prctl(ARCH_REQ_XCOMP_PERM)` request, made once by [`available`].
//!
//! Layouts (`u16` = bf16 bits):
//! - weights: `[m_blocks][taps][c_blocks][16 rows][32 channels]`, one 1 KiB tile per block;
//! - input: `[c_blocks · 16 channel pairs][pixels]` words of two bf16 (VNNI), so that 16 pairs
//!   of 16 consecutive pixels are one tile read with the pair stride as its row stride;
//! - a tap is a pixel offset into the (padded) input, a pixel tile the input pixel of its first
//!   output pixel's window: the convolution is summed without unfolding anything.

use std::sync::OnceLock;

/// Output channels and input channels per tile.
pub(crate) const TILE_ROWS: usize = 16;
/// Input channels per tile (bf16 values per tile row).
pub(crate) const TILE_DEPTH: usize = 32;

/// Whether this CPU and OS run AMX bf16 tiles; asks Linux for the tile state on the first call.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    let (amx_bf16, amx_tile) = (edx >> 22 & 1 == 1, edx >> 24 & 1 == 1);
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a permission request; it touches no memory of this process.
    amx_bf16
        && amx_tile
        && unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        } == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// 16 output pixels that one tile computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PixelTile {
    /// Input pixel (in the padded plane) under the first output pixel's first tap.
    pub input: usize,
    /// First output pixel in the output plane.
    pub output: usize,
    /// Output pixels that are real (≤ 16); the rest of the tile is computed and dropped.
    pub len: usize,
}

/// One image's operands in the tile layouts of the module doc.
pub(crate) struct Operands<'a> {
    pub weights: &'a [u32],
    pub input: &'a [u32],
    /// Pixels between consecutive channel pairs of `input`.
    pub pair_stride: usize,
    /// Pixel offset of each tap, in the order of the weights' tap blocks.
    pub taps: &'a [usize],
    pub c_blocks: usize,
    /// Blocks of 16 output channels; even.
    pub m_blocks: usize,
}

impl Operands<'_> {
    /// Panics unless every tile read of `tiles` stays inside the operands' slices.
    fn check(&self, tiles: &[PixelTile]) {
        let tile = TILE_ROWS * TILE_ROWS;
        assert!(self.m_blocks.is_multiple_of(2) && self.c_blocks > 0);
        assert!(self.weights.len() >= self.m_blocks * self.taps.len() * self.c_blocks * tile);
        let last_pixel = tiles.iter().map(|t| t.input).max().unwrap_or(0)
            + self.taps.iter().max().copied().unwrap_or(0)
            + TILE_ROWS;
        let pairs = self.c_blocks * TILE_ROWS;
        assert!(self.input.len() >= (pairs - 1) * self.pair_stride + last_pixel);
    }
}

/// The 32 × 32 block that four tiles compute: rows are output channels `m0..m0 + 32`, columns
/// the 16 pixels of the first pixel tile then the 16 of the second.
pub(crate) type Block = [f32; 32 * 32];

/// Computes every output channel of `tiles` (taken in pairs; an odd last tile is computed twice)
/// and hands each 32 × 32 block to `emit(m0, pair, block)`.
///
/// # Panics
/// If [`available`] is false, or a tile read would leave the operands.
pub(crate) fn run(
    ops: &Operands,
    tiles: &[PixelTile],
    mut emit: impl FnMut(usize, &[PixelTile], &Block),
) {
    assert!(available(), "AMX tiles are not available on this CPU");
    ops.check(tiles);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AMX is available (and permitted), and `check` bounded every tile read.
    unsafe {
        kernel::configure();
        let mut block: Block = [0.0; 32 * 32];
        for m in (0..ops.m_blocks).step_by(2) {
            for pair in tiles.chunks(2) {
                let second = pair.get(1).unwrap_or(&pair[0]);
                kernel::block(ops, m, pair[0].input, second.input, &mut block);
                emit(m * TILE_ROWS, pair, &block);
            }
        }
        kernel::release();
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = &mut emit;
}

/// A matrix product on tiles: `lhs` row-major `[rows][k_blocks · 16]` words of two bf16 (rows
/// a multiple of 32), times `rhs` packed `[n_blocks][k_blocks][16 pairs][16 columns]` words
/// (`n_blocks` even).
pub(crate) struct GemmOperands<'a> {
    pub lhs: &'a [u32],
    pub rhs: &'a [u32],
    pub k_blocks: usize,
    pub n_blocks: usize,
}

/// Computes the rows `32·r .. 32·r + 32` of `lhs · rhs` for each `r` in `row_blocks`, every
/// column, handing each 32 × 32 block to `emit(row0, column0, block)`.
///
/// # Panics
/// If [`available`] is false, or a tile read would leave the operands.
pub(crate) fn run_gemm(
    ops: &GemmOperands,
    row_blocks: std::ops::Range<usize>,
    mut emit: impl FnMut(usize, usize, &Block),
) {
    assert!(available(), "AMX tiles are not available on this CPU");
    let row_words = ops.k_blocks * TILE_ROWS;
    assert!(ops.n_blocks.is_multiple_of(2) && ops.k_blocks > 0);
    assert!(ops.lhs.len() >= row_blocks.end * 2 * TILE_ROWS * row_words);
    assert!(ops.rhs.len() >= ops.n_blocks * ops.k_blocks * TILE_ROWS * TILE_ROWS);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AMX is available (and permitted), and the asserts bounded every tile read.
    unsafe {
        kernel::configure();
        let mut block: Block = [0.0; 32 * 32];
        for r in row_blocks {
            let lhs = ops.lhs.as_ptr().add(r * 2 * TILE_ROWS * row_words);
            for n in (0..ops.n_blocks).step_by(2) {
                let rhs = ops
                    .rhs
                    .as_ptr()
                    .add(n * ops.k_blocks * TILE_ROWS * TILE_ROWS);
                kernel::gemm_block(lhs, row_words, rhs, ops.k_blocks, &mut block);
                emit(r * 2 * TILE_ROWS, n * TILE_ROWS, &block);
            }
        }
        kernel::release();
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (&mut emit, row_blocks);
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Block, Operands, TILE_ROWS};
    use std::arch::asm;

    #[repr(C, align(64))]
    struct Config([u8; 64]);

    /// Palette 1; all eight tiles 16 rows of 64 bytes: tmm0–3 accumulate, tmm4–5 hold weights,
    /// tmm6–7 input.
    pub unsafe fn configure() {
        let mut config = Config([0; 64]);
        config.0[0] = 1;
        for t in 0..8 {
            config.0[16 + 2 * t] = 64;
            config.0[48 + t] = TILE_ROWS as u8;
        }
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    }

    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// The block of output channels `16·m .. 16·m + 32` of the pixel tiles whose windows start at
    /// input pixels `p0` and `p1`.
    #[inline(always)]
    pub unsafe fn block(ops: &Operands, m: usize, p0: usize, p1: usize, out: &mut Block) {
        const TILE: usize = TILE_ROWS * TILE_ROWS;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let per_m_block = ops.taps.len() * ops.c_blocks * TILE;
        let w0 = ops.weights.as_ptr().add(m * per_m_block);
        let w1 = w0.add(per_m_block);
        let input = ops.input.as_ptr();
        let pair_bytes = 4 * ops.pair_stride;
        let block_pairs = TILE_ROWS * ops.pair_stride;
        let mut w = 0;
        for &tap in ops.taps {
            let (mut b0, mut b1) = (input.add(p0 + tap), input.add(p1 + tap));
            for _ in 0..ops.c_blocks {
                asm!(
                    "tileloadd tmm4, [{w0} + {s64}*1]",
                    "tileloadd tmm5, [{w1} + {s64}*1]",
                    "tileloadd tmm6, [{b0} + {sp}*1]",
                    "tileloadd tmm7, [{b1} + {sp}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    w0 = in(reg) w0.add(w),
                    w1 = in(reg) w1.add(w),
                    b0 = in(reg) b0,
                    b1 = in(reg) b1,
                    s64 = in(reg) 64usize,
                    sp = in(reg) pair_bytes,
                    options(nostack, readonly)
                );
                w += TILE;
                b0 = b0.add(block_pairs);
                b1 = b1.add(block_pairs);
            }
        }
        store(out);
    }

    /// The 32 × 32 block of rows `lhs .. lhs + 32 rows` (row stride `row_words`) times the two
    /// packed column blocks from `rhs`.
    #[inline(always)]
    pub unsafe fn gemm_block(
        lhs: *const u32,
        row_words: usize,
        rhs: *const u32,
        k_blocks: usize,
        out: &mut Block,
    ) {
        const TILE_WORDS: usize = TILE_ROWS * TILE_ROWS;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let a1 = lhs.add(TILE_ROWS * row_words);
        let b1 = rhs.add(k_blocks * TILE_WORDS);
        for kb in 0..k_blocks {
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {s64}*1]",
                "tileloadd tmm7, [{b1} + {s64}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) lhs.add(kb * TILE_ROWS),
                a1 = in(reg) a1.add(kb * TILE_ROWS),
                b0 = in(reg) rhs.add(kb * TILE_WORDS),
                b1 = in(reg) b1.add(kb * TILE_WORDS),
                sa = in(reg) 4 * row_words,
                s64 = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
        store(out);
    }

    /// tmm0–3 into the block: rows 0–15 then 16–31, columns 0–15 then 16–31.
    #[inline(always)]
    unsafe fn store(out: &mut Block) {
        let out = out.as_mut_ptr();
        asm!(
            "tilestored [{o} + {s}*1], tmm0",
            "tilestored [{o1} + {s}*1], tmm1",
            "tilestored [{o2} + {s}*1], tmm2",
            "tilestored [{o3} + {s}*1], tmm3",
            o = in(reg) out,
            o1 = in(reg) out.add(16),
            o2 = in(reg) out.add(16 * 32),
            o3 = in(reg) out.add(16 * 32 + 16),
            s = in(reg) 128usize,
            options(nostack)
        );
    }
}
