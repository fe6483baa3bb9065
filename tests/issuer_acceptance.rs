//! `POST /issuer-acceptance` (IDJAG §9.5 "Metadata Disclosure", IDJAG-ACCEPT-27) over real HTTP,
//! at the resource side (B) of a two-instance leg-2 setup: an authenticated client asks whether
//! grants from an issuer would be accepted for it, and is answered for itself only, the way the
//! jwt-bearer grant then decides. Row IDs refer to REQUIREMENTS.md.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/legs.rs"]
mod legs;

use env::*;
use frontdesk::config::Config;
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use frontdesk::store::{AuditFilter, AuditLog, Decision};
use legs::{JWT_BEARER, Legs, post_as, uuid};
use serde_json::{Value, json};

const ENDPOINT: &str = "/issuer-acceptance";
/// An issuer B trusts for ID-JAGs, for `other-client` only.
const PARTNER: &str = "https://sts.partner.example";
/// An issuer B has never heard of.
const UNKNOWN: &str = "https://sts.unknown.example";
/// A client of B that authenticates with `private_key_jwt`.
const STRONG: &str = "strong-agent";
const PUBLIC: &str = "public-app";
const DISABLED: &str = "disabled-agent";
const EXCHANGE_ONLY: &str = "exchange-only";
const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// B trusts A for `AGENT_AT_RAS` and `STRONG` and the partner for `other-client`, both in one
/// subject namespace (so A's federated subjects stay unambiguous); it also has a public client,
/// a disabled one and one not registered for the jwt-bearer grant.
fn trust_setup(key: &PrivateKey) -> anyhow::Result<impl FnOnce(&mut Config)> {
    let jwk = key.public_jwk().map_err(anyhow::Error::msg)?;
    Ok(move |config: &mut Config| {
        let a = &mut config.identity_providers[0];
        a.allowed_clients = vec![AGENT_AT_RAS.into(), STRONG.into()];
        a.subject_namespace = Some("one-directory".into());
        let mut partner = a.clone();
        partner.id = "partner-sts".into();
        partner.issuer = PARTNER.into();
        partner.jwks_uri = Some(format!("{PARTNER}/jwks.json"));
        partner.allowed_clients = vec!["other-client".into()];
        config.identity_providers.push(partner);
        let mut strong = client(STRONG, "private_key_jwt", &[]);
        strong.jwks = Some(json!({ "keys": [jwk] }).to_string());
        strong.grant_types = vec![JWT_BEARER.into()];
        let mut public = client(PUBLIC, "none", &[]);
        public.grant_types = vec!["authorization_code".into()];
        public.redirect_uris = vec!["http://127.0.0.1:9/callback".into()];
        let mut disabled = config.clients[0].clone();
        disabled.client_id = DISABLED.into();
        disabled.enabled = false;
        let mut exchange_only = config.clients[0].clone();
        exchange_only.client_id = EXCHANGE_ONLY.into();
        exchange_only.grant_types = vec![TOKEN_EXCHANGE.into()];
        config
            .clients
            .extend([strong, public, disabled, exchange_only]);
    })
}

async fn start() -> anyhow::Result<(Legs, PrivateKey)> {
    let key = PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
    let legs = Legs::start_with(trust_setup(&key)?).await?;
    Ok((legs, key))
}

/// Asks B about `issuer` as `client_id` with the test secret (HTTP Basic).
async fn ask(legs: &Legs, client_id: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    post_as(&legs.b_url, ENDPOINT, form, Some((client_id, SECRET))).await
}

/// A `private_key_jwt` client assertion for `client_id` at B (`aud`: B's issuer).
fn client_assertion(legs: &Legs, client_id: &str, key: &PrivateKey) -> anyhow::Result<String> {
    let jwk = key.public_jwk().map_err(anyhow::Error::msg)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = jwk.common.key_id.clone();
    let claims = json!({ "iss": client_id, "sub": client_id, "aud": legs.b_url,
                         "jti": uuid(), "iat": now(), "exp": now() + 120 });
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &key.encoding_key().map_err(anyhow::Error::msg)?,
    )?)
}

/// B's newest audit event.
async fn newest_event(legs: &Legs) -> anyhow::Result<frontdesk::store::AuditRecord> {
    let mut events = legs
        .b
        .state
        .store
        .audit_events(&AuditFilter {
            limit: Some(1),
            ..AuditFilter::default()
        })
        .await?;
    anyhow::ensure!(!events.is_empty(), "no audit event");
    Ok(events.remove(0))
}

