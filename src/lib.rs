//! Aina: a DICOM archive (PACS) with DICOMweb and a browser viewer.
//!
//! # Layout
//! - [`config`]: settings from defaults, TOML, `AINA_*` variables and flags.
//! - [`ingest`]: the one path every instance takes in: parse, validate, hash,
//!   compress, write the object, then the index row.
//! - [`store`]: object storage (object_store) and the frame-addressable zstd
//!   instance container.
//! - [`index`]: the SQL metadata index (SQLite or PostgreSQL) and QIDO-RS.
//! - [`http`]: axum routes for DICOMweb (STOW-RS, QIDO-RS, WADO-RS, WADO-URI).
//! - [`dimse`]: the DICOM listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET SCP)
//!   and the C-STORE SCU.
//! - [`app`]: the shared state handed to every entry point.
//! - [`fhir`]: FHIR ImagingStudy resources and search parameters.
//! - [`feed`]: the change feed and its webhooks.
//! - [`render`]: pixel decoding, rendering, previews, thumbnails, transcoding.
//! - [`retrieve`]: reading instances, frames, bulk data and metadata back.
//! - [`cli`]: `aina serve | import | verify | reindex | migrate-index`.
//! - [`testing`]: throwaway PostgreSQL databases and S3 buckets for tests.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dimse;
pub mod feed;
pub mod fhir;
pub mod http;
pub mod index;
pub mod ingest;
pub mod render;
pub mod retrieve;
pub mod store;
pub mod testing;
pub mod tls;
