//! Leg 1 end to end: a real IdP (oauth2-mock-server over HTTP) issues ID tokens, frontdesk
//! exchanges them over a real socket, and an independent JOSE library (npm `jose`) verifies
//! what frontdesk issued against its published JWKS. Row IDs refer to REQUIREMENTS.md.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use env::*;
use frontdesk::store::{AuditFilter, AuditLog, Decision};
use idp::decode_unverified;
use serde_json::json;

/// The ID-JAG happy path for an ID token subject (IDJAG-ISSUE-06): `requested_token_type=…:id-jag`
/// (IDJAG-ISSUE-01) with `audience` = the RAS issuer (EMA-01), the MCP server's resource (EMA-02,
/// EMA-03) and scopes narrowed by policy (IDJAG-ISSUE-18, IDJAG-ISSUE-21), built from the
/// audience's outbound configuration (FED-03) and audited without token values (FED-04).
#[tokio::test]
async fn id_jag_exchange_issues_a_verifiable_id_jag_idjag_issue_26() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", RAS_ISSUER),
            ("resource", MCP_RESOURCE),
            ("scope", "read write admin"),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    assert_eq!(status, 200, "{body}");
    // IDJAG-ISSUE-26, INT-02, INT-05, IDJAG-ISSUE-29; IDJAG-ISSUE-01: the exact URN echoed.
    assert_eq!(body["issued_token_type"], ID_JAG);
    assert_eq!(body["token_type"], "N_A");
    assert!(body.get("refresh_token").is_none());
    // IDJAG-ISSUE-27, INT-03, IDJAG-ISSUE-18: narrowed scope (`admin` dropped) reported.
    assert_eq!(body["scope"], "read write");
    let token = body["access_token"].as_str().expect("token");

    let verified = env
        .verify_issued(token, RAS_ISSUER, "oauth-id-jag+jwt")
        .await?;
    let claims = &verified["payload"];
    assert_eq!(verified["header"]["typ"], "oauth-id-jag+jwt"); // IDJAG-JWT-01
    assert_eq!(claims["iss"], env.url); // IDJAG-JWT-03
    assert_eq!(claims["aud"], RAS_ISSUER); // IDJAG-JWT-04, EMA-01
    assert_eq!(claims["sub"], "user-1"); // IDJAG-JWT-05
    // IDJAG-JWT-06; FED-03: the client's id at this RAS (`audience_client_ids`), not its own.
    assert_eq!(claims["client_id"], AGENT_AT_RAS);
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty())); // IDJAG-JWT-07
    // INT-04, EMA-02, EMA-03, IDJAG-JWT-09 (one resource: a string), IDJAG-ISSUE-21: the MCP
    // server's resource identifier exactly as requested.
    assert_eq!(claims["resource"], MCP_RESOURCE);
    assert_eq!(claims["scope"], "read write"); // IDJAG-JWT-10, IDJAG-ISSUE-21
    // IDJAG-JWT-16: this RAS's `release` lists email (another RAS's does not, see
    // per_audience_claims_tenants_and_authorization_details).
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["acr"], "phr"); // IDJAG-JWT-14, IDJAG-JWT-19 (released per RAS)
    assert!(claims.get("act").is_none()); // IDJAG-JWT-12
    assert!(claims.get("cnf").is_none()); // IDJAG-JWT-20: no DPoP proof, no binding
    // IDJAG-JWT-02: an asymmetric JWS whose `kid` names a key of our jwks_uri with that alg.
    let alg = verified["header"]["alg"].as_str().unwrap_or_default();
    assert!(
        ["RS256", "PS256", "ES256", "ES384", "EdDSA"].contains(&alg),
        "{alg}"
    );
    let jwks: serde_json::Value = env.http.get(env.jwks_uri()).send().await?.json().await?;
    let kid = &verified["header"]["kid"];
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == *kid))
        .ok_or_else(|| anyhow::anyhow!("kid {kid} not in {jwks}"))?;
    assert_eq!(key["alg"], alg, "{key}");
    assert!(key.get("d").is_none() && key["kty"] != "oct", "{key}");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(body["expires_in"].as_i64(), Some(lifetime)); // IDJAG-ISSUE-29
    assert!(lifetime <= 300); // IDJAG-JWT-08

    // The decision is in the audit log, with the issued jti and no token (IDJAG-ISSUE-25,
    // FED-04: client, issuer, audience, resource, scope, decision, jti).
    let events = env.audit_log().await?;
    let event = events.first().expect("one audit event");
    assert_eq!(event.event.decision.as_str(), "issued");
    assert_eq!(event.event.client_id.as_deref(), Some(AGENT));
    assert_eq!(
        event.event.subject_issuer.as_deref(),
        Some(env.idp.issuer.as_str())
    );
    assert_eq!(event.event.audience.as_deref(), Some(RAS_ISSUER));
    assert_eq!(event.event.resources, vec![MCP_RESOURCE]);
    assert_eq!(event.event.issued_jti.as_deref(), claims["jti"].as_str());
    assert_eq!(event.event.scopes_requested, vec!["read", "write", "admin"]);
    assert_eq!(event.event.scopes_granted, vec!["read", "write"]);
    let serialized = serde_json::to_string(&events)?;
    assert!(!serialized.contains(&id_token) && !serialized.contains(token));
    Ok(())
}

