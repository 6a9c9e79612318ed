//! The precision of the convolutions' products, chosen per thread for the length of a closure as
//! `torch.autocast` does: f32, or bf16 operands summed in f32.

use std::cell::Cell;

/// How the full convolutions multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bf16, products summed in f32 (AMX tiles or AVX512-BF16 where the CPU
    /// has them):
    /// full convolutions (`groups = 1`) in evaluation; everything else stays f32.
    Bf16,
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with the convolutions called from this thread in `precision`; the previous
/// precision comes back afterwards, also when `f` panics.
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

/// The precision of convolutions called from this thread now.
pub fn precision() -> Precision {
    CURRENT.with(|c| c.get())
}

/// Whether bf16 products run on bf16 instructions here (AMX tiles or AVX512-BF16), else as
/// bf16-rounded f32, slower than f32.
pub fn bf16_is_native() -> bool {
    crate::bf16::Bf16Kernel::native() != crate::bf16::Bf16Kernel::Rounded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_and_restored() {
        assert_eq!(precision(), Precision::F32);
        let inner = with_precision(Precision::Bf16, || {
            let nested = with_precision(Precision::F32, precision);
            (precision(), nested)
        });
        assert_eq!(inner, (Precision::Bf16, Precision::F32));
        assert_eq!(precision(), Precision::F32);
        let _ = std::panic::catch_unwind(|| with_precision(Precision::Bf16, || panic!("inside")));
        assert_eq!(precision(), Precision::F32);
    }
}
