//! Binding a pending authorization request to the browser that started it: `GET /authorize`
//! sets a random cookie and stores only its hash; the callback and the consent form are
//! accepted only from a browser that presents it (compared in constant time). A sign-in or a
//! consent form carried to another browser is refused.

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::Config;
use crate::http::AppState;
use crate::store::AuthorizationRequest;

use super::codes::{constant_time_eq, hash_token};

/// The browser-binding cookie of one pending request (one per request, so two tabs with two
/// flows do not overwrite each other), named by the issuer's rule for cookies scoped to a path
/// ([`crate::admin::cookie::path_scoped_cookie_name`]): `__Secure-fd_authz_…` on an https
/// issuer, so a plain-http page of the same host cannot plant or overwrite it, `fd_authz_…` on
/// a plain http development issuer. Only this name is read back.
pub fn cookie_name(config: &Config, request_id: &str) -> String {
    let name = format!("fd_authz_{}", request_id.get(..16).unwrap_or(request_id));
    crate::admin::cookie::path_scoped_cookie_name(config, &name)
}

/// The value of the cookie `name` in the request's `Cookie` headers.
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

/// A `Set-Cookie` value: scoped to `/authorize` under the server's path, HttpOnly, SameSite=Lax
/// (the identity provider's redirect back is a top-level GET), Secure unless the issuer is
/// plain-HTTP loopback (development). `max_age` 0 clears it.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if state.config.issuer_is_loopback_http() {
        ""
    } else {
        "; Secure"
    };
    format!(
        "{name}={value}; Path={}/authorize; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        state.config.issuer_path()
    )
}

/// True if the request comes from the browser that started `request`.
pub fn browser_matches(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
) -> bool {
    cookie_value(headers, &cookie_name(&state.config, &request.id))
        .is_some_and(|value| constant_time_eq(&hash_token(value), &request.browser_hash))
}
