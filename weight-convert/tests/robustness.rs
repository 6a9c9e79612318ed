//! Mutated and truncated versions of the real fixture files (fixtures/gen/gen_convert.py) never
//! panic, hang or over-allocate: every reader returns data or an error. This is the stable-Rust
//! stand-in for the cargo-fuzz targets in `weight-convert/fuzz` (see scripts/fuzz-convert.sh).
//! `PROPTEST_CASES` raises the case count for a longer run.

use std::io::{Cursor, Read, Write};

use proptest::prelude::*;
use proptest::sample::Index;
use weight_convert::{convert_bytes, npy, pickle, Options};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures::data_dir().join("convert").join(name)).unwrap()
}

const FILES: [&str; 8] = [
    "ultralytics_last.pt",
    "ultralytics_best.pt",
    "backbone_state_dict.pt",
    "official_tiny.npy",
    "timm_tiny.safetensors",
    "torchvision_tiny.pth",
    "evil.pt",
    "evil.npy",
];

/// The entries of a torch zip, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().into_owned(), data)
        })
        .collect()
}

/// A zip of `entries` (stored), so a mutated `data.pkl` passes the CRC check and reaches the VM.
fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn mutate(bytes: &mut Vec<u8>, edits: &[(Index, u8)], near_start: bool, cut: Option<Index>) {
    if bytes.is_empty() {
        return;
    }
    for (at, value) in edits {
        let len = if near_start {
            bytes.len().min(4096)
        } else {
            bytes.len()
        };
        let i = at.index(len);
        bytes[i] = *value;
    }
    if let Some(cut) = cut {
        let n = cut.index(bytes.len() + 1);
        bytes.truncate(n);
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(
        file in 0..FILES.len(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..12),
        near_start in any::<bool>(),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = fixture(FILES[file]);
        mutate(&mut bytes, &edits, near_start, cut);
        let _ = convert_bytes(&bytes, &Options::default());
    }

    #[test]
    fn mutated_checkpoint_pickles_never_panic(
        file in 0..3usize,
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut entries = unzip(&fixture(FILES[file]));
        let pkl = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
        mutate(&mut entries[pkl].1, &edits, false, cut);
        let _ = pickle::parse(&entries[pkl].1);
        let _ = convert_bytes(&rezip(&entries), &Options::default());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = pickle::parse(&bytes);
        let _ = npy::read(&bytes);
        let _ = convert_bytes(&bytes, &Options::default());
        let mut with_magic = npy::MAGIC.to_vec();
        with_magic.extend(&bytes);
        let _ = npy::read(&with_magic);
    }
}

/// A module tree whose every level holds the same child twice describes 2^depth paths in a few
/// hundred bytes; the walk must stop on its budget instead of hanging.
#[test]
fn shared_submodules_do_not_explode() {
    // Built by hand: m0 = Module(); m_{k+1}._modules = {'a': m_k, 'b': m_k}; 60 levels.
    let mut p = b"\x80\x02".to_vec();
    let module = |p: &mut Vec<u8>| {
        p.extend(b"ctorch.nn\nModule\n)\x81");
    };
    // level 0: Module with empty _parameters/_buffers/_modules, memo 0
    module(&mut p);
    p.extend(b"}(X\x08\x00\x00\x00_modules}ub");
    p.extend(b"q\x00");
    for k in 0..60u8 {
        module(&mut p);
        p.extend(b"}(X\x08\x00\x00\x00_modules}(X\x01\x00\x00\x00ah");
        p.push(k);
        p.extend(b"X\x01\x00\x00\x00bh");
        p.push(k);
        p.extend(b"uub");
        p.extend(b"q");
        p.push(k + 1);
    }
    p.push(b'.');
    let parsed = pickle::parse(&p).unwrap();
    assert!(parsed.class_name(parsed.root).is_some());
    let entries = vec![
        ("archive/data.pkl".to_string(), p),
        ("archive/version".to_string(), b"3\n".to_vec()),
    ];
    let start = std::time::Instant::now();
    let result = convert_bytes(&rezip(&entries), &Options::default());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("limit exceeded"), "{err}");
    assert!(start.elapsed().as_secs() < 5);
}
