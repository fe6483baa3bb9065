//! The web admin page under `/admin`: server-rendered askama pages, usable without JavaScript,
//! one stylesheet served from the binary. Sign-in is local (argon2id) with server-side sessions;
//! every state-changing form is a POST from the page's own origin ([`origin`]) carrying the
//! session's CSRF token; every change is audited in the same transaction as the change itself.
//!
//! The JSON API under `/admin/api/v1` ([`api`]) runs the same operations with bearer API
//! tokens. Admins sign in with a local account or through single sign-on at an enterprise IdP
//! ([`sso`]), where CEL conditions over the IdP's claims decide the role.

pub mod api;
mod audit;
pub mod auth;
pub mod cookie;
mod dashboard;
mod keys;
pub mod origin;
mod policy;
mod revocation;
pub mod sso;
mod trust;
mod views;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, header};

use crate::http::AppState;

pub use auth::{ABSOLUTE_TIMEOUT_SECS, IDLE_TIMEOUT_SECS};
pub use cookie::{ADMIN_COOKIE, session_cookie_name};
pub(crate) use trust::{
    RegisterError, create_registered_client, delete_registered_client, registered_client,
    update_registered_client,
};
pub use views::AdminError;
pub(crate) use views::format_time;

/// The Content-Security-Policy of every admin response: no scripts at all, styles and images
/// only from frontdesk, forms only to frontdesk, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("../../static/admin.css");
const FAVICON: &str = include_str!("../../static/favicon.svg");

/// In-memory state of the admin page on this instance: the sign-in rate limiter, the one-time
/// development bootstrap token, an HTTP client for "test connection", and a clock offset that
/// tests use to expire sessions without sleeping.
#[derive(Debug)]
pub struct AdminRuntime {
    pub(crate) limiter: auth::RateLimiter,
    /// Single sign-on starts per address ([`sso::SSO_STARTS_PER_MINUTE`]).
    pub(crate) sso_starts: crate::oauth::throttle::FailureThrottle<String>,
    pub(crate) bootstrap: std::sync::Mutex<Option<auth::BootstrapToken>>,
    pub(crate) http: reqwest::Client,
    /// Single sign-on for admins, when `[admin_sso]` is configured.
    pub(crate) sso: Option<sso::Sso>,
    clock_offset: AtomicI64,
}

impl AdminRuntime {
    /// Builds the runtime; `http_timeout` bounds each outbound request of "test connection" and
    /// of single sign-on. "Test connection" fetches with the trust fetches' own client (JWKS-07:
    /// https, or http on a loopback address, at every redirect hop), so it reports what the
    /// token endpoint would load and cannot be redirected anywhere else.
    pub fn new(http_timeout: Duration, config: &crate::config::Config) -> AdminRuntime {
        let http =
            crate::jose::jwks_cache::trust_http_client(http_timeout).unwrap_or_else(|error| {
                tracing::error!(%error, "cannot build the HTTP client of test connection");
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(http_timeout)
                    .build()
                    .unwrap_or_default()
            });
        AdminRuntime {
            limiter: auth::RateLimiter::default(),
            sso_starts: crate::oauth::throttle::FailureThrottle::new(sso::SSO_STARTS_PER_MINUTE),
            bootstrap: std::sync::Mutex::new(None),
            http,
            sso: sso::Sso::from_config(config, http_timeout),
            clock_offset: AtomicI64::new(0),
        }
    }

    /// The admin page's notion of now (unix seconds): the system clock plus the test offset.
    pub fn now(&self) -> i64 {
        crate::clock::unix_now() + self.clock_offset.load(Ordering::Relaxed)
    }

    /// Moves the admin page's clock forward, so tests can expire sessions without sleeping.
    pub fn advance_clock(&self, secs: i64) {
        self.clock_offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// The `/admin` routes. Merged into the plain routes of [`crate::http::router`], so the
/// body-limit layer applies; [`views::render_errors`] draws their error pages with `state`'s
/// path.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(dashboard::page))
        .route("/admin/", get(dashboard::page))
        .route("/admin/static/admin.css", get(stylesheet))
        .route("/admin/static/favicon.svg", get(favicon))
        .route(
            "/admin/sign-in",
            get(auth::sign_in_page).post(auth::sign_in),
        )
        .route("/admin/sign-out", post(auth::sign_out))
        .route("/admin/sso/start", get(sso::start))
        .route("/admin/sso/callback", get(sso::callback))
        .route(
            "/admin/bootstrap",
            get(auth::bootstrap_page).post(auth::bootstrap),
        )
        .merge(trust::routes())
        .route("/admin/keys", get(keys::page))
        .route("/admin/keys/rotate", post(keys::rotate))
        .route("/admin/keys/{kid}/retire", post(keys::retire))
        .route("/admin/policy", get(policy::page).post(policy::evaluate))
        .route(
            "/admin/revocations",
            get(revocation::page).post(revocation::revoke),
        )
        .route("/admin/audit", get(audit::page))
        .route("/admin/audit/export", get(audit::export))
        .route(
            "/admin/api-tokens",
            get(api::page::page).post(api::page::create),
        )
        .route("/admin/api-tokens/{name}/revoke", post(api::page::revoke))
        // Every form above, and only those: the JSON API below takes bearer tokens, not cookies.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::require_same_origin,
        ))
        .merge(api::routes())
        .route("/admin/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            views::render_errors,
        ))
        .layer(axum::middleware::map_response(security_headers))
}

async fn not_found() -> AdminError {
    AdminError::NotFound
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        FAVICON,
    )
        .into_response()
}

/// Sets the security headers of every HTML page frontdesk serves (the admin page and the
/// sign-in and consent pages of [`crate::authorize`]), so there is one policy to review: no
/// scripts ([`CONTENT_SECURITY_POLICY`]), never framed, no sniffing, no caching, and no
/// referrer to any other origin. The referrer policy is `same-origin`, not `no-referrer`: under
/// `no-referrer` a browser sends `Origin: null` on the pages' own form posts, which a page of
/// another site can make it send too, so the same-origin check ([`crate::http::same_origin`])
/// could not refuse `null` from a browser without Fetch metadata. A page's URL (a bootstrap
/// token, a callback's code) still goes only to frontdesk itself, which already has it.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// On a development instance with no admin users, issues the one-time bootstrap link (valid for
/// an hour, single use) that lets the person at the terminal create the first admin account.
pub async fn bootstrap_link(state: &AppState) -> Option<String> {
    use crate::store::AdminStore;
    if !state.config.development {
        return None;
    }
    match state.store.count_admin_users().await {
        Ok(0) => {}
        Ok(_) => return None,
        Err(error) => {
            tracing::warn!(%error, "cannot count admin users; no bootstrap link");
            return None;
        }
    }
    let token = state.admin.issue_bootstrap_token();
    Some(format!(
        "{}/admin/bootstrap?token={token}",
        state.config.issuer.trim_end_matches('/')
    ))
}

/// The admin clock of a state (see [`AdminRuntime::now`]).
pub(crate) fn now_of(state: &AppState) -> i64 {
    state.admin.now()
}
