//! Test support shared by unit tests, integration tests and benchmarks:
//! throwaway PostgreSQL databases and S3 buckets on the servers the environment
//! names (`.ci/run` starts both). Not used by the server itself.
//!
//! - `AINA_TEST_POSTGRES_URL`: a database URL whose user may `CREATE DATABASE`.
//! - `AINA_TEST_S3_ENDPOINT`: an S3 endpoint that creates a bucket on an
//!   unsigned `PUT /bucket` (moto_server); credentials come from
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` as for any S3 store.
//!
//! When a variable is unset, `create` prints `SKIPPED: …` and returns `None`,
//! so a test says plainly that it did not run.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test process or test uses at the same time.
fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}x{}x{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of its own on the test PostgreSQL server, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database, or says the tests of `what` are skipped.
    pub async fn create(what: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("AINA_TEST_POSTGRES_URL") else {
            eprintln!("SKIPPED: AINA_TEST_POSTGRES_URL not set ({what} on PostgreSQL)");
            return None;
        };
        let name = unique_name("aina_test_");
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("AINA_TEST_POSTGRES_URL does not connect: {e}"));
        // The name is ours (digits and letters): nothing to quote.
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        Some(Self { admin, name, url })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime that is shutting down: use a thread with
        // its own. FORCE ends the connections a test left open.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A bucket of its own on the test S3 server. Left behind after the test: the
/// emulator is throwaway, and emptying a bucket first would cost more than it
/// holds.
#[derive(Debug)]
pub struct TestBucket {
    url: String,
}

impl TestBucket {
    /// Creates an empty bucket, or says the tests of `what` are skipped.
    pub async fn create(what: &str) -> Option<Self> {
        let Ok(endpoint) = std::env::var("AINA_TEST_S3_ENDPOINT") else {
            eprintln!("SKIPPED: AINA_TEST_S3_ENDPOINT not set ({what} on S3)");
            return None;
        };
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        // The HTTP client is built without a default TLS provider (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bucket = unique_name("aina-test-");
        let status = reqwest013::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("AINA_TEST_S3_ENDPOINT does not answer: {e}"))
            .status();
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
        Some(Self {
            url: format!("s3://{bucket}?endpoint={endpoint}&path_style=true&allow_http=true"),
        })
    }

    /// The storage URL of the bucket (`s3://…`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_replaces_the_path() {
        assert_eq!(
            super::with_database(
                "postgres://u:p@127.0.0.1:5433/postgres?sslmode=disable",
                "t1"
            ),
            "postgres://u:p@127.0.0.1:5433/t1?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@host", "t2"),
            "postgres://u@host/t2"
        );
    }
}
