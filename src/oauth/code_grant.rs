//! The `authorization_code` (RFC 6749 §4.1.3, PKCE S256 per RFC 7636 / OAuth 2.1) and
//! `refresh_token` (RFC 6749 §6, rotating per OAuth 2.1 §4.3.1) grants. Codes are single use: a
//! second presentation revokes everything issued from the code (RFC 6749 §4.1.2). Refresh tokens
//! rotate on every use: presenting a rotated one revokes the whole family.

use serde_json::{Map, json};

use super::client_auth::AuthenticatedClient;
use super::dpop::BoundToken;
use super::exchange::TYP_ACCESS_TOKEN;
use super::request::parse_scope;
use super::service::{TokenResponse, TokenService};
use super::{ErrorCode, GrantRequest, GrantType, OAuthError};
use crate::authorize::codes::{hash_token, random_token, verifier_matches};
use crate::config::ResourceConfig;
use crate::jose::dpop::DpopProof;
use crate::registry::Registry;
use crate::store::{
    AuditDetail, AuditEvent, CodeStore, FamilyRevocation, IssuedToken, Redemption, RefreshRecord,
    StoreError, TokenStore,
};

fn invalid_grant(reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, reason, description.to_string())
}

fn store_failure(error: StoreError) -> OAuthError {
    tracing::error!(%error, "authorization code storage failed");
    OAuthError::server_error()
}

/// A grant that leaked — a code used twice, a rotated-out refresh token presented again, or one
/// client's refresh token held by another — revokes its whole family (OAuth 2.1 §4.1.3, §4.3.1):
/// records the family and how many tokens were revoked in `audit`, and returns the error to
/// answer with (`server_error` if the revocation itself failed).
pub(super) async fn revoke_leaked_family(
    service: &TokenService,
    family_id: &str,
    now: i64,
    audit: &mut AuditEvent,
    reason: &'static str,
    description: &'static str,
) -> OAuthError {
    match service.store.revoke_family(family_id, now).await {
        Ok(revoked) => {
            audit.detail = Some(AuditDetail::of(
                &json!({ "family_id": family_id, "revoked": revoked }),
            ));
            invalid_grant(reason, description)
        }
        Err(error) => store_failure(error),
    }
}

/// What an access token is issued for: the user, the resource, the scopes.
struct Grant<'a> {
    family_id: &'a str,
    subject: &'a str,
    subject_issuer: &'a str,
    resource: &'a str,
    /// The access token's scopes.
    scopes: &'a [String],
    /// The new refresh token's scopes: the whole grant, whatever one refresh narrowed the
    /// access token to (RFC 6749 §6: a new refresh token's scope is identical to the old one's).
    refresh_scopes: &'a [String],
    auth_time: Option<i64>,
    refresh_expires_at: i64,
    /// The DPoP key a new refresh token is bound to (RFC 9449 §5: public clients only).
    refresh_dpop_jkt: Option<&'a str>,
}

