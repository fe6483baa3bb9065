//! Dynamic Client Registration (RFC 7591) over real HTTP: off by default; when an administrator
//! turns it on, a public MCP client registers and completes the code flow, a confidential one
//! gets a secret shown once (stored as an argon2id hash), bad metadata is refused with the RFC
//! 7591 error codes (CMETA-01..04), the initial access token and the per-address rate limit are
//! enforced, and every decision is audited. Clients are stored like admin-created ones.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use code_flow::*;
use env::*;
use frontdesk::store::{TrustKind, TrustStore};
use serde_json::{Value, json};

const INITIAL_TOKEN: &str = "initial-access-token-for-tests";

async fn start(
    customize: impl FnOnce(&mut frontdesk::config::Config) + Send + 'static,
) -> anyhow::Result<Env> {
    Env::start_with(move |config| {
        enable_code_flow(config);
        config.registration.enabled = true;
        customize(config);
    })
    .await
}

async fn register(
    env: &Env,
    body: &Value,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value, reqwest::header::HeaderMap)> {
    let mut request = env
        .http
        .post(format!("{}/register", env.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, response.json().await?, headers))
}

fn public_request() -> Value {
    json!({
        "client_name": "Registered MCP client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "client_uri": "https://ignored.example/",
    })
}

async fn audited(env: &Env, event: &str, reason: Option<&str>) -> anyhow::Result<bool> {
    let events = env.audit_log().await?;
    Ok(events.iter().any(|record| {
        record.event.event == event
            && (reason.is_none() || record.event.reason.as_deref() == reason)
    }))
}

#[tokio::test]
async fn registration_is_off_by_default() -> anyhow::Result<()> {
    let env = Env::start_with(enable_code_flow).await?;
    let metadata: Value = env.metadata().await?;
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    let (status, _, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn a_public_client_registers_and_completes_the_code_flow() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let metadata: Value = env.metadata().await?;
    assert_eq!(
        metadata["registration_endpoint"],
        json!(format!("{}/register", env.url))
    );

    let (status, body, headers) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(
        body["client_secret"].is_null(),
        "public clients get no secret"
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["client_name"], "Registered MCP client");
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    let client_id = body["client_id"].as_str().expect("client_id").to_string();

    // Stored like an admin-created client, marked as self-registered, and audited.
    let stored = env.server.state.store.list_trust(TrustKind::Client).await?;
    let document = stored
        .iter()
        .find(|d| d.id == client_id)
        .expect("stored in the database");
    assert!(!document.managed_by_config);
    assert_eq!(document.document["source"], "dcr");
    assert!(audited(&env, "client_created", None).await?);

    let browser = browser()?;
    let (html, cookie) =
        to_consent(&env, &browser, &authorize_params(&client_id, REDIRECT)).await?;
    assert!(
        html.contains("Registered MCP client (self-registered)"),
        "the consent page marks a self-chosen name: {html}"
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
            ("client_id", &client_id),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_confidential_client_gets_its_secret_once_stored_as_an_argon2_hash() -> anyhow::Result<()>
{
    let env = start(|_| {}).await?;
    let mut request = public_request();
    request["token_endpoint_auth_method"] = json!("client_secret_basic");
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{body}");
    let client_id = body["client_id"].as_str().expect("client_id").to_string();
    let secret = body["client_secret"]
        .as_str()
        .expect("a secret")
        .to_string();
    assert_eq!(body["client_secret_expires_at"], 0);
    let stored = env.server.state.store.list_trust(TrustKind::Client).await?;
    let document = &stored
        .iter()
        .find(|d| d.id == client_id)
        .expect("stored")
        .document;
    let hash = document["secret_hash"].as_str().expect("hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&secret));
    // The secret authenticates the client (revocation of an unknown token answers 200).
    let response = env
        .http
        .post(format!("{}/revoke", env.url))
        .basic_auth(&client_id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=unknown")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

#[tokio::test]
async fn bad_metadata_is_refused_with_rfc_7591_errors_and_audited() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let mut request = public_request();
    request["redirect_uris"] = json!(["http://app.example/callback"]);
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_redirect_uri")),
        "{body}"
    );

    let mut request = public_request();
    request["response_types"] = json!(["token"]);
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );

    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let profile = "urn:ietf:params:oauth:grant-profile:id-jag";
    // CMETA-03: the profiles must be an array of strings.
    let (status, body, _) = register(
        &env,
        &json!({ "token_endpoint_auth_method": "client_secret_post", "grant_types": [exchange],
                 "authorization_grant_profiles_supported": profile }),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    // CMETA-02: the ID-JAG profile with only token exchange.
    let (status, body, _) = register(
        &env,
        &json!({ "token_endpoint_auth_method": "client_secret_post", "grant_types": [exchange],
                 "authorization_grant_profiles_supported": [profile] }),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    // CMETA-04: jwt-bearer for a self-registered client is refused by default.
    let (status, body, _) = register(
        &env,
        &json!({ "token_endpoint_auth_method": "client_secret_post", "grant_types": [exchange, bearer],
                 "authorization_grant_profiles_supported": [profile] }),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    // A public client asking for token exchange.
    let (status, body, _) = register(
        &env,
        &json!({ "token_endpoint_auth_method": "none", "grant_types": [exchange] }),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    // Not JSON.
    let response = env
        .http
        .post(format!("{}/register", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("redirect_uris=x")
        .send()
        .await?;
    assert_eq!(response.status(), 400);

    assert!(audited(&env, "client_registration", Some("redirect_uri_invalid")).await?);
    assert!(audited(&env, "client_registration", Some("jwt_bearer_not_allowed")).await?);
    assert!(audited(&env, "client_registration", Some("grant_profile_mismatch")).await?);
    Ok(())
}

#[tokio::test]
async fn cmeta_01_grant_profiles_are_stored_and_echoed_when_jwt_bearer_is_allowed()
-> anyhow::Result<()> {
    let env = start(|config| config.registration.allow_jwt_bearer = true).await?;
    let profile = "urn:ietf:params:oauth:grant-profile:id-jag";
    let (status, body, _) = register(
        &env,
        &json!({
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange",
                            "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "authorization_grant_profiles_supported": [profile],
        }),
        None,
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["authorization_grant_profiles_supported"],
        json!([profile])
    );
    assert_eq!(body["response_types"], json!([]));
    Ok(())
}

#[tokio::test]
async fn the_initial_access_token_is_required_when_configured() -> anyhow::Result<()> {
    let env = start(|config| {
        config.registration.initial_access_token =
            Some(frontdesk::secret::SecretString::new(INITIAL_TOKEN));
    })
    .await?;
    let (status, body, headers) = register(&env, &public_request(), None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(headers.get("www-authenticate").is_some());
    let (status, _, _) = register(&env, &public_request(), Some("wrong-token-wrong-token")).await?;
    assert_eq!(status, 401);
    let (status, body, _) = register(&env, &public_request(), Some(INITIAL_TOKEN)).await?;
    assert_eq!(status, 201, "{body}");
    assert!(audited(&env, "client_registration", Some("initial_access_token")).await?);
    Ok(())
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() -> anyhow::Result<()> {
    let env = start(|config| config.registration.per_minute = 2).await?;
    for _ in 0..2 {
        let (status, body, _) = register(&env, &public_request(), None).await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, headers) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert!(audited(&env, "client_registration", Some("throttled")).await?);
    Ok(())
}
