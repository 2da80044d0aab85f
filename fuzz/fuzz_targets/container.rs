//! The stored-object container (`aina::store::container`): its table read on
//! its own, and a whole object decoded. Objects come from the store, which may
//! be damaged; errors are expected, panics are bugs.
#![no_main]

use aina::store::container::{ContainerIndex, decode_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = ContainerIndex::from_bytes(input);
    let _ = decode_all(input);
});
