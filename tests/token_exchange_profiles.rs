//! Leg 1, the other profiles and the positive edge cases: identity-chaining grants, RFC 9068
//! access tokens, delegation (`act` / `may_act`), step-up, `jti` uniqueness and the success
//! headers. Tokens are verified independently with npm `jose` against frontdesk's JWKS. Row IDs
//! refer to /work/shared/specs/REQUIREMENTS.md.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::collections::HashSet;

use env::*;
use idp::decode_unverified;
use serde_json::{Value, json};

/// POSTs a form as `agent` and, on success, checks the TOK-06 headers and the fields every
/// token response carries (TX-05), including `expires_in == exp - iat` (IDJAG-ISSUE-29, AT-09).
async fn exchange(env: &Env, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let response = env
        .http
        .post(format!("{}/token", env.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(AGENT, Some(SECRET))
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (cache, pragma, content_type) = (
        header("cache-control"),
        header("pragma"),
        header("content-type"),
    );
    let body: Value = response.json().await?;
    anyhow::ensure!(cache == "no-store", "Cache-Control {cache:?}");
    anyhow::ensure!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type:?}"
    );
    if status == 200 {
        anyhow::ensure!(
            pragma == "no-cache",
            "Pragma {pragma:?} on success (TOK-06)"
        );
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no access_token: {body}"))?;
        anyhow::ensure!(body["issued_token_type"].is_string(), "{body}");
        anyhow::ensure!(body["token_type"].is_string(), "{body}");
        anyhow::ensure!(body.get("refresh_token").is_none(), "{body}");
        let (_, claims) = decode_unverified(token)?;
        let lifetime =
            claims["exp"].as_i64().unwrap_or_default() - claims["iat"].as_i64().unwrap_or_default();
        anyhow::ensure!(
            body["expires_in"].as_i64() == Some(lifetime) && lifetime > 0,
            "expires_in {} != exp - iat {lifetime}",
            body["expires_in"]
        );
    }
    Ok((status, body))
}

fn token_of(body: &Value) -> &str {
    body["access_token"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Identity chaining (CHAIN §2.3)
// ---------------------------------------------------------------------------

/// CHAIN-A-05: the response carries the grant as `access_token`, `issued_token_type` jwt,
/// `token_type` `N_A` and a short `expires_in` (60 s by default, `exp - iat`).
#[tokio::test]
async fn chaining_grant_named_by_resource_chain_a_03_05_09() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = exchange(
        &env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", JWT),
            ("resource", DOMAIN_B_ISSUER),
            ("scope", "read"),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 60); // CHAIN-A-05: short-lived (tokens.chaining_grant_lifetime_secs)
    assert_eq!(body["scope"], "read");
    let verified = env
        .verify_issued(token_of(&body), DOMAIN_B_ISSUER, "JWT")
        .await?;
    assert_eq!(verified["header"]["typ"], "JWT");
    let claims = &verified["payload"];
    // CHAIN-A-09 / RFC 7523 §3: iss, sub, aud, exp, iat, jti.
    assert_eq!(claims["iss"], env.url);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["aud"], DOMAIN_B_ISSUER); // CHAIN-A-03, CHAIN-A-04: one AS, as a string
    for claim in ["exp", "iat"] {
        assert!(claims[claim].is_i64(), "{claim}: {claims}");
    }
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    assert_eq!(claims["client_id"], AGENT);
    assert_eq!(claims["scope"], "read"); // TX-12: a string
    assert!(claims.get("act").is_none()); // TX-11
    // Nothing of the ID token is released to domain B unless configured.
    assert!(claims.get("email").is_none() && claims.get("acr").is_none());
    Ok(())
}

/// CHAIN-A-03: named by `audience`, the grant's `aud` is that AS's issuer; with nothing else
/// requested, it carries no `resource` and no `scope`.
#[tokio::test]
async fn chaining_grant_named_by_audience_chain_a_03() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = exchange(
        &env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", JWT),
            ("audience", DOMAIN_B_ISSUER),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT);
    assert_eq!(body["token_type"], "N_A");
    assert!(body.get("scope").is_none());
    let verified = env
        .verify_issued(token_of(&body), DOMAIN_B_ISSUER, "JWT")
        .await?;
    assert_eq!(verified["payload"]["aud"], DOMAIN_B_ISSUER);
    assert!(verified["payload"].get("resource").is_none());
    assert!(verified["payload"].get("scope").is_none());
    Ok(())
}

