//! Public clients (`auth_method = "none"`) over real HTTP: they run the authorization code flow
//! with PKCE and refresh tokens naming themselves with `client_id` alone, and nothing else —
//! token exchange and introspection need a client that can authenticate (CMETA-04, IDJAG §9.1).
//! A public client that sends a secret, or a confidential client that sends none, is
//! `invalid_client` (CAUTH-08, CAUTH-09). Every refusal is audited.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use code_flow::*;
use env::*;
use serde_json::json;

const PUBLIC: &str = "desktop-app";
const CONFIDENTIAL: &str = "web-app";

async fn start() -> anyhow::Result<Env> {
    start_with_app_clients(PUBLIC, CONFIDENTIAL).await
}

#[tokio::test]
async fn a_public_client_completes_the_code_flow_and_refreshes_with_its_client_id_alone()
-> anyhow::Result<()> {
    let env = start().await?;
    let metadata: serde_json::Value = env.metadata().await?;
    let methods = metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("\"none\""), "{methods}");

    let browser = browser()?;
    let (html, cookie) = to_consent(&env, &browser, &authorize_params(PUBLIC, REDIRECT)).await?;
    assert!(
        html.contains("Desktop MCP client"),
        "the consent page names the client: {html}"
    );
    let redirect = approve(&env, &browser, &html, &cookie).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", PUBLIC),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", PUBLIC),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    // RFC 7009 §2.1: a public client may revoke its own tokens, naming itself.
    let rotated = body["refresh_token"].as_str().expect("rotated").to_string();
    let response = env
        .http
        .post(format!("{}/revoke", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([
            ("token", rotated.as_str()),
            ("client_id", PUBLIC),
        ])?)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rotated),
            ("client_id", PUBLIC),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "revoked"
    );
    Ok(())
}

/// RFC 6749 §10.2, RFC 8252 §8.6: requests are not approved without the user unless the
/// client's identity can be assured. A public client's cannot (anyone may send its client_id,
/// any local app may listen on its loopback redirect URI), so listing it in
/// `pre_approved_clients` does not skip the consent page; it used to hand the code straight to
/// whoever started the request. A confidential client is still pre-approved.
#[tokio::test]
async fn a_pre_approved_public_client_still_gets_the_consent_page() -> anyhow::Result<()> {
    let mut public = client(PUBLIC, "none", &[]);
    public.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    public.redirect_uris = vec![REDIRECT.into()];
    let mut confidential = client(CONFIDENTIAL, "client_secret_basic", &[]);
    confidential.secret_hash =
        Some(frontdesk::secret::hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    confidential.grant_types = vec!["authorization_code".into()];
    confidential.redirect_uris = vec![REDIRECT.into()];
    let env = Env::start_with(move |config| {
        enable_code_flow(config);
        config.clients.push(public);
        config.clients.push(confidential);
        config.authorization.pre_approved_clients = vec![PUBLIC.into(), CONFIDENTIAL.into()];
    })
    .await?;
    let browser = browser()?;
    let (html, cookie) = to_consent(&env, &browser, &authorize_params(PUBLIC, REDIRECT)).await?;
    let redirect = approve(&env, &browser, &html, &cookie).await?;
    assert!(query(&redirect, "code").is_some(), "{redirect}");
    // The confidential client skips the page: the callback answers with the code.
    let response = authorize(&env, &browser, &authorize_params(CONFIDENTIAL, REDIRECT)).await?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .to_string();
    let response = browser.get(location(&response)?).send().await?;
    let response = browser
        .get(location(&response)?)
        .header("cookie", cookie)
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    assert!(query(&location(&response)?, "code").is_some());
    Ok(())
}

#[tokio::test]
async fn a_public_client_without_its_pkce_verifier_gets_nothing() -> anyhow::Result<()> {
    let env = start().await?;
    let code = code_for(&env, PUBLIC).await?;
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", PUBLIC),
        ],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["access_token"].is_null());
    Ok(())
}

#[tokio::test]
async fn a_public_client_sending_a_secret_is_invalid_client() -> anyhow::Result<()> {
    let env = start().await?;
    let code = code_for(&env, PUBLIC).await?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // Basic.
    let (status, body) = env.post_token(&form, Some((PUBLIC, "anything"))).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // client_secret_post.
    let mut posted = form.to_vec();
    posted.extend([("client_id", PUBLIC), ("client_secret", "anything")]);
    let (status, body) = post_form(&env, &posted).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        !description.contains("anything"),
        "no echo of the secret: {description}"
    );
    Ok(())
}

#[tokio::test]
async fn cauth_09_a_confidential_client_sending_only_its_client_id_is_invalid_client()
-> anyhow::Result<()> {
    let env = start().await?;
    let code = code_for(&env, CONFIDENTIAL).await?;
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", CONFIDENTIAL),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // An unknown client id without credentials is refused the same way.
    let (status, body) = post_form(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "nobody"),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    Ok(())
}

