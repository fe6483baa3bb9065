//! SAML 2.0 assertions as subject tokens (IDJAG-ISSUE-07, IDJAG-ISSUE-10, IDJAG-SAML-04, TX-10),
//! over real HTTP: the assertions are signed by Auth0's `saml` library (npm, the one its SAML IdP
//! uses; tests/idp/saml.mjs), the grants checked with `jose` (tests/idp/verify.mjs).

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use env::*;
use frontdesk::config::IdentityProviderConfig;
use frontdesk::store::{AuditRecord, Decision};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A SAML entity ID in Okta's form: http, as many IdPs' are.
const SAML_ISSUER: &str = "http://www.okta.com/exk-frontdesk-test";
/// The agent's SAML SP entity ID at that IdP: the audience its assertions carry.
const AGENT_SP: &str = "https://agent.example.com/saml/sp";
const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/saml")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

async fn start() -> anyhow::Result<Env> {
    start_on(None).await
}

/// The server, on its own SQLite file or on the PostgreSQL database `database_url`.
async fn start_on(database_url: Option<String>) -> anyhow::Result<Env> {
    start_configured(move |config| {
        if let Some(url) = database_url {
            config.database.url = frontdesk::secret::SecretString::new(url);
        }
    })
    .await
}

/// The server trusting the SAML IdP `saml-corp`, with `customize` applied last.
async fn start_configured(
    customize: impl FnOnce(&mut frontdesk::config::Config),
) -> anyhow::Result<Env> {
    Env::start_with(move |config| {
        let saml_idp: IdentityProviderConfig = serde_json::from_value(json!({
            "id": "saml-corp",
            "issuer": SAML_ISSUER,
            "token_types": ["saml2"],
            "saml_certificates": fixture("idp.crt"),
            "clock_skew_secs": 30,
            "max_token_age_secs": 600,
            // Over `saml_attributes`, a list whatever the count: "sales" alone is still a list.
            "condition": "'eng' in subject.saml_attributes.groups",
        }))
        .expect("a SAML identity provider");
        config.identity_providers.push(saml_idp);
        // The SAML and OIDC providers are two faces of one directory: one `sub` namespace, so
        // audiences that do not map `sub` still issue (decisions §43).
        for idp in &mut config.identity_providers {
            idp.subject_namespace = Some("corp-directory".into());
        }
        // A resource AS that resolves users by SAML NameID asks for `sub_id` (IDJAG-JWT-17).
        for audience in &mut config.audiences {
            if audience.id == "other" {
                audience.release = vec!["sub_id".into()];
            }
        }
        for client in &mut config.clients {
            if client.client_id == AGENT {
                client
                    .idp_client_ids
                    .insert("saml-corp".into(), AGENT_SP.into());
                // IDJAG-SAML-01's refresh tokens are for clients allowed refresh tokens.
                client.grant_types.push("refresh_token".into());
            }
        }
        customize(config);
    })
    .await
}

/// An assertion for the agent's SP from the configured IdP key, with `changes` applied to the
/// signing options.
async fn assertion(changes: Value) -> anyhow::Result<String> {
    let mut options = json!({
        "key": fixture("idp.key"),
        "cert": fixture("idp.crt"),
        "issuer": SAML_ISSUER,
        "audience": AGENT_SP,
        "name_id": "alice@example.com",
        "attributes": { "email": "alice@example.com", "groups": ["eng", "admins"] },
        "lifetime_secs": 300,
    });
    for (key, value) in changes.as_object().into_iter().flatten() {
        options[key] = value.clone();
    }
    idp::saml_assertion(&options).await
}

fn id_jag_form(subject_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE.into()),
        ("requested_token_type", ID_JAG.into()),
        ("audience", RAS_ISSUER.into()),
        ("subject_token", subject_token.into()),
        ("subject_token_type", SAML2.into()),
    ]
}

/// The newest audit record of a token-exchange decision.
async fn last_exchange(env: &Env) -> anyhow::Result<AuditRecord> {
    env.audit_log()
        .await?
        .into_iter()
        .find(|record| record.event.event == "token_exchange")
        .ok_or_else(|| anyhow::anyhow!("no token_exchange audit record"))
}

