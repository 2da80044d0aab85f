//! DICOMweb (PS3.18) protocol pieces, independent of storage and database.
//!
//! # Layout
//! - [`qido`]: QIDO-RS query model and parsing (PS3.18 §8.3.4, PS3.4 C.2.2.2 matching).
//! - [`fold`]: case folding shared by index columns and queries.

pub mod fold;
pub mod qido;
