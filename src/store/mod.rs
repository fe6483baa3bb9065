//! Persistence. The only module that talks SQL. One implementation serves SQLite (embedded,
//! default) and PostgreSQL (several instances): the SQL is written once in the dialect both
//! accept (`$n` placeholders, BIGINT unix-second timestamps), and [`on_pool!`] runs it on
//! whichever pool the URL chose, with each backend's own driver. Schema differences live in
//! `migrations/sqlite` and `migrations/postgres`, applied in transactions at start.
//!
//! The traits below are the contract the rest of the server uses; [`Store`] implements them all.

mod admin;
pub(crate) mod audit;
mod audit_writer;
mod codes;
mod held_connection;
mod keys;
mod live_jtis;
mod migrations;
mod pg_batch;
mod pg_copy;
mod replay;
mod text_pool;
mod tokens;
mod trust;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

pub use admin::{
    AdminRole, AdminSessionRecord, AdminSsoRequest, AdminStore, AdminUser, ApiTokenRecord,
    TrustChange,
};
pub use audit::{AuditDetail, AuditEvent, AuditFilter, AuditLog, AuditRecord, Decision};
pub use audit_writer::{AuditWriter, ReplayWriter};
pub use codes::{
    AuthorizationRequest, CodeRecord, CodeStore, FamilyRevocation, Redemption, RefreshRecord,
    RefreshState,
};
pub use keys::{KeyRecord, KeyState, KeyStore};
pub use replay::{PendingReplay, ReplayStore};
pub use tokens::{IssuedToken, RevocationScope, TokenRevocation, TokenStore};
pub use trust::{TrustDocument, TrustKind, TrustStore};
pub use users::{UserClaims, UserStore};

/// Runs `$body` with `$pool` bound to the concrete sqlx pool of either backend. The body is
/// compiled once per backend, so it must only use SQL both understand.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Whether `key` could name a stored row at all. Lookup keys are often client-sent text (the
/// username at admin sign-in, the consent form's request id, a path segment of the admin API),
/// and none of the identifiers frontdesk stores holds a NUL character: they are validated or
/// generated, and PostgreSQL's TEXT cannot hold one. Bound as a parameter there, a NUL fails
/// the statement (SQLSTATE 22021) instead of finding nothing, which answered a malformed
/// request with a server error; so a key with NUL finds nothing on either backend, without a
/// trip to the database (docs/decisions.md §30).
pub(crate) fn may_be_stored(key: &str) -> bool {
    !key.contains('\0')
}

/// A storage failure, classified so callers can answer correctly.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint refused the write (e.g. a replayed `jti`).
    #[error("conflict")]
    Conflict,
    /// Stored data could not be decoded (a bug or manual tampering).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A store component (such as the audit writer) is not available.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn classify(error: sqlx::Error) -> StoreError {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::RowNotFound => StoreError::NotFound,
            _ => StoreError::Database(error),
        }
    }
}

/// The concrete connection pool.
#[derive(Clone, Debug)]
pub enum Pool {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// The database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// On SQLite, the replay records' uniqueness check (see `live_jtis`); `None` on PostgreSQL,
    /// where the table's primary key checks it for every instance.
    live_jtis: Option<Arc<live_jtis::LiveJtis>>,
    /// The group commit's connections, kept between batches (see `held_connection`) and shared
    /// by every clone of the store.
    held: Held,
}

/// Where batches of writes go.
#[derive(Clone, Debug)]
enum Held {
    /// SQLite: one connection taken from a dedicated writer pool (its own page cache, see
    /// [`Store::connect`]) and kept: every batch runs on it, one at a time, as one command. The
    /// writer pool also loads the replay set at start.
    Sqlite(Arc<held_connection::HeldConnection>),
    /// PostgreSQL: up to one connection per batch in flight, kept in the shared pool's count.
    Postgres(Arc<held_connection::HeldPgConnections>),
}

/// SQLite pages the group-commit writer's connection may cache (negative: KiB, SQLite's
/// convention): the replay and audit indexes it inserts into stay in memory instead of being
/// read back from the file on every batch. The default (2 MiB) held a few seconds of load.
const SQLITE_WRITER_CACHE_KIB: i64 = 8192;

/// WAL pages after which a commit copies the WAL back into the database file (SQLite's
/// default is 1,000). Every replay record lands on a random page of its index, so under load
/// nearly every record dirties a page of its own; a page changed many times between two
/// checkpoints is copied once, so checkpointing less often writes (and syncs) far less: +13 to
/// +30 % private_key_jwt exchanges in the load test (docs/performance.md). The cost is a WAL
/// file of up to ~32 MiB and a longer pause for the commit that checkpoints.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 8000;

/// A pooled connection that sat idle at least this long is pinged before it is handed out; a
/// fresher one is handed out as it is (see [`pool_options`]).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The future of a `before_acquire` check.
type AcquireCheck<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// The pools' `before_acquire` hook. It only unpacks the metadata: sqlx's
/// `PoolConnectionMetadata` cannot be built outside sqlx, so the decision lives in
/// [`check_before_acquire`], which tests call directly.
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: PoolConnectionMetadata,
) -> AcquireCheck<'_> {
    check_before_acquire(conn, meta.idle_for)
}

