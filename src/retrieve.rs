//! Retrieval: instances, frames, bulk data and metadata out of the store, for
//! WADO-RS and WADO-URI (C-GET / C-MOVE read originals through it too).
//!
//! Originals are reassembled from the container segment by segment (bounded
//! memory, bit-exact). The instances of a series or study are read a few ahead
//! of the one being sent ([`read_ahead`]), in order. The one re-encoding done
//! here is between uncompressed transfer syntaxes (Implicit VR Little Endian,
//! Big Endian, Deflate → Explicit VR Little Endian), which dicom-object does
//! without touching pixel values; decoding compressed pixel data is `render`'s
//! business.

use std::sync::Arc;

use bytes::Bytes;
use dicom_dictionary_std::{tags, uids};
use dicom_object::OpenFileOptions;
use futures::{FutureExt, Stream, StreamExt, TryFutureExt, TryStreamExt};

use crate::index::{Index, IndexError, Scope, StoredInstance};
use crate::store::container::{ContainerError, ContainerIndex};
use crate::store::{Store, StoreError};

/// Stored segments are fetched in ranged reads of about this many bytes.
const READ_BATCH: u64 = 8 << 20;

/// Instances of a series or study being read at once when they are sent one
/// after another (WADO-RS, C-GET, C-MOVE): the one being sent and the next
/// three. Each read is a request or two to the store; on S3, where a request
/// waits tens of milliseconds for its first byte, reading one instance at a
/// time leaves the link idle between small instances (a CT series: hundreds).
pub const READ_AHEAD_INSTANCES: usize = 4;

/// Errors of retrieval, classified by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrieveError {
    /// Nothing matches the request.
    #[error("{0} not found")]
    NotFound(String),
    /// The request cannot be met as asked (bad frame number, bad bulk data path).
    #[error("{0}")]
    Invalid(String),
    /// The stored transfer syntax cannot be turned into the one asked for.
    #[error("cannot convert from transfer syntax {from} to {to}")]
    NotAcceptable { from: String, to: String },
    #[error("index failed")]
    Index(#[source] IndexError),
    #[error("object storage failed")]
    Store(#[source] StoreError),
    /// A stored object does not decode: the archive is damaged (see `aina verify`).
    #[error("stored object {key} is damaged")]
    Damaged {
        key: String,
        #[source]
        source: ContainerError,
    },
    /// Re-encoding failed.
    #[error("re-encoding failed: {0}")]
    Transcode(String),
    #[error("retrieve task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl From<IndexError> for RetrieveError {
    fn from(e: IndexError) -> Self {
        RetrieveError::Index(e)
    }
}

impl From<StoreError> for RetrieveError {
    fn from(e: StoreError) -> Self {
        RetrieveError::Store(e)
    }
}

/// How an instance is to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// The stored bytes, exactly.
    Original,
    /// Explicit VR Little Endian, re-encoded from another uncompressed syntax.
    ExplicitLittleEndian,
    /// Explicit VR Little Endian with the compressed pixel data decoded: the
    /// render service's work (`Render::decompressed_instance`), not this module's.
    Decompressed,
}

/// Whether a transfer syntax is uncompressed: native pixel data, re-encodable here.
// Explicit VR Big Endian is retired, but old devices still send it and the
// archive keeps what it is sent.
#[allow(deprecated)]
pub fn is_uncompressed(ts: &str) -> bool {
    [
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        uids::EXPLICIT_VR_BIG_ENDIAN,
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    ]
    .contains(&ts)
}

