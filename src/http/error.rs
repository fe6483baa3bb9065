//! The single mapping from protocol errors to HTTP responses (RFC 6749 §5.2): JSON body,
//! `Cache-Control: no-store`, and `WWW-Authenticate` on every 401.
//! Internal failures get a generic body; their cause is logged by whoever produced them.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::oauth::OAuthError;

/// Renders an OAuth error response.
pub fn error_response(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({
        "error": error.code.as_str(),
        "error_description": error.description,
    });
    if let Some(max_age) = error.max_age {
        body["max_age"] = json!(max_age);
    }
    if let Some(acr_values) = &error.acr_values {
        body["acr_values"] = json!(acr_values);
    }
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(seconds) = error.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        headers.insert(http::header::RETRY_AFTER, value);
    }
    // RFC 6749 §5.2 requires the challenge after a failed `Authorization: Basic`; RFC 9110
    // §15.5.2 requires one on every 401, so a client that authenticated in the body (or not at
    // all) is told too which header scheme the server supports.
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"frontdesk\", charset=\"UTF-8\""),
        );
    }
    response
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

/// Unknown paths: a JSON 404 rather than an empty body.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "error_description": "No such endpoint"})),
    )
        .into_response()
}

/// A method a known path does not serve: a JSON 405 (axum adds `Allow`) rather than an empty
/// body.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({
            "error": "method_not_allowed",
            "error_description": "This endpoint does not accept this method",
        })),
    )
        .into_response()
}
