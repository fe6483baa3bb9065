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
    assert_eq!(body["scope"], "read");
    let verified = env
        .verify_issued(token_of(&body), DOMAIN_B_ISSUER, "JWT")
        .await?;
    assert_eq!(verified["header"]["typ"], "JWT");
    let claims = &verified["payload"];
    // CHAIN-A-09 / RFC 7523 §3: iss, sub, aud, exp, iat, jti.
    assert_eq!(claims["iss"], env.url);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["aud"], DOMAIN_B_ISSUER);
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
    assert_eq!(verified["header"]["typ"], "at+jwt"); // AT-01
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
        assert_eq!(header["typ"], "oauth-id-jag+jwt");
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