/// Decides how to send an instance stored in `stored_ts` when the client asked for
/// `wanted` (`None`: any, the stored one preferred). Implicit VR Little Endian is
/// never sent over the web (PS3.18 §8.7.3.5.1).
pub fn choose_encoding(stored_ts: &str, wanted: Option<&str>) -> Result<Encoding, RetrieveError> {
    let implicit = stored_ts == uids::IMPLICIT_VR_LITTLE_ENDIAN;
    match wanted {
        None if implicit => Ok(Encoding::ExplicitLittleEndian),
        None => Ok(Encoding::Original),
        Some(w) if w == stored_ts && !implicit => Ok(Encoding::Original),
        Some(w) if w == uids::EXPLICIT_VR_LITTLE_ENDIAN && is_uncompressed(stored_ts) => {
            Ok(Encoding::ExplicitLittleEndian)
        }
        Some(w) if w == uids::EXPLICIT_VR_LITTLE_ENDIAN => Ok(Encoding::Decompressed),
        Some(w) => Err(RetrieveError::NotAcceptable {
            from: stored_ts.to_owned(),
            to: w.to_owned(),
        }),
    }
}

/// The transfer syntax an instance is sent in with `encoding`.
pub fn sent_transfer_syntax<'a>(inst: &'a StoredInstance, encoding: &Encoding) -> &'a str {
    match encoding {
        Encoding::Original => &inst.transfer_syntax_uid,
        Encoding::ExplicitLittleEndian | Encoding::Decompressed => uids::EXPLICIT_VR_LITTLE_ENDIAN,
    }
}

/// Retrieval service.
#[derive(Clone)]
pub struct Retrieve {
    store: Store,
    index: Arc<dyn Index>,
}

impl Retrieve {
    pub fn new(store: Store, index: Arc<dyn Index>) -> Self {
        Self { store, index }
    }

    /// The current instances in `scope`; `NotFound` when there are none.
    pub async fn instances(&self, scope: &Scope) -> Result<Vec<StoredInstance>, RetrieveError> {
        let found = self.index.instances(scope).await?;
        if found.is_empty() {
            return Err(RetrieveError::NotFound(describe(scope)));
        }
        Ok(found)
    }

    /// The stored DICOM JSON of the instances in `scope`; `NotFound` when none.
    pub async fn metadata(&self, scope: &Scope) -> Result<Vec<String>, RetrieveError> {
        let found = self.index.metadata(scope).await?;
        if found.is_empty() {
            return Err(RetrieveError::NotFound(describe(scope)));
        }
        Ok(found)
    }

    /// The original bytes of an instance as a stream of chunks, reassembled from
    /// the container with a few ranged reads and one segment in memory at a time.
    pub fn original(
        &self,
        inst: &StoredInstance,
    ) -> impl Stream<Item = Result<Bytes, RetrieveError>> + Send + use<> {
        let store = self.store.clone();
        let key = inst.object_key.clone();
        let table = inst.container_index.clone();
        async move {
            let index = Arc::new(parse_table(&key, &table)?);
            let batches = batches(&index);
            // Each batch is one ranged read, its segments decoded in parallel
            // (rayon); the next batch is read and decoded while this one is sent.
            let stream = futures::stream::iter(batches)
                .map(move |(range, segs)| {
                    let store = store.clone();
                    let key = key.clone();
                    let index = index.clone();
                    async move {
                        let stored = store.get_range(&key, range.clone()).await?;
                        tokio::task::spawn_blocking(move || {
                            decode_batch(&index, &segs, &stored, range.start)
                                .map_err(|source| RetrieveError::Damaged { key, source })
                        })
                        .await
                        .map_err(RetrieveError::Task)?
                    }
                })
                .buffered(2);
            Ok::<_, RetrieveError>(stream)
        }
        .try_flatten_stream()
    }

    /// The whole original file in memory.
    pub async fn original_bytes(&self, inst: &StoredInstance) -> Result<Bytes, RetrieveError> {
        concat(self.original(inst)).await
    }

