//! Issued access tokens (for introspection and revocation) and leg-2 subject links.
//! Only identifiers and metadata are stored, never a token.

use sqlx::Row;

use super::{AuditEvent, Store, StoreError, on_pool};

/// One issued access token's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token's `jti`.
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its `sub`.
    pub subject: String,
    /// `access_token` (the only kind recorded today).
    pub token_type: String,
    /// `iat`.
    pub issued_at: i64,
    /// `exp`.
    pub expires_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Its position in the published status lists (`oauth/status_list.rs`), if it has one.
    pub status_index: Option<i64>,
    /// The issuer of its subject (the identity provider whose token it was issued for).
    pub subject_issuer: Option<String>,
}

/// Whose tokens [`TokenStore::revoke_tokens`] revokes: the kill switch for one user (PEERS §4
/// item 7) or for one client — a compromised agent — without deleting its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationScope<'a> {
    /// Every token whose `sub` is this.
    Subject(&'a str),
    /// Every token issued to this client.
    Client(&'a str),
    /// Every token issued for a subject of this issuer (`iss` of the identity provider's
    /// tokens): for a compromised identity provider.
    Issuer(&'a str),
}

impl<'a> RevocationScope<'a> {
    /// What it revokes, table by table: access tokens, refresh tokens, codes (`$1` the time,
    /// `$2` the scope's value).
    fn statements(self) -> [&'static str; 3] {
        match self {
            Self::Subject(_) => [
                "UPDATE issued_tokens SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE authorization_codes SET used_at = $1 WHERE subject = $2 AND used_at IS NULL AND expires_at > $1",
            ],
            Self::Client(_) => [
                "UPDATE issued_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE authorization_codes SET used_at = $1 WHERE client_id = $2 AND used_at IS NULL AND expires_at > $1",
            ],
            Self::Issuer(_) => [
                "UPDATE issued_tokens SET revoked_at = $1 WHERE subject_issuer = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE subject_issuer = $2 AND revoked_at IS NULL AND expires_at > $1",
                "UPDATE authorization_codes SET used_at = $1 WHERE subject_issuer = $2 AND used_at IS NULL AND expires_at > $1",
            ],
        }
    }

    /// Marks the grant families it reaches as revoked by a kill switch (`$1` the time, `$2` the
    /// scope's value, `$3` the cause): those of its authorization codes, used or not (one may
    /// be being redeemed), and of its live refresh tokens (one may be being rotated). A grant
    /// of such a family that stores its tokens after the revocation read the tables finds the
    /// mark when it checks its family (RFC 9700 §4.14.2, REVOKE-05).
    fn family_marks(self) -> &'static str {
        match self {
            Self::Subject(_) => {
                "INSERT INTO revoked_families (family_id, revoked_at, cause) \
                 SELECT family_id, $1, $3 FROM authorization_codes WHERE subject = $2 \
                 UNION SELECT family_id, $1, $3 FROM refresh_tokens WHERE subject = $2 AND revoked_at IS NULL AND expires_at > $1 \
                 ON CONFLICT (family_id) DO NOTHING"
            }
            Self::Client(_) => {
                "INSERT INTO revoked_families (family_id, revoked_at, cause) \
                 SELECT family_id, $1, $3 FROM authorization_codes WHERE client_id = $2 \
                 UNION SELECT family_id, $1, $3 FROM refresh_tokens WHERE client_id = $2 AND revoked_at IS NULL AND expires_at > $1 \
                 ON CONFLICT (family_id) DO NOTHING"
            }
            Self::Issuer(_) => {
                "INSERT INTO revoked_families (family_id, revoked_at, cause) \
                 SELECT family_id, $1, $3 FROM authorization_codes WHERE subject_issuer = $2 \
                 UNION SELECT family_id, $1, $3 FROM refresh_tokens WHERE subject_issuer = $2 AND revoked_at IS NULL AND expires_at > $1 \
                 ON CONFLICT (family_id) DO NOTHING"
            }
        }
    }

    /// The user, client or issuer it names.
    pub fn value(self) -> &'a str {
        match self {
            Self::Subject(value) | Self::Client(value) | Self::Issuer(value) => value,
        }
    }
}

