//! The [`Index`] over SQL, written once for every dialect: [`SqlIndex`] is
//! generic over the sqlx database, and a [`Dialect`] supplies what differs
//! (how a write transaction starts and how concurrent writers are serialised).
//! SQLite and PostgreSQL open their pools in their own modules.
//!
//! Owns: the insert/remove transactions (instance row, study and series upserts,
//! counts, ModalitiesInStudy), executing the queries `query` builds and
//! decoding their rows. SQL here uses `$n` placeholders, which both PostgreSQL
//! and sqlx's SQLite driver bind by number, and only constructs both dialects
//! share (`ON CONFLICT … DO UPDATE`, `CAST(… AS BIGINT)` around `SUM`, which is
//! `numeric` on PostgreSQL).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type,
};

use super::query::{
    self, InstanceColumns, InstanceRowData, RowData, SeriesRowData, build_instances, build_search,
    fill_json,
};
use super::{
    ConflictPolicy, Deleted, Index, IndexError, InsertOutcome, InstanceRecord, Scope,
    SearchOutcome, StoredInstance,
};
use crate::feed::ChangeKind;
use aina_dicomweb::qido::{QidoQuery, QueryLevel};

/// What one SQL dialect does its own way.
pub trait Dialect: Database {
    /// Starts a write transaction.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;

    /// Starts a read-only transaction that sees one snapshot throughout
    /// (`migrate` reads three tables that must agree).
    fn begin_snapshot(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;

    /// Makes concurrent writers of the same keys (a SOP Instance UID, a study)
    /// wait for each other until the transaction ends, so counts recomputed in
    /// it see every committed row and one SOP Instance UID is decided once.
    /// Keys are taken in the order given: SOP Instance UID, series, study. A
    /// second study taken later (an instance moving between studies) can
    /// deadlock with a writer moving the other way; the database breaks the
    /// deadlock and [`Dialect::retryable`] runs the loser again.
    fn lock<'t>(
        tx: &'t mut Transaction<'static, Self>,
        keys: &'t [String],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 't;

    /// After rows were copied in with their instance ids (`migrate`): new ids
    /// must continue after them.
    fn after_copy<'t>(
        tx: &'t mut Transaction<'static, Self>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 't;

    /// Whether a failed write transaction may succeed when run again
    /// (serialisation failures, deadlocks, a unique key taken by a writer
    /// that held no common lock).
    fn retryable(error: &sqlx::Error) -> bool;
}

/// Attempts of a write transaction that failed for a [`Dialect::retryable`] reason.
const WRITE_ATTEMPTS: u32 = 5;

/// Runs `$body` (a future using the transaction `$tx`) in a write transaction,
/// again after a [`Dialect::retryable`] failure, with a short growing pause so
/// the writer it collided with can finish. A macro rather than a function taking
/// a closure: the future must stay `Send` for `async_trait`, which an
/// `AsyncFnMut` bound cannot promise.
macro_rules! write_tx {
    ($self:ident, $tx:ident => $body:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let mut $tx = DB::begin_write(&$self.writer).await?;
            let result = match $body.await {
                Ok(value) => $tx.commit().await.map(|()| value).map_err(IndexError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(IndexError::Database(e)) if tries < WRITE_ATTEMPTS && DB::retryable(&e) => {
                    tracing::debug!(error = %e, tries, "index write collided; retrying");
                    tokio::time::sleep(Duration::from_millis(10 << tries)).await;
                }
                other => break other,
            }
        }
    }};
}

/// An index over one SQL database.
#[derive(Debug, Clone)]
pub struct SqlIndex<DB: Database> {
    /// Write transactions.
    pub(crate) writer: Pool<DB>,
    /// Reads (QIDO, WADO lookups, verify); may be the writer pool itself.
    pub(crate) reader: Pool<DB>,
}

