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
#[path = "support/legs.rs"]
mod legs;

use code_flow::*;
use env::*;
use frontdesk::store::{TrustDocument, TrustKind, TrustStore};
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

/// The string member `key` of `body` (empty if absent).
fn text(body: &Value, key: &str) -> String {
    body[key].as_str().unwrap_or_default().to_string()
}

/// `method url` with an optional bearer token and JSON body; status, body (null when empty)
/// and headers.
async fn manage(
    env: &Env,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value, reqwest::header::HeaderMap)> {
    let mut request = env.http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    };
    Ok((status, body, headers))
}

/// Client `client_id` as stored.
async fn stored_client(env: &Env, client_id: &str) -> anyhow::Result<TrustDocument> {
    env.server
        .state
        .store
        .list_trust(TrustKind::Client)
        .await?
        .into_iter()
        .find(|d| d.id == client_id)
        .ok_or_else(|| anyhow::anyhow!("{client_id} is not stored"))
}

/// An administrator's change to client `client_id`, made straight in the store and then picked
/// up by the registry, as another instance's change would be.
async fn administer(
    env: &Env,
    client_id: &str,
    change: impl FnOnce(&mut Value),
) -> anyhow::Result<()> {
    use frontdesk::store::{AdminStore, AuditEvent, Decision, TrustChange};
    let mut document = stored_client(env, client_id).await?;
    change(&mut document.document);
    let store = &env.server.state.store;
    store
        .apply_trust_change(
            TrustKind::Client,
            TrustChange::Update(&document),
            &AuditEvent::new(now(), "client_updated", Decision::Changed),
        )
        .await?;
    env.server.state.tokens.trust.refresh().await?;
    Ok(())
}

/// Whether `client_id` with `secret` authenticates at `/revoke` (200) or not (401).
async fn secret_works(env: &Env, client_id: &str, secret: &str) -> anyhow::Result<bool> {
    let response = env
        .http
        .post(format!("{}/revoke", env.url))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=unknown")
        .send()
        .await?;
    Ok(response.status() == 200)
}