/// What [`TokenStore::revoke_tokens`] revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenRevocation {
    /// Live access tokens now revoked.
    pub access_tokens: u64,
    /// Live refresh tokens now revoked.
    pub refresh_tokens: u64,
    /// Unredeemed authorization codes now spent.
    pub authorization_codes: u64,
}

/// Issued-token and subject-link persistence.
pub trait TokenStore {
    /// Records an issued token.
    fn record_issued(
        &self,
        token: &IssuedToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Looks a token up by `jti`.
    fn issued_token(
        &self,
        jti: &str,
    ) -> impl Future<Output = Result<Option<IssuedToken>, StoreError>> + Send;
    /// Marks a token revoked (idempotent). Returns false if it is unknown.
    fn revoke_token(
        &self,
        jti: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The local subject linked to (`issuer`, `external_subject`), if any.
    fn linked_subject(
        &self,
        issuer: &str,
        external_subject: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Deletes the records of tokens that expired before `now` (an expired token is inactive
    /// whether or not a row says so) and their links to code families; returns how many.
    fn purge_expired_tokens(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Revokes everything frontdesk issued in `scope` (to a user, or to a client) that is still
    /// live: access tokens, refresh tokens, and codes not yet redeemed (spent, so they yield
    /// nothing). The kill switch (PEERS §4 item 7), committed with `event` — its detail gets the
    /// counts — in one transaction. Before it, the grant families of the scope's codes and live
    /// refresh tokens are marked revoked ([`super::CodeStore::family_revoked`]), so that a code
    /// redemption or a refresh under way does not leave its new tokens live (REVOKE-05).
    fn revoke_tokens(
        &self,
        scope: RevocationScope<'_>,
        now: i64,
        event: AuditEvent,
    ) -> impl Future<Output = Result<TokenRevocation, StoreError>> + Send;
    /// Reserves `count` consecutive status-list indexes for this instance to hand out; returns
    /// the first. One write per block, not per token.
    fn reserve_status_indexes(
        &self,
        count: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// How many status-list indexes have been reserved so far (by every instance): the lists
    /// that exist.
    fn status_indexes_reserved(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// The status indexes in `from..to` of tokens that were revoked.
    fn revoked_status_indexes(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;
    /// The lists (status index / `entries_per_list`) holding at least one token, revoked or
    /// not, that is still unexpired at `now`, in ascending order: the lists a resource server
    /// may still need. Reads only the unexpired rows (the `expires_at` index).
    fn status_lists_with_live_tokens(
        &self,
        now: i64,
        entries_per_list: i64,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;
    /// Links (`issuer`, `external_subject`) to `local_subject`, replacing an earlier link.
    fn link_subject(
        &self,
        issuer: &str,
        external_subject: &str,
        local_subject: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl TokenStore for Store {
    async fn record_issued(&self, token: &IssuedToken) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO issued_tokens (jti, client_id, subject, token_type, issued_at, expires_at, revoked_at, status_index, subject_issuer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&token.jti)
            .bind(&token.client_id)
            .bind(&token.subject)
            .bind(&token.token_type)
            .bind(token.issued_at)
            .bind(token.expires_at)
            .bind(token.revoked_at)
            .bind(token.status_index)
            .bind(&token.subject_issuer)
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn reserve_status_indexes(&self, count: i64) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            let first: i64 = sqlx::query_scalar(
                "UPDATE status_list_allocation SET next_index = next_index + $1 WHERE id = 1 RETURNING next_index - $1",
            )
            .bind(count)
            .fetch_one(pool)
            .await?;
            Ok(first)
        })
    }

    async fn status_indexes_reserved(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            let next: i64 =
                sqlx::query_scalar("SELECT next_index FROM status_list_allocation WHERE id = 1")
                    .fetch_one(pool)
                    .await?;
            Ok(next)
        })
    }

    async fn revoked_status_indexes(&self, from: i64, to: i64) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, pool => {
            let indexes: Vec<i64> = sqlx::query_scalar(
                "SELECT status_index FROM issued_tokens WHERE revoked_at IS NOT NULL AND status_index IS NOT NULL AND status_index >= $1 AND status_index < $2",
            )
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?;
            Ok(indexes)
        })
    }

    async fn status_lists_with_live_tokens(
        &self,
        now: i64,
        entries_per_list: i64,
    ) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, pool => {
            let lists: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT status_index / $2 AS list FROM issued_tokens WHERE expires_at > $1 AND status_index IS NOT NULL ORDER BY list",
            )
            .bind(now)
            .bind(entries_per_list)
            .fetch_all(pool)
            .await?;
            Ok(lists)
        })
    }

    async fn issued_token(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        if !super::may_be_stored(jti) {
            return Ok(None);
        }
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT jti, client_id, subject, token_type, issued_at, expires_at, revoked_at, status_index, subject_issuer FROM issued_tokens WHERE jti = $1",
            )
            .bind(jti)
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                Ok(IssuedToken {
                    jti: row.try_get("jti")?,
                    client_id: row.try_get("client_id")?,
                    subject: row.try_get("subject")?,
                    token_type: row.try_get("token_type")?,
                    issued_at: row.try_get("issued_at")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                    status_index: row.try_get("status_index")?,
                    subject_issuer: row.try_get("subject_issuer")?,
                })
            })
            .transpose()
        })
    }

    async fn revoke_token(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        if !super::may_be_stored(jti) {
            return Ok(false);
        }
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE issued_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE jti = $2",
            )
            .bind(now)
            .bind(jti)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn revoke_tokens(
        &self,
        scope: RevocationScope<'_>,
        now: i64,
        mut event: AuditEvent,
    ) -> Result<TokenRevocation, StoreError> {
        on_pool!(self, pool => {
            // The families are marked, and the mark committed, before anything is revoked: a
            // code being redeemed or a refresh token being rotated meanwhile either stored its
            // new tokens before the statements below read the tables (and they are revoked), or
            // checks its family after storing them and finds the mark (RFC 9700 §4.14.2,
            // REVOKE-05). In the revocation's transaction the mark would be invisible to that
            // check until the commit, while the revocation no longer sees tokens stored after
            // its statements began. Should the revocation then fail, the marked families were
            // to be revoked anyway, and running the kill switch again revokes them.
            sqlx::query(scope.family_marks())
                .bind(now)
                .bind(scope.value())
                .bind(super::codes::KILL_SWITCH)
                .execute(pool)
                .await?;
            let mut tx = pool.begin().await?;
            let mut counts = [0u64; 3];
            for (count, sql) in counts.iter_mut().zip(scope.statements()) {
                *count = sqlx::query(sql)
                    .bind(now)
                    .bind(scope.value())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            let revocation = TokenRevocation {
                access_tokens: counts[0],
                refresh_tokens: counts[1],
                authorization_codes: counts[2],
            };
            let mut detail = serde_json::to_value(revocation).unwrap_or_default();
            if let (Some(members), Some(previous)) = (
                detail.as_object_mut(),
                event.detail.as_ref().map(super::AuditDetail::value),
            ) && let Some(previous) = previous.as_object()
            {
                for (key, value) in previous {
                    members.insert(key.clone(), value.clone());
                }
            }
            event.detail = Some(super::AuditDetail::of(&detail));
            super::audit::insert_event!(&mut *tx, &event)?;
            tx.commit().await?;
            Ok(revocation)
        })
    }

    async fn purge_expired_tokens(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let links = sqlx::query(
                "DELETE FROM grant_family_tokens WHERE jti IN (SELECT jti FROM issued_tokens WHERE expires_at < $1)",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let tokens = sqlx::query("DELETE FROM issued_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(links + tokens)
        })
    }

    async fn linked_subject(
        &self,
        issuer: &str,
        external_subject: &str,
    ) -> Result<Option<String>, StoreError> {
        if !super::may_be_stored(issuer) || !super::may_be_stored(external_subject) {
            return Ok(None);
        }
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT local_subject FROM subject_links WHERE issuer = $1 AND external_subject = $2",
            )
            .bind(issuer)
            .bind(external_subject)
            .fetch_optional(pool)
            .await?;
            row.map(|row| row.try_get::<String, _>("local_subject").map_err(StoreError::from))
                .transpose()
        })
    }

    async fn link_subject(
        &self,
        issuer: &str,
        external_subject: &str,
        local_subject: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO subject_links (issuer, external_subject, local_subject, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (issuer, external_subject) DO UPDATE SET local_subject = excluded.local_subject, created_at = excluded.created_at",
            )
            .bind(issuer)
            .bind(external_subject)
            .bind(local_subject)
            .bind(now)
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }
}
