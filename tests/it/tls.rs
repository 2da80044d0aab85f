//! HTTPS and DICOM TLS with certificates made by `openssl` for the test: the
//! server's certificate verifies against its CA, HTTP/2 and HTTP/1.1 are
//! offered by ALPN, a renewed certificate is served on both ports after a
//! SIGHUP without a restart (a broken one is not), plain HTTP to the TLS port
//! gets nothing, and dcmtk stores over DICOM TLS with a client certificate
//! from the configured CA (one from elsewhere, none, or no TLS is refused).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
async fn curl(ca: &Path, url: &str, extra: &[&str]) -> (String, String) {
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
        .args(extra)
        .arg(url)
        .output()
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The protocol the server chose by ALPN, from curl's verbose output.
fn alpn(verbose: &str) -> Option<&str> {
    verbose
        .lines()
        .find(|l| l.contains("ALPN") && l.contains("server accepted"))
        .and_then(|l| l.split_whitespace().last())
}

/// The DICOM TLS port's handshake as `openssl s_client` sees it, with the
/// modality's client certificate.
async fn s_client(dir: &Path, port: u16) -> String {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-CAfile",
            "ca.pem",
            "-cert",
            "modality.pem",
            "-key",
            "modality.key",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 10 s) for the HTTPS port to serve a certificate for `cn`.
async fn served(ca: &Path, url: &str, cn: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let (status, verbose) = curl(ca, url, &[]).await;
        if status == "200" && verbose.contains(&format!("CN={cn}")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn sighup() {
    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
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

    let ca_pem = d.join("ca.pem");
    let (status, verbose) = curl(&ca_pem, &url, &[]).await;
    assert_eq!(status, "200", "{verbose}");
    assert!(verbose.contains("CN=aina-first"), "{verbose}");
    let (status, verbose) = curl(&ca_pem, &url, &["--http2"]).await;
    assert_eq!(
        (status.as_str(), alpn(&verbose)),
        ("200", Some("h2")),
        "{verbose}"
    );
    let (status, verbose) = curl(&ca_pem, &url, &["--http1.1"]).await;
    assert_eq!(
        (status.as_str(), alpn(&verbose)),
        ("200", Some("http/1.1")),
        "{verbose}"
    );
    // A client that does not trust our CA does not connect.
    let (status, _) = curl(&d.join("rogue-ca.pem"), &url, &[]).await;
    assert_eq!(status, "000");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
    let dicom_tls_port = server.server.dicom_tls_addr.unwrap().port();
    let handshake = s_client(d, dicom_tls_port).await;
    assert!(
        handshake.contains("aina-first") && handshake.contains("Verify return code: 0 (ok)"),
        "{handshake}"
    );

    // A renewed certificate is served after SIGHUP, without a restart, on
    // both ports.
    issue(d, "ca", "server", "aina-renewed");
    sighup();
    assert!(served(&ca_pem, &url, "aina-renewed").await);
    let handshake = s_client(d, dicom_tls_port).await;
    assert!(handshake.contains("aina-renewed"), "{handshake}");
    // A broken pair is refused and the renewed one stays.
    std::fs::write(d.join("server.key"), "not a key").unwrap();
    let tls = server.server.tls.as_ref().unwrap();
    let error = format!("{:#}", tls.reload().unwrap_err());
    assert!(error.contains("server.key"), "{error}");
    sighup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, verbose) = curl(&ca_pem, &url, &[]).await;
    assert_eq!(status, "200");
    assert!(verbose.contains("CN=aina-renewed"), "{verbose}");

    // DICOM TLS with dcmtk, when installed.
    if std::env::var_os("AINA_TEST_DCMTK").is_none() {
        eprintln!("SKIPPED: DICOM TLS part: set AINA_TEST_DCMTK=1 (dcmtk installed)");
        return;
    }
    let tls_port = dicom_tls_port.to_string();
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
    // Without a client certificate, or without TLS at all: no association.
    let echoscu = |tls: &[&str]| {
        let mut c = tokio::process::Command::new("echoscu");
        c.args(["-aet", "MAMMO1", "-aec", "AINA"])
            .args(tls)
            .args(["127.0.0.1", &tls_port])
            .current_dir(d);
        c
    };
    let ca_file = ca_pem.to_str().unwrap();
    let with_cert = ["+tls", "modality.key", "modality.pem", "+cf", ca_file];
    for (what, tls, ok) in [
        ("a trusted client certificate", &with_cert[..], true),
        (
            "no client certificate",
            &["+tla", "+cf", ca_file][..],
            false,
        ),
        ("no TLS", &[][..], false),
    ] {
        let out = echoscu(tls).output().await.unwrap();
        assert_eq!(
            out.status.success(),
            ok,
            "C-ECHO with {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `--dicom-max-associations` counts the plain and the TLS port together: a
/// connection holding the only slot on the plain port keeps TLS callers out
/// (the connection is closed before the handshake) until it goes.
#[tokio::test]
async fn one_association_limit_over_both_dicom_ports() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "ca");
    issue(d, "ca", "server", "aina-limit");
    issue(d, "ca", "modality", "MAMMO1");
    let server = common::start_with(|s| {
        s.tls_cert = Some(d.join("server.pem"));
        s.tls_key = Some(d.join("server.key"));
        s.dicom_tls = Some("127.0.0.1:0".parse().unwrap());
        s.dicom_max_associations = Some(1);
    })
    .await;
    let tls_port = server.server.dicom_tls_addr.unwrap().port();
    let handshakes = || async { s_client(d, tls_port).await.contains("aina-limit") };
    assert!(handshakes().await, "TLS port free");
    // The closed s_client connection gives its slot back.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let holder = tokio::net::TcpStream::connect(server.server.dicom_addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!handshakes().await, "the plain port holds the only slot");
    drop(holder);
    let start = Instant::now();
    while !handshakes().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "slot not given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
