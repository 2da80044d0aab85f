//! The change feed: every create, replace and delete of an instance in one
//! total order, for EHRs that poll (`GET /changefeed?since=`) or take
//! webhooks ([`webhooks`]).
//!
//! Entries are written by the index in the same transaction as the change
//! itself (`index::sql`, `append_changes`), numbered `MAX(seq) + 1` under a
//! lock held to commit: numbers appear in order and without gaps on SQLite
//! and PostgreSQL, whichever node wrote them, so a poller that remembers the
//! last number it saw never misses or double-counts a change.

pub mod webhooks;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::auth::audit::rfc3339;
use crate::index::IndexError;
use crate::index::sql::{Dialect, SqlIndex, now_ms};

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A new SOP Instance UID was stored.
    Create,
    /// Different bytes were stored under a SOP Instance UID already served
    /// (the conflict policy keep-both or replace).
    Replace,
    /// The instance is no longer served (DICOMweb DELETE, or `aina verify
    /// --repair` after its object was lost).
    Delete,
}

impl ChangeKind {
    /// The kind's name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Replace => "replace",
            ChangeKind::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Result<Self, IndexError> {
        match s {
            "create" => Ok(ChangeKind::Create),
            "replace" => Ok(ChangeKind::Replace),
            "delete" => Ok(ChangeKind::Delete),
            other => Err(IndexError::Invalid(format!(
                "unknown change kind {other:?}"
            ))),
        }
    }
}

/// One entry of the feed, as served and as POSTed to webhooks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// The entry's place in the feed: 1, 2, 3, … with no gaps.
    pub sequence: i64,
    pub kind: ChangeKind,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// When the change was written (under the feed's lock, by the writing
    /// node's clock), RFC 3339 UTC.
    pub time: String,
}

/// Most entries one read returns.
pub const MAX_LIMIT: u32 = 1000;

/// Reading the feed, and where each webhook's delivery stands.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Entries after `since`, in order, at most `limit`.
    async fn changes(&self, since: i64, limit: u32) -> Result<Vec<Change>, IndexError>;
    /// The newest entry's sequence number (0 when the feed is empty).
    async fn latest(&self) -> Result<i64, IndexError>;
    /// What tells this feed from another: derived from its first entry, so
    /// it stays across `migrate-index` (which copies the entries) and
    /// changes when the index is rebuilt (`aina reindex` into a new
    /// database numbers from 1 again). `None` while the feed is empty.
    async fn feed_id(&self) -> Result<Option<String>, IndexError>;
    /// Takes or renews the delivery lease of a webhook URL for `holder`,
    /// for `lease_ms`, when no other holder has an unexpired one: the last
    /// delivered sequence number, or `None` while another node delivers.
    /// A URL seen for the first time starts at the feed's newest entry.
    async fn claim_webhook(
        &self,
        url: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, IndexError>;
    /// Records delivery up to `seq` and renews the lease, if `holder` still
    /// holds it (`false`: another node took over; stop).
    async fn advance_webhook(
        &self,
        url: &str,
        holder: &str,
        seq: i64,
        lease_ms: i64,
    ) -> Result<bool, IndexError>;
}

#[async_trait]
impl<DB> ChangeFeed for SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
{
    async fn changes(&self, since: i64, limit: u32) -> Result<Vec<Change>, IndexError> {
        let rows = sqlx::query(
            "SELECT seq, kind, study_instance_uid, series_instance_uid, sop_instance_uid, \
             patient_id, time_ms FROM change_feed WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit.min(MAX_LIMIT)))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Change {
                    sequence: r.try_get("seq")?,
                    kind: ChangeKind::parse(&r.try_get::<String, _>("kind")?)?,
                    study_instance_uid: r.try_get("study_instance_uid")?,
                    series_instance_uid: r.try_get("series_instance_uid")?,
                    sop_instance_uid: r.try_get("sop_instance_uid")?,
                    patient_id: r.try_get("patient_id")?,
                    time: rfc3339(r.try_get("time_ms")?),
                })
            })
            .collect()
    }

    async fn latest(&self) -> Result<i64, IndexError> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM change_feed")
            .fetch_one(&self.reader)
            .await?;
        Ok(latest.unwrap_or(0))
    }

    async fn feed_id(&self) -> Result<Option<String>, IndexError> {
        let first: Option<(String, i64)> =
            sqlx::query_as("SELECT sop_instance_uid, time_ms FROM change_feed WHERE seq = 1")
                .fetch_optional(&self.reader)
                .await?;
        Ok(first.map(|(sop, time)| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("{sop}\n{time}").as_bytes());
            hex::encode(&digest[..8])
        }))
    }

    async fn claim_webhook(
        &self,
        url: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, IndexError> {
        let now = now_ms();
        // `WHERE true`: SQLite reads `ON CONFLICT` after a bare `FROM t` as
        // a join constraint.
        sqlx::query(
            "INSERT INTO webhook_cursors (url, seq, updated_at, holder, lease_until) \
             SELECT $1, COALESCE(MAX(seq), 0), $2, NULL, 0 FROM change_feed WHERE true \
             ON CONFLICT (url) DO NOTHING",
        )
        .bind(url)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(sqlx::query_scalar(
            "UPDATE webhook_cursors SET holder = $2, lease_until = $3 \
             WHERE url = $1 AND (holder = $2 OR holder IS NULL OR lease_until < $4) \
             RETURNING seq",
        )
        .bind(url)
        .bind(holder)
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn advance_webhook(
        &self,
        url: &str,
        holder: &str,
        seq: i64,
        lease_ms: i64,
    ) -> Result<bool, IndexError> {
        let now = now_ms();
        let held: Option<String> = sqlx::query_scalar(
            "UPDATE webhook_cursors SET seq = $3, updated_at = $4, lease_until = $5 \
             WHERE url = $1 AND holder = $2 RETURNING url",
        )
        .bind(url)
        .bind(holder)
        .bind(seq)
        .bind(now)
        .bind(now.saturating_add(lease_ms))
        .fetch_optional(&self.writer)
        .await?;
        Ok(held.is_some())
    }
}
