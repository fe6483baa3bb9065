//! DPoP (RFC 9449) over real HTTP: proofs sent in the `DPoP` header at `/token`, ID-JAGs bound
//! to the proof's key at A and redeemed only with that key at B (ID-JAG §9.9.1), access tokens
//! bound (`token_type: DPoP`, `cnf.jkt`), public clients' refresh tokens bound, and every bad
//! proof refused as `invalid_dpop_proof`. The tokens are checked by an independent JOSE library
//! (`jose` on Node) and the thumbprints computed here by hand from RFC 7638. Row IDs refer to
//! REQUIREMENTS.md.

#[path = "support/code_flow.rs"]
mod code_flow;
#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/legs.rs"]
mod legs;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use env::*;
use frontdesk::keys::{Kek, PrivateKey, SigningAlgorithm};
use frontdesk::oauth::dpop_nonce::{DpopNonces, NONCE_KEY_PURPOSE};
use frontdesk::store::{AuditFilter, AuditLog};
use legs::{JWT_BEARER, Legs, uuid};
use serde_json::{Value, json};

/// The `access_token` member of a token response (empty if absent).
fn access_token(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A client's DPoP key pair, as a DPoP client library keeps one.
struct DpopKey {
    key: PrivateKey,
    /// The public JWK's members (`kty`, `crv`, `x`, `y`).
    public: Value,
}

impl DpopKey {
    fn generate() -> anyhow::Result<DpopKey> {
        let key =
            PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
        let jwk = serde_json::to_value(key.public_jwk().map_err(anyhow::Error::msg)?)?;
        let public = json!({ "kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"] });
        Ok(DpopKey { key, public })
    }

    /// RFC 7638 §3: SHA-256 of the required members in lexicographic order, without spaces.
    fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.public["x"].as_str().unwrap_or_default(),
            self.public["y"].as_str().unwrap_or_default()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// A fresh proof for `POST url`.
    fn proof(&self, url: &str) -> anyhow::Result<String> {
        self.proof_with(json!({ "jti": uuid(), "htm": "POST", "htu": url, "iat": now() }))
    }

    fn proof_with(&self, claims: Value) -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.public.clone())?);
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &self.key.encoding_key().map_err(anyhow::Error::msg)?,
        )?)
    }
}

/// A proof of `claims` signed by `signer`, its header built by hand: `typ` and `jwk` (none if
/// `None`), whatever members that JWK has.
fn signed_proof(
    signer: &DpopKey,
    typ: &str,
    jwk: Option<Value>,
    claims: &Value,
) -> anyhow::Result<String> {
    let mut header = json!({ "alg": "ES256", "typ": typ });
    if let Some(jwk) = jwk {
        header["jwk"] = jwk;
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &signer.key.encoding_key().map_err(anyhow::Error::msg)?,
        jsonwebtoken::Algorithm::ES256,
    )?;
    Ok(format!("{input}.{signature}"))
}

/// `POST {base}/token` with Basic credentials (if any) and each of `proofs` as a `DPoP` header.
async fn token_request(
    base: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
    proofs: &[&str],
) -> anyhow::Result<(u16, Value)> {
    let (status, body, _) = token_request_nonce(base, form, basic, proofs).await?;
    Ok((status, body))
}

/// [`token_request`], also returning the response's `DPoP-Nonce` header.
async fn token_request_nonce(
    base: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
    proofs: &[&str],
) -> anyhow::Result<(u16, Value, Option<String>)> {
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let nonce = response
        .headers()
        .get("dpop-nonce")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Ok((status, response.json().await?, nonce))
}

/// An exchange of the ID token `subject_token` for `requested` at `audience`, as `agent`, with
/// the given proofs.
async fn exchange_with(
    env: &Env,
    requested: &str,
    audience: &str,
    subject_token: &str,
    proofs: &[&str],
) -> anyhow::Result<(u16, Value)> {
    token_request(
        &env.url,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", requested),
            ("audience", audience),
            ("subject_token", subject_token),
            ("subject_token_type", ID_TOKEN),
        ],
        Some((AGENT, SECRET)),
        proofs,
    )
    .await
}

/// Leg 1 at A for B, with the given proofs.
async fn id_jag_with(legs: &Legs, proofs: &[&str]) -> anyhow::Result<(u16, Value)> {
    let (status, body, _) = id_jag_with_nonce(legs, proofs).await?;
    Ok((status, body))
}

/// [`id_jag_with`], also returning the response's `DPoP-Nonce` header.
async fn id_jag_with_nonce(
    legs: &Legs,
    proofs: &[&str],
) -> anyhow::Result<(u16, Value, Option<String>)> {
    let id_token = legs.a.id_token().await?;
    token_request_nonce(
        &legs.a.url,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", legs.b_url.as_str()),
            ("resource", MCP_RESOURCE),
            ("scope", "read"),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ],
        Some((AGENT, SECRET)),
        proofs,
    )
    .await
}

/// Leg 2 at B as the ID-JAG's client, with the given proofs.
async fn redeem_with(legs: &Legs, id_jag: &str, proofs: &[&str]) -> anyhow::Result<(u16, Value)> {
    token_request(
        &legs.b_url,
        &[("grant_type", JWT_BEARER), ("assertion", id_jag)],
        Some((AGENT_AT_RAS, SECRET)),
        proofs,
    )
    .await
}

