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
use legs::{JWT_BEARER, Legs, post, post_as, uuid};
use serde_json::{Value, json};

/// A public client registered at B (for the authorization code flow only).
const PUBLIC_AT_RAS: &str = "public-app";

/// The whole path, and what B's access token then is to introspection and revocation (EMA-13);
/// A's ID-JAG is never an access token to A either (AT-08, REVOKE-04).
/// Rows: INT-01, INT-10.
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
    assert!(body.get("refresh_token").is_none()); // IDJAG-ACCEPT-21
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

    // Introspection (RFC 7662) and revocation (RFC 7009) at B (EMA-13).
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
    // AT-08: at A, which signed it, the ID-JAG is not an access token either (typ
    // oauth-id-jag+jwt, not at+jwt) ...
    let (status, at_a) = post(&legs.a.url, "/introspect", &[("token", &id_jag)], AGENT).await?;
    assert_eq!((status, at_a), (200, json!({"active": false})));
    // ... and REVOKE-04: revoking it there is unsupported_token_type.
    let (status, refused) = post(&legs.a.url, "/revoke", &[("token", &id_jag)], AGENT).await?;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("unsupported_token_type")),
        "{refused}"
    );
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

/// Who may introspect B's access token (RFC 7662 §2.2, §4): the client it was issued to, a
/// resource server whose `introspect_audiences` names the token's `aud`, and a client allowed
/// `*`. To every other authenticated client — one serving another resource, or a plain
/// redeemer — the live token is `{"active": false}`, exactly like an unknown one, and B's audit
/// log records the refusal with the caller and the token's `jti`, never the token.
/// Rows: INTRO-02, INTRO-03.
#[tokio::test]
async fn only_the_tokens_client_and_the_resource_servers_of_its_aud_may_introspect_it()
-> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        let mut mcp_server = client("mcp-server", "client_secret_basic", &[]);
        mcp_server.secret_hash = config.clients[0].secret_hash.clone();
        mcp_server.grant_types = vec![];
        mcp_server.introspect_audiences = vec![MCP_RESOURCE.into()];
        let mut elsewhere = mcp_server.clone();
        elsewhere.client_id = "elsewhere-server".into();
        elsewhere.introspect_audiences = vec!["https://elsewhere.example.com/mcp".into()];
        let mut everything = mcp_server.clone();
        everything.client_id = "token-auditor".into();
        everything.introspect_audiences = vec!["*".into()];
        config.clients.extend([mcp_server, elsewhere, everything]);
    })
    .await?;
    let id_jag = legs.id_jag("read").await?;
    let (status, body) = legs
        .redeem(
            &[("grant_type", JWT_BEARER), ("assertion", &id_jag)],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("access token");
    let jti = legs.verify_access_token(token).await?["payload"]["jti"].clone();

    for (caller, active) in [
        (AGENT_AT_RAS, true),
        ("mcp-server", true),
        ("token-auditor", true),
        ("other-client", false),
        ("elsewhere-server", false),
    ] {
        let (status, answer) =
            post(&legs.b_url, "/introspect", &[("token", token)], caller).await?;
        assert_eq!(status, 200, "{caller}: {answer}");
        if active {
            assert_eq!(answer["active"], true, "{caller}: {answer}");
            assert_eq!(answer["aud"], MCP_RESOURCE, "{caller}");
            assert_eq!(answer["client_id"], AGENT_AT_RAS, "{caller}");
            assert_eq!(answer["jti"], jti, "{caller}");
        } else {
            assert_eq!(answer, json!({"active": false}), "{caller}");
        }
    }

    let refusals = legs
        .b
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some("introspection_not_permitted".into()),
            ..AuditFilter::default()
        })
        .await?;
    let mut callers: Vec<_> = refusals
        .iter()
        .map(|record| {
            assert_eq!(record.event.event, "token_introspection");
            assert_eq!(record.event.decision.as_str(), "denied");
            assert_eq!(record.event.issued_jti.as_deref(), jti.as_str());
            assert_eq!(record.event.audience.as_deref(), Some(MCP_RESOURCE));
            record.event.client_id.clone().unwrap_or_default()
        })
        .collect();
    callers.sort();
    assert_eq!(callers, ["elsewhere-server", "other-client"]);
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

