//! Signing-key rows. State changes are conditional updates, so two instances promoting at the
//! same moment cannot both win, and the partial unique index keeps at most one active key.
//!
//! Every transaction that changes keys begins by taking the key-change lock
//! (`lock_key_changes!`): on PostgreSQL a transaction-scoped advisory lock, on SQLite the
//! database's one writer lock (each of these transactions begins with a write). Key changes therefore run one at a time
//! across every instance and the CLI, and each statement of one sees every change committed
//! before it: a scheduled rotation and a `keys rotate --now` arriving together are applied one
//! after the other, never interleaved (under PostgreSQL's READ COMMITTED alone the emergency
//! rotation could miss a `next` key inserted while it ran, and leave it waiting to take over).

use sqlx::{AssertSqlSafe, Row};

use super::{AuditEvent, Store, StoreError, on_pool};

/// Life cycle of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published in the JWKS, not yet signing: relying parties fetch it before first use.
    Next,
    /// The one key that signs.
    Active,
    /// No longer signs; published until every token it signed has expired.
    Retired,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<KeyState, StoreError> {
        match text {
            "next" => Ok(KeyState::Next),
            "active" => Ok(KeyState::Active),
            "retired" => Ok(KeyState::Retired),
            other => Err(StoreError::Corrupt(format!("unknown key state {other}"))),
        }
    }
}

/// One signing key as stored. The private key is sealed; `Debug` omits it.
#[derive(Clone)]
pub struct KeyRecord {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// JOSE algorithm name.
    pub algorithm: String,
    /// Life-cycle state.
    pub state: KeyState,
    /// PKCS#8 private key sealed under the KEK (nonce ‖ ciphertext ‖ tag).
    pub sealed_private_key: Vec<u8>,
    /// Public JWK, JSON text.
    pub public_jwk: String,
    /// Creation time.
    pub created_at: i64,
    /// When a `next` key becomes due for promotion.
    pub activate_at: Option<i64>,
    /// When it started signing.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
    /// Removed from the JWKS after this time.
    pub publish_until: Option<i64>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("activate_at", &self.activate_at)
            .field("retired_at", &self.retired_at)
            .field("publish_until", &self.publish_until)
            .finish_non_exhaustive()
    }
}

