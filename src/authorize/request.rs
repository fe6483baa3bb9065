//! `GET /authorize`: the authorization request (RFC 6749 §4.1.1 under OAuth 2.1 rules). The
//! client and its redirect URI are checked first, and errors about them are shown in the browser,
//! never redirected (RFC 6749 §4.1.2.1). Everything else is checked against the now-trusted
//! redirect URI and reported there. A valid request is stored, bound to the browser, and the
//! browser is sent to the sign-in identity provider.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use crate::admin::auth::ClientIp;
use crate::clock::unix_now;
use crate::http::AppState;
use crate::oauth::GrantType;
use crate::registry::{Client, Registry};
use crate::store::{AuditEvent, AuthorizationRequest, CodeStore};

use super::browser::{cookie_name, set_cookie};
use super::codes::{hash_token, random_token, valid_challenge, valid_thumbprint};
use super::pages::error_page;
use super::redirect::{error_to_client, redirect_uris_vetted, see_other};
use super::rp::RelyingParty;
use super::{AuthorizeStarts, audited, callback_url, denial, refuse, sign_in_idp};

/// The longest `state` accepted. It is stored with the pending request before anyone has signed
/// in, so without a bound anyone could have the server store a few hundred kilobytes (all a URL
/// can carry) per request; a client's random value or an encoded return path fits many times.
const MAX_STATE_BYTES: usize = 4096;

/// Why a request with a valid redirect URI is refused: reported to the client there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    /// RFC 6749 §4.1.2.1 `error`.
    error: &'static str,
    /// Audited reason code.
    reason: &'static str,
    /// `error_description`: for the client's developer, reveals nothing about other clients.
    description: &'static str,
}

const fn refusal(error: &'static str, reason: &'static str, description: &'static str) -> Refusal {
    Refusal {
        error,
        reason,
        description,
    }
}

/// The 429 page of an address past its quota of authorization requests, with `Retry-After`.
fn too_many_requests(state: &AppState, wait: Duration) -> Response {
    let mut page = error_page(
        state.config.issuer_path(),
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-ins were started from your network in the last minute. Wait a moment, then \
         try again from the application.",
    );
    if let Ok(value) = http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        page.headers_mut().insert(http::header::RETRY_AFTER, value);
    }
    page
}

/// What a request asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    code_challenge: String,
    dpop_jkt: Option<String>,
    resource: String,
    scopes: Vec<String>,
}

/// `GET /authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<RelyingParty>>,
    Extension(starts): Extension<Arc<AuthorizeStarts>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Counted before anything is read, fetched, stored or audited; the request past the quota
    // is refused too. Not audited: a flood would otherwise write the audit log at its own rate.
    let key = crate::http::forwarded::limit_key_text(&ip);
    if let Some(wait) = starts.0.retry_after(key.as_str()) {
        return too_many_requests(&state, wait);
    }
    if starts.0.record_failure(key.clone()) {
        return too_many_requests(
            &state,
            starts
                .0
                .retry_after(key.as_str())
                .unwrap_or(Duration::from_secs(1)),
        );
    }
    let registry = state.tokens.trust.current();
    let mut audit = denial("authorize", "invalid_request", &headers);
    if state.config.authorization.sign_in_idp.is_none() {
        return error_page(
            state.config.issuer_path(),
            StatusCode::NOT_FOUND,
            "The authorization endpoint is not enabled on this server.",
        );
    }
    let params = match parse_query(query.as_deref()) {
        Ok(params) => params,
        // Which redirect URI is meant is unknown then: no redirect.
        Err(QueryError::Repeated(name)) => {
            let message = format!("The parameter {name} appears more than once.");
            return refuse(&state, audit, "repeated_parameter", &message).await;
        }
        Err(QueryError::Nul(name)) => {
            let message = format!("The parameter {name} contains a NUL character.");
            return refuse(&state, audit, "nul_character", &message).await;
        }
    };
    let get = |name: &str| params.get(name).map(String::as_str);
    // 1. The client and its redirect URI: errors here are never redirected.
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
    let client: Option<Arc<Client>> = match found {
        Ok(client) => client.filter(|client| client.config.enabled),
        Err(error) => {
            // A URL client id whose metadata document was refused (CAUTH-10).
            audit.error_code = Some("invalid_client".into());
            audit.client_id = get("client_id").map(|id| crate::oauth::request::clip(id, 200));
            return refuse(&state, audit, error.reason, &error.description).await;
        }
    };
    let Some(client) = client else {
        audit.error_code = Some("invalid_client".into());
        audit.client_id = get("client_id").map(|id| crate::oauth::request::clip(id, 200));
        return refuse(
            &state,
            audit,
            "unknown_client",
            "The client is not registered.",
        )
        .await;
    };
    audit.client_id = Some(client.config.client_id.clone());
    let Some(redirect_uri) =
        super::redirect::resolve(&client.config.redirect_uris, get("redirect_uri"))
    else {
        return refuse(
            &state,
            audit,
            "redirect_uri_not_registered",
            "The redirect URI is missing or not registered for this client.",
        )
        .await;
    };
    // 2. Everything else is reported to the client at its (now known valid) redirect URI.
    let client_state = get("state").map(str::to_string);
    let started = match check(&params, &client, &registry, &mut audit) {
        Ok(checked) => {
            let (redirect_uri, client_state) = (redirect_uri.as_str(), client_state.clone());
            start_sign_in(
                &state,
                &rp,
                &registry,
                &client,
                redirect_uri,
                client_state,
                checked,
            )
            .await
        }
        Err(refusal) => Err(refusal),
    };
    match started {
        Ok(response) => response,
        Err(refusal) => {
            audit.error_code = Some(refusal.error.to_string());
            audit.reason = Some(refusal.reason.to_string());
            // Nobody has seen anything of this request yet: the browser is sent on by itself
            // only to a redirect URI an administrator vetted (RFC 9700 §4.11.2).
            let response = error_to_client(
                &state,
                redirect_uris_vetted(&client),
                &redirect_uri,
                client_state.as_deref(),
                refusal.error,
                refusal.description,
                None,
            );
            audited(&state, audit, response).await
        }
    }
}