/// The aggregation (`GET /status-lists`) names only the lists still holding an unexpired token
/// — revoked or not — in ascending order, while `GET /status-lists/{n}` still serves every list
/// ever begun, one whose tokens have all expired included. Time is controlled by the rows: tokens
/// are recorded through the store with `exp` before or after now.
async fn expired_lists_leave_the_aggregation_but_are_still_served(
    database: env::test_db::TestDatabase,
) -> anyhow::Result<()> {
    use base64::Engine;
    use frontdesk::oauth::status_list::{BLOCK, LIST_ENTRIES};
    use frontdesk::store::{IssuedToken, TokenStore};
    use std::io::Read;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let b_url = format!("http://{}", listener.local_addr()?);
    // No assertion is redeemed, so A is never reached.
    let config = legs::resource_side(&b_url, "http://127.0.0.1:9", database.url(), |_| {})?;
    let b = frontdesk::app::spawn_on(config, listener)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = &b.state.store;
    // Lists 0 to 3 begun, as after four million and some tokens.
    store
        .reserve_status_indexes(3 * LIST_ENTRIES + BLOCK)
        .await?;
    let now = now();
    let (expired, live) = (now - 60, now + 300);
    for (jti, index, expires_at, revoked) in [
        ("expired-0", 17, expired, false),
        ("expired-1", LIST_ENTRIES + 3, expired, false),
        ("live-1", 2 * LIST_ENTRIES - 1, live, false),
        ("revoked-expired-2", 2 * LIST_ENTRIES + 5, expired, true),
        ("revoked-live-3", 3 * LIST_ENTRIES, live, true),
    ] {
        store
            .record_issued(&IssuedToken {
                jti: jti.into(),
                client_id: AGENT_AT_RAS.into(),
                subject: "user-1".into(),
                token_type: "access_token".into(),
                issued_at: expires_at - 300,
                expires_at,
                revoked_at: revoked.then_some(expires_at - 200),
                status_index: Some(index),
                subject_issuer: None,
            })
            .await?;
    }

    let http = reqwest::Client::builder().no_proxy().build()?;
    let lists: Value = http
        .get(format!("{b_url}/status-lists"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        lists,
        json!({ "status_lists": [
            format!("{b_url}/status-lists/1"),
            format!("{b_url}/status-lists/3"),
        ] })
    );
    for list in 0..4 {
        let uri = format!("{b_url}/status-lists/{list}");
        let response = http.get(&uri).send().await?;
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(
            response.headers()["content-type"],
            "application/statuslist+jwt"
        );
        let (_, claims) = idp::decode_unverified(&response.text().await?)?;
        assert_eq!(claims["sub"], uri.as_str());
        let lst = claims["status_list"]["lst"].as_str().unwrap_or_default();
        let mut bits = Vec::new();
        flate2::read::ZlibDecoder::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(lst)?
                .as_slice(),
        )
        .read_to_end(&mut bits)?;
        let set: Vec<usize> = (0..bits.len() * 8)
            .filter(|bit| bits[bit / 8] & (1 << (bit % 8)) != 0)
            .collect();
        // List 2's revoked token has expired: its bit is set until the periodic purge of
        // expired tokens (decisions §23), which the server also runs at start and may have run
        // after the rows were written, deletes its row; either is correct. List 3's revoked
        // token is live and must show.
        let expected: &[&[usize]] = match list {
            2 => &[&[5], &[]],
            3 => &[&[0]],
            _ => &[&[]],
        };
        assert!(
            expected.contains(&set.as_slice()),
            "revoked bits of {uri}: {set:?}, want one of {expected:?}"
        );
    }
    let response = http.get(format!("{b_url}/status-lists/4")).send().await?;
    assert_eq!(response.status(), 404, "never begun");
    b.shutdown().await.map_err(|e| anyhow::anyhow!("{e}"))
}

#[tokio::test]
async fn expired_lists_leave_the_aggregation_on_sqlite() -> anyhow::Result<()> {
    expired_lists_leave_the_aggregation_but_are_still_served(env::test_db::TestDatabase::sqlite())
        .await
}

#[tokio::test]
async fn expired_lists_leave_the_aggregation_on_postgres() -> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("expired_status_lists").await else {
        return Ok(());
    };
    expired_lists_leave_the_aggregation_but_are_still_served(database).await
}

/// IDJAG-ACCEPT-11: single use by default, the second presentation is `invalid_grant`.
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

/// IDJAG-ACCEPT-11: re-use is a per-resource policy (`single_use_assertions = false`).
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

/// `claims` with a fresh `jti`.
fn with_jti(claims: &Value) -> Value {
    let mut claims = claims.clone();
    claims["jti"] = json!(uuid());
    claims
}

/// Claims serialised with `sub` twice (the second `second_sub`), which `serde_json::Value`
/// cannot hold but a careless signer can produce.
struct DuplicateSub {
    claims: Value,
    second_sub: &'static str,
}

impl serde::Serialize for DuplicateSub {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.claims.as_object().into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("sub", self.second_sub)?;
        map.end()
    }
}

