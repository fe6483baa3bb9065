//! DPoP at the token endpoint (RFC 9449): the proof a request carries is checked once, before
//! any grant runs, and what it proves — possession of the key with thumbprint `jkt` — is handed
//! to the grant, which binds what it issues to that key (`cnf.jkt`). Which grant binds what, and
//! when a proof is required, is written next to each grant; the rules shared by all are here.

use serde_json::{Map, Value, json};

use super::dpop_nonce::NonceRefusal;
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

/// A proof without a current nonce of ours (RFC 9449 §8): the response's `DPoP-Nonce` header,
/// added at the HTTP layer to every token response to a request with a proof, holds the nonce
/// to retry with.
fn nonce_refused(refusal: NonceRefusal) -> OAuthError {
    let description = match refusal {
        NonceRefusal::Missing => {
            "This server requires a nonce in DPoP proofs; retry with the nonce in the DPoP-Nonce response header"
        }
        NonceRefusal::Unknown => {
            "The DPoP proof's nonce was not issued by this server; retry with the nonce in the DPoP-Nonce response header"
        }
        NonceRefusal::Expired => {
            "The DPoP proof's nonce has expired; retry with the nonce in the DPoP-Nonce response header"
        }
    };
    OAuthError::new(ErrorCode::UseDpopNonce, refusal.reason(), description)
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
    require_nonce: bool,
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
    // DPOP-02: checked before the jti is recorded, so a challenge costs no write; the client
    // retries with a new proof (and a new jti) carrying the nonce of this response's header.
    if require_nonce {
        service
            .dpop_nonces
            .check(verified.nonce(), now)
            .map_err(nonce_refused)?;
    }
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

/// A token presented to frontdesk that may be bound to a key: what a refusal is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundToken {
    /// A jwt-bearer assertion (an ID-JAG or chaining grant, IDJAG §9.9.1.2).
    Assertion,
    /// A token exchange's `subject_token` (PEERS §3.6: an exchange must not strip a binding).
    SubjectToken,
    /// A token exchange's `actor_token`.
    ActorToken,
    /// One of frontdesk's refresh tokens (RFC 9449 §5).
    RefreshToken,
    /// An authorization code requested with `dpop_jkt` (RFC 9449 §10).
    Code,
}

