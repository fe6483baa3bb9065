//! The authorization code flow's state: pending authorization requests, authorization codes and
//! refresh tokens. Codes and refresh tokens are stored only as SHA-256 hashes (the caller hashes);
//! single use and rotation are decided by one conditional `UPDATE` each, so two concurrent
//! redemptions cannot both win.

use sqlx::Row;

use super::{Store, StoreError, on_pool};

/// A pending authorization request (GET /authorize until the consent decision). Its `Debug`
/// leaves out the CSRF token, nonce, PKCE verifier and RP state, so a logged request gives
/// nothing away.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// Random identifier, carried by the consent form.
    pub id: String,
    /// The `state` sent to the sign-in IdP.
    pub rp_state: String,
    /// SHA-256 (hex) of the browser-binding cookie.
    pub browser_hash: String,
    /// The consent form's CSRF token.
    pub csrf_token: String,
    /// The `nonce` sent to the sign-in IdP.
    pub nonce: String,
    /// Our PKCE verifier at the sign-in IdP.
    pub rp_pkce_verifier: String,
    /// The requesting client.
    pub client_id: String,
    /// Its registered redirect URI named by the request.
    pub redirect_uri: String,
    /// The client's `state`, passed through.
    pub state: Option<String>,
    /// The client's S256 PKCE challenge.
    pub code_challenge: String,
    /// The resource (RFC 8707) the code will be for.
    pub resource: String,
    /// Scopes to grant.
    pub scopes: Vec<String>,
    /// The `dpop_jkt` the client sent (RFC 9449 §10): the code is redeemed only with a proof of
    /// that key.
    pub dpop_jkt: Option<String>,
    /// `login` → `signing_in` → `consent` → `done` (or `failed`).
    pub status: String,
    /// The signed-in user's local subject (after the callback).
    pub subject: Option<String>,
    /// The sign-in IdP's issuer (after the callback).
    pub subject_issuer: Option<String>,
    /// The user's email, if the IdP sent one (shown on the consent page, audited).
    pub email: Option<String>,
    /// When the user authenticated at the IdP.
    pub auth_time: Option<i64>,
    /// Created, unix seconds.
    pub created_at: i64,
    /// The request is void after this.
    pub expires_at: i64,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .field("status", &self.status)
            .field("subject", &self.subject)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An issued authorization code, by the hash of the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// Everything issued from this code shares it.
    pub family_id: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI it was delivered to.
    pub redirect_uri: String,
    /// The S256 challenge the verifier must match.
    pub code_challenge: String,
    /// The user.
    pub subject: String,
    /// The IdP the user signed in at.
    pub subject_issuer: String,
    /// The resource.
    pub resource: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the user authenticated.
    pub auth_time: Option<i64>,
    /// Issued, unix seconds.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// The DPoP key the code is bound to (`dpop_jkt` of the request, RFC 9449 §10).
    pub dpop_jkt: Option<String>,
}

/// An issued refresh token, by the hash of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// The code family it belongs to.
    pub family_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user.
    pub subject: String,
    /// The IdP the user signed in at.
    pub subject_issuer: String,
    /// The resource.
    pub resource: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the user authenticated.
    pub auth_time: Option<i64>,
    /// Issued, unix seconds.
    pub issued_at: i64,
    /// Expiry (absolute: rotation keeps the family's expiry).
    pub expires_at: i64,
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to (public clients that used
    /// DPoP, RFC 9449 §5); a refresh must prove possession of that key.
    pub dpop_jkt: Option<String>,
}

/// A stored refresh token as it is now, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// What it was issued for.
    pub record: RefreshRecord,
    /// When it was rotated (spent by the refresh_token grant), if it was.
    pub rotated_at: Option<i64>,
    /// When its family was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// The outcome of presenting a code or refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption<T> {
    /// Unknown hash.
    Unknown,
    /// First use: the record, now marked used/rotated.
    Fresh(T),
    /// Already used (or rotated, or revoked): a replay.
    Replayed(T),
}

/// Why a grant family was revoked ([`CodeStore::family_revoked`]): a grant being issued in it
/// answers differently, since a client whose grant was reused has leaked it and one caught by
/// a kill switch has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyRevocation {
    /// One of its codes or refresh tokens was used again, or it was revoked at /revoke
    /// ([`CodeStore::revoke_family`]).
    Leaked,
    /// An administrator revoked every token of its user, client or identity provider
    /// ([`super::TokenStore::revoke_tokens`]).
    KillSwitch,
}

