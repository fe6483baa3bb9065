//! The admin JSON API under `/admin/api/v1` (docs/admin-api.md, OpenAPI document at
//! `/admin/api/v1/openapi.json`): the same operations as the admin page, through the same
//! shared functions of [`super::trust`], [`super::keys`] and [`super::audit`], so both run the
//! same validation and the same audited store calls.
//!
//! Authentication is a bearer API token (`fd_…`, stored only as SHA-256) with a role; there
//! are no cookies, so no CSRF. A request carrying the admin session cookie but no bearer token
//! is refused, so a browser session cannot drive the API cross-site. Every change is audited
//! with actor `api:<token name>`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::auth::{random_token, sha256};
use super::cookie::has_any_session_cookie;
use super::trust::{ChangeError, Kind};
use super::views::AdminError;
use crate::http::AppState;
use crate::store::{
    AdminRole, AdminStore, ApiTokenRecord, AuditDetail, AuditEvent, AuditLog, Decision,
    RevocationScope, Store, StoreError, TokenStore, TrustDocument, TrustStore,
};

mod openapi;
pub(super) mod page;

pub use openapi::document as openapi_document;

/// Prefix of every API token, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "fd_";
/// Default and largest page size of `GET /audit-events`.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// An error answered as JSON: `{"error": code, "message": …, "field"?: …}`.
#[derive(Debug)]
pub enum ApiError {
    /// 401 with `WWW-Authenticate: Bearer`.
    Unauthorized(String),
    /// 403.
    Forbidden(String),
    /// 404.
    NotFound,
    /// 409: config-managed object or id taken.
    Conflict(&'static str, String, Option<String>),
    /// 422 naming the field.
    Invalid(String, String),
    /// 400.
    BadRequest(String),
    /// 429: too many failed authentications from this address.
    TooManyAttempts,
    /// 500 (detail logged, not shown).
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Invalid(errors) => {
                let (field, message) = errors.into_iter().next().unwrap_or_default();
                ApiError::Invalid(field, message)
            }
            ChangeError::Conflict(field, message) => {
                ApiError::Conflict("conflict", message, Some(field))
            }
            ChangeError::NotFound => ApiError::NotFound,
            ChangeError::Managed(message) => ApiError::Conflict("config_managed", message, None),
            ChangeError::NotApplicable(message) => ApiError::BadRequest(message),
            ChangeError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound => ApiError::NotFound,
            AdminError::BadRequest(message) => ApiError::BadRequest(message),
            AdminError::Forbidden(message) => ApiError::Forbidden(message),
            other => ApiError::Internal(format!("{other:?}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthorized(message) => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({ "error": "unauthorized", "message": message })),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"frontdesk-admin\""),
                );
                return response;
            }
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                json!({ "error": "forbidden", "message": message }),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({ "error": "not_found", "message": "There is nothing here." }),
            ),
            ApiError::Conflict(code, message, field) => {
                let mut body = json!({ "error": code, "message": message });
                if let Some(field) = field {
                    body["field"] = Value::String(field);
                }
                (StatusCode::CONFLICT, body)
            }
            ApiError::Invalid(field, message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": "invalid", "field": field, "message": message }),
            ),
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad_request", "message": message }),
            ),
            ApiError::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": "too_many_attempts", "message": "Too many requests with an invalid API token from your address. Wait a few minutes and try again." }),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal", "message": "Something went wrong; the details are in the server log." }),
                )
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// Token name.
    pub name: String,
    /// Token role.
    pub role: AdminRole,
}

impl ApiCaller {
    /// The audit actor: `api:<token name>`.
    pub fn actor(&self) -> String {
        format!("api:{}", self.name)
    }

    fn authorize_change(&self) -> Result<(), ApiError> {
        if self.role == AdminRole::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "This token's role is auditor: it can read everything but change nothing.".into(),
            ))
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            if has_any_session_cookie(&parts.headers) {
                return Err(ApiError::Unauthorized(
                    "The admin API does not accept the admin page's session cookie: send an API token as `Authorization: Bearer fd_…`.".into(),
                ));
            }
            return Err(ApiError::Unauthorized(
                "Send an API token as `Authorization: Bearer fd_…`.".into(),
            ));
        };
        // Looked up by SHA-256: no comparison of the secret itself, so no timing leak.
        let id_hash = sha256(token);
        let now = super::now_of(state);
        let record = if token.starts_with(TOKEN_PREFIX) {
            state.store.api_token(&id_hash).await?
        } else {
            None
        };
        let reason = match &record {
            None if !token.starts_with(TOKEN_PREFIX) => Some("api_token_malformed"),
            None => Some("api_token_unknown"),
            Some(record) if record.expires_at.is_some_and(|expires| now >= expires) => {
                Some("api_token_expired")
            }
            Some(_) => None,
        };
        let (Some(record), None) = (record, reason) else {
            return Err(refuse(state, parts, reason.unwrap_or("api_token_unknown"), now).await);
        };
        // Record use at most every few seconds, not on every request.
        if record.last_used_at.is_none_or(|last| now - last >= 10) {
            state.store.touch_api_token(&id_hash, now).await?;
        }
        Ok(ApiCaller {
            name: record.name,
            role: record.role,
        })
    }
}

