//! `POST /token`: thin. Checks the transport rules (form content type, no query parameters,
//! TOK-02/TOK-13), decodes the form strictly, and hands over to `oauth::TokenService`.
//! Requests refused here are audited here; the service audits everything after.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use super::AppState;
use super::error::error_response;
use crate::clock::unix_now;
use crate::oauth::request::FormParams;
use crate::oauth::{ErrorCode, OAuthError, RequestContext};
use crate::secret::SecretString;

/// Where a request was refused: before the token service (audited here) or inside it (audited
/// there).
enum Rejection {
    Transport(OAuthError),
    Service(OAuthError),
}

/// Which form endpoint a request is for.
#[derive(Clone, Copy)]
enum Endpoint {
    Token,
    Introspect,
    Revoke,
}

/// `POST /token`.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    form_endpoint(state, request, Endpoint::Token).await
}

/// `POST /introspect` (RFC 7662).
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    form_endpoint(state, request, Endpoint::Introspect).await
}

/// `POST /revoke` (RFC 7009).
pub async fn revoke(State(state): State<AppState>, request: Request) -> Response {
    form_endpoint(state, request, Endpoint::Revoke).await
}

async fn form_endpoint(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    let result = match axum::body::to_bytes(body, limit).await {
        Ok(body) => {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip());
            handle(&state, &parts.uri, &parts.headers, &body, endpoint, peer).await
        }
        Err(_) => Err(Rejection::Transport(OAuthError::invalid_request(
            "request_too_large",
            "The request body is larger than this server accepts",
        ))),
    };
    let result = match result {
        Ok(body) => Ok(body),
        Err(Rejection::Service(error)) => Err(error),
        Err(Rejection::Transport(error)) => {
            // Refused before the form could be read: still a decision, so still audited.
            match state
                .tokens
                .audit_rejection(&error, request_id(&parts.headers), unix_now())
                .await
            {
                Ok(()) => Err(error),
                Err(()) => Err(OAuthError::server_error()),
            }
        }
    };
    match result {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error_response(&error),
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(100).collect())
}

async fn handle(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    endpoint: Endpoint,
    peer: Option<std::net::IpAddr>,
) -> Result<serde_json::Value, Rejection> {
    transport_checks(uri, headers).map_err(Rejection::Transport)?;
    let form = FormParams::parse(body).map_err(Rejection::Transport)?;
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().map(SecretString::new))
        .transpose()
        .map_err(|_| {
            let mut error = OAuthError::new(
                ErrorCode::InvalidClient,
                "malformed_authorization",
                "The Authorization header is not valid",
            );
            error.used_authorization_header = true;
            Rejection::Transport(error)
        })?;
    let context = RequestContext {
        authorization,
        request_id: request_id(headers),
        now: unix_now(),
        peer,
    };
    let tokens = &state.tokens;
    match endpoint {
        Endpoint::Token => tokens
            .token(form, context)
            .await
            .map(|response| response.body),
        Endpoint::Introspect => {
            crate::oauth::introspection::introspect(tokens, &form, &context).await
        }
        Endpoint::Revoke => crate::oauth::introspection::revoke(tokens, &form, &context)
            .await
            .map(|()| serde_json::json!({})),
    }
    .map_err(Rejection::Service)
}

/// TOK-13: tokens and credentials are never taken from the URL. TOK-02: form bodies only.
fn transport_checks(uri: &Uri, headers: &HeaderMap) -> Result<(), OAuthError> {
    if uri.query().is_some_and(|query| !query.is_empty()) {
        return Err(OAuthError::invalid_request(
            "query_parameters_refused",
            "Token requests must carry their parameters in the form body, not the URL",
        ));
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "wrong_content_type",
            "The request body must be application/x-www-form-urlencoded",
        ));
    }
    Ok(())
}

/// Other methods on `/token` (TOK-01): 405 with an OAuth error body, audited like any refusal.
pub async fn method_not_allowed(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let error =
        OAuthError::invalid_request("method_not_allowed", "The token endpoint accepts POST only");
    if state
        .tokens
        .audit_rejection(&error, request_id(&headers), unix_now())
        .await
        .is_err()
    {
        return error_response(&OAuthError::server_error());
    }
    let mut response = error_response(&error);
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    response
}
