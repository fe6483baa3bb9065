//! The admin session cookie: its name, its attributes, and reading it back; and the naming rule
//! every other cookie frontdesk sets follows ([`path_scoped_cookie_name`]).
//!
//! Its name carries a cookie prefix whenever the issuer allows one, so a browser accepts a
//! cookie of that name only from this origin over https (RFC 6265bis §4.1.3): `__Host-` when
//! the issuer is https at the root of its origin (the cookie is then scoped to `Path=/` with no
//! `Domain`, and nobody on a sibling subdomain or on plain http can plant or shadow one — the
//! session fixation a bare name leaves open), `__Secure-` when the issuer is https under a path
//! (the cookie keeps `Path=<path>/admin`, which `__Host-` does not allow), no prefix on a plain
//! http development issuer, where a browser would refuse a prefixed cookie.
//!
//! The browser-binding cookies of a pending sign-in (the admin single sign-on's, scoped to
//! `/admin/sso`, and the authorization endpoint's, scoped to `/authorize`) follow the same rule,
//! but need their path, so they get `__Secure-` on an https issuer and never `__Host-`.

use http::{HeaderMap, HeaderValue, header};

use crate::config::Config;

/// The session cookie's name without a prefix (plain http development issuers).
pub const ADMIN_COOKIE: &str = "frontdesk_admin";
/// The name on an https issuer at the root of its origin.
pub const HOST_ADMIN_COOKIE: &str = "__Host-frontdesk_admin";
/// The name on an https issuer with a path.
pub const SECURE_ADMIN_COOKIE: &str = "__Secure-frontdesk_admin";

/// The prefix of a cookie's name, which makes browsers enforce how it was set (RFC 6265bis
/// §4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookiePrefix {
    /// `__Host-`: `Secure`, no `Domain`, `Path=/`.
    Host,
    /// `__Secure-`: `Secure`.
    Secure,
    /// No prefix: a plain http issuer, where a browser would refuse a prefixed cookie.
    Bare,
}

impl CookiePrefix {
    /// The prefix as it begins the name.
    pub fn as_str(self) -> &'static str {
        match self {
            CookiePrefix::Host => "__Host-",
            CookiePrefix::Secure => "__Secure-",
            CookiePrefix::Bare => "",
        }
    }
}

/// The prefix a cookie set by `config`'s issuer carries: `__Host-` on an https issuer when the
/// cookie may be scoped to `Path=/` (`at_root`), `__Secure-` on an https issuer otherwise, none
/// on a plain http issuer (see the module documentation).
pub fn cookie_prefix(config: &Config, at_root: bool) -> CookiePrefix {
    let https = url::Url::parse(&config.issuer).is_ok_and(|url| url.scheme() == "https");
    match (https, at_root) {
        (true, true) => CookiePrefix::Host,
        (true, false) => CookiePrefix::Secure,
        (false, _) => CookiePrefix::Bare,
    }
}

/// The session cookie's name for the issuer of `config` (see the module documentation).
pub fn session_cookie_name(config: &Config) -> &'static str {
    match cookie_prefix(config, config.issuer_path().is_empty()) {
        CookiePrefix::Host => HOST_ADMIN_COOKIE,
        CookiePrefix::Secure => SECURE_ADMIN_COOKIE,
        CookiePrefix::Bare => ADMIN_COOKIE,
    }
}

/// The name under which `config`'s issuer sets the cookie `name` that must keep a path below
/// the root (a browser binding scoped to `/admin/sso` or `/authorize`): `__Secure-name` on an
/// https issuer, so no plain-http page can plant or overwrite it, and `name` on a plain http
/// development issuer. Read it back under this name only.
pub fn path_scoped_cookie_name(config: &Config, name: &str) -> String {
    format!("{}{name}", cookie_prefix(config, false).as_str())
}