/// RFC 7592: a registration answers with a registration access token and the URL of its client
/// configuration endpoint. With that token (and only that one) the client reads its
/// registration, replaces its metadata under the registration rules (keeping its secret unless
/// it proves it, never choosing one) and deletes itself, which revokes what it was issued. The
/// token is stored hashed and never appears in the audit log; refusals are 401 `invalid_token`
/// whether the client exists or not.
#[tokio::test]
async fn a_client_reads_updates_and_deletes_its_own_registration_rfc_7592() -> anyhow::Result<()> {
    // The agent introspects the registered client's token below, as a resource server may.
    let env = start(|config| {
        for client in &mut config.clients {
            if client.client_id == AGENT {
                client.introspect_audiences = vec!["*".into()];
            }
        }
    })
    .await?;
    let mut request = public_request();
    request["token_endpoint_auth_method"] = json!("client_secret_basic");
    // Only an administrator lets a client introspect others' tokens: not in the stored client.
    request["introspect_audiences"] = json!(["*"]);
    let (status, registered, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let secret = text(&registered, "client_secret");
    let token = text(&registered, "registration_access_token");
    assert!(
        stored_client(&env, &client_id).await?.document["introspect_audiences"].is_null(),
        "{registered}"
    );
    let uri = format!("{}/register/{client_id}", env.url);
    assert_eq!(registered["registration_client_uri"], json!(uri));
    assert!(token.len() >= 43, "{registered}");

    // Stored as a SHA-256 hash, and redacted from the audit log.
    let stored = env.server.state.store.list_trust(TrustKind::Client).await?;
    let hash = stored
        .iter()
        .find(|d| d.id == client_id)
        .and_then(|d| d.document["registration_access_token_hash"].as_str())
        .unwrap_or_default()
        .to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hash, hex);
    let log = serde_json::to_string(
        &env.audit_log()
            .await?
            .iter()
            .map(|record| format!("{:?}", record.event))
            .collect::<Vec<_>>(),
    )?;
    assert!(!log.contains(&hash) && !log.contains(&token));

    // Read.
    let (status, read, headers) =
        manage(&env, reqwest::Method::GET, &uri, Some(&token), None).await?;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(read["client_id"], json!(client_id));
    assert_eq!(read["client_name"], "Registered MCP client");
    assert_eq!(read["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(read["registration_access_token"], json!(token));
    assert_eq!(read["registration_client_uri"], json!(uri));
    assert!(read.get("client_secret").is_none(), "{read}");
    assert!(audited(&env, "client_registration_read", None).await?);

    // Refusals: no token, a wrong one, the token on another client's URL, an unknown client.
    let (_, other, _) = register(&env, &public_request(), None).await?;
    let other_uri = other["registration_client_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (url, presented, reason) in [
        (uri.as_str(), None, "registration_token_missing"),
        (
            uri.as_str(),
            Some("wrong-token"),
            "registration_token_invalid",
        ),
        (
            other_uri.as_str(),
            Some(token.as_str()),
            "registration_token_invalid",
        ),
        (
            &format!("{}/register/{AGENT}", env.url)[..],
            Some(token.as_str()),
            "registration_token_invalid",
        ),
        (
            &format!("{}/register/no-such-client", env.url)[..],
            Some(token.as_str()),
            "registration_token_invalid",
        ),
    ] {
        let (status, body, headers) =
            manage(&env, reqwest::Method::GET, url, presented, None).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{url}"
        );
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer error=\"invalid_token\"")
        );
        assert!(audited(&env, "client_registration", Some(reason)).await?);
    }

    // Update: the metadata is replaced; the fields that are the server's are ignored, the
    // secret is kept.
    let mut update = read.clone();
    update["client_name"] = json!("Renamed MCP client");
    update["redirect_uris"] = json!([REDIRECT, "http://127.0.0.1:9/second"]);
    let (status, updated, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["client_name"], "Renamed MCP client");
    assert_eq!(
        updated["redirect_uris"],
        json!([REDIRECT, "http://127.0.0.1:9/second"])
    );
    assert_eq!(updated["registration_access_token"], json!(token));
    assert!(updated.get("client_secret").is_none(), "{updated}");
    assert!(secret_works(&env, &client_id, &secret).await?);
    let (_, read, _) = manage(&env, reqwest::Method::GET, &uri, Some(&token), None).await?;
    assert_eq!(read["client_name"], "Renamed MCP client");

    // Refused updates: another client_id, a wrong secret, bad metadata. The right secret is fine.
    let refused = [
        (
            "client_id",
            json!("someone-else"),
            "invalid_client_metadata",
            "client_id_mismatch",
        ),
        (
            "client_secret",
            json!("not-the-secret"),
            "invalid_client_metadata",
            "client_secret_mismatch",
        ),
        (
            "redirect_uris",
            json!(["http://evil.example/cb"]),
            "invalid_redirect_uri",
            "redirect_uri_invalid",
        ),
    ];
    for (field, value, error, reason) in refused {
        let mut bad = update.clone();
        bad[field] = value;
        let (status, body, _) =
            manage(&env, reqwest::Method::PUT, &uri, Some(&token), Some(&bad)).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{field}: {body}"
        );
        assert!(
            audited(&env, "client_registration", Some(reason)).await?,
            "{reason}"
        );
    }
    // Refusals name the client whose registration was at stake.
    let events = env.audit_log().await?;
    let mismatch = events
        .iter()
        .find(|record| record.event.reason.as_deref() == Some("client_secret_mismatch"));
    assert_eq!(
        mismatch.and_then(|record| record.event.client_id.clone()),
        Some(client_id.clone())
    );
    let mut proven = update.clone();
    proven["client_secret"] = json!(secret);
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&proven),
    )
    .await?;
    assert_eq!(status, 200, "{body}");

    // A token issued to the client before it deletes itself.
    let code = code_for(&env, &client_id).await?;
    let response = env
        .http
        .post(format!("{}/token", env.url))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let issued: Value = response.json().await?;
    let access_token = issued["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(env.introspect_active(&access_token).await?);

    // Delete: gone, its secret and token with it.
    let (status, body, _) = manage(&env, reqwest::Method::DELETE, &uri, Some(&token), None).await?;
    assert_eq!((status, body), (204, Value::Null));
    assert!(audited(&env, "client_deleted", None).await?);
    let (status, _, _) = manage(&env, reqwest::Method::GET, &uri, Some(&token), None).await?;
    assert_eq!(status, 401);
    assert!(!secret_works(&env, &client_id, &secret).await?);
    assert!(!env.introspect_active(&access_token).await?);
    Ok(())
}

