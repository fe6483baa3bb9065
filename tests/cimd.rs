//! Client ID Metadata Documents over real HTTP (CAUTH-10, EMA-11, META-15): a client whose
//! `client_id` is the URL of its metadata document runs the authorization code flow without being
//! registered. The documents are served by a real HTTP server on a loopback port — plain http,
//! which frontdesk accepts only because these tests set the test-only
//! `client_id_metadata.allow_loopback_http` switch (production requires https and refuses
//! loopback and private addresses; those rules are unit-tested in `src/oauth/client_metadata.rs`).
//! Every refusal is an error page (never a redirect to an unverified URI) and is audited.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use code_flow::*;
use env::*;
use serde_json::{Value, json};

/// A loopback document server: path → (status, body), counting requests per path.
#[derive(Clone, Default)]
struct Documents {
    routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
    /// Content types other than `application/json`, per path.
    types: Arc<Mutex<HashMap<String, String>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Documents {
    fn set(&self, path: &str, status: u16, body: String) {
        self.routes
            .lock()
            .expect("lock")
            .insert(path.to_string(), (status, body));
    }

    fn set_type(&self, path: &str, content_type: &str) {
        self.types
            .lock()
            .expect("lock")
            .insert(path.to_string(), content_type.to_string());
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve_document(State(docs): State<Documents>, Path(path): Path<String>) -> Response {
    docs.total.fetch_add(1, Ordering::SeqCst);
    *docs
        .hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let found = docs.routes.lock().expect("lock").get(&path).cloned();
    let content_type = docs
        .types
        .lock()
        .expect("lock")
        .get(&path)
        .cloned()
        .unwrap_or_else(|| "application/json".into());
    match found {
        Some((302, target)) => (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, target)],
        )
            .into_response(),
        Some((status, body)) => (
            axum::http::StatusCode::from_u16(status).expect("status"),
            [
                (axum::http::header::CONTENT_TYPE, content_type),
                (axum::http::header::CACHE_CONTROL, "max-age=600".into()),
            ],
            body,
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

struct Setup {
    env: Env,
    docs: Documents,
    /// `http://127.0.0.1:<port>`
    base: String,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("{}/clients/{path}", self.base)
    }

    fn document(&self, path: &str) -> Value {
        json!({
            "client_id": self.url(path),
            "client_name": "Example MCP client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    }

    /// Serves the test client's public key as `keys.json`, a document's `jwks_uri`; returns it.
    fn publish_keys(&self) -> anyhow::Result<jsonwebtoken::jwk::Jwk> {
        let jwk = self
            .env
            .client_key
            .public_jwk()
            .map_err(anyhow::Error::msg)?;
        self.docs
            .set("keys.json", 200, json!({ "keys": [jwk] }).to_string());
        Ok(jwk)
    }

    fn publish(&self, path: &str, document: &Value) {
        self.docs.set(path, 200, document.to_string());
    }

    async fn refused(&self, client_id: &str, reason: &str) -> anyhow::Result<String> {
        let browser = browser()?;
        let response =
            authorize(&self.env, &browser, &authorize_params(client_id, REDIRECT)).await?;
        assert_eq!(response.status(), 400, "refused with an error page");
        assert!(
            response.headers().get("location").is_none(),
            "never a redirect to an unverified redirect URI"
        );
        let html = response.text().await?;
        let events = self.env.audit_log().await?;
        assert!(
            events.iter().any(|record| record.event.event == "authorize"
                && record.event.reason.as_deref() == Some(reason)
                && record.event.error_code.as_deref() == Some("invalid_client")),
            "audited with reason {reason}"
        );
        Ok(html)
    }
}

async fn start(enabled: bool) -> anyhow::Result<Setup> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let docs = Documents::default();
    let app = axum::Router::new()
        .route("/clients/{path}", axum::routing::get(serve_document))
        .with_state(docs.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = Env::start_with(move |config| {
        enable_code_flow(config);
        config.client_id_metadata.enabled = enabled;
        config.client_id_metadata.allowed_hosts = vec!["127.0.0.1".into()];
        config.client_id_metadata.allow_loopback_http = true;
        config.client_id_metadata.max_document_bytes = 2048;
    })
    .await?;
    Ok(Setup { env, docs, base })
}

#[tokio::test]
async fn cauth_10_a_good_document_runs_the_code_flow_and_the_consent_page_names_its_host()
-> anyhow::Result<()> {
    let setup = start(true).await?;
    let metadata: Value = setup
        .env
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            setup.env.url
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        metadata["client_id_metadata_document_supported"],
        json!(true)
    ); // META-15
    setup.publish("good.json", &setup.document("good.json"));
    let client_id = setup.url("good.json");

    let browser = browser()?;
    let (html, cookie) = to_consent(
        &setup.env,
        &browser,
        &authorize_params(&client_id, REDIRECT),
    )
    .await?;
    assert!(
        html.contains("Example MCP client (127.0.0.1)"),
        "the consent page shows the name and the document's host: {html}"
    );
    let redirect = approve(&setup.env, &browser, &html, &cookie).await?;
    let code = query(&redirect, "code").expect("code");
    let (status, body) = post_form(
        &setup.env,
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
    let verified = setup
        .env
        .verify_issued(
            body["access_token"].as_str().expect("access token"),
            RESOURCE,
            "at+jwt",
        )
        .await?;
    assert_eq!(verified["payload"]["client_id"], json!(client_id));
    // The document was fetched once for /authorize, the consent page and /token (cached).
    assert_eq!(setup.docs.hits("good.json"), 1);
    Ok(())
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() -> anyhow::Result<()> {
    let setup = start(true).await?;
    setup.publish("burst.json", &setup.document("burst.json"));
    let client_id = setup.url("burst.json");
    let browser = browser()?;
    let url = format!(
        "{}/authorize?{}",
        setup.env.url,
        serde_urlencoded::to_string(authorize_params(&client_id, REDIRECT))?
    );
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (browser, url) = (browser.clone(), url.clone());
        requests.spawn(async move { browser.get(url).send().await });
    }
    while let Some(response) = requests.join_next().await {
        assert_eq!(response??.status(), 303);
    }
    assert_eq!(setup.docs.hits("burst.json"), 1, "single flight and cache");
    Ok(())
}

#[tokio::test]
async fn cauth_10_a_document_naming_another_client_id_is_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    let mut document = setup.document("mismatch.json");
    document["client_id"] = json!(setup.url("someone-else.json"));
    setup.publish("mismatch.json", &document);
    let html = setup
        .refused(
            &setup.url("mismatch.json"),
            "client_metadata_client_id_mismatch",
        )
        .await?;
    assert!(html.contains("does not equal its URL"), "{html}");
    Ok(())
}

#[tokio::test]
async fn a_host_outside_allowed_hosts_is_refused_without_fetching() -> anyhow::Result<()> {
    let setup = start(true).await?;
    setup.publish("good.json", &setup.document("good.json"));
    // Same server, but named `localhost`, which is not in allowed_hosts.
    let other = setup.url("good.json").replace("127.0.0.1", "localhost");
    setup.refused(&other, "client_host_not_allowed").await?;
    assert_eq!(
        setup.docs.total.load(Ordering::SeqCst),
        0,
        "nothing fetched"
    );
    Ok(())
}

#[tokio::test]
async fn an_oversized_document_is_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    let mut document = setup.document("big.json");
    document["padding"] = json!("x".repeat(4096));
    setup.publish("big.json", &document);
    let html = setup
        .refused(&setup.url("big.json"), "client_metadata_too_large")
        .await?;
    assert!(html.contains("larger than 2048 bytes"), "{html}");
    Ok(())
}

#[tokio::test]
async fn a_redirect_uri_missing_from_the_document_is_an_error_page() -> anyhow::Result<()> {
    let setup = start(true).await?;
    setup.publish("good.json", &setup.document("good.json"));
    let browser = browser()?;
    let response = authorize(
        &setup.env,
        &browser,
        &authorize_params(&setup.url("good.json"), "http://127.0.0.1:9/elsewhere"),
    )
    .await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    Ok(())
}

#[tokio::test]
async fn fetch_failures_and_redirects_are_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    // 404.
    let html = setup
        .refused(&setup.url("missing.json"), "client_metadata_fetch_failed")
        .await?;
    assert!(html.contains("could not be fetched"), "{html}");
    // A redirect, even to a good document on the same host, is not followed.
    setup.publish("good.json", &setup.document("good.json"));
    setup.docs.set("moved.json", 302, setup.url("good.json"));
    setup
        .refused(&setup.url("moved.json"), "client_metadata_fetch_failed")
        .await?;
    assert_eq!(setup.docs.hits("good.json"), 0);
    // Not JSON.
    setup.docs.set("junk.json", 200, "<html>".into());
    setup
        .refused(&setup.url("junk.json"), "client_metadata_not_json")
        .await?;
    Ok(())
}

#[tokio::test]
async fn meta_15_disabled_by_default_url_client_ids_are_refused() -> anyhow::Result<()> {
    let setup = start(false).await?;
    let metadata: Value = setup
        .env
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            setup.env.url
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        metadata["client_id_metadata_document_supported"],
        json!(false)
    );
    setup.publish("good.json", &setup.document("good.json"));
    setup
        .refused(&setup.url("good.json"), "client_metadata_disabled")
        .await?;
    // The token endpoint refuses the URL client id too.
    let (status, body) = post_form(
        &setup.env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", &setup.url("good.json")),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(setup.docs.total.load(Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test]
async fn ema_11_a_private_key_jwt_document_client_authenticates_with_keys_from_its_jwks_uri()
-> anyhow::Result<()> {
    let setup = start(true).await?;
    let client_id = setup.url("signed.json");
    let jwk = setup.publish_keys()?;
    let mut document = setup.document("signed.json");
    document["token_endpoint_auth_method"] = json!("private_key_jwt");
    document["jwks_uri"] = json!(setup.url("keys.json"));
    setup.publish("signed.json", &document);

    let browser = browser()?;
    let (html, cookie) = to_consent(
        &setup.env,
        &browser,
        &authorize_params(&client_id, REDIRECT),
    )
    .await?;
    let redirect = approve(&setup.env, &browser, &html, &cookie).await?;
    let code = query(&redirect, "code").expect("code");
    let assertion = |jti: &str| -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = jwk.common.key_id.clone();
        // CAUTH-05: the assertion's `aud` is our issuer identifier, its single value.
        let claims = json!({ "iss": client_id, "sub": client_id, "aud": setup.env.url,
                             "jti": jti, "iat": now(), "exp": now() + 60 });
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &setup
                .env
                .client_key
                .encoding_key()
                .map_err(anyhow::Error::msg)?,
        )?)
    };
    // Without its assertion the confidential document client is refused (CAUTH-09).
    let (status, body) = post_form(
        &setup.env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let signed = assertion("assertion-1")?;
    let (status, body) = post_form(
        &setup.env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &signed),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        setup.docs.hits("keys.json"),
        1,
        "keys fetched with the document"
    );
    Ok(())
}

/// CAUTH-10 (the CIMD draft's client identifier rules): a URL client id "MUST NOT contain single-dot
/// or double-dot path segments", percent-encoded ones included. URL parsing removes such segments,
/// so the rule is checked on the client id as sent: otherwise `/a/../x.json` would be fetched as
/// `/x.json`, and one document would answer for many client ids. Refused before any fetch.
#[tokio::test]
async fn cauth_10_a_client_id_with_dot_segments_is_refused_without_fetching() -> anyhow::Result<()>
{
    let setup = start(true).await?;
    for client_id in [
        format!("{}/clients/sub/../dots.json", setup.base),
        format!("{}/clients/./dots.json", setup.base),
        format!("{}/clients/sub/%2E%2e/dots.json", setup.base),
        format!("{}/clients/sub/.%2e/dots.json", setup.base),
        format!("{}/clients/%2e/dots.json", setup.base),
        format!("{}/clients/sub\\..\\dots.json", setup.base),
    ] {
        // The document names the client id exactly as sent, so only the dot rule can refuse it.
        let mut document = setup.document("dots.json");
        document["client_id"] = json!(client_id);
        setup.publish("dots.json", &document);
        let html = setup.refused(&client_id, "client_id_url_malformed").await?;
        assert!(html.contains("dot segments"), "{client_id}: {html}");
    }
    assert_eq!(setup.docs.hits("dots.json"), 0, "nothing fetched");
    Ok(())
}

/// CAUTH-10 (CIMD §4: a successful response has the content type `application/json` or an
/// `application/…+json` one; the authorization server "MUST treat all other HTTP status codes and
/// content types as an error response"): a file served as text — what a host of user uploads
/// serves — is not a client metadata document, even when it holds one. The same for the keys a
/// document's `jwks_uri` names. A JSON type with parameters, or a more specific `+json` one,
/// is fine.
#[tokio::test]
async fn cauth_10_a_document_not_served_as_json_is_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    setup.publish("text.json", &setup.document("text.json"));
    setup
        .docs
        .set_type("text.json", "text/plain; charset=utf-8");
    setup
        .refused(&setup.url("text.json"), "client_metadata_not_json")
        .await?;
    let mut document = setup.document("signed.json");
    document["token_endpoint_auth_method"] = json!("private_key_jwt");
    document["jwks_uri"] = json!(setup.url("keys.json"));
    setup.publish("signed.json", &document);
    setup.publish_keys()?;
    setup.docs.set_type("keys.json", "text/html");
    setup
        .refused(&setup.url("signed.json"), "client_metadata_not_json")
        .await?;
    // Served as JSON: accepted.
    for (path, content_type) in [
        ("charset.json", "application/json; charset=utf-8"),
        ("specific.json", "application/example-client+json"),
    ] {
        setup.publish(path, &setup.document(path));
        setup.docs.set_type(path, content_type);
        let browser = browser()?;
        let response = authorize(
            &setup.env,
            &browser,
            &authorize_params(&setup.url(path), REDIRECT),
        )
        .await?;
        assert_eq!(response.status(), 303, "{content_type}");
    }
    Ok(())
}

