//! The authorization endpoint (RFC 6749 §4.1 under OAuth 2.1 rules) and the browser side of the
//! authorization code flow:
//!
//! 1. `GET /authorize` ([`request`]) checks the client, its redirect URI (exactly, but for a
//!    loopback one's port), PKCE S256, the resource (RFC 8707: a `[[resources]]` entry) and
//!    scopes, stores a pending request and sends the browser to the sign-in identity provider
//!    ([`rp`]), binding the request to the browser with a cookie ([`browser`]).
//! 2. `GET /authorize/callback` ([`callback`]) validates the identity provider's answer (state,
//!    code, ID token with nonce and audience), applies that provider's `condition`, and shows the
//!    consent page (skipped for pre-approved clients).
//! 3. `POST /authorize/consent` ([`consent`]; CSRF token bound to the pending request, checked in
//!    constant time; the post must come from frontdesk's own page, [`origin`]) issues a code
//!    ([`codes`]) or refuses, redirecting with `state` and `iss` (RFC 9207).
//!
//! An unknown client or a redirect URI that is not registered is answered with an error page,
//! never a redirect. Every decision is audited. The pages ([`pages`]) are askama templates with
//! the admin page's look and the admin page's security headers.

mod browser;
mod callback;
pub mod codes;
mod consent;
mod origin;
mod pages;
mod redirect;
mod request;
pub mod rp;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};

use crate::clock::unix_now;
use crate::http::AppState;
use crate::registry::{IdentityProvider, Registry};
use crate::store::{AuditEvent, Decision};

use self::pages::error_page;
use self::rp::RelyingParty;

/// The routes of the authorization code flow. Every response carries the admin page's security
/// headers ([`pages::security_headers`]): one policy for every HTML page frontdesk serves.
pub fn router(state: &AppState) -> Router<AppState> {
    let federation = &state.config.federation;
    let rp = RelyingParty::new(
        Duration::from_secs(federation.http_timeout_secs),
        Duration::from_secs(federation.jwks_default_ttl_secs),
        state.config.tokens.clock_skew_secs,
    );
    let starts = Arc::new(AuthorizeStarts(
        crate::oauth::throttle::FailureThrottle::new(
            state.config.authorization.requests_per_minute_per_address,
        ),
    ));
    Router::new()
        .route("/authorize", get(request::authorize))
        .route("/authorize/callback", get(callback::callback))
        .route("/authorize/consent", post(consent::consent))
        // Only on the methods a route serves: a POST to a GET-only path stays a 405.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::require_same_origin,
        ))
        .layer(Extension(Arc::new(rp)))
        .layer(Extension(starts))
        .layer(axum::middleware::map_response(pages::security_headers))
}

/// Authorization requests started per address (`authorization.requests_per_minute_per_address`):
/// starting one needs no credentials but stores a pending request, so each address gets a quota.
pub(crate) struct AuthorizeStarts(pub(crate) crate::oauth::throttle::FailureThrottle<String>);

/// Records `event`; a failed write turns the answer into a 500 page (nothing unaudited).
async fn audited(state: &AppState, event: AuditEvent, response: Response) -> Response {
    match state.tokens.audit.record(event).await {
        Ok(()) => response,
        Err(error) => {
            tracing::error!(%error, "writing the audit event failed");
            error_page(
                state.config.issuer_path(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server could not record this decision. Try again later.",
            )
        }
    }
}

/// Refuses in the browser with a 400 error page, never redirecting: for requests whose client
/// or redirect URI cannot be trusted, and for sign-ins and consents that do not belong to this
/// browser or are no longer pending. `reason` is the audited reason code; `message` is shown to
/// the user and must not reveal more than the user may know.
async fn refuse(state: &AppState, mut audit: AuditEvent, reason: &str, message: &str) -> Response {
    audit.reason = Some(reason.to_string());
    let page = error_page(state.config.issuer_path(), StatusCode::BAD_REQUEST, message);
    audited(state, audit, page).await
}

/// A 500 page for a storage failure, logged with `what` (the failure is not audited: the audit
/// log lives in the same store).
fn unavailable(state: &AppState, error: &dyn std::fmt::Display, what: &str) -> Response {
    tracing::error!(%error, "{what} failed");
    error_page(
        state.config.issuer_path(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "Try again later.",
    )
}

/// An audit event for a denial at `event` (`authorize`, `authorize_callback`,
/// `authorize_consent`); handlers fill in what they learn and turn it into an issuance or a
/// change when the step succeeds.
fn denial(event: &str, error_code: &str, headers: &HeaderMap) -> AuditEvent {
    let mut audit = AuditEvent::new(unix_now(), event, Decision::Denied);
    audit.error_code = Some(error_code.to_string());
    audit.grant_type = Some(crate::oauth::GRANT_AUTHORIZATION_CODE.to_string());
    audit.request_id = crate::http::request_id_for_audit(headers);
    audit
}

/// The identity provider users sign in at, if configured and enabled.
fn sign_in_idp(state: &AppState, registry: &Registry) -> Option<Arc<IdentityProvider>> {
    let id = state.config.authorization.sign_in_idp.as_deref()?;
    registry
        .idp_by_id(id)
        .filter(|idp| idp.config.enabled)
        .cloned()
}

/// frontdesk's redirect URI at the sign-in identity provider.
fn callback_url(state: &AppState) -> String {
    format!(
        "{}/authorize/callback",
        state.config.issuer.trim_end_matches('/')
    )
}
