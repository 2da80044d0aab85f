//! Ingest: the one path every instance takes in, whatever the entry point
//! (STOW-RS, C-STORE, `aina import`).
//!
//! 1. Parse and validate ([`layout`] finds the byte layout, dicom-object the
//!    attributes); refuse with a precise reason.
//! 2. Hash the original bytes (SHA-256) and pack them into the instance container.
//! 3. Write the object (durable), then the index row in one transaction.
//!
//! Success is answered only after both are durable. A crash between 3a and 3b
//! leaves an orphan object, which `aina verify` lists and `--repair` indexes; never a
//! row without its object. What is left out: the transfer to and from the network.

pub mod layout;

use std::sync::Arc;

use bytes::Bytes;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::index::{
    ConflictPolicy, Index, IndexError, InsertOutcome, InstanceRecord, Scope, SeriesAttrs,
    StudyAttrs,
};
use crate::store::container::{self, ContainerError, ContainerOptions};
use crate::store::{Store, StoreError};
use layout::{LayoutError, PixelLayout};

/// Stored metadata JSON carries BulkDataURIs relative to this marker; the HTTP
/// layer swaps it for the public DICOMweb root when serving (the host is not known
/// at ingest).
pub const BULK_BASE_MARKER: &str = "aina-base:";

/// Binary values longer than this become BulkDataURIs in the metadata.
const INLINE_BINARY_LIMIT: usize = 1024;

/// Why an instance was refused. Each variant names the step that failed; the
/// message is what the sender sees (DICOMweb FailureReason detail, DIMSE error
/// comment), so it says what is wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Not a PS3.10 file, or its bytes end early or are malformed.
    #[error("{0}")]
    Layout(#[source] LayoutError),
    /// dicom-object could not read the data set.
    #[error("cannot parse the data set: {0}")]
    Parse(#[source] dicom_object::ReadError),
    /// A required attribute is missing or empty.
    #[error("required attribute {0} is missing or empty")]
    MissingAttribute(&'static str),
    /// A UID attribute is not a valid UID.
    #[error("attribute {name} is not a valid UID: {value:?}")]
    InvalidUid { name: &'static str, value: String },
    /// The transfer syntax is not one this archive knows.
    #[error("unknown transfer syntax {0:?}")]
    UnknownTransferSyntax(String),
    /// STOW-RS to `/studies/{study}` with an instance of another study.
    #[error("instance belongs to study {found}, not to the study {expected} of the request")]
    StudyMismatch { expected: String, found: String },
    /// Larger than the configured maximum instance size.
    #[error("instance of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// Different bytes are already stored under this SOP Instance UID and the
    /// conflict policy is `reject`.
    #[error(
        "SOP Instance UID already stored with different content (sha256 {existing_sha256}); conflict policy is reject"
    )]
    Conflict { existing_sha256: String },
    /// Packing into the container failed.
    #[error("cannot pack the instance")]
    Container(#[source] ContainerError),
    /// Building the metadata JSON failed.
    #[error("cannot build DICOM JSON metadata")]
    Json(#[source] aina_dicomweb::json::JsonError),
    /// The object store failed: nothing was indexed.
    #[error("object storage failed")]
    Store(#[source] StoreError),
    /// The index failed after the object was written: the object is an orphan for
    /// `aina verify` to find.
    #[error("index failed")]
    Index(#[source] IndexError),
    /// The blocking task panicked or was cancelled.
    #[error("ingest task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl IngestError {
    /// Whether the sender is at fault (bad input) rather than the archive.
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            IngestError::Store(_)
                | IngestError::Index(_)
                | IngestError::Task(_)
                | IngestError::Container(_)
                | IngestError::Json(_)
        )
    }
}

/// A refused instance, with its UIDs where they could be read.
#[derive(Debug)]
pub struct Refused {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// Boxed: refusals are the rare path, and the error is large.
    pub error: Box<IngestError>,
}

/// How a stored instance went in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// New instance.
    Stored,
    /// The same bytes were already stored.
    AlreadyStored,
    /// Different bytes under the same UID; the previous version kept as superseded.
    KeptBothVersions { previous_sha256: String },
    /// Different bytes under the same UID; the previous version's row replaced.
    Replaced,
}

/// A stored instance.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sha256: String,
    pub disposition: Disposition,
    /// Something the sender should know (stored anyway).
    pub warning: Option<String>,
}

/// Why a deleted version's object could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Index(IndexError),
    #[error(transparent)]
    Store(StoreError),
}

