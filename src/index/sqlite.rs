//! SQLite implementation of [`Index`]: the embedded default (one file next to the
//! objects).
//!
//! Owns: connection settings (WAL, `synchronous=FULL` so a committed row is
//! durable before ingest answers success, busy timeout, foreign keys), the
//! split into one writer connection and a few readers, migrations from
//! `migrations/sqlite`, and the insert/remove transactions. QIDO translation and
//! row building live in the `query` module, shared with PostgreSQL.
//!
//! SQLite has one writer. Writes go through a pool of exactly one connection, so
//! concurrent ingest queues in-process instead of spinning on `SQLITE_BUSY`, and
//! each write transaction starts with `BEGIN IMMEDIATE`, so it takes the write
//! lock up front (a deferred transaction that reads then writes can fail with
//! `SQLITE_BUSY` without waiting if another process wrote meanwhile).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::query::{
    self, InstanceColumns, InstanceRowData, RowData, SeriesRowData, build_instances, build_search,
    fill_json,
};
use super::{
    ConflictPolicy, Index, IndexError, InsertOutcome, InstanceRecord, Scope, SearchOutcome,
    StoredInstance,
};
use aina_dicomweb::qido::{QidoQuery, QueryLevel};

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection; generous because ingest
/// bursts queue on the single writer.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Readers: WAL lets them run beside the writer; more than a few buys nothing on
/// small machines, as SQLite work runs on one thread per connection.
const READERS: u32 = 4;

/// The SQLite index.
#[derive(Debug, Clone)]
pub struct SqliteIndex {
    /// Exactly one connection: every write transaction.
    writer: SqlitePool,
    /// Reads (QIDO, WADO lookups, verify). The writer pool itself for in-memory
    /// databases, which exist per connection.
    reader: SqlitePool,
}

impl SqliteIndex {
    /// Opens (creating if missing) the database at `url` (`sqlite://path` or
    /// `sqlite::memory:`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, IndexError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full)
            // Wildcard matching is case-sensitive by the standard (PN is matched on
            // folded columns), as in PostgreSQL; it also lets `LIKE 'abc%'` use
            // the column's index.
            .pragma("case_sensitive_like", "ON");
        if !in_memory {
            options = options.journal_mode(SqliteJournalMode::Wal);
        }

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // An in-memory database dies with its connection: keep it forever.
            .idle_timeout(None)
            .max_lifetime(None)
            // Planner statistics for the QIDO indexes, refreshed as the writer
            // closes (SQLite's recommended `PRAGMA optimize`; readers cannot write).
            .connect_with(options.clone().optimize_on_close(true, 400))
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(IndexError::Migrate)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(SqliteIndex { writer, reader })
    }

    /// Closes both pools, waiting for connections to return (checkpoints the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, IndexError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Unix milliseconds, the schema's timestamp.
