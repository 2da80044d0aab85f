//! One big multi-frame instance of a requested size, for upload, streaming
//! and storage tests: Multi-frame Grayscale Word Secondary Capture (PS3.3
//! A.8.4), a tomosynthesis-like stack of 16-bit frames.
//!
//! Size is what matters here, and speed: pixels are a half-disc "breast" with a
//! cheap XOR pattern that shifts per frame, plus xorshift noise seeded per row,
//! about a nanosecond per pixel. Not here: realistic anatomy.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use rand::Rng;

use crate::encode::{MAX_PIXEL_BYTES, part10, put_str, put_us};
use crate::noise::mix64;
use crate::study::{Charset, PixelModule, Study};
use crate::{Generated, Options, patients};

/// Widest frame we make; 1024 × 1024 × 2 bytes = 2 MiB per full frame.
const MAX_COLUMNS: u32 = 1024;

/// One multi-frame native instance whose Part 10 encoding is about
/// `target_bytes` long: within 1% for targets from 256 KiB, never longer than
/// the target (except for tiny targets, below the ~2 KiB header plus one
/// 16×1 frame). Pixel Data is capped at about 4 GiB (a 32-bit length).
///
/// Frames are up to 1024×1024, 12 bits stored, MONOCHROME2; Modality MG,
/// patient [`patients`]`()[0]`; UIDs depend on `opts.seed` and `target_bytes`.
/// `opts.scale` is ignored.
pub fn large_instance(opts: &Options, target_bytes: u64) -> Generated {
    let cast = patients();
    let patient = &cast[0];
    let kind = format!("large-{target_bytes}");
    let mut study = Study::new(
        opts,
        &kind,
        patient,
        "20250102",
        "Large multi-frame instance",
        Charset::Utf8,
    );
    let series = study.series(1, "MG", "Tomosynthesis-like stack", "Aina TOMO-1");

    // First guess at the header to choose the frame count; the exact header
    // length is measured below, before the row count is fixed.
    let avail = target_bytes.saturating_sub(2048).min(MAX_PIXEL_BYTES);
    let full_frame = u64::from(MAX_COLUMNS) * u64::from(MAX_COLUMNS) * 2;
    let (columns, frames) = if avail >= full_frame {
        (MAX_COLUMNS, avail.div_ceil(full_frame) as u32)
    } else {
        let side = ((avail / 2) as f64).sqrt() as u32;
        (side.clamp(16, MAX_COLUMNS), 1)
    };
    let mut pixels = PixelModule {
        rows: 1,
        columns,
        frames,
        bits_stored: 12,
        photometric: "MONOCHROME2",
    };
    let mut inst = study.instance(
        &series,
        1,
        uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
        &pixels,
    );
    let o = &mut inst.obj;
    put_str(o, tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY");
    put_str(o, tags::CONVERSION_TYPE, VR::CS, "SYN");
    put_str(o, tags::BODY_PART_EXAMINED, VR::CS, "BREAST");
    put_str(o, tags::IMAGE_LATERALITY, VR::CS, "L");
    put_str(o, tags::PATIENT_ORIENTATION, VR::CS, "A\\R");
    put_str(o, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
    put_str(o, tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string());
    o.put(DataElement::new(
        tags::FRAME_INCREMENT_POINTER,
        VR::AT,
        PrimitiveValue::Tags(std::iter::once(tags::SLICE_LOCATION_VECTOR).collect()),
    ));
    let slices: Vec<String> = (0..frames).map(|f| f.to_string()).collect();
    put_str(o, tags::SLICE_LOCATION_VECTOR, VR::DS, &slices.join("\\"));
    inst.put_spacing(0.1);
    inst.put_grey_scale(2048.0, 4096.0, true);

    // Measure the header (everything up to the pixel values) exactly.
    let header = part10(inst.obj.clone(), 0, 0, |_, _| {}).len() as u64;
    let per_row = u64::from(frames) * u64::from(columns) * 2;
    let rows = (target_bytes.saturating_sub(header).min(MAX_PIXEL_BYTES) / per_row).max(1);
    pixels.rows = u32::try_from(rows)
        .unwrap_or(u32::MAX)
        .min(u32::from(u16::MAX));
    put_us(&mut inst.obj, tags::ROWS, pixels.rows as u16);

    let rows = pixels.rows as usize;
    let seed = study.rng.random::<u64>();
    let cy = rows as f32 / 2.0;
    let radius = rows.max(columns as usize) as f32 * 0.55;
    let paint = move |row_index: usize, row: &mut [u8]| {
        let frame = (row_index / rows) as u16;
        let y = (row_index % rows) as u16;
        let dy = f32::from(y) - cy;
        let extent = (radius * radius - dy * dy).max(0.0).sqrt() as usize;
        let mut state = mix64(seed ^ row_index as u64) | 1;
        for (x, px) in row.chunks_exact_mut(2).enumerate() {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 0x3F) as u16;
            let value = if x < extent {
                let pattern = ((x as u16 ^ y).wrapping_add(frame.wrapping_mul(8)) >> 3) & 0x3F;
                1200 + pattern * 24 + noise
            } else {
                60 + noise
            };
            px.copy_from_slice(&value.to_le_bytes());
        }
    };
    let file_name = format!("MG-{}-large-{target_bytes}.dcm", patient.file_stem());
    inst.finish(file_name, &pixels, paint)
}