/// Removes the object of a deleted or replaced instance version, unless that
/// version has been stored again since (its key is then no longer recorded as
/// deleted): a clean-up running late — a large study's delete on S3 takes
/// minutes — must not take away what a modality has just sent again. Whether
/// it removed the object.
///
/// What this cannot close: a store of the same version whose object write
/// lands between the check and the removal, and whose index row commits after
/// it; its row then points at nothing, and `aina verify` reports it missing.
pub async fn remove_deleted_object(
    index: &dyn Index,
    store: &Store,
    key: &str,
) -> Result<bool, RemoveError> {
    if !index.was_deleted(key).await.map_err(RemoveError::Index)? {
        return Ok(false);
    }
    store.delete(key).await.map_err(RemoveError::Store)?;
    Ok(true)
}

/// The ingest service shared by every entry point.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    index: Arc<dyn Index>,
    policy: ConflictPolicy,
    container: ContainerOptions,
    max_instance_bytes: u64,
    slots: Arc<tokio::sync::Semaphore>,
    /// Where newly stored instances are announced for background work
    /// (previews and thumbnails); see [`Ingest::with_derive_queue`].
    derive: Option<tokio::sync::mpsc::Sender<Scope>>,
}

/// Permission to hold one instance in memory and ingest it; see [`Ingest::slot`].
/// Released when dropped.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Ingest {
    pub fn new(
        store: Store,
        index: Arc<dyn Index>,
        policy: ConflictPolicy,
        max_instance_bytes: u64,
    ) -> Self {
        // Ingest is CPU-bound: two instances per core keep every core busy while
        // one waits on the disk, and more would only hold more memory.
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Self {
            store,
            index,
            policy,
            container: ContainerOptions::default(),
            max_instance_bytes,
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            derive: None,
        }
    }

    /// Announces each newly stored instance on `queue` once it is acknowledged
    /// (never waiting: a full queue drops the announcement, and the work is then
    /// done on first request).
    pub fn with_derive_queue(mut self, queue: tokio::sync::mpsc::Sender<Scope>) -> Self {
        self.derive = Some(queue);
        self
    }

    /// Waits for a free ingest slot. Take it *before* reading an instance into
    /// memory: the slots bound how many instances the whole server holds at once,
    /// whatever the number of clients (the others wait, with TCP backpressure).
    pub async fn slot(&self) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the ingest semaphore is never closed");
        Slot { _permit: permit }
    }

    /// The largest instance accepted.
    pub fn max_instance_bytes(&self) -> u64 {
        self.max_instance_bytes
    }

    /// Ingests one PS3.10 file. `expected_study` is the study of a
    /// `POST /studies/{study}` request.
    #[tracing::instrument(skip_all, fields(size = bytes.len()))]
    pub async fn ingest(
        &self,
        _slot: Slot,
        bytes: Bytes,
        expected_study: Option<&str>,
    ) -> Result<Accepted, Refused> {
        let size = bytes.len() as u64;
        if size > self.max_instance_bytes {
            return Err(Refused {
                sop_class_uid: None,
                sop_instance_uid: None,
                error: Box::new(IngestError::TooLarge {
                    size,
                    max: self.max_instance_bytes,
                }),
            });
        }
        let opts = self.container.clone();
        let expected = expected_study.map(str::to_owned);
        let prepared = tokio::task::spawn_blocking(move || prepare(&bytes, expected, &opts))
            .await
            .map_err(|e| Refused {
                sop_class_uid: None,
                sop_instance_uid: None,
                error: Box::new(IngestError::Task(e)),
            })??;
        let Prepared {
            record,
            object,
            warning,
        } = prepared;
        let refused = |error| Refused {
            sop_class_uid: Some(record.sop_class_uid.clone()),
            sop_instance_uid: Some(record.sop_instance_uid.clone()),
            error: Box::new(error),
        };
        self.store
            .put(&record.object_key, object)
            .await
            .map_err(|e| refused(IngestError::Store(e)))?;
        let outcome = self
            .index
            .insert_instance(&record, self.policy)
            .await
            .map_err(|e| refused(IngestError::Index(e)))?;
        let disposition = match outcome {
            InsertOutcome::Inserted => Disposition::Stored,
            InsertOutcome::AlreadyPresent => Disposition::AlreadyStored,
            InsertOutcome::ConflictKeptBoth { previous_sha256 } => {
                Disposition::KeptBothVersions { previous_sha256 }
            }
            InsertOutcome::ConflictReplaced {
                previous_object_key,
            } => {
                tracing::warn!(
                    sop_instance_uid = %record.sop_instance_uid,
                    previous_object_key,
                    "instance replaced by different content"
                );
                // The index already counts it deleted: a failure here leaves a
                // leftover that `aina verify --repair` removes.
                if let Err(e) =
                    remove_deleted_object(&*self.index, &self.store, &previous_object_key).await
                {
                    tracing::warn!(error = %e, key = previous_object_key, "replaced object not removed; a leftover for aina verify --repair");
                }
                Disposition::Replaced
            }
            InsertOutcome::ConflictRejected { existing_sha256 } => {
                // The object we wrote is a different version under its own key; it
                // is not indexed, so remove it rather than leave an orphan.
                if let Err(e) = self.store.delete(&record.object_key).await {
                    tracing::warn!(error = %e, key = record.object_key, "cannot remove refused object");
                }
                return Err(refused(IngestError::Conflict { existing_sha256 }));
            }
        };
        tracing::info!(
            sop_instance_uid = %record.sop_instance_uid,
            stored_bytes = record.stored_bytes,
            ?disposition,
            "instance ingested"
        );
        if let Some(queue) = &self.derive
            && disposition != Disposition::AlreadyStored
        {
            let scope = Scope {
                study: Some(record.study_instance_uid.clone()),
                series: Some(record.series_instance_uid.clone()),
                instance: Some(record.sop_instance_uid.clone()),
            };
            if queue.try_send(scope).is_err() {
                tracing::debug!(sop_instance_uid = %record.sop_instance_uid, "derive queue full; previews will be made on first request");
            }
        }
        Ok(Accepted {
            sop_class_uid: record.sop_class_uid,
            sop_instance_uid: record.sop_instance_uid,
            study_instance_uid: record.study_instance_uid,
            series_instance_uid: record.series_instance_uid,
            sha256: record.sha256,
            disposition,
            warning,
        })
    }

    /// Ingests a data set received over DIMSE (C-STORE, PS3.7 §9.1.1). The PS3.10
    /// file is built around the data set's bytes as they arrived: File Meta
    /// Information (PS3.10 §7.1) with the presentation context's transfer syntax,
    /// the command's SOP class and instance, our AE title as
    /// SourceApplicationEntityTitle and the caller's as
    /// SendingApplicationEntityTitle. That file is the original from then on
    /// (what C-GET and `transfer-syntax=*` return). `slot` was taken before the
    /// data set was received (see [`Ingest::slot`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn ingest_dimse(
        &self,
        slot: Slot,
        data_set: Vec<u8>,
        transfer_syntax_uid: &str,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        source_ae_title: &str,
        sending_ae_title: &str,
    ) -> Result<Accepted, Refused> {
        let refused = |error| Refused {
            sop_class_uid: Some(sop_class_uid.to_owned()),
            sop_instance_uid: Some(sop_instance_uid.to_owned()),
            error: Box::new(error),
        };
        for (name, value) in [
            ("AffectedSOPClassUID", sop_class_uid),
            ("AffectedSOPInstanceUID", sop_instance_uid),
        ] {
            if !is_valid_uid(value) {
                return Err(refused(IngestError::InvalidUid {
                    name,
                    value: value.to_owned(),
                }));
            }
        }
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax_uid)
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .source_application_entity_title(source_ae_title)
            .sending_application_entity_title(sending_ae_title)
            .build();
        let mut file = Vec::with_capacity(data_set.len() + 512);
        file.extend_from_slice(&[0; 128]);
        file.extend_from_slice(b"DICM");
        // The builder only fails without a transfer syntax, which is always given,
        // and writing valid UIDs into memory does not fail; still, no panic.
        if meta.is_err() || meta.is_ok_and(|m| m.write(&mut file).is_err()) {
            return Err(refused(IngestError::MissingAttribute(
                "File Meta Information",
            )));
        }
        file.extend_from_slice(&data_set);
        drop(data_set);
        self.ingest(slot, Bytes::from(file), None).await
    }
}