impl<DB: Database> SqlIndex<DB> {
    /// Closes the pools, waiting for connections to return (on SQLite this
    /// checkpoints the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Unix milliseconds, the schema's timestamp.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_i64(what: &str, v: u64) -> Result<i64, IndexError> {
    i64::try_from(v).map_err(|_| IndexError::Invalid(format!("{what} {v} is too large")))
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A change feed entry about to be written.
struct NewChange {
    kind: ChangeKind,
    /// Study, series and SOP Instance UIDs.
    uids: (String, String, String),
    patient_id: Option<String>,
}

/// The current row under a SOP Instance UID.
struct Current {
    id: i64,
    sha256: String,
    study: String,
    series: String,
    object_key: String,
}

impl<DB> SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    /// The outcome, and what it changed for the change feed.
    async fn insert(
        tx: &mut Transaction<'static, DB>,
        record: &InstanceRecord,
        policy: ConflictPolicy,
    ) -> Result<(InsertOutcome, Vec<NewChange>), IndexError> {
        let size_bytes = to_i64("size", record.size_bytes)?;
        let stored_bytes = to_i64("stored size", record.stored_bytes)?;
        let now = now_ms();
        DB::lock(
            tx,
            &[
                format!("sop:{}", record.sop_instance_uid),
                // The series lock makes the "series belongs to one study" check
                // below see any writer creating the series under another study.
                format!("series:{}", record.series_instance_uid),
                format!("study:{}", record.study_instance_uid),
            ],
        )
        .await?;

        // Stored again after a delete: no longer a deleted object.
        sqlx::query("DELETE FROM deleted_objects WHERE object_key = $1")
            .bind(&record.object_key)
            .execute(&mut **tx)
            .await?;
        let current = sqlx::query(
            "SELECT id, sha256, study_instance_uid, series_instance_uid, object_key \
             FROM instances WHERE sop_instance_uid = $1 AND superseded_at IS NULL",
        )
        .bind(&record.sop_instance_uid)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| -> Result<Current, sqlx::Error> {
            Ok(Current {
                id: r.try_get("id")?,
                sha256: r.try_get("sha256")?,
                study: r.try_get("study_instance_uid")?,
                series: r.try_get("series_instance_uid")?,
                object_key: r.try_get("object_key")?,
            })
        })
        .transpose()?;

        // A series belongs to one study; an instance claiming otherwise would make
        // the hierarchy inconsistent, whatever the policy.
        let series_study: Option<String> = sqlx::query_scalar(
            "SELECT study_instance_uid FROM series WHERE series_instance_uid = $1",
        )
        .bind(&record.series_instance_uid)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(study) = series_study.filter(|s| *s != record.study_instance_uid) {
            return Err(IndexError::Invalid(format!(
                "series {} belongs to study {study}, not {}",
                record.series_instance_uid, record.study_instance_uid
            )));
        }

