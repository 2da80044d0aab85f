//! Who may do what, and the record of what they did.
//!
//! - [`Role`]s are granted to principals; every HTTP route and DIMSE operation
//!   needs one [`Access`], and [`Role::grants`] is the one table saying which
//!   role has which access.
//! - [`accounts`]: local users (Argon2id), API tokens, viewer sessions.
//! - [`oidc`]: bearer tokens from a hospital's identity provider (JWT checked
//!   against the configured issuer, audience and JWKS).
//! - [`shares`]: share links, read-only access to one study.
//! - [`audit`]: the append-only audit log and its export as DICOM audit
//!   messages (PS3.15 A.5).
//!
//! HTTP enforces all of this in one place, `http::auth`; DIMSE in
//! `dimse::association`.

pub mod accounts;
pub mod audit;
pub mod oidc;
pub mod shares;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

/// A principal's role (DESIGN.md, "Security model").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Devices: store only (STOW-RS, C-STORE).
    Ingest,
    /// Radiologists: read everything, and import (store) outside studies.
    Reader,
    /// Clinicians and EHRs: read only.
    Clinician,
    /// Everything, including delete, users, tokens and the audit log.
    Admin,
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Anyone, signed in or not: health checks, the login page, the viewer's
    /// static files (which hold no patient data).
    Public,
    /// Any signed-in principal, whatever its role (who am I, sign out).
    SignedIn,
    /// Storing instances.
    Store,
    /// Reading patient data: searches, retrieval, rendered images.
    Read,
    /// Deleting, managing users and tokens, reading the audit log.
    Admin,
}

impl Role {
    /// Every role, for tests and help texts.
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Reader, Role::Clinician, Role::Admin];

    /// Whether this role may do what `access` names.
    pub fn grants(self, access: Access) -> bool {
        match access {
            Access::Public | Access::SignedIn => true,
            Access::Store => matches!(self, Role::Ingest | Role::Reader | Role::Admin),
            Access::Read => matches!(self, Role::Reader | Role::Clinician | Role::Admin),
            Access::Admin => self == Role::Admin,
        }
    }

    /// The role's name, as stored and configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (expected ingest, reader, clinician or admin)")
            })
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A viewer session (cookie) after a password login.
    Session,
    /// An API token.
    Token,
    /// An OIDC bearer token.
    Oidc,
    /// A DICOM association from an allow-listed AE title.
    Dicom,
    /// Authentication is off (loopback only, or `--insecure`).
    Anonymous,
    /// The operator's command line on the server.
    Cli,
    /// A share link (read-only, one study).
    Share,
}

impl Method {
    /// The method's name, as stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Session => "session",
            Method::Token => "token",
            Method::Oidc => "oidc",
            Method::Dicom => "dicom",
            Method::Anonymous => "anonymous",
            Method::Cli => "cli",
            Method::Share => "share",
        }
    }
}

/// Who is asking: attached to every authorised request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// User name, token name, OIDC subject, calling AE title or `anonymous`.
    pub name: String,
    pub role: Role,
    pub method: Method,
}

impl Principal {
    /// The principal of every request when authentication is off.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            role: Role::Admin,
            method: Method::Anonymous,
        }
    }
}
