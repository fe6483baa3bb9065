//! The authorization endpoint (RFC 6749 §4.1 under OAuth 2.1 rules) and the browser side of the
//! authorization code flow:
//!
//! 1. `GET /authorize` checks the client, its exact redirect URI, PKCE S256, the resource
//!    (RFC 8707: a `[[resources]]` entry) and scopes, stores a pending request and sends the
//!    browser to the sign-in identity provider ([`rp`]), binding the request to the browser with
//!    a cookie.
//! 2. `GET /authorize/callback` validates the identity provider's answer (state, code, ID token
//!    with nonce and audience), applies that provider's `condition`, and shows the consent page
//!    (skipped for pre-approved clients).
//! 3. `POST /authorize/consent` (CSRF token bound to the pending request, checked in constant
//!    time) issues a code ([`codes`]) or refuses, redirecting with `state` and `iss` (RFC 9207).
//!
//! An unknown client or a redirect URI that is not registered is answered with an error page,
//! never a redirect. Every decision is audited.

pub mod codes;
pub mod rp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Form, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, PRAGMA, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::clock::unix_now;
use crate::http::AppState;
use crate::oauth::GrantType;
use crate::policy::PolicyInput;
use crate::registry::{Client, IdentityProvider, Registry};
use crate::store::{AuditEvent, AuthorizationRequest, CodeStore, Decision, TokenStore};

use self::codes::{constant_time_eq, hash_token, random_token, valid_challenge};
use self::rp::RelyingParty;

/// Content-Security-Policy of every page served here.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'";
const STYLESHEET: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1f2933}\
h1{font-size:1.4rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}dt{font-weight:600}\
dd{margin:0;word-break:break-all}form{display:inline-block;margin-right:.5rem}\
button{font-size:1rem;padding:.5rem 1.2rem;border-radius:4px;border:1px solid #52606d;background:#fff;cursor:pointer}\
button.primary{background:#1f5fbf;border-color:#1f5fbf;color:#fff}.error{color:#a61b1b}";

/// The routes of the authorization code flow.
pub fn router(state: &AppState) -> Router<AppState> {
    let federation = &state.config.federation;
    let rp = RelyingParty::new(
        Duration::from_secs(federation.http_timeout_secs),
        Duration::from_secs(federation.jwks_default_ttl_secs),
    );
    Router::new()
        .route("/authorize", get(authorize))
        .route("/authorize/callback", get(callback))
        .route("/authorize/consent", post(consent))
        .route("/authorize/style.css", get(stylesheet))
        .layer(Extension(Arc::new(rp)))
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · frontdesk</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"stylesheet\" href=\"/authorize/style.css\"></head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape_html(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

/// The error page shown when the browser cannot safely be sent back to the client.
fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization failed",
        &format!("<p class=\"error\">{}</p>", escape_html(message)),
    )
}

async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/css"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    if let Some(cookie) = cookie
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        headers.insert(SET_COOKIE, value);
    }
    secure_headers(headers);
    response
}

/// The browser-binding cookie of one pending request.
fn cookie_name(request_id: &str) -> String {
    format!("fd_authz_{}", request_id.get(..16).unwrap_or(request_id))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if state.config.issuer_is_loopback_http() {
        ""
    } else {
        "; Secure"
    };
    format!("{name}={value}; Path=/authorize; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn browser_matches(headers: &HeaderMap, request: &AuthorizationRequest) -> bool {
    cookie_value(headers, &cookie_name(&request.id))
        .is_some_and(|value| constant_time_eq(&hash_token(value), &request.browser_hash))
}

/// The redirect back to the client: `params` plus `state` and `iss` (RFC 9207).
fn client_redirect(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
    clear_cookie: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
        if let Some(client_state) = client_state {
            query.append_pair("state", client_state);
        }
        query.append_pair("iss", &state.config.issuer);
    }
    let cookie = clear_cookie.map(|name| set_cookie(state, name, "", 0));
    see_other(url.as_str(), cookie)
}

fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
    clear_cookie: Option<&str>,
) -> Response {
    client_redirect(
        state,
        redirect_uri,
        client_state,
        &[("error", error), ("error_description", description)],
        clear_cookie,
    )
}

/// Records `event`; a failed write turns the answer into a 500 page (nothing unaudited).
async fn audited(state: &AppState, event: AuditEvent, response: Response) -> Response {
    match state.tokens.audit.record(event).await {
        Ok(()) => response,
        Err(error) => {
            tracing::error!(%error, "writing the audit event failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server could not record this decision. Try again later.",
            )
        }
    }
}

fn denial(event: &str, reason: &str, error_code: &str) -> AuditEvent {
    let mut audit = AuditEvent::new(unix_now(), event, Decision::Denied);
    audit.reason = Some(reason.to_string());
    audit.error_code = Some(error_code.to_string());
    audit.grant_type = Some(crate::oauth::GRANT_AUTHORIZATION_CODE.to_string());
    audit
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(100).collect())
}

/// Query parameters, each at most once (RFC 6749 §3.1).
fn parse_query(raw: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if value.is_empty() {
            continue;
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(key.chars().take(40).collect());
        }
    }
    Ok(params)
}

fn sign_in_idp(state: &AppState, registry: &Registry) -> Option<Arc<IdentityProvider>> {
    let id = state.config.authorization.sign_in_idp.as_deref()?;
    registry
        .idp_by_id(id)
        .filter(|idp| idp.config.enabled)
        .cloned()
}

