//! `aina::ingest::layout::locate`: where the parts of a PS3.10 file are, read
//! from untrusted uploads (STOW-RS, C-STORE). Errors are expected; panics are
//! bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = aina::ingest::layout::locate(input);
});
