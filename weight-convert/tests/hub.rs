//! A loopback server plays a hostile hub mirror: every answer must end in a clear error with
//! nothing written outside the cache and no partial blob left in it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use weight_convert::hub::Hub;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const ETAG: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

/// What the server sends for a request path: the status line with headers, and the body.
type Handler = fn(&str) -> (String, Vec<u8>);

fn serve(handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
            let (head, body) = handler(&path);
            let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{address}")
}

fn hub(endpoint: String, root: &Path) -> Hub {
    Hub {
        endpoint,
        cache: root.join("cache"),
        token: None,
        offline: false,
        progress: false,
    }
}

/// Every file under `root` lies in the cache, and the cache holds no partial download.
fn assert_contained(root: &Path) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                walk(&path, out);
            }
            out.push(path);
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    for path in paths {
        assert!(
            path.starts_with(root.join("cache")),
            "{} escaped",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".incomplete"), "partial file {name} left");
        if let Ok(target) = std::fs::canonicalize(&path) {
            assert!(
                target.starts_with(root.canonicalize().unwrap().join("cache")),
                "{}",
                path.display()
            );
        }
    }
    assert!(!root.parent().unwrap().join("escape").exists());
}

fn expect_refused(handler: Handler, file: Option<&str>, message: &str) {
    let root = tempfile::tempdir().unwrap();
    let sandbox = root.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    let error = hub(serve(handler), &sandbox)
        .download("owner/repo", None, file)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(message),
        "{error:?} does not say {message:?}"
    );
    assert!(error.contains("owner/repo@main"), "{error:?}");
    assert_contained(&sandbox);
    assert!(!root.path().join("escape").exists());
}

fn file_head(commit: &str, etag: &str, size: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nX-Repo-Commit: {commit}\r\nETag: \"{etag}\"\r\nContent-Length: {size}\r\n")
}

fn honest(path: &str) -> (String, Vec<u8>) {
    match path {
        "/api/models/owner/repo/revision/main" => (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n".into(),
            br#"{"sha":"x","siblings":[{"rfilename":"README.md"},{"rfilename":"dir/w.safetensors"}]}"#.to_vec(),
        ),
        "/owner/repo/resolve/main/dir/w.safetensors" => (
            format!(
                "HTTP/1.1 302 Found\r\nX-Repo-Commit: {COMMIT}\r\nX-Linked-Etag: \"{ETAG}\"\r\nX-Linked-Size: 11\r\nLocation: /cdn/blob\r\nContent-Length: 0\r\n"
            ),
            Vec::new(),
        ),
        "/cdn/blob" => ("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n".into(), b"hello world".to_vec()),
        _ => ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".into(), Vec::new()),
    }
}

#[test]
fn an_honest_server_fills_the_cache_and_offline_reads_it() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(serve(honest), root.path());
    let path = hub.download("owner/repo", None, None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    let folder = root.path().join("cache/models--owner--repo");
    assert_eq!(
        path,
        folder
            .join("snapshots")
            .join(COMMIT)
            .join("dir/w.safetensors")
    );
    assert!(path.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_contained(root.path());
    let offline = Hub {
        offline: true,
        endpoint: "http://127.0.0.1:9".into(),
        ..hub.clone()
    };
    assert_eq!(
        offline
            .download("owner/repo", None, Some("dir/w.safetensors"))
            .unwrap(),
        path
    );
    assert!(offline
        .download("owner/repo", None, Some("other.pt"))
        .is_err());
}

#[test]
fn an_etag_with_dots_and_slashes_is_refused() {
    expect_refused(
        |_| {
            (
                file_head(COMMIT, "../../../../escape", "5"),
                b"12345".to_vec(),
            )
        },
        Some("w.pt"),
        "ETag",
    );
}

#[test]
fn a_commit_that_is_a_path_is_refused() {
    expect_refused(
        |_| {
            (
                file_head("../../../../escape", ETAG, "5"),
                b"12345".to_vec(),
            )
        },
        Some("w.pt"),
        "commit",
    );
    expect_refused(
        |_| (file_head("/tmp/escape", ETAG, "5"), b"12345".to_vec()),
        Some("w.pt"),
        "commit",
    );
}

#[test]
fn listed_file_names_outside_the_repository_are_refused() {
    expect_refused(
        |_| {
            (
                "HTTP/1.1 200 OK\r\n".into(),
                br#"{"siblings":[{"rfilename":"../../../../escape.safetensors"}]}"#.to_vec(),
            )
        },
        None,
        "file name",
    );
    expect_refused(
        |_| {
            (
                "HTTP/1.1 200 OK\r\n".into(),
                br#"{"siblings":[{"rfilename":"/tmp/escape.pt"}]}"#.to_vec(),
            )
        },
        None,
        "file name",
    );
}

#[test]
fn a_body_longer_than_declared_is_cut_and_refused() {
    expect_refused(
        |_| {
            let head = format!("HTTP/1.1 200 OK\r\nX-Repo-Commit: {COMMIT}\r\nETag: {ETAG}\r\nX-Linked-Size: 100\r\n");
            (head, vec![7u8; 8 << 20])
        },
        Some("w.pt"),
        "longer than the declared 100 bytes",
    );
}

#[test]
fn a_body_shorter_than_declared_is_refused() {
    expect_refused(
        |_| {
            let head = format!("HTTP/1.1 200 OK\r\nX-Repo-Commit: {COMMIT}\r\nETag: {ETAG}\r\nX-Linked-Size: 100\r\n");
            (head, vec![7u8; 50])
        },
        Some("w.pt"),
        "ended after 50 of the declared 100 bytes",
    );
    expect_refused(
        |_| {
            let head = format!("HTTP/1.1 200 OK\r\nX-Repo-Commit: {COMMIT}\r\nETag: {ETAG}\r\nX-Linked-Size: 100\r\nContent-Length: 10\r\n");
            (head, vec![7u8; 10])
        },
        Some("w.pt"),
        "differs from the declared size",
    );
}

#[test]
fn missing_headers_and_redirect_loops_are_errors() {
    expect_refused(
        |_| {
            (
                "HTTP/1.1 200 OK\r\nETag: abc\r\nContent-Length: 1\r\n".into(),
                b"x".to_vec(),
            )
        },
        Some("w.pt"),
        "X-Repo-Commit",
    );
    expect_refused(
        |path| {
            (
                format!("HTTP/1.1 302 Found\r\nLocation: {path}x\r\nContent-Length: 0\r\n"),
                Vec::new(),
            )
        },
        Some("w.pt"),
        "redirects",
    );
}

#[test]
fn names_given_by_the_user_are_checked_too() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub("http://127.0.0.1:9".into(), root.path());
    for (repo, revision, file) in [
        ("../x", None, Some("w.pt")),
        ("owner/repo", Some("../../x"), Some("w.pt")),
        ("owner/repo", None, Some("../w.pt")),
    ] {
        assert!(hub.download(repo, revision, file).is_err());
    }
}

#[test]
fn a_cached_ref_that_is_a_path_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let refs = root.path().join("cache/models--owner--repo/refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), "../../../../escape").unwrap();
    let hub = Hub {
        offline: true,
        ..hub("http://127.0.0.1:9".into(), root.path())
    };
    let error = hub
        .download("owner/repo", None, Some("w.pt"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("commit in the cached ref"), "{error}");
}
