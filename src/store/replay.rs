//! Replay records: a `jti` seen once is refused until its token has expired (CAUTH-06, JWTB-06,
//! EMA-06). On PostgreSQL, on every instance, because the check is a primary-key insert in the
//! shared database, keyed by a fixed-size digest of the pair ([`replay_digest`]); on SQLite,
//! which one process owns, the check is an in-memory mirror of an append-only table
//! (`live_jtis`), so a record costs an append instead of a random index page.

use std::collections::HashSet;

use aws_lc_rs::digest;
use sqlx::{Connection, QueryBuilder, Sqlite};

use super::audit::push_event_rows;
use super::{AuditEvent, Held, Pool, Store, StoreError, on_pool, pg_batch};

/// How PostgreSQL keys a replay record (migration 0011).
pub(super) type ReplayDigest = [u8; 16];

/// The key of (`issuer`, `jti`) in PostgreSQL's replay records: the first 16 bytes of SHA-256
/// over the issuer's length in bytes (8 bytes, big-endian), the issuer and the `jti`.
///
/// Why a digest and not the two texts: a `jti` is whatever the token's signer chose, and as
/// text in the primary key one longer than a B-tree entry holds (2,704 bytes) failed its insert
/// and so the whole group commit — every request in the batch. The digest's size is fixed. The
/// length prefix keeps ("ab", "c") and ("a", "bc") apart.
///
/// Unkeyed, because every instance and the migration that converted the old rows (in SQL)
/// must compute the same one; a collision would refuse a token, never accept one, and making a
/// `jti` collide with another's takes a 128-bit second preimage.
pub(super) fn replay_digest(issuer: &str, jti: &str) -> ReplayDigest {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&(issuer.len() as u64).to_be_bytes());
    context.update(issuer.as_bytes());
    context.update(jti.as_bytes());
    let full = context.finish();
    let mut key = [0; 16];
    key.copy_from_slice(&full.as_ref()[..16]);
    key
}

/// Appends SQLite's multi-row INSERT of (`issuer`, `jti`, `expires_at`) records to `builder`.
fn push_replay_rows(builder: &mut QueryBuilder<Sqlite>, records: &[(String, String, i64)]) {
    builder.push("INSERT INTO replay_records (issuer, jti, expires_at) ");
    builder.push_values(records, |mut row, (issuer, jti, expires_at)| {
        row.push_bind(issuer.as_str())
            .push_bind(jti.as_str())
            .push_bind(*expires_at);
    });
}

/// One flag per PostgreSQL record: new or not. A record repeated within a batch is inserted
/// once, so only its first occurrence counts as new.
fn fresh_flags(records: &[(ReplayDigest, i64)], inserted: &HashSet<ReplayDigest>) -> Vec<bool> {
    let mut claimed = HashSet::new();
    records
        .iter()
        .map(|(digest, _)| inserted.contains(digest) && claimed.insert(digest))
        .collect()
}

/// PostgreSQL's form of `records`: (digest, `expires_at`).
fn keyed(records: &[(String, String, i64)]) -> Vec<(ReplayDigest, i64)> {
    records
        .iter()
        .map(|(issuer, jti, expires_at)| (replay_digest(issuer, jti), *expires_at))
        .collect()
}

/// A replay record that commits together with the audit event of the request that presented
/// it, so a token exchange authenticated with `private_key_jwt` waits for one durable commit
/// instead of two (docs/performance.md).
#[derive(Clone, Debug)]
pub struct PendingReplay {
    /// Namespace of the `jti` (e.g. `client-assertion:{client_id}`).
    pub issuer: String,
    /// The single-use identifier.
    pub jti: String,
    /// Unix seconds after which the record may be purged (the token's `exp`).
    pub expires_at: i64,
    /// Rewrites the request's audit event when the `jti` turns out to be a replay: the request
    /// is then refused, and the log must say so rather than what it would have issued.
    pub on_replay: fn(&mut AuditEvent),
}