/// Refuses a request whose bearer token is not a valid API token. A valid token always works
/// (the check comes first), so a shared address cannot be locked out of the API by someone
/// else's failures; invalid ones are audited (`admin_api_auth`, denied, with the reason and the
/// address, never the token) until the address has failed too often, then answered 429 without
/// touching the audit log, so a scanner cannot flood it.
async fn refuse(state: &AppState, parts: &Parts, reason: &str, now: i64) -> ApiError {
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |info| info.0.ip().to_string());
    if state.admin.limiter.blocked(API_LIMIT_KEY, &ip, now) {
        return ApiError::TooManyAttempts;
    }
    state.admin.limiter.fail(API_LIMIT_KEY, &ip, now);
    let mut event = AuditEvent::new(now, "admin_api_auth", Decision::Denied);
    event.reason = Some(reason.to_string());
    event.detail = Some(AuditDetail::of(&json!({ "ip": ip })));
    if let Err(error) = state.store.record(&event).await {
        return ApiError::Internal(error.to_string());
    }
    ApiError::Unauthorized("The API token is unknown, revoked or expired.".into())
}

/// The failed-attempt counter's "user" for API tokens (no username: counted per address).
const API_LIMIT_KEY: &str = "\u{0}api-token";

/// Why an API token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTokenError {
    /// Bad name or expiry, or the name is taken.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Store(StoreError),
}

/// Checks an API token name: 1-64 of letters, digits, `-_.@`.
pub fn check_token_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err("The token name must be 1-64 letters, digits, - _ . or @.".into());
    }
    Ok(())
}

/// Creates an API token and audits it in the same transaction; returns the token, which is
/// shown once (only its SHA-256 is stored). Used by `frontdesk admin create-token` and the
/// admin page.
pub async fn create_token(
    store: &Store,
    name: &str,
    role: AdminRole,
    expires_at: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<String, CreateTokenError> {
    check_token_name(name).map_err(CreateTokenError::Invalid)?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(CreateTokenError::Invalid(
            "The expiry must be in the future.".into(),
        ));
    }
    let token = format!("{TOKEN_PREFIX}{}", random_token());
    let record = ApiTokenRecord {
        id_hash: sha256(&token),
        name: name.to_string(),
        role,
        created_at: now,
        last_used_at: None,
        expires_at,
    };
    let mut event = AuditEvent::new(now, "api_token_created", Decision::Changed);
    event.detail = Some(AuditDetail::of(&json!({
        "actor": actor,
        "id": name,
        "before": null,
        "after": { "name": name, "role": role.as_str(), "expires_at": expires_at },
    })));
    match store.create_api_token(&record, &event).await {
        Ok(()) => Ok(token),
        Err(StoreError::Conflict) => Err(CreateTokenError::Invalid(format!(
            "an API token named {name} already exists"
        ))),
        Err(error) => Err(CreateTokenError::Store(error)),
    }
}

/// Revokes (deletes) the API token `name` and audits it; false if there is none.
pub async fn revoke_token(
    store: &Store,
    name: &str,
    actor: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut event = AuditEvent::new(now, "api_token_revoked", Decision::Changed);
    event.detail = Some(AuditDetail::of(&json!({
        "actor": actor,
        "id": name,
        "before": { "name": name },
        "after": null,
    })));
    store.revoke_api_token(name, &event).await
}

/// A stored object as the API shows it: the config-file document without the secret hash,
/// plus the read-only `managed_by_config` and `updated_at`.
fn present(document: &TrustDocument) -> Value {
    let mut value = document.document.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("secret_hash");
        map.remove("registration_access_token_hash");
        map.insert(
            "managed_by_config".into(),
            Value::Bool(document.managed_by_config),
        );
        map.insert("updated_at".into(), Value::from(document.updated_at));
    }
    value
}

