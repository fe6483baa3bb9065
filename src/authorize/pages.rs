//! The pages of the authorization code flow: askama templates under `templates/authorize/`,
//! extending the admin page's layout (without its navigation) and stylesheet, so a user who
//! signs in sees the same frontdesk as the administrator who set it up. askama escapes every
//! value; the security headers are the admin page's ([`security_headers`]).

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::header::CONTENT_SECURITY_POLICY;
use http::{HeaderValue, StatusCode};

use crate::store::AuthorizationRequest;

/// What the authorization pages' layout (`templates/authorize/layout.html`) needs.
#[derive(Debug, Clone)]
pub struct PageLayout {
    /// `<title>` and `<h1>`.
    pub title: &'static str,
    /// The server's path under its origin (`Config::issuer_path`), before the stylesheet's
    /// and the forms' URLs.
    pub base: String,
}

/// The page shown when the browser cannot safely be sent back to the client.
#[derive(Debug, Template)]
#[template(path = "authorize/error.html")]
struct ErrorPage<'a> {
    layout: PageLayout,
    message: &'a str,
}

/// The page of a refused request whose client's redirect URI no administrator vetted: the
/// error, where the link leads, and the link carrying the error to the client, followed only if
/// the user chooses to ([`super::redirect::error_return_page`]).
#[derive(Debug, Template)]
#[template(path = "authorize/return.html")]
struct ReturnPage<'a> {
    layout: PageLayout,
    message: &'a str,
    host: &'a str,
    url: &'a str,
}

/// The consent page: who is asking (client name and id), for what (resource and scopes), on
/// whose behalf (the signed-in user), and where the answer goes. The forms carry the request id
/// and its CSRF token; the browser-binding cookie travels with them. No `Debug`: it holds the
/// CSRF token.
#[derive(Template)]
#[template(path = "authorize/consent.html")]
struct ConsentPage<'a> {
    layout: PageLayout,
    client_id: &'a str,
    client_name: Option<&'a str>,
    user: &'a str,
    resource: &'a str,
    scopes: &'a [String],
    redirect_uri: &'a str,
    request_id: &'a str,
    csrf_token: &'a str,
}

/// The origin a page's form may end up at, besides frontdesk itself: the consent form is
/// answered with a redirect to the client, and browsers apply CSP `form-action` to the
/// redirects that follow a form post (Chromium blocks the redirect otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FormTarget(String);

/// The admin page's security headers ([`crate::admin::security_headers`]) on every response of
/// the flow; a page with a [`FormTarget`] has that origin added to `form-action`, and nothing
/// else differs.
pub async fn security_headers(response: Response) -> Response {
    let mut response = crate::admin::security_headers(response).await;
    if let Some(FormTarget(origin)) = response.extensions_mut().remove::<FormTarget>()
        && let Ok(value) = HeaderValue::from_str(&policy_with_form_target(&origin))
    {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// The admin page's Content-Security-Policy with `origin` allowed as a form target.
fn policy_with_form_target(origin: &str) -> String {
    crate::admin::CONTENT_SECURITY_POLICY.replacen(
        "form-action 'self'",
        &format!("form-action 'self' {origin}"),
        1,
    )
}

/// Renders `template` as an HTML response with `status`; a template that fails to render is
/// logged and answered with a plain 500 (never the error text).
fn render<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "authorization page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// The error page with `message` (shown to the user: it must not reveal more than they may
/// know), on a server whose path is `base`.
pub fn error_page(base: &str, status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            layout: PageLayout {
                title: "Authorization failed",
                base: base.to_string(),
            },
            message,
        },
    )
}

/// A 400 page with `message` and a link to `url` (the client's redirect URI with the error),
/// which the browser is not sent to by itself. The link's host is shown next to it.
pub fn return_page(base: &str, message: &str, url: &str) -> Response {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.host_str().map(str::to_string))
        .unwrap_or_default();
    render(
        StatusCode::BAD_REQUEST,
        &ReturnPage {
            layout: PageLayout {
                title: "Authorization failed",
                base: base.to_string(),
            },
            message,
            host: &host,
            url,
        },
    )
}

