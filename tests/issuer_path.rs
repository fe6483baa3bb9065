//! An issuer with a path (`https://login.example.com/sts`, a tenant behind a path-routing
//! proxy): the server answers under the path, every URL its metadata names is one it serves, the
//! metadata is also at RFC 8414 §3.1's path-inserted location (META-01), and nothing but the
//! operator's probes is answered outside the path. Real HTTP against a real server.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use env::*;
use serde_json::{Value, json};

const PATH: &str = "/tenants/acme";

/// A frontdesk whose issuer is its address plus [`PATH`], and the bare address.
async fn start() -> anyhow::Result<(Env, String)> {
    let env = Env::start_with(|config| config.issuer = format!("{}{PATH}", config.issuer)).await?;
    let root = env
        .url
        .strip_suffix(PATH)
        .ok_or_else(|| anyhow::anyhow!("the issuer {} does not end with {PATH}", env.url))?
        .to_string();
    Ok((env, root))
}

async fn get(env: &Env, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = env.http.get(url).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn the_metadata_is_found_where_rfc_8414_and_oidc_put_it_and_names_served_urls()
-> anyhow::Result<()> {
    let (env, root) = start().await?;
    let issuer = env.url.as_str();
    let mut documents = Vec::new();
    for url in [
        // RFC 8414 §3.1: inserted between the origin and the path.
        format!("{root}/.well-known/oauth-authorization-server{PATH}"),
        // The OIDC form inserted the same way, which MCP clients try too.
        format!("{root}/.well-known/openid-configuration{PATH}"),
        // Appended to the issuer, as OpenID Connect Discovery §4 and many clients do.
        format!("{issuer}/.well-known/oauth-authorization-server"),
        format!("{issuer}/.well-known/openid-configuration"),
    ] {
        let (status, document) = get(&env, &url).await?;
        assert_eq!(status, 200, "{url}");
        assert_eq!(document["issuer"], issuer, "{url}");
        documents.push(document);
    }
    assert!(documents.windows(2).all(|pair| pair[0] == pair[1]));
    let metadata = &documents[0];
    // INT-08: the token endpoint shares the issuer's scheme, host and port (and path).
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(metadata["jwks_uri"], format!("{issuer}/jwks.json"));

    // The JWKS is served where the metadata says.
    let (status, jwks) = get(&env, &format!("{issuer}/jwks.json")).await?;
    assert_eq!(status, 200);
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()),
        "{jwks}"
    );

    // The root is not this issuer: no metadata, no JWKS, no token endpoint there.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenants",
        "/jwks.json",
        "/admin",
    ] {
        let (status, body) = get(&env, &format!("{root}{path}")).await?;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let response = env
        .http
        .post(format!("{root}/token"))
        .form(&[("grant_type", TOKEN_EXCHANGE)])
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 404);

    // Probes and metrics answer at the root, where load balancers look, and under the path.
    for url in [
        format!("{root}/healthz"),
        format!("{root}/readyz"),
        format!("{issuer}/healthz"),
        format!("{issuer}/readyz"),
        format!("{root}/metrics"),
    ] {
        let status = env.http.get(&url).send().await?.status().as_u16();
        assert_eq!(status, 200, "{url}");
    }
    Ok(())
}

/// A `private_key_jwt` assertion of `jwt-client` for `aud`, typed `typ` (none when `None`).
fn client_assertion(env: &Env, aud: Value, typ: Option<&str>) -> anyhow::Result<String> {
    let jwk = env.client_key.public_jwk().map_err(anyhow::Error::msg)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = jwk.common.key_id.clone();
    header.typ = typ.map(str::to_owned);
    let claims = json!({ "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": aud,
                         "jti": uuid::Uuid::new_v4().to_string(), "iat": now(),
                         "exp": now() + 120 });
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &env.client_key.encoding_key().map_err(anyhow::Error::msg)?,
    )?)
}