/// RFC 7592 §2.2: a public client that becomes confidential gets its secret in the update's
/// response (it cannot choose one); a client the administrator disabled cannot manage its
/// registration (403), nor re-enable itself.
#[tokio::test]
async fn a_client_gets_a_secret_when_it_becomes_confidential_and_a_disabled_one_is_forbidden()
-> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let (status, registered, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let token = text(&registered, "registration_access_token");
    let uri = text(&registered, "registration_client_uri");

    let mut update = registered.clone();
    update["token_endpoint_auth_method"] = json!("client_secret_post");
    update["client_secret"] = json!("a-secret-of-my-choosing");
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "a public client has no secret to prove: {body}"
    );
    update
        .as_object_mut()
        .map(|members| members.remove("client_secret"));
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let secret = body["client_secret"].as_str().unwrap_or_default();
    assert!(secret.len() >= 32, "{body}");
    assert_ne!(secret, "a-secret-of-my-choosing");
    assert!(secret_works(&env, &client_id, secret).await?);

    let store = &env.server.state.store;

    // A request limit and the DPoP requirements set by the administrator survive the client's
    // next update, which names none of them (or tries to drop them).
    administer(&env, &client_id, |document| {
        document["requests_per_minute"] = json!(5);
        document["dpop_bound_access_tokens"] = json!(true);
        document["require_dpop_nonce"] = json!(true);
        document["introspect_audiences"] = json!(["https://mcp.example.com/mcp"]);
    })
    .await?;
    let mut again = update.clone();
    again["dpop_bound_access_tokens"] = json!(false);
    again["require_dpop_nonce"] = json!(false);
    again["introspect_audiences"] = json!(["*"]);
    let (status, body, _) =
        manage(&env, reqwest::Method::PUT, &uri, Some(&token), Some(&again)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dpop_bound_access_tokens"], true, "{body}");
    let document = stored_client(&env, &client_id).await?.document;
    assert_eq!(document["requests_per_minute"], 5);
    assert_eq!(document["dpop_bound_access_tokens"], true);
    assert_eq!(document["require_dpop_nonce"], true);
    // What it may introspect is the administrator's to say (RFC 7662 §4), not the client's.
    assert_eq!(
        document["introspect_audiences"],
        json!(["https://mcp.example.com/mcp"])
    );

    // Disabled by the administrator: the client can no longer manage its registration.
    administer(&env, &client_id, |document| {
        document["enabled"] = json!(false)
    })
    .await?;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let (status, body, _) =
            manage(&env, method.clone(), &uri, Some(&token), Some(&update)).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("access_denied")),
            "{method}"
        );
    }
    assert!(audited(&env, "client_registration", Some("client_disabled")).await?);
    let stored = store.list_trust(TrustKind::Client).await?;
    let still = stored
        .iter()
        .find(|d| d.id == client_id)
        .map(|d| d.document["enabled"].clone());
    assert_eq!(still, Some(json!(false)));
    Ok(())
}

