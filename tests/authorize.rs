//! The authorization code flow end to end over real HTTP: a client sends the browser to
//! frontdesk's /authorize, frontdesk (an OpenID Connect relying party) sends it to the real test
//! IdP (tests/idp, whose /authorize redirects straight back with a code), the callback validates
//! the ID token, the consent page is approved with its CSRF token, the client redeems the code
//! with its PKCE verifier and refreshes with rotation and reuse detection. A reqwest client with
//! redirects disabled plays the browser, one hop at a time.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use code_flow::{
    CHALLENGE, REDIRECT, RESOURCE, RP_CLIENT_ID, VERIFIER, hidden, location, origin_of, query,
};
use env::*;
use frontdesk::config::{ClientConfig, ResourceConfig};
use frontdesk::secret::{SecretString, hash_secret};
use serde_json::{Value, json};

const APP: &str = "mcp-app";
const TRUSTED_APP: &str = "trusted-app";

fn code_client(id: &str) -> anyhow::Result<ClientConfig> {
    let mut app = client(id, "client_secret_basic", &[]);
    app.secret_hash = Some(hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    app.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    app.redirect_uris = vec![REDIRECT.into(), "https://app.example/cb".into()];
    Ok(app)
}

async fn start() -> anyhow::Result<(Env, reqwest::Client)> {
    start_on(None).await
}

/// [`start`] on the database `database_url` instead of the default SQLite file.
async fn start_on(database_url: Option<String>) -> anyhow::Result<(Env, reqwest::Client)> {
    start_configured(database_url, |_| {}).await
}

/// [`start_on`], then `customize` changes the configuration before the server starts.
async fn start_configured(
    database_url: Option<String>,
    customize: impl FnOnce(&mut frontdesk::config::Config) + Send + 'static,
) -> anyhow::Result<(Env, reqwest::Client)> {
    let app = code_client(APP)?;
    let trusted = code_client(TRUSTED_APP)?;
    let env = Env::start_with(move |config| {
        if let Some(url) = database_url {
            config.database.url = SecretString::new(url);
        }
        config.resources.push(ResourceConfig {
            resource: RESOURCE.into(),
            scopes: vec!["mcp:read".into(), "mcp:write".into()],
            authorization_details_types: vec![],
            access_token_lifetime_secs: None,
            single_use_assertions: true,
            require_dpop: false,
            default: false,
        });
        config.clients.push(app);
        config.clients.push(trusted);
        config.authorization.sign_in_idp = Some("corp".into());
        config.authorization.client_id = Some(RP_CLIENT_ID.into());
        config.authorization.client_secret = Some(SecretString::new("rp-secret"));
        config.authorization.pre_approved_clients = vec![TRUSTED_APP.into()];
        customize(config);
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com" }))
        .await?;
    let browser = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok((env, browser))
}

fn authorize_params(client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", REDIRECT.into()),
        ("state", "client-state-123".into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
        ("resource", RESOURCE.into()),
        ("scope", "mcp:read".into()),
    ]
}

/// What the browser holds after /authorize.
struct Started {
    cookie: String,
    idp_url: url::Url,
}

async fn begin(
    env: &Env,
    browser: &reqwest::Client,
    params: &[(&str, String)],
) -> anyhow::Result<Started> {
    let response = browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(params)?
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let idp_url = location(&response)?;
    assert!(idp_url.as_str().starts_with(&env.idp.issuer), "{idp_url}");
    assert_eq!(
        query(&idp_url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&idp_url, "client_id").as_deref(), Some(RP_CLIENT_ID));
    assert!(query(&idp_url, "nonce").is_some());
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .ok_or_else(|| anyhow::anyhow!("no browser-binding cookie"))?
        .to_str()?;
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    Ok(Started { cookie, idp_url })
}

/// Follows the IdP's redirect back; returns the callback URL.
async fn at_idp(browser: &reqwest::Client, started: &Started) -> anyhow::Result<url::Url> {
    let response = browser.get(started.idp_url.clone()).send().await?;
    assert!(response.status().is_redirection(), "{}", response.status());
    location(&response)
}

async fn callback(
    browser: &reqwest::Client,
    started: &Started,
    url: url::Url,
) -> anyhow::Result<reqwest::Response> {
    Ok(browser
        .get(url)
        .header("cookie", &started.cookie)
        .send()
        .await?)
}

fn assert_secure_page(response: &reqwest::Response) {
    assert_page_headers(response, frontdesk::admin::CONTENT_SECURITY_POLICY);
}

/// The consent page's policy: the admin page's, with the client's origin as a form target (the
/// consent form is answered with a redirect there).
fn assert_consent_page(response: &reqwest::Response, redirect_uri: &str) {
    let origin = url::Url::parse(redirect_uri)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default();
    let policy = frontdesk::admin::CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'",
        &format!("form-action 'self' {origin}"),
    );
    assert_page_headers(response, &policy);
}

fn assert_page_headers(response: &reqwest::Response, policy: &str) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // The admin page's policy: one for every HTML page frontdesk serves.
    assert_eq!(header("content-security-policy"), policy);
    assert_eq!(header("x-frame-options"), "DENY");
    // `same-origin`, not `no-referrer`: the consent form's post then carries the page's real
    // `Origin`, so `Origin: null` can be refused; no referrer leaves for another origin.
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("cache-control"), "no-store");
    assert!(response.headers().get("location").is_none());
}

/// Runs the whole browser part with consent approved; returns the client's redirect URL.
async fn authorize_and_approve(env: &Env, browser: &reqwest::Client) -> anyhow::Result<url::Url> {
    authorize_and_approve_with(env, browser, &authorize_params(APP)).await
}

