//! Token introspection (RFC 7662) and revocation (RFC 7009) for the access tokens frontdesk
//! issued. A token counts only if it carries our signature, `typ: at+jwt` and our issuer, and its
//! `jti` is on record, unrevoked and unexpired; everything else is simply inactive (INTRO-03/04).

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::client_auth::AuthenticatedClient;
use super::exchange::TYP_ACCESS_TOKEN;
use super::request::FormParams;
use super::service::{RequestContext, TokenService};
use super::{ErrorCode, OAuthError};
use crate::jose::{AudienceRule, KeySet, TypRule, VerifiedClaims, VerifyRules, inspect, verify};
use crate::store::{AuditDetail, AuditEvent, CodeStore, Decision, TokenStore};

/// Algorithms frontdesk signs with.
const OUR_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// What a token turned out to be.
enum Ours {
    /// One of our access tokens, signature and claims valid.
    AccessToken(Box<VerifiedClaims>),
    /// Signed by us but another kind (an ID-JAG, a chaining grant).
    OtherKind,
    /// Not ours, malformed, or expired.
    Unknown,
}

fn classify(service: &TokenService, token: &str, now: i64) -> Ours {
    classify_token(
        token,
        &service.config.issuer,
        &service.keys.jwks_json(),
        service.config.tokens.max_token_bytes,
        service.config.tokens.clock_skew_secs,
        now,
    )
}

/// What `token` is to the issuer `issuer` whose published keys are `jwks_json`. Expiry is exact
/// (an expired token is never active), but `iat` gets the configured clock skew: several
/// instances behind one load balancer do not share a clock, and a token issued a second ago by
/// an instance whose clock runs ahead must not read as inactive at its neighbour.
fn classify_token(
    token: &str,
    issuer: &str,
    jwks_json: &[u8],
    max_token_bytes: usize,
    clock_skew_secs: u64,
    now: i64,
) -> Ours {
    let Ok(unverified) = inspect(token, max_token_bytes) else {
        return Ours::Unknown;
    };
    if unverified.unverified_iss() != Some(issuer) {
        return Ours::Unknown;
    }
    let Ok(set) = serde_json::from_slice::<KeySet>(jwks_json) else {
        return Ours::Unknown;
    };
    let Some(key) = set.select(&unverified) else {
        return Ours::Unknown;
    };
    // Any typ here: the kind is decided below, after the signature proved the token is ours.
    let mut rules = VerifyRules::new(
        OUR_ALGORITHMS.to_vec(),
        TypRule::AnyExcept(vec![]),
        issuer.to_string(),
        AudienceRule::Present,
    );
    rules.leeway_secs = clock_skew_secs;
    rules.require_jti = true;
    match verify(&unverified, token, key, &rules, now) {
        // The leeway is for `iat` only: expiry stays exact.
        Ok(claims) if claims.exp() <= now => Ours::Unknown,
        Ok(claims)
            if claims
                .typ()
                .is_some_and(|typ| typ.eq_ignore_ascii_case(TYP_ACCESS_TOKEN)) =>
        {
            Ours::AccessToken(Box::new(claims))
        }
        Ok(_) => Ours::OtherKind,
        Err(_) => Ours::Unknown,
    }
}

/// A refused introspection or revocation request goes into the audit log (`audit`, with what
/// was learnt of the caller and the token before the refusal), as a refused token request does:
/// failed client authentications and attempts on other clients' tokens (REVOKE-03) are what an
/// operator looks for. Served requests are not audited here; revocations record their change.
async fn audit_refusal<T>(
    service: &TokenService,
    mut audit: AuditEvent,
    result: Result<T, OAuthError>,
) -> Result<T, OAuthError> {
    let Err(error) = &result else {
        return result;
    };
    audit.error_code = Some(error.code.as_str().to_string());
    audit.reason = Some(error.reason.to_string());
    service.audit.record(audit).await.map_err(|error| {
        tracing::error!(%error, "writing the audit event failed");
        OAuthError::server_error()
    })?;
    result
}

/// The event of a refused request to an endpoint (`token_introspection`, `token_revocation`).
fn refusal_event(event: &str, context: &RequestContext) -> AuditEvent {
    let mut audit = AuditEvent::new(context.now, event, Decision::Denied);
    audit.request_id = context.request_id.clone();
    audit
}

/// `POST /introspect`: the caller must authenticate as a registered client (INTRO-01).
pub async fn introspect(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
) -> Result<Value, OAuthError> {
    let mut audit = refusal_event("token_introspection", context);
    let result = introspect_token(service, form, context, &mut audit).await;
    audit_refusal(service, audit, result).await
}

