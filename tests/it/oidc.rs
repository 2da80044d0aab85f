//! OIDC bearer tokens end to end: a server with an issuer configured accepts
//! its signed tokens (keys from a JWKS file, or fetched from a URL), and
//! refuses forged ones with 401, each refusal audited.

use std::time::Duration;

use aina::auth::audit::{AuditFilter, Outcome};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, TestServer};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc");
const ISSUER: &str = "https://sso.hospital.kz/realms/pacs";

fn claims(roles: Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": ISSUER, "aud": "aina", "sub": "u-17", "preferred_username": "dr.bota",
        "roles": roles, "exp": now + 300,
    })
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn signed(alg: Algorithm, key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

fn token(key_file: &str, kid: &str, roles: Value) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture(key_file)).unwrap();
    signed(Algorithm::RS256, &key, kid, &claims(roles))
}

async fn start(jwks: String) -> TestServer {
    common::start_with(|s| {
        s.auth = Some(true);
        s.oidc_issuer = Some(ISSUER.into());
        s.oidc_audience = Some("aina".into());
        s.oidc_jwks = Some(jwks);
    })
    .await
}

async fn status(server: &TestServer, bearer: &str) -> StatusCode {
    server
        .client
        .get(format!("{}/studies", server.dicomweb))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn issuer_tokens_from_a_jwks_file() {
    let server = start(format!("{FIXTURES}/jwks.json")).await;
    let good = token("rsa-1.pem", "rsa-1", json!(["clinician"]));
    assert_eq!(status(&server, &good).await, StatusCode::OK);
    // A clinician may not store.
    let res = server
        .client
        .post(format!("{}/studies", server.dicomweb))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let alg_none = {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let now = jsonwebtoken::get_current_timestamp();
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "rsa-1"})),
            b64(
                json!({"iss": ISSUER, "aud": "aina", "sub": "x", "roles": ["admin"], "exp": now + 300})
            )
        )
    };
    let rsa_1 = EncodingKey::from_rsa_pem(&fixture("rsa-1.pem")).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let mut expired = claims(json!(["admin"]));
    expired["exp"] = json!(now - 3600);
    let mut elsewhere = claims(json!(["admin"]));
    elsewhere["aud"] = json!("another-app");
    let forged = [
        alg_none,
        // HMAC keyed with the issuer's published public key.
        signed(
            Algorithm::HS256,
            &EncodingKey::from_secret(&fixture("rsa-1.pub.pem")),
            "rsa-1",
            &claims(json!(["admin"])),
        ),
        token("rsa-other.pem", "rsa-1", json!(["admin"])),
        signed(Algorithm::RS256, &rsa_1, "rsa-1", &expired),
        signed(Algorithm::RS256, &rsa_1, "rsa-1", &elsewhere),
        token("rsa-1.pem", "rsa-1", json!(["root"])),
    ];
    for bad in &forged {
        let res = server
            .client
            .get(format!("{}/studies", server.dicomweb))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    let state = &server.server.state;
    state.audit.flush().await;
    let events = state
        .audit_log
        .search(&AuditFilter::default())
        .await
        .unwrap();
    let ok: Vec<_> = events
        .iter()
        .filter(|r| r.event.outcome == Outcome::Success)
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].event.actor, "dr.bota");
    assert_eq!(
        events
            .iter()
            .filter(|r| r.event.outcome == Outcome::Refused)
            .count(),
        1 + forged.len(),
        "the forbidden STOW and the forged tokens"
    );
}

/// Keys fetched from the issuer's JWKS URL (a local stand-in here).
#[tokio::test]
async fn issuer_keys_from_a_url() {
    let jwks = std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap();
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { ([("content-type", "application/json")], jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = tokio::spawn(async move { axum::serve(listener, app).await });
    let server = start(format!("http://127.0.0.1:{}/certs", addr.port())).await;
    let good = token("rsa-1.pem", "rsa-1", json!("reader"));
    assert_eq!(status(&server, &good).await, StatusCode::OK);
    assert_eq!(
        status(&server, &token("rsa-other.pem", "rsa-1", json!("reader"))).await,
        StatusCode::UNAUTHORIZED
    );
    // The keys are cached: the issuer going away does not sign everyone out.
    issuer.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(status(&server, &good).await, StatusCode::OK);
}
