//! frontdesk's own refresh tokens as the `subject_token` of a token exchange for an ID-JAG (the
//! ID-JAG draft's refresh-token path, §4.3.3) over real HTTP. The refresh tokens come from the
//! real authorization code flow: frontdesk's /authorize, sign-in at the real test IdP
//! (tests/idp), the code redeemed with PKCE. The ID-JAGs are verified independently against
//! frontdesk's JWKS with the npm `jose` library. Every refusal is checked for its error code, for
//! nothing being issued, and for its audit row. The happy path runs on SQLite and PostgreSQL.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use code_flow::{CHALLENGE, REDIRECT, RESOURCE, RP_CLIENT_ID, VERIFIER, location, query};
use env::test_db::TestDatabase;
use env::*;
use frontdesk::authorize::codes::hash_token;
use frontdesk::config::{ClientConfig, Config, ResourceConfig};
use frontdesk::secret::{SecretString, hash_secret};
use frontdesk::store::{AuditDetail, AuditFilter, AuditLog, AuditRecord, CodeStore, RefreshRecord};
use serde_json::{Value, json};

/// The MCP client running the code flow (pre-approved: no consent page).
const APP: &str = "mcp-app";
const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// The test IdP's default `sub`.
const USER: &str = "johndoe";

fn code_client() -> anyhow::Result<ClientConfig> {
    let mut app = client(
        APP,
        "client_secret_basic",
        &["saas", "domain-b", "local-api"],
    );
    app.secret_hash = Some(hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    app.grant_types = vec![
        "authorization_code".into(),
        "refresh_token".into(),
        TOKEN_EXCHANGE.into(),
    ];
    app.redirect_uris = vec![REDIRECT.into()];
    Ok(app)
}

/// frontdesk with the code flow on, on `database` (None: the environment's SQLite file).
async fn start(database: Option<&TestDatabase>) -> anyhow::Result<Env> {
    start_with(database, |_| {}).await
}

/// Like [`start`], with a last change to the configuration.
async fn start_with(
    database: Option<&TestDatabase>,
    customize: impl FnOnce(&mut Config),
) -> anyhow::Result<Env> {
    let app = code_client()?;
    let url = database.map(|database| database.url().to_string());
    let env = Env::start_with(move |config| {
        if let Some(url) = url {
            config.database.url = SecretString::new(url);
        }
        config.resources.push(ResourceConfig {
            resource: RESOURCE.into(),
            scopes: vec!["read".into(), "write".into()],
            authorization_details_types: vec![],
            access_token_lifetime_secs: None,
            single_use_assertions: true,
            require_dpop: false,
            default: false,
        });
        config.clients.push(app);
        config.authorization.sign_in_idp = Some("corp".into());
        config.authorization.client_id = Some(RP_CLIENT_ID.into());
        config.authorization.client_secret = Some(SecretString::new("rp-secret"));
        config.authorization.pre_approved_clients = vec![APP.into()];
        customize(config);
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com" }))
        .await?;
    Ok(env)
}

/// Signs the user in through /authorize (a browser played by reqwest, one redirect at a time),
/// redeems the code and returns the refresh token.
async fn sign_in(env: &Env, scope: &str) -> anyhow::Result<String> {
    let code = authorization_code(env, scope).await?;
    let (status, body) = redeem(env, &code).await?;
    anyhow::ensure!(status == 200, "code redemption: {body}");
    body["refresh_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no refresh token: {body}"))
}

/// `grant_type=authorization_code` for `code`, as the app.
async fn redeem(env: &Env, code: &str) -> anyhow::Result<(u16, Value)> {
    env.post_token(
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some((APP, SECRET)),
    )
    .await
}

/// Signs the user in through /authorize (a browser played by reqwest, one redirect at a time)
/// and returns the authorization code, not redeemed.
async fn authorization_code(env: &Env, scope: &str) -> anyhow::Result<String> {
    let browser = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let params = [
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
        ("scope", scope),
    ];
    let response = browser
        .get(format!(
            "{}/authorize?{}",
            env.url,
            serde_urlencoded::to_string(params)?
        ))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 303, "authorize: {}", response.status());
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .to_string();
    let at_idp = browser.get(location(&response)?).send().await?;
    let back = location(&at_idp)?;
    let response = browser.get(back).header("cookie", cookie).send().await?;
    anyhow::ensure!(response.status() == 303, "callback: {}", response.status());
    query(&location(&response)?, "code").ok_or_else(|| anyhow::anyhow!("no code"))
}

/// An ID-JAG request with `refresh_token` as the subject, plus `extra` parameters.
fn exchange_form<'a>(
    refresh_token: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", refresh_token),
        ("subject_token_type", REFRESH_TOKEN),
    ];
    form.extend_from_slice(extra);
    form
}

