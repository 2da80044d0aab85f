//! Pixels: decoding every transfer syntax, rendering (windowing, LUTs, resizing,
//! JPEG/PNG/WebP), previews and thumbnails made at ingest, and transcoding.
//!
//! - [`decode`]: one frame of a DICOM object → [`frame::Frame`] (every codec).
//! - [`meta`] + [`pipeline`]: the grayscale pipeline and image encoding.
//! - [`derived`]: the preview and thumbnail objects made once per instance.
//! - [`Render`] (here): the service the HTTP layer calls. It reads one frame
//!   with one ranged read (the instance's header is read once and cached), does
//!   all pixel work on the blocking pool, answers small viewports from the stored
//!   preview, and keeps rendered and transcoded results in a bounded cache.

pub mod decode;
pub mod derived;
pub mod frame;
pub mod meta;
pub mod pipeline;

use std::sync::Arc;

use bytes::Bytes;
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use sha2::{Digest, Sha256};

use crate::index::{Index, Scope, StoredInstance};
use crate::retrieve::{Retrieve, RetrieveError};
use crate::store::container::{self, ContainerIndex, Role};
use crate::store::{Store, StoreError};
use decode::DecodeError;
use frame::Frame;
use meta::ImageMeta;
use pipeline::{OutputFormat, PipelineError, RenderParams, Viewport};

type DicomFile = FileDicomObject<InMemDicomObject>;

/// Settings of the render service.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Bytes of rendered and transcoded results kept in memory.
    pub cache_bytes: u64,
    /// Longer side of the stored per-frame previews.
    pub preview_max_side: u32,
    /// Longer side of the stored thumbnails.
    pub thumbnail_max_side: u32,
    /// Previews are made for at most this many frames of an instance (a long
    /// cine loop gets previews of its first frames; later frames render from the
    /// full data).
    pub max_preview_frames: u32,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            preview_max_side: 1024,
            thumbnail_max_side: 256,
            max_preview_frames: 1000,
        }
    }
}

/// Errors of rendering, classified by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    /// The pixel data cannot be decoded (unsupported, damaged, no such frame).
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Bad rendering parameters, or encoding the image failed.
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    /// The study or series has nothing to show (no instance with pixel data).
    #[error("{0}")]
    NoImage(String),
    #[error("object storage failed")]
    Store(#[from] StoreError),
    #[error("render task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// A rendered or transcoded result with its strong ETag.
#[derive(Debug, Clone)]
pub struct Output {
    pub bytes: Bytes,
    pub etag: String,
}

/// The render service. Cheap to clone.
#[derive(Clone)]
pub struct Render {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    retrieve: Retrieve,
    index: Arc<dyn Index>,
    config: RenderConfig,
    /// Rendered images and transcoded instances/frames, by request key:
    /// `{kind}:{sha256}[:{more}]`, so [`Render::forget_cached`] finds an
    /// instance's entries by the second field.
    results: moka::sync::Cache<String, Bytes>,
    /// Parsed data set before the Pixel Data, by instance SHA-256.
    headers: moka::sync::Cache<String, Arc<DicomFile>>,
}

fn etag_of(key: &str) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(key.as_bytes())[..16]))
}

