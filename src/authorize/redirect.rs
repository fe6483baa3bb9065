//! Redirects: to the sign-in identity provider, and back to the client with a code or an error
//! plus `state` and `iss` (RFC 9207). Only redirect URIs already matched exactly against the
//! client's registration reach [`client_redirect`].

use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, StatusCode};

use crate::http::AppState;

use super::browser::set_cookie;
use super::pages::error_page;

/// `303 See Other` to `location`, optionally setting a cookie.
pub fn see_other(location: &str, cookie: Option<String>) -> Response {
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
    response
}

/// The redirect back to the client: `params` plus `state` and `iss` (RFC 9207); clears the
/// browser-binding cookie `clear_cookie` when the request is finished.
pub fn client_redirect(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
    clear_cookie: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(
            state.config.issuer_path(),
            StatusCode::BAD_REQUEST,
            "The redirect URI is not valid.",
        );
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

/// The redirect back to the client with an RFC 6749 §4.1.2.1 error.
pub fn error_redirect(
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
