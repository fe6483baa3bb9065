//! Single sign-on into the admin page over real HTTP: frontdesk is the OpenID Connect relying
//! party of the real test IdP (tests/idp, whose /authorize redirects straight back with a code),
//! and CEL conditions over the ID token's claims decide admin, auditor or nobody. A reqwest
//! client with redirects disabled plays the browser, one hop at a time.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use code_flow::{browser, location};
use env::*;
use frontdesk::config::AdminSsoConfig;
use frontdesk::secret::SecretString;
use frontdesk::store::{AdminStore, AuditDetail};
use serde_json::{Value, json};

const SSO_CLIENT_ID: &str = "frontdesk-admin";

async fn start() -> anyhow::Result<(Env, reqwest::Client)> {
    start_configured(|_| {}).await
}

/// [`start`], then `customize` changes the configuration before the server starts.
async fn start_configured(
    customize: impl FnOnce(&mut frontdesk::config::Config),
) -> anyhow::Result<(Env, reqwest::Client)> {
    let env = Env::start_with(|config| {
        config.admin_sso = AdminSsoConfig {
            idp: Some("corp".into()),
            client_id: Some(SSO_CLIENT_ID.into()),
            client_secret: Some(SecretString::new("admin-sso-secret")),
            admin_condition: Some(
                r#"has(subject.groups) && "idp-admins" in subject.groups"#.into(),
            ),
            auditor_condition: Some(r#"subject.email.endsWith("@example.com")"#.into()),
            button_label: Some("Sign in with Corp".into()),
        };
        customize(config);
    })
    .await?;
    Ok((env, browser()?))
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| {
            let pair = value.split(';').next().unwrap_or_default().to_string();
            (pair, value.to_string())
        })
}

/// The browser after `/admin/sso/start` and the IdP: the binding cookie and the callback URL.
struct AtCallback {
    binding: String,
    callback: url::Url,
}

async fn through_idp(env: &Env, browser: &reqwest::Client) -> anyhow::Result<AtCallback> {
    through_idp_holding(env, browser, None).await
}

/// [`through_idp`] from a browser that holds the admin session `session` (a `name=value`
/// cookie pair) when it clicks the sign-in button: the `SameSite=Strict` cookie goes along to
/// `/admin/sso/start`, a link on the admin page, and not to the callback, where the IdP's
/// cross-site redirect lands.
async fn through_idp_holding(
    env: &Env,
    browser: &reqwest::Client,
    session: Option<&str>,
) -> anyhow::Result<AtCallback> {
    let mut start = browser.get(format!("{}/admin/sso/start", env.url));
    if let Some(session) = session {
        start = start.header("cookie", session);
    }
    let response = start.send().await?;
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let idp_url = location(&response)?;
    assert!(idp_url.as_str().starts_with(&env.idp.issuer), "{idp_url}");
    let params: Vec<(String, String)> = idp_url.query_pairs().into_owned().collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param("client_id").as_deref(), Some(SSO_CLIENT_ID));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("nonce").is_some() && param("state").is_some());
    assert_eq!(
        param("redirect_uri"),
        Some(format!("{}/admin/sso/callback", env.url))
    );
    let (binding, attributes) = cookie(&response, "frontdesk_admin_sso")
        .ok_or_else(|| anyhow::anyhow!("no binding cookie"))?;
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"));
    assert!(attributes.contains("Path=/admin/sso"));
    let at_idp = browser.get(idp_url).send().await?;
    assert!(at_idp.status().is_redirection(), "{}", at_idp.status());
    Ok(AtCallback {
        binding,
        callback: location(&at_idp)?,
    })
}

/// Goes through the IdP and comes back to the callback in the same browser.
async fn back_at_callback(
    env: &Env,
    browser: &reqwest::Client,
) -> anyhow::Result<reqwest::Response> {
    let at = through_idp(env, browser).await?;
    Ok(browser
        .get(at.callback)
        .header("cookie", &at.binding)
        .send()
        .await?)
}

