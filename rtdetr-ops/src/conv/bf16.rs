//! Full convolutions (any kernel size, stride and padding; 1×1 with a gate per image too)
//! with bf16 operands and f32 sums, for evaluation: the input converted once into the padded
//! channel-pair layout of [`amx`] (split into phase planes when strided), the weights packed
//! once for the kernel, the bias and activation applied to each block as it leaves the
//! kernel: AMX tiles ([`amx`]) or AVX512-BF16 vectors ([`dpbf16`]). Where the CPU has neither,
//! the operands are rounded to bf16 and run through the f32 kernels: the same numbers, slower
//! than f32 ([`crate::precision::bf16_is_native`] tells which).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::activation::Epilogue;
use crate::amx::{self, Operands, PixelTile, TILE_DEPTH, TILE_ROWS};
use crate::bf16::{bf16_bits, pair_word, Bf16Kernel, PackedLayout, SharedOut};
use crate::cpu::cpu_slice;
use crate::dpbf16::{self, CHANNELS, VECTORS};

/// Jobs per thread of one image's pixel tiles: fewer jobs reuse each weight tile over more
/// pixels, more balance the threads.
const JOBS_PER_THREAD: usize = 8;

/// A full convolution in bf16 on AMX tiles or AVX512-BF16 vectors.
struct ConvBf16 {
    /// [`Bf16Kernel::Tiles`] or [`Bf16Kernel::Vectors`].
    kernel: Bf16Kernel,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    /// `[B, C]` factors of the input channels (a squeeze-excitation gate), applied while the
    /// input is converted.
    gate: Option<Vec<f32>>,
    /// The weight tensor, whose packed tiles [`packed_weights`] keeps.
    weight_id: candle::TensorId,
    epilogue: Epilogue,
}

