//! All JOSE (JWS/JWT/JWK) handling for inbound tokens lives in this module.
//!
//! Why one place: every JWT frontdesk accepts (enterprise IdP ID tokens,
//! ID-JAG assertions, generic JWT grants, `private_key_jwt` client
//! assertions) must follow RFC 8725 (REQUIREMENTS.md section 14, BCP-01..BCP-11)
//! *exactly*. Spreading `jsonwebtoken::decode` calls across handlers invites
//! drift: one handler forgets the `typ` check, another trusts a `jku` header,
//! a third lets `exp` validation silently default. Here, verification is
//! split into two plain functions with no I/O and no clock access:
//!
//! * [`verify::inspect`] - cheap structural pre-checks before any key lookup
//!   (size, compact JWS only, no `none`, no key-bearing headers, no `crit`,
//!   no duplicate JSON members) and extraction of the *untrusted* `kid` and
//!   `iss` used only to pick the trust configuration and key;
//! * [`verify::verify`] - algorithm/key binding, signature check, then every
//!   claim check against explicit [`verify::VerifyRules`] and a caller-supplied
//!   `now`, so the rules are exact and testable at their boundaries.
//!
//! [`verifying_key`] keeps each trusted key parsed for aws-lc-rs after its first use, so a
//! signature check does not rebuild the key from its JWK every time.
//!
//! [`jwks_cache`] holds the external issuers' keys (in memory on the hot path,
//! rate-limited single-flight refetch on unknown `kid`, stale-if-error).
//!
//! Nothing here logs or returns token bytes: errors carry stable reason codes
//! and static, RFC 6749 section 5.2-safe descriptions.

pub mod dpop;
pub mod jwks_cache;
pub mod verify;
pub mod verifying_key;

#[cfg(test)]
pub(crate) mod testutil;

pub use verify::{
    AudienceRule, JoseError, MAX_ID_TOKEN_SUB_BYTES, TypRule, Unverified, VerifiedClaims,
    VerifyRules, inspect, select_key, verify,
};
pub use verifying_key::{KeySet, VerifyingKey};

/// The JWS `alg` name of an algorithm (RFC 7518 §3.1), for metadata and for matching a header's
/// `alg` against an allow-list by name. `jsonwebtoken` parses names but does not print them.
/// An algorithm this function does not know is `""`.
pub fn alg_name(alg: jsonwebtoken::Algorithm) -> &'static str {
    use jsonwebtoken::Algorithm;
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // The enum is non-exhaustive; a newer variant is never on an allow-list of ours until
        // it is named here, and an empty name matches no header.
        _ => "",
    }
}

/// A fresh `jti` for a token we issue: 122 random bits in the UUID v4 shape. The bytes come from
/// aws-lc's DRBG, which is seeded from the operating system and then runs in user space, where
/// `Uuid::new_v4` asks the kernel for every identifier (a system call per issued token on the
/// hot path: docs/performance.md). If the DRBG ever fails we fall back to the kernel.
pub fn new_jti() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    match aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string(),
        Err(_) => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod jti_tests {
    #[test]
    fn jtis_are_distinct_version_4_uuids() {
        let (first, second) = (super::new_jti(), super::new_jti());
        assert_ne!(first, second);
        for jti in [first, second] {
            let parsed = uuid::Uuid::parse_str(&jti).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{jti}");
        }
    }
}
