//! What rendering needs to know about an image, read once from its dataset:
//! geometry, pixel representation, the grayscale transforms of PS3.3 C.11
//! (Modality LUT, VOI LUT, Presentation LUT), Pixel Padding (C.7.5.1.1.2) and
//! Display Shutters (C.7.6.11). Applying them is `pipeline`'s job; decoding the
//! pixels is `decode`'s.
//!
//! Reading is lenient: a missing or garbled attribute falls back to the value a
//! viewer would assume (slope 1, MONOCHROME2, no LUT, ...) and never fails, so a
//! slightly broken instance still renders.

use dicom_core::value::PrimitiveValue;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use super::pipeline::{VoiFunction, Window};

/// Rendering-relevant attributes of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Rows (0028,0010) of the original image; 0 when unknown.
    pub rows: u32,
    /// Columns (0028,0011) of the original image; 0 when unknown.
    pub columns: u32,
    /// Bits Stored (0028,0101), 1..=16.
    pub bits_stored: u16,
    /// Pixel Representation (0028,0103) is 1: stored values are two's complement.
    pub signed: bool,
    /// Photometric Interpretation (0028,0004), upper case and trimmed.
    pub photometric_interpretation: String,
    /// Rescale Slope (0028,1053); ignored when `modality_lut` is present.
    pub rescale_slope: f64,
    /// Rescale Intercept (0028,1052); ignored when `modality_lut` is present.
    pub rescale_intercept: f64,
    /// First item of the Modality LUT Sequence (0028,3000): stored value → modality value.
    pub modality_lut: Option<Lut>,
    /// Window Center/Width pairs (0028,1050/1051) with the VOI LUT Function
    /// (0028,1056); the first is the default.
    pub windows: Vec<Window>,
    /// First item of the VOI LUT Sequence (0028,3010): modality value → display value.
    pub voi_lut: Option<Lut>,
    /// Presentation LUT Shape (2050,0020), when the image has one.
    pub presentation_lut_shape: Option<PresentationLutShape>,
    /// Pixel Padding Value (0028,0120), a stored value.
    pub pixel_padding_value: Option<i32>,
    /// Pixel Padding Range Limit (0028,0121), a stored value.
    pub pixel_padding_range_limit: Option<i32>,
    /// Display shutters; only the area inside all of them is shown.
    pub shutters: Vec<Shutter>,
    /// Pixel Spacing (0028,0030), row spacing then column spacing, in mm.
    pub pixel_spacing: Option<[f64; 2]>,
    /// Imager Pixel Spacing (0018,1164), row spacing then column spacing, in mm.
    pub imager_pixel_spacing: Option<[f64; 2]>,
    /// Window chosen from the pixel values (`pipeline::auto_window`), stored with
    /// the preview so that renderings without a window agree with it.
    pub auto_window: Option<Window>,
}

impl Default for ImageMeta {
    fn default() -> Self {
        ImageMeta {
            rows: 0,
            columns: 0,
            bits_stored: 16,
            signed: false,
            photometric_interpretation: "MONOCHROME2".to_owned(),
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            modality_lut: None,
            windows: Vec::new(),
            voi_lut: None,
            presentation_lut_shape: None,
            pixel_padding_value: None,
            pixel_padding_range_limit: None,
            shutters: Vec::new(),
            pixel_spacing: None,
            imager_pixel_spacing: None,
            auto_window: None,
        }
    }
}

/// A lookup table as described by a LUT Descriptor (PS3.3 C.11.1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lut {
    /// The input value mapped to the first entry; inputs below it map to the first
    /// entry, inputs past the end to the last.
    pub first_mapped: i32,
    /// Bits per entry (descriptor's third value): entries range over 0..2^bits.
    pub bits: u8,
    /// The entries, never empty.
    pub data: Vec<u16>,
}