/// [`authorize_and_approve`] with the authorization request `params` (for [`APP`]).
async fn authorize_and_approve_with(
    env: &Env,
    browser: &reqwest::Client,
    params: &[(&str, String)],
) -> anyhow::Result<url::Url> {
    let redirect_uri = params
        .iter()
        .find(|(name, _)| *name == "redirect_uri")
        .map_or(REDIRECT, |(_, value)| value.as_str());
    let started = begin(env, browser, params).await?;
    let back = at_idp(browser, &started).await?;
    let response = callback(browser, &started, back).await?;
    assert_eq!(response.status(), 200);
    assert_consent_page(&response, redirect_uri);
    let html = response.text().await?;
    assert!(html.contains(APP) && html.contains(RESOURCE) && html.contains("mcp:read"));
    assert!(html.contains("ada@example.com"), "{html}");
    let form = [
        ("request_id", hidden(&html, "request_id")?),
        ("csrf_token", hidden(&html, "csrf_token")?),
        ("decision", "approve".to_string()),
    ];
    let response = browser
        .post(format!("{}/authorize/consent", env.url))
        .header("origin", origin_of(&env.url)?)
        .header("cookie", &started.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    let redirect = location(&response)?;
    assert!(redirect.as_str().starts_with(redirect_uri), "{redirect}");
    assert_eq!(
        query(&redirect, "state").as_deref(),
        Some("client-state-123")
    );
    assert_eq!(query(&redirect, "iss").as_deref(), Some(env.url.as_str()));
    Ok(redirect)
}

async fn redeem(env: &Env, code: &str, verifier: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    env.post_token(&form, Some((APP, SECRET))).await
}

async fn refresh(env: &Env, token: &str) -> anyhow::Result<(u16, Value)> {
    env.post_token(
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        Some((APP, SECRET)),
    )
    .await
}

async fn active(env: &Env, token: &str) -> anyhow::Result<bool> {
    let response = env
        .http
        .post(format!("{}/introspect", env.url))
        .basic_auth(APP, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", token)])?)
        .send()
        .await?;
    let body: Value = response.json().await?;
    Ok(body["active"] == json!(true))
}

/// Rows: META-18.
#[tokio::test]
async fn full_flow_consent_code_token_refresh_rotation_and_reuse() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let metadata: Value = env.metadata().await?;
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{}/authorize", env.url)
    );
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    let grants = metadata["grant_types_supported"].to_string();
    assert!(grants.contains("\"authorization_code\"") && grants.contains("\"refresh_token\""));

    let redirect = authorize_and_approve(&env, &browser).await?;
    let code = query(&redirect, "code").expect("code");
    assert_eq!(URL_SAFE_NO_PAD.decode(&code)?.len(), 32);

    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp:read");
    let access = body["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let refresh1 = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let verified = env.verify_issued(&access, RESOURCE, "at+jwt").await?;
    let claims = &verified["payload"];
    assert_eq!(claims["sub"], "johndoe");
    assert_eq!(claims["client_id"], APP);
    assert_eq!(claims["scope"], "mcp:read");
    assert_eq!(claims["aud"], RESOURCE);
    assert!(active(&env, &access).await?);

    // Rotation: each refresh returns a new refresh token; the old one is spent.
    let (status, body) = refresh(&env, &refresh1).await?;
    assert_eq!(status, 200, "{body}");
    let refresh2 = body["refresh_token"].as_str().expect("rotated").to_string();
    assert_ne!(refresh1, refresh2);
    let access2 = body["access_token"].as_str().expect("access").to_string();
    env.verify_issued(&access2, RESOURCE, "at+jwt").await?;
    // Narrowing is allowed, widening is not.
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh2.as_str()),
                ("scope", "mcp:write"),
            ],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // That refusal issued nothing, so refresh2 is still good; once spent, reusing it revokes
    // the family.
    let (status, body) = refresh(&env, &refresh2).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = refresh(&env, &refresh2).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!active(&env, &access).await?, "family revoked on reuse");
    assert!(!active(&env, &access2).await?);

    // Another refresh token of a fresh flow: reusing a rotated one revokes its successor too.
    let redirect = authorize_and_approve(&env, &browser).await?;
    let code = query(&redirect, "code").expect("code");
    let (_, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    let first = body["refresh_token"].as_str().expect("refresh").to_string();
    let (_, body) = refresh(&env, &first).await?;
    let second = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = refresh(&env, &first).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&env, &second).await?;
    assert_eq!(status, 400, "the successor died with its family");
    // Another client cannot use this client's refresh token.
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", second.as_str()),
            ],
            Some((TRUSTED_APP, SECRET)),
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let events = env.audit_log().await?;
    let has = |event: &str, reason: &str| {
        events.iter().any(|record| {
            record.event.event == event && record.event.reason.as_deref() == Some(reason)
        })
    };
    assert!(has("authorize_consent", "user_approved"));
    assert!(has("authorize_callback", "signed_in_awaiting_consent"));
    assert!(has("refresh_token", "refresh_token_reused"));
    assert!(events.iter().any(|r| r.event.event == "authorization_code"
        && r.event.decision.as_str() == "issued"));
    Ok(())
}