impl BoundToken {
    /// Audit reasons: no proof, a proof of another key, a `cnf` of another confirmation method,
    /// a `cnf` that is not an object.
    fn reasons(self) -> [&'static str; 4] {
        match self {
            Self::Assertion | Self::RefreshToken | Self::Code => [
                "dpop_proof_required",
                "dpop_key_mismatch",
                "assertion_binding_unsupported",
                "assertion_invalid_cnf",
            ],
            Self::SubjectToken => [
                "subject_token_dpop_proof_required",
                "subject_token_dpop_key_mismatch",
                "subject_token_binding_unsupported",
                "subject_token_invalid_cnf",
            ],
            Self::ActorToken => [
                "actor_token_dpop_proof_required",
                "actor_token_dpop_key_mismatch",
                "actor_token_binding_unsupported",
                "actor_token_invalid_cnf",
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Assertion => "assertion",
            Self::SubjectToken => "subject_token",
            Self::ActorToken => "actor_token",
            Self::RefreshToken => "refresh token",
            Self::Code => "authorization code",
        }
    }
}

/// Checks that `proof` proves possession of the key `jkt` that `token` is bound to; a refusal is
/// `code` (each grant's code for a bad token of that kind).
pub fn require_key(
    jkt: &str,
    proof: Option<&DpopProof>,
    token: BoundToken,
    code: ErrorCode,
) -> Result<(), OAuthError> {
    let [required, mismatch, _, _] = token.reasons();
    match proof {
        None => Err(OAuthError::new(
            code,
            required,
            format!(
                "The {} is bound to a DPoP key (cnf.jkt); send a DPoP proof signed with that key",
                token.name()
            ),
        )),
        Some(proof) if proof.jkt() != jkt => Err(OAuthError::new(
            code,
            mismatch,
            format!(
                "The DPoP proof is signed with another key than the one the {} is bound to",
                token.name()
            ),
        )
        .suspicious()),
        Some(_) => Ok(()),
    }
}

/// [`require_key`] for a token's `cnf` claim: nothing to check without one, and a refusal when
/// it names a binding frontdesk cannot check (an mTLS certificate, say), since accepting the
/// token unbound would drop what its issuer asked for.
pub fn require_possession(
    cnf: Option<&Value>,
    proof: Option<&DpopProof>,
    token: BoundToken,
    code: ErrorCode,
) -> Result<(), OAuthError> {
    let [_, _, unsupported, invalid] = token.reasons();
    match cnf {
        None => Ok(()),
        Some(Value::Object(members)) => match members.get("jkt") {
            Some(Value::String(jkt)) if !jkt.is_empty() => require_key(jkt, proof, token, code),
            _ => Err(OAuthError::new(
                code,
                unsupported,
                format!(
                    "The {} is bound to a key by a confirmation method other than DPoP (cnf.jkt)",
                    token.name()
                ),
            )),
        },
        Some(_) => Err(OAuthError::new(
            code,
            invalid,
            format!("The {}'s cnf claim is not an object", token.name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof_of(key: &crate::jose::testutil::EcKey) -> DpopProof {
        let mut jwk = key.jwk_value();
        jwk.as_object_mut().map(|members| members.remove("kid"));
        let proof = crate::jose::testutil::es256(
            key,
            &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk }),
            &json!({ "jti": "p", "htm": "POST", "htu": "https://sts.example/token", "iat": 100 }),
        );
        let rules = ProofRules {
            method: "POST",
            url: "https://sts.example/token",
            max_age_secs: 60,
            leeway_secs: 0,
        };
        verify_proof(&proof, &rules, 100).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_bound_token_needs_a_proof_of_its_own_key_and_only_a_jkt_binding_can_be_checked() {
        use crate::jose::testutil::{ec_key, ec_key2};
        let (holder, other) = (proof_of(ec_key()), proof_of(ec_key2()));
        let cnf = json!({ "jkt": holder.jkt() });
        let check = |cnf: Option<&Value>, proof: Option<&DpopProof>, token| {
            require_possession(cnf, proof, token, ErrorCode::InvalidGrant).map_err(|e| e.reason)
        };
        // No binding: nothing to prove, with or without a proof.
        assert_eq!(check(None, None, BoundToken::Assertion), Ok(()));
        assert_eq!(check(None, Some(&other), BoundToken::Assertion), Ok(()));
        assert_eq!(
            check(Some(&cnf), Some(&holder), BoundToken::Assertion),
            Ok(())
        );
        assert_eq!(
            check(Some(&cnf), None, BoundToken::Assertion),
            Err("dpop_proof_required")
        );
        assert_eq!(
            check(Some(&cnf), Some(&other), BoundToken::SubjectToken),
            Err("subject_token_dpop_key_mismatch")
        );
        assert_eq!(
            check(
                Some(&json!({ "x5t#S256": "abc" })),
                Some(&holder),
                BoundToken::Assertion
            ),
            Err("assertion_binding_unsupported")
        );
        assert_eq!(
            check(
                Some(&json!({ "jkt": "" })),
                Some(&holder),
                BoundToken::ActorToken
            ),
            Err("actor_token_binding_unsupported")
        );
        assert_eq!(
            check(Some(&json!("abc")), Some(&holder), BoundToken::SubjectToken),
            Err("subject_token_invalid_cnf")
        );
        let error = require_key(
            holder.jkt(),
            None,
            BoundToken::SubjectToken,
            ErrorCode::InvalidRequest,
        )
        .err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::InvalidRequest));
    }

    /// DPOP-01: an invalid proof, or more than one DPoP header, is 400 `invalid_dpop_proof`.
    #[test]
    fn dpop_errors_are_invalid_dpop_proof_with_status_400() {
        let error = invalid_proof(&DpopError::Stale);
        assert_eq!(error.code.as_str(), "invalid_dpop_proof");
        assert_eq!(error.status(), 400);
        assert_eq!(error.reason, "dpop_stale");
        assert_eq!(malformed_header().code, ErrorCode::InvalidDpopProof);
    }
}
