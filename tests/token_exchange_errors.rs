//! Leg 1, hostile inputs: every way a token-exchange request can be wrong, sent over real HTTP
//! to a frontdesk trusting a real IdP (oauth2-mock-server). Each denial is checked the same way
//! (`assert_denied`): status, exact `error`, an `error_description` in the RFC 6749 §5.2
//! charset, no token or secret (nor a fragment of one) echoed, no `access_token`, and an audit
//! record with decision `denied`, that error code and a reason (found by the request id we
//! send). Row IDs refer to /work/shared/specs/REQUIREMENTS.md (§3, §4, §5, §13, §14, §19, §20).

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use env::*;
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use frontdesk::store::{AuditFilter, AuditLog, AuditRecord, Decision};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    /// `Authorization: Basic base64(id:secret)` with the parts as given (reqwest's encoding).
    Basic(&'a str, &'a str),
    /// An exact `Authorization` header value.
    Header(&'a str),
}

const AGENT_AUTH: Auth<'static> = Auth::Basic(AGENT, SECRET);

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    /// The `x-request-id` we sent; the audit record carries it.
    request_id: String,
}

/// Sends any request to `/token{query}` with a fresh `x-request-id`. Every answer of the token
/// endpoint must carry `Cache-Control: no-store` (TOK-06, TOK-08) and a JSON body.
async fn send_raw(
    env: &Env,
    method: reqwest::Method,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
    auth: Auth<'_>,
) -> anyhow::Result<Reply> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut request = env
        .http
        .request(method, format!("{}/token{query}", env.url))
        .header("x-request-id", &request_id)
        .header("content-type", content_type)
        .body(body);
    request = match auth {
        Auth::None => request,
        Auth::Basic(id, secret) => request.basic_auth(id, Some(secret)),
        Auth::Header(value) => request.header("authorization", value),
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let cache = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    anyhow::ensure!(
        cache == "no-store",
        "token endpoint answers must carry Cache-Control: no-store, got {cache:?} (status {status})"
    );
    let text = response.text().await?;
    let body = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("non-JSON answer ({status}): {e}: {text:?}"))?;
    Ok(Reply {
        status,
        headers,
        body,
        request_id,
    })
}

/// POSTs a form to `/token`.
async fn send(env: &Env, form: &[(&str, String)], auth: Auth<'_>) -> anyhow::Result<Reply> {
    let body = serde_urlencoded::to_string(form)?.into_bytes();
    send_raw(
        env,
        reqwest::Method::POST,
        "",
        "application/x-www-form-urlencoded",
        body,
        auth,
    )
    .await
}

/// True when `haystack` contains `needle` or, for long needles, any 10-character piece of it.
fn leaks(haystack: &str, needle: &str) -> bool {
    if needle.chars().count() <= 10 {
        return !needle.is_empty() && haystack.contains(needle);
    }
    // Slide over the (short) haystack rather than the (possibly huge) needle.
    let hay: Vec<char> = haystack.chars().collect();
    hay.windows(10)
        .any(|w| needle.contains(&w.iter().collect::<String>()))
}

fn in_rfc6749_charset(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

/// The checks common to every denial, without the audit part.
fn check_error_body(
    label: &str,
    reply: &Reply,
    status: u16,
    error: &str,
    sensitive: &[&str],
) -> anyhow::Result<()> {
    let body = &reply.body;
    anyhow::ensure!(
        reply.status == status,
        "{label}: expected status {status}, got {} {body}",
        reply.status
    );
    anyhow::ensure!(
        body["error"] == error,
        "{label}: expected error {error:?}, got {body}"
    );
    let description = body["error_description"].as_str().unwrap_or("");
    anyhow::ensure!(
        !description.is_empty(),
        "{label}: error_description missing: {body}"
    );
    anyhow::ensure!(
        description.chars().all(in_rfc6749_charset),
        "{label}: error_description outside the RFC 6749 §5.2 charset: {description:?}"
    );
    anyhow::ensure!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{label}: a denial carries a token: {body}"
    );
    let text = body.to_string();
    for secret in sensitive {
        anyhow::ensure!(
            !leaks(&text, secret),
            "{label}: the error body echoes (part of) a token or secret: {text}"
        );
    }
    // TOK-15: the error description never talks about the token's content.
    let ct = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    anyhow::ensure!(
        ct.starts_with("application/json"),
        "{label}: content-type {ct:?}"
    );
    Ok(())
}

async fn audit_for(env: &Env, request_id: &str) -> anyhow::Result<Vec<AuditRecord>> {
    let filter = AuditFilter {
        limit: Some(1000),
        ..AuditFilter::default()
    };
    let events = env.server.state.store.audit_events(&filter).await?;
    Ok(events
        .into_iter()
        .filter(|record| record.event.request_id.as_deref() == Some(request_id))
        .collect())
}

/// Asserts a denial (see the module comment) and returns its audit record.
async fn assert_denied(
    env: &Env,
    label: &str,
    reply: &Reply,
    status: u16,
    error: &str,
    sensitive: &[&str],
) -> anyhow::Result<AuditRecord> {
    check_error_body(label, reply, status, error, sensitive)?;
    let mut records = audit_for(env, &reply.request_id).await?;
    anyhow::ensure!(
        records.len() == 1,
        "{label}: expected one audit record for the request, found {}",
        records.len()
    );
    let record = records.remove(0);
    anyhow::ensure!(
        record.event.decision == Decision::Denied,
        "{label}: audit decision {:?}",
        record.event.decision
    );
    anyhow::ensure!(
        record.event.error_code.as_deref() == Some(error),
        "{label}: audit error_code {:?}",
        record.event.error_code
    );
    anyhow::ensure!(
        record
            .event
            .reason
            .as_deref()
            .is_some_and(|r| !r.is_empty()),
        "{label}: audit record without a reason"
    );
    anyhow::ensure!(
        record.event.issued_jti.is_none(),
        "{label}: a denied audit record names an issued token"
    );
    let serialized = serde_json::to_string(&record)?;
    for secret in sensitive {
        anyhow::ensure!(
            !leaks(&serialized, secret),
            "{label}: the audit record contains (part of) a token or secret: {serialized}"
        );
    }
    Ok(record)
}

/// Like [`assert_denied`] and also checks the audit reason.
async fn assert_denied_because(
    env: &Env,
    label: &str,
    reply: &Reply,
    status: u16,
    error: &str,
    reason: &str,
    sensitive: &[&str],
) -> anyhow::Result<()> {
    let record = assert_denied(env, label, reply, status, error, sensitive).await?;
    anyhow::ensure!(
        record.event.reason.as_deref() == Some(reason),
        "{label}: expected audit reason {reason:?}, got {:?}",
        record.event.reason
    );
    Ok(())
}

/// A rejection that happens before the form reaches the token service (transport rules):
/// answered in OAuth format and audited like any other denial.
async fn assert_rejected_at_transport(
    env: &Env,
    label: &str,
    reply: &Reply,
    status: u16,
    error: &str,
    sensitive: &[&str],
) -> anyhow::Result<()> {
    check_error_body(label, reply, status, error, sensitive)?;
    let records = audit_for(env, &reply.request_id).await?;
    anyhow::ensure!(
        records.len() == 1
            && records[0].event.decision.as_str() == "denied"
            && records[0].event.error_code.as_deref() == Some(error),
        "{label}: expected one denied audit record with {error}, found {records:?}"
    );
    Ok(())
}

async fn assert_success(env: &Env, label: &str, reply: &Reply) -> anyhow::Result<()> {
    if reply.status != 200 {
        let reasons: Vec<Option<String>> = audit_for(env, &reply.request_id)
            .await?
            .into_iter()
            .map(|record| record.event.reason)
            .collect();
        anyhow::bail!(
            "{label}: expected 200, got {} {} (audit reasons {reasons:?})",
            reply.status,
            reply.body
        );
    }
    anyhow::ensure!(
        reply.body["access_token"].as_str().is_some(),
        "{label}: no access_token: {}",
        reply.body
    );
    Ok(())
}

