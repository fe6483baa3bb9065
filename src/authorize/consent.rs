//! `POST /authorize/consent`: the user's decision on the consent page. The form's CSRF token is
//! bound to the pending request and the request to this browser (both compared in constant
//! time); a request is decided once. Approving issues a code ([`super::codes`]) and redirects to
//! the client with it; denying redirects with `access_denied`.

use axum::extract::{Form, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::clock::unix_now;
use crate::http::AppState;
use crate::store::{AuditDetail, AuditEvent, AuthorizationRequest, CodeStore, Decision};

use super::browser::{browser_matches, cookie_name};
use super::codes::{self, constant_time_eq};
use super::pages::error_page;
use super::redirect::{client_redirect, error_to_client, redirect_uris_vetted};
use super::{audited, denial, refuse, unavailable};

/// Shown when a request is decided twice or too late.
const ALREADY_DECIDED: &str = "This authorization request has expired or was already decided.";

/// The consent form. Its fields are not secrets on their own (the CSRF token is useless without
/// the browser-binding cookie), but are kept out of logs all the same.
#[derive(serde::Deserialize)]
pub struct ConsentForm {
    request_id: String,
    csrf_token: String,
    decision: String,
}

impl std::fmt::Debug for ConsentForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentForm")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

/// `POST /authorize/consent`.
pub async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let mut audit = denial("authorize_consent", "access_denied", &headers);
    let pending = match state.store.authorization_request(&form.request_id).await {
        Ok(pending) => pending,
        Err(error) => return unavailable(&state, &error, "loading the authorization request"),
    };
    // The CSRF token is bound to the pending request and the request to this browser.
    let Some(pending) = pending.filter(|pending| {
        constant_time_eq(&form.csrf_token, &pending.csrf_token)
            && browser_matches(&state, &headers, pending)
    }) else {
        audit.reason = Some("csrf_mismatch".into());
        let response = error_page(
            state.config.issuer_path(),
            StatusCode::FORBIDDEN,
            "This form is not valid for this browser. Start again from the application.",
        );
        return audited(&state, audit, response).await;
    };
    audit.client_id = Some(pending.client_id.clone());
    audit.subject = pending.subject.clone();
    audit.subject_issuer = pending.subject_issuer.clone();
    audit.resources = vec![pending.resource.clone()];
    audit.scopes_requested = pending.scopes.clone();
    if form.decision == "approve" {
        return approve(&state, pending, audit, "user_approved").await;
    }
    match decide(&state, &pending).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(&state, audit, "request_expired_or_used", ALREADY_DECIDED).await;
        }
        Err(error) => return unavailable(&state, &error, "updating the authorization request"),
    }
    audit.reason = Some("user_denied".into());
    // RFC 9700 §4.11.2: a user who refused a client whose redirect URI no administrator vetted
    // is not sent there by frontdesk; the page's link takes the denial back if they choose.
    let registry = state.tokens.trust.current();
    let vetted = state
        .tokens
        .client_metadata
        .find_client(&registry, &pending.client_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|client| redirect_uris_vetted(&client));
    let (error, description) = ("access_denied", "The user denied the request");
    let response = error_to_client(
        &state,
        vetted,
        &pending.redirect_uri,
        pending.state.as_deref(),
        error,
        description,
        Some(&cookie_name(&state.config, &pending.id)),
    );
    audited(&state, audit, response).await
}

/// Moves a request from `consent` to `done`; false if it was not awaiting consent (decided
/// already, or expired), so each request is decided exactly once.
async fn decide(
    state: &AppState,
    pending: &AuthorizationRequest,
) -> Result<bool, crate::store::StoreError> {
    state
        .store
        .advance_authorization_request(&pending.id, "consent", "done", unix_now())
        .await
}

/// Issues a code for a signed-in request awaiting consent and redirects to the client with it.
/// `how` is the audited reason (`user_approved`, `pre_approved`).
pub async fn approve(
    state: &AppState,
    pending: AuthorizationRequest,
    mut audit: AuditEvent,
    how: &str,
) -> Response {
    match decide(state, &pending).await {
        Ok(true) => {}
        Ok(false) => return refuse(state, audit, "request_expired_or_used", ALREADY_DECIDED).await,
        Err(error) => return unavailable(state, &error, "updating the authorization request"),
    }
    let lifetime = state.config.authorization.code_lifetime_secs;
    let (code, family_id) =
        match codes::issue_code(&state.store, &pending, lifetime, unix_now()).await {
            Ok(issued) => issued,
            Err(error) => return unavailable(state, &error, "storing the authorization code"),
        };
    audit.decision = Decision::Issued;
    audit.error_code = None;
    audit.reason = Some(how.to_string());
    audit.scopes_granted = pending.scopes.clone();
    audit.audience = Some(pending.resource.clone());
    audit.detail = Some(AuditDetail::of(
        &json!({ "family_id": family_id, "issued": "authorization_code" }),
    ));
    let response = client_redirect(
        state,
        &pending.redirect_uri,
        pending.state.as_deref(),
        &[("code", &code)],
        Some(&cookie_name(&state.config, &pending.id)),
    );
    audited(state, audit, response).await
}
