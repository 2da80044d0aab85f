//! The browser viewer: how the page and its modules are served (plain HTTP,
//! always), and the end-to-end tests of `tests/e2e/*.test.mjs` in headless
//! Chromium driven by playwright-core, which run when `AINA_TEST_CHROMIUM`
//! (a chromium binary) and `AINA_TEST_PLAYWRIGHT` (a directory whose
//! `node_modules` has playwright-core) are set — `.ci/run` sets both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header", res.url()))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn viewer_page_and_modules_are_served_with_their_types_and_headers() {
    let srv = start().await;
    for path in ["/", "/viewer", "/viewer?studyUID=1.2.3"] {
        let res = srv
            .client
            .get(format!("{}{path}", srv.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer");
        assert_eq!(header(&res, "cache-control"), "no-cache");
        let csp = header(&res, "content-security-policy").to_owned();
        for directive in [
            "script-src 'self'",
            "connect-src 'self'",
            "img-src 'self' blob: data:",
            "worker-src 'self' blob:",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        let html = res.text().await.unwrap();
        assert!(
            html.contains(r#"<script type="module" src="/ui/app.js">"#),
            "{html}"
        );
    }

    let app = format!("{}/ui/app.js", srv.root);
    let res = srv.client.get(&app).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let etag = header(&res, "etag").to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/viewer/app.js")).unwrap();
    assert_eq!(res.bytes().await.unwrap(), on_disk);
    // Revalidation is one round trip without a body.
    let res = srv
        .client
        .get(&app)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    let res = srv
        .client
        .get(format!("{}/ui/style.css", srv.root))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "content-type"), "text/css; charset=utf-8");

    let res = srv
        .client
        .get(format!("{}/ui/no-such-module.js", srv.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A raw request line, as an attacker would send it: HTTP clients normalise
/// `..` and `%2e%2e` away before sending, which would hide the case tested.
async fn raw_get(root: &str, target: &str) -> String {
    let addr = root.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn viewer_files_cannot_escape_the_viewer_directory() {
    let srv = start().await;
    for target in [
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/%2E%2E/Cargo.toml",
        "/ui/..%2fCargo.toml",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/..%5cCargo.toml",
        "/ui/x/../../Cargo.toml",
        "/ui/%2e%2e/%2e%2e/tests/it/viewer.rs",
        "/ui//etc/passwd",
    ] {
        let response = raw_get(&srv.root, target).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{target}: {response}");
        assert!(!response.contains("[package]"), "{target}: {response}");
    }
}

#[tokio::test]
async fn viewer_end_to_end_in_headless_chromium() {
    let (Ok(chromium), Ok(playwright)) = (
        std::env::var("AINA_TEST_CHROMIUM"),
        std::env::var("AINA_TEST_PLAYWRIGHT"),
    ) else {
        eprintln!(
            "SKIPPED: set AINA_TEST_CHROMIUM (a chromium binary) and AINA_TEST_PLAYWRIGHT \
             (a directory with node_modules/playwright-core) to run the viewer's browser tests"
        );
        return;
    };
    let srv = start().await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    let (status, body) = srv.stow(&files).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Thumbnails and previews are made in the background after ingest, slowly
    // in a debug build; asking for each thumbnail makes them now, so that
    // what the browser tests time is the viewer, not this warm-up.
    for g in sample() {
        let path = format!(
            "/studies/{}/series/{}/instances/{}/thumbnail",
            g.study_instance_uid, g.series_instance_uid, g.sop_instance_uid
        );
        let res = srv.get(&path, "image/jpeg").await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    // And the stored previews (the thumbnail object is written last, once an
    // instance's previews are all there): with the whole suite running beside
    // it on two cores, a preview rendered on demand can take longer than the
    // reading test holds the full frames back for.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    for g in sample() {
        let key = aina::render::derived::thumbnail_key(&sha256(&g.bytes));
        while srv.store().size(&key).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "previews of {} not derived in 300 s",
                g.file_name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Screenshots go where AINA_SCREENSHOTS says (docs/screenshots to refresh
    // the docs), else to a scratch directory so that the code taking them runs.
    let scratch = tempfile::tempdir().unwrap();
    let screenshots = std::env::var_os("AINA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let mut tests: Vec<PathBuf> = std::fs::read_dir(repo.join("tests/e2e"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no tests/e2e/*.test.mjs");

    let mut failed = Vec::new();
    for test in &tests {
        let name = test.file_name().unwrap().to_string_lossy().into_owned();
        let run = tokio::process::Command::new("node")
            .arg(test)
            .current_dir(repo)
            .env("AINA_URL", &srv.root)
            .env("AINA_TEST_CHROMIUM", &chromium)
            .env("NODE_PATH", Path::new(&playwright).join("node_modules"))
            .env("AINA_SCREENSHOTS", &screenshots)
            .kill_on_drop(true)
            .output();
        // Generous: a debug-build server renders the first thumbnails slowly on
        // two shared cores; a hung browser still ends the test.
        let out = match tokio::time::timeout(Duration::from_secs(600), run).await {
            Ok(out) => out.unwrap_or_else(|e| panic!("running node {name}: {e}")),
            Err(_) => {
                failed.push(format!("{name}: timed out after 600 s"));
                continue;
            }
        };
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("--- {name}\n{output}");
        if !out.status.success() {
            failed.push(format!("{name} ({}):\n{output}", out.status));
        }
    }
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

/// Signing in through the viewer (`tests/e2e/signin.auth.mjs`) on a server
/// with authentication on.
#[tokio::test]
async fn viewer_sign_in_in_headless_chromium() {
    let (Ok(chromium), Ok(playwright)) = (
        std::env::var("AINA_TEST_CHROMIUM"),
        std::env::var("AINA_TEST_PLAYWRIGHT"),
    ) else {
        eprintln!(
            "SKIPPED: set AINA_TEST_CHROMIUM and AINA_TEST_PLAYWRIGHT to run the sign-in browser test"
        );
        return;
    };
    let srv = start_with(|s| s.auth = Some(true)).await;
    let password = "correct horse battery staple";
    srv.server
        .state
        .accounts
        .create_user("dr.aliya", aina::auth::Role::Reader, password)
        .await
        .unwrap();
    // A study for the share-link test, stored with a device's token.
    let device = srv
        .server
        .state
        .accounts
        .create_token(
            "modality",
            aina::auth::Role::Ingest,
            Duration::from_secs(86_400),
        )
        .await
        .unwrap()
        .token;
    let study = sample()
        .iter()
        .find(|g| g.modality == "CR")
        .unwrap()
        .study_instance_uid
        .clone();
    let files: Vec<&[u8]> = sample()
        .iter()
        .filter(|g| g.study_instance_uid == study)
        .map(|g| g.bytes.as_slice())
        .collect();
    let (content_type, body) = dicom_parts(&files);
    let stored = srv
        .client
        .post(format!("{}/studies", srv.dicomweb))
        .bearer_auth(device)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let screenshots = std::env::var_os("AINA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let run = tokio::process::Command::new("node")
        .arg(repo.join("tests/e2e/signin.auth.mjs"))
        .current_dir(repo)
        .env("AINA_URL", &srv.root)
        .env("AINA_PASSWORD", password)
        .env("AINA_STUDY", &study)
        .env("AINA_TEST_CHROMIUM", &chromium)
        .env("NODE_PATH", Path::new(&playwright).join("node_modules"))
        .env("AINA_SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the sign-in browser test timed out")
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    assert!(out.status.success(), "{output}");
    // Each sign-in is in the audit log, the failed one too.
    let state = &srv.server.state;
    state.audit.flush().await;
    let events = state
        .audit_log
        .search(&aina::auth::audit::AuditFilter::default())
        .await
        .unwrap();
    use aina::auth::audit::Action;
    let count = |a: Action| events.iter().filter(|r| r.event.action == a).count();
    // One sign-in in the first script test, five in the second (one per
    // refused `next`), one in the share test; one wrong password.
    assert_eq!((count(Action::Login), count(Action::LoginFailed)), (7, 1));
    // The share link: made, opened (and refused once revoked), revoked.
    assert!(count(Action::Share) >= 3);
    assert_eq!(count(Action::Logout), 1);
}