/// `form` carries an assertion already exchanged: refused as a replay (IDJAG-SAML-04).
async fn assert_replayed(env: &Env, form: &[(&'static str, String)]) -> anyhow::Result<()> {
    let (status, body) = env.exchange_as_agent(form).await?;
    anyhow::ensure!(
        status == 400 && body["error"] == json!("invalid_request"),
        "replay: {status} {body}"
    );
    let reason = last_exchange(env).await?.event.reason;
    anyhow::ensure!(
        reason.as_deref() == Some("subject_saml_replayed"),
        "replay: audit reason {reason:?}"
    );
    Ok(())
}

async fn assert_refused(env: &Env, label: &str, xml: &str, reason: &str) -> anyhow::Result<()> {
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(xml)))
        .await?;
    anyhow::ensure!(
        status == 400 && body["error"] == json!("invalid_request"),
        "{label}: {status} {body}"
    );
    let description = body["error_description"].as_str().unwrap_or_default();
    anyhow::ensure!(
        !description.is_empty() && !description.contains("alice"),
        "{label}: description {description:?}"
    );
    anyhow::ensure!(body.get("access_token").is_none(), "{label}: {body}");
    let record = last_exchange(env).await?;
    anyhow::ensure!(
        record.event.decision == Decision::Denied && record.event.reason.as_deref() == Some(reason),
        "{label}: audit {:?} {:?}, expected {reason}",
        record.event.decision,
        record.event.reason
    );
    Ok(())
}

#[tokio::test]
async fn a_saml_assertion_is_exchanged_once_for_an_id_jag_carrying_its_subject()
-> anyhow::Result<()> {
    let env = start().await?;
    let xml = assertion(json!({})).await?;
    let token = URL_SAFE_NO_PAD.encode(&xml);

    let (status, body) = env.exchange_as_agent(&id_jag_form(&token)).await?;
    anyhow::ensure!(status == 200, "exchange: {status} {body}");
    assert_eq!(body["issued_token_type"], json!(ID_JAG));
    assert_eq!(body["token_type"], json!("N_A"));
    let id_jag = body["access_token"].as_str().unwrap_or_default();
    let verified = env
        .verify_issued(id_jag, RAS_ISSUER, "oauth-id-jag+jwt")
        .await?;
    let claims = &verified["payload"];
    assert_eq!(claims["sub"], json!("alice@example.com"));
    assert_eq!(claims["email"], json!("alice@example.com"));
    assert_eq!(claims["client_id"], json!(AGENT_AT_RAS));
    // IDJAG-JWT-18: no sub_id for a resource AS that did not ask for it.
    assert!(claims.get("sub_id").is_none(), "{claims}");
    assert!(claims.get("saml_nameid").is_none(), "{claims}");
    assert_eq!(
        claims["acr"],
        json!("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
    );
    let record = last_exchange(&env).await?;
    assert_eq!(record.event.decision, Decision::Issued);
    assert_eq!(record.event.subject.as_deref(), Some("alice@example.com"));
    assert_eq!(record.event.subject_issuer.as_deref(), Some(SAML_ISSUER));
    let serialized = serde_json::to_string(&record)?;
    assert!(
        !serialized.contains(&token[..40]),
        "the audit log holds the assertion"
    );

    // IDJAG-SAML-04: the same assertion a second time is a replay, whatever is asked for.
    let mut again = id_jag_form(&token);
    again[2].1 = OTHER_RAS_ISSUER.into();
    assert_replayed(&env, &again).await
}

#[tokio::test]
async fn tx10_a_padded_base64_assertion_becomes_a_local_access_token() -> anyhow::Result<()> {
    let env = start().await?;
    let xml = assertion(json!({ "name_id": "bob@example.com" })).await?;
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ACCESS_TOKEN),
            ("audience", LOCAL_API),
            ("subject_token", STANDARD.encode(&xml).as_str()),
            ("subject_token_type", SAML2),
        ])
        .await?;
    anyhow::ensure!(status == 200, "exchange: {status} {body}");
    let token = body["access_token"].as_str().unwrap_or_default();
    let verified = env.verify_issued(token, LOCAL_API, "at+jwt").await?;
    assert_eq!(verified["payload"]["sub"], json!("bob@example.com"));
    assert!(env.introspect_active(token).await?);
    Ok(())
}

