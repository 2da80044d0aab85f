//! Object storage: the key layout over `object_store`, the backends a storage
//! URL names (a local directory or an S3-compatible bucket), and the instance
//! container ([`container`]).
//!
//! One object per stored instance version. The key ends with the SHA-256 of the
//! original bytes, so a key always names the same content: writing it twice is
//! harmless, and "keep both versions" needs no renaming. What the object holds is
//! the container's business; this module moves bytes.
//!
//! Storage URLs:
//! - `file:///absolute/dir`: a local directory, every write fsynced.
//! - `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false&allow_http=true|false]`:
//!   an S3 bucket (AWS or compatible: MinIO, Garage, Ceph…), keys under PREFIX.
//!   Credentials and any other setting come from the usual `AWS_*` variables
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`…); the URL's parameters win over them.
//!   Secrets never go in the URL: it is shown in errors and logs.
//!
//! S3 writes of [`MULTIPART_FROM`] bytes or more go up as a multipart upload,
//! aborted when a part fails. A process killed mid-upload still leaves parts
//! behind (invisible, but billed): give the bucket an
//! `AbortIncompleteMultipartUpload` lifecycle rule.
//!
//! Left out: creating buckets (the bucket must exist; [`Store::ping`] says when
//! it does not), lifecycle and encryption settings (the bucket's, or `AWS_*`).

pub mod container;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

/// Errors of the object store, classified by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// The storage URL is not one we can open. `url` is the URL without its
    /// query, so that no parameter value (a mistyped secret) is ever shown.
    #[error(
        "unsupported storage URL {url:?}: {reason} (expected file:///absolute/dir or \
         s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false&allow_http=true|false])"
    )]
    BadUrl { url: String, reason: String },
    /// The store answers, but not as a usable store: the bucket is missing or
    /// the credentials are refused. Fixing it is the operator's job.
    #[error("object storage {store} is unusable: {reason}")]
    Unusable {
        store: String,
        reason: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// The backend failed (disk, network).
    #[error("object storage {op} of {key} failed")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object's key, size and last write time, from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The archive's object storage.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// What the store is, for errors and `Debug`: the storage URL without its
    /// query, or the wrapped store's name.
    name: String,
    /// Whether this is S3: large payloads go up as multipart uploads and single
    /// writes overwrite (see [`Store::put`]). Local files keep one fsynced,
    /// create-only write: it is atomic there, and no faster in parts.
    multipart: bool,
}

// By hand, so that nothing of the client's configuration (credentials) can end
// up in a log line that prints the store.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

/// The suffix of every instance object.
const OBJECT_SUFFIX: &str = ".aina";

/// S3 payloads of this many bytes or more go up as a multipart upload. Below,
/// one PUT is one request to retry; above, a failed request costs one part, not
/// the whole object, and the parts go up in parallel.
pub const MULTIPART_FROM: usize = 32 << 20;

/// The size of each part of a multipart upload (S3 wants at least 5 MiB but the
/// last, and at most 10 000 parts: 156 GiB, far above any DICOM instance).
const PART_SIZE: usize = 16 << 20;

/// Parts of one upload in flight at once. The payload is already in memory
/// (parts are slices of it), so this bounds connections, not memory.
const PARTS_IN_FLIGHT: usize = 4;

/// The storage URL's query parameters, all optional.
const S3_PARAMETERS: &str = "endpoint, region, path_style, allow_http";

/// Retries of S3 requests. object_store retries connection errors, 5xx,
/// throttling (429, SlowDown) and timeouts of idempotent requests, with
/// exponential backoff and jitter; anything else (403, 404, 412) fails at once.
fn s3_retry() -> RetryConfig {
    RetryConfig {
        // 100 ms doubling to at most 5 s: a brief blip (a restarting gateway, a
        // dropped connection) costs little, and a throttling store gets room.
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        // Five retries span a few seconds of backoff: enough to ride out a
        // transient fault, few enough that an ingest waiting on a dead store
        // fails (and the modality retries the C-STORE) instead of hanging.
        max_retries: 5,
        // No retry starts later than a minute after the first attempt, however
        // long each attempt took: DIMSE and HTTP clients time out around then.
        retry_timeout: Duration::from_secs(60),
    }
}

/// Connect timeout of S3 requests: a reachable endpoint answers the TCP
/// handshake in milliseconds, so 5 s only waits out a lost SYN or two.
const S3_CONNECT_TIMEOUT: &str = "5s";

/// Whole-request timeout of S3 requests: one 16 MiB part, or an 8 MiB ranged
/// read, over a slow clinic uplink (a few Mbit/s) takes a minute or more; 300 s
/// also covers a 100 MB single-request object at ~3 Mbit/s. A stalled request
/// is still cut off eventually, and retried where that is safe.
const S3_REQUEST_TIMEOUT: &str = "300s";

impl Store {
    /// Opens the store named by a storage URL: `file:///absolute/dir`, or
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false&allow_http=true|false]`
    /// with the rest of its settings from `AWS_*` variables (see the module docs).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("s3://") {
            return Self::open_s3(url, AmazonS3Builder::from_env(), s3_retry());
        }
        let bad = |reason: &str| StoreError::BadUrl {
            url: without_query(url).to_owned(),
            reason: reason.to_owned(),
        };
        let Some(dir) = url.strip_prefix("file://") else {
            return Err(bad("unknown scheme"));
        };
        if !dir.starts_with('/') {
            return Err(bad("the directory must be an absolute path"));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
            op: "create directory",
            key: dir.to_owned(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })?;
        // fsync makes a successful put durable (file and directory), which the
        // ingest contract needs before the index row is written.
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| StoreError::Backend {
                op: "open",
                key: dir.to_owned(),
                source,
            })?
            .with_fsync(true);
        Ok(Self {
            inner: Arc::new(fs),
            name: url.to_owned(),
            multipart: false,
        })
    }

    /// Opens an `s3://` storage URL over `builder` (settings so far: the
    /// environment's, or a test's) with `retry`. The URL's parameters win over
    /// the builder's settings.
    pub(crate) fn open_s3(
        url: &str,
        builder: AmazonS3Builder,
        retry: RetryConfig,
    ) -> Result<Self, StoreError> {
        let name = without_query(url);
        let bad = |reason: String| StoreError::BadUrl {
            url: name.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL".to_owned()))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".to_owned()));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty())
            .then(|| Path::parse(prefix))
            .transpose()
            .map_err(|_| bad("the prefix is not a valid object path".to_owned()))?;

        // The crypto provider rustls uses for HTTPS: the build has only ring, so
        // none is picked by default. Installing twice fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut builder = builder
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                S3_CONNECT_TIMEOUT,
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                S3_REQUEST_TIMEOUT,
            );
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Only the name is ever shown: a value could be a secret put there by
            // mistake.
            let value = percent_decode(value)
                .ok_or_else(|| bad(format!("parameter {key:?} is not valid percent-encoding")))?;
            let flag = |value: &str| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad(format!("parameter {key:?} must be true or false"))),
            };
            builder = match key {
                "endpoint" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(bad("endpoint must be an http:// or https:// URL".to_owned()));
                    }
                    builder.with_endpoint(value)
                }
                "region" if value.is_empty() => return Err(bad("region is empty".to_owned())),
                "region" => builder.with_region(value),
                "path_style" => builder.with_virtual_hosted_style_request(!flag(&value)?),
                "allow_http" => builder.with_allow_http(flag(&value)?),
                // A typo must not quietly fall back to AWS defaults.
                _ => {
                    return Err(bad(format!(
                        "unknown parameter {key:?} (known: {S3_PARAMETERS})"
                    )));
                }
            };
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        // object_store would refuse every request to an http:// endpoint at run
        // time; say so now.
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let allow_http =
            builder.get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
        if endpoint.is_some_and(|e| e.starts_with("http://"))
            && allow_http.as_deref() != Some("true")
        {
            return Err(bad(
                "an http:// endpoint needs allow_http=true (or AWS_ALLOW_HTTP=true)".to_owned(),
            ));
        }
        let s3 = builder.build().map_err(|source| StoreError::Backend {
            op: "open",
            key: name.to_owned(),
            source,
        })?;
        let inner: Arc<dyn ObjectStore> = match prefix {
            Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
            None => Arc::new(s3),
        };
        Ok(Self {
            inner,
            name: name.to_owned(),
            multipart: true,
        })
    }

    /// Wraps any object_store implementation (writes are single puts).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>) -> Self {
        let name = inner.to_string();
        Self {
            inner,
            name,
            multipart: false,
        }
    }

    /// The key of one stored instance version.
    pub fn instance_key(study: &str, series: &str, sop: &str, sha256_hex: &str) -> String {
        format!("studies/{study}/series/{series}/instances/{sop}/{sha256_hex}{OBJECT_SUFFIX}")
    }

    /// The SOP Instance UID in a key made by [`Store::instance_key`] (the
    /// whole key for one that is not).
    pub fn sop_of_key(key: &str) -> &str {
        key.rsplit('/').nth(1).unwrap_or(key)
    }

    /// Writes an object if it is not there yet. An existing object under the same
    /// key has the same content (the key holds its SHA-256), so that is success.
    /// On S3, payloads of [`MULTIPART_FROM`] bytes or more go up in parts; a
    /// failed upload is aborted, so no partial object is left.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = Path::from(key);
        if self.multipart && bytes.len() >= MULTIPART_FROM {
            // In its own task, so that a caller giving up (a client hanging up
            // mid-STOW) cannot drop the upload between parts and skip the abort.
            let inner = self.inner.clone();
            let task = tokio::spawn(async move { put_multipart(&*inner, &path, bytes).await });
            return match task.await {
                Ok(result) => result,
                Err(e) => Err(object_store::Error::from(e)),
            }
            .map_err(|source| StoreError::Backend {
                op: "multipart put",
                key: key.to_owned(),
                source,
            });
        }
        // Local files: create-only, so an existing object is not rewritten.
        // S3: overwrite. The key names its content, so overwriting writes the
        // same bytes; unlike a conditional create it is idempotent to the
        // client, which retries it after a timeout or a dropped connection, and
        // it needs no `If-None-Match` support from S3-compatible stores.
        let mode = if self.multipart {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(source) => Err(StoreError::Backend {
                op: "put",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = Path::from(key);
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| classify("get", key, e))?;
        result.bytes().await.map_err(|e| classify("get", key, e))
    }

    /// Reads one byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = Path::from(key);
        self.inner
            .get_range(&path, range)
            .await
            .map_err(|e| classify("get range", key, e))
    }

    /// The size of an object.
    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let path = Path::from(key);
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|e| classify("head", key, e))?;
        Ok(meta.size)
    }

    /// Removes an object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Backend {
                op: "delete",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Removes every object under `prefix`, a whole path segment (`derived/ab`
    /// covers `derived/ab/x`, not `derived/abc/x`); returns how many there were.
    /// Batched where the backend can (S3 deletes up to 1000 keys a request), so
    /// an instance's thousand previews go in one or two round trips.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let backend = |op, source| StoreError::Backend {
            op,
            key: prefix.to_owned(),
            source,
        };
        let keys: Vec<Path> = self
            .inner
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| backend("list", e))?;
        let count = keys.len();
        let mut deleted = self
            .inner
            .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                // Gone already (a concurrent delete): what was asked.
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend("delete", e)),
            }
        }
        Ok(count)
    }

    /// Every instance object in the store, in no particular order.
    pub async fn list_instances(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = Path::from("studies");
        self.inner
            .list(Some(&prefix))
            .try_filter_map(|m| async move {
                let key = m.location.to_string();
                Ok(key.ends_with(OBJECT_SUFFIX).then_some(ObjectInfo {
                    key,
                    size: m.size,
                    modified: m.last_modified.into(),
                }))
            })
            .try_collect()
            .await
            .map_err(|source| StoreError::Backend {
                op: "list",
                key: "studies/".to_owned(),
                source,
            })
    }

    /// Whether the store answers (readiness): one listing request. A missing
    /// bucket or refused credentials are [`StoreError::Unusable`], saying which.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let path = Path::from("studies");
        let mut list = self.inner.list(Some(&path));
        match list.try_next().await {
            Ok(_) => Ok(()),
            Err(source) => {
                let reason = unusable(&source);
                Err(match reason {
                    Some(reason) => StoreError::Unusable {
                        store: self.name.clone(),
                        reason,
                        source,
                    },
                    None => StoreError::Backend {
                        op: "list",
                        key: "studies/".to_owned(),
                        source,
                    },
                })
            }
        }
    }
}

