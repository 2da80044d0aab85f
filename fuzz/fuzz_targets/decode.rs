//! Pixel decoding (`aina::render::decode`) of hostile objects: the first 12
//! bytes choose the transfer syntax and the Image Pixel attributes, the rest
//! is the Pixel Data (native, or fragments split at `FRAG`). Every frame is
//! decoded, then the whole object transcoded. Errors are expected; panics,
//! aborts and runaway allocations are bugs.
//!
//! The object is built here rather than parsed from PS3.10 bytes: dicom-parser
//! reserves each element's declared length before reading it, so a raw-file
//! target spends its runs in (and dies of) multi-gigabyte parser allocations
//! instead of reaching the codecs.
#![no_main]

use aina::render::decode::{decode_frame, frame_count, to_explicit_le};
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use libfuzzer_sys::fuzz_target;

const SYNTAXES: [&str; 13] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::RLE_LOSSLESS,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K,
];

const PHOTOMETRIC: [&str; 8] = [
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
];

fn us(obj: &mut InMemDicomObject, tag: dicom_core::Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

fuzz_target!(|input: &[u8]| {
    let Some((head, pixels)) = input.split_first_chunk::<12>() else {
        return;
    };
    let ts = SYNTAXES[usize::from(head[0]) % SYNTAXES.len()];
    // Frames up to 1024×1024 keep runs fast; the 1 GiB bound has a unit test.
    let rows = 1 + u16::from_le_bytes([head[1], head[2]]) % 1024;
    let columns = 1 + u16::from_le_bytes([head[3], head[4]]) % 1024;
    let photometric = PHOTOMETRIC[usize::from(head[10]) % PHOTOMETRIC.len()];

    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("2.25.1"),
    ));
    us(&mut obj, tags::ROWS, rows);
    us(&mut obj, tags::COLUMNS, columns);
    us(
        &mut obj,
        tags::BITS_ALLOCATED,
        [1, 8, 16, 32, 12][usize::from(head[5]) % 5],
    );
    us(&mut obj, tags::BITS_STORED, u16::from(head[6] % 33));
    us(&mut obj, tags::HIGH_BIT, u16::from(head[7] % 33));
    us(&mut obj, tags::PIXEL_REPRESENTATION, u16::from(head[8] & 1));
    us(&mut obj, tags::SAMPLES_PER_PIXEL, u16::from(head[9] % 4));
    us(
        &mut obj,
        tags::PLANAR_CONFIGURATION,
        u16::from(head[11] & 1),
    );
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(photometric),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from((1 + (head[11] >> 1) % 4).to_string()),
    ));
    if photometric == "PALETTE COLOR" {
        let ramp: Vec<u16> = (0..256u16).map(|i| i * 257).collect();
        for (descriptor, data) in [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
        ] {
            obj.put(DataElement::new(
                descriptor,
                VR::US,
                PrimitiveValue::from([256u16, 0, 16]),
            ));
            obj.put(DataElement::new(
                data,
                VR::OW,
                PrimitiveValue::U16(ramp.clone().into()),
            ));
        }
    }
    if ts == uids::EXPLICIT_VR_LITTLE_ENDIAN {
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pixels.to_vec()),
        ));
    } else {
        let fragments: Vec<Vec<u8>> = split(pixels, b"FRAG");
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new(Vec::<u32>::new(), fragments),
        ));
    }
    let Ok(obj) = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts)) else {
        return;
    };
    for frame in 0..frame_count(&obj) {
        let _ = decode_frame(&obj, frame);
    }
    let _ = to_explicit_le(obj);
});

fn split(data: &[u8], separator: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + separator.len() <= data.len() {
        if &data[i..i + separator.len()] == separator {
            parts.push(data[start..i].to_vec());
            i += separator.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(data[start..].to_vec());
    parts
}