impl Lut {
    /// The entry for `input`, clamped at both ends as PS3.3 C.11.1.1 requires.
    pub fn lookup(&self, input: i64) -> u16 {
        let last = self.data.len() as i64 - 1;
        let index = (input - i64::from(self.first_mapped)).clamp(0, last);
        self.data[index as usize]
    }

    /// Largest possible entry: 2^bits − 1, or the largest entry when the data
    /// exceed what the descriptor claims (a common encoder mistake).
    pub fn max_output(&self) -> u16 {
        let declared = ((1u32 << self.bits.clamp(1, 16)) - 1) as u16;
        let actual = self.data.iter().copied().max().unwrap_or(0);
        declared.max(actual)
    }
}

/// Presentation LUT Shape (2050,0020).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresentationLutShape {
    Identity,
    Inverse,
}

/// A display shutter (PS3.3 C.7.6.11), in 1-based pixel coordinates of the
/// original image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Shutter {
    /// Columns `left..=right` and rows `upper..=lower` are visible.
    Rectangular {
        left: i32,
        right: i32,
        upper: i32,
        lower: i32,
    },
    /// Pixels whose centre lies within `radius` of the centre are visible.
    Circular {
        center_row: i32,
        center_column: i32,
        radius: i32,
    },
}

impl ImageMeta {
    /// Reads the rendering attributes of `obj`, falling back to defaults for
    /// anything missing or unreadable.
    pub fn from_object(obj: &InMemDicomObject) -> ImageMeta {
        let defaults = ImageMeta::default();
        let signed = first_int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
        let bits_stored = [tags::BITS_STORED, tags::BITS_ALLOCATED]
            .into_iter()
            .filter_map(|tag| first_int(obj, tag))
            .find(|bits| (1..=16).contains(bits))
            .map_or(defaults.bits_stored, |bits| bits as u16);
        let photometric_interpretation = first_string(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or(defaults.photometric_interpretation);

        let rescale_slope = first_float(obj, tags::RESCALE_SLOPE)
            .filter(|slope| *slope != 0.0)
            .unwrap_or(1.0);
        let rescale_intercept = first_float(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0);
        let modality_lut = first_item(obj, tags::MODALITY_LUT_SEQUENCE)
            .and_then(|item| lut_from_item(item, signed));

        let function = first_string(obj, tags::VOILUT_FUNCTION)
            .and_then(|keyword| VoiFunction::from_keyword(&keyword))
            .unwrap_or(VoiFunction::Linear);
        // Paired by position, so one unreadable value does not shift the rest.
        let windows = numbers(obj, tags::WINDOW_CENTER)
            .into_iter()
            .zip(numbers(obj, tags::WINDOW_WIDTH))
            .filter_map(|pair| match pair {
                (Some(center), Some(width)) => Some(Window {
                    center,
                    width,
                    function,
                }),
                _ => None,
            })
            .filter(Window::is_valid)
            .collect();

        let mut meta = ImageMeta {
            rows: first_int(obj, tags::ROWS).map_or(0, clamp_u32),
            columns: first_int(obj, tags::COLUMNS).map_or(0, clamp_u32),
            bits_stored,
            signed,
            photometric_interpretation,
            rescale_slope,
            rescale_intercept,
            modality_lut,
            windows,
            voi_lut: None,
            presentation_lut_shape: first_string(obj, tags::PRESENTATION_LUT_SHAPE).and_then(
                |shape| match shape.as_str() {
                    "IDENTITY" => Some(PresentationLutShape::Identity),
                    "INVERSE" => Some(PresentationLutShape::Inverse),
                    _ => None,
                },
            ),
            pixel_padding_value: first_int(obj, tags::PIXEL_PADDING_VALUE)
                .map(|v| stored_bit_pattern(v, signed)),
            pixel_padding_range_limit: first_int(obj, tags::PIXEL_PADDING_RANGE_LIMIT)
                .map(|v| stored_bit_pattern(v, signed)),
            shutters: shutters(obj),
            pixel_spacing: spacing(obj, tags::PIXEL_SPACING),
            imager_pixel_spacing: spacing(obj, tags::IMAGER_PIXEL_SPACING),
            auto_window: None,
        };
        // The VOI LUT's input is the Modality LUT's output, which is negative for
        // e.g. CT in HU even when the stored values are unsigned; a US-encoded
        // first-mapped value then holds a negative number's bit pattern.
        let (low, high) = meta.modality_range();
        let voi_input_signed = low < 0.0 || high < 0.0;
        meta.voi_lut = first_item(obj, tags::VOILUT_SEQUENCE)
            .and_then(|item| lut_from_item(item, voi_input_signed));
        meta
    }

    /// Grayscale image, to which the LUTs and windowing apply.
    pub fn is_monochrome(&self) -> bool {
        self.photometric_interpretation.starts_with("MONOCHROME")
    }

    /// Whether the display inverts the VOI output (PS3.4 N.2, PS3.3 C.11.6).
    ///
    /// A Presentation LUT Shape decides when present: in the DX, MG and IO image
    /// modules (PS3.3 C.8.11.3) INVERSE is required with MONOCHROME1 and *is* that
    /// image's inversion, not a second one, and IDENTITY means the VOI output
    /// already is in P-values. Without one, MONOCHROME1 (minimum value white) is
    /// inverted and everything else is not.
    pub fn is_inverted(&self) -> bool {
        match self.presentation_lut_shape {
            Some(PresentationLutShape::Inverse) => true,
            Some(PresentationLutShape::Identity) => false,
            None => self.photometric_interpretation == "MONOCHROME1",
        }
    }

    /// Stored values treated as padding, as an inclusive range (PS3.3
    /// C.7.5.1.1.2: the range limit may lie on either side of the padding value).
    pub fn padding_range(&self) -> Option<(i32, i32)> {
        let value = self.pixel_padding_value?;
        let limit = self.pixel_padding_range_limit.unwrap_or(value);
        Some((value.min(limit), value.max(limit)))
    }

    /// The smallest and largest stored values Bits Stored and Pixel
    /// Representation allow.
    pub fn stored_range(&self) -> (i32, i32) {
        let bits = u32::from(self.bits_stored.clamp(1, 16));
        if self.signed {
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        } else {
            (0, (1 << bits) - 1)
        }
    }

    /// The Modality LUT (PS3.3 C.11.1): the Modality LUT Sequence when present,
    /// else the rescale.
    pub fn modality_value(&self, stored: i32) -> f64 {
        match &self.modality_lut {
            Some(lut) => f64::from(lut.lookup(i64::from(stored))),
            None => self.rescale_slope * f64::from(stored) + self.rescale_intercept,
        }
    }

    /// The modality values of the two ends of the stored range (in either order
    /// when the slope is negative).
    fn modality_range(&self) -> (f64, f64) {
        let (low, high) = self.stored_range();
        (self.modality_value(low), self.modality_value(high))
    }
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

/// Reads a 16-bit US/SS value the way Pixel Representation says the stored
/// values are read: encoders are inconsistent about which VR they use.
fn stored_bit_pattern(v: i64, signed: bool) -> i32 {
    let pattern = (v & 0xFFFF) as u16;
    if signed {
        i32::from(pattern as i16)
    } else {
        i32::from(pattern)
    }
}

fn primitive(obj: &InMemDicomObject, tag: Tag) -> Option<&PrimitiveValue> {
    obj.get(tag)?.value().primitive()
}

/// Each value of a numeric or string (DS/IS) attribute as a number, `None`
/// where it is unparseable or not finite.
fn numbers(obj: &InMemDicomObject, tag: Tag) -> Vec<Option<f64>> {
    let Some(value) = primitive(obj, tag) else {
        return Vec::new();
    };
    let parsed: Vec<Option<f64>> = match value {
        PrimitiveValue::Str(_) | PrimitiveValue::Strs(_) => value
            .to_multi_str()
            .iter()
            .flat_map(|s| s.split('\\'))
            .map(|s| {
                s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .parse()
                    .ok()
            })
            .collect(),
        _ => value
            .to_multi_float64()
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect(),
    };
    parsed
        .into_iter()
        .map(|v| v.filter(|v: &f64| v.is_finite()))
        .collect()
}

/// The readable numbers of an attribute.
fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    numbers(obj, tag).into_iter().flatten().collect()
}

fn first_float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag).first().copied()
}