/// Persistence of the authorization code flow.
pub trait CodeStore {
    /// Stores a new pending request.
    fn create_authorization_request(
        &self,
        request: &AuthorizationRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A pending request by id.
    fn authorization_request(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<AuthorizationRequest>, StoreError>> + Send;
    /// A pending request by the state sent to the IdP.
    fn authorization_request_by_rp_state(
        &self,
        rp_state: &str,
    ) -> impl Future<Output = Result<Option<AuthorizationRequest>, StoreError>> + Send;
    /// Moves a request from `from` to `to` if it is in `from` and not expired; false otherwise.
    fn advance_authorization_request(
        &self,
        id: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records the signed-in user and moves the request from `signing_in` to `consent`.
    fn complete_sign_in(
        &self,
        id: &str,
        subject: &str,
        subject_issuer: &str,
        email: Option<&str>,
        auth_time: Option<i64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Stores an issued code under its hash.
    fn insert_code(
        &self,
        code_hash: &str,
        code: &CodeRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Redeems a code: marks it used if it was not.
    fn consume_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Redemption<CodeRecord>, StoreError>> + Send;
    /// Stores an issued refresh token under its hash.
    fn insert_refresh_token(
        &self,
        token_hash: &str,
        token: &RefreshRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rotates a refresh token: marks it rotated if it was neither rotated nor revoked.
    fn rotate_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Redemption<RefreshRecord>, StoreError>> + Send;
    /// Links an issued access token to a code family.
    fn link_family_token(
        &self,
        family_id: &str,
        jti: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The family and client of a refresh token, without rotating it (RFC 7009 revocation).
    fn refresh_token_owner(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;
    /// A refresh token and its state, without rotating or consuming it: a refresh token
    /// presented as a token-exchange `subject_token` stays usable (IDJAG-ISSUE-11).
    fn refresh_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<RefreshState>, StoreError>> + Send;
    /// Deletes what the authorization code flow no longer needs: authorization requests past
    /// their expiry, codes (used or not) that expired before `codes_before` (kept a while longer
    /// than their lifetime so a late replay still revokes its family), and refresh tokens past
    /// their expiry (revoked ones too: a family's tokens share its expiry, so reuse is detected
    /// for as long as any of them could be used). Returns how many rows went.
    fn purge_authorization_state(
        &self,
        now: i64,
        codes_before: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Revokes every refresh token and access token of a family; returns how many rows changed.
    fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Whether, and why, `family_id` was revoked — by [`Self::revoke_family`] or by a kill
    /// switch ([`super::TokenStore::revoke_tokens`]) that reached it: a grant checks it after
    /// storing its new tokens, so that a replay or a kill switch that revoked the family's
    /// tokens before they existed still reaches them (RFC 9700 §4.14.2, REVOKE-05).
    fn family_revoked(
        &self,
        family_id: &str,
    ) -> impl Future<Output = Result<Option<FamilyRevocation>, StoreError>> + Send;
}

/// `revoked_families.cause` of a family marked by a kill switch (NULL: leaked).
pub(super) const KILL_SWITCH: &str = "kill_switch";

fn split_scopes(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

macro_rules! request_columns {
    () => {
        "id, rp_state, browser_hash, csrf_token, nonce, rp_pkce_verifier, client_id, redirect_uri, state, code_challenge, resource, scopes, status, subject, subject_issuer, email, auth_time, created_at, expires_at, dpop_jkt"
    };
}
macro_rules! code_columns {
    () => {
        "family_id, client_id, redirect_uri, code_challenge, subject, subject_issuer, resource, scopes, auth_time, created_at, expires_at, used_at, dpop_jkt"
    };
}
macro_rules! refresh_columns {
    () => {
        "family_id, client_id, subject, subject_issuer, resource, scopes, auth_time, issued_at, expires_at, rotated_at, revoked_at, dpop_jkt"
    };
}

macro_rules! request_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<_, StoreError>(AuthorizationRequest {
            id: row.try_get("id")?,
            rp_state: row.try_get("rp_state")?,
            browser_hash: row.try_get("browser_hash")?,
            csrf_token: row.try_get("csrf_token")?,
            nonce: row.try_get("nonce")?,
            rp_pkce_verifier: row.try_get("rp_pkce_verifier")?,
            client_id: row.try_get("client_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            state: row.try_get("state")?,
            code_challenge: row.try_get("code_challenge")?,
            resource: row.try_get("resource")?,
            scopes: split_scopes(&row.try_get::<String, _>("scopes")?),
            status: row.try_get("status")?,
            subject: row.try_get("subject")?,
            subject_issuer: row.try_get("subject_issuer")?,
            email: row.try_get("email")?,
            auth_time: row.try_get("auth_time")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            dpop_jkt: row.try_get("dpop_jkt")?,
        })
    }};
}

macro_rules! refresh_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<_, StoreError>(RefreshRecord {
            family_id: row.try_get("family_id")?,
            client_id: row.try_get("client_id")?,
            subject: row.try_get("subject")?,
            subject_issuer: row.try_get("subject_issuer")?,
            resource: row.try_get("resource")?,
            scopes: split_scopes(&row.try_get::<String, _>("scopes")?),
            auth_time: row.try_get("auth_time")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            dpop_jkt: row.try_get("dpop_jkt")?,
        })
    }};
}

/// Decodes an `authorization_codes` row (a macro: the row type differs per database).
macro_rules! code_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<_, StoreError>(CodeRecord {
            family_id: row.try_get("family_id")?,
            client_id: row.try_get("client_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            code_challenge: row.try_get("code_challenge")?,
            subject: row.try_get("subject")?,
            subject_issuer: row.try_get("subject_issuer")?,
            resource: row.try_get("resource")?,
            scopes: split_scopes(&row.try_get::<String, _>("scopes")?),
            auth_time: row.try_get("auth_time")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            dpop_jkt: row.try_get("dpop_jkt")?,
        })
    }};
}

/// Redeems a single-use row: claims it with the conditional UPDATE `$claim` (binding `$now`, then
/// `$key`), then reads it back with `$select` (binding `$key`). `Fresh` if this call claimed it,
/// `Replayed` if it was already used (the caller revokes what it issued), `Unknown` if there is
/// no such row. Two concurrent redemptions cannot both be `Fresh`: the UPDATE is the arbiter.
macro_rules! claim_then_load {
    ($pool:expr, $claim:expr, $select:expr, $key:expr, $now:expr, $from_row:ident) => {{
        let claimed = sqlx::query($claim)
            .bind($now)
            .bind($key)
            .execute($pool)
            .await?
            .rows_affected()
            == 1;
        let row = sqlx::query($select)
            .bind($key)
            .fetch_optional($pool)
            .await?;
        match row {
            None => Ok(Redemption::Unknown),
            Some(row) => {
                let record = $from_row!(&row)?;
                Ok(if claimed {
                    Redemption::Fresh(record)
                } else {
                    Redemption::Replayed(record)
                })
            }
        }
    }};
}

impl CodeStore for Store {
    async fn create_authorization_request(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(concat!("INSERT INTO authorization_requests (", request_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"))
            .bind(&request.id)
            .bind(&request.rp_state)
            .bind(&request.browser_hash)
            .bind(&request.csrf_token)
            .bind(&request.nonce)
            .bind(&request.rp_pkce_verifier)
            .bind(&request.client_id)
            .bind(&request.redirect_uri)
            .bind(&request.state)
            .bind(&request.code_challenge)
            .bind(&request.resource)
            .bind(request.scopes.join(" "))
            .bind(&request.status)
            .bind(&request.subject)
            .bind(&request.subject_issuer)
            .bind(&request.email)
            .bind(request.auth_time)
            .bind(request.created_at)
            .bind(request.expires_at)
            .bind(&request.dpop_jkt)
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn authorization_request(
        &self,
        id: &str,
    ) -> Result<Option<AuthorizationRequest>, StoreError> {
        if !super::may_be_stored(id) {
            return Ok(None);
        }
        on_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", request_columns!(), " FROM authorization_requests WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.map(|row| request_from_row!(row)).transpose()
        })
    }

    async fn authorization_request_by_rp_state(
        &self,
        rp_state: &str,
    ) -> Result<Option<AuthorizationRequest>, StoreError> {
        if !super::may_be_stored(rp_state) {
            return Ok(None);
        }
        on_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", request_columns!(), " FROM authorization_requests WHERE rp_state = $1"))
            .bind(rp_state)
            .fetch_optional(pool)
            .await?;
            row.map(|row| request_from_row!(row)).transpose()
        })
    }

    async fn advance_authorization_request(
        &self,
        id: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE authorization_requests SET status = $1 WHERE id = $2 AND status = $3 AND expires_at > $4",
            )
            .bind(to)
            .bind(id)
            .bind(from)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn complete_sign_in(
        &self,
        id: &str,
        subject: &str,
        subject_issuer: &str,
        email: Option<&str>,
        auth_time: Option<i64>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE authorization_requests SET status = 'consent', subject = $1, subject_issuer = $2, email = $3, auth_time = $4 WHERE id = $5 AND status = 'signing_in'",
            )
            .bind(subject)
            .bind(subject_issuer)
            .bind(email)
            .bind(auth_time)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn insert_code(&self, code_hash: &str, code: &CodeRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(concat!("INSERT INTO authorization_codes (code_hash, ", code_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, $13)"))
            .bind(code_hash)
            .bind(&code.family_id)
            .bind(&code.client_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.subject)
            .bind(&code.subject_issuer)
            .bind(&code.resource)
            .bind(code.scopes.join(" "))
            .bind(code.auth_time)
            .bind(code.created_at)
            .bind(code.expires_at)
            .bind(&code.dpop_jkt)
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn consume_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Redemption<CodeRecord>, StoreError> {
        on_pool!(self, pool => {
            claim_then_load!(
                pool,
                "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
                concat!("SELECT ", code_columns!(), " FROM authorization_codes WHERE code_hash = $1"),
                code_hash,
                now,
                code_from_row
            )
        })
    }

    async fn insert_refresh_token(
        &self,
        token_hash: &str,
        token: &RefreshRecord,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(concat!("INSERT INTO refresh_tokens (token_hash, ", refresh_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11)"))
            .bind(token_hash)
            .bind(&token.family_id)
            .bind(&token.client_id)
            .bind(&token.subject)
            .bind(&token.subject_issuer)
            .bind(&token.resource)
            .bind(token.scopes.join(" "))
            .bind(token.auth_time)
            .bind(token.issued_at)
            .bind(token.expires_at)
            .bind(token.dpop_jkt.as_deref())
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Redemption<RefreshRecord>, StoreError> {
        on_pool!(self, pool => {
            claim_then_load!(
                pool,
                "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL AND revoked_at IS NULL",
                concat!("SELECT ", refresh_columns!(), " FROM refresh_tokens WHERE token_hash = $1"),
                token_hash,
                now,
                refresh_from_row
            )
        })
    }

    async fn link_family_token(&self, family_id: &str, jti: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO grant_family_tokens (family_id, jti) VALUES ($1, $2)")
                .bind(family_id)
                .bind(jti)
                .execute(pool)
                .await
                .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn refresh_token_owner(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT family_id, client_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(pool)
                .await?;
            row.map(|row| Ok((row.try_get("family_id")?, row.try_get("client_id")?)))
                .transpose()
        })
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshState>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", refresh_columns!(), " FROM refresh_tokens WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            row.map(|row| {
                Ok(RefreshState {
                    record: refresh_from_row!(&row)?,
                    rotated_at: row.try_get("rotated_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .transpose()
        })
    }

    async fn purge_authorization_state(
        &self,
        now: i64,
        codes_before: i64,
    ) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let requests = sqlx::query("DELETE FROM authorization_requests WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let codes = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                .bind(codes_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let refresh = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // A family's mark matters only while one of its grants is being issued.
            let families = sqlx::query("DELETE FROM revoked_families WHERE revoked_at < $1")
                .bind(codes_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(requests + codes + refresh + families)
        })
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            // The mark is committed before the tokens are revoked: a grant of the family being
            // issued meanwhile either stored its tokens before the revocation below reads them,
            // or checks after storing them and finds the mark (RFC 9700 §4.14.2). In the same
            // transaction, the mark would be invisible to that check until the commit.
            sqlx::query(
                "INSERT INTO revoked_families (family_id, revoked_at) VALUES ($1, $2) ON CONFLICT (family_id) DO NOTHING",
            )
            .bind(family_id)
            .bind(now)
            .execute(pool)
            .await?;
            let mut tx = pool.begin().await?;
            let refresh = sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(family_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let access = sqlx::query(
                "UPDATE issued_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND jti IN (SELECT jti FROM grant_family_tokens WHERE family_id = $2)",
            )
            .bind(now)
            .bind(family_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(refresh + access)
        })
    }

    async fn family_revoked(
        &self,
        family_id: &str,
    ) -> Result<Option<FamilyRevocation>, StoreError> {
        on_pool!(self, pool => {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT cause FROM revoked_families WHERE family_id = $1")
                    .bind(family_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|(cause,)| match cause.as_deref() {
                Some(KILL_SWITCH) => FamilyRevocation::KillSwitch,
                _ => FamilyRevocation::Leaked,
            }))
        })
    }
}
