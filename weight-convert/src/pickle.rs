//! A pickle virtual machine (protocols 0 to 5) that builds plain data and never runs anything.
//!
//! `GLOBAL`/`STACK_GLOBAL` names become inert [`Value::Global`] references and calling one
//! (`REDUCE`, `NEWOBJ`, `INST`, `OBJ`) builds an inert [`Value::Object`], except for the few
//! constructors that weights files need, which are interpreted: torch's `_rebuild_tensor_v2` and
//! `_rebuild_parameter`, `collections.OrderedDict`, numpy's `_reconstruct` + `__setstate__`,
//! `_frombuffer` and `dtype`, and `_codecs.encode` (how protocol 2 spells bytes). Values live in an
//! arena and refer to each other by [`Id`], so shared and cyclic references (the memo) cost
//! nothing and cannot leak; every size is checked against the remaining input before allocating.

use crate::{Error, Result};

/// Index of a value in [`Pickle::values`].
pub type Id = usize;

/// The most nested `MARK`s the reader accepts.
pub const MAX_MARKS: usize = 512;
/// The most memo entries the reader accepts.
pub const MAX_MEMO: usize = 1 << 22;

/// A numpy array rebuilt from `_reconstruct` + `__setstate__` or `_frombuffer`.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// The element type: a [`Value::Dtype`] id, `None` until `__setstate__` ran.
    pub dtype: Option<Id>,
    /// Column-major storage.
    pub fortran: bool,
    /// The raw data ([`Value::Bytes`]) or, for object arrays, a [`Value::List`].
    pub data: Option<Id>,
}

/// A torch tensor view: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView {
    /// The storage: a [`Value::Persistent`] id for `torch.save` zips.
    pub storage: Id,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Dimensions.
    pub size: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// One value built by the VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// A larger integer, little-endian two's complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string (`bytes` or `bytearray`).
    Bytes(Vec<u8>),
    /// A list (mutable: `APPEND` changes it in place).
    List(Vec<Id>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A dict in insertion order (`OrderedDict` too).
    Dict(Vec<(Id, Id)>),
    /// A set or frozenset.
    Set(Vec<Id>),
    /// A reference to `module.name`, never resolved.
    Global {
        /// The module path.
        module: String,
        /// The attribute name.
        name: String,
    },
    /// The inert result of calling something that is not interpreted.
    Object {
        /// What was called (usually a [`Value::Global`]).
        callable: Id,
        /// The arguments (a [`Value::Tuple`]).
        args: Id,
        /// The `BUILD` state, e.g. a module's `__dict__`.
        state: Option<Id>,
        /// Items appended (list subclasses).
        items: Vec<Id>,
        /// Entries set (dict subclasses).
        entries: Vec<(Id, Id)>,
    },
    /// A persistent id (`BINPERSID`): how `torch.save` refers to storages.
    Persistent(Id),
    /// A torch tensor view.
    Tensor(TensorView),
    /// A numpy array.
    Array(Array),
    /// A numpy dtype: its `descr` (`f4`, `<f2`, `O`, ...) and byte order (`<`, `>`, `|` or `=`).
    Dtype {
        /// The type string given to `numpy.dtype`.
        descr: String,
        /// The byte order set by `__setstate__`.
        order: char,
    },
}

/// The values a pickle built and the one it returned.
#[derive(Debug, Clone, Default)]
pub struct Pickle {
    /// Every value built, indexed by [`Id`].
    pub values: Vec<Value>,
    /// The value `STOP` returned.
    pub root: Id,
}

const NONE: Id = 0;

impl Pickle {
    /// The value `id` refers to (`None` for an unknown id).
    pub fn get(&self, id: Id) -> &Value {
        self.values.get(id).unwrap_or(&Value::None)
    }

