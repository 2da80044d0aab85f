//! Share links: made by a reader through the API, opened without an account,
//! reaching their one study read-only and nothing else; forged, revoked and
//! expired links refused; every use audited under the link's id.

use aina::auth::Role;
use aina::auth::audit::{AuditFilter, Outcome};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::common::*;

/// A client that keeps cookies and does not follow redirects (the test
/// looks at the link's answer itself).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn token(server: &TestServer, name: &str, role: Role) -> String {
    server
        .server
        .state
        .accounts
        .create_token(name, role, std::time::Duration::from_secs(86_400))
        .await
        .unwrap()
        .token
}

/// Two studies stored; their UIDs.
async fn two_studies(server: &TestServer, bearer: &str) -> (String, String) {
    let mut studies: Vec<&str> = sample()
        .iter()
        .map(|g| g.study_instance_uid.as_str())
        .collect();
    studies.dedup();
    let (a, b) = (studies[0].to_owned(), studies[1].to_owned());
    let files: Vec<&[u8]> = sample()
        .iter()
        .filter(|g| g.study_instance_uid == a || g.study_instance_uid == b)
        .map(|g| g.bytes.as_slice())
        .collect();
    let (ct, body) = dicom_parts(&files);
    let res = server
        .client
        .post(format!("{}/studies", server.dicomweb))
        .bearer_auth(bearer)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    (a, b)
}

async fn create(server: &TestServer, bearer: &str, body: Value) -> (StatusCode, Value) {
    let res = server
        .client
        .post(format!("{}/shares", server.root))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An `Authorization: Bearer` header.
fn bearer(token: &str) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {token}"))
}

/// `GET /shares{query}` with one credential header: the JSON answer.
/// `DELETE /shares/{id}` with a bearer token: the status.
async fn revoke(server: &TestServer, id: &str, bearer: &str) -> StatusCode {
    let res = server
        .client
        .delete(format!("{}/shares/{id}", server.root))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    res.status()
}

async fn listed(
    server: &TestServer,
    query: &str,
    credential: (header::HeaderName, String),
) -> Value {
    let res = server
        .client
        .get(format!("{}/shares{query}", server.root))
        .header(credential.0, credential.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "GET /shares{query}");
    res.json().await.unwrap()
}

