use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// File extensions `detect` reads.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Image files named by `sources`: files as given, folders recursively (sorted), and glob
/// patterns (sorted matches), in the order given.
pub fn expand(sources: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for source in sources {
        let path = Path::new(source);
        if path.is_dir() {
            walk(path, &mut images)?;
        } else if path.is_file() {
            images.push(path.to_path_buf());
        } else if source.contains(['*', '?', '[']) {
            let mut matches: Vec<PathBuf> = glob::glob(source)
                .with_context(|| format!("bad glob pattern {source:?}"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            matches.sort();
            if matches.is_empty() {
                bail!("{source}: no image matches this pattern");
            }
            images.extend(matches);
        } else {
            bail!("{source}: no such file or folder");
        }
    }
    if images.is_empty() {
        bail!("no images found in {}", sources.join(", "));
    }
    Ok(images)
}
