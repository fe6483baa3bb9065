//! The axum adapter: routes, middleware and the mapping of protocol errors to responses.
//! Handlers stay thin; decisions live in `oauth`.

mod error;
pub mod forwarded;
mod health;
mod metadata;
mod metrics;
mod register;
mod request_id;
pub mod same_origin;
pub mod serve;
mod state;
mod status_list;
mod token;

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::routing::get;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderName, StatusCode};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::error_response;
pub use metadata::metadata_document;
pub use metrics::metrics_handle;
pub use request_id::for_audit as request_id_for_audit;
pub use state::{AppState, Shared};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a panicking handler answers.
type PanicResponse = fn(Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response;

/// The layer that turns a panicking handler into a 500 in the OAuth error format, with the
/// `no-store` headers of every answer to a request that may have been for a token. tower-http's
/// default answers `text/plain` "Service panicked", without them, and logs the panic's message,
/// which may quote request data: the message is left to the panic hook (standard error, with
/// the code location), and the log line only says that a handler panicked.
fn catch_panics() -> CatchPanicLayer<PanicResponse> {
    CatchPanicLayer::custom(|_panic| {
        tracing::error!("a request handler panicked (its message is on standard error)");
        error_response(&crate::oauth::OAuthError::server_error())
    })
}

/// Serves `app` under the issuer's path (`Config::issuer_path`), so every URL the metadata names
/// is one this server answers. An issuer with a path also gets its RFC 8414 metadata at the
/// path-inserted well-known URLs (§3.1: `/.well-known/oauth-authorization-server/tenant`, and the
/// same for `openid-configuration`, which MCP clients try too) and keeps the operator's probes and
/// metrics at the root, where load balancers and scrapers look by default. Nothing else is
/// answered outside the path.
fn mounted(path: &str, app: Router<AppState>, max_body: usize) -> Router<AppState> {
    if path.is_empty() {
        return app;
    }
    Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{path}"),
            get(metadata::oauth_metadata),
        )
        .route(
            &format!("/.well-known/openid-configuration{path}"),
            get(metadata::oauth_metadata),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::not_found)
        .layer(RequestBodyLimitLayer::new(max_body))
        .nest(path, app)
}

/// Builds the router with every layer in the order that keeps secrets out of logs: credentials
/// are marked sensitive before the trace layer sees them, and spans carry the path only — never
/// the query string, where a careless client might have put a token (TOK-13).
pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let timeout = Duration::from_secs(state.config.server.request_timeout_secs);
    // The protocol form endpoints read their bodies themselves under `max_body`, so an
    // over-long body is answered in OAuth's error format; everything else is cut off by the
    // body-limit layer before any handler runs.
    let limited = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::oauth_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::oauth_metadata),
        )
        .route("/jwks.json", get(metadata::jwks))
        .route("/status-lists", get(status_list::aggregation))
        .route("/status-lists/{list}", get(status_list::list))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .merge(crate::admin::router(&state))
        .merge(crate::authorize::router(&state))
        .merge(register::router(&state))
        // After every route, since it reaches only the routes already added.
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::not_found)
        .layer(RequestBodyLimitLayer::new(max_body));
    let forms = Router::new()
        .route(
            "/introspect",
            axum::routing::post(token::introspect).fallback(token::method_not_allowed),
        )
        .route(
            "/revoke",
            axum::routing::post(token::revoke).fallback(token::method_not_allowed),
        )
        .route(
            "/issuer-acceptance",
            axum::routing::post(token::issuer_acceptance).fallback(token::method_not_allowed),
        )
        .route(
            "/token",
            axum::routing::post(token::token).fallback(token::method_not_allowed),
        );
    let mut app = mounted(state.config.issuer_path(), limited.merge(forms), max_body);
    // Behind trusted proxies, the client's address replaces the proxy's for every handler;
    // without them nothing is added to the path of a request.
    match forwarded::TrustedProxies::parse(&state.config.server.trusted_proxies) {
        Ok(proxies) if !proxies.is_empty() => {
            app = app.layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::new(proxies),
                forwarded::resolve_client,
            ));
        }
        Ok(_) => {}
        // Config::validate refused it at start-up; an embedder that skipped validation gets
        // the safe reading: no proxy trusted.
        Err(message) => tracing::warn!(%message, "server.trusted_proxies ignored"),
    }
    app.layer(axum::middleware::from_fn(metrics::track))
        .layer(
            ServiceBuilder::new()
                .map_request(request_id::drop_overlong::<axum::body::Body>)
                .layer(SetRequestIdLayer::new(
                    REQUEST_ID,
                    request_id::MakeSequentialRequestId,
                ))
                .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION, COOKIE]))
                .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE]))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let path = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map(MatchedPath::as_str)
                            .unwrap_or_else(|| request.uri().path());
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %request.method(), path = %path, request_id = %request_id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(catch_panics())
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
                // Extractors refuse larger bodies with 413; the token endpoint reads its body
                // itself under the same limit so it can answer in OAuth's error format.
                .layer(axum::extract::DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A handler that panics is answered like any other internal failure (RFC 6749 §5.2 JSON,
    /// `server_error`, `Cache-Control: no-store` and `Pragma: no-cache`, since the request may
    /// have been one for a token), and its panic message — which may quote request data — is
    /// not in the answer.
    #[tokio::test]
    async fn a_panicking_handler_is_a_json_server_error_that_quotes_nothing() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let token = "eyJ-secret-token-in-a-panic";
                    panic!("could not handle {token}");
                    #[allow(unreachable_code)]
                    ()
                }),
            )
            .layer(catch_panics());
        let response = app
            .oneshot(
                Request::builder()
                    .uri("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let header = |name: http::HeaderName| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header(http::header::CACHE_CONTROL).as_deref(),
            Some("no-store")
        );
        assert_eq!(header(http::header::PRAGMA).as_deref(), Some("no-cache"));
        assert!(
            header(http::header::CONTENT_TYPE)
                .unwrap_or_default()
                .starts_with("application/json")
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret-token"), "{text}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(json["error"], "server_error");
    }
}
