//! Moving an index from one database to another (`aina migrate-index`): an
//! embedded SQLite archive to PostgreSQL when it outgrows one machine, or back.
//!
//! The rows are copied as they are, table by table, with their timestamps,
//! counts, superseded versions and instance ids, so nothing is re-read from
//! the objects and nothing is recomputed. The source is read in one snapshot
//! (its rows are not changed; opening it applies any pending migration, as
//! `aina serve` would), and the whole copy is one transaction on the target: an
//! interrupted migration leaves the target empty.

use futures::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type};

use super::IndexError;
use super::postgres::PgIndex;
use super::sql::{Dialect, SqlIndex};
use super::sqlite::SqliteIndex;

/// How a column is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Blob,
}

/// One table's columns, in the order both migrations declare them.
struct Table {
    name: &'static str,
    /// The column rows are read in (stable, indexed).
    order: &'static str,
    columns: &'static [(&'static str, Kind)],
}

use Kind::{Blob, Int, Text};

/// Parents before children, for the foreign keys.
const TABLES: &[Table] = &[
    Table {
        name: "studies",
        order: "study_instance_uid",
        columns: &[
            ("study_instance_uid", Text),
            ("patient_name", Text),
            ("patient_name_fold", Text),
            ("patient_name_words", Text),
            ("patient_id", Text),
            ("issuer_of_patient_id", Text),
            ("patient_birth_date", Text),
            ("patient_sex", Text),
            ("study_date", Text),
            ("study_time", Text),
            ("accession_number", Text),
            ("referring_physician_name", Text),
            ("referring_physician_name_fold", Text),
            ("study_id", Text),
            ("study_description", Text),
            ("timezone_offset_from_utc", Text),
            ("modalities_in_study", Text),
            ("number_of_series", Int),
            ("number_of_instances", Int),
            ("attrs_json", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "series",
        order: "series_instance_uid",
        columns: &[
            ("series_instance_uid", Text),
            ("study_instance_uid", Text),
            ("modality", Text),
            ("series_number", Int),
            ("series_description", Text),
            ("body_part_examined", Text),
            ("performed_procedure_step_start_date", Text),
            ("performed_procedure_step_start_time", Text),
            ("number_of_instances", Int),
            ("attrs_json", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "instances",
        order: "id",
        columns: &[
            ("id", Int),
            ("sop_instance_uid", Text),
            ("series_instance_uid", Text),
            ("study_instance_uid", Text),
            ("sop_class_uid", Text),
            ("transfer_syntax_uid", Text),
            ("instance_number", Int),
            ("pixel_rows", Int),
            ("pixel_columns", Int),
            ("bits_allocated", Int),
            ("number_of_frames", Int),
            ("sha256", Text),
            ("size_bytes", Int),
            ("stored_bytes", Int),
            ("object_key", Text),
            ("container_index", Blob),
            ("metadata_json", Text),
            ("superseded_at", Int),
            ("created_at", Int),
        ],
    },
    // Accounts and the audit log travel with the index; sessions do not
    // (users sign in again on the new database).
    Table {
        name: "users",
        order: "username",
        columns: &[
            ("username", Text),
            ("role", Text),
            ("password_hash", Text),
            ("disabled", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "api_tokens",
        order: "id",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("role", Text),
            ("secret_sha256", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("last_used_at", Int),
        ],
    },
    Table {
        name: "deleted_objects",
        order: "object_key",
        columns: &[("object_key", Text), ("deleted_at", Int)],
    },
    Table {
        name: "audit_events",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("time_ms", Int),
            ("actor", Text),
            ("role", Text),
            ("method", Text),
            ("source", Text),
            ("action", Text),
            ("outcome", Text),
            ("status", Int),
            ("patient_id", Text),
            ("study_uid", Text),
            ("series_uid", Text),
            ("sop_uid", Text),
            ("detail", Text),
        ],
    },
    // The change feed keeps its sequence numbers: an EHR polling the new
    // database goes on from where it was.
    Table {
        name: "change_feed",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("kind", Text),
            ("study_instance_uid", Text),
            ("series_instance_uid", Text),
            ("sop_instance_uid", Text),
            ("patient_id", Text),
            ("time_ms", Int),
        ],
    },
    Table {
        name: "webhook_cursors",
        order: "url",
        // A copied lease runs out within a minute; the new nodes take it then.
        columns: &[
            ("url", Text),
            ("seq", Int),
            ("updated_at", Int),
            ("holder", Text),
            ("lease_until", Int),
        ],
    },
    Table {
        name: "share_links",
        order: "id",
        columns: &[
            ("id", Text),
            ("secret_sha256", Text),
            ("study_instance_uid", Text),
            ("created_by", Text),
            ("note", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("last_used_at", Int),
        ],
    },
];

/// Rows per INSERT: well under both dialects' bound-parameter limits
/// (SQLite 32766, PostgreSQL 65535) for the widest table.
const BATCH_ROWS: usize = 500;

/// One value in transit.
#[derive(Debug, Clone)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Blob(Vec<u8>),
}

/// Rows copied per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub users: u64,
    pub tokens: u64,
    pub audit_events: u64,
    pub changes: u64,
    pub shares: u64,
}

/// An index opened by URL, as its concrete type (the copy is generic over both).
enum Opened {
    Sqlite(SqliteIndex),
    Postgres(PgIndex),
}

impl Opened {
    async fn open(url: &str, must_exist: bool) -> Result<Self, IndexError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if must_exist && !std::path::Path::new(path).is_file() {
                return Err(IndexError::Invalid(format!("no SQLite index at {path}")));
            }
            return Ok(Opened::Sqlite(SqliteIndex::open(url).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Opened::Postgres(PgIndex::open(url).await?));
        }
        Err(IndexError::Invalid(
            "expected a sqlite:// or postgres:// URL".to_owned(),
        ))
    }

    async fn close(&self) {
        match self {
            Opened::Sqlite(i) => i.close().await,
            Opened::Postgres(i) => i.close().await,
        }
    }
}

/// Copies the index at `from_url` into the empty (or not yet existing) index at
/// `to_url`; both may be `sqlite://` or `postgres://`.
pub async fn migrate(
    from_url: &str,
    to_url: &str,
    progress: impl Fn(&str, u64),
) -> Result<CopyReport, IndexError> {
    let from = Opened::open(from_url, true).await?;
    let to = Opened::open(to_url, false).await?;
    let report = match (&from, &to) {
        (Opened::Sqlite(f), Opened::Sqlite(t)) => copy_index(f, t, progress).await,
        (Opened::Sqlite(f), Opened::Postgres(t)) => copy_index(f, t, progress).await,
        (Opened::Postgres(f), Opened::Sqlite(t)) => copy_index(f, t, progress).await,
        (Opened::Postgres(f), Opened::Postgres(t)) => copy_index(f, t, progress).await,
    };
    from.close().await;
    to.close().await;
    report
}

/// Copies every row of `from` into `to`, which must be empty (freshly migrated).
/// `progress` hears (table, rows copied so far) after each batch.
pub async fn copy_index<S, T>(
    from: &SqlIndex<S>,
    to: &SqlIndex<T>,
    progress: impl Fn(&str, u64),
) -> Result<CopyReport, IndexError>
where
    S: Dialect,
    for<'c> &'c mut S::Connection: Executor<'c, Database = S>,
    String: for<'r> Decode<'r, S> + Type<S>,
    Option<String>: for<'r> Decode<'r, S> + Type<S>,
    Option<i64>: for<'r> Decode<'r, S> + Type<S>,
    i64: for<'r> Decode<'r, S> + Type<S>,
    Vec<u8>: for<'r> Decode<'r, S> + Type<S>,
    S::Arguments: Default + IntoArguments<S>,
    for<'a> &'a str: ColumnIndex<S::Row>,
    T: Dialect,
    for<'c> &'c mut T::Connection: Executor<'c, Database = T>,
    for<'c> &'c Pool<T>: Executor<'c, Database = T>,
    T::Arguments: Default + IntoArguments<T>,
    Option<String>: for<'q> Encode<'q, T> + Type<T>,
    Option<i64>: for<'q> Encode<'q, T> + Type<T>,
    i64: for<'r> Decode<'r, T> + Type<T>,
    Vec<u8>: for<'q> Encode<'q, T> + Type<T>,
    usize: ColumnIndex<T::Row>,
{
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances")
        .fetch_one(&to.reader)
        .await?;
    let studies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM studies")
        .fetch_one(&to.reader)
        .await?;
    if existing > 0 || studies > 0 {
        return Err(IndexError::Invalid(format!(
            "the target index is not empty ({studies} studies, {existing} instances): \
             migrate into a new, empty database"
        )));
    }

    let mut source = S::begin_snapshot(&from.reader).await?;
    let mut tx = T::begin_write(&to.writer).await?;
    let mut report = CopyReport::default();
    for table in TABLES {
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            table.name,
            table.order
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *source);
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
        let mut copied = 0u64;
        loop {
            let row = rows.try_next().await?;
            if let Some(row) = &row {
                let values = table
                    .columns
                    .iter()
                    .map(|&(column, kind)| {
                        Ok(match kind {
                            Text => Value::Text(row.try_get(column)?),
                            Int => Value::Int(row.try_get(column)?),
                            Blob => Value::Blob(row.try_get(column)?),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                batch.push(values);
            }
            if batch.len() == BATCH_ROWS || (row.is_none() && !batch.is_empty()) {
                let mut qb = QueryBuilder::<T>::new(format!(
                    "INSERT INTO {} ({}) ",
                    table.name,
                    columns.join(", ")
                ));
                let n = batch.len() as u64;
                qb.push_values(batch.drain(..), |mut b, values| {
                    for v in values {
                        match v {
                            Value::Text(v) => b.push_bind(v),
                            Value::Int(v) => b.push_bind(v),
                            Value::Blob(v) => b.push_bind(v),
                        };
                    }
                });
                qb.build().execute(&mut *tx).await?;
                copied += n;
                progress(table.name, copied);
            }
            if row.is_none() {
                break;
            }
        }
        match table.name {
            "studies" => report.studies = copied,
            "series" => report.series = copied,
            "instances" => report.instances = copied,
            "users" => report.users = copied,
            "api_tokens" => report.tokens = copied,
            "audit_events" => report.audit_events = copied,
            "change_feed" => report.changes = copied,
            "share_links" => report.shares = copied,
            // Tombstones and webhook cursors travel without a count of their own.
            _ => {}
        }
    }
    T::after_copy(&mut tx).await?;
    tx.commit().await?;
    source.rollback().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aina_dicomweb::qido::{IncludeFields, QidoQuery, QueryLevel};

    use super::{CopyReport, SqlIndex, TABLES, copy_index};
    use crate::auth::accounts::{Accounts, NewSession, NewToken};
    use crate::auth::audit::{Action, AuditEvent, AuditFilter, AuditLog, Outcome};
    use crate::auth::{Method, Role};
    use crate::index::postgres::PgIndex;
    use crate::index::sqlite::SqliteIndex;
    use crate::index::tests::{finish, ins, rec};
    use crate::index::{ConflictPolicy, Index, InsertOutcome, Scope};
    use crate::testing::TestDatabase;

    /// An archive with several studies, a superseded version, Cyrillic names
    /// and absent values.
    async fn fill(index: &dyn Index) {
        for s in 1..=3 {
            for se in 1..=2 {
                for i in 1..=3 {
                    let mut r = rec(
                        &format!("{s}"),
                        &format!("{s}.{se}"),
                        &format!("{s}.{se}.{i}"),
                    );
                    r.study.patient_name = Some(format!("Иванов^Сергей{s}"));
                    r.instance_number = if i == 3 { None } else { Some(i) };
                    r.series.modality = Some(if se == 1 { "MG" } else { "CR" }.to_owned());
                    ins(index, r).await;
                }
            }
        }
        let mut v2 = rec("1", "1.1", "1.1.1");
        v2.sha256 = "v2".to_owned();
        let outcome = index
            .insert_instance(&finish(v2), ConflictPolicy::KeepBoth)
            .await
            .unwrap();
        assert!(matches!(outcome, InsertOutcome::ConflictKeptBoth { .. }));
    }

    /// Everything the archive answers, at every level.
    async fn answers(index: &dyn Index) -> Vec<String> {
        let mut out = Vec::new();
        for level in [QueryLevel::Study, QueryLevel::Series, QueryLevel::Instance] {
            let q = QidoQuery {
                level,
                matches: vec![],
                include: IncludeFields::All,
                limit: 1000,
                offset: 0,
                fuzzy: false,
            };
            let rows = index.search(&q, &Scope::default()).await.unwrap().rows;
            out.extend(rows.iter().map(|r| serde_json::to_string(r).unwrap()));
        }
        for s in 1..=3 {
            let scope = Scope {
                study: Some(format!("{s}")),
                ..Scope::default()
            };
            out.extend(
                index
                    .instances(&scope)
                    .await
                    .unwrap()
                    .iter()
                    .map(|i| format!("{i:?}")),
            );
            out.extend(index.metadata(&scope).await.unwrap());
        }
        out.extend(
            index
                .objects(None, 1000)
                .await
                .unwrap()
                .iter()
                .map(|o| format!("{o:?}")),
        );
        out
    }

    async fn check_copy(from: &dyn Index, to: &dyn Index, report: CopyReport) {
        assert_eq!(
            report,
            CopyReport {
                studies: 3,
                series: 6,
                instances: 19,
                // One feed entry per instance stored.
                changes: 19,
                ..Default::default()
            }
        );
        assert_eq!(answers(from).await, answers(to).await);
        // New instances continue after the copied ids, and the copy is a working
        // index (the keep-both history carried over).
        ins(to, rec("4", "4.1", "4.1.1")).await;
        let mut v3 = rec("1", "1.1", "1.1.1");
        v3.sha256 = "v3".to_owned();
        let outcome = to
            .insert_instance(&finish(v3), ConflictPolicy::KeepBoth)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            InsertOutcome::ConflictKeptBoth {
                previous_sha256: "v2".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn sqlite_to_sqlite() {
        let from = SqliteIndex::open("sqlite::memory:").await.unwrap();
        fill(&from).await;
        let to = SqliteIndex::open("sqlite::memory:").await.unwrap();
        let report = copy_index(&from, &to, |_, _| {}).await.unwrap();
        check_copy(&from, &to, report).await;
        // A second migration into the same target is refused, nothing changed.
        let before = answers(&to).await;
        let err = copy_index(&from, &to, |_, _| {}).await.unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(answers(&to).await, before);
    }

    /// A source that is not there is an error naming it, never a new empty
    /// index copied over; an unknown scheme is refused.
    #[tokio::test]
    async fn missing_source_or_unknown_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sqlite://{}/none.db", dir.path().display());
        let to = format!("sqlite://{}/to.db", dir.path().display());
        let err = super::migrate(&missing, &to, |_, _| {}).await.unwrap_err();
        assert!(err.to_string().contains("no SQLite index at"), "{err}");
        assert!(
            !dir.path().join("none.db").exists(),
            "the source was not created"
        );
        let err = super::migrate("mysql://x/y", &to, |_, _| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("sqlite:// or postgres://"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn sqlite_to_postgres_and_back() {
        let Some(db) = TestDatabase::create("index migration").await else {
            return;
        };
        let from = SqliteIndex::open("sqlite::memory:").await.unwrap();
        fill(&from).await;
        let pg = PgIndex::open(db.url()).await.unwrap();
        let report = copy_index(&from, &pg, |_, _| {}).await.unwrap();
        assert_eq!(answers(&from).await, answers(&pg).await);
        let back = SqliteIndex::open("sqlite::memory:").await.unwrap();
        copy_index(&pg, &back, |_, _| {}).await.unwrap();
        assert_eq!(answers(&pg).await, answers(&back).await);
        check_copy(&from, &pg, report).await;
        pg.close().await;
    }

    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

    fn audit_event(actor: &str, study: &str) -> AuditEvent {
        AuditEvent {
            time_ms: crate::index::sql::now_ms(),
            actor: actor.to_owned(),
            role: Some(Role::Reader),
            method: Method::Token,
            source: "10.1.2.3".to_owned(),
            action: Action::Retrieve,
            outcome: Outcome::Success,
            status: Some(200),
            patient_id: None,
            study_uid: Some(study.to_owned()),
            series_uid: None,
            sop_uid: None,
            detail: Some("GET /dicomweb/studies/1".to_owned()),
        }
    }

    /// A user with a live session, a token, and audit events (one filled in
    /// with its study's patient).
    async fn fill_accounts<DB>(index: &SqlIndex<DB>) -> (NewSession, NewToken)
    where
        SqlIndex<DB>: Accounts + AuditLog,
        DB: sqlx::Database,
    {
        index
            .create_user("dr.aliya", Role::Reader, "correct horse battery")
            .await
            .unwrap();
        let session = index
            .login("dr.aliya", "correct horse battery", DAY)
            .await
            .unwrap()
            .unwrap();
        let token = index
            .create_token("pacs-bridge", Role::Ingest, DAY)
            .await
            .unwrap();
        index
            .append(&[audit_event("dr.aliya", "1"), audit_event("MAMMO1", "9")])
            .await
            .unwrap();
        (session, token)
    }

    /// Users, tokens and the audit log (sequence numbers and all) are copied;
    /// sessions are not, so everyone signs in again; the target's audit log
    /// goes on after the copied events.
    async fn check_accounts<S, T>(
        from: &SqlIndex<S>,
        to: &SqlIndex<T>,
        report: &CopyReport,
        (session, token): &(NewSession, NewToken),
    ) where
        SqlIndex<S>: Accounts + AuditLog,
        SqlIndex<T>: Accounts + AuditLog,
        S: sqlx::Database,
        T: sqlx::Database,
    {
        assert_eq!(
            (report.users, report.tokens, report.audit_events),
            (1, 1, 2)
        );
        assert_eq!(to.users().await.unwrap(), from.users().await.unwrap());
        assert_eq!(to.tokens().await.unwrap(), from.tokens().await.unwrap());
        let copied = to.search(&AuditFilter::default()).await.unwrap();
        assert_eq!(copied, from.search(&AuditFilter::default()).await.unwrap());
        assert_eq!(copied.len(), 2);
        assert!(
            copied[0].event.patient_id.is_some(),
            "filled in on the source"
        );
        assert!(from.session(&session.cookie).await.unwrap().is_some());
        assert!(
            to.session(&session.cookie).await.unwrap().is_none(),
            "sessions stay behind"
        );
        let principal = to.check_token(&token.token).await.unwrap().unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.role),
            ("pacs-bridge", Role::Ingest)
        );
        assert!(
            to.login("dr.aliya", "correct horse battery", DAY)
                .await
                .unwrap()
                .is_some(),
            "the password hash works on the target"
        );
        to.append(&[audit_event("dr.aliya", "1")]).await.unwrap();
        let after = to.search(&AuditFilter::default()).await.unwrap();
        assert_eq!(after.len(), 3);
        assert!(
            after[2].seq > copied[1].seq,
            "new events after the copied ones"
        );
    }

    #[tokio::test]
    async fn accounts_and_audit_log_travel_sessions_stay() {
        let from = SqliteIndex::open("sqlite::memory:").await.unwrap();
        fill(&from).await;
        let filled = fill_accounts(&from).await;
        let to = SqliteIndex::open("sqlite::memory:").await.unwrap();
        let report = copy_index(&from, &to, |_, _| {}).await.unwrap();
        check_accounts(&from, &to, &report, &filled).await;

        let Some(db) = TestDatabase::create("accounts migration").await else {
            return;
        };
        let pg = PgIndex::open(db.url()).await.unwrap();
        let report = copy_index(&from, &pg, |_, _| {}).await.unwrap();
        check_accounts(&from, &pg, &report, &filled).await;
        // And back, from PostgreSQL (with the event appended there).
        let back = SqliteIndex::open("sqlite::memory:").await.unwrap();
        let report = copy_index(&pg, &back, |_, _| {}).await.unwrap();
        assert_eq!(report.audit_events, 3);
        assert_eq!(
            AuditLog::search(&back, &AuditFilter::default())
                .await
                .unwrap(),
            AuditLog::search(&pg, &AuditFilter::default())
                .await
                .unwrap()
        );
        pg.close().await;
    }

    /// The column lists here are those of both schemas: a column added by a
    /// later migration and forgotten here would be lost in a migration.
    #[tokio::test]
    async fn columns_match_the_schema() {
        let check = |table: &super::Table, actual: Vec<String>| {
            let actual: BTreeSet<String> = actual.into_iter().collect();
            let listed: BTreeSet<String> =
                table.columns.iter().map(|(c, _)| (*c).to_owned()).collect();
            assert_eq!(actual, listed, "columns of {}", table.name);
        };
        let sqlite = SqliteIndex::open("sqlite::memory:").await.unwrap();
        for table in TABLES {
            let actual = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{}')",
                table.name
            )))
            .fetch_all(&sqlite.reader)
            .await
            .unwrap();
            check(table, actual);
        }
        let Some(db) = TestDatabase::create("index migration columns").await else {
            return;
        };
        let pg = PgIndex::open(db.url()).await.unwrap();
        for table in TABLES {
            let actual = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
            )
            .bind(table.name)
            .fetch_all(&pg.reader)
            .await
            .unwrap();
            check(table, actual);
        }
        pg.close().await;
    }
}
