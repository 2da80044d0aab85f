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

/// Reading connections per node: QIDO, WADO lookups, readiness. Separate from
/// the writers, so ingest waiting on a study's lock never starves a search or
/// the load balancer's probe.
const READERS: u32 = 12;
/// Writing connections per node. A writer may wait on another node's lock for
/// the same study; more writers than this queue in the pool instead. Twenty
/// connections per node keeps four nodes inside PostgreSQL's default
/// `max_connections` of 100.
const WRITERS: u32 = 8;
/// Set on every connection:
/// - a writer waits at most a minute for a lock (a stuck session elsewhere
///   fails one ingest, which the sender retries, instead of blocking the study
///   on every node), and a transaction left idle is ended;
/// - every statement is planned for its values. sqlx prepares statements, and
///   after five runs PostgreSQL may switch to a generic plan, which for a name
///   prefix such as `ахм*` cannot know how many studies match and sorts them
///   all: 44 ms instead of 0.9 ms at 100,000 studies (docs/benchmarks.md).
const SESSION_SETTINGS: [(&str, &str); 3] = [
    ("lock_timeout", "60s"),
    ("idle_in_transaction_session_timeout", "60s"),
    ("plan_cache_mode", "force_custom_plan"),
];
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL index.
pub type PgIndex = SqlIndex<Postgres>;

impl SqlIndex<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host/db`)
    /// and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, IndexError> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("aina")
            .options(SESSION_SETTINGS);
        let writer = PgPoolOptions::new()
            .max_connections(WRITERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&writer)
            .await
            .map_err(IndexError::Migrate)?;
        let reader = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(SqlIndex { writer, reader })
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
    /// READ COMMITTED whatever the server's default: each statement sees
    /// what committed before it, which the change feed's `MAX(seq) + 1`
    /// under its lock relies on.
    async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
    }

    async fn begin_snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
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
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('audit_events', 'seq'), \
             COALESCE(MAX(seq), 0) + 1, false) FROM audit_events",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Serialisation failure, deadlock (two writers moving instances between
    /// studies in opposite directions), and, defensively, a unique violation
    /// (a writer that shared no lock with us took the key first; run again, we
    /// see its row). A lock timeout is not retried: it already waited long.
    fn retryable(error: &sqlx::Error) -> bool {
        error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01" | "23505"))
    }
}
