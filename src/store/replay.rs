//! Replay records: a `jti` seen once is refused until its token has expired, on every instance,
//! because the check is a primary-key insert in the shared database (CAUTH-06, JWTB-06, EMA-06).

use sqlx::Row;

use std::collections::HashSet;

use super::audit::insert_event_rows;
use super::{AuditEvent, Store, StoreError, on_pool};

/// The multi-row INSERT of (`issuer`, `jti`, `expires_at`) records that skips pairs already
/// recorded, followed by `tail` (a RETURNING clause or nothing).
macro_rules! replay_insert {
    ($records:expr, $tail:expr) => {{
        let records: &[(String, String, i64)] = $records;
        let mut builder =
            sqlx::QueryBuilder::new("INSERT INTO replay_records (issuer, jti, expires_at) ");
        builder.push_values(records, |mut row, (issuer, jti, expires_at)| {
            row.push_bind(issuer).push_bind(jti).push_bind(*expires_at);
        });
        builder.push(" ON CONFLICT (issuer, jti) DO NOTHING");
        builder.push($tail);
        builder
    }};
}

/// Inserts the records as one statement with any executor and returns the pairs that were new
/// (RETURNING names them; a conflict inserts nothing). Every new pair comes back as a row.
macro_rules! insert_replay_rows {
    ($executor:expr, $records:expr) => {{
        let mut builder = replay_insert!($records, " RETURNING issuer, jti");
        match builder.build().fetch_all($executor).await {
            Ok(rows) => rows
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get::<String, _>("issuer")?,
                        row.try_get::<String, _>("jti")?,
                    ))
                })
                .collect::<Result<HashSet<(String, String)>, StoreError>>(),
            Err(error) => Err(StoreError::classify(error)),
        }
    }};
}

/// Inserts the records as one statement and returns only how many were new: the common case,
/// where that is all of them, needs no row back per record.
macro_rules! count_new_replay_rows {
    ($executor:expr, $records:expr) => {{
        let mut builder = replay_insert!($records, "");
        builder
            .build()
            .execute($executor)
            .await
            .map(|done| done.rows_affected())
            .map_err(StoreError::classify)
    }};
}

/// One flag per record: new or not. A pair repeated within a batch is inserted once, so only
/// its first occurrence counts as new.
fn fresh_flags(
    records: &[(String, String, i64)],
    inserted: &HashSet<(String, String)>,
) -> Vec<bool> {
    let mut claimed = HashSet::new();
    records
        .iter()
        .map(|(issuer, jti, _)| {
            let key = (issuer.clone(), jti.clone());
            inserted.contains(&key) && claimed.insert(key)
        })
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
        mut items: Vec<(AuditEvent, Option<PendingReplay>)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut positions = Vec::new();
        let mut records = Vec::new();
        for (position, (_, pending)) in items.iter_mut().enumerate() {
            if let Some(pending) = pending {
                positions.push(position);
                records.push((
                    std::mem::take(&mut pending.issuer),
                    std::mem::take(&mut pending.jti),
                    pending.expires_at,
                ));
            }
        }
        let mut fresh = vec![true; items.len()];
        if records.is_empty() {
            let events: Vec<AuditEvent> = items.into_iter().map(|(event, _)| event).collect();
            super::AuditLog::record_batch(self, &events).await?;
            return Ok(fresh);
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::classify)?;
            // Nearly always every jti is new: count the inserted rows rather than have each one
            // named back. Fewer means a replay (or one assertion twice in this batch): start the
            // transaction over and let RETURNING say which records were new.
            let new = count_new_replay_rows!(&mut *tx, &records)?;
            if new != records.len() as u64 {
                tx.rollback().await.map_err(StoreError::classify)?;
                tx = pool.begin().await.map_err(StoreError::classify)?;
                let inserted = insert_replay_rows!(&mut *tx, &records)?;
                for (position, new) in positions.into_iter().zip(fresh_flags(&records, &inserted)) {
                    if !new {
                        fresh[position] = false;
                        let (event, pending) = &mut items[position];
                        if let Some(pending) = pending {
                            (pending.on_replay)(event);
                        }
                    }
                }
            }
            let events: Vec<AuditEvent> = items.into_iter().map(|(event, _)| event).collect();
            insert_event_rows!(&mut *tx, &events)?;
            tx.commit().await.map_err(StoreError::classify)?;
        });
        Ok(fresh)
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
        let result = on_pool!(self, pool => {
            sqlx::query("INSERT INTO replay_records (issuer, jti, expires_at) VALUES ($1, $2, $3)")
                .bind(issuer)
                .bind(jti)
                .bind(expires_at)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match result.map_err(StoreError::classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn record_once_batch(
        &self,
        records: &[(String, String, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let inserted = on_pool!(self, pool => insert_replay_rows!(pool, records)?);
        Ok(fresh_flags(records, &inserted))
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let result = on_pool!(self, pool => {
            sqlx::query("DELETE FROM replay_records WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        result.map_err(StoreError::classify)
    }
}