    /// The whole original files of `instances`, in order, each read ahead as
    /// [`read_ahead`] does: one file whole in memory, the next few a chunk or
    /// two each.
    pub fn originals(
        &self,
        instances: Vec<StoredInstance>,
    ) -> impl Stream<Item = Result<Bytes, RetrieveError>> + Send + 'static {
        let this = self.clone();
        read_ahead(instances, move |inst| this.original(inst)).then(|(_, body)| concat(body))
    }

    /// An instance as `encoding` asks, as a stream of chunks. `Decompressed` is
    /// refused: decoding pixel data is the render service's.
    pub fn encoded(
        &self,
        inst: &StoredInstance,
        encoding: Encoding,
    ) -> impl Stream<Item = Result<Bytes, RetrieveError>> + Send + 'static {
        match encoding {
            Encoding::Original => self.original(inst).boxed(),
            Encoding::ExplicitLittleEndian => {
                let this = self.clone();
                let inst = inst.clone();
                futures::stream::once(async move { this.explicit_little_endian(&inst).await })
                    .boxed()
            }
            Encoding::Decompressed => futures::stream::once(futures::future::ready(Err(
                RetrieveError::Transcode("decompression goes through the render service".into()),
            )))
            .boxed(),
        }
    }

    /// Re-encodes an uncompressed instance as Explicit VR Little Endian: same data
    /// set, same values, only the encoding (and the meta's transfer syntax) change.
    async fn explicit_little_endian(&self, inst: &StoredInstance) -> Result<Bytes, RetrieveError> {
        let original = self.original_bytes(inst).await?;
        tokio::task::spawn_blocking(move || {
            let mut obj = OpenFileOptions::new()
                .from_reader(&original[..])
                .map_err(|e| RetrieveError::Transcode(e.to_string()))?;
            obj.update_meta(|m| {
                m.set_transfer_syntax(
                    &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN,
                )
            });
            let mut out = Vec::with_capacity(original.len() + 4096);
            obj.write_all(&mut out)
                .map_err(|e| RetrieveError::Transcode(e.to_string()))?;
            Ok(Bytes::from(out))
        })
        .await
        .map_err(RetrieveError::Task)?
    }

    /// The pixel bytes of the given frames (1-based), one ranged read each.
    pub async fn frames(
        &self,
        inst: &StoredInstance,
        frames: &[u32],
    ) -> Result<Vec<Bytes>, RetrieveError> {
        let index = Arc::new(parse_table(&inst.object_key, &inst.container_index)?);
        let count = index.frame_count();
        if count == 0 {
            return Err(RetrieveError::Invalid(format!(
                "instance {} has no addressable frames",
                inst.sop_instance_uid
            )));
        }
        let mut out = Vec::with_capacity(frames.len());
        for &n in frames {
            let range = index.frame_stored_range(n).ok_or_else(|| {
                RetrieveError::NotFound(format!(
                    "frame {n} of instance {} (it has {count})",
                    inst.sop_instance_uid
                ))
            })?;
            let stored = self.store.get_range(&inst.object_key, range).await?;
            let index = index.clone();
            let key = inst.object_key.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                index
                    .decode_frame(n, &stored)
                    .map_err(|source| RetrieveError::Damaged { key, source })
            })
            .await
            .map_err(RetrieveError::Task)??;
            out.push(Bytes::from(bytes));
        }
        Ok(out)
    }

    /// The value of a non-pixel bulk data element, by the path of its BulkDataURI
    /// (see `aina_dicomweb::json`).
    pub async fn bulk_value(
        &self,
        inst: &StoredInstance,
        path: &str,
    ) -> Result<Bytes, RetrieveError> {
        let steps = aina_dicomweb::json::parse_bulk_path(path)
            .map_err(|e| RetrieveError::Invalid(e.to_string()))?;
        let original = self.original_bytes(inst).await?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let obj = OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .from_reader(&original[..])
                .map_err(|e| RetrieveError::Transcode(e.to_string()))?;
            let elem = aina_dicomweb::json::find_bulk_element(&obj, &steps)
                .ok_or_else(|| RetrieveError::NotFound(format!("bulk data {path}")))?;
            let value = elem
                .to_bytes()
                .map_err(|e| RetrieveError::Invalid(format!("bulk data {path}: {e}")))?;
            Ok(Bytes::copy_from_slice(&value))
        })
        .await
        .map_err(RetrieveError::Task)?
    }
}

use crate::store::container;