/// The standard server with domain B (the chaining audience) offering `read` and `write`,
/// mapping `sub` into its own namespace and `email` when present, and releasing `acr`.
async fn chaining_env() -> anyhow::Result<Env> {
    Env::start_with(|config| {
        for audience in &mut config.audiences {
            if audience.id == "domain-b" {
                audience.scopes = vec!["read".into(), "write".into()];
                audience
                    .claims
                    .insert("sub".into(), r#""b:" + subject.sub"#.into());
                audience.claims.insert(
                    "email".into(),
                    "has(subject.email) ? subject.email : null".into(),
                );
                audience.release = vec!["acr".into()];
            }
        }
    })
    .await
}

/// A JWT access token of the test IdP for frontdesk's API, with `scope` claims `extra`.
async fn idp_access_token(env: &Env, extra: Value) -> anyhow::Result<String> {
    let mut claims = json!({ "aud": "frontdesk-api", "sub": "user-1" });
    for (name, value) in extra.as_object().into_iter().flatten() {
        claims[name] = value.clone();
    }
    env.idp.mint(claims).await
}

/// Every refusal of a chaining request, with the error code RFC 8693 §2.2.2 gives it and the
/// audited reason: no target (CHAIN-A-01), unknown or unacceptable targets and bad subject
/// tokens (CHAIN-A-02), several audiences (CHAIN-A-04), more scope than the subject token
/// carries (CHAIN-A-07), another client's ID token (CHAIN-A-08), this server itself as the
/// other domain (INT-01).
#[tokio::test]
async fn chaining_requests_are_refused_per_rfc_8693_chain_a_01_02_04_07_08() -> anyhow::Result<()> {
    let env = chaining_env().await?;
    let id_token = env.id_token().await?;
    let t = now();
    let expired = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "iat": t - 400, "exp": t - 120 }))
        .await?;
    let other_clients = env.idp.mint(json!({ "aud": POST_CLIENT })).await?;
    let read_only = idp_access_token(&env, json!({ "scope": "read" })).await?;
    let own_issuer = env.url.clone();
    let chaining = |subject: &str, subject_type: &'static str, extra: &[(&'static str, &str)]| {
        let mut form: Vec<(&'static str, String)> = vec![
            ("grant_type", TOKEN_EXCHANGE.into()),
            ("requested_token_type", JWT.into()),
            ("subject_token", subject.into()),
            ("subject_token_type", subject_type.into()),
        ];
        form.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));
        form
    };
    let cases = [
        (
            "neither audience nor resource (CHAIN-A-01)",
            chaining(&id_token, ID_TOKEN, &[]),
            "invalid_request",
            "missing_target",
        ),
        (
            "unknown audience (CHAIN-A-02)",
            chaining(
                &id_token,
                ID_TOKEN,
                &[("audience", "https://as.unknown.example")],
            ),
            "invalid_target",
            "unknown_audience",
        ),
        (
            "unknown resource (CHAIN-A-02)",
            chaining(
                &id_token,
                ID_TOKEN,
                &[("resource", "https://as.unknown.example")],
            ),
            "invalid_target",
            "unknown_resource",
        ),
        (
            "a resource outside domain B (CHAIN-A-02)",
            chaining(
                &id_token,
                ID_TOKEN,
                &[("audience", DOMAIN_B_ISSUER), ("resource", OTHER_RESOURCE)],
            ),
            "invalid_target",
            "resource_not_governed",
        ),
        (
            "an audience issued ID-JAGs only (CHAIN-A-02)",
            chaining(&id_token, ID_TOKEN, &[("audience", RAS_ISSUER)]),
            "invalid_target",
            "token_type_not_offered",
        ),
        (
            "this server as the other domain (INT-01)",
            chaining(&id_token, ID_TOKEN, &[("audience", own_issuer.as_str())]),
            "invalid_target",
            "unknown_audience",
        ),
        (
            "two audiences (CHAIN-A-04)",
            chaining(
                &id_token,
                ID_TOKEN,
                &[("audience", DOMAIN_B_ISSUER), ("audience", RAS_ISSUER)],
            ),
            "invalid_target",
            "multiple_audiences",
        ),
        (
            "an expired subject token (CHAIN-A-02)",
            chaining(&expired, ID_TOKEN, &[("audience", DOMAIN_B_ISSUER)]),
            "invalid_request",
            "subject_token_expired",
        ),
        (
            "another client's ID token (CHAIN-A-08)",
            chaining(&other_clients, ID_TOKEN, &[("audience", DOMAIN_B_ISSUER)]),
            "invalid_request",
            "subject_wrong_audience",
        ),
        (
            "write from a read-only access token (CHAIN-A-07)",
            chaining(
                &read_only,
                ACCESS_TOKEN,
                &[("audience", DOMAIN_B_ISSUER), ("scope", "write")],
            ),
            "invalid_scope",
            "scope_not_allowed",
        ),
    ];
    for (label, form, error, reason) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = exchange(&env, &form).await?;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"], error, "{label}: {body}");
        assert!(body.get("access_token").is_none(), "{label}");
        let events = env.audit_log().await?;
        let newest = events.first().expect("the refusal is audited");
        assert_eq!(newest.event.reason.as_deref(), Some(reason), "{label}");
    }
    Ok(())
}

