//! The two requests a download needs, over `ureq` (the client hf-hub itself uses): the
//! repository's file list, and one file, with redirects followed by hand so that the hub's own
//! answer (commit, ETag, size) is read before the body goes to the CDN.

use std::io::{Read, Write};
use std::time::Duration;

use serde::Deserialize;

use super::names::check_id;
use crate::{Error, Result};

const MAX_REDIRECTS: usize = 5;
const MAX_INFO_BYTES: u64 = 16 << 20;

/// What the hub says about one file before its body is read.
#[derive(Debug)]
pub struct FileHead {
    /// The commit the revision resolved to (checked: hex and dashes).
    pub commit: String,
    /// The content id the cache names the blob by (checked: hex and dashes).
    pub etag: String,
    /// The declared length in bytes; the body is refused if it differs.
    pub size: u64,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
}

#[derive(Deserialize)]
struct RepoInfo {
    #[serde(default)]
    siblings: Vec<Sibling>,
}

pub struct Client {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

fn http_error(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::Status(code, _) => Error::Hub(format!("{url}: the server answered {code}")),
        ureq::Error::Transport(t) => Error::Hub(format!("{url}: {t}")),
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters pass).
fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

impl Client {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("rtdetr-rs/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    fn get(&self, url: &str) -> ureq::Request {
        // A compressed body would not match the declared size.
        let request = self.agent.get(url).set("Accept-Encoding", "identity");
        // The token is for the hub, not for wherever it redirects to.
        match &self.token {
            Some(token) if url.starts_with(&self.endpoint) => {
                request.set("Authorization", &format!("Bearer {token}"))
            }
            _ => request,
        }
    }

    /// The repository's file names, as the server lists them (unchecked).
    pub fn files(&self, repo: &str, revision: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            encode_path(repo),
            encode_segment(revision)
        );
        let response = self.get(&url).call().map_err(|e| http_error(&url, e))?;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_INFO_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::Hub(format!("{url}: {e}")))?;
        if body.len() as u64 > MAX_INFO_BYTES {
            return Err(Error::Hub(format!(
                "{url}: the repository listing is over {} MiB",
                MAX_INFO_BYTES >> 20
            )));
        }
        let info: RepoInfo = serde_json::from_slice(&body)
            .map_err(|e| Error::Hub(format!("{url}: not a repository listing: {e}")))?;
        Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
    }

    /// Requests `file` (already checked) and returns the hub's checked head with the response
    /// that carries the body.
    pub fn open(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<(FileHead, ureq::Response)> {
        let mut url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            encode_path(repo),
            encode_segment(revision),
            encode_path(file)
        );
        let mut commit = None;
        let mut etag = None;
        let mut size = None;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(&url).call().map_err(|e| http_error(&url, e))?;
            let header = |name| response.header(name).map(str::to_string);
            commit = commit.or_else(|| header("x-repo-commit"));
            etag = etag.or_else(|| header("x-linked-etag").or_else(|| header("etag")));
            size = size.or_else(|| header("x-linked-size"));
            if !(300..400).contains(&response.status()) {
                let size = size.or_else(|| header("content-length"));
                let head = checked_head(&url, commit, etag, size)?;
                if let Some(length) = response.header("content-length") {
                    if length.trim().parse::<u64>().ok() != Some(head.size) {
                        return Err(Error::Hub(format!(
                            "{url}: Content-Length {length} differs from the declared size {}",
                            head.size
                        )));
                    }
                }
                return Ok((head, response));
            }
            let location = response.header("location").ok_or_else(|| {
                Error::Hub(format!("{url}: a redirect without a Location header"))
            })?;
            url = if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else if location.starts_with('/') {
                format!("{}{location}", origin(&url))
            } else {
                return Err(Error::Hub(format!(
                    "{url}: unsupported redirect location {location:?}"
                )));
            };
        }
        Err(Error::Hub(format!(
            "{url}: more than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

fn checked_head(
    url: &str,
    commit: Option<String>,
    etag: Option<String>,
    size: Option<String>,
) -> Result<FileHead> {
    let missing = |what| Error::Hub(format!("{url}: the answer has no {what} header"));
    let commit = commit.ok_or_else(|| missing("X-Repo-Commit"))?;
    let etag = etag.ok_or_else(|| missing("ETag"))?;
    let etag = etag.trim().trim_start_matches("W/").replace('"', "");
    let size = size.ok_or_else(|| missing("X-Linked-Size or Content-Length"))?;
    check_id("commit", commit.trim()).map_err(|e| Error::Hub(format!("{url}: {e}")))?;
    check_id("ETag", &etag).map_err(|e| Error::Hub(format!("{url}: {e}")))?;
    let size = size
        .trim()
        .parse()
        .map_err(|_| Error::Hub(format!("{url}: declared size {size:?} is not a number")))?;
    Ok(FileHead {
        commit: commit.trim().to_string(),
        etag,
        size,
    })
}

/// Copies exactly `size` bytes of `body` into `out`, refusing a body that is shorter or longer
/// (a server may send far more than it declared); `progress(done)` after each chunk.
pub fn copy_exact(
    body: impl Read,
    size: u64,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let mut body = body.take(size.saturating_add(1));
    let mut buffer = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Hub(format!("reading the body: {e}"))),
        };
        done += n as u64;
        if done > size {
            return Err(Error::Hub(format!(
                "the body is longer than the declared {size} bytes"
            )));
        }
        out.write_all(&buffer[..n])?;
        progress(done);
    }
    if done != size {
        return Err(Error::Hub(format!(
            "the body ended after {done} of the declared {size} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_path("a b/c?.pt"), "a%20b/c%3F.pt");
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
    }

    #[test]
    fn origin_of_urls() {
        assert_eq!(origin("http://127.0.0.1:8/a/b"), "http://127.0.0.1:8");
        assert_eq!(origin("https://h.co"), "https://h.co");
    }

    #[test]
    fn bodies_must_match_their_size() {
        let mut out = Vec::new();
        assert!(copy_exact(&[1u8; 10][..], 10, &mut out, |_| {}).is_ok());
        assert_eq!(out.len(), 10);
        assert!(copy_exact(&[1u8; 11][..], 10, &mut Vec::new(), |_| {}).is_err());
        assert!(copy_exact(&[1u8; 9][..], 10, &mut Vec::new(), |_| {}).is_err());
    }
}
