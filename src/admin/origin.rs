//! The same-origin check of every state-changing admin form (sign-in, bootstrap, sign-out and
//! every change), run as a layer on the admin page's routes so a new form cannot forget it. The
//! forms behind a session also carry its CSRF token; the sign-in and bootstrap forms have no
//! session yet, and this check is what refuses a cross-site post to them (login CSRF).
//!
//! The JSON API under `/admin/api/v1` is not behind this layer: it authenticates with bearer
//! tokens, which a browser never adds by itself, and refuses the session cookie.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method};

use super::AdminError;
use crate::http::AppState;

/// Why a form post was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRefusal {
    /// `Sec-Fetch-Site` or `Origin` names another site.
    CrossSite,
    /// Neither header: not something a browser that can use the admin page sends.
    Unattributed,
}

/// Decides whether a form post with these `Sec-Fetch-Site` and `Origin` headers came from the
/// admin page at `expected` (the issuer's origin).
///
/// - `Sec-Fetch-Site`, when sent, must be `same-origin` (or `none`: started by the user).
/// - `Origin`, when it names an origin, must be `expected`. The admin page's
///   `Referrer-Policy: no-referrer` makes browsers send `Origin: null` on its own form posts
///   (Fetch, "serializing a request origin"), so `null` counts as sent but proves nothing.
/// - With neither header the post is refused: every browser that can run the admin page sends
///   `Origin` on a form post (Chrome, Firefox since 70, Safari), and current ones
///   `Sec-Fetch-Site` too. A post without them is a script, which must send `Origin` itself.
pub fn check(
    expected: &str,
    sec_fetch_site: Option<&str>,
    origin: Option<&str>,
) -> Result<(), OriginRefusal> {
    if let Some(site) = sec_fetch_site
        && site != "same-origin"
        && site != "none"
    {
        return Err(OriginRefusal::CrossSite);
    }
    match origin {
        Some(origin) if origin != "null" && origin != expected => Err(OriginRefusal::CrossSite),
        None if sec_fetch_site.is_none() => Err(OriginRefusal::Unattributed),
        _ => Ok(()),
    }
}

/// The issuer's origin (`https://login.example.com`), which the admin page's forms post from.
fn expected_origin(state: &AppState) -> String {
    url::Url::parse(&state.config.issuer)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The layer: every request but `GET`/`HEAD`/`OPTIONS` must pass [`check`], or gets a 403 page
/// saying why, before its handler reads the form.
pub async fn require_same_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let expected = expected_origin(&state);
    let headers = request.headers();
    let message = match check(
        &expected,
        header(headers, "sec-fetch-site"),
        header(headers, "origin"),
    ) {
        Ok(()) => return next.run(request).await,
        Err(OriginRefusal::CrossSite) => format!(
            "This form must be submitted from {expected}, the server's issuer origin; it came from another site, so nothing was done."
        ),
        Err(OriginRefusal::Unattributed) => format!(
            "This form came without an Origin or Sec-Fetch-Site header, so the server cannot tell that it was submitted from its own page at {expected}; nothing was done. Use a current browser; a script must send `Origin: {expected}`."
        ),
    };
    AdminError::Forbidden(message).into_response()
}

#[cfg(test)]
mod tests {
    use super::{OriginRefusal, check};

    const ISSUER: &str = "https://login.example.com";

    #[test]
    fn a_post_with_neither_header_is_refused() {
        assert_eq!(check(ISSUER, None, None), Err(OriginRefusal::Unattributed));
    }

    #[test]
    fn a_same_origin_post_passes() {
        assert_eq!(check(ISSUER, Some("same-origin"), None), Ok(()));
        assert_eq!(check(ISSUER, None, Some(ISSUER)), Ok(()));
        assert_eq!(check(ISSUER, Some("same-origin"), Some(ISSUER)), Ok(()));
        // Under Referrer-Policy: no-referrer a browser's own form post says `Origin: null`.
        assert_eq!(check(ISSUER, Some("same-origin"), Some("null")), Ok(()));
        assert_eq!(check(ISSUER, None, Some("null")), Ok(()));
    }

    #[test]
    fn a_foreign_origin_or_site_is_refused() {
        let cross = Err(OriginRefusal::CrossSite);
        assert_eq!(check(ISSUER, None, Some("https://evil.example")), cross);
        assert_eq!(check(ISSUER, Some("cross-site"), None), cross);
        assert_eq!(check(ISSUER, Some("same-site"), Some("null")), cross);
        assert_eq!(
            check(ISSUER, Some("same-origin"), Some("https://evil.example")),
            cross
        );
        // The same host on another scheme or port is another origin.
        assert_eq!(check(ISSUER, None, Some("http://login.example.com")), cross);
        assert_eq!(
            check(ISSUER, None, Some("https://login.example.com:8443")),
            cross
        );
    }
}