type Form = Vec<(&'static str, String)>;

/// A valid ID-JAG request for `saas` with `subject_token`.
fn idjag_form(subject_token: &str) -> Form {
    vec![
        ("grant_type", TOKEN_EXCHANGE.into()),
        ("requested_token_type", ID_JAG.into()),
        ("audience", RAS_ISSUER.into()),
        ("subject_token", subject_token.into()),
        ("subject_token_type", ID_TOKEN.into()),
    ]
}

fn without(mut form: Form, name: &str) -> Form {
    form.retain(|(key, _)| *key != name);
    form
}

fn with(mut form: Form, name: &'static str, value: &str) -> Form {
    form.push((name, value.to_string()));
    form
}

fn replaced(form: Form, name: &'static str, value: &str) -> Form {
    with(without(form, name), name, value)
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims of an otherwise valid ID token for `agent`.
fn good_claims() -> Value {
    json!({ "aud": AGENT_AT_IDP, "sub": "user-1" })
}

/// Merges `overrides` into [`good_claims`].
fn claims_with(overrides: Value) -> Value {
    let mut claims = good_claims();
    if let (Some(base), Some(extra)) = (claims.as_object_mut(), overrides.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    claims
}

/// Sends an ID-JAG request with `token` as the ID token and asserts the subject-token denial
/// (RFC 8693 §2.2.2: `invalid_request`, TX-06) with `reason`.
async fn assert_subject_refused(
    env: &Env,
    label: &str,
    token: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let reply = send(env, &idjag_form(token), AGENT_AUTH).await?;
    assert_denied_because(
        env,
        label,
        &reply,
        400,
        "invalid_request",
        reason,
        &[token, SECRET],
    )
    .await
}

// ---------------------------------------------------------------------------
// DER/PEM of an RSA public key, for the HMAC key-confusion attack (BCP-03)
// ---------------------------------------------------------------------------

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// SubjectPublicKeyInfo DER of an RSA key.
fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let rsa_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let algorithm = der(0x30, &[der(0x06, &rsa_oid), vec![0x05, 0x00]].concat());
    let public_key = der(0x30, &[der_uint(n), der_uint(e)].concat());
    let mut bit_string = vec![0u8];
    bit_string.extend(public_key);
    der(0x30, &[algorithm, der(0x03, &bit_string)].concat())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64u(tag.as_ref()))
}

// ---------------------------------------------------------------------------
// Subject token: signature, algorithm and header attacks (§14)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsigned_subject_tokens_are_refused_bcp_02() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let unsigned = env
        .idp
        .mint_with_header(good_claims(), json!({ "alg": "none" }))
        .await?;
    assert!(unsigned.ends_with('.'), "alg none token has no signature");
    // An empty signature fails the structural check first.
    assert_subject_refused(
        &env,
        "alg none, empty signature",
        &unsigned,
        "subject_token_malformed",
    )
    .await?;
    // With a junk signature appended, the alg itself is the reason.
    let junk = format!("{unsigned}{}", b64u(b"junk-signature"));
    assert_subject_refused(&env, "alg none, junk signature", &junk, "subject_alg_none").await?;
    for alg in ["None", "NONE"] {
        let (header, payload) = {
            let mut parts = unsigned.split('.');
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
        };
        let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
        h["alg"] = json!(alg);
        let token = format!(
            "{}.{payload}.{}",
            b64u(h.to_string().as_bytes()),
            b64u(b"x")
        );
        assert_subject_refused(&env, &format!("alg {alg}"), &token, "subject_alg_none").await?;
    }
    Ok(())
}

/// Rows: BCP-01.
#[tokio::test]
async fn hs256_signed_with_the_idp_rsa_public_key_is_refused_bcp_03() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let jwks: Value = env.http.get(&env.idp.jwks_uri).send().await?.json().await?;
    let rsa_kid = env.idp.initial_kids["RS256"]
        .as_str()
        .expect("RS256 kid")
        .to_string();
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == rsa_kid.as_str()))
        .expect("the RS256 key is published")
        .clone();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().expect("n"))?;
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().expect("e"))?;
    let spki = rsa_spki_der(&n, &e);
    let pem_text = pem("PUBLIC KEY", &spki);
    let claims = json!({ "iss": env.idp.issuer, "aud": AGENT_AT_IDP, "sub": "user-1",
                         "iat": now(), "exp": now() + 300 });
    let materials: Vec<(&str, Vec<u8>)> = vec![
        ("PEM", pem_text.clone().into_bytes()),
        (
            "PEM without final newline",
            pem_text.trim_end().as_bytes().to_vec(),
        ),
        ("SPKI DER", spki),
        ("JWK JSON", jwk.to_string().into_bytes()),
        ("modulus", n),
    ];
    for (what, secret) in &materials {
        for header in [
            json!({ "alg": "HS256", "typ": "JWT", "kid": rsa_kid }),
            json!({ "alg": "HS256", "typ": "JWT" }),
        ] {
            let token = hs256(&header, &claims, secret);
            let label = format!("HS256 keyed with the {what}, header {header}");
            let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
            let record = assert_denied(
                &env,
                &label,
                &reply,
                400,
                "invalid_request",
                &[&token, SECRET],
            )
            .await?;
            let reason = record.event.reason.unwrap_or_default();
            assert!(
                reason == "subject_alg_not_allowed",
                "{label}: refused for the wrong reason {reason:?}"
            );
        }
    }
    // A disallowed algorithm is refused before any key lookup: an unknown kid on an HS256 token
    // does not make frontdesk refetch the IdP's JWKS (jwks_min_refetch_secs is 0 here).
    let before = env.idp.jwks_requests().await?;
    for i in 0..3 {
        let header = json!({ "alg": "HS256", "typ": "JWT", "kid": format!("attacker-{i}") });
        let token = hs256(&header, &claims, b"guess");
        let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
        assert_denied_because(
            &env,
            "HS256 with an unknown kid",
            &reply,
            400,
            "invalid_request",
            "subject_alg_not_allowed",
            &[&token, SECRET],
        )
        .await?;
    }
    assert_eq!(
        env.idp.jwks_requests().await?,
        before,
        "an HS256 token triggered a JWKS fetch"
    );
    Ok(())
}

#[tokio::test]
async fn key_bearing_and_unknown_headers_are_refused_bcp_07_09() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let cases = [
        (
            "jku",
            json!({ "jku": "https://evil.example/jwks" }),
            "subject_forbidden_header",
        ),
        (
            "x5u",
            json!({ "x5u": "https://evil.example/cert.pem" }),
            "subject_forbidden_header",
        ),
        (
            "jwk",
            json!({ "jwk": { "kty": "oct", "k": "AAAA" } }),
            "subject_forbidden_header",
        ),
        (
            "unknown kid",
            json!({ "kid": "no-such-kid" }),
            "subject_unknown_kid",
        ),
        (
            "path traversal kid",
            json!({ "kid": "../../../../etc/passwd" }),
            "subject_unknown_kid",
        ),
        (
            "SQL kid",
            json!({ "kid": "x' OR '1'='1" }),
            "subject_unknown_kid",
        ),
    ];
    for (label, header, reason) in cases {
        let token = env.idp.mint_with_header(good_claims(), header).await?;
        assert_subject_refused(&env, label, &token, reason).await?;
    }
    // BCP-09: `crit` (the IdP's signer refuses to produce one, so the token is hand-made; the
    // header is refused before any signature check).
    let genuine = env.id_token().await?;
    let mut parts = genuine.split('.');
    let (_, payload, signature) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": env.idp.initial_kids["RS256"],
                         "crit": ["exp"], "exp": now() + 60 });
    let token = format!(
        "{}.{payload}.{signature}",
        b64u(header.to_string().as_bytes())
    );
    assert_subject_refused(&env, "crit", &token, "subject_crit_unsupported").await?;
    Ok(())
}