/// Two instances sharing PostgreSQL, as behind a load balancer: a client that registers at one
/// is known to the other once it reloads its registry (every five seconds; here at once), and
/// manages its registration there too. Until trust changes moved the trust generation, the other
/// instance never reloaded them.
#[tokio::test]
async fn a_registration_at_one_instance_is_known_at_another_sharing_postgresql()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("dcr_cross_instance").await else {
        return Ok(());
    };
    let side = legs::SharedResourceSide::start(database.url(), |config| {
        config.registration.enabled = true;
    })
    .await?;
    let (b1, b2) = (&side.b1, &side.b2);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut request = public_request();
    request["token_endpoint_auth_method"] = json!("client_secret_basic");
    let response = http
        .post(format!("{}/register", b1.url()))
        .json(&request)
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await?;
    let client_id = registered["client_id"].as_str().unwrap_or_default();
    let secret = registered["client_secret"].as_str().unwrap_or_default();
    let token = registered["registration_access_token"]
        .as_str()
        .unwrap_or_default();
    let revoke_at = |base: String| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("{base}/revoke"))
                .basic_auth(client_id, Some(secret))
                .form(&[("token", "unknown")])
                .send()
                .await?;
            anyhow::Ok(response.status().as_u16())
        }
    };
    assert_eq!(revoke_at(b1.url()).await?, 200);
    assert_eq!(revoke_at(b2.url()).await?, 401, "B2 has not reloaded yet");
    assert!(
        b2.state.tokens.trust.refresh().await?,
        "the trust generation moved"
    );
    assert_eq!(revoke_at(b2.url()).await?, 200);
    let response = http
        .get(format!("{}/register/{client_id}", b2.url()))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    side.shutdown().await
}

/// RFC 7592 §2.2: an update replaces the client's metadata, and a field left out is deleted —
/// `authorization_grant_profiles_supported` too (CMETA-01: stored and echoed as the client last
/// declared it). A client that stops declaring the ID-JAG profile can then also drop one of its
/// two grants (CMETA-02 applies to what it declares now, not to what it once declared).
#[tokio::test]
async fn an_update_that_leaves_out_the_grant_profiles_removes_them_rfc_7592() -> anyhow::Result<()>
{
    let env = start(|config| config.registration.allow_jwt_bearer = true).await?;
    let profile = "urn:ietf:params:oauth:grant-profile:id-jag";
    let both = json!([
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ]);
    let (status, registered, _) = register(
        &env,
        &json!({
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": both,
            "authorization_grant_profiles_supported": [profile],
        }),
        None,
    )
    .await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let token = text(&registered, "registration_access_token");
    let uri = text(&registered, "registration_client_uri");

    // The same grants, the profile left out: it is gone.
    let update = json!({ "client_id": client_id,
                         "token_endpoint_auth_method": "client_secret_basic",
                         "grant_types": both });
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("authorization_grant_profiles_supported").is_none(),
        "{body}"
    );
    let stored = stored_client(&env, &client_id).await?;
    assert!(
        stored.document["authorization_grant_profiles_supported"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{}",
        stored.document
    );
    let (status, body, _) = manage(&env, reqwest::Method::GET, &uri, Some(&token), None).await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("authorization_grant_profiles_supported").is_none(),
        "{body}"
    );

    // Declared again, then dropped together with the jwt-bearer grant in one update.
    let mut declared = update.clone();
    declared["authorization_grant_profiles_supported"] = json!([profile]);
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&declared),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["authorization_grant_profiles_supported"],
        json!([profile])
    );
    let narrower = json!({ "client_id": client_id,
                           "token_endpoint_auth_method": "client_secret_basic",
                           "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"] });
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&narrower),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("authorization_grant_profiles_supported").is_none(),
        "{body}"
    );
    Ok(())
}

/// Every RFC 7592 update is a stored change, an audit event and a reload of the trust
/// configuration (and may hash a new secret with argon2id), so updates share the per-address
/// limit of registrations (`registration.per_minute`): a client holding its registration access
/// token cannot PUT in an endless loop.
#[tokio::test]
async fn registration_updates_share_the_per_address_rate_limit() -> anyhow::Result<()> {
    let env = start(|config| config.registration.per_minute = 2).await?;
    let (status, registered, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let token = text(&registered, "registration_access_token");
    let uri = text(&registered, "registration_client_uri");
    let mut update = public_request();
    update["client_id"] = json!(client_id);
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body, headers) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("slow_down")),
        "{body}"
    );
    assert!(headers.get("retry-after").is_some());
    assert!(audited(&env, "client_registration", Some("throttled")).await?);
    // Reading the registration is not a change and stays available.
    let (status, body, _) = manage(&env, reqwest::Method::GET, &uri, Some(&token), None).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// RFC 7591 §2: `scope` is a space-separated list of scope values as RFC 6749 §3.3 defines them