/// An audience alias is resolved to the RAS issuer, which the ID-JAG's `aud` carries
/// (IDJAG-ISSUE-04); `resource` and `scope` are optional (EMA-02). Then TX-14: one subject token,
/// one target named only by `resource`, and `requested_token_type` picks the rules — the
/// chaining profile lets `resource` name the other domain's AS, the ID-JAG profile requires
/// `audience`.
#[tokio::test]
async fn audience_alias_resolves_to_the_issuer_idjag_issue_04() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.id_token().await?;
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", RAS_ALIAS),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["aud"], RAS_ISSUER); // IDJAG-ISSUE-04: never the alias
    assert!(claims.get("scope").is_none() && body.get("scope").is_none()); // INT-03
    assert!(claims.get("resource").is_none()); // EMA-02: no resource asked, none carried

    // TX-14: the same request shape, two requested token types, two profiles.
    let by_resource = |requested: &'static str| {
        [
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", requested),
            ("resource", DOMAIN_B_ISSUER),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ]
    };
    let (status, body) = env.exchange_as_agent(&by_resource(JWT)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], JWT);
    let (header, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["aud"], DOMAIN_B_ISSUER);
    let (status, body) = env.exchange_as_agent(&by_resource(ID_JAG)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "an ID-JAG needs an audience: {body}"
    );
    assert!(body.get("access_token").is_none());
    Ok(())
}

/// What an audience's outbound configuration puts in its ID-JAGs (FED-03): a multi-tenant
/// issuer's `tenant` (TEN-01, IDJAG-JWT-13), the RAS's `aud_tenant` and `aud_sub`
/// (IDJAG-JWT-15, TEN-05) mapped by CEL, claims released per RAS (IDJAG-JWT-16, IDJAG-JWT-19),
/// several resources as an array (IDJAG-JWT-09), scopes narrowed case-sensitively (TOK-11,
/// IDJAG-ISSUE-18) and `authorization_details` kept beside them (IDJAG-JWT-11, IDJAG-ISSUE-20,
/// IDJAG-ISSUE-21, IDJAG-ISSUE-28). The audience's `condition` pins the tenant its client id
/// belongs to (TEN-02), refusing another tenant's user (IDJAG-ISSUE-23).
#[tokio::test]
async fn per_audience_claims_tenants_and_authorization_details() -> anyhow::Result<()> {
    const FILES: &str = "https://mcp.saas.example/files";
    let env = Env::start_with(|config| {
        let saas = &mut config.audiences[0];
        assert_eq!(saas.id, "saas");
        saas.resources.push(FILES.into());
        saas.authorization_details_types = vec!["mcp_tools".into()];
        for (claim, expression) in [
            ("tenant", "subject.tid"),
            ("aud_tenant", r#""saas-" + subject.tid"#),
            ("aud_sub", "subject.email"),
        ] {
            saas.claims.insert(claim.into(), expression.into());
        }
        // IDJAG-JWT-19: OIDC standard claims released to this RAS, for provisioning.
        saas.release
            .extend(["name".into(), "preferred_username".into()]);
        // `agent-at-saas` is registered in the RAS's tenant for `acme` users only.
        saas.condition = Some(r#"has(subject.tid) && subject.tid == "acme""#.into());
    })
    .await?;
    let user = |tid: &str| {
        json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "tid": tid,
                "email": format!("ada@{tid}.example"), "acr": "phr",
                "name": "Ada Lovelace", "preferred_username": "ada", "given_name": "Ada" })
    };
    let id_token = env.idp.mint(user("acme")).await?;
    let details = json!([{ "type": "mcp_tools", "actions": ["call"], "locations": [FILES] }]);
    let details_text = details.to_string();
    let form = |subject: &str| {
        vec![
            ("grant_type", TOKEN_EXCHANGE.to_string()),
            ("requested_token_type", ID_JAG.to_string()),
            ("audience", RAS_ISSUER.to_string()),
            ("resource", MCP_RESOURCE.to_string()),
            ("resource", FILES.to_string()),
            ("scope", "write READ read".to_string()),
            ("authorization_details", details_text.clone()),
            ("subject_token", subject.to_string()),
            ("subject_token_type", ID_TOKEN.to_string()),
        ]
    };
    let (status, body) = env.exchange_as_agent(&form(&id_token)).await?;
    assert_eq!(status, 200, "{body}");
    // TOK-11: `READ` is not `read`, so it is dropped; the order asked is kept.
    assert_eq!(body["scope"], "write read");
    // IDJAG-ISSUE-28, IDJAG-ISSUE-20: the granted details are in the response next to `scope`.
    assert_eq!(body["authorization_details"], details);
    let verified = env
        .verify_issued(
            body["access_token"].as_str().expect("token"),
            RAS_ISSUER,
            "oauth-id-jag+jwt",
        )
        .await?;
    let claims = &verified["payload"];
    assert_eq!(claims["scope"], body["scope"]); // IDJAG-ISSUE-21
    assert_eq!(claims["resource"], json!([MCP_RESOURCE, FILES])); // IDJAG-JWT-09
    assert_eq!(claims["authorization_details"], details); // IDJAG-JWT-11, IDJAG-ISSUE-21
    assert_eq!(claims["tenant"], "acme"); // TEN-01, IDJAG-JWT-13
    assert_eq!(claims["aud_tenant"], "saas-acme"); // IDJAG-JWT-15, TEN-05
    assert_eq!(claims["aud_sub"], "ada@acme.example"); // IDJAG-JWT-15, TEN-05
    assert_eq!(claims["client_id"], AGENT_AT_RAS); // TEN-02
    assert_eq!(claims["email"], "ada@acme.example"); // IDJAG-JWT-16: released to saas
    assert_eq!(claims["name"], "Ada Lovelace"); // IDJAG-JWT-19
    assert_eq!(claims["preferred_username"], "ada"); // IDJAG-JWT-19
    for absent in ["tid", "given_name"] {
        assert!(
            claims.get(absent).is_none(),
            "nothing unmapped or unreleased passes ({absent}): {claims}"
        );
    }

    // IDJAG-JWT-16, IDJAG-JWT-19: another RAS releases and maps nothing; its ID-JAG carries
    // neither email, acr, nor the tenant claims.
    let (status, body) = env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", OTHER_RAS_ISSUER),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    for absent in [
        "email",
        "acr",
        "name",
        "preferred_username",
        "tenant",
        "aud_tenant",
        "aud_sub",
        "tid",
    ] {
        assert!(claims.get(absent).is_none(), "{absent}: {claims}");
    }

    // TEN-02, IDJAG-ISSUE-23: a user of another tenant gets no ID-JAG naming acme's client id.
    let globex = env.idp.mint(user("globex")).await?;
    let (status, body) = env.exchange_as_agent(&form(&globex)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    let event = env.audit_log().await?.into_iter().next().expect("audited");
    assert_eq!(
        event.event.reason.as_deref(),
        Some("audience_condition_denied")
    );
    Ok(())
}