/// `GET /authorize`.
async fn authorize(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<RelyingParty>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = unix_now();
    let registry = state.tokens.trust.current();
    let mut audit = denial("authorize", "", "invalid_request");
    audit.request_id = request_id(&headers);
    if state.config.authorization.sign_in_idp.is_none() {
        return error_page(
            StatusCode::NOT_FOUND,
            "The authorization endpoint is not enabled on this server.",
        );
    }
    let params = match parse_query(query.as_deref()) {
        Ok(params) => params,
        Err(name) => {
            // Which redirect URI is meant is unknown when parameters repeat: no redirect.
            audit.reason = Some("repeated_parameter".into());
            return audited(
                &state,
                audit,
                error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("The parameter {name} appears more than once."),
                ),
            )
            .await;
        }
    };
    let get = |name: &str| params.get(name).map(String::as_str);
    // 1. The client and its redirect URI: errors here are never redirected (RFC 6749 §4.1.2.1).
    let found = match get("client_id") {
        Some(id) => {
            state
                .tokens
                .client_metadata
                .find_client(&registry, id)
                .await
        }
        None => Ok(None),
    };
    let (client, refused) = match found {
        Ok(client) => (client.filter(|client| client.config.enabled), None),
        Err(error) => (None, Some(error)),
    };
    let Some(client) = client else {
        if let Some(error) = refused {
            audit.reason = Some(error.reason.into());
            audit.error_code = Some("invalid_client".into());
            audit.client_id = get("client_id").map(|id| id.chars().take(200).collect());
            return audited(
                &state,
                audit,
                error_page(StatusCode::BAD_REQUEST, &error.description),
            )
            .await;
        }
        audit.reason = Some("unknown_client".into());
        audit.error_code = Some("invalid_client".into());
        audit.client_id = get("client_id").map(|id| id.chars().take(200).collect());
        return audited(
            &state,
            audit,
            error_page(StatusCode::BAD_REQUEST, "The client is not registered."),
        )
        .await;
    };
    audit.client_id = Some(client.config.client_id.clone());
    let Some(redirect_uri) = get("redirect_uri")
        .filter(|uri| client.config.redirect_uris.iter().any(|r| r == uri))
        .map(str::to_string)
    else {
        audit.reason = Some("redirect_uri_not_registered".into());
        return audited(
            &state,
            audit,
            error_page(
                StatusCode::BAD_REQUEST,
                "The redirect URI is missing or not registered for this client.",
            ),
        )
        .await;
    };
    // 2. Everything else is reported to the client at its (now known valid) redirect URI.
    let client_state = get("state").map(str::to_string);
    let refuse =
        |audit: AuditEvent, error: &'static str, reason: &'static str, text: &'static str| {
            let mut audit = audit;
            audit.error_code = Some(error.to_string());
            audit.reason = Some(reason.to_string());
            let response = error_redirect(
                &state,
                &redirect_uri,
                client_state.as_deref(),
                error,
                text,
                None,
            );
            audited(&state, audit, response)
        };
    if get("response_type") != Some("code") {
        return refuse(
            audit,
            "unsupported_response_type",
            "unsupported_response_type",
            "Only response_type=code is supported",
        )
        .await;
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return refuse(
            audit,
            "unauthorized_client",
            "grant_not_allowed",
            "The client is not allowed to use the authorization code grant",
        )
        .await;
    }
    let Some(code_challenge) = get("code_challenge") else {
        return refuse(
            audit,
            "invalid_request",
            "pkce_missing",
            "code_challenge is required (PKCE, S256)",
        )
        .await;
    };
    if get("code_challenge_method") != Some("S256") {
        return refuse(
            audit,
            "invalid_request",
            "pkce_method_not_s256",
            "code_challenge_method must be S256",
        )
        .await;
    }
    if !valid_challenge(code_challenge) {
        return refuse(
            audit,
            "invalid_request",
            "pkce_challenge_malformed",
            "code_challenge is not a base64url SHA-256 value",
        )
        .await;
    }
    let resource = match get("resource") {
        Some(resource) => registry.resource(resource).cloned(),
        None => registry.default_resource().cloned(),
    };
    audit.resources = get("resource")
        .map(|r| vec![r.to_string()])
        .unwrap_or_default();
    let Some(resource) = resource else {
        return refuse(
            audit,
            "invalid_target",
            "unknown_resource",
            "The resource is not protected by this server",
        )
        .await;
    };
    audit.resources = vec![resource.resource.clone()];
    let scopes = match crate::oauth::request::parse_scope(get("scope")) {
        Ok(scopes) => scopes,
        Err(_) => {
            return refuse(
                audit,
                "invalid_scope",
                "scope_malformed",
                "The scope is malformed",
            )
            .await;
        }
    };
    audit.scopes_requested = scopes.clone();
    let client_scopes = &client.config.scopes;
    if scopes.iter().any(|scope| {
        !resource.scopes.contains(scope)
            || (!client_scopes.is_empty() && !client_scopes.contains(scope))
    }) {
        return refuse(
            audit,
            "invalid_scope",
            "scope_not_allowed",
            "A requested scope is not available for this client and resource",
        )
        .await;
    }
    // 3. Send the browser to the sign-in identity provider.
    let (Some(idp), Some(rp_client_id)) = (
        sign_in_idp(&state, &registry),
        state.config.authorization.client_id.as_deref(),
    ) else {
        return refuse(
            audit,
            "temporarily_unavailable",
            "sign_in_idp_unavailable",
            "The sign-in identity provider is not available",
        )
        .await;
    };
    let id = random_token(32);
    let rp_state = random_token(32);
    let nonce = random_token(32);
    let binding = random_token(32);
    let callback = format!(
        "{}/authorize/callback",
        state.config.issuer.trim_end_matches('/')
    );
    let (url, verifier) = match rp
        .authorization_url(&idp, rp_client_id, &callback, &rp_state, &nonce)
        .await
    {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, idp = %idp.config.id, "cannot start the sign-in");
            return refuse(
                audit,
                "temporarily_unavailable",
                error.reason,
                "The sign-in identity provider is not available",
            )
            .await;
        }
    };
    let lifetime = state.config.authorization.request_lifetime_secs;
    let pending = AuthorizationRequest {
        id: id.clone(),
        rp_state,
        browser_hash: hash_token(&binding),
        csrf_token: random_token(32),
        nonce,
        rp_pkce_verifier: verifier.expose().to_string(),
        client_id: client.config.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: client_state.clone(),
        code_challenge: code_challenge.to_string(),
        resource: resource.resource.clone(),
        scopes,
        status: "login".into(),
        subject: None,
        subject_issuer: None,
        email: None,
        auth_time: None,
        created_at: now,
        expires_at: now + i64::try_from(lifetime).unwrap_or(600),
    };
    if let Err(error) = state.store.create_authorization_request(&pending).await {
        tracing::error!(%error, "storing the authorization request failed");
        return refuse(
            audit,
            "server_error",
            "storage_failed",
            "The request could not be stored",
        )
        .await;
    }
    see_other(
        &url,
        Some(set_cookie(&state, &cookie_name(&id), &binding, lifetime)),
    )
}