impl Render {
    pub fn new(store: Store, index: Arc<dyn Index>, config: RenderConfig) -> Self {
        let results = moka::sync::Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(|k: &String, v: &Bytes| u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX))
            .support_invalidation_closures()
            .build();
        let headers = moka::sync::Cache::builder().max_capacity(4096).build();
        Self {
            inner: Arc::new(Inner {
                retrieve: Retrieve::new(store.clone(), index.clone()),
                store,
                index,
                config,
                results,
                headers,
            }),
        }
    }

    /// Longer side of the stored thumbnails.
    pub fn thumbnail_side(&self) -> u32 {
        self.inner.config.thumbnail_max_side
    }

    /// Frame `frame` (1-based) of an instance rendered as `params` asks. Small
    /// viewports are answered from the stored preview when there is one.
    pub async fn rendered_frame(
        &self,
        inst: &StoredInstance,
        frame: u32,
        params: &RenderParams,
    ) -> Result<Output, RenderError> {
        let key = format!("rendered:{}:{frame}:{params:?}", inst.sha256);
        self.cached(key, async {
            if let Some(bytes) = self.try_preview(inst, frame, params).await? {
                return Ok(bytes);
            }
            let (frame, meta) = self.frame_pixels(inst, frame).await?;
            let params = params.clone();
            blocking(move || Ok(Bytes::from(pipeline::render(&frame, &meta, &params)?))).await
        })
        .await
    }

    /// The instance's stored thumbnail as JPEG, made now (and stored) when the
    /// background work has not made it yet.
    pub async fn thumbnail(&self, inst: &StoredInstance) -> Result<Output, RenderError> {
        let key = derived::thumbnail_key(&inst.sha256);
        let etag = etag_of(&key);
        match self.inner.store.get(&key).await {
            Ok(bytes) => return Ok(Output { bytes, etag }),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let bytes = self.derive(inst).await?;
        Ok(Output { bytes, etag })
    }

    /// The instance to show for a study or series: the first (in series number,
    /// instance number order) that has pixel data.
    pub async fn representative(&self, scope: &Scope) -> Result<StoredInstance, RenderError> {
        let instances = self.inner.retrieve.instances(scope).await?;
        instances
            .into_iter()
            .find(has_pixels)
            .ok_or_else(|| RenderError::NoImage(format!("{} has no image", describe(scope))))
    }

    /// Makes and stores the previews and the thumbnail of an instance unless they
    /// exist; returns the thumbnail.
    pub async fn derive(&self, inst: &StoredInstance) -> Result<Bytes, RenderError> {
        let thumb_key = derived::thumbnail_key(&inst.sha256);
        match self.inner.store.get(&thumb_key).await {
            Ok(bytes) => return Ok(bytes),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let count = self.frame_count(inst).await?;
        if count == 0 {
            return Err(RenderError::Decode(DecodeError::NoSuchFrame(format!(
                "instance {} has no pixel data",
                inst.sop_instance_uid
            ))));
        }
        let max_side = self.inner.config.preview_max_side;
        let mut first: Option<(Frame, ImageMeta)> = None;
        for n in 1..=count.min(self.inner.config.max_preview_frames) {
            let (full, meta) = self.frame_pixels(inst, n).await?;
            let (preview, meta, blob) = blocking(move || {
                let small = pipeline::downsample(&full, max_side);
                let mut meta = meta;
                // The window is chosen on the full frame once, so that previews,
                // thumbnails and full renders look alike.
                meta.auto_window = pipeline::auto_window(&full, &meta);
                let blob = derived::encode_preview(&small, &meta).map_err(|e| {
                    PipelineError::Invalid(format!("preview cannot be written: {e}"))
                })?;
                Ok((small, meta, blob))
            })
            .await?;
            self.inner
                .store
                .put(&derived::preview_key(&inst.sha256, n), Bytes::from(blob))
                .await?;
            if first.is_none() {
                first = Some((preview, meta));
            }
        }
        let (preview, meta) = first.expect("count >= 1 frames were made");
        let side = self.inner.config.thumbnail_max_side;
        let thumb = blocking(move || {
            Ok(Bytes::from(pipeline::render(
                &preview,
                &meta,
                &RenderParams {
                    window: None,
                    viewport: Some(Viewport {
                        width: side,
                        height: side,
                        region: None,
                    }),
                    quality: Some(85),
                    format: OutputFormat::Jpeg,
                },
            )?))
        })
        .await?;
        self.inner.store.put(&thumb_key, thumb.clone()).await?;
        // A delete that committed while this ran removed the derived objects
        // it found; whatever was written after would outlive the instance.
        // Looking again once everything is written closes that window.
        if !self.still_stored(inst).await? {
            self.delete_derived(&inst.sha256).await?;
            return Err(RenderError::NoImage(format!(
                "instance {} was deleted",
                inst.sop_instance_uid
            )));
        }
        Ok(thumb)
    }

    /// Removes the previews and the thumbnail of an instance version (its
    /// SHA-256) from the store; returns how many objects went. For deleted
    /// instances, once their index rows are gone.
    pub async fn delete_derived(&self, sha256: &str) -> Result<usize, StoreError> {
        self.inner
            .store
            .delete_prefix(&derived::derived_prefix(sha256))
            .await
    }

    /// Drops what memory holds of deleted instance versions (rendered and
    /// transcoded results, parsed headers). Requests cannot reach them once
    /// the rows are gone, but the pixels of a deleted study should not stay
    /// in memory, nor take cache room from live studies.
    pub fn forget_cached(&self, sha256s: &[String]) {
        if sha256s.is_empty() {
            return;
        }
        for sha in sha256s {
            self.inner.headers.invalidate(sha);
        }
        let gone: std::collections::HashSet<String> = sha256s.iter().cloned().collect();
        let predicate = move |key: &String, _: &Bytes| {
            key.split(':').nth(1).is_some_and(|sha| gone.contains(sha))
        };
        if let Err(e) = self.inner.results.invalidate_entries_if(predicate) {
            // Only if the cache was built without invalidation closures.
            tracing::warn!(error = %e, "rendered results of deleted instances stay cached until evicted");
        }
    }

    /// Whether this version of the instance is still the current one.
    async fn still_stored(&self, inst: &StoredInstance) -> Result<bool, RenderError> {
        let scope = Scope {
            study: Some(inst.study_instance_uid.clone()),
            series: Some(inst.series_instance_uid.clone()),
            instance: Some(inst.sop_instance_uid.clone()),
        };
        let current = self
            .inner
            .index
            .instances(&scope)
            .await
            .map_err(RetrieveError::from)?;
        Ok(current.iter().any(|i| i.sha256 == inst.sha256))
    }

    /// The whole instance with its pixel data decompressed, as Explicit VR Little
    /// Endian (WADO-RS transcoding of compressed instances).
    pub async fn decompressed_instance(
        &self,
        inst: &StoredInstance,
    ) -> Result<Output, RenderError> {
        let key = format!("decompressed:{}", inst.sha256);
        self.cached(key, async {
            let original = self.inner.retrieve.original_bytes(inst).await?;
            blocking(move || {
                let obj = OpenFileOptions::new()
                    .from_reader(&original[..])
                    .map_err(|e| DecodeError::Corrupt(format!("instance does not parse: {e}")))?;
                let out = decode::to_explicit_le(obj)?;
                let mut bytes = Vec::with_capacity(original.len() * 2);
                out.write_all(&mut bytes).map_err(|e| {
                    DecodeError::Corrupt(format!("transcoded instance does not encode: {e}"))
                })?;
                Ok(Bytes::from(bytes))
            })
            .await
        })
        .await
    }

    /// Frames (1-based) decoded to native Explicit VR Little Endian pixel bytes
    /// (WADO-RS frames asked as `application/octet-stream` from a compressed
    /// instance).
    pub async fn decompressed_frame(
        &self,
        inst: &StoredInstance,
        frame: u32,
    ) -> Result<Output, RenderError> {
        let key = format!("decompressed-frame:{}:{frame}", inst.sha256);
        self.cached(key, async {
            let (obj, _) = self.frame_object(inst, frame).await?;
            blocking(move || {
                let native = decode::to_explicit_le(obj)?;
                let pixels = native
                    .element(tags::PIXEL_DATA)
                    .ok()
                    .and_then(|e| e.to_bytes().ok())
                    .ok_or_else(|| DecodeError::Corrupt("no pixel data after decoding".into()))?;
                Ok(Bytes::copy_from_slice(&pixels))
            })
            .await
        })
        .await
    }

    /// Starts the background worker that derives previews and thumbnails of
    /// newly stored instances; ingest sends it the scope of each instance it
    /// stored. A full queue drops work (the first request makes it instead).
    pub fn spawn_worker(&self) -> tokio::sync::mpsc::Sender<Scope> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Scope>(4096);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(scope) = rx.recv().await {
                let found = match this.inner.index.instances(&scope).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(error = %e, "derive: index lookup failed");
                        continue;
                    }
                };
                for inst in found.iter().filter(|i| has_pixels(i)) {
                    match this.derive(inst).await {
                        Ok(_) => {}
                        // Deleted meanwhile (the only `NoImage` of `derive`):
                        // nothing is missing.
                        Err(RenderError::NoImage(_)) => {}
                        Err(e) => tracing::warn!(
                            sop_instance_uid = %inst.sop_instance_uid,
                            error = %e,
                            "no preview or thumbnail for this instance"
                        ),
                    }
                }
            }
        });
        tx
    }

    async fn cached(
        &self,
        key: String,
        make: impl Future<Output = Result<Bytes, RenderError>>,
    ) -> Result<Output, RenderError> {
        let etag = etag_of(&key);
        if let Some(bytes) = self.inner.results.get(&key) {
            return Ok(Output { bytes, etag });
        }
        let bytes = make.await?;
        self.inner.results.insert(key, bytes.clone());
        Ok(Output { bytes, etag })
    }

    /// Renders from the stored preview when it has enough pixels for the
    /// viewport asked (no region, output no larger than the preview).
    async fn try_preview(
        &self,
        inst: &StoredInstance,
        frame: u32,
        params: &RenderParams,
    ) -> Result<Option<Bytes>, RenderError> {
        let Some(Viewport {
            width: vw,
            height: vh,
            region: None,
        }) = params.viewport
        else {
            return Ok(None);
        };
        let blob = match self
            .inner
            .store
            .get(&derived::preview_key(&inst.sha256, frame))
            .await
        {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let params = params.clone();
        let sop = inst.sop_instance_uid.clone();
        blocking(move || {
            let (preview, meta) = match derived::decode_preview(&blob) {
                Ok(p) => p,
                Err(reason) => {
                    tracing::warn!(sop_instance_uid = %sop, reason, "stored preview unreadable; rendering from the full frame");
                    return Ok(None);
                }
            };
            // The size the full frame is scaled to (up or down, PS3.18 viewport
            // semantics); the preview serves when it has at least that many
            // pixels, or when it is the full frame itself.
            let (w, h) = (f64::from(meta.columns.max(1)), f64::from(meta.rows.max(1)));
            let scale = (f64::from(vw) / w).min(f64::from(vh) / h);
            let fits = preview.width == meta.columns
                || ((w * scale).round() <= f64::from(preview.width)
                    && (h * scale).round() <= f64::from(preview.height));
            if !fits {
                return Ok(None);
            }
            Ok(Some(Bytes::from(pipeline::render(&preview, &meta, &params)?)))
        })
        .await
    }

    /// Number of frames of an instance (0: no pixel data). The container's
    /// table answers unless it could not tell frames apart (1-bit data,
    /// fragments that are not one per frame); then the whole object is read.
    async fn frame_count(&self, inst: &StoredInstance) -> Result<u32, RenderError> {
        let index = container_index(inst)?;
        if index.frame_count() > 0 {
            return Ok(index.frame_count());
        }
        Ok(decode::frame_count(&self.whole_object(inst).await?))
    }

    /// The whole instance, parsed.
    async fn whole_object(&self, inst: &StoredInstance) -> Result<DicomFile, RenderError> {
        let original = self.inner.retrieve.original_bytes(inst).await?;
        blocking(move || {
            OpenFileOptions::new()
                .from_reader(&original[..])
                .map_err(|e| {
                    RenderError::Decode(DecodeError::Corrupt(format!(
                        "instance does not parse: {e}"
                    )))
                })
        })
        .await
    }

    /// The decoded pixels of a 1-based frame, with the metadata to render them.
    async fn frame_pixels(
        &self,
        inst: &StoredInstance,
        frame: u32,
    ) -> Result<(Frame, ImageMeta), RenderError> {
        let (obj, at) = self.frame_object(inst, frame).await?;
        blocking(move || {
            let mut obj = obj;
            flatten_functional_groups(&mut obj, at);
            let meta = ImageMeta::from_object(&obj);
            let decoded = decode::decode_frame(&obj, at)?;
            Ok((decoded, meta))
        })
        .await
    }

    /// A DICOM object holding the given frame, and the frame's 0-based index in
    /// it. Where the container addresses frames, the object is the cached header
    /// plus that one frame's bytes (one ranged read, whatever the instance's
    /// size); otherwise it is the whole instance.
    async fn frame_object(
        &self,
        inst: &StoredInstance,
        frame: u32,
    ) -> Result<(DicomFile, u32), RenderError> {
        let index = container_index(inst)?;
        if index.frame_count() == 0 {
            let obj = self.whole_object(inst).await?;
            let count = decode::frame_count(&obj);
            if frame == 0 || frame > count {
                return Err(no_such_frame(inst, frame, count));
            }
            return Ok((obj, frame - 1));
        }
        if frame == 0 || frame > index.frame_count() {
            return Err(no_such_frame(inst, frame, index.frame_count()));
        }
        let header = self.header(inst, &index).await?;
        let data = self
            .inner
            .retrieve
            .frames(inst, &[frame])
            .await?
            .pop()
            .unwrap_or_default();
        let mut obj = (*header).clone();
        let encapsulated = !crate::retrieve::is_uncompressed(&inst.transfer_syntax_uid);
        let vr = obj
            .element(tags::PIXEL_DATA)
            .map(|e| e.vr())
            .unwrap_or(if encapsulated { VR::OB } else { VR::OW });
        let element = if encapsulated {
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PixelFragmentSequence::new(Vec::<u32>::new(), vec![data.to_vec()]),
            )
        } else {
            DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::from(data.to_vec()))
        };
        obj.put(element);
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("1"),
        ));
        Ok((obj, 0))
    }

    /// The data set before the Pixel Data, read once per instance from the
    /// container's leading segments.
    async fn header(
        &self,
        inst: &StoredInstance,
        index: &ContainerIndex,
    ) -> Result<Arc<DicomFile>, RenderError> {
        if let Some(h) = self.inner.headers.get(&inst.sha256) {
            return Ok(h);
        }
        let glue: Vec<container::Segment> = index
            .segments
            .iter()
            .take_while(|s| s.role == Role::Glue)
            .copied()
            .collect();
        let (Some(first), Some(last)) = (glue.first(), glue.last()) else {
            return Err(RenderError::Decode(DecodeError::NoSuchFrame(format!(
                "instance {} has no data before its first frame",
                inst.sop_instance_uid
            ))));
        };
        let range = first.stored_offset..last.stored_offset + last.stored_len;
        let stored = self
            .inner
            .store
            .get_range(&inst.object_key, range.clone())
            .await?;
        let key = inst.object_key.clone();
        let parsed = blocking(move || {
            let mut raw = Vec::new();
            for seg in &glue {
                let at = (seg.stored_offset - range.start) as usize;
                let bytes =
                    container::decode_segment(seg, &stored[at..at + seg.stored_len as usize])
                        .map_err(|source| RetrieveError::Damaged {
                            key: key.clone(),
                            source,
                        })?;
                raw.extend_from_slice(&bytes);
            }
            OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .from_reader(&raw[..])
                .map_err(|e| {
                    RenderError::Decode(DecodeError::Corrupt(format!(
                        "instance header does not parse: {e}"
                    )))
                })
        })
        .await?;
        let parsed = Arc::new(parsed);
        self.inner
            .headers
            .insert(inst.sha256.clone(), parsed.clone());
        Ok(parsed)
    }
}