/// `grant_type=authorization_code`.
pub async fn redeem_code(
    service: &TokenService,
    request: &GrantRequest<'_>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let GrantRequest {
        registry,
        client,
        form,
        proof,
        now,
    } = *request;
    let code = form.required("code")?;
    // OAuth 2.1 §4.1.3: required when the authorization request named one. A client with a
    // single registered redirect URI may leave it out of both requests (§4.1.1); the code must
    // then have been delivered to exactly that URI. Refused before the code is spent.
    let redirect_uri = match (
        form.single("redirect_uri")?,
        client.client.config.redirect_uris.as_slice(),
    ) {
        (Some(uri), _) => uri,
        (None, [only]) => only.as_str(),
        (None, _) => form.required("redirect_uri")?,
    };
    let verifier = form.single("code_verifier")?;
    let client_id = &client.client.config.client_id;
    let record = match service
        .store
        .consume_code(&hash_token(code), now)
        .await
        .map_err(store_failure)?
    {
        Redemption::Unknown => {
            return Err(invalid_grant(
                "code_unknown",
                "The authorization code is invalid",
            ));
        }
        Redemption::Replayed(record) => {
            // RFC 6749 §4.1.2, OAuth 2.1 §4.1.3: a reused code revokes what it issued.
            audit.subject = Some(record.subject.clone());
            return Err(revoke_leaked_family(
                service,
                &record.family_id,
                now,
                audit,
                "code_reused",
                "The authorization code was already used; tokens issued from it are revoked",
            )
            .await);
        }
        Redemption::Fresh(record) => record,
    };
    audit.subject = Some(record.subject.clone());
    audit.subject_issuer = Some(record.subject_issuer.clone());
    audit.resources = vec![record.resource.clone()];
    audit.scopes_requested = record.scopes.clone();
    audit.detail = Some(AuditDetail::of(&json!({ "family_id": record.family_id })));
    if record.client_id != *client_id {
        return Err(invalid_grant(
            "code_client_mismatch",
            "The authorization code was issued to another client",
        ));
    }
    if record.expires_at <= now {
        return Err(invalid_grant(
            "code_expired",
            "The authorization code has expired",
        ));
    }
    if record.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri_mismatch",
            "redirect_uri does not match the authorization request",
        ));
    }
    let Some(verifier) = verifier else {
        return Err(invalid_grant(
            "code_verifier_missing",
            "code_verifier is required (PKCE)",
        ));
    };
    if !verifier_matches(verifier, &record.code_challenge) {
        return Err(invalid_grant(
            "code_verifier_mismatch",
            "code_verifier does not match the code_challenge",
        ));
    }
    // RFC 9449 §10: a code requested with dpop_jkt is redeemed only with a proof of that key,
    // so a code intercepted together with its verifier is still useless.
    if let Some(jkt) = record.dpop_jkt.as_deref() {
        super::dpop::require_key(jkt, proof, BoundToken::Code, ErrorCode::InvalidGrant)?;
    }
    if !signed_in_at_trusted_idp(registry, &record.subject_issuer) {
        return Err(invalid_grant(
            "code_idp_untrusted",
            "The identity provider the user signed in at is no longer trusted",
        ));
    }
    // RFC 8707 §2.2: a `resource` named at the token endpoint must be the one the code was
    // issued for; the token is never silently for another resource than the client asked.
    if form
        .all("resource")
        .iter()
        .any(|resource| *resource != record.resource)
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "resource_outside_grant",
            "The authorization code was not issued for this resource",
        ));
    }
    let lifetime = i64::try_from(service.config.authorization.refresh_token_lifetime_secs)
        .unwrap_or(14 * 86400);
    issue(
        service,
        registry,
        client,
        &Grant {
            family_id: &record.family_id,
            subject: &record.subject,
            subject_issuer: &record.subject_issuer,
            resource: &record.resource,
            scopes: &record.scopes,
            refresh_scopes: &record.scopes,
            auth_time: record.auth_time,
            refresh_expires_at: now + lifetime,
            // RFC 9449 §5: a confidential client's refresh token is already bound to its
            // credentials; a public client's is bound to the key it proved, if it used DPoP.
            refresh_dpop_jkt: proof
                .filter(|_| client.client.is_public())
                .map(|proof| proof.jkt()),
        },
        proof,
        now,
        audit,
    )
    .await
}