/// Parses a request body as a JSON object and drops the read-only fields.
fn document_of(body: &Bytes) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("The body is not JSON: {error}")))?;
    let Some(map) = value.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "The body must be a JSON object.".into(),
        ));
    };
    for read_only in [
        "managed_by_config",
        "updated_at",
        "secret_hash",
        "registration_access_token_hash",
    ] {
        map.remove(read_only);
    }
    Ok(value)
}

async fn find(state: &AppState, kind: Kind, id: &str) -> Result<TrustDocument, ApiError> {
    Ok(super::trust::find(state, kind, id)
        .await
        .map_err(ChangeError::from)?)
}

async fn list(state: AppState, _caller: ApiCaller, kind: Kind) -> Result<Response, ApiError> {
    let items: Vec<Value> = state
        .store
        .list_trust(kind.trust())
        .await?
        .iter()
        .map(present)
        .collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn get_one(
    state: AppState,
    _caller: ApiCaller,
    kind: Kind,
    id: String,
) -> Result<Response, ApiError> {
    Ok(axum::Json(present(&find(&state, kind, &id).await?)).into_response())
}

fn with_secret(mut value: Value, secret: Option<String>) -> Value {
    if let Some(secret) = secret {
        value["client_secret"] = Value::String(secret);
    }
    value
}

async fn create(
    state: AppState,
    caller: ApiCaller,
    kind: Kind,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    let document = document_of(&body)?;
    // Only `POST /register` and client metadata documents make clients with a `source`; the
    // configuration file refuses it as well.
    if kind == Kind::Client && document.get("source").is_some() {
        return Err(ApiError::Invalid(
            "source".into(),
            "set only for self-registered and metadata-document clients".into(),
        ));
    }
    let id = document[kind.id_field()].as_str().unwrap_or("").to_string();
    let secret = super::trust::create_object(&state, &caller.actor(), kind, document).await?;
    let stored = find(&state, kind, &id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(with_secret(present(&stored), secret)),
    )
        .into_response())
}

async fn update(
    state: AppState,
    caller: ApiCaller,
    kind: Kind,
    id: String,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    let existing = super::trust::editable(&state, kind, &id).await?;
    let document = document_of(&body)?;
    if let Some(given) = document[kind.id_field()].as_str()
        && given != id
    {
        return Err(ApiError::Invalid(
            kind.id_field().into(),
            "the id cannot change: it must match the URL (or be left out)".into(),
        ));
    }
    let secret =
        super::trust::update_object(&state, &caller.actor(), kind, &existing, document).await?;
    let stored = find(&state, kind, &id).await?;
    Ok(axum::Json(with_secret(present(&stored), secret)).into_response())
}

async fn delete(
    state: AppState,
    caller: ApiCaller,
    kind: Kind,
    id: String,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    super::trust::delete_object(&state, &caller.actor(), kind, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Read-only (it changes nothing), so auditors may use it, as on the page.
async fn test_connection(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, test) = super::trust::test_identity_provider(&state, &id).await?;
    let keys: Vec<Value> = test
        .keys
        .iter()
        .map(|(kid, alg, kty)| json!({ "kid": kid, "alg": alg, "kty": kty }))
        .collect();
    Ok(axum::Json(json!({ "ok": test.ok, "lines": test.lines, "keys": keys })).into_response())
}

async fn rotate_secret(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    let secret = super::trust::rotate_client_secret(&state, &caller.actor(), &id).await?;
    Ok(axum::Json(json!({ "client_id": id, "client_secret": secret })).into_response())
}

async fn keys_list(
    State(state): State<AppState>,
    _caller: ApiCaller,
) -> Result<Response, ApiError> {
    let keys: Vec<Value> = crate::keys::KeyRing::list(&state.store)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .into_iter()
        .map(|key| {
            json!({
                "kid": key.kid,
                "algorithm": key.algorithm,
                "state": key.state,
                "created_at": key.created_at,
                "activate_at": key.activate_at,
                "activated_at": key.activated_at,
                "retired_at": key.retired_at,
                "publish_until": key.publish_until,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "promote_after_secs": state.config.keys.promote_after_secs,
        "items": keys,
    }))
    .into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    now: bool,
}

async fn keys_rotate(
    State(state): State<AppState>,
    caller: ApiCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::Invalid("now".into(), format!("expected {{\"now\": bool}}: {error}"))
        })?
    };
    let kid = super::keys::rotate_key(&state, &caller.actor(), body.now).await?;
    let state_name = if body.now { "active" } else { "next" };
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "kid": kid, "state": state_name })),
    )
        .into_response())
}

