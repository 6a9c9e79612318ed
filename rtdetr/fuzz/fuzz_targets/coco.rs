//! A COCO instances json (with one real 8×8 image beside it) read as a training split.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("a.png"), PNG).unwrap();
    let json = dir.path().join("instances_train.json");
    std::fs::write(&json, data).unwrap();
    let _ = rtdetr::data::from_coco_json(&json);
});

/// An 8×8 RGB PNG.
const PNG: &[u8] = include_bytes!("../../../fixtures/data/fuzz/8x8.png");