/// The exchange at a path issuer, and the client assertions it accepts there (CAUTH-05,
/// docs/decisions.md §4): `aud` is this issuer or its token endpoint, path included (BCP-06),
/// and `typ` is `client-authentication+jwt`, `JWT` or absent, never another kind of token
/// (BCP-08).
#[tokio::test]
async fn a_token_exchange_at_the_path_issues_an_id_jag_of_the_path_issuer() -> anyhow::Result<()> {
    let (env, _) = start().await?;
    let id_token = env.id_token().await?;
    // `post_token` posts to the issuer's `/token`, under the path.
    let (status, body) = env.id_jag_exchange(&id_token, RAS_ISSUER).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap_or_default();
    let verified = env
        .verify_issued(token, RAS_ISSUER, "oauth-id-jag+jwt")
        .await?;
    assert_eq!(verified["payload"]["iss"], env.url.as_str());

    // A client assertion's audience is this issuer's token endpoint, path included (RFC 7523
    // §3): one for the root's `/token` is refused.
    let token_endpoint = format!("{}/token", env.url);
    let root_endpoint = token_endpoint.replace(PATH, "");
    let issuer = env.url.clone();
    let cases = [
        (
            "aud the root's token endpoint",
            json!(root_endpoint),
            Some("JWT"),
            Some("wrong_audience"),
        ),
        (
            "aud the root",
            json!(issuer.replace(PATH, "")),
            Some("JWT"),
            Some("wrong_audience"),
        ),
        (
            "aud the token endpoint",
            json!(token_endpoint),
            Some("JWT"),
            None,
        ),
        (
            "aud the issuer (CAUTH-05)",
            json!(issuer),
            Some("JWT"),
            None,
        ),
        (
            "aud an array holding the issuer",
            json!([issuer, "https://other.example"]),
            Some("JWT"),
            None,
        ),
        (
            "typ client-authentication+jwt (CAUTH-05)",
            json!(issuer),
            Some("client-authentication+jwt"),
            None,
        ),
        ("no typ (CAUTH-05)", json!(issuer), None, None),
        (
            "typ at+jwt (BCP-08)",
            json!(issuer),
            Some("at+jwt"),
            Some("wrong_typ"),
        ),
        (
            "typ oauth-id-jag+jwt (BCP-08)",
            json!(issuer),
            Some("oauth-id-jag+jwt"),
            Some("wrong_typ"),
        ),
    ];
    for (label, aud, typ, refused) in cases {
        let assertion = client_assertion(&env, aud, typ)?;
        // The subject token is bound to the client: its `aud` is the client's id.
        let id_token = env.idp.mint(json!({ "aud": JWT_CLIENT })).await?;
        let form = assertion_exchange_form(id_token, assertion);
        let (status, body) = env.post_token(&form, None).await?;
        match refused {
            None => assert_eq!(status, 200, "{label}: {body}"),
            Some(reason) => {
                assert_eq!(
                    (status, &body["error"]),
                    (401, &json!("invalid_client")),
                    "{label}: {body}"
                );
                let events = env.audit_log().await?;
                let newest = events.first().expect("the refusal is audited");
                assert_eq!(newest.event.reason.as_deref(), Some(reason), "{label}");
            }
        }
    }
    Ok(())
}

/// `server.metrics_token`: `/metrics`, at the root and under the issuer's path, answers only a
/// request bearing the token; without it, or with another, 401 with a Bearer challenge and no
/// metric in the body. The probes stay open for load balancers.
#[tokio::test]
async fn metrics_answer_only_the_metrics_token_when_one_is_set() -> anyhow::Result<()> {
    const TOKEN: &str = "metrics-token-for-the-scraper";
    let env = Env::start_with(|config| {
        config.issuer = format!("{}{PATH}", config.issuer);
        config.server.metrics_token = Some(frontdesk::secret::SecretString::new(TOKEN));
    })
    .await?;
    let root = env.url.strip_suffix(PATH).expect("path issuer").to_string();
    for url in [format!("{root}/metrics"), format!("{}/metrics", env.url)] {
        for presented in [None, Some("metrics-token-for-the-scrapeR"), Some("")] {
            let mut request = env.http.get(&url);
            if let Some(token) = presented {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            assert_eq!(response.status().as_u16(), 401, "{url} {presented:?}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"metrics\""
            );
            assert!(!response.text().await?.contains("frontdesk_"));
        }
        let response = env.http.get(&url).bearer_auth(TOKEN).send().await?;
        assert_eq!(response.status().as_u16(), 200, "{url}");
        assert!(
            response
                .text()
                .await?
                .contains("frontdesk_http_requests_total")
        );
    }
    let status = env
        .http
        .get(format!("{root}/healthz"))
        .send()
        .await?
        .status();
    assert_eq!(status.as_u16(), 200);
    Ok(())
}