/// The reason B's (or A's) audit log recorded for the newest event of `event`.
async fn last_reason(
    server: &frontdesk::app::RunningServer,
    event: &str,
) -> anyhow::Result<String> {
    let events = server
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await?;
    let record = events
        .iter()
        .find(|record| record.event.event == event)
        .ok_or_else(|| anyhow::anyhow!("no {event} event"))?;
    Ok(record.event.reason.clone().unwrap_or_default())
}

/// A refusal as the client and the audit log see it: HTTP 400 with `error` and no token, and
/// the newest `event` in `server`'s audit log recorded with `reason`.
async fn assert_refused(
    status: u16,
    body: &Value,
    error: &str,
    server: &frontdesk::app::RunningServer,
    event: &str,
    reason: &str,
) -> anyhow::Result<()> {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some(error)),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(last_reason(server, event).await?, reason, "{body}");
    Ok(())
}

/// Rows: IDJAG-JWT-20.
#[tokio::test]
async fn an_id_jag_requested_with_a_proof_is_bound_to_its_key_and_redeemed_only_with_it_dpop_04_05_06()
-> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let key = DpopKey::generate()?;
    let a_token_endpoint = format!("{}/token", legs.a.url);
    let (status, body) = id_jag_with(&legs, &[&key.proof(&a_token_endpoint)?]).await?;
    assert_eq!(status, 200, "{body}");
    // DPOP-04: the response's token_type stays N_A; the ID-JAG carries the key's thumbprint.
    assert_eq!(body["token_type"], "N_A", "{body}");
    let id_jag = access_token(&body);
    let verified = legs
        .a
        .verify_issued(&id_jag, &legs.b_url, "oauth-id-jag+jwt")
        .await?;
    assert_eq!(
        verified["payload"]["cnf"],
        json!({ "jkt": key.thumbprint() })
    );

    let b_token_endpoint = format!("{}/token", legs.b_url);
    // DPOP-06: without a proof the bound ID-JAG is refused.
    let (status, body) = redeem_with(&legs, &id_jag, &[]).await?;
    assert_refused(
        status,
        &body,
        "invalid_grant",
        &legs.b,
        "jwt_bearer",
        "dpop_proof_required",
    )
    .await?;
    // DPOP-05: a valid proof of another key is refused too.
    let thief = DpopKey::generate()?;
    let (status, body) = redeem_with(&legs, &id_jag, &[&thief.proof(&b_token_endpoint)?]).await?;
    assert_refused(
        status,
        &body,
        "invalid_grant",
        &legs.b,
        "jwt_bearer",
        "dpop_key_mismatch",
    )
    .await?;
    assert!(body.get("access_token").is_none());

    // The holder of the key redeems it (the refusals above did not spend the single-use jti)
    // and gets an access token bound to the same key (AT-07: `cnf.jkt`, `token_type: DPoP`).
    let (status, body) = redeem_with(&legs, &id_jag, &[&key.proof(&b_token_endpoint)?]).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let access_token = access_token(&body);
    let verified = legs.verify_access_token(&access_token).await?;
    assert_eq!(
        verified["payload"]["cnf"],
        json!({ "jkt": key.thumbprint() })
    );

    // INTRO-02, RFC 9449 §6.2: introspection says what the resource server must check.
    let (status, introspected) = legs::post(
        &legs.b_url,
        "/introspect",
        &[("token", access_token.as_str())],
        AGENT_AT_RAS,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["token_type"], "DPoP", "{introspected}");
    assert_eq!(
        introspected["cnf"]["jkt"],
        key.thumbprint(),
        "{introspected}"
    );

    // The audit log at both ends names the key.
    for (server, event) in [(&legs.a.server, "token_exchange"), (&legs.b, "jwt_bearer")] {
        let events = server
            .state
            .store
            .audit_events(&AuditFilter::default())
            .await?;
        let issued = events
            .iter()
            .find(|record| {
                record.event.event == event && record.event.decision.as_str() == "issued"
            })
            .ok_or_else(|| anyhow::anyhow!("no issued {event}"))?;
        let detail: Value = serde_json::from_str(
            issued
                .event
                .detail
                .as_ref()
                .map(|d| d.as_str())
                .unwrap_or("{}"),
        )?;
        assert_eq!(detail["dpop_jkt"], key.thumbprint(), "{event}: {detail}");
    }
    Ok(())
}