impl Store {
    /// Commits audit events, each optionally with the replay record of its request, in one
    /// transaction. Returns one flag per item: `false` when its replay record already existed;
    /// that item's event was rewritten by its `on_replay` before being written, and the caller
    /// must refuse the request. Without any replay record this is [`AuditLog::record_batch`].
    ///
    /// [`AuditLog::record_batch`]: super::AuditLog::record_batch
    pub async fn record_events_with_replays(
        &self,
        items: Vec<(AuditEvent, Option<PendingReplay>)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut events = Vec::with_capacity(items.len());
        let mut records = Vec::new();
        // For the i-th record, the item it came with.
        let mut replays: Vec<ReplayItem> = Vec::new();
        for (position, (event, pending)) in items.into_iter().enumerate() {
            events.push(event);
            if let Some(pending) = pending {
                records.push((pending.issuer, pending.jti, pending.expires_at));
                replays.push((position, pending.on_replay));
            }
        }
        let mut fresh = vec![true; events.len()];
        if records.is_empty() {
            self.insert_events(events).await?;
            return Ok(fresh);
        }
        match (&self.live_jtis, &self.pool, &self.held) {
            (Some(live), Pool::Sqlite(pool), Held::Sqlite(held)) => {
                let claims = live.claim(pool, &records).await?;
                mark_replays(&replays, &mut events, &mut fresh, &claims);
                let claimed = claimed_records(records, &claims);
                // The whole transaction as one command to SQLite's thread (`held_connection`).
                let mut builder = sqlx::QueryBuilder::new("BEGIN; ");
                if !claimed.is_empty() {
                    push_replay_rows(&mut builder, &claimed);
                    builder.push("; ");
                }
                push_event_rows!(&mut builder, events, &mut held.texts());
                builder.push("; COMMIT");
                let written = held.execute(builder.build()).await;
                if written.is_err() {
                    live.release(claimed.iter());
                }
                written?;
            }
            (_, Pool::Postgres(_), Held::Postgres(held)) => {
                let records = keyed(&records);
                let mut connection = held.take().await?;
                // Nearly always every jti is new: then one statement writes the whole batch.
                if !pg_batch::insert_replays_and_events(&mut *connection, &records, &events).await?
                {
                    // A replay (or one assertion twice in this batch), and nothing written: in a
                    // transaction, let RETURNING say which records were new, and write the
                    // replays' events as refusals. On failure the connection is dropped, not
                    // kept: the pool rolls back what the batch left open.
                    let mut tx = connection.begin().await.map_err(StoreError::classify)?;
                    let inserted = pg_batch::insert_new_replays(&mut *tx, &records).await?;
                    let new = fresh_flags(&records, &inserted);
                    mark_replays(&replays, &mut events, &mut fresh, &new);
                    pg_batch::append_events(&mut tx, &events).await?;
                    tx.commit().await.map_err(StoreError::classify)?;
                }
                held.keep(connection);
            }
            _ => return Err(no_replay_set()),
        }
        Ok(fresh)
    }
}

/// A batch item carrying a replay record: its position, and how to rewrite its event as a
/// refusal.
type ReplayItem = (usize, fn(&mut AuditEvent));

/// For each replay record that was not new (`new[i]` false for the item `replays[i].0`), flags
/// its item as refused and rewrites its audit event as the denial (`replays[i].1`).
fn mark_replays(
    replays: &[ReplayItem],
    events: &mut [AuditEvent],
    fresh: &mut [bool],
    new: &[bool],
) {
    for (&(position, rewrite), &new) in replays.iter().zip(new) {
        if !new {
            fresh[position] = false;
            rewrite(&mut events[position]);
        }
    }
}

/// Single-use identifiers.
pub trait ReplayStore {
    /// Records (`issuer`, `jti`) until `expires_at`. Returns `false` if it was already recorded:
    /// the caller must refuse the token.
    fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records several (`issuer`, `jti`, `expires_at`) in one transaction; `true` for each one
    /// that was new. A pair repeated within the batch is new only the first time.
    fn record_once_batch(
        &self,
        records: &[(String, String, i64)],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Deletes records whose tokens expired before `now`. Returns how many were deleted.
    fn purge_expired(&self, now: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl ReplayStore for Store {
    async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let fresh = self
            .record_once_batch(&[(issuer.to_string(), jti.to_string(), expires_at)])
            .await?;
        Ok(fresh.first() == Some(&true))
    }

    async fn record_once_batch(
        &self,
        records: &[(String, String, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match (&self.live_jtis, &self.pool, &self.held) {
            (Some(live), Pool::Sqlite(pool), Held::Sqlite(held)) => {
                let claims = live.claim(pool, records).await?;
                let claimed = claimed_records(records.to_vec(), &claims);
                if !claimed.is_empty() {
                    let mut builder = sqlx::QueryBuilder::new("");
                    push_replay_rows(&mut builder, &claimed);
                    if let Err(error) = held.execute(builder.build()).await {
                        live.release(claimed.iter());
                        return Err(error);
                    }
                }
                Ok(claims)
            }
            (_, Pool::Postgres(_), Held::Postgres(held)) => {
                let records = keyed(records);
                let mut connection = held.take().await?;
                let inserted = pg_batch::insert_new_replays(&mut *connection, &records).await?;
                held.keep(connection);
                Ok(fresh_flags(&records, &inserted))
            }
            _ => Err(no_replay_set()),
        }
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let result = on_pool!(self, pool => {
            sqlx::query("DELETE FROM replay_records WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        let purged = result.map_err(StoreError::classify)?;
        if let Some(live) = &self.live_jtis {
            live.forget_expired(now);
        }
        Ok(purged)
    }
}

/// The records whose claim succeeded, in order.
fn claimed_records(
    records: Vec<(String, String, i64)>,
    claims: &[bool],
) -> Vec<(String, String, i64)> {
    records
        .into_iter()
        .zip(claims)
        .filter_map(|(record, &claimed)| claimed.then_some(record))
        .collect()
}

/// A store is always built with the replay set and held connections of its backend; this is
/// for the impossible case.
fn no_replay_set() -> StoreError {
    StoreError::Unavailable(
        "the store's replay set or writer connection does not match its database".into(),
    )
}