/// RFC 6749 §6 retires a refresh token once its successor is issued. A refresh refused for
/// the client's own mistake (a scope beyond the grant, another resource) issues nothing, so the
/// token must stay good and a retry with it is not reuse: it used to be spent by the refusal,
/// and the retry then revoked the whole family as if the token had been stolen.
#[tokio::test]
async fn a_refused_refresh_leaves_the_refresh_token_usable() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access").to_string();
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    for (name, value, error) in [
        ("scope", "mcp:write", "invalid_scope"),
        ("resource", "https://other.example/mcp", "invalid_target"),
    ] {
        let (status, body) = env
            .post_token(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    (name, value),
                ],
                Some((APP, SECRET)),
            )
            .await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    assert!(active(&env, &access).await?, "the family lives on");
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(status, 200, "{body}");
    assert!(active(&env, &access).await?);
    Ok(())
}

/// RFC 6749 §6: "If a new refresh token is issued, the refresh token scope MUST be identical to
/// that of the refresh token included by the client in the request." A refresh that narrows the
/// access token's scope leaves the new refresh token's scope whole; it used to narrow it too, so
/// one narrowed refresh lost the rest of the user's consent for good.
#[tokio::test]
async fn a_narrowed_refresh_keeps_the_refresh_tokens_scope() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let mut params = authorize_params(APP);
    params[7].1 = "mcp:read mcp:write".into();
    let redirect = authorize_and_approve_with(&env, &browser, &params).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read mcp:write");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("scope", "mcp:read"),
            ],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read", "the access token is narrowed");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("scope", "mcp:write"),
            ],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:write");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read mcp:write");
    Ok(())
}

/// RFC 8252 §7.3, OAuth 2.1 §8.4.2: a loopback redirect URI may name any port at the time of
/// the request (a native app listens where the operating system lets it; a Client ID Metadata
/// Document cannot know the port). Everything else is still matched exactly (RFC 9700 §4.1.3),
/// and the code is redeemed only with the redirect URI it was delivered to.
#[tokio::test]
async fn a_loopback_redirect_uri_may_name_any_port() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let ephemeral = "http://127.0.0.1:51234/callback";
    let mut params = authorize_params(APP);
    params[2].1 = ephemeral.into();
    let redirect = authorize_and_approve_with(&env, &browser, &params).await?;
    let code = query(&redirect, "code").expect("code");
    let redeem_at = |code: String, redirect_uri: &'static str| {
        let env = &env;
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
                ("code_verifier", VERIFIER),
            ];
            env.post_token(&form, Some((APP, SECRET))).await
        }
    };
    let (status, body) = redeem_at(code, ephemeral).await?;
    assert_eq!(status, 200, "{body}");
    // The registered port is not the one the code went to.
    let redirect = authorize_and_approve_with(&env, &browser, &params).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = redeem_at(code, REDIRECT).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Only the port may differ, and only on loopback.
    for unregistered in [
        "http://127.0.0.1:51234/callback/",
        "http://127.0.0.1:51234/callback?x=1",
        "http://127.0.0.2:9/callback",
        "https://app.example:8443/cb",
    ] {
        let mut params = authorize_params(APP);
        params[2].1 = unregistered.into();
        let response = browser
            .get(format!(
                "{}/authorize?{}",
                env.url,
                serde_urlencoded::to_string(&params)?
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 400, "{unregistered}");
        assert!(response.headers().get("location").is_none());
    }
    Ok(())
}

/// RFC 8707 §2.2: a `resource` sent with the code must be the one the code was issued for
/// (`invalid_target` otherwise); it used to be ignored, and the client got a token for another
/// resource than the one it named.
#[tokio::test]
async fn a_code_redeemed_for_another_resource_is_invalid_target() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let redeem_for = |code: String, resource: &'static str| {
        let env = &env;
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("resource", resource),
            ];
            env.post_token(&form, Some((APP, SECRET))).await
        }
    };
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem_for(code, "https://other.example/mcp").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem_for(code, RESOURCE).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// A `state` is stored with the pending request before anyone signs in: one longer than 4096
/// bytes is refused (redirected as `invalid_request`) instead of being stored, so an anonymous
/// request cannot make the server store the few hundred kilobytes a URL can carry.
#[tokio::test]
async fn an_oversized_state_is_refused_before_anything_is_stored() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let mut params = authorize_params(APP);
    params[3].1 = "s".repeat(4097);
    let response = browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(&params)?
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    let url = location(&response)?;
    assert!(url.as_str().starts_with(REDIRECT), "{url}");
    assert_eq!(query(&url, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&url, "iss").as_deref(), Some(env.url.as_str()));
    assert!(
        response.headers().get("set-cookie").is_none(),
        "nothing pending"
    );
    let events = env.audit_log().await?;
    assert!(events.iter().any(
        |r| r.event.event == "authorize" && r.event.reason.as_deref() == Some("state_too_long")
    ));
    // 4096 bytes are fine.
    params[3].1 = "s".repeat(4096);
    begin(&env, &browser, &params).await?;
    Ok(())
}

/// RFC 6749 §4.1.2.1: a request without `response_type` misses a required parameter, which is
/// `invalid_request`; `unsupported_response_type` is for a type the server does not offer. A
/// missing one used to be answered `unsupported_response_type`.
#[tokio::test]
async fn a_missing_response_type_is_invalid_request() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let missing: Vec<_> = authorize_params(APP)
        .into_iter()
        .filter(|(name, _)| *name != "response_type")
        .collect();
    let mut unsupported = authorize_params(APP);
    unsupported[0].1 = "token".into();
    for (params, error) in [
        (missing, "invalid_request"),
        (unsupported, "unsupported_response_type"),
    ] {
        let response = browser
            .get(format!(
                "{}/authorize?{}",
                env.url,
                serde_urlencoded::to_string(&params)?
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 303);
        let url = location(&response)?;
        assert!(url.as_str().starts_with(REDIRECT), "{url}");
        assert_eq!(query(&url, "error").as_deref(), Some(error), "{url}");
        assert_eq!(query(&url, "state").as_deref(), Some("client-state-123"));
    }
    Ok(())
}