/// Signing-key persistence.
pub trait KeyStore {
    /// All keys that are still published (not past `publish_until`) at `now`, newest first.
    fn published_keys(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;
    /// Every key row, newest first (for `keys list`).
    fn all_keys(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;
    /// Inserts a new key; with `activate` = `Some((now, retired_publish_until))` the key (stored
    /// as `next`) also becomes the active key at once and the previous active key is retired, in
    /// the same transaction. Such an emergency rotation also withdraws every other `next` key at
    /// once (retired, published until `now`): a key that was waiting to sign was generated before
    /// the emergency, is as exposed as the key being replaced, and must neither stay in the JWKS
    /// nor be promoted later over the new key. It never signed, so nothing needs it published.
    /// `event`, if any, is recorded in that transaction too, so the audit log has every key
    /// change and only changes that happened; the keys withdrawn are named in it
    /// (`after.withdrawn_next`), as found in the transaction.
    fn insert_key(
        &self,
        key: &KeyRecord,
        activate: Option<(i64, i64)>,
        event: Option<&AuditEvent>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores `key` as the first active key, unless an active key exists already: several
    /// instances starting together on an empty database each generate one, the first to commit
    /// wins and the others are told `false` and adopt its key (they reload). Any other failure
    /// (a duplicate kid, the database) is an error as before.
    fn insert_first_key(
        &self,
        key: &KeyRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The scheduled rotation (`keys.rotate_after_days`): inserts `key`, a `next` key, and
    /// records `event` in one transaction, but only if the active key was activated at or
    /// before `activated_by` and no `next` key is waiting. Every instance attempts it when the
    /// active key comes of age; the transaction lets exactly one of them publish a key.
    /// Returns whether this call did.
    fn insert_scheduled_key(
        &self,
        key: &KeyRecord,
        activated_by: i64,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Makes `kid` (a `next` key) the active key and retires the previous active key, which stays
    /// published until `retired_publish_until`; records `event` in the same transaction. Returns
    /// false (and records nothing) if someone else already did.
    fn promote_key(
        &self,
        kid: &str,
        now: i64,
        retired_publish_until: i64,
        event: Option<&AuditEvent>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes a non-active key from the JWKS at once (after a compromise): tokens it signed stop
    /// verifying at relying parties as soon as they refresh. Returns false if there is no such
    /// non-active key still published (so a repeated withdrawal changes and records nothing). `event` is recorded in the same transaction when something changed.
    fn withdraw_key(
        &self,
        kid: &str,
        now: i64,
        event: Option<&AuditEvent>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Retires a `next` key (it never signs), publishing it until `publish_until`. `event` is
    /// recorded in the same transaction when something changed. Returns false for any other
    /// key: the active key hands over only through [`KeyStore::promote_key`], so a `next` key
    /// promoted by another instance since the caller read it is never left without a successor.
    fn retire_key(
        &self,
        kid: &str,
        now: i64,
        publish_until: i64,
        event: Option<&AuditEvent>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Ends a key change's transaction: when `changed`, records `event` (if any) in it and commits,
/// answering `Ok(true)`; otherwise answers `Ok(false)` and the transaction rolls back on drop,
/// recording nothing.
macro_rules! commit_if_changed {
    ($tx:ident, $changed:expr, $event:expr) => {{
        if !$changed {
            return Ok(false);
        }
        if let Some(event) = $event {
            super::audit::insert_event!(&mut *$tx, event)?;
        }
        $tx.commit().await?;
        Ok(true)
    }};
}

/// The advisory lock's key: "fd-keys" in ASCII, an arbitrary constant of this application
/// (sqlx's migration lock, the only other advisory lock taken, uses a checksum of the database
/// name times 0x3d32ad9e).
const KEY_CHANGES_LOCK: i64 = 0x0066_642d_6b65_7973;

/// Takes the key-change lock as the first statement of a key change's transaction `$tx` of
/// `$store`: on PostgreSQL `pg_advisory_xact_lock`, released at commit or rollback (so also when
/// the transaction is dropped on an error or an early `Ok(false)`). On SQLite nothing: the
/// transaction's first statement is a write, which takes the database's writer lock.
macro_rules! lock_key_changes {
    ($store:expr, $tx:ident) => {{
        if $store.backend() == super::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(KEY_CHANGES_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Inserts one key row with an executor of either backend (a transaction).
macro_rules! insert_key_row {
    ($executor:expr, $key:expr) => {{
        let key: &KeyRecord = $key;
        let sql = format!(
            "INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(key.state.as_str())
            .bind(&key.sealed_private_key)
            .bind(&key.public_jwk)
            .bind(key.created_at)
            .bind(key.activate_at)
            .bind(key.activated_at)
            .bind(key.retired_at)
            .bind(key.publish_until)
            .execute($executor)
            .await
            .map_err(StoreError::classify)
    }};
}

const COLUMNS: &str = "kid, algorithm, state, sealed_private_key, public_jwk, created_at, activate_at, activated_at, retired_at, publish_until";

macro_rules! key_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<KeyRecord, StoreError>(KeyRecord {
            kid: row.try_get("kid")?,
            algorithm: row.try_get("algorithm")?,
            state: KeyState::parse(row.try_get::<&str, _>("state")?)?,
            sealed_private_key: row.try_get("sealed_private_key")?,
            public_jwk: row.try_get("public_jwk")?,
            created_at: row.try_get("created_at")?,
            activate_at: row.try_get("activate_at")?,
            activated_at: row.try_get("activated_at")?,
            retired_at: row.try_get("retired_at")?,
            publish_until: row.try_get("publish_until")?,
        })
    }};
}

/// Records in an emergency rotation's event, as `after.withdrawn_next` (sorted), the `next` keys
/// it withdrew, when there were any.
fn name_withdrawn_keys(event: &mut AuditEvent, mut withdrawn: Vec<String>) {
    if withdrawn.is_empty() {
        return;
    }
    withdrawn.sort();
    let mut detail = event
        .detail
        .as_ref()
        .map(super::AuditDetail::value)
        .unwrap_or_else(|| serde_json::json!({}));
    if !detail["after"].is_object() {
        detail["after"] = serde_json::json!({});
    }
    detail["after"]["withdrawn_next"] = serde_json::json!(withdrawn);
    event.detail = Some(super::AuditDetail::of(&detail));
}

impl KeyStore for Store {
    async fn published_keys(&self, now: i64) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at DESC, kid"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str())).bind(now).fetch_all(pool).await?;
            rows.iter().map(|row| key_from_row!(row)).collect()
        })
    }

    async fn all_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid");
        on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str())).fetch_all(pool).await?;
            rows.iter().map(|row| key_from_row!(row)).collect()
        })
    }

    async fn insert_key(
        &self,
        key: &KeyRecord,
        activate: Option<(i64, i64)>,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            insert_key_row!(&mut *tx, key)?;
            let mut event = event.cloned();
            if let Some((now, retired_publish_until)) = activate {
                // Read under the key-change lock, so this is every key waiting when the
                // emergency rotation is applied, including one a scheduled rotation published
                // a moment ago; the audit event names exactly these.
                let withdrawn: Vec<String> = sqlx::query_scalar(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $1 WHERE state = 'next' AND kid <> $2 RETURNING kid",
                )
                .bind(now)
                .bind(&key.kid)
                .fetch_all(&mut *tx)
                .await?;
                if let Some(event) = event.as_mut() {
                    name_withdrawn_keys(event, withdrawn);
                }
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $2 WHERE state = 'active'",
                )
                .bind(now)
                .bind(retired_publish_until)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE kid = $2")
                    .bind(now)
                    .bind(&key.kid)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::classify)?;
            }
            if let Some(event) = &event {
                super::audit::insert_event!(&mut *tx, event)?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn insert_first_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (state) WHERE state = 'active' DO NOTHING"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            // The conflict target is the partial unique index of the active key: a concurrent
            // first key committed before this one makes this insert do nothing, where a plain
            // insert failed on the index and the instance exited.
            let inserted = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.sealed_private_key)
                .bind(&key.public_jwk)
                .bind(key.created_at)
                .bind(key.activate_at)
                .bind(key.activated_at)
                .bind(key.retired_at)
                .bind(key.publish_until)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
            commit_if_changed!(tx, inserted.rows_affected() == 1, None::<&AuditEvent>)
        })
    }

    async fn insert_scheduled_key(
        &self,
        key: &KeyRecord,
        activated_by: i64,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            // Lock the active key's row (on SQLite, the database) with an update that changes
            // nothing: a concurrent scheduler waits here until this transaction ends, and its
            // next statement then sees the `next` key this one inserted.
            let due = sqlx::query(
                "UPDATE signing_keys SET activated_at = activated_at WHERE state = 'active' AND activated_at <= $1",
            )
            .bind(activated_by)
            .execute(&mut *tx)
            .await?;
            if due.rows_affected() != 1 {
                return Ok(false);
            }
            let waiting: Option<String> =
                sqlx::query_scalar("SELECT kid FROM signing_keys WHERE state = 'next' LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if waiting.is_some() {
                return Ok(false);
            }
            insert_key_row!(&mut *tx, key)?;
            commit_if_changed!(tx, true, Some(event))
        })
    }

    async fn promote_key(
        &self,
        kid: &str,
        now: i64,
        retired_publish_until: i64,
        event: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            // Claim the candidate first: a concurrent promoter blocks on this row and then finds
            // nothing to claim, so it never retires the key this transaction activates.
            let claimed = sqlx::query(
                "UPDATE signing_keys SET activated_at = $1 WHERE kid = $2 AND state = 'next' AND activated_at IS NULL",
            )
            .bind(now)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $2 WHERE state = 'active'",
            )
            .bind(now)
            .bind(retired_publish_until)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE signing_keys SET state = 'active' WHERE kid = $1")
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
            commit_if_changed!(tx, true, event)
        })
    }

    async fn withdraw_key(
        &self,
        kid: &str,
        now: i64,
        event: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            let done = sqlx::query(
                "UPDATE signing_keys SET state = 'retired', retired_at = COALESCE(retired_at, $1), publish_until = $1 WHERE kid = $2 AND state <> 'active' AND (publish_until IS NULL OR publish_until > $1)",
            )
            .bind(now)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            commit_if_changed!(tx, done.rows_affected() == 1, event)
        })
    }

    async fn retire_key(
        &self,
        kid: &str,
        now: i64,
        publish_until: i64,
        event: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_key_changes!(self, tx);
            let done = sqlx::query(
                "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $2 WHERE kid = $3 AND state = 'next'",
            )
            .bind(now)
            .bind(publish_until)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            commit_if_changed!(tx, done.rows_affected() == 1, event)
        })
    }
}
