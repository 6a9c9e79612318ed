//! Writing files safely (safetensors and plain bytes): a temporary file in the target folder, then a rename, so a
//! kill at any moment leaves the previous file intact.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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
        // safetensors writes through a temporary of its own (`.tmpXXXXXX`, preallocated to the
        // full size) beside its target: give it a folder named after ours, so that what a kill
        // leaves behind is recognisably ours and removed by the next write.
        let staging = PathBuf::from(format!("{}.d", tmp.display()));
        std::fs::create_dir_all(&staging)?;
        let inner = staging.join("file");
        let written = safetensors::serialize_to_file(
            contiguous.iter().map(|(k, t)| (k.as_str(), t)),
            Some(metadata),
            &inner,
        )
        .map_err(std::io::Error::other)
        .and_then(|()| std::fs::File::open(&inner)?.sync_all())
        .and_then(|()| std::fs::rename(&inner, tmp));
        let _ = std::fs::remove_dir_all(&staging);
        written
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
    remove_stale_temporaries(dir, name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporaries of `name` that a killed writer left in `dir`: `.{name}.{pid}.tmp…`
/// (anything a library writes inside ours included) whose process no longer runs. Only where
/// that can be told (`/proc`); elsewhere they stay.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, tail)) = rest.split_once('.') else {
            continue;
        };
        let dead = pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if dead && tail.starts_with("tmp") {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
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

    /// Temporaries of a writer killed mid-write (a pid above Linux's maximum never runs) go at
    /// the next write of the same file; a live writer's, other files' and other names stay.
    #[cfg(target_os = "linux")]
    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = 4_194_400;
        let mine = std::process::id();
        let files = [
            format!(".w.safetensors.{dead}.tmp"),
            format!(".w.safetensors.{dead}.tmp.inner"),
            format!(".w.safetensors.{dead}.tmp.d"),
            format!(".w.safetensors.{mine}.tmp.other-thread"),
            format!(".other.safetensors.{dead}.tmp"),
            "keep.txt".to_string(),
        ];
        for f in &files {
            if f.ends_with(".d") {
                std::fs::create_dir(dir.path().join(f)).unwrap();
                std::fs::write(dir.path().join(f).join(".tmpAb12Cd"), b"partial").unwrap();
            } else {
                std::fs::write(dir.path().join(f), b"partial").unwrap();
            }
        }
        write_atomic(&dir.path().join("w.safetensors"), b"done").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            files[3].clone(),
            files[4].clone(),
            files[5].clone(),
            "w.safetensors".into(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
