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
//! [`jwks_cache`] holds the external issuers' keys (in memory on the hot path,
//! rate-limited single-flight refetch on unknown `kid`, stale-if-error).
//!
//! Nothing here logs or returns token bytes: errors carry stable reason codes
//! and static, RFC 6749 section 5.2-safe descriptions.

pub mod jwks_cache;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil;

pub use verify::{
    AudienceRule, JoseError, TypRule, Unverified, VerifiedClaims, VerifyRules, inspect, select_key,
    verify,
};