/// The IdP vets `authorization_details` before vouching for them (IDJAG §4.3.3): only the
/// types the audience lists pass (IDJAG-ISSUE-19; an audience listing none takes none), and the
/// audience's condition sees them beside the scopes and resources, so a policy keeps them
/// consistent — here, every `locations` entry must be a requested resource (IDJAG-ISSUE-20).
/// Refusals are `invalid_authorization_details` or the condition's `invalid_target`, audited.
#[tokio::test]
async fn authorization_details_are_vetted_by_the_audience_idjag_issue_19_20() -> anyhow::Result<()>
{
    const FILES: &str = "https://mcp.saas.example/files";
    let env = Env::start_with(|config| {
        let saas = &mut config.audiences[0];
        assert_eq!(saas.id, "saas");
        saas.resources.push(FILES.into());
        saas.authorization_details_types = vec!["mcp_tools".into()];
        saas.condition = Some(
            "request.authorization_details.all(d, !has(d.locations) || d.locations.all(l, l in request.resources))"
                .into(),
        );
    })
    .await?;
    let id_token = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1" }))
        .await?;
    let exchange = |audience: &'static str, resource: &'static str, details: serde_json::Value| {
        let id_token = id_token.clone();
        let env = &env;
        async move {
            env.exchange_as_agent(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", audience),
                ("resource", resource),
                ("authorization_details", details.to_string().as_str()),
                ("subject_token", id_token.as_str()),
                ("subject_token_type", ID_TOKEN),
            ])
            .await
        }
    };

    let fine = json!([{ "type": "mcp_tools", "actions": ["call"], "locations": [FILES] }]);
    let (status, body) = exchange(RAS_ISSUER, FILES, fine.clone()).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization_details"], fine);
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["authorization_details"], fine);

    let cases = [
        (
            RAS_ISSUER,
            FILES,
            json!([{ "type": "mcp_tools" }, { "type": "payment_initiation", "amount": "5.00" }]),
            400,
            "invalid_authorization_details",
            "authorization_details_type_not_allowed",
        ),
        (
            RAS_ISSUER,
            FILES,
            json!([{ "type": "mcp_tools", "locations": ["https://elsewhere.example/api"] }]),
            400,
            "invalid_target",
            "audience_condition_denied",
        ),
        (
            OTHER_RAS_ISSUER,
            OTHER_RESOURCE,
            json!([{ "type": "mcp_tools" }]),
            400,
            "invalid_authorization_details",
            "authorization_details_type_not_allowed",
        ),
    ];
    for (audience, resource, details, status_wanted, error, reason) in cases {
        let (status, body) = exchange(audience, resource, details.clone()).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (status_wanted, Some(error)),
            "{details}: {body}"
        );
        let audit = env.audit_log().await?;
        assert_eq!(audit[0].event.reason.as_deref(), Some(reason), "{details}");
    }
    Ok(())
}

