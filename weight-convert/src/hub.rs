//! Downloads from the Hugging Face Hub into its standard cache (`$HF_HOME/hub`, the layout
//! `huggingface_hub` and `hf-hub` share), honouring `HF_ENDPOINT`, `HF_HOME`, the saved token
//! and `HF_HUB_OFFLINE`.
//!
//! `hf-hub` gives the cache location, the token and the repository folder names; the requests
//! and the cache writes are ours because hf-hub 0.4 builds paths from whatever the server sends
//! (a mirror answering `ETag: ../../x` writes outside the cache) and reads bodies without a
//! bound. Here every server-supplied name is checked before it touches the file system
//! ([`names`]), the body must be exactly its declared size, and the blob appears only complete
//! (written beside it, then renamed).

mod fetch;
pub mod names;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};
use names::{check_file, check_id, check_repo, check_revision};

/// File names tried, in order, when the caller names none: the first repository file with one
/// of these endings.
pub const WEIGHT_ENDINGS: [&str; 5] = [".safetensors", ".pt", ".pth", ".npy", ".bin"];

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where to download from and where to keep what was downloaded.
#[derive(Debug, Clone)]
pub struct Hub {
    /// The server, e.g. `https://huggingface.co` or a mirror.
    pub endpoint: String,
    /// The hub cache folder (`$HF_HOME/hub`).
    pub cache: PathBuf,
    /// Sent to the endpoint (never to the hosts it redirects to).
    pub token: Option<String>,
    /// Serve from the cache only.
    pub offline: bool,
    /// Print the download's progress on stderr.
    pub progress: bool,
}

impl Hub {
    /// The endpoint, cache, token and offline switch the Hugging Face tools read from the
    /// environment.
    pub fn from_env() -> Self {
        let cache = Cache::from_env();
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        Self {
            endpoint: std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into()),
            token: cache.token(),
            cache: cache.path().clone(),
            offline,
            progress: false,
        }
    }

    /// The local path of `file` (or, if `None`, the repository's first weights file) of model
    /// repository `repo` at `revision` (default `main`): from the cache when it is there, else
    /// downloaded into it.
    pub fn download(
        &self,
        repo: &str,
        revision: Option<&str>,
        file: Option<&str>,
    ) -> Result<PathBuf> {
        let revision = revision.unwrap_or("main");
        check_repo(repo)?;
        check_revision(revision)?;
        if let Some(file) = file {
            check_file(file)?;
        }
        let context = |e: Error| match e {
            Error::Hub(m) => Error::Hub(format!("{repo}@{revision}: {m}")),
            e => e,
        };
        let folder = self
            .cache
            .join(Repo::with_revision(repo.into(), RepoType::Model, revision.into()).folder_name());
        if let Some(file) = file {
            if let Some(path) = cached(&folder, revision, file).map_err(context)? {
                return Ok(path);
            }
        }
        if self.offline {
            return Err(Error::Hub(match file {
                Some(file) => format!(
                    "{repo}@{revision}/{file} is not in the cache {} and HF_HUB_OFFLINE is set",
                    self.cache.display()
                ),
                None => "HF_HUB_OFFLINE is set: name the file in the repository".into(),
            }));
        }
        let client = fetch::Client::new(&self.endpoint, self.token.clone());
        let file = match file {
            Some(file) => file.to_string(),
            None => first_weights_file(client.files(repo, revision).map_err(context)?)
                .map_err(context)?,
        };
        self.fetch(&client, &folder, repo, revision, &file)
            .map_err(context)
    }

    fn fetch(
        &self,
        client: &fetch::Client,
        folder: &Path,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<PathBuf> {
        let (head, response) = client.open(repo, revision, file)?;
        let blobs = folder.join("blobs");
        fs::create_dir_all(&blobs)?;
        let blob = blobs.join(&head.etag);
        let complete = fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == head.size);
        if !complete {
            let partial = blobs.join(format!(".{}.{}.incomplete", head.etag, std::process::id()));
            let written = write_blob(&partial, response, head.size, self.progress.then_some(file));
            if let Err(e) = written.and_then(|()| Ok(fs::rename(&partial, &blob)?)) {
                let _ = fs::remove_file(&partial);
                return Err(e);
            }
        }
        let snapshot = folder.join("snapshots").join(&head.commit).join(file);
        link_snapshot(&blob, &snapshot, file)?;
        if revision != head.commit {
            write_ref(&folder.join("refs").join(revision), &head.commit)?;
        }
        Ok(snapshot)
    }
}

/// [`Hub::download`] with the settings of [`Hub::from_env`] and progress on stderr.
pub fn download(repo: &str, revision: Option<&str>, file: Option<&str>) -> Result<PathBuf> {
    Hub {
        progress: true,
        ..Hub::from_env()
    }
    .download(repo, revision, file)
}

fn first_weights_file(files: Vec<String>) -> Result<String> {
    let file = WEIGHT_ENDINGS
        .iter()
        .find_map(|end| files.iter().find(|f| f.ends_with(end)))
        .ok_or_else(|| Error::Hub(format!("holds no weights file ({WEIGHT_ENDINGS:?})")))?;
    check_file(file)?;
    Ok(file.clone())
}

/// The cached snapshot of `file` at `revision`, when the ref names a checked commit and the file
/// is there.
fn cached(folder: &Path, revision: &str, file: &str) -> Result<Option<PathBuf>> {
    let commit = if check_id("commit", revision).is_ok()
        && folder.join("snapshots").join(revision).is_dir()
    {
        revision.to_string()
    } else {
        match fs::read_to_string(folder.join("refs").join(revision)) {
            Ok(commit) => commit.trim().to_string(),
            Err(_) => return Ok(None),
        }
    };
    check_id("commit in the cached ref", &commit)?;
    let path = folder.join("snapshots").join(commit).join(file);
    Ok(path.is_file().then_some(path))
}

fn write_blob(
    path: &Path,
    response: ureq::Response,
    size: u64,
    progress: Option<&str>,
) -> Result<()> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut shown = 0;
    let report = |done: u64| {
        let Some(file) = progress else { return };
        let tenth = (done * 10).checked_div(size).unwrap_or(10);
        if tenth > shown || done == size {
            shown = tenth;
            eprintln!("downloading {file}: {} of {} MB", done >> 20, size >> 20);
        }
    };
    fetch::copy_exact(response.into_reader(), size, &mut out, report)?;
    out.flush()?;
    out.sync_all()?;
    Ok(())
}

/// `snapshots/COMMIT/FILE` → `blobs/ETAG` as a relative link (a copy where links fail).
fn link_snapshot(blob: &Path, snapshot: &Path, file: &str) -> Result<()> {
    if let Some(parent) = snapshot.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::symlink_metadata(snapshot).is_ok() {
        fs::remove_file(snapshot)?;
    }
    #[cfg(unix)]
    {
        let up = "../".repeat(1 + file.split('/').count());
        let target = Path::new(&up)
            .join("blobs")
            .join(blob.file_name().unwrap_or_default());
        if std::os::unix::fs::symlink(&target, snapshot).is_ok() {
            return Ok(());
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    fs::copy(blob, snapshot)?;
    Ok(())
}

fn write_ref(path: &Path, commit: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension(format!("{}.incomplete", std::process::id()));
    fs::write(&partial, commit)?;
    fs::rename(&partial, path)?;
    Ok(())
}