    /// A string value.
    pub fn str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value (booleans count as 0/1).
    pub fn int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn seq(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of a dict.
    pub fn dict(&self, id: Id) -> Option<&[(Id, Id)]> {
        match self.get(id) {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// The value stored under string `key` in dict `id`.
    pub fn dict_get(&self, id: Id, key: &str) -> Option<Id> {
        self.dict(id)?
            .iter()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The `BUILD` state of an inert object.
    pub fn state(&self, id: Id) -> Option<Id> {
        match self.get(id) {
            Value::Object { state, .. } => *state,
            _ => None,
        }
    }

    /// `module.name` of a global, or of the class of an inert object.
    pub fn class_name(&self, id: Id) -> Option<String> {
        match self.get(id) {
            Value::Global { module, name } => Some(format!("{module}.{name}")),
            Value::Object { callable, .. } => match self.get(*callable) {
                Value::Global { module, name } => Some(format!("{module}.{name}")),
                _ => None,
            },
            _ => None,
        }
    }

    /// A sequence of non-negative integers (a shape or stride).
    pub fn usizes(&self, id: Id) -> Option<Vec<usize>> {
        self.seq(id)?
            .iter()
            .map(|&i| usize::try_from(self.int(i)?).ok())
            .collect()
    }
}

/// Runs the pickle in `bytes` and returns what it built. Trailing bytes after `STOP` are allowed
/// (numpy and torch never write any, but they are not data either).
pub fn parse(bytes: &[u8]) -> Result<Pickle> {
    Vm::new(bytes).run()
}

struct Vm<'a> {
    input: &'a [u8],
    pos: usize,
    values: Vec<Value>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Id>,
    /// Items and bytes copied by interpreted constructors, bounded by the input size (a small
    /// file must not make the VM copy a memoized list over and over).
    copied: usize,
}

fn truncated(what: &str) -> Error {
    Error::Truncated(format!("pickle ends inside {what}"))
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(format!("pickle: {}", what.into()))
}

impl<'a> Vm<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            values: vec![Value::None],
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
            copied: 0,
        }
    }