/// Turns the sign-in identity provider `corp` on or off as the admin page would (a stored trust
/// change), and has the server pick it up.
async fn set_idp_enabled(env: &Env, enabled: bool) -> anyhow::Result<()> {
    change_corp(env, |corp| corp["enabled"] = json!(enabled)).await
}

/// Changes the stored sign-in identity provider `corp` as the admin page would, and has the
/// server pick it up.
async fn change_corp(env: &Env, change: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    use frontdesk::store::{TrustKind, TrustStore};
    let store = &env.server.state.store;
    let mut corp = store
        .list_trust(TrustKind::IdentityProvider)
        .await?
        .into_iter()
        .find(|document| document.id == "corp")
        .ok_or_else(|| anyhow::anyhow!("no corp"))?;
    change(&mut corp.document);
    store
        .upsert_trust(TrustKind::IdentityProvider, &corp)
        .await?;
    env.server.state.tokens.trust.reload().await?;
    Ok(())
}

/// Disabling the identity provider users signed in at ends what their sign-ins granted: its
/// codes and refresh tokens get no new access token (`invalid_grant`), as its users' refresh
/// tokens already got no ID-JAG (decisions §22). The refresh_token grant used to go on issuing
/// access tokens for the refresh token's whole lifetime. The refusal spends nothing: once the
/// provider is enabled again the refresh token works.
#[tokio::test]
async fn a_disabled_sign_in_idp_ends_its_codes_and_refresh_tokens() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");

    set_idp_enabled(&env, false).await?;
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let events = env.audit_log().await?;
    for reason in ["refresh_token_idp_untrusted", "code_idp_untrusted"] {
        assert!(
            events
                .iter()
                .any(|r| r.event.reason.as_deref() == Some(reason)),
            "{reason}"
        );
    }

    set_idp_enabled(&env, true).await?;
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// The sign-in identity provider's `condition` is evaluated again at every refresh, over the
/// user's claims from their latest sign-in: an administrator who tightens it ends the sessions
/// it no longer admits at their next refresh (`invalid_grant`,
/// `refresh_token_idp_condition_denied`), not at the refresh token's expiry. The refusal spends
/// nothing: with the condition loosened again the same refresh token works.
#[tokio::test]
async fn a_tightened_idp_condition_ends_refreshes_it_no_longer_admits() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["refresh_token"].as_str().expect("refresh").to_string();

    // A condition over the remembered claims that this user does not meet; the request's
    // grant type is visible to it.
    change_corp(&env, |corp| {
        corp["condition"] =
            json!("request.grant_type == 'refresh_token' && subject.sub == 'someone-else'");
    })
    .await?;
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let events = env.audit_log().await?;
    assert!(
        events
            .iter()
            .any(|r| r.event.reason.as_deref() == Some("refresh_token_idp_condition_denied"))
    );

    // A condition the user meets: the token, not spent by the refusal, works.
    change_corp(&env, |corp| {
        corp["condition"] = json!("request.grant_type == 'refresh_token' && has(subject.sub)");
    })
    .await?;
    let (status, body) = refresh(&env, &token).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn pre_approved_client_skips_consent() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let started = begin(&env, &browser, &authorize_params(TRUSTED_APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let response = callback(&browser, &started, back).await?;
    assert_eq!(response.status(), 303);
    let redirect = location(&response)?;
    assert!(query(&redirect, "code").is_some(), "{redirect}");
    assert_eq!(query(&redirect, "iss").as_deref(), Some(env.url.as_str()));
    Ok(())
}

#[tokio::test]
async fn reused_code_is_refused_and_revokes_what_it_issued() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let redirect = authorize_and_approve(&env, &browser).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access").to_string();
    let refresh_token = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!active(&env, &access).await?);
    let (status, _) = refresh(&env, &refresh_token).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn pkce_verifier_missing_or_wrong_and_redirect_uri_mismatch() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    // Missing verifier.
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem(&env, &code, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Wrong verifier.
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let wrong = "x".repeat(43);
    let (status, body) = redeem(&env, &code, Some(&wrong)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Codes are single use even when the first attempt failed.
    let (status, _) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 400);
    // Another registered redirect URI than the one the code was delivered to.
    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    Ok(())
}

/// OAuth 2.1 §4.1.1 and §4.1.3: `redirect_uri` is optional for a client with a single
/// registered redirect URI. Left out of the authorization request, the answer goes to that URI,
/// and the token request may leave it out too.
#[tokio::test]
async fn a_client_with_one_redirect_uri_may_leave_it_out() -> anyhow::Result<()> {
    let (env, browser) = start_configured(None, |config| {
        for client in &mut config.clients {
            if client.client_id == APP {
                client.redirect_uris = vec![REDIRECT.into()];
            }
        }
    })
    .await?;
    let params = without_redirect_uri(authorize_params(APP));
    let redirect = authorize_and_approve_with(&env, &browser, &params).await?;
    assert!(redirect.as_str().starts_with(REDIRECT), "{redirect}");
    let code = query(&redirect, "code").expect("code");
    let (status, body) = redeem_without_redirect_uri(&env, &code).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// With several registered redirect URIs, `redirect_uri` is required: left out of the
/// authorization request it is an error page (never a redirect to a guess), left out of the
/// token request it is `invalid_request` and the code is not spent.
#[tokio::test]
async fn a_client_with_several_redirect_uris_must_name_one() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let params = without_redirect_uri(authorize_params(APP));
    let response = browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(&params)?
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());

    let code = query(&authorize_and_approve(&env, &browser).await?, "code").expect("code");
    let (status, body) = redeem_without_redirect_uri(&env, &code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "the code was not spent: {body}");
    Ok(())
}