/// IDJAG-ACCEPT-27, IDJAG-ACCEPT-22: an issuer trusted for the calling client is accepted, with
/// the grant and token type to use; one trusted for another client only, one B never heard of
/// and B's own issuer all get the same `accepted: false`, so the client learns nothing beyond
/// its own trust. The answer carries the token endpoint's `no-store` headers, and each answer is
/// audited with the reason the operator needs to tell the refusals apart.
#[tokio::test]
async fn a_client_is_told_its_own_trust_and_nothing_else_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{}{ENDPOINT}", legs.b_url))
        .basic_auth(AGENT_AT_RAS, Some(SECRET))
        .form(&[("issuer", legs.a.url.as_str())])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("pragma").as_deref(), Some("no-cache"));
    let accepted: Value = response.json().await?;
    assert_eq!(
        accepted,
        json!({
            "issuer": legs.a.url,
            "accepted": true,
            "grant_types": [JWT_BEARER],
            "assertion_types": [ID_JAG_TOKEN_TYPE],
        })
    );
    let event = newest_event(&legs).await?.event;
    assert_eq!(event.event, "issuer_acceptance");
    assert_eq!(event.decision, Decision::Issued);
    assert_eq!(event.reason.as_deref(), Some("issuer_accepted"));
    assert_eq!(event.client_id.as_deref(), Some(AGENT_AT_RAS));
    assert_eq!(event.subject_issuer.as_deref(), Some(legs.a.url.as_str()));

    // The partner is trusted, for another client: to this one it is just not accepted, in the
    // very words an unknown issuer or B itself gets.
    let b_url = legs.b_url.clone();
    for (issuer, audited) in [
        (PARTNER, "issuer_not_trusted_for_client"),
        (UNKNOWN, "untrusted_assertion_issuer"),
        (b_url.as_str(), "self_issued_assertion"),
    ] {
        let (status, body) = ask(&legs, AGENT_AT_RAS, &[("issuer", issuer)]).await?;
        assert_eq!(
            (status, body),
            (200, json!({ "issuer": issuer, "accepted": false })),
            "{issuer}"
        );
        let event = newest_event(&legs).await?.event;
        assert_eq!(event.reason.as_deref(), Some(audited), "{issuer}");
        assert_eq!(event.subject_issuer.as_deref(), Some(issuer), "{issuer}");
    }
    // The other way round for the client the partner vouches for.
    let (status, body) = ask(&legs, "other-client", &[("issuer", PARTNER)]).await?;
    assert_eq!((status, &body["accepted"]), (200, &json!(true)), "{body}");
    let (status, body) = ask(&legs, "other-client", &[("issuer", &legs.a.url)]).await?;
    assert_eq!(
        (status, body),
        (200, json!({ "issuer": legs.a.url, "accepted": false }))
    );
    Ok(())
}

