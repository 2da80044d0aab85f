//! STOW-RS: what lands, what is refused and why, and that one bad part never
//! takes the rest of the request down.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

fn referenced(resp: &Value) -> Vec<Value> {
    resp.get("00081199")
        .and_then(|v| v.get("Value"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn failed(resp: &Value) -> Vec<Value> {
    resp.get("00081198")
        .and_then(|v| v.get("Value"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn failure_reason(item: &Value) -> u64 {
    value(item, "00081197").and_then(Value::as_u64).unwrap()
}

#[tokio::test]
async fn stores_a_study_and_returns_it_byte_identical() {
    let srv = start().await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    let (status, resp) = srv.stow(&files).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(referenced(&resp).len(), files.len());
    assert!(failed(&resp).is_empty());
    for g in sample() {
        let path = instance_path(g);
        let parts = srv.retrieve_original(&path).await;
        assert_eq!(parts.len(), 1);
        assert_eq!(sha256(&parts[0]), sha256(&g.bytes), "{}", g.file_name);
    }
    // The RetrieveURL of each referenced instance works.
    let url = string(&referenced(&resp)[0], "00081190").unwrap();
    let res = srv
        .client
        .get(&url)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Every real file that is a PS3.10 instance lands and comes back bit-exact; the
/// ones that are not are refused, each with its reason.
#[tokio::test]
async fn real_corpus_files_round_trip_bit_exact() {
    let Some(dir) = corpus_dir() else { return };
    // Several corpus files are one image in several transfer syntaxes under one
    // SOP Instance UID; keeping both versions stores them all.
    let srv =
        start_with(|s| s.conflict_policy = Some(aina::config::ConflictPolicyArg::KeepBoth)).await;
    let refused: &[(&str, &str)] = &[
        ("pydicom__no_meta.dcm", "File Meta Information"),
        ("pydicom__ExplVR_BigEndNoMeta.dcm", "File Meta Information"),
        ("pydicom-data__OT-PAL-8-face.dcm", "File Meta Information"),
        ("pydicom__meta_missing_tsyntax.dcm", "Transfer Syntax UID"),
        ("pydicom__MR_truncated.dcm", "truncated"),
        (
            "pydicom-data__bad_sequence.dcm",
            "SOPInstanceUID is not a valid UID",
        ),
        ("pydicom__chrSQEncoding.dcm", "SOPClassUID is missing"),
        ("pydicom__chrSQEncoding1.dcm", "SOPClassUID is missing"),
        ("pydicom__empty_charset_LEI.dcm", "SOPClassUID is missing"),
        ("pydicom__nested_priv_SQ.dcm", "SOPClassUID is missing"),
        ("pydicom__priv_SQ.dcm", "SOPClassUID is missing"),
    ];
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut stored = 0;
    for path in names {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        let (status, resp) = srv.stow(&[&bytes]).await;
        if let Some((_, why)) = refused.iter().find(|(n, _)| *n == name) {
            assert_eq!(status, StatusCode::CONFLICT, "{name}: {resp}");
            assert_eq!(failed(&resp).len(), 1, "{name}: {resp}");
            assert!(resp.to_string().contains(why), "{name}: {resp}");
            continue;
        }
        let refs = referenced(&resp);
        assert_eq!(refs.len(), 1, "{name}: {resp}");
        let url = string(&refs[0], "00081190").unwrap();
        let res = srv
            .client
            .get(&url)
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        let parts = multipart_parts(res).await;
        assert_eq!(parts.len(), 1, "{name}");
        if transfer_syntax(&bytes) == "1.2.840.10008.1.2" {
            // Implicit VR is re-encoded for the web (checked in the wado tests).
            assert!(
                parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
                "{}",
                parts[0].0
            );
        } else {
            assert_eq!(sha256(&parts[0].1), sha256(&bytes), "{name}");
        }
        stored += 1;
    }
    assert_eq!(stored, 97 - refused.len());
}

fn transfer_syntax(file: &[u8]) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(file)
        .unwrap();
    obj.meta().transfer_syntax().to_owned()
}

#[tokio::test]
async fn bad_parts_fail_alone_with_reasons() {
    let srv = start().await;
    let good = &sample()[0].bytes;
    let truncated = &good[..good.len() / 2];
    let no_sop = edit(good, |o| {
        o.remove_element(tags::SOP_INSTANCE_UID);
    });
    let no_study = edit(&sample()[1].bytes, |o| {
        o.remove_element(tags::STUDY_INSTANCE_UID);
    });
    // Same length, so the meta group length stays right.
    let unknown_ts = replace_once(
        &sample()[2].bytes,
        b"1.2.840.10008.1.2.1\0",
        b"1.2.840.99999.1.2.1\0",
    );
    let bad_uid = edit(&sample()[3].bytes, |o| {
        o.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.abc/../x"),
        ));
    });
    let files: Vec<&[u8]> = vec![
        b"this is not DICOM at all",
        truncated,
        &no_sop,
        &no_study,
        &unknown_ts,
        &bad_uid,
        good,
    ];
    let (status, resp) = srv.stow(&files).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
    let refs = referenced(&resp);
    assert_eq!(refs.len(), 1, "{resp}");
    assert_eq!(
        string(&refs[0], "00081155").unwrap(),
        sample()[0].sop_instance_uid
    );
    let f = failed(&resp);
    assert_eq!(f.len(), 6, "{resp}");
    let text = resp.to_string().to_lowercase();
    for needle in [
        "dicm",
        "truncat",
        "sopinstanceuid",
        "studyinstanceuid",
        "transfer syntax",
        "seriesinstanceuid",
    ] {
        assert!(
            text.contains(needle),
            "no reason mentions {needle:?}: {resp}"
        );
    }
    let mut reasons: Vec<u64> = f.iter().map(failure_reason).collect();
    reasons.sort();
    // Unknown transfer syntax: 0xC122; everything else: cannot understand.
    assert_eq!(
        reasons,
        vec![0xC000, 0xC000, 0xC000, 0xC000, 0xC000, 0xC122],
        "{resp}"
    );
    // The good one is really there.
    let found = srv
        .qido(&format!(
            "/instances?SOPInstanceUID={}",
            sample()[0].sop_instance_uid
        ))
        .await;
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn file_without_meta_is_refused_with_a_reason() {
    let Some(bytes) = corpus("pydicom__no_meta.dcm") else {
        return;
    };
    let srv = start().await;
    let (status, resp) = srv.stow(&[&bytes]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
    assert!(resp.to_string().contains("File Meta"), "{resp}");
}

#[tokio::test]
async fn same_instance_twice_is_success_and_conflicts_follow_policy() {
    let srv = start().await;
    let g = &sample()[0];
    assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
    let (status, resp) = srv.stow(&[&g.bytes]).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert!(referenced(&resp)[0].get("00081196").is_none(), "{resp}");

    // Different bytes, same SOP Instance UID: refused by default, old one kept.
    let changed = edit(&g.bytes, |o| {
        o.put(DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("changed"),
        ));
    });
    let (status, resp) = srv.stow(&[&changed]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
    assert_eq!(failure_reason(&failed(&resp)[0]), 0x0111);
    assert!(resp.to_string().contains("different content"), "{resp}");
    let path = instance_path(g);
    assert_eq!(
        sha256(&srv.retrieve_original(&path).await[0]),
        sha256(&g.bytes)
    );

    for policy in ["keep-both", "replace"] {
        let srv = start_with(|s| {
            s.conflict_policy = Some(match policy {
                "keep-both" => aina::config::ConflictPolicyArg::KeepBoth,
                _ => aina::config::ConflictPolicyArg::Replace,
            })
        })
        .await;
        assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
        let (status, resp) = srv.stow(&[&changed]).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{policy}: {resp}");
        let r = &referenced(&resp)[0];
        assert_eq!(
            value(r, "00081196").and_then(Value::as_u64),
            Some(0xB000),
            "{resp}"
        );
        // The new version is served, once.
        let parts = srv.retrieve_original(&path).await;
        assert_eq!(parts.len(), 1);
        assert_eq!(sha256(&parts[0]), sha256(&changed), "{policy}");
        let inst = srv
            .qido(&format!("/studies/{}/instances", g.study_instance_uid))
            .await;
        assert_eq!(inst.len(), 1, "{policy}");
        // keep-both keeps the old object (a superseded version); replace removes it.
        let mut objects = srv.object_keys().await;
        objects.retain(|k| k.contains(&g.sop_instance_uid));
        let expected = if policy == "keep-both" { 2 } else { 1 };
        assert_eq!(objects.len(), expected, "{policy}: {objects:?}");
    }
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let srv = start().await;
    let url = format!("{}/studies", srv.dicomweb);
    let (status, _) = srv
        .stow_raw(&url, "application/dicom", sample()[0].bytes.clone())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = srv
        .stow_raw(&url, "multipart/form-data; boundary=x", b"--x--".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = srv
        .stow_raw(
            &url,
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            b"--x--".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = srv
        .stow_raw(
            &url,
            "multipart/related; type=\"application/dicom\"",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no boundary");
    // A part of another type fails alone.
    let (ct, body) = multipart(&[
        ("text/plain", b"hello"),
        ("application/dicom", &sample()[0].bytes),
    ]);
    let (status, resp) = srv.stow_raw(&url, &ct, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
    assert_eq!(referenced(&resp).len(), 1);
    assert!(resp.to_string().contains("text/plain"), "{resp}");
}

#[tokio::test]
async fn empty_or_malformed_bodies_are_400() {
    let srv = start().await;
    let url = format!("{}/studies", srv.dicomweb);
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}");
    let (status, _) = srv
        .stow_raw(&url, &ct, format!("--{BOUNDARY}--\r\n").into_bytes())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = srv
        .stow_raw(&url, &ct, b"no boundary anywhere".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn study_in_path_must_match() {
    let srv = start().await;
    let g = &sample()[0];
    let other = sample()
        .iter()
        .find(|o| o.study_instance_uid != g.study_instance_uid)
        .unwrap();
    let (ct, body) = dicom_parts(&[&g.bytes, &other.bytes]);
    let url = format!("{}/studies/{}", srv.dicomweb, g.study_instance_uid);
    let (status, resp) = srv.stow_raw(&url, &ct, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
    assert_eq!(referenced(&resp).len(), 1);
    assert_eq!(failure_reason(&failed(&resp)[0]), 0xA900);
    assert_eq!(
        string(&resp, "00081190").unwrap(),
        format!("{}/studies/{}", srv.dicomweb, g.study_instance_uid)
    );
    let (status, _) = srv
        .stow_raw(&format!("{}/studies/not-a-uid", srv.dicomweb), &ct, vec![])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn xml_response_when_asked() {
    let srv = start().await;
    let (ct, body) = dicom_parts(&[&sample()[0].bytes, b"junk"]);
    let res = srv
        .client
        .post(format!("{}/studies", srv.dicomweb))
        .header("content-type", ct)
        .header("accept", "application/dicom+xml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.headers()["content-type"], "application/dicom+xml");
    let text = res.text().await.unwrap();
    assert!(text.contains("<NativeDicomModel"), "{text}");
    assert!(text.contains("tag=\"00081199\""), "{text}");
    assert!(text.contains("tag=\"00081198\""), "{text}");
    assert!(text.contains(&sample()[0].sop_instance_uid));
}

/// A body cut off mid-upload: the parts that arrived whole are stored; the cut
/// one is not. Sent over a raw socket so the cut is real.
#[tokio::test]
async fn body_cut_off_mid_upload_keeps_the_complete_parts() {
    use tokio::io::AsyncWriteExt;
    let srv = start().await;
    let a = &sample()[0];
    let b = &sample()[1];
    let (ct, body) = dicom_parts(&[&a.bytes, &b.bytes]);
    // Cut in the middle of the second part.
    let cut = body.len() - b.bytes.len() / 2;
    let addr = srv.server.http_addr;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /dicomweb/studies HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&body[..cut]).await.unwrap();
    sock.flush().await.unwrap();
    // Give the server time to ingest the first part, then hang up.
    let wanted = format!("/instances?SOPInstanceUID={}", a.sop_instance_uid);
    let mut found = Vec::new();
    for _ in 0..100 {
        found = srv.qido(&wanted).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(sock);
    assert_eq!(found.len(), 1, "the complete first part was not stored");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let none = srv
        .qido(&format!("/instances?SOPInstanceUID={}", b.sop_instance_uid))
        .await;
    assert!(none.is_empty(), "a cut-off part was stored");
}

fn replace_once(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = hay.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

/// A NUL inside a text value (no DICOM repertoire has it; some writers pad
/// badly) is stored and searchable the same on every index backend: PostgreSQL
/// refuses NUL in text, so the search columns drop it; the original bytes and
/// their DICOM JSON are kept as sent.
#[tokio::test]
async fn nul_inside_a_text_value_is_stored_and_searchable() {
    let srv = start().await;
    let g = &sample()[0];
    let bytes = edit(&g.bytes, |o| {
        o.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from("NUL\0ID"),
        ));
        o.put(DataElement::new(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("Chest\0PA"),
        ));
    });
    let (status, resp) = srv.stow(&[&bytes]).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let rows = srv.qido("/studies?PatientID=NULID").await;
    assert_eq!(rows.len(), 1);
    let rows = srv.qido("/studies?StudyDescription=ChestPA").await;
    assert_eq!(rows.len(), 1);
    let path = instance_path(g);
    assert_eq!(
        sha256(&srv.retrieve_original(&path).await[0]),
        sha256(&bytes)
    );

    // In a UID it makes the UID invalid rather than another UID.
    let bad = edit(&sample()[1].bytes, |o| {
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2\u{0}.3"),
        ));
    });
    let (status, resp) = srv.stow(&[&bad]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
}