/// A DPoP proof for `POST {url}`, signed by a fresh P-256 key, and that key's RFC 7638
/// thumbprint.
fn dpop_proof(url: &str) -> anyhow::Result<(String, String)> {
    use base64::Engine;
    let key = frontdesk::keys::PrivateKey::generate(frontdesk::keys::SigningAlgorithm::Es256, 2048)
        .map_err(anyhow::Error::msg)?;
    let jwk = serde_json::to_value(key.public_jwk().map_err(anyhow::Error::msg)?)?;
    let public = json!({ "kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"] });
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        public["x"].as_str().unwrap_or_default(),
        public["y"].as_str().unwrap_or_default()
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(serde_json::from_value(public)?);
    let claims = json!({ "jti": uuid::Uuid::new_v4().to_string(), "htm": "POST", "htu": url,
                         "iat": now() });
    let proof = jsonwebtoken::encode(
        &header,
        &claims,
        &key.encoding_key().map_err(anyhow::Error::msg)?,
    )?;
    Ok((proof, thumbprint))
}

/// What a granted chaining request carries: the subject mapped into domain B's namespace and
/// only the claims domain B's trust entry maps or releases (CHAIN-A-06); scopes never beyond
/// those of the subject token, whether it states them as `scope` or `scp` (CHAIN-A-07); with a
/// DPoP proof, the proof's key as `cnf.jkt` for domain B to bind its access token to
/// (CHAIN-A-10; frontdesk binds the grant itself rather than sending `requested_cnf`, decisions
/// §8), still `token_type` `N_A` (CHAIN-A-05).
#[tokio::test]
async fn chaining_grants_carry_mapped_claims_bounded_scopes_and_the_proof_key_chain_a_06_07_10()
-> anyhow::Result<()> {
    let env = chaining_env().await?;
    let id_token = env.id_token().await?;
    let token_endpoint = format!("{}/token", env.url);
    let (proof, thumbprint) = dpop_proof(&token_endpoint)?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", JWT),
        ("audience", DOMAIN_B_ISSUER),
        ("scope", "read write"),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let response = env
        .http
        .post(&token_endpoint)
        .basic_auth(AGENT, Some(SECRET))
        .header("DPoP", proof)
        .form(&form)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["issued_token_type"], JWT, "{body}");
    assert_eq!(body["token_type"], "N_A", "{body}"); // CHAIN-A-05, DPOP-04: a grant, bound or not
    assert_eq!(body["expires_in"], 60);
    let verified = env
        .verify_issued(token_of(&body), DOMAIN_B_ISSUER, "JWT")
        .await?;
    let claims = &verified["payload"];
    assert_eq!(claims["cnf"], json!({ "jkt": thumbprint })); // CHAIN-A-10
    // CHAIN-A-06: mapped and released claims, nothing else of the ID token.
    assert_eq!(claims["sub"], "b:user-1");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["acr"], "phr");
    for withheld in ["amr", "auth_time", "azp", "nonce"] {
        assert!(claims.get(withheld).is_none(), "{withheld}: {claims}");
    }
    assert_eq!(claims["scope"], "read write");

    // CHAIN-A-07: an access token that carries only `read` is exchanged for `read` alone.
    for extra in [json!({ "scope": "read" }), json!({ "scp": ["read"] })] {
        let subject = idp_access_token(&env, extra.clone()).await?;
        let (status, body) = exchange(
            &env,
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", JWT),
                ("audience", DOMAIN_B_ISSUER),
                ("scope", "read write"),
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
            ],
        )
        .await?;
        assert_eq!(status, 200, "{extra}: {body}");
        assert_eq!(body["scope"], "read", "{extra}");
        let (_, claims) = decode_unverified(token_of(&body))?;
        assert_eq!(claims["scope"], "read", "{extra}");
        assert_eq!(claims["sub"], "b:user-1");
        assert!(claims.get("email").is_none(), "{claims}");
        assert!(
            claims.get("cnf").is_none(),
            "no proof, no binding: {claims}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// RFC 9068 access tokens (§15)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn access_token_for_a_local_resource_at_01_02_03_04_tx_12() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = exchange(
        &env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ACCESS_TOKEN),
            ("resource", LOCAL_API),
            ("scope", "write read delete"),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer"); // INT-07
    assert_eq!(body["scope"], "write read"); // TOK-07: narrowed, so reported
    let verified = env
        .verify_issued(token_of(&body), LOCAL_API, "at+jwt")
        .await?;
    assert_eq!(verified["header"]["typ"], "at+jwt"); // AT-01, BCP-08: we mint explicitly typed
    assert!(
        ["RS256", "ES256", "PS256", "EdDSA"]
            .contains(&verified["header"]["alg"].as_str().unwrap_or("")),
        "asymmetric alg: {}",
        verified["header"]
    );
    let claims = &verified["payload"];
    // AT-02: iss, exp, aud, sub, client_id, iat, jti.
    assert_eq!(claims["iss"], env.url);
    assert_eq!(claims["aud"], LOCAL_API); // AT-03
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["client_id"], AGENT); // AT-06
    for claim in ["exp", "iat"] {
        assert!(claims[claim].is_i64(), "{claim}: {claims}");
    }
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    // AT-04 / TX-12: scope is one space-separated string equal to the response's.
    assert_eq!(claims["scope"], body["scope"]);
    assert!(claims.get("act").is_none()); // TX-11: no actor, no act
    assert!(claims.get("resource").is_none());
    Ok(())
}

