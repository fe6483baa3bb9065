//! The whole authorization code flow in a real browser: headless Chromium driven by
//! playwright-core (tests/browser/authorize.spec.mjs) opens frontdesk's `/authorize` with PKCE
//! S256, `state`, `resource` and `scope`; signs in at a real interactive OpenID Connect provider
//! (oidc-provider in tests/oidc-idp: its login form and its own consent page); sees frontdesk's
//! consent page; approves (or denies) and lands at the client's redirect URI, a small HTTP
//! listener in this test. The test then redeems the code over HTTP at `POST /token` with the
//! PKCE verifier, verifies the access token against frontdesk's JWKS independently (npm `jose`),
//! and reads the audit log.
//!
//! Needs `scripts/test-deps` (Debian's chromium, tests/browser, tests/oidc-idp and tests/idp
//! node_modules). Without them the test fails with a message saying so; it never passes
//! silently. Screenshots go to a temporary directory, or to `$FRONTDESK_TEST_SCREENSHOTS`
//! (docs/img/consent.png was made that way).

#[path = "support/browser.rs"]
mod browser;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/oidc_idp.rs"]
mod oidc_idp;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use browser::{Spec, screenshot_dir};
use env::{Env, SECRET, client};
use frontdesk::config::{IdentityProviderConfig, ResourceConfig};
use frontdesk::secret::{SecretString, hash_secret};
use frontdesk::store::Decision;
use oidc_idp::OidcIdp;
use serde_json::json;
use tokio::sync::mpsc;

const RESOURCE: &str = "https://mcp.local.example/mcp";
const SCOPES: [&str; 2] = ["mcp:read", "mcp:write"];
const APP: &str = "browser-app";
/// frontdesk's client at the sign-in IdP.
const RP_CLIENT_ID: &str = "frontdesk";
const RP_SECRET: &str = "frontdesk-secret-at-the-test-idp";
/// The user signs in at the IdP with this login (any password): `sub` there.
const LOGIN: &str = "ada";
const EMAIL: &str = "ada@example.com";

/// The client's redirect URI: a loopback listener that answers a small page and reports each
/// query string it receives.
struct ClientListener {
    redirect_uri: String,
    received: mpsc::UnboundedReceiver<String>,
}

