//! `POST /token`: thin. Checks the transport rules (form content type, no query parameters,
//! TOK-02/TOK-13), decodes the form strictly, and hands over to `oauth::TokenService`.
//! Requests refused here are audited here; the service audits everything after.

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

/// Which form endpoint a request is for.
#[derive(Clone, Copy)]
enum Endpoint {
    Token,
    Introspect,
    Revoke,
    IssuerAcceptance,
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

/// `POST /issuer-acceptance` (IDJAG-ACCEPT-27): whether grants from an issuer would be accepted
/// for the authenticated client. A form endpoint like the others, under the same transport rules.
pub async fn issuer_acceptance(State(state): State<AppState>, request: Request) -> Response {
    form_endpoint(state, request, Endpoint::IssuerAcceptance).await
}

async fn form_endpoint(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    let request_id = super::request_id_for_audit(&parts.headers);
    let dpop_sent = matches!(endpoint, Endpoint::Token) && parts.headers.contains_key(DPOP);
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| super::forwarded::limit_key(info.0.ip()));
    let prepared = match axum::body::to_bytes(body, limit).await {
        Ok(body) => prepare(&parts.uri, &parts.headers, &body),
        Err(_) => Err(OAuthError::invalid_request(
            "request_too_large",
            "The request body is larger than this server accepts",
        )),
    };
    // The request's head and body are slices of hyper's read buffer. Release them before
    // waiting for the service (which waits for the audit commit): while any slice is alive,
    // hyper's next read on this connection cannot reuse its buffer and allocates a new one —
    // a large allocation per request under load (docs/performance.md, ninth run).
    drop(parts);
    let result = match prepared {
        Ok((form, authorization, dpop)) => {
            let context = RequestContext {
                authorization,
                request_id,
                now: unix_now(),
                peer,
                dpop,
            };
            serve(&state, form, context, endpoint).await
        }
        Err(error) => {
            // Refused before the form could be read: still a decision, so still audited.
            match state
                .tokens
                .audit_rejection(&error, request_id, unix_now())
                .await
            {
                Ok(()) => Err(error),
                Err(()) => Err(OAuthError::server_error()),
            }
        }
    };
    let mut response = match result {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error_response(&error),
    };
    // RFC 9449 §8, §8.2: every answer to a request with a proof carries the current nonce —
    // the challenge of a `use_dpop_nonce` error, and on success the value the client's next
    // proof should echo, so it is never refused once a window rolls over. Offered whether or
    // not this client must use it (nonces can be required per client, and this layer does not
    // know the client); a proof that echoes one is accepted either way.
    if dpop_sent
        && let Ok(value) = HeaderValue::from_str(&state.tokens.dpop_nonces.issue(unix_now()))
    {
        response.headers_mut().insert(DPOP_NONCE, value);
    }
    response
}

/// The request header that carries a DPoP proof (RFC 9449 §4.1).
const DPOP: &str = "dpop";

/// The response header that carries a server-provided DPoP nonce (RFC 9449 §8.1).
const DPOP_NONCE: &str = "dpop-nonce";

/// What [`prepare`] reads: the form, the `Authorization` header and the `DPoP` proof.
type Prepared = (FormParams, Option<SecretString>, Option<SecretString>);

/// The request's transport rules and form, read before anything is awaited; what it returns
/// owns its data (no slice of the connection's buffer).
fn prepare(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Prepared, OAuthError> {
    transport_checks(uri, headers)?;
    let form = FormParams::parse(body)?;
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().map(SecretString::new))
        .transpose()
        .map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "malformed_authorization",
                "The Authorization header is not valid",
            )
        })?;
    Ok((form, authorization, dpop_proof(headers)?))
}

/// The `DPoP` header's proof (RFC 9449 §4.1): at most one header, of visible ASCII.
fn dpop_proof(headers: &HeaderMap) -> Result<Option<SecretString>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|proof| Some(SecretString::new(proof)))
            .map_err(|_| crate::oauth::dpop::malformed_header()),
        (Some(_), Some(_)) => Err(crate::oauth::dpop::malformed_header()),
    }
}

async fn serve(
    state: &AppState,
    form: FormParams,
    context: RequestContext,
    endpoint: Endpoint,
) -> Result<serde_json::Value, OAuthError> {
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
        Endpoint::IssuerAcceptance => {
            crate::oauth::issuer_acceptance::answer(tokens, &form, &context).await
        }
    }
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

/// Other methods on `/token`, `/introspect`, `/revoke` and `/issuer-acceptance` (TOK-01): 405
/// with an OAuth error body, audited like any refusal.
pub async fn method_not_allowed(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let error =
        OAuthError::invalid_request("method_not_allowed", "This endpoint accepts POST only");
    if state
        .tokens
        .audit_rejection(&error, super::request_id_for_audit(&headers), unix_now())
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