/// (visible ASCII but `"` and `\`); anything else is `invalid_client_metadata`, as `/token`
/// refuses such a scope (`invalid_scope`), rather than stored where no request can match it.
#[tokio::test]
async fn a_scope_outside_rfc_6749_syntax_is_invalid_client_metadata() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    for scope in [
        "read \"write\"",
        "read back\\slash",
        "read caf\u{e9}",
        "read\ttab",
    ] {
        let mut request = public_request();
        request["scope"] = json!(scope);
        let (status, body, _) = register(&env, &request, None).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{scope:?}: {body}"
        );
    }
    assert!(audited(&env, "client_registration", Some("scope_invalid")).await?);
    let mut request = public_request();
    request["scope"] = json!("read  write read");
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["scope"], json!("read write"));
    Ok(())
}

/// RFC 7592 §2.2 and the administrator: a self-registered client may narrow its grant types and
/// scopes in an update, never widen them past its current registration — so an administrator's
/// narrowing cannot be undone by the client's next `PUT`.
#[tokio::test]
async fn an_update_cannot_widen_grant_types_or_scopes_past_the_registration() -> anyhow::Result<()>
{
    let env = start(|_| {}).await?;
    let mut request = public_request();
    request["scope"] = json!("read write");
    let (status, registered, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let token = text(&registered, "registration_access_token");
    let uri = text(&registered, "registration_client_uri");

    // The administrator takes away the refresh token grant and the write scope.
    administer(&env, &client_id, |document| {
        document["grant_types"] = json!(["authorization_code"]);
        document["scopes"] = json!(["read"]);
    })
    .await?;
    let put = |body: Value| {
        let (env, uri, token) = (&env, uri.clone(), token.clone());
        async move { manage(env, reqwest::Method::PUT, &uri, Some(&token), Some(&body)).await }
    };
    let mut undo = registered.clone();
    undo["grant_types"] = json!(["authorization_code", "refresh_token"]);
    undo["scope"] = json!("read");
    let mut wider_scope = registered.clone();
    wider_scope["grant_types"] = json!(["authorization_code"]);
    wider_scope["scope"] = json!("read write");
    let mut any_scope = wider_scope.clone();
    any_scope
        .as_object_mut()
        .map(|members| members.remove("scope"));
    for (label, body, field) in [
        ("grant type back", undo, "grant_types"),
        ("scope back", wider_scope, "scope"),
        ("every scope", any_scope, "scope"),
    ] {
        let (status, answer, _) = put(body).await?;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{label}: {answer}"
        );
        let description = answer["error_description"].as_str().unwrap_or_default();
        assert!(description.starts_with(field), "{label}: {description}");
    }
    let stored = stored_client(&env, &client_id).await?.document;
    assert_eq!(stored["grant_types"], json!(["authorization_code"]));
    assert_eq!(stored["scopes"], json!(["read"]));

    // Within the registration, the update goes through.
    let mut within = registered.clone();
    within["grant_types"] = json!(["authorization_code"]);
    within["scope"] = json!("read");
    within["client_name"] = json!("Renamed");
    let (status, answer, _) = put(within).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        stored_client(&env, &client_id).await?.document["client_name"],
        "Renamed"
    );
    Ok(())
}