/// Redeems `code` as [`APP`] without a `redirect_uri`.
async fn redeem_without_redirect_uri(env: &Env, code: &str) -> anyhow::Result<(u16, Value)> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
    ];
    env.post_token(&form, Some((APP, SECRET))).await
}

fn without_redirect_uri(params: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    params
        .into_iter()
        .filter(|(name, _)| *name != "redirect_uri")
        .collect()
}

#[tokio::test]
async fn bad_authorization_requests() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let get = |params: Vec<(&'static str, String)>| {
        let request = browser.get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(&params).unwrap_or_default()
        ));
        async move { request.send().await }
    };
    // Unknown client and unregistered redirect URI: an error page, never a redirect.
    let mut params = authorize_params(APP);
    params[1].1 = "nobody".into();
    let response = get(params).await?;
    assert_eq!(response.status(), 400);
    assert_secure_page(&response);
    let mut params = authorize_params(APP);
    params[2].1 = "https://evil.example/cb".into();
    let response = get(params).await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    let mut params = authorize_params(APP);
    params[2].1 = format!("{REDIRECT}/"); // exact match only
    assert_eq!(get(params).await?.status(), 400);

    // Everything else is redirected with error, state and iss.
    let expect_error = |response: reqwest::Response, error: &str| -> anyhow::Result<()> {
        assert_eq!(response.status(), 303);
        let url = location(&response)?;
        assert!(url.as_str().starts_with(REDIRECT), "{url}");
        assert_eq!(query(&url, "error").as_deref(), Some(error), "{url}");
        assert_eq!(query(&url, "state").as_deref(), Some("client-state-123"));
        assert_eq!(query(&url, "iss").as_deref(), Some(env.url.as_str()));
        Ok(())
    };
    let mut params = authorize_params(APP);
    params[5].1 = "plain".into();
    expect_error(get(params).await?, "invalid_request")?;
    let params: Vec<_> = authorize_params(APP)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    expect_error(get(params).await?, "invalid_request")?;
    let mut params = authorize_params(APP);
    params[0].1 = "token".into();
    expect_error(get(params).await?, "unsupported_response_type")?;
    let mut params = authorize_params(APP);
    params[6].1 = "https://not-protected.example/".into();
    expect_error(get(params).await?, "invalid_target")?;
    let mut params = authorize_params(APP);
    params[7].1 = "admin".into();
    expect_error(get(params).await?, "invalid_scope")?;
    // More scope values than any request needs: refused before the quadratic de-duplication.
    let mut params = authorize_params(APP);
    params[7].1 = vec!["mcp:read"; 257].join(" ");
    let response = get(params).await?;
    let url = location(&response)?;
    assert!(
        query(&url, "error_description")
            .is_some_and(|text| text.contains("more values than this server accepts")),
        "{url}"
    );
    expect_error(response, "invalid_scope")?;
    // A client not allowed the grant.
    let mut params = authorize_params(APP);
    params[1].1 = AGENT.into();
    assert_eq!(
        get(params).await?.status(),
        400,
        "agent has no redirect URIs"
    );

    let events = env.audit_log().await?;
    assert!(events.iter().any(|r| r.event.event == "authorize"
        && r.event.reason.as_deref() == Some("pkce_method_not_s256")));
    assert!(events.iter().any(
        |r| r.event.event == "authorize" && r.event.reason.as_deref() == Some("unknown_client")
    ));
    assert!(
        events.iter().any(|r| r.event.event == "authorize"
            && r.event.reason.as_deref() == Some("too_many_scopes"))
    );
    Ok(())
}

/// A NUL character in an authorization request (here in `state`, whose syntax is visible ASCII,
/// RFC 6749 Appendix A.5) is refused with an error page, not redirected, and audited; it used to
/// start the sign-in and come back to the client in the redirect. On PostgreSQL, which cannot
/// store NUL (decisions §30).
#[tokio::test]
async fn a_nul_character_in_an_authorization_request_is_refused_on_postgres() -> anyhow::Result<()>
{
    let Some(database) = env::test_db::TestDatabase::postgres("authorize_nul").await else {
        return Ok(());
    };
    let (env, browser) = start_on(Some(database.url().to_string())).await?;
    let mut params = authorize_params(APP);
    params[3].1 = "client\0state".into();
    let response = browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(&params)?
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await?.contains("NUL character"));
    let events = env.audit_log().await?;
    assert!(events.iter().any(
        |r| r.event.event == "authorize" && r.event.reason.as_deref() == Some("nul_character")
    ));
    // The same request without the NUL starts the sign-in.
    begin(&env, &browser, &authorize_params(APP)).await?;
    Ok(())
}

