//! HTTPS and DICOM TLS with certificates made by `openssl` for the test: the
//! server's certificate verifies against its CA, is replaced on reload
//! without a restart, plain HTTP to the TLS port gets nothing, and dcmtk
//! stores over DICOM TLS with a client certificate from the configured CA
//! (a certificate from elsewhere is refused).

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;

use crate::common::{self, sample};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and `name`.pem / `name`.key signed by it for 127.0.0.1 (common name `cn`).
fn issue(dir: &Path, ca: &str, name: &str, cn: &str) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn tools() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: TLS tests need openssl and curl");
    }
    ok
}

/// curl over HTTPS trusting only `ca`: (HTTP status, curl's verbose output).
async fn curl(ca: &Path, url: &str) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .arg(url)
        .output()
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn https_with_reload_and_dicom_tls() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "ca");
    issue(d, "ca", "server", "aina-first");
    issue(d, "ca", "modality", "MAMMO1");
    ca(d, "rogue-ca");
    issue(d, "rogue-ca", "rogue", "ROGUE");
    let server = common::start_with(|s| {
        s.tls_cert = Some(d.join("server.pem"));
        s.tls_key = Some(d.join("server.key"));
        s.dicom_tls = Some("127.0.0.1:0".parse().unwrap());
        s.dicom_tls_client_ca = Some(d.join("ca.pem"));
    })
    .await;
    let port = server.server.http_addr.port();
    let url = format!("https://127.0.0.1:{port}/healthz");

    let (status, verbose) = curl(&d.join("ca.pem"), &url).await;
    assert_eq!(status, "200", "{verbose}");
    assert!(verbose.contains("CN=aina-first"), "{verbose}");
    // A client that does not trust our CA does not connect.
    let (status, _) = curl(&d.join("rogue-ca.pem"), &url).await;
    assert_eq!(status, "000");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);

    // A renewed certificate is served after a reload, without a restart.
    issue(d, "ca", "server", "aina-renewed");
    server.server.tls.as_ref().unwrap().reload().unwrap();
    let (status, verbose) = curl(&d.join("ca.pem"), &url).await;
    assert_eq!(status, "200");
    assert!(verbose.contains("CN=aina-renewed"), "{verbose}");
    // A broken pair is refused and the renewed one stays.
    std::fs::write(d.join("server.key"), "not a key").unwrap();
    assert!(server.server.tls.as_ref().unwrap().reload().is_err());
    let (status, verbose) = curl(&d.join("ca.pem"), &url).await;
    assert_eq!(status, "200");
    assert!(verbose.contains("CN=aina-renewed"));

    // DICOM TLS with dcmtk, when installed.
    if std::env::var_os("AINA_TEST_DCMTK").is_none() {
        eprintln!("SKIPPED: DICOM TLS part: set AINA_TEST_DCMTK=1 (dcmtk installed)");
        return;
    }
    let tls_port = server.server.dicom_tls_addr.unwrap().port().to_string();
    let file = d.join("instance.dcm");
    std::fs::write(&file, &sample()[0].bytes).unwrap();
    let storescu = |key: &str, cert: &str| {
        let mut c = tokio::process::Command::new("storescu");
        c.args(["-aet", "MAMMO1", "-aec", "AINA", "+tls", key, cert, "+cf"])
            .arg(d.join("ca.pem"))
            .args(["127.0.0.1", &tls_port])
            .arg(&file)
            .current_dir(d);
        c
    };
    let out = storescu("modality.key", "modality.pem")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = server
        .server
        .state
        .index
        .instances(&aina::index::Scope {
            study: Some(sample()[0].study_instance_uid.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "stored over DICOM TLS");
    let out = storescu("rogue.key", "rogue.pem").output().await.unwrap();
    assert!(
        !out.status.success(),
        "a client certificate from another CA is refused"
    );
}