/// DPOP-07: at B, an ID-JAG without `cnf` redeemed with a proof: the proof is validated (a bad
/// one is `invalid_dpop_proof`, DPOP-01, and spends nothing) and the access token is bound to its
/// key (`token_type: DPoP`); without a proof, a bearer token.
/// Rows: IDJAG-JWT-20.
#[tokio::test]
async fn an_unbound_id_jag_redeemed_with_a_proof_gets_a_bound_token_and_without_one_a_bearer_token_dpop_07()
-> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let (status, body) = id_jag_with(&legs, &[]).await?;
    assert_eq!(status, 200, "{body}");
    let unbound = access_token(&body);
    let (_, payload) = idp::decode_unverified(&unbound)?;
    assert!(
        payload.get("cnf").is_none(),
        "no proof, no binding: {payload}"
    );

    let key = DpopKey::generate()?;
    // A proof made for A's token endpoint is no proof for B's.
    let (status, body) = redeem_with(
        &legs,
        &unbound,
        &[&key.proof(&format!("{}/token", legs.a.url))?],
    )
    .await?;
    assert_refused(
        status,
        &body,
        "invalid_dpop_proof",
        &legs.b,
        "jwt_bearer",
        "dpop_wrong_htu",
    )
    .await?;
    let (status, body) = redeem_with(
        &legs,
        &unbound,
        &[&key.proof(&format!("{}/token", legs.b_url))?],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["cnf"]["jkt"], key.thumbprint());

    // DPOP-08's default: no proof, a bearer token without cnf.
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let (status, body) = redeem_with(
        &legs,
        body["access_token"].as_str().unwrap_or_default(),
        &[],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let verified = legs
        .verify_access_token(body["access_token"].as_str().unwrap_or_default())
        .await?;
    assert!(verified["payload"].get("cnf").is_none());
    Ok(())
}

#[tokio::test]
async fn a_resource_that_requires_dpop_gets_no_bearer_token_dpop_08() -> anyhow::Result<()> {
    let legs = Legs::start_with(|config| config.resources[0].require_dpop = true).await?;
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let id_jag = access_token(&body);
    let (status, body) = redeem_with(&legs, &id_jag, &[]).await?;
    assert_refused(
        status,
        &body,
        "invalid_grant",
        &legs.b,
        "jwt_bearer",
        "dpop_required",
    )
    .await?;
    // The same ID-JAG with a proof: the refusal did not spend it.
    let key = DpopKey::generate()?;
    let (status, body) = redeem_with(
        &legs,
        &id_jag,
        &[&key.proof(&format!("{}/token", legs.b_url))?],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    Ok(())
}

/// DPOP-01: every defect of a proof is 400 `invalid_dpop_proof`, audited with its reason;
/// DPOP-03: a proof is good for one request.
/// Rows: BCP-01.
#[tokio::test]
async fn bad_proofs_are_invalid_dpop_proof_and_a_proof_is_good_for_one_request_dpop_01_03()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    let key = DpopKey::generate()?;
    let token_endpoint = format!("{}/token", env.url);
    let id_token = env.id_token().await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", RAS_ISSUER),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let exchange = |proofs: Vec<String>| {
        let url = env.url.clone();
        async move {
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            token_request(&url, &form, Some((AGENT, SECRET)), &proofs).await
        }
    };

    let proof = key.proof(&token_endpoint)?;
    let (status, body) = exchange(vec![proof.clone()]).await?;
    assert_eq!(status, 200, "{body}");
    // DPOP-03: the same proof again is a replay.
    let (status, body) = exchange(vec![proof]).await?;
    assert_refused(
        status,
        &body,
        "invalid_dpop_proof",
        &env.server,
        "token_exchange",
        "dpop_replayed",
    )
    .await?;

    // Proofs built by hand: another header, another key.
    let fresh = || json!({ "jti": uuid(), "htm": "POST", "htu": token_endpoint, "iat": now() });
    let other = DpopKey::generate()?;
    let mut private_jwk = key.public.clone();
    private_jwk["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let cases = [
        (
            "a proof for another endpoint",
            vec![key.proof(&format!("{}/introspect", env.url))?],
            "dpop_wrong_htu",
        ),
        (
            "a proof for GET",
            vec![key.proof_with(
                json!({ "jti": uuid(), "htm": "GET", "htu": token_endpoint, "iat": now() }),
            )?],
            "dpop_wrong_htm",
        ),
        (
            "a proof made ten minutes ago",
            vec![key.proof_with(
                json!({ "jti": uuid(), "htm": "POST", "htu": token_endpoint, "iat": now() - 600 }),
            )?],
            "dpop_stale",
        ),
        (
            "two DPoP headers",
            vec![key.proof(&token_endpoint)?, key.proof(&token_endpoint)?],
            // Refused with the transport checks, before the grant is known.
            "token_request:dpop_header_malformed",
        ),
        (
            "an HMAC-signed proof",
            vec![{
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.typ = Some("dpop+jwt".into());
                jsonwebtoken::encode(
                    &header,
                    &json!({ "jti": uuid(), "htm": "POST", "htu": token_endpoint, "iat": now() }),
                    &jsonwebtoken::EncodingKey::from_secret(b"a shared secret"),
                )?
            }],
            "dpop_alg_not_allowed",
        ),
        ("not a JWT", vec!["not-a-jwt".to_string()], "dpop_malformed"),
        (
            "typ JWT",
            vec![signed_proof(
                &key,
                "JWT",
                Some(key.public.clone()),
                &fresh(),
            )?],
            "dpop_wrong_typ",
        ),
        (
            "no jwk",
            vec![signed_proof(&key, "dpop+jwt", None, &fresh())?],
            "dpop_bad_key",
        ),
        (
            "a jwk with a private member (d)",
            vec![signed_proof(&key, "dpop+jwt", Some(private_jwk), &fresh())?],
            "dpop_private_key",
        ),
        (
            "signed by another key than its jwk",
            vec![signed_proof(
                &other,
                "dpop+jwt",
                Some(key.public.clone()),
                &fresh(),
            )?],
            "dpop_bad_signature",
        ),
        (
            "no jti",
            vec![key.proof_with(json!({ "htm": "POST", "htu": token_endpoint, "iat": now() }))?],
            "dpop_missing_claim",
        ),
    ];
    for (label, proofs, reason) in cases {
        let (status, body) = exchange(proofs).await?;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{label}: {body}");
        assert!(body.get("access_token").is_none(), "{label}");
        let (event, reason) = reason.split_once(':').unwrap_or(("token_exchange", reason));
        assert_eq!(last_reason(&env.server, event).await?, reason, "{label}");
    }
    // DPOP-01: `htu` is compared without query and fragment, after normalisation (RFC 9449
    // §4.3 item 9).
    let normalised = format!("{}?x=1#f", token_endpoint.replacen("http://", "HTTP://", 1));
    let (status, body) = exchange(vec![key.proof(&normalised)?]).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn access_tokens_from_an_exchange_are_bound_and_the_metadata_lists_the_proof_algorithms()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    let metadata: Value = env.metadata().await?;
    // META-14: asymmetric algorithms only.
    let algs = metadata["dpop_signing_alg_values_supported"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        algs.contains(&json!("ES256")) && algs.contains(&json!("RS256")),
        "{metadata}"
    );
    assert!(
        algs.iter().all(|alg| alg
            .as_str()
            .is_some_and(|a| !a.starts_with("HS") && a != "none")),
        "{algs:?}"
    );

    let key = DpopKey::generate()?;
    let id_token = env.id_token().await?;
    let (status, body) = exchange_with(
        &env,
        ACCESS_TOKEN,
        LOCAL_API,
        id_token.as_str(),
        &[&key.proof(&format!("{}/token", env.url))?],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let verified = env
        .verify_issued(
            body["access_token"].as_str().unwrap_or_default(),
            LOCAL_API,
            "at+jwt",
        )
        .await?;
    assert_eq!(verified["payload"]["cnf"]["jkt"], key.thumbprint());
    Ok(())
}

