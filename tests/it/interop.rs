//! Interoperability with an independent DICOMweb client: the `dicomweb-client`
//! Python library (what research and EHR integration scripts use). Runs when
//! `AINA_TEST_PYTHON` names a Python with dicomweb-client installed (`.ci/run`
//! installs it); says plainly when skipped.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn dicomweb_client_library_works_unmodified() {
    let Ok(python) = std::env::var("AINA_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED: set AINA_TEST_PYTHON to a Python with dicomweb-client to run this test"
        );
        return;
    };
    let srv = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mg: Vec<_> = sample()
        .iter()
        .filter(|g| g.modality == "MG")
        .take(4)
        .collect();
    let mut files = Vec::new();
    for g in &mg {
        let p = dir.path().join(&g.file_name);
        std::fs::write(&p, &g.bytes).unwrap();
        files.push(p);
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/dicomweb_client_check.py"
    );
    let dicomweb = srv.dicomweb.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(dicomweb)
            .args(&files)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
}