/// A token claiming a trusted issuer is verified with that issuer's keys only (IDJAG-ISSUE-14).
/// Rows: BCP-04.
#[tokio::test]
async fn a_token_signed_by_a_foreign_key_is_refused_bcp_05() -> anyhow::Result<()> {
    let env = Env::start().await?;
    // Signed with a key the IdP never published, claiming the IdP's ES256 kid and issuer.
    let foreign =
        PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = env.idp.initial_kids["ES256"].as_str().map(str::to_owned);
    let claims = json!({ "iss": env.idp.issuer, "aud": AGENT_AT_IDP, "sub": "user-1",
                         "iat": now(), "exp": now() + 300 });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &foreign.encoding_key().map_err(anyhow::Error::msg)?,
    )?;
    assert_subject_refused(
        &env,
        "foreign key, IdP kid",
        &token,
        "subject_bad_signature",
    )
    .await?;
    // A genuine token whose signature was tampered with.
    let genuine = env.id_token().await?;
    let (signing_input, signature) = genuine.rsplit_once('.').expect("three parts");
    let mut sig = URL_SAFE_NO_PAD.decode(signature)?;
    sig[0] ^= 0x01;
    let tampered = format!("{signing_input}.{}", b64u(&sig));
    assert_subject_refused(
        &env,
        "flipped signature bit",
        &tampered,
        "subject_bad_signature",
    )
    .await?;
    // A genuine signature over a modified payload (sub swapped).
    let mut parts = genuine.split('.');
    let (h, _, s) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = json!("admin");
    let forged = format!("{h}.{}.{s}", b64u(forged_claims.to_string().as_bytes()));
    assert_subject_refused(&env, "payload swapped", &forged, "subject_bad_signature").await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Subject token: claims (§5.1, §14)
// ---------------------------------------------------------------------------

/// An unknown issuer is refused, and issuers are compared exactly: no trailing-slash or case
/// normalisation (IDJAG-ISSUE-14, FED-02).
#[tokio::test]
async fn issuer_must_be_a_trusted_idp_exactly_idjag_issue_14() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let slash = format!("{}/", env.idp.issuer);
    let upper = env.idp.issuer.replace("http://", "HTTP://");
    for (label, iss) in [
        (
            "foreign issuer (IDJAG-ISSUE-14)",
            json!("https://evil.example"),
        ),
        ("trailing slash added (FED-02)", json!(slash)),
        ("scheme case changed", json!(upper)),
        ("no iss", Value::Null),
        ("iss not a string", json!(["x"])),
    ] {
        let token = env.idp.mint(claims_with(json!({ "iss": iss }))).await?;
        assert_subject_refused(&env, label, &token, "subject_untrusted_issuer").await?;
    }
    Ok(())
}

/// The ID token's `aud` must be the configured expected audience: the authenticated client's id
/// at that IdP (IDJAG-ISSUE-09, IDJAG-ISSUE-14).
/// Rows: BCP-06, CHAIN-A-08.
#[tokio::test]
async fn audience_and_azp_must_name_the_authenticated_client_idjag_issue_09() -> anyhow::Result<()>
{
    let env = Env::start().await?;
    let cases = [
        (
            "aud of another client",
            json!({ "aud": "0oa-someone-else" }),
            "subject_wrong_audience",
        ),
        (
            "aud = the client's frontdesk id, not its id at the IdP",
            json!({ "aud": AGENT }),
            "subject_wrong_audience",
        ),
        (
            "aud = the IdP's API audience",
            json!({ "aud": "frontdesk-api" }),
            "subject_wrong_audience",
        ),
        (
            "multi-aud without azp",
            json!({ "aud": [AGENT_AT_IDP, "0oa-someone-else"] }),
            "subject_wrong_azp",
        ),
        (
            "multi-aud with azp of another client",
            json!({ "aud": [AGENT_AT_IDP, "0oa-someone-else"], "azp": "0oa-someone-else" }),
            "subject_wrong_azp",
        ),
        (
            "single aud, azp of another client",
            json!({ "aud": AGENT_AT_IDP, "azp": "0oa-someone-else" }),
            "subject_wrong_azp",
        ),
    ];
    for (label, overrides, reason) in cases {
        let token = env.idp.mint(claims_with(overrides)).await?;
        assert_subject_refused(&env, label, &token, reason).await?;
    }
    // An ID token issued to post-client, presented by agent (IDJAG-ISSUE-09 test idea).
    let token = env.idp.mint(json!({ "aud": POST_CLIENT })).await?;
    assert_subject_refused(
        &env,
        "ID token of post-client",
        &token,
        "subject_wrong_audience",
    )
    .await?;
    // Control: multi-aud with the right azp is fine.
    let token = env
        .idp
        .mint(claims_with(
            json!({ "aud": [AGENT_AT_IDP, "0oa-someone-else"], "azp": AGENT_AT_IDP }),
        ))
        .await?;
    assert_success(
        &env,
        "multi-aud with azp",
        &send(&env, &idjag_form(&token), AGENT_AUTH).await?,
    )
    .await?;
    Ok(())
}

/// OIDC Core §2: an ID token's `sub` "MUST NOT exceed 255 ASCII characters". One byte more is
/// refused as a subject token (RFC 8693 §2.2.2 `invalid_request`); exactly 255 is exchanged and
/// carried into the ID-JAG unchanged.
#[tokio::test]
async fn id_token_subjects_longer_than_oidc_allows_are_refused() -> anyhow::Result<()> {
    let env = Env::start().await?;
    for length in [256, 4000] {
        let token = env
            .idp
            .mint(claims_with(json!({ "sub": "s".repeat(length) })))
            .await?;
        let label = format!("sub of {length} characters");
        assert_subject_refused(&env, &label, &token, "subject_sub_too_long").await?;
    }
    let longest = "s".repeat(255);
    let token = env.idp.mint(claims_with(json!({ "sub": longest }))).await?;
    let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
    assert_success(&env, "sub of 255 characters", &reply).await?;
    let issued = reply.body["access_token"].as_str().unwrap_or_default();
    let payload = issued.split('.').nth(1).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(claims["sub"], json!(longest));
    Ok(())
}

#[tokio::test]
async fn time_claims_are_enforced_with_bounded_skew_bcp_11() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let t = now();
    let cases = [
        (
            "expired beyond the 30 s skew",
            json!({ "iat": t - 400, "exp": t - 120 }),
            "subject_token_expired",
        ),
        (
            "nbf in the future",
            json!({ "nbf": t + 600, "exp": t + 900 }),
            "subject_not_yet_valid",
        ),
        (
            "iat in the future beyond skew",
            json!({ "iat": t + 600, "exp": t + 900 }),
            "subject_issued_in_future",
        ),
        (
            "issued longer ago than max age",
            json!({ "iat": t - 7200, "exp": t + 300 }),
            "subject_token_too_old",
        ),
        ("no exp", json!({ "exp": null }), "subject_missing_claim"),
    ];
    for (label, overrides, reason) in cases {
        let token = env.idp.mint(claims_with(overrides)).await?;
        assert_subject_refused(&env, label, &token, reason).await?;
    }
    // Control: a token that expired within the skew is still accepted.
    let token = env
        .idp
        .mint(claims_with(json!({ "iat": t - 300, "exp": t - 5 })))
        .await?;
    assert_success(
        &env,
        "expired within skew",
        &send(&env, &idjag_form(&token), AGENT_AUTH).await?,
    )
    .await?;
    Ok(())
}

