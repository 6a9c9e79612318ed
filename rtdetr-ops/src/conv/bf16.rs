//! Stride-1 convolutions (any kernel size and padding; 1×1 with a weight per image too) with
//! bf16 operands and f32 sums, for evaluation: the input converted once into the padded channel-
//! pair layout of [`amx`], the weights packed into tiles, the bias and activation applied to each
//! 32 × 32 block as it leaves the tiles. Where the CPU has no AMX the operands are rounded to
//! bf16 and run through the f32 kernels: the same numbers, slower than f32
//! ([`crate::precision::bf16_is_native`] tells which).

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::amx::{self, bf16_bits, Operands, PixelTile, TILE_DEPTH, TILE_ROWS};
use crate::activation::Epilogue;
use crate::cpu::cpu_slice;

/// A stride-1 convolution in bf16 on AMX tiles.
struct ConvBf16 {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    padding: usize,
    weight_per_image: bool,
    epilogue: Epilogue,
}

impl ConvBf16 {
    fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.padding, self.w + 2 * self.padding)
    }

    fn out_size(&self) -> (usize, usize) {
        let (hp, wp) = self.padded();
        (hp + 1 - self.kh, wp + 1 - self.kw)
    }

    fn c_blocks(&self) -> usize {
        self.c.div_ceil(TILE_DEPTH)
    }

    fn m_blocks(&self) -> usize {
        self.c_out.div_ceil(2 * TILE_ROWS) * 2
    }

    /// The taps' pixel offsets into the padded plane, row-major over the kernel.
    fn taps(&self) -> Vec<usize> {
        let wp = self.padded().1;
        (0..self.kh)
            .flat_map(|ky| (0..self.kw).map(move |kx| ky * wp + kx))
            .collect()
    }

    /// The output in tiles of 16 pixels: along each output row, or along the whole plane when
    /// input and output pixels coincide (1×1, no padding).
    fn pixel_tiles(&self) -> Vec<PixelTile> {
        let (oh, ow) = self.out_size();
        let wp = self.padded().1;
        if (self.kh, self.kw, self.padding) == (1, 1, 0) {
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
                    input: oy * wp + ox,
                    output: oy * ow + ox,
                    len: TILE_ROWS.min(ow - ox),
                })
            })
            .collect()
    }

    /// Pixels per channel pair in the converted input, the last pair followed by room for the
    /// reads of the last tiles past the plane (their dropped pixels).
    fn pair_stride(&self) -> usize {
        let (hp, wp) = self.padded();
        hp * wp
    }

    fn input_len(&self) -> usize {
        let pairs = self.c_blocks() * TILE_ROWS;
        2 * (pairs * self.pair_stride() + self.padded().1 + TILE_ROWS)
    }

    /// One image `[C, H, W]` → zero-padded `[pairs][H + 2p][W + 2p][2]` bf16.
    fn convert_input(&self, image: &[f32], out: &mut [u16]) {
        let (plane, stride) = (self.h * self.w, self.pair_stride());
        let (wp, p) = (self.padded().1, self.padding);
        out.par_chunks_mut(2 * stride)
            .take(self.c.div_ceil(2))
            .enumerate()
            .for_each(|(pair, dst)| {
                let first = &image[2 * pair * plane..][..plane];
                let second = image.get((2 * pair + 1) * plane..(2 * pair + 2) * plane);
                for y in 0..self.h {
                    let row = &mut dst[2 * ((y + p) * wp + p)..][..2 * self.w];
                    let src = &first[y * self.w..][..self.w];
                    match second {
                        Some(second) => {
                            let src2 = &second[y * self.w..][..self.w];
                            for ((d, &a), &b) in row.chunks_exact_mut(2).zip(src).zip(src2) {
                                d[0] = bf16_bits(a);
                                d[1] = bf16_bits(b);
                            }
                        }
                        None => {
                            for (d, &a) in row.chunks_exact_mut(2).zip(src) {
                                d[0] = bf16_bits(a);
                            }
                        }
                    }
                }
            });
    }

    /// `[C_out, C, KH, KW]` → the tile layout of [`amx`], zeros beyond `C_out` and `C`.
    fn pack_weights(&self, weight: &[f32]) -> Vec<u16> {
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
        packed
    }

    fn forward(&self, xs: &[f32], weight: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.out_size();
        let (plane, c_out) = (oh * ow, self.c_out);
        let taps = self.taps();
        let tiles = self.pixel_tiles();
        let shared_weights = (!self.weight_per_image).then(|| self.pack_weights(weight));
        let image_len = self.c * self.h * self.w;
        let filters_len = c_out * self.c * self.kh * self.kw;
        let threads = candle::utils::get_num_threads();
        let per_job = tiles.len().div_ceil(8 * threads).next_multiple_of(2).max(2);
        let mut out = vec![0f32; self.b * c_out * plane];
        let mut input = vec![0u16; self.input_len()];
        for (image, out) in out.chunks_exact_mut(c_out * plane).enumerate() {
            // Padding and the pairs past C keep the zeros of the allocation for every image.
            self.convert_input(&xs[image * image_len..][..image_len], &mut input);
            let own_weights = self
                .weight_per_image
                .then(|| self.pack_weights(&weight[image * filters_len..][..filters_len]));
            let ops = Operands {
                weights: own_weights
                    .as_deref()
                    .or(shared_weights.as_deref())
                    .unwrap_or(&[]),
                input: &input,
                pair_stride: self.pair_stride(),
                taps: &taps,
                c_blocks: self.c_blocks(),
                m_blocks: self.m_blocks(),
            };
            let dst = Out(out.as_mut_ptr());
            tiles.par_chunks(per_job).for_each(|tiles| {
                amx::run(&ops, tiles, |m0, pair, block| {
                    // SAFETY: each job writes only its own tiles' pixels, inside the
                    // [C_out, plane] output.
                    unsafe { emit(block, m0, pair, (c_out, plane), dst, &self.epilogue) }
                })
            });
        }
        out
    }
}

