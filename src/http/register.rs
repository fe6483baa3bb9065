//! `POST /register` (RFC 7591), served only when `[registration] enabled = true`. Thin: checks
//! the initial access token (when configured, in constant time), the per-address rate limit and
//! the JSON body, then hands the metadata to `oauth::registration` and stores the client through
//! the admin page's audited path. Every refusal is audited here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Extension, Path, State};
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
use crate::authorize::codes::{constant_time_eq, hash_token, random_token};
use crate::clock::unix_now;
use crate::oauth::registration::{RegistrationError, client_document, registration_response};
use crate::store::{AuditEvent, Decision};

/// Registrations per peer address; shared by every request to this instance.
pub struct RegistrationLimiter(DefaultKeyedRateLimiter<IpAddr>);

/// Addresses the registration limiter tracks before it forgets those whose allowance has
/// refilled. Such an address is indistinguishable from one never seen, so nothing is lost; without
/// it every address that ever registered or updated (or tried to) would stay in memory for the
/// life of the process, as many entries as an attacker has addresses (an IPv6 /48 holds 65 536
/// of the /64s the limiter counts by).
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Forgets the addresses whose allowance has refilled once `max` are tracked (the other
/// per-address limits do the same: `oauth::request_limit`, `oauth::throttle`).
fn forget_refilled<C>(
    limiter: &RateLimiter<
        IpAddr,
        governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
    max: usize,
) where
    C: governor::clock::Clock,
{
    if limiter.len() >= max {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

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
        .route(
            "/register/{client_id}",
            axum::routing::get(read).put(update).delete(remove),
        )
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

/// Audits a refusal (naming the client whose registration was at stake, if any); a failed
/// audit write turns the answer into a 500.
async fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    client_id: Option<&str>,
    reason: &str,
    error: &str,
    response: Response,
) -> Response {
    let mut event = AuditEvent::new(unix_now(), "client_registration", Decision::Denied);
    event.reason = Some(reason.to_string());
    event.error_code = Some(error.to_string());
    event.request_id = super::request_id_for_audit(headers);
    event.client_id = client_id.map(|id| crate::oauth::request::clip(id, 200));
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
    bearer_token(headers)
        .is_some_and(|token| crate::secret::constant_time_eq(token.as_bytes(), expected.as_bytes()))
}

/// 401 with RFC 6750's `invalid_token`, naming the Bearer scheme in `WWW-Authenticate`.
fn invalid_token(description: &str) -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        error_body("invalid_token", description),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
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
    let peer = peer_of(&parts.extensions);
    let body = axum::body::to_bytes(body, state.config.server.max_body_bytes)
        .await
        .unwrap_or_default();
    if let Some(response) = throttled(&state, &limiter, &headers, peer, None).await {
        return response;
    }
    if let Some(expected) = &state.config.registration.initial_access_token
        && !bearer_matches(&headers, expected.expose())
    {
        let response = invalid_token(
            "Registration needs the initial access token issued by the administrator",
        );
        return refuse(
            &state,
            &headers,
            None,
            "initial_access_token",
            "invalid_token",
            response,
        )
        .await;
    }
    let limit = state.config.registration.max_clients;
    if state.tokens.trust.current().self_registered_clients() >= limit as usize {
        let response = json_response(
            StatusCode::FORBIDDEN,
            error_body(
                "access_denied",
                "This server accepts no more self-registered clients; ask its administrator",
            ),
        );
        return refuse(
            &state,
            &headers,
            None,
            "registration_limit_reached",
            "access_denied",
            response,
        )
        .await;
    }
    let document = parse_metadata(&headers, &body)
        .and_then(|request| client_document(&request, &state.config.registration));
    let mut document = match document {
        Ok(document) => document,
        Err(error) => {
            let (reason, code, response) = invalid(error);
            return refuse(&state, &headers, None, reason, code, response).await;
        }
    };
    let client_id = new_client_id();
    document["client_id"] = json!(client_id);
    // RFC 7592: the token that manages this registration; only its hash is stored.
    let management_token = random_token(32);
    document["registration_access_token_hash"] = json!(hash_token(&management_token));
    match crate::admin::create_registered_client(&state, document.clone()).await {
        Ok(secret) => {
            let mut body =
                registration_response(&client_id, &document, secret.as_deref(), Some(unix_now()));
            add_management(&state, &mut body, &client_id, &management_token);
            json_response(StatusCode::CREATED, body)
        }
        Err(crate::admin::RegisterError::Invalid(message)) => {
            let (reason, code, response) = invalid(RegistrationError {
                error: "invalid_client_metadata",
                reason: "client_invalid",
                description: message,
            });
            refuse(&state, &headers, None, reason, code, response).await
        }
        Err(crate::admin::RegisterError::Internal | crate::admin::RegisterError::NotFound) => {
            storage_failed()
        }
    }
}

fn storage_failed() -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        error_body(
            "server_error",
            "The client could not be stored; try again later",
        ),
    )
}