/// Completes a sign-in; returns the session cookie.
async fn sign_in(env: &Env, browser: &reqwest::Client) -> anyhow::Result<String> {
    let response = back_at_callback(env, browser).await?;
    assert_eq!(response.status(), 200);
    let (session, attributes) =
        cookie(&response, "frontdesk_admin").ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    assert!(attributes.contains("SameSite=Strict") && attributes.contains("HttpOnly"));
    let cleared = cookie(&response, "frontdesk_admin_sso").map(|(_, a)| a);
    assert!(cleared.is_some_and(|a| a.contains("Max-Age=0")));
    let html = response.text().await?;
    assert!(html.contains(r#"http-equiv="refresh""#) && html.contains("url=/admin"));
    Ok(session)
}

async fn denial_reasons(env: &Env) -> anyhow::Result<Vec<String>> {
    let events = env.audit_log().await?;
    Ok(events
        .iter()
        .filter(|r| r.event.event == "admin_sign_in" && r.event.reason.is_some())
        .filter_map(|r| r.event.reason.clone())
        .collect())
}

#[tokio::test]
async fn sign_in_page_offers_sso_and_an_idp_admin_group_member_becomes_admin() -> anyhow::Result<()>
{
    let (env, browser) = start().await?;
    let page = browser
        .get(format!("{}/admin/sign-in", env.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains(r#"href="/admin/sso/start""#) && page.contains("Sign in with Corp"));

    env.idp
        .set_id_token_claims(
            json!({ "email": "ada@example.com", "groups": ["staff", "idp-admins"] }),
        )
        .await?;
    let session = sign_in(&env, &browser).await?;
    let dashboard = browser
        .get(format!("{}/admin", env.url))
        .header("cookie", &session)
        .send()
        .await?;
    assert_eq!(dashboard.status(), 200);
    let html = dashboard.text().await?;
    assert!(
        html.contains(r#"<span class="badge">admin</span>"#),
        "{html}"
    );
    assert!(
        html.contains("corp:"),
        "the SSO user is named after the IdP and subject"
    );

    // The sign-in is audited with who, how and which role.
    let events = env.audit_log().await?;
    let signed_in = events
        .iter()
        .find(|r| r.event.event == "admin_sign_in" && r.event.reason.is_none())
        .ok_or_else(|| anyhow::anyhow!("no admin_sign_in event"))?;
    let detail = signed_in
        .event
        .detail
        .as_ref()
        .map_or(Value::Null, AuditDetail::value);
    assert_eq!(detail["via"], "sso");
    assert_eq!(detail["role"], "admin");
    assert_eq!(detail["email"], "ada@example.com");
    Ok(())
}

#[tokio::test]
async fn auditor_condition_gives_read_only_and_role_is_decided_again_at_each_sign_in()
-> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(json!({ "email": "bob@example.com", "groups": ["staff"] }))
        .await?;
    let session = sign_in(&env, &browser).await?;
    let html = browser
        .get(format!("{}/admin", env.url))
        .header("cookie", &session)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains(r#"<span class="badge">auditor</span>"#),
        "{html}"
    );
    // An auditor cannot change anything, even with the right CSRF token.
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no csrf"))?
        .to_string();
    let rotate = browser
        .post(format!("{}/admin/keys/rotate", env.url))
        .header("cookie", &session)
        .header("origin", &env.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await?;
    assert_eq!(rotate.status(), 403);

    // The IdP now puts the same user in the admin group: the next sign-in makes them admin.
    env.idp
        .set_id_token_claims(json!({ "email": "bob@example.com", "groups": ["idp-admins"] }))
        .await?;
    let session = sign_in(&env, &browser).await?;
    let html = browser
        .get(format!("{}/admin", env.url))
        .header("cookie", &session)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        html.contains(r#"<span class="badge">admin</span>"#),
        "{html}"
    );
    Ok(())
}

/// An SSO admin whose next sign-in is refused (the IdP took them out of the admin group) loses
/// the sessions opened before, in every browser: the session kept its role for up to twelve
/// hours, though the identity provider had just said the user no longer qualifies.
#[tokio::test]
async fn a_refused_sign_in_ends_the_users_open_sessions() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ann@example.com", "groups": ["idp-admins"] }))
        .await?;
    let session = sign_in(&env, &browser).await?;
    let dashboard = |session: String| {
        let browser = browser.clone();
        let url = format!("{}/admin", env.url);
        async move {
            let response = browser.get(url).header("cookie", session).send().await?;
            anyhow::Ok(response.status())
        }
    };
    assert_eq!(dashboard(session.clone()).await?, 200);
    // Out of the admin group, and no longer an example.com address: no role at all.
    env.idp
        .set_id_token_claims(json!({ "email": "ann@elsewhere.test", "groups": ["staff"] }))
        .await?;
    let refused = back_at_callback(&env, &code_flow::browser()?).await?;
    assert_eq!(refused.status(), 403);
    let after = dashboard(session).await?;
    assert!(
        after.is_redirection(),
        "the old session is over, so the dashboard sends the browser to sign in: {after}"
    );
    Ok(())
}

#[tokio::test]
async fn nobody_gets_in_without_a_role_or_when_a_condition_cannot_be_evaluated()
-> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(json!({ "email": "eve@elsewhere.test", "groups": ["staff"] }))
        .await?;
    let response = back_at_callback(&env, &browser).await?;
    assert_eq!(response.status(), 403);
    assert!(cookie(&response, "frontdesk_admin").is_none(), "no session");
    assert!(
        response
            .text()
            .await?
            .contains("not allowed into this admin page")
    );

    // No email and no groups: the auditor condition errors (no such key): refused, fail closed.
    env.idp
        .set_id_token_claims(json!({ "email": null, "groups": null }))
        .await?;
    let response = back_at_callback(&env, &browser).await?;
    assert_eq!(response.status(), 403);
    assert!(cookie(&response, "frontdesk_admin").is_none());

    let reasons = denial_reasons(&env).await?;
    assert!(reasons.contains(&"sso_no_role".to_string()), "{reasons:?}");
    assert!(
        reasons.contains(&"sso_condition_error".to_string()),
        "{reasons:?}"
    );
    Ok(())
}

#[tokio::test]
async fn callback_refuses_another_browser_a_reused_state_and_a_wrong_nonce() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;

    // The right state from another browser (no binding cookie) — and the state is spent.
    let at = through_idp(&env, &browser).await?;
    let response = browser.get(at.callback.clone()).send().await?;
    assert_eq!(response.status(), 400);
    let response = browser
        .get(at.callback)
        .header("cookie", &at.binding)
        .send()
        .await?;
    assert_eq!(response.status(), 400, "a state is used once");
    assert!(cookie(&response, "frontdesk_admin").is_none());

    // No state at all.
    let response = browser
        .get(format!("{}/admin/sso/callback?code=abc", env.url))
        .send()
        .await?;
    assert_eq!(response.status(), 400);

    // The IdP's ID token carries another nonce (a replayed token).
    env.idp
        .set_id_token_claims(json!({ "nonce": "replayed", "groups": ["idp-admins"] }))
        .await?;
    let response = back_at_callback(&env, &browser).await?;
    assert_eq!(response.status(), 403);
    assert!(cookie(&response, "frontdesk_admin").is_none());

    // An ID token for another audience.
    env.idp
        .set_id_token_claims(json!({ "nonce": null, "aud": "someone-else" }))
        .await?;
    let response = back_at_callback(&env, &browser).await?;
    assert_eq!(response.status(), 403);

    let reasons = denial_reasons(&env).await?;
    for reason in [
        "sso_browser_mismatch",
        "sso_state_unknown",
        "sso_state_missing",
        "id_token_wrong_nonce",
        "id_token_wrong_audience",
    ] {
        assert!(
            reasons.contains(&reason.to_string()),
            "{reason} not in {reasons:?}"
        );
    }
    Ok(())
}

/// Refusals before the IdP has vouched for anyone cost an attacker one cheap request each (a
/// made-up state, or a state from their own `/admin/sso/start` without its cookie): like invalid
/// API tokens, only the first few from one address in the window are audited, so a scanner
/// cannot bury the log. A real sign-in from that address still works and is still audited.
#[tokio::test]
async fn a_flood_of_forged_callbacks_does_not_flood_the_audit_log() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    for attempt in 0..20 {
        let response = browser
            .get(format!(
                "{}/admin/sso/callback?state=forged-{attempt}&code=x",
                env.url
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 400);
    }
    let response = browser
        .get(format!("{}/admin/sso/callback?code=x", env.url))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let refusals = denial_reasons(&env).await?;
    assert_eq!(
        refusals.len(),
        frontdesk::admin::auth::MAX_FAILED_SIGN_INS as usize,
        "{refusals:?}"
    );

    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;
    sign_in(&env, &browser).await?;
    let signed_in = env
        .audit_log()
        .await?
        .iter()
        .filter(|r| r.event.event == "admin_sign_in" && r.event.reason.is_none())
        .count();
    assert_eq!(signed_in, 1);
    Ok(())
}

#[tokio::test]
async fn an_sso_user_cannot_sign_in_with_a_password() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(
            json!({ "sub": "ada", "email": "ada@example.com", "groups": ["idp-admins"] }),
        )
        .await?;
    sign_in(&env, &browser).await?;
    // The account exists (as corp:ada) but has no password: every local attempt fails alike.
    for password in ["", "anything-at-all-123"] {
        let response = browser
            .post(format!("{}/admin/sign-in", env.url))
            .header("origin", &env.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string([
                ("username", "corp:ada"),
                ("password", password),
            ])?)
            .send()
            .await?;
        assert_eq!(response.status(), 401);
        assert!(cookie(&response, "frontdesk_admin").is_none());
    }
    Ok(())
}

#[tokio::test]
async fn without_admin_sso_configured_there_is_no_sso() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let browser = browser()?;
    let page = browser
        .get(format!("{}/admin/sign-in", env.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(!page.contains("/admin/sso/start"));
    let response = browser
        .get(format!("{}/admin/sso/start", env.url))
        .send()
        .await?;
    assert_eq!(response.status(), 404);
    Ok(())
}

/// The ID token's `exp` and `iat` are checked with the configured clock skew
/// (`tokens.clock_skew_secs`, 60 s by default): an IdP whose clock is a little off still signs
/// people in; a token expired minutes ago or issued in the future does not.
#[tokio::test]
async fn id_token_times_are_checked_with_the_clock_skew() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    let now = env::now();
    let admin = json!(["idp-admins"]);
    env.idp
        .set_id_token_claims(json!({ "groups": admin, "exp": now - 20, "iat": now - 300 }))
        .await?;
    let response = back_at_callback(&env, &browser).await?;
    assert_eq!(response.status(), 200, "expired 20 s ago: within the skew");

    for (exp, iat) in [(now - 600, now - 900), (now + 900, now + 600)] {
        env.idp
            .set_id_token_claims(json!({ "groups": admin, "exp": exp, "iat": iat }))
            .await?;
        let response = back_at_callback(&env, &browser).await?;
        assert_eq!(response.status(), 403, "exp {exp} iat {iat}");
        assert!(cookie(&response, "frontdesk_admin").is_none());
    }
    let reasons = denial_reasons(&env).await?;
    assert!(
        reasons.contains(&"id_token_expired".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"id_token_issued_in_the_future".to_string()),
        "{reasons:?}"
    );
    Ok(())
}

/// `/admin/sso/start` needs no session and stores a pending sign-in each time, so one address
/// may start only `SSO_STARTS_PER_MINUTE` a minute; past that it gets 429 and nothing is
/// stored or fetched, while another address (here told apart by the trusted proxy's
/// `X-Forwarded-For`) still starts.
#[tokio::test]
async fn one_address_cannot_start_sign_ins_without_end() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        config.admin_sso = AdminSsoConfig {
            idp: Some("corp".into()),
            client_id: Some(SSO_CLIENT_ID.into()),
            client_secret: Some(SecretString::new("admin-sso-secret")),
            admin_condition: Some("true".into()),
            auditor_condition: None,
            button_label: None,
        };
        config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await?;
    let browser = browser()?;
    let start_from = |address: &'static str| {
        let request = browser
            .get(format!("{}/admin/sso/start", env.url))
            .header("x-forwarded-for", address);
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    };
    for _ in 0..frontdesk::admin::sso::SSO_STARTS_PER_MINUTE {
        assert_eq!(start_from("198.51.100.66").await?, 303);
    }
    assert_eq!(start_from("198.51.100.66").await?, 429);
    assert_eq!(start_from("198.51.100.66").await?, 429);
    assert_eq!(start_from("198.51.100.7").await?, 303);
    Ok(())
}