/// `grant_type=refresh_token`.
pub async fn refresh(
    service: &TokenService,
    request: &GrantRequest<'_>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let GrantRequest {
        registry,
        client,
        form,
        proof,
        now,
    } = *request;
    let token = form.required("refresh_token")?;
    let requested_scopes = parse_scope(form.single("scope")?)?;
    let requested_resources = form.all("resource");
    let client_id = &client.client.config.client_id;
    let hash = hash_token(token);
    // RFC 9449 §5: a refresh token bound to a DPoP key is used only with a proof of that key.
    // Checked before the token is rotated, so that whoever stole a bound token without its key
    // cannot even spend it (and so end the session of the client that holds both).
    if let Some(state) = service
        .store
        .refresh_token(&hash)
        .await
        .map_err(store_failure)?
    {
        if let Some(bound) = state.record.dpop_jkt.as_deref() {
            super::dpop::require_key(
                bound,
                proof,
                BoundToken::RefreshToken,
                ErrorCode::InvalidGrant,
            )?;
        }
        if state.record.resource == super::saml_bootstrap::EXCHANGE_ONLY_RESOURCE
            && state.record.client_id == *client_id
        {
            // A SAML assertion's refresh token stands for the sign-in, not for a resource:
            // refused before rotation, so the client's mistake does not spend it.
            return Err(invalid_grant(
                "refresh_token_for_exchange_only",
                "This refresh token is used as the subject_token of a token exchange for an ID-JAG, not with the refresh_token grant",
            ));
        }
        // A request its own client could get right (scope, resource, DPoP) is refused before
        // rotation too: RFC 6749 §6 retires a refresh token only once its successor is issued,
        // so a client that retries after such an error must not be taken for a thief and have
        // its family revoked. A token of another client, rotated, revoked or expired goes on to
        // rotation and is judged there.
        let live = state.rotated_at.is_none()
            && state.revoked_at.is_none()
            && state.record.expires_at > now;
        if live && state.record.client_id == *client_id {
            check_request(
                registry,
                &state.record,
                &requested_scopes,
                &requested_resources,
                proof,
            )?;
            check_idp_condition(service, registry, client, &state.record).await?;
        }
    }
    let record: RefreshRecord = match service
        .store
        .rotate_refresh_token(&hash, now)
        .await
        .map_err(store_failure)?
    {
        Redemption::Unknown => {
            return Err(invalid_grant(
                "refresh_token_unknown",
                "The refresh token is invalid",
            ));
        }
        Redemption::Replayed(record) => {
            // OAuth 2.1 §4.3.1: a rotated (or revoked) token presented again means it leaked.
            audit.subject = Some(record.subject.clone());
            return Err(revoke_leaked_family(
                service,
                &record.family_id,
                now,
                audit,
                "refresh_token_reused",
                "The refresh token was already used or revoked; its token family is revoked",
            )
            .await);
        }
        Redemption::Fresh(record) => record,
    };
    audit.subject = Some(record.subject.clone());
    audit.subject_issuer = Some(record.subject_issuer.clone());
    audit.resources = vec![record.resource.clone()];
    audit.scopes_requested = requested_scopes.clone();
    audit.detail = Some(AuditDetail::of(&json!({ "family_id": record.family_id })));
    if record.client_id != *client_id {
        // Another client holds this client's refresh token: treat it as leaked.
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
    if record.expires_at <= now {
        return Err(invalid_grant(
            "refresh_token_expired",
            "The refresh token has expired",
        ));
    }
    check_request(
        registry,
        &record,
        &requested_scopes,
        &requested_resources,
        proof,
    )?;
    check_idp_condition(service, registry, client, &record).await?;
    // RFC 6749 §6: a refresh may narrow the scope, never widen it.
    let scopes = if requested_scopes.is_empty() {
        record.scopes.clone()
    } else {
        requested_scopes
    };
    let response = issue(
        service,
        registry,
        client,
        &Grant {
            family_id: &record.family_id,
            subject: &record.subject,
            subject_issuer: &record.subject_issuer,
            resource: &record.resource,
            scopes: &scopes,
            refresh_scopes: &record.scopes,
            auth_time: record.auth_time,
            refresh_expires_at: record.expires_at,
            // Rotation keeps the binding; an unbound public client's family is bound from the
            // first refresh that proves a key.
            refresh_dpop_jkt: record.dpop_jkt.as_deref().or(proof
                .filter(|_| client.client.is_public())
                .map(|proof| proof.jkt())),
        },
        proof,
        now,
        audit,
    )
    .await?;
    // A revocation of the presented token that ran after it was rotated but before its
    // successor was stored revoked everything but the successor: the rotated token carries its
    // mark, so the family goes now (RFC 9700 §4.14.2, as for a replay above). The kill switch
    // (`revoke_tokens`) is caught already by the family check in `issue`, which it marks first;
    // this read still catches a revocation that marks no family (deleting the client).
    let revoked_meanwhile = service
        .store
        .refresh_token(&hash)
        .await
        .map_err(store_failure)?
        .is_some_and(|state| state.revoked_at.is_some());
    if revoked_meanwhile {
        return Err(revoke_leaked_family(
            service,
            &record.family_id,
            now,
            audit,
            "refresh_token_revoked_while_issuing",
            "The refresh token was revoked while this request was answered; its token family is revoked",
        )
        .await);
    }
    Ok(response)
}

