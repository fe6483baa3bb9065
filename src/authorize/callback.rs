//! `GET /authorize/callback`: the sign-in identity provider's answer. The `state` must name a
//! pending request started in this browser; the code is redeemed and the ID token validated by
//! the relying party ([`super::rp`]); the provider's `condition` and subject mode map the user to
//! a local subject. Then the consent page is shown, or a code issued at once for a pre-approved
//! client. Failures after the request is known are redirected to the client as
//! `access_denied`; a forged or foreign answer is refused in the browser.

use std::sync::Arc;

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::clock::unix_now;
use crate::http::AppState;
use crate::policy::PolicyInput;
use crate::registry::IdentityProvider;
use crate::store::{AuditEvent, AuthorizationRequest, CodeStore, Decision, TokenStore};

use super::browser::{browser_matches, cookie_name};
use super::consent::approve;
use super::pages::consent_page;
use super::redirect::{error_to_client, redirect_uris_vetted};
use super::request::parse_query;
use super::rp::RelyingParty;
use super::{audited, callback_url, denial, refuse, sign_in_idp, unavailable};

/// `GET /authorize/callback`.
pub async fn callback(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<RelyingParty>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = unix_now();
    let registry = state.tokens.trust.current();
    let mut audit = denial("authorize_callback", "access_denied", &headers);
    // A repeated parameter leaves nothing to go by: the answer is refused as unknown.
    let params = parse_query(query.as_deref()).unwrap_or_default();
    let get = |name: &str| params.get(name).map(String::as_str);
    let pending = match get("state") {
        Some(rp_state) => {
            state
                .store
                .authorization_request_by_rp_state(rp_state)
                .await
        }
        None => Ok(None),
    };
    let pending = match pending {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return refuse(
                &state,
                audit,
                "rp_state_unknown",
                "This sign-in does not belong to a pending authorization request.",
            )
            .await;
        }
        Err(error) => return unavailable(&state, &error, "loading the authorization request"),
    };
    audit.client_id = Some(pending.client_id.clone());
    audit.resources = vec![pending.resource.clone()];
    audit.scopes_requested = pending.scopes.clone();
    if !browser_matches(&state, &headers, &pending) {
        return refuse(
            &state,
            audit,
            "browser_mismatch",
            "This sign-in was started in another browser.",
        )
        .await;
    }
    match state
        .store
        .advance_authorization_request(&pending.id, "login", "signing_in", now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                &state,
                audit,
                "request_expired_or_used",
                "This authorization request has expired or was already used.",
            )
            .await;
        }
        Err(error) => return unavailable(&state, &error, "updating the authorization request"),
    }
    let cookie = cookie_name(&state.config, &pending.id);
    let client = state
        .tokens
        .client_metadata
        .find_client(&registry, &pending.client_id)
        .await
        .ok()
        .flatten();
    // RFC 9700 §4.11.2: the identity provider or its condition may turn a user away without
    // showing anything (single sign-on), so a client whose redirect URI no administrator vetted
    // gets the refusal through a page the user leaves by choice, never a redirect.
    let vetted = client.as_deref().is_some_and(redirect_uris_vetted);
    // From here on the request is known: failures go back to the client as access_denied.
    let fail = |audit: AuditEvent, reason: &'static str| {
        let mut audit = audit;
        audit.reason = Some(reason.to_string());
        let (error, description) = ("access_denied", "The user could not be signed in");
        let response = error_to_client(
            &state,
            vetted,
            &pending.redirect_uri,
            pending.state.as_deref(),
            error,
            description,
            Some(&cookie),
        );
        audited(&state, audit, response)
    };
    if get("error").is_some() {
        return fail(audit, "idp_returned_error").await;
    }
    let (Some(code), Some(idp), Some(client_id), Some(secret)) = (
        get("code"),
        sign_in_idp(&state, &registry),
        state.config.authorization.client_id.as_deref(),
        state.config.authorization.client_secret.as_ref(),
    ) else {
        return fail(audit, "idp_code_missing").await;
    };
    audit.subject_issuer = Some(idp.config.issuer.clone());
    let finished = rp
        .finish(
            &idp,
            client_id,
            secret,
            &callback_url(&state),
            code,
            &pending.rp_pkce_verifier,
            &pending.nonce,
        )
        .await;
    let signed_in = match finished {
        Ok(signed_in) => signed_in,
        Err(error) => {
            // A token for another audience, a wrong nonce or a bad signature: an attack or a
            // misconfiguration, never redirected with a code; the page says nothing more.
            tracing::warn!(%error, idp = %idp.config.id, "sign-in failed");
            return refuse(
                &state,
                audit,
                error.reason,
                "Signing in at the identity provider failed.",
            )
            .await;
        }
    };
    audit.subject = Some(signed_in.subject.clone());
    let input = PolicyInput {
        subject: signed_in.claims.clone(),
        actor: None,
        client: json!({ "id": pending.client_id, "auth_method": "authorization_code" }),
        request: json!({
            "grant_type": crate::oauth::GRANT_AUTHORIZATION_CODE,
            "resources": [pending.resource],
            "scopes": pending.scopes,
        }),
    };
    match input.prepare().allows(idp.condition.as_ref()) {
        crate::policy::Decision::Allow => {}
        crate::policy::Decision::Deny => return fail(audit, "idp_condition_denied").await,
        crate::policy::Decision::Error(message) => {
            tracing::warn!(idp = %idp.config.id, %message, "identity provider condition failed; denying");
            return fail(audit, "idp_condition_error").await;
        }
    }
    let subject = match resolve_subject(&state, &idp, &signed_in.claims, &signed_in.subject).await {
        Ok(Some(subject)) => subject,
        Ok(None) => return fail(audit, "subject_unmapped").await,
        Err(error) => return unavailable(&state, &error, "the subject link lookup"),
    };
    // The local subject becomes the `sub` of what is issued for this sign-in, and the key of the
    // user's remembered claims: held to the bound OIDC Core §2 sets for an ID token's `sub`
    // (a subject mapping can build a longer one from the IdP's claims).
    if subject.len() > crate::jose::MAX_ID_TOKEN_SUB_BYTES {
        return fail(audit, "subject_too_long").await;
    }
    audit.subject = Some(subject.clone());
    // IDJAG-ISSUE-12: the user's current claims, read by refresh-token exchanges.
    let remembered = crate::users::remember_sign_in(
        &state.store,
        &idp.config.issuer,
        &subject,
        &signed_in.claims,
        now,
    );
    if let Err(error) = remembered.await {
        return unavailable(&state, &error, "recording the user's current claims");
    }
    match state
        .store
        .complete_sign_in(
            &pending.id,
            &subject,
            &idp.config.issuer,
            signed_in.email.as_deref(),
            signed_in.auth_time,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return fail(audit, "request_expired_or_used").await,
        Err(error) => return unavailable(&state, &error, "updating the authorization request"),
    }
    let pending = AuthorizationRequest {
        subject: Some(subject),
        subject_issuer: Some(idp.config.issuer.clone()),
        email: signed_in.email,
        auth_time: signed_in.auth_time,
        ..pending
    };
    // A public client's identity cannot be assured (anyone can send its client_id, and any local
    // app can listen on a loopback redirect URI), so its requests always ask the user, even if
    // it is listed as pre-approved (RFC 6749 §10.2, RFC 8252 §8.6).
    let pre_approved = state
        .config
        .authorization
        .pre_approved_clients
        .contains(&pending.client_id)
        && client.as_ref().is_some_and(|client| !client.is_public());
    if pre_approved {
        return approve(&state, pending, audit, "pre_approved").await;
    }
    // The sign-in itself is a decision: audit it, then ask for consent.
    audit.decision = Decision::Changed;
    audit.error_code = None;
    audit.reason = Some("signed_in_awaiting_consent".into());
    let name = client.and_then(|client| client.display_name());
    let response = consent_page(state.config.issuer_path(), &pending, name.as_deref());
    audited(&state, audit, response).await
}

/// The local subject of a signed-in user, by the identity provider's subject mode: the
/// provider's `sub` (`federated`), a CEL mapping of its claims (`mapped`), or an administrator's
/// link (`linked`). `None` when the user has no local subject.
async fn resolve_subject(
    state: &AppState,
    idp: &IdentityProvider,
    claims: &Value,
    sub: &str,
) -> Result<Option<String>, crate::store::StoreError> {
    match idp.config.subject_mode.as_str() {
        "mapped" => {
            let Some(mapping) = &idp.subject_mapping else {
                return Ok(None);
            };
            let input = PolicyInput {
                subject: claims.clone(),
                ..PolicyInput::default()
            };
            Ok(input
                .prepare()
                .string(mapping)
                .ok()
                .flatten()
                .filter(|subject| !subject.is_empty()))
        }
        "linked" => state.store.linked_subject(&idp.config.issuer, sub).await,
        _ => Ok(Some(sub.to_string())),
    }
}
