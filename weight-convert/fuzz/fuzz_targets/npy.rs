//! The npy reader (header parser, numeric data, object pickles) on arbitrary bytes after the magic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = weight_convert::npy::MAGIC.to_vec();
    bytes.extend_from_slice(data);
    let _ = weight_convert::npy::read(&bytes);
    let _ = weight_convert::convert_bytes(&bytes, &Default::default());
});