mod code_flow_binding {
    use super::code_flow::*;
    use super::*;

    const PUBLIC: &str = "desktop-app";
    const CONFIDENTIAL: &str = "web-app";

    async fn start() -> anyhow::Result<Env> {
        start_with_app_clients(PUBLIC, CONFIDENTIAL).await
    }

    #[tokio::test]
    async fn a_public_clients_refresh_token_is_bound_to_its_dpop_key_and_cannot_be_spent_without_it()
    -> anyhow::Result<()> {
        let env = start().await?;
        let key = DpopKey::generate()?;
        let token_endpoint = format!("{}/token", env.url);
        let code = code_for(&env, PUBLIC).await?;
        let (status, body) = token_request(
            &env.url,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", PUBLIC),
            ],
            None,
            &[&key.proof(&token_endpoint)?],
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP", "{body}");
        let verified = env
            .verify_issued(
                body["access_token"].as_str().unwrap_or_default(),
                RESOURCE,
                "at+jwt",
            )
            .await?;
        assert_eq!(verified["payload"]["cnf"]["jkt"], key.thumbprint());
        let refresh_token = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let refresh = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", PUBLIC),
        ];

        // RFC 9449 §5: a bound refresh token needs a proof of its key.
        let (status, body) = token_request(&env.url, &refresh, None, &[]).await?;
        assert_refused(
            status,
            &body,
            "invalid_grant",
            &env.server,
            "refresh_token",
            "dpop_proof_required",
        )
        .await?;
        let thief = DpopKey::generate()?;
        let (status, body) =
            token_request(&env.url, &refresh, None, &[&thief.proof(&token_endpoint)?]).await?;
        assert_refused(
            status,
            &body,
            "invalid_grant",
            &env.server,
            "refresh_token",
            "dpop_key_mismatch",
        )
        .await?;

