//! DPoP at the token endpoint (RFC 9449): the proof a request carries is checked once, before
//! any grant runs, and what it proves — possession of the key with thumbprint `jkt` — is handed
//! to the grant, which binds what it issues to that key (`cnf.jkt`). Which grant binds what, and
//! when a proof is required, is written next to each grant; the rules shared by all are here.

use serde_json::{Map, Value, json};

use super::service::TokenService;
use super::{ErrorCode, OAuthError};
use crate::jose::dpop::{DpopError, DpopProof, ProofRules, verify_proof};
use crate::store::ReplayStore;

/// The `token_type` of a DPoP-bound access token (RFC 9449 §5).
pub const TOKEN_TYPE_DPOP: &str = "DPoP";

/// Replay records of proofs are kept under this prefix and the key's thumbprint, apart from
/// assertion `jti`s, so one client's proofs cannot collide with another's assertions.
const REPLAY_SCOPE_PREFIX: &str = "dpop:";

fn invalid_proof(error: &DpopError) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidDpopProof,
        error.reason(),
        error.to_string(),
    )
}

/// More than one `DPoP` header, or one that is not text (RFC 9449 §4.3 check 1).
pub fn malformed_header() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidDpopProof,
        "dpop_header_malformed",
        "Send exactly one DPoP header, holding one proof JWT",
    )
}

/// Verifies the request's proof, if it sent one, and records its `jti` so it cannot be used
/// again (DPOP-01, DPOP-03). The record commits before the grant runs: a proof is made for one
/// request, whatever that request's outcome.
pub(crate) async fn check(
    service: &TokenService,
    proof: Option<&str>,
    now: i64,
) -> Result<Option<DpopProof>, OAuthError> {
    let Some(proof) = proof else {
        return Ok(None);
    };
    let tokens = &service.config.tokens;
    let rules = ProofRules {
        method: "POST",
        url: &service.token_endpoint,
        max_age_secs: tokens.dpop_proof_max_age_secs,
        leeway_secs: tokens.clock_skew_secs,
    };
    let verified = verify_proof(proof, &rules, now).map_err(|error| invalid_proof(&error))?;
    // Kept until the proof could no longer pass the iat check anyway.
    let window = i64::try_from(tokens.dpop_proof_max_age_secs + 2 * tokens.clock_skew_secs)
        .unwrap_or(i64::MAX);
    let fresh = service
        .replay
        .record_once(
            &format!("{REPLAY_SCOPE_PREFIX}{}", verified.jkt()),
            verified.jti(),
            verified.iat().saturating_add(window),
        )
        .await
        .map_err(|error| {
            tracing::error!(%error, "recording a DPoP proof jti failed");
            OAuthError::server_error()
        })?;
    if !fresh {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "dpop_replayed",
            "This DPoP proof was already used; create a new one for each request",
        ));
    }
    Ok(Some(verified))
}

/// Binds `claims` to the proof's key: `cnf: {"jkt": …}` (RFC 9449 §6.1, DPOP-04).
pub fn bind(claims: &mut Map<String, Value>, proof: &DpopProof) {
    claims.insert("cnf".into(), json!({ "jkt": proof.jkt() }));
}

/// The `token_type` of an access token issued with or without a proof.
pub fn access_token_type(proof: Option<&DpopProof>) -> &'static str {
    if proof.is_some() {
        TOKEN_TYPE_DPOP
    } else {
        "Bearer"
    }
}

/// The key thumbprint a token's `cnf` claim binds it to: `Ok(None)` when it has no `cnf`, and an
/// error when its `cnf` names a binding frontdesk cannot check (an mTLS certificate, say), since
/// redeeming it unbound would drop what its issuer asked for.
pub fn bound_jkt(cnf: Option<&Value>) -> Result<Option<&str>, OAuthError> {
    match cnf {
        None => Ok(None),
        Some(Value::Object(members)) => match members.get("jkt") {
            Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt)),
            _ => Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "assertion_binding_unsupported",
                "The assertion is bound to a key by a confirmation method other than DPoP (cnf.jkt)",
            )),
        },
        Some(_) => Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "assertion_invalid_cnf",
            "The assertion's cnf claim is not an object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_jkt_confirmation_is_a_binding_frontdesk_can_check() {
        assert_eq!(bound_jkt(None).map_err(|e| e.reason), Ok(None));
        assert_eq!(
            bound_jkt(Some(&json!({ "jkt": "abc" }))).map_err(|e| e.reason),
            Ok(Some("abc"))
        );
        assert_eq!(
            bound_jkt(Some(&json!({ "x5t#S256": "abc" }))).map_err(|e| e.reason),
            Err("assertion_binding_unsupported")
        );
        assert_eq!(
            bound_jkt(Some(&json!({ "jkt": "" }))).map_err(|e| e.reason),
            Err("assertion_binding_unsupported")
        );
        assert_eq!(
            bound_jkt(Some(&json!("abc"))).map_err(|e| e.reason),
            Err("assertion_invalid_cnf")
        );
    }

    #[test]
    fn dpop_errors_are_invalid_dpop_proof_with_status_400() {
        let error = invalid_proof(&DpopError::Stale);
        assert_eq!(error.code.as_str(), "invalid_dpop_proof");
        assert_eq!(error.status(), 400);
        assert_eq!(error.reason, "dpop_stale");
        assert_eq!(malformed_header().code, ErrorCode::InvalidDpopProof);
    }
}
