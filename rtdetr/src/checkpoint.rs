//! Writing files safely (safetensors and plain bytes): a temporary file in the target folder, then a rename, so a
//! kill at any moment leaves the previous file intact.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle::Tensor;

/// Writes `tensors` with string `metadata` to `path` atomically.
pub fn save_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> std::io::Result<()> {
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<candle::Result<_>>()
        .map_err(std::io::Error::other)?;
    replace_with(path, |tmp| {
        safetensors::serialize_to_file(
            contiguous.iter().map(|(k, t)| (k.as_str(), t)),
            Some(metadata),
            tmp,
        )
        .map_err(std::io::Error::other)?;
        std::fs::File::open(tmp)?.sync_all()
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })
}

/// Lets `write` fill a temporary file beside `path` (creating the folder), then renames it over
/// `path`; on failure the temporary file is removed and `path` is left as it was.
fn replace_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let meta = HashMap::from([("names".to_string(), "{\"0\": \"a\"}".to_string())]);
        save_atomic(&path, &[("x".into(), t)], meta).unwrap();
        assert_eq!(
            crate::read_metadata(&path).unwrap()["names"],
            "{\"0\": \"a\"}"
        );
        let back = candle::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back["x"].to_vec1::<f32>().unwrap(), [1., 2., 3.]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
