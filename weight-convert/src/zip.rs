//! The zip container of `torch.save` files (stored or deflated entries), with every entry's size
//! checked before it is read.

use std::io::{Cursor, Read};

use crate::{Error, Result};

/// The zip magic (`PK\x03\x04`).
pub const MAGIC: &[u8] = b"PK\x03\x04";

/// Deflate cannot expand more than about 1032:1; a larger declared ratio is a lie.
const MAX_RATIO: u64 = 1032;

/// What all entries together may inflate to, as a multiple of the archive's size (plus
/// [`INFLATE_SLACK`]): weights barely compress, so a file that inflates to many times its size
/// is a bomb, whatever each entry's ratio.
const INFLATE_FACTOR: usize = 32;
const INFLATE_SLACK: usize = 16 << 20;

/// A zip archive held in memory.
pub struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    len: usize,
    /// Bytes inflated so far, against [`INFLATE_FACTOR`].
    inflated: usize,
}

impl std::fmt::Debug for Archive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("entries", &self.zip.len())
            .finish()
    }
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Malformed(format!("zip: {e}"))
}

impl<'a> Archive<'a> {
    /// Opens the archive (reads its central directory).
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
        Ok(Self {
            zip,
            len: bytes.len(),
            inflated: 0,
        })
    }

    /// Entry names in archive order.
    pub fn names(&self) -> Result<Vec<String>> {
        self.zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()).map_err(zip_error))
            .collect()
    }

    /// The bytes of entry `name`, which must declare exactly `expected` bytes (a storage of
    /// `numel × element size`): an entry that declares more is refused before it is inflated.
    pub fn read_exact(&mut self, name: &str, expected: usize) -> Result<Vec<u8>> {
        let declared = self
            .zip
            .by_name(name)
            .map_err(|e| match e {
                zip::result::ZipError::FileNotFound => {
                    Error::Malformed(format!("zip has no entry {name}"))
                }
                e => zip_error(e),
            })?
            .size();
        if declared != expected as u64 {
            return Err(Error::Limit(format!(
                "zip entry {name} declares {declared} bytes, its storage needs {expected}"
            )));
        }
        self.read(name)
    }

    /// The bytes of entry `name`.
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let budget = self
            .len
            .saturating_mul(INFLATE_FACTOR)
            .saturating_add(INFLATE_SLACK);
        let mut entry = self.zip.by_name(name).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => {
                Error::Malformed(format!("zip has no entry {name}"))
            }
            e => zip_error(e),
        })?;
        let size = entry.size();
        let packed = entry.compressed_size();
        if size > packed.saturating_mul(MAX_RATIO).saturating_add(64) {
            return Err(Error::Limit(format!(
                "zip entry {name} declares {size} bytes from {packed} compressed"
            )));
        }
        let size = usize::try_from(size)
            .map_err(|_| Error::Limit(format!("zip entry {name} is too large")))?;
        if self.inflated.saturating_add(size) > budget {
            return Err(Error::Limit(format!(
                "zip entries inflate past {budget} bytes ({INFLATE_FACTOR}× the file): a zip bomb"
            )));
        }
        self.inflated += size;
        // Both sizes are declared, not measured: reserve no more than the archive itself.
        let mut out = Vec::with_capacity(size.min(self.len));
        (&mut entry)
            .take(size as u64)
            .read_to_end(&mut out)
            .map_err(|e| Error::Malformed(format!("zip entry {name}: {e}")))?;
        if out.len() != size {
            return Err(Error::Truncated(format!(
                "zip entry {name} holds {} of its {size} bytes",
                out.len()
            )));
        }
        Ok(out)
    }
}
