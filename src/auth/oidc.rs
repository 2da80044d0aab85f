//! OIDC bearer tokens: a JWT signed by the configured issuer's keys (a JWKS,
//! from a file or fetched from the issuer), for hospitals with an identity
//! provider (Keycloak, ADFS, Azure AD …).
//!
//! Only asymmetric signatures are accepted, and only with the algorithm the
//! key is for: `alg: none`, HMAC (which would let anyone holding the public
//! key sign), and a key of another family are refused before any claim is
//! read.

use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use reqwest013::Url;
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
/// The signature algorithms accepted: asymmetric ones only (no `none`, no
/// HMAC, whose secret would be the issuer's public key).
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

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
    Url(Url),
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
    /// [`REFETCH_MIN`], shorter in tests of key rotation.
    refetch_min: Duration,
}

impl Verifier {
    /// Reads a JWKS file now; a JWKS URL is fetched on first use. http://
    /// URLs are accepted for loopback hosts only (tests, a local proxy).
    pub fn new(config: &OidcConfig) -> anyhow::Result<Verifier> {
        let scheme = config.jwks.split_once("://").map(|(s, _)| s);
        let (source, set) = if scheme
            .is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"))
        {
            let url = Url::parse(&config.jwks)
                .with_context(|| format!("--oidc-jwks {}: not a URL", config.jwks))?;
            anyhow::ensure!(
                fetchable(&url),
                "--oidc-jwks {}: use https:// (http:// only for loopback)",
                config.jwks
            );
            (Source::Url(url), JwkSet { keys: Vec::new() })
        } else {
            let json = std::fs::read(&config.jwks)
                .with_context(|| format!("reading the JWKS file {}", config.jwks))?;
            let set: JwkSet = serde_json::from_slice(&json)
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
            refetch_min: REFETCH_MIN,
        })
    }

    /// The principal a valid token names.
    pub async fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed);
        }
        let header = decode_header(token).map_err(|_| OidcError::Malformed)?;
        if !ACCEPTED.contains(&header.alg) {
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
        if !fits(&jwk, header.alg) {
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
        if last.is_some_and(|t| t.elapsed() < self.refetch_min) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fetched = async {
            let response = reqwest013::Client::builder()
                .timeout(Duration::from_secs(10))
                // A redirect may not leave https (or loopback).
                .redirect(reqwest013::redirect::Policy::custom(|attempt| {
                    if attempt.previous().len() >= 5 {
                        attempt.error("too many redirects")
                    } else if fetchable(attempt.url()) {
                        attempt.follow()
                    } else {
                        attempt.error("redirected away from https")
                    }
                }))
                .build()?
                .get(url.clone())
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
                tracing::warn!(url = %url, error = %e, "fetching the OIDC issuer's keys failed");
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

/// Whether keys may be fetched from `url`: https, or http to a loopback host
/// (tests, a local proxy), where no one on the network can swap the keys.
fn fetchable(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some(host) if host.eq_ignore_ascii_case("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        },
        _ => false,
    }
}

/// Whether `jwk` may check a signature made with `alg`: a signing key, of
/// the algorithm's family and curve, and of the algorithm the key names if
/// it names one.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
        || jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{alg:?}"))
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc");

    fn config(jwks: &str) -> OidcConfig {
        OidcConfig {
            issuer: "https://sso.hospital.kz/realms/pacs".into(),
            audience: "aina".into(),
            jwks: jwks.into(),
            role_claim: "roles".into(),
            name_claim: "preferred_username".into(),
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(&config(&format!("{FIXTURES}/jwks.json"))).unwrap()
    }

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn claims() -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": "https://sso.hospital.kz/realms/pacs",
            "aud": ["aina", "account"],
            "sub": "f3b1c0de",
            "preferred_username": "dr.aliya",
            "roles": ["offline_access", "clinician", "reader"],
            "exp": now + 300,
            "iat": now,
        })
    }

    fn signed(alg: Algorithm, kid: Option<&str>, key_file: &str, claims: &Value) -> String {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem(key_file)).unwrap(),
            _ => EncodingKey::from_rsa_pem(&pem(key_file)).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key).unwrap()
    }

    fn b64(v: &Value) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[tokio::test]
    async fn valid_tokens_name_a_principal() {
        let v = verifier();
        let rs = signed(Algorithm::RS256, Some("rsa-1"), "rsa-1.pem", &claims());
        let p = v.verify(&rs).await.unwrap();
        assert_eq!(p.name, "dr.aliya");
        assert_eq!(
            p.role,
            Role::Reader,
            "the most privileged of the roles named"
        );
        assert_eq!(p.method, Method::Oidc);
        let es = signed(Algorithm::ES256, Some("ec-1"), "ec-1.pem", &claims());
        assert_eq!(v.verify(&es).await.unwrap().role, Role::Reader);
        // A single role as a string; the subject when there is no user name.
        let mut c = claims();
        c["roles"] = json!("admin");
        c.as_object_mut().unwrap().remove("preferred_username");
        let p = v
            .verify(&signed(Algorithm::RS256, Some("rsa-1"), "rsa-1.pem", &c))
            .await
            .unwrap();
        assert_eq!((p.name.as_str(), p.role), ("f3b1c0de", Role::Admin));
    }

    #[tokio::test]
    async fn forged_and_wrong_tokens_are_refused() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            signed(Algorithm::RS256, Some("rsa-1"), "rsa-1.pem", &c)
        };
        // alg none: no signature at all.
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "rsa-1"})),
            b64(&claims())
        );
        // HS256 keyed with the published RSA public key (algorithm confusion).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let confused = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&pem("rsa-1.pub.pem")),
        )
        .unwrap();
        // The right kid, another key.
        let other_key = signed(Algorithm::RS256, Some("rsa-1"), "rsa-other.pem", &claims());
        // An RSA signature presented under the EC key's kid.
        let wrong_family = signed(Algorithm::RS256, Some("ec-1"), "rsa-1.pem", &claims());
        // A valid PS256 signature by the key published for RS256 only.
        let wrong_alg = signed(Algorithm::PS256, Some("rsa-1"), "rsa-1.pem", &claims());
        let rs = signed(Algorithm::RS256, Some("rsa-1"), "rsa-1.pem", &claims());
        let (head, rest) = rs.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut c = claims();
        c["roles"] = json!(["admin"]);
        let tampered = format!("{head}.{}.{sig}", b64(&c));
        // What the case is, the token, the refusal expected.
        type Case = (&'static str, String, fn(&OidcError) -> bool);
        let cases: Vec<Case> = vec![
            ("alg none", none, |e| {
                matches!(e, OidcError::Malformed | OidcError::Algorithm(_))
            }),
            ("HS256 with the public key", confused, |e| {
                matches!(e, OidcError::Algorithm(_))
            }),
            ("another key", other_key, |e| {
                matches!(e, OidcError::Signature)
            }),
            ("wrong key family", wrong_family, |e| {
                matches!(e, OidcError::Algorithm(_))
            }),
            ("another algorithm than the key's", wrong_alg, |e| {
                matches!(e, OidcError::Algorithm(_))
            }),
            ("tampered claims", tampered, |e| {
                matches!(e, OidcError::Signature)
            }),
            ("expired", with(&|c| c["exp"] = json!(now - 3600)), |e| {
                matches!(e, OidcError::Expired)
            }),
            (
                "not yet valid",
                with(&|c| c["nbf"] = json!(now + 3600)),
                |e| matches!(e, OidcError::NotYetValid),
            ),
            (
                "wrong issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
                |e| matches!(e, OidcError::Issuer),
            ),
            (
                "wrong audience",
                with(&|c| c["aud"] = json!("someone-else")),
                |e| matches!(e, OidcError::Audience),
            ),
            (
                "no expiry",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                |e| matches!(e, OidcError::MissingClaim(_)),
            ),
            (
                "no Aina role",
                with(&|c| c["roles"] = json!(["offline_access"])),
                |e| matches!(e, OidcError::NoRole),
            ),
            (
                "unknown kid",
                signed(Algorithm::RS256, Some("rsa-9"), "rsa-1.pem", &claims()),
                |e| matches!(e, OidcError::UnknownKey),
            ),
            ("garbage", "not.a.jwt".into(), |e| {
                matches!(e, OidcError::Malformed)
            }),
            ("empty", String::new(), |e| {
                matches!(e, OidcError::Malformed)
            }),
            ("huge", "a".repeat(MAX_TOKEN_BYTES + 1), |e| {
                matches!(e, OidcError::Malformed)
            }),
        ];
        for (what, token, expected) in cases {
            match v.verify(&token).await {
                Ok(p) => panic!("{what}: accepted as {p:?}"),
                Err(e) => assert!(expected(&e), "{what}: {e:?}"),
            }
        }
    }

    #[test]
    fn jwks_must_be_readable_and_https() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
        for refused in [
            "/nonexistent/jwks.json",
            empty.to_str().unwrap(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc/rsa-1.pem"),
            "http://sso.hospital.kz/certs",
            "http://10.0.0.5/certs",
            "http://[2001:db8::1]:8080/certs",
            // Loopback as the user name, not the host.
            "http://127.0.0.1@sso.hospital.kz/certs",
            "http://localhost.sso.hospital.kz/certs",
            "https://",
        ] {
            assert!(Verifier::new(&config(refused)).is_err(), "{refused}");
        }
        for accepted in [
            "http://127.0.0.1:8080/certs",
            "http://127.0.0.2/certs",
            "http://[::1]:8080/certs",
            "HTTP://LOCALHOST/certs",
            "https://sso.hospital.kz/realms/pacs/protocol/openid-connect/certs",
        ] {
            assert!(Verifier::new(&config(accepted)).is_ok(), "{accepted}");
        }
    }

    #[test]
    fn only_signing_keys_of_the_token_algorithm_fit() {
        let set: JwkSet = serde_json::from_slice(&pem("jwks.json")).unwrap();
        let (rsa, ec) = (set.find("rsa-1").unwrap(), set.find("ec-1").unwrap());
        assert!(fits(rsa, Algorithm::RS256) && fits(ec, Algorithm::ES256));
        for alg in [Algorithm::PS256, Algorithm::ES256, Algorithm::HS256] {
            assert!(!fits(rsa, alg), "{alg:?}");
        }
        for alg in [Algorithm::ES384, Algorithm::RS256, Algorithm::EdDSA] {
            assert!(!fits(ec, alg), "{alg:?}");
        }
        // Without `alg`, the family decides; an encryption key never signs.
        let mut any_rsa = rsa.clone();
        any_rsa.common.key_algorithm = None;
        assert!(fits(&any_rsa, Algorithm::PS512) && !fits(&any_rsa, Algorithm::ES256));
        any_rsa.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(!fits(&any_rsa, Algorithm::RS256));
        // A symmetric key in the set is never used.
        let oct: Jwk = serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap();
        assert!(ACCEPTED.iter().all(|alg| !fits(&oct, *alg)));
    }

    /// A stand-in issuer publishing `set` at /certs and counting fetches.
    async fn issuer(set: Arc<Mutex<Value>>, fetches: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let (set, fetches) = (set.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(set.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/certs")
    }

    #[tokio::test]
    async fn fetched_keys_are_cached_and_refetched_for_a_new_kid_at_most_so_often() {
        let jwks: Value = serde_json::from_slice(&pem("jwks.json")).unwrap();
        let ec_only = json!({"keys": [jwks["keys"][1]]});
        let published = Arc::new(Mutex::new(ec_only.clone()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let url = issuer(published.clone(), fetches.clone()).await;
        let fetched = || fetches.load(Ordering::SeqCst);
        let es = signed(Algorithm::ES256, Some("ec-1"), "ec-1.pem", &claims());
        let rs = signed(Algorithm::RS256, Some("rsa-1"), "rsa-1.pem", &claims());

        // Fetched on first use, then cached.
        let v = Verifier::new(&config(&url)).unwrap();
        assert_eq!(fetched(), 0, "nothing fetched at start-up");
        v.verify(&es).await.unwrap();
        v.verify(&es).await.unwrap();
        assert_eq!(fetched(), 1);
        // The issuer adds a key: a token naming it within a minute of the last
        // fetch is refused without fetching (forged kids cannot hammer the issuer).
        *published.lock().unwrap() = jwks.clone();
        assert!(matches!(v.verify(&rs).await, Err(OidcError::UnknownKey)));
        assert_eq!(fetched(), 1);

        // With the minute shortened: a new kid refetches once it has passed.
        *published.lock().unwrap() = ec_only;
        let mut v = Verifier::new(&config(&url)).unwrap();
        v.refetch_min = Duration::from_millis(300);
        v.verify(&es).await.unwrap();
        assert_eq!(fetched(), 2);
        *published.lock().unwrap() = jwks;
        assert!(matches!(v.verify(&rs).await, Err(OidcError::UnknownKey)));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let p = v.verify(&rs).await.unwrap();
        assert_eq!(p.name, "dr.aliya");
        assert_eq!(fetched(), 3);
        let forged_kid = signed(Algorithm::RS256, Some("rsa-9"), "rsa-1.pem", &claims());
        assert!(matches!(
            v.verify(&forged_kid).await,
            Err(OidcError::UnknownKey)
        ));
        assert_eq!(fetched(), 3, "refetched too soon after the last fetch");
    }

    #[tokio::test]
    async fn an_unreachable_issuer_refuses_tokens() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let v = Verifier::new(&config(&format!("http://{closed}/certs"))).unwrap();
        let es = signed(Algorithm::ES256, Some("ec-1"), "ec-1.pem", &claims());
        assert!(matches!(v.verify(&es).await, Err(OidcError::Keys)));
    }
}