#[tokio::test]
async fn assertions_that_are_not_for_this_client_or_not_from_the_idp_are_refused()
-> anyhow::Result<()> {
    let env = start().await?;
    // IDJAG-ISSUE-10: issued for another SAML SP.
    let other_sp = assertion(json!({ "audience": "https://other.example.com/sp" })).await?;
    assert_refused(&env, "another SP", &other_sp, "subject_wrong_audience").await?;
    // Signed by a key whose certificate is not configured, though it travels in KeyInfo.
    let other_key =
        assertion(json!({ "key": fixture("other.key"), "cert": fixture("other.crt") })).await?;
    assert_refused(&env, "another key", &other_key, "subject_bad_signature").await?;
    // RFC 8725's spirit for XML: no SHA-1.
    let sha1 =
        assertion(json!({ "signature_algorithm": "rsa-sha1", "digest_algorithm": "sha1" })).await?;
    assert_refused(&env, "SHA-1", &sha1, "subject_alg_not_allowed").await?;
    // Genuine, then changed: the signature no longer covers it.
    let genuine = assertion(json!({})).await?;
    let changed = genuine.replace(">alice@example.com<", ">mallory@example.com<");
    assert_refused(&env, "changed", &changed, "subject_bad_signature").await?;
    // The IdP's policy is applied to the assertion's attributes.
    let outsider = assertion(json!({ "attributes": { "groups": ["sales"] } })).await?;
    assert_refused(&env, "policy", &outsider, "idp_condition_denied").await?;
    // An issuer that is not trusted at all.
    let stranger = assertion(json!({ "issuer": "http://idp.stranger.example/" })).await?;
    assert_refused(&env, "stranger", &stranger, "subject_untrusted_issuer").await?;
    Ok(())
}

#[tokio::test]
async fn an_identity_provider_not_trusted_for_saml_refuses_assertions() -> anyhow::Result<()> {
    let env = start().await?;
    // The OpenID provider "corp" is trusted for JWTs only.
    let xml = assertion(json!({ "issuer": env.idp.issuer })).await?;
    assert_refused(
        &env,
        "JWT-only IdP",
        &xml,
        "subject_token_type_not_accepted",
    )
    .await
}

/// The ID-JAG draft's SAML path (§4.5), chosen by `requested_token_type=…:refresh_token` with a
/// SAML subject (TX-14): an assertion for another SP gets no refresh token
/// (IDJAG-SAML-02); `openid offline_access` are accepted (IDJAG-SAML-03); the refresh token is
/// exchanged for ID-JAGs, bound to its client and revocable (IDJAG-SAML-05, REVOKE-05).
#[tokio::test]
async fn idjag_saml_01_an_assertion_becomes_a_refresh_token_that_is_exchanged_for_id_jags()
-> anyhow::Result<()> {
    let env = start().await?;
    // IDJAG-SAML-02: the assertion's Audience must be this client's SP entity ID at the IdP
    // before any refresh token is issued.
    let other_sp = assertion(json!({ "audience": "https://other.example.com/sp" })).await?;
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", REFRESH_TOKEN),
            ("scope", "openid offline_access"),
            ("subject_token", URL_SAFE_NO_PAD.encode(&other_sp).as_str()),
            ("subject_token_type", SAML2),
        ])
        .await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    let record = last_exchange(&env).await?;
    assert_eq!(record.event.decision, Decision::Denied);
    assert_eq!(
        record.event.reason.as_deref(),
        Some("subject_wrong_audience")
    );

    let xml = assertion(json!({})).await?;
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", REFRESH_TOKEN),
            ("scope", "openid offline_access read"),
            ("subject_token", URL_SAFE_NO_PAD.encode(&xml).as_str()),
            ("subject_token_type", SAML2),
        ])
        .await?;
    anyhow::ensure!(status == 200, "SAML for a refresh token: {status} {body}");
    // The draft's response shape (§4.5): the refresh token in access_token, N_A, the scope
    // (IDJAG-SAML-03: `openid offline_access` granted with the rest).
    assert_eq!(body["issued_token_type"], json!(REFRESH_TOKEN));
    assert_eq!(body["token_type"], json!("N_A"));
    assert_eq!(body["scope"], json!("openid offline_access read"));
    assert_eq!(body["expires_in"], json!(1_209_600));
    assert!(body.get("refresh_token").is_none(), "{body}");
    let refresh_token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let record = last_exchange(&env).await?;
    assert_eq!(record.event.decision, Decision::Issued);
    assert_eq!(record.event.subject.as_deref(), Some("alice@example.com"));

    // Then, as often as needed, an ID-JAG from the refresh token, with the assertion's attributes.
    let id_jag_from_refresh = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", RAS_ISSUER),
        ("scope", "read"),
        ("subject_token", refresh_token.as_str()),
        ("subject_token_type", REFRESH_TOKEN),
    ];
    for round in 0..2 {
        let (status, body) = env.exchange_as_agent(&id_jag_from_refresh).await?;
        anyhow::ensure!(status == 200, "ID-JAG {round}: {status} {body}");
        let id_jag = body["access_token"].as_str().unwrap_or_default();
        let verified = env
            .verify_issued(id_jag, RAS_ISSUER, "oauth-id-jag+jwt")
            .await?;
        assert_eq!(verified["payload"]["sub"], json!("alice@example.com"));
        assert_eq!(verified["payload"]["email"], json!("alice@example.com"));
        assert_eq!(verified["payload"]["scope"], json!("read"));
    }
    // Beyond the refresh token's scope: refused.
    let mut wider = id_jag_from_refresh;
    wider[3].1 = "write";
    let (status, body) = env.exchange_as_agent(&wider).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_scope")),
        "{body}"
    );

    // It is not a refresh token for the refresh_token grant, and trying does not spend it.
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ])
        .await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );
    let (status, body) = env.exchange_as_agent(&id_jag_from_refresh).await?;
    anyhow::ensure!(status == 200, "after the refused refresh: {status} {body}");

    // IDJAG-SAML-04: the assertion itself was spent by the first exchange.
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(&xml)))
        .await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );

    // IDJAG-SAML-05: the refresh token is bound to its client. Presented by another, it is
    // refused as leaked and its family revoked (REVOKE-05): the agent gets no more ID-JAGs.
    let mut as_post_client = id_jag_from_refresh.to_vec();
    as_post_client.extend([("client_id", POST_CLIENT), ("client_secret", SECRET)]);
    let (status, body) = env.post_token(&as_post_client, None).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );
    let record = last_exchange(&env).await?;
    assert_eq!(
        record.event.reason.as_deref(),
        Some("refresh_token_client_mismatch")
    );
    let (status, body) = env.exchange_as_agent(&id_jag_from_refresh).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    let record = last_exchange(&env).await?;
    assert_eq!(
        record.event.reason.as_deref(),
        Some("refresh_token_revoked")
    );
    Ok(())
}