/// `len` alphanumeric characters no compressor shortens much (an xorshift sequence): PostgreSQL
/// compresses long index keys, so a repeated character would fit where this does not.
fn incompressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// OIDC Core §2: an ID token's `sub` is at most 255 characters. One a byte longer is refused at
/// the callback with its own audit reason; one of exactly 255 signs in. On PostgreSQL a `sub`
/// past 2.7 KB used to reach the user-claims upsert and fail the sign-in with a 500.
async fn sign_in_sub_bound(database_url: Option<String>) -> anyhow::Result<()> {
    let (env, browser) = start_on(database_url).await?;
    for too_long in ["u".repeat(256), incompressible(3000)] {
        env.idp
            .set_id_token_claims(json!({ "email": "ada@example.com", "sub": too_long }))
            .await?;
        let started = begin(&env, &browser, &authorize_params(APP)).await?;
        let back = at_idp(&browser, &started).await?;
        let response = callback(&browser, &started, back).await?;
        assert_eq!(response.status(), 400, "{}", too_long.len());
        assert!(response.headers().get("location").is_none());
    }
    let refused = env
        .audit_log()
        .await?
        .iter()
        .filter(|r| r.event.event == "authorize_callback")
        .filter(|r| r.event.reason.as_deref() == Some("id_token_sub_too_long"))
        .count();
    assert_eq!(refused, 2);

    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "sub": "u".repeat(255) }))
        .await?;
    authorize_and_approve(&env, &browser).await?;
    Ok(())
}

#[tokio::test]
async fn an_id_token_sub_longer_than_oidc_allows_is_refused_at_sign_in() -> anyhow::Result<()> {
    sign_in_sub_bound(None).await
}

#[tokio::test]
async fn an_id_token_sub_longer_than_oidc_allows_is_refused_at_sign_in_on_postgres()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("authorize_long_sub").await else {
        return Ok(());
    };
    sign_in_sub_bound(Some(database.url().to_string())).await
}

/// A `subject_mapping` builds the local subject from the IdP's claims, so it can be longer than
/// any `sub`: held to the same 255 bytes (`subject_too_long`, the client gets `access_denied`).
#[tokio::test]
async fn a_mapped_subject_longer_than_255_bytes_is_refused_at_sign_in() -> anyhow::Result<()> {
    let (env, browser) = start_configured(None, |config| {
        let corp = &mut config.identity_providers[0];
        assert_eq!(corp.id, "corp");
        corp.subject_mode = "mapped".into();
        corp.subject_mapping = Some("subject.employee".into());
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "employee": "e".repeat(256) }))
        .await?;
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let response = callback(&browser, &started, back).await?;
    assert_eq!(response.status(), 303);
    let redirect = location(&response)?;
    assert_eq!(query(&redirect, "error").as_deref(), Some("access_denied"));
    let events = env.audit_log().await?;
    assert!(events.iter().any(|r| r.event.event == "authorize_callback"
        && r.event.reason.as_deref() == Some("subject_too_long")));

    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "employee": "e".repeat(255) }))
        .await?;
    authorize_and_approve(&env, &browser).await?;
    Ok(())
}

#[tokio::test]
async fn callback_refuses_wrong_state_browser_nonce_and_audience() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    // Wrong state.
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let mut back = at_idp(&browser, &started).await?;
    let code = query(&back, "code").expect("code");
    back.set_query(Some(&format!("code={code}&state=forged")));
    let response = callback(&browser, &started, back).await?;
    assert_eq!(response.status(), 400);
    assert_secure_page(&response);

    // Right state, another browser (no cookie).
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let response = browser.get(back).send().await?;
    assert_eq!(response.status(), 400);

    // An ID token for another audience.
    env.idp
        .set_id_token_claims(json!({ "aud": "someone-else" }))
        .await?;
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let response = callback(&browser, &started, back).await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());

    // A wrong nonce.
    env.idp
        .set_id_token_claims(json!({ "nonce": "replayed" }))
        .await?;
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let response = callback(&browser, &started, back).await?;
    assert_eq!(response.status(), 400);

    let events = env.audit_log().await?;
    let reasons: Vec<&str> = events
        .iter()
        .filter(|r| r.event.event == "authorize_callback")
        .filter_map(|r| r.event.reason.as_deref())
        .collect();
    for reason in [
        "rp_state_unknown",
        "browser_mismatch",
        "id_token_wrong_audience",
        "id_token_wrong_nonce",
    ] {
        assert!(reasons.contains(&reason), "{reason} not in {reasons:?}");
    }
    Ok(())
}

#[tokio::test]
async fn consent_needs_the_csrf_token_and_deny_redirects_access_denied() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let html = callback(&browser, &started, back).await?.text().await?;
    let request_id = hidden(&html, "request_id")?;
    let post = |csrf: String, decision: &'static str, cookie: String| {
        let request = browser
            .post(format!("{}/authorize/consent", env.url))
            .header("origin", &env.url)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("request_id", request_id.clone()),
                    ("csrf_token", csrf),
                    ("decision", decision.to_string()),
                ])
                .unwrap_or_default(),
            );
        async move { request.send().await }
    };
    let response = post("forged".into(), "approve", started.cookie.clone()).await?;
    assert_eq!(response.status(), 403);
    let csrf = hidden(&html, "csrf_token")?;
    let response = post(csrf.clone(), "approve", "fd_authz_x=y".into()).await?;
    assert_eq!(response.status(), 403, "the CSRF token alone is not enough");
    let response = post(csrf.clone(), "deny", started.cookie.clone()).await?;
    assert_eq!(response.status(), 303);
    let url = location(&response)?;
    assert_eq!(query(&url, "error").as_deref(), Some("access_denied"));
    assert!(query(&url, "code").is_none());
    // Decided once.
    let response = post(csrf, "approve", started.cookie.clone()).await?;
    assert_eq!(response.status(), 400);
    Ok(())
}