        // Neither refusal spent it: the key's holder refreshes, and the new refresh token is
        // bound to the same key.
        let (status, body) =
            token_request(&env.url, &refresh, None, &[&key.proof(&token_endpoint)?]).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP", "{body}");
        let rotated = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (status, body) = token_request(
            &env.url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rotated.as_str()),
                ("client_id", PUBLIC),
            ],
            None,
            &[],
        )
        .await?;
        assert_refused(
            status,
            &body,
            "invalid_grant",
            &env.server,
            "refresh_token",
            "dpop_proof_required",
        )
        .await?;
        Ok(())
    }

    /// RFC 9449 §10: an authorization request's `dpop_jkt` binds the code to that key. The code
    /// is redeemed only with a proof of it, so a code intercepted together with its PKCE verifier
    /// is still useless; a malformed `dpop_jkt` is refused at `/authorize`.
    #[tokio::test]
    async fn a_code_requested_with_dpop_jkt_is_redeemed_only_with_a_proof_of_that_key()
    -> anyhow::Result<()> {
        let env = start().await?;
        let key = DpopKey::generate()?;
        let token_endpoint = format!("{}/token", env.url);
        let jkt = [("dpop_jkt", key.thumbprint())];
        let bound_code = || code_with(&env, PUBLIC, &jkt);
        let redeem = |code: String, proof: Option<String>| {
            let url = env.url.clone();
            async move {
                let form = [
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_id", PUBLIC),
                ];
                let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
                token_request(&url, &form, None, &proofs).await
            }
        };

        let (status, body) = redeem(bound_code().await?, None).await?;
        assert_refused(
            status,
            &body,
            "invalid_grant",
            &env.server,
            "authorization_code",
            "dpop_proof_required",
        )
        .await?;
        let thief = DpopKey::generate()?;
        let (status, body) =
            redeem(bound_code().await?, Some(thief.proof(&token_endpoint)?)).await?;
        assert_refused(
            status,
            &body,
            "invalid_grant",
            &env.server,
            "authorization_code",
            "dpop_key_mismatch",
        )
        .await?;
        let (status, body) = redeem(bound_code().await?, Some(key.proof(&token_endpoint)?)).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP", "{body}");
        let (_, payload) =
            idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
        assert_eq!(payload["cnf"]["jkt"], key.thumbprint());

        // Not a thumbprint: refused at /authorize, back at the client's redirect URI.
        let mut params = authorize_params(PUBLIC, REDIRECT);
        params.push(("dpop_jkt", "not-a-thumbprint".into()));
        let response = authorize(&env, &browser()?, &params).await?;
        let redirect = location(&response)?;
        assert_eq!(
            query(&redirect, "error").as_deref(),
            Some("invalid_request"),
            "{redirect}"
        );
        assert_eq!(
            last_reason(&env.server, "authorize").await?,
            "dpop_jkt_malformed"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_confidential_clients_refresh_token_stays_bound_to_its_credentials_only()
    -> anyhow::Result<()> {
        let env = start().await?;
        let key = DpopKey::generate()?;
        let code = code_for(&env, CONFIDENTIAL).await?;
        let (status, body) = token_request(
            &env.url,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
            Some((CONFIDENTIAL, SECRET)),
            &[&key.proof(&format!("{}/token", env.url))?],
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP", "{body}");
        // RFC 9449 §5: its refresh token is not bound to the key; a refresh without a proof
        // gets a bearer token.
        let (status, body) = token_request(
            &env.url,
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    body["refresh_token"].as_str().unwrap_or_default(),
                ),
            ],
            Some((CONFIDENTIAL, SECRET)),
            &[],
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer", "{body}");
        Ok(())
    }
}

#[tokio::test]
async fn bound_assertions_naming_a_binding_other_than_dpop_are_refused() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let mut claims = legs.valid_claims();
    claims["cnf"] = json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" });
    let assertion = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let key = DpopKey::generate()?;
    let (status, body) = redeem_with(
        &legs,
        &assertion,
        &[&key.proof(&format!("{}/token", legs.b_url))?],
    )
    .await?;
    assert_refused(
        status,
        &body,
        "invalid_grant",
        &legs.b,
        "jwt_bearer",
        "assertion_binding_unsupported",
    )
    .await?;
    Ok(())
}

/// Runs `tests/idp/dpop_client.mjs` (`openid-client`, npm) through both legs: an ID-JAG from A
/// with a DPoP proof, redeemed at B with a proof of the same key. Returns its report.
async fn openid_client_both_legs(legs: &Legs) -> anyhow::Result<Value> {
    let request = json!({
        "a": { "issuer": legs.a.url, "client_id": AGENT, "client_secret": SECRET },
        "b": { "issuer": legs.b_url, "client_id": AGENT_AT_RAS, "client_secret": SECRET },
        "id_token": legs.a.id_token().await?,
        "resource": MCP_RESOURCE,
        "scope": "read",
    });
    idp::run_script("dpop_client.mjs", &[], request.to_string().as_bytes()).await
}