/// CAUTH-10: a `private_key_jwt` document takes its keys only from a host in `allowed_hosts`,
/// like the document itself. Here the document is on the allowed `127.0.0.1` and names keys at
/// `localhost` (the same loopback server, so the fetch would succeed): refused before any key is
/// fetched, and audited.
#[tokio::test]
async fn cauth_10_keys_on_a_host_that_is_not_allowed_are_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    setup.publish_keys()?;
    let mut document = setup.document("elsewhere.json");
    document["token_endpoint_auth_method"] = json!("private_key_jwt");
    document["jwks_uri"] = json!(setup.url("keys.json").replace("127.0.0.1", "localhost"));
    setup.publish("elsewhere.json", &document);
    setup
        .refused(&setup.url("elsewhere.json"), "client_jwks_host_not_allowed")
        .await?;
    assert_eq!(setup.docs.hits("keys.json"), 0, "no key was fetched");
    Ok(())
}

/// The consent page shows a document's `client_name` followed by the document's host, the hint
/// that says who really stands behind the name. Bidirectional-text controls would let the name
/// reorder that host (U+202E shows it backwards) and invisible characters would let it pass for
/// another name, so such a document is refused like any other unacceptable one.
#[tokio::test]
async fn cauth_10_a_client_name_with_bidi_controls_is_refused() -> anyhow::Result<()> {
    let setup = start(true).await?;
    let mut document = setup.document("bidi.json");
    document["client_name"] = json!("Corp Wiki (wiki.corp.example)\u{202E}");
    setup.publish("bidi.json", &document);
    let html = setup
        .refused(&setup.url("bidi.json"), "client_metadata_invalid")
        .await?;
    assert!(html.contains("client_name"), "{html}");
    Ok(())
}