/// The client configuration endpoint's URL for `client_id` (RFC 7592 §3), under the issuer.
fn registration_client_uri(state: &AppState, client_id: &str) -> String {
    format!(
        "{}/register/{}",
        state.config.issuer.trim_end_matches('/'),
        form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
    )
}

/// RFC 7592 §3: every client information response names the configuration endpoint and the
/// token that manages it.
fn add_management(state: &AppState, body: &mut Value, client_id: &str, token: &str) {
    body["registration_client_uri"] = json!(registration_client_uri(state, client_id));
    body["registration_access_token"] = json!(token);
}

/// A request to the client configuration endpoint that may proceed: the client it manages and
/// the registration access token it presented.
struct Managed {
    client: Arc<crate::registry::Client>,
    token: String,
}

/// RFC 7592 §2: the request's bearer token must be the registration access token issued to
/// `client_id`. A missing or wrong token, an unknown client, or one that did not register
/// itself are all the same 401 (RFC 6750 `invalid_token`), so the endpoint tells a stranger
/// nothing about which clients exist; a client the administrator disabled gets 403. Refusals
/// are audited.
async fn authorize_management(
    state: &AppState,
    headers: &HeaderMap,
    peer: IpAddr,
    client_id: &str,
) -> Result<Managed, Response> {
    // Failed presentations count against the address like failed client authentications at
    // the token endpoint, and a throttled address is refused before any lookup.
    if let Some(wait) = state.tokens.throttle.retry_after(&peer) {
        let response = slow_down(
            "Too many failed requests from this address; retry later",
            wait.as_secs(),
        );
        return Err(refuse(
            state,
            headers,
            Some(client_id),
            "throttled",
            "slow_down",
            response,
        )
        .await);
    }
    let token = bearer_token(headers);
    let registry = state.tokens.trust.current();
    let client = registry.client(client_id).cloned();
    let matches = match (&token, &client) {
        (Some(token), Some(client)) => client
            .config
            .registration_access_token_hash
            .as_deref()
            .is_some_and(|stored| constant_time_eq(&hash_token(token), stored)),
        _ => false,
    };
    let (Some(token), Some(client), true) = (token, client, matches) else {
        let response = invalid_token(
            "Send the registration access token this client was given at registration",
        );
        state.tokens.throttle.record_failure(peer);
        let reason = if bearer_token(headers).is_some() {
            "registration_token_invalid"
        } else {
            "registration_token_missing"
        };
        return Err(refuse(
            state,
            headers,
            Some(client_id),
            reason,
            "invalid_token",
            response,
        )
        .await);
    };
    if !client.config.enabled {
        let response = json_response(
            StatusCode::FORBIDDEN,
            error_body(
                "access_denied",
                "The administrator has disabled this client; its registration cannot be managed",
            ),
        );
        return Err(refuse(
            state,
            headers,
            Some(client_id),
            "client_disabled",
            "access_denied",
            response,
        )
        .await);
    }
    Ok(Managed { client, token })
}

/// A client configuration request's head, checked ([`authorize_management`]): its headers and
/// the registration it manages.
async fn open_management(
    state: &AppState,
    client_id: &str,
    parts: http::request::Parts,
) -> Result<(HeaderMap, Managed), Response> {
    let peer = peer_of(&parts.extensions);
    let headers = parts.headers;
    let managed = authorize_management(state, &headers, peer, client_id).await?;
    Ok((headers, managed))
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim().to_string())
}

/// The client information response (RFC 7592 §3) for a stored client document.
fn information(
    state: &AppState,
    client_id: &str,
    document: &Value,
    secret: Option<&str>,
    token: &str,
) -> Value {
    let mut body = registration_response(client_id, document, secret, None);
    add_management(state, &mut body, client_id, token);
    body
}