/// JWTs typed as something other than an ID token (an ID-JAG, an access token, a DPoP proof) are
/// refused as `id_token` subjects (IDJAG-ISSUE-13).
/// Rows: BCP-08.
#[tokio::test]
async fn other_token_types_are_not_id_tokens_idjag_issue_13() -> anyhow::Result<()> {
    let env = Env::start().await?;
    for typ in [
        "oauth-id-jag+jwt",
        "at+jwt",
        "application/at+jwt",
        "dpop+jwt",
    ] {
        let token = env
            .idp
            .mint_with_header(good_claims(), json!({ "typ": typ }))
            .await?;
        assert_subject_refused(
            &env,
            &format!("typ {typ} as id_token"),
            &token,
            "subject_wrong_typ",
        )
        .await?;
    }
    // An ID-JAG frontdesk itself issued is not an ID token from a trusted IdP either.
    let reply = send(&env, &idjag_form(&env.id_token().await?), AGENT_AUTH).await?;
    assert_success(&env, "mint an ID-JAG", &reply).await?;
    let id_jag = reply.body["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_subject_refused(&env, "own ID-JAG", &id_jag, "subject_untrusted_issuer").await?;
    Ok(())
}

#[tokio::test]
async fn malformed_subject_tokens_are_refused_bcp_10() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let good = env.id_token().await?;
    let truncated = &good[..good.len() - 10];
    let (two_parts, _) = good.rsplit_once('.').expect("three parts");
    let header = good.split('.').next().unwrap_or("");
    let cases: Vec<(&str, String, &str)> = vec![
        ("not a JWT", "not-a-jwt".into(), "subject_token_malformed"),
        (
            "truncated signature",
            truncated.into(),
            "subject_bad_signature",
        ),
        ("two parts", two_parts.into(), "subject_token_malformed"),
        ("four parts", format!("{good}.x"), "subject_token_malformed"),
        (
            "garbage header",
            "!!!.eyJ9.c2ln".into(),
            "subject_token_malformed",
        ),
        (
            "header not JSON",
            format!("{}.{}.c2ln", b64u(b"nope"), b64u(b"{}")),
            "subject_token_malformed",
        ),
        (
            "payload not JSON",
            format!("{header}.{}.c2ln", b64u(b"[1,2")),
            "subject_token_malformed",
        ),
        (
            "duplicate claims",
            format!(
                "{header}.{}.c2ln",
                b64u(br#"{"sub":"a","sub":"b","aud":"x"}"#)
            ),
            "subject_token_malformed",
        ),
        (
            "JWE-shaped, five parts",
            format!(
                "{}.{}.{}.{}.{}",
                b64u(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#),
                b64u(b"encrypted-key-bytes"),
                b64u(b"iv-bytes-123"),
                b64u(b"ciphertext-bytes"),
                b64u(b"tag-bytes-16")
            ),
            "subject_token_encrypted",
        ),
        (
            "JSON serialization",
            json!({ "payload": "e30", "signatures": [] }).to_string(),
            "subject_token_malformed",
        ),
    ];
    for (label, token, reason) in cases {
        assert_subject_refused(&env, label, &token, reason).await?;
    }
    Ok(())
}

#[tokio::test]
async fn oversized_subject_tokens_are_refused_in_oauth_format() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let good = env.id_token().await?;
    let mut parts = good.split('.');
    let header = parts.next().unwrap_or("").to_string();
    // Larger than tokens.max_token_bytes (16 KiB) but within the body limit (64 KiB): audited.
    let big_claims = json!({ "iss": env.idp.issuer, "aud": AGENT_AT_IDP, "sub": "user-1",
                             "pad": "x".repeat(20 * 1024) });
    let big = format!(
        "{header}.{}.{}",
        b64u(big_claims.to_string().as_bytes()),
        b64u(b"sig")
    );
    assert_subject_refused(
        &env,
        "20 KiB subject token",
        &big,
        "subject_token_too_large",
    )
    .await?;

    // ~1 MB: the body limit answers, still in OAuth format (400 invalid_request).
    let huge_claims = json!({ "iss": env.idp.issuer, "aud": AGENT_AT_IDP, "sub": "user-1",
                              "pad": "y".repeat(1024 * 1024) });
    let huge = format!(
        "{header}.{}.{}",
        b64u(huge_claims.to_string().as_bytes()),
        b64u(b"sig")
    );
    let reply = send(&env, &idjag_form(&huge), AGENT_AUTH).await?;
    assert_rejected_at_transport(
        &env,
        "1 MB subject token",
        &reply,
        400,
        "invalid_request",
        &[&huge, SECRET],
    )
    .await?;
    Ok(())
}

/// The subject-token error code is configurable (IDJAG-ISSUE-30); with it, an issuer's own
/// algorithm allow-list (IDJAG-ISSUE-14): a genuine ES256 token from an IdP trusted for RS256
/// only is refused.
#[tokio::test]
async fn subject_token_errors_can_be_invalid_grant_by_configuration() -> anyhow::Result<()> {
    // REQUIREMENTS §20 decision 2, IDJAG-ISSUE-30.
    let env = Env::start_with(|config| {
        config.tokens.subject_token_error = "invalid_grant".into();
        config.identity_providers[0].algorithms = vec!["RS256".into()];
    })
    .await?;
    // IDJAG-ISSUE-14: the alg is not on this issuer's allow-list, though signed with its key.
    let es256 = env
        .idp
        .mint_with_header(good_claims(), json!({ "alg": "ES256" }))
        .await?;
    let reply = send(&env, &idjag_form(&es256), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "ES256 from an RS256-only issuer (IDJAG-ISSUE-14)",
        &reply,
        400,
        "invalid_grant",
        "subject_alg_not_allowed",
        &[&es256, SECRET],
    )
    .await?;
    let t = now();
    let expired = env
        .idp
        .mint(claims_with(json!({ "iat": t - 400, "exp": t - 120 })))
        .await?;
    let reply = send(&env, &idjag_form(&expired), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "expired, invalid_grant configured",
        &reply,
        400,
        "invalid_grant",
        "subject_token_expired",
        &[&expired, SECRET],
    )
    .await?;
    // Other error classes are unaffected: a target problem stays invalid_target.
    let good = env.id_token().await?;
    let reply = send(
        &env,
        &replaced(idjag_form(&good), "audience", "https://unknown.example"),
        AGENT_AUTH,
    )
    .await?;
    assert_denied(
        &env,
        "unknown audience",
        &reply,
        400,
        "invalid_target",
        &[&good, SECRET],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Request parameters (§4, §5.1)
// ---------------------------------------------------------------------------

/// Required and paired parameters (TX-01, TX-02), unknown token types (TX-09), and token types
/// the requested profile does not take (TX-14).
#[tokio::test]
async fn required_and_paired_parameters_tx_01_02_09() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.id_token().await?;
    let base = idjag_form(&token);
    let cases: Vec<(&str, Form, &str)> = vec![
        (
            "missing subject_token_type (TX-01)",
            without(base.clone(), "subject_token_type"),
            "missing_parameter",
        ),
        (
            "missing subject_token (TX-01)",
            without(base.clone(), "subject_token"),
            "missing_parameter",
        ),
        (
            "actor_token without actor_token_type (TX-02)",
            with(base.clone(), "actor_token", &token),
            "actor_token_type_mismatch",
        ),
        (
            "actor_token_type without actor_token (TX-02)",
            with(base.clone(), "actor_token_type", ID_TOKEN),
            "actor_token_type_mismatch",
        ),
        (
            "unknown subject_token_type (TX-09)",
            replaced(base.clone(), "subject_token_type", "urn:x:unknown"),
            "unknown_subject_token_type",
        ),
        (
            "the id-token spelling is no alias of id_token (INT-09, off)",
            replaced(
                base.clone(),
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id-token",
            ),
            "unknown_subject_token_type",
        ),
        (
            "saml1 subject_token_type",
            replaced(
                base.clone(),
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml1",
            ),
            "unsupported_subject_token_type",
        ),
        (
            "unknown requested_token_type (TX-09)",
            replaced(base.clone(), "requested_token_type", "urn:x:unknown"),
            "unsupported_requested_token_type",
        ),
        (
            "refresh_token requested for an ID token, not a SAML assertion (TX-14)",
            replaced(
                base.clone(),
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            "unsupported_requested_token_type",
        ),
        (
            "audience missing for an ID-JAG (IDJAG-ISSUE-02)",
            without(base.clone(), "audience"),
            "missing_audience",
        ),
    ];
    for (label, form, reason) in cases {
        let reply = send(&env, &form, AGENT_AUTH).await?;
        assert_denied_because(
            &env,
            label,
            &reply,
            400,
            "invalid_request",
            reason,
            &[&token, SECRET],
        )
        .await?;
    }
    Ok(())
}

/// Rows: INT-01.
#[tokio::test]
async fn targets_scopes_and_details_are_checked_tx_03_07_08() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.id_token().await?;
    let base = idjag_form(&token);
    let details = [
        "not json",
        r#"{"type":"x"}"#,
        "[]",
        r#"[{"kind":"x"}]"#,
        r#"[{"type":1}]"#,
    ];
    let mut cases: Vec<(String, Form, &str, &str)> = vec![
        (
            "scope admin only (TX-08)".into(),
            with(base.clone(), "scope", "admin"),
            "invalid_scope",
            "scope_not_allowed",
        ),
        (
            "scope with a control character".into(),
            with(base.clone(), "scope", "read\u{7}"),
            "invalid_scope",
            "malformed_scope",
        ),
        (
            "scope in another case (TOK-11)".into(),
            with(base.clone(), "scope", "READ"),
            "invalid_scope",
            "scope_not_allowed",
        ),
        (
            "resource of another RAS (IDJAG-ISSUE-17, EMA-07)".into(),
            with(base.clone(), "resource", OTHER_RESOURCE),
            "invalid_target",
            "resource_not_governed",
        ),
        (
            "resource with an added trailing slash (EMA-02)".into(),
            with(base.clone(), "resource", &format!("{MCP_RESOURCE}/")),
            "invalid_target",
            "resource_not_governed",
        ),
        (
            "resource with a fragment (TX-03, IDJAG-ISSUE-16)".into(),
            with(base.clone(), "resource", &format!("{MCP_RESOURCE}#frag")),
            "invalid_target",
            "invalid_resource",
        ),
        (
            "relative resource (IDJAG-ISSUE-16)".into(),
            with(base.clone(), "resource", "/mcp"),
            "invalid_target",
            "invalid_resource",
        ),
        (
            "unknown audience (TX-07)".into(),
            replaced(base.clone(), "audience", "https://unknown.example"),
            "invalid_target",
            "unknown_audience",
        ),
        (
            "audience with an added trailing slash (IDJAG-ISSUE-03, FED-02, EMA-01)".into(),
            replaced(base.clone(), "audience", &format!("{RAS_ISSUER}/")),
            "invalid_target",
            "unknown_audience",
        ),
        (
            "own issuer as audience (IDJAG-ISSUE-31)".into(),
            replaced(base.clone(), "audience", &env.url),
            "invalid_target",
            "unknown_audience",
        ),
        (
            "two audiences (IDJAG-ISSUE-05)".into(),
            with(base.clone(), "audience", OTHER_RAS_ISSUER),
            "invalid_target",
            "multiple_audiences",
        ),
        (
            "ID-JAG requested for a chaining audience".into(),
            replaced(base.clone(), "audience", DOMAIN_B_ISSUER),
            "invalid_target",
            "token_type_not_offered",
        ),
    ];
    for bad in details {
        cases.push((
            format!("authorization_details {bad} (IDJAG-ISSUE-19)"),
            with(base.clone(), "authorization_details", bad),
            "invalid_authorization_details",
            "invalid_authorization_details",
        ));
    }
    for (label, form, error, reason) in cases {
        let reply = send(&env, &form, AGENT_AUTH).await?;
        assert_denied_because(&env, &label, &reply, 400, error, reason, &[&token, SECRET]).await?;
    }
    Ok(())
}

/// Administrator policy decides which RAS a client may get ID-JAGs for: another audience is
/// `invalid_target` (IDJAG-ISSUE-23).
#[tokio::test]
async fn a_client_gets_only_its_audiences_idjag_issue_23() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.idp.mint(json!({ "aud": POST_CLIENT })).await?;
    let mut form = replaced(idjag_form(&token), "audience", OTHER_RAS_ISSUER);
    form.push(("client_id", POST_CLIENT.into()));
    form.push(("client_secret", SECRET.into()));
    let reply = send(&env, &form, Auth::None).await?;
    assert_denied_because(
        &env,
        "post-client asking for other",
        &reply,
        400,
        "invalid_target",
        "audience_not_allowed_for_client",
        &[&token, SECRET],
    )
    .await?;
    // Control: the same client gets its own audience.
    let form = replaced(form, "audience", RAS_ISSUER);
    assert_success(
        &env,
        "post-client asking for saas",
        &send(&env, &form, Auth::None).await?,
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Transport and form rules (§3)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn transport_rules_tok_01_02_13() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.id_token().await?;
    let form_text = serde_urlencoded::to_string(idjag_form(&token))?;

    // TOK-01: GET (with the request in the query string) does not issue a token.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let reply = send_raw(
            &env,
            method.clone(),
            &format!("?{form_text}"),
            "application/x-www-form-urlencoded",
            vec![],
            AGENT_AUTH,
        )
        .await?;
        assert_rejected_at_transport(
            &env,
            &format!("{method} /token"),
            &reply,
            405,
            "invalid_request",
            &[&token, SECRET],
        )
        .await?;
        let allow = reply.headers.get("allow").and_then(|v| v.to_str().ok());
        assert_eq!(allow, Some("POST"), "{method}: Allow header");
    }

    // TOK-02: a JSON body is refused.
    let json_body = serde_json::to_vec(&json!({
        "grant_type": TOKEN_EXCHANGE, "requested_token_type": ID_JAG, "audience": RAS_ISSUER,
        "subject_token": token, "subject_token_type": ID_TOKEN,
    }))?;
    let reply = send_raw(
        &env,
        reqwest::Method::POST,
        "",
        "application/json",
        json_body,
        AGENT_AUTH,
    )
    .await?;
    assert_rejected_at_transport(
        &env,
        "JSON body",
        &reply,
        400,
        "invalid_request",
        &[&token, SECRET],
    )
    .await?;

    // A charset parameter on the form content type is tolerated (TOK-02).
    let reply = send_raw(
        &env,
        reqwest::Method::POST,
        "",
        "application/x-www-form-urlencoded; charset=UTF-8",
        form_text.clone().into_bytes(),
        AGENT_AUTH,
    )
    .await?;
    assert_success(&env, "form with charset", &reply).await?;

    // TOK-13: parameters in the query string are refused, whether alone or next to a body.
    for (label, query, body) in [
        (
            "all parameters in the query",
            format!("?{form_text}"),
            String::new(),
        ),
        (
            "subject_token in the query, rest in the body",
            format!("?subject_token={token}"),
            serde_urlencoded::to_string(without(idjag_form(&token), "subject_token"))?,
        ),
        (
            "harmless query next to a valid body",
            "?foo=bar".into(),
            form_text.clone(),
        ),
    ] {
        let reply = send_raw(
            &env,
            reqwest::Method::POST,
            &query,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            AGENT_AUTH,
        )
        .await?;
        assert_rejected_at_transport(
            &env,
            label,
            &reply,
            400,
            "invalid_request",
            &[&token, SECRET],
        )
        .await?;
    }

    // A body that is not UTF-8 is a malformed request (the form is decoded in the handler,
    // before the token service, so this is a transport rejection too).
    let reply = send_raw(
        &env,
        reqwest::Method::POST,
        "",
        "application/x-www-form-urlencoded",
        b"grant_type=\xff\xfe".to_vec(),
        AGENT_AUTH,
    )
    .await?;
    assert_rejected_at_transport(
        &env,
        "non-UTF-8 body",
        &reply,
        400,
        "invalid_request",
        &[SECRET],
    )
    .await?;

    // A body over `server.max_body_bytes` (64 KiB by default) is refused in OAuth's format,
    // and audited, before anything of it is decoded.
    let mut oversized = form_text.clone().into_bytes();
    oversized.extend(b"&padding=");
    oversized.resize(64 * 1024 + 1, b'a');
    let reply = send_raw(
        &env,
        reqwest::Method::POST,
        "",
        "application/x-www-form-urlencoded",
        oversized,
        AGENT_AUTH,
    )
    .await?;
    assert_denied_because(
        &env,
        "body over the limit",
        &reply,
        400,
        "invalid_request",
        "request_too_large",
        &[&token, SECRET],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn form_decoding_rules_tok_03_04_05_10() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        if let Some(saas) = config.audiences.iter_mut().find(|a| a.id == "saas") {
            saas.resources.push(format!("{MCP_RESOURCE}-2"));
        }
    })
    .await?;
    let token = env.id_token().await?;
    let base = idjag_form(&token);

    // TOK-04: a repeated single-valued parameter is refused, known or not.
    for (label, form) in [
        (
            "repeated grant_type",
            with(base.clone(), "grant_type", TOKEN_EXCHANGE),
        ),
        (
            "repeated subject_token",
            with(base.clone(), "subject_token", &token),
        ),
        (
            "repeated scope",
            with(with(base.clone(), "scope", "read"), "scope", "write"),
        ),
        (
            "repeated unknown parameter",
            with(with(base.clone(), "foo", "1"), "foo", "2"),
        ),
    ] {
        let reply = send(&env, &form, AGENT_AUTH).await?;
        assert_denied_because(
            &env,
            label,
            &reply,
            400,
            "invalid_request",
            "repeated_parameter",
            &[&token, SECRET],
        )
        .await?;
    }

    // TOK-04: resource may repeat.
    let second = format!("{MCP_RESOURCE}-2");
    let form = with(
        with(base.clone(), "resource", MCP_RESOURCE),
        "resource",
        &second,
    );
    let reply = send(&env, &form, AGENT_AUTH).await?;
    assert_success(&env, "two resources", &reply).await?;
    let (_, claims) = idp::decode_unverified(reply.body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["resource"], json!([MCP_RESOURCE, second]));

    // TOK-05: unknown parameters are ignored.
    let reply = send(&env, &with(base.clone(), "foo", "bar"), AGENT_AUTH).await?;
    assert_success(&env, "unknown parameter", &reply).await?;

    // TOK-03: an empty value is the same as an absent parameter.
    let reply = send(&env, &with(base.clone(), "scope", ""), AGENT_AUTH).await?;
    assert_success(&env, "empty scope", &reply).await?;
    assert!(reply.body.get("scope").is_none(), "{}", reply.body);
    let (_, claims) = idp::decode_unverified(reply.body["access_token"].as_str().expect("token"))?;
    assert!(claims.get("scope").is_none());
    // An empty required parameter is missing, not present.
    let reply = send(
        &env,
        &replaced(base.clone(), "subject_token", ""),
        AGENT_AUTH,
    )
    .await?;
    assert_denied_because(
        &env,
        "empty subject_token",
        &reply,
        400,
        "invalid_request",
        "missing_parameter",
        &[&token, SECRET],
    )
    .await?;

    // TOK-10: unknown grant type; the grant type must be the exact URN, not a config alias.
    for grant in [
        "password",
        "client_credentials",
        "token-exchange",
        "urn:x:grant",
    ] {
        let reply = send(
            &env,
            &replaced(base.clone(), "grant_type", grant),
            AGENT_AUTH,
        )
        .await?;
        assert_denied_because(
            &env,
            &format!("grant_type {grant}"),
            &reply,
            400,
            "unsupported_grant_type",
            "unsupported_grant_type",
            &[&token, SECRET],
        )
        .await?;
    }
    let reply = send(&env, &without(base.clone(), "grant_type"), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "no grant_type",
        &reply,
        400,
        "invalid_request",
        "missing_parameter",
        &[&token, SECRET],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Client authentication (§13)
// ---------------------------------------------------------------------------

fn basic_header(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Asserts a 401's `WWW-Authenticate` names the Basic scheme (TOK-09; RFC 9110 §15.5.2 wants a
/// challenge on every 401).
fn assert_basic_challenge(reply: &Reply, label: &str) {
    let challenge = reply
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        challenge.starts_with("Basic realm="),
        "{label}: WWW-Authenticate {challenge:?}"
    );
}

fn form_encode(part: &str) -> String {
    form_urlencoded::byte_serialize(part.as_bytes()).collect()
}

#[tokio::test]
async fn client_secret_failures_cauth_03_08_tok_09() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.id_token().await?;
    let base = idjag_form(&token);

    // TX-13 / CAUTH-09: no credentials at all, or a client_id alone (IDJAG-ISSUE-22: an
    // unauthenticated client gets `invalid_client`).
    for (label, form) in [
        ("no client authentication", base.clone()),
        (
            "client_id without credentials",
            with(base.clone(), "client_id", AGENT),
        ),
    ] {
        let reply = send(&env, &form, Auth::None).await?;
        assert_denied_because(
            &env,
            label,
            &reply,
            401,
            "invalid_client",
            "no_client_authentication",
            &[&token, SECRET],
        )
        .await?;
        // RFC 9110 §15.5.2: every 401 carries a challenge, here the scheme the server offers.
        assert_basic_challenge(&reply, label);
    }

    // TOK-09: wrong secret or unknown client via Basic: 401 + WWW-Authenticate: Basic.
    let wrong = "wrong-secret-value-123";
    for (label, auth, reason) in [
        (
            "wrong secret",
            Auth::Basic(AGENT, wrong),
            "bad_client_credentials",
        ),
        (
            "unknown client",
            Auth::Basic("nobody", wrong),
            "bad_client_credentials",
        ),
        (
            "Basic without a colon",
            Auth::Header(&format!("Basic {}", STANDARD.encode("agent"))),
            "malformed_basic",
        ),
        (
            "Basic not base64",
            Auth::Header("Basic !!!"),
            "malformed_basic",
        ),
        (
            "Bearer scheme",
            Auth::Header("Bearer abc.def.ghi"),
            "unsupported_authorization_scheme",
        ),
        (
            "Authorization header not visible ASCII",
            Auth::Header("Basic \u{e9}t\u{e9}"),
            "malformed_authorization",
        ),
    ] {
        let reply = send(&env, &base, auth).await?;
        assert_denied_because(
            &env,
            label,
            &reply,
            401,
            "invalid_client",
            reason,
            &[&token, SECRET, wrong],
        )
        .await?;
        assert_basic_challenge(&reply, label);
    }

    // Wrong secret via client_secret_post: 401, with the Basic challenge every 401 carries.
    let mut form = with(base.clone(), "client_id", POST_CLIENT);
    form.push(("client_secret", wrong.into()));
    let reply = send(&env, &form, Auth::None).await?;
    assert_denied_because(
        &env,
        "wrong client_secret_post secret",
        &reply,
        401,
        "invalid_client",
        "bad_client_credentials",
        &[&token, SECRET, wrong],
    )
    .await?;
    assert_basic_challenge(&reply, "wrong client_secret_post secret");
    // INT-06: a client with a secret may present it in the body or in Basic, whichever method
    // it registered: both pass client authentication (the request then fails only on the
    // subject token, minted for another client id).
    let mut form = with(base.clone(), "client_id", AGENT);
    form.push(("client_secret", SECRET.into()));
    for (label, form, auth) in [
        ("Basic client posting its secret", form, Auth::None),
        (
            "post client using Basic",
            base.clone(),
            Auth::Basic(POST_CLIENT, SECRET),
        ),
    ] {
        let reply = send(&env, &form, auth).await?;
        assert_ne!(reply.status, 401, "{label}: {:?}", reply.body);
        assert_ne!(reply.body["error"], "invalid_client", "{label}");
    }

    // CAUTH-03: two methods at once.
    let reply = send(
        &env,
        &with(base.clone(), "client_secret", SECRET),
        AGENT_AUTH,
    )
    .await?;
    assert_denied_because(
        &env,
        "Basic plus client_secret",
        &reply,
        400,
        "invalid_request",
        "multiple_client_authentication",
        &[&token, SECRET],
    )
    .await?;
    let assertion = env.client_assertion("two-methods", &env.url)?;
    let mut form = with(
        base.clone(),
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    );
    form.push(("client_assertion", assertion.clone()));
    let reply = send(&env, &form, AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "Basic plus client_assertion",
        &reply,
        400,
        "invalid_request",
        "multiple_client_authentication",
        &[&token, SECRET, &assertion],
    )
    .await?;
    // CAUTH-03: a body client_id naming another client.
    let reply = send(
        &env,
        &with(base.clone(), "client_id", POST_CLIENT),
        AGENT_AUTH,
    )
    .await?;
    assert_denied_because(
        &env,
        "Basic plus another client_id",
        &reply,
        400,
        "invalid_request",
        "client_id_mismatch",
        &[&token, SECRET],
    )
    .await?;
    // CAUTH-03 / INT-06: a body client_id equal to the Basic id is not a second method.
    let reply = send(&env, &with(base.clone(), "client_id", AGENT), AGENT_AUTH).await?;
    assert_success(&env, "Basic plus the same client_id", &reply).await?;
    Ok(())
}

