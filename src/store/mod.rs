//! Object storage: the key layout over `object_store`, and the instance container
//! ([`container`]).
//!
//! One object per stored instance version. The key ends with the SHA-256 of the
//! original bytes, so a key always names the same content: writing it twice is
//! harmless, and "keep both versions" needs no renaming. What the object holds is
//! the container's business; this module moves bytes.

pub mod container;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

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
    /// The storage URL is not one we can open.
    #[error("unsupported storage URL {0:?} (expected file:///absolute/path)")]
    BadUrl(String),
    /// The backend failed (disk, network).
    #[error("object storage {op} of {key} failed")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object's key and size, from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// The archive's object storage.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
}

/// The suffix of every instance object.
const OBJECT_SUFFIX: &str = ".aina";

impl Store {
    /// Opens the store named by a storage URL (`file:///absolute/dir`).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let Some(dir) = url.strip_prefix("file://") else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        if !dir.starts_with('/') {
            return Err(StoreError::BadUrl(url.to_owned()));
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
        })
    }

    /// Wraps any object_store implementation.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// The key of one stored instance version.
    pub fn instance_key(study: &str, series: &str, sop: &str, sha256_hex: &str) -> String {
        format!("studies/{study}/series/{series}/instances/{sop}/{sha256_hex}{OBJECT_SUFFIX}")
    }

    /// Writes an object if it is not there yet. An existing object under the same
    /// key has the same content (the key holds its SHA-256), so that is success.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = Path::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
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

    /// Every instance object in the store, in no particular order.
    pub async fn list_instances(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = Path::from("studies");
        self.inner
            .list(Some(&prefix))
            .try_filter_map(|m| async move {
                let key = m.location.to_string();
                Ok(key
                    .ends_with(OBJECT_SUFFIX)
                    .then_some(ObjectInfo { key, size: m.size }))
            })
            .try_collect()
            .await
            .map_err(|source| StoreError::Backend {
                op: "list",
                key: "studies/".to_owned(),
                source,
            })
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let path = Path::from("studies");
        let mut list = self.inner.list(Some(&path));
        match list.try_next().await {
            Ok(_) => Ok(()),
            Err(source) => Err(StoreError::Backend {
                op: "list",
                key: "studies/".to_owned(),
                source,
            }),
        }
    }
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
    use super::*;

    #[tokio::test]
    async fn put_is_idempotent_and_ranges_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
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
            listed,
            vec![ObjectInfo {
                key: key.clone(),
                size: 11
            }]
        );
        assert!(matches!(
            store.get("studies/none.aina").await,
            Err(StoreError::NotFound { .. })
        ));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(store.list_instances().await.unwrap().is_empty());
    }

    #[test]
    fn relative_or_unknown_urls_are_refused() {
        assert!(matches!(
            Store::open("file://relative"),
            Err(StoreError::BadUrl(_))
        ));
        assert!(matches!(Store::open("ftp://x"), Err(StoreError::BadUrl(_))));
    }
}
