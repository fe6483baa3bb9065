//! Replay records: a `jti` seen once is refused until its token has expired, on every instance,
//! because the check is a primary-key insert in the shared database (CAUTH-06, JWTB-06, EMA-06).

use sqlx::Row;

use super::{Store, StoreError, on_pool};

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
        // One statement per batch; RETURNING names the rows that were new. A pair repeated
        // within the batch is inserted once, so only its first occurrence counts as new.
        let inserted: std::collections::HashSet<(String, String)> = on_pool!(self, pool => {
            let mut builder = sqlx::QueryBuilder::new("INSERT INTO replay_records (issuer, jti, expires_at) ");
            builder.push_values(records, |mut row, (issuer, jti, expires_at)| {
                row.push_bind(issuer).push_bind(jti).push_bind(*expires_at);
            });
            builder.push(" ON CONFLICT (issuer, jti) DO NOTHING RETURNING issuer, jti");
            let rows = builder.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| Ok((row.try_get::<String, _>("issuer")?, row.try_get::<String, _>("jti")?)))
                .collect::<Result<_, StoreError>>()?
        });
        let mut claimed = std::collections::HashSet::new();
        Ok(records
            .iter()
            .map(|(issuer, jti, _)| {
                let key = (issuer.clone(), jti.clone());
                inserted.contains(&key) && claimed.insert(key)
            })
            .collect())
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