/// Every refusal of an assertion is 400 `invalid_grant`, never `invalid_client` or a token
/// (JWTB-10, IDJAG-ACCEPT-26), audited with the precise reason; each case names its row.
/// Rows: BCP-06, BCP-08, INT-01.
#[tokio::test]
async fn hostile_assertions_are_invalid_grant_and_audited() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let base = legs.valid_claims();
    let b64u = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    // A genuine ID-JAG of A's: its payload changed after signing, its header swapped for one A
    // never signed.
    let genuine = legs.forged_by_a(with_jti(&base), "oauth-id-jag+jwt")?;
    let mut parts = genuine.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let kid = legs.a.server.state.keys.active_kid().map(|(kid, _)| kid);
    let mut tampered = with_jti(&base);
    tampered["sub"] = json!("admin");
    let tampered = format!(
        "{header}.{}.{signature}",
        b64u(serde_json::to_string(&tampered)?.as_bytes())
    );
    let with_header = |header: Value| {
        format!(
            "{}.{payload}.{signature}",
            b64u(header.to_string().as_bytes())
        )
    };
    // HS256 keyed with A's public JWKS document, the classic algorithm confusion.
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = Some("oauth-id-jag+jwt".into());
    hs_header.kid = kid.clone();
    let confused = jsonwebtoken::encode(
        &hs_header,
        &with_jti(&base),
        &jsonwebtoken::EncodingKey::from_secret(&legs.a.server.state.keys.jwks_json()),
    )?;
    // Signed by A with a member twice: `sub` names two users.
    let duplicated = legs.a.server.state.keys.sign(
        "oauth-id-jag+jwt",
        &DuplicateSub {
            claims: with_jti(&base),
            second_sub: "admin",
        },
    )?;
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
            "wrong typ JWT: A is not trusted for chaining grants (IDJAG-ACCEPT-04, CHAIN-B-04)",
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
            "foreign aud (IDJAG-ACCEPT-06, JWTB-03, IDJAG-ACCEPT-24, EMA-08)",
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
            "expired (IDJAG-ACCEPT-07, JWTB-04)",
            legs.forged_by_a(
                with(json!({"exp": now() - 120, "iat": now() - 300})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_expired",
        ),
        (
            "not yet valid (JWTB-05)",
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
            "exp a day ahead (JWTB-04)",
            legs.forged_by_a(with(json!({"exp": now() + 86400})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_lifetime_too_long",
        ),
        (
            "unknown issuer (IDJAG-ACCEPT-05)",
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
            "foreign resource (IDJAG-ACCEPT-15, EMA-08)",
            legs.forged_by_a(
                with(json!({"resource": "https://other.example/mcp"})),
                "oauth-id-jag+jwt",
            )?,
            "invalid_grant",
            "assertion_resource_unknown",
        ),
        (
            "garbage (JWTB-08)",
            "not-a-jwt".to_string(),
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            "iss missing (JWTB-01)",
            legs.forged_by_a(with(json!({"iss": null})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "untrusted_assertion_issuer",
        ),
        (
            "sub missing (JWTB-02)",
            legs.forged_by_a(with(json!({"sub": null})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_missing_claim",
        ),
        (
            "exp missing (JWTB-04)",
            legs.forged_by_a(with(json!({"exp": null})), "oauth-id-jag+jwt")?,
            "invalid_grant",
            "assertion_missing_claim",
        ),
        (
            "payload changed after signing (JWTB-07, IDJAG-ACCEPT-05)",
            tampered,
            "invalid_grant",
            "assertion_bad_signature",
        ),
        (
            "alg none, no signature (IDJAG-ACCEPT-05)",
            format!(
                "{}.{payload}.",
                b64u(br#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#)
            ),
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            "alg none (IDJAG-ACCEPT-05)",
            with_header(json!({"alg": "none", "typ": "oauth-id-jag+jwt"})),
            "invalid_grant",
            "assertion_alg_none",
        ),
        (
            "HS256 keyed with the issuer's public keys (IDJAG-ACCEPT-05)",
            confused,
            "invalid_grant",
            "assertion_alg_not_allowed",
        ),
        (
            "duplicate member names (JWTB-08, IDJAG-ACCEPT-25)",
            duplicated,
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            "crit naming an extension we do not understand (JWTB-08, IDJAG-ACCEPT-25)",
            with_header(
                json!({"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": kid,
                               "crit": ["urn:example:ext"], "urn:example:ext": true}),
            ),
            "invalid_grant",
            "assertion_crit_unsupported",
        ),
        (
            "two JWTs concatenated (JWTB-09)",
            format!("{genuine}.{genuine}"),
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            // Five dot-separated parts, but no JWE: malformed, not "encrypted".
            "two JWTs separated by a space (JWTB-09)",
            format!("{genuine} {genuine}"),
            "invalid_grant",
            "assertion_malformed",
        ),
        (
            "JWE-wrapped (JWTB-09: no decryption key, refused)",
            format!(
                "{}.{}.{}.{}.{}",
                b64u(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT"}"#),
                b64u(b"encrypted-key-bytes"),
                b64u(b"iv-bytes-123"),
                b64u(b"ciphertext-bytes"),
                b64u(b"tag-bytes-16")
            ),
            "invalid_grant",
            "assertion_encrypted",
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
        // JWTB-10, IDJAG-ACCEPT-26: 400 invalid_grant, whatever is wrong with the assertion.
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

/// JWTB-07, IDJAG-ACCEPT-05: the signature must verify with the issuer's own key of that `kid`.
/// Rows: BCP-05.
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

/// The request around the assertion: who may redeem it (IDJAG-ACCEPT-02, IDJAG-ACCEPT-03),
/// what it must carry, and how its resources and scopes narrow what is granted.
#[tokio::test]
async fn request_rules_missing_assertion_resource_outside_and_scopes() -> anyhow::Result<()> {
    // An issuer id of this test's own: the JWKS fetch counter below is labelled with it.
    let source = format!("idp:a-{}", uuid());
    let idp_id = source.trim_start_matches("idp:").to_string();
    let legs = Legs::start_with(move |config| {
        config.identity_providers[0].id = idp_id;
        let mut public = client(PUBLIC_AT_RAS, "none", &[]);
        public.grant_types = vec!["authorization_code".into()];
        public.redirect_uris = vec!["http://127.0.0.1:9/callback".into()];
        config.clients.push(public);
    })
    .await?;
    let fetches = |metrics: &str| {
        sample(
            metrics,
            "frontdesk_jwks_fetches_total",
            &[&format!("source=\"{source}\""), "outcome=\"ok\""],
        )
    };
    // IDJAG-ACCEPT-02, IDJAG-ACCEPT-26: a wrong secret is 401 invalid_client (not invalid_grant),
    // decided before anything of the assertion is looked at: B has not fetched A's keys, and the
    // ID-JAG is not spent.
    let id_jag = legs.id_jag("read").await?;
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let (status, body) = post_as(
        &legs.b_url,
        "/token",
        &form,
        Some((AGENT_AT_RAS, "not-the-secret")),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let metrics_url = format!("{}/metrics", legs.b_url);
    let metrics = reqwest::get(&metrics_url).await?.text().await?;
    assert_eq!(
        fetches(&metrics),
        None,
        "no JWKS fetch before client authentication"
    );
    let (status, body) = legs.redeem(&form, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::get(&metrics_url).await?.text().await?;
    assert_eq!(fetches(&metrics), Some(1.0), "{metrics}");
    // IDJAG-ACCEPT-03: a public client (it proves nothing) gets no jwt-bearer grant.
    let (status, body) = post_as(
        &legs.b_url,
        "/token",
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", legs.id_jag("read").await?.as_str()),
            ("client_id", PUBLIC_AT_RAS),
        ],
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // IDJAG-ACCEPT-17, EMA-08: assertion scopes B does not know for the resource are dropped, not
    // granted (docs/decisions.md §5).
    let mut claims = legs.valid_claims();
    claims["scope"] = json!("read admin");
    let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&assertion, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read", "{body}");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["scope"], "read");
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
    // A client without the jwt-bearer grant (TOK-10) — A's agent is not registered at B at all
    // (IDJAG-ACCEPT-02: only clients registered at B).
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

/// Leg 1 at A: an ID-JAG for B's MCP resource carrying `details` as `authorization_details`.
async fn id_jag_carrying(legs: &Legs, details: &Value) -> anyhow::Result<String> {
    let id_token = legs.a.id_token().await?;
    let (status, body) = legs
        .a
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", legs.b_url.as_str()),
            ("resource", MCP_RESOURCE),
            ("authorization_details", details.to_string().as_str()),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    anyhow::ensure!(status == 200, "leg 1: {body}");
    Ok(body["access_token"].as_str().unwrap_or_default().into())
}

/// IDJAG-ACCEPT-18 (IDJAG §4.4.1): the ID-JAG's `authorization_details` (A puts the requested
/// ones in it at leg 1, for the types its audience accepts) are granted for the types B's
/// resource takes, or a requested subset of them; more is refused without spending the ID-JAG;
/// a type the resource does not take is left out of the token, and cannot be asked for.
#[tokio::test]
async fn authorization_details_are_granted_for_the_types_the_resource_takes_idjag_accept_18()
-> anyhow::Result<()> {
    let types = || {
        vec![
            "payment_initiation".to_string(),
            "account_information".to_string(),
        ]
    };
    let legs = Legs::start_both(
        "",
        "",
        |a| {
            for audience in &mut a.audiences {
                audience.authorization_details_types = types();
            }
        },
        |b| b.resources[0].authorization_details_types = types(),
    )
    .await?;
    let details = json!([
        {"type": "payment_initiation", "amount": "5.00"},
        {"type": "account_information"},
    ]);
    let id_jag_with_details = || id_jag_carrying(&legs, &details);
    let id_jag = id_jag_with_details().await?;
    let bigger = json!([{"type": "payment_initiation", "amount": "500.00"}]).to_string();
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &id_jag),
                ("authorization_details", &bigger),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_authorization_details")),
        "{body}"
    );
    let subset = json!([{"type": "account_information"}]);
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &id_jag),
                ("authorization_details", &subset.to_string()),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization_details"], subset);
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["authorization_details"], subset);
    let (status, body) = legs
        .redeem_assertion(&id_jag_with_details().await?, AGENT_AT_RAS)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization_details"], details);

    // B's resource that takes only `account_information`: the payment detail A vouched for is
    // left out of B's token, and asking for it is refused.
    let narrow = Legs::start_both(
        "",
        "",
        |a| {
            for audience in &mut a.audiences {
                audience.authorization_details_types = types();
            }
        },
        |b| b.resources[0].authorization_details_types = vec!["account_information".into()],
    )
    .await?;
    let issue = || id_jag_carrying(&narrow, &details);
    let (status, body) = narrow
        .redeem_assertion(&issue().await?, AGENT_AT_RAS)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization_details"], subset, "{body}");
    let verified = narrow
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["authorization_details"], subset);
    let payment = json!([{"type": "payment_initiation", "amount": "5.00"}]).to_string();
    let (status, body) = narrow
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &issue().await?),
                ("authorization_details", &payment),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_authorization_details")),
        "{body}"
    );
    Ok(())
}

/// RFC 9396 §9.2: B's access token limited by `authorization_details` says so to a resource
/// server that introspects it, as its JWT form does; without them it read as a token of its
/// whole scope (a payment of 5.00 as any payment). Rows: EMA-13, INTRO-02.
#[tokio::test]
async fn introspection_shows_the_authorization_details_a_token_grants() -> anyhow::Result<()> {
    let legs = Legs::start_with(|b| {
        b.resources[0].authorization_details_types = vec!["payment_initiation".into()];
    })
    .await?;
    let details = json!([{"type": "payment_initiation", "amount": "5.00"}]);
    let mut claims = legs.valid_claims();
    claims["authorization_details"] = details.clone();
    let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&assertion, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorization_details"], details, "{body}");
    let token = body["access_token"].as_str().unwrap_or_default();
    let (status, answer) = post(
        &legs.b_url,
        "/introspect",
        &[("token", token)],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["scope"], "read", "{answer}");
    assert_eq!(answer["authorization_details"], details, "{answer}");
    Ok(())
}

/// A subject B cannot resolve (no link) is `invalid_grant`; once linked, it is (IDJAG-ACCEPT-12).
#[tokio::test]
async fn linked_subject_mode_requires_a_link() -> anyhow::Result<()> {
    let legs =
        Legs::start_with(|config| config.identity_providers[0].subject_mode = "linked".into())
            .await?;
    let (status, body) = legs.redeem_valid_id_jag().await?;
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
    let (status, body) = legs.redeem_valid_id_jag().await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(claims["sub"], "local-42");
    Ok(())
}

/// With assertion issuers of two subject namespaces trusted at B, an issuer whose subjects are
/// `federated` (its `sub` issued as it is) is refused with `subject_namespace_ambiguous`: the
/// access token does not name the assertion's issuer, so a partner issuer could send the `sub`
/// of A's user and receive that user's access token. Declaring one namespace for both, or
/// mapping A's subjects, lets the redemption through (decisions §43; IDJAG-JWT-05's rule that a
/// `sub` is unique under its `iss`).
#[tokio::test]
async fn federated_subjects_are_refused_while_issuers_of_several_namespaces_are_trusted()
-> anyhow::Result<()> {
    let with_partner = |namespace: Option<&str>, mode: &str| {
        let namespace = namespace.map(str::to_string);
        let mode = mode.to_string();
        move |config: &mut frontdesk::config::Config| {
            let mut partner = config.identity_providers[0].clone();
            partner.id = "partner-sts".into();
            partner.issuer = "https://sts.partner.example".into();
            partner.subject_namespace = namespace.clone();
            config.identity_providers[0].subject_namespace = namespace.clone();
            config.identity_providers[0].subject_mode = mode.clone();
            if mode == "mapped" {
                config.identity_providers[0].subject_mapping = Some(r#""a:" + subject.sub"#.into());
            }
            config.identity_providers.push(partner);
        }
    };
    let legs = Legs::start_with(with_partner(None, "federated")).await?;
    let reply = legs.redeem_valid_id_jag().await?;
    assert_invalid_grant_at_b(&legs, "federated", reply, "subject_namespace_ambiguous").await?;
    for (namespace, mode, sub) in [
        (Some("one-directory"), "federated", "user-1"),
        (None, "mapped", "a:user-1"),
    ] {
        let legs = Legs::start_with(with_partner(namespace, mode)).await?;
        let (status, body) = legs.redeem_valid_id_jag().await?;
        assert_eq!(status, 200, "{mode} {namespace:?}: {body}");
        let verified = legs
            .verify_access_token(body["access_token"].as_str().unwrap_or_default())
            .await?;
        assert_eq!(verified["payload"]["sub"], sub, "{mode} {namespace:?}");
    }
    Ok(())
}

/// Rows: INT-10.
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
    // EMA-12.
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

/// CHAIN-B-09, AT-10: the issuer's trust configuration at B names the assertion claims its
/// access tokens carry (`transcribe_claims`): `groups` and `roles` pass, in the assertion's JSON
/// form; a claim present but not listed does not, and neither does one the assertion lacks.
/// End to end, the user's `groups` travel from the enterprise IdP's ID token through A's ID-JAG
/// (A's audience releases them, IDJAG-JWT-19) into B's access token.
#[tokio::test]
async fn claims_the_issuer_transcribes_reach_the_access_token_and_nothing_else_chain_b_09()
-> anyhow::Result<()> {
    let legs = Legs::start_both(
        "",
        "",
        |config| {
            for audience in &mut config.audiences {
                if audience.id == "saas" {
                    audience.release.push("groups".into());
                }
            }
        },
        |config| {
            config.identity_providers[0].transcribe_claims =
                vec!["groups".into(), "roles".into(), "entitlements".into()];
        },
    )
    .await?;
    let id_token = legs
        .a
        .idp
        .mint(
            json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "groups": ["eng"], "department": "r&d" }),
        )
        .await?;
    let (status, body) = legs
        .a
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", legs.b_url.as_str()),
            ("resource", MCP_RESOURCE),
            ("scope", "read"),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    assert_eq!(status, 200, "leg 1: {body}");
    let id_jag = body["access_token"].as_str().unwrap_or_default();
    let (status, body) = legs.redeem_assertion(id_jag, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "leg 2: {body}");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["groups"], json!(["eng"]));
    assert!(verified["payload"].get("department").is_none());

    let mut claims = legs.valid_claims();
    claims["groups"] = json!(["eng", "oncall"]);
    claims["roles"] = json!("admin");
    claims["department"] = json!("research");
    // IDJAG-ACCEPT-13: a `sub_id` naming another SAML issuer and user neither establishes trust
    // nor picks the subject: the validated `iss` and `sub` do.
    claims["sub_id"] = json!({ "format": "saml-nameid", "issuer": "https://other-saml.example",
                               "nameid": "mallory@example.com" });
    let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&assertion, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    let access = &verified["payload"];
    assert_eq!(access["groups"], json!(["eng", "oncall"]));
    assert_eq!(access["roles"], "admin");
    for absent in ["department", "entitlements", "sub_id"] {
        assert!(access.get(absent).is_none(), "{absent}: {access}");
    }
    assert_eq!(access["sub"], "user-1"); // IDJAG-ACCEPT-13
    Ok(())
}

/// A `400 invalid_grant` from B whose newest audit event gives `reason`.
async fn assert_invalid_grant_at_b(
    legs: &Legs,
    label: &str,
    (status, body): (u16, Value),
    reason: &str,
) -> anyhow::Result<()> {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{label}: {body}"
    );
    assert!(body.get("access_token").is_none(), "{label}");
    let audit = legs
        .b
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await?;
    assert_eq!(audit[0].event.reason.as_deref(), Some(reason), "{label}");
    Ok(())
}

/// Identity chaining across domains: A (domain A) issues a chaining grant (`typ: JWT`) for B
/// (domain B) at leg 1, and B, trusting A for `jwt_grant`, redeems it for an access token
/// narrowed to the requested resource and scope, under the subject its mapping gives, without a
/// refresh token and once only; a grant naming B's token endpoint is accepted too; tokens of
/// other kinds, ID tokens, expired or tampered grants and unmappable subjects are `invalid_grant`
/// (JWTB-10).
#[tokio::test]
async fn a_chaining_grant_from_a_is_redeemed_at_b_chain_b() -> anyhow::Result<()> {
    let legs = Legs::start_both(
        "",
        "",
        |config| {
            // A's chaining audience is B (its ID-JAG audience is moved out of the way).
            let b = config
                .audiences
                .iter()
                .find(|audience| audience.id == "saas")
                .map(|audience| audience.issuer.clone())
                .unwrap_or_default();
            for audience in &mut config.audiences {
                match audience.id.as_str() {
                    "saas" => audience.issuer = RAS_ISSUER.into(),
                    "domain-b" => {
                        audience.issuer = b.clone();
                        audience.scopes = vec!["read".into(), "write".into()];
                    }
                    _ => {}
                }
            }
            config.clients[0]
                .audience_client_ids
                .insert("domain-b".into(), AGENT_AT_RAS.into());
        },
        |config| {
            let idp = &mut config.identity_providers[0];
            idp.token_types = vec!["id_jag".into(), "jwt_grant".into()];
            idp.subject_mode = "mapped".into();
            idp.subject_mapping =
                Some(r#"subject.sub == "user-1" ? "domain-a/" + subject.sub : """#.into());
        },
    )
    .await?;
    let id_token = legs.a.id_token().await?;
    let (status, body) = legs
        .a
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", JWT),
            ("audience", legs.b_url.as_str()),
            ("scope", "read write"),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ])
        .await?;
    assert_eq!(status, 200, "leg 1: {body}");
    let grant = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (header, _) = idp::decode_unverified(&grant)?;
    assert_eq!(header["typ"], "JWT");

    // CHAIN-B-05: the client narrows with resource and scope.
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", grant.as_str()),
        ("resource", MCP_RESOURCE),
        ("scope", "read"),
    ];
    let (status, body) = legs.redeem(&form, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "{body}");
    // CHAIN-B-06: RFC 6749 §5.1; CHAIN-B-07: no refresh token.
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|n| n > 0), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["scope"], "read");
    let access_token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // CHAIN-B-01: a token B signed, for the resource; CHAIN-B-03: the subject B mapped.
    let verified = legs.verify_access_token(&access_token).await?;
    let claims = &verified["payload"];
    assert_eq!(claims["aud"], MCP_RESOURCE);
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["sub"], "domain-a/user-1");
    assert_eq!(claims["client_id"], AGENT_AT_RAS);
    // CHAIN-B-08: single use.
    let replay = legs.redeem(&form, AGENT_AT_RAS).await?;
    assert_invalid_grant_at_b(&legs, "replay (CHAIN-B-08)", replay, "assertion_replayed").await?;

    // CHAIN-B-02: a chaining grant may name B by its token endpoint. CHAIN-B-09, AT-10: `act`
    // and `tenant` are transcribed into the access token; other claims (`groups`) are not.
    let token_endpoint = format!("{}/token", legs.b_url);
    let chaining = |changes: Value| {
        let mut claims = json!({
            "iss": legs.a.url, "sub": "user-1", "aud": legs.b_url, "client_id": AGENT_AT_RAS,
            "jti": uuid(), "iat": now(), "exp": now() + 60, "scope": "read",
        });
        for (key, value) in changes.as_object().into_iter().flatten() {
            claims[key] = value.clone();
        }
        claims
    };
    let grant = legs.forged_by_a(
        chaining(json!({
            "aud": token_endpoint, "act": {"sub": "agent-7"}, "tenant": "acme",
            "groups": ["admins"],
        })),
        "JWT",
    )?;
    let (status, body) = legs.redeem_assertion(&grant, AGENT_AT_RAS).await?;
    assert_eq!(status, 200, "aud = token endpoint: {body}");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    let claims = &verified["payload"];
    assert_eq!(claims["act"], json!({"sub": "agent-7"}));
    assert_eq!(claims["tenant"], "acme");
    assert!(claims.get("groups").is_none(), "{claims}");

    // JWTB-11: B's own access token, tokens of other kinds and an ID token issued to a client are
    // never a grant; CHAIN-B-01: nor is an expired or tampered one; CHAIN-B-03: nor one whose
    // subject B cannot map.
    // A grant of A's carrying the signature of another grant of A's.
    let genuine = legs.forged_by_a(chaining(json!({})), "JWT")?;
    let other = legs.forged_by_a(chaining(json!({})), "JWT")?;
    let (signed, _) = genuine.rsplit_once('.').unwrap_or_default();
    let (_, signature) = other.rsplit_once('.').unwrap_or_default();
    let tampered = format!("{signed}.{signature}");
    let cases = [
        (
            "B's own access token (JWTB-11)",
            access_token,
            "self_issued_assertion",
        ),
        (
            "typ at+jwt (JWTB-11)",
            legs.forged_by_a(chaining(json!({})), "at+jwt")?,
            "assertion_wrong_typ",
        ),
        (
            "typ dpop+jwt (JWTB-11)",
            legs.forged_by_a(chaining(json!({})), "dpop+jwt")?,
            "assertion_wrong_typ",
        ),
        (
            "typ client-authentication+jwt (JWTB-11)",
            legs.forged_by_a(chaining(json!({})), "client-authentication+jwt")?,
            "assertion_wrong_typ",
        ),
        (
            "an ID token issued to a client (JWTB-11, JWTB-03)",
            legs.forged_by_a(
                chaining(json!({"aud": AGENT_AT_IDP, "azp": AGENT_AT_IDP, "nonce": "n-1"})),
                "JWT",
            )?,
            "assertion_wrong_audience",
        ),
        (
            "expired (CHAIN-B-01)",
            legs.forged_by_a(
                chaining(json!({"iat": now() - 300, "exp": now() - 120})),
                "JWT",
            )?,
            "assertion_expired",
        ),
        (
            "tampered signature (CHAIN-B-01, JWTB-07)",
            tampered,
            "assertion_bad_signature",
        ),
        (
            "subject not mappable (CHAIN-B-03, IDJAG-ACCEPT-12)",
            legs.forged_by_a(chaining(json!({"sub": "user-2"})), "JWT")?,
            "subject_unmapped",
        ),
    ];
    for (label, assertion, reason) in cases {
        let answer = legs.redeem_assertion(&assertion, AGENT_AT_RAS).await?;
        assert_invalid_grant_at_b(&legs, label, answer, reason).await?;
    }
    Ok(())
}