/// The `Set-Cookie` value that sets the session cookie to `value` (or, with `max_age`
/// `Some(0)`, clears it): `HttpOnly`, `SameSite=Strict`, scoped to the admin page — or to `/`,
/// which `__Host-` requires — and `Secure` everywhere but on a plain http loopback issuer.
pub(crate) fn set_session_cookie(
    config: &Config,
    value: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let name = session_cookie_name(config);
    let path = if name == HOST_ADMIN_COOKIE {
        "/".to_string()
    } else {
        format!("{}/admin", config.issuer_path())
    };
    let secure = if config.issuer_is_loopback_http() {
        ""
    } else {
        "; Secure"
    };
    let max_age = max_age.map_or_else(String::new, |secs| format!("; Max-Age={secs}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path={path}{secure}{max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("frontdesk_admin=; Max-Age=0"))
}

/// The session cookie's value, if the request carries one under the name of `config`'s issuer.
/// A cookie of another of the names is not a session: accepting the bare name beside a prefixed
/// one would let whoever can plant that name choose the session again.
pub(crate) fn session_cookie(config: &Config, headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, session_cookie_name(config))
}

/// Whether the request carries a cookie under any of the session cookie's names. Only for the
/// admin API's hint that it wants a bearer token, not a cookie; never to read a session.
pub(crate) fn has_any_session_cookie(headers: &HeaderMap) -> bool {
    [ADMIN_COOKIE, HOST_ADMIN_COOKIE, SECURE_ADMIN_COOKIE]
        .iter()
        .any(|name| named_cookie(headers, name).is_some())
}

/// The value of the cookie `wanted`, from any `Cookie` header of the request.
pub(crate) fn named_cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(issuer: &str) -> Config {
        Config {
            issuer: issuer.into(),
            ..Config::default()
        }
    }

    #[test]
    fn an_https_issuer_at_the_root_gets_the_host_prefix_and_path_slash() {
        for issuer in ["https://login.example.com", "https://login.example.com/"] {
            let config = config(issuer);
            assert_eq!(session_cookie_name(&config), "__Host-frontdesk_admin");
            let set = set_session_cookie(&config, "v", None);
            assert_eq!(
                set.to_str().unwrap(),
                "__Host-frontdesk_admin=v; HttpOnly; SameSite=Strict; Path=/; Secure"
            );
        }
    }

    #[test]
    fn an_https_issuer_with_a_path_gets_the_secure_prefix_and_keeps_its_path() {
        let config = config("https://login.example.com/sts");
        assert_eq!(session_cookie_name(&config), "__Secure-frontdesk_admin");
        let set = set_session_cookie(&config, "v", Some(0));
        assert_eq!(
            set.to_str().unwrap(),
            "__Secure-frontdesk_admin=v; HttpOnly; SameSite=Strict; Path=/sts/admin; Secure; Max-Age=0"
        );
    }

    #[test]
    fn a_plain_http_issuer_keeps_the_bare_name() {
        let loopback = config("http://127.0.0.1:8080");
        assert_eq!(session_cookie_name(&loopback), "frontdesk_admin");
        assert_eq!(
            set_session_cookie(&loopback, "v", None).to_str().unwrap(),
            "frontdesk_admin=v; HttpOnly; SameSite=Strict; Path=/admin"
        );
        let under_path = config("http://localhost:8080/sts");
        assert_eq!(session_cookie_name(&under_path), "frontdesk_admin");
    }

    #[test]
    fn a_path_scoped_cookie_gets_the_secure_prefix_on_https_only() {
        for issuer in ["https://login.example.com", "https://login.example.com/sts"] {
            assert_eq!(
                path_scoped_cookie_name(&config(issuer), "frontdesk_admin_sso"),
                "__Secure-frontdesk_admin_sso"
            );
        }
        for issuer in ["http://127.0.0.1:8080", "http://localhost:8080/sts"] {
            assert_eq!(
                path_scoped_cookie_name(&config(issuer), "frontdesk_admin_sso"),
                "frontdesk_admin_sso"
            );
        }
    }

    /// With a prefixed name configured, a cookie of the bare name (which anyone able to set
    /// cookies for the domain could plant) is no session.
    #[test]
    fn only_the_configured_name_is_read() {
        let config = config("https://login.example.com");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("frontdesk_admin=planted; other=1"),
        );
        assert_eq!(session_cookie(&config, &headers), None);
        assert!(has_any_session_cookie(&headers));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("frontdesk_admin=planted; __Host-frontdesk_admin=real"),
        );
        assert_eq!(session_cookie(&config, &headers).as_deref(), Some("real"));
    }
}
