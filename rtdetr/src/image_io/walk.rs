//! Finding the images of a folder tree.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files under `dir`, recursively, sorted within each folder. Links are followed, but
/// each real folder is visited once and each real file listed once, so a link loop neither
/// repeats images nor recurses forever; only regular files count (a FIFO or device named
/// `x.png` would block its reader).
pub fn find_images(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    find_files(dir, &has_image_extension)
}

/// The regular files under `dir` that `wanted` accepts, walked as [`find_images`] walks.
pub fn find_files(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let (mut folders, mut files) = (HashSet::new(), HashSet::new());
    walk(dir, wanted, &mut folders, &mut files, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    wanted: &dyn Fn(&Path) -> bool,
    folders: &mut HashSet<PathBuf>,
    files: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    if !folders.insert(dir.canonicalize()?) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        // A dangling link has no metadata: skipped, as `is_dir`/`is_file` would.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, wanted, folders, files, out)?;
        } else if meta.is_file() && wanted(&path) && files.insert(path.canonicalize()?) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Two link loops (one to the root, one between siblings), a linked duplicate of an image,
    /// a FIFO and a dangling link: each real image once, and the walk ends.
    #[test]
    fn link_loops_and_special_files() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("c")).unwrap();
        for f in ["a/1.png", "a/b/2.JPG", "c/3.jpg", "c/notes.txt"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        symlink(root, root.join("a/b/up")).unwrap();
        symlink(root.join("c"), root.join("a/to_c")).unwrap();
        symlink(root.join("a"), root.join("c/to_a")).unwrap();
        symlink(root.join("a/1.png"), root.join("c/same.png")).unwrap();
        symlink(root.join("gone.png"), root.join("c/dangling.png")).unwrap();
        let fifo = root.join("c/pipe.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let images = find_images(root).unwrap();
        let names: Vec<String> = images
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1.png", "2.JPG", "3.jpg"], "{images:?}");
        assert!(made.is_err() || fifo.exists());
    }
}