/// TEN-02 (IDJAG §6.2): a resource AS whose client ids are unique only within its tenants gets,
/// in each ID-JAG, the client's id in the user's tenant (the grant's `tenant` claim, mapped by
/// the audience); a user of a tenant the client has no id in gets no ID-JAG (`invalid_target`,
/// `client_not_registered_in_tenant`), and an audience with global client ids is unaffected.
#[tokio::test]
async fn tenant_scoped_client_ids_name_the_client_in_the_users_tenant_ten_02() -> anyhow::Result<()>
{
    let env = Env::start_with(|config| {
        let saas = &mut config.audiences[0];
        assert_eq!(saas.id, "saas");
        saas.claims.insert("tenant".into(), "subject.tid".into());
        let agent = config
            .clients
            .iter_mut()
            .find(|client| client.client_id == AGENT)
            .expect("the agent");
        for (tenant, id) in [("acme", "agent-in-acme"), ("globex", "agent-in-globex")] {
            agent
                .audience_tenant_client_ids
                .insert(format!("saas/{tenant}"), id.into());
        }
    })
    .await?;
    let exchange = |audience: &'static str, tid: &'static str| {
        let env = &env;
        async move {
            let id_token = env
                .idp
                .mint(json!({ "aud": AGENT_AT_IDP, "sub": format!("user-of-{tid}"), "tid": tid }))
                .await?;
            env.exchange_as_agent(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", audience),
                ("subject_token", id_token.as_str()),
                ("subject_token_type", ID_TOKEN),
            ])
            .await
        }
    };
    for (tid, client_id) in [("acme", "agent-in-acme"), ("globex", "agent-in-globex")] {
        let (status, body) = exchange(RAS_ISSUER, tid).await?;
        assert_eq!(status, 200, "{body}");
        let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
        assert_eq!(claims["client_id"], client_id);
        assert_eq!(claims["tenant"], tid);
    }
    let (status, body) = exchange(RAS_ISSUER, "initech").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let audit = env.audit_log().await?;
    assert_eq!(
        audit[0].event.reason.as_deref(),
        Some("client_not_registered_in_tenant")
    );
    // Another audience keeps its one, global client id.
    let (status, body) = exchange(OTHER_RAS_ISSUER, "initech").await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["client_id"], AGENT);
    Ok(())
}

#[tokio::test]
async fn idp_key_rotation_is_picked_up_without_restart() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let first = env.id_token().await?;
    let form = |token: &str| {
        vec![
            ("grant_type", TOKEN_EXCHANGE.to_string()),
            ("requested_token_type", ID_JAG.to_string()),
            ("audience", RAS_ISSUER.to_string()),
            ("subject_token", token.to_string()),
            ("subject_token_type", ID_TOKEN.to_string()),
        ]
    };
    let (status, body) = env.exchange_as_agent(&form(&first)).await?;
    assert_eq!(status, 200, "{body}");
    let new_kid = env.idp.rotate_key().await?;
    let second = env.id_token().await?;
    let (header, _) = decode_unverified(&second)?;
    assert_eq!(header["kid"], new_kid);
    let (status, body) = env.exchange_as_agent(&form(&second)).await?;
    assert_eq!(
        status, 200,
        "a token signed by the rotated-in key is accepted: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_assertion_cauth_06() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let id_token = env.idp.mint(json!({ "aud": JWT_CLIENT })).await?;
    let assertion = env.client_assertion("assertion-1", &env.url)?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", RAS_ISSUER),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, body) = env.post_token(&form, None).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env.post_token(&form, None).await?;
    assert_eq!(status, 401, "replayed client assertion: {body}");
    assert_eq!(body["error"], "invalid_client");
    Ok(())
}

/// The assertion of a token exchange is recorded in the same commit as the exchange's audit
/// event (docs/performance.md): concurrent requests presenting one assertion still get exactly
/// one token, and the audit log holds one issuance and a denial per replay (CAUTH-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_of_one_assertion_yield_one_token_cauth_06() -> anyhow::Result<()> {
    one_token_for_concurrent_replays(Env::start().await?).await
}

/// The same on PostgreSQL, where the records and the events of a batch are one statement that a
/// recorded `jti` (or one twice in the batch) aborts as a primary-key violation before the
/// batch is written again carefully (decisions §29): still one token, every attempt audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_of_one_assertion_yield_one_token_on_postgres_cauth_06()
-> anyhow::Result<()> {
    let Some((env, _database)) = Env::start_on_postgres("assertion_replays").await? else {
        return Ok(());
    };
    one_token_for_concurrent_replays(env).await
}