async fn client_listener() -> anyhow::Result<ClientListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect_uri = format!("http://{}/callback", listener.local_addr()?);
    let (sender, received) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        // Another page of the client's origin, where a forged consent form is built.
        .route(
            "/elsewhere",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><title>elsewhere</title><p>Another page.</p>")
            }),
        )
        .route(
            "/callback",
            axum::routing::get(
                move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                    let sender = sender.clone();
                    async move {
                        let _ = sender.send(query.unwrap_or_default());
                        axum::response::Html(
                            "<!doctype html><title>client</title><p>Back at the client.</p>",
                        )
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(ClientListener {
        redirect_uri,
        received,
    })
}

/// Everything a browser case needs: the IdP, frontdesk, the client's listener.
struct Setup {
    env: Env,
    _oidc: OidcIdp,
    client: ClientListener,
}

async fn setup() -> anyhow::Result<Setup> {
    setup_under("").await
}

/// The setup with frontdesk's issuer under `path` (`""` for the root).
async fn setup_under(path: &str) -> anyhow::Result<Setup> {
    let path = path.to_string();
    let mut oidc = OidcIdp::start().await?;
    let client_listener = client_listener().await?;
    let mut app = client(APP, "client_secret_basic", &[]);
    app.secret_hash = Some(hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    app.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    app.redirect_uris = vec![client_listener.redirect_uri.clone()];
    let issuer = oidc.issuer.clone();
    let env = Env::start_with(move |config| {
        config.issuer = format!("{}{path}", config.issuer);
        config.identity_providers.push(IdentityProviderConfig {
            id: "workforce".into(),
            issuer,
            jwks_uri: None,
            jwks: None,
            saml_certificates: None,
            saml_metadata_url: None,
            saml_max_lifetime_secs: None,
            saml_name_id_formats: vec![],
            algorithms: vec!["RS256".into()],
            token_types: vec!["id_token".into()],
            audiences: vec![RP_CLIENT_ID.into()],
            clock_skew_secs: Some(30),
            max_token_age_secs: Some(3600),
            condition: None,
            subject_mode: "federated".into(),
            subject_mapping: None,
            subject_namespace: None,
            allowed_clients: vec![],
            transcribe_claims: vec![],
            requests_per_minute: None,
            subject_requests_per_minute: None,
            enabled: true,
        });
        config.resources.push(ResourceConfig {
            resource: RESOURCE.into(),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            authorization_details_types: vec![],
            access_token_lifetime_secs: None,
            single_use_assertions: true,
            require_dpop: false,
            default: false,
        });
        config.clients.push(app);
        config.authorization.sign_in_idp = Some("workforce".into());
        config.authorization.client_id = Some(RP_CLIENT_ID.into());
        config.authorization.client_secret = Some(SecretString::new(RP_SECRET));
    })
    .await?;
    oidc.register_client(
        RP_CLIENT_ID,
        RP_SECRET,
        &format!("{}/authorize/callback", env.url),
    )
    .await?;
    Ok(Setup {
        env,
        _oidc: oidc,
        client: client_listener,
    })
}

/// A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
fn pkce() -> (String, String) {
    let verifier = frontdesk::authorize::codes::random_token(32);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Runs tests/browser/authorize.spec.mjs to `decision`; returns the URL the browser landed on,
/// after checking that the browser really signed in at the IdP (its login form and its consent
/// page were both shown and filled in).
async fn walk(setup: &Setup, challenge: &str, decision: &str) -> anyhow::Result<url::Url> {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", setup.client.redirect_uri.as_str()),
        ("state", "client-state-42"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
        ("scope", &SCOPES.join(" ")),
    ])?;
    let authorize_url = format!("{}/authorize?{query}", setup.env.url);
    let expect = json!({
        "login": LOGIN, "user": EMAIL, "client_id": APP, "resource": RESOURCE, "scopes": SCOPES,
    });
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start(
        "authorize.spec.mjs",
        &[
            authorize_url.as_ref(),
            setup.env.url.as_ref(),
            setup.client.redirect_uri.as_ref(),
            decision.as_ref(),
            expect.to_string().as_ref(),
            shots.as_os_str(),
        ],
    )?;
    spec.run(async |spec| {
        let mut landed = None;
        let mut steps = Vec::new();
        while let Some(line) = spec.next_line().await? {
            match line.trim().split_once(' ') {
                Some(("LANDED", url)) => landed = Some(url.to_string()),
                _ => steps.push(line.trim().to_string()),
            }
        }
        let status = spec.child.wait().await?;
        let Some(url) = landed.filter(|_| status.success()) else {
            bail!("the browser script failed ({status})");
        };
        let mut expected = vec!["IDP_LOGIN", "IDP_CONSENT"];
        if decision == "forged-then-approve" {
            expected.push("FORGED_REFUSED");
        }
        assert_eq!(
            steps, expected,
            "the steps at the IdP (and the forged post)"
        );
        Ok(url::Url::parse(&url)?)
    })
    .await
}

fn query_of(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// The query the client's listener received, which must be the one the browser shows.
async fn received_by_client(
    setup: &mut Setup,
    landed: &url::Url,
) -> anyhow::Result<BTreeMap<String, String>> {
    let received = setup
        .client
        .received
        .try_recv()
        .context("the client's redirect URI was never requested")?;
    assert_eq!(Some(received.as_str()), landed.query());
    Ok(query_of(landed))
}

#[tokio::test]
async fn a_user_signs_in_at_the_idp_approves_and_the_client_redeems_the_code() -> anyhow::Result<()>
{
    approve_and_redeem("").await
}

/// The same behind a path-routing proxy (issuer `…/sts`): the IdP returns to
/// `…/sts/authorize/callback`, the browser-binding cookie is scoped under the path, and the
/// consent form posts there.
#[tokio::test]
async fn the_code_flow_works_under_an_issuer_path() -> anyhow::Result<()> {
    approve_and_redeem("/sts").await
}

/// Sign-in, approval and the code's redemption with frontdesk's issuer under `path`.
async fn approve_and_redeem(path: &str) -> anyhow::Result<()> {
    let mut setup = setup_under(path).await?;
    let (verifier, challenge) = pkce();
    let landed = walk(&setup, &challenge, "approve").await?;
    let params = received_by_client(&mut setup, &landed).await?;
    assert_eq!(
        params.get("state").map(String::as_str),
        Some("client-state-42")
    );
    // RFC 9207: the authorization server's issuer comes with the response.
    assert_eq!(params.get("iss"), Some(&setup.env.url));
    assert!(!params.contains_key("error"), "{landed}");
    let code = params.get("code").context("no code")?;

    let env = &setup.env;
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", setup.client.redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().context("no access token")?;
    let verified = env.verify_issued(access, RESOURCE, "at+jwt").await?;
    let claims = &verified["payload"];
    assert_eq!(
        claims["sub"], LOGIN,
        "the IdP's sub (federated subject mode)"
    );
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["scope"], SCOPES.join(" "));
    assert_eq!(claims["client_id"], APP);
    let refresh = body["refresh_token"].as_str().context("no refresh token")?;
    let (status, body) = env
        .post_token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some((APP, SECRET)),
        )
        .await?;
    assert_eq!(status, 200, "the refresh token works: {body}");

    // Sign-in, consent and code redemption are each in the audit log, with the user.
    let events = env.audit_log().await?;
    let find = |event: &str, reason: Option<&str>| {
        events.iter().find(|record| {
            record.event.event == event
                && (reason.is_none() || record.event.reason.as_deref() == reason)
        })
    };
    let sign_in = find("authorize_callback", Some("signed_in_awaiting_consent"))
        .context("no sign-in event")?;
    assert_eq!(sign_in.event.subject.as_deref(), Some(LOGIN));
    assert_eq!(
        sign_in.event.subject_issuer.as_deref(),
        Some(setup._oidc.issuer.as_str())
    );
    let consent = find("authorize_consent", Some("user_approved")).context("no consent event")?;
    assert_eq!(consent.event.decision, Decision::Issued);
    assert_eq!(consent.event.client_id.as_deref(), Some(APP));
    assert_eq!(consent.event.scopes_granted, SCOPES);
    let redeemed = find("authorization_code", None).context("no code redemption event")?;
    assert_eq!(redeemed.event.decision, Decision::Issued);
    Ok(())
}

#[tokio::test]
async fn a_user_denies_on_the_consent_page_and_nothing_is_issued() -> anyhow::Result<()> {
    let mut setup = setup().await?;
    let (_, challenge) = pkce();
    let landed = walk(&setup, &challenge, "deny").await?;
    let params = received_by_client(&mut setup, &landed).await?;
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("access_denied")
    );
    assert_eq!(
        params.get("state").map(String::as_str),
        Some("client-state-42")
    );
    assert_eq!(params.get("iss"), Some(&setup.env.url));
    assert!(!params.contains_key("code"), "{landed}");

    let events = setup.env.audit_log().await?;
    assert!(events.iter().any(|record| {
        record.event.event == "authorize_consent"
            && record.event.reason.as_deref() == Some("user_denied")
            && record.event.decision == Decision::Denied
    }));
    let issued: Vec<&str> = events
        .iter()
        .filter(|record| record.event.decision == Decision::Issued)
        .map(|record| record.event.event.as_str())
        .collect();
    assert!(issued.is_empty(), "issued after a denial: {issued:?}");
    Ok(())
}

/// Consent CSRF in a real browser (RFC 6749 §10.12, RFC 9700 §4.7): a page on another origin of
/// the same site (the client's listener: same host, another port) that had learnt the consent
/// page's request id and CSRF token submits the approval in the user's browser. Chromium sends
/// the `SameSite=Lax` binding cookie with it (same site), so token and cookie alone would have
/// approved; its `Origin` and `Sec-Fetch-Site: same-site` get it refused with frontdesk's "from
/// another site" page, audited, and nothing decided: the user then approves on the real page
/// (whose own post Chromium sends as `Sec-Fetch-Site: same-origin`) and the client gets its code.
#[tokio::test]
async fn a_consent_post_from_another_origin_is_refused_and_the_users_own_approval_still_works()
-> anyhow::Result<()> {
    let mut setup = setup().await?;
    let (_, challenge) = pkce();
    let landed = walk(&setup, &challenge, "forged-then-approve").await?;
    let params = received_by_client(&mut setup, &landed).await?;
    assert!(params.contains_key("code"), "{landed}");
    assert!(setup.client.received.try_recv().is_err(), "one answer only");
    let events = setup.env.audit_log().await?;
    let consents: Vec<(Decision, Option<&str>)> = events
        .iter()
        .filter(|record| record.event.event == "authorize_consent")
        .map(|record| (record.event.decision, record.event.reason.as_deref()))
        .collect();
    assert_eq!(consents.len(), 2, "{consents:?}");
    assert!(consents.contains(&(Decision::Denied, Some("cross_site_post"))));
    assert!(consents.contains(&(Decision::Issued, Some("user_approved"))));
    Ok(())
}
