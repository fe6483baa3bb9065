//! SQLite's replay check, held in memory.
//!
//! A replay record's key is the token's random `jti`, so a table that checks uniqueness itself
//! inserts every record at a random place in its index: under load each record dirtied a 4 KiB
//! page of its own, which the group commit wrote to the WAL, synced and later checkpointed —
//! most of what a `private_key_jwt` exchange's durable writes cost (docs/performance.md). On
//! SQLite the records are therefore appended to a table without a uniqueness constraint, and
//! this set, a mirror of that table, decides what is new.
//!
//! It is exact only because one process owns the database: SQLite serves a single instance
//! (several instances share PostgreSQL, whose table keeps its primary key). The set is built
//! from the table when first needed, under an exclusive lock on a file beside the database,
//! held while the store lives, so a second server on the same file fails at start instead of
//! missing the first one's replays. The set and the table change together: a record is claimed
//! here before its transaction and released if that transaction fails, and the purge removes
//! from both the records it deletes.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Mutex;

use sqlx::{Row, SqlitePool};
use tokio::sync::OnceCell;

use super::StoreError;

/// The replay records of one SQLite database, built on first use.
#[derive(Debug)]
pub(crate) struct LiveJtis {
    /// The lock file, or `None` for a database without a file (nothing to share).
    lock_path: Option<PathBuf>,
    claimed: OnceCell<Claimed>,
}

/// The set, once the lock is held and the table read.
#[derive(Debug)]
struct Claimed {
    /// Held, never read: dropping it releases the lock (see [`LiveJtis::unlock`]).
    lock: Mutex<Option<File>>,
    set: Mutex<Digests>,
}

/// (`issuer`, `jti`) pairs as 128-bit keyed digests, each with its record's `expires_at`. A
/// digest is a quarter of the pair's size, and keyed with per-process random keys no one can
/// choose a `jti` that collides with another's; an accidental collision (odds ~2⁻⁹⁰ with a
/// million live records) would refuse a token, never accept one.
#[derive(Debug)]
struct Digests {
    keys: (RandomState, RandomState),
    expires: HashMap<u128, i64>,
}

impl Digests {
    fn digest(&self, issuer: &str, jti: &str) -> u128 {
        // The issuer's length keeps ("ab", "c") and ("a", "bc") apart.
        let pair = (issuer.len(), issuer, jti);
        let high = self.keys.0.hash_one(pair);
        let low = self.keys.1.hash_one(pair);
        (u128::from(high) << 64) | u128::from(low)
    }
}

impl LiveJtis {
    /// The set for the database file at `file` (`None` for an in-memory database, which no
    /// other process can open).
    pub(crate) fn new(file: Option<&std::path::Path>) -> LiveJtis {
        let lock_path = file.map(|file| {
            let mut path = file.as_os_str().to_owned();
            path.push("-lock");
            PathBuf::from(path)
        });
        LiveJtis {
            lock_path,
            claimed: OnceCell::new(),
        }
    }