/// Audits a successful management operation that changed nothing (a read); changes are
/// audited by the admin path that makes them.
async fn audit_read(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<(), Response> {
    let mut event = AuditEvent::new(unix_now(), "client_registration_read", Decision::Issued);
    event.client_id = Some(client_id.to_string());
    event.request_id = super::request_id_for_audit(headers);
    state.tokens.audit.record(event).await.map_err(|failure| {
        tracing::error!(error = %failure, "writing the audit event failed");
        storage_failed()
    })
}

/// Takes a registration, or an update of one (`client_id`), through the per-address limit
/// (`registration.per_minute`): every one is a stored change, an audit event and a reload of
/// the trust configuration, and an update may hash a new secret with argon2id, so neither may
/// come in an endless stream.
async fn throttled(
    state: &AppState,
    limiter: &RegistrationLimiter,
    headers: &HeaderMap,
    peer: IpAddr,
    client_id: Option<&str>,
) -> Option<Response> {
    forget_refilled(&limiter.0, MAX_TRACKED_ADDRESSES);
    let not_until = limiter.0.check_key(&peer).err()?;
    let wait = not_until
        .wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ))
        .as_secs();
    let response = slow_down(
        "Too many registrations or updates from this address; retry later",
        wait,
    );
    Some(
        refuse(
            state,
            headers,
            client_id,
            "throttled",
            "slow_down",
            response,
        )
        .await,
    )
}

/// 429 `slow_down` with `Retry-After` (at least one second).
fn slow_down(description: &str, wait_secs: u64) -> Response {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        error_body("slow_down", description),
    );
    if let Ok(value) = HeaderValue::from_str(&wait_secs.max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// What the per-address limits count the connection's peer as (unspecified in embedded uses
/// without one): its address, or an IPv6 address's /64 (`forwarded::limit_key`).
fn peer_of(extensions: &http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| {
            super::forwarded::limit_key(info.0.ip())
        })
}

/// `GET /register/{client_id}` (RFC 7592 §2.1): the client's current registration.
async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (headers, managed) = match open_management(&state, &client_id, parts).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let document = match serde_json::to_value(&managed.client.config) {
        Ok(document) => document,
        Err(error) => {
            tracing::error!(%error, "serialising a client failed");
            return storage_failed();
        }
    };
    if let Err(response) = audit_read(&state, &headers, &client_id).await {
        return response;
    }
    json_response(
        StatusCode::OK,
        information(&state, &client_id, &document, None, &managed.token),
    )
}

/// Client metadata fields a client may send back in an update but that are the server's, not
/// its own (RFC 7592 §2.2): ignored.
const SERVER_FIELDS: [&str; 4] = [
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
];

