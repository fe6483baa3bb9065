//! DPoP proofs (RFC 9449) as the token endpoint receives them: a JWT the client signs with a key
//! it holds, carrying that key's public half in its header, for one HTTP request.
//!
//! Why a verifier of its own: every other JWT frontdesk accepts is signed by a key the trust
//! configuration names, and [`super::inspect`] refuses a `jwk` header outright (BCP-07). A proof
//! is the one JWT whose key *is* the header's `jwk`; what it proves is possession of that key,
//! not who the key belongs to. So the rules differ and are kept apart: an explicit asymmetric
//! algorithm list (no `none`, no HMAC), `typ: dpop+jwt`, a public key only, the signature, then
//! the claims that tie the proof to this request (`htm`, `htu`), its freshness (`iat`) and its
//! `jti` for the caller's replay check (DPOP-01, DPOP-03). Like the rest of this module it does no
//! I/O and reads no clock: `now` comes from the caller.

use std::fmt;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::Value;
use url::Url;

use super::verify::{b64url, key_usable_for, parse_strict_object, same_typ};
use super::verifying_key::VerifyingKey;

/// The `typ` a proof must carry (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// Algorithms accepted for proofs, published as `dpop_signing_alg_values_supported` (META-14):
/// asymmetric only, the same set frontdesk accepts for client assertions.
pub const DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Longest proof accepted. A proof carries one public key (an RSA-4096 JWK is under 1 KB), so
/// anything near this is not a proof.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest proof `jti` accepted; RFC 9449 asks for 96 random bits, so 256 characters is generous.
pub const MAX_PROOF_JTI_LEN: usize = 256;

/// Longest `nonce` claim read; frontdesk's own nonces are 32 characters.
pub const MAX_PROOF_NONCE_LEN: usize = 256;

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). A proof
/// whose header carries one is refused: the client has leaked its key into every request.
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Header parameters that point at keys elsewhere; the proof's key is its `jwk`, nothing else.
const FORBIDDEN_HEADERS: [&str; 5] = ["jku", "x5u", "x5c", "crit", "b64"];

/// Every way a proof can fail. `Display` is a short ASCII sentence without proof content, safe
/// as `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a compact JWS with a JSON header and payload.
    #[error("The DPoP proof is not a well-formed JWT: {0}.")]
    Malformed(&'static str),
    /// Longer than [`MAX_PROOF_LEN`].
    #[error("The DPoP proof is larger than allowed.")]
    TooLarge,
    /// `typ` is not `dpop+jwt`.
    #[error("The DPoP proof must have typ dpop+jwt.")]
    WrongTyp,
    /// `alg` is `none`, symmetric, or not in [`DPOP_ALGORITHMS`].
    #[error("The DPoP proof's alg is not one of dpop_signing_alg_values_supported.")]
    AlgNotAllowed,
    /// A header parameter that names a key elsewhere, or `crit`.
    #[error("The DPoP proof's header carries {0}, which is not accepted.")]
    ForbiddenHeader(&'static str),
    /// No `jwk`, or one that is not a public key usable with `alg`.
    #[error("The DPoP proof's jwk header is missing or is not a public key for its alg.")]
    BadKey,
    /// The `jwk` carries private key members.
    #[error("The DPoP proof's jwk contains private key material.")]
    PrivateKey,
    /// The signature does not verify with the header's key.
    #[error("The DPoP proof's signature does not verify with its jwk.")]
    BadSignature,
    /// A required claim is absent or of the wrong type.
    #[error("The DPoP proof lacks a valid {0} claim.")]
    MissingClaim(&'static str),
    /// `htm` is not this request's method.
    #[error("The DPoP proof's htm does not match the request method.")]
    WrongMethod,
    /// `htu` is not this endpoint.
    #[error("The DPoP proof's htu does not match this endpoint's URL.")]
    WrongUrl,
    /// `iat` is older than the acceptance window.
    #[error("The DPoP proof is too old; create a new one for each request.")]
    Stale,
    /// `iat` is ahead of our clock by more than the allowed skew.
    #[error("The DPoP proof's iat is in the future.")]
    IssuedInFuture,
}

impl DpopError {
    /// Stable snake_case code for the audit log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "dpop_malformed",
            Self::TooLarge => "dpop_too_large",
            Self::WrongTyp => "dpop_wrong_typ",
            Self::AlgNotAllowed => "dpop_alg_not_allowed",
            Self::ForbiddenHeader(_) => "dpop_forbidden_header",
            Self::BadKey => "dpop_bad_key",
            Self::PrivateKey => "dpop_private_key",
            Self::BadSignature => "dpop_bad_signature",
            Self::MissingClaim(_) => "dpop_missing_claim",
            Self::WrongMethod => "dpop_wrong_htm",
            Self::WrongUrl => "dpop_wrong_htu",
            Self::Stale => "dpop_stale",
            Self::IssuedInFuture => "dpop_issued_in_future",
        }
    }
}