/// A `private_key_jwt` client assertion for `client_id` at B, signed with `key`.
fn client_assertion_at_b(
    legs: &Legs,
    client_id: &str,
    key: &frontdesk::keys::PrivateKey,
) -> anyhow::Result<String> {
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

/// EMA-14: B reserves a high-impact scope for clients that authenticate with `private_key_jwt`,
/// with the issuer's condition on `client.auth_method` and `request.scopes`. The condition sees
/// the scopes that would be granted, so leaving `scope` out of the request (which grants the
/// assertion's) does not get around it. IDJAG-ACCEPT-22: the issuer vouches only for the clients
/// listed in its `allowed_clients`.
#[tokio::test]
async fn strong_client_authentication_for_a_high_impact_scope_ema_14_idjag_accept_22()
-> anyhow::Result<()> {
    const STRONG: &str = "strong-agent";
    let key = frontdesk::keys::PrivateKey::generate(frontdesk::keys::SigningAlgorithm::Es256, 2048)
        .map_err(anyhow::Error::msg)?;
    let jwk = key.public_jwk().map_err(anyhow::Error::msg)?;
    let legs = Legs::start_with(move |config| {
        let idp = &mut config.identity_providers[0];
        idp.condition = Some(
            r#"request.scopes.all(s, s != "write") || client.auth_method == "private_key_jwt""#
                .into(),
        );
        idp.allowed_clients = vec![AGENT_AT_RAS.into(), STRONG.into()];
        let mut strong = client(STRONG, "private_key_jwt", &[]);
        strong.jwks = Some(json!({ "keys": [jwk] }).to_string());
        strong.grant_types = vec![JWT_BEARER.into()];
        config.clients.push(strong);
    })
    .await?;
    let grant_for = |client_id: &str| {
        let mut claims = legs.valid_claims();
        claims["client_id"] = json!(client_id);
        claims["scope"] = json!("read write");
        legs.forged_by_a(claims, "oauth-id-jag+jwt")
    };
    // A secret client asking for nothing would get the assertion's "read write": refused.
    let answer = legs
        .redeem_assertion(&grant_for(AGENT_AT_RAS)?, AGENT_AT_RAS)
        .await?;
    assert_invalid_grant_at_b(&legs, "write by secret", answer, "idp_condition_denied").await?;
    // Asking for read only, it gets read.
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &grant_for(AGENT_AT_RAS)?),
                ("scope", "read"),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!((status, &body["scope"]), (200, &json!("read")), "{body}");
    // The private_key_jwt client gets write.
    let (status, body) = post_as(
        &legs.b_url,
        "/token",
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &grant_for(STRONG)?),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &client_assertion_at_b(&legs, STRONG, &key)?,
            ),
        ],
        None,
    )
    .await?;
    assert_eq!(
        (status, &body["scope"]),
        (200, &json!("read write")),
        "{body}"
    );
    // IDJAG-ACCEPT-22: other-client is registered at B, but A does not vouch for it.
    let answer = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &grant_for("other-client")?),
                ("scope", "read"),
            ],
            "other-client",
        )
        .await?;
    assert_invalid_grant_at_b(
        &legs,
        "issuer not trusted for the client",
        answer,
        "issuer_not_trusted_for_client",
    )
    .await?;
    Ok(())
}

