//! PostgreSQL implementation of [`super::Index`]: the index for archives that
//! outgrow one machine, shared by any number of `aina serve` nodes.
//!
//! Owns: the connection pool, migrations from `migrations/postgres` (sqlx takes
//! an advisory lock while migrating, so nodes starting together apply them
//! once), and how writers on several nodes are serialised: each write
//! transaction takes transaction-scoped advisory locks on the SOP Instance UID
//! and the study it writes, so two nodes storing the same instance at once
//! decide it once, and counts recomputed under the study lock see every
//! committed row. The transactions and queries are `sql`'s, shared with SQLite.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::IndexError;
use super::sql::{Dialect, SqlIndex};

/// Connections per node. QIDO and WADO lookups are short; ingest holds one for
/// the length of one instance's transaction. Sixteen per node keeps a few nodes
/// well inside PostgreSQL's default `max_connections` of 100.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL index.
pub type PgIndex = SqlIndex<Postgres>;

impl SqlIndex<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host/db`)
    /// and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, IndexError> {
        let options = PgConnectOptions::from_str(url)?.application_name("aina");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(IndexError::Migrate)?;
        Ok(SqlIndex {
            writer: pool.clone(),
            reader: pool,
        })
    }
}

/// The advisory lock key of a string: the first 8 bytes of its SHA-256. A
/// collision only makes two unrelated writers wait for each other.
fn lock_key(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Dialect for Postgres {
    async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }

    async fn lock(
        tx: &mut Transaction<'static, Postgres>,
        keys: &[String],
    ) -> Result<(), sqlx::Error> {
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(key))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The identity sequence does not see explicitly inserted ids: move it on.
    async fn after_copy(tx: &mut Transaction<'static, Postgres>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('instances', 'id'), \
             COALESCE(MAX(id), 0) + 1, false) FROM instances",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Serialisation failure, deadlock (two writers moving instances between
    /// studies in opposite directions), and a unique violation (a writer that
    /// shared no lock with us took the key first; run again, we see its row).
    fn retryable(error: &sqlx::Error) -> bool {
        error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01" | "23505"))
    }
}
