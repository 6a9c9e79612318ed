//! bf16 operands shared by the tile (`amx`) and vector (`dpbf16`) kernels: rounding, words of
//! two bf16, the packed-weight cache, and the output that parallel jobs write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The bits of `x` rounded to the nearest bf16, ties to even (as `torch.bfloat16`); NaN stays NaN.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        0x7fc0
    } else {
        rounded
    }
}

/// The word of `a` (low half) and `b` (high half), each rounded to bf16: one channel (or K)
/// pair, as `tdpbf16ps` and `vdpbf16ps` multiply them.
#[inline(always)]
pub(crate) fn pair_word(a: f32, b: f32) -> u32 {
    bf16_bits(a) as u32 | (bf16_bits(b) as u32) << 16
}

/// `u16` bf16 bits as words of two (the first in the low half).
pub(crate) fn words(halves: &[u16]) -> Vec<u32> {
    halves
        .chunks(2)
        .map(|w| w[0] as u32 | (w.get(1).copied().unwrap_or(0) as u32) << 16)
        .collect()
}

/// An f32 output that parallel jobs write at disjoint places (each kernel's caller says which).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: the jobs sharing one write disjoint elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The output `n` floats further on.
    ///
    /// # Safety
    /// As [`pointer::add`]: the result stays inside the output.
    pub unsafe fn add(self, n: usize) -> Self {
        Self(self.0.add(n))
    }
}

/// A packed weight's layout: which kernel reads it, and the shape it was packed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PackedLayout {
    pub kernel: &'static str,
    pub shape: [usize; 4],
}

/// Packed weights by tensor and layout (a tensor's id is never reused, and evaluation weights
/// are not changed in place), up to [`PACKED_BYTES`]; past it the cache starts over.
type PackedCache = HashMap<(candle::TensorId, PackedLayout), Arc<Vec<u32>>>;

/// The most bytes of packed weights kept: the XL model's are about 0.5 GB.
const PACKED_BYTES: usize = 1 << 30;

/// The packed form of tensor `id` in `layout`, packed by `pack` on first use.
pub(crate) fn packed(
    id: candle::TensorId,
    layout: PackedLayout,
    pack: impl FnOnce() -> Vec<u32>,
) -> Arc<Vec<u32>> {
    static CACHE: Mutex<Option<(PackedCache, usize)>> = Mutex::new(None);
    let lock = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = lock()
        .as_ref()
        .and_then(|(map, _)| map.get(&(id, layout)).cloned())
    {
        return found;
    }
    let packed = Arc::new(pack());
    let mut guard = lock();
    let (map, bytes) = guard.get_or_insert_with(Default::default);
    if *bytes + 4 * packed.len() > PACKED_BYTES {
        map.clear();
        *bytes = 0;
    }
    *bytes += 4 * packed.len();
    map.insert((id, layout), packed.clone());
    packed
}

/// What multiplies bf16 operands on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bf16Kernel {
    /// AMX tiles (`tdpbf16ps`): Intel Sapphire Rapids and later.
    Tiles,
    /// AVX512-BF16 vectors (`vdpbf16ps`): AMD Zen 4 and 5, Intel Cooper Lake.
    Vectors,
    /// Neither: operands rounded to bf16 and multiplied by the f32 kernels.
    Rounded,
}

impl Bf16Kernel {
    /// The fastest this CPU runs.
    pub fn native() -> Self {
        if crate::amx::available() {
            Self::Tiles
        } else if crate::dpbf16::available() {
            Self::Vectors
        } else {
            Self::Rounded
        }
    }

    /// Every kernel this CPU runs, fastest first (tests force each).
    #[cfg(test)]
    pub fn runnable() -> Vec<Self> {
        let mut kernels = Vec::new();
        if crate::amx::available() {
            kernels.push(Self::Tiles);
        }
        if crate::dpbf16::available() {
            kernels.push(Self::Vectors);
        }
        kernels.push(Self::Rounded);
        kernels
    }
}