#[tokio::test]
async fn a_client_without_the_refresh_token_grant_gets_no_refresh_token_from_an_assertion()
-> anyhow::Result<()> {
    let env = start().await?;
    // `post-client` is known at the SAML IdP by its client_id and may not use refresh tokens.
    let xml = assertion(json!({ "audience": POST_CLIENT })).await?;
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", REFRESH_TOKEN),
                ("subject_token", URL_SAFE_NO_PAD.encode(&xml).as_str()),
                ("subject_token_type", SAML2),
                ("client_id", POST_CLIENT),
                ("client_secret", SECRET),
            ],
            None,
        )
        .await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unauthorized_client")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    Ok(())
}

#[tokio::test]
async fn idjag_jwt_17_a_resource_as_asking_for_sub_id_gets_the_saml_name_id() -> anyhow::Result<()>
{
    let env = start().await?;
    let xml = assertion(json!({})).await?;
    let mut form = id_jag_form(&URL_SAFE_NO_PAD.encode(&xml));
    form[2].1 = OTHER_RAS_ISSUER.into();
    let (status, body) = env.exchange_as_agent(&form).await?;
    anyhow::ensure!(status == 200, "exchange: {status} {body}");
    let id_jag = body["access_token"].as_str().unwrap_or_default();
    let verified = env
        .verify_issued(id_jag, OTHER_RAS_ISSUER, "oauth-id-jag+jwt")
        .await?;
    assert_eq!(
        verified["payload"]["sub_id"],
        json!({
            "format": "saml-nameid",
            "issuer": SAML_ISSUER,
            "nameid": "alice@example.com",
            "nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        })
    );
    Ok(())
}

#[tokio::test]
async fn the_exchange_cli_encodes_an_assertion_given_as_xml() -> anyhow::Result<()> {
    let env = start().await?;
    let xml = assertion(json!({})).await?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FRONTDESK_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args([
            "exchange",
            "--issuer",
            &env.url,
            "--client-id",
            AGENT,
            "--subject-token",
            &xml,
            "--subject-token-type",
            "saml2",
            "--audience",
            RAS_ISSUER,
        ])
        .env("FRONTDESK_CLIENT_SECRET", SECRET)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "frontdesk exchange: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("oauth-id-jag+jwt"), "{stdout}");
    assert!(stdout.contains("alice@example.com"), "{stdout}");
    Ok(())
}

/// IDJAG-SAML-04 across instances: behind a load balancer, an assertion exchanged at one instance
/// is a replay at the other, through the replay records they share in PostgreSQL.
#[tokio::test]
async fn an_assertion_exchanged_at_one_instance_is_a_replay_at_another_sharing_postgresql()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("saml_replay").await else {
        return Ok(());
    };
    let first = start_on(Some(database.url().to_string())).await?;
    let second = start_on(Some(database.url().to_string())).await?;
    let token = URL_SAFE_NO_PAD.encode(assertion(json!({})).await?);
    let (status, body) = first.exchange_as_agent(&id_jag_form(&token)).await?;
    anyhow::ensure!(status == 200, "first instance: {status} {body}");
    assert_replayed(&second, &id_jag_form(&token)).await
}

/// An IdP's metadata endpoint over real HTTP: serves `document` (which a test may replace, as
/// the IdP does when it publishes its next certificate) and counts the requests.
struct MetadataEndpoint {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl MetadataEndpoint {
    async fn start(document: String) -> anyhow::Result<MetadataEndpoint> {
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (document.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/metadata",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().map(|d| d.clone()).unwrap_or_default();
                    ([("content-type", "application/samlmetadata+xml")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/metadata", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(MetadataEndpoint {
            url,
            document,
            fetches,
        })
    }

    fn publish(&self, document: String) {
        if let Ok(mut current) = self.document.lock() {
            *current = document;
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// SAML metadata for `SAML_ISSUER` whose IdP role publishes the signing certificates `pems`.
fn idp_metadata(pems: &[String]) -> String {
    let keys: String = pems
        .iter()
        .map(|pem| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            )
        })
        .collect();
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{SAML_ISSUER}\"><md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
}

#[tokio::test]
async fn certificates_from_the_idps_metadata_follow_its_rollover() -> anyhow::Result<()> {
    let endpoint = MetadataEndpoint::start(idp_metadata(&[fixture("idp.crt")])).await?;
    let metadata_url = endpoint.url.clone();
    let env = start_configured(move |config| {
        for idp in &mut config.identity_providers {
            if idp.id == "saml-corp" {
                idp.saml_certificates = None;
                idp.saml_metadata_url = Some(metadata_url.clone());
            }
        }
    })
    .await?;
    let exchange = |xml: String| {
        let env = &env;
        async move {
            env.exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(xml)))
                .await
        }
    };

    // Fetched on first use, then held: a second assertion costs no request.
    for _ in 0..2 {
        let (status, body) = exchange(assertion(json!({})).await?).await?;
        anyhow::ensure!(
            status == 200,
            "with the published certificate: {status} {body}"
        );
    }
    assert_eq!(endpoint.fetches(), 1);

    // A key the metadata does not publish: fetched again (the IdP may have rolled over), still
    // refused.
    let next_key = json!({ "key": fixture("other.key"), "cert": fixture("other.crt") });
    let (status, body) = exchange(assertion(next_key.clone()).await?).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    assert_eq!(
        last_exchange(&env).await?.event.reason.as_deref(),
        Some("subject_bad_signature")
    );
    assert_eq!(endpoint.fetches(), 2);

    // The IdP publishes its next certificate: assertions signed with it are accepted without any
    // change here, and those of the current one still are.
    endpoint.publish(idp_metadata(&[fixture("idp.crt"), fixture("other.crt")]));
    let (status, body) = exchange(assertion(next_key).await?).await?;
    anyhow::ensure!(status == 200, "after the rollover: {status} {body}");
    assert_eq!(endpoint.fetches(), 3);
    let (status, body) = exchange(assertion(json!({})).await?).await?;
    anyhow::ensure!(status == 200, "the current certificate: {status} {body}");
    assert_eq!(endpoint.fetches(), 3);
    // Each fetch is counted for alerting, and the certificates the last one brought.
    let metrics = env.metrics().await?;
    let source = "source=\"idp:saml-corp\"";
    assert_eq!(
        sample(
            &metrics,
            "frontdesk_saml_metadata_fetches_total",
            &[source, "outcome=\"ok\""]
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "frontdesk_saml_metadata_certificates", &[source]),
        Some(2.0),
        "{metrics}"
    );
    let last = sample(
        &metrics,
        "frontdesk_saml_metadata_last_success_timestamp_seconds",
        &[source],
    );
    assert!(
        last.is_some_and(|at| (at - now() as f64).abs() < 300.0),
        "{metrics}"
    );
    Ok(())
}

/// Signs `template` (an assertion with an empty `ds:Signature` template) with `xmlsec1`, the XML
/// Security Library's command line (Debian's `xmlsec1`, installed by scripts/test-deps): the
/// reference XML-DSig implementation, a second signer independent of the `saml` npm package.
async fn sign_with_xmlsec1(template: &str, key: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("template.xml");
    let output = dir.path().join("signed.xml");
    std::fs::write(&input, template)?;
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/saml")
        .join(key);
    let run = tokio::process::Command::new("xmlsec1")
        .arg("--sign")
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--privkey-pem")
        .arg(&key)
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .await
        .map_err(|error| {
            anyhow::anyhow!("xmlsec1 did not run ({error}): run scripts/test-deps to install it")
        })?;
    anyhow::ensure!(
        run.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(std::fs::read_to_string(output)?)
}

fn utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn assertions_signed_by_xmlsec1_with_rsa_or_ecdsa_and_inclusive_prefixes_are_accepted()
-> anyhow::Result<()> {
    // The IdP signs with RSA, then with a P-256 key (both certificates configured).
    let env = start_configured(|config| {
        for idp in &mut config.identity_providers {
            if idp.id == "saml-corp" {
                idp.saml_certificates =
                    Some(format!("{}{}", fixture("idp.crt"), fixture("ec.crt")));
            }
        }
    })
    .await?;
    for (method, key) in [("rsa-sha256", "idp.key"), ("ecdsa-sha256", "ec.key")] {
        xmlsec1_exchange(&env, method, key).await?;
    }
    Ok(())
}

/// An assertion signed by xmlsec1 with `method` and the key file `key` is exchanged, and refused
/// once changed after signing.
async fn xmlsec1_exchange(env: &Env, method: &str, key: &str) -> anyhow::Result<()> {
    let now = now();
    let id = format!("_xmlsec1-{method}");
    // The `xs` prefix is used only inside an attribute value (xsi:type="xs:string"), which is why
    // IdPs list it in the exclusive canonicalization's InclusiveNamespaces, in both places.
    let inclusive = r#"<ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/>"#;
    let template = format!(
        r##"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="{id}" IssueInstant="{issued}" Version="2.0">
  <saml2:Issuer>{SAML_ISSUER}</saml2:Issuer>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">{inclusive}</ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#{method}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">{inclusive}</ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>
  <saml2:Subject>
    <saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">frank</saml2:NameID>
    <saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml2:SubjectConfirmationData NotOnOrAfter="{expires}" Recipient="https://agent.example.com/acs"/></saml2:SubjectConfirmation>
  </saml2:Subject>
  <saml2:Conditions NotBefore="{issued}" NotOnOrAfter="{expires}"><saml2:AudienceRestriction><saml2:Audience>{AGENT_SP}</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions>
  <saml2:AuthnStatement AuthnInstant="{issued}"><saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:X509</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>
  <saml2:AttributeStatement><saml2:Attribute Name="groups"><saml2:AttributeValue xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">eng</saml2:AttributeValue></saml2:Attribute></saml2:AttributeStatement>
</saml2:Assertion>"##,
        issued = utc(now),
        expires = utc(now + 300),
    );
    let signed = sign_with_xmlsec1(&template, key).await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(&signed)))
        .await?;
    anyhow::ensure!(
        status == 200,
        "xmlsec1's {method} assertion: {status} {body}"
    );
    let (_, claims) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(claims["sub"], json!("frank"));
    assert_eq!(
        claims["acr"],
        json!("urn:oasis:names:tc:SAML:2.0:ac:classes:X509")
    );
    // The same assertion with its group changed after signing: refused.
    let changed = signed.replace(">eng<", ">admins<");
    assert_ne!(changed, signed);
    assert_refused(env, method, &changed, "subject_bad_signature").await
}

/// Forged-looking assertions count towards `server.invalid_subject_tokens_per_minute` like
/// forged JWTs; an expired one does not.
#[tokio::test]
async fn a_client_sending_forged_assertions_is_slowed_down() -> anyhow::Result<()> {
    let env =
        start_configured(|config| config.server.invalid_subject_tokens_per_minute = 2).await?;
    // Expired (a clock problem, not a forgery): refused, not counted.
    let expired = assertion(json!({ "lifetime_secs": -120 })).await?;
    assert_refused(&env, "expired", &expired, "subject_token_expired").await?;
    // Past the quota of two, the third forgery is still refused for what it is.
    let other_key = json!({ "key": fixture("other.key"), "cert": fixture("other.crt") });
    for attempt in 0..3 {
        let forged = assertion(other_key.clone()).await?;
        assert_refused(
            &env,
            &format!("forged {attempt}"),
            &forged,
            "subject_bad_signature",
        )
        .await?;
    }
    // The quota is spent: even a genuine assertion waits.
    let genuine = assertion(json!({})).await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(genuine)))
        .await?;
    assert_eq!(
        (status, &body["error"]),
        (429, &json!("slow_down")),
        "{body}"
    );
    // Refused before the grant runs, so audited as a token request.
    let newest = env.audit_log().await?.into_iter().next();
    assert_eq!(
        newest.and_then(|record| record.event.reason).as_deref(),
        Some("invalid_subject_tokens")
    );
    Ok(())
}

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// The server with `change` applied to the SAML identity provider `saml-corp`.
async fn start_with_saml_idp(
    change: impl FnOnce(&mut IdentityProviderConfig) + Send + 'static,
) -> anyhow::Result<Env> {
    start_configured(move |config| {
        if let Some(idp) = config
            .identity_providers
            .iter_mut()
            .find(|idp| idp.id == "saml-corp")
        {
            change(idp);
        }
    })
    .await
}

