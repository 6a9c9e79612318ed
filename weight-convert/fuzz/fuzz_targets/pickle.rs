//! The pickle VM on arbitrary bytes: data or an error, never a panic, hang or huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = weight_convert::pickle::parse(data) {
        let _ = weight_convert::npy::object_item(&p);
    }
});
