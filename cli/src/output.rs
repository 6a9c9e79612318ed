use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    rtdetr::checkpoint::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// A JSON value, pretty-printed, written atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// An image encoded by its file extension (PNG when the extension has no encoder), atomically.
pub fn write_image(path: &Path, image: &image::RgbImage) -> anyhow::Result<PathBuf> {
    let format = image::ImageFormat::from_path(path)
        .ok()
        .filter(|f| f.writing_enabled());
    let (path, format) = match format {
        Some(f) => (path.to_path_buf(), f),
        None => (path.with_extension("png"), image::ImageFormat::Png),
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, format)
        .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(&path, bytes.get_ref())?;
    Ok(path)
}