/// Presents one client assertion in 24 concurrent token exchanges: exactly one token, 23
/// `invalid_client` refusals, and 24 audit events (one issuance, 23 denials that issued nothing).
async fn one_token_for_concurrent_replays(env: Env) -> anyhow::Result<()> {
    let env = std::sync::Arc::new(env);
    let id_token = env.idp.mint(json!({ "aud": JWT_CLIENT })).await?;
    let assertion = env.client_assertion("assertion-raced", &env.url)?;
    let form = assertion_exchange_form(id_token, assertion);
    let form = std::sync::Arc::new(form);
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (env, form) = (env.clone(), form.clone());
        attempts.spawn(async move { env.post_token(&*form, None).await });
    }
    let mut issued = 0;
    while let Some(result) = attempts.join_next().await {
        let (status, body) = result??;
        match status {
            200 => issued += 1,
            401 => {
                assert_eq!(body["error"], "invalid_client", "{body}");
                assert!(
                    body["error_description"]
                        .as_str()
                        .is_some_and(|text| text.contains("already used")),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(issued, 1, "one token for one assertion");
    let events = env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            client_id: Some(JWT_CLIENT.into()),
            ..AuditFilter::default()
        })
        .await?;
    assert_eq!(events.len(), 24, "every attempt is audited");
    let issued_events: Vec<_> = events
        .iter()
        .filter(|record| record.event.decision == Decision::Issued)
        .collect();
    assert_eq!(issued_events.len(), 1);
    assert!(issued_events[0].event.issued_jti.is_some());
    for record in events
        .iter()
        .filter(|record| record.event.decision == Decision::Denied)
    {
        assert_eq!(record.event.reason.as_deref(), Some("assertion_replayed"));
        assert_eq!(record.event.error_code.as_deref(), Some("invalid_client"));
        assert_eq!(
            record.event.issued_jti, None,
            "a refused request issued nothing"
        );
        assert_eq!(record.event.detail, None, "nor describes a token");
    }
    Ok(())
}

/// TOK-14: a quota of 3 is three wrong secrets checked; the fourth guess is refused before
/// argon2 runs for it (each guess is counted before its check, and once: a failure counted
/// again after argon2 would block the address after two).
#[tokio::test]
async fn repeated_failed_client_authentication_is_throttled_tok_14() -> anyhow::Result<()> {
    let env = Env::start_with(|config| config.server.failed_auth_per_minute = 3).await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", "x"),
        ("subject_token_type", ID_TOKEN),
    ];
    for _ in 0..3 {
        let (status, body) = env.post_token(&form, Some((AGENT, "wrong secret"))).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
    }
    let (status, body) = env.post_token(&form, Some((AGENT, "wrong secret"))).await?;
    assert_eq!((status, body["error"].as_str()), (429, Some("slow_down")));
    assert_eq!(env.server.state.tokens.secrets.argon2_runs(), 3);
    // Past the quota even the right secret is turned away for a while, with Retry-After.
    let response = env
        .http
        .post(format!("{}/token", env.url))
        .basic_auth(AGENT, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&retry_after));
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"], "slow_down");
    Ok(())
}

/// TOK-14: introspection and revocation authenticate clients too, so they count failed
/// authentications against the same per-address quota as the token endpoint and are turned away
/// with it; otherwise they would be a way round the throttle to guess a client's secret (and to
/// make the server hash guesses with argon2 at will).
#[tokio::test]
async fn failed_authentication_at_introspection_and_revocation_is_throttled_tok_14()
-> anyhow::Result<()> {
    let env = Env::start_with(|config| config.server.failed_auth_per_minute = 3).await?;
    let post = |path: &'static str, secret: &'static str| {
        let request = env
            .http
            .post(format!("{}{path}", env.url))
            .basic_auth(AGENT, Some(secret))
            .form(&[("token", "not-a-token")]);
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await?;
            anyhow::Ok((status, body))
        }
    };
    for path in ["/introspect", "/revoke", "/introspect"] {
        let (status, body) = post(path, "wrong secret").await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{path}: {body}"
        );
    }
    // The fourth guess, at whichever endpoint, is past the quota: it is refused before its
    // secret is checked, and now every endpoint that authenticates a client turns this address
    // away, even with the right secret.
    let (status, _) = post("/revoke", "wrong secret").await?;
    assert_eq!(status, 429);
    assert_eq!(env.server.state.tokens.secrets.argon2_runs(), 3);
    for path in ["/introspect", "/revoke"] {
        let (status, body) = post(path, SECRET).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("slow_down")),
            "{path}: {body}"
        );
    }
    let (status, body) = env
        .post_token(
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", "x"),
                ("subject_token_type", ID_TOKEN),
            ],
            Some((AGENT, SECRET)),
        )
        .await?;
    assert_eq!((status, body["error"].as_str()), (429, Some("slow_down")));
    Ok(())
}

/// TOK-14 with guesses sent at once: 40 wrong secrets from one address on 40 connections, to
/// the token endpoint, introspection and revocation (one quota), with a quota of 5. Each guess
/// that would run argon2 is counted before it does, in one step with the check, so 5 are
/// checked and 35 get `429 slow_down` without argon2. Counted after argon2, every guess that
/// arrived while the first ones were still being verified passed the check: all 40 were
/// verified. No tolerance: a quota of 5 a minute gives its next unit after 12 s, and the burst
/// reaches the check long before. An unknown client's guesses (verified against a dummy hash,
/// so that it cannot be told from a known one) are counted the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_secrets_get_no_more_argon2_checks_than_the_quota_tok_14()
-> anyhow::Result<()> {
    for client_id in [AGENT, "no-such-client"] {
        let env = Env::start_with(|config| config.server.failed_auth_per_minute = 5).await?;
        let mut guesses = tokio::task::JoinSet::new();
        for n in 0..40 {
            let path = ["/token", "/introspect", "/revoke"][n % 3];
            let request = env
                .http
                .post(format!("{}{path}", env.url))
                .basic_auth(client_id, Some(format!("wrong secret {n}")))
                .form(&[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", "x"),
                    ("subject_token_type", ID_TOKEN),
                    ("token", "not-a-token"),
                ]);
            guesses.spawn(async move {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await?;
                anyhow::Ok((status, body["error"].as_str().map(str::to_string)))
            });
        }
        let (mut checked, mut refused) = (0, 0);
        while let Some(reply) = guesses.join_next().await {
            match reply?? {
                (401, Some(error)) if error == "invalid_client" => checked += 1,
                (429, Some(error)) if error == "slow_down" => refused += 1,
                other => anyhow::bail!("{client_id}: unexpected reply {other:?}"),
            }
        }
        assert_eq!((checked, refused), (5, 35), "{client_id}");
        assert_eq!(
            env.server.state.tokens.secrets.argon2_runs(),
            5,
            "{client_id}: only the admitted guesses ran argon2"
        );
    }
    Ok(())
}