/// CHAIN-A-08, IDJAG-ISSUE-22: a client that proves nothing exchanges no subject token, whatever
/// it presents.
#[tokio::test]
async fn cmeta_04_a_public_client_gets_no_token_exchange_and_no_introspection() -> anyhow::Result<()>
{
    let env = start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = post_form(
        &env,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", PUBLIC),
            ("subject_token", &id_token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id-jag",
            ),
            ("audience", RAS_ISSUER),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    assert!(body["access_token"].is_null());
    let response = env
        .http
        .post(format!("{}/introspect", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([
            ("token", "x"),
            ("client_id", PUBLIC),
        ])?)
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"], json!("invalid_client"));

    let events = env.audit_log().await?;
    assert!(
        events.iter().any(
            |record| record.event.reason.as_deref() == Some("public_client")
                && record.event.client_id.as_deref() == Some(PUBLIC)
        ),
        "the refusal is audited"
    );
    Ok(())
}

/// A public client proves nothing but its id, so its `requests_per_minute` is counted per
/// address: anyone who knows the id can exhaust only their own allowance, not every user's.
/// (Addresses told apart by a trusted proxy's `X-Forwarded-For`.)
#[tokio::test]
async fn a_public_clients_request_limit_is_counted_per_address() -> anyhow::Result<()> {
    let mut public = client(PUBLIC, "none", &[]);
    public.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    public.redirect_uris = vec![REDIRECT.into()];
    public.requests_per_minute = Some(2);
    let env = Env::start_with(move |config| {
        enable_code_flow(config);
        config.clients.push(public);
        config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await?;
    let refresh_from = |address: &'static str| {
        let request = env
            .http
            .post(format!("{}/token", env.url))
            .header("x-forwarded-for", address)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "not-a-refresh-token"),
                ("client_id", PUBLIC),
            ]);
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await?;
            anyhow::Ok((
                status,
                body["error"].as_str().unwrap_or_default().to_string(),
            ))
        }
    };
    for _ in 0..2 {
        assert_eq!(
            refresh_from("198.51.100.66").await?,
            (400, "invalid_grant".into())
        );
    }
    assert_eq!(
        refresh_from("198.51.100.66").await?,
        (429, "slow_down".into())
    );
    assert_eq!(
        refresh_from("198.51.100.7").await?,
        (400, "invalid_grant".into())
    );
    Ok(())
}