#[tokio::test]
async fn client_secret_post_and_basic_encodings_cauth_01_02_int_06() -> anyhow::Result<()> {
    // Client ids are limited to letters, digits and `-_.:` (trust::validate_client); the colon
    // is the character that matters for Basic.
    const SPECIAL_ID: &str = "urn:svc:special-client";
    const SPECIAL_SECRET: &str = "p:a%s s+w&rd=é/?";
    const RAW_ID: &str = "raw-client";
    let hash = frontdesk::secret::hash_secret(SPECIAL_SECRET).map_err(anyhow::Error::msg)?;
    let env = Env::start_with(|config| {
        for id in [SPECIAL_ID, RAW_ID] {
            let mut special = client(id, "client_secret_basic", &["saas"]);
            special.secret_hash = Some(hash.clone());
            config.clients.push(special);
        }
    })
    .await?;
    let token = env.id_token().await?;

    // CAUTH-02: client_secret_post for post-client.
    let post_token = env.idp.mint(json!({ "aud": POST_CLIENT })).await?;
    let mut form = idjag_form(&post_token);
    form.push(("client_id", POST_CLIENT.into()));
    form.push(("client_secret", SECRET.into()));
    assert_success(
        &env,
        "client_secret_post",
        &send(&env, &form, Auth::None).await?,
    )
    .await?;

    // CAUTH-01: Basic with form-urlencoded id and secret.
    let special_token = env.idp.mint(json!({ "aud": SPECIAL_ID })).await?;
    let encoded = basic_header(&form_encode(SPECIAL_ID), &form_encode(SPECIAL_SECRET));
    let reply = send(&env, &idjag_form(&special_token), Auth::Header(&encoded)).await?;
    assert_success(&env, "Basic, form-urlencoded id and secret", &reply).await?;
    let (_, claims) = idp::decode_unverified(reply.body["access_token"].as_str().expect("token"))?;
    assert_eq!(claims["client_id"], SPECIAL_ID);

    // INT-06: raw (un-encoded) secret, as the TS SDK sends it.
    let raw_token = env.idp.mint(json!({ "aud": RAW_ID })).await?;
    let raw = basic_header(RAW_ID, SPECIAL_SECRET);
    assert_success(
        &env,
        "Basic, raw secret",
        &send(&env, &idjag_form(&raw_token), Auth::Header(&raw)).await?,
    )
    .await?;
    // The raw form of an id with a ':' cannot work (the first ':' splits), but the encoded one
    // did above; a raw secret that differs in one character is still refused.
    let almost = basic_header(RAW_ID, "p:a%s s+w&rd=é/!");
    let reply = send(&env, &idjag_form(&raw_token), Auth::Header(&almost)).await?;
    assert_denied_because(
        &env,
        "raw secret off by one character",
        &reply,
        401,
        "invalid_client",
        "bad_client_credentials",
        &[&raw_token, SPECIAL_SECRET, SECRET],
    )
    .await?;
    // The token of another client is still refused with valid special credentials.
    let reply = send(&env, &idjag_form(&token), Auth::Header(&encoded)).await?;
    assert_denied_because(
        &env,
        "special client presenting agent's ID token",
        &reply,
        400,
        "invalid_request",
        "subject_wrong_audience",
        &[&token, SPECIAL_SECRET],
    )
    .await?;
    Ok(())
}