async fn introspect_token(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
    refusal: &mut AuditEvent,
) -> Result<Value, OAuthError> {
    let caller = service
        .authenticate_endpoint_caller(form, context, refusal)
        .await?;
    // Introspection reveals token contents: it is for resource servers that can authenticate,
    // not for public clients (RFC 7662 §4). Public clients may still revoke (RFC 7009 §2.1).
    if caller.client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "public_client",
            "Introspection needs a confidential client",
        ));
    }
    let token = form.required("token")?;
    let Ours::AccessToken(claims) = classify(service, token, context.now) else {
        return Ok(json!({ "active": false }));
    };
    let record = service
        .store
        .issued_token(claims.jti().unwrap_or_default())
        .await
        .map_err(|error| {
            tracing::error!(%error, "issued token lookup failed");
            OAuthError::server_error()
        })?;
    let Some(record) =
        record.filter(|record| record.revoked_at.is_none() && record.expires_at > context.now)
    else {
        return Ok(json!({ "active": false }));
    };
    if !may_introspect(
        &caller.client.config,
        &record.client_id,
        claims.claim("aud"),
    ) {
        // RFC 7662 §2.2: a token the caller may not introspect is simply inactive to it; the
        // audit log says why, for the operator who wonders.
        let mut audit = AuditEvent::new(context.now, "token_introspection", Decision::Denied);
        audit.request_id = context.request_id.clone();
        audit.reason = Some("introspection_not_permitted".into());
        audit.client_id = Some(caller.client.config.client_id.clone());
        audit.issued_jti = Some(record.jti);
        audit.audience = audience_text(claims.claim("aud"));
        service.audit.record(audit).await.map_err(|error| {
            tracing::error!(%error, "writing the audit event failed");
            OAuthError::server_error()
        })?;
        return Ok(json!({ "active": false }));
    }
    let mut body = json!({
        "active": true,
        "iss": claims.iss(),
        "sub": claims.sub(),
        "aud": claims.claim("aud"),
        "client_id": record.client_id,
        "exp": claims.exp(),
        "iat": claims.iat(),
        "jti": record.jti,
        // RFC 9449 §6.2: a token bound to a DPoP key is a DPoP token; its `cnf` follows.
        "token_type": if claims.claim("cnf").is_some() { super::dpop::TOKEN_TYPE_DPOP } else { "Bearer" },
    });
    // RFC 9396 §9.2: what a token grants through `authorization_details` is part of what it
    // grants; a resource server that introspects must see it, or a token limited to one
    // payment or one account reads as a token of its whole scope.
    for member in [
        "scope",
        "authorization_details",
        "act",
        "auth_time",
        "acr",
        "cnf",
    ] {
        if let Some(value) = claims.claim(member) {
            body[member] = value.clone();
        }
    }
    Ok(body)
}

