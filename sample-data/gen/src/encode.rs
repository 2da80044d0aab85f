//! Part 10 encoding: the data set through dicom-object, then Pixel Data
//! painted straight into the output buffer.
//!
//! Pixel Data (7FE0,0010) is the last element of every object we make, so the
//! data set without it is written by `FileDicomObject::write_all` and the pixel
//! element header by dicom-encoding's Explicit VR Little Endian encoder; the
//! pixel values are then filled in place, in parallel. This avoids holding the
//! pixels twice (as `PrimitiveValue` and as bytes) and encoding them value by
//! value, which matters for the multi-gigabyte [`crate::large_instance`].
//! Not here: which attributes an IOD needs (see `study`).

use dicom_core::{DataElement, DataElementHeader, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::encode::Encode;
use dicom_encoding::encode::explicit_le::ExplicitVRLittleEndianEncoder;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use rayon::prelude::*;

/// Implementation Class UID of this generator (a fixed `2.25.` UID), so
/// generated files are recognisable in the File Meta Information.
pub(crate) const IMPLEMENTATION_CLASS_UID: &str = "2.25.226117925453410306546153429003839745541";
/// Implementation Version Name (SH, at most 16 characters).
pub(crate) const IMPLEMENTATION_VERSION_NAME: &str = "AINA_SAMPLE_01";

/// Largest Pixel Data value length we write: an explicit 32-bit length,
/// even, below the undefined-length marker.
pub(crate) const MAX_PIXEL_BYTES: u64 = 0xFFFF_FFF0;

/// Put a single- or multi-valued string attribute; `\` separates values.
pub(crate) fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    let value = if value.contains('\\') {
        PrimitiveValue::Strs(value.split('\\').map(str::to_owned).collect())
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, value));
}

/// Put a US attribute.
pub(crate) fn put_us(obj: &mut InMemDicomObject, tag: Tag, value: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Put a sequence attribute with the given items (possibly none: an empty
/// Type 2 sequence).
pub(crate) fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(
        tag,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(items),
    ));
}

/// A coded concept (PS3.3 §8.8 Code Sequence Macro) as a sequence item.
pub(crate) fn code_item(value: &str, designator: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put_str(&mut item, tags::CODE_VALUE, VR::SH, value);
    put_str(
        &mut item,
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        designator,
    );
    put_str(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

/// Format a decimal string (DS, at most 16 characters) without float noise.
pub(crate) fn ds(value: f64) -> String {
    let s = format!("{value:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.chars().take(16).collect()
}

/// Write `obj` (which must not contain Pixel Data) as a Part 10 file in
/// Explicit VR Little Endian, followed by an OW Pixel Data element of
/// `pixel_bytes` bytes filled by `paint`, which gets one row of `row_bytes`
/// bytes at a time with its row index (rows counted across frames).
pub(crate) fn part10<F>(
    obj: InMemDicomObject,
    pixel_bytes: u64,
    row_bytes: usize,
    paint: F,
) -> Vec<u8>
where
    F: Fn(usize, &mut [u8]) + Sync,
{
    assert!(
        pixel_bytes <= MAX_PIXEL_BYTES && pixel_bytes.is_multiple_of(2),
        "pixel data length {pixel_bytes} is not an even 32-bit length"
    );
    let pixel_len = usize::try_from(pixel_bytes).expect("pixel data fits in memory");
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
        )
        // Only fails if SOP Class/Instance UID are not strings: a bug here.
        .expect("file meta table from generated attributes");
    let mut out = Vec::with_capacity(pixel_len + 8 * 1024);
    // Writing into a Vec cannot fail on I/O; an error is an encoding bug
    // (e.g. a text value the character set cannot represent, which callers
    // check beforehand).
    file.write_all(&mut out).expect("encode generated data set");
    ExplicitVRLittleEndianEncoder::default()
        .encode_element_header(
            &mut out,
            DataElementHeader::new(tags::PIXEL_DATA, VR::OW, Length(pixel_bytes as u32)),
        )
        .expect("encode pixel data header");
    let start = out.len();
    out.resize(start + pixel_len, 0);
    if row_bytes > 0 {
        out[start..]
            .par_chunks_mut(row_bytes)
            .enumerate()
            .for_each(|(y, row)| paint(y, row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ds;

    #[test]
    fn decimal_strings_are_short_and_clean() {
        assert_eq!(ds(0.07), "0.07");
        assert_eq!(ds(0.7), "0.7");
        assert_eq!(ds(2.0), "2");
        assert_eq!(ds(0.143 / 0.1), "1.43");
        assert!(ds(1.0 / 3.0).len() <= 16);
    }
}