/// Why a store's answer to a listing shows it unusable (bucket missing,
/// credentials refused); `None` for anything else (network, server errors).
fn unusable(e: &object_store::Error) -> Option<&'static str> {
    const BUCKET: &str = "the bucket does not exist";
    const CREDENTIALS: &str = "the credentials were refused";
    match e {
        // A listing names no object: what is not found is the bucket.
        object_store::Error::NotFound { .. } => return Some(BUCKET),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => return Some(CREDENTIALS),
        _ => {}
    }
    // object_store does not classify failed listings (they come back
    // `Generic`) and keeps the HTTP status in a private type, so read the
    // response it quotes: S3 error codes are a documented, stable part of the
    // API, and the status line is there for stores that send no body.
    let mut text = String::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        text.push_str(&err.to_string());
        text.push('\n');
        next = err.source();
    }
    let code = |c: &str| text.contains(&format!("<Code>{c}</Code>"));
    if code("NoSuchBucket") {
        Some(BUCKET)
    } else if [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
    ]
    .into_iter()
    .any(code)
        || text.contains("status code: 401")
        || text.contains("status code: 403")
    {
        Some(CREDENTIALS)
    } else {
        None
    }
}

/// A multipart upload of `bytes` to `path`, unless the object is there already.
/// Completing an upload cannot be made conditional like a single put
/// (`PutMode::Create`), so the key is looked up first: it names the content by
/// its SHA-256, so an existing object holds these very bytes. Two racing
/// uploads of one key both complete with the same bytes, which is harmless.
async fn put_multipart(
    store: &dyn ObjectStore,
    path: &Path,
    mut bytes: Bytes,
) -> Result<(), object_store::Error> {
    match store.head(path).await {
        Ok(_) => return Ok(()),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let upload = store.put_multipart(path).await?;
    let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    while !bytes.is_empty() {
        if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
            if let Err(abort) = parts.abort().await {
                tracing::warn!(key = %path, error = &abort as &dyn std::error::Error, "aborting a failed multipart upload failed");
            }
            return Err(e);
        }
        // Slices of the payload: no copy.
        parts.put(bytes.split_to(bytes.len().min(PART_SIZE)));
    }
    // `finish` aborts the upload itself when a part or the completion fails.
    parts.finish().await.map(drop)
}

