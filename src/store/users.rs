//! Users' current claims. frontdesk has no user directory: what it knows about a user is what
//! the sign-in identity provider said at the user's most recent sign-in. That record is kept per
//! (issuer, local subject) so a refresh token, which may be weeks old, can be exchanged for an
//! ID-JAG carrying the user's *current* attributes (IDJAG-ISSUE-12).

use serde_json::{Map, Value};
use sqlx::Row;

use super::{Store, StoreError, on_pool};

/// The claims remembered from a user's latest sign-in.
#[derive(Clone, PartialEq)]
pub struct UserClaims {
    /// The claims (personal data: never logged, hence no derived `Debug`).
    pub claims: Map<String, Value>,
    /// When they were recorded, unix seconds.
    pub updated_at: i64,
}

impl std::fmt::Debug for UserClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Claims are personal data; show only which ones there are.
        f.debug_struct("UserClaims")
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Persistence of users' current claims.
pub trait UserStore {
    /// Records the claims of a sign-in at `now`. An older sign-in finishing after a newer one
    /// does not overwrite it.
    fn remember_user_claims(
        &self,
        issuer: &str,
        subject: &str,
        claims: &Map<String, Value>,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The latest claims of (`issuer`, `subject`), if the user ever signed in.
    fn user_claims(
        &self,
        issuer: &str,
        subject: &str,
    ) -> impl Future<Output = Result<Option<UserClaims>, StoreError>> + Send;
    /// Deletes records last updated before `before` (no refresh token can need them any more);
    /// returns how many.
    fn purge_user_claims(
        &self,
        before: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl UserStore for Store {
    async fn remember_user_claims(
        &self,
        issuer: &str,
        subject: &str,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(claims)
            .map_err(|error| StoreError::Corrupt(format!("user claims: {error}")))?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO user_claims (issuer, subject, claims, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (issuer, subject) DO UPDATE SET claims = excluded.claims, updated_at = excluded.updated_at \
                 WHERE user_claims.updated_at <= excluded.updated_at",
            )
            .bind(issuer)
            .bind(subject)
            .bind(&text)
            .bind(now)
            .execute(pool)
            .await
            .map_err(StoreError::classify)?;
        });
        Ok(())
    }

    async fn user_claims(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserClaims>, StoreError> {
        if !super::may_be_stored(issuer) || !super::may_be_stored(subject) {
            return Ok(None);
        }
        let row: Option<(String, i64)> = on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT claims, updated_at FROM user_claims WHERE issuer = $1 AND subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_optional(pool)
            .await?;
            row.map(|row| Ok::<_, StoreError>((row.try_get("claims")?, row.try_get("updated_at")?)))
                .transpose()?
        });
        let Some((text, updated_at)) = row else {
            return Ok(None);
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(claims)) => Ok(Some(UserClaims { claims, updated_at })),
            _ => Err(StoreError::Corrupt(
                "user_claims.claims is not a JSON object".into(),
            )),
        }
    }

    async fn purge_user_claims(&self, before: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM user_claims WHERE updated_at < $1")
                .bind(before)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
