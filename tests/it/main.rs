//! Black-box integration tests: a real server on 127.0.0.1:0, real HTTP, real
//! DICOM files (generated, and the shared corpus where present).

mod accounts_cli;
mod audit_api;
mod authz;
mod changefeed;
mod cli;
mod common;
mod crash;
mod delete;
mod dimse;
mod dimse_audit;
mod fhir;
mod interop;
mod large;
mod logs;
mod nodes;
mod oidc;
mod qido;
mod render;
mod shares;
mod stow;
mod tls;
mod viewer;
mod wado;