fn now_ms() -> i64 {
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

/// The current row under a SOP Instance UID.
struct Current {
    id: i64,
    sha256: String,
    study: String,
    series: String,
    object_key: String,
}

#[async_trait]
impl Index for SqliteIndex {
    async fn insert_instance(
        &self,
        record: &InstanceRecord,
        policy: ConflictPolicy,
    ) -> Result<InsertOutcome, IndexError> {
        let size_bytes = to_i64("size", record.size_bytes)?;
        let stored_bytes = to_i64("stored size", record.stored_bytes)?;
        let now = now_ms();
        let mut tx = self.begin_write().await?;

        let current = sqlx::query(
            "SELECT id, sha256, study_instance_uid, series_instance_uid, object_key \
             FROM instances WHERE sop_instance_uid = ? AND superseded_at IS NULL",
        )
        .bind(&record.sop_instance_uid)
        .fetch_optional(&mut *tx)
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
            "SELECT study_instance_uid FROM series WHERE series_instance_uid = ?",
        )
        .bind(&record.series_instance_uid)
        .fetch_optional(&mut *tx)
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
                return Ok(InsertOutcome::AlreadyPresent);
            }
            match policy {
                ConflictPolicy::Reject => {
                    return Ok(InsertOutcome::ConflictRejected {
                        existing_sha256: cur.sha256,
                    });
                }
                ConflictPolicy::KeepBoth => {
                    sqlx::query("UPDATE instances SET superseded_at = ? WHERE id = ?")
                        .bind(now)
                        .bind(cur.id)
                        .execute(&mut *tx)
                        .await?;
                    outcome = InsertOutcome::ConflictKeptBoth {
                        previous_sha256: cur.sha256,
                    };
                }
                ConflictPolicy::Replace => {
                    sqlx::query("DELETE FROM instances WHERE id = ?")
                        .bind(cur.id)
                        .execute(&mut *tx)
                        .await?;
                    outcome = InsertOutcome::ConflictReplaced {
                        previous_object_key: cur.object_key,
                    };
                }
            }
            previous = Some((cur.study, cur.series));
        }

        upsert_study(&mut tx, record, now).await?;
        upsert_series(&mut tx, record, now).await?;

        // Re-sending a version that keep-both superseded earlier: its object key is
        // the same, so that superseded row gives way to the new current one.
        sqlx::query("DELETE FROM instances WHERE object_key = ? AND superseded_at IS NOT NULL")
            .bind(&record.object_key)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, \
             sop_class_uid, transfer_syntax_uid, instance_number, pixel_rows, pixel_columns, \
             bits_allocated, number_of_frames, sha256, size_bytes, stored_bytes, object_key, \
             container_index, metadata_json, superseded_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
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
        .execute(&mut *tx)
        .await?;

        refresh(
            &mut tx,
            &record.study_instance_uid,
            &record.series_instance_uid,
            now,
        )
        .await?;
        if let Some((study, series)) = previous
            && (study != record.study_instance_uid || series != record.series_instance_uid)
        {
            refresh(&mut tx, &study, &series, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn search(&self, query: &QidoQuery, scope: &Scope) -> Result<SearchOutcome, IndexError> {
        let (mut qb, plan) = build_search::<Sqlite>(query, scope)?;
        let rows = qb.build().fetch_all(&self.reader).await?;
        let rows = rows
            .iter()
            .map(|r| decode_search_row(r, plan.level, plan.with_metadata))
            .map(|data| data.map(|d| query::build_row(&plan, d)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(SearchOutcome {
            rows,
            unsupported: plan.unsupported,
        })
    }

    async fn instances(&self, scope: &Scope) -> Result<Vec<StoredInstance>, IndexError> {
        let mut qb = build_instances::<Sqlite>(scope, InstanceColumns::Retrieval)?;
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
        let mut qb = build_instances::<Sqlite>(scope, InstanceColumns::Metadata)?;
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
            "SELECT object_key, sha256 FROM instances WHERE object_key > ? \
             ORDER BY object_key LIMIT ?",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(page))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows)
    }

    async fn remove_object(&self, object_key: &str) -> Result<bool, IndexError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT study_instance_uid, series_instance_uid FROM instances WHERE object_key = ?",
        )
        .bind(object_key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((study, series)) = row else {
            return Ok(false);
        };
        // A superseded version is not brought back when the current one's object
        // is lost: which version is served stays an operator's decision.
        sqlx::query("DELETE FROM instances WHERE object_key = ?")
            .bind(object_key)
            .execute(&mut *tx)
            .await?;
        refresh(&mut tx, &study, &series, now_ms()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

/// Inserts the study row or, if it exists, fills its absent columns and
/// attributes from this instance: the first instance's values win, later
/// instances only fill gaps (a modality that omits an attribute on some images
/// should not make it flicker).
async fn upsert_study(
    tx: &mut Transaction<'static, Sqlite>,
    record: &InstanceRecord,
    now: i64,
) -> Result<(), IndexError> {
    let s = &record.study;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT attrs_json FROM studies WHERE study_instance_uid = ?")
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
         patient_name_words, patient_id, issuer_of_patient_id, patient_birth_date, patient_sex, \
         study_date, study_time, accession_number, referring_physician_name, \
         referring_physician_name_fold, study_id, study_description, timezone_offset_from_utc, \
         attrs_json, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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

/// Inserts the series row or fills its gaps, as [`upsert_study`].
async fn upsert_series(
    tx: &mut Transaction<'static, Sqlite>,
    record: &InstanceRecord,
    now: i64,
) -> Result<(), IndexError> {
    let s = &record.series;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT attrs_json FROM series WHERE series_instance_uid = ?")
            .bind(&record.series_instance_uid)
            .fetch_optional(&mut **tx)
            .await?;
    let attrs = match &existing {
        None => s.attrs_json.clone(),
        Some(old) => fill_json(old, &s.attrs_json).unwrap_or_else(|| old.clone()),
    };
    sqlx::query(
        "INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number, \
         series_description, body_part_examined, performed_procedure_step_start_date, \
         performed_procedure_step_start_time, attrs_json, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
    .bind(non_empty(&s.performed_procedure_step_start_date).map(|d| query::normalize_date(&d)))
    .bind(non_empty(&s.performed_procedure_step_start_time).map(|t| query::normalize_time(&t)))
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
    tx: &mut Transaction<'static, Sqlite>,
    study: &str,
    series: &str,
    now: i64,
) -> Result<(), IndexError> {
    let (any_rows, current): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN superseded_at IS NULL THEN 1 ELSE 0 END), 0) \
         FROM instances WHERE series_instance_uid = ?",
    )
    .bind(series)
    .fetch_one(&mut **tx)
    .await?;
    if any_rows == 0 {
        sqlx::query("DELETE FROM series WHERE series_instance_uid = ?")
            .bind(series)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "UPDATE series SET number_of_instances = ?, updated_at = ? \
             WHERE series_instance_uid = ?",
        )
        .bind(current)
        .bind(now)
        .bind(series)
        .execute(&mut **tx)
        .await?;
    }

    let (series_rows, live_series, instances): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN number_of_instances > 0 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(number_of_instances), 0) FROM series WHERE study_instance_uid = ?",
    )
    .bind(study)
    .fetch_one(&mut **tx)
    .await?;
    if series_rows == 0 {
        sqlx::query("DELETE FROM studies WHERE study_instance_uid = ?")
            .bind(study)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let modalities: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT modality FROM series WHERE study_instance_uid = ? \
         AND number_of_instances > 0 AND modality IS NOT NULL ORDER BY modality",
    )
    .bind(study)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE studies SET number_of_series = ?, number_of_instances = ?, \
         modalities_in_study = ?, updated_at = ? WHERE study_instance_uid = ?",
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

fn decode_search_row(
    r: &SqliteRow,
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