/// The status of the dashboard for the session cookie pair `session`.
async fn dashboard_with(env: &Env, session: &str) -> anyhow::Result<u16> {
    Ok(browser()?
        .get(format!("{}/admin", env.url))
        .header("cookie", session)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Signs the local admin `username` in through the password form; returns the session cookie.
async fn local_sign_in(env: &Env, username: &str) -> anyhow::Result<String> {
    let password = "correct horse battery staple";
    if env.server.state.store.admin_user(username).await?.is_none() {
        frontdesk::admin::auth::create_user(
            &env.server.state.store,
            username,
            password,
            frontdesk::store::AdminRole::Admin,
            "test",
            env::now(),
        )
        .await?;
    }
    let response = browser()?
        .post(format!("{}/admin/sign-in", env.url))
        .header("origin", &env.url)
        .form(&[("username", username), ("password", password)])
        .send()
        .await?;
    assert_eq!(response.status(), 303);
    let (session, _) =
        cookie(&response, "frontdesk_admin").ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    Ok(session)
}

/// A single sign-on ends the admin session the browser held when it started, though that
/// session's `SameSite=Strict` cookie does not come back on the IdP's redirect to the callback:
/// the session is remembered with the pending sign-in at `/admin/sso/start`. It ends when the
/// sign-in succeeds (the browser gets a new session; the old one must not stay valid beside it),
/// and when it is refused — no role, or the answer came to another browser — so whoever signed
/// in on that browser before does not keep their privileges. The session used to stay valid
/// until it expired.
#[tokio::test]
async fn a_single_sign_on_ends_the_session_the_browser_held_before() -> anyhow::Result<()> {
    let (env, browser) = start().await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;

    // Signed in locally as alice; then someone signs in with SSO in the same browser.
    let alice = local_sign_in(&env, "alice").await?;
    assert_eq!(dashboard_with(&env, &alice).await?, 200);
    let at = through_idp_holding(&env, &browser, Some(&alice)).await?;
    let response = browser
        .get(at.callback)
        .header("cookie", &at.binding)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let (sso_session, _) =
        cookie(&response, "frontdesk_admin").ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    assert_eq!(dashboard_with(&env, &sso_session).await?, 200);
    assert_eq!(
        dashboard_with(&env, &alice).await?,
        303,
        "the session the browser held before the sign-in has ended"
    );
    assert!(
        !serde_json::to_string(&env.audit_log().await?)?
            .contains(alice.split_once('=').map_or("", |(_, value)| value)),
        "the old session's cookie is in no audit event"
    );

    // A refused sign-in ends it too: alice again, then someone without a role at the IdP.
    let alice = local_sign_in(&env, "alice").await?;
    env.idp
        .set_id_token_claims(json!({ "email": "eve@elsewhere.test", "groups": ["staff"] }))
        .await?;
    let at = through_idp_holding(&env, &browser, Some(&alice)).await?;
    let response = browser
        .get(at.callback)
        .header("cookie", &at.binding)
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    assert_eq!(dashboard_with(&env, &alice).await?, 303, "after a refusal");

    // And when the answer reaches the callback without the sign-in's browser binding.
    let alice = local_sign_in(&env, "alice").await?;
    let at = through_idp_holding(&env, &browser, Some(&alice)).await?;
    let response = browser.get(at.callback).send().await?;
    assert_eq!(response.status(), 400);
    assert_eq!(dashboard_with(&env, &alice).await?, 303, "after a mismatch");

    // A sign-in started without a session ends nobody's: alice's new session stays.
    let alice = local_sign_in(&env, "alice").await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;
    sign_in(&env, &browser).await?;
    assert_eq!(dashboard_with(&env, &alice).await?, 200);
    assert_eq!(
        env.server
            .state
            .store
            .delete_admin_sessions_of("alice")
            .await?,
        1
    );
    Ok(())
}

/// On an https issuer the SSO browser-binding cookie is `__Secure-frontdesk_admin_sso`
/// (`Secure`; it keeps `Path=/admin/sso`, which `__Host-` does not allow), so a plain-http page
/// of the same host cannot plant or overwrite it — the same rule as the session cookie's name.
/// Only that name binds: the value under the bare name is another browser. With it, the sign-in
/// works and gives the issuer's prefixed session cookie. (The server is reached over plain http
/// here, as behind a TLS-terminating proxy; the IdP's redirect to the https callback is followed
/// to the server's own address.)
#[tokio::test]
async fn an_https_issuer_names_the_sso_binding_cookie_with_the_secure_prefix_and_sign_in_works()
-> anyhow::Result<()> {
    for (path, session_name) in [
        ("", "__Host-frontdesk_admin"),
        ("/sts", "__Secure-frontdesk_admin"),
    ] {
        let issuer = format!("https://admin.frontdesk.test{path}");
        let configured = issuer.clone();
        let (env, browser) = start_configured(move |config| config.issuer = configured).await?;
        env.idp
            .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
            .await?;
        let base = format!("http://{}{path}", env.server.addr);
        // /admin/sso/start, the IdP, and the callback URL on the server's own address.
        let through = || async {
            let response = browser
                .get(format!("{base}/admin/sso/start"))
                .send()
                .await?;
            assert_eq!(response.status(), 303, "{:?}", response.text().await);
            assert!(cookie(&response, "frontdesk_admin_sso").is_none());
            let (binding, attributes) = cookie(&response, "__Secure-frontdesk_admin_sso")
                .ok_or_else(|| anyhow::anyhow!("no prefixed binding cookie"))?;
            for attribute in [
                "HttpOnly",
                "SameSite=Lax",
                &format!("Path={path}/admin/sso;"),
                "Secure",
            ] {
                assert!(
                    format!("{attributes};").contains(attribute),
                    "{attribute} missing: {attributes}"
                );
            }
            let at_idp = browser.get(location(&response)?).send().await?;
            let callback = location(&at_idp)?;
            assert!(
                callback
                    .as_str()
                    .starts_with(&format!("{issuer}/admin/sso/callback?")),
                "{callback}"
            );
            let callback = format!(
                "{base}/admin/sso/callback?{}",
                callback.query().unwrap_or_default()
            );
            anyhow::Ok((binding, callback))
        };

        let (binding, callback) = through().await?;
        let value = binding.split_once('=').map_or("", |(_, value)| value);
        let response = browser
            .get(&callback)
            .header("cookie", format!("frontdesk_admin_sso={value}"))
            .send()
            .await?;
        assert_eq!(response.status(), 400, "the bare name binds nothing");
        assert!(cookie(&response, session_name).is_none());

        let (binding, callback) = through().await?;
        let response = browser
            .get(&callback)
            .header("cookie", &binding)
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let (session, _) = cookie(&response, session_name)
            .ok_or_else(|| anyhow::anyhow!("no {session_name} session cookie"))?;
        let cleared = cookie(&response, "__Secure-frontdesk_admin_sso").map(|(_, a)| a);
        assert!(
            cleared.is_some_and(|a| a.contains("Max-Age=0") && a.contains("Secure")),
            "the binding cookie is cleared under its prefixed name"
        );
        let dashboard = browser
            .get(format!("{base}/admin"))
            .header("cookie", &session)
            .send()
            .await?;
        assert_eq!(dashboard.status(), 200);
    }
    Ok(())
}
