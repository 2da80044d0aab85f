//! SQLite implementation of [`super::Index`]: the embedded default (one file next to the
//! objects).
//!
//! Owns: connection settings (WAL, `synchronous=FULL` so a committed row is
//! durable before ingest answers success, busy timeout, foreign keys), the
//! split into one writer connection and a few readers, and migrations from
//! `migrations/sqlite`. The transactions and queries are `sql`'s, shared with
//! PostgreSQL.
//!
//! SQLite has one writer. Writes go through a pool of exactly one connection, so
//! concurrent ingest queues in-process instead of spinning on `SQLITE_BUSY`, and
//! each write transaction starts with `BEGIN IMMEDIATE`, so it takes the write
//! lock up front (a deferred transaction that reads then writes can fail with
//! `SQLITE_BUSY` without waiting if another process wrote meanwhile).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::IndexError;
use super::sql::{Dialect, SqlIndex};

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection; generous because ingest
/// bursts queue on the single writer.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Readers: WAL lets them run beside the writer; more than a few buys nothing on
/// small machines, as SQLite work runs on one thread per connection.
const READERS: u32 = 4;

/// The SQLite index: the writer pool has exactly one connection; readers are
/// the writer pool itself for in-memory databases, which exist per connection.
pub type SqliteIndex = SqlIndex<Sqlite>;

impl SqlIndex<Sqlite> {
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
        Ok(SqlIndex { writer, reader })
    }
}

impl Dialect for Sqlite {
    async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// In WAL mode a read transaction sees the database as of its first read.
    async fn begin_snapshot(
        pool: &SqlitePool,
    ) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin().await
    }

    /// Nothing to do: `BEGIN IMMEDIATE` on the one writer connection already
    /// serialises every write transaction, within and across processes.
    async fn lock(
        _tx: &mut Transaction<'static, Sqlite>,
        _keys: &[String],
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Nothing to do: AUTOINCREMENT remembers the largest id inserted.
    async fn after_copy(_tx: &mut Transaction<'static, Sqlite>) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Writers never collide: the write lock is taken up front and waited for.
    fn retryable(_error: &sqlx::Error) -> bool {
        false
    }
}