        let mut outcome = InsertOutcome::Inserted;
        let mut previous: Option<(String, String)> = None;
        if let Some(cur) = current {
            // Same bytes at the same place: idempotent success. The same bytes under
            // another study or series are a conflict: the hierarchy differs.
            if cur.sha256 == record.sha256
                && cur.study == record.study_instance_uid
                && cur.series == record.series_instance_uid
            {
                return Ok((InsertOutcome::AlreadyPresent, Vec::new()));
            }
            match policy {
                ConflictPolicy::Reject => {
                    return Ok((
                        InsertOutcome::ConflictRejected {
                            existing_sha256: cur.sha256,
                        },
                        Vec::new(),
                    ));
                }
                ConflictPolicy::KeepBoth => {
                    sqlx::query("UPDATE instances SET superseded_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(cur.id)
                        .execute(&mut **tx)
                        .await?;
                    outcome = InsertOutcome::ConflictKeptBoth {
                        previous_sha256: cur.sha256,
                    };
                }
                ConflictPolicy::Replace => {
                    sqlx::query("DELETE FROM instances WHERE id = $1")
                        .bind(cur.id)
                        .execute(&mut **tx)
                        .await?;
                    // The replaced object is a deleted one from now on: should
                    // the caller fail to remove it, `aina verify --repair`
                    // removes it rather than index it again as an orphan (which
                    // would undo the replacement).
                    sqlx::query(
                        "INSERT INTO deleted_objects (object_key, deleted_at) VALUES ($1, $2) \
                         ON CONFLICT (object_key) DO NOTHING",
                    )
                    .bind(&cur.object_key)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    outcome = InsertOutcome::ConflictReplaced {
                        previous_object_key: cur.object_key,
                    };
                }
            }
            if cur.study != record.study_instance_uid {
                // The previous version's study is recounted below: hold it too.
                DB::lock(tx, &[format!("study:{}", cur.study)]).await?;
            }
            previous = Some((cur.study, cur.series));
        }

        Self::upsert_study(tx, record, now).await?;
        Self::upsert_series(tx, record, now).await?;

        // Re-sending a version that keep-both superseded earlier: its object key is
        // the same, so that superseded row gives way to the new current one.
        sqlx::query("DELETE FROM instances WHERE object_key = $1 AND superseded_at IS NOT NULL")
            .bind(&record.object_key)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, \
             sop_class_uid, transfer_syntax_uid, instance_number, pixel_rows, pixel_columns, \
             bits_allocated, number_of_frames, sha256, size_bytes, stored_bytes, object_key, \
             container_index, metadata_json, superseded_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             NULL, $17)",
        )
        .bind(&record.sop_instance_uid)
        .bind(&record.series_instance_uid)
        .bind(&record.study_instance_uid)
        .bind(&record.sop_class_uid)
        .bind(&record.transfer_syntax_uid)
        .bind(record.instance_number)
        .bind(record.rows)
        .bind(record.columns)
        .bind(record.bits_allocated)
        .bind(record.number_of_frames)
        .bind(&record.sha256)
        .bind(size_bytes)
        .bind(stored_bytes)
        .bind(&record.object_key)
        .bind(&record.container_index)
        .bind(&record.metadata_json)
        .bind(now)
        .execute(&mut **tx)
        .await?;

        Self::refresh(
            tx,
            &record.study_instance_uid,
            &record.series_instance_uid,
            now,
        )
        .await?;
        let here = (
            record.study_instance_uid.clone(),
            record.series_instance_uid.clone(),
            record.sop_instance_uid.clone(),
        );
        let patient_id = non_empty(&record.study.patient_id);
        let mut changes = Vec::new();
        match previous {
            None => changes.push(NewChange {
                kind: ChangeKind::Create,
                uids: here,
                patient_id,
            }),
            // Moved to another study or series: gone from where it was (a
            // consumer of the old study must hear of it), new where it is.
            Some((study, series))
                if study != record.study_instance_uid || series != record.series_instance_uid =>
            {
                Self::refresh(tx, &study, &series, now).await?;
                changes.push(NewChange {
                    kind: ChangeKind::Delete,
                    patient_id: Self::patient_of(tx, &study).await?,
                    uids: (study, series, record.sop_instance_uid.clone()),
                });
                changes.push(NewChange {
                    kind: ChangeKind::Create,
                    uids: here,
                    patient_id,
                });
            }
            Some(_) => changes.push(NewChange {
                kind: ChangeKind::Replace,
                uids: here,
                patient_id,
            }),
        }
        Ok((outcome, changes))
    }

    /// Inserts the study row or, if it exists, fills its absent columns and
    /// attributes from this instance: the first instance's values win, later
    /// instances only fill gaps (a modality that omits an attribute on some images
    /// should not make it flicker).
    async fn upsert_study(
        tx: &mut Transaction<'static, DB>,
        record: &InstanceRecord,
        now: i64,
    ) -> Result<(), IndexError> {
        let s = &record.study;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT attrs_json FROM studies WHERE study_instance_uid = $1")
                .bind(&record.study_instance_uid)
                .fetch_optional(&mut **tx)
                .await?;
        let attrs = match &existing {
            None => s.attrs_json.clone(),
            Some(old) => fill_json(old, &s.attrs_json).unwrap_or_else(|| old.clone()),
        };
        let name = non_empty(&s.patient_name);
        let referring = non_empty(&s.referring_physician_name);
        sqlx::query(
            "INSERT INTO studies (study_instance_uid, patient_name, patient_name_fold, \
             patient_name_words, patient_id, issuer_of_patient_id, patient_birth_date, \
             patient_sex, study_date, study_time, accession_number, referring_physician_name, \
             referring_physician_name_fold, study_id, study_description, \
             timezone_offset_from_utc, attrs_json, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19) \
             ON CONFLICT (study_instance_uid) DO UPDATE SET \
             patient_name = COALESCE(studies.patient_name, excluded.patient_name), \
             patient_name_fold = COALESCE(studies.patient_name_fold, excluded.patient_name_fold), \
             patient_name_words = COALESCE(studies.patient_name_words, excluded.patient_name_words), \
             patient_id = COALESCE(studies.patient_id, excluded.patient_id), \
             issuer_of_patient_id = COALESCE(studies.issuer_of_patient_id, excluded.issuer_of_patient_id), \
             patient_birth_date = COALESCE(studies.patient_birth_date, excluded.patient_birth_date), \
             patient_sex = COALESCE(studies.patient_sex, excluded.patient_sex), \
             study_date = CASE WHEN studies.study_date = '' THEN excluded.study_date ELSE studies.study_date END, \
             study_time = CASE WHEN studies.study_time = '' THEN excluded.study_time ELSE studies.study_time END, \
             accession_number = COALESCE(studies.accession_number, excluded.accession_number), \
             referring_physician_name = COALESCE(studies.referring_physician_name, excluded.referring_physician_name), \
             referring_physician_name_fold = COALESCE(studies.referring_physician_name_fold, excluded.referring_physician_name_fold), \
             study_id = COALESCE(studies.study_id, excluded.study_id), \
             study_description = COALESCE(studies.study_description, excluded.study_description), \
             timezone_offset_from_utc = COALESCE(studies.timezone_offset_from_utc, excluded.timezone_offset_from_utc), \
             attrs_json = excluded.attrs_json, \
             updated_at = excluded.updated_at",
        )
        .bind(&record.study_instance_uid)
        .bind(&name)
        .bind(name.as_deref().map(query::person_name_fold))
        .bind(name.as_deref().map(query::person_name_words_column))
        .bind(non_empty(&s.patient_id))
        .bind(non_empty(&s.issuer_of_patient_id))
        .bind(non_empty(&s.patient_birth_date).map(|d| query::normalize_date(&d)))
        .bind(non_empty(&s.patient_sex))
        .bind(s.study_date.as_deref().map(query::normalize_date).unwrap_or_default())
        .bind(s.study_time.as_deref().map(query::normalize_time).unwrap_or_default())
        .bind(non_empty(&s.accession_number))
        .bind(&referring)
        .bind(referring.as_deref().map(query::person_name_fold))
        .bind(non_empty(&s.study_id))
        .bind(non_empty(&s.study_description))
        .bind(non_empty(&s.timezone_offset_from_utc))
        .bind(attrs)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Inserts the series row or fills its gaps, as [`Self::upsert_study`].
    async fn upsert_series(
        tx: &mut Transaction<'static, DB>,
        record: &InstanceRecord,
        now: i64,
    ) -> Result<(), IndexError> {
        let s = &record.series;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT attrs_json FROM series WHERE series_instance_uid = $1")
                .bind(&record.series_instance_uid)
                .fetch_optional(&mut **tx)
                .await?;
        let attrs = match &existing {
            None => s.attrs_json.clone(),
            Some(old) => fill_json(old, &s.attrs_json).unwrap_or_else(|| old.clone()),
        };
        sqlx::query(
            "INSERT INTO series (series_instance_uid, study_instance_uid, modality, \
             series_number, series_description, body_part_examined, \
             performed_procedure_step_start_date, performed_procedure_step_start_time, \
             attrs_json, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (series_instance_uid) DO UPDATE SET \
             modality = COALESCE(series.modality, excluded.modality), \
             series_number = COALESCE(series.series_number, excluded.series_number), \
             series_description = COALESCE(series.series_description, excluded.series_description), \
             body_part_examined = COALESCE(series.body_part_examined, excluded.body_part_examined), \
             performed_procedure_step_start_date = COALESCE(series.performed_procedure_step_start_date, \
             excluded.performed_procedure_step_start_date), \
             performed_procedure_step_start_time = COALESCE(series.performed_procedure_step_start_time, \
             excluded.performed_procedure_step_start_time), \
             attrs_json = excluded.attrs_json, \
             updated_at = excluded.updated_at",
        )
        .bind(&record.series_instance_uid)
        .bind(&record.study_instance_uid)
        .bind(non_empty(&s.modality))
        .bind(s.series_number)
        .bind(non_empty(&s.series_description))
        .bind(non_empty(&s.body_part_examined))
        .bind(
            non_empty(&s.performed_procedure_step_start_date).map(|d| query::normalize_date(&d)),
        )
        .bind(
            non_empty(&s.performed_procedure_step_start_time).map(|t| query::normalize_time(&t)),
        )
        .bind(attrs)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Recomputes the series' and study's counts and ModalitiesInStudy from the
    /// current instance rows, and deletes a series (then a study) with no rows left.
    /// Counting over the indexed foreign keys is cheap, and recounting cannot drift
    /// the way increments can.
    async fn refresh(
        tx: &mut Transaction<'static, DB>,
        study: &str,
        series: &str,
        now: i64,
    ) -> Result<(), IndexError> {
        let (any_rows, current): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN superseded_at IS NULL THEN 1 ELSE 0 END), \
             0) AS BIGINT) FROM instances WHERE series_instance_uid = $1",
        )
        .bind(series)
        .fetch_one(&mut **tx)
        .await?;
        if any_rows == 0 {
            sqlx::query("DELETE FROM series WHERE series_instance_uid = $1")
                .bind(series)
                .execute(&mut **tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE series SET number_of_instances = $1, updated_at = $2 \
                 WHERE series_instance_uid = $3",
            )
            .bind(current)
            .bind(now)
            .bind(series)
            .execute(&mut **tx)
            .await?;
        }

        let (series_rows, live_series, instances): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), \
             CAST(COALESCE(SUM(CASE WHEN number_of_instances > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(number_of_instances), 0) AS BIGINT) \
             FROM series WHERE study_instance_uid = $1",
        )
        .bind(study)
        .fetch_one(&mut **tx)
        .await?;
        if series_rows == 0 {
            sqlx::query("DELETE FROM studies WHERE study_instance_uid = $1")
                .bind(study)
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
        let modalities: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT modality FROM series WHERE study_instance_uid = $1 \
             AND number_of_instances > 0 AND modality IS NOT NULL ORDER BY modality",
        )
        .bind(study)
        .fetch_all(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE studies SET number_of_series = $1, number_of_instances = $2, \
             modalities_in_study = $3, updated_at = $4 WHERE study_instance_uid = $5",
        )
        .bind(live_series)
        .bind(instances)
        .bind(modalities.join("\\"))
        .bind(now)
        .bind(study)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn remove(
        tx: &mut Transaction<'static, DB>,
        object_key: &str,
    ) -> Result<bool, IndexError> {
        // The study to lock; the row itself is read under the lock, since a
        // writer that held it may have superseded, moved or deleted the row.
        let study: Option<String> =
            sqlx::query_scalar("SELECT study_instance_uid FROM instances WHERE object_key = $1")
                .bind(object_key)
                .fetch_optional(&mut **tx)
                .await?;
        let Some(study) = study else {
            return Ok(false);
        };
        DB::lock(tx, &[format!("study:{study}")]).await?;
        let row: Option<(String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT study_instance_uid, series_instance_uid, sop_instance_uid, superseded_at \
             FROM instances WHERE object_key = $1",
        )
        .bind(object_key)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((study, series, sop, superseded)) = row.filter(|r| r.0 == study) else {
            return Ok(false);
        };
        // A superseded version is not brought back when the current one's object
        // is lost: which version is served stays an operator's decision.
        sqlx::query("DELETE FROM instances WHERE object_key = $1")
            .bind(object_key)
            .execute(&mut **tx)
            .await?;
        if superseded.is_none() {
            // The instance is no longer served: a delete for the change feed.
            let patient_id = Self::patient_of(tx, &study).await?;
            let change = NewChange {
                kind: ChangeKind::Delete,
                uids: (study.clone(), series.clone(), sop),
                patient_id,
            };
            Self::append_changes(tx, &[change]).await?;
        }
        Self::refresh(tx, &study, &series, now_ms()).await?;
        Ok(true)
    }

    async fn patient_of(
        tx: &mut Transaction<'static, DB>,
        study: &str,
    ) -> Result<Option<String>, IndexError> {
        Ok(
            sqlx::query_scalar("SELECT patient_id FROM studies WHERE study_instance_uid = $1")
                .bind(study)
                .fetch_optional(&mut **tx)
                .await?
                .flatten(),
        )
    }

    /// Appends to the change feed, last in the write transaction: the feed
    /// lock (an advisory lock on PostgreSQL, the write lock SQLite already
    /// holds) is kept until commit, so `MAX(seq) + 1` is taken and made
    /// visible in one order by every writer, on every node.
    async fn append_changes(
        tx: &mut Transaction<'static, DB>,
        changes: &[NewChange],
    ) -> Result<(), IndexError> {
        if changes.is_empty() {
            return Ok(());
        }
        DB::lock(tx, &["change-feed".to_owned()]).await?;
        let now = now_ms();
        // Many rows per statement (a study's delete), numbered on from MAX by
        // their place in the VALUES list.
        for chunk in changes.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO change_feed (seq, kind, study_instance_uid, series_instance_uid, \
                 sop_instance_uid, patient_id, time_ms) \
                 SELECT base.m + v.column1, v.column2, v.column3, v.column4, v.column5, \
                 v.column6, ",
            );
            qb.push_bind(now);
            qb.push(" FROM (SELECT COALESCE(MAX(seq), 0) AS m FROM change_feed) AS base, (");
            qb.push_values(chunk.iter().enumerate(), |mut row, (i, change)| {
                let (study, series, sop) = &change.uids;
                row.push_bind(i64::try_from(i).unwrap_or(i64::MAX) + 1)
                    .push_bind(change.kind.as_str())
                    .push_bind(study.clone())
                    .push_bind(series.clone())
                    .push_bind(sop.clone())
                    .push_bind(change.patient_id.clone());
            });
            qb.push(") AS v");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn delete_scope(
        tx: &mut Transaction<'static, DB>,
        scope: &Scope,
    ) -> Result<Deleted, IndexError> {
        let Some(study) = scope.study.as_deref() else {
            return Err(IndexError::Invalid("a delete must name the study".into()));
        };
        // The same lock order as an insert: SOP Instance UID, series, study.
        let mut keys = Vec::new();
        if let Some(sop) = &scope.instance {
            keys.push(format!("sop:{sop}"));
        }
        if let Some(series) = &scope.series {
            keys.push(format!("series:{series}"));
        }
        keys.push(format!("study:{study}"));
        DB::lock(tx, &keys).await?;
        // Each condition is neutral when its value is NULL: one statement text.
        const MATCH: &str = "study_instance_uid = $1 AND ($2 IS NULL OR series_instance_uid = $2) \
                             AND ($3 IS NULL OR sop_instance_uid = $3)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT object_key, sha256, series_instance_uid, sop_instance_uid, superseded_at \
             FROM instances WHERE {MATCH} ORDER BY id"
        )))
        .bind(study)
        .bind(scope.series.clone())
        .bind(scope.instance.clone())
        .fetch_all(&mut **tx)
        .await?;
        let mut deleted = Deleted::default();
        if rows.is_empty() {
            return Ok(deleted);
        }
        deleted.patient_id = Self::patient_of(tx, study).await?;
        let mut series_touched: Vec<String> = Vec::new();
        for r in &rows {
            let series: String = r.try_get("series_instance_uid")?;
            deleted
                .objects
                .push((r.try_get("object_key")?, r.try_get("sha256")?));
            if r.try_get::<Option<i64>, _>("superseded_at")?.is_none() {
                deleted.instances.push((
                    study.to_owned(),
                    series.clone(),
                    r.try_get("sop_instance_uid")?,
                ));
            }
            if !series_touched.contains(&series) {
                series_touched.push(series);
            }
        }
        for (key, _) in &deleted.objects {
            sqlx::query(
                "INSERT INTO deleted_objects (object_key, deleted_at) VALUES ($1, $2) \
                 ON CONFLICT (object_key) DO NOTHING",
            )
            .bind(key)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM instances WHERE {MATCH}"
        )))
        .bind(study)
        .bind(scope.series.clone())
        .bind(scope.instance.clone())
        .execute(&mut **tx)
        .await?;
        let now = now_ms();
        for series in &series_touched {
            Self::refresh(tx, study, series, now).await?;
        }
        let changes: Vec<NewChange> = deleted
            .instances
            .iter()
            .map(|uids| NewChange {
                kind: ChangeKind::Delete,
                uids: uids.clone(),
                patient_id: deleted.patient_id.clone(),
            })
            .collect();
        Self::append_changes(tx, &changes).await?;
        Ok(deleted)
    }

    fn decode_search_row(
        r: &DB::Row,
        level: QueryLevel,
        with_metadata: bool,
    ) -> Result<RowData, sqlx::Error> {
        let mut data = RowData {
            study_instance_uid: r.try_get("study_instance_uid")?,
            study_attrs: r.try_get("study_attrs")?,
            modalities_in_study: r.try_get("modalities_in_study")?,
            number_of_series: r.try_get("number_of_series")?,
            study_instances: r.try_get("study_instances")?,
            series: None,
            instance: None,
        };
        if level != QueryLevel::Study {
            data.series = Some(SeriesRowData {
                series_instance_uid: r.try_get("series_instance_uid")?,
                series_attrs: r.try_get("series_attrs")?,
                series_instances: r.try_get("series_instances")?,
            });
        }
        if level == QueryLevel::Instance {
            data.instance = Some(InstanceRowData {
                sop_instance_uid: r.try_get("sop_instance_uid")?,
                sop_class_uid: r.try_get("sop_class_uid")?,
                instance_number: r.try_get("instance_number")?,
                rows: r.try_get("pixel_rows")?,
                columns: r.try_get("pixel_columns")?,
                bits_allocated: r.try_get("bits_allocated")?,
                number_of_frames: r.try_get("number_of_frames")?,
                metadata_json: if with_metadata {
                    r.try_get("metadata_json")?
                } else {
                    None
                },
            });
        }
        Ok(data)
    }
}

