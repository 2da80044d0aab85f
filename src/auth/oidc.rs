//! OIDC bearer tokens: a JWT signed by the configured issuer's keys (a JWKS,
//! from a file or fetched from the issuer), for hospitals with an identity
//! provider (Keycloak, ADFS, Azure AD …).
//!
//! Only asymmetric signatures are accepted, and only with the algorithm the
//! key is for: `alg: none`, HMAC (which would let anyone holding the public
//! key sign), and a key of another family are refused before any claim is
//! read.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use super::{Method, Principal, Role};
use crate::config::OidcConfig;

/// Clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// A fetched JWKS is used this long before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// A token naming an unknown key refetches the JWKS at most this often (key
/// rotation), so that forged `kid`s cannot make us hammer the issuer.
const REFETCH_MIN: Duration = Duration::from_secs(60);
/// Longer tokens are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused: safe to show the caller, never the token itself.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("no Aina role in the token")]
    NoRole,
    #[error("the issuer's keys are unavailable")]
    Keys,
}

enum Source {
    File,
    Url(String),
}

struct Keys {
    set: JwkSet,
    /// When the set was fetched (URL sources).
    fetched: Option<Instant>,
}

/// Checks OIDC bearer tokens from one issuer.
pub struct Verifier {
    config: OidcConfig,
    source: Source,
    keys: RwLock<Keys>,
    /// Serialises fetches; holds the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Verifier {
    /// Reads a JWKS file now; a JWKS URL is fetched on first use. http://
    /// URLs are accepted for loopback hosts only (tests, a local proxy).
    pub fn new(config: &OidcConfig) -> anyhow::Result<Verifier> {
        let (source, set) = if config.jwks.starts_with("https://") {
            (
                Source::Url(config.jwks.clone()),
                JwkSet { keys: Vec::new() },
            )
        } else if let Some(rest) = config.jwks.strip_prefix("http://") {
            let host = rest.split(['/', ':']).next().unwrap_or_default();
            if !matches!(host, "127.0.0.1" | "localhost" | "[") {
                anyhow::bail!(
                    "--oidc-jwks {}: use https:// (http:// only for loopback)",
                    config.jwks
                );
            }
            (
                Source::Url(config.jwks.clone()),
                JwkSet { keys: Vec::new() },
            )
        } else {
            let text = std::fs::read_to_string(&config.jwks)
                .with_context(|| format!("reading the JWKS file {}", config.jwks))?;
            let set: JwkSet = serde_json::from_str(&text)
                .with_context(|| format!("parsing the JWKS file {}", config.jwks))?;
            anyhow::ensure!(
                !set.keys.is_empty(),
                "the JWKS file {} has no keys",
                config.jwks
            );
            (Source::File, set)
        };
        Ok(Verifier {
            config: config.clone(),
            source,
            keys: RwLock::new(Keys { set, fetched: None }),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// The principal a valid token names.
    pub async fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed);
        }
        let header = decode_header(token).map_err(|_| OidcError::Malformed)?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref();
        if self.stale() {
            self.refresh().await?;
        }
        let jwk = match self.key(kid) {
            Some(jwk) => jwk,
            None => {
                self.refresh().await?;
                self.key(kid).ok_or(OidcError::UnknownKey)?
            }
        };
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{:?}", header.alg))
        {
            return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| OidcError::UnknownKey)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let claims = decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => OidcError::Signature,
                ErrorKind::ExpiredSignature => OidcError::Expired,
                ErrorKind::ImmatureSignature => OidcError::NotYetValid,
                ErrorKind::InvalidIssuer => OidcError::Issuer,
                ErrorKind::InvalidAudience => OidcError::Audience,
                ErrorKind::MissingRequiredClaim(c) => OidcError::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    OidcError::Algorithm(format!("{:?}", header.alg))
                }
                _ => OidcError::Malformed,
            })?
            .claims;
        let role = roles(claims.get(&self.config.role_claim))
            .max_by_key(|r| privilege(*r))
            .ok_or(OidcError::NoRole)?;
        let name = [self.config.name_claim.as_str(), "sub"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| OidcError::MissingClaim("sub".into()))?;
        Ok(Principal {
            name: name.chars().take(128).collect(),
            role,
            method: Method::Oidc,
        })
    }

    /// Whether a fetched key set is due to be fetched again.
    fn stale(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        matches!(self.source, Source::Url(_)) && keys.fetched.is_none_or(|f| f.elapsed() > JWKS_TTL)
    }

    /// The key a token names; without a `kid`, the set's only key.
    fn key(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match kid {
            Some(kid) => keys.set.find(kid).cloned(),
            None if keys.set.keys.len() == 1 => keys.set.keys.first().cloned(),
            None => None,
        }
    }

    /// Fetches the JWKS again (URL sources), at most once per [`REFETCH_MIN`].
    /// A failed fetch keeps the keys already known.
    async fn refresh(&self) -> Result<(), OidcError> {
        let Source::Url(url) = &self.source else {
            return Ok(());
        };
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFETCH_MIN) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fetched = async {
            let response = reqwest013::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?
                .get(url)
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(serde_json::from_slice::<JwkSet>(
                &response.bytes().await?,
            )?)
        }
        .await;
        match fetched {
            Ok(set) => {
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                *keys = Keys {
                    set,
                    fetched: Some(Instant::now()),
                };
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the OIDC issuer's keys failed");
                let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
                if keys.set.keys.is_empty() {
                    Err(OidcError::Keys)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The Aina roles a claim names (a string or a list of strings).
fn roles(claim: Option<&Value>) -> impl Iterator<Item = Role> + '_ {
    let list: Vec<&str> = match claim {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    list.into_iter().filter_map(|s| s.parse().ok())
}

/// When a token names several roles, the one that may do most wins.
fn privilege(role: Role) -> u8 {
    match role {
        Role::Ingest => 0,
        Role::Clinician => 1,
        Role::Reader => 2,
        Role::Admin => 3,
    }
}
