//! Local users (Argon2id password hashes), API tokens and viewer sessions,
//! kept in the index database (migration 0002).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{Principal, Role};
use crate::index::IndexError;
use crate::index::sql::{Dialect, SqlIndex, now_ms};

/// Errors of account management, classified by what the caller can do.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// A bad user name, password, token name or lifetime, with the reason.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A local user, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at_ms: i64,
}

/// An API token, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
}

/// A token just created: `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub info: TokenInfo,
}

/// A session just opened by a login.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session cookie's value (random; the database keeps its SHA-256).
    pub cookie: String,
    /// The CSRF token state-changing requests of this session must carry.
    pub csrf: String,
    pub principal: Principal,
    pub expires_at_ms: i64,
}

/// Users, tokens and sessions.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn create_user(
        &self,
        username: &str,
        role: Role,
        password: &str,
    ) -> Result<(), AccountError>;
    /// A new password also ends the user's sessions.
    async fn set_password(&self, username: &str, password: &str) -> Result<(), AccountError>;
    async fn set_role(&self, username: &str, role: Role) -> Result<(), AccountError>;
    /// Disabling a user also ends the user's sessions.
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), AccountError>;
    async fn users(&self) -> Result<Vec<User>, AccountError>;
    /// Checks a password and opens a session; `None` for an unknown user, a
    /// wrong password or a disabled user (the same work in every case, so
    /// timing does not tell which).
    async fn login(
        &self,
        username: &str,
        password: &str,
        lifetime: Duration,
    ) -> Result<Option<NewSession>, AccountError>;
    /// The principal and CSRF token of a live session; `None` when unknown,
    /// expired, or its user is disabled.
    async fn session(&self, cookie: &str) -> Result<Option<(Principal, String)>, AccountError>;
    async fn logout(&self, cookie: &str) -> Result<(), AccountError>;
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<NewToken, AccountError>;
    async fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError>;
    /// Revokes the token with this id, or every token with this name: how many.
    async fn revoke_token(&self, id_or_name: &str) -> Result<usize, AccountError>;
    /// The principal of a valid token; `None` when malformed, unknown,
    /// expired or revoked.
    async fn check_token(&self, token: &str) -> Result<Option<Principal>, AccountError>;
}

/// Fewest characters in a password: long passphrases beat complex short ones.
const MIN_PASSWORD_CHARS: usize = 10;
/// Most bytes of a password (Argon2 accepts more; nobody types more).
const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest and longest token lifetime.
const TOKEN_LIFETIME: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(86_400)..=Duration::from_secs(5 * 366 * 86_400);
/// `last_used_at` is written at most this often per token.
const TOKEN_TOUCH_MS: i64 = 60_000;

fn check_username(name: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(
            "a user name is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '@', '-'".into(),
        ))
    }
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "a password may have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Argon2id with the crate's defaults (RFC 9106's second recommended
/// parameter set: 19 MiB, 2 passes), on a blocking thread: tens of
/// milliseconds of CPU that must not stall the async workers.
async fn hash_password(password: &str) -> Result<String, AccountError> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| AccountError::Invalid(format!("password hashing stopped: {e}")))?
}

/// Whether `password` matches the PHC string `hash`; a malformed hash never matches.
async fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches, verified against when the user is unknown or
/// disabled so that the answer takes as long as for a real user.
async fn dummy_hash() -> &'static str {
    static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    HASH.get_or_init(|| async {
        hash_password(&random_hex(32))
            .await
            .unwrap_or_else(|_| String::new())
    })
    .await
}

/// `n` random bytes from the operating system's generator, as hex.
/// `n` random bytes from the operating system, as hex.
pub(crate) fn random_hex(n: usize) -> String {
    use rand::TryRngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    hex::encode(bytes)
}

