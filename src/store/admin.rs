//! Persistence of the web admin page: local admin users, server-side sessions, and trust changes
//! made through the page. A change and its audit event are written in one transaction, so the
//! log never misses a change and never records one that did not happen.

use sqlx::{AssertSqlSafe, Row};

use super::{AuditEvent, Store, StoreError, TrustDocument, TrustKind, on_pool};

/// What an admin user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Reads and changes everything.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
}

impl AdminRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Auditor => "auditor",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(text: &str) -> Option<AdminRole> {
        match text {
            "admin" => Some(AdminRole::Admin),
            "auditor" => Some(AdminRole::Auditor),
            _ => None,
        }
    }
}

/// A local admin account.
#[derive(Debug, Clone)]
pub struct AdminUser {
    /// Sign-in name.
    pub username: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// Role.
    pub role: AdminRole,
    /// Unix seconds.
    pub created_at: i64,
    /// True for a user created by single sign-on: no password, never signs in locally.
    pub sso: bool,
}

/// A pending single sign-on: the browser was sent to the IdP with `state`; the callback
/// finishes it in whichever instance it lands on.
#[derive(Clone)]
pub struct AdminSsoRequest {
    /// SHA-256 of the `state` sent to the IdP, base64url.
    pub state_hash: String,
    /// SHA-256 of the browser-binding cookie's value, base64url.
    pub binding_hash: String,
    /// The OpenID Connect nonce expected in the ID token.
    pub nonce: String,
    /// Our PKCE verifier for the IdP's code.
    pub pkce_verifier: String,
    /// Unix seconds.
    pub created_at: i64,
    /// SHA-256 of the admin session cookie the browser sent when it started the sign-in (the
    /// session's `id_hash`), if it sent one. The callback ends that session: the cookie is
    /// `SameSite=Strict` and does not come back on the identity provider's redirect, so the
    /// callback cannot see it.
    pub previous_session_hash: Option<String>,
}

impl std::fmt::Debug for AdminSsoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSsoRequest")
            .field("state_hash", &self.state_hash)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A stored session (the cookie value itself is never stored).
#[derive(Debug, Clone)]
pub struct AdminSessionRecord {
    /// SHA-256 of the cookie value, base64url.
    pub id_hash: String,
    /// The signed-in user.
    pub username: String,
    /// Role of the user (joined from `admin_users`, so a role change applies at once).
    pub role: AdminRole,
    /// Per-session CSRF token put in every form.
    pub csrf_token: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last request (idle timeout).
    pub last_seen_at: i64,
}

/// A bearer token of the admin JSON API (the token itself is never stored).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiTokenRecord {
    /// SHA-256 of the token, base64url.
    #[serde(skip)]
    pub id_hash: String,
    /// Unique name; audit events name the actor `api:<name>`.
    pub name: String,
    /// Role.
    pub role: AdminRole,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last authenticated request, if any.
    pub last_used_at: Option<i64>,
    /// Unix seconds after which the token is refused, if it expires.
    pub expires_at: Option<i64>,
}