/// Whether `caller` may learn about an active access token issued to `token_client` for `aud`
/// (RFC 7662 §4: the server decides which protected resources may introspect which tokens). A
/// client always may for its own tokens; a resource server for tokens whose `aud` names one of
/// its `introspect_audiences`; `*` for all. Everything else stays private to it, so the secret
/// of one introspecting client does not read every user's tokens.
pub(crate) fn may_introspect(
    caller: &crate::config::ClientConfig,
    token_client: &str,
    aud: Option<&Value>,
) -> bool {
    if caller.client_id == token_client {
        return true;
    }
    let allowed = &caller.introspect_audiences;
    let listed = |aud: &str| allowed.iter().any(|entry| entry == "*" || entry == aud);
    match aud {
        Some(Value::String(aud)) => listed(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(listed),
        _ => allowed.iter().any(|entry| entry == "*"),
    }
}

/// A token's `aud` as the audit log's one audience column: the value, or the values joined
/// by spaces.
fn audience_text(aud: Option<&Value>) -> Option<String> {
    match aud? {
        Value::String(aud) => Some(aud.clone()),
        Value::Array(auds) => Some(
            auds.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// Revokes a refresh token of the authorization code flow, with its whole family (the access
/// tokens issued from it too, REVOKE-05). Unknown strings are fine (REVOKE-02); another client's
/// token is refused (REVOKE-03).
async fn revoke_refresh_token(
    service: &TokenService,
    client: &AuthenticatedClient,
    token: &str,
    context: &RequestContext,
    refusal: &mut AuditEvent,
) -> Result<(), OAuthError> {
    let hash = crate::authorize::codes::hash_token(token);
    let owner = service
        .store
        .refresh_token_owner(&hash)
        .await
        .map_err(|error| {
            tracing::error!(%error, "refresh token lookup failed");
            OAuthError::server_error()
        })?;
    let Some((family, owner_client)) = owner else {
        return Ok(());
    };
    if owner_client != client.client.config.client_id {
        refusal.detail = Some(AuditDetail::of(&json!({ "family": family })));
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "token_of_another_client",
            "The token was issued to another client",
        ));
    }
    service
        .store
        .revoke_family(&family, context.now)
        .await
        .map_err(|error| {
            tracing::error!(%error, "revocation failed");
            OAuthError::server_error()
        })?;
    let mut audit = AuditEvent::new(context.now, "refresh_token_revoked", Decision::Changed);
    audit.request_id = context.request_id.clone();
    audit.client_id = Some(owner_client);
    audit.detail = Some(AuditDetail::of(&json!({ "family": family })));
    service.audit.record(audit).await.map_err(|error| {
        tracing::error!(%error, "writing the audit event failed");
        OAuthError::server_error()
    })
}

/// `POST /revoke` (RFC 7009): 200 for unknown tokens (REVOKE-02); a token issued to another
/// client is refused (REVOKE-03); our non-access tokens are `unsupported_token_type` (REVOKE-04).
/// The revocation is committed before the answer.
pub async fn revoke(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
) -> Result<(), OAuthError> {
    let mut audit = refusal_event("token_revocation", context);
    let result = revoke_token(service, form, context, &mut audit).await;
    audit_refusal(service, audit, result).await
}

async fn revoke_token(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
    refusal: &mut AuditEvent,
) -> Result<(), OAuthError> {
    let client = service
        .authenticate_endpoint_caller(form, context, refusal)
        .await?;
    let token = form.required("token")?;
    let claims = match classify(service, token, context.now) {
        Ours::AccessToken(claims) => claims,
        Ours::OtherKind => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedTokenType,
                "unsupported_token_type",
                "Only access tokens issued by this server can be revoked",
            ));
        }
        Ours::Unknown => {
            return revoke_refresh_token(service, &client, token, context, refusal).await;
        }
    };
    let jti = claims.jti().unwrap_or_default().to_string();
    let record = service.store.issued_token(&jti).await.map_err(|error| {
        tracing::error!(%error, "issued token lookup failed");
        OAuthError::server_error()
    })?;
    let Some(record) = record else {
        return Ok(());
    };
    if record.client_id != client.client.config.client_id {
        refusal.issued_jti = Some(jti);
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "token_of_another_client",
            "The token was issued to another client",
        ));
    }
    service
        .store
        .revoke_token(&jti, context.now)
        .await
        .map_err(|error| {
            tracing::error!(%error, "revocation failed");
            OAuthError::server_error()
        })?;
    let mut audit = AuditEvent::new(context.now, "token_revoked", Decision::Changed);
    audit.request_id = context.request_id.clone();
    audit.client_id = Some(record.client_id);
    audit.subject = Some(record.subject);
    audit.issued_jti = Some(jti);
    service.audit.record(audit).await.map_err(|error| {
        tracing::error!(%error, "writing the audit event failed");
        OAuthError::server_error()
    })?;
    Ok(())
}

