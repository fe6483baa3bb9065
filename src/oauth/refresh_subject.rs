//! frontdesk's own refresh tokens as the `subject_token` of a token exchange for an ID-JAG (the
//! ID-JAG draft's refresh-token path, §4.3.3): the client gets a new ID-JAG without sending the
//! user through single sign-on again. The refresh token is validated as the `refresh_token`
//! grant validates it (IDJAG-ISSUE-11) but is neither rotated nor consumed, and the ID-JAG is
//! built from the user's current claims (IDJAG-ISSUE-12, see `crate::users`).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::client_auth::AuthenticatedClient;
use super::code_grant::revoke_leaked_family;
use super::service::TokenService;
use super::{ErrorCode, OAuthError};
use crate::authorize::codes::hash_token;
use crate::registry::{IdentityProvider, Registry};
use crate::store::{AuditDetail, AuditEvent, CodeStore, RefreshRecord, StoreError, UserStore};

fn invalid_grant(reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, reason, description.to_string())
}

fn store_failure(error: StoreError) -> OAuthError {
    tracing::error!(%error, "refresh token storage failed");
    OAuthError::server_error()
}

/// Checks that `token` is a live refresh token of the authenticated client: known, issued to
/// this client, not revoked, not rotated out, unexpired. A token held by another client, or a
/// rotated-out one, is treated as leaked exactly as the `refresh_token` grant treats it: its
/// whole family is revoked. Nothing is changed for a valid token.
pub(super) async fn validate(
    service: &TokenService,
    client: &AuthenticatedClient,
    token: &str,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<RefreshRecord, OAuthError> {
    if client.client.config.auth_method == "none" {
        // IDJAG-ISSUE-22: ID-JAGs only for confidential, authenticated clients.
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public_client_not_allowed",
            "Public clients may not obtain ID-JAGs",
        ));
    }
    let Some(state) = service
        .store
        .refresh_token(&hash_token(token))
        .await
        .map_err(store_failure)?
    else {
        return Err(invalid_grant(
            "refresh_token_unknown",
            "The refresh token is invalid",
        ));
    };
    let record = state.record;
    audit.subject = Some(record.subject.clone());
    audit.subject_issuer = Some(record.subject_issuer.clone());
    if record.client_id != client.client.config.client_id {
        // Another client holds this client's refresh token: it leaked.
        return Err(revoke_leaked_family(
            service,
            &record.family_id,
            now,
            audit,
            "refresh_token_client_mismatch",
            "The refresh token was issued to another client",
        )
        .await);
    }
    if state.revoked_at.is_some() {
        audit.detail = Some(AuditDetail::of(&json!({ "family_id": record.family_id })));
        return Err(invalid_grant(
            "refresh_token_revoked",
            "The refresh token has been revoked",
        ));
    }
    if state.rotated_at.is_some() {
        // OAuth 2.1 §4.3.1: a rotated-out token presented again means it leaked.
        return Err(revoke_leaked_family(
            service,
            &record.family_id,
            now,
            audit,
            "refresh_token_reused",
            "The refresh token was already used; its token family is revoked",
        )
        .await);
    }
    audit.detail = Some(AuditDetail::of(&json!({ "family_id": record.family_id })));
    if record.expires_at <= now {
        return Err(invalid_grant(
            "refresh_token_expired",
            "The refresh token has expired",
        ));
    }
    Ok(record)
}

/// The requested scopes must be among those the user granted this client for the refresh
/// token (RFC 6749 §6 semantics: asking for more is an error, not a silent narrowing).
pub(super) fn check_scopes(record: &RefreshRecord, requested: &[String]) -> Result<(), OAuthError> {
    if requested.iter().any(|scope| !record.scopes.contains(scope)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope_outside_refresh_token",
            "The requested scope exceeds the scope granted with the refresh token",
        ));
    }
    Ok(())
}

/// The identity provider the user signed in at and the user's current claims, with the
/// authentication time of the refresh token's own sign-in.
pub(super) async fn current_subject(
    service: &TokenService,
    registry: &Registry,
    record: &RefreshRecord,
) -> Result<(Arc<IdentityProvider>, Map<String, Value>), OAuthError> {
    let Some(idp) = registry
        .idp_by_issuer(&record.subject_issuer)
        .filter(|idp| idp.config.enabled)
    else {
        return Err(invalid_grant(
            "refresh_token_idp_untrusted",
            "The identity provider the user signed in at is no longer trusted",
        ));
    };
    let Some(user) = service
        .store
        .user_claims(&record.subject_issuer, &record.subject)
        .await
        .map_err(store_failure)?
    else {
        return Err(invalid_grant(
            "user_claims_unavailable",
            "The user's current attributes are unknown; the user must sign in again",
        ));
    };
    let mut claims = user.claims;
    claims.entry("sub").or_insert_with(|| json!(record.subject));
    claims
        .entry("iss")
        .or_insert_with(|| json!(record.subject_issuer));
    if let Some(auth_time) = record.auth_time {
        claims.insert("auth_time".into(), json!(auth_time));
    }
    Ok((idp.clone(), claims))
}
