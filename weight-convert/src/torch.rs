//! `torch.save` zip files: tensors rebuilt from their storages, and the state_dict of a pickled
//! `nn.Module` tree rebuilt by walking `_parameters`, `_buffers` and `_modules`.

use std::collections::HashMap;

use candle::Tensor;

use crate::elem::{numel, to_tensor, Elem};
use crate::pickle::{self, Id, Pickle, Value};
use crate::zip::Archive;
use crate::{Error, Result};

/// How deep a module tree may nest.
pub const MAX_MODULE_DEPTH: usize = 64;

/// An opened `torch.save` file.
#[derive(Debug)]
pub struct TorchZip<'a> {
    archive: Archive<'a>,
    prefix: String,
    /// The unpickled `data.pkl`.
    pub pickle: Pickle,
    storages: HashMap<String, (Elem, Vec<u8>)>,
    budget: usize,
    big_endian: bool,
}

impl<'a> TorchZip<'a> {
    /// Opens the zip and runs its `data.pkl` (nothing in it is executed).
    pub fn open(bytes: &'a [u8]) -> Result<Self> {
        let mut archive = Archive::new(bytes)?;
        let pkl = archive
            .names()?
            .into_iter()
            .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or_else(|| Error::Malformed("zip has no data.pkl: not a torch.save file".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let pickle = pickle::parse(&archive.read(&pkl)?)?;
        // torch writes `byteorder` ("little" or "big"); files from before it existed are little.
        let order = format!("{prefix}byteorder");
        let big_endian = archive.names()?.contains(&order) && archive.read(&order)? == b"big";
        Ok(Self {
            archive,
            prefix,
            pickle,
            storages: HashMap::new(),
            // Views may repeat storage elements, and f16 storages widen later: bound the total.
            budget: bytes.len().saturating_mul(2).saturating_add(1 << 20),
            big_endian,
        })
    }

    fn storage(&mut self, pid: Id) -> Result<String> {
        let p = &self.pickle;
        let items = p
            .seq(pid)
            .ok_or_else(|| Error::Malformed("persistent id is not a tuple".into()))?;
        let [tag, kind, key, _location, size, ..] = items else {
            return Err(Error::Malformed(
                "storage persistent id is too short".into(),
            ));
        };
        if p.str(*tag) != Some("storage") {
            return Err(Error::Unsupported(
                "persistent id other than a storage".into(),
            ));
        }
        let kind = match p.get(*kind) {
            Value::Global { name, .. } => name.clone(),
            _ => return Err(Error::Malformed("storage type is not a class".into())),
        };
        let elem = Elem::from_torch_storage(&kind)
            .ok_or_else(|| Error::Unsupported(format!("torch storage type {kind}")))?;
        let key = p
            .str(*key)
            .ok_or_else(|| Error::Malformed("storage key is not a string".into()))?
            .to_string();
        let size = p
            .int(*size)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| Error::Malformed("storage size is not a count".into()))?;
        if !self.storages.contains_key(&key) {
            let name = format!("{}data/{key}", self.prefix);
            let want = size.checked_mul(elem.size()).ok_or_else(|| {
                Error::Limit(format!("storage {key} declares {size} {kind} elements"))
            })?;
            let bytes = self.archive.read_exact(&name, want)?;
            self.storages.insert(key.clone(), (elem, bytes));
        }
        Ok(key)
    }

    /// The tensor a [`Value::Tensor`] view refers to, copied out of its storage.
    pub fn tensor(&mut self, id: Id) -> Result<Tensor> {
        let Value::Tensor(view) = self.pickle.get(id).clone() else {
            return Err(Error::Malformed("value is not a tensor".into()));
        };
        let pid = match self.pickle.get(view.storage) {
            Value::Persistent(pid) => *pid,
            _ => {
                return Err(Error::Malformed(
                    "tensor storage is not a persistent id".into(),
                ))
            }
        };
        let key = self.storage(pid)?;
        let (elem, bytes) = &self.storages[&key];
        let es = elem.size();
        let n = numel(&view.size)?;
        let out_bytes = n
            .checked_mul(es)
            .filter(|&b| b <= self.budget)
            .ok_or_else(|| {
                Error::Limit(format!(
                    "tensor of shape {:?} exceeds what the file can hold",
                    view.size
                ))
            })?;
        let storage_len = bytes.len() / es;
        if n > 0 {
            let last = view
                .size
                .iter()
                .zip(&view.stride)
                .try_fold(view.offset, |acc, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
                });
            if last.is_none_or(|l| l >= storage_len) {
                return Err(Error::Limit(format!(
                    "tensor view (offset {}, size {:?}, stride {:?}) reaches past its storage of {storage_len}",
                    view.offset, view.size, view.stride
                )));
            }
        }
        let mut data = Vec::with_capacity(out_bytes);
        let contiguous = {
            let mut expect = 1;
            let mut ok = true;
            for (&d, &s) in view.size.iter().zip(&view.stride).rev() {
                if d != 1 && s != expect {
                    ok = false;
                }
                expect *= d;
            }
            ok
        };
        if n > 0 && contiguous {
            let start = view.offset * es;
            data.extend_from_slice(&bytes[start..start + out_bytes]);
        } else if n > 0 {
            let mut index = vec![0usize; view.size.len()];
            for _ in 0..n {
                let at: usize = view.offset
                    + index
                        .iter()
                        .zip(&view.stride)
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                data.extend_from_slice(&bytes[at * es..(at + 1) * es]);
                for d in (0..index.len()).rev() {
                    index[d] += 1;
                    if index[d] < view.size[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
        }
        self.budget -= out_bytes;
        to_tensor(*elem, self.big_endian, false, &view.size, &data)
    }

    /// Whether `id` is a pickled `nn.Module` (an object whose state has `_modules`).
    pub fn is_module(&self, id: Id) -> bool {
        self.pickle
            .state(id)
            .and_then(|s| self.pickle.dict_get(s, "_modules"))
            .is_some()
    }

    /// The `state_dict()` of a pickled module: `(key, tensor view id)` in PyTorch's order
    /// (each module's parameters, then its persistent buffers, then its children).
    pub fn module_state_dict(&self, module: Id) -> Result<Vec<(String, Id)>> {
        let mut out = Vec::new();
        // Shared submodules make the tree a DAG: bound the visits and the key text, or a small
        // file could describe exponentially many paths.
        let mut budget = Budget {
            visits: self.pickle.values.len(),
            key_bytes: self.budget,
        };
        self.walk(module, "", 0, &mut out, &mut budget)?;
        Ok(out)
    }

    fn walk(
        &self,
        module: Id,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, Id)>,
        budget: &mut Budget,
    ) -> Result<()> {
        if depth > MAX_MODULE_DEPTH {
            return Err(Error::Limit(format!(
                "module tree deeper than {MAX_MODULE_DEPTH} (at {prefix})"
            )));
        }
        budget.visits = budget.visits.checked_sub(1).ok_or_else(|| {
            Error::Limit("module tree visits more modules than the pickle holds".into())
        })?;
        let p = &self.pickle;
        let state = p
            .state(module)
            .ok_or_else(|| Error::Malformed(format!("module {prefix} has no state")))?;
        let skip: Vec<&str> = match p
            .dict_get(state, "_non_persistent_buffers_set")
            .map(|s| p.get(s))
        {
            Some(Value::Set(items)) => items.iter().filter_map(|&i| p.str(i)).collect(),
            _ => Vec::new(),
        };
        for field in ["_parameters", "_buffers"] {
            let Some(entries) = p.dict_get(state, field).and_then(|d| p.dict(d)) else {
                continue;
            };
            for &(k, v) in entries {
                let name = p.str(k).ok_or_else(|| {
                    Error::Malformed(format!("{prefix}{field} key is not a string"))
                })?;
                if field == "_buffers" && skip.contains(&name) {
                    continue;
                }
                match p.get(v) {
                    Value::None => {}
                    Value::Tensor(_) => {
                        budget.spend(prefix.len() + name.len())?;
                        out.push((format!("{prefix}{name}"), v))
                    }
                    _ => return Err(Error::Malformed(format!("{prefix}{name} is not a tensor"))),
                }
            }
        }
        if let Some(children) = p.dict_get(state, "_modules").and_then(|d| p.dict(d)) {
            for &(k, v) in children {
                let name = p.str(k).ok_or_else(|| {
                    Error::Malformed(format!("{prefix}_modules key is not a string"))
                })?;
                if matches!(p.get(v), Value::None) {
                    continue;
                }
                budget.spend(prefix.len() + name.len())?;
                self.walk(v, &format!("{prefix}{name}."), depth + 1, out, budget)?;
            }
        }
        Ok(())
    }
}

struct Budget {
    visits: usize,
    key_bytes: usize,
}

impl Budget {
    fn spend(&mut self, bytes: usize) -> Result<()> {
        self.key_bytes = self
            .key_bytes
            .checked_sub(bytes)
            .ok_or_else(|| Error::Limit("module tree key names exceed the file size".into()))?;
        Ok(())
    }
}