/// Why a query string was refused before anything in it was used.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum QueryError {
    /// A parameter appears more than once (RFC 6749 §3.1); its shortened name.
    Repeated(String),
    /// A parameter's name or value holds a NUL character, which no parameter means and which
    /// PostgreSQL cannot store (decisions §30); its shortened name, NULs left out.
    Nul(String),
}

/// Query parameters, each at most once (RFC 6749 §3.1); empty values count as absent.
pub(super) fn parse_query(raw: Option<&str>) -> Result<BTreeMap<String, String>, QueryError> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if key.contains('\0') || value.contains('\0') {
            return Err(QueryError::Nul(
                key.chars().filter(|c| *c != '\0').take(40).collect(),
            ));
        }
        if value.is_empty() {
            continue;
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(QueryError::Repeated(crate::oauth::request::clip(&key, 40)));
        }
    }
    Ok(params)
}

/// Checks the response type, the client's right to the grant, PKCE S256, the resource
/// (RFC 8707) and the scopes, recording what was asked for in `audit`.
fn check(
    params: &BTreeMap<String, String>,
    client: &Client,
    registry: &Registry,
    audit: &mut AuditEvent,
) -> Result<Checked, Refusal> {
    let get = |name: &str| params.get(name).map(String::as_str);
    if get("state").is_some_and(|state| state.len() > MAX_STATE_BYTES) {
        return Err(refusal(
            "invalid_request",
            "state_too_long",
            "state is longer than 4096 bytes",
        ));
    }
    let Some(response_type) = get("response_type") else {
        // RFC 6749 §4.1.2.1: a missing required parameter is invalid_request.
        return Err(refusal(
            "invalid_request",
            "response_type_missing",
            "response_type is required (response_type=code)",
        ));
    };
    if response_type != "code" {
        return Err(refusal(
            "unsupported_response_type",
            "unsupported_response_type",
            "Only response_type=code is supported",
        ));
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(refusal(
            "unauthorized_client",
            "grant_not_allowed",
            "The client is not allowed to use the authorization code grant",
        ));
    }
    let Some(code_challenge) = get("code_challenge") else {
        return Err(refusal(
            "invalid_request",
            "pkce_missing",
            "code_challenge is required (PKCE, S256)",
        ));
    };
    if get("code_challenge_method") != Some("S256") {
        return Err(refusal(
            "invalid_request",
            "pkce_method_not_s256",
            "code_challenge_method must be S256",
        ));
    }
    if !valid_challenge(code_challenge) {
        return Err(refusal(
            "invalid_request",
            "pkce_challenge_malformed",
            "code_challenge is not a base64url SHA-256 value",
        ));
    }
    // RFC 9449 §10: the code will be redeemed only with a proof of this key.
    let dpop_jkt = get("dpop_jkt");
    if dpop_jkt.is_some_and(|jkt| !valid_thumbprint(jkt)) {
        return Err(refusal(
            "invalid_request",
            "dpop_jkt_malformed",
            "dpop_jkt is not a base64url SHA-256 JWK thumbprint (RFC 7638)",
        ));
    }
    let resource = match get("resource") {
        Some(resource) => {
            audit.resources = vec![resource.to_string()];
            registry.resource(resource)
        }
        None => registry.default_resource(),
    };
    let Some(resource) = resource else {
        return Err(refusal(
            "invalid_target",
            "unknown_resource",
            "The resource is not protected by this server",
        ));
    };
    audit.resources = vec![resource.resource.clone()];
    let scopes = match crate::oauth::request::parse_scope(get("scope")) {
        Ok(scopes) => scopes,
        Err(error) if error.reason == "too_many_scopes" => {
            return Err(refusal(
                "invalid_scope",
                "too_many_scopes",
                "The scope holds more values than this server accepts",
            ));
        }
        Err(_) => {
            return Err(refusal(
                "invalid_scope",
                "scope_malformed",
                "The scope is malformed",
            ));
        }
    };
    audit.scopes_requested = scopes.clone();
    let client_scopes = &client.config.scopes;
    if scopes.iter().any(|scope| {
        !resource.scopes.contains(scope)
            || (!client_scopes.is_empty() && !client_scopes.contains(scope))
    }) {
        return Err(refusal(
            "invalid_scope",
            "scope_not_allowed",
            "A requested scope is not available for this client and resource",
        ));
    }
    Ok(Checked {
        code_challenge: code_challenge.to_string(),
        dpop_jkt: dpop_jkt.map(str::to_string),
        resource: resource.resource.clone(),
        scopes,
    })
}

