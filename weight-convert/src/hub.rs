//! Downloads from the Hugging Face Hub through `hf-hub` (sync API), honouring `HF_ENDPOINT`,
//! `HF_HOME` (the cache) and `HF_HUB_OFFLINE` (cache only).

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

/// File names tried, in order, when the caller names none: the first repository file with one
/// of these endings.
pub const WEIGHT_ENDINGS: [&str; 5] = [".safetensors", ".pt", ".pth", ".npy", ".bin"];

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}

/// The local path of `file` (or, if `None`, the repository's first weights file) of model
/// repository `repo` at `revision` (default `main`): from the cache when it is there, else
/// downloaded into it.
pub fn download(repo: &str, revision: Option<&str>, file: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main").to_string();
    let repo_ref = Repo::with_revision(repo.to_string(), RepoType::Model, revision.clone());
    let hub_error = |e: hf_hub::api::sync::ApiError| Error::Hub(format!("{repo}@{revision}: {e}"));
    if offline() {
        let file = file.ok_or_else(|| {
            Error::Hub("HF_HUB_OFFLINE is set: name the file in the repository".into())
        })?;
        return Cache::from_env().repo(repo_ref).get(file).ok_or_else(|| {
            Error::Hub(format!(
                "{repo}@{revision}/{file} is not in the cache and HF_HUB_OFFLINE is set"
            ))
        });
    }
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(hub_error)?
        .repo(repo_ref);
    let file = match file {
        Some(f) => f.to_string(),
        None => {
            let info = api.info().map_err(hub_error)?;
            WEIGHT_ENDINGS
                .iter()
                .find_map(|end| {
                    info.siblings
                        .iter()
                        .find(|s| s.rfilename.ends_with(end))
                        .map(|s| s.rfilename.clone())
                })
                .ok_or_else(|| {
                    Error::Hub(format!(
                        "{repo}@{revision} holds no weights file ({WEIGHT_ENDINGS:?})"
                    ))
                })?
        }
    };
    api.get(&file).map_err(hub_error)
}