#[tokio::test]
async fn a_transient_name_id_is_refused_unless_the_identity_provider_lists_its_format()
-> anyhow::Result<()> {
    // A transient NameID is a new value at every sign-in: as the `sub` of an ID-JAG it would be
    // a new user at the resource each time.
    let env = start().await?;
    let transient = assertion(json!({ "name_id": "_3f2a9c", "name_id_format": TRANSIENT })).await?;
    assert_refused(&env, "transient", &transient, "subject_saml_name_id_format").await?;
    // persistent, the stable pairwise identifier, is accepted by default.
    let persistent = assertion(json!({
        "name_id": "a8f3e1",
        "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    }))
    .await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(persistent)))
        .await?;
    anyhow::ensure!(status == 200, "persistent: {status} {body}");

    // An identity provider whose audiences take the subject from an attribute may list it.
    let env =
        start_with_saml_idp(|idp| idp.saml_name_id_formats = vec![TRANSIENT.to_string()]).await?;
    let transient = assertion(json!({ "name_id": "_3f2a9c", "name_id_format": TRANSIENT })).await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(transient)))
        .await?;
    anyhow::ensure!(status == 200, "listed transient: {status} {body}");
    // The list replaces the defaults: emailAddress is no longer accepted from it.
    let email = assertion(json!({})).await?;
    assert_refused(
        &env,
        "email, not listed",
        &email,
        "subject_saml_name_id_format",
    )
    .await
}