/// An instance ready to be written: its container object and its index row.
pub struct Prepared {
    pub record: InstanceRecord,
    pub object: Bytes,
    /// Something the sender should know although the instance is fine to store.
    pub warning: Option<String>,
}

/// The CPU-bound part of ingest (runs on a blocking thread): parse, validate,
/// hash, pack, describe.
pub fn prepare(
    bytes: &[u8],
    expected_study: Option<String>,
    opts: &ContainerOptions,
) -> Result<Prepared, Refused> {
    let bare = |error| Refused {
        sop_class_uid: None,
        sop_instance_uid: None,
        error: Box::new(error),
    };
    let layout = layout::locate(bytes).map_err(|e| bare(IngestError::Layout(e)))?;
    let ts_uid = layout.transfer_syntax_uid.clone();
    if TransferSyntaxRegistry.get(&ts_uid).is_none() {
        return Err(bare(IngestError::UnknownTransferSyntax(ts_uid)));
    }
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(bytes)
        .map_err(|e| bare(IngestError::Parse(e)))?;

    let sop_class_uid = uid(&obj, tags::SOP_CLASS_UID, "SOPClassUID").map_err(bare)?;
    let sop_instance_uid = uid(&obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID").map_err(bare)?;
    let refused = |error| Refused {
        sop_class_uid: Some(sop_class_uid.clone()),
        sop_instance_uid: Some(sop_instance_uid.clone()),
        error: Box::new(error),
    };
    let study = uid(&obj, tags::STUDY_INSTANCE_UID, "StudyInstanceUID").map_err(refused)?;
    let series = uid(&obj, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID").map_err(refused)?;
    // Some writers leave a stale MediaStorageSOPInstanceUID in the File Meta
    // Information. The data set is what the instance is, so it is indexed under the
    // data set's UID, kept byte for byte, and the sender is warned.
    let meta_sop = obj.meta().media_storage_sop_instance_uid();
    let meta_sop = meta_sop.trim_end_matches(['\0', ' ']);
    let warning = (meta_sop != sop_instance_uid).then(|| {
        format!(
            "File Meta Information MediaStorageSOPInstanceUID {meta_sop:?} differs from the data set's SOPInstanceUID; indexed under the data set's UID, stored unchanged"
        )
    });
    if let Some(expected) = expected_study
        && expected != study
    {
        return Err(refused(IngestError::StudyMismatch {
            expected,
            found: study,
        }));
    }

    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let sha256 = hex::encode(digest);
    let (object, index) = container::encode(bytes, &layout, digest, opts)
        .map_err(|e| refused(IngestError::Container(e)))?;

    let bulk_base = format!(
        "{BULK_BASE_MARKER}/studies/{study}/series/{series}/instances/{sop_instance_uid}/bulkdata"
    );
    let mut json = aina_dicomweb::json::to_dicom_json(&obj, &bulk_base, INLINE_BINARY_LIMIT)
        .map_err(|e| refused(IngestError::Json(e)))?;
    let Value::Object(map) = &mut json else {
        unreachable!("a data set serialises to a JSON object")
    };
    let pixel_vr = pixel_data_vr(bytes, &layout.pixel);
    add_pixel_data_and_syntax(map, pixel_vr, &bulk_base, &ts_uid);
    // Attributes in tag order, as in a data set (keys are 8-digit hex).
    map.sort_keys();

    let study_attrs = StudyAttrs {
        patient_name: text(&obj, tags::PATIENT_NAME),
        patient_id: text(&obj, tags::PATIENT_ID),
        issuer_of_patient_id: text(&obj, tags::ISSUER_OF_PATIENT_ID),
        patient_birth_date: text(&obj, tags::PATIENT_BIRTH_DATE),
        patient_sex: text(&obj, tags::PATIENT_SEX),
        study_date: text(&obj, tags::STUDY_DATE),
        study_time: text(&obj, tags::STUDY_TIME),
        accession_number: text(&obj, tags::ACCESSION_NUMBER),
        referring_physician_name: text(&obj, tags::REFERRING_PHYSICIAN_NAME),
        study_id: text(&obj, tags::STUDY_ID),
        study_description: text(&obj, tags::STUDY_DESCRIPTION),
        timezone_offset_from_utc: text(&obj, tags::TIMEZONE_OFFSET_FROM_UTC),
        attrs_json: pick(map, is_study_level),
    };
    let series_attrs = SeriesAttrs {
        modality: text(&obj, tags::MODALITY),
        series_number: int(&obj, tags::SERIES_NUMBER),
        series_description: text(&obj, tags::SERIES_DESCRIPTION),
        body_part_examined: text(&obj, tags::BODY_PART_EXAMINED),
        performed_procedure_step_start_date: text(&obj, tags::PERFORMED_PROCEDURE_STEP_START_DATE),
        performed_procedure_step_start_time: text(&obj, tags::PERFORMED_PROCEDURE_STEP_START_TIME),
        attrs_json: pick(map, |t| SERIES_LEVEL.contains(&t)),
    };
    let metadata_json = json.to_string();
    let record = InstanceRecord {
        object_key: Store::instance_key(&study, &series, &sop_instance_uid, &sha256),
        study_instance_uid: study,
        series_instance_uid: series,
        sop_instance_uid: sop_instance_uid.clone(),
        sop_class_uid: sop_class_uid.clone(),
        transfer_syntax_uid: ts_uid,
        instance_number: int(&obj, tags::INSTANCE_NUMBER),
        rows: int(&obj, tags::ROWS),
        columns: int(&obj, tags::COLUMNS),
        bits_allocated: int(&obj, tags::BITS_ALLOCATED),
        number_of_frames: int(&obj, tags::NUMBER_OF_FRAMES),
        sha256,
        size_bytes: bytes.len() as u64,
        stored_bytes: object.len() as u64,
        container_index: index.to_bytes(),
        metadata_json,
        study: study_attrs,
        series: series_attrs,
    };
    Ok(Prepared {
        record,
        object: Bytes::from(object),
        warning,
    })
}

/// The VR of the top-level Pixel Data, `None` when there is none.
fn pixel_data_vr(bytes: &[u8], pixel: &PixelLayout) -> Option<&'static str> {
    match pixel {
        PixelLayout::None => None,
        PixelLayout::Encapsulated { .. } => Some("OB"),
        PixelLayout::Native { bits_allocated, .. } if *bits_allocated > 8 => Some("OW"),
        PixelLayout::Native { .. } => Some("OB"),
        PixelLayout::Opaque { .. } => Some("OW"),
        // A deflated data set cannot be walked in place; such files are rare and
        // small, so read it whole to see whether it has Pixel Data.
        PixelLayout::Deflated => {
            let obj = OpenFileOptions::new().from_reader(bytes).ok()?;
            let e = obj.element_opt(tags::PIXEL_DATA).ok()??;
            Some(if e.vr() == dicom_core::VR::OB {
                "OB"
            } else {
                "OW"
            })
        }
    }
}

/// The metadata is read up to Pixel Data (not into memory twice), so its
/// BulkDataURI is added here; AvailableTransferSyntaxUID (0008,3002) tells web
/// clients such as OHIF how frames are encoded.
fn add_pixel_data_and_syntax(
    map: &mut Map<String, Value>,
    pixel_vr: Option<&str>,
    bulk_base: &str,
    ts_uid: &str,
) {
    if let Some(vr) = pixel_vr {
        map.insert(
            "7FE00010".to_owned(),
            serde_json::json!({ "vr": vr, "BulkDataURI": format!("{bulk_base}/7FE00010") }),
        );
    }
    // Implicit VR Little Endian is served over the web as Explicit VR Little Endian
    // (PS3.18 §8.7.3), so that is what is available.
    let available = if ts_uid == dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN {
        dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        ts_uid
    };
    map.insert(
        "00083002".to_owned(),
        serde_json::json!({ "vr": "UI", "Value": [available] }),
    );
}

/// A sub-object of the metadata with the tags `keep` selects, as JSON text.
fn pick(map: &Map<String, Value>, keep: impl Fn(Tag) -> bool) -> String {
    let picked: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| parse_tag_key(k).is_some_and(&keep))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(picked).to_string()
}