async fn keys_retire(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(kid): Path<String>,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    super::keys::retire_key(&state, &caller.actor(), &kid).await?;
    Ok(axum::Json(json!({ "kid": kid, "state": "retired" })).into_response())
}

/// `POST /admin/api/v1/revocations` with `{"subject": "…"}` or `{"client_id": "…"}`: `frontdesk
/// subject revoke` / `frontdesk client revoke-tokens` over HTTP — every live access token,
/// refresh token and unredeemed code of one user or one client, revoked in one audited
/// transaction (admin role). For the incident where a user's device or session, or an agent, is
/// compromised: what frontdesk issued stops working at introspection, refresh and the status list
/// at once, and the client keeps its registration.
async fn revocations(
    State(state): State<AppState>,
    caller: ApiCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authorize_change()?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Revocation {
        subject: Option<String>,
        client_id: Option<String>,
        issuer: Option<String>,
    }
    let expected =
        "expected one of {\"subject\": \"…\"}, {\"client_id\": \"…\"}, {\"issuer\": \"…\"}";
    let request: Revocation = serde_json::from_slice(&body)
        .map_err(|error| ApiError::Invalid("subject".into(), format!("{expected}: {error}")))?;
    let (field, scope) = match (&request.subject, &request.client_id, &request.issuer) {
        (Some(subject), None, None) => ("subject", RevocationScope::Subject(subject)),
        (None, Some(client_id), None) => ("client_id", RevocationScope::Client(client_id)),
        (None, None, Some(issuer)) => ("issuer", RevocationScope::Issuer(issuer)),
        _ => {
            return Err(ApiError::Invalid(
                "subject".into(),
                format!("{expected}: exactly one member"),
            ));
        }
    };
    let value = scope.value();
    if value.is_empty() || value.len() > 2048 {
        return Err(ApiError::Invalid(
            field.into(),
            "must be 1 to 2048 bytes".into(),
        ));
    }
    let now = crate::clock::unix_now();
    let event = crate::oauth::introspection::revocation_event(scope, &caller.actor(), now);
    let revoked = state.store.revoke_tokens(scope, now, event).await?;
    Ok(axum::Json(json!({
        field: value,
        "access_tokens": revoked.access_tokens,
        "refresh_tokens": revoked.refresh_tokens,
        "authorization_codes": revoked.authorization_codes,
    }))
    .into_response())
}

/// `POST /admin/api/v1/policy/eval`: `frontdesk policy eval` over HTTP — the decision a token
/// exchange would reach for a subject given as claims, with the trust this instance runs now.
/// Any role: it reads trust and changes nothing (nothing is signed or recorded). A denial is
/// an answer, not an error: 200 with `decision: denied`.
async fn policy_eval(
    State(state): State<AppState>,
    _caller: ApiCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let question: crate::oauth::exchange::PolicyQuestion =
        serde_json::from_slice(&body).map_err(|error| {
            let field = if error.is_data() { "body" } else { "json" };
            ApiError::Invalid(field.into(), format!("not a policy question: {error}"))
        })?;
    let registry = state.tokens.trust.current();
    let explanation = crate::oauth::exchange::explain(
        &state.config,
        &registry,
        &question,
        crate::clock::unix_now(),
    );
    Ok(axum::Json(explanation).into_response())
}

async fn audit_events(
    State(state): State<AppState>,
    _caller: ApiCaller,
    Query(query): Query<super::audit::AuditQuery>,
) -> Result<Response, ApiError> {
    let mut filter = query.filter()?;
    let limit = match query.limit.trim() {
        "" => DEFAULT_LIMIT,
        text => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::Invalid("limit".into(), format!("must be 1-{MAX_LIMIT}")))?,
    };
    filter.limit = Some(limit);
    let records = state.store.audit_events(&filter).await?;
    let next = (records.len() == limit as usize)
        .then(|| records.last().map(|record| record.id))
        .flatten();
    Ok(axum::Json(json!({ "items": records, "next_before_id": next })).into_response())
}