/// What a proof must match: the request it came with and how fresh it must be.
#[derive(Debug, Clone)]
pub struct ProofRules<'a> {
    /// The request's method (`POST` at the token endpoint).
    pub method: &'a str,
    /// The endpoint's public URL, as the metadata publishes it.
    pub url: &'a str,
    /// Oldest `iat` accepted, in seconds before `now` (after `leeway_secs`).
    pub max_age_secs: u64,
    /// Clock skew allowed either way.
    pub leeway_secs: u64,
}

/// A verified proof: who holds the key (its RFC 7638 thumbprint) and what to record against
/// replay.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopProof {
    jkt: String,
    jti: String,
    iat: i64,
    nonce: Option<String>,
}

impl fmt::Debug for DpopProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopProof")
            .field("jkt", &self.jkt)
            .field("iat", &self.iat)
            .finish_non_exhaustive()
    }
}

impl DpopProof {
    /// The base64url SHA-256 JWK thumbprint of the proof's key (RFC 7638), the value of
    /// `cnf.jkt` in tokens bound to it (RFC 9449 §6.1).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    /// The proof's `jti`, unique per proof; the caller records it against replay (DPOP-03).
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// The proof's `iat`.
    pub fn iat(&self) -> i64 {
        self.iat
    }
    /// The proof's `nonce` claim, the server-provided value it echoes (RFC 9449 §8); whether
    /// one is required, and which are valid, is the caller's to decide.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
}

/// Verifies `proof` for a request described by `rules` at `now` (DPOP-01). Replay is the
/// caller's to check: this function has no memory.
pub fn verify_proof(proof: &str, rules: &ProofRules<'_>, now: i64) -> Result<DpopProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::TooLarge);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("expected three dot-separated parts"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(DpopError::Malformed("empty part"));
    }
    let header = b64url(h)
        .and_then(|bytes| parse_strict_object(&bytes))
        .ok_or(DpopError::Malformed(
            "the header is not a base64url JSON object",
        ))?;
    let payload = b64url(p)
        .and_then(|bytes| parse_strict_object(&bytes))
        .ok_or(DpopError::Malformed(
            "the payload is not a base64url JSON object",
        ))?;

    match header.get("typ") {
        Some(Value::String(typ)) if same_typ(typ, DPOP_TYP) => {}
        _ => return Err(DpopError::WrongTyp),
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => DPOP_ALGORITHMS
            .iter()
            .copied()
            .find(|allowed| alg.as_str() == super::alg_name(*allowed))
            .ok_or(DpopError::AlgNotAllowed)?,
        _ => return Err(DpopError::AlgNotAllowed),
    };
    for name in FORBIDDEN_HEADERS {
        if header.contains_key(name) {
            return Err(DpopError::ForbiddenHeader(name));
        }
    }
    let Some(Value::Object(jwk_members)) = header.get("jwk") else {
        return Err(DpopError::BadKey);
    };
    if PRIVATE_JWK_MEMBERS
        .iter()
        .any(|member| jwk_members.contains_key(*member))
    {
        return Err(DpopError::PrivateKey);
    }
    let jwk: Jwk = serde_json::from_value(Value::Object(jwk_members.clone()))
        .map_err(|_| DpopError::BadKey)?;
    if !key_usable_for(&jwk, alg) {
        return Err(DpopError::BadKey);
    }
    // The thumbprint is computed from the key's members as sent; they must be base64url text, so
    // that the JSON the thumbprint hashes is the key's canonical form (RFC 7638 §3).
    if !thumbprint_members_are_base64url(jwk_members) {
        return Err(DpopError::BadKey);
    }
    let signing_input = &proof[..h.len() + 1 + p.len()];
    VerifyingKey::new(jwk.clone())
        .verify_signature(alg, signing_input.as_bytes(), s)
        .map_err(|_| DpopError::BadSignature)?;

    let jti = match payload.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_PROOF_JTI_LEN => jti,
        _ => return Err(DpopError::MissingClaim("jti")),
    };
    match payload.get("htm") {
        Some(Value::String(htm)) if htm == rules.method => {}
        Some(Value::String(_)) => return Err(DpopError::WrongMethod),
        _ => return Err(DpopError::MissingClaim("htm")),
    }
    match payload.get("htu") {
        Some(Value::String(htu)) if same_endpoint(htu, rules.url) => {}
        Some(Value::String(_)) => return Err(DpopError::WrongUrl),
        _ => return Err(DpopError::MissingClaim("htu")),
    }
    // A NumericDate (RFC 7519 §2) may have a fraction; it counts by its whole seconds.
    let iat = payload
        .get("iat")
        .and_then(|iat| {
            iat.as_i64().or_else(|| {
                iat.as_f64()
                    .filter(|seconds| seconds.is_finite())
                    .map(|seconds| seconds.floor() as i64)
            })
        })
        .ok_or(DpopError::MissingClaim("iat"))?;
    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);
    let max_age = i64::try_from(rules.max_age_secs).unwrap_or(i64::MAX);
    if iat > now.saturating_add(leeway) {
        return Err(DpopError::IssuedInFuture);
    }
    if iat < now.saturating_sub(max_age).saturating_sub(leeway) {
        return Err(DpopError::Stale);
    }
    let nonce = match payload.get("nonce") {
        None => None,
        Some(Value::String(nonce)) if !nonce.is_empty() && nonce.len() <= MAX_PROOF_NONCE_LEN => {
            Some(nonce.clone())
        }
        Some(_) => return Err(DpopError::MissingClaim("nonce")),
    };
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| DpopError::BadKey)?;
    Ok(DpopProof {
        jkt,
        jti: jti.clone(),
        iat,
        nonce,
    })
}