fn id_jag_form(refresh_token: &str) -> Vec<(&str, &str)> {
    exchange_form(
        refresh_token,
        &[
            ("requested_token_type", ID_JAG),
            ("audience", RAS_ISSUER),
            ("resource", MCP_RESOURCE),
            ("scope", "read"),
        ],
    )
}

async fn as_app(env: &Env, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    env.post_token(form, Some((APP, SECRET))).await
}

async fn refresh_grant(env: &Env, refresh_token: &str) -> anyhow::Result<(u16, Value)> {
    as_app(
        env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The one audit row with `reason`.
async fn audited(env: &Env, reason: &str) -> anyhow::Result<AuditRecord> {
    let mut rows = env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some(reason.into()),
            ..AuditFilter::default()
        })
        .await?;
    anyhow::ensure!(rows.len() == 1, "{} audit rows for {reason}", rows.len());
    Ok(rows.remove(0))
}

/// Asserts a refusal: status, error code, no token in the body, a helpful description that
/// does not echo the token, and a denied audit row with `reason`.
async fn assert_refused(
    env: &Env,
    (status, body): (u16, Value),
    expected: (u16, &str),
    reason: &str,
    presented: &str,
) -> anyhow::Result<AuditRecord> {
    assert_eq!(
        (status, body["error"].as_str()),
        (expected.0, Some(expected.1)),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "nothing issued: {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(!description.is_empty(), "{body}");
    assert!(!description.contains(presented), "the token is not echoed");
    let row = audited(env, reason).await?;
    assert_eq!(row.event.decision.as_str(), "denied");
    assert_eq!(row.event.error_code.as_deref(), Some(expected.1));
    assert!(row.event.issued_jti.is_none());
    Ok(row)
}

async fn happy_path(database: Option<&TestDatabase>) -> anyhow::Result<()> {
    let env = start(database).await?;
    let first_sign_in = now() - 600;
    env.idp
        .set_id_token_claims(
            json!({ "email": "ada@example.com", "auth_time": first_sign_in, "acr": "phr" }),
        )
        .await?;
    let first = sign_in(&env, "read write").await?;

    let (status, body) = as_app(&env, &id_jag_form(&first)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ID_JAG);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["scope"], "read");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().expect("ID-JAG");
    let verified = env
        .verify_issued(token, RAS_ISSUER, "oauth-id-jag+jwt")
        .await?;
    let claims = &verified["payload"];
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["aud"], RAS_ISSUER);
    assert_eq!(claims["client_id"], APP);
    assert_eq!(claims["resource"], MCP_RESOURCE);
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["email"], "ada@example.com");
    // Authentication-event claims: the refresh token's own sign-in time; no `acr`, since the
    // refresh token does not record how that sign-in was made (docs/decisions.md).
    assert_eq!(claims["auth_time"], first_sign_in, "{claims}");
    assert!(claims.get("acr").is_none(), "{claims}");
    let issued: Vec<AuditRecord> = env
        .audit_log()
        .await?
        .into_iter()
        .filter(|row| row.event.event == "token_exchange")
        .collect();
    assert_eq!(issued.len(), 1);
    let event = &issued[0].event;
    assert_eq!(event.decision.as_str(), "issued");
    assert_eq!(event.client_id.as_deref(), Some(APP));
    assert_eq!(event.subject.as_deref(), Some(USER));
    assert_eq!(event.audience.as_deref(), Some(RAS_ISSUER));
    assert_eq!(
        event.issued_jti.as_ref(),
        claims["jti"].as_str().map(str::to_string).as_ref()
    );
    let detail = event
        .detail
        .as_ref()
        .map(AuditDetail::value)
        .unwrap_or_default();
    assert_eq!(detail["subject_token_type"], "refresh_token");
    assert!(detail["family_id"].is_string());

    // IDJAG-ISSUE-12: the user's email changes at the IdP and the user signs in again; the
    // *first* refresh token now yields an ID-JAG with the new email.
    env.idp
        .set_id_token_claims(json!({ "email": "ada.lovelace@example.com", "auth_time": now() }))
        .await?;
    let _second = sign_in(&env, "read").await?;
    let (status, body) = as_app(&env, &id_jag_form(&first)).await?;
    assert_eq!(status, 200, "{body}");
    let verified = env
        .verify_issued(
            body["access_token"].as_str().expect("ID-JAG"),
            RAS_ISSUER,
            "oauth-id-jag+jwt",
        )
        .await?;
    assert_eq!(verified["payload"]["email"], "ada.lovelace@example.com");
    assert_eq!(verified["payload"]["auth_time"], first_sign_in);
    assert_ne!(verified["payload"]["jti"], claims["jti"]);

    // The exchange neither rotated nor consumed the refresh token.
    let (status, body) = refresh_grant(&env, &first).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// A refresh token as the subject of an ID-JAG exchange (IDJAG-ISSUE-08), on SQLite.