/// Writes the channels `m0..m0 + 32` (those below `C_out`) of the pixel tiles `pair` from `block`
/// into the `[C_out, plane]` output, with the bias and activation.
///
/// # Safety
/// The tiles' pixels are inside the plane and written by no other job.
unsafe fn emit(
    block: &amx::Block,
    m0: usize,
    pair: &[PixelTile],
    (c_out, plane): (usize, usize),
    dst: Out,
    epilogue: &Epilogue,
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        return emit_avx512(block, m0, pair, (c_out, plane), dst, epilogue);
    }
    emit_portable(block, m0, pair, (c_out, plane), dst, epilogue)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn emit_avx512(
    block: &amx::Block,
    m0: usize,
    pair: &[PixelTile],
    shape: (usize, usize),
    dst: Out,
    epilogue: &Epilogue,
) {
    emit_portable(block, m0, pair, shape, dst, epilogue)
}

#[inline(always)]
unsafe fn emit_portable(
    block: &amx::Block,
    m0: usize,
    pair: &[PixelTile],
    (c_out, plane): (usize, usize),
    dst: Out,
    epilogue: &Epilogue,
) {
    let rows = (c_out - m0).min(2 * TILE_ROWS);
    for (i, row) in block.chunks_exact(2 * TILE_ROWS).take(rows).enumerate() {
        let m = m0 + i;
        let bias = epilogue.bias[m];
        for (t, tile) in pair.iter().enumerate() {
            let mut v = [0f32; 16];
            v.copy_from_slice(&row[t * TILE_ROWS..][..TILE_ROWS]);
            crate::activation::bias_act16(&mut v, bias, epilogue.silu);
            dst.row(m * plane + tile.output, tile.len)
                .copy_from_slice(&v[..tile.len]);
        }
    }
}

/// The output, written by parallel jobs at disjoint pixels.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: jobs write disjoint pixels.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// # Safety
    /// `at..at + len` is inside the output and written by no other job.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, at: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
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

/// Whether [`conv2d_bias_act_bf16`] takes a convolution of this shape.
pub(crate) fn takes(stride: usize, groups: usize) -> bool {
    stride == 1 && groups == 1
}

/// `act(conv2d(xs, weight) + bias)` at stride 1 with bf16 operands and f32 sums; `weight` is
/// `[C_out, C_in, KH, KW]`, or `[B, C_out, C_in]` (1×1, one per image).
pub(crate) fn conv2d_bias_act_bf16(
    xs: &Tensor,
    weight: &Tensor,
    padding: usize,
    epilogue: Epilogue,
) -> Result<Tensor> {
    conv2d_bias_act_bf16_on(xs, weight, padding, epilogue, amx::available())
}

