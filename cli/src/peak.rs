//! The machine's f32 FMA peak: twelve independent chains of fused multiply-adds on the widest
//! vectors the CPU has, kept in registers (named variables, not an array, which would spill),
//! on one thread and on every thread of the pool. The figure that `bench` divides by. Where the
//! CPU has AVX512-BF16, the same chains of `vdpbf16ps` give the bf16 vector peak.

use std::time::Instant;

/// Measured peak in GFLOP/s (2 per lane per FMA) and the instruction set it ran.
pub struct Peak {
    pub isa: &'static str,
    pub one_thread: f64,
    pub all_threads: f64,
    pub threads: usize,
}

const ITERS: u64 = 20_000_000;

macro_rules! fma_chains {
    ($fma:ident, $set1:ident, $add:ident, $reduce:expr, $iters:expr) => {{
        fma_chains!($fma, $set1, $add, $reduce, $iters, $set1)
    }};
    ($fma:ident, $set1:ident, $add:ident, $reduce:expr, $iters:expr, $operand:ident) => {{
        let m = $operand(0.999_999);
        let c = $operand(1e-7);
        let (mut a0, mut a1, mut a2, mut a3) = ($set1(1.0), $set1(1.1), $set1(1.2), $set1(1.3));
        let (mut a4, mut a5, mut a6, mut a7) = ($set1(1.4), $set1(1.5), $set1(1.6), $set1(1.7));
        let (mut a8, mut a9, mut a10, mut a11) = ($set1(1.8), $set1(1.9), $set1(2.0), $set1(2.1));
        for _ in 0..$iters {
            a0 = $fma(a0, m, c);
            a1 = $fma(a1, m, c);
            a2 = $fma(a2, m, c);
            a3 = $fma(a3, m, c);
            a4 = $fma(a4, m, c);
            a5 = $fma(a5, m, c);
            a6 = $fma(a6, m, c);
            a7 = $fma(a7, m, c);
            a8 = $fma(a8, m, c);
            a9 = $fma(a9, m, c);
            a10 = $fma(a10, m, c);
            a11 = $fma(a11, m, c);
        }
        let s = $add(
            $add($add(a0, a1), $add(a2, a3)),
            $add($add(a4, a5), $add(a6, a7)),
        );
        $reduce($add($add(s, a8), $add(a9, $add(a10, a11))))
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    fma_chains!(
        _mm512_fmadd_ps,
        _mm512_set1_ps,
        _mm512_add_ps,
        _mm512_reduce_add_ps,
        iters
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let reduce = |v: __m256| {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        lanes.iter().sum::<f32>()
    };
    fma_chains!(
        _mm256_fmadd_ps,
        _mm256_set1_ps,
        _mm256_add_ps,
        reduce,
        iters
    )
}

/// Twelve chains of `vdpbf16ps` (16 lanes × 2 products each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn chains_bf16(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let set = |x: f32| _mm512_set1_ps(x);
    // The chains' multiplier and addend as bf16 pairs: each step adds their product twice.
    let bf = |x: f32| -> __m512bh { _mm512_cvtne2ps_pbh(set(x), set(x)) };
    let dp = |acc: __m512, a: __m512bh, b: __m512bh| _mm512_dpbf16_ps(acc, a, b);
    fma_chains!(dp, set, _mm512_add_ps, _mm512_reduce_add_ps, iters, bf)
}

/// The bf16 vector peak (`vdpbf16ps`, 4 FLOP per lane) on one thread and on `threads`, where
/// the CPU has AVX512-BF16.
pub fn measure_bf16(threads: usize) -> Option<(f64, f64)> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
        let run = |threads: usize| {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { chains_bf16(ITERS / 20) }; // warm-up, as for the f32 chains
                                                // SAFETY: as above.
            timed(threads, 16 * 2, || unsafe { chains_bf16(ITERS) })
        };
        return Some((run(1), run(threads.max(1))));
    }
    let _ = threads;
    None
}

/// GFLOP/s of `threads` threads each running `chains` (`ITERS` steps of 12 instructions of
/// `lanes` multiply-adds).
fn timed(threads: usize, lanes: usize, chains: impl Fn() -> f32 + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(&chains)).collect();
        for h in handles {
            std::hint::black_box(h.join().expect("a peak thread panicked"));
        }
    });
    let flops = threads as f64 * ITERS as f64 * 12.0 * lanes as f64 * 2.0;
    flops / start.elapsed().as_secs_f64() / 1e9
}

/// One run of the chains: the lanes it used and a result that keeps the loop alive.
fn chains(iters: u64) -> (usize, f32, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function was compiled for.
            return (16, unsafe { chains_avx512(iters) }, "AVX-512");
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function was compiled for.
            return (8, unsafe { chains_avx2(iters) }, "AVX2+FMA");
        }
    }
    let mut acc = [1f32; 12];
    for _ in 0..iters {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    (1, acc.iter().sum(), "scalar")
}

fn gflops(threads: usize) -> (f64, &'static str) {
    let (lanes, _, isa) = chains(ITERS / 20); // warm-up: clocks and power states settle
    (timed(threads, lanes, || chains(ITERS).1), isa)
}

/// Measures the peak on one thread and on `threads`.
pub fn measure(threads: usize) -> Peak {
    let (one_thread, isa) = gflops(1);
    let (all_threads, _) = gflops(threads.max(1));
    Peak {
        isa,
        one_thread,
        all_threads,
        threads: threads.max(1),
    }
}