/// Consent CSRF (RFC 6749 §10.12, RFC 9700 §4.7): the consent form must be posted from
/// frontdesk's own page. A post naming another site (its `Origin`, or `Sec-Fetch-Site:
/// cross-site` beside the `Origin: null` of a no-referrer page), saying only `Origin: null` (a
/// page of another site with its own `no-referrer` policy, in a browser without Fetch metadata)
/// or naming no origin at all is refused with a 403 page saying why before anything is decided —
/// even with the request's CSRF token and the browser's binding cookie, as a page that had
/// learnt them would send. The refusals are audited and issue no code; the user's own post from
/// the page, as a browser sends it (`Sec-Fetch-Site: same-origin`, even beside `Origin: null`),
/// then still approves.
#[tokio::test]
async fn a_consent_post_from_another_site_or_naming_no_origin_is_refused_and_issues_nothing()
-> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let started = begin(&env, &browser, &authorize_params(APP)).await?;
    let back = at_idp(&browser, &started).await?;
    let html = callback(&browser, &started, back).await?.text().await?;
    let form = serde_urlencoded::to_string([
        ("request_id", hidden(&html, "request_id")?),
        ("csrf_token", hidden(&html, "csrf_token")?),
        ("decision", "approve".to_string()),
    ])?;
    let post = |headers: &[(&'static str, &'static str)]| {
        let mut request = browser
            .post(format!("{}/authorize/consent", env.url))
            .header("cookie", &started.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            assert!(response.headers().get("location").is_none());
            assert_secure_page(&response);
            anyhow::Ok((status, response.text().await?))
        }
    };
    let issuer = origin_of(&env.url)?;
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        &[("origin", "null"), ("sec-fetch-site", "same-site")],
    ] {
        let (status, page) = post(headers).await?;
        assert_eq!(status, 403, "{headers:?}");
        assert!(
            page.contains(&format!("must be submitted from {issuer}")),
            "{page}"
        );
    }
    let (status, page) = post(&[]).await?;
    assert_eq!(status, 403);
    assert!(
        page.contains("without an Origin or Sec-Fetch-Site header"),
        "{page}"
    );
    let (status, page) = post(&[("origin", "null")]).await?;
    assert_eq!(status, 403, "Origin: null alone");
    assert!(
        page.contains("with `Origin: null` and without a Sec-Fetch-Site header"),
        "{page}"
    );

    let events = env.audit_log().await?;
    let consents: Vec<_> = events
        .iter()
        .filter(|r| r.event.event == "authorize_consent")
        .collect();
    let mut reasons: Vec<_> = consents
        .iter()
        .filter_map(|r| r.event.reason.as_deref())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "cross_site_post",
            "cross_site_post",
            "cross_site_post",
            "origin_missing",
            "origin_null"
        ]
    );
    assert!(
        consents
            .iter()
            .all(|r| r.event.decision == frontdesk::store::Decision::Denied)
    );

    // Nothing was decided: the user's own post from the page approves.
    let response = browser
        .post(format!("{}/authorize/consent", env.url))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", &started.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    let redirect = location(&response)?;
    assert!(query(&redirect, "code").is_some(), "{redirect}");
    Ok(())
}

/// On an https issuer the browser-binding cookie of a pending request is `__Secure-fd_authz_…`
/// (`Secure`; it keeps `Path=/authorize`, so not `__Host-`): a plain-http page of the same host
/// cannot plant or overwrite it — the admin session cookie's naming rule. Only that name binds:
/// the same value under the bare name is another browser. The flow works with it, and the
/// cookie is cleared under its prefixed name. (The server is reached over plain http, as behind
/// a TLS-terminating proxy, with the `Origin` the browser would send; the IdP's redirect to the
/// https callback is followed to the server's own address.)
#[tokio::test]
async fn an_https_issuer_prefixes_the_browser_binding_cookie_and_the_flow_still_works()
-> anyhow::Result<()> {
    for path in ["", "/sts"] {
        let issuer = format!("https://login.frontdesk.test{path}");
        let configured = issuer.clone();
        let (env, browser) =
            start_configured(None, move |config| config.issuer = configured).await?;
        let base = format!("http://{}{path}", env.server.addr);
        let response = browser
            .get(format!(
                "{base}/authorize?{}",
                serde_urlencoded::to_string(authorize_params(APP))?
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 303, "{:?}", response.text().await);
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(set_cookie.starts_with("__Secure-fd_authz_"), "{set_cookie}");
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            &format!("Path={path}/authorize;"),
            "Secure",
        ] {
            assert!(
                format!("{set_cookie};").contains(attribute),
                "{attribute} missing: {set_cookie}"
            );
        }
        let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
        let at_idp = browser.get(location(&response)?).send().await?;
        let back = location(&at_idp)?;
        assert!(
            back.as_str()
                .starts_with(&format!("{issuer}/authorize/callback?")),
            "{back}"
        );
        let back = format!(
            "{base}/authorize/callback?{}",
            back.query().unwrap_or_default()
        );

        let bare = cookie.trim_start_matches("__Secure-");
        let response = browser.get(&back).header("cookie", bare).send().await?;
        assert_eq!(response.status(), 400, "the bare name binds nothing");

        let response = browser.get(&back).header("cookie", &cookie).send().await?;
        assert_eq!(response.status(), 200);
        let html = response.text().await?;
        assert!(
            html.contains(&format!(r#"action="{path}/authorize/consent""#)),
            "{html}"
        );
        let response = browser
            .post(format!("{base}/authorize/consent"))
            .header("origin", "https://login.frontdesk.test")
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string([
                ("request_id", hidden(&html, "request_id")?),
                ("csrf_token", hidden(&html, "csrf_token")?),
                ("decision", "approve".to_string()),
            ])?)
            .send()
            .await?;
        assert_eq!(response.status(), 303);
        let redirect = location(&response)?;
        assert!(query(&redirect, "code").is_some(), "{redirect}");
        assert_eq!(query(&redirect, "iss").as_deref(), Some(issuer.as_str()));
        let cleared = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let name = cookie.split('=').next().unwrap_or_default();
        assert!(
            cleared.starts_with(&format!("{name}=;"))
                && cleared.contains("Max-Age=0")
                && cleared.contains("Secure"),
            "{cleared}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_revoke_05() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let redirect = authorize_and_approve(&env, &browser).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = redeem(&env, &code, Some(VERIFIER)).await?;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access").to_string();
    let refresh_token = body["refresh_token"].as_str().expect("refresh").to_string();
    assert!(active(&env, &access).await?);
    let revoke = |client: &'static str| {
        env.http
            .post(format!("{}/revoke", env.url))
            .basic_auth(client, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("token", refresh_token.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .unwrap_or_default(),
            )
            .send()
    };
    // REVOKE-03: another client cannot revoke it.
    let response = revoke(AGENT).await?;
    assert_eq!(response.status().as_u16(), 400);
    assert!(active(&env, &access).await?);
    let response = revoke(APP).await?;
    assert_eq!(response.status().as_u16(), 200);
    // The refresh token no longer works and the access token from the same grant is inactive.
    let (status, body) = refresh(&env, &refresh_token).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(!active(&env, &access).await?);
    Ok(())
}

/// RFC 9700 §4.14.2 under concurrency: the same code, and then the same refresh token, sent
/// twice at once. Whatever the interleaving — the replay may revoke the family before the first
/// request has stored the tokens it issues — nothing the family issued stays usable once a
/// reuse was detected: every access token is inactive and every refresh token refused. (Races
/// that the plain reuse tests cannot reach; the assertion holds in every interleaving.)
#[tokio::test]
async fn concurrent_reuse_leaves_no_token_of_the_family_alive() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    concurrent_reuse_rounds(&env, &browser).await
}

/// [`concurrent_reuse_leaves_no_token_of_the_family_alive`] on PostgreSQL, where the grant and
/// the revocation run on different connections at once.
#[tokio::test]
async fn concurrent_reuse_leaves_no_token_of_the_family_alive_on_postgres() -> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("authorize_reuse_race").await else {
        return Ok(());
    };
    let (env, browser) = start_on(Some(database.url().to_string())).await?;
    concurrent_reuse_rounds(&env, &browser).await
}

