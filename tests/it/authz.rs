//! Who may do what over HTTP: every route of the route table against every
//! role (allowed and refused), no credentials, bad credentials, sessions with
//! CSRF, failed-login rate limiting, hostile paths and query strings; every
//! refusal in the audit log.

use std::time::Duration;

use aina::auth::audit::{Action, AuditFilter, Outcome};
use aina::auth::{Access, Role};
use aina::http::routes;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{self, TestServer};

async fn start_auth() -> TestServer {
    common::start_with(|s| s.auth = Some(true)).await
}

/// A token of each role.
async fn tokens(server: &TestServer) -> Vec<(Role, String)> {
    let mut out = Vec::new();
    for role in Role::ALL {
        let t = server
            .server
            .state
            .accounts
            .create_token(&format!("test-{role}"), role, Duration::from_secs(86_400))
            .await
            .unwrap();
        out.push((role, t.token));
    }
    out
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{study}", "1.2.826.0.1.3680043.9.7")
        .replace("{series}", "1.2.826.0.1.3680043.9.7.1")
        .replace("{instance}", "1.2.826.0.1.3680043.9.7.1.1")
        .replace("{frames}", "1")
        .replace("{*path}", "7FE00010")
        .replace("{*file}", "app.js")
        .replace("{username}", "nobody")
        .replace("{token}", "nothing")
        .replace("{id}", "0123456789abcdef")
}

fn method(m: &axum::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).unwrap()
}

async fn audit(server: &TestServer, filter: AuditFilter) -> Vec<aina::auth::audit::AuditRecord> {
    server.server.state.audit.flush().await;
    server.server.state.audit_log.search(&filter).await.unwrap()
}