impl ConvBf16 {
    fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.padding, self.w + 2 * self.padding)
    }

    fn out_size(&self) -> (usize, usize) {
        let (hp, wp) = self.padded();
        (
            (hp - self.kh) / self.stride + 1,
            (wp - self.kw) / self.stride + 1,
        )
    }

    /// The size of each of the `stride²` phase planes that the padded input is split into:
    /// phase `(ry, rx)` holds the padded pixels `(y, x)` with `y % s = ry`, `x % s = rx`, so that
    /// a strided convolution reads consecutive pixels of one phase per tap.
    fn phase(&self) -> (usize, usize) {
        let (hp, wp) = self.padded();
        (hp.div_ceil(self.stride), wp.div_ceil(self.stride))
    }

    fn c_blocks(&self) -> usize {
        self.c.div_ceil(TILE_DEPTH)
    }

    /// Blocks of output channels: pairs of tiles' 16, or a vector block's [`CHANNELS`].
    fn m_blocks(&self) -> usize {
        match self.kernel {
            Bf16Kernel::Tiles => self.c_out.div_ceil(2 * TILE_ROWS) * 2,
            _ => self.c_out.div_ceil(CHANNELS),
        }
    }

    /// Channel pairs that the kernel sums: whole tiles' 16, or just `⌈C / 2⌉`.
    fn pairs(&self) -> usize {
        match self.kernel {
            Bf16Kernel::Tiles => self.c_blocks() * TILE_ROWS,
            _ => self.c.div_ceil(2),
        }
    }

    /// The taps' pixel offsets (phase plane, then row and column in it), row-major over the
    /// kernel.
    fn taps(&self) -> Vec<usize> {
        let (s, (hq, wq)) = (self.stride, self.phase());
        (0..self.kh)
            .flat_map(|ky| {
                (0..self.kw)
                    .map(move |kx| ((ky % s) * s + kx % s) * hq * wq + (ky / s) * wq + kx / s)
            })
            .collect()
    }

    /// The output in tiles of 16 pixels: along each output row, or along the whole plane when
    /// input and output pixels coincide (1×1, stride 1, no padding).
    fn pixel_tiles(&self) -> Vec<PixelTile> {
        let (oh, ow) = self.out_size();
        let wq = self.phase().1;
        if (self.kh, self.kw, self.padding, self.stride) == (1, 1, 0, 1) {
            let plane = oh * ow;
            return (0..plane)
                .step_by(TILE_ROWS)
                .map(|p| PixelTile {
                    input: p,
                    output: p,
                    len: TILE_ROWS.min(plane - p),
                })
                .collect();
        }
        (0..oh)
            .flat_map(|oy| {
                (0..ow).step_by(TILE_ROWS).map(move |ox| PixelTile {
                    input: oy * wq + ox,
                    output: oy * ow + ox,
                    len: TILE_ROWS.min(ow - ox),
                })
            })
            .collect()
    }

    /// Pixels per channel pair in the converted input: its phase planes, one after the other.
    fn pair_stride(&self) -> usize {
        let (hq, wq) = self.phase();
        self.stride * self.stride * hq * wq
    }

    /// The converted input's length: the last pair followed by room for the reads of the last
    /// tiles past its end (their dropped pixels).
    fn input_len(&self) -> usize {
        self.pairs() * self.pair_stride() + self.phase().1 + TILE_ROWS
    }

    /// One image `[C, H, W]` → zero-padded `[pairs][phases][H_q][W_q]` words, each the bf16 of
    /// an even channel (low half) and the next (high half), each times its `gate` factor.
    /// Overwrites all of `out` that tiles of valid pixels read (it holds the previous call's
    /// words).
    fn convert_input(&self, image: &[f32], gate: Option<&[f32]>, out: &mut [u32]) {
        let (plane, pair_stride) = (self.h * self.w, self.pair_stride());
        let (s, p) = (self.stride, self.padding);
        let (hq, wq) = self.phase();
        let dense = (s, p) == (1, 0);
        out.par_chunks_mut(pair_stride)
            .take(self.pairs())
            .enumerate()
            .for_each(|(pair, dst)| {
                if 2 * pair >= self.c {
                    return dst.fill(0);
                }
                if !dense {
                    dst.fill(0);
                }
                let first = &image[2 * pair * plane..][..plane];
                let second = image.get((2 * pair + 1) * plane..(2 * pair + 2) * plane);
                let factor = |c: usize| gate.and_then(|g| g.get(c)).copied().unwrap_or(1.0);
                let scale = (factor(2 * pair), factor(2 * pair + 1));
                for y in 0..self.h {
                    let (ry, qy) = ((y + p) % s, (y + p) / s);
                    let first = &first[y * self.w..][..self.w];
                    let second = second.map(|c| &c[y * self.w..][..self.w]);
                    if s == 1 {
                        convert_row(&mut dst[qy * wq + p..][..self.w], first, second, scale);
                        continue;
                    }
                    for rx in 0..s {
                        // The first input column whose padded column is in phase rx.
                        let x0 = (rx + s - p % s) % s;
                        if x0 >= self.w {
                            continue;
                        }
                        let n = (self.w - x0).div_ceil(s);
                        let at = ((ry * s + rx) * hq + qy) * wq + (x0 + p) / s;
                        let row = &mut dst[at..][..n];
                        let first = first[x0..].iter().step_by(s);
                        match second {
                            Some(second) => {
                                let second = second[x0..].iter().step_by(s);
                                for ((d, &a), &b) in row.iter_mut().zip(first).zip(second) {
                                    *d = pair_word(a * scale.0, b * scale.1);
                                }
                            }
                            None => {
                                for (d, &a) in row.iter_mut().zip(first) {
                                    *d = pair_word(a * scale.0, 0.0);
                                }
                            }
                        }
                    }
                }
            });
    }

    /// `[C_out, C, KH, KW]` → the kernel's layout in words of two bf16, zeros beyond `C_out`
    /// and `C`.
    fn pack_weights(&self, weight: &[f32]) -> Vec<u32> {
        match self.kernel {
            Bf16Kernel::Tiles => self.pack_tiles(weight),
            _ => self.pack_vectors(weight),
        }
    }

    /// `[m_blocks][taps][pairs][CHANNELS]` words (the layout of [`dpbf16`]).
    fn pack_vectors(&self, weight: &[f32]) -> Vec<u32> {
        let (taps, pairs) = (self.kh * self.kw, self.pairs());
        let mut packed = vec![0u32; self.m_blocks() * taps * pairs * CHANNELS];
        packed
            .par_chunks_mut(taps * pairs * CHANNELS)
            .enumerate()
            .for_each(|(mb, dst)| {
                for i in 0..CHANNELS {
                    let m = mb * CHANNELS + i;
                    if m >= self.c_out {
                        break;
                    }
                    let filter = &weight[m * self.c * taps..][..self.c * taps];
                    let at = |c: usize, t: usize| filter.get(c * taps + t).copied();
                    for t in 0..taps {
                        for pair in 0..pairs {
                            let (a, b) = (at(2 * pair, t), at(2 * pair + 1, t));
                            dst[(t * pairs + pair) * CHANNELS + i] =
                                pair_word(a.unwrap_or(0.0), b.unwrap_or(0.0));
                        }
                    }
                }
            });
        packed
    }

    /// `[m_blocks][taps][c_blocks][16 rows][32 channels]` (the tile layout of [`amx`]).
    fn pack_tiles(&self, weight: &[f32]) -> Vec<u32> {
        let taps = self.kh * self.kw;
        let c_blocks = self.c_blocks();
        let tile = TILE_ROWS * TILE_DEPTH;
        let mut packed = vec![0u16; self.m_blocks() * taps * c_blocks * tile];
        packed
            .par_chunks_mut(taps * c_blocks * tile)
            .enumerate()
            .for_each(|(mb, dst)| {
                for i in 0..TILE_ROWS {
                    let m = mb * TILE_ROWS + i;
                    if m >= self.c_out {
                        break;
                    }
                    let filter = &weight[m * self.c * taps..][..self.c * taps];
                    for t in 0..taps {
                        for c in 0..self.c {
                            let (cb, j) = (c / TILE_DEPTH, c % TILE_DEPTH);
                            dst[((t * c_blocks + cb) * TILE_ROWS + i) * TILE_DEPTH + j] =
                                bf16_bits(filter[c * taps + t]);
                        }
                    }
                }
            });
        crate::bf16::words(&packed)
    }

    fn forward(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.out_size();
        let (plane, c_out) = (oh * ow, self.c_out);
        let taps = self.taps();
        let tiles = self.pixel_tiles();
        let layout = PackedLayout {
            kernel: match self.kernel {
                Bf16Kernel::Tiles => "conv-tiles",
                _ => "conv-vectors",
            },
            shape: [c_out, self.c, self.kh, self.kw],
        };
        let weights = crate::bf16::packed(self.weight_id, layout, || self.pack_weights(weight));
        let image_len = self.c * self.h * self.w;
        let threads = candle::utils::get_num_threads();
        let group = match self.kernel {
            Bf16Kernel::Tiles => 2,
            _ => VECTORS,
        };
        let per_job = tiles
            .len()
            .div_ceil(JOBS_PER_THREAD * threads)
            .next_multiple_of(group)
            .max(group);
        // Every element is written once by `emit` (each tile's pixels, every channel), so the
        // output is not zeroed first: at 640×640 that memset was 5 % of a bf16 pass.
        let len = self.b * c_out * plane;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let mut scratch = crate::huge::scratch(self.input_len());
        let input = scratch.as_mut_slice();
        for image in 0..self.b {
            let gate = self.gate.as_ref().map(|g| &g[image * self.c..][..self.c]);
            self.convert_input(&xs[image * image_len..][..image_len], gate, &mut *input);
            // SAFETY: image `image`'s [C_out, plane] block lies inside the capacity.
            let dst = SharedOut(unsafe { out.as_mut_ptr().add(image * c_out * plane) });
            if self.kernel == Bf16Kernel::Tiles {
                let ops = Operands {
                    weights: &weights,
                    input: &*input,
                    pair_stride: self.pair_stride(),
                    taps: &taps,
                    c_blocks: self.c_blocks(),
                    m_blocks: self.m_blocks(),
                };
                tiles.par_chunks(per_job).for_each(|tiles| {
                    amx::run(&ops, tiles, |m0, pair, block| {
                        // SAFETY: each job writes only its own tiles' pixels, inside the
                        // [C_out, plane] output.
                        unsafe { emit(block, m0, pair, (c_out, plane), dst, &self.epilogue) }
                    })
                });
                continue;
            }
            let ops = dpbf16::Operands {
                weights: &weights,
                input: &*input,
                pair_stride: self.pair_stride(),
                taps: &taps,
                pairs: self.pairs(),
                m_blocks: self.m_blocks(),
            };
            let out = dpbf16::Output {
                dst,
                c_out,
                plane,
                epilogue: &self.epilogue,
            };
            // SAFETY: each job writes only its own tiles' pixels of the [C_out, plane] output.
            tiles
                .par_chunks(per_job)
                .for_each(|tiles| unsafe { dpbf16::run(&ops, tiles, &out) });
        }
        crate::huge::keep(scratch);
        // SAFETY: the tiles cover every pixel of every image and `emit` wrote every channel of
        // each, so all `len` elements are initialised.
        unsafe { out.set_len(len) };
        out
    }
}

