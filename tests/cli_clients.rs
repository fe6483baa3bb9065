//! The client-side CLI: `frontdesk client add|list|remove` on a real database file, and
//! `frontdesk exchange` against a real server trusting a real IdP.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::path::Path;

use env::*;
use frontdesk::store::{Store, TokenStore, TrustKind, TrustStore};
use serde_json::Value;

const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

async fn frontdesk(dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    command
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("FRONTDESK_") {
            command.env_remove(name);
        }
    }
    command.envs(extra_env.iter().copied());
    command.output().await.expect("run frontdesk")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `frontdesk exchange` at `issuer` as `agent` (its secret from the environment) for
/// `RAS_ISSUER`, with `extra` arguments.
async fn cli_exchange_as_agent(
    dir: &Path,
    issuer: &str,
    subject_token: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "exchange",
        "--issuer",
        issuer,
        "--client-id",
        AGENT,
        "--subject-token",
        subject_token,
        "--audience",
        RAS_ISSUER,
    ];
    args.extend_from_slice(extra);
    frontdesk(dir, &args, &[("FRONTDESK_CLIENT_SECRET", SECRET)]).await
}

fn config_with_trust(dir: &Path) -> String {
    let path = dir.join("frontdesk.toml");
    std::fs::write(
        &path,
        format!(
            r#"issuer = "https://sts.example.com"
[database]
url = "sqlite://{db}"
[keys]
encryption_key = "{KEK}"
[[identity_providers]]
id = "corp"
issuer = "https://idp.example.com"
jwks = '{{"keys":[]}}'
[[audiences]]
id = "saas"
issuer = "https://as.saas.example"
scopes = ["read"]
[[clients]]
client_id = "from-config"
auth_method = "private_key_jwt"
jwks = '{{"keys":[]}}'
"#,
            db = dir.join("data.db").display()
        ),
    )
    .expect("write config");
    path.to_str().expect("utf-8").to_string()
}

#[tokio::test]
async fn client_add_stores_only_a_hash_of_the_secret_it_prints_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_with_trust(dir.path());
    let output = frontdesk(
        dir.path(),
        &[
            "--config",
            &config,
            "client",
            "add",
            "--id",
            "bot",
            "--audience",
            "saas",
            "--idp-client-id",
            "corp=0oa1",
            "--scope",
            "read",
            "--introspect-audience",
            "https://mcp.example.com/mcp",
            "--audience-tenant-client-id",
            "saas/acme=bot-in-acme",
        ],
        &[],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", text(&output.stderr));
    let secret = stdout
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .expect("the secret is printed once")
        .to_string();
    assert!(secret.len() >= 40, "a strong generated secret");

    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("data.db").display()),
        1,
    )
    .await?;
    let clients = store.list_trust(TrustKind::Client).await?;
    let bot = clients.iter().find(|c| c.id == "bot").expect("stored");
    assert!(!bot.managed_by_config);
    let stored = bot.document.to_string();
    assert!(
        !stored.contains(&secret),
        "the plaintext secret is not stored"
    );
    let hash = bot.document["secret_hash"].as_str().expect("hash");
    assert!(frontdesk::secret::verify_secret(&secret, hash));
    assert_eq!(bot.document["idp_client_ids"]["corp"], "0oa1");
    assert_eq!(
        bot.document["audience_tenant_client_ids"]["saas/acme"],
        "bot-in-acme"
    );
    assert_eq!(
        bot.document["introspect_audiences"],
        serde_json::json!(["https://mcp.example.com/mcp"])
    );
    store.close().await;

    let listed = frontdesk(dir.path(), &["--config", &config, "client", "list"], &[]).await;
    let listed = text(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("bot ") && l.ends_with("database")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("from-config ") && l.ends_with("config")),
        "{listed}"
    );

    // Unknown references and duplicates are refused with a clear line.
    let bad = frontdesk(
        dir.path(),
        &[
            "--config",
            &config,
            "client",
            "add",
            "--id",
            "bot2",
            "--audience",
            "nope",
        ],
        &[],
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("no audience has id nope"),
        "{}",
        text(&bad.stderr)
    );
    let again = frontdesk(
        dir.path(),
        &[
            "--config",
            &config,
            "client",
            "add",
            "--id",
            "bot",
            "--audience",
            "saas",
        ],
        &[],
    )
    .await;
    assert!(!again.status.success());

    // Config-managed clients cannot be removed from the CLI; database ones can.
    let managed = frontdesk(
        dir.path(),
        &["--config", &config, "client", "remove", "from-config"],
        &[],
    )
    .await;
    assert!(!managed.status.success());
    assert!(text(&managed.stderr).contains("managed by the configuration file"));
    // Access tokens recorded for `bot`: one revoked by `client revoke-tokens`, one with the
    // client when it is removed.
    let url = format!("sqlite://{}", dir.path().join("data.db").display());
    let record = |jti: &'static str| {
        let url = url.clone();
        async move {
            let store = Store::connect(&url, 1).await?;
            let now = frontdesk::clock::unix_now();
            store
                .record_issued(&frontdesk::store::IssuedToken {
                    jti: jti.into(),
                    client_id: "bot".into(),
                    subject: "user".into(),
                    token_type: "access_token".into(),
                    issued_at: now,
                    expires_at: now + 600,
                    revoked_at: None,
                    status_index: None,
                    subject_issuer: None,
                })
                .await?;
            store.close().await;
            anyhow::Ok(())
        }
    };
    let revoked_at = |jti: &'static str| {
        let url = url.clone();
        async move {
            let store = Store::connect(&url, 1).await?;
            let token = store.issued_token(jti).await?;
            store.close().await;
            anyhow::Ok(token.and_then(|t| t.revoked_at))
        }
    };
    record("bot-token").await?;
    // `client revoke-tokens` revokes it and keeps the client; an unknown client is an error.
    let unknown = frontdesk(
        dir.path(),
        &["--config", &config, "client", "revoke-tokens", "nobody"],
        &[],
    )
    .await;
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no client has id nobody"));
    let revoked = frontdesk(
        dir.path(),
        &["--config", &config, "client", "revoke-tokens", "bot"],
        &[],
    )
    .await;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert_eq!(
        text(&revoked.stdout).trim(),
        "revoked 1 access tokens, 0 refresh tokens and 0 authorization codes of client bot"
    );
    assert!(revoked_at("bot-token").await?.is_some(), "revoked");
    let store = Store::connect(&url, 1).await?;
    let kept = store.list_trust(TrustKind::Client).await?;
    assert!(
        kept.iter().any(|client| client.id == "bot"),
        "the client stays"
    );
    store.close().await;
    record("bot-token-2").await?;
    let removed = frontdesk(
        dir.path(),
        &["--config", &config, "client", "remove", "bot"],
        &[],
    )
    .await;
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let listed = text(
        &frontdesk(dir.path(), &["--config", &config, "client", "list"], &[])
            .await
            .stdout,
    );
    assert!(!listed.lines().any(|l| l.starts_with("bot ")), "{listed}");
    assert!(
        revoked_at("bot-token-2").await?.is_some(),
        "revoked with its client"
    );
    Ok(())
}

