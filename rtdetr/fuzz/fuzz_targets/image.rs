//! The dataset scan's image check, and the decoder behind it when the check passes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    if rtdetr::image_io::verify_image(file.path()).is_ok() {
        let _ = rtdetr::image_io::open_upright(file.path());
    }
});
