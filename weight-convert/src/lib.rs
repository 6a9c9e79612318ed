//! Converts the weights people hold into safetensors keyed like this workspace's modules.
//!
//! Reads, from their content: ultralytics checkpoints (`best.pt`: a `torch.save` zip holding the
//! whole pickled `nn.Module` tree, usually fp16), plain PyTorch state dicts, the official
//! EfficientNetV2 `.npy` releases (a pickled dict of TensorFlow-named arrays), and timm /
//! torchvision EfficientNetV2 weights. Nothing in a pickle is ever run: [`pickle`] is a small
//! virtual machine that builds inert data and interprets only the constructors weights need, and
//! every declared size is checked against the bytes present before anything is allocated.
//!
//! Port of the seed's `load_npy` name map (`shared/seed`) and of `torch.load`'s zip layout;
//! the key names are those of `shared/reference/seed_rtdetr.py`'s `state_dict()`.
//!
//! ```
//! use weight_convert::{convert_bytes, Options};
//!
//! // An empty or foreign file is one clear error, never a panic.
//! let err = convert_bytes(b"hello", &Options::default()).unwrap_err();
//! assert!(err.to_string().contains("not a torch.save zip"));
//! ```

#![warn(missing_docs)]

mod convert;
pub mod elem;
mod error;
pub mod hub;
pub mod npy;
pub mod official;
pub mod pickle;
pub mod rename;
pub mod timm;
pub mod torch;
pub mod torchvision;
mod unique_keys;
pub mod zip;

pub use convert::{convert_bytes, convert_file, sniff, Container, Converted, Options, Source};
pub use error::{Error, Result};
