//! Checks on every name that becomes part of a cache path. The server supplies the commit, the
//! ETag and the repository's file list; a hostile mirror can answer `..`, an absolute path or a
//! separator in any of them.

use std::path::{Component, Path};

use crate::{Error, Result};

const MAX_ID: usize = 128;
const MAX_FILE_NAME: usize = 1024;

fn refuse(what: &str, value: &str, why: &str) -> Error {
    Error::Hub(format!("refused {what} {value:?}: {why}"))
}

/// A commit hash or an ETag: hex digits and dashes only (git SHA-1, LFS SHA-256, multipart
/// ETags such as `…-12`).
pub fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_ID {
        return Err(refuse(what, value, "not 1 to 128 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(refuse(
            what,
            value,
            "only hex digits and dashes are allowed",
        ));
    }
    Ok(())
}

/// A file inside the repository: relative, with plain components only (no `..`, no root, no
/// drive, no backslash, no empty or `.` part).
pub fn check_file(value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_FILE_NAME {
        return Err(refuse("file name", value, "not 1 to 1024 bytes"));
    }
    if value.contains(['\\', '\0']) || value.chars().any(char::is_control) {
        return Err(refuse("file name", value, "backslash or control character"));
    }
    if value.split('/').any(|part| part.is_empty() || part == ".") {
        return Err(refuse("file name", value, "empty or '.' path component"));
    }
    if !Path::new(value)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(refuse("file name", value, "must be relative, without '..'"));
    }
    Ok(())
}

/// A repository id: `name` or `owner/name`, each part of letters, digits, `-`, `_` and `.`.
pub fn check_repo(value: &str) -> Result<()> {
    let parts: Vec<&str> = value.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if parts.len() > 2 || !parts.iter().all(part_ok) {
        return Err(refuse(
            "repository id",
            value,
            "expected NAME or OWNER/NAME of letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// A revision (branch, tag, commit, `refs/pr/1`): the cache keeps it as a path under `refs/`.
pub fn check_revision(value: &str) -> Result<()> {
    check_file(value).map_err(|_| {
        refuse(
            "revision",
            value,
            "must be a relative name without '..', '.', empty parts or backslashes",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_dashes() {
        assert!(check_id("ETag", "3f2a9c0d").is_ok());
        assert!(check_id("ETag", "3f2a9c0d-12").is_ok());
        for bad in ["", "../x", "/abs", "a/b", "zz", "a b", &"a".repeat(129)] {
            assert!(check_id("ETag", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_stay_inside() {
        for good in ["model.safetensors", "sub/dir/w.pt", "a..b.pt"] {
            assert!(check_file(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(check_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repo_ids() {
        assert!(check_repo("Ultralytics/RT-DETR").is_ok());
        assert!(check_repo("gpt2").is_ok());
        for bad in ["", "a/b/c", "../x", "a/..", "a b/c", "/a"] {
            assert!(check_repo(bad).is_err(), "{bad:?}");
        }
    }
}
