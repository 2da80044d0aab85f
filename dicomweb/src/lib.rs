//! DICOMweb (PS3.18) protocol pieces, independent of storage and database.
//!
//! # Layout
//! - [`qido`]: QIDO-RS query model and parsing (PS3.18 §8.3.4, PS3.4 C.2.2.2 matching),
//!   default return attributes (§10.6.3.3), matching semantics and SQL LIKE patterns.
//! - [`fold`]: case folding shared by index columns and queries.
//! - [`multipart`]: streaming `multipart/related` reader and writer (PS3.18 §8.6.1.2,
//!   RFC 2387).
//! - [`negotiate`]: Accept / `transfer-syntax` negotiation (PS3.18 §8.7) for instances,
//!   frames, metadata and the Store response.
//! - [`stow`]: the Store Instances Response (PS3.18 §10.5.3, Annex I) as DICOM JSON and
//!   PS3.19 XML, and its HTTP status.
//! - [`json`]: DICOM JSON for WADO-RS metadata with `BulkDataURI`s (PS3.18 Annex F).
//! - `media` (private): media type and header-list syntax used by the above.

pub mod fold;
pub mod json;
mod media;
pub mod multipart;
pub mod negotiate;
pub mod qido;
pub mod stow;
