//! Mutated and truncated versions of valid dataset inputs never panic, hang or over-allocate: the
//! label parser, data.yaml, COCO instances json and the scan's image check return data or an
//! error. The stable-Rust stand-in for the cargo-fuzz targets in `rtdetr/fuzz` (see
//! scripts/fuzz-data.sh). `PROPTEST_CASES` raises the case count for a longer run.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use rtdetr::data::{from_coco_json, parse_labels, parse_yaml, DataYaml};

const LABELS: &str = "0 0.5 0.5 0.2 0.2\n1 0.1 0.2 0.3 0.4\n2 0.1 0.1 0.2 0.1 0.3 0.3 0.1 0.3\n";
const YAMLS: [&str; 2] = [
    "path: .\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n",
    "train: [a, b]\nval: c\nnc: 2\nnames: [x, \"y z\"]\n",
];
const IMAGES: [&str; 4] = ["8x8.png", "8x8.jpg", "8x8.webp", "8x8.bmp"];

fn mutate(bytes: &mut Vec<u8>, edits: &[(Index, u8)], cut: Option<Index>) {
    if !bytes.is_empty() {
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
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

fn read_yaml(text: &str) {
    let _ = parse_yaml::<serde_yaml_ng::Value>(text);
    if let Ok(yaml) = parse_yaml::<DataYaml>(text) {
        if yaml.class_count() <= rtdetr::MAX_CLASSES {
            let _ = yaml.names();
        }
    }
}

fn read_coco(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(
        fixtures::data_dir().join("fuzz/8x8.png"),
        images.join("a.png"),
    )
    .unwrap();
    let json = dir.path().join("instances_train.json");
    std::fs::write(&json, bytes).unwrap();
    let _ = from_coco_json(&json);
}

fn check_image(bytes: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    if rtdetr::image_io::verify_image(file.path()).is_ok() {
        rtdetr::image_io::open_upright(file.path()).expect("an image that passed the scan decodes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_labels_never_panic(
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..12),
        cut in prop::option::of(any::<Index>()),
        nc in 0..4usize,
    ) {
        let mut bytes = LABELS.as_bytes().to_vec();
        mutate(&mut bytes, &edits, cut);
        let _ = parse_labels(Path::new("x.txt"), &String::from_utf8_lossy(&bytes), nc);
    }

    #[test]
    fn mutated_yaml_never_panics(
        file in 0..YAMLS.len(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..12),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = YAMLS[file].as_bytes().to_vec();
        mutate(&mut bytes, &edits, cut);
        read_yaml(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_coco_json_never_panics(
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = std::fs::read(fixtures::data_dir().join("coco/instances.json")).unwrap();
        mutate(&mut bytes, &edits, cut);
        read_coco(&bytes);
    }

    #[test]
    fn mutated_images_never_panic_and_pass_only_if_they_decode(
        file in 0..IMAGES.len(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = std::fs::read(fixtures::data_dir().join("fuzz").join(IMAGES[file])).unwrap();
        mutate(&mut bytes, &edits, cut);
        check_image(&bytes);
    }

    #[test]
    fn random_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_labels(Path::new("x.txt"), &text, 3);
        read_yaml(&text);
    }
}