/// Whether the members RFC 7638 hashes (`n`, `e`, `x`, `y`) are base64url text.
fn thumbprint_members_are_base64url(jwk: &serde_json::Map<String, Value>) -> bool {
    ["n", "e", "x", "y"]
        .iter()
        .all(|member| match jwk.get(*member) {
            None => true,
            Some(Value::String(text)) => text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            Some(_) => false,
        })
}

/// RFC 9449 §4.3 item 9: `htu` names the endpoint, ignoring query and fragment, compared after
/// RFC 3986 §6.2.2–6.2.3 normalisation (scheme and host case, default port, empty path).
fn same_endpoint(htu: &str, endpoint: &str) -> bool {
    let normalise = |text: &str| {
        Url::parse(text).ok().map(|mut url| {
            url.set_query(None);
            url.set_fragment(None);
            url
        })
    };
    match (normalise(htu), normalise(endpoint)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::jose::testutil::{b64, ec_key, ec_key2, es256, es256_raw, rs256, rsa_key};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const TOKEN_ENDPOINT: &str = "https://sts.example/token";

    fn rules() -> ProofRules<'static> {
        ProofRules {
            method: "POST",
            url: TOKEN_ENDPOINT,
            max_age_secs: 60,
            leeway_secs: 5,
        }
    }

    fn public_jwk() -> Value {
        let mut jwk = ec_key().jwk_value();
        let members = jwk.as_object_mut().unwrap();
        members.remove("kid");
        members.remove("use");
        members.remove("alg");
        jwk
    }

    fn header() -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk() })
    }

    fn claims() -> Value {
        json!({ "jti": "proof-1", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": NOW })
    }

    fn with(mut value: Value, member: &str, new: Value) -> Value {
        if new.is_null() {
            value.as_object_mut().unwrap().remove(member);
        } else {
            value[member] = new;
        }
        value
    }

    fn check(header: &Value, claims: &Value) -> Result<DpopProof, DpopError> {
        verify_proof(&es256(ec_key(), header, claims), &rules(), NOW)
    }

    #[test]
    fn a_valid_proof_yields_its_keys_rfc_7638_thumbprint_and_jti_dpop_01() {
        let proof = check(&header(), &claims()).unwrap();
        assert_eq!(proof.jti(), "proof-1");
        assert_eq!(proof.iat(), NOW);
        // RFC 7638 §3: SHA-256 over the required members in lexicographic order, no spaces.
        let jwk = public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(proof.jkt(), b64(digest.as_ref()));
    }

    #[test]
    fn a_nonce_claim_is_read_when_it_is_non_empty_text_and_refused_otherwise_dpop_02() {
        assert_eq!(check(&header(), &claims()).unwrap().nonce(), None);
        let proof = check(&header(), &with(claims(), "nonce", json!("n-1"))).unwrap();
        assert_eq!(proof.nonce(), Some("n-1"));
        for bad in [json!(""), json!(7), json!(["n"]), json!("x".repeat(257))] {
            assert_eq!(
                check(&header(), &with(claims(), "nonce", bad.clone())),
                Err(DpopError::MissingClaim("nonce")),
                "{bad}"
            );
        }
    }

    #[test]
    fn rsa_proofs_are_accepted_and_their_thumbprints_differ_from_ec_ones() {
        let mut jwk = rsa_key().jwk_value();
        jwk.as_object_mut().unwrap().remove("kid");
        let header = json!({ "typ": "dpop+jwt", "alg": "RS256", "jwk": jwk });
        let proof = verify_proof(&rs256(rsa_key(), &header, &claims()), &rules(), NOW).unwrap();
        let ec = check(&self::header(), &claims()).unwrap();
        assert_ne!(proof.jkt(), ec.jkt());
    }

    /// BCP-08: a proof is explicitly typed `dpop+jwt`. BCP-01, BCP-02: its `alg` is one of
    /// `DPOP_ALGORITHMS` (never `none`, never HMAC, names compared exactly).
    /// Rows: DPOP-01.
    #[test]
    fn the_header_must_be_typed_dpop_jwt_with_an_allowed_asymmetric_alg() {
        for typ in [json!("JWT"), json!("at+jwt"), Value::Null] {
            assert_eq!(
                check(&with(header(), "typ", typ), &claims()),
                Err(DpopError::WrongTyp)
            );
        }
        assert!(
            check(
                &with(header(), "typ", json!("application/DPoP+JWT")),
                &claims()
            )
            .is_ok()
        );
        for alg in ["none", "HS256", "ES512", "es256"] {
            assert_eq!(
                check(&with(header(), "alg", json!(alg)), &claims()),
                Err(DpopError::AlgNotAllowed),
                "{alg}"
            );
        }
    }

    /// BCP-07: the proof's `jwk` is the one key header a proof may carry (RFC 9449); `jku`,
    /// `x5u` and `x5c` are refused, and so is a private or symmetric `jwk`.
    /// Rows: DPOP-01.
    #[test]
    fn the_key_must_be_a_public_jwk_in_the_header_and_nowhere_else() {
        assert_eq!(
            check(&with(header(), "jwk", Value::Null), &claims()),
            Err(DpopError::BadKey)
        );
        let mut private = public_jwk();
        private["d"] = json!("c2VjcmV0");
        assert_eq!(
            check(&with(header(), "jwk", private), &claims()),
            Err(DpopError::PrivateKey)
        );
        let symmetric = json!({ "kty": "oct", "k": "c2VjcmV0" });
        assert_eq!(
            check(&with(header(), "jwk", symmetric), &claims()),
            Err(DpopError::PrivateKey)
        );
        for name in ["jku", "x5u", "x5c", "crit"] {
            assert_eq!(
                check(&with(header(), name, json!("x")), &claims()),
                Err(DpopError::ForbiddenHeader(name))
            );
        }
        // A key of the wrong type for the alg.
        assert_eq!(
            check(&with(header(), "alg", json!("RS256")), &claims()),
            Err(DpopError::BadKey)
        );
    }

    /// BCP-04: the signature is checked before any claim: a proof signed by another key is a
    /// bad signature even when its claims are wrong too.
    /// Rows: DPOP-01.
    #[test]
    fn the_signature_must_verify_with_the_headers_own_key() {
        // Signed by another key than the one the header names.
        let proof = es256(ec_key2(), &header(), &claims());
        assert_eq!(
            verify_proof(&proof, &rules(), NOW),
            Err(DpopError::BadSignature)
        );
        let wrong_claims =
            json!({ "htm": "GET", "htu": "https://evil.example/", "iat": NOW - 3600 });
        let proof = es256(ec_key2(), &header(), &wrong_claims);
        assert_eq!(
            verify_proof(&proof, &rules(), NOW),
            Err(DpopError::BadSignature)
        );
        let genuine = es256(ec_key(), &header(), &claims());
        let (input, _) = genuine.rsplit_once('.').unwrap();
        let tampered = format!("{input}.{}", b64(&[0u8; 64]));
        assert_eq!(
            verify_proof(&tampered, &rules(), NOW),
            Err(DpopError::BadSignature)
        );
    }

    /// Rows: DPOP-01.
    #[test]
    fn htm_and_htu_tie_the_proof_to_this_endpoint() {
        assert_eq!(
            check(&header(), &with(claims(), "htm", json!("GET"))),
            Err(DpopError::WrongMethod)
        );
        for other in [
            "https://sts.example/introspect",
            "https://evil.example/token",
            "http://sts.example/token",
            "https://sts.example:8443/token",
            "not a url",
        ] {
            assert_eq!(
                check(&header(), &with(claims(), "htu", json!(other))),
                Err(DpopError::WrongUrl),
                "{other}"
            );
        }
        // Same endpoint after normalisation; query and fragment are ignored.
        for same in [
            "HTTPS://STS.example/token",
            "https://sts.example:443/token",
            "https://sts.example/token?x=1#y",
        ] {
            assert!(
                check(&header(), &with(claims(), "htu", json!(same))).is_ok(),
                "{same}"
            );
        }
        for claim in ["htm", "htu", "jti", "iat"] {
            assert!(
                matches!(
                    check(&header(), &with(claims(), claim, Value::Null)),
                    Err(DpopError::MissingClaim(name)) if name == claim
                ),
                "{claim}"
            );
        }
    }

    /// BCP-11: the skew allowed on `iat` is the configured leeway, exactly at its edges.
    /// Rows: DPOP-01.
    #[test]
    fn iat_must_fall_inside_the_window_at_its_edges() {
        // max_age 60, leeway 5.
        for (iat, ok) in [
            (NOW - 65, true),
            (NOW - 66, false),
            (NOW + 5, true),
            (NOW + 6, false),
        ] {
            let result = check(&header(), &with(claims(), "iat", json!(iat)));
            assert_eq!(result.is_ok(), ok, "iat {iat}: {result:?}");
        }
        assert_eq!(
            check(&header(), &with(claims(), "iat", json!(NOW - 66))),
            Err(DpopError::Stale)
        );
        assert_eq!(
            check(&header(), &with(claims(), "iat", json!(NOW + 6))),
            Err(DpopError::IssuedInFuture)
        );
        // RFC 7519 §2: a NumericDate may carry a fraction (JavaScript's Date.now() / 1000); it
        // is the same instant, held to the same window.
        let fractional = check(&header(), &with(claims(), "iat", json!(NOW as f64 + 0.25)));
        assert_eq!(fractional.map(|proof| proof.iat()), Ok(NOW));
        assert_eq!(
            check(
                &header(),
                &with(claims(), "iat", json!((NOW - 66) as f64 + 0.5))
            ),
            Err(DpopError::Stale)
        );
        assert_eq!(
            check(&header(), &with(claims(), "iat", json!("1800000000"))),
            Err(DpopError::MissingClaim("iat"))
        );
    }

    /// BCP-10: compact serialization only, no duplicate members, no nested token as payload.
    #[test]
    fn malformed_and_oversized_proofs_are_refused_before_any_crypto() {
        assert_eq!(
            verify_proof("a.b", &rules(), NOW),
            Err(DpopError::Malformed("expected three dot-separated parts"))
        );
        assert_eq!(
            verify_proof("a.b.c.d.e", &rules(), NOW),
            Err(DpopError::Malformed("expected three dot-separated parts"))
        );
        assert_eq!(
            verify_proof(&"a".repeat(MAX_PROOF_LEN + 1), &rules(), NOW),
            Err(DpopError::TooLarge)
        );
        // Duplicate header members.
        let proof = es256_raw(
            ec_key(),
            r#"{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256"}"#,
            &claims().to_string(),
        );
        assert!(matches!(
            verify_proof(&proof, &rules(), NOW),
            Err(DpopError::Malformed(_))
        ));
        // The JSON serialization, and a proof whose payload is another JWT (nested).
        let json_serialization = json!({ "payload": "e30", "signatures": [] }).to_string();
        assert_eq!(
            verify_proof(&json_serialization, &rules(), NOW),
            Err(DpopError::Malformed("expected three dot-separated parts"))
        );
        let inner = es256(ec_key(), &header(), &claims());
        let nested = format!(
            "{}.{}.{}",
            b64(header().to_string().as_bytes()),
            b64(inner.as_bytes()),
            b64(b"sig")
        );
        assert!(matches!(
            verify_proof(&nested, &rules(), NOW),
            Err(DpopError::Malformed(_))
        ));
        let long_jti = with(claims(), "jti", json!("j".repeat(MAX_PROOF_JTI_LEN + 1)));
        assert_eq!(
            check(&header(), &long_jti),
            Err(DpopError::MissingClaim("jti"))
        );
    }
}