/// `GET /authorize/callback`: the sign-in identity provider's answer.
async fn callback(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<RelyingParty>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = unix_now();
    let registry = state.tokens.trust.current();
    let mut audit = denial("authorize_callback", "", "access_denied");
    audit.request_id = request_id(&headers);
    let params = parse_query(query.as_deref()).unwrap_or_default();
    let get = |name: &str| params.get(name).map(String::as_str);
    let pending = match get("state") {
        Some(rp_state) => {
            state
                .store
                .authorization_request_by_rp_state(rp_state)
                .await
        }
        None => Ok(None),
    };
    let pending = match pending {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            audit.reason = Some("rp_state_unknown".into());
            return audited(
                &state,
                audit,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in does not belong to a pending authorization request.",
                ),
            )
            .await;
        }
        Err(error) => {
            tracing::error!(%error, "loading the authorization request failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    };
    audit.client_id = Some(pending.client_id.clone());
    audit.resources = vec![pending.resource.clone()];
    audit.scopes_requested = pending.scopes.clone();
    let cookie = cookie_name(&pending.id);
    if !browser_matches(&headers, &pending) {
        audit.reason = Some("browser_mismatch".into());
        return audited(
            &state,
            audit,
            error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in was started in another browser.",
            ),
        )
        .await;
    }
    match state
        .store
        .advance_authorization_request(&pending.id, "login", "signing_in", now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            audit.reason = Some("request_expired_or_used".into());
            return audited(
                &state,
                audit,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "This authorization request has expired or was already used.",
                ),
            )
            .await;
        }
        Err(error) => {
            tracing::error!(%error, "updating the authorization request failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    }
    let fail = |audit: AuditEvent, reason: &'static str| {
        let mut audit = audit;
        audit.reason = Some(reason.to_string());
        let response = error_redirect(
            &state,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "access_denied",
            "The user could not be signed in",
            Some(&cookie),
        );
        audited(&state, audit, response)
    };
    if get("error").is_some() {
        return fail(audit, "idp_returned_error").await;
    }
    let (Some(code), Some(idp), Some(client_id), Some(secret)) = (
        get("code"),
        sign_in_idp(&state, &registry),
        state.config.authorization.client_id.as_deref(),
        state.config.authorization.client_secret.as_ref(),
    ) else {
        return fail(audit, "idp_code_missing").await;
    };
    audit.subject_issuer = Some(idp.config.issuer.clone());
    let callback = format!(
        "{}/authorize/callback",
        state.config.issuer.trim_end_matches('/')
    );
    let signed_in = match rp
        .finish(
            &idp,
            client_id,
            secret,
            &callback,
            code,
            &pending.rp_pkce_verifier,
            &pending.nonce,
        )
        .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => {
            // A token for another audience, a wrong nonce or a bad signature: an attack or a
            // misconfiguration, never redirected with a code; the page says nothing more.
            tracing::warn!(%error, idp = %idp.config.id, "sign-in failed");
            audit.reason = Some(error.reason.to_string());
            return audited(
                &state,
                audit,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "Signing in at the identity provider failed.",
                ),
            )
            .await;
        }
    };
    audit.subject = Some(signed_in.subject.clone());
    let input = PolicyInput {
        subject: signed_in.claims.clone(),
        actor: None,
        client: json!({ "id": pending.client_id, "auth_method": "authorization_code" }),
        request: json!({
            "grant_type": crate::oauth::GRANT_AUTHORIZATION_CODE,
            "resources": [pending.resource],
            "scopes": pending.scopes,
        }),
    };
    let prepared = input.prepare();
    match prepared.allows(idp.condition.as_ref()) {
        crate::policy::Decision::Allow => {}
        crate::policy::Decision::Deny => return fail(audit, "idp_condition_denied").await,
        crate::policy::Decision::Error(message) => {
            tracing::warn!(idp = %idp.config.id, %message, "identity provider condition failed; denying");
            return fail(audit, "idp_condition_error").await;
        }
    }
    let subject = match resolve_subject(&state, &idp, &signed_in.claims, &signed_in.subject).await {
        Ok(Some(subject)) => subject,
        Ok(None) => return fail(audit, "subject_unmapped").await,
        Err(()) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    };
    audit.subject = Some(subject.clone());
    match state
        .store
        .complete_sign_in(
            &pending.id,
            &subject,
            &idp.config.issuer,
            signed_in.email.as_deref(),
            signed_in.auth_time,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return fail(audit, "request_expired_or_used").await,
        Err(error) => {
            tracing::error!(%error, "updating the authorization request failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    }
    let mut pending = pending;
    pending.subject = Some(subject);
    pending.subject_issuer = Some(idp.config.issuer.clone());
    pending.email = signed_in.email;
    pending.auth_time = signed_in.auth_time;
    let pre_approved = state
        .config
        .authorization
        .pre_approved_clients
        .contains(&pending.client_id);
    if pre_approved {
        return approve(&state, pending, audit, "pre_approved").await;
    }
    // The sign-in itself is a decision: audit it, then ask for consent.
    audit.decision = Decision::Changed;
    audit.error_code = None;
    audit.reason = Some("signed_in_awaiting_consent".into());
    let client = state
        .tokens
        .client_metadata
        .find_client(&registry, &pending.client_id)
        .await
        .ok()
        .flatten();
    let response = consent_page(&pending, client.as_deref());
    audited(&state, audit, response).await
}

async fn resolve_subject(
    state: &AppState,
    idp: &IdentityProvider,
    claims: &Value,
    sub: &str,
) -> Result<Option<String>, ()> {
    match idp.config.subject_mode.as_str() {
        "mapped" => {
            let Some(mapping) = &idp.subject_mapping else {
                return Ok(None);
            };
            let input = PolicyInput {
                subject: claims.clone(),
                ..PolicyInput::default()
            };
            Ok(input
                .prepare()
                .string(mapping)
                .ok()
                .flatten()
                .filter(|subject| !subject.is_empty()))
        }
        "linked" => state
            .store
            .linked_subject(&idp.config.issuer, sub)
            .await
            .map_err(|error| tracing::error!(%error, "subject link lookup failed")),
        _ => Ok(Some(sub.to_string())),
    }
}

fn consent_page(pending: &AuthorizationRequest, client: Option<&Client>) -> Response {
    let client_id = client.map_or(pending.client_id.clone(), Client::display_name);
    let client_id = client_id.as_str();
    let scopes = if pending.scopes.is_empty() {
        "<em>none</em>".to_string()
    } else {
        pending
            .scopes
            .iter()
            .map(|scope| format!("<code>{}</code>", escape_html(scope)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let user = pending
        .email
        .as_deref()
        .or(pending.subject.as_deref())
        .unwrap_or("");
    let form = |decision: &str, label: &str, class: &str| {
        format!(
            "<form method=\"post\" action=\"/authorize/consent\">\
<input type=\"hidden\" name=\"request_id\" value=\"{id}\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"decision\" value=\"{decision}\">\
<button type=\"submit\" class=\"{class}\">{label}</button></form>",
            id = escape_html(&pending.id),
            csrf = escape_html(&pending.csrf_token),
        )
    };
    let body = format!(
        "<p>The application <strong>{client}</strong> asks to act on your behalf.</p>\n\
<dl><dt>Signed in as</dt><dd>{user}</dd><dt>Application</dt><dd>{client}</dd>\
<dt>Resource</dt><dd><code>{resource}</code></dd><dt>Scopes</dt><dd>{scopes}</dd>\
<dt>Returns to</dt><dd><code>{redirect}</code></dd></dl>\n{approve}{deny}",
        client = escape_html(client_id),
        user = escape_html(user),
        resource = escape_html(&pending.resource),
        redirect = escape_html(&pending.redirect_uri),
        approve = form("approve", "Approve", "primary"),
        deny = form("deny", "Deny", ""),
    );
    page(StatusCode::OK, "Authorize access", &body)
}

/// The consent form.
#[derive(Debug, serde::Deserialize)]
struct ConsentForm {
    request_id: String,
    csrf_token: String,
    decision: String,
}

/// `POST /authorize/consent`.
async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let now = unix_now();
    let mut audit = denial("authorize_consent", "", "access_denied");
    audit.request_id = request_id(&headers);
    let pending = match state.store.authorization_request(&form.request_id).await {
        Ok(pending) => pending,
        Err(error) => {
            tracing::error!(%error, "loading the authorization request failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    };
    // The CSRF token is bound to the pending request and the request to this browser.
    let Some(pending) = pending.filter(|pending| {
        constant_time_eq(&form.csrf_token, &pending.csrf_token)
            && browser_matches(&headers, pending)
    }) else {
        audit.reason = Some("csrf_mismatch".into());
        return audited(
            &state,
            audit,
            error_page(
                StatusCode::FORBIDDEN,
                "This form is not valid for this browser. Start again from the application.",
            ),
        )
        .await;
    };
    audit.client_id = Some(pending.client_id.clone());
    audit.subject = pending.subject.clone();
    audit.subject_issuer = pending.subject_issuer.clone();
    audit.resources = vec![pending.resource.clone()];
    audit.scopes_requested = pending.scopes.clone();
    match form.decision.as_str() {
        "approve" => approve(&state, pending, audit, "user_approved").await,
        _ => {
            let claimed = state
                .store
                .advance_authorization_request(&pending.id, "consent", "done", now)
                .await;
            if !matches!(claimed, Ok(true)) {
                audit.reason = Some("request_expired_or_used".into());
                return audited(
                    &state,
                    audit,
                    error_page(
                        StatusCode::BAD_REQUEST,
                        "This authorization request has expired or was already decided.",
                    ),
                )
                .await;
            }
            audit.reason = Some("user_denied".into());
            let response = error_redirect(
                &state,
                &pending.redirect_uri,
                pending.state.as_deref(),
                "access_denied",
                "The user denied the request",
                Some(&cookie_name(&pending.id)),
            );
            audited(&state, audit, response).await
        }
    }
}

/// Issues a code for a signed-in request in `consent` state and redirects to the client.
async fn approve(
    state: &AppState,
    pending: AuthorizationRequest,
    mut audit: AuditEvent,
    how: &str,
) -> Response {
    let now = unix_now();
    match state
        .store
        .advance_authorization_request(&pending.id, "consent", "done", now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            audit.reason = Some("request_expired_or_used".into());
            return audited(
                state,
                audit,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "This authorization request has expired or was already decided.",
                ),
            )
            .await;
        }
        Err(error) => {
            tracing::error!(%error, "updating the authorization request failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    }
    let lifetime = state.config.authorization.code_lifetime_secs;
    let (code, family_id) = match codes::issue_code(&state.store, &pending, lifetime, now).await {
        Ok(issued) => issued,
        Err(error) => {
            tracing::error!(%error, "storing the authorization code failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later.");
        }
    };
    audit.decision = Decision::Issued;
    audit.error_code = None;
    audit.reason = Some(how.to_string());
    audit.scopes_granted = pending.scopes.clone();
    audit.audience = Some(pending.resource.clone());
    audit.detail = Some(json!({ "family_id": family_id, "issued": "authorization_code" }));
    let response = client_redirect(
        state,
        &pending.redirect_uri,
        pending.state.as_deref(),
        &[("code", &code)],
        Some(&cookie_name(&pending.id)),
    );
    audited(state, audit, response).await
}