#[tokio::test]
async fn refresh_token_becomes_id_jag_with_current_claims_idjag_issue_11_12_sqlite()
-> anyhow::Result<()> {
    happy_path(None).await
}

/// The same on PostgreSQL (IDJAG-ISSUE-08).
#[tokio::test]
async fn refresh_token_becomes_id_jag_with_current_claims_idjag_issue_11_12_postgres()
-> anyhow::Result<()> {
    let Some(database) = TestDatabase::postgres("refresh_token_becomes_id_jag").await else {
        return Ok(());
    };
    happy_path(Some(&database)).await
}

/// IDJAG-ISSUE-11: another client's refresh token is refused, and, as with the refresh_token
/// grant, treated as leaked: its family is revoked. Refresh tokens usable as subject tokens are
/// client-bound (IDJAG-SAML-05).
#[tokio::test]
async fn another_clients_refresh_token_is_refused_idjag_issue_11() -> anyhow::Result<()> {
    let env = start(None).await?;
    let token = sign_in(&env, "read").await?;
    let response = env
        .post_token(&id_jag_form(&token), Some((AGENT, SECRET)))
        .await?;
    let row = assert_refused(
        &env,
        response,
        (400, "invalid_grant"),
        "refresh_token_client_mismatch",
        &token,
    )
    .await?;
    assert_eq!(row.event.client_id.as_deref(), Some(AGENT));
    let (status, _) = refresh_grant(&env, &token).await?;
    assert_eq!(status, 400, "the family was revoked");
    Ok(())
}

