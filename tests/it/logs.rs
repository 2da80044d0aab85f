//! What the real binary writes to its log at debug level while it stores,
//! searches, signs in and refuses: UIDs and sizes, never a patient's name or
//! ID, a password, a token or a session.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use reqwest::{StatusCode, header};
use serde_json::json;

use crate::common::*;

const NAME: &str = "Секретова^Айгерим";
const PATIENT_ID: &str = "PHI-SECRET-77";
const PASSWORD: &str = "Hunter2-Secret-Password";
const WRONG_PASSWORD: &str = "Wrong-Guess-Password-9";

fn aina(data: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aina"));
    c.args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "debug")
        .env_remove("AINA_DATABASE_URL")
        .env_remove("AINA_STORAGE_URL");
    c
}

#[tokio::test]
async fn no_patient_data_or_secrets_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut add = aina(data, &["user", "add", "dr.aliya", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        writeln!(stdin, "{PASSWORD}").unwrap();
    }
    let out = add.wait_with_output().unwrap();
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    let out = aina(
        data,
        &["token", "create", "--name", "logs-test", "--role", "admin"],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("aina_"), "{token}");
    log.push_str(&String::from_utf8_lossy(&out.stderr));

    let mut server = aina(
        data,
        &[
            "serve",
            "--auth",
            "--http",
            "127.0.0.1:0",
            "--dicom",
            "127.0.0.1:0",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "server exited:\n{log}"
        );
        log.push_str(&line);
        if line.contains("HTTP listening")
            && let Some(at) = line.find("http_addr=")
        {
            break line[at + 10..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    let root = format!("http://{addr}");
    let client = reqwest::Client::new();

    let file = edit(&sample()[0].bytes, |obj| {
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(NAME),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from(PATIENT_ID),
        ));
    });
    let (content_type, body) = dicom_parts(&[&file, b"not DICOM at all"]);
    let res = client
        .post(format!("{root}/dicomweb/studies"))
        .bearer_auth(&token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "one stored, one refused"
    );
    for query in [
        format!("PatientName={}*", &NAME[..6]),
        format!("PatientID={PATIENT_ID}"),
        "PatientBirthDate=notadate".to_owned(),
    ] {
        client
            .get(format!("{root}/dicomweb/studies?{query}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    let res = client
        .post(format!("{root}/auth/login"))
        .json(&json!({"username": "dr.aliya", "password": WRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .post(format!("{root}/auth/login"))
        .json(&json!({"username": "dr.aliya", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let csrf = res.json::<serde_json::Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .get(format!("{root}/dicomweb/studies"))
        .header(header::COOKIE, format!("aina_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let forged = format!("{}x", &token[..token.len() - 1]);
    let res = client
        .get(format!("{root}/dicomweb/studies"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    server.kill().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    server.wait().unwrap();
    log.push_str(&rest);
    assert!(log.contains("HTTP listening"), "the log was captured");
    let (secret, _) = (token.rsplit_once('_').unwrap().1, ());
    for (what, needle) in [
        ("patient name", NAME),
        ("patient name (family)", "Секретова"),
        ("patient ID", PATIENT_ID),
        ("password", PASSWORD),
        ("wrong password", WRONG_PASSWORD),
        ("token secret", secret),
        ("session id", session.as_str()),
        ("CSRF token", csrf.as_str()),
    ] {
        assert!(!log.contains(needle), "the log shows a {what}:\n{log}");
    }

    // The operator's side, on the same archive: the audit log as DICOM audit
    // messages, tokens and users listed, revoked, disabled.
    let out_file = data.join("audit.xml");
    let out = aina(
        data,
        &["audit", "export", "--out", out_file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&out_file).unwrap();
    assert!(exported.lines().count() >= 6, "{exported}");
    assert!(exported.lines().all(|l| l.starts_with("<AuditMessage>")));
    assert!(
        exported.contains(PATIENT_ID),
        "the audit log does name the patient"
    );
    assert!(!exported.contains(PASSWORD) && !exported.contains(secret));
    let text = |args: &[&str]| {
        let out = aina(data, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = text(&["token", "list"]);
    assert!(
        listed.contains("logs-test") && listed.contains("last used"),
        "{listed}"
    );
    assert!(!listed.contains(secret));
    text(&["token", "revoke", "logs-test"]);
    assert!(text(&["token", "list"]).contains("revoked"));
    let out = aina(data, &["token", "revoke", "logs-test"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing left to revoke");
    text(&["user", "disable", "dr.aliya"]);
    assert!(text(&["user", "list"]).contains("dr.aliya\tadmin\tdisabled"));
    let out = aina(data, &["user", "add", "x", "--role", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "unknown role refused");
}