/// A storage URL without its query: what may be shown.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(head, _)| head)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn classify(op: &'static str, key: &str, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound {
            key: key.to_owned(),
            source: e,
        },
        source => StoreError::Backend {
            op,
            key: key.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use sha2::{Digest, Sha256};

    use super::*;

    #[tokio::test]
    async fn put_is_idempotent_and_ranges_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        conformance(&store).await;
    }

    /// The behaviour every backend shares: put (twice), get, ranges, size,
    /// listing, not found, delete (twice).
    async fn conformance(store: &Store) {
        let key = Store::instance_key("1.2", "1.2.3", "1.2.3.4", "ab");
        store
            .put(&key, Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        store
            .put(&key, Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&key).await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(
            store.get_range(&key, 6..11).await.unwrap(),
            Bytes::from_static(b"world")
        );
        assert_eq!(store.size(&key).await.unwrap(), 11);
        let listed = store.list_instances().await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|o| (o.key.as_str(), o.size))
                .collect::<Vec<_>>(),
            [(key.as_str(), 11)]
        );
        let age = listed[0].modified.elapsed().unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(600), "{age:?}");
        assert!(matches!(
            store.get("studies/none.aina").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.size("studies/none.aina").await,
            Err(StoreError::NotFound { .. })
        ));
        store.ping().await.unwrap();
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(store.list_instances().await.unwrap().is_empty());

        // A prefix is whole path segments: `derived/ab` spares `derived/abc`.
        for k in ["derived/ab/preview-1.bin", "derived/ab/thumbnail.jpg"] {
            store.put(k, Bytes::from_static(b"x")).await.unwrap();
        }
        store
            .put("derived/abc/thumbnail.jpg", Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert_eq!(store.delete_prefix("derived/ab").await.unwrap(), 2);
        assert!(matches!(
            store.get("derived/ab/thumbnail.jpg").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            store.get("derived/abc/thumbnail.jpg").await.unwrap(),
            Bytes::from_static(b"y")
        );
        assert_eq!(store.delete_prefix("derived/ab").await.unwrap(), 0);
        assert_eq!(store.delete_prefix("derived/abc").await.unwrap(), 1);
    }

    #[test]
    fn relative_or_unknown_urls_are_refused() {
        assert!(matches!(
            Store::open("file://relative"),
            Err(StoreError::BadUrl { .. })
        ));
        assert!(matches!(
            Store::open("ftp://x"),
            Err(StoreError::BadUrl { .. })
        ));
        assert!(matches!(
            Store::open("s3://"),
            Err(StoreError::BadUrl { .. })
        ));
        assert!(matches!(
            Store::open("s3:///prefix"),
            Err(StoreError::BadUrl { .. })
        ));
    }

    #[test]
    fn unknown_s3_parameters_are_refused_by_name_only() {
        // A typo must not fall back to AWS, and the value (here a secret put
        // where it does not belong) must not appear in the message.
        let err = Store::open_s3(
            "s3://bucket?endpoint=http://127.0.0.1:1&allow_http=true&secret_access_key=hunter2",
            test_builder(),
            s3_retry(),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{message}");
        assert!(message.contains("\"secret_access_key\""), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("s3://BUCKET"), "{message}");
        for url in [
            "s3://bucket?path_style=yes",
            "s3://bucket?allow_http=1",
            "s3://bucket?region=",
            "s3://bucket?endpoint=127.0.0.1:9000",
            "s3://bucket?endpointt=http://x",
            "s3://bucket?endpoint=http://127.0.0.1:9000&allow_http=false",
            "s3://bucket?endpoint=http://127.0.0.1:9000",
            "s3://bucket/a//b",
        ] {
            assert!(
                matches!(
                    Store::open_s3(url, test_builder(), s3_retry()),
                    Err(StoreError::BadUrl { .. })
                ),
                "{url}"
            );
        }
        let ok = "s3://bucket/some/prefix/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=true&allow_http=true";
        let store = Store::open_s3(ok, test_builder(), s3_retry()).unwrap();
        assert_eq!(
            format!("{store:?}"),
            r#"Store { name: "s3://bucket/some/prefix/" }"#
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%2f").as_deref(), Some("a:b/"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1x"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[tokio::test]
    async fn unreachable_s3_fails_in_bounded_time() {
        // Nothing listens on port 1: every attempt is refused at once, so this
        // measures the retry schedule itself, which must stay well under the
        // minute a DIMSE or HTTP client waits.
        let store = Store::open_s3(
            "s3://bucket?endpoint=http://127.0.0.1:1&allow_http=true",
            test_builder(),
            s3_retry(),
        )
        .unwrap();
        let started = Instant::now();
        let err = store
            .put("studies/x.aina", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(store.ping().await.is_err());
    }

    #[tokio::test]
    async fn ping_says_when_credentials_are_refused() {
        // What AWS (and s3s-fs) answer a listing signed with an unknown key.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
                        <Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: application/xml\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        let url = format!("s3://bucket?endpoint=http://{addr}&allow_http=true");
        let store = Store::open_s3(&url, test_builder(), s3_retry()).unwrap();
        let err = store.ping().await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Unusable {
                    reason: "the credentials were refused",
                    ..
                }
            ),
            "{err:?}"
        );
        // The message names the store, never the credentials.
        let message = err.to_string();
        assert!(message.contains("s3://bucket"), "{message}");
        assert!(!message.contains("test"), "{message}");
    }

    // S3 tests: against the server `AINA_TEST_S3_ENDPOINT` names (moto_server,
    // s3s-fs, MinIO), each in a fresh bucket.

    /// The endpoint to test against, or `None` (and a note) when none is set.
    fn s3_endpoint() -> Option<String> {
        let endpoint = std::env::var("AINA_TEST_S3_ENDPOINT").ok();
        if endpoint.is_none() {
            println!("SKIPPED: AINA_TEST_S3_ENDPOINT not set (S3 store tests)");
        }
        endpoint
    }

    /// Static test credentials on the builder, whatever the environment says
    /// (tests leave the process environment alone). moto does not check them;
    /// s3s-fs takes test/test when started so.
    fn test_builder() -> AmazonS3Builder {
        AmazonS3Builder::from_env()
            .with_access_key_id("test")
            .with_secret_access_key("test")
    }

    /// Creates a bucket nobody else uses, with an unsigned PUT.
    async fn fresh_bucket(endpoint: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let bucket = format!(
            "aina-test-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let res = reqwest::Client::new()
            .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "creating bucket: {}",
            res.status()
        );
        bucket
    }

    fn s3_url(endpoint: &str, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}{prefix}?endpoint={endpoint}&region=us-east-1&path_style=true&allow_http=true"
        )
    }

    async fn s3_store(endpoint: &str, prefix: &str) -> Store {
        let bucket = fresh_bucket(endpoint).await;
        Store::open_s3(
            &s3_url(endpoint, &bucket, prefix),
            test_builder(),
            s3_retry(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn s3_conformance() {
        let Some(endpoint) = s3_endpoint() else {
            return;
        };
        conformance(&s3_store(&endpoint, "").await).await;
        conformance(&s3_store(&endpoint, "/archive/one").await).await;
    }

    #[tokio::test]
    async fn s3_large_objects_go_up_in_parts() {
        let Some(endpoint) = s3_endpoint() else {
            return;
        };
        let store = s3_store(&endpoint, "/big").await;
        // 40 MiB: three parts (16 + 16 + 8), not a multiple of the part size.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let payload: Vec<u8> = (0..40 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let payload = Bytes::from(payload);
        let key = Store::instance_key("2.25.1", "2.25.2", "2.25.3", "big");
        store.put(&key, payload.clone()).await.unwrap();
        // Twice: the key is there, so nothing is uploaded and nothing fails.
        store.put(&key, payload.clone()).await.unwrap();
        let back = store.get(&key).await.unwrap();
        assert_eq!(Sha256::digest(&back), Sha256::digest(&payload));
        assert_eq!(store.size(&key).await.unwrap(), 40 << 20);
        assert_eq!(
            store
                .get_range(&key, (20 << 20)..(20 << 20) + 10)
                .await
                .unwrap(),
            payload.slice((20 << 20)..(20 << 20) + 10)
        );
        // A multipart object's ETag ends with its part count.
        let meta = store.inner.head(&Path::from(key.as_str())).await.unwrap();
        let etag = meta.e_tag.unwrap_or_default();
        assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload() {
        let store = FailingParts::default();
        let path = Path::from("studies/big.aina");
        let err = put_multipart(&store, &path, Bytes::from(vec![7u8; 40 << 20]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::Generic { .. }),
            "{err:?}"
        );
        assert!(store.aborted.load(Ordering::SeqCst));
        assert!(matches!(
            store.inner.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    /// An in-memory store whose multipart uploads fail at their second part.
    #[derive(Debug, Default)]
    struct FailingParts {
        inner: object_store::memory::InMemory,
        aborted: Arc<std::sync::atomic::AtomicBool>,
    }

    impl std::fmt::Display for FailingParts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("FailingParts")
        }
    }

    #[derive(Debug)]
    struct FailingUpload {
        inner: Box<dyn object_store::MultipartUpload>,
        parts: usize,
        aborted: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait::async_trait]
    impl object_store::MultipartUpload for FailingUpload {
        fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
            self.parts += 1;
            if self.parts == 2 {
                return Box::pin(async {
                    Err(object_store::Error::Generic {
                        store: "FailingParts",
                        source: "part refused".into(),
                    })
                });
            }
            self.inner.put_part(data)
        }
        async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
            self.inner.complete().await
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            self.aborted.store(true, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FailingParts {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(FailingUpload {
                inner,
                parts: 0,
                aborted: self.aborted.clone(),
            }))
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn s3_prefixes_isolate_stores() {
        let Some(endpoint) = s3_endpoint() else {
            return;
        };
        let bucket = fresh_bucket(&endpoint).await;
        let open = |prefix: &str| {
            Store::open_s3(
                &s3_url(&endpoint, &bucket, prefix),
                test_builder(),
                s3_retry(),
            )
            .unwrap()
        };
        let (a, b, whole) = (open("/site-a"), open("/site-b"), open(""));
        let key = Store::instance_key("2.25.1", "2.25.2", "2.25.3", "aa");
        a.put(&key, Bytes::from_static(b"from a")).await.unwrap();
        assert!(b.list_instances().await.unwrap().is_empty());
        assert!(matches!(
            b.get(&key).await,
            Err(StoreError::NotFound { .. })
        ));
        b.put(&key, Bytes::from_static(b"from b")).await.unwrap();
        assert_eq!(a.get(&key).await.unwrap(), Bytes::from_static(b"from a"));
        assert_eq!(b.get(&key).await.unwrap(), Bytes::from_static(b"from b"));
        assert_eq!(a.list_instances().await.unwrap().len(), 1);
        // The prefix is where the objects really are; the bucket root has none.
        assert!(whole.list_instances().await.unwrap().is_empty());
        let raw = whole
            .inner
            .head(&Path::from(format!("site-a/{key}").as_str()))
            .await
            .unwrap();
        assert_eq!(raw.size, 6);
    }

    #[tokio::test]
    async fn s3_ping_fails_on_a_missing_bucket() {
        let Some(endpoint) = s3_endpoint() else {
            return;
        };
        let url = s3_url(&endpoint, "aina-test-no-such-bucket", "");
        let store = Store::open_s3(&url, test_builder(), s3_retry()).unwrap();
        let err = store.ping().await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Unusable {
                    reason: "the bucket does not exist",
                    ..
                }
            ),
            "{err:?}"
        );
        // The store's URL is named, so the operator knows which bucket.
        assert!(
            err.to_string().contains("aina-test-no-such-bucket"),
            "{err}"
        );
    }
}