/// IDJAG-ISSUE-11: a refresh token revoked through /revoke (RFC 7009) is refused; so is one
/// whose user's session was invalidated by an admin (`POST /admin/api/v1/revocations`): no
/// further ID-JAG from either (REVOKE-05, IDJAG-SAML-05: revocable).
#[tokio::test]
async fn revoked_refresh_token_is_refused_idjag_issue_11() -> anyhow::Result<()> {
    let env = start(None).await?;
    let token = sign_in(&env, "read").await?;
    let response = env
        .http
        .post(format!("{}/revoke", env.url))
        .basic_auth(APP, Some(SECRET))
        .form(&[
            ("token", token.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let response = as_app(&env, &id_jag_form(&token)).await?;
    assert_refused(
        &env,
        response,
        (400, "invalid_grant"),
        "refresh_token_revoked",
        &token,
    )
    .await?;

    // REVOKE-05: session invalidation per subject, by an admin over the admin API.
    let second = sign_in(&env, "read").await?;
    let (status, body) = as_app(&env, &id_jag_form(&second)).await?;
    assert_eq!(status, 200, "live before the revocation: {body}");
    let api_token = frontdesk::admin::api::create_token(
        &env.server.state.store,
        "incident",
        frontdesk::store::AdminRole::Admin,
        None,
        "test",
        now(),
    )
    .await?;
    let response = env
        .http
        .post(format!("{}/admin/api/v1/revocations", env.url))
        .bearer_auth(api_token)
        .json(&json!({ "subject": USER }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().await?;
    assert!(revoked["refresh_tokens"].as_u64() >= Some(1), "{revoked}");
    let (status, body) = as_app(&env, &id_jag_form(&second)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    let rows = env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some("refresh_token_revoked".into()),
            ..AuditFilter::default()
        })
        .await?;
    assert_eq!(rows.len(), 2, "both refusals audited as revoked");
    Ok(())
}

/// IDJAG-ISSUE-11: an expired refresh token is refused. The token is stored through the real
/// store with an expiry in the past (there is no waiting for one to expire).
#[tokio::test]
async fn expired_refresh_token_is_refused_idjag_issue_11() -> anyhow::Result<()> {
    let env = start(None).await?;
    // The user has signed in, so their claims are known; only the expiry is wrong.
    sign_in(&env, "read").await?;
    let token = "expired-refresh-token-for-tests-only-0123456789";
    let issued_at = now() - 3600;
    env.server
        .state
        .store
        .insert_refresh_token(
            &hash_token(token),
            &RefreshRecord {
                family_id: "expired-family".into(),
                client_id: APP.into(),
                subject: USER.into(),
                subject_issuer: env.idp.issuer.clone(),
                resource: RESOURCE.into(),
                scopes: vec!["read".into()],
                auth_time: Some(issued_at),
                issued_at,
                expires_at: now() - 1,
                dpop_jkt: None,
            },
        )
        .await?;
    let response = as_app(&env, &id_jag_form(token)).await?;
    assert_refused(
        &env,
        response,
        (400, "invalid_grant"),
        "refresh_token_expired",
        token,
    )
    .await?;
    Ok(())
}

/// A rotated-out refresh token presented as a subject token is reuse, as in the refresh_token
/// grant: refused, and the whole family (including its successor) is revoked (IDJAG-SAML-05:
/// rotation is that of the refresh_token grant; the exchange itself does not rotate,
/// docs/decisions.md §22).
#[tokio::test]
async fn rotated_out_refresh_token_is_reuse_and_revokes_the_family() -> anyhow::Result<()> {
    let env = start(None).await?;
    let old = sign_in(&env, "read").await?;
    let (status, body) = refresh_grant(&env, &old).await?;
    assert_eq!(status, 200, "{body}");
    let successor = body["refresh_token"].as_str().expect("rotated").to_string();
    let response = as_app(&env, &id_jag_form(&old)).await?;
    let row = assert_refused(
        &env,
        response,
        (400, "invalid_grant"),
        "refresh_token_reused",
        &old,
    )
    .await?;
    assert!(
        row.event
            .detail
            .map(|detail| detail.value())
            .unwrap_or_default()["revoked"]
            .as_u64()
            >= Some(1)
    );
    let (status, _) = as_app(&env, &id_jag_form(&successor)).await?;
    assert_eq!(status, 400, "the successor died with its family");
    let (status, _) = refresh_grant(&env, &successor).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn unknown_or_garbage_refresh_token_is_refused() -> anyhow::Result<()> {
    let env = start(None).await?;
    let response = as_app(&env, &id_jag_form("not-a-token-frontdesk-issued")).await?;
    assert_refused(
        &env,
        response,
        (400, "invalid_grant"),
        "refresh_token_unknown",
        "not-a-token-frontdesk-issued",
    )
    .await?;
    Ok(())
}

/// IDJAG-ISSUE-11: a scope the user did not grant with the refresh token is refused, even one
/// the audience and the client would allow; no silent narrowing (as RFC 6749 §6).
#[tokio::test]
async fn scope_beyond_the_refresh_token_is_invalid_scope_idjag_issue_11() -> anyhow::Result<()> {
    let env = start(None).await?;
    let token = sign_in(&env, "read").await?;
    let form = exchange_form(
        &token,
        &[
            ("requested_token_type", ID_JAG),
            ("audience", RAS_ISSUER),
            ("scope", "read write"),
        ],
    );
    let response = as_app(&env, &form).await?;
    let row = assert_refused(
        &env,
        response,
        (400, "invalid_scope"),
        "scope_outside_refresh_token",
        &token,
    )
    .await?;
    assert_eq!(row.event.scopes_requested, ["read", "write"]);
    // Within the grant it works, and the token is still good.
    let (status, body) = as_app(&env, &id_jag_form(&token)).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// Refresh tokens are exchanged for ID-JAGs only (docs/decisions.md): an access token, a
/// chaining grant or no requested_token_type is refused.
#[tokio::test]
async fn refresh_token_only_for_id_jags() -> anyhow::Result<()> {
    let env = start(None).await?;
    let token = sign_in(&env, "read").await?;
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("requested_token_type", ACCESS_TOKEN),
            ("resource", LOCAL_API),
        ],
        &[("requested_token_type", JWT), ("audience", DOMAIN_B_ISSUER)],
        &[("audience", RAS_ISSUER)],
    ];
    for extra in cases {
        let (status, body) = as_app(&env, &exchange_form(&token, extra)).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{extra:?}: {body}"
        );
        assert!(body.get("access_token").is_none());
    }
    let rows = env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some("refresh_token_requires_id_jag".into()),
            ..AuditFilter::default()
        })
        .await?;
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|row| row.event.decision.as_str() == "denied")
    );
    // The refusals did not touch the refresh token.
    let (status, body) = as_app(&env, &id_jag_form(&token)).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// The client must authenticate (EMA-10): no credentials is 401 `invalid_client`, and the
