//! The metadata index: studies, series and instances with the attributes QIDO-RS
//! matches on and returns, and each instance's precomputed DICOM JSON.
//!
//! One trait, [`Index`], implemented once over SQL in [`sql`] and opened on
//! SQLite ([`sqlite`], the embedded default) or PostgreSQL ([`postgres`]).
//! Values are folded and normalised in Rust at ingest (see
//! [`aina_dicomweb::fold`]) so every dialect compares plain stored values.

pub mod migrate;
pub mod postgres;
pub(crate) mod query;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use aina_dicomweb::qido::QidoQuery;
use async_trait::async_trait;
use serde_json::{Map, Value};

/// Study-level attributes of an ingested instance (Patient and General Study modules).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyAttrs {
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub timezone_offset_from_utc: Option<String>,
    /// DICOM JSON object (PS3.18 Annex F) of every study- and patient-level attribute
    /// present in the instance; returned by QIDO at study level.
    pub attrs_json: String,
}

/// Series-level attributes of an ingested instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesAttrs {
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub performed_procedure_step_start_date: Option<String>,
    pub performed_procedure_step_start_time: Option<String>,
    /// DICOM JSON object of the series-level attributes present in the instance.
    pub attrs_json: String,
}

/// Everything the index keeps about one stored instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceRecord {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub number_of_frames: Option<i64>,
    /// SHA-256 of the original file bytes, lowercase hex.
    pub sha256: String,
    /// Size of the original file.
    pub size_bytes: u64,
    /// Size of the stored (compressed) object.
    pub stored_bytes: u64,
    /// Object key in the store.
    pub object_key: String,
    /// The container's segment table (see `store::container`), so a frame is one
    /// ranged read without reading the object's footer first.
    pub container_index: Vec<u8>,
    /// The instance's DICOM JSON with BulkDataURIs (see `ingest`), served as WADO-RS
    /// metadata verbatim.
    pub metadata_json: String,
    pub study: StudyAttrs,
    pub series: SeriesAttrs,
}

/// What to do when an instance arrives whose SOP Instance UID is already stored
/// with different bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Refuse the new instance; the stored one stays.
    #[default]
    Reject,
    /// Keep the stored one as a superseded version and serve the new one.
    KeepBoth,
    /// Serve the new one; the stored one's row is dropped and its object
    /// recorded as deleted (the ingest removes it; `aina verify --repair`
    /// removes it if that failed).
    Replace,
}

/// The outcome of [`Index::insert_instance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new instance.
    Inserted,
    /// The same bytes (same SHA-256) were already indexed: nothing changed.
    AlreadyPresent,
    /// Different bytes under an existing SOP Instance UID, refused by policy.
    ConflictRejected { existing_sha256: String },
    /// Different bytes stored; the previous version is kept, superseded.
    ConflictKeptBoth { previous_sha256: String },
    /// Different bytes stored; the previous version's row is gone and its object
    /// recorded as deleted; its key is returned for the caller to remove it.
    ConflictReplaced { previous_object_key: String },
}

/// The scope of a nested QIDO-RS or WADO-RS request (`/studies/{s}/series/{se}/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub study: Option<String>,
    pub series: Option<String>,
    pub instance: Option<String>,
}

/// One QIDO-RS result: a DICOM JSON object (keys are 8-digit uppercase hex tags).
/// RetrieveURL (0008,1190) is left to the HTTP layer, which knows the base URL.
pub type QidoRow = Map<String, Value>;

/// The answer of [`Index::search`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchOutcome {
    /// Matching entities, in the documented order, `limit`/`offset` applied.
    pub rows: Vec<QidoRow>,
    /// Matching keys the index cannot match on; they were ignored (not refused), so
    /// the HTTP layer sends `Warning: 299 aina "The following attributes are not
    /// supported for matching: …"` (PS3.18 §8.3.4.5).
    pub unsupported: Vec<dicom_core::Tag>,
}

/// A stored instance, as retrieval needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub object_key: String,
    pub container_index: Vec<u8>,
    pub number_of_frames: Option<i64>,
}

/// What [`Index::delete`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The patient of the study (for the audit log).
    pub patient_id: Option<String>,
    /// Current instances removed: (study, series, SOP instance) UIDs.
    pub instances: Vec<(String, String, String)>,
    /// Every removed row's object (current and superseded versions):
    /// (object key, SHA-256 hex), for the caller to delete with its derived
    /// objects once the rows are gone.
    pub objects: Vec<(String, String)>,
}

/// Errors of the index, classified by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The query asks for something the index cannot answer (bad key, bad value).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The database is unreachable or failed.
    #[error("index database error")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("index migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for IndexError {
    fn from(e: sqlx::Error) -> Self {
        IndexError::Database(e)
    }
}

/// The metadata index. Implementations must make [`Index::insert_instance`] one
/// transaction (instance row, series and study rows, counts, ModalitiesInStudy).
#[async_trait]
pub trait Index: Send + Sync + 'static {
    /// Inserts an instance whose object is already durable in the store.
    async fn insert_instance(
        &self,
        record: &InstanceRecord,
        policy: ConflictPolicy,
    ) -> Result<InsertOutcome, IndexError>;

    /// Inserts many instances in one transaction (bulk loads, benchmarks):
    /// the outcomes in order. A failure rolls the whole batch back.
    async fn insert_instances(
        &self,
        records: &[InstanceRecord],
        policy: ConflictPolicy,
    ) -> Result<Vec<InsertOutcome>, IndexError>;

    /// QIDO-RS search at `query.level` within `scope`, ordered stably (by the
    /// level's UID after its natural key: study date desc, series number, instance
    /// number), with `limit`/`offset` applied. Attributes returned: the level's
    /// defaults (PS3.18 Table 6.7.1-2), the matching keys and `query.include`.
    /// Keys the index cannot match on are ignored and listed in
    /// [`SearchOutcome::unsupported`].
    async fn search(&self, query: &QidoQuery, scope: &Scope) -> Result<SearchOutcome, IndexError>;

    /// Current (not superseded) instances within the scope, ordered by series
    /// number, instance number, SOP Instance UID. An empty scope is refused.
    async fn instances(&self, scope: &Scope) -> Result<Vec<StoredInstance>, IndexError>;

    /// Stored DICOM JSON of the current instances within the scope, same order as
    /// [`Index::instances`].
    async fn metadata(&self, scope: &Scope) -> Result<Vec<String>, IndexError>;

    /// Every indexed object (current and superseded): (object key, sha256 hex),
    /// for `aina verify`. Paged by `after` (last key of the previous page).
    async fn objects(
        &self,
        after: Option<&str>,
        page: u32,
    ) -> Result<Vec<(String, String)>, IndexError>;

    /// Removes the row of one object (used by `aina verify --repair` when its object
    /// is gone), keeping counts and ModalitiesInStudy right.
    async fn remove_object(&self, object_key: &str) -> Result<bool, IndexError>;

    /// Removes a study, a series of it, or an instance of that series (every
    /// version) in one transaction, keeping counts and ModalitiesInStudy
    /// right and dropping series and study rows left empty. Nothing matched:
    /// an empty [`Deleted`]. The scope must name the study.
    async fn delete(&self, scope: &Scope) -> Result<Deleted, IndexError>;

    /// Whether this object belonged to an instance that was deleted (and not
    /// stored again): `aina verify` removes such leftovers instead of
    /// indexing them as orphans.
    async fn was_deleted(&self, object_key: &str) -> Result<bool, IndexError>;

    /// Whether the database answers (readiness).
    async fn ping(&self) -> Result<(), IndexError>;
}
