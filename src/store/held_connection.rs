//! The group commit's connections, held by the store instead of borrowed from a pool for each
//! batch. On PostgreSQL that saves the ping sqlx sends whenever a connection returns to its
//! pool ([`HeldPgConnections`]); on SQLite ([`HeldConnection`]) it saves more:
//!
//! sqlx runs each SQLite connection on a thread of its own and hands it every command: a round
//! trip, with a wake-up on each side, per statement, per `BEGIN` and per `COMMIT` (those two
//! even wait for the caller to take the answer). A pool also pings every connection returned
//! to it, one more round trip per batch, and with the writer's single connection the next batch
//! waited for that ping too. Held here, a batch costs exactly one command: its statements, the
//! transaction's `BEGIN` and `COMMIT` included, travel as one multi-statement query
//! (docs/performance.md, tenth run).
//!
//! Safety of the shortcut: sqlx does not see a transaction opened by the query's own `BEGIN`,
//! so the connection must never be reused after a batch that failed or was abandoned half-way.
//! It is not: the connection is taken out of its slot for the batch and put back only after
//! success; on an error it is closed (SQLite rolls back what the batch began), and a future
//! dropped mid-batch drops it the same way. The next batch connects afresh.

use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqlitePool};
use sqlx::{Connection, Executor};
use tokio::sync::Mutex;

use super::text_pool::TextPool;
use super::{PING_AFTER_IDLE, StoreError};

/// One SQLite connection for batches of writes, taken from (and then kept apart from) the
/// writer pool, whose connection options (page cache, pragmas) it shares.
#[derive(Debug)]
pub(crate) struct HeldConnection {
    /// Where a connection comes from when there is none (first use, or after a failure).
    pool: SqlitePool,
    /// The connection between batches; empty while a batch runs or after a failure.
    slot: Mutex<Option<SqliteConnection>>,
    /// The recurring values of the audit rows its batches bind (`text_pool`).
    texts: std::sync::Mutex<TextPool>,
}

impl HeldConnection {
    /// A holder that connects on first use.
    pub(crate) fn new(pool: SqlitePool) -> HeldConnection {
        HeldConnection {
            pool,
            slot: Mutex::new(None),
            texts: std::sync::Mutex::new(TextPool::new()),
        }
    }

    /// The shared values for the next batch's audit rows; held only while the batch's
    /// statement is built, never across an `await`.
    pub(crate) fn texts(&self) -> std::sync::MutexGuard<'_, TextPool> {
        // A panic while building a statement leaves the pool as sound as before it.
        self.texts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `query` — one statement, or a whole transaction written as `BEGIN; …; COMMIT` — as
    /// one command, and returns the rows it changed. Batches run one at a time. On an error
    /// the connection is closed, so whatever the query began is rolled back and never seen by
    /// the next batch.
    pub(crate) async fn execute(
        &self,
        query: Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<u64, StoreError> {
        let mut slot = self.slot.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self
                .pool
                .acquire()
                .await
                .map_err(StoreError::classify)?
                .detach(),
        };
        match connection.execute(query).await {
            Ok(done) => {
                *slot = Some(connection);
                Ok(done.rows_affected())
            }
            Err(error) => {
                if let Err(close) = connection.close().await {
                    tracing::warn!(error = %close, "closing the SQLite writer connection after a failed batch");
                }
                Err(StoreError::classify(error))
            }
        }
    }

    /// The writer pool the connection comes from (it also loads the replay set at start).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the connection, waiting for a batch in progress, then its pool (graceful
    /// shutdown).
    pub(crate) async fn close(&self) {
        if let Some(connection) = self.slot.lock().await.take()
            && let Err(error) = connection.close().await
        {
            tracing::warn!(%error, "closing the SQLite writer connection");
        }
        self.pool.close().await;
    }

    /// Whether a connection is held between batches (tests: a failed batch must drop it).
    #[cfg(test)]
    pub(crate) async fn is_connected(&self) -> bool {
        self.slot.lock().await.is_some()
    }
}

/// PostgreSQL: the group commit's connections, kept between batches instead of returned to
/// the pool after each one. sqlx pings every connection returned to its pool — a network round
/// trip to the database and a wake-up of its server process per batch, on the same cores as
/// everything else. These stay counted in the pool, so it never opens more than its
/// `max_connections`; at most `limit` are kept, so the rest of the server always finds the rest
/// of the pool.
#[derive(Debug)]
pub(crate) struct HeldPgConnections {
    pool: PgPool,
    /// Kept connections with the time each was put back (most recent last: the next batch takes
    /// the warmest).
    idle: std::sync::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    limit: usize,
    /// Set when the store closes: a batch finishing afterwards returns its connection to the
    /// pool instead of keeping it, or the pool's `close` would wait for it forever.
    closed: std::sync::atomic::AtomicBool,
}

impl HeldPgConnections {
    /// Keeps up to `in_flight` connections (one per batch committing at once), but never more
    /// than half of the pool.
    pub(crate) fn new(pool: PgPool, in_flight: usize) -> HeldPgConnections {
        let half = usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(0);
        HeldPgConnections {
            pool,
            idle: std::sync::Mutex::new(Vec::new()),
            limit: in_flight.min(half),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How many connections are kept at most (tests).
    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A connection for one batch: a kept one (pinged first if it sat idle for
    /// [`PING_AFTER_IDLE`] or longer, as the pool would: a restarted server shows there), else
    /// one from the pool.
    pub(crate) async fn take(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some((mut connection, since)) = kept {
            if since.elapsed() < PING_AFTER_IDLE || connection.ping().await.is_ok() {
                return Ok(connection);
            }
            // Dead: the pool closes it and opens another when asked.
            connection.close_on_drop();
        }
        self.pool.acquire().await.map_err(StoreError::classify)
    }

    /// Keeps `connection` after a batch that succeeded (one that failed is dropped instead:
    /// the pool then rolls back whatever it left open and checks it). Beyond the limit it goes
    /// back to the pool, and so it does once the store has closed.
    pub(crate) fn keep(&self, connection: PoolConnection<Postgres>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limit
            && !self.closed.load(std::sync::atomic::Ordering::Acquire)
        {
            idle.push((connection, Instant::now()));
        }
    }

    /// Returns every kept connection to the pool, and keeps none from now on (before the pool
    /// closes, which waits for them).
    pub(crate) fn release_all(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let kept = self
            .idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default();
        drop(kept);
    }

    /// How many connections are kept right now (tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Makes the kept connections look idle for `by` longer than they are (tests: the check
    /// of one that sat idle, without waiting).
    #[cfg(test)]
    pub(crate) fn age_kept(&self, by: std::time::Duration) {
        if let Ok(mut idle) = self.idle.lock() {
            for (_, since) in idle.iter_mut() {
                *since = since.checked_sub(by).unwrap_or(*since);
            }
        }
    }
}