/// CAUTH-10 (CIMD §3: a client identifier URL "SHOULD NOT include a query string component"): a
/// URL client id with a query — or a fragment — is refused before any fetch, at `/authorize`
/// (an error page) and at `/token` (`invalid_client`), audited as such. Otherwise every `?n=…`
/// would be a new client id for the same document: a new cache entry and a new fetch each.
#[tokio::test]
async fn cauth_10_a_client_id_with_a_query_or_fragment_is_refused_without_fetching()
-> anyhow::Result<()> {
    let setup = start(true).await?;
    for (client_id, reason) in [
        (
            format!("{}?v=1", setup.url("query.json")),
            "client_id_has_query",
        ),
        (
            format!("{}?", setup.url("query.json")),
            "client_id_has_query",
        ),
        (
            format!("{}#v1", setup.url("query.json")),
            "client_id_url_malformed",
        ),
    ] {
        // The document names the client id exactly as sent, so only the URL rule can refuse it.
        let mut document = setup.document("query.json");
        document["client_id"] = json!(client_id);
        setup.publish("query.json", &document);
        setup.refused(&client_id, reason).await?;
        let (status, body) = post_form(
            &setup.env,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", &client_id),
            ],
        )
        .await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{client_id}: {body}"
        );
    }
    let events = setup.env.audit_log().await?;
    assert!(
        events.iter().any(|record| record.event.event != "authorize"
            && record.event.reason.as_deref() == Some("client_id_has_query")
            && record.event.error_code.as_deref() == Some("invalid_client")),
        "the token endpoint's refusal is audited with the reason"
    );
    assert_eq!(setup.docs.hits("query.json"), 0, "nothing fetched");
    Ok(())
}
