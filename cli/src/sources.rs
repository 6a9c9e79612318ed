use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use rtdetr::image_io::{find_images, has_image_extension as is_image};

/// Image files named by `sources`: files as given, folders recursively (sorted), and glob
/// patterns (sorted matches), in the order given.
pub fn expand(sources: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for source in sources {
        let path = Path::new(source);
        if path.is_dir() {
            let found =
                find_images(path).with_context(|| format!("reading folder {}", path.display()))?;
            images.extend(found);
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