/// Signs in: the session cookie (`name=value`).
async fn session_of(server: &TestServer, username: &str, password: &str) -> String {
    let login = server
        .client
        .post(format!("{}/auth/login", server.root))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Sets a link's expiry in the database, as time passing would.
async fn expire(server: &TestServer, id: &str) {
    let url = &server.server.state.config.database;
    let sql = "UPDATE share_links SET expires_at = 1 WHERE id = $1";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn a_link_opens_one_study_read_only() {
    let server = start_with(|s| s.auth = Some(true)).await;
    let reader = token(&server, "dr-aliya", Role::Reader).await;
    let (study, other) = two_studies(&server, &reader).await;

    let (status, share) = create(
        &server,
        &reader,
        json!({ "study": study, "expires_in_minutes": 60, "note": "referral to the oncology centre" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    let link = share["url"].as_str().unwrap();
    let secret = share["token"].as_str().unwrap();
    let id = share["id"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/s/ainas_{id}_", server.root)));
    assert_eq!(share["study_instance_uid"], study);
    assert_eq!(share["created_by"], "token:dr-aliya");

    // Opening the link: a cookie for the link's lifetime, on to the viewer.
    let opened = browser().get(link).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        opened.headers()[header::LOCATION],
        format!("/viewer?studyUID={study}&shared=1").as_str()
    );
    let cookie = opened.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("aina_share=ainas_"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&max_age), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let get = |path: String| {
        let client = server.client.clone();
        let cookie = cookie.clone();
        async move {
            client
                .get(path)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let dw = &server.dicomweb;
    // What the viewer needs for the study is there.
    for path in [
        format!("{dw}/studies?StudyInstanceUID={study}"),
        format!("{dw}/studies?0020000D={study}&includefield=all"),
        format!("{dw}/studies/{study}/metadata"),
        format!("{dw}/studies/{study}/series"),
        format!("{dw}/studies/{study}/thumbnail"),
    ] {
        let res = get(path.clone()).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let me: Value = get(format!("{}/auth/me", server.root))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["method"], "share");
    assert_eq!(me["share"]["study"], study);
    // Nothing else is.
    for path in [
        format!("{dw}/studies"),
        format!("{dw}/studies?PatientID=*"),
        format!("{dw}/studies?StudyInstanceUID={other}"),
        format!("{dw}/studies?StudyInstanceUID={study},{other}"),
        format!("{dw}/studies?StudyInstanceUID={study}&StudyInstanceUID={other}"),
        // The tag in lower-case hex is the same key to QIDO-RS.
        format!("{dw}/instances?StudyInstanceUID={study}&0020000d={other}&includefield=all"),
        format!("{dw}/series?0020000d={other}"),
        format!("{dw}/studies/{other}/metadata"),
        format!("{dw}/series?StudyInstanceUID={other}"),
        format!("{dw}/instances"),
        format!("{dw}/wado?requestType=WADO&studyUID={study}"),
        format!("{}/fhir/ImagingStudy?patient.identifier=x", server.root),
        format!("{}/changefeed", server.root),
        format!("{}/shares", server.root),
        format!("{}/audit", server.root),
        format!("{}/admin/users", server.root),
    ] {
        let res = get(path.clone()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Read-only: no store, no delete, no new links.
    let (ct, body) = dicom_parts(&[&sample()[0].bytes]);
    let res = server
        .client
        .post(format!("{dw}/studies"))
        .header(header::COOKIE, &cookie)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = server
        .client
        .delete(format!("{dw}/studies/{study}"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The token works as a bearer token too (for a chart's own fetches).
    let res = server
        .client
        .get(format!("{dw}/studies/{study}/series"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Every use is audited under the link, with its study.
    server.server.state.audit.flush().await;
    let events = server
        .server
        .state
        .audit_log
        .search(&AuditFilter {
            actor: Some(format!("share {id}")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.event.outcome == Outcome::Success
        && e.event.study_uid.as_deref() == Some(study.as_str())));
    assert!(events.iter().any(|e| e.event.outcome == Outcome::Refused));
    assert!(
        events.iter().all(|e| !e
            .event
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(&secret[23..])),
        "no secret in the audit log"
    );

    // Listing: the maker sees it, another clinician does not; neither sees a secret.
    let list = listed(&server, &format!("?study={study}"), bearer(&reader)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["note"], "referral to the oncology centre");
    assert!(!list.to_string().contains(&secret[23..]));
    let clinician = token(&server, "ward-3", Role::Clinician).await;
    let theirs = listed(&server, "", bearer(&clinician)).await;
    assert_eq!(theirs, json!([]));
    // A user named like the maker's token is not the maker.
    server
        .server
        .state
        .accounts
        .create_user("dr-aliya", Role::Reader, "another long password")
        .await
        .unwrap();
    let namesake = session_of(&server, "dr-aliya", "another long password").await;
    let theirs = listed(&server, "", (header::COOKIE, namesake)).await;
    assert_eq!(theirs, json!([]));
    // … nor revoke it.
    assert_eq!(revoke(&server, id, &clinician).await, StatusCode::NOT_FOUND);

    // A session that ended in the same browser does not hide the link.
    server
        .server
        .state
        .accounts
        .create_user("dr-dana", Role::Reader, "a long enough password")
        .await
        .unwrap();
    let session = session_of(&server, "dr-dana", "a long enough password").await;
    let ended = server
        .server
        .state
        .accounts
        .set_disabled("dr-dana", true)
        .await;
    ended.unwrap();
    let res = server
        .client
        .get(format!("{dw}/studies/{study}/metadata"))
        .header(header::COOKIE, format!("{session}; {cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Revoked by its maker: refused from then on, and the link's page says so.
    assert_eq!(revoke(&server, id, &reader).await, StatusCode::NO_CONTENT);
    let res = get(format!("{dw}/studies/{study}/metadata")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let gone = browser().get(link).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(gone.headers().get(header::SET_COOKIE).is_none());
    let page = gone.text().await.unwrap();
    assert!(page.contains("revoked") && !page.contains(&study));
}

#[tokio::test]
async fn expired_forged_and_bad_links() {
    let server = start_with(|s| s.auth = Some(true)).await;
    let reader = token(&server, "dr-bota", Role::Reader).await;
    let (study, _) = two_studies(&server, &reader).await;
    let (_, share) = create(&server, &reader, json!({ "study": study })).await;
    let id = share["id"].as_str().unwrap().to_owned();
    let secret = share["token"].as_str().unwrap().to_owned();
    // Default lifetime: a week.
    let lifetime =
        share["expires_at_ms"].as_i64().unwrap() - share["created_at_ms"].as_i64().unwrap();
    assert_eq!(lifetime, 7 * 24 * 3600 * 1000);

    let metadata = format!("{}/studies/{study}/metadata", server.dicomweb);
    let with = |bearer: String| {
        let client = server.client.clone();
        let url = metadata.clone();
        async move { client.get(url).bearer_auth(bearer).send().await.unwrap() }
    };
    assert_eq!(with(secret.clone()).await.status(), StatusCode::OK);
    // Forged: the right id with another secret, a malformed token.
    let forged = format!("ainas_{id}_{}", "0".repeat(64));
    for bad in [forged.as_str(), "ainas_nothing", "ainas_"] {
        let res = with(bad.to_owned()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let text = res.text().await.unwrap();
        assert!(!text.contains(&study), "nothing leaked: {text}");
        let opened = browser()
            .get(format!("{}/s/{bad}", server.root))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    // Expired.
    expire(&server, &id).await;
    assert_eq!(
        with(secret.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let opened = browser()
        .get(format!("{}/s/{secret}", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::NOT_FOUND);

    // Bad requests for a link.
    for (body, status) in [
        (json!({ "study": "1.2.3.999" }), StatusCode::NOT_FOUND),
        (json!({ "study": "not a uid" }), StatusCode::BAD_REQUEST),
        (
            json!({ "study": study, "expires_in_minutes": 0 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "study": study, "expires_in_minutes": 200000 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "study": study, "expires_in_minutes": -5 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "study": study, "note": "x".repeat(300) }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "study": study, "role": "admin" }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = create(&server, &reader, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    // Listing with an unknown filter; revoking a link that is not there.
    let res = server
        .client
        .get(format!("{}/shares?patient=KZ-1", server.root))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("patient"));
    assert_eq!(
        revoke(&server, "0000000000000000", &reader).await,
        StatusCode::NOT_FOUND
    );
    // An ingest-only device may not make links.
    let device = token(&server, "modality-1", Role::Ingest).await;
    let (got, _) = create(&server, &device, json!({ "study": study })).await;
    assert_eq!(got, StatusCode::FORBIDDEN);
}
