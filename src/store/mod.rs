//! Object storage: the key layout over `object_store`, and the instance container.

pub mod container;
