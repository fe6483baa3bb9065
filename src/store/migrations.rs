//! The schema migrations, embedded in the binary.
//!
//! Why not `sqlx::migrate!`: that macro needs sqlx's `macros` feature, which compiles a second
//! copy of sqlx with both database drivers and the bundled SQLite for the compiler itself — about
//! a minute of every clean build, on the critical path of CI (docs/architecture.md). The
//! migrations are read here the way sqlx reads a directory (`<VERSION>_<DESCRIPTION>.sql`,
//! checksum of the file's text, `-- no-transaction` opt-out), so a database migrated by an
//! earlier build sees the same versions and checksums. A unit test compares this list with the
//! directory as sqlx resolves it, so a migration file that is not listed here fails the suite.

use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// One embedded migration file: its name (which carries version and description) and its text.
macro_rules! migration {
    ($backend:literal, $file:literal) => {
        (
            $file,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/",
                $file
            )),
        )
    };
}

const SQLITE_FILES: &[(&str, &str)] = &[
    migration!("sqlite", "0001_initial.sql"),
    migration!("sqlite", "0002_issued_tokens.sql"),
    migration!("sqlite", "0003_admin.sql"),
    migration!("sqlite", "0004_authorization_code.sql"),
    migration!("sqlite", "0005_admin_api_tokens.sql"),
    migration!("sqlite", "0006_user_claims.sql"),
    migration!("sqlite", "0008_admin_sso.sql"),
    migration!("sqlite", "0009_replay_without_rowid.sql"),
    migration!("sqlite", "0010_replay_append_only.sql"),
    migration!("sqlite", "0012_refresh_token_dpop.sql"),
    migration!("sqlite", "0013_authorization_dpop_jkt.sql"),
    migration!("sqlite", "0014_status_list.sql"),
    migration!("sqlite", "0015_issued_token_issuer.sql"),
    migration!("sqlite", "0016_revoked_families.sql"),
    migration!("sqlite", "0017_admin_sso_previous_session.sql"),
    migration!("sqlite", "0018_kill_switch_families.sql"),
];

const POSTGRES_FILES: &[(&str, &str)] = &[
    migration!("postgres", "0001_initial.sql"),
    migration!("postgres", "0002_issued_tokens.sql"),
    migration!("postgres", "0003_admin.sql"),
    migration!("postgres", "0004_authorization_code.sql"),
    migration!("postgres", "0005_admin_api_tokens.sql"),
    migration!("postgres", "0006_user_claims.sql"),
    migration!("postgres", "0008_admin_sso.sql"),
    migration!("postgres", "0011_replay_digests.sql"),
    migration!("postgres", "0012_refresh_token_dpop.sql"),
    migration!("postgres", "0013_authorization_dpop_jkt.sql"),
    migration!("postgres", "0014_status_list.sql"),
    migration!("postgres", "0015_issued_token_issuer.sql"),
    migration!("postgres", "0016_revoked_families.sql"),
    migration!("postgres", "0017_admin_sso_previous_session.sql"),
    migration!("postgres", "0018_kill_switch_families.sql"),
];

// Several instances starting together on one PostgreSQL database run these at the same time.
// sqlx's migrator holds a session advisory lock (`pg_advisory_lock`, keyed by the database name)
// for the whole run while its `locking` is on, which `Migrator::with_migrations` leaves on: one
// instance applies the pending migrations, the others wait, then find nothing left to apply. A
// test below keeps it on. (On SQLite the file admits one server, and its writer lock one writer.)

/// SQLite's migrations.
pub(super) static SQLITE: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE_FILES));

/// PostgreSQL's migrations.
pub(super) static POSTGRES: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES_FILES));

fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(name, sql)| migration(name, sql))
            .collect(),
    )
}

/// A migration read from its file name and text as sqlx's directory source reads it. The names
/// are this module's constants, checked by the tests below, so a malformed one is a build
/// mistake caught by the suite, never a runtime input.
fn migration(name: &'static str, sql: &'static str) -> Migration {
    let (version, rest) = name.split_once('_').unwrap_or((name, ""));
    let migration_type = MigrationType::from_filename(rest);
    let description = rest
        .trim_end_matches(migration_type.suffix())
        .replace('_', " ");
    Migration::new(
        version.parse().unwrap_or(-1),
        Cow::Owned(description),
        migration_type,
        AssertSqlSafe(sql).into_sql_str(),
        sql.starts_with("-- no-transaction"),
    )
}

// Also included by src/store/tests.rs and src/keys/tests.rs; a private copy keeps each test
// module self-contained. (Declared here, not in `tests`: a path in an inline module is resolved
// from a directory that does not exist.)
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/support/test_db.rs"]
mod test_db;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::test_db;
    use super::*;
    use std::path::Path;

    /// The embedded list is the directory, migration for migration, as `sqlx::migrate!` (and
    /// sqlx's runtime source) would read it: same versions, descriptions, kinds, transaction
    /// choice and checksums — so databases migrated by earlier builds keep validating.
    async fn assert_matches_directory(embedded: &Migrator, backend: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let resolved = Migrator::new(dir.as_path())
            .await
            .expect("resolve directory");
        let summary = |migrator: &Migrator| {
            migrator
                .iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.migration_type,
                        m.no_tx,
                        m.checksum.to_vec(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let from_directory = summary(&resolved);
        assert!(!from_directory.is_empty(), "{backend}: no migrations found");
        assert_eq!(
            summary(embedded),
            from_directory,
            "{backend}: the embedded migrations differ from migrations/{backend}; list every file in src/store/migrations.rs"
        );
        assert!(embedded.iter().all(|m| m.version > 0));
    }

    /// Replicas started together migrate one at a time: sqlx's advisory lock is on for both
    /// backends' migrators (turning it off would let two instances apply one migration twice).
    #[test]
    fn migrations_hold_the_database_lock_while_they_run() {
        assert!(SQLITE.locking);
        assert!(POSTGRES.locking);
    }

    /// Three stores migrating one empty PostgreSQL database at once all succeed, and the schema
    /// is applied once.
    #[tokio::test]
    async fn concurrent_migrations_of_one_postgres_database_all_succeed() {
        let Some(database) = test_db::TestDatabase::postgres(
            "concurrent_migrations_of_one_postgres_database_all_succeed",
        )
        .await
        else {
            return;
        };
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(
                crate::store::Store::connect(database.url(), 2)
                    .await
                    .expect("connect"),
            );
        }
        let runs: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                tokio::spawn(async move { store.migrate().await })
            })
            .collect();
        for run in runs {
            run.await
                .expect("task")
                .expect("every instance's migration succeeds");
        }
        let pool = sqlx::PgPool::connect(database.url()).await.expect("pool");
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(applied, POSTGRES_FILES.len() as i64);
        pool.close().await;
        for store in stores {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn sqlite_migrations_match_the_directory() {
        assert_matches_directory(&SQLITE, "sqlite").await;
    }

    #[tokio::test]
    async fn postgres_migrations_match_the_directory() {
        assert_matches_directory(&POSTGRES, "postgres").await;
    }
}