/// `registration.max_clients` caps how many self-registered clients exist at once: the
/// per-address rate limit alone lets many addresses grow the client table without bound. Past
/// the cap a registration is 403 `access_denied`, audited `registration_limit_reached`, and
/// nothing is stored; deleting a registration (RFC 7592) makes room again. Clients the
/// administrator configured do not count.
#[tokio::test]
async fn self_registered_clients_are_capped_and_a_deletion_makes_room() -> anyhow::Result<()> {
    let env = start(|config| {
        config.registration.max_clients = 2;
        config.registration.per_minute = 10;
    })
    .await?;
    let mut first = None;
    for _ in 0..2 {
        let (status, body, _) = register(&env, &public_request(), None).await?;
        assert_eq!(status, 201, "{body}");
        first.get_or_insert(body);
    }
    let stored = |env: &Env| {
        let store = env.server.state.store.clone();
        async move {
            let clients = store.list_trust(TrustKind::Client).await?;
            anyhow::Ok(
                clients
                    .iter()
                    .filter(|d| d.document["source"] == "dcr")
                    .count(),
            )
        }
    };
    let (status, body, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert!(
        audited(
            &env,
            "client_registration",
            Some("registration_limit_reached")
        )
        .await?
    );
    assert_eq!(
        stored(&env).await?,
        2,
        "the refused registration stored nothing"
    );

    let first = first.expect("registered");
    let (status, _, _) = manage(
        &env,
        reqwest::Method::DELETE,
        &text(&first, "registration_client_uri"),
        Some(&text(&first, "registration_access_token")),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let (status, body, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 201, "room again after a deletion: {body}");
    assert_eq!(stored(&env).await?, 2);
    Ok(())
}

/// Decision 40: the per-address registration limit counts an IPv6 client by its /64, so a host
/// cannot escape it by picking fresh addresses from its own network. Behind a trusted proxy the
/// client address comes from `X-Forwarded-For`, which lets one test speak from several.
#[tokio::test]
async fn registrations_from_one_ipv6_64_share_one_limit() -> anyhow::Result<()> {
    let env = start(|config| {
        config.registration.per_minute = 2;
        config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await?;
    let register_from = |address: &'static str| {
        let request = env
            .http
            .post(format!("{}/register", env.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", address)
            .body(public_request().to_string());
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    };
    assert_eq!(register_from("2001:db8:1:2::1").await?, 201);
    assert_eq!(register_from("2001:db8:1:2:a:b:c:d").await?, 201);
    assert_eq!(
        register_from("2001:db8:1:2::3").await?,
        429,
        "a third address of the same /64 is over the limit"
    );
    assert_eq!(
        register_from("2001:db8:1:3::1").await?,
        201,
        "the next /64 has its own"
    );
    assert_eq!(register_from("192.0.2.1").await?, 201);
    Ok(())
}

/// The consent page shows a self-registered client's `client_name` followed by
/// "(self-registered)", the one hint that the name was chosen by a stranger. Bidirectional-text
/// controls would let the name reorder that hint (U+202E shows it backwards) and invisible
/// characters would let it pass for another name, so a registration or an update carrying them
/// is `invalid_client_metadata` (RFC 7591 §3.2.2). Scripts' own joiners (ZWNJ in Persian) stay.
#[tokio::test]
async fn a_client_name_with_bidi_controls_or_invisible_characters_is_refused() -> anyhow::Result<()>
{
    let env = start(|_| {}).await?;
    for name in [
        "Corp Wiki\u{202E}",
        "Corp\u{2067} Wiki",
        "Corp\u{200B}Wiki",
        "\u{FEFF}Corp Wiki",
        "Corp Wiki\u{E0041}",
    ] {
        let mut request = public_request();
        request["client_name"] = json!(name);
        let (status, body, _) = register(&env, &request, None).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{name:?}: {body}"
        );
    }
    assert!(audited(&env, "client_registration", Some("client_name_invalid")).await?);

    let mut request = public_request();
    request["client_name"] = json!("\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}");
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "a name with a zero-width non-joiner: {body}");

    // RFC 7592 §2.2: an update is held to the same rule.
    let client_id = text(&body, "client_id");
    let token = text(&body, "registration_access_token");
    let uri = text(&body, "registration_client_uri");
    let mut update = public_request();
    update["client_id"] = json!(client_id);
    update["client_name"] = json!("Corp Wiki\u{202E}");
    let (status, body, _) = manage(
        &env,
        reqwest::Method::PUT,
        &uri,
        Some(&token),
        Some(&update),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    Ok(())
}

/// A scope parameter is split and de-duplicated wherever it is read (registration, `/authorize`,
/// `/token`); with no bound on its values, one request of tens of thousands of distinct values
/// costs the server a quadratic amount of work. More than 256 values is refused: here
/// `invalid_client_metadata` naming the bound, and the registration is not stored.
#[tokio::test]
async fn a_scope_of_more_than_256_values_is_refused() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let many: Vec<String> = (0..257).map(|n| format!("s{n}")).collect();
    let mut request = public_request();
    request["scope"] = json!(many.join(" "));
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|text| text.contains("256")),
        "{body}"
    );
    assert!(audited(&env, "client_registration", Some("scope_invalid")).await?);
    request["scope"] = json!(many[..256].join(" "));
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "256 values are fine: {body}");
    Ok(())
}

