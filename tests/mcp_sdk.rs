//! The real MCP Python SDK (PyPI `mcp`, its `IdentityAssertionOAuthProvider`) as the client of
//! two frontdesk instances: A issues the ID-JAG (leg 1, from a real IdP's ID token), B is the MCP
//! server's authorization server (leg 2). A protected resource written in Python answers 401
//! until it gets an access token that PyJWT verifies against B's JWKS; the test passes only when
//! it answers 200. See tests/python/mcp_e2e.py.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/legs.rs"]
mod legs;

use std::process::Stdio;
use std::time::Duration;

use env::*;
use frontdesk::app::spawn_on;
use legs::resource_side;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn python() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("tests/python/.venv/bin/python");
    assert!(
        venv.exists(),
        "tests/python/.venv is missing: run scripts/test-deps (it installs the MCP Python SDK)"
    );
    venv
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_python_sdk_reaches_a_protected_resource_through_both_legs() -> anyhow::Result<()> {
    both_legs("", "").await
}

/// The same with both frontdesks under issuer paths (`…/enterprise`, `…/mcp-auth`): the SDK
/// finds B's metadata from the resource's `authorization_servers` by RFC 8414 path insertion,
/// and A's ID-JAG names B's issuer with its path.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_python_sdk_reaches_a_protected_resource_through_both_legs_under_issuer_paths()
-> anyhow::Result<()> {
    both_legs("/enterprise", "/mcp-auth").await
}

