//! ultralytics' output folders: `runs/detect/predict`, `predict2`, ... (the first free one), or
//! the plain name again with `--exist-ok`; an explicit `--save-dir` always wins.

use std::path::{Path, PathBuf};

/// `root/name`, `root/name2`, ...: the first that does not exist, or `root/name` when `exist_ok`.
pub fn next(root: &Path, name: &str, exist_ok: bool) -> PathBuf {
    let first = root.join(name);
    if exist_ok {
        return first;
    }
    (1..)
        .map(|n| match n {
            1 => first.clone(),
            n => root.join(format!("{name}{n}")),
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::next;

    #[test]
    fn numbers_follow_the_first_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(next(root, "predict", false), root.join("predict"));
        std::fs::create_dir(root.join("predict")).unwrap();
        assert_eq!(next(root, "predict", false), root.join("predict2"));
        std::fs::create_dir(root.join("predict2")).unwrap();
        assert_eq!(next(root, "predict", false), root.join("predict3"));
        assert_eq!(next(root, "predict", true), root.join("predict"));
    }
}
