//! `GET /audit`: administrators read the audit log over HTTP, filtered and
//! paged, up to and including what happened just before their request;
//! nobody else reads it, and unknown parameters are refused.

use std::time::Duration;

use aina::auth::Role;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{self, TestServer};

async fn token(server: &TestServer, name: &str, role: Role) -> String {
    server
        .server
        .state
        .accounts
        .create_token(name, role, Duration::from_secs(86_400))
        .await
        .unwrap()
        .token
}

async fn get(server: &TestServer, token: &str, path_and_query: &str) -> (StatusCode, Value) {
    let res = server
        .client
        .get(format!("{}{path_and_query}", server.root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn events(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
}

#[tokio::test]
async fn administrators_read_the_audit_log() {
    let server = common::start_with(|s| s.auth = Some(true)).await;
    let admin = token(&server, "auditor", Role::Admin).await;
    let reader = token(&server, "dr-aliya", Role::Reader).await;

    // A reader's search, seen at once (the log is flushed for the request).
    let (status, _) = get(&server, &reader, "/dicomweb/studies?PatientID=KZ-1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = get(&server, &admin, "/audit?actor=dr-aliya").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = events(&list);
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    for (field, expected) in [
        ("actor", "dr-aliya"),
        ("role", "reader"),
        ("method", "token"),
        ("action", "query"),
        ("outcome", "success"),
        ("patient_id", "KZ-1"),
        ("source", "127.0.0.1"),
    ] {
        assert_eq!(e[field], expected, "{field} of {e}");
    }
    assert_eq!(e["status"], 200);
    assert!(e["seq"].as_i64().unwrap() > 0 && e["time_ms"].as_i64().unwrap() > 0);
    assert_eq!(e["detail"], "GET /dicomweb/studies?PatientID=KZ-1");

    // The reader may not read the log; that attempt is in it too.
    let (status, _) = get(&server, &reader, "/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = get(
        &server,
        &admin,
        "/audit?actor=dr-aliya&action=audit-read&outcome=refused",
    )
    .await;
    assert_eq!(events(&list).len(), 1, "{list}");
    // So are the administrator's own reads, before this one.
    let (_, list) = get(&server, &admin, "/audit?actor=auditor&action=audit-read").await;
    assert_eq!(events(&list).len(), 2, "{list}");

    // Paging: `limit`, then `after` the last one seen, in sequence order.
    let (_, all) = get(&server, &admin, "/audit").await;
    let all = events(&all).clone();
    assert!(all.len() >= 5, "{all:?}");
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let (_, first) = get(&server, &admin, "/audit?limit=2").await;
    assert_eq!(events(&first).len(), 2);
    let (_, next) = get(
        &server,
        &admin,
        &format!("/audit?limit=2&after={}", seqs[1]),
    )
    .await;
    let next: Vec<i64> = events(&next)
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(next, seqs[2..4]);
    // Time bounds.
    let (_, none) = get(&server, &admin, "/audit?until_ms=1").await;
    assert!(events(&none).is_empty());
    let since = all[2]["time_ms"].as_i64().unwrap();
    let (_, later) = get(&server, &admin, &format!("/audit?since_ms={since}")).await;
    assert!(
        events(&later)
            .iter()
            .all(|e| e["time_ms"].as_i64().unwrap() >= since)
    );

    // Unknown parameters and values are refused, not ignored.
    for bad in [
        "/audit?patient=KZ-1",
        "/audit?action=everything",
        "/audit?limit=-1",
        "/audit?since_ms=yesterday",
    ] {
        let (status, body) = get(&server, &admin, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

/// `aina audit export` writes the stored events as DICOM audit messages, one
/// per line, within the time bounds given; reading the log that way is
/// itself in the log (Audit Log Used), under the operator's name.
#[test]
fn the_export_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let export = |args: &[&str]| {
        let out_file = data.path().join("audit.xml");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aina"))
            .args(["audit", "export", "--out"])
            .arg(&out_file)
            .args(args)
            .arg("--data")
            .arg(data.path())
            .env("USER", "ops-test")
            .env_remove("AINA_DATABASE_URL")
            .env_remove("AINA_STORAGE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(out_file).unwrap()
    };
    assert_eq!(export(&[]), "", "a new archive's log is empty");
    let text = export(&[]);
    assert_eq!(text.lines().count(), 1, "{text}");
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("<AuditMessage>") && line.ends_with("</AuditMessage>"));
    for needle in [
        r#"csd-code="110101""#,
        r#"EventActionCode="R""#,
        r#"UserID="ops-test""#,
        "Security Audit Log",
    ] {
        assert!(line.contains(needle), "{needle} in {line}");
    }
    // Bounds: nothing after the end of time; two reads (and this one) before.
    assert_eq!(export(&["--since-ms", "32503680000000"]), "");
    assert_eq!(export(&["--until-ms", "32503680000000"]).lines().count(), 3);
}