/// `PUT /register/{client_id}` (RFC 7592 §2.2): replaces the client's metadata with the
/// request's, under the same rules as a registration.
async fn update(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<RegistrationLimiter>>,
    Path(client_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let peer = peer_of(&parts.extensions);
    if let Some(response) =
        throttled(&state, &limiter, &parts.headers, peer, Some(&client_id)).await
    {
        return response;
    }
    let (headers, managed) = match open_management(&state, &client_id, parts).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let body = axum::body::to_bytes(body, state.config.server.max_body_bytes)
        .await
        .unwrap_or_default();
    let request = match parse_metadata(&headers, &body) {
        Ok(request) => request,
        Err(error) => {
            let (reason, code, response) = invalid(error);
            return refuse(&state, &headers, Some(&client_id), reason, code, response).await;
        }
    };
    if let Err(error) = check_update_identity(&request, &client_id, &managed.client).await {
        let (reason, code, response) = invalid(error);
        return refuse(&state, &headers, Some(&client_id), reason, code, response).await;
    }
    let mut request = request;
    if let Some(map) = request.as_object_mut() {
        for field in SERVER_FIELDS.iter().chain(&["client_id", "client_secret"]) {
            map.remove(*field);
        }
    }
    let mut document = match client_document(&request, &state.config.registration) {
        Ok(document) => document,
        Err(error) => {
            let (reason, code, response) = invalid(error);
            return refuse(&state, &headers, Some(&client_id), reason, code, response).await;
        }
    };
    document["client_id"] = json!(client_id);
    // RFC 7592 §2.2: a field left out is deleted. The admin update path keeps stored grant
    // profiles the document does not mention (the admin form has no such field), so say
    // "none" explicitly.
    if document
        .get("authorization_grant_profiles_supported")
        .is_none()
    {
        document["authorization_grant_profiles_supported"] = json!([]);
    }
    let existing = match crate::admin::registered_client(&state, &client_id).await {
        Ok(existing) => existing,
        Err(_) => return gone(&state, &headers, &client_id).await,
    };
    match crate::admin::update_registered_client(&state, &existing, document).await {
        Ok((secret, stored)) => json_response(
            StatusCode::OK,
            information(
                &state,
                &client_id,
                &stored,
                secret.as_deref(),
                &managed.token,
            ),
        ),
        Err(crate::admin::RegisterError::Invalid(message)) => {
            let (reason, code, response) = invalid(RegistrationError {
                error: "invalid_client_metadata",
                reason: "client_invalid",
                description: message,
            });
            refuse(&state, &headers, Some(&client_id), reason, code, response).await
        }
        Err(crate::admin::RegisterError::NotFound) => gone(&state, &headers, &client_id).await,
        Err(crate::admin::RegisterError::Internal) => storage_failed(),
    }
}

/// The client was deleted between the token check and the change: as for an unknown client,
/// 401 (RFC 7592 §2).
async fn gone(state: &AppState, headers: &HeaderMap, client_id: &str) -> Response {
    let response = invalid_token("This client is no longer registered");
    refuse(
        state,
        headers,
        Some(client_id),
        "client_gone",
        "invalid_token",
        response,
    )
    .await
}

/// RFC 7592 §2.2: an update names the client it updates, and a `client_secret`, if sent, is the
/// client's current one (a client cannot choose its own secret).
async fn check_update_identity(
    request: &Value,
    client_id: &str,
    client: &crate::registry::Client,
) -> Result<(), RegistrationError> {
    if request.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(RegistrationError {
            error: "invalid_client_metadata",
            reason: "client_id_mismatch",
            description: "The update must carry this registration's client_id".into(),
        });
    }
    match request.get("client_secret") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(secret)) => {
            let matches = match client.config.secret_hash.clone() {
                Some(phc) => {
                    let secret = secret.clone();
                    crate::secret::argon2_checks()
                        .run(move || crate::secret::verify_secret(&secret, &phc))
                        .await
                        .unwrap_or(false)
                }
                None => false,
            };
            if matches {
                Ok(())
            } else {
                Err(RegistrationError {
                    error: "invalid_client_metadata",
                    reason: "client_secret_mismatch",
                    description:
                        "client_secret is not this client's current secret; leave it out to keep it"
                            .into(),
                })
            }
        }
        Some(_) => Err(RegistrationError {
            error: "invalid_client_metadata",
            reason: "metadata_not_string",
            description: "client_secret must be a string".into(),
        }),
    }
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): the client is removed, and every token it
/// was issued revoked with it.
async fn remove(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let headers = match open_management(&state, &client_id, parts).await {
        Ok((headers, _)) => headers,
        Err(response) => return response,
    };
    match crate::admin::delete_registered_client(&state, &client_id).await {
        Ok(()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(crate::admin::RegisterError::NotFound) => gone(&state, &headers, &client_id).await,
        Err(_) => storage_failed(),
    }
}

/// A registration error as the audit reason, the error code and the 400 response.
fn invalid(error: RegistrationError) -> (&'static str, &'static str, Response) {
    (
        error.reason,
        error.error,
        json_response(
            StatusCode::BAD_REQUEST,
            error_body(error.error, &error.description),
        ),
    )
}

/// The request body as a JSON object, or the RFC 7591 error for it.
fn parse_metadata(headers: &HeaderMap, body: &[u8]) -> Result<Value, RegistrationError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(RegistrationError {
            error: "invalid_client_metadata",
            reason: "wrong_content_type",
            description: "Send the client metadata as application/json".into(),
        });
    }
    serde_json::from_slice::<Value>(body).map_err(|_| RegistrationError {
        error: "invalid_client_metadata",
        reason: "body_not_json",
        description: "The body is not valid JSON".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use governor::state::keyed::DefaultKeyedStateStore;
    use std::time::Duration;

    #[test]
    fn the_limiter_forgets_refilled_addresses_once_it_tracks_the_most() {
        let clock = FakeRelativeClock::default();
        let limiter: RateLimiter<
            IpAddr,
            DefaultKeyedStateStore<IpAddr>,
            FakeRelativeClock,
            governor::middleware::NoOpMiddleware<_>,
        > = RateLimiter::new(
            Quota::per_minute(NonZeroU32::new(10).expect("non-zero")),
            DefaultKeyedStateStore::<IpAddr>::default(),
            clock.clone(),
        );
        for n in 0..4u8 {
            assert!(
                limiter
                    .check_key(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)))
                    .is_ok()
            );
        }
        clock.advance(Duration::from_secs(60));
        // Below the bound, nothing is forgotten (pruning is not free).
        forget_refilled(&limiter, 5);
        assert_eq!(limiter.len(), 4);
        // At it, the addresses whose allowance has refilled go; a recent one stays.
        assert!(
            limiter
                .check_key(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)))
                .is_ok()
        );
        forget_refilled(&limiter, 5);
        assert_eq!(limiter.len(), 1);
    }
}