/// tests/python/mcp_e2e.py with A's issuer under `a_path` and B's under `b_path`.
async fn both_legs(a_path: &str, b_path: &str) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(python())
        .arg(root.join("tests/python/mcp_e2e.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stdin = child.stdin.take().expect("stdin");
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await??
        .expect("the resource URL");
    let resource = serde_json::from_str::<Value>(&first)?["resource"]
        .as_str()
        .expect("resource")
        .to_string();

    // B: the MCP server's authorization server, protecting exactly that resource identifier.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let b_url = format!("http://{}{b_path}", listener.local_addr()?);
    let (b_issuer, a_resource) = (b_url.clone(), resource.clone());
    let a_path = a_path.to_string();
    let a = Env::start_with(move |config| {
        config.issuer = format!("{}{a_path}", config.issuer);
        for audience in &mut config.audiences {
            if audience.id == "saas" {
                audience.issuer = b_issuer.clone();
                audience.resources = vec![a_resource.clone()];
            }
        }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let b_resource = resource.clone();
    // B is a complete MCP authorization server: users can also sign in (authorization code
    // flow) at the test IdP, which is why its metadata has an authorization_endpoint — the SDK
    // refuses metadata without one.
    let sign_in_issuer = a.idp.issuer.clone();
    let config = resource_side(&b_url, &a.url, &db, move |config| {
        config.resources[0].resource = b_resource;
        let mut sign_in = config.identity_providers[0].clone();
        sign_in.id = "corp-sign-in".into();
        sign_in.issuer = sign_in_issuer;
        sign_in.jwks_uri = None;
        sign_in.algorithms = vec!["RS256".into()];
        sign_in.token_types = vec!["id_token".into()];
        config.identity_providers.push(sign_in);
        config.authorization.sign_in_idp = Some("corp-sign-in".into());
        config.authorization.client_id = Some("frontdesk-b".into());
        config.authorization.client_secret =
            Some(frontdesk::secret::SecretString::new("rp-secret"));
    })?;
    let b = spawn_on(config, listener)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let settings = json!({
        "a_issuer": a.url, "a_client_id": AGENT, "a_client_secret": SECRET,
        "idp_control": a.idp.control, "idp_client_id": AGENT_AT_IDP,
        "b_issuer": b_url, "b_client_id": AGENT_AT_RAS, "b_client_secret": SECRET,
        "scope": "read",
    });
    stdin.write_all(format!("{settings}\n").as_bytes()).await?;
    stdin.flush().await?;
    let line = tokio::time::timeout(Duration::from_secs(120), stdout.next_line())
        .await??
        .expect("the outcome line");
    let outcome: Value = serde_json::from_str(&line)?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;

    assert_eq!(outcome["status"], 200, "{outcome}");
    assert!(status.success(), "{outcome}");
    assert_eq!(
        outcome["unauthorized"], 1,
        "the first call was refused: {outcome}"
    );
    assert_eq!(outcome["authorized"], 1, "{outcome}");
    let claims = &outcome["claims"];
    assert_eq!(claims["iss"], b_url);
    assert_eq!(claims["aud"], resource); // EMA-04
    assert_eq!(claims["client_id"], AGENT_AT_RAS);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["scope"], "read");
    b.shutdown().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The MCP Python SDK's standard `OAuthClientProvider` (authorization code + PKCE) against one
/// frontdesk: the SDK follows the resource's RFC 9728 metadata to frontdesk, registers itself
/// through Dynamic Client Registration (a public client), and its redirect handler drives the
/// authorization URL headlessly through the test IdP's sign-in and frontdesk's consent page.
/// The resource (Python, PyJWT) answers 200 only to a valid access token. See
/// tests/python/mcp_oauth.py.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_python_sdk_oauth_client_provider_registers_and_completes_the_code_flow()
-> anyhow::Result<()> {
    oauth_client_provider_flow("").await
}

/// The same with frontdesk's issuer under a path (`…/auth`): the SDK must find the metadata
/// from the resource's `authorization_servers` by RFC 8414 §3.1 path insertion, then register,
/// authorize and redeem under the path.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_python_sdk_oauth_client_provider_finds_an_issuer_with_a_path() -> anyhow::Result<()> {
    oauth_client_provider_flow("/auth").await
}

/// tests/python/mcp_oauth.py against a frontdesk whose issuer has `path` (`""` for none).
async fn oauth_client_provider_flow(path: &str) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(python())
        .arg(root.join("tests/python/mcp_oauth.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stdin = child.stdin.take().expect("stdin");
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await??
        .expect("the resource URL");
    let resource = serde_json::from_str::<Value>(&first)?["resource"]
        .as_str()
        .expect("resource")
        .to_string();

    let protected = resource.clone();
    let path = path.to_string();
    let env = Env::start_with(move |config| {
        config.issuer = format!("{}{path}", config.issuer);
        config.resources.push(frontdesk::config::ResourceConfig {
            resource: protected,
            scopes: vec!["mcp:tools".into()],
            authorization_details_types: vec![],
            access_token_lifetime_secs: None,
            single_use_assertions: true,
            require_dpop: false,
            default: false,
        });
        config.authorization.sign_in_idp = Some("corp".into());
        config.authorization.client_id = Some("frontdesk-rp".into());
        config.authorization.client_secret =
            Some(frontdesk::secret::SecretString::new("rp-secret"));
        config.registration.enabled = true;
    })
    .await?;

    let settings = json!({ "issuer": env.url, "scope": "mcp:tools" });
    stdin.write_all(format!("{settings}\n").as_bytes()).await?;
    stdin.flush().await?;
    let line = tokio::time::timeout(Duration::from_secs(120), stdout.next_line())
        .await??
        .expect("the outcome line");
    let outcome: Value = serde_json::from_str(&line)?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;

    assert_eq!(outcome["status"], 200, "{outcome}");
    assert!(status.success(), "{outcome}");
    assert_eq!(
        outcome["unauthorized"], 1,
        "one 401 started the flow: {outcome}"
    );
    assert_eq!(outcome["authorized"], 1, "{outcome}");
    let client_id = outcome["client_id"].as_str().expect("registered client id");
    assert!(
        client_id.starts_with("dcr-"),
        "registered through /register: {outcome}"
    );
    let hops = outcome["hops"].to_string();
    assert!(
        hops.contains("/authorize") && hops.contains("/authorize/callback"),
        "went through frontdesk and the IdP: {hops}"
    );
    let claims = &outcome["claims"];
    assert_eq!(claims["iss"], env.url);
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["sub"], "johndoe");
    assert_eq!(claims["scope"], "mcp:tools");
    Ok(())
}
