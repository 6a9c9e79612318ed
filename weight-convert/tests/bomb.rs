//! Deflate bombs in `.pt` zips: a storage entry that inflates far past what the pickle's storage
//! needs (here 256 MB of zeros in a 250 KB file, where the storage holds a few hundred floats)
//! is refused before it is inflated. Its own test binary, so that the peak memory read from
//! /proc is this test's.

use std::io::{Cursor, Read, Write};

use weight_convert::{convert_bytes, Options};

const BOMB_BYTES: usize = 256 << 20;

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: usize = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The backbone fixture with its first storage entry replaced by `BOMB_BYTES` of zeros,
/// deflated, written in 1 MB pieces so that building it does not raise the peak.
fn bomb() -> Vec<u8> {
    let real = std::fs::read(fixtures::data_dir().join("convert/backbone_state_dict.pt")).unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(&real)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    let mut replaced = false;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        out.start_file(name.as_str(), deflated).unwrap();
        if !replaced && name.contains("/data/") {
            replaced = true;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..BOMB_BYTES >> 20 {
                out.write_all(&zeros).unwrap();
            }
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.write_all(&data).unwrap();
        }
    }
    assert!(replaced, "the fixture has a storage entry");
    out.finish().unwrap().into_inner()
}

#[test]
fn a_storage_entry_larger_than_its_storage_is_refused_uninflated() {
    let bytes = bomb();
    assert!(bytes.len() < BOMB_BYTES / 100, "{} bytes", bytes.len());
    let before = peak_rss();
    let err = convert_bytes(&bytes, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("declares") && err.contains("its storage needs"),
        "{err}"
    );
    if let (Some(before), Some(after)) = (before, peak_rss()) {
        assert!(
            after - before < 32 << 20,
            "peak memory rose by {} MB",
            (after - before) >> 20
        );
    }
}