#[tokio::test]
async fn idjag_saml_04_an_assertion_valid_for_an_hour_is_refused_unless_the_idp_allows_it()
-> anyhow::Result<()> {
    // Auth0's default: an hour, in the conditions and the bearer confirmation alike.
    let env = start().await?;
    let hour = assertion(json!({ "lifetime_secs": 3600 })).await?;
    assert_refused(&env, "an hour", &hour, "subject_lifetime_too_long").await?;
    let (_, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(&hour)))
        .await?;
    assert_eq!(
        body["error_description"],
        json!("The SAML assertion is valid for longer than this server accepts.")
    );
    // Ten minutes, the default cap, is accepted.
    let ten_minutes = assertion(json!({ "lifetime_secs": 600 })).await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(ten_minutes)))
        .await?;
    anyhow::ensure!(status == 200, "ten minutes: {status} {body}");

    let env = start_with_saml_idp(|idp| idp.saml_max_lifetime_secs = Some(3600)).await?;
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(&hour)))
        .await?;
    anyhow::ensure!(status == 200, "an hour, allowed: {status} {body}");
    Ok(())
}

#[test]
fn the_saml_settings_of_an_identity_provider_are_validated() {
    let saml_idp = |change: &dyn Fn(&mut Value)| -> Result<(), (String, String)> {
        let mut document = json!({
            "id": "saml-corp",
            "issuer": SAML_ISSUER,
            "token_types": ["saml2"],
            "saml_certificates": fixture("idp.crt"),
        });
        change(&mut document);
        let idp: IdentityProviderConfig = serde_json::from_value(document).expect("parses");
        frontdesk::trust::validate_identity_provider(&idp)
    };
    assert!(saml_idp(&|_| {}).is_ok());
    assert!(saml_idp(&|d| d["saml_max_lifetime_secs"] = json!(86_400)).is_ok());
    assert!(saml_idp(&|d| d["saml_name_id_formats"] = json!([TRANSIENT])).is_ok());
    for (change, key) in [
        (
            json!({ "saml_max_lifetime_secs": 0 }),
            "saml_max_lifetime_secs",
        ),
        (
            json!({ "saml_max_lifetime_secs": 86_401 }),
            "saml_max_lifetime_secs",
        ),
        (
            json!({ "saml_name_id_formats": ["transient"] }),
            "saml_name_id_formats",
        ),
        (
            json!({ "token_types": ["id_token"], "issuer": "https://idp.example.com",
                    "saml_certificates": null, "saml_max_lifetime_secs": 60 }),
            "saml_max_lifetime_secs",
        ),
        (
            json!({ "token_types": ["id_token"], "issuer": "https://idp.example.com",
                    "saml_certificates": null, "saml_name_id_formats": [TRANSIENT] }),
            "saml_name_id_formats",
        ),
    ] {
        let result = saml_idp(&|document| {
            for (name, value) in change.as_object().into_iter().flatten() {
                document[name] = value.clone();
            }
        });
        assert_eq!(
            result.as_ref().map_err(|(field, _)| field.as_str()),
            Err(key),
            "{change}"
        );
    }
}