/// IDJAG-ACCEPT-27: with a `resource` (RFC 8707) the answer is for that resource: one B
/// protects is echoed, one it does not is `invalid_target`, as the grant answers it.
#[tokio::test]
async fn the_answer_may_be_scoped_to_a_resource_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    let (status, body) = ask(
        &legs,
        AGENT_AT_RAS,
        &[("issuer", &legs.a.url), ("resource", MCP_RESOURCE)],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], true);
    assert_eq!(body["resource"], MCP_RESOURCE);
    let (status, body) = ask(
        &legs,
        AGENT_AT_RAS,
        &[("issuer", PARTNER), ("resource", MCP_RESOURCE)],
    )
    .await?;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "issuer": PARTNER, "accepted": false, "resource": MCP_RESOURCE })
        )
    );
    let (status, body) = ask(
        &legs,
        AGENT_AT_RAS,
        &[
            ("issuer", &legs.a.url),
            ("resource", "https://unprotected.example/api"),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    Ok(())
}

/// IDJAG-ACCEPT-27: nothing is said about any issuer before the client has authenticated. No
/// credentials, a wrong secret, an unknown client and a disabled client are each `401
/// invalid_client` with the Basic challenge, identical whether the issuer asked about is trusted
/// or unknown, and audited as refusals naming the client that was claimed.
#[tokio::test]
async fn an_unauthenticated_caller_learns_nothing_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let a_url = legs.a.url.clone();
    for credentials in [
        None,
        Some((AGENT_AT_RAS, "not-the-secret")),
        Some(("nobody", SECRET)),
        Some((DISABLED, SECRET)),
    ] {
        let mut answers = Vec::new();
        for issuer in [a_url.as_str(), UNKNOWN] {
            let mut request = http
                .post(format!("{}{ENDPOINT}", legs.b_url))
                .form(&[("issuer", issuer)]);
            if let Some((client_id, secret)) = credentials {
                request = request.basic_auth(client_id, Some(secret));
            }
            let response = request.send().await?;
            assert_eq!(response.status(), 401, "{credentials:?}");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                challenge.starts_with("Basic"),
                "{credentials:?}: {challenge}"
            );
            let body: Value = response.json().await?;
            assert_eq!(body["error"], "invalid_client", "{credentials:?}");
            assert!(!body.to_string().contains(issuer), "{body}");
            assert!(body.get("accepted").is_none(), "{body}");
            answers.push(body);
            let event = newest_event(&legs).await?.event;
            assert_eq!(event.event, "issuer_acceptance");
            assert_eq!(event.decision, Decision::Denied);
            assert_eq!(event.error_code.as_deref(), Some("invalid_client"));
            // The issuer is recorded only once the client is known.
            assert_eq!(event.subject_issuer, None);
            assert_eq!(
                event.client_id.as_deref(),
                credentials.map(|(client_id, _)| client_id)
            );
        }
        assert_eq!(answers[0], answers[1], "{credentials:?}");
    }
    Ok(())
}

/// IDJAG-ACCEPT-27: a client authenticating with `private_key_jwt` is answered for itself too;
/// its assertion's `jti` is spent, as at the token endpoint.
#[tokio::test]
async fn a_private_key_jwt_client_is_answered_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, key) = start().await?;
    let ask_with = |issuer: &str, assertion: &str| {
        let form = [
            ("issuer", issuer.to_string()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion", assertion.to_string()),
        ];
        let base = legs.b_url.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_as(&base, ENDPOINT, &form, None).await
        }
    };
    let assertion = client_assertion(&legs, STRONG, &key)?;
    let (status, body) = ask_with(&legs.a.url, &assertion).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], true, "{body}");
    assert_eq!(
        newest_event(&legs).await?.event.client_id.as_deref(),
        Some(STRONG)
    );
    // The same assertion again is a replay.
    let (status, body) = ask_with(&legs.a.url, &assertion).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = ask_with(PARTNER, &client_assertion(&legs, STRONG, &key)?).await?;
    assert_eq!(
        (status, body),
        (200, json!({ "issuer": PARTNER, "accepted": false }))
    );
    Ok(())
}

/// IDJAG-ACCEPT-27: `issuer` is required, exactly once: missing or repeated is `400
/// invalid_request`, as are the token endpoint's transport refusals (parameters in the URL, a
/// body that is not a form); other methods are 405.
#[tokio::test]
async fn a_missing_or_repeated_issuer_is_invalid_request() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    for form in [
        vec![],
        vec![("issuer", legs.a.url.as_str()), ("issuer", UNKNOWN)],
        vec![
            ("issuer", legs.a.url.as_str()),
            ("resource", MCP_RESOURCE),
            ("resource", MCP_RESOURCE),
        ],
    ] {
        let (status, body) = ask(&legs, AGENT_AT_RAS, &form).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{form:?}: {body}"
        );
        assert!(body.get("accepted").is_none(), "{body}");
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let response = http
        .post(format!("{}{ENDPOINT}?issuer={UNKNOWN}", legs.b_url))
        .basic_auth(AGENT_AT_RAS, Some(SECRET))
        .form(&[("issuer", UNKNOWN)])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let response = http
        .post(format!("{}{ENDPOINT}", legs.b_url))
        .basic_auth(AGENT_AT_RAS, Some(SECRET))
        .json(&json!({ "issuer": UNKNOWN }))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let response = http.get(format!("{}{ENDPOINT}", legs.b_url)).send().await?;
    assert_eq!(response.status(), 405);
    Ok(())
}