#[tokio::test]
async fn every_route_against_every_role() {
    let server = start_auth().await;
    let tokens = tokens(&server).await;
    let table = routes();
    assert!(table.len() > 40, "the route table lists every route");
    let mut refusals = 0;
    for (route, _) in &table {
        let url = format!("{}{}", server.root, concrete(route.path));
        let m = method(&route.method);

        let anonymous = server.client.request(m.clone(), &url).send().await.unwrap();
        if route.access == Access::Public {
            assert!(
                !matches!(
                    anonymous.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ),
                "{} {} is public, got {}",
                route.method,
                route.path,
                anonymous.status()
            );
            // Opening a share link with a bad token is a refusal, recorded
            // by the route itself.
            if route.path.starts_with("/s/") {
                refusals += 1;
            }
            continue;
        }
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{} {} without credentials",
            route.method,
            route.path
        );
        assert!(anonymous.headers().contains_key(header::WWW_AUTHENTICATE));
        refusals += 1;

        for (role, token) in &tokens {
            let res = server
                .client
                .request(m.clone(), &url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            if role.grants(route.access) {
                assert!(
                    !matches!(
                        res.status(),
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ),
                    "{role} may {} {}, got {}",
                    route.method,
                    route.path,
                    res.status()
                );
            } else {
                assert_eq!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{role} may not {} {}",
                    route.method,
                    route.path
                );
                refusals += 1;
            }
        }
    }
    let refused = audit(
        &server,
        AuditFilter {
            outcome: Some(Outcome::Refused),
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(refused.len(), refusals, "every refusal is audited");
    assert!(refused.iter().all(|r| r.event.detail.is_some()));
}

#[tokio::test]
async fn bad_bearer_tokens_are_refused_and_audited() {
    let server = start_auth().await;
    let accounts = &server.server.state.accounts;
    let good = accounts
        .create_token("pacs-bridge", Role::Reader, Duration::from_secs(86_400))
        .await
        .unwrap();
    let revoked = accounts
        .create_token("old-ehr", Role::Reader, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(accounts.revoke_token(&revoked.info.id).await.unwrap(), 1);

    let studies = format!("{}/studies", server.dicomweb);
    let status = |auth: Option<String>| {
        let mut req = server.client.get(&studies);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        status(Some(format!("Bearer {}", good.token)))
            .await
            .status(),
        StatusCode::OK
    );
    // The secret of one token with the id of another.
    let (_, good_secret) = good.token.rsplit_once('_').unwrap();
    let forged = format!("aina_{}_{}", revoked.info.id, good_secret);
    let alg_none =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsInJvbGVzIjpbImFkbWluIl19.";
    for bad in [
        format!("Bearer {}", revoked.token),
        format!("Bearer {forged}"),
        "Bearer aina_".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {alg_none}"),
        format!("Basic {}", "YWRtaW46YWRtaW4="),
        "Bearer ' OR 1=1 --".to_owned(),
    ] {
        let res = status(Some(bad.clone())).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let refused = audit(
        &server,
        AuditFilter {
            outcome: Some(Outcome::Refused),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(refused.len(), 7);
    assert!(
        refused
            .iter()
            .any(|r| r.event.actor == format!("token {}", revoked.info.id)),
        "a refused token is named by its id"
    );
    // No secret reaches the log.
    for r in &refused {
        let text = serde_json::to_string(&r.event).unwrap();
        assert!(!text.contains(good_secret));
    }
}

#[tokio::test]
async fn sessions_need_csrf_and_end_at_logout() {
    let server = start_auth().await;
    let state = &server.server.state;
    state
        .accounts
        .create_user("dr.aliya", Role::Admin, "correct horse battery")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/auth/login", server.root))
        .json(&json!({"username": "dr.aliya", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    assert_eq!(body["role"], "admin");

    let get = |path: &str| {
        client
            .get(format!("{}{path}", server.root))
            .header(header::COOKIE, &session)
    };
    assert_eq!(
        get("/dicomweb/studies").send().await.unwrap().status(),
        StatusCode::OK
    );
    let me: Value = get("/auth/me").send().await.unwrap().json().await.unwrap();
    assert_eq!(me["name"], "dr.aliya");
    assert_eq!(me["csrf"], csrf.as_str());

    // A state-changing request riding on the cookie alone is refused.
    let delete = format!("{}/dicomweb/studies/1.2.3", server.root);
    let res = client
        .delete(&delete)
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = client
        .delete(&delete)
        .header(header::COOKIE, &session)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = client
        .delete(&delete)
        .header(header::COOKIE, &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "authorised; nothing to delete"
    );

    let res = client
        .post(format!("{}/auth/logout", server.root))
        .header(header::COOKIE, &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get("/dicomweb/studies").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let events = audit(&server, AuditFilter::default()).await;
    let actions: Vec<Action> = events.iter().map(|r| r.event.action).collect();
    assert!(actions.contains(&Action::Login) && actions.contains(&Action::Logout));
}

#[tokio::test]
async fn failed_logins_are_limited_and_audited() {
    let server = start_auth().await;
    server
        .server
        .state
        .accounts
        .create_user("bota", Role::Reader, "a long enough secret")
        .await
        .unwrap();
    let login = |password: &'static str| {
        server
            .client
            .post(format!("{}/auth/login", server.root))
            .json(&json!({"username": "bota", "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            login("guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = login("a long enough secret").await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked, even with the right password"
    );
    let retry: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60 && retry <= 900, "{retry}");

    // Malformed bodies are refused before any password work.
    for (content_type, body) in [
        ("application/json", "{\"username\": \"bota\"}"),
        ("application/json", "not json"),
        ("text/plain", "{\"username\":\"bota\",\"password\":\"x\"}"),
        (
            "application/json",
            "{\"username\":\"bota\",\"password\":\"x\",\"role\":\"admin\"}",
        ),
    ] {
        let res = server
            .client
            .post(format!("{}/auth/login", server.root))
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }

    let failed = audit(
        &server,
        AuditFilter {
            action: Some(Action::LoginFailed),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|r| r.event.actor == "bota"));
    assert_eq!(failed.last().unwrap().event.status, Some(429));
}

#[tokio::test]
async fn hostile_paths_and_queries_leak_nothing() {
    let server = start_auth().await;
    let tokens = tokens(&server).await;
    let admin = &tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1;
    let files: Vec<&[u8]> = common::sample()
        .iter()
        .take(2)
        .map(|g| g.bytes.as_slice())
        .collect();
    let (status, _) = stow_with(&server, admin, &files).await;
    assert_eq!(status, StatusCode::OK);
    let before = count_studies(&server, admin).await;
    assert!(before >= 1);

    let attacks = [
        "' OR '1'='1",
        "1.2.3'; DROP TABLE studies; --",
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%00",
        "1.2.3\" UNION SELECT * FROM users --",
        "${jndi:ldap://x}",
    ];
    for (route, _) in routes() {
        if route.method != axum::http::Method::GET || route.access != Access::Read {
            continue;
        }
        for attack in attacks {
            let encoded = urlencode(attack);
            let path = route
                .path
                .replace("{study}", &encoded)
                .replace("{series}", &encoded)
                .replace("{instance}", &encoded)
                .replace("{frames}", &encoded)
                .replace("{*path}", &encoded);
            let res = server
                .client
                .get(format!(
                    "{}{path}?PatientName={encoded}&StudyDate={encoded}&limit={encoded}",
                    server.root
                ))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body = res.bytes().await.unwrap();
            assert!(
                status.is_client_error()
                    || (status == StatusCode::OK
                        && (is_empty_answer(&body) || ignored_by_fhir(&path, &body))),
                "{path} with {attack:?}: {status}"
            );
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("root:"), "no file contents");
            assert!(!text.to_lowercase().contains("sqlite") && !text.contains("syntax error"));
        }
    }
    // Every matching key with hostile values: a clear 400 or an empty answer.
    for key in [
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "AccessionNumber",
        "ModalitiesInStudy",
        "StudyDate",
        "00100010",
        "includefield",
        "offset",
        "fuzzymatching",
        "orderby",
    ] {
        for attack in attacks {
            let res = server
                .client
                .get(format!(
                    "{}/studies?{key}={}",
                    server.dicomweb,
                    urlencode(attack)
                ))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body = res.bytes().await.unwrap();
            assert!(
                status == StatusCode::BAD_REQUEST
                    || (status == StatusCode::OK && is_empty_answer(&body))
                    || status == StatusCode::NO_CONTENT,
                "{key}={attack:?}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    assert_eq!(
        count_studies(&server, admin).await,
        before,
        "nothing dropped"
    );

    // Oversized headers are refused by the HTTP layer.
    let res = server
        .client
        .get(format!("{}/studies", server.dicomweb))
        .bearer_auth(admin)
        .header("x-padding", "a".repeat(512 * 1024))
        .send()
        .await;
    match res {
        Ok(res) => assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // An oversized token is refused, not looked up.
    let res = server
        .client
        .get(format!("{}/studies", server.dicomweb))
        .bearer_auth(format!("aina_{}", "f".repeat(8000)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn is_empty_answer(body: &[u8]) -> bool {
    body.is_empty() || serde_json::from_slice::<Value>(body).is_ok_and(|v| v == json!([]))
}

/// A FHIR search ignores parameters it does not know (DICOM keywords among
/// them) and says so in the Bundle's OperationOutcome, as FHIR asks.
fn ignored_by_fhir(path: &str, body: &[u8]) -> bool {
    let Ok(bundle) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    path.starts_with("/fhir/")
        && bundle["resourceType"] == "Bundle"
        && bundle["entry"].as_array().is_some_and(|entries| {
            entries.iter().any(|e| {
                e["search"]["mode"] == "outcome"
                    && e["resource"].to_string().contains("PatientName")
            })
        })
}

async fn stow_with(server: &TestServer, token: &str, files: &[&[u8]]) -> (StatusCode, Value) {
    let (content_type, body) = common::dicom_parts(files);
    let res = server
        .client
        .post(format!("{}/studies", server.dicomweb))
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn count_studies(server: &TestServer, token: &str) -> usize {
    let res = server
        .client
        .get(format!("{}/studies", server.dicomweb))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    res.json::<Vec<Value>>().await.map_or(0, |v| v.len())
}

/// Audit events leave as DICOM audit messages: over syslog (UDP, RFC 5424)
/// as they happen, to a file, and from the stored log with `aina audit export`.
#[tokio::test]
async fn audit_messages_reach_syslog_and_files() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = collector.local_addr().unwrap().port();
    let server = common::start_with(|s| {
        s.audit_export = Some(format!("syslog+udp://127.0.0.1:{port}"));
    })
    .await;
    let res = server
        .client
        .get(format!("{}/studies?PatientID=KZ-77", server.dicomweb))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(Duration::from_secs(10), collector.recv(&mut buf))
        .await
        .expect("a syslog message")
        .unwrap();
    let message = String::from_utf8_lossy(&buf[..n]);
    assert!(message.starts_with("<85>1 "), "{message}");
    assert!(message.contains(" aina - IHE+RFC-3881 - "), "{message}");
    assert!(message.contains("<AuditMessage>") && message.contains(r#"csd-code="110112""#));
    assert!(
        message.contains(r#"ParticipantObjectID="KZ-77""#),
        "{message}"
    );

    // The file export, and the same events re-created from the database.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.xml");
    let server = common::start_with(|s| {
        s.audit_export = Some(format!("file://{}", file.display()));
    })
    .await;
    for _ in 0..3 {
        server
            .client
            .get(format!("{}/studies", server.dicomweb))
            .send()
            .await
            .unwrap();
    }
    server.server.state.audit.flush().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines()
            .all(|l| l.starts_with("<AuditMessage>") && l.ends_with("</AuditMessage>"))
    );
}
