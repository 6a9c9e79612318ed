//! `.npy` files: the header (a Python dict literal) and either numeric data or, for
//! `dtype=object` (what `np.save` writes for a dict), a pickle run by [`crate::pickle`].

use candle::Tensor;

use crate::elem::{numel, numpy_descr, to_tensor};
use crate::pickle::{self, Id, Pickle, Value};
use crate::{Error, Result};

/// The npy magic string.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// What an `.npy` file holds.
#[derive(Debug)]
pub enum Npy {
    /// A numeric array.
    Array(Tensor),
    /// An object array: the pickle that `np.save(allow_pickle=True)` wrote.
    Object(Pickle),
}

/// The parsed header of an `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `descr`, e.g. `<f4` or `|O`.
    pub descr: String,
    /// `fortran_order`.
    pub fortran: bool,
    /// `shape`.
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: usize,
}

/// Parses the magic, version and header dict.
pub fn header(bytes: &[u8]) -> Result<Header> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| Error::Malformed("not an .npy file (no \\x93NUMPY magic)".into()))?;
    let (len, start): (usize, usize) = match rest {
        [1, _, a, b, ..] => (usize::from(u16::from_le_bytes([*a, *b])), 10),
        [2 | 3, _, a, b, c, d, ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12),
        [v, ..] => return Err(Error::Unsupported(format!("npy format version {v}"))),
        [] => return Err(Error::Truncated("npy file ends after its magic".into())),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            Error::Truncated(format!(
                "npy header declares {len} bytes, the file has {}",
                bytes.len()
            ))
        })?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::Malformed("npy header is not text".into()))?;
    let lit = Literal::parse(text)?;
    let Literal::Dict(entries) = lit else {
        return Err(Error::Malformed("npy header is not a dict".into()));
    };
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Literal::Str(s)) => s.clone(),
        Some(_) => return Err(Error::Unsupported("structured npy dtypes".into())),
        None => return Err(Error::Malformed("npy header has no descr".into())),
    };
    let fortran = matches!(get("fortran_order"), Some(Literal::Bool(true)));
    let shape = match get("shape") {
        Some(Literal::Tuple(items)) => items
            .iter()
            .map(|i| match i {
                Literal::Int(n) => Ok(*n),
                _ => Err(Error::Malformed("npy shape holds a non-integer".into())),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(Error::Malformed("npy header has no shape tuple".into())),
    };
    Ok(Header {
        descr,
        fortran,
        shape,
        data_offset: end,
    })
}

/// Reads an `.npy` file held in memory. Declared sizes are checked against the bytes present
/// before anything is allocated.
pub fn read(bytes: &[u8]) -> Result<Npy> {
    let h = header(bytes)?;
    let data = bytes.get(h.data_offset..).unwrap_or_default();
    if matches!(h.descr.as_str(), "O" | "|O" | "<O" | ">O") {
        return Ok(Npy::Object(pickle::parse(data)?));
    }
    let (elem, big) = numpy_descr(&h.descr)?;
    let want = numel(&h.shape)?
        .checked_mul(elem.size())
        .ok_or_else(|| Error::Limit(format!("npy shape {:?} overflows", h.shape)))?;
    if want != data.len() {
        return Err(Error::Limit(format!(
            "npy header declares shape {:?} of {} ({want} bytes), the file holds {} bytes of data",
            h.shape,
            h.descr,
            data.len()
        )));
    }
    Ok(Npy::Array(to_tensor(elem, big, h.fortran, &h.shape, data)?))
}

/// The single object of a 0-d object array (`np.save(path, some_dict)` then `.item()`).
pub fn object_item(p: &Pickle) -> Result<Id> {
    match p.get(p.root) {
        Value::Array(a) => match a.data.map(|d| p.get(d)) {
            Some(Value::List(items)) if items.len() == 1 => Ok(items[0]),
            _ => Err(Error::Malformed(
                "npy object array does not hold exactly one object".into(),
            )),
        },
        _ => Err(Error::Malformed(
            "npy object payload is not a numpy array".into(),
        )),
    }
}

/// A pickled numpy array as a tensor (numeric arrays only).
pub fn array_tensor(p: &Pickle, id: Id) -> Result<Tensor> {
    let Value::Array(a) = p.get(id) else {
        return Err(Error::Malformed("value is not a numpy array".into()));
    };
    let (descr, order) = match a.dtype.map(|d| p.get(d)) {
        Some(Value::Dtype { descr, order }) => (descr.clone(), *order),
        _ => return Err(Error::Malformed("numpy array without a dtype".into())),
    };
    let (elem, big) = numpy_descr(&descr)?;
    let big = big || order == '>';
    let data = match a.data.map(|d| p.get(d)) {
        Some(Value::Bytes(b)) => b.as_slice(),
        _ => return Err(Error::Unsupported(format!("numpy array of {descr}"))),
    };
    to_tensor(elem, big, a.fortran, &a.shape, data)
}

/// The subset of Python literals an npy header uses.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(usize),
    Bool(bool),
    Tuple(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
    Other,
}

const MAX_LITERAL_DEPTH: usize = 16;

impl Literal {
    fn parse(text: &str) -> Result<Self> {
        let mut p = LiteralParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        Ok(v)
    }
}

struct LiteralParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LiteralParser<'_> {
    fn bad(&self) -> Error {
        Error::Malformed(format!("npy header: unexpected text at byte {}", self.i))
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn items(&mut self, close: u8, depth: usize) -> Result<Vec<Literal>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(out);
            }
            out.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                return if self.eat(close) {
                    Ok(out)
                } else {
                    Err(self.bad())
                };
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal> {
        if depth > MAX_LITERAL_DEPTH {
            return Err(Error::Limit("npy header nests too deeply".into()));
        }
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.bad());
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(Literal::Dict(out));
                    }
                    let Literal::Str(k) = self.value(depth + 1)? else {
                        return Err(self.bad());
                    };
                    if !self.eat(b':') {
                        return Err(self.bad());
                    }
                    out.push((k, self.value(depth + 1)?));
                    if !self.eat(b',') {
                        return if self.eat(b'}') {
                            Ok(Literal::Dict(out))
                        } else {
                            Err(self.bad())
                        };
                    }
                }
            }
            b'(' => {
                self.i += 1;
                Ok(Literal::Tuple(self.items(b')', depth)?))
            }
            b'[' => {
                self.i += 1;
                self.items(b']', depth)?;
                Ok(Literal::Other)
            }
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while self.s.get(self.i).is_some_and(|&x| x != c) {
                    self.i += 1;
                }
                let s = self.s.get(start..self.i).ok_or_else(|| self.bad())?;
                if !self.eat(c) {
                    return Err(self.bad());
                }
                Ok(Literal::Str(String::from_utf8_lossy(s).into_owned()))
            }
            b'0'..=b'9' => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                // Python 2 era headers may write `3L`.
                if self.s.get(self.i) == Some(&b'L') {
                    self.i += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.i])
                    .unwrap_or_default()
                    .trim_end_matches('L');
                digits
                    .parse()
                    .map(Literal::Int)
                    .map_err(|_| Error::Limit(format!("npy shape entry {digits} overflows")))
            }
            _ => {
                for (word, v) in [
                    ("True", Literal::Bool(true)),
                    ("False", Literal::Bool(false)),
                    ("None", Literal::Other),
                ] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(v);
                    }
                }
                Err(self.bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn numeric_array() {
        let data: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &data,
        );
        let Npy::Array(t) = read(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(t.to_vec2::<f32>().unwrap(), [[1., 2., 3.], [4., 5., 6.]]);
    }

    #[test]
    fn huge_declared_shape_is_an_error_not_an_allocation() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000, 4000000000), }",
            &[0; 16],
        );
        assert!(matches!(read(&bytes), Err(Error::Limit(_))));
        let bytes = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
            &[],
        );
        assert!(matches!(read(&bytes), Err(Error::Limit(_))));
    }

    #[test]
    fn broken_headers() {
        for bytes in [
            b"".to_vec(),
            MAGIC.to_vec(),
            npy("{'descr': '<f4', 'shape': (2,", &[]),
            npy(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}",
                &[0; 4],
            ),
            npy(&format!("{}1{}", "(".repeat(40), ")".repeat(40)), &[]),
        ] {
            assert!(read(&bytes).is_err());
        }
    }
}