/// IDJAG-ACCEPT-03: the grant refuses public clients and clients not registered for it
/// (`unauthorized_client`) whatever the issuer, and so does the endpoint, without a word about
/// the issuer.
#[tokio::test]
async fn clients_the_grant_refuses_get_its_refusal_idjag_accept_03() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    let (status, body) = post_as(
        &legs.b_url,
        ENDPOINT,
        &[("issuer", &legs.a.url), ("client_id", PUBLIC)],
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    let (status, body) = ask(&legs, EXCHANGE_ONLY, &[("issuer", &legs.a.url)]).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // What the grant says to both.
    let grant = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = post_as(
        &legs.b_url,
        "/token",
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &grant),
            ("client_id", PUBLIC),
        ],
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, body) = legs.redeem_assertion(&grant, EXCHANGE_ONLY).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    Ok(())
}

/// Redeems at B, as `client_id`, an ID-JAG A signed for that client.
async fn redeem_for(legs: &Legs, client_id: &str) -> anyhow::Result<(u16, Value)> {
    let mut claims = legs.valid_claims();
    claims["client_id"] = json!(client_id);
    let grant = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    legs.redeem_assertion(&grant, client_id).await
}

/// IDJAG-ACCEPT-27 with IDJAG-ACCEPT-22: the answer is what the grant does. A's ID-JAG is
/// redeemed for the client told "accepted", and is `invalid_grant` for the client told "not
/// accepted".
#[tokio::test]
async fn the_answer_agrees_with_a_redemption_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    for client_id in [AGENT_AT_RAS, "other-client"] {
        let (status, answer) = ask(&legs, client_id, &[("issuer", &legs.a.url)]).await?;
        assert_eq!(status, 200, "{answer}");
        let accepted = answer["accepted"] == json!(true);
        let (status, body) = redeem_for(&legs, client_id).await?;
        if accepted {
            assert_eq!(status, 200, "{client_id}: {body}");
        } else {
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "{client_id}: {body}"
            );
        }
        assert_eq!(accepted, client_id == AGENT_AT_RAS, "{client_id}");
    }
    Ok(())
}

/// decisions §43: with assertion issuers of two subject namespaces trusted, every redemption of
/// a federated issuer's grant is refused (`subject_namespace_ambiguous`), so the client the
/// issuer vouches for is told it is not accepted, and why; a client the issuer does not vouch
/// for is told only "not accepted".
#[tokio::test]
async fn an_issuer_whose_subjects_are_ambiguous_is_not_accepted_and_says_why_idjag_accept_27()
-> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        config.identity_providers[0].allowed_clients = vec![AGENT_AT_RAS.into()];
        let mut partner = config.identity_providers[0].clone();
        partner.id = "partner-sts".into();
        partner.issuer = PARTNER.into();
        partner.jwks_uri = Some(format!("{PARTNER}/jwks.json"));
        config.identity_providers.push(partner);
    })
    .await?;
    let (status, answer) = ask(&legs, AGENT_AT_RAS, &[("issuer", &legs.a.url)]).await?;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({
                "issuer": legs.a.url, "accepted": false, "reason": "subject_namespace_ambiguous",
            })
        )
    );
    let (status, body) = redeem_for(&legs, AGENT_AT_RAS).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        newest_event(&legs).await?.event.reason.as_deref(),
        Some("subject_namespace_ambiguous")
    );
    let (status, answer) = ask(&legs, "other-client", &[("issuer", &legs.a.url)]).await?;
    assert_eq!(
        (status, answer),
        (200, json!({ "issuer": legs.a.url, "accepted": false }))
    );
    Ok(())
}

/// The metadata names the endpoint, under a name of frontdesk's own, and no issuer: the allow
/// lists stay out of public metadata (IDJAG §9.5).
#[tokio::test]
async fn metadata_names_the_endpoint_and_no_issuer_idjag_accept_27() -> anyhow::Result<()> {
    let (legs, _) = start().await?;
    let metadata: Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            legs.b_url
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        metadata["frontdesk_issuer_acceptance_endpoint"],
        format!("{}{ENDPOINT}", legs.b_url)
    );
    // Every URL in it is B's; neither trusted issuer is named.
    let text = metadata.to_string();
    assert!(!text.contains(&format!("\"{}\"", legs.a.url)), "{text}");
    assert!(!text.contains(&format!("{}/", legs.a.url)), "{text}");
    assert!(!text.contains("partner"), "{text}");
    Ok(())
}