/// All integers of an attribute; IS strings written as decimals ("512.0") are
/// rounded.
fn ints(obj: &InMemDicomObject, tag: Tag) -> Vec<i64> {
    match primitive(obj, tag) {
        Some(PrimitiveValue::Str(_) | PrimitiveValue::Strs(_)) => floats(obj, tag)
            .into_iter()
            .filter(|v| v.abs() < 9.0e15)
            .map(|v| v.round() as i64)
            .collect(),
        Some(value) => value.to_multi_int::<i64>().unwrap_or_default(),
        None => Vec::new(),
    }
}

fn first_int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    ints(obj, tag).first().copied()
}

/// First value of a code string, trimmed and upper-cased.
fn first_string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    strings(obj, tag).into_iter().next()
}

fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    primitive(obj, tag)
        .map(|value| {
            value
                .to_multi_str()
                .iter()
                .flat_map(|s| s.split('\\'))
                .map(|s| {
                    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                        .to_ascii_uppercase()
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// A LUT from a sequence item's LUT Descriptor and LUT Data (PS3.3 C.11.1.1,
/// C.11.2.1.1). `signed_input` says how to read a US-encoded first-mapped value.
fn lut_from_item(item: &InMemDicomObject, signed_input: bool) -> Option<Lut> {
    let descriptor = item.get(tags::LUT_DESCRIPTOR)?;
    let values = ints(item, tags::LUT_DESCRIPTOR);
    let [entries, first, bits, ..] = values[..] else {
        return None;
    };
    // The entry count is unsigned even when the descriptor is SS, and 0 means
    // 2^16.
    let entries = match entries & 0xFFFF {
        0 => 65536,
        n => n as usize,
    };
    let first_mapped = if descriptor.vr() == VR::SS {
        first as i32
    } else {
        stored_bit_pattern(first, signed_input)
    };
    let bits = if (1..=16).contains(&bits) {
        bits as u8
    } else {
        16
    };

    let mut data = lut_words(item.get(tags::LUT_DATA)?.value().primitive()?);
    // 8-bit entries are packed two to a 16-bit word, first entry in the low byte
    // (PS3.3 C.11.1.1.1: "equivalent to 8 bits allocated"); some encoders give
    // each entry a word instead, which the word count tells apart.
    if bits <= 8 && entries > 1 && data.len() == entries.div_ceil(2) {
        data = data
            .iter()
            .flat_map(|word| [word & 0xFF, word >> 8])
            .take(entries)
            .collect();
    }
    // A short table is used as far as it goes rather than dropped.
    data.truncate(entries);
    if data.is_empty() {
        return None;
    }
    Some(Lut {
        first_mapped,
        bits,
        data,
    })
}

/// LUT Data as 16-bit words, whatever VR it was read with.
fn lut_words(value: &PrimitiveValue) -> Vec<u16> {
    match value {
        PrimitiveValue::U16(words) => words.to_vec(),
        PrimitiveValue::I16(words) => words.iter().map(|&w| w as u16).collect(),
        // OB or UN: little-endian words.
        PrimitiveValue::U8(bytes) => bytes
            .chunks(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))
            .collect(),
        other => other
            .to_multi_int::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|w| (w & 0xFFFF) as u16)
            .collect(),
    }
}

/// Display shutters (PS3.3 C.7.6.11); POLYGONAL and incomplete ones are skipped.
fn shutters(obj: &InMemDicomObject) -> Vec<Shutter> {
    let as_i32 = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let value = |tag| first_int(obj, tag).map(as_i32);
    strings(obj, tags::SHUTTER_SHAPE)
        .iter()
        .filter_map(|shape| match shape.as_str() {
            "RECTANGULAR" => Some(Shutter::Rectangular {
                left: value(tags::SHUTTER_LEFT_VERTICAL_EDGE)?,
                right: value(tags::SHUTTER_RIGHT_VERTICAL_EDGE)?,
                upper: value(tags::SHUTTER_UPPER_HORIZONTAL_EDGE)?,
                lower: value(tags::SHUTTER_LOWER_HORIZONTAL_EDGE)?,
            }),
            "CIRCULAR" => {
                let center = ints(obj, tags::CENTER_OF_CIRCULAR_SHUTTER);
                let [row, column, ..] = center[..] else {
                    return None;
                };
                Some(Shutter::Circular {
                    center_row: as_i32(row),
                    center_column: as_i32(column),
                    radius: value(tags::RADIUS_OF_CIRCULAR_SHUTTER)?,
                })
            }
            _ => None,
        })
        .collect()
}

fn spacing(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 2]> {
    match floats(obj, tag)[..] {
        [row, column, ..] if row > 0.0 && column > 0.0 => Some([row, column]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
    use dicom_object::mem::InMemElement;

    use super::*;

    fn object(elements: Vec<InMemElement>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    fn element(tag: Tag, vr: VR, value: PrimitiveValue) -> InMemElement {
        DataElement::new(tag, vr, value)
    }

    fn lut_item(descriptor: (VR, PrimitiveValue), data: PrimitiveValue) -> InMemDicomObject {
        object(vec![
            element(tags::LUT_DESCRIPTOR, descriptor.0, descriptor.1),
            element(tags::LUT_DATA, VR::OW, data),
        ])
    }

    fn sequence(tag: Tag, item: InMemDicomObject) -> InMemElement {
        DataElement::new(
            tag,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        )
    }

    #[test]
    fn empty_dataset_gives_defaults() {
        let meta = ImageMeta::from_object(&InMemDicomObject::new_empty());
        assert_eq!(meta, ImageMeta::default());
        assert!(meta.is_monochrome());
        assert!(!meta.is_inverted());
        assert_eq!(meta.stored_range(), (0, 65535));
        assert_eq!(meta.modality_value(7), 7.0);
    }

    #[test]
    fn reads_rendering_attributes() {
        let meta = ImageMeta::from_object(&object(vec![
            element(tags::ROWS, VR::US, dicom_value!(U16, [512])),
            element(tags::COLUMNS, VR::US, dicom_value!(U16, [256])),
            element(tags::BITS_STORED, VR::US, dicom_value!(U16, [12])),
            element(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, [1])),
            element(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                "MONOCHROME1 ".into(),
            ),
            element(tags::RESCALE_SLOPE, VR::DS, "2.5".into()),
            element(tags::RESCALE_INTERCEPT, VR::DS, "-1024 ".into()),
            element(
                tags::WINDOW_CENTER,
                VR::DS,
                dicom_value!(Strs, ["40", "300"]),
            ),
            element(
                tags::WINDOW_WIDTH,
                VR::DS,
                dicom_value!(Strs, ["400", "1500"]),
            ),
            element(tags::VOILUT_FUNCTION, VR::CS, "SIGMOID".into()),
            element(tags::PRESENTATION_LUT_SHAPE, VR::CS, "INVERSE".into()),
            // US-encoded padding of signed data: the bit pattern of −2000.
            element(
                tags::PIXEL_PADDING_VALUE,
                VR::US,
                dicom_value!(U16, [63536]),
            ),
            element(
                tags::PIXEL_SPACING,
                VR::DS,
                dicom_value!(Strs, ["0.5", "0.25"]),
            ),
            element(tags::IMAGER_PIXEL_SPACING, VR::DS, "0.1\\0.1".into()),
            element(
                tags::SHUTTER_SHAPE,
                VR::CS,
                dicom_value!(Strs, ["RECTANGULAR", "CIRCULAR", "POLYGONAL"]),
            ),
            element(tags::SHUTTER_LEFT_VERTICAL_EDGE, VR::IS, "10".into()),
            element(tags::SHUTTER_RIGHT_VERTICAL_EDGE, VR::IS, "200".into()),
            element(tags::SHUTTER_UPPER_HORIZONTAL_EDGE, VR::IS, "20".into()),
            element(tags::SHUTTER_LOWER_HORIZONTAL_EDGE, VR::IS, "500".into()),
            element(
                tags::CENTER_OF_CIRCULAR_SHUTTER,
                VR::IS,
                dicom_value!(Strs, ["256", "128"]),
            ),
            element(tags::RADIUS_OF_CIRCULAR_SHUTTER, VR::IS, "100".into()),
        ]));
        assert_eq!((meta.rows, meta.columns, meta.bits_stored), (512, 256, 12));
        assert!(meta.signed);
        assert_eq!(meta.stored_range(), (-2048, 2047));
        assert_eq!(meta.modality_value(10), -999.0);
        let windows: Vec<_> = meta
            .windows
            .iter()
            .map(|w| (w.center, w.width, w.function))
            .collect();
        assert_eq!(
            windows,
            [
                (40.0, 400.0, VoiFunction::Sigmoid),
                (300.0, 1500.0, VoiFunction::Sigmoid)
            ]
        );
        assert_eq!(
            meta.presentation_lut_shape,
            Some(PresentationLutShape::Inverse)
        );
        assert!(meta.is_inverted());
        assert_eq!(meta.padding_range(), Some((-2000, -2000)));
        assert_eq!(meta.pixel_spacing, Some([0.5, 0.25]));
        assert_eq!(meta.imager_pixel_spacing, Some([0.1, 0.1]));
        assert_eq!(
            meta.shutters,
            [
                Shutter::Rectangular {
                    left: 10,
                    right: 200,
                    upper: 20,
                    lower: 500
                },
                Shutter::Circular {
                    center_row: 256,
                    center_column: 128,
                    radius: 100
                }
            ]
        );
    }

    #[test]
    fn garbled_values_fall_back() {
        let meta = ImageMeta::from_object(&object(vec![
            element(tags::BITS_STORED, VR::US, dicom_value!(U16, [40])),
            element(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, [8])),
            element(tags::RESCALE_SLOPE, VR::DS, "abc".into()),
            element(tags::RESCALE_INTERCEPT, VR::DS, "NaN".into()),
            element(
                tags::WINDOW_CENTER,
                VR::DS,
                dicom_value!(Strs, ["40", "x", "7"]),
            ),
            element(
                tags::WINDOW_WIDTH,
                VR::DS,
                dicom_value!(Strs, ["0.5", "400"]),
            ),
            element(tags::VOILUT_FUNCTION, VR::CS, "CUBIC".into()),
            element(tags::PRESENTATION_LUT_SHAPE, VR::CS, "SQUIGGLE".into()),
            element(tags::PIXEL_SPACING, VR::DS, "0.5".into()),
            // Rectangular without its edges is no shutter.
            element(tags::SHUTTER_SHAPE, VR::CS, "RECTANGULAR".into()),
            element(tags::SHUTTER_LEFT_VERTICAL_EDGE, VR::IS, "10".into()),
            element(tags::ROWS, VR::US, PrimitiveValue::Empty),
        ]));
        assert_eq!(meta.bits_stored, 8);
        assert_eq!((meta.rescale_slope, meta.rescale_intercept), (1.0, 0.0));
        // 40 with 0.5 is no LINEAR window, "x" with 400 no window, 7 lacks a width.
        assert!(meta.windows.is_empty());
        assert_eq!(meta.presentation_lut_shape, None);
        assert_eq!(meta.pixel_spacing, None);
        assert!(meta.shutters.is_empty());
        assert_eq!(meta.rows, 0);
    }

    #[test]
    fn padding_range_limit_on_either_side() {
        let meta = ImageMeta::from_object(&object(vec![
            element(tags::PIXEL_PADDING_VALUE, VR::US, dicom_value!(U16, [4095])),
            element(
                tags::PIXEL_PADDING_RANGE_LIMIT,
                VR::US,
                dicom_value!(U16, [4000]),
            ),
        ]));
        assert_eq!(meta.padding_range(), Some((4000, 4095)));
    }

    #[test]
    fn lut_descriptor_subtleties() {
        // 0 entries means 65536; SS first-mapped is taken as written.
        let full: Vec<u16> = (0..=65535).collect();
        let meta = ImageMeta::from_object(&object(vec![sequence(
            tags::MODALITY_LUT_SEQUENCE,
            lut_item(
                (VR::SS, dicom_value!(I16, [0, -32768, 16])),
                PrimitiveValue::U16(full.into()),
            ),
        )]));
        let lut = meta.modality_lut.unwrap();
        assert_eq!((lut.data.len(), lut.first_mapped), (65536, -32768));
        assert_eq!(
            (lut.lookup(-40000), lut.lookup(0), lut.lookup(40000)),
            (0, 32768, 65535)
        );

        // US first-mapped of signed data is the bit pattern of a negative number.
        let meta = ImageMeta::from_object(&object(vec![
            element(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, [1])),
            sequence(
                tags::MODALITY_LUT_SEQUENCE,
                lut_item(
                    (VR::US, dicom_value!(U16, [3, 65526, 12])),
                    dicom_value!(U16, [1, 2, 4095]),
                ),
            ),
        ]));
        let lut = meta.modality_lut.unwrap();
        assert_eq!(lut.first_mapped, -10);
        assert_eq!(lut.max_output(), 4095);

        // 8-bit entries packed two to a word, low byte first.
        let meta = ImageMeta::from_object(&object(vec![sequence(
            tags::VOILUT_SEQUENCE,
            lut_item(
                (VR::US, dicom_value!(U16, [3, 0, 8])),
                dicom_value!(U16, [0x2010, 0x00FF]),
            ),
        )]));
        let lut = meta.voi_lut.unwrap();
        assert_eq!(lut.data, [0x10, 0x20, 0xFF]);
        assert_eq!(lut.max_output(), 255);

        // 8-bit entries one to a word are kept as they are.
        let meta = ImageMeta::from_object(&object(vec![sequence(
            tags::VOILUT_SEQUENCE,
            lut_item(
                (VR::US, dicom_value!(U16, [2, 0, 8])),
                dicom_value!(U16, [3, 200]),
            ),
        )]));
        assert_eq!(meta.voi_lut.unwrap().data, [3, 200]);
    }

    #[test]
    fn voi_lut_input_is_signed_when_the_modality_output_is() {
        // Unsigned CT in HU: a US first-mapped of 64512 means −1024.
        let meta = ImageMeta::from_object(&object(vec![
            element(tags::RESCALE_INTERCEPT, VR::DS, "-1024".into()),
            sequence(
                tags::VOILUT_SEQUENCE,
                lut_item(
                    (VR::US, dicom_value!(U16, [2, 64512, 16])),
                    dicom_value!(U16, [0, 65535]),
                ),
            ),
        ]));
        assert_eq!(meta.voi_lut.unwrap().first_mapped, -1024);
    }

    #[test]
    fn serialises_with_the_automatic_window() {
        let meta = ImageMeta {
            auto_window: Some(Window {
                center: 1.5,
                width: 3.0,
                function: VoiFunction::LinearExact,
            }),
            ..ImageMeta::default()
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(serde_json::from_str::<ImageMeta>(&json).unwrap(), meta);
    }
}