/// A minimal assertion for the agent's SP about `frank`, issued now for five minutes, whose
/// `AuthnStatement` says the sign-in's session ends at `session_ends_at` (SAML core §2.7.2),
/// signed by xmlsec1 (the npm peer cannot write SessionNotOnOrAfter).
async fn assertion_with_session_end(session_ends_at: i64) -> anyhow::Result<String> {
    let now = now();
    let id = format!("_session-{session_ends_at}");
    let template = format!(
        r##"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" IssueInstant="{issued}" Version="2.0"><saml2:Issuer>{SAML_ISSUER}</saml2:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature><saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">frank</saml2:NameID><saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml2:SubjectConfirmationData NotOnOrAfter="{expires}" Recipient="https://agent.example.com/acs"/></saml2:SubjectConfirmation></saml2:Subject><saml2:Conditions NotBefore="{issued}" NotOnOrAfter="{expires}"><saml2:AudienceRestriction><saml2:Audience>{AGENT_SP}</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions><saml2:AuthnStatement AuthnInstant="{issued}" SessionNotOnOrAfter="{session}"><saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement><saml2:AttributeStatement><saml2:Attribute Name="groups"><saml2:AttributeValue>eng</saml2:AttributeValue></saml2:Attribute></saml2:AttributeStatement></saml2:Assertion>"##,
        issued = utc(now),
        expires = utc(now + 300),
        session = utc(session_ends_at),
    );
    sign_with_xmlsec1(&template, "idp.key").await
}