    /// Takes the lock and reads the table, once; later calls return at once. Fails if another
    /// process (or another store in this one) holds the database.
    async fn claimed(&self, pool: &SqlitePool) -> Result<&Claimed, StoreError> {
        self.claimed
            .get_or_try_init(|| async {
                let lock = match &self.lock_path {
                    Some(path) => Some(lock(path)?),
                    None => None,
                };
                let rows = sqlx::query("SELECT issuer, jti, expires_at FROM replay_records")
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::classify)?;
                let mut digests = Digests {
                    keys: (RandomState::new(), RandomState::new()),
                    expires: HashMap::with_capacity(rows.len()),
                };
                for row in rows {
                    let issuer: String = row.try_get("issuer")?;
                    let jti: String = row.try_get("jti")?;
                    let digest = digests.digest(&issuer, &jti);
                    digests.expires.insert(digest, row.try_get("expires_at")?);
                }
                Ok(Claimed {
                    lock: Mutex::new(lock),
                    set: Mutex::new(digests),
                })
            })
            .await
    }

    /// Takes the lock and loads the set now, so a server fails at start (not at its first
    /// client assertion) when another one holds the database.
    pub(crate) async fn prepare(&self, pool: &SqlitePool) -> Result<(), StoreError> {
        self.claimed(pool).await.map(|_| ())
    }

    /// Claims every record that is new and returns one flag per record: `true` if it was
    /// claimed here, `false` if it is recorded already (a replay) or repeats an earlier record
    /// of this call. The caller must append the claimed records to the table, or [`release`]
    /// them if it cannot.
    ///
    /// [`release`]: LiveJtis::release
    pub(crate) async fn claim(
        &self,
        pool: &SqlitePool,
        records: &[(String, String, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        let claimed = self.claimed(pool).await?;
        let mut set = lock_set(claimed)?;
        Ok(records
            .iter()
            .map(|(issuer, jti, expires_at)| {
                let digest = set.digest(issuer, jti);
                match set.expires.entry(digest) {
                    Entry::Occupied(_) => false,
                    Entry::Vacant(slot) => {
                        slot.insert(*expires_at);
                        true
                    }
                }
            })
            .collect())
    }

    /// Forgets records claimed by [`claim`] whose transaction failed: they were never stored,
    /// so their tokens were never accepted.
    ///
    /// [`claim`]: LiveJtis::claim
    pub(crate) fn release<'a>(&self, records: impl Iterator<Item = &'a (String, String, i64)>) {
        let Some(claimed) = self.claimed.get() else {
            return;
        };
        if let Ok(mut set) = lock_set(claimed) {
            for (issuer, jti, _) in records {
                let digest = set.digest(issuer, jti);
                set.expires.remove(&digest);
            }
        }
    }

    /// Forgets the records the purge deleted from the table: those expiring before `before`.
    pub(crate) fn forget_expired(&self, before: i64) {
        if let Some(claimed) = self.claimed.get()
            && let Ok(mut set) = lock_set(claimed)
        {
            set.expires.retain(|_, expires_at| *expires_at >= before);
        }
    }
}

impl LiveJtis {
    /// Releases the database for another process, when the store closes: dropping the last
    /// clone of the store would too, but not at a moment anyone could wait for.
    pub(crate) fn unlock(&self) {
        if let Some(claimed) = self.claimed.get()
            && let Ok(mut lock) = claimed.lock.lock()
        {
            lock.take();
        }
    }
}

fn lock_set(claimed: &Claimed) -> Result<std::sync::MutexGuard<'_, Digests>, StoreError> {
    claimed
        .set
        .lock()
        .map_err(|_| StoreError::Unavailable("the replay set's lock is poisoned".into()))
}

/// Opens (creating) and exclusively locks the lock file. The lock is the operating system's
/// (`flock` on Linux): it goes with the process, so a crashed server leaves nothing to clean.
fn lock(path: &std::path::Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot open the lock file {}: {error}",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "another frontdesk server is using this SQLite database (it holds {}); SQLite \
             serves one instance — share a PostgreSQL database to run several",
            path.display()
        ))),
        Err(TryLockError::Error(error)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {error}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let url = format!("sqlite://{}", dir.path().join("fd.db").display());
        let store = super::super::Store::connect(&url, 1)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        match &store.pool {
            super::super::Pool::Sqlite(pool) => pool.clone(),
            super::super::Pool::Postgres(_) => unreachable!("a SQLite URL"),
        }
    }

    fn record(issuer: &str, jti: &str) -> (String, String, i64) {
        (issuer.to_string(), jti.to_string(), 100)
    }

    /// A pair claimed once is refused after, also later in the same call; a claim released
    /// because its transaction failed can be made again (the token was never accepted); the
    /// issuer and `jti` are not confused across their boundary.
    #[tokio::test]
    async fn claims_are_single_use_until_released() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = pool(&dir).await;
        let live = LiveJtis::new(None);
        let first = [record("i", "a"), record("i", "b"), record("i", "a")];
        assert_eq!(
            live.claim(&pool, &first).await.expect("claim"),
            [true, true, false]
        );
        assert_eq!(
            live.claim(
                &pool,
                &[record("i", "a"), record("ia", ""), record("", "ia")]
            )
            .await
            .expect("claim"),
            [false, true, true]
        );
        live.release([record("i", "a")].iter());
        assert_eq!(
            live.claim(&pool, &[record("i", "a"), record("i", "b")])
                .await
                .expect("claim"),
            [true, false]
        );
        live.forget_expired(101);
        assert_eq!(
            live.claim(&pool, &[record("i", "b")]).await.expect("claim"),
            [true]
        );
    }
}