/// Stores the pending request and sends the browser to the sign-in identity provider with a
/// fresh state, nonce and PKCE verifier, setting the browser-binding cookie.
async fn start_sign_in(
    state: &AppState,
    rp: &RelyingParty,
    registry: &Registry,
    client: &Client,
    redirect_uri: &str,
    client_state: Option<String>,
    checked: Checked,
) -> Result<Response, Refusal> {
    const UNAVAILABLE: &str = "The sign-in identity provider is not available";
    let now = unix_now();
    let (Some(idp), Some(rp_client_id)) = (
        sign_in_idp(state, registry),
        state.config.authorization.client_id.as_deref(),
    ) else {
        return Err(refusal(
            "temporarily_unavailable",
            "sign_in_idp_unavailable",
            UNAVAILABLE,
        ));
    };
    let id = random_token(32);
    let rp_state = random_token(32);
    let nonce = random_token(32);
    let binding = random_token(32);
    let (url, verifier) = rp
        .authorization_url(&idp, rp_client_id, &callback_url(state), &rp_state, &nonce)
        .await
        .map_err(|error| {
            tracing::warn!(%error, idp = %idp.config.id, "cannot start the sign-in");
            refusal("temporarily_unavailable", error.reason, UNAVAILABLE)
        })?;
    let lifetime = state.config.authorization.request_lifetime_secs;
    let pending = AuthorizationRequest {
        id: id.clone(),
        rp_state,
        browser_hash: hash_token(&binding),
        csrf_token: random_token(32),
        nonce,
        rp_pkce_verifier: verifier.expose().to_string(),
        client_id: client.config.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: client_state,
        code_challenge: checked.code_challenge,
        dpop_jkt: checked.dpop_jkt,
        resource: checked.resource,
        scopes: checked.scopes,
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
        return Err(refusal(
            "server_error",
            "storage_failed",
            "The request could not be stored",
        ));
    }
    Ok(see_other(
        &url,
        Some(set_cookie(
            state,
            &cookie_name(&state.config, &id),
            &binding,
            lifetime,
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_may_appear_once_and_empty_ones_are_absent() {
        let params = parse_query(Some("a=1&b=&c=x%20y")).unwrap_or_default();
        assert_eq!(params.get("a").map(String::as_str), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c").map(String::as_str), Some("x y"));
        assert_eq!(
            parse_query(Some("a=1&a=2")),
            Err(QueryError::Repeated("a".to_string()))
        );
        assert_eq!(parse_query(None), Ok(BTreeMap::new()));
    }

    #[test]
    fn a_nul_character_anywhere_refuses_the_query() {
        for raw in ["state=a%00b", "st%00ate=x", "a=1&b=%00"] {
            assert!(
                matches!(parse_query(Some(raw)), Err(QueryError::Nul(_))),
                "{raw}"
            );
        }
        assert_eq!(
            parse_query(Some("st%00ate=x")),
            Err(QueryError::Nul("state".to_string()))
        );
    }
}
