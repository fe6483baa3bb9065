//! The ID-JAG draft's SAML path (§4.5, IDJAG-SAML-01..03): a client that signs users in with
//! SAML exchanges the user's assertion once for a refresh token
//! (`requested_token_type=…:refresh_token`), then that refresh token for ID-JAGs whenever it
//! needs one (`refresh_subject`), without sending the user through single sign-on again.
//!
//! The refresh token is frontdesk's own, of the same kind the authorization code flow issues:
//! bound to the client, revocable (`/revoke`, the kill switches), expiring with
//! `authorization.refresh_token_lifetime_secs`, and carrying the user's attributes from the
//! assertion (`crate::users`). It serves only as a subject token: the `refresh_token` grant
//! refuses it ([`EXCHANGE_ONLY_RESOURCE`]).

use serde_json::json;

use super::client_auth::AuthenticatedClient;
use super::exchange::{check_single_use, verify_saml_subject};
use super::service::{TokenResponse, TokenService};
use super::{ErrorCode, GrantType, OAuthError, TOKEN_TYPE_REFRESH_TOKEN};
use crate::registry::Registry;
use crate::store::{AuditDetail, AuditEvent, RefreshRecord};

/// The `resource` of a refresh token issued by this exchange: none. Such a token stands for the
/// user's sign-in, not for access to one of this server's resources, so the `refresh_token` grant
/// (which needs a resource) refuses it before rotating it.
pub const EXCHANGE_ONLY_RESOURCE: &str = "";

/// Scopes a client may always ask for here (IDJAG-SAML-03: the draft's clients send
/// `openid offline_access`); they carry no access of their own.
const SIGN_IN_SCOPES: &[&str] = &["openid", "offline_access"];

/// The scopes the refresh token carries: those requested that the client could later be granted
/// in an ID-JAG (its own `scopes`, or else those of the audiences it may use), and the sign-in
/// scopes. They bound every ID-JAG exchanged from it (`refresh_subject::check_scopes`).
fn grant_scopes(
    registry: &Registry,
    client: &AuthenticatedClient,
    requested: &[String],
) -> Result<Vec<String>, OAuthError> {
    let config = &client.client.config;
    let allowed = |scope: &String| {
        SIGN_IN_SCOPES.contains(&scope.as_str())
            || if config.scopes.is_empty() {
                config.audiences.iter().any(|id| {
                    registry
                        .audience_by_id(id)
                        .is_some_and(|audience| audience.config.scopes.contains(scope))
                })
            } else {
                config.scopes.contains(scope)
            }
    };
    let granted: Vec<String> = requested.iter().filter(|s| allowed(s)).cloned().collect();
    if !requested.is_empty() && granted.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope_not_allowed",
            "None of the requested scopes may be granted to this client",
        ));
    }
    Ok(granted)
}

/// When a refresh token issued at `now` for an assertion expires: after the configured
/// lifetime, or when the assertion's `SessionNotOnOrAfter` ends its session, whichever is first.
fn refresh_token_expiry(now: i64, lifetime_secs: u64, session_ends_at: Option<i64>) -> i64 {
    let configured = now.saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2));
    session_ends_at.map_or(configured, |at| at.min(configured))
}

/// Exchanges a SAML 2.0 assertion for a refresh token (IDJAG-SAML-01), after every check an
/// assertion gets for an ID-JAG: issuer, signature, the audience mapped to this client
/// (IDJAG-SAML-02), conditions, the identity provider's policy, and single use.
pub(super) async fn exchange(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    subject_token: &str,
    requested_scopes: &[String],
    now: i64,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    if !client.client.grant_types.contains(&GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "refresh_token_not_allowed",
            "This client may not obtain refresh tokens; add refresh_token to its grant types",
        ));
    }
    let scopes = grant_scopes(registry, client, requested_scopes)?;
    audit.scopes_granted = scopes.clone();
    let subject = verify_saml_subject(service, registry, client, subject_token, now, audit).await?;
    // An assertion is accepted until its session ended more than the clock skew ago; a refresh
    // token ending with that session would be issued expired. Refused before the assertion is
    // spent, as a session over for longer is.
    if subject.session_ends_at.is_some_and(|at| at <= now) {
        let ended = crate::saml::SamlError::SessionEnded;
        return Err(OAuthError::new(
            super::exchange::subject_error_code(&service.config),
            ended.reason(),
            ended.to_string(),
        ));
    }
    let idp = subject.idp.clone();
    service
        .limits
        .check_verified_subject(&idp.config, subject.sub())?;
    super::exchange::check_identity_provider_condition(service, client, &subject, &scopes)?;
    check_single_use(service, &subject).await?;

    let sub = subject.sub().to_string();
    let claims = serde_json::Value::Object(subject.claims.clone());
    crate::users::remember_sign_in(&service.store, &idp.config.issuer, &sub, &claims, now)
        .await
        .map_err(|error| {
            tracing::error!(%error, "remembering the user's attributes failed");
            OAuthError::server_error()
        })?;
    let configured = service.config.authorization.refresh_token_lifetime_secs;
    // SAML core §2.7.2: the refresh token is a session derived from the assertion, so it ends
    // when the identity provider says such sessions end, if that is sooner.
    let expires_at = refresh_token_expiry(now, configured, subject.session_ends_at);
    let lifetime = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    let family_id = crate::jose::new_jti();
    let refresh_token = super::code_grant::store_refresh_token(
        service,
        &RefreshRecord {
            family_id: family_id.clone(),
            client_id: client.client.config.client_id.clone(),
            subject: sub,
            subject_issuer: idp.config.issuer.clone(),
            resource: EXCHANGE_ONLY_RESOURCE.to_string(),
            scopes: scopes.clone(),
            auth_time: subject
                .claim("auth_time")
                .and_then(serde_json::Value::as_i64),
            issued_at: now,
            expires_at,
            dpop_jkt: None,
        },
    )
    .await?;
    audit.issued_expires_at = Some(expires_at);
    audit.detail = Some(AuditDetail::of(&json!({
        "family_id": family_id,
        "identity_provider": idp.config.id,
        "issued_token_type": TOKEN_TYPE_REFRESH_TOKEN,
        "subject_jti": subject.claim("jti"),
        "subject_token_type": "saml2",
    })));
    let mut body = json!({
        "access_token": refresh_token,
        "issued_token_type": TOKEN_TYPE_REFRESH_TOKEN,
        "token_type": "N_A",
        "expires_in": lifetime,
    });
    if !scopes.is_empty() {
        body["scope"] = json!(scopes.join(" "));
    }
    Ok(TokenResponse { body })
}

#[cfg(test)]
mod tests {
    use super::refresh_token_expiry;

    #[test]
    fn a_refresh_token_ends_with_the_sign_ins_session_if_that_is_sooner() {
        let now = 1_900_000_000;
        let fourteen_days = 14 * 86_400;
        assert_eq!(
            refresh_token_expiry(now, fourteen_days, None),
            now + 14 * 86_400
        );
        assert_eq!(
            refresh_token_expiry(now, fourteen_days, Some(now + 8 * 3600)),
            now + 8 * 3600
        );
        assert_eq!(
            refresh_token_expiry(now, 3600, Some(now + 8 * 3600)),
            now + 3600
        );
    }
}