fn parse_tag_key(k: &str) -> Option<Tag> {
    let n = u32::from_str_radix(k, 16).ok()?;
    Some(Tag((n >> 16) as u16, n as u16))
}

/// Patient module (group 0010) plus the General Study and Patient Study modules'
/// study-level attributes (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2).
fn is_study_level(t: Tag) -> bool {
    t.group() == 0x0010 || STUDY_LEVEL.contains(&t)
}

const STUDY_LEVEL: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::REFERRING_PHYSICIAN_IDENTIFICATION_SEQUENCE,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::ISSUER_OF_ACCESSION_NUMBER_SEQUENCE,
    tags::STUDY_DESCRIPTION,
    tags::PHYSICIANS_OF_RECORD,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::REQUESTING_SERVICE,
    tags::PROCEDURE_CODE_SEQUENCE,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::INSTITUTION_NAME,
];

/// General Series and General Equipment modules (PS3.3 C.7.3.1, C.7.5.1).
const SERIES_LEVEL: &[Tag] = &[
    tags::SERIES_INSTANCE_UID,
    tags::MODALITY,
    tags::SERIES_NUMBER,
    tags::SERIES_DESCRIPTION,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::LATERALITY,
    tags::BODY_PART_EXAMINED,
    tags::PROTOCOL_NAME,
    tags::OPERATORS_NAME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::PERFORMED_PROCEDURE_STEP_ID,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
    tags::MANUFACTURER,
    tags::MANUFACTURER_MODEL_NAME,
    tags::STATION_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
];