/// Every self-registered client is kept in each instance's memory, and each registration
/// reloads the trust configuration with all of them, so `max_clients` bounds the memory only if
/// each registration is bounded too: metadata that would be stored beyond 8 KiB (here, hundreds
/// of redirect URIs) is `invalid_client_metadata`, and nothing is stored.
#[tokio::test]
async fn metadata_stored_beyond_8_kib_is_refused() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let uris: Vec<String> = (0..200)
        .map(|n| format!("https://app.example/callback/{n}/{}", "x".repeat(64)))
        .collect();
    let mut request = public_request();
    request["redirect_uris"] = json!(uris);
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    assert!(audited(&env, "client_registration", Some("metadata_too_large")).await?);
    // A few redirect URIs and inline keys are far below the bound.
    request["redirect_uris"] = json!(uris[..3]);
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

/// The consent page marks a self-registered client "(self-registered)" — the one hint that no
/// administrator vetted it — even when the registration carried no `client_name`: the mark must
/// not depend on what the stranger chose to send.
#[tokio::test]
async fn the_consent_page_marks_a_self_registered_client_without_a_name() -> anyhow::Result<()> {
    let env = start(|_| {}).await?;
    let mut request = public_request();
    request
        .as_object_mut()
        .expect("object")
        .remove("client_name");
    let (status, body, _) = register(&env, &request, None).await?;
    assert_eq!(status, 201, "{body}");
    let client_id = text(&body, "client_id");
    let browser = browser()?;
    let (html, _) = to_consent(&env, &browser, &authorize_params(&client_id, REDIRECT)).await?;
    let shown = html
        .split("id=\"consent-client\">")
        .nth(1)
        .and_then(|rest| rest.split("</dd>").next())
        .unwrap_or_default();
    assert!(shown.contains("(self-registered)"), "{shown}");
    assert!(shown.contains(&client_id), "{shown}");
    Ok(())
}

/// RFC 7592 §2 / RFC 6750 §5.2 (a bearer token must not be guessable by trying): a request to
/// the client configuration endpoint with a wrong registration access token — DELETE as much
/// as GET or PUT — counts against the per-address failure throttle that also guards client
/// authentication at `/token` (`server.failed_auth_per_minute`). Each method is needed here to
/// pass the quota, so one that did not count would leave the address unblocked. Once blocked,
/// the address is refused (429 `slow_down`, audited `throttled`) even with the right token, and
/// the registration survives.
#[tokio::test]
async fn wrong_registration_tokens_on_every_method_count_against_the_failure_throttle()
-> anyhow::Result<()> {
    let env = start(|config| config.server.failed_auth_per_minute = 3).await?;
    let (status, registered, _) = register(&env, &public_request(), None).await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = text(&registered, "client_id");
    let token = text(&registered, "registration_access_token");
    let uri = text(&registered, "registration_client_uri");
    let mut update = public_request();
    update["client_id"] = json!(client_id);
    // Three failures are within the quota; the fourth blocks the address.
    for (method, body) in [
        (reqwest::Method::DELETE, None),
        (reqwest::Method::GET, None),
        (reqwest::Method::PUT, Some(&update)),
        (reqwest::Method::DELETE, None),
    ] {
        let (status, answer, _) = manage(&env, method.clone(), &uri, Some("guess"), body).await?;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("invalid_token")),
            "{method}: {answer}"
        );
    }
    let (status, answer, headers) =
        manage(&env, reqwest::Method::DELETE, &uri, Some(&token), None).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (429, Some("slow_down")),
        "{answer}"
    );
    assert!(headers.get("retry-after").is_some());
    assert!(audited(&env, "client_registration", Some("throttled")).await?);
    assert!(
        env.server
            .state
            .tokens
            .trust
            .current()
            .client(&client_id)
            .is_some(),
        "not deleted"
    );
    Ok(())
}