/// The audit event of revoking everything issued in `scope` — to a user
/// (`subject_tokens_revoked`), to a client (`client_tokens_revoked`) or for the subjects of one
/// issuer (`issuer_tokens_revoked`) — by `actor` (`frontdesk
/// subject revoke`, `frontdesk client revoke-tokens`, `POST /admin/api/v1/revocations`, the
/// admin page); the store adds the counts.
pub fn revocation_event(
    scope: crate::store::RevocationScope<'_>,
    actor: &str,
    now: i64,
) -> AuditEvent {
    use crate::store::RevocationScope;
    let name = match scope {
        RevocationScope::Subject(_) => "subject_tokens_revoked",
        RevocationScope::Client(_) => "client_tokens_revoked",
        RevocationScope::Issuer(_) => "issuer_tokens_revoked",
    };
    let mut event = AuditEvent::new(now, name, Decision::Changed);
    match scope {
        RevocationScope::Subject(subject) => event.subject = Some(subject.to_string()),
        RevocationScope::Client(client_id) => event.client_id = Some(client_id.to_string()),
        RevocationScope::Issuer(issuer) => event.subject_issuer = Some(issuer.to_string()),
    }
    event.detail = Some(AuditDetail::of(&serde_json::json!({ "actor": actor })));
    event
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn client(id: &str, introspect: &[&str]) -> crate::config::ClientConfig {
        let mut config: crate::config::ClientConfig = serde_json::from_value(json!({
            "client_id": id,
            "auth_method": "client_secret_basic",
        }))
        .unwrap();
        config.introspect_audiences = introspect.iter().map(|aud| aud.to_string()).collect();
        config
    }

    /// RFC 7662 §4: who may introspect whose token.
    #[test]
    fn a_client_introspects_its_own_tokens_and_those_of_its_listed_audiences() {
        let mcp = "https://mcp.example.com/mcp";
        let other = "https://other.example.com/mcp";
        let single = json!(mcp);
        let several = json!([other, mcp]);
        let foreign = json!([other]);
        // (label, the caller's introspect_audiences, the token's client, its aud, may see it)
        type Case<'a> = (&'a str, &'a [&'a str], &'a str, Option<&'a Value>, bool);
        let cases: &[Case] = &[
            (
                "own token, nothing listed",
                &[],
                "agent",
                Some(&foreign),
                true,
            ),
            (
                "another client's token, nothing listed",
                &[],
                "someone",
                Some(&single),
                false,
            ),
            ("listed audience", &[mcp], "someone", Some(&single), true),
            (
                "listed audience among several",
                &[mcp],
                "someone",
                Some(&several),
                true,
            ),
            (
                "unlisted audiences",
                &[mcp],
                "someone",
                Some(&foreign),
                false,
            ),
            ("no aud at all", &[mcp], "someone", None, false),
            (
                "a number is no audience",
                &[mcp],
                "someone",
                Some(&json!(7)),
                false,
            ),
            ("every token", &["*"], "someone", Some(&foreign), true),
            (
                "every token, even without aud",
                &["*"],
                "someone",
                None,
                true,
            ),
        ];
        for (label, listed, token_client, aud, expected) in cases {
            let caller = client("agent", listed);
            assert_eq!(
                may_introspect(&caller, token_client, *aud),
                *expected,
                "{label}"
            );
        }
    }

    /// Several instances do not share a clock: a token whose `iat` is a few seconds ahead of
    /// this instance's clock is still one of ours, while expiry stays exact and an `iat`
    /// beyond the skew is refused.
    #[test]
    fn introspection_allows_clock_skew_on_iat_but_not_on_exp() {
        use crate::jose::testutil::{ec_key, es256};
        let issuer = "https://sts.example.com";
        let key = ec_key();
        let jwks = json!({ "keys": [key.jwk_value()] }).to_string();
        let now = 1_800_000_000;
        let token = |iat: i64, exp: i64| {
            es256(
                key,
                &json!({ "alg": "ES256", "typ": "at+jwt", "kid": key.kid }),
                &json!({
                    "iss": issuer, "sub": "alice", "aud": "https://api.example.com",
                    "client_id": "agent", "jti": "j-1", "iat": iat, "exp": exp,
                }),
            )
        };
        let kind =
            |token: &str| match classify_token(token, issuer, jwks.as_bytes(), 16_384, 60, now) {
                Ours::AccessToken(_) => "access token",
                Ours::OtherKind => "other kind",
                Ours::Unknown => "unknown",
            };
        assert_eq!(kind(&token(now - 10, now + 300)), "access token");
        assert_eq!(
            kind(&token(now + 5, now + 300)),
            "access token",
            "iat 5 s ahead"
        );
        assert_eq!(
            kind(&token(now + 120, now + 300)),
            "unknown",
            "iat beyond the skew"
        );
        assert_eq!(kind(&token(now - 300, now)), "unknown", "expired, exactly");
        assert_eq!(
            kind(&token(now - 300, now - 1)),
            "unknown",
            "expired within the skew"
        );
        assert!(
            matches!(
                classify_token(
                    &token(now, now + 300),
                    "https://other.example",
                    jwks.as_bytes(),
                    16_384,
                    60,
                    now
                ),
                Ours::Unknown
            ),
            "another issuer's token"
        );
    }

    #[test]
    fn the_audit_column_names_every_audience() {
        assert_eq!(audience_text(Some(&json!("a"))).as_deref(), Some("a"));
        assert_eq!(
            audience_text(Some(&json!(["a", "b"]))).as_deref(),
            Some("a b")
        );
        assert_eq!(audience_text(None), None);
    }
}