/// A text attribute, trimmed, `None` when absent or empty. A value sent as UN
/// (explicit VR files whose writer did not know the VR) is read as the text its
/// bytes are. NUL, in no DICOM character repertoire and refused inside
/// PostgreSQL text, is dropped from these search columns (the stored DICOM JSON
/// keeps the value as sent), so every index backend stores the same thing.
fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    trimmed(obj, tag).map(|s| s.replace('\0', ""))
}

/// A text attribute with leading and trailing padding removed, as sent.
fn trimmed(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = if e.vr() == dicom_core::VR::UN {
        let bytes = e.to_bytes().ok()?;
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        e.to_str().ok()?.into_owned()
    };
    let s = s.trim_matches(['\0', ' ']);
    (!s.is_empty()).then(|| s.to_owned())
}

fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok()??.to_int::<i64>().ok()
}

fn uid(obj: &DefaultDicomObject, tag: Tag, name: &'static str) -> Result<String, IngestError> {
    // Not `text`: a NUL inside a UID makes it invalid, not another UID.
    let value = trimmed(obj, tag).ok_or(IngestError::MissingAttribute(name))?;
    if is_valid_uid(&value) {
        Ok(value)
    } else {
        Err(IngestError::InvalidUid { name, value })
    }
}

/// PS3.5 §9.1: digits and dots, at most 64 characters, no empty components.
/// Leading zeros are tolerated: real devices emit them and refusing their images
/// would lose data.
pub fn is_valid_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_syntax() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(is_valid_uid("2.25.329800735698586629295641978511506172918"));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2.a"));
        assert!(!is_valid_uid("../../etc/passwd"));
        assert!(!is_valid_uid(&"1".repeat(65)));
    }
}
