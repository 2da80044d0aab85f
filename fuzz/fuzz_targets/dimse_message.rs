//! The DIMSE message reader (`aina::dimse::message`): the input is cut into
//! presentation data values — one header byte each for context, command/data
//! and last flags, one for the length — fed to one `Assembler`; the first
//! fragment is also parsed as a command set on its own. Errors are expected;
//! panics are bugs.
#![no_main]

use aina::dimse::message::{Assembler, Command};
use dicom_ul::pdu::{PDataValue, PDataValueType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = Command::parse(input);
    let mut assembler = Assembler::new(1024);
    let mut rest = input;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (data, tail) = tail.split_at(len);
        rest = tail;
        let pdv = PDataValue {
            presentation_context_id: flags & 0x03,
            value_type: if flags & 0x04 == 0 {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            },
            is_last: flags & 0x08 != 0,
            data: data.to_vec(),
        };
        if assembler.push(pdv).is_err() {
            assembler = Assembler::new(1024);
        }
    }
});
