//! RFC 8414 authorization server metadata and our JWKS. The metadata advertises only what this
//! build implements (META-04..META-19): an unimplemented feature is never listed.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{Value, json};

use super::AppState;
use crate::config::Config;

/// The metadata document for `config`, with endpoint URLs on the issuer's origin (META-17).
pub fn metadata_document(config: &Config) -> Value {
    let base = config.issuer.trim_end_matches('/');
    json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{base}/jwks.json"),
        "response_types_supported": [],
    })
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
pub async fn oauth_metadata(State(state): State<AppState>) -> Response {
    let mut response = Json(metadata_document(&state.config)).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /jwks.json`: the published keys (next, active, retired-but-not-expired).
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.jwks_json();
    let mut response = body.as_ref().clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "public, max-age={}",
        state.config.keys.jwks_max_age_secs
    )) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}
