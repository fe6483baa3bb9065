//! A fresh, private database for one test: an SQLite file in a temporary directory, or a new
//! PostgreSQL database created through an admin connection and dropped when the value is dropped
//! (also when the test panics).
//!
//! PostgreSQL comes from `FRONTDESK_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it is unreachable, [`TestDatabase::postgres`]
//! returns `None` after printing a `SKIPPED` line, unless `FRONTDESK_REQUIRE_POSTGRES=1` (set by
//! `.ci/run` and `scripts/test`), in which case it panics: a CI run must never pass because the
//! PostgreSQL half of the suite silently did not run.
//!
//! Shared by the unit tests (`src/store/tests.rs`, through `#[path]`) and the integration tests,
//! so it only uses sqlx, tempfile and uuid, never frontdesk itself.

#![allow(dead_code)]

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The default admin URL of the test PostgreSQL server.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new SQLite file in a new temporary directory.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("frontdesk.db").display());
        TestDatabase {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A new PostgreSQL database `fd_test_<uuid>`, or `None` (test skipped) when PostgreSQL is
    /// unreachable and not required.
    pub async fn postgres(test: &str) -> Option<TestDatabase> {
        let admin_url = std::env::var("FRONTDESK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
        let required = std::env::var("FRONTDESK_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        let mut admin = match connect(&admin_url).await {
            Ok(connection) => connection,
            Err(error) if required => panic!(
                "PostgreSQL is required (FRONTDESK_REQUIRE_POSTGRES=1) but {admin_url} is unreachable: {error}"
            ),
            Err(error) => {
                eprintln!(
                    "SKIPPED {test} on PostgreSQL: {admin_url} is unreachable ({error}); start PostgreSQL or set FRONTDESK_TEST_POSTGRES_URL (scripts/test does both)"
                );
                return None;
            }
        };
        let name = format!("fd_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name} on {admin_url}: {error}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("FRONTDESK_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(TestDatabase {
            url: url.to_string(),
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// The URL to give frontdesk (`database.url`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return;
        };
        // Best effort, on a thread of its own: Drop cannot await, and this may run inside (or
        // after) the test's runtime. WITH (FORCE) ends connections a pool still holds.
        let (admin_url, database) = (admin_url.clone(), name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut admin = connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|error| error.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("warning: could not drop test database {name}: {error}");
        }
    }
}

/// Sessions of `monitor`'s database other than its own that wait for a lock (a table, a row,
/// an advisory lock).
pub async fn lock_waiters(monitor: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND wait_event_type = 'Lock' \
         AND pid <> pg_backend_pid()",
    )
    .fetch_one(monitor)
    .await
    .expect("count lock waiters")
}

/// Waits (polling, bounded) until `count` sessions wait for a lock; fails at once if one of
/// `tasks` ended instead of waiting. The barrier of the tests that hold a lock while concurrent
/// work piles up behind it, then release it at once.
pub async fn until_waiting<T>(
    monitor: &mut sqlx::PgConnection,
    count: i64,
    tasks: &[&tokio::task::JoinHandle<T>],
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lock_waiters(monitor).await < count {
        assert!(
            !tasks.iter().any(|task| task.is_finished()),
            "a task ended before reaching the lock"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{count} sessions never waited for the held lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