/// IDJAG-ACCEPT-14, IDJAG-ACCEPT-15, EMA-08: an assertion's `resource` is a URI or an array of
/// URIs. One that is neither (a number, an object, an array holding something else, an empty
/// array) is `invalid_grant`, not read as "no resource": that reading let the client choose any
/// resource B protects, outside what the issuer granted (RFC 7521 §5.2: valid in all respects).
#[tokio::test]
async fn a_malformed_resource_claim_is_refused_not_read_as_none_idjag_accept_15()
-> anyhow::Result<()> {
    const ADMIN_RESOURCE: &str = "https://admin.saas.example/mcp";
    let legs = Legs::start_with(|config| {
        let mut admin = config.resources[0].clone();
        admin.resource = ADMIN_RESOURCE.into();
        admin.default = false;
        config.resources.push(admin);
    })
    .await?;
    for (label, resource) in [
        ("a number", json!(5)),
        ("an object", json!({ "uri": MCP_RESOURCE })),
        ("an array holding a number", json!([MCP_RESOURCE, 5])),
        ("an empty array", json!([])),
    ] {
        let mut claims = legs.valid_claims();
        claims["resource"] = resource;
        let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
        for form in [
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ],
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
                ("resource", ADMIN_RESOURCE),
            ],
        ] {
            let answer = legs.redeem(&form, AGENT_AT_RAS).await?;
            assert_invalid_grant_at_b(&legs, label, answer, "assertion_invalid_claim").await?;
        }
    }
    // The control: a well-formed claim is honoured.
    let assertion = legs.forged_by_a(legs.valid_claims(), "oauth-id-jag+jwt")?;
    let (status, body) = legs.redeem_assertion(&assertion, AGENT_AT_RAS).await?;
    assert_eq!(
        (status, &body["resource"]),
        (200, &json!(MCP_RESOURCE)),
        "{body}"
    );
    Ok(())
}