async fn concurrent_reuse_rounds(env: &Env, browser: &reqwest::Client) -> anyhow::Result<()> {
    for _ in 0..5 {
        let redirect = authorize_and_approve(env, browser).await?;
        let code = query(&redirect, "code").expect("code");
        let (first, second) = tokio::join!(
            redeem(env, &code, Some(VERIFIER)),
            redeem(env, &code, Some(VERIFIER))
        );
        let answers = [first?, second?];
        // Nothing issued in the family survives the detected reuse.
        for (status, body) in &answers {
            if *status == 200 {
                let access = body["access_token"].as_str().expect("access");
                assert!(!active(env, access).await?, "{body}");
                let refresh_token = body["refresh_token"].as_str().expect("refresh");
                assert_eq!(refresh(env, refresh_token).await?.0, 400, "{body}");
            } else {
                assert_eq!(body["error"], "invalid_grant", "{body}");
            }
        }
        assert!(answers.iter().any(|(status, _)| *status == 400));

        // The same for a refresh token used twice at once.
        let redirect = authorize_and_approve(env, browser).await?;
        let code = query(&redirect, "code").expect("code");
        let (status, body) = redeem(env, &code, Some(VERIFIER)).await?;
        assert_eq!(status, 200, "{body}");
        let token = body["refresh_token"].as_str().expect("refresh").to_string();
        let (first, second) = tokio::join!(refresh(env, &token), refresh(env, &token));
        let answers = [first?, second?];
        assert!(answers.iter().any(|(status, _)| *status == 400));
        assert!(!active(env, body["access_token"].as_str().expect("access")).await?);
        for (status, body) in &answers {
            if *status == 200 {
                assert!(!active(env, body["access_token"].as_str().expect("access")).await?);
                let next = body["refresh_token"].as_str().expect("refresh");
                assert_eq!(refresh(env, next).await?.0, 400, "{body}");
            } else {
                assert_eq!(body["error"], "invalid_grant", "{body}");
            }
        }
    }
    Ok(())
}

/// Starting an authorization request needs no credentials but stores a pending request, so one
/// address may start `authorization.requests_per_minute_per_address` a minute: past it, a 429
/// page with `Retry-After`, no cookie, nothing stored or audited — whatever the request.
#[tokio::test]
async fn an_address_starting_too_many_authorization_requests_gets_429() -> anyhow::Result<()> {
    let (env, browser) = start_configured(None, |config| {
        config.authorization.requests_per_minute_per_address = 3;
    })
    .await?;
    for _ in 0..3 {
        begin(&env, &browser, &authorize_params(APP)).await?;
    }
    let audited_before = env.audit_log().await?.len();
    for params in [
        authorize_params(APP),
        vec![("client_id", "nobody".to_string())],
    ] {
        let response = browser
            .get(format!(
                "{}/authorize?{}",
                env.url,
                serde_urlencoded::to_string(&params)?
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response
            .headers()
            .get("retry-after")
            .ok_or_else(|| anyhow::anyhow!("no Retry-After"))?
            .to_str()?
            .parse()?;
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(response.headers().get("set-cookie").is_none());
        assert!(response.text().await?.contains("Too many sign-ins"));
    }
    assert_eq!(
        env.audit_log().await?.len(),
        audited_before,
        "refusals past the quota write nothing"
    );
    Ok(())
}
