//! The admin page in a real browser: headless Chromium driven by playwright-core
//! (tests/browser/admin.spec.mjs) sets up a trust from scratch on a frontdesk with no
//! configured trust — identity provider (with "test connection" against the real test IdP),
//! audience, client — then this test performs a token exchange with the client whose secret the
//! browser read, and the browser finds the exchange in the audit log.
//!
//! Needs `scripts/test-deps` (Debian's chromium and tests/browser/node_modules). Without them
//! the test fails with a message saying so; it never passes silently. Screenshots go to a
//! temporary directory, or to `$FRONTDESK_TEST_SCREENSHOTS` (docs/img was made that way).

#[path = "support/browser.rs"]
mod browser;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use anyhow::bail;
use browser::{Spec, screenshot_dir};
use env::{Env, ID_JAG, ID_TOKEN, TOKEN_EXCHANGE};
use frontdesk::store::AdminStore;
use serde_json::json;

const USERNAME: &str = "ada";
const PASSWORD: &str = "browser-test-password-1";
const CLIENT_ID: &str = "browser-agent";
const AUDIENCE: &str = "https://as.saas.example";

#[tokio::test]
async fn a_person_sets_up_a_trust_in_the_browser_and_sees_the_exchange_in_the_audit_log()
-> anyhow::Result<()> {
    set_up_a_trust_in_the_browser("").await
}

/// The same behind a path-routing proxy (issuer `…/sts`): every page, form, redirect and cookie
/// of the walk stays under the path, or the browser would land on the bare origin's 404s.
#[tokio::test]
async fn a_person_sets_up_a_trust_in_the_browser_under_an_issuer_path() -> anyhow::Result<()> {
    set_up_a_trust_in_the_browser("/sts").await
}

/// The walk of admin.spec.mjs on a frontdesk whose issuer has `path` (`""` for none).
async fn set_up_a_trust_in_the_browser(path: &str) -> anyhow::Result<()> {
    // A frontdesk with no trust at all: everything is set up through the page.
    let env = Env::start_with(|config| {
        config.issuer = format!("{}{path}", config.issuer);
        config.identity_providers.clear();
        config.audiences.clear();
        config.clients.clear();
    })
    .await?;
    frontdesk::admin::auth::create_user(
        &env.server.state.store,
        USERNAME,
        PASSWORD,
        frontdesk::store::AdminRole::Admin,
        "test",
        env::now(),
    )
    .await?;
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start(
        "admin.spec.mjs",
        &[
            env.url.as_ref(),
            env.idp.issuer.as_ref(),
            USERNAME.as_ref(),
            PASSWORD.as_ref(),
            shots.as_os_str(),
        ],
    )?;
    spec.run(async |spec| {
        let mut secret = None;
        while let Some(line) = spec.next_line().await? {
            if let Some(value) = line.strip_prefix("CLIENT_SECRET ") {
                secret = Some(value.trim().to_string());
                break;
            }
        }
        let Some(secret) = secret else {
            bail!("the browser never showed a client secret");
        };

        // The token exchange, with an ID token whose aud is the client's id.
        let id_token = env
            .idp
            .mint(json!({ "aud": CLIENT_ID, "sub": "user-1", "email": "ada@example.com" }))
            .await?;
        let (status, body) = env
            .post_token(
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("requested_token_type", ID_JAG),
                    ("audience", AUDIENCE),
                    ("scope", "read"),
                    ("subject_token", id_token.as_str()),
                    ("subject_token_type", ID_TOKEN),
                ],
                Some((CLIENT_ID, &secret)),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
            "exchange with the browser-made client failed: {body}"
        );
        assert_eq!(body["issued_token_type"], ID_JAG);

        spec.reply("EXCHANGED").await?;
        spec.expect_done("AUDIT_OK", false).await
    })
    .await
}

/// Single sign-on in a real browser: sign-in page → SSO button → the real test IdP → callback
/// page → dashboard by itself, as admin (the IdP's `groups` claim meets `admin_condition`).
#[tokio::test]
async fn an_admin_signs_in_through_single_sign_on_in_the_browser() -> anyhow::Result<()> {
    sign_in_through_single_sign_on("").await
}

/// The same under an issuer path: the IdP returns to `…/sts/admin/sso/callback`, the SSO cookie
/// is scoped to that path, and the page moves on to `…/sts/admin`.
#[tokio::test]
async fn an_admin_signs_in_through_single_sign_on_under_an_issuer_path() -> anyhow::Result<()> {
    sign_in_through_single_sign_on("/sts").await
}