/// A client assertion for `jwt-client` with explicit claims, signed with `key` under `kid`.
fn assertion_with(key: &PrivateKey, kid: Option<String>, claims: &Value) -> anyhow::Result<String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid;
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &key.encoding_key().map_err(anyhow::Error::msg)?,
    )?)
}

/// Rows: BCP-01, BCP-02, BCP-06.
#[tokio::test]
async fn bad_client_assertions_are_refused_cauth_04() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let token = env.idp.mint(json!({ "aud": JWT_CLIENT })).await?;
    let kid = env
        .client_key
        .public_jwk()
        .map_err(anyhow::Error::msg)?
        .common
        .key_id;
    let other_key =
        PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
    let public_jwk =
        serde_json::to_string(&env.client_key.public_jwk().map_err(anyhow::Error::msg)?)?;
    let t = now();
    let claims = |jti: &str, overrides: Value| {
        let mut c = json!({ "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": env.url, "jti": jti,
                            "iat": t, "exp": t + 120 });
        if let (Some(base), Some(extra)) = (c.as_object_mut(), overrides.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong aud",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a1", json!({ "aud": "https://other-as.example" })),
            )?,
            "wrong_audience",
        ),
        (
            "expired",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a2", json!({ "iat": t - 600, "exp": t - 300 })),
            )?,
            "expired",
        ),
        (
            "sub differs from iss",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a3", json!({ "sub": AGENT })),
            )?,
            "assertion_subject_mismatch",
        ),
        (
            "signed by another key under the registered kid",
            assertion_with(&other_key, kid.clone(), &claims("a4", json!({})))?,
            "bad_signature",
        ),
        (
            "signed by another key under its own kid",
            assertion_with(
                &other_key,
                Some("attacker-kid".into()),
                &claims("a5", json!({})),
            )?,
            "unknown_kid",
        ),
        (
            "lifetime above the 5 minute cap",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a6", json!({ "exp": t + 3600 })),
            )?,
            "lifetime_too_long",
        ),
        (
            "no jti",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a7", json!({ "jti": null })),
            )?,
            "missing_claim",
        ),
        (
            "iss of another client",
            assertion_with(
                &env.client_key,
                kid.clone(),
                &claims("a8", json!({ "iss": AGENT, "sub": AGENT })),
            )?,
            "wrong_authentication_method",
        ),
        (
            "HS256 keyed with the client's public JWK",
            hs256(
                &json!({ "alg": "HS256", "typ": "JWT", "kid": kid }),
                &claims("a9", json!({})),
                public_jwk.as_bytes(),
            ),
            "alg_not_allowed",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64u(br#"{"alg":"none","typ":"JWT"}"#),
                b64u(claims("a10", json!({})).to_string().as_bytes())
            ),
            "malformed",
        ),
    ];
    for (label, assertion, reason) in cases {
        let mut form = idjag_form(&token);
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ));
        form.push(("client_assertion", assertion.clone()));
        let reply = send(&env, &form, Auth::None).await?;
        assert_denied_because(
            &env,
            label,
            &reply,
            401,
            "invalid_client",
            reason,
            &[&token, &assertion],
        )
        .await?;
    }
    // Control: a good assertion works (and its jti is then spent).
    let good = assertion_with(&env.client_key, kid, &claims("good", json!({})))?;
    let mut form = idjag_form(&token);
    form.push((
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
    ));
    form.push(("client_assertion", good));
    assert_success(
        &env,
        "good assertion",
        &send(&env, &form, Auth::None).await?,
    )
    .await?;
    Ok(())
}

