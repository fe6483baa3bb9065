//! Proves the test IdP harness (tests/support/idp.rs) works: a real OIDC
//! IdP over HTTP on a random loopback port, minting, key rotation, JWKS
//! failure injection, and independent verification with npm `jose`.

#[path = "support/idp.rs"]
mod idp;

use anyhow::{Context, ensure};
use idp::{TestIdp, decode_unverified, verify_independently};
use serde_json::{Value, json};

fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_json(url: &str) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(resp.status().is_success(), "GET {url} -> {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test]
async fn discovery_and_jwks_are_served_over_http() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    ensure!(
        idp.issuer.starts_with("http://127.0.0.1:"),
        "issuer {}",
        idp.issuer
    );

    let disco = get_json(&format!("{}/.well-known/openid-configuration", idp.issuer)).await?;
    assert_eq!(disco["issuer"], json!(idp.issuer));
    assert_eq!(disco["jwks_uri"], json!(idp.jwks_uri));
    assert_eq!(disco["token_endpoint"], json!(idp.token_endpoint));

    let jwks = get_json(&idp.jwks_uri).await?;
    let keys = jwks["keys"].as_array().context("keys array")?;
    ensure!(keys.len() == 2, "expected RS256 + ES256 keys, got {jwks}");
    for k in keys {
        ensure!(k.get("d").is_none(), "private key material published: {k}");
        ensure!(
            k["kid"].is_string() && k["alg"].is_string(),
            "kid/alg missing: {k}"
        );
    }
    let kids = jwks_kids(&jwks);
    for alg in ["RS256", "ES256"] {
        let kid = idp.initial_kids[alg].as_str().context("initial kid")?;
        ensure!(
            kids.contains(&kid.to_owned()),
            "{alg} kid {kid} not in {kids:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn minted_tokens_verify_independently() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    let token = idp
        .mint(json!({
            "aud": "frontdesk",
            "email": "alice@example.com",
            "acr": "urn:test:mfa",
            "amr": ["pwd", "otp"],
            "auth_time": 1_700_000_000,
            "azp": "client-a",
        }))
        .await?;
    let out = verify_independently(&token, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT").await?;
    assert_eq!(out["header"]["alg"], "RS256");
    assert_eq!(out["header"]["kid"], idp.initial_kids["RS256"]);
    assert_eq!(out["payload"]["iss"], json!(idp.issuer));
    assert_eq!(out["payload"]["sub"], "user-1");
    assert_eq!(out["payload"]["email"], "alice@example.com");
    assert_eq!(out["payload"]["amr"], json!(["pwd", "otp"]));
    let iat = out["payload"]["iat"].as_i64().context("iat")?;
    let exp = out["payload"]["exp"].as_i64().context("exp")?;
    assert_eq!(exp - iat, 300);

    // ES256 with an explicit typ.
    let es = idp
        .mint_with_header(
            json!({"aud": ["frontdesk", "other"], "sub": "bob"}),
            json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"}),
        )
        .await?;
    let out = verify_independently(
        &es,
        &idp.jwks_uri,
        &idp.issuer,
        "frontdesk",
        "oauth-id-jag+jwt",
    )
    .await?;
    assert_eq!(out["header"]["alg"], "ES256");
    assert_eq!(out["header"]["kid"], idp.initial_kids["ES256"]);
    assert_eq!(out["payload"]["sub"], "bob");

    // A null claim is removed; header members can be removed too.
    let bare = idp
        .mint_with_header(json!({"aud": "x", "exp": null}), json!({"typ": null}))
        .await?;
    let (h, p) = decode_unverified(&bare)?;
    ensure!(h.get("typ").is_none() && p.get("exp").is_none(), "{h} {p}");
    Ok(())
}

#[tokio::test]
async fn independent_verification_rejects_bad_tokens() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    let token = idp.mint(json!({"aud": "frontdesk"})).await?;

    let err = verify_independently(&token, &idp.jwks_uri, &idp.issuer, "someone-else", "JWT")
        .await
        .expect_err("wrong audience must fail");
    ensure!(
        format!("{err:#}").contains("aud"),
        "unexpected error: {err:#}"
    );

    let err = verify_independently(
        &token,
        &idp.jwks_uri,
        "http://127.0.0.1:1",
        "frontdesk",
        "JWT",
    )
    .await
    .expect_err("wrong issuer must fail");
    ensure!(
        format!("{err:#}").contains("iss"),
        "unexpected error: {err:#}"
    );

    let err = verify_independently(&token, &idp.jwks_uri, &idp.issuer, "frontdesk", "at+jwt")
        .await
        .expect_err("wrong typ must fail");
    ensure!(
        format!("{err:#}").contains("typ"),
        "unexpected error: {err:#}"
    );

    let expired = idp
        .mint(json!({"aud": "frontdesk", "iat": 1_000_000, "exp": 1_000_300}))
        .await?;
    verify_independently(&expired, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT")
        .await
        .expect_err("expired token must fail");

    let unsigned = idp
        .mint_with_header(json!({"aud": "frontdesk"}), json!({"alg": "none"}))
        .await?;
    verify_independently(&unsigned, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT")
        .await
        .expect_err("alg none must fail");

    // A token from another IdP does not verify against this IdP's JWKS.
    let other = TestIdp::start().await?;
    let foreign = other
        .mint(json!({"aud": "frontdesk", "iss": idp.issuer}))
        .await?;
    verify_independently(&foreign, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT")
        .await
        .expect_err("token signed by another IdP must fail");
    Ok(())
}

#[tokio::test]
async fn rotation_publishes_new_kid_and_keeps_old() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    let old = idp.mint(json!({"aud": "frontdesk"})).await?;
    let old_kid = idp.initial_kids["RS256"]
        .as_str()
        .context("kid")?
        .to_owned();

    let new_kid = idp.rotate_key().await?;
    ensure!(new_kid != old_kid, "rotation kept kid {old_kid}");
    let kids = jwks_kids(&get_json(&idp.jwks_uri).await?);
    ensure!(
        kids.contains(&new_kid) && kids.contains(&old_kid),
        "{kids:?}"
    );

    let new = idp.mint(json!({"aud": "frontdesk"})).await?;
    let (h, _) = decode_unverified(&new)?;
    assert_eq!(h["kid"], json!(new_kid));
    for t in [&old, &new] {
        verify_independently(t, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT").await?;
    }

    let new_es = idp.rotate_key_alg("ES256").await?;
    let es = idp
        .mint_with_header(json!({"aud": "frontdesk"}), json!({"alg": "ES256"}))
        .await?;
    assert_eq!(decode_unverified(&es)?.0["kid"], json!(new_es));
    Ok(())
}

#[tokio::test]
async fn jwks_failure_injection_and_counters() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    assert_eq!(idp.jwks_requests().await?, 0);

    idp.set_jwks_failing(true).await?;
    let resp = client.get(&idp.jwks_uri).send().await?;
    assert_eq!(resp.status().as_u16(), 503);
    let token = idp.mint(json!({"aud": "frontdesk"})).await?;
    verify_independently(&token, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT")
        .await
        .expect_err("verification must fail while JWKS is down");

    idp.set_jwks_failing(false).await?;
    let resp = client.get(&idp.jwks_uri).send().await?;
    assert_eq!(resp.status().as_u16(), 200);
    verify_independently(&token, &idp.jwks_uri, &idp.issuer, "frontdesk", "JWT").await?;
    ensure!(idp.jwks_requests().await? >= 4, "{}", idp.stats().await?);
    Ok(())
}

#[tokio::test]
async fn mock_token_endpoint_issues_id_tokens() -> anyhow::Result<()> {
    // The mock's own /token endpoint (authorization_code grant) also returns
    // an id_token signed with the current RS256 key.
    let idp = TestIdp::start().await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let resp = client
        .post(&idp.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=abc&client_id=rp-1")
        .send()
        .await?;
    ensure!(resp.status().is_success(), "{}", resp.status());
    let body: Value = resp.json().await?;
    let id_token = body["id_token"].as_str().context("id_token")?;
    let out = verify_independently(id_token, &idp.jwks_uri, &idp.issuer, "rp-1", "JWT").await?;
    assert_eq!(out["header"]["kid"], idp.initial_kids["RS256"]);
    Ok(())
}

#[tokio::test]
async fn dropping_the_handle_stops_the_idp() -> anyhow::Result<()> {
    let idp = TestIdp::start().await?;
    let url = idp.jwks_uri.clone();
    get_json(&url).await?;
    idp.shutdown().await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    ensure!(
        client.get(&url).send().await.is_err(),
        "IdP still answering after shutdown"
    );
    Ok(())
}