/// `items` in order, each with its body as `open` makes it, the bodies of up to
/// [`READ_AHEAD_INSTANCES`] items being read at once. Each body is read in its
/// own task (so it progresses while the caller is busy sending the one before)
/// and at most a chunk ahead of its consumer, so memory stays a few chunks per
/// item (for originals, a few 8 MiB batches however large the instance; a
/// decompressed instance is one chunk, so up to four decoded instances are held).
/// Dropping a body, or the stream, stops its read.
pub fn read_ahead<T, S>(
    items: impl IntoIterator<Item = T, IntoIter: Send + 'static>,
    mut open: impl FnMut(&T) -> S + Send + 'static,
) -> impl Stream<Item = (T, ReadAhead<S::Item>)> + Send + 'static
where
    T: Send + 'static,
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    // `buffered` takes the next item, and so starts its read, as soon as one
    // is handed out: READ_AHEAD_INSTANCES bodies are under way at any time.
    futures::stream::iter(items)
        .map(move |item| {
            let body = ReadAhead::spawn(open(&item));
            futures::future::ready((item, body))
        })
        .buffered(READ_AHEAD_INSTANCES)
}

/// A body being read by its own task, a chunk ahead (see [`read_ahead`]).
pub struct ReadAhead<T> {
    chunks: futures::channel::mpsc::Receiver<T>,
    /// Polled once the chunks end: a reading task that panicked must not look
    /// like a body that ended (a truncated file sent as complete), so its
    /// panic is resumed in the consumer, as if the body had been read inline.
    task: tokio::task::JoinHandle<()>,
}

impl<T: Send + 'static> ReadAhead<T> {
    fn spawn<S: Stream<Item = T> + Send + 'static>(body: S) -> Self {
        // Room for one chunk: the task holds one more while it waits, and
        // `original` has two reads in flight, so a body read ahead holds at most
        // a few chunks (of about READ_BATCH stored bytes each).
        let (mut tx, chunks) = futures::channel::mpsc::channel(0);
        let task = tokio::spawn(async move {
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                if futures::SinkExt::send(&mut tx, chunk).await.is_err() {
                    return;
                }
            }
        });
        Self { chunks, task }
    }
}

