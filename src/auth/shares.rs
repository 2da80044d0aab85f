//! Share links: read-only access to one study for whoever holds the link, for
//! a chart or a referral letter. A link expires (1 minute to 90 days) and can
//! be revoked; what it is used for is audited under its id like any other
//! principal's requests (`http::auth`).
//!
//! The token `ainas_<id>_<secret>` is shown once when the link is made; the
//! database keeps the secret's SHA-256 only (table `share_links`, migration
//! 0004).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::accounts::{AccountError, millis, random_hex, same_digest, sha256_hex};
use crate::index::IndexError;
use crate::index::sql::{Dialect, SqlIndex, now_ms};

/// Shortest and longest life of a link.
pub const SHARE_LIFETIME: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(90 * 86_400);
/// `last_used_at` is written at most this often per link.
const TOUCH_MS: i64 = 60_000;
/// The token's prefix (API tokens are `aina_`).
pub const SHARE_PREFIX: &str = "ainas_";

/// A share link, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareInfo {
    pub id: String,
    pub study_instance_uid: String,
    /// Who made it: `method:name` (`session:dr.aliya`, `token:ehr`,
    /// `oidc:<subject>`).
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
}

/// A link just made: `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewShare {
    pub token: String,
    pub info: ShareInfo,
}

/// Share links.
#[async_trait]
pub trait Shares: Send + Sync + 'static {
    async fn create_share(
        &self,
        study: &str,
        created_by: &str,
        lifetime: Duration,
        note: Option<&str>,
    ) -> Result<NewShare, AccountError>;
    /// Links, newest first: of one study, of one creator, or all.
    async fn shares(
        &self,
        study: Option<&str>,
        created_by: Option<&str>,
    ) -> Result<Vec<ShareInfo>, AccountError>;
    async fn share(&self, id: &str) -> Result<Option<ShareInfo>, AccountError>;
    /// Revokes a link; `false` when there is none or it was revoked already.
    async fn revoke_share(&self, id: &str) -> Result<bool, AccountError>;
    /// The link a token opens; `None` when malformed, unknown, expired or
    /// revoked.
    async fn check_share(&self, token: &str) -> Result<Option<ShareInfo>, AccountError>;
}

/// The id and secret of a well-formed share token.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(SHARE_PREFIX)?.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

fn info_of<R: Row>(r: &R) -> Result<ShareInfo, IndexError>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ShareInfo {
        id: r.try_get("id")?,
        study_instance_uid: r.try_get("study_instance_uid")?,
        created_by: r.try_get("created_by")?,
        note: r.try_get("note")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
        last_used_at_ms: r.try_get("last_used_at")?,
    })
}

const COLUMNS: &str = "id, study_instance_uid, created_by, note, created_at, expires_at, \
                       revoked_at, last_used_at";

#[async_trait]
impl<DB> Shares for SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    async fn create_share(
        &self,
        study: &str,
        created_by: &str,
        lifetime: Duration,
        note: Option<&str>,
    ) -> Result<NewShare, AccountError> {
        if !SHARE_LIFETIME.contains(&lifetime) {
            return Err(AccountError::Invalid(
                "a share link lives from 1 minute to 90 days".into(),
            ));
        }
        if note.is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control)) {
            return Err(AccountError::Invalid(
                "a share link's note is at most 200 printable characters".into(),
            ));
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        let now = now_ms();
        let info = ShareInfo {
            id: id.clone(),
            study_instance_uid: study.to_owned(),
            created_by: created_by.to_owned(),
            note: note.map(str::to_owned),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(millis(lifetime)),
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        sqlx::query(
            "INSERT INTO share_links (id, secret_sha256, study_instance_uid, created_by, note, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(sha256_hex(&secret))
        .bind(study)
        .bind(created_by)
        .bind(info.note.clone())
        .bind(now)
        .bind(info.expires_at_ms)
        .execute(&self.writer)
        .await
        .map_err(IndexError::from)?;
        Ok(NewShare {
            token: format!("{SHARE_PREFIX}{id}_{secret}"),
            info,
        })
    }

    async fn shares(
        &self,
        study: Option<&str>,
        created_by: Option<&str>,
    ) -> Result<Vec<ShareInfo>, AccountError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM share_links \
             WHERE ($1 IS NULL OR study_instance_uid = $1) AND ($2 IS NULL OR created_by = $2) \
             ORDER BY created_at DESC, id LIMIT 1000"
        )))
        .bind(study.map(str::to_owned))
        .bind(created_by.map(str::to_owned))
        .fetch_all(&self.reader)
        .await
        .map_err(IndexError::from)?;
        Ok(rows.iter().map(info_of).collect::<Result<_, _>>()?)
    }

    async fn share(&self, id: &str) -> Result<Option<ShareInfo>, AccountError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM share_links WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        Ok(row.as_ref().map(info_of).transpose()?)
    }

    async fn revoke_share(&self, id: &str) -> Result<bool, AccountError> {
        let revoked = sqlx::query(
            "UPDATE share_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             RETURNING id",
        )
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        Ok(revoked.is_some())
    }

    async fn check_share(&self, token: &str) -> Result<Option<ShareInfo>, AccountError> {
        let Some((id, secret)) = parse_token(token) else {
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, secret_sha256 FROM share_links WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(IndexError::from)?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("secret_sha256").map_err(IndexError::from)?;
        let info = info_of(&row)?;
        let now = now_ms();
        if !same_digest(&stored, &sha256_hex(secret))
            || info.expires_at_ms <= now
            || info.revoked_at_ms.is_some()
        {
            return Ok(None);
        }
        if info.last_used_at_ms.is_none_or(|t| now - t >= TOUCH_MS) {
            sqlx::query("UPDATE share_links SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(IndexError::from)?;
        }
        Ok(Some(info))
    }
}
