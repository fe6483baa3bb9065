//! `POST /register` (RFC 7591), served only when `[registration] enabled = true`. Thin: checks
//! the initial access token (when configured, in constant time), the per-address rate limit and
//! the JSON body, then hands the metadata to `oauth::registration` and stores the client through
//! the admin page's audited path. Every refusal is audited here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Extension, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use crate::clock::unix_now;
use crate::oauth::registration::{RegistrationError, client_document, registration_response};
use crate::store::{AuditEvent, Decision};

/// Registrations per peer address; shared by every request to this instance.
pub struct RegistrationLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl std::fmt::Debug for RegistrationLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationLimiter")
    }
}

/// The `/register` route with its rate limiter, or nothing when registration is off (the path is
/// then simply not found, and the metadata does not name it).
pub fn router(state: &AppState) -> axum::Router<AppState> {
    let config = &state.config.registration;
    if !config.enabled {
        return axum::Router::new();
    }
    let per_minute = NonZeroU32::new(config.per_minute).unwrap_or(NonZeroU32::MIN);
    let limiter = Arc::new(RegistrationLimiter(RateLimiter::keyed(Quota::per_minute(
        per_minute,
    ))));
    axum::Router::new()
        .route("/register", axum::routing::post(register))
        .layer(Extension(limiter))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn error_body(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

/// Audits a refusal; a failed audit write turns the answer into a 500.
async fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    reason: &str,
    error: &str,
    response: Response,
) -> Response {
    let mut event = AuditEvent::new(unix_now(), "client_registration", Decision::Denied);
    event.reason = Some(reason.to_string());
    event.error_code = Some(error.to_string());
    event.request_id = super::request_id_for_audit(headers);
    match state.tokens.audit.record(event).await {
        Ok(()) => response,
        Err(failure) => {
            tracing::error!(error = %failure, "writing the audit event failed");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body("server_error", "The server could not record this request"),
            )
        }
    }
}

fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, token)| {
            crate::secret::constant_time_eq(token.trim().as_bytes(), expected.as_bytes())
        })
}

fn new_client_id() -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    // A failed RNG would give a predictable id, never a shared one: the store refuses duplicates.
    let _ = SystemRandom::new().fill(&mut bytes);
    format!("dcr-{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `POST /register`.
async fn register(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<RegistrationLimiter>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let body = axum::body::to_bytes(body, state.config.server.max_body_bytes)
        .await
        .unwrap_or_default();
    if let Err(not_until) = limiter.0.check_key(&peer) {
        let wait = not_until
            .wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
            .as_secs()
            .max(1);
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            error_body(
                "slow_down",
                "Too many registrations from this address; retry later",
            ),
        );
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return refuse(&state, &headers, "throttled", "slow_down", response).await;
    }
    if let Some(expected) = &state.config.registration.initial_access_token
        && !bearer_matches(&headers, expected.expose())
    {
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            error_body(
                "invalid_token",
                "Registration needs the initial access token issued by the administrator",
            ),
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return refuse(
            &state,
            &headers,
            "initial_access_token",
            "invalid_token",
            response,
        )
        .await;
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("application/json"));
    let invalid = |error: RegistrationError| {
        (
            error.reason,
            error.error,
            json_response(
                StatusCode::BAD_REQUEST,
                error_body(error.error, &error.description),
            ),
        )
    };
    let parsed = if is_json {
        serde_json::from_slice::<Value>(&body).map_err(|_| RegistrationError {
            error: "invalid_client_metadata",
            reason: "body_not_json",
            description: "The body is not valid JSON".into(),
        })
    } else {
        Err(RegistrationError {
            error: "invalid_client_metadata",
            reason: "wrong_content_type",
            description: "Send the client metadata as application/json".into(),
        })
    };
    let document = parsed.and_then(|request| client_document(&request, &state.config.registration));
    let mut document = match document {
        Ok(document) => document,
        Err(error) => {
            let (reason, code, response) = invalid(error);
            return refuse(&state, &headers, reason, code, response).await;
        }
    };
    let client_id = new_client_id();
    document["client_id"] = json!(client_id);
    match crate::admin::create_registered_client(&state, document.clone()).await {
        Ok(secret) => json_response(
            StatusCode::CREATED,
            registration_response(&client_id, &document, secret.as_deref(), unix_now()),
        ),
        Err(crate::admin::RegisterError::Invalid(message)) => {
            let (reason, code, response) = invalid(RegistrationError {
                error: "invalid_client_metadata",
                reason: "client_invalid",
                description: message,
            });
            refuse(&state, &headers, reason, code, response).await
        }
        Err(crate::admin::RegisterError::Internal) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_body(
                "server_error",
                "The client could not be stored; try again later",
            ),
        ),
    }
}
