//! Test harness: a real server on 127.0.0.1:0 over a temporary data directory,
//! an HTTP client, sample and corpus data, and an independent multipart
//! writer/splitter (so the server's own multipart code is not checking itself).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aina::app::{AppState, Server};
use aina::config::Settings;
use aina::store::Store;
use aina::testing::{TestBucket, TestDatabase};
use aina_sample::{Generated, Options};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where a test archive keeps its index and objects. Always a data directory;
/// with `AINA_TEST_BACKEND=postgres-s3` (the second run of `.ci/run`) also a
/// database of its own on the test PostgreSQL server and a bucket of its own on
/// the test S3 server, so the whole suite runs once per backend combination.
pub struct Backend {
    /// The data directory, removed on drop.
    pub dir: tempfile::TempDir,
    pub database: Option<TestDatabase>,
    pub bucket: Option<TestBucket>,
}

impl Backend {
    pub async fn new() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        if !postgres_s3() {
            return Backend {
                dir,
                database: None,
                bucket: None,
            };
        }
        let database = TestDatabase::create("integration tests").await;
        let bucket = TestBucket::create("integration tests").await;
        assert!(
            database.is_some() && bucket.is_some(),
            "AINA_TEST_BACKEND=postgres-s3 needs AINA_TEST_POSTGRES_URL and AINA_TEST_S3_ENDPOINT"
        );
        Backend {
            dir,
            database,
            bucket,
        }
    }

    /// PostgreSQL and S3 whatever the run, or `None` (said) where this machine
    /// has no servers: for tests that exist only there, such as several nodes.
    pub async fn shared(what: &str) -> Option<Backend> {
        let database = TestDatabase::create(what).await?;
        let bucket = TestBucket::create(what).await?;
        Some(Backend {
            dir: tempfile::tempdir().unwrap(),
            database: Some(database),
            bucket: Some(bucket),
        })
    }

    /// For tests that run the binary outside a runtime.
    pub fn new_blocking() -> Backend {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(Backend::new())
    }

    /// Puts the backend into server settings.
    pub fn apply(&self, settings: &mut Settings) {
        settings.data = Some(self.dir.path().to_path_buf());
        settings.database = self.database.as_ref().map(|d| d.url().to_owned());
        settings.storage = self.bucket.as_ref().map(|b| b.url().to_owned());
    }

    /// The same as command-line arguments for the `aina` binary.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_owned(), self.dir.path().display().to_string()];
        if let Some(d) = &self.database {
            args.extend(["--database".to_owned(), d.url().to_owned()]);
        }
        if let Some(b) = &self.bucket {
            args.extend(["--storage".to_owned(), b.url().to_owned()]);
        }
        args
    }

    /// The object store, opened as the server opens it.
    pub fn store(&self) -> Store {
        match &self.bucket {
            Some(b) => Store::open(b.url()).unwrap(),
            None => Store::open(&format!("file://{}/objects", self.dir.path().display())).unwrap(),
        }
    }

    /// Throws the index away (the objects stay): a new empty database.
    pub async fn lose_index(&mut self) {
        if self.database.is_some() {
            self.database = TestDatabase::create("integration tests").await;
            return;
        }
        for f in ["index.db", "index.db-wal", "index.db-shm"] {
            let _ = std::fs::remove_file(self.dir.path().join(f));
        }
    }
}

/// Whether this run is the PostgreSQL + S3 one.
pub fn postgres_s3() -> bool {
    match std::env::var("AINA_TEST_BACKEND").as_deref() {
        Err(_) | Ok("sqlite-file") => false,
        Ok("postgres-s3") => true,
        Ok(other) => panic!("AINA_TEST_BACKEND={other}: expected sqlite-file or postgres-s3"),
    }
}

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// `http://127.0.0.1:PORT/dicomweb`
    pub dicomweb: String,
    pub client: reqwest::Client,
    /// Declared first so it is dropped first: the index and objects below are
    /// removed after the server that uses them.
    pub server: Server,
    /// Index and objects, removed when the last server on them is dropped.
    _backend: Arc<Backend>,
    /// This node's own data directory, when it is not the backend's.
    _node_dir: Option<tempfile::TempDir>,
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
    let backend = Arc::new(Backend::new().await);
    launch(backend, None, adjust).await
}

/// A server on an archive a test prepared (with the command-line tools, say).
pub async fn start_on(backend: Arc<Backend>) -> TestServer {
    launch(backend, None, |_| {}).await
}

/// Another node on a shared index and object store, with a data directory of
/// its own (nothing a node keeps locally may be needed by another).
pub async fn start_node(backend: Arc<Backend>) -> TestServer {
    start_node_with(backend, |_| {}).await
}

/// [`start_node`] with settings adjusted.
pub async fn start_node_with(
    backend: Arc<Backend>,
    adjust: impl FnOnce(&mut Settings),
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    launch(backend, Some(dir), |s| {
        s.data = Some(path);
        adjust(s);
    })
    .await
}

async fn launch(
    backend: Arc<Backend>,
    node_dir: Option<tempfile::TempDir>,
    adjust: impl FnOnce(&mut Settings),
) -> TestServer {
    // Server logs go with the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut settings = Settings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        dicom: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    backend.apply(&mut settings);
    adjust(&mut settings);
    let config = settings.resolve().unwrap();
    let state = AppState::open(config).await.unwrap();
    let server = Server::start(state).await.unwrap();
    let root = format!("http://{}", server.http_addr);
    TestServer {
        dicomweb: format!("{root}/dicomweb"),
        root,
        client: reqwest::Client::new(),
        _backend: backend,
        _node_dir: node_dir,
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

/// The WADO-RS path of a sample instance.
pub fn instance_path(g: &Generated) -> String {
    format!(
        "/studies/{}/series/{}/instances/{}",
        g.study_instance_uid, g.series_instance_uid, g.sop_instance_uid
    )
}

impl TestServer {
    /// The server's object store.
    pub fn store(&self) -> &Store {
        &self.server.state.store
    }

    /// The keys of every instance object in the store.
    pub async fn object_keys(&self) -> Vec<String> {
        let listed = self.store().list_instances().await.unwrap();
        listed.into_iter().map(|o| o.key).collect()
    }

    /// Deletes a study's index rows only, as a DICOMweb DELETE does first:
    /// its objects stay, as when the removals after it fail or run late.
    pub async fn delete_rows(&self, study: &str) -> aina::index::Deleted {
        let scope = aina::index::Scope {
            study: Some(study.to_owned()),
            ..Default::default()
        };
        self.server.state.index.delete(&scope).await.unwrap()
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