/// IDJAG-ACCEPT-10, docs/decisions.md (leg 2: a chaining grant's `client_id`, when present, must
/// name the authenticated client): a `client_id` claim that is not a string is invalid, for
/// chaining grants as for ID-JAGs. It used to count as absent, so a chaining grant its issuer
/// had bound to one client (`["agent-at-saas"]`, `42`) was redeemed by any client.
#[tokio::test]
async fn a_client_id_claim_that_is_not_a_string_is_refused_idjag_accept_10() -> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        config.identity_providers[0].token_types = vec!["id_jag".into(), "jwt_grant".into()];
    })
    .await?;
    for (label, typ) in [("chaining grant", "JWT"), ("ID-JAG", "oauth-id-jag+jwt")] {
        for client_id in [
            json!([AGENT_AT_RAS]),
            json!(42),
            json!({ "id": AGENT_AT_RAS }),
        ] {
            let mut claims = legs.valid_claims();
            claims["client_id"] = client_id.clone();
            let assertion = legs.forged_by_a(claims, typ)?;
            let answer = legs.redeem_assertion(&assertion, "other-client").await?;
            assert_invalid_grant_at_b(
                &legs,
                &format!("{label}, client_id {client_id}"),
                answer,
                "assertion_invalid_claim",
            )
            .await?;
        }
    }
    // Controls: a chaining grant without `client_id` may be redeemed by any client it is for;
    // one naming its client only by that client.
    let mut claims = legs.valid_claims();
    claims
        .as_object_mut()
        .map(|claims| claims.remove("client_id"));
    let assertion = legs.forged_by_a(claims, "JWT")?;
    let (status, body) = legs.redeem_assertion(&assertion, "other-client").await?;
    assert_eq!(status, 200, "{body}");
    let assertion = legs.forged_by_a(legs.valid_claims(), "JWT")?;
    let answer = legs.redeem_assertion(&assertion, "other-client").await?;
    assert_invalid_grant_at_b(
        &legs,
        "another client's grant",
        answer,
        "client_id_mismatch",
    )
    .await?;
    Ok(())
}

/// AT-03: a resource named twice in the request is one audience — the access token's `aud` names
/// it once (it used to list it twice).
#[tokio::test]
async fn a_resource_named_twice_is_one_audience_at_03() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let id_jag = legs.id_jag("read").await?;
    let (status, body) = legs
        .redeem(
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &id_jag),
                ("resource", MCP_RESOURCE),
                ("resource", MCP_RESOURCE),
            ],
            AGENT_AT_RAS,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().expect("access token"))
        .await?;
    assert_eq!(verified["payload"]["aud"], json!(MCP_RESOURCE));
    Ok(())
}
