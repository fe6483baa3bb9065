//! The same-origin check of every state-changing admin form (sign-in, bootstrap, sign-out and
//! every change), run as a layer on the admin page's routes so a new form cannot forget it. The
//! forms behind a session also carry its CSRF token; the sign-in and bootstrap forms have no
//! session yet, and this check is what refuses a cross-site post to them (login CSRF) — also one
//! saying only `Origin: null`, which a page of another site can make a browser without Fetch
//! metadata send, while the admin pages' `Referrer-Policy: same-origin` has browsers send their
//! real origin. The decision itself is [`crate::http::same_origin`], shared with the end user's
//! consent form.
//!
//! The JSON API under `/admin/api/v1` is not behind this layer: it authenticates with bearer
//! tokens, which a browser never adds by itself, and refuses the session cookie.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminError;
use crate::http::AppState;
use crate::http::same_origin::{check_request, issuer_origin};

pub use crate::http::same_origin::{OriginRefusal, check};

/// The layer: every request but `GET`/`HEAD`/`OPTIONS` must pass [`check`], or gets a 403 page
/// saying why, before its handler reads the form.
pub async fn require_same_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check_request(&state.config, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            AdminError::Forbidden(refusal.explain(&issuer_origin(&state.config))).into_response()
        }
    }
}