/// Single sign-on in a browser that is already signed in with a local account: the session
/// cookie (`SameSite=Strict`) goes along when the sign-in page's button is clicked, not on the
/// IdP's redirect to the callback; the local session still ends with the sign-in, because
/// `/admin/sso/start` remembered it. It used to stay valid until it expired. frontdesk is at
/// `localhost` here and the IdP at `127.0.0.1` (two ports of one host are the same site), and
/// the spec has Chromium judge SameSite by the redirect chain, which passes through the IdP:
/// the test IdP redirects back at once, where a real one's page starts the way back itself.
/// Fails without the fix (checked): the cookie then never reaches the callback.
#[tokio::test]
async fn single_sign_on_ends_the_browsers_local_session_in_the_browser() -> anyhow::Result<()> {
    let env = sso_env("", "localhost").await?;
    // A name that neither the SSO user's name nor its email contains.
    const LOCAL: &str = "marguerite";
    frontdesk::admin::auth::create_user(
        &env.server.state.store,
        LOCAL,
        PASSWORD,
        frontdesk::store::AdminRole::Admin,
        "test",
        env::now(),
    )
    .await?;
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start(
        "admin_sso.spec.mjs",
        &[
            env.url.as_ref(),
            shots.as_os_str(),
            LOCAL.as_ref(),
            PASSWORD.as_ref(),
        ],
    )?;
    spec.run(async |spec| spec.expect_done("SSO_OK", false).await)
        .await?;
    let left = env
        .server
        .state
        .store
        .delete_admin_sessions_of(LOCAL)
        .await?;
    anyhow::ensure!(
        left == 0,
        "{left} local session(s) outlived the single sign-on"
    );
    Ok(())
}

/// A frontdesk at `path` on `host` (its own address is `127.0.0.1`) whose admin page offers
/// single sign-on at the test IdP, which signs in a member of the admin group.
async fn sso_env(path: &str, host: &str) -> anyhow::Result<Env> {
    let env = Env::start_with(|config| {
        config.issuer = format!("{}{path}", config.issuer.replace("127.0.0.1", host));
        config.admin_sso = frontdesk::config::AdminSsoConfig {
            idp: Some("corp".into()),
            client_id: Some("frontdesk-admin".into()),
            client_secret: Some(frontdesk::secret::SecretString::new("admin-sso-secret")),
            admin_condition: Some(
                r#"has(subject.groups) && "idp-admins" in subject.groups"#.into(),
            ),
            auditor_condition: None,
            button_label: Some("Sign in with Corp".into()),
        };
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;
    Ok(env)
}

async fn sign_in_through_single_sign_on(path: &str) -> anyhow::Result<()> {
    let env = sso_env(path, "127.0.0.1").await?;
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start("admin_sso.spec.mjs", &[env.url.as_ref(), shots.as_os_str()])?;
    spec.run(async |spec| spec.expect_done("SSO_OK", false).await)
        .await
}

/// The guards in a real browser: the sign-in form's post carries the page's real `Origin`, not
/// `null` (the pages' `Referrer-Policy: same-origin`; under `no-referrer` Chromium sent `null`,
/// which the same-origin check now refuses without `Sec-Fetch-Site`), a form without its CSRF
/// token is refused, an auditor sees no change controls and a change built in their page is
/// refused, and an idle session expires (the server's admin clock is moved forward; nothing
/// sleeps).
#[tokio::test]
async fn csrf_auditor_and_session_expiry_hold_in_the_browser() -> anyhow::Result<()> {
    const AUDITOR: &str = "grace";
    let env = Env::start().await?;
    for (name, role) in [
        (USERNAME, frontdesk::store::AdminRole::Admin),
        (AUDITOR, frontdesk::store::AdminRole::Auditor),
    ] {
        frontdesk::admin::auth::create_user(
            &env.server.state.store,
            name,
            PASSWORD,
            role,
            "test",
            env::now(),
        )
        .await?;
    }
    let temp = tempfile::tempdir()?;
    let spec = Spec::start(
        "admin_guards.spec.mjs",
        &[
            env.url.as_ref(),
            USERNAME.as_ref(),
            AUDITOR.as_ref(),
            PASSWORD.as_ref(),
            temp.path().as_os_str(),
        ],
    )?;
    spec.run(async |spec| {
        while let Some(line) = spec.next_line().await? {
            if line.trim() == "EXPIRE" {
                env.server
                    .state
                    .admin
                    .advance_clock(frontdesk::admin::IDLE_TIMEOUT_SECS + 1);
                spec.reply("ADVANCED").await?;
                break;
            }
        }
        spec.expect_done("GUARDS_OK", false).await
    })
    .await
}
