//! Test harness: a real server on 127.0.0.1:0 over a temporary data directory,
//! an HTTP client, sample and corpus data, and an independent multipart
//! writer/splitter (so the server's own multipart code is not checking itself).

use std::path::PathBuf;
use std::sync::OnceLock;

use aina::app::{AppState, Server};
use aina::config::Settings;
use aina_sample::{Generated, Options};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// `http://127.0.0.1:PORT/dicomweb`
    pub dicomweb: String,
    pub client: reqwest::Client,
    /// The data directory, removed when the server is dropped.
    dir: tempfile::TempDir,
    pub server: Server,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestServer {
    // Server logs go with the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        dicom: Some("127.0.0.1:0".parse().unwrap()),
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    adjust(&mut settings);
    let config = settings.resolve().unwrap();
    let state = AppState::open(config).await.unwrap();
    let server = Server::start(state).await.unwrap();
    let root = format!("http://{}", server.http_addr);
    TestServer {
        dicomweb: format!("{root}/dicomweb"),
        root,
        client: reqwest::Client::new(),
        dir,
        server,
    }
}

/// Generated studies at a small scale, made once per test binary.
pub fn sample() -> &'static [Generated] {
    static SET: OnceLock<Vec<Generated>> = OnceLock::new();
    SET.get_or_init(|| {
        aina_sample::demo_set(&Options {
            seed: 7,
            scale: 0.1,
        })
    })
}

pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: real DICOM corpus not found at {}", dir.display());
        None
    }
}

/// A file of the real corpus, or `None` (with a message) where it is absent.
pub fn corpus(name: &str) -> Option<Vec<u8>> {
    let path = corpus_dir()?.join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub const BOUNDARY: &str = "test-boundary-7f3a9c";

/// multipart/related; type="application/dicom" of the given parts.
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (ct, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
        body,
    )
}

pub fn dicom_parts(files: &[&[u8]]) -> (String, Vec<u8>) {
    let parts: Vec<(&str, &[u8])> = files.iter().map(|f| ("application/dicom", *f)).collect();
    multipart(&parts)
}

/// Splits a multipart body into (part headers, part body).
pub fn split_multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary parameter")
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let mut positions = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&body[i..], delim.as_bytes()) {
        positions.push(i + p);
        i += p + delim.len();
    }
    assert!(positions.len() >= 2, "no complete multipart body");
    let mut parts = Vec::new();
    for w in positions.windows(2) {
        let start = w[0] + delim.len();
        let mut end = w[1];
        // The CRLF before a delimiter belongs to the delimiter.
        if body[..end].ends_with(b"\r\n") {
            end -= 2;
        }
        let part = &body[start..end];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let sep = find(part, b"\r\n\r\n").expect("part header end");
        parts.push((
            String::from_utf8(part[..sep].to_vec()).unwrap(),
            part[sep + 4..].to_vec(),
        ));
    }
    let last = *positions.last().unwrap() + delim.len();
    assert!(body[last..].starts_with(b"--"), "closing delimiter missing");
    parts
}

/// The parts of a multipart response, by its own Content-Type.
pub async fn multipart_parts(res: reqwest::Response) -> Vec<(String, Vec<u8>)> {
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.bytes().await.unwrap();
    split_multipart(&ct, &body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl TestServer {
    /// The server's data directory (objects under `objects/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// STOW-RS to /studies; returns the status and the DICOM JSON response.
    pub async fn stow(&self, files: &[&[u8]]) -> (StatusCode, Value) {
        let (ct, body) = dicom_parts(files);
        self.stow_raw(&format!("{}/studies", self.dicomweb), &ct, body)
            .await
    }

    pub async fn stow_raw(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let res = self
            .client
            .post(url)
            .header("content-type", content_type)
            .header("accept", "application/dicom+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub async fn get(&self, path_and_query: &str, accept: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path_and_query}", self.dicomweb))
            .header("accept", accept)
            .send()
            .await
            .unwrap()
    }

    pub async fn qido(&self, path_and_query: &str) -> Vec<Value> {
        let res = self.get(path_and_query, "application/dicom+json").await;
        assert_eq!(res.status(), StatusCode::OK, "{path_and_query}");
        res.json().await.unwrap()
    }

    /// Retrieves with `transfer-syntax=*` and returns the parts' bodies.
    pub async fn retrieve_original(&self, path: &str) -> Vec<Vec<u8>> {
        let res = self
            .get(
                path,
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body = res.bytes().await.unwrap();
        split_multipart(&ct, &body)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
}

/// The first value of an attribute in a DICOM JSON object.
pub fn value<'a>(obj: &'a Value, tag: &str) -> Option<&'a Value> {
    obj.get(tag)?.get("Value")?.get(0)
}

pub fn string(obj: &Value, tag: &str) -> Option<String> {
    value(obj, tag).and_then(|v| v.as_str().map(str::to_owned))
}

pub fn alphabetic(obj: &Value, tag: &str) -> Option<String> {
    value(obj, tag)?
        .get("Alphabetic")
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// A generated instance with one attribute changed or removed, re-encoded.
pub fn edit(bytes: &[u8], f: impl FnOnce(&mut dicom_object::DefaultDicomObject)) -> Vec<u8> {
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .unwrap();
    f(&mut obj);
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}