/// Without `requested_token_type` the targeted audience's configured type decides (TX-04).
#[tokio::test]
async fn requested_token_type_defaults_by_target_tx_04() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    // A local resource without requested_token_type gets an access token ...
    let (status, body) = exchange(
        &env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", LOCAL_API),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    // ... and a RAS audience an ID-JAG (the audience decides what it is issued).
    let (status, body) = exchange(
        &env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("audience", RAS_ISSUER),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ID_JAG);
    assert_eq!(body["token_type"], "N_A");
    Ok(())
}

// ---------------------------------------------------------------------------
// Delegation (RFC 8693 §4.1, §4.4)
// ---------------------------------------------------------------------------

const ACTOR: &str = "bot-7";

async fn actor_exchange(
    env: &Env,
    requested: &str,
    target: (&str, &str),
    subject: &str,
    actor: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", requested),
        target,
        ("subject_token", subject),
        ("subject_token_type", ID_TOKEN),
    ];
    if let Some(actor) = actor {
        form.push(("actor_token", actor));
        form.push(("actor_token_type", ID_TOKEN));
    }
    exchange(env, &form).await
}

#[tokio::test]
async fn actor_named_by_may_act_yields_act_tx_11() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let actor = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": ACTOR }))
        .await?;
    let subject = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": { "sub": ACTOR } }))
        .await?;
    let target = ("resource", LOCAL_API);
    let (status, body) = actor_exchange(&env, ACCESS_TOKEN, target, &subject, Some(&actor)).await?;
    assert_eq!(status, 200, "{body}");
    let verified = env
        .verify_issued(token_of(&body), LOCAL_API, "at+jwt")
        .await?;
    assert_eq!(verified["payload"]["sub"], "user-1");
    assert_eq!(
        verified["payload"]["act"],
        json!({ "sub": ACTOR, "iss": env.idp.issuer })
    );

    // may_act with the actor's issuer is also honoured; a prior delegation chain nests (TX-11).
    let chained = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1",
                      "may_act": { "sub": ACTOR, "iss": env.idp.issuer },
                      "act": { "sub": "first-hop" } }))
        .await?;
    let (status, body) = actor_exchange(&env, ACCESS_TOKEN, target, &chained, Some(&actor)).await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(token_of(&body))?;
    assert_eq!(
        claims["act"],
        json!({ "sub": ACTOR, "iss": env.idp.issuer, "act": { "sub": "first-hop" } })
    );

    // Without an actor token no act is fabricated, even if the subject has may_act.
    let (status, body) = actor_exchange(&env, ACCESS_TOKEN, target, &subject, None).await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(token_of(&body))?;
    assert!(claims.get("act").is_none(), "{claims}");
    Ok(())
}