/// A real DPoP client: `openid-client` (npm) discovers both frontdesks, makes its own key pair
/// and proofs, and runs both legs; `jose` computes the thumbprint on its side.
#[tokio::test]
async fn openid_client_runs_both_legs_with_dpop_and_gets_tokens_bound_to_its_key()
-> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let outcome = openid_client_both_legs(&legs).await?;
    let thumbprint = outcome["thumbprint"].as_str().unwrap_or_default();
    assert!(!thumbprint.is_empty(), "{outcome}");
    // openid-client lowercases token_type.
    assert_eq!(outcome["exchange_token_type"], "n_a", "{outcome}");
    assert_eq!(
        outcome["id_jag_cnf"],
        json!({ "jkt": thumbprint }),
        "{outcome}"
    );
    assert_eq!(outcome["access_token_type"], "dpop", "{outcome}");
    let verified = legs
        .verify_access_token(outcome["access_token"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(verified["payload"]["cnf"]["jkt"], thumbprint);
    Ok(())
}

/// DPOP-09: the expired individual draft's `jwt-dpop` grant type is not an alias of jwt-bearer;
/// DPoP is the header on the ordinary grant (decisions.md item 8).
#[tokio::test]
async fn the_jwt_dpop_grant_type_is_unsupported_dpop_09() -> anyhow::Result<()> {
    let legs = Legs::start().await?;
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let key = DpopKey::generate()?;
    let (status, body) = token_request(
        &legs.b_url,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-dpop"),
            (
                "assertion",
                body["access_token"].as_str().unwrap_or_default(),
            ),
        ],
        Some((AGENT_AT_RAS, SECRET)),
        &[&key.proof(&format!("{}/token", legs.b_url))?],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unsupported_grant_type", "{body}");
    Ok(())
}

/// PEERS §3.6: an exchange must not strip a binding. A subject token bound to a DPoP key (here
/// an ID token from the enterprise IdP with `cnf.jkt`) is exchanged only with a proof of that
/// key, and the ID-JAG stays bound to it.
#[tokio::test]
async fn a_bound_subject_token_is_exchanged_only_by_its_keys_holder_and_the_grant_stays_bound()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    let key = DpopKey::generate()?;
    let bound = env
        .idp
        .mint(json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "cnf": { "jkt": key.thumbprint() } }))
        .await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", RAS_ISSUER),
        ("subject_token", bound.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let token_endpoint = format!("{}/token", env.url);

    let (status, body) = token_request(&env.url, &form, Some((AGENT, SECRET)), &[]).await?;
    // A bad subject token is `invalid_request` by default (tokens.subject_token_error).
    assert_refused(
        status,
        &body,
        "invalid_request",
        &env.server,
        "token_exchange",
        "subject_token_dpop_proof_required",
    )
    .await?;
    let thief = DpopKey::generate()?;
    let (status, body) = token_request(
        &env.url,
        &form,
        Some((AGENT, SECRET)),
        &[&thief.proof(&token_endpoint)?],
    )
    .await?;
    assert_refused(
        status,
        &body,
        "invalid_request",
        &env.server,
        "token_exchange",
        "subject_token_dpop_key_mismatch",
    )
    .await?;

    let (status, body) = token_request(
        &env.url,
        &form,
        Some((AGENT, SECRET)),
        &[&key.proof(&token_endpoint)?],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let verified = env
        .verify_issued(
            body["access_token"].as_str().unwrap_or_default(),
            RAS_ISSUER,
            "oauth-id-jag+jwt",
        )
        .await?;
    assert_eq!(verified["payload"]["cnf"]["jkt"], key.thumbprint());
    Ok(())
}

/// RFC 9449 §5.2 `dpop_bound_access_tokens`, PEERS §3.6 "require binding": a client marked so
/// gets nothing without a proof, whatever the grant.
#[tokio::test]
async fn a_client_that_must_use_dpop_is_refused_without_a_proof() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        for client in &mut config.clients {
            if client.client_id == AGENT {
                client.dpop_bound_access_tokens = true;
            }
        }
    })
    .await?;
    let id_token = env.id_token().await?;
    let (status, body) = env.id_jag_exchange(&id_token, RAS_ISSUER).await?;
    assert_refused(
        status,
        &body,
        "invalid_request",
        &env.server,
        "token_exchange",
        "dpop_required_for_client",
    )
    .await?;
    let key = DpopKey::generate()?;
    let (status, body) = exchange_with(
        &env,
        ID_JAG,
        RAS_ISSUER,
        id_token.as_str(),
        &[&key.proof(&format!("{}/token", env.url))?],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let (_, payload) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(payload["cnf"]["jkt"], key.thumbprint());
    Ok(())
}

/// DPOP-03 across instances: two resource-side frontdesks behind one issuer, sharing one
/// PostgreSQL database, as behind a load balancer. A proof used at one is a replay at the other.
#[tokio::test]
async fn a_proof_used_at_one_instance_is_a_replay_at_another_sharing_postgresql()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("dpop_cross_instance").await else {
        return Ok(());
    };
    // ID-JAGs may be redeemed twice here, so that only the proof can make the second refusal.
    let side = legs::SharedResourceSide::start(database.url(), |config| {
        config.resources[0].single_use_assertions = false;
    })
    .await?;
    let (a, b1, b2, b_url) = (&side.a, &side.b1, &side.b2, side.b_url.clone());

    let id_token = a.id_token().await?;
    let (status, body) = exchange_with(a, ID_JAG, &b_url, &id_token, &[]).await?;
    assert_eq!(status, 200, "{body}");
    let form = [
        ("grant_type", JWT_BEARER),
        (
            "assertion",
            body["access_token"].as_str().unwrap_or_default(),
        ),
    ];
    let key = DpopKey::generate()?;
    // Both instances answer for the same issuer, so one proof names either's token endpoint.
    let proof = key.proof(&format!("{b_url}/token"))?;
    let (status, body) =
        token_request(&b1.url(), &form, Some((AGENT_AT_RAS, SECRET)), &[&proof]).await?;
    assert_eq!(status, 200, "first use at B1: {body}");
    assert_eq!(body["token_type"], "DPoP");
    let (status, body) =
        token_request(&b2.url(), &form, Some((AGENT_AT_RAS, SECRET)), &[&proof]).await?;
    assert_refused(
        status,
        &body,
        "invalid_dpop_proof",
        b2,
        "jwt_bearer",
        "dpop_replayed",
    )
    .await?;
    // A fresh proof of the same key works at B2.
    let (status, body) = token_request(
        &b2.url(),
        &form,
        Some((AGENT_AT_RAS, SECRET)),
        &[&key.proof(&format!("{b_url}/token"))?],
    )
    .await?;
    assert_eq!(status, 200, "a fresh proof at B2: {body}");
    side.shutdown().await
}

