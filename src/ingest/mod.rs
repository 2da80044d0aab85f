//! Ingest: the one path every instance takes in.

pub mod layout;