#[tokio::test]
async fn exchange_prints_the_response_and_the_decoded_id_jag() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let dir = tempfile::tempdir()?;
    let output = cli_exchange_as_agent(dir.path(), &env.url, &id_token, &["--scope", "read"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(printed["response"]["issued_token_type"], ID_JAG);
    assert_eq!(printed["decoded"]["header"]["typ"], "oauth-id-jag+jwt");
    assert_eq!(printed["decoded"]["claims"]["aud"], RAS_ISSUER);
    assert_eq!(printed["decoded"]["claims"]["scope"], "read");

    // A refused exchange exits non-zero and shows the OAuth error.
    let refused = cli_exchange_as_agent(dir.path(), &env.url, "garbage", &[]).await;
    assert!(!refused.status.success());
    let shown: Value = serde_json::from_slice(&refused.stdout)?;
    assert_eq!(shown["error"]["error"], "invalid_request");
    Ok(())
}

/// `exchange` finds an issuer's metadata where RFC 8414 §3.1 puts it (the path inserted after
/// the well-known segment), and refuses metadata that names another issuer (§3.3) before it
/// sends the client secret anywhere.
#[tokio::test]
async fn exchange_discovers_a_path_issuer_and_refuses_metadata_of_another_issuer()
-> anyhow::Result<()> {
    let env = Env::start_with(|config| config.issuer = format!("{}/sts", config.issuer)).await?;
    let dir = tempfile::tempdir()?;
    let output = cli_exchange_as_agent(dir.path(), &env.url, &env.id_token().await?, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(printed["decoded"]["claims"]["iss"], env.url.as_str());

    // The same server named with a final `/`: its metadata names `…/sts`, another issuer.
    let with_slash = format!("{}/", env.url);
    let output = cli_exchange_as_agent(dir.path(), &with_slash, &env.id_token().await?, &[]).await;
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("describes the issuer"), "{error}");
    Ok(())
}

/// `exchange` sends the client secret only to an https token endpoint (or http on a loopback
/// address): metadata naming a plain-http endpoint elsewhere is refused before anything is sent.
#[tokio::test]
async fn exchange_refuses_a_token_endpoint_that_is_not_https() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let metadata = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": "http://sts.example.com/token",
    });
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server",
        axum::routing::get(move || async move { axum::Json(metadata) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let output = cli_exchange_as_agent(dir.path(), &issuer, "a-subject-token", &[]).await;
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("is not https"), "{error}");
    Ok(())
}

#[tokio::test]
async fn client_add_registers_a_public_code_flow_client_without_a_secret() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_with_trust(dir.path());
    let output = frontdesk(
        dir.path(),
        &[
            "--config",
            &config,
            "client",
            "add",
            "--id",
            "desktop",
            "--auth-method",
            "none",
            "--redirect-uri",
            "http://127.0.0.1:33418/callback",
            "--name",
            "Desktop app",
            "--require-dpop",
            "--require-dpop-nonce",
            "--requests-per-minute",
            "120",
        ],
        &[],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", text(&output.stderr));
    assert!(
        !stdout.contains("client_secret"),
        "public clients get no secret: {stdout}"
    );
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("data.db").display()),
        1,
    )
    .await?;
    let clients = store.list_trust(TrustKind::Client).await?;
    let desktop = clients.iter().find(|c| c.id == "desktop").expect("stored");
    assert_eq!(desktop.document["auth_method"], "none");
    assert_eq!(desktop.document["dpop_bound_access_tokens"], true);
    assert_eq!(desktop.document["require_dpop_nonce"], true);
    assert_eq!(desktop.document["requests_per_minute"], 120);
    assert!(desktop.document["secret_hash"].is_null());
    assert_eq!(
        desktop.document["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    store.close().await;

    // A public client cannot be given token exchange (CMETA-04).
    let output = frontdesk(
        dir.path(),
        &[
            "--config",
            &config,
            "client",
            "add",
            "--id",
            "sneaky",
            "--auth-method",
            "none",
            "--grant-type",
            "token-exchange",
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("confidential"),
        "{}",
        text(&output.stderr)
    );
    Ok(())
}