/// The other side of TOK-14: a secret already verified is never counted nor slowed, however
/// busy its client. Right after a start, a burst of requests with the right secret runs argon2
/// once (they share the run) and costs one unit of a quota of 1; after it, hundreds of requests
/// from that address are all served from the verified-secret cache, with no argon2 and no 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_client_with_the_right_secret_is_never_throttled_tok_14() -> anyhow::Result<()> {
    let env = Env::start_with(|config| config.server.failed_auth_per_minute = 1).await?;
    for burst in 0..5 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let request = env
                .http
                .post(format!("{}/introspect", env.url))
                .basic_auth(AGENT, Some(SECRET))
                .form(&[("token", "not-a-token")]);
            requests.spawn(async move { anyhow::Ok(request.send().await?.status().as_u16()) });
        }
        while let Some(status) = requests.join_next().await {
            assert_eq!(status??, 200, "burst {burst}");
        }
    }
    assert_eq!(env.server.state.tokens.secrets.argon2_runs(), 1);
    Ok(())
}

/// TOK-14 behind a TLS proxy (`server.trusted_proxies`): each client address that the proxy
/// reports in `X-Forwarded-For` has its own quota of failed authentications, so one attacker's
/// failures do not turn everyone else away, and an address the attacker writes to the left of
/// the proxy's entry changes nothing. Without the setting the header is ignored: every request
/// counts against the connection's own address.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_quota_tok_14() -> anyhow::Result<()>
{
    const ATTACKER: &str = "198.51.100.66";
    const USER: &str = "198.51.100.7";
    for trusted in [true, false] {
        let env = Env::start_with(|config| {
            config.server.failed_auth_per_minute = 2;
            if trusted {
                config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
            }
        })
        .await?;
        let introspect = |forwarded_for: &'static str, secret: &'static str| {
            let request = env
                .http
                .post(format!("{}/introspect", env.url))
                .header("x-forwarded-for", forwarded_for)
                .basic_auth(AGENT, Some(secret))
                .form(&[("token", "not-a-token")]);
            async move { anyhow::Ok(request.send().await?.status().as_u16()) }
        };
        for _ in 0..2 {
            assert_eq!(introspect(ATTACKER, "wrong secret").await?, 401);
        }
        assert_eq!(
            introspect(ATTACKER, SECRET).await?,
            429,
            "trusted: {trusted}"
        );
        // The attacker names the user's address itself; the proxy appended the real one.
        let spoofed = "198.51.100.7, 198.51.100.66";
        assert_eq!(
            introspect(spoofed, SECRET).await?,
            429,
            "trusted: {trusted}"
        );
        let user = introspect(USER, SECRET).await?;
        assert_eq!(user, if trusted { 200 } else { 429 }, "trusted: {trusted}");
    }
    Ok(())
}

/// A client assertion's `jti` is the client's choice, as long as the assertion may be (8 KiB):
/// one of 4,800 incompressible characters authenticates once, is refused the second time, and
/// the exchanges committed beside it are issued. On PostgreSQL a key that long once failed the
/// replay records' index, and with it the whole group-commit batch (decisions §34; CAUTH-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_assertion_jti_is_single_use_and_costs_its_batch_nothing_on_postgres()
-> anyhow::Result<()> {
    let Some((env, _database)) = Env::start_on_postgres("long_jti").await? else {
        return Ok(());
    };
    long_jti_is_single_use(env).await
}

/// The same on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_assertion_jti_is_single_use_and_costs_its_batch_nothing_on_sqlite()
-> anyhow::Result<()> {
    long_jti_is_single_use(Env::start().await?).await
}

async fn long_jti_is_single_use(env: Env) -> anyhow::Result<()> {
    let env = std::sync::Arc::new(env);
    let jti: String = (0..150)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let assertion = env.client_assertion(&jti, &env.url)?;
    let long_form = std::sync::Arc::new(assertion_exchange_form(
        env.idp.mint(json!({ "aud": JWT_CLIENT })).await?,
        assertion,
    ));
    let id_token = env.id_token().await?;
    let valid = std::sync::Arc::new(vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("requested_token_type", ID_JAG.to_string()),
        ("audience", RAS_ISSUER.to_string()),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN.to_string()),
    ]);
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (env, form) = (env.clone(), valid.clone());
        attempts.spawn(async move { ("valid", env.exchange_as_agent(&*form).await) });
    }
    let (env_long, form) = (env.clone(), long_form.clone());
    attempts.spawn(async move { ("long jti", env_long.post_token(&*form, None).await) });
    while let Some(joined) = attempts.join_next().await {
        let (kind, result) = joined?;
        let (status, body) = result?;
        assert_eq!(status, 200, "{kind}: {body}");
    }
    let (status, body) = env.post_token(&*long_form, None).await?;
    assert_eq!(status, 401, "the long jti replayed: {body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    Ok(())
}