async fn openapi(State(state): State<AppState>) -> Response {
    axum::Json(openapi::document(state.config.issuer_path())).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

macro_rules! kind_routes {
    ($router:expr, $kind:expr) => {{
        let kind: Kind = $kind;
        let base = format!("/admin/api/v1/{}", kind.path());
        $router
            .route(
                documented(&base),
                get(move |State(state): State<AppState>, caller: ApiCaller| {
                    list(state, caller, kind)
                })
                .post(
                    move |State(state): State<AppState>, caller: ApiCaller, body: Bytes| {
                        create(state, caller, kind, body)
                    },
                ),
            )
            .route(
                documented(&format!("{base}/{{id}}")),
                get(
                    move |State(state): State<AppState>,
                          caller: ApiCaller,
                          Path(id): Path<String>| {
                        get_one(state, caller, kind, id)
                    },
                )
                .put(
                    move |State(state): State<AppState>,
                          caller: ApiCaller,
                          Path(id): Path<String>,
                          body: Bytes| update(state, caller, kind, id, body),
                )
                .delete(
                    move |State(state): State<AppState>,
                          caller: ApiCaller,
                          Path(id): Path<String>| {
                        delete(state, caller, kind, id)
                    },
                ),
            )
    }};
}

/// Every route goes through this: a path missing from [`ROUTES`] (and so, by the test, from
/// the OpenAPI document) panics when the router is built, which every test does.
fn documented(path: &str) -> &str {
    assert!(
        ROUTES.iter().any(|(_, listed)| *listed == path),
        "admin API route {path} is not in ROUTES / the OpenAPI document"
    );
    path
}

/// Gives axum's bare `405 Method Not Allowed` (a known path, another method) the API's JSON
/// error shape; the `Allow` header is kept.
async fn json_method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut json = (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({
            "error": "method_not_allowed",
            "message": "This path does not accept this method; the Allow header lists those it does."
        })),
    )
        .into_response();
    if let Some(allow) = allow {
        json.headers_mut().insert(header::ALLOW, allow);
    }
    json
}

/// The `/admin/api/v1` routes (merged into the admin router).
pub fn routes() -> Router<AppState> {
    let router = Router::new();
    let router = kind_routes!(router, Kind::Idp);
    let router = kind_routes!(router, Kind::Audience);
    let router = kind_routes!(router, Kind::Client);
    router
        .route(
            documented("/admin/api/v1/identity-providers/{id}/test-connection"),
            post(test_connection),
        )
        .route(
            documented("/admin/api/v1/clients/{id}/rotate-secret"),
            post(rotate_secret),
        )
        .route(documented("/admin/api/v1/keys"), get(keys_list))
        .route(documented("/admin/api/v1/keys/rotate"), post(keys_rotate))
        .route(
            documented("/admin/api/v1/keys/{kid}/retire"),
            post(keys_retire),
        )
        .route(documented("/admin/api/v1/audit-events"), get(audit_events))
        .route(documented("/admin/api/v1/policy/eval"), post(policy_eval))
        .route(documented("/admin/api/v1/revocations"), post(revocations))
        .route(documented("/admin/api/v1/openapi.json"), get(openapi))
        .route(
            "/admin/api/v1/{*rest}",
            get(not_found)
                .post(not_found)
                .put(not_found)
                .delete(not_found),
        )
        .layer(axum::middleware::map_response(json_method_not_allowed))
}

/// Every `(method, path)` the API serves, in OpenAPI path syntax; the test checks that each
/// appears in the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/admin/api/v1/identity-providers"),
    ("post", "/admin/api/v1/identity-providers"),
    ("get", "/admin/api/v1/identity-providers/{id}"),
    ("put", "/admin/api/v1/identity-providers/{id}"),
    ("delete", "/admin/api/v1/identity-providers/{id}"),
    (
        "post",
        "/admin/api/v1/identity-providers/{id}/test-connection",
    ),
    ("get", "/admin/api/v1/audiences"),
    ("post", "/admin/api/v1/audiences"),
    ("get", "/admin/api/v1/audiences/{id}"),
    ("put", "/admin/api/v1/audiences/{id}"),
    ("delete", "/admin/api/v1/audiences/{id}"),
    ("get", "/admin/api/v1/clients"),
    ("post", "/admin/api/v1/clients"),
    ("get", "/admin/api/v1/clients/{id}"),
    ("put", "/admin/api/v1/clients/{id}"),
    ("delete", "/admin/api/v1/clients/{id}"),
    ("post", "/admin/api/v1/clients/{id}/rotate-secret"),
    ("get", "/admin/api/v1/keys"),
    ("post", "/admin/api/v1/keys/rotate"),
    ("post", "/admin/api/v1/keys/{kid}/retire"),
    ("get", "/admin/api/v1/audit-events"),
    ("post", "/admin/api/v1/policy/eval"),
    ("post", "/admin/api/v1/revocations"),
    ("get", "/admin/api/v1/openapi.json"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_listed_for_the_openapi_document() {
        // `documented` panics on an unlisted path.
        let _ = super::routes();
        let document = super::openapi::document("");
        for (method, path) in super::ROUTES {
            assert!(
                document["paths"][path][method].is_object(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
    }
}