impl<T> Stream for ReadAhead<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        use std::task::Poll;
        match self.chunks.poll_next_unpin(cx) {
            Poll::Ready(None) => match self.task.poll_unpin(cx) {
                Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    // A body nobody will read (the client hung up, the C-MOVE was cancelled)
    // stops reading now, not after its current ranged read.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body's chunks joined into one buffer.
async fn concat<E>(body: impl Stream<Item = Result<Bytes, E>>) -> Result<Bytes, E> {
    let parts: Vec<Bytes> = body.try_collect().await?;
    Ok(match parts.len() {
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    })
}

/// Decodes the segments `segs` of a batch read from `base` onwards, in parallel,
/// into one buffer in their order.
fn decode_batch(
    index: &ContainerIndex,
    segs: &[usize],
    stored: &[u8],
    base: u64,
) -> Result<Bytes, ContainerError> {
    use rayon::prelude::*;
    let parts: Vec<Vec<u8>> = segs
        .par_iter()
        .map(|&i| {
            let seg = &index.segments[i];
            let start = (seg.stored_offset - base) as usize;
            container::decode_segment(seg, &stored[start..start + seg.stored_len as usize])
        })
        .collect::<Result<_, _>>()?;
    Ok(Bytes::from(parts.concat()))
}

fn parse_table(key: &str, table: &[u8]) -> Result<ContainerIndex, RetrieveError> {
    ContainerIndex::from_bytes(table).map_err(|source| RetrieveError::Damaged {
        key: key.to_owned(),
        source,
    })
}

/// Groups consecutive segments into ranged reads of about [`READ_BATCH`] bytes.
fn batches(index: &ContainerIndex) -> Vec<(std::ops::Range<u64>, Vec<usize>)> {
    let mut out: Vec<(std::ops::Range<u64>, Vec<usize>)> = Vec::new();
    for (i, seg) in index.segments.iter().enumerate() {
        let end = seg.stored_offset + seg.stored_len;
        match out.last_mut() {
            Some((range, segs))
                if range.end == seg.stored_offset && end - range.start <= READ_BATCH =>
            {
                range.end = end;
                segs.push(i);
            }
            _ => out.push((seg.stored_offset..end, vec![i])),
        }
    }
    out
}

fn describe(scope: &Scope) -> String {
    match (&scope.study, &scope.series, &scope.instance) {
        (_, _, Some(i)) => format!("instance {i}"),
        (_, Some(s), None) => format!("series {s}"),
        (Some(s), None, None) => format!("study {s}"),
        _ => "resource".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn read_ahead_keeps_order_and_bounds_reads() {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let bodies = read_ahead(0..10u64, move |&i| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Later items are quicker to read: the order must hold anyway.
            futures::stream::iter([i * 10, i * 10 + 1]).then(move |chunk| async move {
                tokio::time::sleep(std::time::Duration::from_millis(10 - i)).await;
                chunk
            })
        });
        let mut bodies = std::pin::pin!(bodies);
        let (first, body) = bodies.next().await.unwrap();
        assert_eq!(first, 0);
        assert_eq!(body.collect::<Vec<_>>().await, [0, 1]);
        // Only a few bodies were started, not the whole list.
        assert_eq!(opened.load(Ordering::SeqCst), READ_AHEAD_INSTANCES);
        let mut rest = Vec::new();
        while let Some((i, body)) = bodies.next().await {
            rest.push((i, body.collect::<Vec<_>>().await));
        }
        let expected: Vec<_> = (1..10u64).map(|i| (i, vec![i * 10, i * 10 + 1])).collect();
        assert_eq!(rest, expected);
    }

    /// A reading task that panics is not a body that ended: the consumer sees
    /// the panic, never a silently truncated file.
    #[tokio::test]
    async fn a_panicking_read_is_not_a_short_body() {
        let bodies = read_ahead([1u8], |_| {
            futures::stream::iter([1u8, 2]).map(|chunk| {
                assert!(chunk < 2, "decoder bug");
                chunk
            })
        });
        let consumer = tokio::spawn(async move {
            let mut bodies = std::pin::pin!(bodies);
            let (_, body) = bodies.next().await.unwrap();
            body.collect::<Vec<_>>().await
        });
        let err = consumer.await.unwrap_err();
        assert!(err.is_panic());
    }

    #[test]
    #[allow(deprecated)]
    fn encoding_choice_follows_ps3_18() {
        let ex = uids::EXPLICIT_VR_LITTLE_ENDIAN;
        let im = uids::IMPLICIT_VR_LITTLE_ENDIAN;
        let j2k = uids::JPEG2000_LOSSLESS;
        assert_eq!(choose_encoding(ex, None).unwrap(), Encoding::Original);
        assert_eq!(
            choose_encoding(im, None).unwrap(),
            Encoding::ExplicitLittleEndian
        );
        assert_eq!(choose_encoding(j2k, None).unwrap(), Encoding::Original);
        assert_eq!(choose_encoding(j2k, Some(j2k)).unwrap(), Encoding::Original);
        assert_eq!(
            choose_encoding(im, Some(ex)).unwrap(),
            Encoding::ExplicitLittleEndian
        );
        assert_eq!(
            choose_encoding(uids::EXPLICIT_VR_BIG_ENDIAN, Some(ex)).unwrap(),
            Encoding::ExplicitLittleEndian
        );
        assert_eq!(
            choose_encoding(j2k, Some(ex)).unwrap(),
            Encoding::Decompressed
        );
        assert!(matches!(
            choose_encoding(j2k, Some(uids::JPEGLS_LOSSLESS)),
            Err(RetrieveError::NotAcceptable { .. })
        ));
        // PS3.18 §8.7.3.5.1 keeps Implicit VR Little Endian off the web.
        assert!(matches!(
            choose_encoding(im, Some(im)),
            Err(RetrieveError::NotAcceptable { .. })
        ));
    }
}