/// A NUL byte in a request (`%00` in a form value, `\u0000` in a client assertion's `jti`) is
/// refused with the error that value deserves and costs the requests committed beside it
/// nothing. PostgreSQL rejects NUL in text: one such value in a group-commit batch used to fail
/// the whole batch, so every exchange sharing that commit got `server_error` and lost its audit
/// event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_bytes_in_requests_are_refused_alone_on_postgres() -> anyhow::Result<()> {
    let Some((env, _database)) = Env::start_on_postgres("nul_bytes").await? else {
        return Ok(());
    };
    nul_bytes_are_refused_alone(env).await
}

/// The same on SQLite, which stores NUL but gets the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_bytes_in_requests_are_refused_alone_on_sqlite() -> anyhow::Result<()> {
    nul_bytes_are_refused_alone(Env::start().await?).await
}

/// Rounds of valid exchanges raced against requests carrying NUL bytes: every valid one is
/// issued, every NUL one refused, and the log keeps each refusal with the NUL shown as U+FFFD.
async fn nul_bytes_are_refused_alone(env: Env) -> anyhow::Result<()> {
    let env = std::sync::Arc::new(env);
    let id_token = env.id_token().await?;
    let valid = std::sync::Arc::new(vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("requested_token_type", ID_JAG.to_string()),
        ("audience", RAS_ISSUER.to_string()),
        ("subject_token", id_token.clone()),
        ("subject_token_type", ID_TOKEN.to_string()),
    ]);
    for round in 0..4 {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (env, form) = (env.clone(), valid.clone());
            attempts.spawn(async move { ("valid", env.exchange_as_agent(&*form).await) });
        }
        let env_grant = env.clone();
        attempts.spawn(async move {
            let form = [("grant_type", "token\0exchange")];
            ("grant_type", env_grant.exchange_as_agent(&form).await)
        });
        let (env_scope, mut form) = (env.clone(), (*valid).clone());
        form.push(("scope", "read\0write".to_string()));
        attempts.spawn(async move { ("scope", env_scope.exchange_as_agent(&form).await) });
        let env_jti = env.clone();
        let assertion = env.client_assertion(&format!("jti\0{round}"), &env.url)?;
        let id_token = env.idp.mint(json!({ "aud": JWT_CLIENT })).await?;
        attempts.spawn(async move {
            let form = assertion_exchange_form(id_token, assertion);
            ("jti", env_jti.post_token(&form, None).await)
        });
        while let Some(joined) = attempts.join_next().await {
            let (kind, result) = joined?;
            let (status, body) = result?;
            let expected = match kind {
                "valid" => (200, None),
                "grant_type" => (400, Some("unsupported_grant_type")),
                "scope" => (400, Some("invalid_scope")),
                _ => (401, Some("invalid_client")),
            };
            assert_eq!(status, expected.0, "{kind} in round {round}: {body}");
            assert_eq!(body["error"].as_str(), expected.1, "{kind}: {body}");
        }
    }
    let events = env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            limit: Some(500),
            ..AuditFilter::default()
        })
        .await?;
    let refused_grants = events
        .iter()
        .filter(|record| record.event.grant_type.as_deref() == Some("token\u{FFFD}exchange"))
        .count();
    assert_eq!(
        refused_grants, 4,
        "every NUL grant_type refusal is in the log"
    );
    assert_eq!(
        events
            .iter()
            .filter(|record| record.event.decision == Decision::Issued
                && record.event.client_id.as_deref() == Some(AGENT))
            .count(),
        24,
        "every valid exchange is issued and logged"
    );
    Ok(())
}

/// An operator can see, per identity provider, whether its keys are being fetched: every fetch
/// is counted with its outcome, and a provider whose keys arrived has its key count and the
/// time of the last success — the alert for a provider whose JWKS stopped refreshing.
#[tokio::test]
async fn jwks_fetches_are_counted_per_identity_provider_with_their_outcome() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        let mut broken = config.identity_providers[0].clone();
        broken.id = "broken".into();
        broken.issuer = "https://broken.idp.example".into();
        // Nothing listens on the discard port.
        broken.jwks_uri = Some("http://127.0.0.1:9/jwks.json".into());
        config.identity_providers.push(broken);
        for idp in &mut config.identity_providers {
            idp.subject_namespace = Some("one-directory".into());
        }
    })
    .await?;
    let (status, body) = env
        .id_jag_exchange(&env.id_token().await?, RAS_ISSUER)
        .await?;
    assert_eq!(status, 200, "{body}");
    let from_broken = env
        .idp
        .mint(json!({ "iss": "https://broken.idp.example", "aud": AGENT_AT_IDP, "sub": "u" }))
        .await?;
    let (status, body) = env.id_jag_exchange(&from_broken, RAS_ISSUER).await?;
    assert_ne!(status, 200, "{body}");

    let metrics = env.metrics().await?;
    let fetches = "frontdesk_jwks_fetches_total";
    let ok = sample(
        &metrics,
        fetches,
        &["source=\"idp:corp\"", "outcome=\"ok\""],
    );
    assert!(ok.is_some_and(|n| n >= 1.0), "{metrics}");
    let failed = sample(
        &metrics,
        fetches,
        &["source=\"idp:broken\"", "outcome=\"http_error\""],
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{metrics}");
    let keys = sample(&metrics, "frontdesk_jwks_keys", &["source=\"idp:corp\""]);
    assert!(keys.is_some_and(|n| n >= 1.0), "{metrics}");
    let last = "frontdesk_jwks_last_success_timestamp_seconds";
    let at = sample(&metrics, last, &["source=\"idp:corp\""]).unwrap_or(0.0);
    assert!((at - now() as f64).abs() < 300.0, "{at}: {metrics}");
    assert_eq!(sample(&metrics, last, &["source=\"idp:broken\""]), None);
    Ok(())
}

