//! Redirects: to the sign-in identity provider, and back to the client with a code or an error
//! plus `state` and `iss` (RFC 9207). Only redirect URIs already matched exactly against the
//! client's registration reach [`client_redirect`].

use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, StatusCode};

use crate::http::AppState;
use crate::registry::Client;

use super::browser::set_cookie;
use super::pages::{error_page, return_page};

/// The redirect URI an authorization request is answered at: the one it names, if registered;
/// when it names none, the client's only registered one (OAuth 2.1 §4.1.1: the parameter is
/// optional for a client with a single redirect URI). `None`: the request must be refused
/// with an error page, never redirected.
pub fn resolve(registered: &[String], requested: Option<&str>) -> Option<String> {
    match (requested, registered) {
        (Some(requested), _) => is_registered(registered, requested).then(|| requested.to_string()),
        (None, [only]) => Some(only.clone()),
        (None, _) => None,
    }
}

/// True if `requested` is one of the client's `registered` redirect URIs: the same string
/// (RFC 9700 §4.1.3, OAuth 2.1 §2.3.1: exact matching), except that a loopback http redirect
/// URI may name any port (RFC 8252 §7.3, OAuth 2.1 §8.4.2: a native app listens on whatever
/// port the operating system gives it, which its registration, such as a Client ID Metadata
/// Document, cannot know).
pub fn is_registered(registered: &[String], requested: &str) -> bool {
    registered
        .iter()
        .any(|uri| uri == requested || same_loopback_uri_but_port(uri, requested))
}

/// True if both are http URLs on the same loopback host (`127.0.0.1`, `[::1]` or `localhost`,
/// the hosts a registration may use with http) that differ in their port at most. `requested`
/// must already be in its normalised form, so that no spelling of the path, query or host the
/// exact comparison would have refused gets through.
fn same_loopback_uri_but_port(registered: &str, requested: &str) -> bool {
    let (Ok(registered), Ok(url)) = (url::Url::parse(registered), url::Url::parse(requested))
    else {
        return false;
    };
    url.as_str() == requested
        && url.scheme() == "http"
        && registered.scheme() == "http"
        && matches!(
            registered.host_str(),
            Some("127.0.0.1" | "[::1]" | "localhost")
        )
        && url.host_str() == registered.host_str()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == registered.path()
        && url.query() == registered.query()
        && url.fragment().is_none()
        && registered.fragment().is_none()
}

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
    let Some(url) = response_url(state, redirect_uri, client_state, params) else {
        return invalid_redirect_uri(state);
    };
    let cookie = clear_cookie.map(|name| set_cookie(state, name, "", 0));
    see_other(&url, cookie)
}

/// `redirect_uri` with `params`, `state` and `iss` (RFC 9207) added to its query: where the
/// client gets its answer. `None` if it is not a URL.
fn response_url(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
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
    Some(url.into())
}

fn invalid_redirect_uri(state: &AppState) -> Response {
    error_page(
        state.config.issuer_path(),
        StatusCode::BAD_REQUEST,
        "The redirect URI is not valid.",
    )
}

/// True if an administrator registered `client` (configuration file, CLI, admin page or API),
/// and so vetted its redirect URIs. A self-registered client (`POST /register`) or a Client ID
/// Metadata Document names whatever redirect URI its author likes, so frontdesk does not send
/// the browser there on its own for an error nobody has seen (RFC 9700 §4.11.2).
pub fn redirect_uris_vetted(client: &Client) -> bool {
    client.config.source.is_none()
}

/// A refusal reported to the client at `redirect_uri`: redirected at once when an
/// administrator vetted the client's redirect URIs (`vetted`, [`redirect_uris_vetted`]),
/// otherwise through [`error_return_page`], which the user leaves by choice — anyone chose a
/// self-registered or metadata-document client's redirect URI, and frontdesk must not be an
/// open redirector to it (RFC 9700 §4.11.2).
pub fn error_to_client(
    state: &AppState,
    vetted: bool,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
    clear_cookie: Option<&str>,
) -> Response {
    if vetted {
        error_redirect(
            state,
            redirect_uri,
            client_state,
            error,
            description,
            clear_cookie,
        )
    } else {
        error_return_page(state, redirect_uri, client_state, error, description)
    }
}

/// An authorization request's refusal for a client whose redirect URIs no administrator vetted
/// ([`redirect_uris_vetted`]): shown on a page whose link carries the RFC 6749 §4.1.2.1 error to
/// the client if the user follows it, instead of a redirect. Otherwise anyone could register a
/// client with a phishing page as its redirect URI and hand out links to `/authorize` with a
/// deliberately bad request, which frontdesk would answer with a redirect there: an open
/// redirector on the sign-in host (RFC 9700 §4.11.2: redirect without the user only to a
/// trusted redirect URI; otherwise inform the user and let them decide).
pub fn error_return_page(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let params = [("error", error), ("error_description", description)];
    let Some(url) = response_url(state, redirect_uri, client_state, &params) else {
        return invalid_redirect_uri(state);
    };
    return_page(state.config.issuer_path(), description, &url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_except_the_port_of_a_loopback_uri() {
        let registered = [
            "http://127.0.0.1:9/callback".to_string(),
            "http://localhost/cb?app=1".to_string(),
            "http://[::1]:80/cb".to_string(),
            "https://app.example/cb".to_string(),
        ];
        for ok in [
            "http://127.0.0.1:9/callback",
            "http://127.0.0.1:51234/callback",
            "http://127.0.0.1/callback",
            "http://localhost:8080/cb?app=1",
            "http://[::1]:4000/cb",
            "https://app.example/cb",
        ] {
            assert!(is_registered(&registered, ok), "{ok}");
        }
        for refused in [
            "http://127.0.0.1:51234/callback/",
            "http://127.0.0.1:51234/Callback",
            "http://127.0.0.1:51234/callback?x=1",
            "http://127.0.0.1:51234/callback#f",
            "http://user@127.0.0.1:51234/callback",
            "http://127.0.0.1:51234/a/../callback",
            "http://127.0.0.2:9/callback",
            "http://localhost:8080/cb",
            "http://LOCALHOST:8080/cb?app=1",
            "http://[::1]:4000/cb/",
            "https://127.0.0.1:9/callback",
            "https://app.example:8443/cb",
            "https://app.example/cb/",
            "http://app.example/cb",
            "not a url",
        ] {
            assert!(!is_registered(&registered, refused), "{refused}");
        }
    }
}