fn conv2d_bias_act_bf16_on(
    xs: &Tensor,
    weight: &Tensor,
    padding: usize,
    epilogue: Epilogue,
    on_amx: bool,
) -> Result<Tensor> {
    let (b, c, h, w) = xs.dims4()?;
    let (c_out, wc, kh, kw, weight_per_image) = match *weight.dims() {
        [c_out, wc, kh, kw] => (c_out, wc, kh, kw, false),
        [wb, c_out, wc] if wb == b => (c_out, wc, 1, 1, true),
        _ => candle::bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.shape(),
            xs.shape()
        ),
    };
    if wc != c || h + 2 * padding < kh || w + 2 * padding < kw {
        candle::bail!(
            "conv2d: weight {:?} does not fit input {:?} with padding {padding}",
            weight.shape(),
            xs.shape()
        )
    }
    if !on_amx {
        let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
        let (xs, weight) = (round(xs)?, round(weight)?);
        return if weight_per_image || (kh, kw, padding) == (1, 1, 0) {
            super::pointwise::pointwise_fused(&xs, &weight, epilogue)
        } else {
            super::unfold::conv2d_unfolded_fused(&xs, &weight, 1, padding, epilogue)
        };
    }
    let op = ConvBf16 {
        b,
        c,
        h,
        w,
        c_out,
        kh,
        kw,
        padding,
        weight_per_image,
        epilogue,
    };
    xs.contiguous()?
        .apply_op2_no_bwd(&weight.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// f64 reference of the bf16 convolution: operands rounded to bf16, products summed exactly.
    fn reference(
        xs: &Tensor,
        weight: &Tensor,
        padding: usize,
        bias: &Tensor,
        silu: bool,
    ) -> Tensor {
        let round = |t: &Tensor| {
            t.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
        };
        let conv = if weight.rank() == 3 {
            let (b, c, h, w) = xs.dims4().unwrap();
            let o = weight.dim(1).unwrap();
            round(weight)
                .matmul(&round(xs).reshape((b, c, h * w)).unwrap())
                .unwrap()
                .reshape((b, o, h, w))
                .unwrap()
        } else {
            round(xs).conv2d(&round(weight), padding, 1, 1, 1).unwrap()
        };
        crate::bias_act(&conv, &bias.to_dtype(DType::F64).unwrap(), silu).unwrap()
    }

    /// AMX (where this CPU has it) and the rounded-f32 fallback against the f64 reference:
    /// channels not multiples of 16 or 32, widths not multiples of 16, batch 2, 1×1 (shared and
    /// per-image weights), 3×3 and 5×5 with padding, and a kernel without padding.
    #[test]
    fn equals_the_bf16_rounded_reference() {
        let dev = Device::Cpu;
        for (b, c, c_out, h, w, k, padding, per_image) in [
            (2, 5, 7, 9, 11, 3, 1, false),
            (1, 48, 40, 13, 21, 3, 1, false),
            (2, 33, 17, 6, 7, 1, 0, false),
            (2, 70, 35, 5, 19, 1, 0, true),
            (1, 19, 64, 12, 12, 5, 2, false),
            (1, 8, 9, 7, 18, 3, 0, false),
            (1, 3, 3, 1, 1, 1, 0, false),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c, h, w), &dev).unwrap();
            let weight = if per_image {
                Tensor::randn(0f32, 0.3, (b, c_out, c), &dev).unwrap()
            } else {
                Tensor::randn(0f32, 0.3, (c_out, c, k, k), &dev).unwrap()
            };
            let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
            for silu in [false, true] {
                let want = reference(&xs, &weight, padding, &bias, silu);
                for on_amx in [amx::available(), false] {
                    let epilogue = Epilogue {
                        bias: bias.to_vec1().unwrap(),
                        silu,
                    };
                    let got =
                        conv2d_bias_act_bf16_on(&xs, &weight, padding, epilogue, on_amx).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let diff =
                        crate::testing::max_abs_diff(&got.to_dtype(DType::F64).unwrap(), &want);
                    let case = (b, c, c_out, h, w, k, padding, per_image, silu, on_amx);
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