#[tokio::test]
async fn actor_not_permitted_by_the_subject_is_refused_tx_11() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let actor = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": ACTOR }))
        .await?;
    let target = ("resource", LOCAL_API);
    let subjects = [
        (
            "no may_act",
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1" }),
        ),
        (
            "may_act names someone else",
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": { "sub": "bot-8" } }),
        ),
        (
            "may_act names another issuer",
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1",
                    "may_act": { "sub": ACTOR, "iss": "https://other-idp.example" } }),
        ),
        (
            "may_act is not an object",
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": ACTOR }),
        ),
        (
            // RFC 8693 §4.4: an `iss` that is not a string names no issuer the actor could have;
            // it used to be read as absent, which lets an actor of any trusted issuer act.
            "may_act's iss is not a string",
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1",
                    "may_act": { "sub": ACTOR, "iss": [env.idp.issuer] } }),
        ),
    ];
    for (label, claims) in subjects {
        let subject = env.idp.mint(claims).await?;
        let (status, body) =
            actor_exchange(&env, ACCESS_TOKEN, target, &subject, Some(&actor)).await?;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"], "invalid_request", "{label}");
        assert!(body.get("access_token").is_none());
    }
    // An invalid actor token is refused even when may_act names its subject.
    let subject = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": { "sub": ACTOR } }))
        .await?;
    let expired_actor = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": ACTOR, "iat": now() - 600, "exp": now() - 300 }))
        .await?;
    let (status, body) =
        actor_exchange(&env, ACCESS_TOKEN, target, &subject, Some(&expired_actor)).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    Ok(())
}

/// An actor token is accepted syntactically and never copied into an ID-JAG or chaining grant
/// (IDJAG-ISSUE-15).
#[tokio::test]
async fn id_jag_and_chaining_grants_ignore_actor_tokens_idjag_issue_15() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let actor = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": ACTOR }))
        .await?;
    let subject = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": { "sub": ACTOR } }))
        .await?;
    for (requested, target) in [
        (ID_JAG, ("audience", RAS_ISSUER)),
        (JWT, ("audience", DOMAIN_B_ISSUER)),
    ] {
        let (status, body) =
            actor_exchange(&env, requested, target, &subject, Some(&actor)).await?;
        assert_eq!(status, 200, "{requested}: {body}");
        let (_, claims) = decode_unverified(token_of(&body))?;
        assert!(claims.get("act").is_none(), "{requested}: {claims}");
        assert_eq!(claims["sub"], "user-1");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Step-up (IDJAG-ISSUE-24, RFC 9470)
// ---------------------------------------------------------------------------

async fn idjag(env: &Env, audience: &str, token: String) -> anyhow::Result<(u16, Value)> {
    exchange(
        env,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", audience),
            ("subject_token", &token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await
}

#[tokio::test]
async fn step_up_is_requested_with_acr_values_and_max_age_idjag_issue_24() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        for audience in &mut config.audiences {
            match audience.id.as_str() {
                "saas" => audience.require_acr = vec!["phrh".into()],
                "other" => audience.max_auth_age_secs = Some(10),
                _ => {}
            }
        }
    })
    .await?;

    // acr "phr" where "phrh" is required.
    let (status, body) = idjag(&env, RAS_ISSUER, env.id_token().await?).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(body["acr_values"], "phrh");
    assert!(body.get("max_age").is_none());
    assert!(body["error_description"].is_string());
    // No acr at all.
    let token = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "auth_time": now() }))
        .await?;
    let (status, body) = idjag(&env, RAS_ISSUER, token).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication");
    // The required acr passes.
    let token = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "acr": "phrh", "auth_time": now() }))
        .await?;
    let (status, body) = idjag(&env, RAS_ISSUER, token).await?;
    assert_eq!(status, 200, "{body}");

    // auth_time 60 s ago where 10 s is the maximum: max_age is a number.
    let (status, body) = idjag(&env, OTHER_RAS_ISSUER, env.id_token().await?).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(body["max_age"].as_u64(), Some(10), "{body}");
    assert!(body.get("acr_values").is_none());
    // No auth_time: freshness cannot be shown.
    let token = env.idp.mint(json!({ "aud": AGENT_AT_IDP })).await?;
    let (status, body) = idjag(&env, OTHER_RAS_ISSUER, token).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["max_age"].as_u64(), Some(10), "{body}");
    // A fresh authentication passes.
    let token = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "auth_time": now() }))
        .await?;
    let (status, body) = idjag(&env, OTHER_RAS_ISSUER, token).await?;
    assert_eq!(status, 200, "{body}");

    // Each refusal is audited as denied with that code.
    use frontdesk::store::Decision;
    let events = env.audit_log().await?;
    let denied = events
        .iter()
        .filter(|e| {
            e.event.decision == Decision::Denied
                && e.event.error_code.as_deref() == Some("insufficient_user_authentication")
        })
        .count();
    assert_eq!(denied, 4);
    Ok(())
}