#[tokio::test]
async fn idjag_saml_01_the_refresh_token_ends_with_the_sign_ins_session() -> anyhow::Result<()> {
    // SAML core §2.7.2: SessionNotOnOrAfter bounds the sessions derived from the assertion; the
    // §4.5 refresh token is one, so it does not live the configured fourteen days past it.
    let env = start().await?;
    let session_ends_at = now() + 8 * 3600;
    let xml = assertion_with_session_end(session_ends_at).await?;
    let form = |xml: &str| {
        vec![
            ("grant_type", TOKEN_EXCHANGE.to_string()),
            ("requested_token_type", REFRESH_TOKEN.to_string()),
            ("scope", "openid offline_access".to_string()),
            ("subject_token", URL_SAFE_NO_PAD.encode(xml)),
            ("subject_token_type", SAML2.to_string()),
        ]
    };
    let (status, body) = env.exchange_as_agent(&form(&xml)).await?;
    anyhow::ensure!(status == 200, "SAML for a refresh token: {status} {body}");
    let record = last_exchange(&env).await?;
    assert_eq!(record.event.decision, Decision::Issued);
    assert_eq!(record.event.issued_expires_at, Some(session_ends_at));
    let expires_in = body["expires_in"].as_i64().unwrap_or_default();
    assert!(
        expires_in <= 8 * 3600 && expires_in > 7 * 3600,
        "expires_in {expires_in}"
    );

    // A sign-in whose session the IdP has already ended vouches for nothing lasting.
    let ended = assertion_with_session_end(now() - 3600).await?;
    let (status, body) = env.exchange_as_agent(&form(&ended)).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let record = last_exchange(&env).await?;
    assert_eq!(
        record.event.reason.as_deref(),
        Some("subject_saml_session_ended")
    );
    Ok(())
}

#[tokio::test]
async fn idjag_saml_01_no_refresh_token_is_issued_for_a_session_ended_within_the_clock_skew()
-> anyhow::Result<()> {
    // SAML core §2.7.2: an assertion whose SessionNotOnOrAfter passed a few seconds ago is still
    // accepted under the identity provider's clock skew (30 s here), but a refresh token ending
    // with that session would be born expired: issued, audited as issued, `expires_in: 0`, and
    // refused at its first use. The exchange is refused instead, as for a session long over,
    // and the assertion is not spent.
    let env = start().await?;
    let xml = assertion_with_session_end(now() - 5).await?;
    let form = vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("requested_token_type", REFRESH_TOKEN.to_string()),
        ("scope", "openid offline_access".to_string()),
        ("subject_token", URL_SAFE_NO_PAD.encode(&xml)),
        ("subject_token_type", SAML2.to_string()),
    ];
    let (status, body) = env.exchange_as_agent(&form).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let record = last_exchange(&env).await?;
    assert_eq!(record.event.decision, Decision::Denied);
    assert_eq!(
        record.event.reason.as_deref(),
        Some("subject_saml_session_ended")
    );
    // The short-lived ID-JAG path keeps the skew: the session ended within it.
    let (status, body) = env
        .exchange_as_agent(&id_jag_form(&URL_SAFE_NO_PAD.encode(&xml)))
        .await?;
    anyhow::ensure!(status == 200, "ID-JAG within the skew: {status} {body}");
    Ok(())
}