/// `row[x] = pair_word(first[x]·g0, second[x]·g1)` (`second` zeros when absent).
fn convert_row(row: &mut [u32], first: &[f32], second: Option<&[f32]>, scale: (f32, f32)) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { convert_row_avx512(row, first, second, scale) };
    }
    convert_row_portable(row, first, second, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn convert_row_avx512(
    row: &mut [u32],
    first: &[f32],
    second: Option<&[f32]>,
    scale: (f32, f32),
) {
    convert_row_portable(row, first, second, scale)
}

#[inline(always)]
fn convert_row_portable(
    row: &mut [u32],
    first: &[f32],
    second: Option<&[f32]>,
    (g0, g1): (f32, f32),
) {
    match second {
        Some(second) => {
            for ((d, &a), &b) in row.iter_mut().zip(first).zip(second) {
                *d = pair_word(a * g0, b * g1);
            }
        }
        None => {
            for (d, &a) in row.iter_mut().zip(first) {
                *d = pair_word(a * g0, 0.0);
            }
        }
    }
}

/// Writes the channels `m0..m0 + 32` (those below `C_out`) of the pixel tiles `pair` from `block`
/// into the `[C_out, plane]` output, with the bias and activation. AMX implies AVX-512.
///
/// # Safety
/// The tiles' pixels are inside the plane and written by no other job.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn emit(
    block: &amx::Block,
    m0: usize,
    pair: &[PixelTile],
    (c_out, plane): (usize, usize),
    dst: SharedOut,
    epilogue: &Epilogue,
) {
    use std::arch::x86_64::*;
    let rows = (c_out - m0).min(2 * TILE_ROWS);
    for (i, row) in block.chunks_exact(2 * TILE_ROWS).take(rows).enumerate() {
        let m = m0 + i;
        let bias = _mm512_set1_ps(epilogue.bias[m]);
        for (t, tile) in pair.iter().enumerate() {
            let v = _mm512_add_ps(_mm512_loadu_ps(row.as_ptr().add(t * TILE_ROWS)), bias);
            let v = if epilogue.silu {
                crate::activation::avx512::silu(v)
            } else {
                v
            };
            let mask = ((1u32 << tile.len) - 1) as u16;
            _mm512_mask_storeu_ps(dst.0.add(m * plane + tile.output), mask, v);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn emit(
    _: &amx::Block,
    _: usize,
    _: &[PixelTile],
    _: (usize, usize),
    _: SharedOut,
    _: &Epilogue,
) {
    unreachable!("AMX tiles are x86-64 only")
}

impl CustomOp2 for ConvBf16 {
    fn name(&self) -> &'static str {
        "conv2d-bf16"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (oh, ow) = self.out_size();
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok((
                CpuStorage::F32(self.forward(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?)),
                (self.b, self.c_out, oh, ow).into(),
            )),
            _ => candle::bail!(
                "conv2d-bf16: f32 operands only, got {:?} and {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        }
    }
}

/// Whether a convolution of `c_in` input channels gains from bf16 tiles: a tile sums 32 input
/// channels, so the 3-channel stem would multiply mostly padding (measured: 2.4× its f32 time).
pub(crate) fn worth_it(c_in: usize) -> bool {
    c_in >= 16
}

/// `act(conv2d(xs, weight) + bias)` (`groups = 1`) with bf16 operands and f32 sums; `weight`
/// is `[C_out, C_in, KH, KW]`.
pub(crate) fn conv2d_bias_act_bf16(
    xs: &Tensor,
    weight: &Tensor,
    (stride, padding): (usize, usize),
    epilogue: Epilogue,
) -> Result<Tensor> {
    run(
        xs,
        weight,
        None,
        (stride, padding),
        epilogue,
        Bf16Kernel::native(),
    )
}

/// `act(W · (g_b ⊙ x_b) + bias)` for each image `b`: a 1×1 convolution of the input scaled per
/// image and channel by `gate` (`[B, C_in]`), with bf16 operands and f32 sums.
pub(crate) fn pointwise_gated_bias_act_bf16(
    xs: &Tensor,
    weight: &Tensor,
    gate: &Tensor,
    epilogue: Epilogue,
) -> Result<Tensor> {
    run(
        xs,
        weight,
        Some(gate),
        (1, 0),
        epilogue,
        Bf16Kernel::native(),
    )
}

fn run(
    xs: &Tensor,
    weight: &Tensor,
    gate: Option<&Tensor>,
    (stride, padding): (usize, usize),
    epilogue: Epilogue,
    kernel: Bf16Kernel,
) -> Result<Tensor> {
    let (b, c, h, w) = xs.dims4()?;
    let (c_out, wc, kh, kw) = weight.dims4()?;
    if wc != c || stride == 0 || h + 2 * padding < kh || w + 2 * padding < kw {
        candle::bail!(
            "conv2d: weight {:?} does not fit input {:?} with padding {padding}",
            weight.shape(),
            xs.shape()
        )
    }
    if let Some(gate) = gate {
        if gate.dims() != [b, c] || (kh, kw, stride, padding) != (1, 1, 1, 0) {
            candle::bail!(
                "conv2d: gate {:?} for input {:?} and weight {:?} (a 1×1 convolution's gate is [B, C_in])",
                gate.shape(),
                xs.shape(),
                weight.shape()
            )
        }
    }
    if kernel == Bf16Kernel::Rounded {
        let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
        let xs = match gate {
            Some(gate) => xs.broadcast_mul(&gate.reshape((b, c, 1, 1))?)?,
            None => xs.clone(),
        };
        let (xs, weight) = (round(&xs)?, round(weight)?);
        return if (kh, kw, padding, stride) == (1, 1, 0, 1) {
            super::pointwise::pointwise_fused(&xs, &weight, epilogue)
        } else {
            super::unfold::conv2d_unfolded_fused(&xs, &weight, stride, padding, epilogue)
        };
    }
    let gate = match gate {
        Some(gate) => Some(gate.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?),
        None => None,
    };
    let op = ConvBf16 {
        kernel,
        b,
        c,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        padding,
        gate,
        weight_id: weight.id(),
        epilogue,
    };
    xs.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// f64 reference of the bf16 convolution: operands rounded to bf16 (the input after its
    /// gate), products summed exactly.
    fn reference(
        xs: &Tensor,
        weight: &Tensor,
        gate: Option<&Tensor>,
        (stride, padding): (usize, usize),
        bias: &Tensor,
    ) -> Tensor {
        let round = |t: &Tensor| {
            t.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
        };
        let xs = match gate {
            Some(g) => xs.broadcast_mul(&g.unsqueeze(2).unwrap().unsqueeze(3).unwrap()),
            None => Ok(xs.clone()),
        };
        let conv = round(&xs.unwrap())
            .conv2d(&round(weight), padding, stride, 1, 1)
            .unwrap();
        conv.broadcast_add(
            &bias
                .to_dtype(DType::F64)
                .unwrap()
                .reshape(((), 1, 1))
                .unwrap(),
        )
        .unwrap()
    }

    /// Each kernel this CPU runs (AMX tiles, AVX512-BF16 vectors, the rounded-f32 fallback)
    /// against the f64 reference:
    /// channels not multiples of 16 or 32, widths not multiples of 16, odd sizes, batch 2, 1×1
    /// (with and without a gate), 3×3 and 5×5 with padding and without, strides 1, 2, 3; each
    /// case twice, so that the second call finds the first's packed weights and scratch.
    #[test]
    fn equals_the_bf16_rounded_reference() {
        let dev = Device::Cpu;
        for (b, c, c_out, h, w, k, stride, padding, gated) in [
            (2, 5, 7, 9, 11, 3, 1, 1, false),
            (1, 48, 40, 13, 21, 3, 1, 1, false),
            (2, 33, 17, 6, 7, 1, 1, 0, false),
            (2, 70, 35, 5, 19, 1, 1, 0, true),
            (1, 19, 64, 12, 12, 5, 1, 2, false),
            (1, 8, 9, 7, 18, 3, 1, 0, false),
            (1, 3, 3, 1, 1, 1, 1, 0, false),
            (2, 3, 24, 17, 20, 3, 2, 1, false),
            (1, 36, 33, 16, 15, 3, 2, 1, false),
            (1, 7, 5, 11, 9, 5, 2, 2, false),
            (1, 6, 5, 13, 10, 3, 3, 0, false),
            (1, 9, 17, 8, 8, 1, 2, 0, false),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 0.3, (c_out, c, k, k), &dev).unwrap();
            let gate = gated.then(|| Tensor::rand(0f32, 1., (b, c), &dev).unwrap());
            let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
            let want = reference(&xs, &weight, gate.as_ref(), (stride, padding), &bias);
            for silu in [false, true] {
                let want = if silu {
                    candle_nn::ops::silu(&want).unwrap()
                } else {
                    want.clone()
                };
                let kernels = Bf16Kernel::runnable();
                for kernel in kernels.iter().flat_map(|&k| [k, k]) {
                    let epilogue = Epilogue {
                        bias: bias.to_vec1().unwrap(),
                        silu,
                    };
                    let got = run(
                        &xs,
                        &weight,
                        gate.as_ref(),
                        (stride, padding),
                        epilogue,
                        kernel,
                    )
                    .unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let diff =
                        crate::testing::max_abs_diff(&got.to_dtype(DType::F64).unwrap(), &want);
                    let case = (b, c, c_out, (h, w, k, stride, padding), gated, silu, kernel);
                    assert!(diff < 2e-5, "{case:?}: {diff}");
                }
            }
        }
    }

    #[test]
    fn rounds_to_nearest_even_like_half() {
        // 0x3f80_8000 and 0x3f81_8000 are ties: down to even, and up to even.
        let ties = [f32::from_bits(0x3f80_8000), f32::from_bits(0x3f81_8000)];
        for x in [0.0f32, -0.0, 1.0, -3.3e-39, 3.4e38, f32::INFINITY]
            .into_iter()
            .chain(ties)
        {
            assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x}");
        }
        for i in 0..100_000u32 {
            let x = f32::from_bits(i.wrapping_mul(2_654_435_761));
            if !x.is_nan() {
                assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x}");
            }
        }
        assert!(half::bf16::from_bits(bf16_bits(f32::NAN)).is_nan());
    }
}