/// IDJAG-JWT-05, CHAIN-A-09, AT-02: every token frontdesk issues names its subject. An audience
/// whose `claims.sub` mapping yields an empty string (here: the user's `email` is `""`) gets no
/// grant (`invalid_target`, `claim_mapping_error`, as for a failing mapping, docs/decisions.md
/// §14); an ID-JAG with `sub: ""` used to be issued, which a resource AS may resolve to whatever
/// account it keys by an empty identifier.
#[tokio::test]
async fn a_sub_mapping_that_yields_an_empty_string_refuses_the_grant_idjag_jwt_05()
-> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        let saas = &mut config.audiences[0];
        assert_eq!(saas.id, "saas");
        saas.claims.insert("sub".into(), "subject.email".into());
    })
    .await?;
    // An empty address, and one holding a NUL (which names nothing either, and which
    // PostgreSQL could not record: decisions §30).
    for email in ["", "ada\u{0}@example.com"] {
        let token = env
            .idp
            .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "email": email }))
            .await?;
        let (status, body) = env.id_jag_exchange(&token, RAS_ISSUER).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{email:?}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{body}");
        let event = env.audit_log().await?.into_iter().next().expect("audited");
        assert_eq!(event.event.reason.as_deref(), Some("claim_mapping_error"));
    }
    // The control: a mapped address becomes the ID-JAG's `sub`.
    let (status, body) = env
        .id_jag_exchange(&env.id_token().await?, RAS_ISSUER)
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["sub"], "ada@example.com");
    Ok(())
}

/// IDJAG-JWT-05 (`sub` unique per `iss`; decisions §43): with two identity providers trusted
/// for subject tokens, a `sub` copied from a subject token into what frontdesk issues could be
/// either provider's user — a user of `partner` whose `sub` equals a `corp` user's would be that
/// user at the audience. So while several subject namespaces are trusted, an audience that
/// does not map `sub` issues nothing (`invalid_target`, `subject_namespace_ambiguous`, for either
/// provider's users); mapping `sub` to something that names the provider, or declaring the two
/// providers one namespace (one directory), makes it issue again.
#[tokio::test]
async fn several_subject_namespaces_need_a_mapped_sub_idjag_jwt_05() -> anyhow::Result<()> {
    const PARTNER: &str = "https://partner.idp.example";
    let with_partner = |config: &mut frontdesk::config::Config| add_partner_idp(config, PARTNER);

    // Two namespaces, no mapping: refused for both providers' users.
    let env = Env::start_with(with_partner).await?;
    for token in [env.id_token().await?, partner_token(&env, PARTNER).await?] {
        let (status, body) = env.id_jag_exchange(&token, RAS_ISSUER).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{body}"
        );
    }
    let events = env.audit_log().await?;
    assert!(
        events
            .iter()
            .any(|record| record.event.reason.as_deref() == Some("subject_namespace_ambiguous"))
    );

    // The audience maps `sub` to name the provider: issued, and the two users stay apart.
    let env = Env::start_with(move |config| {
        with_partner(config);
        for audience in &mut config.audiences {
            audience
                .claims
                .insert("sub".into(), "subject.iss + '#' + subject.sub".into());
        }
    })
    .await?;
    let (status, body) = env
        .id_jag_exchange(&partner_token(&env, PARTNER).await?, RAS_ISSUER)
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("ID-JAG"))?;
    assert_eq!(claims["sub"], format!("{PARTNER}#alice"));

    // One directory behind both providers: the `sub` passes through as before.
    let env = Env::start_with(move |config| {
        with_partner(config);
        for idp in &mut config.identity_providers {
            idp.subject_namespace = Some("acme-directory".into());
        }
    })
    .await?;
    let (status, body) = env
        .id_jag_exchange(&partner_token(&env, PARTNER).await?, RAS_ISSUER)
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = decode_unverified(body["access_token"].as_str().expect("ID-JAG"))?;
    assert_eq!(claims["sub"], "alice");
    Ok(())
}

/// An ID token of the issuer `issuer` (signed with the test IdP's keys) for `alice`.
async fn partner_token(env: &Env, issuer: &str) -> anyhow::Result<String> {
    env.idp
        .mint(json!({ "iss": issuer, "aud": AGENT, "sub": "alice" }))
        .await
}
