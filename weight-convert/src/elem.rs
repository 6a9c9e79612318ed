//! Element types of numpy arrays and torch storages, and raw bytes → candle tensors.

use candle::{DType, Device, Tensor};

use crate::{Error, Result};

/// An element type found in a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// f32.
    F32,
    /// f64.
    F64,
    /// bool (one byte).
    Bool,
    /// u8.
    U8,
    /// i8.
    I8,
    /// i16.
    I16,
    /// i32.
    I32,
    /// i64.
    I64,
}

impl Elem {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Elem::Bool | Elem::U8 | Elem::I8 => 1,
            Elem::F16 | Elem::Bf16 | Elem::I16 => 2,
            Elem::F32 | Elem::I32 => 4,
            Elem::F64 | Elem::I64 => 8,
        }
    }

    /// A numpy type string without its byte order (`f4`, `i8`, `b1`, ...).
    pub fn from_numpy(code: &str) -> Option<Self> {
        Some(match code {
            "f2" | "e" => Elem::F16,
            "f4" | "f" => Elem::F32,
            "f8" | "d" => Elem::F64,
            "b1" | "?" => Elem::Bool,
            "u1" | "B" => Elem::U8,
            "i1" | "b" => Elem::I8,
            "i2" | "h" => Elem::I16,
            "i4" | "i" => Elem::I32,
            "i8" | "q" | "l" => Elem::I64,
            _ => return None,
        })
    }

    /// The element type of a torch storage class (`HalfStorage`, `FloatStorage`, ...).
    pub fn from_torch_storage(name: &str) -> Option<Self> {
        Some(match name {
            "HalfStorage" => Elem::F16,
            "BFloat16Storage" => Elem::Bf16,
            "FloatStorage" => Elem::F32,
            "DoubleStorage" => Elem::F64,
            "BoolStorage" => Elem::Bool,
            "ByteStorage" | "UntypedStorage" => Elem::U8,
            "CharStorage" => Elem::I8,
            "ShortStorage" => Elem::I16,
            "IntStorage" => Elem::I32,
            "LongStorage" => Elem::I64,
            _ => return None,
        })
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Elem::F16 | Elem::Bf16 | Elem::F32 | Elem::F64)
    }
}

/// Splits a numpy `descr` (`<f4`, `|u1`, `>f8`, `f4`) into its element type and whether it is
/// big-endian.
pub fn numpy_descr(descr: &str) -> Result<(Elem, bool)> {
    let (big, code) = match descr.as_bytes().first() {
        Some(b'>') => (true, &descr[1..]),
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        _ => (false, descr),
    };
    let elem = Elem::from_numpy(code)
        .ok_or_else(|| Error::Unsupported(format!("numpy element type {descr:?}")))?;
    Ok((elem, big))
}

/// The number of elements of `shape`, checked.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::Limit(format!("shape {shape:?} overflows")))
}

/// A CPU tensor of `shape` from contiguous `bytes` (floats keep their type, integers become
/// i64, bools u8). `big_endian` swaps bytes first; `fortran` reads column-major data.
pub fn to_tensor(
    elem: Elem,
    big_endian: bool,
    fortran: bool,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Tensor> {
    let n = numel(shape)?;
    let want = n
        .checked_mul(elem.size())
        .ok_or_else(|| Error::Limit(format!("shape {shape:?} overflows")))?;
    if bytes.len() != want {
        return Err(Error::Malformed(format!(
            "{} bytes of data for shape {shape:?} of {elem:?} ({want} expected)",
            bytes.len()
        )));
    }
    let swapped: Vec<u8>;
    let bytes = if big_endian && elem.size() > 1 {
        let mut v = bytes.to_vec();
        v.chunks_exact_mut(elem.size()).for_each(|c| c.reverse());
        swapped = v;
        &swapped
    } else {
        bytes
    };
    let dims: Vec<usize> = if fortran {
        shape.iter().rev().copied().collect()
    } else {
        shape.to_vec()
    };
    let dev = Device::Cpu;
    let raw = |dtype| Tensor::from_raw_buffer(bytes, dtype, &dims, &dev);
    let t = match elem {
        Elem::F16 => raw(DType::F16)?,
        Elem::Bf16 => raw(DType::BF16)?,
        Elem::F32 => raw(DType::F32)?,
        Elem::F64 => raw(DType::F64)?,
        Elem::U8 | Elem::Bool => raw(DType::U8)?,
        Elem::I64 => raw(DType::I64)?,
        Elem::I8 | Elem::I16 | Elem::I32 => {
            let size = elem.size();
            let v: Vec<i64> = bytes
                .chunks_exact(size)
                .map(|c| match c.len() {
                    1 => i64::from(c[0] as i8),
                    2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
                    _ => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                })
                .collect();
            Tensor::from_vec(v, dims.as_slice(), &dev)?
        }
    };
    if fortran && dims.len() > 1 {
        let rev: Vec<usize> = (0..dims.len()).rev().collect();
        return Ok(t.permute(rev)?.contiguous()?);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_and_big_endian() {
        // np.array([[1, 2, 3], [4, 5, 6]], '>f4', order='F').tobytes('A')
        let v: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let t = to_tensor(Elem::F32, true, true, &[2, 3], &v).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), [[1., 2., 3.], [4., 5., 6.]]);
        assert!(to_tensor(Elem::F32, false, false, &[2, 4], &v).is_err());
        assert!(to_tensor(Elem::F32, false, false, &[usize::MAX, 4], &v).is_err());
    }
}