/// Runs pixel work on the blocking pool, off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RenderError> + Send + 'static,
) -> Result<T, RenderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(RenderError::Task)?
}

fn container_index(inst: &StoredInstance) -> Result<ContainerIndex, RenderError> {
    ContainerIndex::from_bytes(&inst.container_index).map_err(|source| {
        RenderError::Retrieve(RetrieveError::Damaged {
            key: inst.object_key.clone(),
            source,
        })
    })
}

/// Whether an instance has pixel data, from its container table alone.
fn has_pixels(inst: &StoredInstance) -> bool {
    inst.number_of_frames.is_some()
        || ContainerIndex::from_bytes(&inst.container_index)
            .map(|i| i.frame_count() > 0)
            .unwrap_or(false)
}

fn no_such_frame(inst: &StoredInstance, frame: u32, count: u32) -> RenderError {
    RenderError::Decode(DecodeError::NoSuchFrame(format!(
        "frame {frame} of instance {} (it has {count})",
        inst.sop_instance_uid
    )))
}

fn describe(scope: &Scope) -> String {
    match (&scope.series, &scope.study) {
        (Some(s), _) => format!("series {s}"),
        (None, Some(s)) => format!("study {s}"),
        _ => "the resource".to_owned(),
    }
}

/// Enhanced multi-frame objects keep rescale and window per frame in functional
/// groups (PS3.3 C.7.6.16); copies those of frame `at` (0-based; per-frame over
/// shared) to the top level where the pipeline reads them, unless already there.
fn flatten_functional_groups(obj: &mut DicomFile, at: u32) {
    const GROUPS: [(Tag, &[Tag]); 2] = [
        (
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            &[
                tags::RESCALE_INTERCEPT,
                tags::RESCALE_SLOPE,
                tags::RESCALE_TYPE,
            ],
        ),
        (
            tags::FRAME_VOILUT_SEQUENCE,
            &[
                tags::WINDOW_CENTER,
                tags::WINDOW_WIDTH,
                tags::VOILUT_FUNCTION,
            ],
        ),
    ];
    let item_of = |seq: Tag, idx: Option<usize>, obj: &DicomFile| {
        let groups = obj.element(seq).ok()?.items()?;
        let group = match idx {
            Some(i) => groups.get(i)?,
            None => groups.first()?,
        };
        Some(group.clone())
    };
    let per_frame = item_of(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        Some(at as usize),
        obj,
    );
    let shared = item_of(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, None, obj);
    for (macro_seq, attrs) in GROUPS {
        for &tag in attrs {
            if obj.element(tag).is_ok() {
                continue;
            }
            let found = [per_frame.as_ref(), shared.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|group| {
                    let item = group.element(macro_seq).ok()?.items()?.first()?.clone();
                    item.element(tag).ok().cloned()
                });
            if let Some(e) = found {
                obj.put(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ConflictPolicy;
    use crate::index::sqlite::SqliteIndex;
    use crate::ingest::Ingest;

    /// A render service over an in-memory store and index holding one
    /// generated radiograph.
    async fn one_instance() -> (Render, Store, Arc<dyn Index>, StoredInstance) {
        let store = Store::from_object_store(Arc::new(object_store::memory::InMemory::new()));
        let index: Arc<dyn Index> = Arc::new(SqliteIndex::open("sqlite::memory:").await.unwrap());
        let ingest = Ingest::new(
            store.clone(),
            index.clone(),
            ConflictPolicy::Reject,
            1 << 30,
        );
        let generated = aina_sample::demo_set(&aina_sample::Options {
            seed: 3,
            scale: 0.05,
        })
        .swap_remove(0);
        ingest
            .ingest(ingest.slot().await, Bytes::from(generated.bytes), None)
            .await
            .unwrap();
        let scope = Scope {
            study: Some(generated.study_instance_uid),
            ..Scope::default()
        };
        let inst = index.instances(&scope).await.unwrap().remove(0);
        let render = Render::new(store.clone(), index.clone(), RenderConfig::default());
        (render, store, index, inst)
    }

    fn study_of(inst: &StoredInstance) -> Scope {
        Scope {
            study: Some(inst.study_instance_uid.clone()),
            ..Scope::default()
        }
    }

    #[tokio::test]
    async fn derived_objects_of_a_deleted_instance_do_not_survive_a_late_derive() {
        let (render, store, index, inst) = one_instance().await;
        // Live: derive stores a preview and the thumbnail, and they can go.
        render.derive(&inst).await.unwrap();
        assert!(
            store
                .size(&derived::thumbnail_key(&inst.sha256))
                .await
                .is_ok()
        );
        assert_eq!(render.delete_derived(&inst.sha256).await.unwrap(), 2);

        // The rows go (a DELETE committing) while a derive of the instance is
        // under way: the object is still readable, the derive completes its
        // writes, then sees the instance gone and takes them back.
        assert_eq!(
            index.delete(&study_of(&inst)).await.unwrap().objects.len(),
            1
        );
        let err = render.derive(&inst).await.unwrap_err();
        assert!(matches!(err, RenderError::NoImage(_)), "{err}");
        assert_eq!(
            store
                .delete_prefix(&derived::derived_prefix(&inst.sha256))
                .await
                .unwrap(),
            0,
            "nothing derived outlives the instance"
        );
    }

    #[tokio::test]
    async fn forgetting_an_instance_drops_its_cached_results_only() {
        let (render, _store, _index, inst) = one_instance().await;
        render
            .rendered_frame(&inst, 1, &RenderParams::default())
            .await
            .unwrap();
        render.decompressed_instance(&inst).await.unwrap();
        let cache = &render.inner.results;
        let decompressed = format!("decompressed:{}", inst.sha256);
        assert!(cache.contains_key(&decompressed));
        assert!(render.inner.headers.contains_key(&inst.sha256));
        let other = "rendered:0123abcd:1:params".to_owned();
        cache.insert(other.clone(), Bytes::from_static(b"other"));

        render.forget_cached(std::slice::from_ref(&inst.sha256));
        assert!(cache.get(&decompressed).is_none());
        assert!(
            cache.iter().all(|(k, _)| !k.contains(&inst.sha256)),
            "no rendered result of the instance is served from memory"
        );
        assert!(!render.inner.headers.contains_key(&inst.sha256));
        assert_eq!(cache.get(&other), Some(Bytes::from_static(b"other")));
    }
}