/// refresh token is not even looked at.
#[tokio::test]
async fn unauthenticated_client_is_refused() -> anyhow::Result<()> {
    let env = start(None).await?;
    let token = sign_in(&env, "read").await?;
    let mut form = id_jag_form(&token);
    form.push(("client_id", APP));
    let response = env.post_token(&form, None).await?;
    let row = assert_refused(
        &env,
        response,
        (401, "invalid_client"),
        "no_client_authentication",
        &token,
    )
    .await?;
    assert_eq!(row.event.client_id.as_deref(), Some(APP));
    assert!(
        row.event.subject.is_none(),
        "the refresh token was not looked at"
    );
    let response = env
        .post_token(&id_jag_form(&token), Some((APP, "wrong-secret")))
        .await?;
    assert_refused(
        &env,
        response,
        (401, "invalid_client"),
        "bad_client_credentials",
        &token,
    )
    .await?;
    let (status, body) = as_app(&env, &id_jag_form(&token)).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// The refresh token does not record how its sign-in was made, so an audience that requires an
/// `acr` refuses refresh-token subjects with a step-up error (IDJAG-ISSUE-24): the client must
/// bring a fresh ID token. And an audience's `condition` sees the user's current claims.
#[tokio::test]
async fn step_up_audiences_refuse_refresh_token_subjects() -> anyhow::Result<()> {
    let env = start_with(None, |config| {
        for audience in &mut config.audiences {
            if audience.id == "saas" {
                audience.require_acr = vec!["phr".into()];
            }
        }
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "acr": "phr" }))
        .await?;
    let token = sign_in(&env, "read").await?;
    let response = as_app(&env, &id_jag_form(&token)).await?;
    assert_refused(
        &env,
        response,
        (400, "insufficient_user_authentication"),
        "acr_insufficient",
        &token,
    )
    .await?;
    Ok(())
}

