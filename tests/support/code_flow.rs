//! A headless browser for the authorization code flow: a reqwest client with redirects disabled
//! follows /authorize → the test IdP (which signs in without a form) → /authorize/callback →
//! consent, one hop at a time, so each test can stop wherever it wants to look.
#![allow(dead_code)]

use serde_json::Value;

use super::env::{Env, SECRET, client};

pub const RESOURCE: &str = "https://mcp.local.example/mcp";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const RP_CLIENT_ID: &str = "frontdesk-rp";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Turns on the code flow in `config`: the test IdP `corp` as sign-in IdP, and `RESOURCE`.
pub fn enable_code_flow(config: &mut frontdesk::config::Config) {
    config.resources.push(frontdesk::config::ResourceConfig {
        resource: RESOURCE.into(),
        scopes: vec!["mcp:read".into(), "mcp:write".into()],
        authorization_details_types: vec![],
        access_token_lifetime_secs: None,
        single_use_assertions: true,
        require_dpop: false,
        default: false,
    });
    config.authorization.sign_in_idp = Some("corp".into());
    config.authorization.client_id = Some(RP_CLIENT_ID.into());
    config.authorization.client_secret = Some(frontdesk::secret::SecretString::new("rp-secret"));
}

pub fn browser() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

pub fn authorize_params(client_id: &str, redirect_uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", redirect_uri.into()),
        ("state", "client-state-123".into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
        ("resource", RESOURCE.into()),
        ("scope", "mcp:read".into()),
    ]
}

pub fn location(response: &reqwest::Response) -> anyhow::Result<url::Url> {
    let text = response
        .headers()
        .get("location")
        .ok_or_else(|| anyhow::anyhow!("no Location (status {})", response.status()))?
        .to_str()?;
    Ok(url::Url::parse(text)?)
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.to_string())
}

pub fn hidden(html: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| anyhow::anyhow!("no {name} in the page"))?
        + marker.len();
    let end = html[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated {name}"))?;
    Ok(html[start..start + end].to_string())
}

/// `GET /authorize` with `params`; the raw response (303 to the IdP, or an error page).
pub async fn authorize(
    env: &Env,
    browser: &reqwest::Client,
    params: &[(&str, String)],
) -> anyhow::Result<reqwest::Response> {
    Ok(browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(params)?
        ))
        .send()
        .await?)
}

/// Runs /authorize → IdP → callback; returns the consent page HTML and the binding cookie.
pub async fn to_consent(
    env: &Env,
    browser: &reqwest::Client,
    params: &[(&str, String)],
) -> anyhow::Result<(String, String)> {
    let response = authorize(env, browser, params).await?;
    anyhow::ensure!(
        response.status() == 303,
        "authorize: {} {:?}",
        response.status(),
        response.text().await
    );
    let idp_url = location(&response)?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .ok_or_else(|| anyhow::anyhow!("no browser-binding cookie"))?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let response = browser.get(idp_url).send().await?;
    anyhow::ensure!(
        response.status().is_redirection(),
        "idp: {}",
        response.status()
    );
    let back = location(&response)?;
    let response = browser.get(back).header("cookie", &cookie).send().await?;
    anyhow::ensure!(response.status() == 200, "callback: {}", response.status());
    Ok((response.text().await?, cookie))
}

/// Approves the consent page; returns the client's redirect URL (with `code`).
pub async fn approve(
    env: &Env,
    browser: &reqwest::Client,
    html: &str,
    cookie: &str,
) -> anyhow::Result<url::Url> {
    let form = [
        ("request_id", hidden(html, "request_id")?),
        ("csrf_token", hidden(html, "csrf_token")?),
        ("decision", "approve".to_string()),
    ];
    let response = browser
        .post(format!("{}/authorize/consent", env.url))
        .header("origin", origin_of(&env.url)?)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 303, "consent: {}", response.status());
    location(&response)
}

/// The origin of `url` (`http://127.0.0.1:4000` for `http://127.0.0.1:4000/sts`): what a browser
/// sends as `Origin` on a form posted from frontdesk's own page.
pub fn origin_of(url: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(url)?.origin().ascii_serialization())
}

/// `POST /token` with a form and no client authentication (a public client).
pub async fn post_form(env: &Env, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let response = env
        .http
        .post(format!("{}/token", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// A server with the code flow on and two clients of it, both with the code and refresh grants
/// and `REDIRECT`: `public_id` (a public client, `auth_method = "none"`, named "Desktop MCP
/// client") and `confidential_id` (`client_secret_basic` with `SECRET`).
pub async fn start_with_app_clients(public_id: &str, confidential_id: &str) -> anyhow::Result<Env> {
    let mut public = client(public_id, "none", &[]);
    public.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    public.redirect_uris = vec![REDIRECT.into()];
    public.client_name = Some("Desktop MCP client".into());
    let mut confidential = client(confidential_id, "client_secret_basic", &[]);
    confidential.secret_hash =
        Some(frontdesk::secret::hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    confidential.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    confidential.redirect_uris = vec![REDIRECT.into()];
    Env::start_with(move |config| {
        enable_code_flow(config);
        config.clients.push(public);
        config.clients.push(confidential);
    })
    .await
}

/// Runs the flow for `client_id` through sign-in and consent; the code the client receives.
pub async fn code_for(env: &Env, client_id: &str) -> anyhow::Result<String> {
    code_with(env, client_id, &[]).await
}

/// [`code_for`], the authorization request carrying `extra` parameters too.
pub async fn code_with(
    env: &Env,
    client_id: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<String> {
    let browser = browser()?;
    let mut params = authorize_params(client_id, REDIRECT);
    params.extend_from_slice(extra);
    let (html, cookie) = to_consent(env, &browser, &params).await?;
    let redirect = approve(env, &browser, &html, &cookie).await?;
    query(&redirect, "code").ok_or_else(|| anyhow::anyhow!("no code in {redirect}"))
}
