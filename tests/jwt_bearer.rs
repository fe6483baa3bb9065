//! Leg 2 end to end with two frontdesk instances: A plays the enterprise side (trusts the real
//! test IdP, issues ID-JAGs for B), B plays the resource side (trusts A as an ID-JAG issuer and
//! issues RFC 9068 access tokens for an MCP resource). Row IDs refer to REQUIREMENTS.md.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/legs.rs"]
mod legs;

use env::*;
use frontdesk::store::{AuditFilter, AuditLog};
use legs::{JWT_BEARER, Legs, post, uuid};
use serde_json::{Value, json};

#[tokio::test]
async fn id_jag_from_a_is_redeemed_at_b_for_a_verifiable_access_token() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let id_jag = legs.id_jag("read write").await?;
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &id_jag),
                ("scope", "read"),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    // IDJAG-ACCEPT-20/21, INT-07.
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "read"); // EMA-09: request ∩ ID-JAG
    assert_eq!(body["resource"], MCP_RESOURCE); // IDJAG-ACCEPT-19
    let token = body["access_token"].as_str().expect("access token");
    let verified = legs.verify_access_token(token).await?;
    let claims = &verified["payload"];
    assert_eq!(claims["aud"], MCP_RESOURCE); // EMA-04, AT-03
    assert_eq!(claims["client_id"], AGENT_AT_RAS); // AT-06
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["scope"], "read"); // AT-04
    assert_eq!(claims["acr"], "phr"); // AT-05, carried from the ID-JAG
    assert_eq!(
        body["expires_in"].as_i64(),
        Some(claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0))
    );

    // Introspection (RFC 7662) and revocation (RFC 7009) at B.
    let (status, active) = post(
        &legs.b_url,
        "/introspect",
        &[("token", token)],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], AGENT_AT_RAS);
    assert_eq!(active["scope"], "read");
    // INTRO-04: the ID-JAG itself is not an access token of B's.
    let (_, inactive) = post(
        &legs.b_url,
        "/introspect",
        &[("token", &id_jag)],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(inactive, json!({"active": false}));
    // REVOKE-03: another client cannot revoke it.
    let (status, refused) =
        post(&legs.b_url, "/revoke", &[("token", token)], "other-client").await?;
    assert_eq!(status, 400, "{refused}");
    let (status, _) = post(&legs.b_url, "/revoke", &[("token", token)], AGENT_AT_RAS).await?;
    assert_eq!(status, 200);
    let (_, after) = post(
        &legs.b_url,
        "/introspect",
        &[("token", token)],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(
        after,
        json!({"active": false}),
        "a revoked token is inactive"
    );
    // REVOKE-02: garbage is fine.
    let (status, _) = post(
        &legs.b_url,
        "/revoke",
        &[("token", "garbage")],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(status, 200);

    // Lineage in B's audit log: the incoming assertion's iss/jti linked to the issued jti.
    let events = legs
        .b
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await?;
    let redemption = events
        .iter()
        .find(|record| {
            record.event.event == "jwt_bearer" && record.event.decision.as_str() == "issued"
        })
        .expect("audited redemption");
    let detail = redemption.event.detail.as_ref().expect("detail").value();
    assert_eq!(detail["assertion_issuer"], legs.a.url);
    assert!(detail["assertion_jti"].as_str().is_some());
    assert_eq!(
        redemption.event.issued_jti.as_deref(),
        claims["jti"].as_str()
    );
    Ok(())
}

/// Two tenants behind path-routing proxies: A's issuer is `…/tenant-a`, B's `…/tenant-b`. A's
/// ID-JAG names B's issuer with its path; B finds A's keys through A's metadata under A's path
/// (no `jwks_uri` configured) and issues the access token as its own path issuer.
#[tokio::test]
async fn id_jag_from_a_is_redeemed_at_b_when_both_issuers_have_paths() -> anyhow::Result<()> {
    let legs = Legs::start_under("/tenant-a", "/tenant-b", |config| {
        config.identity_providers[0].jwks_uri = None;
    })
    .await?;
    assert!(legs.a.url.ends_with("/tenant-a") && legs.b_url.ends_with("/tenant-b"));
    let id_jag = legs.id_jag("read").await?;
    let (_, claims) = idp::decode_unverified(&id_jag)?;
    assert_eq!(claims["iss"], legs.a.url.as_str());
    assert_eq!(claims["aud"], legs.b_url.as_str());
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &id_jag)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("access token");
    let verified = legs.verify_access_token(token).await?;
    assert_eq!(verified["payload"]["iss"], legs.b_url.as_str());
    Ok(())
}

/// The status of two tokens as the independent status-list implementation reads them.
async fn statuses(tokens: &[String], jwks: &str) -> anyhow::Result<[Value; 2]> {
    Ok([
        idp::status_independently(&tokens[0], jwks).await?,
        idp::status_independently(&tokens[1], jwks).await?,
    ])
}

/// Revokes `token` at the resource side `base` (RFC 7009) as the client it was issued to.
async fn revoke_at(base: &str, token: &str) -> anyhow::Result<()> {
    let (status, body) = post(base, "/revoke", &[("token", token)], AGENT_AT_RAS).await?;
    anyhow::ensure!(status == 200, "revocation: {status} {body}");
    Ok(())
}

/// B's RFC 8414 metadata.
async fn b_metadata(legs: &Legs, http: &reqwest::Client) -> anyhow::Result<Value> {
    let url = format!("{}/.well-known/oauth-authorization-server", legs.b_url);
    Ok(http.get(url).send().await?.json().await?)
}

/// Token Status List (draft-ietf-oauth-status-list): B's access tokens point at a status list
/// that an independent implementation (`@sd-jwt/jwt-status-list`, signature by `jose` against
/// B's JWKS) reads as valid, then as revoked once the token is revoked at B — and a second
/// token of the same user, revoked with the kill switch, as well — while the list's
/// enumeration, the metadata and refusals of names that are no list agree.
#[tokio::test]
async fn revocations_reach_resource_servers_through_the_status_list() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let jwks = format!("{}/jwks.json", legs.b_url);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, body) = legs
            .redeem_assertion(&legs.id_jag("read").await?, AGENT_AT_RAS)
            .await?;
        assert_eq!(status, 200, "{body}");
        tokens.push(
            body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let [first, second] = statuses(&tokens, &jwks).await?;
    assert_eq!(
        (first["status"].as_u64(), second["status"].as_u64()),
        (Some(0), Some(0))
    );
    assert_ne!(first["idx"], second["idx"], "each token has its own bit");
    let list_uri = format!("{}/status-lists/0", legs.b_url);
    assert_eq!(first["uri"], list_uri.as_str());
    assert_eq!(first["ttl"], 60);
    assert_eq!(first["content_type"], "application/statuslist+jwt");
    assert_eq!(first["cache_control"], "public, max-age=60");

    revoke_at(&legs.b_url, &tokens[0]).await?;
    let [first, second] = statuses(&tokens, &jwks).await?;
    assert_eq!(first["status"], 1, "revoked at /revoke");
    assert_eq!(second["status"], 0, "the other token is untouched");
    let subject = idp::decode_unverified(&tokens[1])?.1["sub"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let event = frontdesk::store::AuditEvent::new(
        now(),
        "subject_tokens_revoked",
        frontdesk::store::Decision::Changed,
    );
    use frontdesk::store::TokenStore;
    legs.b
        .state
        .store
        .revoke_tokens(
            frontdesk::store::RevocationScope::Subject(&subject),
            now(),
            event,
        )
        .await?;
    let second = idp::status_independently(&tokens[1], &jwks).await?;
    assert_eq!(second["status"], 1, "revoked with the user's kill switch");

    let http = reqwest::Client::builder().no_proxy().build()?;
    let metadata = b_metadata(&legs, &http).await?;
    let aggregation = format!("{}/status-lists", legs.b_url);
    assert_eq!(
        metadata["status_list_aggregation_endpoint"],
        aggregation.as_str()
    );
    let lists: Value = http.get(&aggregation).send().await?.json().await?;
    assert_eq!(lists, json!({ "status_lists": [list_uri] }));
    for missing in ["1", "01", "+0", "-1", "x", "99999999999999"] {
        let response = http
            .get(format!("{}/status-lists/{missing}", legs.b_url))
            .send()
            .await?;
        assert_eq!(response.status(), 404, "/status-lists/{missing}");
    }
    Ok(())
}

/// With `tokens.status_list = false` access tokens carry no `status` and nothing is published.
#[tokio::test]
async fn without_status_lists_tokens_carry_no_status_and_nothing_is_published() -> anyhow::Result<()>
{
    let legs = Legs::start_with(|config| config.tokens.status_list = false).await?;
    let (status, body) = legs
        .redeem_assertion(&legs.id_jag("read").await?, AGENT_AT_RAS)
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert!(claims.get("status").is_none(), "{claims}");
    let http = reqwest::Client::builder().no_proxy().build()?;
    let metadata = b_metadata(&legs, &http).await?;
    assert!(metadata.get("status_list_aggregation_endpoint").is_none());
    for path in ["/status-lists", "/status-lists/0"] {
        let response = http.get(format!("{}{path}", legs.b_url)).send().await?;
        assert_eq!(response.status(), 404, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn replayed_id_jag_is_refused_idjag_accept_11() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let id_jag = legs.id_jag("read").await?;
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let (status, body) = legs.redeem(&form, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = legs.redeem(&form, AGENT_AT_RAS).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn reuse_is_allowed_when_the_resource_permits_it() -> anyhow::Result<()> {
    let legs = Legs::start_with(|config| config.resources[0].single_use_assertions = false).await?;
    let id_jag = legs.id_jag("read").await?;
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    for _ in 0..2 {
        let (status, body) = legs.redeem(&form, AGENT_AT_RAS).await?;
        assert_eq!(status, 200, "{body}");
    }
    Ok(())
}

/// A `429 slow_down` from B whose newest audit event gives `reason`.
async fn assert_slowed_at_b(
    legs: &Legs,
    status: u16,
    body: &Value,
    reason: &str,
) -> anyhow::Result<()> {
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("slow_down")),
        "{body}"
    );
    let audit = legs
        .b
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await?;
    assert_eq!(audit[0].event.reason.as_deref(), Some(reason));
    Ok(())
}

/// `subject_requests_per_minute` at leg 2 (PEERS §4 item 14): B counts each user of the issuer
/// that vouches for them, and refuses over the limit with `429 slow_down` before the assertion
/// is recorded, so a refused single-use ID-JAG stays redeemable once the user's allowance
/// refills. Another user is not slowed.
#[tokio::test]
async fn a_user_over_the_issuers_per_user_limit_is_slowed_and_the_grant_is_not_spent()
-> anyhow::Result<()> {
    use frontdesk::store::ReplayStore;
    let legs = Legs::start_with(|config| {
        config.identity_providers[0].subject_requests_per_minute = Some(1);
    })
    .await?;
    let (status, body) = legs
        .redeem_assertion(&legs.id_jag("read").await?, AGENT_AT_RAS)
        .await?;
    assert_eq!(status, 200, "{body}");
    let claims = legs.valid_claims();
    let refused = legs.forged_by_a(claims.clone(), "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&refused, AGENT_AT_RAS).await?;
    assert_slowed_at_b(&legs, status, &body, "subject_rate_limited").await?;
    // Its jti was never recorded: recording it now finds it fresh.
    let jti = claims["jti"].as_str().unwrap_or_default();
    let issuer = format!("assertion:{}", legs.a.url);
    let exp = claims["exp"].as_i64().unwrap_or_default();
    assert!(legs.b.state.store.record_once(&issuer, jti, exp).await?);
    let mut other = legs.valid_claims();
    other["sub"] = json!("user-2");
    let other = legs.forged_by_a(other, "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&other, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "another user: {body}");
    Ok(())
}

/// `server.invalid_subject_tokens_per_minute` at leg 2: replaying a spent ID-JAG is what a thief
/// does, so a client that keeps at it is slowed down (429 `invalid_subject_tokens`) even with a
/// fresh grant, while another client redeems as usual.
#[tokio::test]
async fn a_client_replaying_grants_is_slowed_down_and_no_one_else_is() -> anyhow::Result<()> {
    let legs =
        Legs::start_with(|config| config.server.invalid_subject_tokens_per_minute = 1).await?;
    let spent = legs.id_jag("read").await?;
    let (status, body) = legs.redeem_assertion(&spent, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    for attempt in 0..2 {
        let (status, body) = legs.redeem_assertion(&spent, AGENT_AT_RAS).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "replay {attempt}: {body}"
        );
    }
    let fresh = legs.id_jag("read").await?;
    let (status, body) = legs.redeem_assertion(&fresh, AGENT_AT_RAS).await?;
    assert_slowed_at_b(&legs, status, &body, "invalid_subject_tokens").await?;
    let mut claims = legs.valid_claims();
    claims["client_id"] = json!("other-client");
    let theirs = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&theirs, "other-client").await?;
    assert_eq!(status, 200, "another client: {body}");
    Ok(())
}

#[tokio::test]
async fn hostile_assertions_are_invalid_grant_and_audited() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let base = legs.valid_claims();
    let with = |changes: Value| {
        let mut claims = base.clone();
        for (key, value) in changes.as_object().into_iter().flatten() {
            if value.is_null() {
                claims.as_object_mut().map(|c| c.remove(key));
            } else {
                claims[key] = value.clone();
            }
        }
        claims["jti"] = json!(uuid());
        claims
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "valid control",
            legs.forged_by_a(with(json!({})), "oauth-id-jag+jwt")?,
            "",
            "ok",
        ),
        (
            "wrong typ JWT (IDJAG-ACCEPT-04)",
            legs.forged_by_a(with(json!({})), "JWT")?,
            "invalid_grant",
            "untrusted_assertion_issuer",
        ),
        (
            "typ at+jwt",
            legs.forged_by_a(with(json!({})), "at+jwt")?,
            "invalid_grant",
            "untrusted_assertion_issuer",
        ),
        (
            "foreign aud (IDJAG-ACCEPT-06)",
            legs.forged_by_a(
                with(json!({"aud": "https://elsewhere.example"})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_wrong_audience",
        ),
        (
            "aud array of two",
            legs.forged_by_a(
                with(json!({"aud": [legs.b_url.clone(), "https://x.example"]})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_wrong_audience",
        ),
        (
            "aud = token endpoint",
            legs.forged_by_a(
                with(json!({"aud": format!("{}/token", legs.b_url)})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_wrong_audience",
        ),
        (
            "client_id mismatch (IDJAG-ACCEPT-10)",
            legs.forged_by_a(
                with(json!({"client_id": "someone-else"})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "client_id_mismatch",
        ),
        (
            "client_id missing (IDJAG-ACCEPT-09)",
            legs.forged_by_a(with(json!({"client_id": null})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_missing_claim",
        ),
        (
            "jti missing",
            legs.forged_by_a(
                {
                    let mut c = with(json!({}));
                    c.as_object_mut().map(|c| c.remove("jti"));
                    c
                },
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_missing_claim",
        ),
        (
            "expired (IDJAG-ACCEPT-07)",
            legs.forged_by_a(
                with(json!({"exp": now() - 120, "iat": now() - 300})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_expired",
        ),
        (
            "not yet valid",
            legs.forged_by_a(with(json!({"nbf": now() + 600})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_not_yet_valid",
        ),
        (
            "iat in the future (IDJAG-ACCEPT-08)",
            legs.forged_by_a(
                with(json!({"iat": now() + 600, "exp": now() + 700})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_issued_in_future",
        ),
        (
            "exp a day ahead",
            legs.forged_by_a(with(json!({"exp": now() + 86400})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_lifetime_too_long",
        ),
        (
            "unknown issuer",
            legs.forged_by_a(
                with(json!({"iss": "https://unknown.example"})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "untrusted_assertion_issuer",
        ),
        (
            "self-issued (IDJAG-ACCEPT-23)",
            legs.b.state.keys.sign(
                "oauth-id-jag+jwt",
                &with(json!({"iss": legs.b_url.clone()})),
            )?,
            "invalid_grant",
            "self_issued_assertion",
        ),
        (
            "foreign resource (IDJAG-ACCEPT-15)",
            legs.forged_by_a(
                with(json!({"resource": "https://other.example/mcp"})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_resource_unknown",
        ),
        (
            "garbage",
            "not-a-jwt".to_string(),
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            "sender-constrained without DPoP (DPOP-06)",
            legs.forged_by_a(
                with(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "dpop_proof_required",
        ),
    ];
    for (label, assertion, error, reason) in cases {
        let request_id = uuid();
        let response = reqwest::Client::new()
            .post(format!("{}/token", legs.b_url))
            .basic_auth(AGENT_AT_RAS, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-request-id", &request_id)
            .body(serde_urlencoded::to_string([
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ])?)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        if reason == "ok" {
            assert_eq!(status, 200, "{label}: {body}");
            continue;
        }
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"], error, "{label}: {body}");
        assert!(body.get("access_token").is_none(), "{label}");
        let events = legs
            .b
            .state
            .store
            .audit_events(&AuditFilter::default())
            .await?;
        let event = events
            .iter()
            .find(|record| record.event.request_id.as_deref() == Some(request_id.as_str()))
            .unwrap_or_else(|| panic!("{label}: no audit record"));
        assert_eq!(event.event.decision.as_str(), "denied", "{label}");
        assert_eq!(event.event.reason.as_deref(), Some(reason), "{label}");
    }
    Ok(())
}

#[tokio::test]
async fn assertion_signed_by_an_untrusted_key_with_a_trusted_kid_is_refused() -> anyhow::Result<()>
{
    let legs = Legs::start().await?;
    let (kid, _) = legs.a.server.state.keys.active_kid().expect("A has a key");
    let rogue =
        frontdesk::keys::PrivateKey::generate(frontdesk::keys::SigningAlgorithm::Es256, 2048)
            .map_err(anyhow::Error::msg)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(
        &header,
        &legs.valid_claims(),
        &rogue.encoding_key().map_err(anyhow::Error::msg)?,
    )?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &forged)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn request_rules_missing_assertion_resource_outside_and_scopes() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    // IDJAG-ACCEPT-01: missing assertion.
    let (status, body) = legs
        .redeem(&[("grant_type", JWT_BEARER)], AGENT_AT_RAS)
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // IDJAG-ACCEPT-14: a requested resource outside the assertion's.
    let assertion = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &assertion),
                ("resource", "https://other.example/"),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    // IDJAG-ACCEPT-16: a scope the assertion does not carry is never granted.
    let assertion = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &assertion),
                ("scope", "write"),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // A client without the jwt-bearer grant (TOK-10) — A's agent is not registered at B at all.
    let (status, body) = post(
        &legs.b_url,
        "/token",
        &[("grant_type", JWT_BEARER), ("assertion", "x")],
        AGENT,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn linked_subject_mode_requires_a_link() -> anyhow::Result<()> {
    let legs =
        Legs::start_with(|config| config.identity_providers[0].subject_mode = "linked".into())
            .await?;
    let assertion = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["reason"].as_str().or(body["error"].as_str())),
        (400, Some("invalid_grant")),
        "{body}"
    );
    use frontdesk::store::TokenStore;
    legs.b
        .state
        .store
        .link_subject(&legs.a.url, "user-1", "local-42", now())
        .await?;
    let assertion = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(claims["sub"], "local-42");
    Ok(())
}

#[tokio::test]
async fn metadata_advertises_the_jwt_bearer_profile_meta_07_09() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        legs.b_url
    ))
    .await?
    .json()
    .await?;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .expect("array")
            .contains(&json!(JWT_BEARER))
    );
    assert_eq!(
        metadata["authorization_grant_profiles_supported"],
        json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{}/introspect", legs.b_url)
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{}/revoke", legs.b_url)
    );
    Ok(())
}

/// Leg 1 at the shared resource side's A: an ID-JAG for B.
async fn id_jag_from_a(side: &legs::SharedResourceSide) -> anyhow::Result<String> {
    let id_token = side.a.id_token().await?;
    let (status, body) = side
        .a
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", side.b_url.as_str()),
            ("resource", MCP_RESOURCE),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    anyhow::ensure!(status == 200, "leg 1: {body}");
    Ok(body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Two instances sharing PostgreSQL give their access tokens distinct status bits (each
/// reserves its own blocks), and a token revoked at one shows as revoked in the list served by
/// the other.
#[tokio::test]
async fn instances_sharing_postgresql_share_one_status_list() -> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("shared_status_list").await else {
        return Ok(());
    };
    let side = legs::SharedResourceSide::start(database.url(), |_| {}).await?;
    let mut tokens = Vec::new();
    for instance in [&side.b1, &side.b2] {
        let id_jag = id_jag_from_a(&side).await?;
        let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
        let (status, body) = post(&instance.url(), "/token", &form, AGENT_AT_RAS).await?;
        assert_eq!(status, 200, "{body}");
        tokens.push(
            body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    // Every list URI names the issuer, which is B1's address: B2's token is read from B1.
    let jwks = format!("{}/jwks.json", side.b_url);
    let [from_b1, from_b2] = statuses(&tokens, &jwks).await?;
    assert_eq!(
        (from_b1["status"].as_u64(), from_b2["status"].as_u64()),
        (Some(0), Some(0))
    );
    assert_ne!(from_b1["idx"], from_b2["idx"]);
    revoke_at(&side.b2.url(), &tokens[0]).await?;
    let [from_b1, from_b2] = statuses(&tokens, &jwks).await?;
    assert_eq!(from_b1["status"], 1, "revoked at B2, listed by B1");
    assert_eq!(from_b2["status"], 0);
    side.shutdown().await
}

#[tokio::test]
async fn a_replay_across_two_instances_sharing_postgresql_is_refused() -> anyhow::Result<()> {
    // Two resource-side instances (B1, B2) with the same issuer and one PostgreSQL database, as
    // behind a load balancer: the jti recorded by B1 must stop the replay at B2 (EMA-06).
    let Some(database) = env::test_db::TestDatabase::postgres("cross_instance_replay").await else {
        return Ok(());
    };
    let side = legs::SharedResourceSide::start(database.url(), |_| {}).await?;
    let (b1, b2) = (&side.b1, &side.b2);
    let id_jag = id_jag_from_a(&side).await?;
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let (status, body) = post(&b1.url(), "/token", &form, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "first redemption at B1: {body}");
    let (status, body) = post(&b2.url(), "/token", &form, AGENT_AT_RAS).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "replay at B2: {body}"
    );
    side.shutdown().await
}

#[tokio::test]
async fn the_issuer_condition_applies_to_redemptions_too() -> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        config.identity_providers[0].condition = Some("subject.sub == \"user-1\"".into());
    })
    .await?;
    let allowed = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &allowed)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let mut claims = legs.valid_claims();
    claims["sub"] = json!("user-2");
    let denied = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &denied)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    Ok(())
}

/// TEN-03, TEN-04: a multi-tenant issuer's `sub` is unique only within a tenant (IDJAG §6.3).
/// With the issuer's `condition` pinning the tenants B serves and a `subject_mapping` that keys
/// local subjects by tenant (the recipe in mcp.md), two tenants' users with the same `sub` stay
/// two users, the access token carries the tenant, and an assertion from a tenant B does not
/// expect, or from none, is `invalid_grant`.
#[tokio::test]
async fn a_multi_tenant_issuers_tenants_are_pinned_and_keep_their_users_apart_ten_03_04()
-> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        let idp = &mut config.identity_providers[0];
        idp.condition =
            Some(r#"has(subject.tenant) && subject.tenant in ["acme", "globex"]"#.into());
        idp.subject_mode = "mapped".into();
        idp.subject_mapping = Some(r#"subject.tenant + "/" + subject.sub"#.into());
    })
    .await?;
    let legs = &legs;
    let redeem_for = |tenant: Option<&str>| {
        let mut claims = legs.valid_claims();
        match tenant {
            Some(tenant) => claims["tenant"] = json!(tenant),
            None => {
                claims
                    .as_object_mut()
                    .map(|members| members.remove("tenant"));
            }
        }
        let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt");
        async move {
            let assertion = assertion?;
            legs.redeem(
                &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
                AGENT_AT_RAS,
            )
            .await
        }
    };
    let mut subjects = Vec::new();
    for tenant in ["acme", "globex"] {
        let (status, body) = redeem_for(Some(tenant)).await?;
        assert_eq!(status, 200, "{tenant}: {body}");
        let verified = legs
            .verify_access_token(body["access_token"].as_str().unwrap_or_default())
            .await?;
        assert_eq!(verified["payload"]["tenant"], tenant);
        subjects.push(verified["payload"]["sub"].clone());
    }
    assert_eq!(subjects, [json!("acme/user-1"), json!("globex/user-1")]);
    for tenant in [Some("initech"), None] {
        let (status, body) = redeem_for(tenant).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{tenant:?}: {body}"
        );
    }
    Ok(())
}
