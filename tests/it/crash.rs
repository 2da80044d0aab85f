//! Crash safety: SIGKILL the real server in the middle of large multi-instance
//! STOW requests; after a restart every acknowledged instance is retrievable
//! bit-exact and `aina verify` finds no inconsistency.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use reqwest::StatusCode;

use crate::common::*;

/// Starts `aina serve` on a free port; returns the child and its HTTP root.
pub fn spawn_server(backend: &Backend) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aina"))
        .args(["serve", "--http", "127.0.0.1:0", "--dicom", "127.0.0.1:0"])
        .args(backend.args())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start aina serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("http_addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

/// A copy of `bytes` under a new SOP Instance UID.
pub fn renamed(bytes: &[u8], n: usize) -> (String, Vec<u8>) {
    let uid = format!("2.25.{}", 1_000_000_000_000u64 + n as u64);
    let out = edit(bytes, |o| {
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid.as_str()),
        ));
        o.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
    });
    (uid, out)
}

#[test]
fn sigkill_mid_stow_loses_nothing_acknowledged() {
    let backend = Backend::new_blocking();
    let (mut child, root) = spawn_server(&backend);
    let template = sample().iter().find(|g| g.modality == "MG").unwrap();
    let (study, series) = (
        template.study_instance_uid.clone(),
        template.series_instance_uid.clone(),
    );
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        // Four clients, each sending requests of 8 instances until the server dies.
        for c in 0..4usize {
            let client = client.clone();
            let root = root.clone();
            let acknowledged = acknowledged.clone();
            let template = template.bytes.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..1000usize {
                    let files: Vec<(String, Vec<u8>)> = (0..8)
                        .map(|i| renamed(&template, c * 1_000_000 + r * 100 + i))
                        .collect();
                    let refs: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
                    let (ct, body) = dicom_parts(&refs);
                    let res = client
                        .post(format!("{root}/dicomweb/studies"))
                        .header("content-type", ct)
                        .body(body)
                        .send()
                        .await;
                    let Ok(res) = res else { return };
                    if res.status() != StatusCode::OK {
                        return;
                    }
                    let Ok(text) = res.text().await else { return };
                    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let stored = json["00081199"]["Value"].as_array().unwrap();
                    assert_eq!(stored.len(), 8);
                    let mut ack = acknowledged.lock().unwrap();
                    for (uid, bytes) in &files {
                        ack.push((uid.clone(), sha256(bytes)));
                    }
                }
            }));
        }
        // Let some requests be acknowledged, then kill mid-flight.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if acknowledged.lock().unwrap().len() >= 48 {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 48);

    let (mut child, root) = spawn_server(&backend);
    rt.block_on(async {
        let client = reqwest::Client::new();
        for (uid, sha) in &acknowledged {
            let res = client
                .get(format!(
                    "{root}/dicomweb/studies/{study}/series/{series}/instances/{uid}"
                ))
                .header(
                    "accept",
                    "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "acknowledged {uid} lost");
            let parts = multipart_parts(res).await;
            assert_eq!(&sha256(&parts[0].1), sha, "{uid}");
        }
    });
    let (code, out) = crate::cli::aina(&backend, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 missing, 0 damaged"), "{out}");
    child.kill().unwrap();
    child.wait().unwrap();
}
