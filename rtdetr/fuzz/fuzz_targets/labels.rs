//! The YOLO label parser on arbitrary text, with a class count from the first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&nc, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let _ = rtdetr::data::parse_labels(std::path::Path::new("x.txt"), &text, nc as usize);
});