/// A trust change made through the admin page.
#[derive(Debug, Clone, Copy)]
pub enum TrustChange<'a> {
    /// Insert a new object; `Conflict` if the id is taken (by any row, config-managed or not).
    Create(&'a TrustDocument),
    /// Replace a database-managed object.
    Update(&'a TrustDocument),
    /// Delete a database-managed object; a client's issued access and refresh tokens are
    /// revoked with it.
    Delete(&'a str),
}

/// Admin persistence.
pub trait AdminStore {
    /// Number of admin users (the development bootstrap link is offered only at zero).
    fn count_admin_users(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Creates a user and records `event` in one transaction; `Conflict` if the name is taken.
    fn create_admin_user(
        &self,
        user: &AdminUser,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The user with this name.
    fn admin_user(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<AdminUser>, StoreError>> + Send;
    /// Every admin user (local and single sign-on), by name.
    fn list_admin_users(&self) -> impl Future<Output = Result<Vec<AdminUser>, StoreError>> + Send;
    /// Replaces a local user's password hash, ends the user's sessions and records `event`, in
    /// one transaction; `NotFound` when no local user has this name.
    fn set_admin_password(
        &self,
        username: &str,
        password_hash: &str,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes a user and its sessions and records `event`, in one transaction. `NotFound` when
    /// no user has this name; `Conflict` when it is the last user with the admin role (the
    /// admin page would then be locked to everyone).
    fn delete_admin_user(
        &self,
        username: &str,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a new session.
    fn create_admin_session(
        &self,
        session: &AdminSessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The session with this id hash, with its user's current role.
    fn admin_session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = Result<Option<AdminSessionRecord>, StoreError>> + Send;
    /// Marks a session as used now.
    fn touch_admin_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes a session (sign-out, expiry).
    fn delete_admin_session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes every session of `username`; returns how many there were.
    fn delete_admin_sessions_of(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes sessions idle since before `idle_before` or created before `created_before`.
    fn purge_admin_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a new API token and records `event` in one transaction; `Conflict` if the name
    /// is taken.
    fn create_api_token(
        &self,
        token: &ApiTokenRecord,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The API token with this hash.
    fn api_token(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = Result<Option<ApiTokenRecord>, StoreError>> + Send;
    /// Every API token, by name.
    fn list_api_tokens(
        &self,
    ) -> impl Future<Output = Result<Vec<ApiTokenRecord>, StoreError>> + Send;
    /// Records that a token was used now.
    fn touch_api_token(
        &self,
        id_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes the token named `name` and records `event` in one transaction; false (and
    /// nothing recorded) if there is none.
    fn revoke_api_token(
        &self,
        name: &str,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Creates or updates the single sign-on user `username` with `role` (decided again at every
    /// sign-in) and records `event`, in one transaction. `Conflict` if a local account has that
    /// name (it cannot: SSO names contain `:`, local ones may not).
    fn upsert_sso_admin_user(
        &self,
        username: &str,
        role: AdminRole,
        now: i64,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a pending single sign-on, first deleting those created before `expired_before`.
    fn create_admin_sso_request(
        &self,
        request: &AdminSsoRequest,
        expired_before: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes (deletes and returns) the pending sign-on with this state hash: a state is used
    /// once, whatever happens next.
    fn take_admin_sso_request(
        &self,
        state_hash: &str,
    ) -> impl Future<Output = Result<Option<AdminSsoRequest>, StoreError>> + Send;
    /// Applies a trust change to database-managed rows only (config-managed rows are never
    /// touched) and records `event`, all in one transaction. False if no row matched (a delete
    /// or update of a missing or config-managed object), and then nothing is recorded.
    fn apply_trust_change(
        &self,
        kind: TrustKind,
        change: TrustChange<'_>,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

fn table(kind: TrustKind) -> (&'static str, &'static str) {
    match kind {
        TrustKind::IdentityProvider => ("identity_providers", "id"),
        TrustKind::Audience => ("audiences", "id"),
        TrustKind::Client => ("clients", "client_id"),
    }
}

/// Decodes an `admin_api_tokens` row (a macro: the row type differs per database).
macro_rules! api_token_of {
    ($row:expr) => {{
        let row = $row;
        let role: String = row.try_get("role")?;
        Ok::<_, StoreError>(ApiTokenRecord {
            id_hash: row.try_get("id_hash")?,
            name: row.try_get("name")?,
            role: AdminRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown admin role {role}")))?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }};
}

const API_TOKEN_COLUMNS: &str = "id_hash, name, role, created_at, last_used_at, expires_at";

impl AdminStore for Store {
    async fn count_admin_users(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM admin_users").fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>("n")?)
        })
    }

    async fn create_admin_user(
        &self,
        user: &AdminUser,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO admin_users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&user.username)
                .bind(&user.password_hash)
                .bind(user.role.as_str())
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn admin_user(&self, username: &str) -> Result<Option<AdminUser>, StoreError> {
        if !super::may_be_stored(username) {
            return Ok(None);
        }
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT username, password_hash, role, created_at, auth_source FROM admin_users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(admin_user_of)
            .transpose()
        })
    }

    async fn list_admin_users(&self) -> Result<Vec<AdminUser>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT username, password_hash, role, created_at, auth_source FROM admin_users ORDER BY username")
                .fetch_all(pool)
                .await?;
            rows.iter().map(admin_user_of).collect()
        })
    }

    async fn set_admin_password(
        &self,
        username: &str,
        password_hash: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query("UPDATE admin_users SET password_hash = $1 WHERE username = $2 AND auth_source = 'local'")
                .bind(password_hash)
                .bind(username)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
            sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn delete_admin_user(
        &self,
        username: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Writing every admin row first takes their row locks on PostgreSQL (SQLite's
            // write lock on its own): a second removal waits for this one and then counts what
            // it left, so two removals at once cannot each leave the other as the last admin.
            sqlx::query("UPDATE admin_users SET role = role WHERE role = 'admin'")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM admin_users WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
            let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin_users WHERE role = 'admin'")
                .fetch_one(&mut *tx)
                .await?;
            if left == 0 {
                return Err(StoreError::Conflict);
            }
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn upsert_sso_admin_user(
        &self,
        username: &str,
        role: AdminRole,
        now: i64,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "INSERT INTO admin_users (username, password_hash, role, created_at, auth_source) \
                 VALUES ($1, '', $2, $3, 'sso') \
                 ON CONFLICT (username) DO UPDATE SET role = excluded.role \
                 WHERE admin_users.auth_source = 'sso'",
            )
            .bind(username)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn create_admin_sso_request(
        &self,
        request: &AdminSsoRequest,
        expired_before: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_sso_requests WHERE created_at < $1")
                .bind(expired_before)
                .execute(pool)
                .await?;
            sqlx::query("INSERT INTO admin_sso_requests (state_hash, binding_hash, nonce, pkce_verifier, created_at, previous_session_hash) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&request.state_hash)
                .bind(&request.binding_hash)
                .bind(&request.nonce)
                .bind(&request.pkce_verifier)
                .bind(request.created_at)
                .bind(&request.previous_session_hash)
                .execute(pool)
                .await
                .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn take_admin_sso_request(
        &self,
        state_hash: &str,
    ) -> Result<Option<AdminSsoRequest>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "DELETE FROM admin_sso_requests WHERE state_hash = $1 \
                 RETURNING state_hash, binding_hash, nonce, pkce_verifier, created_at, \
                 previous_session_hash",
            )
            .bind(state_hash)
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                Ok(AdminSsoRequest {
                    state_hash: row.try_get("state_hash")?,
                    binding_hash: row.try_get("binding_hash")?,
                    nonce: row.try_get("nonce")?,
                    pkce_verifier: row.try_get("pkce_verifier")?,
                    created_at: row.try_get("created_at")?,
                    previous_session_hash: row.try_get("previous_session_hash")?,
                })
            })
            .transpose()
        })
    }

    async fn create_admin_session(&self, session: &AdminSessionRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO admin_sessions (id_hash, username, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&session.id_hash)
                .bind(&session.username)
                .bind(&session.csrf_token)
                .bind(session.created_at)
                .bind(session.last_seen_at)
                .execute(pool)
                .await
                .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn admin_session(&self, id_hash: &str) -> Result<Option<AdminSessionRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT s.id_hash, s.username, u.role, s.csrf_token, s.created_at, s.last_seen_at \
                 FROM admin_sessions s JOIN admin_users u ON u.username = s.username WHERE s.id_hash = $1",
            )
            .bind(id_hash)
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                let role: String = row.try_get("role")?;
                Ok(AdminSessionRecord {
                    id_hash: row.try_get("id_hash")?,
                    username: row.try_get("username")?,
                    role: AdminRole::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown admin role {role}")))?,
                    csrf_token: row.try_get("csrf_token")?,
                    created_at: row.try_get("created_at")?,
                    last_seen_at: row.try_get("last_seen_at")?,
                })
            })
            .transpose()
        })
    }

    async fn touch_admin_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE admin_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn delete_admin_session(&self, id_hash: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn delete_admin_sessions_of(&self, username: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
                .bind(username)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    async fn purge_admin_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_sessions WHERE last_seen_at < $1 OR created_at < $2")
                .bind(idle_before)
                .bind(created_before)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn create_api_token(
        &self,
        token: &ApiTokenRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO admin_api_tokens (id_hash, name, role, created_at, last_used_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&token.id_hash)
                .bind(&token.name)
                .bind(token.role.as_str())
                .bind(token.created_at)
                .bind(token.last_used_at)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn api_token(&self, id_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM admin_api_tokens WHERE id_hash = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id_hash)
                .fetch_optional(pool)
                .await?;
            row.map(|row| api_token_of!(row)).transpose()
        })
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM admin_api_tokens ORDER BY name");
        on_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str())).fetch_all(pool).await?;
            rows.into_iter().map(|row| api_token_of!(row)).collect()
        })
    }

    async fn touch_api_token(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE admin_api_tokens SET last_used_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn revoke_api_token(&self, name: &str, event: &AuditEvent) -> Result<bool, StoreError> {
        if !super::may_be_stored(name) {
            return Ok(false);
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM admin_api_tokens WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !deleted {
                tx.rollback().await?;
                return Ok(false);
            }
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn apply_trust_change(
        &self,
        kind: TrustKind,
        change: TrustChange<'_>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (table, id) = table(kind);
        // Only database-managed rows may change here: an insert never overwrites a row, and
        // updates and deletes skip config-managed rows.
        let insert = format!(
            "INSERT INTO {table} ({id}, document, managed_by_config, updated_at) VALUES ($1, $2, FALSE, $3)"
        );
        let update = format!(
            "UPDATE {table} SET document = $2, updated_at = $3 WHERE {id} = $1 AND managed_by_config = FALSE"
        );
        let delete = format!("DELETE FROM {table} WHERE {id} = $1 AND managed_by_config = FALSE");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = match change {
                TrustChange::Create(document) | TrustChange::Update(document) => {
                    let sql = if matches!(change, TrustChange::Create(_)) { &insert } else { &update };
                    sqlx::query(AssertSqlSafe(sql.as_str()))
                        .bind(&document.id)
                        .bind(document.document.to_string())
                        .bind(document.updated_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::classify)?
                        .rows_affected()
                        == 1
                }
                TrustChange::Delete(id_value) => {
                    let deleted = sqlx::query(AssertSqlSafe(delete.as_str()))
                        .bind(id_value)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    // A deleted client's access and refresh tokens are revoked with it (RFC 7592
                    // §2.3), in the same transaction: introspection stops calling them active.
                    if deleted && kind == TrustKind::Client {
                        for revoke in super::trust::REVOKE_CLIENT_TOKENS {
                            sqlx::query(revoke)
                                .bind(event.occurred_at)
                                .bind(id_value)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    deleted
                }
            };
            if !changed {
                tx.rollback().await?;
                return Ok(false);
            }
            // Other instances reload their registry when the generation moves (registry.rs).
            sqlx::query(super::trust::BUMP_GENERATION).execute(&mut *tx).await?;
            super::audit::insert_event!(&mut *tx, event)?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

/// An `admin_users` row (`username, password_hash, role, created_at, auth_source`).
fn admin_user_of<R: sqlx::Row>(row: &R) -> Result<AdminUser, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let role: String = row.try_get("role")?;
    Ok(AdminUser {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: AdminRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown admin role {role}")))?,
        created_at: row.try_get("created_at")?,
        sso: row.try_get::<String, _>("auth_source")? == "sso",
    })
}