/// The consent page for a signed-in pending request. `client_name` is the client's display
/// name when it has one; the id is always shown, since names are chosen by the client. `base`
/// is the server's path.
pub fn consent_page(
    base: &str,
    pending: &AuthorizationRequest,
    client_name: Option<&str>,
) -> Response {
    let user = pending
        .email
        .as_deref()
        .or(pending.subject.as_deref())
        .unwrap_or("");
    let mut response = render(
        StatusCode::OK,
        &ConsentPage {
            layout: PageLayout {
                title: "Authorize access",
                base: base.to_string(),
            },
            client_id: &pending.client_id,
            client_name,
            user,
            resource: &pending.resource,
            scopes: &pending.scopes,
            redirect_uri: &pending.redirect_uri,
            request_id: &pending.id,
            csrf_token: &pending.csrf_token,
        },
    );
    // Registered redirect URIs are https or loopback http URLs, so they have a tuple origin.
    let origin = url::Url::parse(&pending.redirect_uri)
        .map(|url| url.origin())
        .ok()
        .filter(url::Origin::is_tuple);
    if let Some(origin) = origin {
        response
            .extensions_mut()
            .insert(FormTarget(origin.ascii_serialization()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> AuthorizationRequest {
        AuthorizationRequest {
            id: "req-1".into(),
            rp_state: "rp-state".into(),
            browser_hash: "hash".into(),
            csrf_token: "csrf-1".into(),
            nonce: "nonce".into(),
            rp_pkce_verifier: "verifier".into(),
            client_id: "app<script>".into(),
            redirect_uri: "https://app.example/cb?a=1&b=2".into(),
            state: None,
            code_challenge: "challenge".into(),
            resource: "https://mcp.example/mcp".into(),
            scopes: vec!["mcp:read".into(), "\"quoted\"".into()],
            status: "consent".into(),
            subject: Some("user-1".into()),
            subject_issuer: Some("https://idp.example".into()),
            email: Some("ada@example.com".into()),
            auth_time: None,
            created_at: 0,
            expires_at: 600,
            dpop_jkt: None,
        }
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn consent_page_escapes_everything_the_client_chose() {
        let response = consent_page("", &pending(), Some("Evil <b>App</b>"));
        assert_eq!(response.status(), StatusCode::OK);
        let html = body(response).await;
        assert!(html.contains("app&#60;script&#62;") || html.contains("app&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>App</b>"));
        assert!(!html.contains("\"quoted\""));
        assert!(html.contains("ada@example.com"));
        assert!(html.contains("name=\"request_id\" value=\"req-1\""));
        assert!(html.contains("name=\"csrf_token\" value=\"csrf-1\""));
        // The admin page's stylesheet, not the admin navigation.
        assert!(html.contains("/admin/static/admin.css"));
        assert!(!html.contains("/admin/identity-providers"));
    }

    #[tokio::test]
    async fn the_consent_form_may_post_to_the_clients_origin_and_nowhere_else() {
        let response = security_headers(consent_page("", &pending(), None)).await;
        let csp = response
            .headers()
            .get(CONTENT_SECURITY_POLICY)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            csp,
            crate::admin::CONTENT_SECURITY_POLICY.replace(
                "form-action 'self'",
                "form-action 'self' https://app.example"
            )
        );
        assert!(response.extensions().get::<FormTarget>().is_none());
        let response = security_headers(error_page("", StatusCode::BAD_REQUEST, "no")).await;
        assert_eq!(
            response.headers().get(CONTENT_SECURITY_POLICY),
            Some(&HeaderValue::from_static(
                crate::admin::CONTENT_SECURITY_POLICY
            ))
        );
    }

    #[tokio::test]
    async fn error_page_shows_the_message_escaped() {
        let response = error_page("", StatusCode::BAD_REQUEST, "bad <input>");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let html = body(response).await;
        assert!(html.contains("Authorization failed"));
        assert!(!html.contains("<input>"));
    }
}