/// RFC 9700 §4.11.2 (the authorization server as open redirector): anyone may register a client
/// at `POST /register`, with a redirect URI of their choosing, and then hand out links to
/// frontdesk's `/authorize` carrying a deliberately bad request (here a scope that does not
/// exist). frontdesk used to answer such a link with an immediate 303 to that redirect URI: a
/// redirect through the trusted sign-in host to a phishing page, without the user doing
/// anything. A self-registered (or metadata-document) client's redirect URI was vetted by no
/// administrator, so its refusals are now shown on a page whose link leads back to the client
/// only if the user follows it; a client an administrator registered is still redirected at
/// once (RFC 6749 §4.1.2.1).
#[tokio::test]
async fn a_self_registered_clients_refused_request_is_not_redirected_without_the_user()
-> anyhow::Result<()> {
    const PHISHING: &str = "https://phish.example/landing";
    let mut public = client(PUBLIC, "none", &[]);
    public.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    public.redirect_uris = vec![REDIRECT.into()];
    let env = Env::start_with(move |config| {
        enable_code_flow(config);
        config.registration.enabled = true;
        config.clients.push(public);
    })
    .await?;
    let registered = env
        .http
        .post(format!("{}/register", env.url))
        .header("content-type", "application/json")
        .body(
            json!({
                "client_name": "Totally legit",
                "redirect_uris": [PHISHING],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let registered: serde_json::Value = registered.json().await?;
    let client_id = registered["client_id"].as_str().expect("client_id");
    let browser = browser()?;
    let mut params = authorize_params(client_id, PHISHING);
    params.retain(|(name, _)| *name != "scope");
    params.push(("scope", "no-such-scope".into()));
    let response = authorize(&env, &browser, &params).await?;
    assert_eq!(response.status(), 400, "an error page, not a redirect");
    assert!(response.headers().get("location").is_none());
    let html = response.text().await?;
    // The page offers the way back to the client, which gets its error if the user goes.
    assert!(
        html.contains("href=\"https://phish.example/landing?error=invalid_scope"),
        "{html}"
    );
    assert!(html.contains("phish.example"), "{html}");
    let events = env.audit_log().await?;
    assert!(events.iter().any(|record| record.event.event == "authorize"
        && record.event.reason.as_deref() == Some("scope_not_allowed")
        && record.event.client_id.as_deref() == Some(client_id)));

    // A client the administrator registered is answered with the redirect, as before.
    let mut params = authorize_params(PUBLIC, REDIRECT);
    params.retain(|(name, _)| *name != "scope");
    params.push(("scope", "no-such-scope".into()));
    let response = authorize(&env, &browser, &params).await?;
    assert_eq!(response.status(), 303);
    let url = location(&response)?;
    assert!(url.as_str().starts_with(REDIRECT), "{url}");
    assert_eq!(query(&url, "error").as_deref(), Some("invalid_scope"));
    Ok(())
}

/// RFC 9700 §4.11.2 again, after the sign-in: a user the sign-in identity provider's
/// `condition` refuses (or whom the provider itself turns away, possibly without showing
/// anything under single sign-on) used to be redirected at once to the self-registered
/// client's redirect URI — the same open redirector for every such user. The refusal is now
/// a page with the link back; an administrator-registered client is still redirected.
#[tokio::test]
async fn a_self_registered_clients_refused_sign_in_is_not_redirected_without_the_user()
-> anyhow::Result<()> {
    const PHISHING: &str = "https://phish.example/landing";
    let mut public = client(PUBLIC, "none", &[]);
    public.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    public.redirect_uris = vec![REDIRECT.into()];
    let env = Env::start_with(move |config| {
        enable_code_flow(config);
        config.registration.enabled = true;
        config.clients.push(public);
        for idp in &mut config.identity_providers {
            if idp.id == "corp" {
                idp.condition = Some("false".into());
            }
        }
    })
    .await?;
    let registered = env
        .http
        .post(format!("{}/register", env.url))
        .header("content-type", "application/json")
        .body(
            json!({
                "client_name": "Totally legit",
                "redirect_uris": [PHISHING],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let registered: serde_json::Value = registered.json().await?;
    let client_id = registered["client_id"].as_str().expect("client_id");
    let browser = browser()?;
    let signed_in = |client_id: String, redirect: &'static str| {
        let (env, browser) = (&env, &browser);
        async move {
            let response = authorize(env, browser, &authorize_params(&client_id, redirect)).await?;
            assert_eq!(response.status(), 303);
            let cookie = response
                .headers()
                .get("set-cookie")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(';').next())
                .unwrap_or_default()
                .to_string();
            let response = browser.get(location(&response)?).send().await?;
            let back = location(&response)?;
            anyhow::Ok(browser.get(back).header("cookie", cookie).send().await?)
        }
    };
    let response = signed_in(client_id.to_string(), PHISHING).await?;
    assert_eq!(response.status(), 400, "an error page, not a redirect");
    assert!(response.headers().get("location").is_none());
    let html = response.text().await?;
    assert!(
        html.contains("href=\"https://phish.example/landing?error=access_denied"),
        "{html}"
    );
    let events = env.audit_log().await?;
    assert!(
        events
            .iter()
            .any(|record| record.event.event == "authorize_callback"
                && record.event.reason.as_deref() == Some("idp_condition_denied")
                && record.event.client_id.as_deref() == Some(client_id))
    );

    let response = signed_in(PUBLIC.to_string(), REDIRECT).await?;
    assert_eq!(response.status(), 303);
    let url = location(&response)?;
    assert!(url.as_str().starts_with(REDIRECT), "{url}");
    assert_eq!(query(&url, "error").as_deref(), Some("access_denied"));
    Ok(())
}

/// RFC 9700 §4.11.2, the user's own refusal: a user who denies a self-registered client's
/// request on the consent page — the user who found it suspicious — used to be sent straight to
/// that client's redirect URI all the same, which is where a phishing client wants them. The
/// denial is now a page with the link back; an administrator-registered client's denial is
/// still redirected.
#[tokio::test]
async fn denying_a_self_registered_client_does_not_redirect_without_the_user() -> anyhow::Result<()>
{
    const PHISHING: &str = "https://phish.example/landing";
    let env = Env::start_with(|config| {
        enable_code_flow(config);
        config.registration.enabled = true;
    })
    .await?;
    let registered = env
        .http
        .post(format!("{}/register", env.url))
        .header("content-type", "application/json")
        .body(
            json!({
                "client_name": "Totally legit",
                "redirect_uris": [PHISHING],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let registered: serde_json::Value = registered.json().await?;
    let client_id = registered["client_id"].as_str().expect("client_id");
    let browser = browser()?;
    let (html, cookie) = to_consent(&env, &browser, &authorize_params(client_id, PHISHING)).await?;
    let form = [
        ("request_id", hidden(&html, "request_id")?),
        ("csrf_token", hidden(&html, "csrf_token")?),
        ("decision", "deny".to_string()),
    ];
    let response = browser
        .post(format!("{}/authorize/consent", env.url))
        .header("origin", origin_of(&env.url)?)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    assert_eq!(response.status(), 400, "a page, not a redirect");
    assert!(response.headers().get("location").is_none());
    let html = response.text().await?;
    assert!(
        html.contains("href=\"https://phish.example/landing?error=access_denied"),
        "{html}"
    );
    let events = env.audit_log().await?;
    assert!(
        events
            .iter()
            .any(|record| record.event.event == "authorize_consent"
                && record.event.reason.as_deref() == Some("user_denied")
                && record.event.client_id.as_deref() == Some(client_id))
    );
    Ok(())
}