/// Digests of equal length compared whole, not up to the first difference.
pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn role_of(stored: &str) -> Result<Role, AccountError> {
    stored
        .parse()
        .map_err(|e: String| AccountError::Index(IndexError::Invalid(e)))
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl<DB> Accounts for SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    async fn create_user(
        &self,
        username: &str,
        role: Role,
        password: &str,
    ) -> Result<(), AccountError> {
        check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO users (username, role, password_hash, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (username) DO NOTHING RETURNING username",
        )
        .bind(username)
        .bind(role.as_str())
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        if inserted.is_none() {
            return Err(AccountError::Exists(username.to_owned()));
        }
        Ok(())
    }

    async fn set_password(&self, username: &str, password: &str) -> Result<(), AccountError> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        let changed = sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3 \
             RETURNING username",
        )
        .bind(hash)
        .bind(now_ms())
        .bind(username)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        if changed.is_none() {
            return Err(AccountError::NoSuchUser(username.to_owned()));
        }
        // A new password ends the sessions opened with the old one.
        sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username)
            .execute(&self.writer)
            .await
            .map_err(IndexError::from)?;
        Ok(())
    }

    async fn set_role(&self, username: &str, role: Role) -> Result<(), AccountError> {
        let changed = sqlx::query(
            "UPDATE users SET role = $1, updated_at = $2 WHERE username = $3 RETURNING username",
        )
        .bind(role.as_str())
        .bind(now_ms())
        .bind(username)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        if changed.is_none() {
            return Err(AccountError::NoSuchUser(username.to_owned()));
        }
        Ok(())
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), AccountError> {
        let changed = sqlx::query(
            "UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3 RETURNING username",
        )
        .bind(i64::from(disabled))
        .bind(now_ms())
        .bind(username)
        .fetch_optional(&self.writer)
        .await
        .map_err(IndexError::from)?;
        if changed.is_none() {
            return Err(AccountError::NoSuchUser(username.to_owned()));
        }
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE username = $1")
                .bind(username)
                .execute(&self.writer)
                .await
                .map_err(IndexError::from)?;
        }
        Ok(())
    }

    async fn users(&self) -> Result<Vec<User>, AccountError> {
        let rows =
            sqlx::query("SELECT username, role, disabled, created_at FROM users ORDER BY username")
                .fetch_all(&self.reader)
                .await
                .map_err(IndexError::from)?;
        rows.iter()
            .map(|r| {
                Ok(User {
                    username: r.try_get("username").map_err(IndexError::from)?,
                    role: role_of(&r.try_get::<String, _>("role").map_err(IndexError::from)?)?,
                    disabled: r.try_get::<i64, _>("disabled").map_err(IndexError::from)? != 0,
                    created_at_ms: r.try_get("created_at").map_err(IndexError::from)?,
                })
            })
            .collect()
    }

    async fn login(
        &self,
        username: &str,
        password: &str,
        lifetime: Duration,
    ) -> Result<Option<NewSession>, AccountError> {
        let row = if check_username(username).is_ok() && password.len() <= MAX_PASSWORD_BYTES {
            sqlx::query("SELECT role, password_hash, disabled FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.writer)
                .await
                .map_err(IndexError::from)?
        } else {
            None
        };
        let user = match &row {
            Some(r) => Some((
                r.try_get::<String, _>("role").map_err(IndexError::from)?,
                r.try_get::<String, _>("password_hash")
                    .map_err(IndexError::from)?,
                r.try_get::<i64, _>("disabled").map_err(IndexError::from)? != 0,
            )),
            None => None,
        };
        let (role, hash, disabled) = match user {
            Some(u) => u,
            None => (String::new(), dummy_hash().await.to_owned(), true),
        };
        // An over-long password cannot be anyone's (it was looked up as no
        // user): verify an empty one instead, the same work, rather than cut
        // it, which could split a character.
        let password = if password.len() <= MAX_PASSWORD_BYTES {
            password
        } else {
            ""
        };
        if !verify_password(password, &hash).await || disabled {
            return Ok(None);
        }
        let role = role_of(&role)?;
        let cookie = random_hex(32);
        let csrf = random_hex(32);
        let now = now_ms();
        let expires_at_ms = now.saturating_add(millis(lifetime));
        sqlx::query(
            "INSERT INTO sessions (id_sha256, username, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sha256_hex(&cookie))
        .bind(username)
        .bind(&csrf)
        .bind(now)
        .bind(expires_at_ms)
        .execute(&self.writer)
        .await
        .map_err(IndexError::from)?;
        // Sessions that ran out are cleared as new ones open.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(IndexError::from)?;
        Ok(Some(NewSession {
            cookie,
            csrf,
            principal: Principal {
                name: username.to_owned(),
                role,
                method: super::Method::Session,
            },
            expires_at_ms,
        }))
    }

    async fn session(&self, cookie: &str) -> Result<Option<(Principal, String)>, AccountError> {
        if cookie.len() != 64 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT s.username, s.csrf_token, u.role FROM sessions s \
             JOIN users u ON u.username = s.username \
             WHERE s.id_sha256 = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(sha256_hex(cookie))
        .bind(now_ms())
        .fetch_optional(&self.reader)
        .await
        .map_err(IndexError::from)?;
        let Some(row) = row else { return Ok(None) };
        let role = role_of(&row.try_get::<String, _>("role").map_err(IndexError::from)?)?;
        Ok(Some((
            Principal {
                name: row.try_get("username").map_err(IndexError::from)?,
                role,
                method: super::Method::Session,
            },
            row.try_get("csrf_token").map_err(IndexError::from)?,
        )))
    }

    async fn logout(&self, cookie: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(cookie))
            .execute(&self.writer)
            .await
            .map_err(IndexError::from)?;
        Ok(())
    }

    async fn create_token(
        &self,
        name: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<NewToken, AccountError> {
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AccountError::Invalid(
                "a token name is 1 to 64 printable characters".into(),
            ));
        }
        if !TOKEN_LIFETIME.contains(&lifetime) {
            return Err(AccountError::Invalid(
                "a token lives from 1 day to 5 years".into(),
            ));
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        let now = now_ms();
        let info = TokenInfo {
            id: id.clone(),
            name: name.to_owned(),
            role,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(millis(lifetime)),
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(sha256_hex(&secret))
        .bind(now)
        .bind(info.expires_at_ms)
        .execute(&self.writer)
        .await
        .map_err(IndexError::from)?;
        Ok(NewToken {
            token: format!("aina_{id}_{secret}"),
            info,
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, expires_at, revoked_at, last_used_at \
             FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(IndexError::from)?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| r.try_get::<i64, _>(c).map_err(IndexError::from);
                let opt = |c: &str| r.try_get::<Option<i64>, _>(c).map_err(IndexError::from);
                Ok(TokenInfo {
                    id: r.try_get("id").map_err(IndexError::from)?,
                    name: r.try_get("name").map_err(IndexError::from)?,
                    role: role_of(&r.try_get::<String, _>("role").map_err(IndexError::from)?)?,
                    created_at_ms: get("created_at")?,
                    expires_at_ms: get("expires_at")?,
                    revoked_at_ms: opt("revoked_at")?,
                    last_used_at_ms: opt("last_used_at")?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, id_or_name: &str) -> Result<usize, AccountError> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE (id = $2 OR name = $2) AND revoked_at IS NULL RETURNING id",
        )
        .bind(now_ms())
        .bind(id_or_name)
        .fetch_all(&self.writer)
        .await
        .map_err(IndexError::from)?;
        Ok(revoked.len())
    }

    async fn check_token(&self, token: &str) -> Result<Option<Principal>, AccountError> {
        let Some((id, secret)) = token
            .strip_prefix("aina_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(id, 16) || !hex(secret, 64) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT name, role, secret_sha256, expires_at, revoked_at, last_used_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(IndexError::from)?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("secret_sha256").map_err(IndexError::from)?;
        let now = now_ms();
        let expires: i64 = row.try_get("expires_at").map_err(IndexError::from)?;
        let revoked: Option<i64> = row.try_get("revoked_at").map_err(IndexError::from)?;
        let same = same_digest(&stored, &sha256_hex(secret));
        if !same || expires <= now || revoked.is_some() {
            return Ok(None);
        }
        let last: Option<i64> = row.try_get("last_used_at").map_err(IndexError::from)?;
        if last.is_none_or(|t| now - t >= TOKEN_TOUCH_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(IndexError::from)?;
        }
        Ok(Some(Principal {
            name: row.try_get("name").map_err(IndexError::from)?,
            role: role_of(&row.try_get::<String, _>("role").map_err(IndexError::from)?)?,
            method: super::Method::Token,
        }))
    }
}

/// Limits and timings the shared suite (`auth::tests`) does not reach: the
/// password length bound at login, token expiry and the `last_used_at`
/// throttle, on SQLite and, when the environment names a server, PostgreSQL.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// Runs `UPDATE api_tokens SET {column} = $1 WHERE id = $2` on the backend.
    trait SetTokenColumn: AsyncFn(&'static str, i64, &str) {}
    impl<F: AsyncFn(&'static str, i64, &str)> SetTokenColumn for F {}

    async fn limits(accounts: &dyn Accounts, set: impl SetTokenColumn) {
        // The unknown-user path does real Argon2 work: the dummy is a real hash.
        assert!(dummy_hash().await.starts_with("$argon2id$"));

        // 1024 bytes is the most a password may have, counted in bytes.
        let longest = "ж".repeat(MAX_PASSWORD_BYTES / 2);
        accounts
            .create_user("long.pass", Role::Reader, &longest)
            .await
            .unwrap();
        assert!(matches!(
            accounts
                .create_user("longer.pass", Role::Reader, &format!("{longest}x"))
                .await,
            Err(AccountError::Invalid(_))
        ));
        assert!(
            accounts
                .login("long.pass", &longest, DAY)
                .await
                .unwrap()
                .is_some()
        );
        // Over the limit, with byte 1024 inside a character: refused, not a panic.
        for password in [format!("x{longest}"), format!("{longest}x")] {
            for user in ["long.pass", "nobody"] {
                assert!(
                    accounts
                        .login(user, &password, DAY)
                        .await
                        .unwrap()
                        .is_none()
                );
            }
        }

        // A token past its expiry is refused, and listed as it is.
        let t = accounts
            .create_token("modality", Role::Ingest, DAY)
            .await
            .unwrap();
        assert!(accounts.check_token(&t.token).await.unwrap().is_some());
        let last_used = |infos: Vec<TokenInfo>| {
            infos
                .into_iter()
                .find(|i| i.id == t.info.id)
                .and_then(|i| i.last_used_at_ms)
        };
        let first = last_used(accounts.tokens().await.unwrap()).expect("use recorded");
        // Within a minute the use is not written again ...
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(accounts.check_token(&t.token).await.unwrap().is_some());
        assert_eq!(last_used(accounts.tokens().await.unwrap()), Some(first));
        // ... after one it is.
        set("last_used_at", first - TOKEN_TOUCH_MS - 1, &t.info.id).await;
        assert!(accounts.check_token(&t.token).await.unwrap().is_some());
        assert!(last_used(accounts.tokens().await.unwrap()).is_some_and(|at| at >= first));

        set("expires_at", now_ms() - 1, &t.info.id).await;
        assert!(accounts.check_token(&t.token).await.unwrap().is_none());
        let listed = accounts.tokens().await.unwrap();
        assert!(
            listed
                .iter()
                .any(|i| i.id == t.info.id && i.expires_at_ms < now_ms())
        );

        // The longest lifetime is accepted, one second more is not.
        let longest_life = *TOKEN_LIFETIME.end();
        assert!(
            accounts
                .create_token("x", Role::Reader, longest_life)
                .await
                .is_ok()
        );
        assert!(matches!(
            accounts
                .create_token("x", Role::Reader, longest_life + Duration::from_secs(1))
                .await,
            Err(AccountError::Invalid(_))
        ));
        assert!(matches!(
            accounts.create_token("bad\nname", Role::Reader, DAY).await,
            Err(AccountError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn limits_on_sqlite() {
        let db = crate::index::sqlite::SqliteIndex::open("sqlite::memory:")
            .await
            .unwrap();
        let set = async |column: &'static str, value: i64, id: &str| {
            let sql = format!("UPDATE api_tokens SET {column} = $1 WHERE id = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .bind(id)
                .execute(&db.writer)
                .await
                .unwrap();
        };
        limits(&db, set).await;
    }

    #[tokio::test]
    async fn limits_on_postgres() {
        let Some(test_db) = crate::testing::TestDatabase::create("account limits").await else {
            return;
        };
        let db = crate::index::postgres::PgIndex::open(test_db.url())
            .await
            .unwrap();
        let set = async |column: &'static str, value: i64, id: &str| {
            let sql = format!("UPDATE api_tokens SET {column} = $1 WHERE id = $2");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .bind(id)
                .execute(&db.writer)
                .await
                .unwrap();
        };
        limits(&db, set).await;
        db.close().await;
    }
}