/// Reads `Retry-After` of a `429`: whole seconds, at least 1 and within the minute a limit spans.
fn assert_retry_after(label: &str, reply: &Reply) {
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_default();
    assert!(
        (1..=60).contains(&retry_after),
        "{label}: Retry-After {retry_after}"
    );
}

/// `[[identity_providers]] subject_requests_per_minute` and `requests_per_minute` (PEERS §4
/// item 14): each user of an IdP gets their allowance whatever client presents their token, the
/// IdP gets its own, and only verified tokens count — a forged one spends nobody's.
#[tokio::test]
async fn an_identity_provider_and_each_of_its_users_have_request_limits() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        let idp = &mut config.identity_providers[0];
        idp.subject_requests_per_minute = Some(2);
        idp.requests_per_minute = Some(3);
    })
    .await?;
    let token_for = |sub: &'static str, aud: &'static str| {
        let idp = &env.idp;
        async move { idp.mint(json!({ "aud": aud, "sub": sub })).await }
    };
    // user-1 twice through `agent`, then a third time through another client: the user's limit
    // follows the user.
    for attempt in 0..2 {
        let token = token_for("user-1", AGENT_AT_IDP).await?;
        let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
        assert_success(&env, &format!("user-1, attempt {attempt}"), &reply).await?;
    }
    let token = token_for("user-1", POST_CLIENT).await?;
    let mut form = idjag_form(&token);
    form.push(("client_id", POST_CLIENT.into()));
    form.push(("client_secret", SECRET.into()));
    let reply = send(&env, &form, Auth::None).await?;
    assert_denied_because(
        &env,
        "user-1 over the per-user limit",
        &reply,
        429,
        "slow_down",
        "subject_rate_limited",
        &[&token, SECRET],
    )
    .await?;
    assert_retry_after("per-user limit", &reply);

    // Forged tokens in user-2's name (the signature altered) are refused and count for neither
    // user-2 nor the IdP.
    let genuine = token_for("user-2", AGENT_AT_IDP).await?;
    let forged = format!("{}AAAA", genuine.trim_end_matches(|c| c != '.'));
    for attempt in 0..3 {
        let reply = send(&env, &idjag_form(&forged), AGENT_AUTH).await?;
        assert_eq!(
            reply.status, 400,
            "forged attempt {attempt}: {}",
            reply.body
        );
    }
    // The IdP's third verified token (user-1's refused one was stopped by the narrower limit
    // first and spent none of the IdP's).
    let reply = send(&env, &idjag_form(&genuine), AGENT_AUTH).await?;
    assert_success(&env, "user-2, the IdP's third", &reply).await?;
    let token = token_for("user-3", AGENT_AT_IDP).await?;
    let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "the IdP over its limit",
        &reply,
        429,
        "slow_down",
        "identity_provider_rate_limited",
        &[&token, SECRET],
    )
    .await?;
    assert_retry_after("IdP limit", &reply);
    Ok(())
}