// ---------------------------------------------------------------------------
// Token identity and lifetime
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_id_jag_has_a_unique_jti_idjag_jwt_07() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", RAS_ISSUER),
        ("resource", MCP_RESOURCE),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let mut jtis = HashSet::new();
    for _ in 0..30 {
        // `exchange` checks Pragma, Cache-Control and expires_in == exp - iat on each.
        let (status, body) = exchange(&env, &form).await?;
        assert_eq!(status, 200, "{body}");
        let (header, claims) = decode_unverified(token_of(&body))?;
        assert_eq!(header["typ"], "oauth-id-jag+jwt"); // BCP-08: ID-JAGs are explicitly typed
        let jti = claims["jti"].as_str().expect("jti").to_string();
        assert!(jtis.insert(jti.clone()), "duplicate jti {jti}");
    }
    assert_eq!(jtis.len(), 30);
    Ok(())
}

#[tokio::test]
async fn configured_lifetimes_are_reported_in_expires_in_idjag_issue_29() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        for audience in &mut config.audiences {
            if audience.id == "local-api" {
                audience.lifetime_secs = Some(120);
            }
        }
    })
    .await?;
    let id_token = env.id_token().await?;
    for (requested, target, expected) in [
        (ACCESS_TOKEN, ("resource", LOCAL_API), Some(120)),
        (ID_JAG, ("audience", RAS_ISSUER), None),
        (JWT, ("audience", DOMAIN_B_ISSUER), None),
    ] {
        let (status, body) = exchange(
            &env,
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", requested),
                target,
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
        )
        .await?;
        assert_eq!(status, 200, "{requested}: {body}");
        let expires_in = body["expires_in"].as_i64().expect("expires_in");
        if let Some(expected) = expected {
            assert_eq!(expires_in, expected, "{requested}");
        }
        // IDJAG-JWT-08: short-lived.
        assert!(
            expires_in > 0 && expires_in <= 3600,
            "{requested}: {expires_in}"
        );
    }
    Ok(())
}

/// TX-11 (RFC 8693 §4.4) with several identity providers: a `may_act` without `iss` names a
/// `sub` of the subject's own user directory (decisions §43). An actor of a provider in another
/// subject namespace with that `sub` is someone else and is refused; when both providers are
/// declared one directory (`subject_namespace`), the same actor token is accepted.
#[tokio::test]
async fn may_act_without_iss_names_an_actor_of_the_subjects_own_namespace_tx_11()
-> anyhow::Result<()> {
    const PARTNER: &str = "https://partner.idp.example";
    for shared in [false, true] {
        let env = Env::start_with(move |config| {
            add_partner_idp(config, PARTNER);
            if shared {
                for idp in &mut config.identity_providers {
                    idp.subject_namespace = Some("one-directory".into());
                }
            }
        })
        .await?;
        let subject = env
            .idp
            .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "may_act": { "sub": ACTOR } }))
            .await?;
        let actor = env
            .idp
            .mint(json!({ "iss": PARTNER, "aud": AGENT, "sub": ACTOR }))
            .await?;
        let (status, body) = actor_exchange(
            &env,
            ACCESS_TOKEN,
            ("resource", LOCAL_API),
            &subject,
            Some(&actor),
        )
        .await?;
        if shared {
            assert_eq!(status, 200, "one directory: {body}");
        } else {
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_request")),
                "another directory: {body}"
            );
        }
    }
    Ok(())
}
