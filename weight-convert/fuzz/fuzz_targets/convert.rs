//! The whole converter (zip, torch rebuild, module walk, name maps) on arbitrary bytes; seed the
//! corpus with fixtures/data/convert/* (scripts/fuzz-convert.sh does).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weight_convert::convert_bytes(data, &Default::default());
});
