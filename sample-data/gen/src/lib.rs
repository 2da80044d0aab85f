//! Seeded generator of realistic DICOM studies for Aina's tests and benchmarks.
//!
//! Everything is a pure function of [`Options::seed`] (and the patient and
//! date asked for): the same seed gives byte-identical Part 10 files, with
//! `2.25.` UIDs drawn from a ChaCha RNG. Files are Explicit VR Little Endian,
//! native (uncompressed) 16-bit allocated pixels with anatomy-like content, and
//! fictitious patients with Latin, Russian and Kazakh names in `ISO_IR 192`
//! (UTF-8), plus one `ISO_IR 144` (ISO 8859-5) case.
//!
//! # Layout
//! - [`patients`], [`Patient`]: the fictitious cast.
//! - [`fluorography`], [`chest_xray`], [`cyrillic_iso_ir_144`] (`chest`): CR
//!   screening fluorography and the DX chest PA + lateral.
//! - [`mammography`] (`mammography`): four-view MG For Presentation.
//! - [`large_instance`] (`large`): one multi-frame instance of a given size.
//! - [`demo_set`]: a small archive using all of the above, with a prior study.
//! - `study`, `encode`, `noise`, `raster`: shared attributes, Part 10
//!   writing, noise, coarse-lattice rendering.
//!
//! Not here: compressed transfer syntaxes, For Processing images, real data
//! (the real test files live outside the repository in `../shared/corpus`).

mod chest;
mod encode;
mod large;
mod mammography;
mod noise;
mod patient;
mod raster;
mod study;

pub use chest::{chest_xray, cyrillic_iso_ir_144, fluorography};
pub use large::large_instance;
pub use mammography::mammography;
pub use patient::{Patient, patients};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Seed for every random choice: UIDs, times, anatomy, noise.
    pub seed: u64,
    /// Image size relative to the real device (1.0 = e.g. 3328×4096 for
    /// mammography); pixel spacing grows as size shrinks so the physical field
    /// stays the same. Tests use 0.1–0.25. Clamped to at most 4; non-positive
    /// or non-finite means 1. Images are never smaller than 16 pixels a side.
    pub scale: f32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            scale: 1.0,
        }
    }
}

/// One generated instance: a complete Part 10 file and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// A file name unique within [`demo_set`], e.g.
    /// `MG-Sadykova-20250310-RCC.dcm` (modality, patient, study date, view).
    pub file_name: String,
    /// The Part 10 file: 128-byte preamble, `DICM`, meta group, data set.
    pub bytes: Vec<u8>,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Modality (0008,0060): `CR`, `DX` or `MG`.
    pub modality: String,
}

/// Errors from the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A text value (such as the patient's name) has characters the
    /// requested Specific Character Set cannot represent.
    #[error("text cannot be written in Specific Character Set {charset}")]
    NotInCharacterSet {
        /// The defined term, e.g. `ISO_IR 144`.
        charset: &'static str,
        /// The codec's complaint.
        #[source]
        source: dicom_encoding::text::EncodeTextError,
    },
}

/// A small, realistic archive: the [`patients`] cast with CR fluorography,
/// DX chest X-rays and four-view mammography, 21 instances in 10 studies.
///
/// - Smith: chest X-ray (PA + lateral).
/// - Иванов: fluorography.
/// - Нұрланұлы: fluorography, then a chest X-ray five months later.
/// - Әбілқасымова: fluorography and mammography the same day.
/// - Садықова: mammography and its prior a year earlier (same Patient ID,
///   same breasts, new noise and UIDs) for prior comparison.
/// - Петрова: fluorography in `ISO_IR 144` (ISO 8859-5).
/// - Сейітқалиева: fluorography.
///
/// At scale 1 this is about 420 MB.
pub fn demo_set(opts: &Options) -> Vec<Generated> {
    let cast = patients();
    let mut out = Vec::new();
    out.extend(chest_xray(opts, &cast[0], "20250303"));
    out.extend(fluorography(opts, &cast[1], "20250115"));
    out.extend(fluorography(opts, &cast[2], "20240910"));
    out.extend(chest_xray(opts, &cast[2], "20250220"));
    out.extend(fluorography(opts, &cast[3], "20250212"));
    out.extend(mammography(opts, &cast[3], "20250212"));
    out.extend(mammography(opts, &cast[4], "20240305"));
    out.extend(mammography(opts, &cast[4], "20250310"));
    out.push(
        cyrillic_iso_ir_144(opts, &cast[5], "20250128").expect("Петрова's name is in ISO 8859-5"),
    );
    out.extend(fluorography(opts, &cast[6], "20250305"));
    out
}