#[async_trait]
impl<DB> Index for SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    async fn insert_instance(
        &self,
        record: &InstanceRecord,
        policy: ConflictPolicy,
    ) -> Result<InsertOutcome, IndexError> {
        write_tx!(self, tx => async {
            let (outcome, changes) = Self::insert(&mut tx, record, policy).await?;
            Self::append_changes(&mut tx, &changes).await?;
            Ok(outcome)
        })
    }

    async fn insert_instances(
        &self,
        records: &[InstanceRecord],
        policy: ConflictPolicy,
    ) -> Result<Vec<InsertOutcome>, IndexError> {
        write_tx!(self, tx => async {
            let mut outcomes = Vec::with_capacity(records.len());
            let mut changes = Vec::new();
            for record in records {
                let (outcome, changed) = Self::insert(&mut tx, record, policy).await?;
                changes.extend(changed);
                outcomes.push(outcome);
            }
            Self::append_changes(&mut tx, &changes).await?;
            Ok(outcomes)
        })
    }

    async fn search(&self, query: &QidoQuery, scope: &Scope) -> Result<SearchOutcome, IndexError> {
        let (mut qb, plan) = build_search::<DB>(query, scope)?;
        let rows = qb.build().fetch_all(&self.reader).await?;
        let rows = rows
            .iter()
            .map(|r| Self::decode_search_row(r, plan.level, plan.with_metadata))
            .map(|data| data.map(|d| query::build_row(&plan, d)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(SearchOutcome {
            rows,
            unsupported: plan.unsupported,
        })
    }

    async fn instances(&self, scope: &Scope) -> Result<Vec<StoredInstance>, IndexError> {
        let mut qb = build_instances::<DB>(scope, InstanceColumns::Retrieval)?;
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get("size_bytes")?;
                Ok(StoredInstance {
                    study_instance_uid: r.try_get("study_instance_uid")?,
                    series_instance_uid: r.try_get("series_instance_uid")?,
                    sop_instance_uid: r.try_get("sop_instance_uid")?,
                    sop_class_uid: r.try_get("sop_class_uid")?,
                    transfer_syntax_uid: r.try_get("transfer_syntax_uid")?,
                    sha256: r.try_get("sha256")?,
                    size_bytes: u64::try_from(size).unwrap_or_default(),
                    object_key: r.try_get("object_key")?,
                    container_index: r.try_get("container_index")?,
                    number_of_frames: r.try_get("number_of_frames")?,
                })
            })
            .collect()
    }

    async fn metadata(&self, scope: &Scope) -> Result<Vec<String>, IndexError> {
        let mut qb = build_instances::<DB>(scope, InstanceColumns::Metadata)?;
        let rows = qb.build().fetch_all(&self.reader).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("metadata_json"))
            .collect::<Result<_, _>>()?)
    }

    async fn objects(
        &self,
        after: Option<&str>,
        page: u32,
    ) -> Result<Vec<(String, String)>, IndexError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT object_key, sha256 FROM instances WHERE object_key > $1 \
             ORDER BY object_key LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(page))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows)
    }

    async fn remove_object(&self, object_key: &str) -> Result<bool, IndexError> {
        write_tx!(self, tx => Self::remove(&mut tx, object_key))
    }

    async fn delete(&self, scope: &Scope) -> Result<Deleted, IndexError> {
        write_tx!(self, tx => Self::delete_scope(&mut tx, scope))
    }

    async fn was_deleted(&self, object_key: &str) -> Result<bool, IndexError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT object_key FROM deleted_objects WHERE object_key = $1")
                .bind(object_key)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}