/// What a refresh request asks of `record` besides the token itself: the resource it was issued
/// for (RFC 8707 §2.2), scopes within those granted (RFC 6749 §6: narrowing only), and a
/// resource still protected here whose DPoP requirement the request meets.
fn check_request(
    registry: &Registry,
    record: &RefreshRecord,
    requested_scopes: &[String],
    requested_resources: &[&str],
    proof: Option<&DpopProof>,
) -> Result<(), OAuthError> {
    if requested_resources
        .iter()
        .any(|resource| *resource != record.resource)
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "resource_outside_grant",
            "The refresh token was not issued for this resource",
        ));
    }
    if requested_scopes.iter().any(|s| !record.scopes.contains(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope_outside_grant",
            "The requested scope exceeds the scope originally granted",
        ));
    }
    if !signed_in_at_trusted_idp(registry, &record.subject_issuer) {
        return Err(invalid_grant(
            "refresh_token_idp_untrusted",
            "The identity provider the user signed in at is no longer trusted",
        ));
    }
    target_resource(registry, &record.resource, proof).map(|_| ())
}

/// The sign-in identity provider's `condition`, evaluated again at every refresh over the
/// user's claims from their latest sign-in (the same claims a refresh token exchanged for an
/// ID-JAG is judged by, decisions §22). An administrator who tightens the condition ends the
/// sessions it no longer admits at their next refresh instead of at the refresh token's
/// expiry; the refusal spends nothing, so loosening it again restores them. Without a
/// condition nothing is read.
async fn check_idp_condition(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    record: &RefreshRecord,
) -> Result<(), OAuthError> {
    let has_condition = registry
        .idp_by_issuer(&record.subject_issuer)
        .is_some_and(|idp| idp.condition.is_some());
    if !has_condition {
        return Ok(());
    }
    let (idp, claims) = super::refresh_subject::current_subject(service, registry, record).await?;
    let input = crate::policy::PolicyInput {
        subject: serde_json::Value::Object(claims),
        actor: None,
        client: json!({
            "id": client.client.config.client_id,
            "auth_method": client.method.as_str(),
        }),
        request: json!({
            "grant_type": super::GRANT_REFRESH_TOKEN,
            "resources": [record.resource],
            "scopes": record.scopes,
        }),
    };
    match input.prepare().allows(idp.condition.as_ref()) {
        crate::policy::Decision::Allow => Ok(()),
        crate::policy::Decision::Deny => Err(invalid_grant(
            "refresh_token_idp_condition_denied",
            "The identity provider's policy no longer accepts this user; sign in again",
        )),
        crate::policy::Decision::Error(message) => {
            tracing::warn!(idp = %idp.config.id, %message, "identity provider condition failed; denying");
            Err(invalid_grant(
                "refresh_token_idp_condition_error",
                "The identity provider's policy could not be evaluated for this user",
            ))
        }
    }
}

/// True while the identity provider a grant's user signed in at is configured and enabled. An
/// administrator who disables or removes a provider (compromised, or no longer to be used)
/// ends what its sign-ins granted: no new access token from their codes or refresh tokens, as
/// already for their refresh tokens presented as subject tokens (decisions §22). Re-enabling it
/// makes them usable again.
fn signed_in_at_trusted_idp(registry: &Registry, subject_issuer: &str) -> bool {
    registry
        .idp_by_issuer(subject_issuer)
        .is_some_and(|idp| idp.config.enabled)
}

/// The resource a grant's access token is for, if this server still protects it and the
/// request meets its DPoP requirement (DPOP-08: a resource that takes only sender-constrained
/// tokens gets no bearer token).
fn target_resource<'r>(
    registry: &'r Registry,
    resource: &str,
    proof: Option<&DpopProof>,
) -> Result<&'r ResourceConfig, OAuthError> {
    let Some(resource) = registry.resource(resource) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "unknown_resource",
            "The resource is no longer protected by this server",
        ));
    };
    if resource.require_dpop && proof.is_none() {
        return Err(invalid_grant(
            "dpop_required",
            "This resource accepts only DPoP-bound access tokens; send a DPoP proof",
        ));
    }
    Ok(resource)
}

