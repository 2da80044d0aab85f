//! DIMSE roles and the audit log, against dcmtk: what a calling AE title's
//! role does not allow is refused with 0124 (Refused: Not authorized) and
//! audited; what it allows is done and audited with its UIDs and patient;
//! retrieves that send nothing, refused associations, wrong called AE titles
//! and failed TLS handshakes are audited too.
//!
//! The dcmtk tests run when `AINA_TEST_DCMTK` is set (`.ci/run` installs
//! dcmtk and sets it); the TLS one needs `openssl`.

use std::path::PathBuf;
use std::time::Duration;

use aina::auth::audit::{Action, AuditFilter, AuditRecord, Outcome, audit_message};
use aina::auth::{Method, Role};
use dicom_dictionary_std::tags;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::{self, TestServer, sample};
use crate::dimse::{dcmtk, write};

/// Runs a dcmtk tool as `calling` against the server called `called`;
/// returns (success, stdout + stderr).
async fn run(
    tool: &str,
    srv: &TestServer,
    (calling, called): (&str, &str),
    args: &[&str],
    files: &[PathBuf],
) -> (bool, String) {
    let out = Command::new(tool)
        .args(["-aet", calling, "-aec", called])
        .args(args)
        .args(["127.0.0.1", &srv.server.dicom_addr.port().to_string()])
        .args(files)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn patient_id(bytes: &[u8]) -> String {
    let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
    obj.element(tags::PATIENT_ID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end()
        .to_owned()
}

/// Everything in the audit log, once what was recorded is written.
async fn audit(srv: &TestServer) -> Vec<AuditRecord> {
    srv.server.state.audit.flush().await;
    srv.server
        .state
        .audit_log
        .search(&AuditFilter {
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

fn find<'a>(
    events: &'a [AuditRecord],
    actor: &str,
    action: Action,
    outcome: Outcome,
) -> Vec<&'a AuditRecord> {
    events
        .iter()
        .filter(|r| {
            r.event.actor == actor && r.event.action == action && r.event.outcome == outcome
        })
        .collect()
}

/// One event, failing with the whole log.
fn only<'a>(
    events: &'a [AuditRecord],
    actor: &str,
    action: Action,
    outcome: Outcome,
) -> &'a AuditRecord {
    let found = find(events, actor, action, outcome);
    assert_eq!(
        found.len(),
        1,
        "one {actor} {action:?} {outcome:?} in {events:#?}"
    );
    found[0]
}

/// A modality with the `ingest` role stores and may not query or retrieve; a
/// clinician's viewer queries and retrieves and may not store: each refusal
/// is the DIMSE status 0124 on the operation (the association stays), and
/// every operation, allowed or not, is in the audit log.
#[tokio::test]
async fn roles_refuse_with_0124_and_everything_is_audited() {
    if !dcmtk() {
        return;
    }
    let srv = common::start_with(|s| {
        s.dicom_allowed_caller = vec![
            "MAMMO1@127.0.0.0/8:ingest".into(),
            "VIEWER:clinician".into(),
        ];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let stored = &sample()[0];
    let other = sample()
        .iter()
        .find(|g| g.study_instance_uid != stored.study_instance_uid)
        .unwrap();

    let (ok, out) = run(
        "storescu",
        &srv,
        ("MAMMO1", "AINA"),
        &[],
        &[write(dir.path(), "a.dcm", &stored.bytes)],
    )
    .await;
    assert!(ok, "{out}");
    // The viewer may not store: refused, and nothing is stored.
    let (_, out) = run(
        "storescu",
        &srv,
        ("VIEWER", "AINA"),
        &["-v"],
        &[write(dir.path(), "b.dcm", &other.bytes)],
    )
    .await;
    assert!(out.contains("0x124"), "the C-STORE is refused: {out}");
    let found = srv
        .qido(&format!(
            "/studies?StudyInstanceUID={}",
            other.study_instance_uid
        ))
        .await;
    assert!(found.is_empty(), "nothing stored: {found:?}");

    let study_key = format!("StudyInstanceUID={}", stored.study_instance_uid);
    let find_args = [
        "-v",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &study_key,
        "-k",
        "PatientID",
    ];
    let (_, out) = run("findscu", &srv, ("MAMMO1", "AINA"), &find_args, &[]).await;
    assert!(out.contains("0x124"), "the modality may not query: {out}");
    assert!(!out.contains("Find Response: 1 (Pending)"), "{out}");
    let (ok, out) = run("findscu", &srv, ("VIEWER", "AINA"), &find_args, &[]).await;
    assert!(ok && !out.contains("0x124"), "{out}");
    assert!(out.contains(&stored.study_instance_uid), "one match: {out}");

    let get_dir = tempfile::tempdir().unwrap();
    let get_args = [
        "-v",
        "-S",
        "-od",
        get_dir.path().to_str().unwrap(),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &study_key,
    ];
    let (_, out) = run("getscu", &srv, ("MAMMO1", "AINA"), &get_args, &[]).await;
    assert!(
        out.contains("0x124"),
        "the modality may not retrieve: {out}"
    );
    assert_eq!(std::fs::read_dir(get_dir.path()).unwrap().count(), 0);
    let (ok, out) = run("getscu", &srv, ("VIEWER", "AINA"), &get_args, &[]).await;
    assert!(
        ok && out.contains("Received C-GET Response (Success)"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(get_dir.path()).unwrap().count(), 1);

    let events = audit(&srv).await;
    let patient = patient_id(&stored.bytes);
    // (The test's own DICOMweb search is in the log too, as anonymous.)
    for r in events
        .iter()
        .filter(|r| r.event.method != Method::Anonymous)
    {
        assert_eq!(
            (r.event.method, r.event.source.as_str()),
            (Method::Dicom, "127.0.0.1")
        );
    }
    // The store, with its UIDs and, from the index, its patient.
    let store = only(&events, "MAMMO1", Action::Store, Outcome::Success);
    assert_eq!(store.event.role, Some(Role::Ingest));
    assert_eq!(store.event.status, Some(0));
    assert_eq!(
        (
            store.event.study_uid.as_deref(),
            store.event.series_uid.as_deref(),
            store.event.sop_uid.as_deref(),
            store.event.patient_id.as_deref(),
        ),
        (
            Some(stored.study_instance_uid.as_str()),
            Some(stored.series_instance_uid.as_str()),
            Some(stored.sop_instance_uid.as_str()),
            Some(patient.as_str()),
        )
    );
    // The refused store names the instance it refused.
    let refused = only(&events, "VIEWER", Action::Store, Outcome::Refused);
    assert_eq!(refused.event.status, Some(0x0124));
    assert_eq!(refused.event.role, Some(Role::Clinician));
    assert_eq!(
        refused.event.sop_uid.as_deref(),
        Some(other.sop_instance_uid.as_str())
    );
    // The refused query and retrieve.
    for action in [Action::Query, Action::Retrieve] {
        let r = only(&events, "MAMMO1", action, Outcome::Refused);
        assert_eq!(r.event.status, Some(0x0124), "{r:?}");
    }
    // The query: its keys and values, the study matched on.
    let query = only(&events, "VIEWER", Action::Query, Outcome::Success);
    assert_eq!(
        query.event.study_uid.as_deref(),
        Some(stored.study_instance_uid.as_str())
    );
    let detail = query.event.detail.as_deref().unwrap();
    assert!(
        detail.contains("1 matches")
            && detail.contains(&format!("(0020,000D)={}", stored.study_instance_uid)),
        "{detail}"
    );
    // The retrieve: the study, how many, its patient.
    let get = only(&events, "VIEWER", Action::Retrieve, Outcome::Success);
    assert_eq!(get.event.status, Some(0));
    assert_eq!(
        (
            get.event.study_uid.as_deref(),
            get.event.patient_id.as_deref()
        ),
        (
            Some(stored.study_instance_uid.as_str()),
            Some(patient.as_str())
        )
    );
    assert!(
        get.event
            .detail
            .as_deref()
            .unwrap()
            .starts_with("C-GET: 1 instances of the study; 1 completed, 0 failed"),
        "{get:?}"
    );
    // As DICOM audit messages: the store transferred in, the refusal an alert.
    let xml = audit_message(&store.event, "AINA@test");
    assert!(xml.contains(r#"csd-code="110104""#) && xml.contains(r#"EventActionCode="C""#));
    let xml = audit_message(&refused.event, "AINA@test");
    assert!(xml.contains(r#"csd-code="110113""#) && xml.contains(r#"csd-code="110132""#));
}

/// A C-MOVE to a destination that is not configured, and a C-GET that
/// matches nothing, send nothing and are still in the audit log, with the
/// study they asked for.
#[tokio::test]
async fn retrieves_that_send_nothing_are_audited() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let g = &sample()[0];
    let (status, _) = srv.stow(&[&g.bytes]).await;
    assert!(status.is_success());
    let key = format!("StudyInstanceUID={}", g.study_instance_uid);
    let (_, out) = run(
        "movescu",
        &srv,
        ("WS1", "AINA"),
        &[
            "-v",
            "-S",
            "-aem",
            "NOWHERE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
        ],
        &[],
    )
    .await;
    assert!(out.contains("Refused: MoveDestinationUnknown"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(
        "getscu",
        &srv,
        ("WS1", "AINA"),
        &[
            "-S",
            "-od",
            dir.path().to_str().unwrap(),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID=1.2.826.0.1.3680043.9.7.404",
        ],
        &[],
    )
    .await;
    assert!(ok, "{out}");

    let events = audit(&srv).await;
    let moved = only(&events, "WS1", Action::Retrieve, Outcome::Failed);
    assert_eq!(moved.event.status, Some(0xA801));
    assert_eq!(
        moved.event.study_uid.as_deref(),
        Some(g.study_instance_uid.as_str())
    );
    assert!(
        moved.event.patient_id.is_some(),
        "the study's patient, from the index"
    );
    assert_eq!(
        moved.event.detail.as_deref(),
        Some("C-MOVE to NOWHERE: nothing sent; unknown destination")
    );
    // Its audit message names the destination asked for.
    let xml = audit_message(&moved.event, "AINA@test");
    assert!(xml.contains(r#"UserID="NOWHERE""#), "{xml}");
    let got = only(&events, "WS1", Action::Retrieve, Outcome::Success);
    assert_eq!(
        got.event.study_uid.as_deref(),
        Some("1.2.826.0.1.3680043.9.7.404")
    );
    assert_eq!(got.event.patient_id, None);
    assert!(
        got.event
            .detail
            .as_deref()
            .unwrap()
            .starts_with("C-GET: nothing sent"),
        "{got:?}"
    );
}

/// Refused associations are audited under the AE title the caller claimed,
/// with the reason: not on the allow-list, or calling someone else.
#[tokio::test]
async fn refused_associations_are_audited() {
    if !dcmtk() {
        return;
    }
    let srv = common::start_with(|s| s.dicom_allowed_caller = vec!["WS1".into()]).await;
    let (ok, _) = run("echoscu", &srv, ("WS1", "AINA"), &[], &[]).await;
    assert!(ok);
    let (ok, out) = run("echoscu", &srv, ("STRANGER", "AINA"), &[], &[]).await;
    assert!(
        !ok && out.contains("Calling AE Title Not Recognized"),
        "{out}"
    );
    let (ok, out) = run("echoscu", &srv, ("WS1", "ELSEWHERE"), &[], &[]).await;
    assert!(
        !ok && out.contains("Called AE Title Not Recognized"),
        "{out}"
    );

    let events = audit(&srv).await;
    assert_eq!(events.len(), 2, "the echo is not audited: {events:#?}");
    let stranger = only(
        &events,
        "STRANGER",
        Action::AssociationRefused,
        Outcome::Refused,
    );
    assert_eq!(
        stranger.event.detail.as_deref(),
        Some("A-ASSOCIATE-RJ: calling AE title not on the allow-list")
    );
    assert_eq!(
        (stranger.event.role, stranger.event.source.as_str()),
        (None, "127.0.0.1")
    );
    let misdirected = only(&events, "WS1", Action::AssociationRefused, Outcome::Refused);
    assert_eq!(
        misdirected.event.detail.as_deref(),
        Some(r#"A-ASSOCIATE-RJ: called AE title "ELSEWHERE" is not ours"#)
    );
}

fn openssl() -> bool {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: openssl not installed");
    }
    found
}

/// A peer that fails the TLS handshake of the DICOM TLS port (here: it does
/// not speak TLS) is audited as a refused association from its address; a
/// connection merely opened and closed (a port check) is not.
#[tokio::test]
async fn failed_tls_handshakes_are_audited() {
    if !openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=aina-audit-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = common::start_with(|s| {
        s.tls_cert = Some(cert.clone());
        s.tls_key = Some(key.clone());
        s.dicom_tls = Some("127.0.0.1:0".parse().unwrap());
        s.dicom_tls_client_ca = Some(cert.clone());
    })
    .await;
    let addr = srv.server.dicom_tls_addr.unwrap();

    // A port check: connect, close.
    drop(tokio::net::TcpStream::connect(addr).await.unwrap());
    // A plain DICOM peer: an A-ASSOCIATE-RQ header where a ClientHello belongs.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x01, 0x00, 0x00])
        .await
        .unwrap();
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = audit(&srv).await;
        if !refused.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for the port check to be (not) recorded as well.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = audit(&srv).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let alert = only(
        &events,
        "unknown",
        Action::AssociationRefused,
        Outcome::Refused,
    );
    assert_eq!(alert.event.source, "127.0.0.1");
    assert!(
        alert
            .event
            .detail
            .as_deref()
            .unwrap()
            .starts_with("TLS handshake failed: "),
        "{alert:?}"
    );
    assert!(!refused.is_empty());
}