/// `Ok(true)`: hand the connection out. Pings it first if it sat idle [`PING_AFTER_IDLE`] or
/// longer; an error makes the pool drop it and open another.
fn check_before_acquire<C: sqlx::Connection>(conn: &mut C, idle_for: Duration) -> AcquireCheck<'_> {
    Box::pin(async move {
        if idle_for >= PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// Pool options for every pool: sqlx pings each connection before handing it out by default,
/// one extra round trip to the database (or SQLite's worker thread) per acquire — per group
/// commit under load (docs/performance.md, ninth run). A connection that was in use a moment ago
/// is alive; only one that sat idle (where a restarted or unreachable server would show) is
/// checked, and a failed check replaces it as before.
fn pool_options<DB: sqlx::Database>() -> PoolOptions<DB> {
    PoolOptions::<DB>::new()
        .test_before_acquire(false)
        .before_acquire(ping_if_idle::<DB::Connection>)
}

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` or `postgresql://` URLs.
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

impl Store {
    /// Connects to the database named by `url` (creating an SQLite file if needed) without
    /// migrating. Fails fast (a few seconds) if the database is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        match Backend::of(url) {
            Some(Backend::Sqlite) => {
                // WAL with synchronous=FULL: every commit is on disk (the WAL is synced) before
                // it returns, because audit events and replay records must survive a power loss
                // once a response depending on them has been sent (NORMAL would sync only at
                // checkpoints). Group commit makes that one sync per batch (docs/decisions.md).
                //
                // temp_store=MEMORY keeps statement journals (which a multi-row INSERT inside a
                // transaction needs, and which spill to a temporary file past 64 KiB) in memory:
                // without it a busy group commit created and unlinked a file every other batch.
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .pragma("temp_store", "memory")
                    .pragma(
                        "wal_autocheckpoint",
                        SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string(),
                    );
                let pool = pool_options()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options.clone())
                    .await?;
                // The group-commit writers get a connection of their own. SQLite admits one
                // writer at a time anyway, and a connection drops its whole page cache whenever
                // another connection has written since its last transaction: with the pool
                // handing out its connections in turn, every batch started from a cold cache
                // and read the index pages it was about to change back from the file. The
                // group commit takes this pool's one connection and keeps it (`held`); the pool
                // stays for loading the replay set at start, and only reopens a connection if
                // that is asked after a failed batch.
                let writer = pool_options()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(
                        options
                            .clone()
                            .pragma("cache_size", format!("-{SQLITE_WRITER_CACHE_KIB}")),
                    )
                    .await?;
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let file = (!in_memory).then(|| options.get_filename());
                let live_jtis = Arc::new(live_jtis::LiveJtis::new(file));
                let held = Arc::new(held_connection::HeldConnection::new(writer));
                Ok(Store {
                    pool: Pool::Sqlite(pool),
                    live_jtis: Some(live_jtis),
                    held: Held::Sqlite(held),
                })
            }
            Some(Backend::Postgres) => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = pool_options()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                let held = Arc::new(held_connection::HeldPgConnections::new(
                    pool.clone(),
                    audit_writer::POSTGRES_COMMITS_IN_FLIGHT,
                ));
                Ok(Store {
                    pool: Pool::Postgres(pool),
                    live_jtis: None,
                    held: Held::Postgres(held),
                })
            }
            None => Err(StoreError::Database(sqlx::Error::Configuration(
                "database URL must start with sqlite:// or postgres://".into(),
            ))),
        }
    }

    /// Applies pending migrations, each in its own transaction, so nothing is half-migrated.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match &self.pool {
            Pool::Sqlite(pool) => migrations::SQLITE.run(pool).await,
            Pool::Postgres(pool) => migrations::POSTGRES.run(pool).await,
        }
    }

    /// On SQLite, takes the database for this process (a lock file beside it) and loads the
    /// replay records, so that a second server on the same file fails at start with a clear
    /// message; without this the first client assertion or redeemed grant does it. Nothing to
    /// do on PostgreSQL, which several instances share.
    pub async fn claim_for_this_process(&self) -> Result<(), StoreError> {
        match (&self.live_jtis, &self.held) {
            (Some(live), Held::Sqlite(held)) => live.prepare(held.pool()).await,
            _ => Ok(()),
        }
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// True if a trivial query succeeds: used by `/readyz`.
    pub async fn ping(&self) -> bool {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// Closes the pools, waiting for connections to be returned (graceful shutdown), and on
    /// SQLite releases the database for another server.
    pub async fn close(&self) {
        match &self.held {
            Held::Sqlite(held) => held.close().await,
            Held::Postgres(held) => held.release_all(),
        }
        on_pool!(self, pool => pool.close().await);
        if let Some(live) = &self.live_jtis {
            live.unlock();
        }
    }
}

#[cfg(test)]
mod tests;
