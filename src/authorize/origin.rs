//! The same-origin check of the flow's state-changing form posts — today the consent form,
//! `POST /authorize/consent` — run as a route layer so a new form cannot forget it. The decision
//! is the admin page's ([`crate::http::same_origin`]): `Sec-Fetch-Site: same-origin` or an
//! `Origin` equal to the issuer's (which the pages' `Referrer-Policy: same-origin` lets browsers
//! send); a post from another site, naming no origin at all, or saying only `Origin: null`
//! (which a page of another site can make a browser without Fetch metadata send), is refused
//! with a 403 page, audited, before its handler reads the form, so no code is issued and the
//! pending request stays undecided.
//!
//! The consent form is also bound to the pending request (CSRF token) and to the browser (a
//! `SameSite=Lax` cookie). This check adds a refusal that depends on no secret staying secret
//! and on no browser's cookie policy: a page of another site that learnt a user's consent token
//! (a leaked page, a log) still cannot make the user's browser approve with it (consent CSRF).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;

use crate::http::AppState;
use crate::http::same_origin::{check_request, issuer_origin};

use super::pages::error_page;
use super::{audited, denial};

/// The layer: every request but `GET`/`HEAD`/`OPTIONS` must pass the same-origin check, or is
/// answered with a 403 page saying why and audited as a denial of the step it was for.
pub async fn require_same_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Err(refusal) = check_request(&state.config, request.method(), request.headers()) else {
        return next.run(request).await;
    };
    let event = audit_event_of(request.uri().path());
    let mut audit = denial(event, "access_denied", request.headers());
    audit.reason = Some(refusal.reason().to_string());
    let message = format!(
        "{} Start again from the application.",
        refusal.explain(&issuer_origin(&state.config))
    );
    let page = error_page(state.config.issuer_path(), StatusCode::FORBIDDEN, &message);
    audited(&state, audit, page).await
}

/// The audit event of the step a refused post was for (the router is nested under the issuer's
/// path, so `path` starts at `/authorize`).
fn audit_event_of(path: &str) -> &'static str {
    match path {
        "/authorize/consent" => "authorize_consent",
        _ => "authorize",
    }
}

#[cfg(test)]
mod tests {
    use super::audit_event_of;

    #[test]
    fn a_refused_consent_post_is_audited_as_a_consent_step() {
        assert_eq!(audit_event_of("/authorize/consent"), "authorize_consent");
        assert_eq!(audit_event_of("/authorize"), "authorize");
    }
}