/// A nonce as an instance holding the key-encryption key `kek` makes them, with the default
/// window (`tokens.dpop_nonce_lifetime_secs`), for the time `at`.
fn nonce_under(kek: [u8; 32], at: i64) -> anyhow::Result<String> {
    let kek = Kek::from_bytes(&kek).map_err(anyhow::Error::msg)?;
    Ok(DpopNonces::new(kek.derive_hmac_key(NONCE_KEY_PURPOSE), 300).issue(at))
}

/// A proof for `POST url` echoing `nonce`.
fn proof_with_nonce(key: &DpopKey, url: &str, nonce: &str) -> anyhow::Result<String> {
    key.proof_with(
        json!({ "jti": uuid(), "htm": "POST", "htu": url, "iat": now(), "nonce": nonce }),
    )
}

/// How many of `server`'s audit events were refused with `reason`.
async fn count_reason(
    server: &frontdesk::app::RunningServer,
    reason: &str,
) -> anyhow::Result<usize> {
    let filter = AuditFilter {
        reason: Some(reason.into()),
        ..AuditFilter::default()
    };
    Ok(server.state.store.audit_events(&filter).await?.len())
}

/// A redemption at B whose proof carries no nonce is challenged (`use_dpop_nonce`, audited
/// `dpop_nonce_required`) with a nonce in `DPoP-Nonce`; the retry echoing it gets a DPoP-bound
/// token. Returns the retry's proof and the nonce its answer carried.
async fn challenged_then_served(
    legs: &Legs,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
    key: &DpopKey,
) -> anyhow::Result<(String, Option<String>)> {
    let endpoint = format!("{}/token", legs.b_url);
    let (status, body, nonce) =
        token_request_nonce(&legs.b_url, form, basic, &[&key.proof(&endpoint)?]).await?;
    assert_refused(
        status,
        &body,
        "use_dpop_nonce",
        &legs.b,
        "jwt_bearer",
        "dpop_nonce_required",
    )
    .await?;
    let nonce = nonce.ok_or_else(|| anyhow::anyhow!("no DPoP-Nonce header on the challenge"))?;
    let proof = proof_with_nonce(key, &endpoint, &nonce)?;
    let (status, body, next) = token_request_nonce(&legs.b_url, form, basic, &[&proof]).await?;
    assert_eq!(status, 200, "the retry with the nonce: {body}");
    assert_eq!(body["token_type"], "DPoP");
    Ok((proof, next))
}

/// DPOP-02 (RFC 9449 §8): with `tokens.require_dpop_nonce`, a proof must echo a current nonce of
/// the server's. A proof without one, or with a forged or expired one, is answered
/// `use_dpop_nonce` with a fresh nonce in `DPoP-Nonce`; the challenge runs before the grant, so
/// it spends neither the proof's `jti` nor the single-use ID-JAG. Requests without a proof are
/// not challenged.
#[tokio::test]
async fn with_nonces_required_a_proof_must_echo_a_current_server_nonce_dpop_02()
-> anyhow::Result<()> {
    let legs = Legs::start_with(|config| config.tokens.require_dpop_nonce = true).await?;
    let key = DpopKey::generate()?;
    let endpoint = format!("{}/token", legs.b_url);
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let id_jag = access_token(&body);
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let basic = Some((AGENT_AT_RAS, SECRET));

    // No nonce: challenged, with the nonce to use; the retry echoes it: a bound token, and the
    // nonce for the next proof.
    let (proof, next) = challenged_then_served(&legs, &form, basic, &key).await?;
    assert!(
        next.is_some(),
        "a success answers with the current nonce too"
    );
    // A nonce does not make a proof reusable.
    let (status, body) = token_request(&legs.b_url, &form, basic, &[&proof]).await?;
    assert_refused(
        status,
        &body,
        "invalid_dpop_proof",
        &legs.b,
        "jwt_bearer",
        "dpop_replayed",
    )
    .await?;

    // Nonces are made under B's key-encryption key ([7; 32], see legs.rs): one from another
    // deployment's key is unknown, one of B's own from an hour ago has expired, and one of B's
    // own for now is good.
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let id_jag = access_token(&body);
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    for (kek, at, reason) in [
        ([8u8; 32], now(), "dpop_nonce_unknown"),
        ([7u8; 32], now() - 3600, "dpop_nonce_expired"),
    ] {
        let proof = proof_with_nonce(&key, &endpoint, &nonce_under(kek, at)?)?;
        let (status, body, fresh) =
            token_request_nonce(&legs.b_url, &form, basic, &[&proof]).await?;
        assert_refused(
            status,
            &body,
            "use_dpop_nonce",
            &legs.b,
            "jwt_bearer",
            reason,
        )
        .await?;
        assert!(
            fresh.is_some(),
            "{reason}: the challenge carries a fresh nonce"
        );
    }
    let proof = proof_with_nonce(&key, &endpoint, &nonce_under([7u8; 32], now())?)?;
    let (status, body) = token_request(&legs.b_url, &form, basic, &[&proof]).await?;
    assert_eq!(status, 200, "a nonce of B's key for now: {body}");

    // Without a proof there is nothing to challenge: a bearer token, and no nonce.
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let id_jag = access_token(&body);
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let (status, body, nonce) = token_request_nonce(&legs.b_url, &form, basic, &[]).await?;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("Bearer")),
        "{body}"
    );
    assert_eq!(nonce, None);
    // A, which does not require nonces, accepts proofs without one, and offers a nonce all the
    // same (some client may be required to use them; RFC 9449 §8.2).
    let (status, body, nonce) =
        id_jag_with_nonce(&legs, &[&key.proof(&format!("{}/token", legs.a.url))?]).await?;
    assert_eq!((status, nonce.is_some()), (200, true), "{body}");
    Ok(())
}