/// `server.invalid_subject_tokens_per_minute` (PEERS §4 item 14): a client that keeps presenting
/// subject tokens that look forged — a signature that does not verify, a foreign issuer, another
/// client's token — is slowed down once past the quota, with `Retry-After`, audited as
/// `invalid_subject_tokens`, even with a good token. Expired tokens (the wear of honest ones) do
/// not count, and other clients are not slowed.
#[tokio::test]
async fn a_client_sending_forged_subject_tokens_is_slowed_down_and_no_one_else_is()
-> anyhow::Result<()> {
    let env = Env::start_with(|config| config.server.invalid_subject_tokens_per_minute = 2).await?;
    let t = now();
    let post_form = |token: &str| {
        let mut form = idjag_form(token);
        form.push(("client_id", POST_CLIENT.into()));
        form.push(("client_secret", SECRET.into()));
        form
    };
    for attempt in 0..3 {
        let expired = env
            .idp
            .mint(json!({ "aud": POST_CLIENT, "sub": "user-1", "iat": t - 400, "exp": t - 120 }))
            .await?;
        let reply = send(&env, &post_form(&expired), Auth::None).await?;
        assert_eq!(reply.status, 400, "expired {attempt}: {}", reply.body);
    }
    let good_for_post = env
        .idp
        .mint(json!({ "aud": POST_CLIENT, "sub": "user-1" }))
        .await?;
    let reply = send(&env, &post_form(&good_for_post), Auth::None).await?;
    assert_success(&env, "expired tokens do not count", &reply).await?;

    let genuine = env.id_token().await?;
    let bad_signature = format!("{}AAAA", genuine.trim_end_matches(|c| c != '.'));
    let foreign_issuer = env
        .idp
        .mint(claims_with(json!({ "iss": "https://evil.example" })))
        .await?;
    // Issued to another client: its audience is POST_CLIENT, not `agent`'s id at the IdP.
    let someone_elses = good_for_post.clone();
    for (label, token, reason) in [
        ("bad signature", &bad_signature, "subject_bad_signature"),
        (
            "foreign issuer",
            &foreign_issuer,
            "subject_untrusted_issuer",
        ),
        ("another client's", &someone_elses, "subject_wrong_audience"),
    ] {
        // Each is refused for what it is; the third is the one past the quota.
        assert_subject_refused(&env, label, token, reason).await?;
    }
    let reply = send(&env, &idjag_form(&genuine), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "a good token from the throttled client",
        &reply,
        429,
        "slow_down",
        "invalid_subject_tokens",
        &[&genuine, SECRET],
    )
    .await?;
    assert_retry_after("forged-token throttle", &reply);
    let good_for_post = env
        .idp
        .mint(json!({ "aud": POST_CLIENT, "sub": "user-2" }))
        .await?;
    let reply = send(&env, &post_form(&good_for_post), Auth::None).await?;
    assert_success(&env, "another client", &reply).await?;
    Ok(())
}

/// `[[audiences]] requests_per_minute`: grants for one audience are capped whoever asks; a
/// forged subject token spends nothing of it, and other audiences are not slowed.
#[tokio::test]
async fn grants_for_an_audience_are_limited_and_other_audiences_are_not() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        for audience in &mut config.audiences {
            if audience.id == "saas" {
                audience.requests_per_minute = Some(1);
            }
        }
    })
    .await?;
    let genuine = env.id_token().await?;
    let forged = format!("{}AAAA", genuine.trim_end_matches(|c| c != '.'));
    let reply = send(&env, &idjag_form(&forged), AGENT_AUTH).await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = send(&env, &idjag_form(&genuine), AGENT_AUTH).await?;
    assert_success(&env, "the audience's one grant", &reply).await?;
    let token = env.id_token().await?;
    let reply = send(&env, &idjag_form(&token), AGENT_AUTH).await?;
    assert_denied_because(
        &env,
        "the audience over its limit",
        &reply,
        429,
        "slow_down",
        "audience_rate_limited",
        &[&token, SECRET],
    )
    .await?;
    assert_retry_after("audience limit", &reply);
    let other = replaced(idjag_form(&token), "audience", OTHER_RAS_ISSUER);
    let reply = send(&env, &other, AGENT_AUTH).await?;
    assert_success(&env, "another audience", &reply).await?;
    Ok(())
}

/// `[[clients]] requests_per_minute`: a client gets its burst, then 429 `slow_down` with
/// `Retry-After`, audited as `client_rate_limited`. Requests that fail to authenticate in its
/// name do not spend its allowance, and other clients are not slowed.
#[tokio::test]
async fn a_client_over_its_request_limit_is_slowed_down_and_no_one_else_is() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        for client in &mut config.clients {
            if client.client_id == POST_CLIENT {
                client.requests_per_minute = Some(2);
            }
        }
    })
    .await?;
    let token = env.id_token().await?;
    let with_secret = |secret: &str| {
        let mut form = idjag_form(&token);
        form.push(("client_id", POST_CLIENT.into()));
        form.push(("client_secret", secret.into()));
        form
    };
    for _ in 0..3 {
        let reply = send(&env, &with_secret("not-the-secret"), Auth::None).await?;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    for attempt in 0..2 {
        let reply = send(&env, &with_secret(SECRET), Auth::None).await?;
        assert_ne!(reply.status, 429, "attempt {attempt}: {}", reply.body);
    }
    let reply = send(&env, &with_secret(SECRET), Auth::None).await?;
    assert_denied_because(
        &env,
        "over the limit",
        &reply,
        429,
        "slow_down",
        "client_rate_limited",
        &[&token, SECRET],
    )
    .await?;
    assert_retry_after("client limit", &reply);
    let metrics = env.metrics().await?;
    assert!(
        metrics.contains(r#"frontdesk_requests_limited_total{reason="client_rate_limited"} 1"#),
        "{metrics}"
    );
    assert_success(
        &env,
        "another client",
        &send(&env, &idjag_form(&token), Auth::Basic(AGENT, SECRET)).await?,
    )
    .await?;
    Ok(())
}

/// A failed client authentication at `/token` is audited with the client id it claimed — in
/// `Authorization: Basic` as well as in the form — so an operator sees whose secret is being
/// guessed (CAUTH-08). With Basic the event used to name no client.
#[tokio::test]
async fn a_failed_authentication_is_audited_with_the_claimed_client_id_cauth_08()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", "x"),
        ("subject_token_type", ID_TOKEN),
    ];
    let (status, body) = env
        .post_token(&form, Some((AGENT, "wrong-secret-value-123")))
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = env
        .post_token(
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("client_id", POST_CLIENT),
                ("client_secret", "wrong-secret-value-123"),
            ],
            None,
        )
        .await?;
    assert_eq!(status, 401);
    let events = env.audit_log().await?;
    for claimed in [AGENT, POST_CLIENT] {
        assert!(
            events
                .iter()
                .any(
                    |record| record.event.error_code.as_deref() == Some("invalid_client")
                        && record.event.client_id.as_deref() == Some(claimed)
                ),
            "a denial naming {claimed}"
        );
    }
    Ok(())
}