/// The audience's `condition`, evaluated over the user's current claims, decides whether this
/// user may get an ID-JAG for that RAS (IDJAG-ISSUE-23).
#[tokio::test]
async fn audience_condition_sees_the_current_claims() -> anyhow::Result<()> {
    let env = start_with(None, |config| {
        for audience in &mut config.audiences {
            if audience.id == "saas" {
                audience.condition = Some("subject.email.endsWith('@example.com')".into());
            }
        }
    })
    .await?;
    let token = sign_in(&env, "read").await?;
    let (status, body) = as_app(&env, &id_jag_form(&token)).await?;
    assert_eq!(status, 200, "{body}");
    // The user moves to another domain at the IdP and signs in again: the same refresh token
    // no longer passes the audience's condition.
    env.idp
        .set_id_token_claims(json!({ "email": "ada@elsewhere.example" }))
        .await?;
    sign_in(&env, "read").await?;
    let response = as_app(&env, &id_jag_form(&token)).await?;
    assert_refused(
        &env,
        response,
        (400, "invalid_target"),
        "audience_condition_denied",
        &token,
    )
    .await?;
    Ok(())
}

/// REVOKE-05 under concurrency (RFC 9700 §4.14.2): an administrator's kill switch for a user
/// (`revoke_tokens`, as `POST /admin/api/v1/revocations` runs it) that lands while a refresh of
/// that user's refresh token is being answered — after the token was rotated, before its
/// successor was stored — revoked the presented token and what existed, but the successor the
/// refresh then stored was live: a client refreshing in a loop (an attacker with a stolen
/// token) could outlast the kill switch. The refresh now re-reads the presented token after
/// storing its successor and, finding it revoked, revokes the family and answers
/// `invalid_grant`. The refresh is held on a PostgreSQL table lock between the two steps
/// (event-driven: the lock waiter is polled in `pg_stat_activity`, bounded).
#[tokio::test]
async fn a_kill_switch_during_a_refresh_leaves_no_refresh_token_alive_revoke_05()
-> anyhow::Result<()> {
    use frontdesk::store::{AuditEvent, Decision, RevocationScope, TokenStore};
    use sqlx::Connection;
    let Some(database) = TestDatabase::postgres("kill_switch_during_refresh").await else {
        return Ok(());
    };
    let env = start(Some(&database)).await?;
    let token = sign_in(&env, "read").await?;
    let mut holder = sqlx::PgConnection::connect(database.url()).await?;
    let mut monitor = sqlx::PgConnection::connect(database.url()).await?;
    // The refresh rotates the token and records the new access token, then waits here to link
    // it to the family, before the new refresh token is stored.
    sqlx::raw_sql("BEGIN; LOCK TABLE grant_family_tokens IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await?;
    let refreshing = {
        let (url, token) = (env.url.clone(), token.clone());
        let http = env.http.clone();
        tokio::spawn(async move {
            let response = http
                .post(format!("{url}/token"))
                .basic_auth(APP, Some(SECRET))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .send()
                .await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        })
    };
    env::test_db::until_waiting(&mut monitor, 1, &[&refreshing]).await;
    let revoked = env
        .server
        .state
        .store
        .revoke_tokens(
            RevocationScope::Subject(USER),
            now(),
            AuditEvent::new(now(), "tokens_revoked", Decision::Changed),
        )
        .await?;
    assert!(revoked.refresh_tokens >= 1, "{revoked:?}");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await?;
    let (status, body) = refreshing.await??;
    if status == 200 {
        let successor = body["refresh_token"].as_str().expect("refresh token");
        let (status, body) = refresh_grant(&env, successor).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "the successor of a revoked refresh token outlived the kill switch: {body}"
        );
    } else {
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert!(body.get("access_token").is_none(), "{body}");
    }
    Ok(())
}

