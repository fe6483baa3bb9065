//! Whether a browser form post came from one of frontdesk's own pages: the decision shared by
//! the admin page's forms ([`crate::admin::origin`]) and the end user's consent form
//! ([`crate::authorize`]). Each caller runs it as a layer and answers a refusal with its own
//! HTML page; the rule and the words explaining it live here, so the two cannot drift apart.
//!
//! A CSRF token refuses a cross-site post only while the attacker cannot learn it, and a
//! `SameSite` cookie only in browsers that apply it; this check is the third line and the only
//! one that also covers a form with no session behind it yet (login CSRF). It needs nothing
//! secret: browsers say where a post comes from (Fetch metadata, `Origin`), and a page of
//! another site cannot make them say otherwise.

use http::{HeaderMap, Method};

use crate::config::Config;

/// Why a form post was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRefusal {
    /// `Sec-Fetch-Site` or `Origin` names another site.
    CrossSite,
    /// Neither header: not something a browser that can use frontdesk's pages sends.
    Unattributed,
    /// `Origin: null` and no `Sec-Fetch-Site`: an opaque origin, which any page can make a
    /// browser send (its own `Referrer-Policy: no-referrer`, a sandboxed frame) and which
    /// frontdesk's own pages never cause (their `Referrer-Policy` is `same-origin`).
    OpaqueOrigin,
}

impl OriginRefusal {
    /// A short reason code for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            OriginRefusal::CrossSite => "cross_site_post",
            OriginRefusal::Unattributed => "origin_missing",
            OriginRefusal::OpaqueOrigin => "origin_null",
        }
    }

    /// What the refusal page tells the person (or script) whose post it was; `expected` is
    /// the issuer's origin, which they are free to know.
    pub fn explain(&self, expected: &str) -> String {
        match self {
            OriginRefusal::CrossSite => format!(
                "This form must be submitted from {expected}, the server's issuer origin; it came from another site, so nothing was done."
            ),
            OriginRefusal::Unattributed => format!(
                "This form came without an Origin or Sec-Fetch-Site header, so the server cannot tell that it was submitted from its own page at {expected}; nothing was done. Use a current browser; a script must send `Origin: {expected}`."
            ),
            OriginRefusal::OpaqueOrigin => format!(
                "This form came with `Origin: null` and without a Sec-Fetch-Site header, so the server cannot tell that it was submitted from its own page at {expected} (a page of any site can make a browser send `null`); nothing was done. Submit it from the page at {expected}, in a browser that does not hide its origin; a script must send `Origin: {expected}`."
            ),
        }
    }
}

/// Decides whether a form post with these `Sec-Fetch-Site` and `Origin` headers came from a
/// page at `expected` (the issuer's origin).
///
/// - `Sec-Fetch-Site`, when sent, must be `same-origin` (or `none`: started by the user).
/// - `Origin`, when it names an origin, must be `expected`.
/// - `Origin: null` passes only beside `Sec-Fetch-Site: same-origin`/`none`. frontdesk's pages
///   are served with `Referrer-Policy: same-origin`, under which a browser sends their real
///   origin on their own form posts (Fetch, "serializing a request origin"); `null` is what a
///   page of another site gets by setting `no-referrer` itself (or from a sandboxed frame), and
///   a browser without Fetch metadata (Safari before 16.4, older Firefox) would send it with
///   nothing else to tell the two apart (login CSRF).
/// - With neither header the post is refused: every browser that can run frontdesk's pages
///   sends `Origin` on a form post (Chrome, Firefox since 70, Safari), and current ones
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
        Some("null") if sec_fetch_site.is_none() => Err(OriginRefusal::OpaqueOrigin),
        Some(origin) if origin != "null" && origin != expected => Err(OriginRefusal::CrossSite),
        None if sec_fetch_site.is_none() => Err(OriginRefusal::Unattributed),
        _ => Ok(()),
    }
}

/// The issuer's origin (`https://login.example.com`, without the issuer's path), which
/// frontdesk's pages and their forms are served from.
pub fn issuer_origin(config: &Config) -> String {
    url::Url::parse(&config.issuer)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}

/// [`check`] for a request with `method` and `headers` against `config`'s issuer origin:
/// `GET`, `HEAD` and `OPTIONS` change nothing and always pass.
pub fn check_request(
    config: &Config,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), OriginRefusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    check(
        &issuer_origin(config),
        header("sec-fetch-site"),
        header("origin"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
        // A browser that says where the post came from may still hide its origin.
        assert_eq!(check(ISSUER, Some("same-origin"), Some("null")), Ok(()));
        assert_eq!(check(ISSUER, Some("none"), Some("null")), Ok(()));
    }

    /// `Origin: null` alone is what a page of another site with its own `Referrer-Policy:
    /// no-referrer` makes a browser without Fetch metadata send (login CSRF); frontdesk's own
    /// pages (`Referrer-Policy: same-origin`) make it send their real origin.
    #[test]
    fn a_null_origin_without_fetch_metadata_is_refused() {
        assert_eq!(
            check(ISSUER, None, Some("null")),
            Err(OriginRefusal::OpaqueOrigin)
        );
        assert_eq!(OriginRefusal::OpaqueOrigin.reason(), "origin_null");
        assert!(
            OriginRefusal::OpaqueOrigin
                .explain(ISSUER)
                .contains("Origin: null")
        );
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

    #[test]
    fn the_expected_origin_is_the_issuers_without_its_path() {
        let config = Config {
            issuer: "https://login.example.com/sts/".into(),
            ..Config::default()
        };
        assert_eq!(issuer_origin(&config), ISSUER);
        let mut headers = HeaderMap::new();
        assert_eq!(check_request(&config, &Method::GET, &headers), Ok(()));
        assert_eq!(
            check_request(&config, &Method::POST, &headers),
            Err(OriginRefusal::Unattributed)
        );
        headers.insert("origin", HeaderValue::from_static(ISSUER));
        assert_eq!(check_request(&config, &Method::POST, &headers), Ok(()));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(
            check_request(&config, &Method::POST, &headers),
            Err(OriginRefusal::CrossSite)
        );
    }
}