    fn charge(&mut self, n: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(n);
        let limit = self.input.len().saturating_mul(8).saturating_add(1 << 16);
        if self.copied > limit {
            return Err(Error::Limit(format!(
                "pickle copies over {limit} items in constructors"
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(what))?;
        let s = self
            .input
            .get(self.pos..end)
            .ok_or_else(|| truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1, "an opcode argument")?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2, "a 2-byte argument")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4, "a 4-byte argument")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8, "an 8-byte argument")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| truncated("a text line"))?;
        let line = self.take(n + 1, "a text line")?;
        std::str::from_utf8(&line[..n]).map_err(|_| malformed("text argument is not UTF-8"))
    }

    /// A length-prefixed payload, checked against the remaining input before copying.
    fn sized(&mut self, len: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = self.input.len() - self.pos;
        match usize::try_from(len) {
            Ok(n) if n <= remaining => self.take(n, what),
            _ => Err(Error::Limit(format!(
                "pickle {what} declares {len} bytes, only {remaining} remain"
            ))),
        }
    }

    fn push(&mut self, v: Value) {
        self.values.push(v);
        self.stack.push(self.values.len() - 1);
    }

    fn pop(&mut self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(malformed("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| malformed("no MARK to pop to"))?;
        if mark > self.stack.len() {
            return Err(malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(Error::Limit(format!("pickle memo over {MAX_MEMO} entries")));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| malformed(format!("memo key {key} is not set")))?;
        self.stack.push(id);
        Ok(())
    }

    fn string(bytes: &[u8]) -> Result<Value> {
        String::from_utf8(bytes.to_vec())
            .map(Value::Str)
            .map_err(|_| malformed("string is not UTF-8"))
    }

    fn global(module: &str, name: &str) -> Value {
        Value::Global {
            module: module.to_string(),
            name: name.to_string(),
        }
    }

    fn run(mut self) -> Result<Pickle> {
        loop {
            let op = self.take(1, "the opcode stream (no STOP)")?[0];
            match op {
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(Error::Unsupported(format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        values: self.values,
                        root,
                    });
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return Err(Error::Limit(format!("pickle nests over {MAX_MARKS} MARKs")));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                b'N' => self.stack.push(NONE),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v.into()))
                }
                0x8a => {
                    let n = self.byte()?;
                    let b = self.take(n.into(), "LONG1")?;
                    self.push(long(b));
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    let n = u64::try_from(n).map_err(|_| malformed("negative LONG4 length"))?;
                    let b = self.sized(n, "LONG4")?;
                    self.push(long(b));
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.parse().map_err(|_| malformed("bad INT/LONG text"))?),
                    };
                    self.push(v);
                }
                b'F' => {
                    let v = self
                        .line()?
                        .parse()
                        .map_err(|_| malformed("bad FLOAT text"))?;
                    self.push(Value::Float(v))
                }
                b'G' => {
                    let v = self.u64()?.swap_bytes();
                    self.push(Value::Float(f64::from_bits(v)))
                }
                b'X' => {
                    let n = self.u32()?;
                    let b = self.sized(n.into(), "BINUNICODE")?;
                    let v = Self::string(b)?;
                    self.push(v)
                }
                0x8c => {
                    let n = self.byte()?;
                    let b = self.sized(n.into(), "SHORT_BINUNICODE")?;
                    let v = Self::string(b)?;
                    self.push(v)
                }
                0x8d => {
                    let n = self.u64()?;
                    let b = self.sized(n, "BINUNICODE8")?;
                    let v = Self::string(b)?;
                    self.push(v)
                }
                b'V' => {
                    let v = Self::string(self.line()?.as_bytes())?;
                    self.push(v)
                }
                b'S' => {
                    let line = self.line()?;
                    let inner = line
                        .strip_prefix('\'')
                        .and_then(|l| l.strip_suffix('\''))
                        .or_else(|| line.strip_prefix('"').and_then(|l| l.strip_suffix('"')))
                        .ok_or_else(|| malformed("bad STRING quoting"))?;
                    self.push(Value::Bytes(inner.as_bytes().to_vec()))
                }
                b'T' | b'B' => {
                    let n = self.u32()?;
                    let b = self.sized(n.into(), "BINBYTES")?;
                    self.push(Value::Bytes(b.to_vec()))
                }
                b'U' | b'C' => {
                    let n = self.byte()?;
                    let b = self.sized(n.into(), "SHORT_BINBYTES")?;
                    self.push(Value::Bytes(b.to_vec()))
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.sized(n, "BINBYTES8")?;
                    self.push(Value::Bytes(b.to_vec()))
                }
                0x97 | 0x98 => {
                    return Err(Error::Unsupported(
                        "pickle with out-of-band buffers (protocol 5 NEXT_BUFFER)".into(),
                    ))
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b'}' => self.push(Value::Dict(Vec::new())),
                0x8f => self.push(Value::Set(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    self.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let entries = pairs(&items)?;
                    self.push(Value::Dict(entries))
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(items))
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    self.extend_list(target, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.extend_list(target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.extend_dict(target, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let entries = pairs(&items)?;
                    let target = self.top()?;
                    self.extend_dict(target, entries)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    match self.values.get_mut(target) {
                        Some(Value::Set(v)) => v.extend(items),
                        _ => return Err(malformed("ADDITEMS on a non-set")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Self::global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) =
                        (&self.values[module], &self.values[name])
                    else {
                        return Err(malformed("STACK_GLOBAL needs two strings"));
                    };
                    let v = Self::global(module, name);
                    self.push(v)
                }
                0x82..=0x84 => {
                    return Err(Error::Unsupported("pickle extension registry (EXT)".into()))
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(cls, args)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(cls, args)?;
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let items = self.pop_mark()?;
                    self.values.push(Self::global(module, name));
                    let cls = self.values.len() - 1;
                    self.values.push(Value::Tuple(items));
                    let args = self.values.len() - 1;
                    self.call(cls, args)?;
                }
                b'o' => {
                    let items = self.pop_mark()?;
                    let (&cls, rest) = items
                        .split_first()
                        .ok_or_else(|| malformed("OBJ without a class"))?;
                    self.values.push(Value::Tuple(rest.to_vec()));
                    let args = self.values.len() - 1;
                    self.call(cls, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::Persistent(pid))
                }
                b'P' => {
                    let v = Self::string(self.line()?.as_bytes())?;
                    self.values.push(v);
                    let pid = self.values.len() - 1;
                    self.push(Value::Persistent(pid))
                }
                b'p' => {
                    let key = self.line()?.parse().map_err(|_| malformed("bad PUT key"))?;
                    self.memo_put(key)?
                }
                b'q' => {
                    let key = self.byte()?;
                    self.memo_put(key.into())?
                }
                b'r' => {
                    let key = self.u32()?;
                    self.memo_put(key.into())?
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?
                }
                b'g' => {
                    let key = self.line()?.parse().map_err(|_| malformed("bad GET key"))?;
                    self.memo_get(key)?
                }
                b'h' => {
                    let key = self.byte()?;
                    self.memo_get(key.into())?
                }
                b'j' => {
                    let key = self.u32()?;
                    self.memo_get(key.into())?
                }
                other => {
                    return Err(malformed(format!(
                        "unknown opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )))
                }
            }
        }
    }

    fn extend_list(&mut self, target: Id, new: Vec<Id>) -> Result<()> {
        match self.values.get_mut(target) {
            Some(Value::List(v)) => v.extend(new),
            Some(Value::Object { items, .. }) => items.extend(new),
            _ => return Err(malformed("APPEND on a non-list")),
        }
        Ok(())
    }

    fn extend_dict(&mut self, target: Id, new: Vec<(Id, Id)>) -> Result<()> {
        match self.values.get_mut(target) {
            Some(Value::Dict(v)) => v.extend(new),
            Some(Value::Object { entries, .. }) => entries.extend(new),
            _ => return Err(malformed("SETITEM on a non-dict")),
        }
        Ok(())
    }

    fn arg(&self, args: &[Id], i: usize, what: &str) -> Result<Id> {
        args.get(i)
            .copied()
            .ok_or_else(|| malformed(format!("{what}: missing argument {i}")))
    }

    /// `REDUCE`/`NEWOBJ`: interprets the known constructors, makes anything else inert.
    fn call(&mut self, callable: Id, args: Id) -> Result<()> {
        let name = match self.values.get(callable) {
            Some(Value::Global { module, name }) => format!("{module}.{name}"),
            _ => String::new(),
        };
        let argv = match self.values.get(args) {
            Some(Value::Tuple(v)) => v.clone(),
            _ => Vec::new(),
        };
        self.charge(argv.len())?;
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let what = "_rebuild_tensor";
                let storage = self.arg(&argv, 0, what)?;
                let offset = self.int_arg(&argv, 1, what)?;
                let size = self.usizes_arg(&argv, 2, what)?;
                let stride = self.usizes_arg(&argv, 3, what)?;
                if size.len() != stride.len() {
                    return Err(malformed("tensor size and stride differ in length"));
                }
                self.push(Value::Tensor(TensorView {
                    storage,
                    offset,
                    size,
                    stride,
                }));
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                let data = self.arg(&argv, 0, "_rebuild_parameter")?;
                self.stack.push(data);
            }
            "collections.OrderedDict" | "builtins.dict" => {
                let mut entries = Vec::new();
                if let Some(&init) = argv.first() {
                    if let Some(Value::List(items) | Value::Tuple(items)) = self.values.get(init) {
                        let items = items.clone();
                        self.charge(items.len())?;
                        for &pair in items.iter() {
                            match self.values.get(pair) {
                                Some(Value::Tuple(kv) | Value::List(kv)) if kv.len() == 2 => {
                                    entries.push((kv[0], kv[1]))
                                }
                                _ => return Err(malformed("OrderedDict item is not a pair")),
                            }
                        }
                    }
                }
                self.push(Value::Dict(entries));
            }
            "numpy.core.multiarray._reconstruct" | "numpy._core.multiarray._reconstruct" => self
                .push(Value::Array(Array {
                    shape: Vec::new(),
                    dtype: None,
                    fortran: false,
                    data: None,
                })),
            "numpy.core.numeric._frombuffer" | "numpy._core.numeric._frombuffer" => {
                let what = "_frombuffer";
                let data = self.arg(&argv, 0, what)?;
                let dtype = self.arg(&argv, 1, what)?;
                let shape = self.usizes_arg(&argv, 2, what)?;
                let order = self.arg(&argv, 3, what)?;
                let fortran = matches!(self.values.get(order), Some(Value::Str(s)) if s == "F");
                self.push(Value::Array(Array {
                    shape,
                    dtype: Some(dtype),
                    fortran,
                    data: Some(data),
                }))
            }
            "numpy.dtype" | "numpy.core.multiarray.dtype" | "numpy._core.multiarray.dtype" => {
                let descr = match argv.first().and_then(|&i| self.values.get(i)) {
                    Some(Value::Str(s)) => s.clone(),
                    _ => return Err(malformed("numpy.dtype without a type string")),
                };
                self.charge(descr.len())?;
                self.push(Value::Dtype { descr, order: '=' })
            }
            "_codecs.encode" => {
                let text = match argv.first().and_then(|&i| self.values.get(i)) {
                    Some(Value::Str(s)) => s.clone(),
                    _ => return Err(malformed("_codecs.encode without a string")),
                };
                self.charge(text.len())?;
                let bytes = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<std::result::Result<Vec<u8>, _>>()
                    .map_err(|_| malformed("_codecs.encode: text is not latin-1"))?;
                self.push(Value::Bytes(bytes))
            }
            _ => self.push(Value::Object {
                callable,
                args,
                state: None,
                items: Vec::new(),
                entries: Vec::new(),
            }),
        }
        Ok(())
    }

    fn int_arg(&self, args: &[Id], i: usize, what: &str) -> Result<usize> {
        match self.values.get(self.arg(args, i, what)?) {
            Some(Value::Int(v)) => {
                usize::try_from(*v).map_err(|_| malformed(format!("{what}: negative argument")))
            }
            _ => Err(malformed(format!("{what}: argument {i} is not an integer"))),
        }
    }

    fn usizes_arg(&mut self, args: &[Id], i: usize, what: &str) -> Result<Vec<usize>> {
        let id = self.arg(args, i, what)?;
        let n = match self.values.get(id) {
            Some(Value::Tuple(v) | Value::List(v)) => v.len(),
            _ => return Err(malformed(format!("{what}: argument {i} is not a tuple"))),
        };
        self.charge(n)?;
        let Some(Value::Tuple(items) | Value::List(items)) = self.values.get(id) else {
            return Err(malformed(format!("{what}: argument {i} is not a tuple")));
        };
        items
            .iter()
            .map(|&j| match self.values.get(j) {
                Some(Value::Int(v)) => usize::try_from(*v).ok(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(format!("{what}: argument {i} is not non-negative integers")))
    }

    /// `BUILD`: numpy `__setstate__`, dtype byte order, or an inert object's state.
    fn build(&mut self, target: Id, state: Id) -> Result<()> {
        let state_items = match self.values.get(state) {
            Some(Value::Tuple(v)) => v.clone(),
            _ => Vec::new(),
        };
        self.charge(state_items.len())?;
        match self.values.get(target) {
            Some(Value::Array(_)) => {
                // ndarray.__setstate__((version, shape, dtype, is_fortran, data)), version optional.
                let s = match state_items.len() {
                    5 => &state_items[1..],
                    4 => &state_items[..],
                    _ => return Err(malformed("numpy array state is not a 4- or 5-tuple")),
                };
                let shape = self.usizes_arg(s, 0, "ndarray state")?;
                let fortran = matches!(self.values.get(s[2]), Some(Value::Bool(true)));
                let (dtype, data) = (s[1], s[3]);
                if let Some(Value::Array(a)) = self.values.get_mut(target) {
                    *a = Array {
                        shape,
                        dtype: Some(dtype),
                        fortran,
                        data: Some(data),
                    };
                }
            }
            Some(Value::Dtype { .. }) => {
                let order = state_items
                    .get(1)
                    .and_then(|&i| match self.values.get(i) {
                        Some(Value::Str(s)) => s.chars().next(),
                        _ => None,
                    })
                    .unwrap_or('=');
                if let Some(Value::Dtype { order: o, .. }) = self.values.get_mut(target) {
                    *o = order;
                }
            }
            Some(Value::Object { .. }) => {
                if let Some(Value::Object { state: s, .. }) = self.values.get_mut(target) {
                    *s = Some(state);
                }
            }
            // A dict's BUILD state is its attributes (an OrderedDict state_dict's `_metadata`), not items.
            _ => {}
        }
        Ok(())
    }
}

fn pairs(items: &[Id]) -> Result<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        return Err(malformed("odd number of dict items"));
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

fn long(b: &[u8]) -> Value {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut a = [fill; 8];
        a[..b.len()].copy_from_slice(b);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // python -c "import pickle; print(pickle.dumps({'a': [1, 2.5, None, True], 'b': (b'xy', 'z')}, protocol=4))"
    const DICT_P4: &[u8] = b"\x80\x04\x95(\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94C\x02xy\x94\x8c\x01z\x94\x86\x94u.";

    #[test]
    fn plain_data_protocol_4() {
        let p = parse(DICT_P4).unwrap();
        let a = p.dict_get(p.root, "a").unwrap();
        let items: Vec<&Value> = p.seq(a).unwrap().iter().map(|&i| p.get(i)).collect();
        assert_eq!(
            items,
            [
                &Value::Int(1),
                &Value::Float(2.5),
                &Value::None,
                &Value::Bool(true)
            ]
        );
        let b = p.seq(p.dict_get(p.root, "b").unwrap()).unwrap().to_vec();
        assert_eq!(p.get(b[0]), &Value::Bytes(b"xy".to_vec()));
        assert_eq!(p.str(b[1]), Some("z"));
    }

    #[test]
    fn reduce_of_os_system_is_inert() {
        // pickle.dumps of an object whose __reduce__ returns (os.system, ('touch x',)), protocol 2.
        let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00touch xq\x01\x85q\x02Rq\x03.";
        let p = parse(bytes).unwrap();
        assert_eq!(p.class_name(p.root).as_deref(), Some("posix.system"));
    }

    #[test]
    fn memo_shares_mutated_containers() {
        // l = []; d = {'x': l, 'y': l}; l.append(7), written as: EMPTY_LIST MEMOIZE, fill later.
        let bytes = b"\x80\x04}\x94(\x8c\x01x\x94]\x94\x8c\x01y\x94h\x02uh\x02K\x07a0.";
        let p = parse(bytes).unwrap();
        let x = p.dict_get(p.root, "x").unwrap();
        let y = p.dict_get(p.root, "y").unwrap();
        assert_eq!(x, y);
        assert_eq!(p.seq(x).unwrap().len(), 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        for bytes in [
            &b""[..],
            b"\x80\x04",
            b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f",
            b"a.",
            b"h\x05.",
            b"\x80\x09N.",
            b"\xff",
        ] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
        let deep = [b'('; MAX_MARKS + 1];
        assert!(matches!(parse(&deep), Err(Error::Limit(_))));
    }
}