/// `[[clients]] require_dpop_nonce`: nonces required of one client only. Its proof without a
/// nonce is challenged and its retry with the nonce succeeds, while another client at the same
/// server is served with proofs that carry none.
#[tokio::test]
async fn nonces_can_be_required_of_one_client_only_dpop_02() -> anyhow::Result<()> {
    let legs = Legs::start_with(|config| {
        for client in &mut config.clients {
            client.require_dpop_nonce = client.client_id == AGENT_AT_RAS;
        }
    })
    .await?;
    let key = DpopKey::generate()?;
    let endpoint = format!("{}/token", legs.b_url);
    let (_, body) = id_jag_with(&legs, &[]).await?;
    let id_jag = access_token(&body);
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let basic = Some((AGENT_AT_RAS, SECRET));
    challenged_then_served(&legs, &form, basic, &key).await?;

    let mut claims = legs.valid_claims();
    claims["client_id"] = json!("other-client");
    let theirs = legs.forged_by_a(claims, "oauth-id-jag+jwt")?;
    let form = [("grant_type", JWT_BEARER), ("assertion", theirs.as_str())];
    let (status, body) = token_request(
        &legs.b_url,
        &form,
        Some(("other-client", SECRET)),
        &[&key.proof(&endpoint)?],
    )
    .await?;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "another client needs no nonce: {body}"
    );
    Ok(())
}

/// DPOP-02 with a real client: `openid-client` (npm) meets a `use_dpop_nonce` challenge at each
/// frontdesk, retries with the nonce it was given, and completes both legs. Each server
/// challenged it exactly once: after that the client kept echoing the nonce it had.
#[tokio::test]
async fn openid_client_answers_nonce_challenges_at_both_legs_dpop_02() -> anyhow::Result<()> {
    let legs = Legs::start_both(
        "",
        "",
        |config| config.tokens.require_dpop_nonce = true,
        |config| config.tokens.require_dpop_nonce = true,
    )
    .await?;
    let outcome = openid_client_both_legs(&legs).await?;
    let thumbprint = outcome["thumbprint"].as_str().unwrap_or_default();
    assert_eq!(
        outcome["id_jag_cnf"],
        json!({ "jkt": thumbprint }),
        "{outcome}"
    );
    assert_eq!(outcome["access_token_type"], "dpop", "{outcome}");
    assert_eq!(
        count_reason(&legs.a.server, "dpop_nonce_required").await?,
        1
    );
    assert_eq!(count_reason(&legs.b, "dpop_nonce_required").await?, 1);
    Ok(())
}

/// DPOP-02 across instances: a nonce is derived from the deployment's key-encryption key, so
/// one handed out by one instance is good at another sharing its database and KEK.
#[tokio::test]
async fn a_nonce_from_one_instance_is_accepted_by_another_of_the_same_deployment()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("dpop_nonce_cross_instance").await
    else {
        return Ok(());
    };
    let side = legs::SharedResourceSide::start(database.url(), |config| {
        config.tokens.require_dpop_nonce = true;
    })
    .await?;
    let (a, b1, b2, b_url) = (&side.a, &side.b1, &side.b2, side.b_url.clone());
    let endpoint = format!("{b_url}/token");
    let key = DpopKey::generate()?;
    let id_token = a.id_token().await?;
    let (status, body) = exchange_with(a, ID_JAG, &b_url, &id_token, &[]).await?;
    assert_eq!(status, 200, "{body}");
    let id_jag = access_token(&body);
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    let basic = Some((AGENT_AT_RAS, SECRET));
    let (status, body, nonce) =
        token_request_nonce(&b1.url(), &form, basic, &[&key.proof(&endpoint)?]).await?;
    assert_refused(
        status,
        &body,
        "use_dpop_nonce",
        b1,
        "jwt_bearer",
        "dpop_nonce_required",
    )
    .await?;
    let nonce = nonce.ok_or_else(|| anyhow::anyhow!("no DPoP-Nonce header from B1"))?;
    let proof = proof_with_nonce(&key, &endpoint, &nonce)?;
    let (status, body) = token_request(&b2.url(), &form, basic, &[&proof]).await?;
    assert_eq!(status, 200, "B1's nonce at B2: {body}");
    assert_eq!(body["token_type"], "DPoP");
    side.shutdown().await
}
