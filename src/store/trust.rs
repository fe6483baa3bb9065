//! Trust configuration rows (identity providers, audiences, clients) stored as validated JSON
//! documents: the config file, the admin page and the API all produce the same shape, so one
//! validation path serves all three.

use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, on_pool};

/// Bumps the trust generation; runs inside every trust-changing transaction.
/// Revokes the live access and refresh tokens of a deleted client (`$1` the time, `$2` the
/// client id), in the transaction that deletes it (RFC 7592 §2.3): however a client goes — the
/// admin page, the admin API, its own RFC 7592 request, `frontdesk client remove` — what it was
/// issued stops working at introspection and refresh.
pub(super) const REVOKE_CLIENT_TOKENS: [&str; 2] = [
    "UPDATE issued_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
    "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
];

pub(super) const BUMP_GENERATION: &str =
    "UPDATE trust_generation SET value = value + 1 WHERE id = 1";

/// Which kind of trust object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustKind {
    /// Inbound trust: issuers whose tokens we accept.
    IdentityProvider,
    /// Outbound trust: domains we issue grants for.
    Audience,
    /// Clients of the token endpoint.
    Client,
}

impl TrustKind {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            TrustKind::IdentityProvider => ("identity_providers", "id"),
            TrustKind::Audience => ("audiences", "id"),
            TrustKind::Client => ("clients", "client_id"),
        }
    }
}

/// One stored trust object.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustDocument {
    /// Its identifier (`id`, or `client_id` for clients).
    pub id: String,
    /// The JSON document (the config struct's serde form).
    pub document: serde_json::Value,
    /// Loaded from the config file: read-only in the admin page.
    pub managed_by_config: bool,
    /// Last change, unix seconds.
    pub updated_at: i64,
}

/// Trust persistence.
pub trait TrustStore {
    /// All objects of a kind, ordered by id.
    fn list_trust(
        &self,
        kind: TrustKind,
    ) -> impl Future<Output = Result<Vec<TrustDocument>, StoreError>> + Send;
    /// Inserts or replaces one object.
    fn upsert_trust(
        &self,
        kind: TrustKind,
        document: &TrustDocument,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes one object; false if it did not exist. A client's live tokens are revoked with it,
    /// as of `now`.
    fn delete_trust(
        &self,
        kind: TrustKind,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Makes the config-managed objects of a kind exactly `documents`, in one transaction:
    /// upserts each, and deletes config-managed rows no longer in the file. Rows created in the
    /// admin page are left alone.
    fn sync_config_trust(
        &self,
        kind: TrustKind,
        documents: &[TrustDocument],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A value that changes whenever any trust object changes (for cache refresh).
    fn trust_version(&self) -> impl Future<Output = Result<String, StoreError>> + Send;
}

impl TrustStore for Store {
    async fn list_trust(&self, kind: TrustKind) -> Result<Vec<TrustDocument>, StoreError> {
        let (table, id) = kind.table();
        let sql = format!(
            "SELECT {id} AS id, document, managed_by_config, updated_at FROM {table} ORDER BY {id}"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str())).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let text: String = row.try_get("document")?;
                    Ok(TrustDocument {
                        id: row.try_get("id")?,
                        document: serde_json::from_str(&text)
                            .map_err(|error| StoreError::Corrupt(error.to_string()))?,
                        managed_by_config: row.try_get("managed_by_config")?,
                        updated_at: row.try_get("updated_at")?,
                    })
                })
                .collect()
        })
    }

    async fn upsert_trust(
        &self,
        kind: TrustKind,
        document: &TrustDocument,
    ) -> Result<(), StoreError> {
        let (table, id) = kind.table();
        let sql = format!(
            "INSERT INTO {table} ({id}, document, managed_by_config, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT ({id}) DO UPDATE SET document = excluded.document, managed_by_config = excluded.managed_by_config, updated_at = excluded.updated_at"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(&document.id)
                .bind(document.document.to_string())
                .bind(document.managed_by_config)
                .bind(document.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
            sqlx::query(BUMP_GENERATION).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn delete_trust(
        &self,
        kind: TrustKind,
        id_value: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        if !super::may_be_stored(id_value) {
            return Ok(false);
        }
        let (table, id) = kind.table();
        let sql = format!("DELETE FROM {table} WHERE {id} = $1");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id_value)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 && kind == TrustKind::Client {
                for revoke in REVOKE_CLIENT_TOKENS {
                    sqlx::query(revoke)
                        .bind(now)
                        .bind(id_value)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(BUMP_GENERATION).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn sync_config_trust(
        &self,
        kind: TrustKind,
        documents: &[TrustDocument],
    ) -> Result<(), StoreError> {
        /// Rows per multi-row upsert: 3 parameters each stays far below both databases' limits
        /// on bound parameters, and thousands of objects take a handful of statements instead
        /// of one round trip each (start-up with 10,000 clients, docs/performance.md).
        const CHUNK: usize = 500;
        let (table, id) = kind.table();
        let upsert =
            format!("INSERT INTO {table} ({id}, document, managed_by_config, updated_at) ");
        let on_conflict = format!(
            " ON CONFLICT ({id}) DO UPDATE SET document = excluded.document, managed_by_config = TRUE, updated_at = excluded.updated_at \
             WHERE {table}.document <> excluded.document OR {table}.managed_by_config = FALSE"
        );
        let select =
            format!("SELECT {id} AS id FROM {table} WHERE managed_by_config = TRUE ORDER BY {id}");
        let delete = format!("DELETE FROM {table} WHERE {id} = $1");
        let mut rows: Vec<(&str, String, i64)> = documents
            .iter()
            .map(|document| {
                (
                    document.id.as_str(),
                    document.document.to_string(),
                    document.updated_at,
                )
            })
            .collect();
        // Rows are locked in the order they are written: by id, not in the file's order, so two
        // instances syncing a reordered file (a rolling update) wait for each other instead of
        // each holding a row the other needs next, which PostgreSQL aborts as a deadlock.
        rows.sort_unstable_by(|left, right| left.0.cmp(right.0));
        let wanted: std::collections::HashSet<&str> = documents
            .iter()
            .map(|document| document.id.as_str())
            .collect();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(CHUNK) {
                let mut builder = sqlx::QueryBuilder::new(upsert.as_str());
                builder.push_values(chunk, |mut row, (id, document, updated_at)| {
                    row.push_bind(*id)
                        .push_bind(document.as_str())
                        .push("TRUE")
                        .push_bind(*updated_at);
                });
                builder.push(on_conflict.as_str());
                builder
                    .build()
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::classify)?;
            }
            sqlx::query(BUMP_GENERATION).execute(&mut *tx).await?;
            let existing = sqlx::query(AssertSqlSafe(select.as_str())).fetch_all(&mut *tx).await?;
            for row in existing {
                let existing_id: String = row.try_get("id")?;
                if !wanted.contains(existing_id.as_str()) {
                    sqlx::query(AssertSqlSafe(delete.as_str())).bind(&existing_id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn trust_version(&self) -> Result<String, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT value FROM trust_generation WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok(row.try_get::<i64, _>("value")?.to_string())
        })
    }
}