/// Signs and records an RFC 9068 access token for `grant`, plus a new refresh token of the same
/// family when the client may use the refresh_token grant.
async fn issue(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    grant: &Grant<'_>,
    proof: Option<&DpopProof>,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let client_id = &client.client.config.client_id;
    let resource = target_resource(registry, grant.resource, proof)?;
    // The configuration may have changed since consent: grant only what is still allowed.
    let allowed = |scopes: &[String]| -> Vec<String> {
        scopes
            .iter()
            .filter(|scope| resource.scopes.contains(scope))
            .filter(|scope| {
                client.client.config.scopes.is_empty()
                    || client.client.config.scopes.contains(scope)
            })
            .cloned()
            .collect()
    };
    let scopes = allowed(grant.scopes);
    audit.audience = Some(resource.resource.clone());
    audit.scopes_granted = scopes.clone();
    let lifetime = resource
        .access_token_lifetime_secs
        .unwrap_or(service.config.tokens.access_token_lifetime_secs);
    let lifetime = i64::try_from(lifetime).unwrap_or(600);
    let jti = crate::jose::new_jti();
    let expires_at = now + lifetime;
    let mut access = Map::new();
    access.insert("iss".into(), json!(service.config.issuer));
    access.insert("sub".into(), json!(grant.subject));
    access.insert("aud".into(), json!(resource.resource));
    access.insert("client_id".into(), json!(client_id));
    access.insert("iat".into(), json!(now));
    access.insert("exp".into(), json!(expires_at));
    access.insert("jti".into(), json!(jti));
    if !scopes.is_empty() {
        access.insert("scope".into(), json!(scopes.join(" ")));
    }
    if let Some(auth_time) = grant.auth_time {
        access.insert("auth_time".into(), json!(auth_time));
    }
    if let Some(proof) = proof {
        super::dpop::bind(&mut access, proof);
    }
    let status_index = service.assign_status(&mut access).await?;
    let token = service
        .keys
        .sign(TYP_ACCESS_TOKEN, &access)
        .map_err(|error| {
            tracing::error!(%error, "signing failed");
            OAuthError::server_error()
        })?;
    service
        .store
        .record_issued(&IssuedToken {
            jti: jti.clone(),
            client_id: client_id.clone(),
            subject: grant.subject.to_string(),
            token_type: "access_token".into(),
            issued_at: now,
            expires_at,
            revoked_at: None,
            status_index,
            subject_issuer: Some(grant.subject_issuer.to_string()),
        })
        .await
        .map_err(store_failure)?;
    service
        .store
        .link_family_token(grant.family_id, &jti)
        .await
        .map_err(store_failure)?;
    audit.issued_jti = Some(jti);
    audit.issued_expires_at = Some(expires_at);

    let mut body = json!({
        "access_token": token,
        "token_type": super::dpop::access_token_type(proof),
        "expires_in": lifetime,
    });
    if !scopes.is_empty() {
        body["scope"] = json!(scopes.join(" "));
    }
    if client.client.grant_types.contains(&GrantType::RefreshToken)
        && grant.refresh_expires_at > now
    {
        let refresh_token = store_refresh_token(
            service,
            &RefreshRecord {
                family_id: grant.family_id.to_string(),
                client_id: client_id.clone(),
                subject: grant.subject.to_string(),
                subject_issuer: grant.subject_issuer.to_string(),
                resource: resource.resource.clone(),
                scopes: allowed(grant.refresh_scopes),
                auth_time: grant.auth_time,
                issued_at: now,
                expires_at: grant.refresh_expires_at,
                dpop_jkt: grant.refresh_dpop_jkt.map(str::to_string),
            },
        )
        .await?;
        body["refresh_token"] = json!(refresh_token);
    }
    // RFC 9700 §4.14.2: a replay of this code or refresh token, or a kill switch for the user,
    // the client or the identity provider (REVOKE-05), that arrived while the grant was being
    // issued revoked the family before the new tokens existed; they must not outlive it.
    let revoked = service
        .store
        .family_revoked(grant.family_id)
        .await
        .map_err(store_failure)?;
    if let Some(revoked) = revoked {
        let (reason, description) = match revoked {
            FamilyRevocation::Leaked => (
                "family_revoked_while_issuing",
                "The grant was used again while this request was answered; its token family is revoked",
            ),
            FamilyRevocation::KillSwitch => (
                "revoked_while_issuing",
                "The tokens of this user, client or identity provider were revoked while this request was answered; nothing it issued is valid",
            ),
        };
        return Err(revoke_leaked_family(
            service,
            grant.family_id,
            now,
            audit,
            reason,
            description,
        )
        .await);
    }
    Ok(TokenResponse { body })
}

/// A new refresh token for `record`: 256 random bits, stored only as a hash.
pub(super) async fn store_refresh_token(
    service: &TokenService,
    record: &RefreshRecord,
) -> Result<String, OAuthError> {
    let refresh_token = random_token(32);
    service
        .store
        .insert_refresh_token(&hash_token(&refresh_token), record)
        .await
        .map_err(store_failure)?;
    Ok(refresh_token)
}