/// REVOKE-05 under concurrency (RFC 9700 §4.14.2): an administrator's kill switch for a user
/// (`revoke_tokens`, as `POST /admin/api/v1/revocations` runs it) that lands while a code of
/// that user is being redeemed — after the code was spent and the access token recorded, before
/// the refresh token was stored — revoked what existed, but the refresh token the redemption
/// then stored was live, and nothing recorded the kill switch for the redemption to notice. The
/// kill switch now marks the families of the user's codes first, and the redemption, checking
/// its family after storing its tokens, revokes them and answers `invalid_grant`
/// (`revoked_while_issuing`). The redemption is held on a PostgreSQL table lock between the two
/// steps (event-driven: the lock waiter is polled in `pg_stat_activity`, bounded).
#[tokio::test]
async fn a_kill_switch_during_a_code_redemption_leaves_no_token_alive_revoke_05()
-> anyhow::Result<()> {
    use frontdesk::store::{AuditEvent, Decision, RevocationScope, TokenStore};
    use sqlx::Connection;
    let Some(database) = TestDatabase::postgres("kill_switch_during_redemption").await else {
        return Ok(());
    };
    let env = start(Some(&database)).await?;
    let code = authorization_code(&env, "read").await?;
    let mut holder = sqlx::PgConnection::connect(database.url()).await?;
    let mut monitor = sqlx::PgConnection::connect(database.url()).await?;
    // The redemption spends the code and records the access token, then waits here to link it
    // to the family, before the refresh token is stored.
    sqlx::raw_sql("BEGIN; LOCK TABLE grant_family_tokens IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await?;
    let redeeming = {
        let (url, code) = (env.url.clone(), code.clone());
        let http = env.http.clone();
        tokio::spawn(async move {
            let response = http
                .post(format!("{url}/token"))
                .basic_auth(APP, Some(SECRET))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
                .send()
                .await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        })
    };
    env::test_db::until_waiting(&mut monitor, 1, &[&redeeming]).await;
    let revoked = env
        .server
        .state
        .store
        .revoke_tokens(
            RevocationScope::Subject(USER),
            now(),
            AuditEvent::new(now(), "tokens_revoked", Decision::Changed),
        )
        .await?;
    assert_eq!(
        revoked.access_tokens, 1,
        "the access token recorded: {revoked:?}"
    );
    assert_eq!(revoked.refresh_tokens, 0, "none stored yet: {revoked:?}");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await?;
    let (status, body) = redeeming.await??;
    if let Some(access_token) = body["access_token"].as_str() {
        assert!(
            !env.introspect_active(access_token).await?,
            "the access token outlived the kill switch: {body}"
        );
    }
    if let Some(refresh_token) = body["refresh_token"].as_str() {
        let (status, refreshed) = refresh_grant(&env, refresh_token).await?;
        assert_eq!(
            (status, refreshed["error"].as_str()),
            (400, Some("invalid_grant")),
            "the refresh token outlived the kill switch: {refreshed}"
        );
    }
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    let record = audited(&env, "revoked_while_issuing").await?;
    // What the redemption issued before it was refused is revoked too.
    let jti = record.event.issued_jti.clone().expect("issued jti");
    let issued = env.server.state.store.issued_token(&jti).await?;
    assert!(
        issued.is_some_and(|token| token.revoked_at.is_some()),
        "the access token it recorded is live"
    );
    let live_refresh_tokens: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE subject = $1 AND revoked_at IS NULL",
    )
    .bind(USER)
    .fetch_one(&mut monitor)
    .await?;
    assert_eq!(
        live_refresh_tokens, 0,
        "a refresh token outlived the kill switch"
    );
    Ok(())
}
