//! Verification of inbound compact JWS/JWTs (RFC 7515, RFC 7519, RFC 8725).
//!
//! Two steps, both pure (no I/O, no clock):
//! 1. [`inspect`]: structural pre-checks; yields [`Unverified`] with the
//!    untrusted `alg`/`kid`/`typ`/`iss` needed to choose a trust config and key.
//! 2. [`verify`]: binds the algorithm to the allow-list and the key type,
//!    checks the signature with the key's parsed form ([`super::verifying_key`],
//!    aws-lc-rs), then checks all claims
//!    against [`VerifyRules`] at the caller's `now` (BCP-04: no claim is
//!    trusted before the signature is checked).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};

#[cfg(doc)]
use super::verifying_key::KeySet;
use super::verifying_key::VerifyingKey;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A sensible default for `inspect`'s `max_len` (bytes of the compact token).
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `kid` we accept; it is untrusted input (BCP-07).
pub const MAX_KID_LEN: usize = 256;
/// Longest `typ` we accept.
pub const MAX_TYP_LEN: usize = 128;
/// Upper bound applied to `VerifyRules::leeway_secs` (BCP-11: skew small and bounded).
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Smallest RSA modulus accepted for RS*/PS* (JWKS-08).
pub const MIN_RSA_BITS: usize = 2048;
/// Longest `sub` an OpenID Connect ID token may carry: OIDC Core §2 says it "MUST NOT exceed
/// 255 ASCII characters". Enforced where an ID token names a user, because a longer one is not
/// an ID token any conforming IdP issues, and on PostgreSQL the user's remembered claims are
/// keyed by it (a key over 2.7 KB cannot be indexed and would fail the sign-in with a 500).
pub const MAX_ID_TOKEN_SUB_BYTES: usize = 255;

/// Header parameters that carry or point at keys/certificates. They are never
/// followed or trusted (BCP-07, JWKS-07); a token carrying one is refused so
/// that nobody downstream is tempted to use them.
const FORBIDDEN_KEY_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];
/// Header parameters that only make sense for JWE or unencoded payloads
/// (RFC 7516, RFC 7797). A compact JWS carrying them is not one we expect (BCP-10).
const FORBIDDEN_OTHER_HEADERS: [&str; 3] = ["enc", "zip", "b64"];

/// `typ` values that must never be accepted where an OIDC ID token is expected
/// (IDJAG-ISSUE-13, JWTB-11, BCP-08): explicitly typed JWTs of other kinds.
pub const NOT_ID_TOKEN_TYPS: [&str; 7] = [
    "oauth-id-jag+jwt",
    "at+jwt",
    "dpop+jwt",
    "client-authentication+jwt",
    "token-introspection+jwt",
    "logout+jwt",
    "secevent+jwt",
];

/// The `typ` an ID-JAG must carry (IDJAG, INT-02).
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Every way a token can fail. Display (and [`JoseError::description`]) is a
/// short ASCII sentence without token content, safe as `error_description`
/// (RFC 6749 section 5.2 charset: no `"` and no `\`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    #[error("The token is larger than allowed.")]
    TokenTooLarge,
    /// The static detail names the structural problem, never token content.
    #[error("The token is not a well-formed compact JWS: {0}.")]
    Malformed(&'static str),
    #[error("Encrypted tokens (JWE) are not accepted.")]
    Encrypted,
    #[error("Unsigned tokens (alg none) are not accepted.")]
    AlgNone,
    #[error("The token signing algorithm is not allowed.")]
    AlgNotAllowed,
    #[error("The token header contains a parameter that is not accepted: {0}.")]
    ForbiddenHeader(&'static str),
    #[error("The token header contains a crit parameter, no extensions are supported.")]
    CritUnsupported,
    #[error("Nested or content-typed tokens (cty header) are not accepted.")]
    NestedToken,
    #[error("The token type (typ header) is not acceptable here.")]
    WrongTyp,
    #[error("No trusted key matches the token key identifier.")]
    UnknownKid,
    #[error("The selected key cannot be used with the token algorithm.")]
    KeyAlgMismatch,
    #[error("The token signature is invalid.")]
    BadSignature,
    #[error("The token issuer is not the expected issuer.")]
    WrongIssuer,
    #[error("The token audience is not acceptable.")]
    WrongAudience,
    #[error("The token authorized party (azp) is not the expected client.")]
    WrongAuthorizedParty,
    #[error("The token has expired.")]
    Expired,
    #[error("The token is not yet valid.")]
    NotYetValid,
    #[error("The token was issued in the future.")]
    IssuedInFuture,
    #[error("The token was issued too long ago.")]
    TooOld,
    #[error("The token lifetime is longer than allowed.")]
    LifetimeTooLong,
    #[error("The token is missing the required claim {0}.")]
    MissingClaim(&'static str),
    #[error("The token claim {0} has an invalid value.")]
    InvalidClaim(&'static str),
    #[error("The signing keys of the token issuer are currently unavailable.")]
    KeyUnavailable,
    /// Programming error: `verify` was given a token other than the inspected one.
    #[error("The token does not match the inspected token.")]
    InspectMismatch,
}

impl JoseError {
    /// Stable snake_case code for logs, metrics and tests.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TokenTooLarge => "token_too_large",
            Self::Malformed(_) => "malformed",
            Self::Encrypted => "encrypted_token",
            Self::AlgNone => "alg_none",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::CritUnsupported => "crit_unsupported",
            Self::NestedToken => "nested_token",
            Self::WrongTyp => "wrong_typ",
            Self::UnknownKid => "unknown_kid",
            Self::KeyAlgMismatch => "key_alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongAuthorizedParty => "wrong_azp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::TooOld => "too_old",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::KeyUnavailable => "key_unavailable",
            Self::InspectMismatch => "inspect_mismatch",
        }
    }

    /// Whether the failure says the token was not what its issuer gave (a forgery, a token for
    /// someone else, a tampered one) rather than the wear of an honest token (expired, too old)
    /// or trouble on our side or the issuer's (keys unavailable, an unknown `kid` around a key
    /// rotation). Counted by the per-client throttle of `server.invalid_subject_tokens_per_minute`;
    /// exhaustive, so a new kind of failure must be classified here.
    pub fn suggests_forgery(&self) -> bool {
        match self {
            Self::Malformed(_)
            | Self::AlgNone
            | Self::AlgNotAllowed
            | Self::ForbiddenHeader(_)
            | Self::CritUnsupported
            | Self::NestedToken
            | Self::WrongTyp
            | Self::KeyAlgMismatch
            | Self::BadSignature
            | Self::WrongIssuer
            | Self::WrongAudience
            | Self::WrongAuthorizedParty => true,
            Self::TokenTooLarge
            | Self::Encrypted
            | Self::UnknownKid
            | Self::Expired
            | Self::NotYetValid
            | Self::IssuedInFuture
            | Self::TooOld
            | Self::LifetimeTooLong
            | Self::MissingClaim(_)
            | Self::InvalidClaim(_)
            | Self::KeyUnavailable
            | Self::InspectMismatch => false,
        }
    }

    /// Human-readable, safe `error_description` text (same as `Display`).
    pub fn description(&self) -> String {
        self.to_string()
    }

    /// True when the failure is on our side (keys could not be obtained),
    /// i.e. the caller may want a 5xx/`temporarily_unavailable` rather than
    /// `invalid_grant`.
    pub fn is_server_side(&self) -> bool {
        matches!(self, Self::KeyUnavailable | Self::InspectMismatch)
    }
}

// ---------------------------------------------------------------------------
// Strict JSON (no duplicate member names at any depth) - BCP-10, JWTB-08
// ---------------------------------------------------------------------------

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON object, rejecting duplicate member names at any depth.
pub(super) fn parse_strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(m))) => Some(m),
        _ => None,
    }
}

pub(super) fn b64url(part: &str) -> Option<Vec<u8>> {
    // URL_SAFE_NO_PAD rejects padding and non-canonical trailing bits.
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// SipHash-1-3 of `token` under a per-process random key (see [`Unverified`]).
fn fingerprint(token: &str) -> u64 {
    static KEY: std::sync::LazyLock<std::hash::RandomState> =
        std::sync::LazyLock::new(std::hash::RandomState::new);
    std::hash::BuildHasher::hash_one(&*KEY, token)
}

// ---------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------

/// Result of [`inspect`]: structurally sound, NOT verified. Only `kid` and
/// `unverified_iss` may be used, and only to choose the trust config and key
/// (BCP-04). `Debug` deliberately prints no token content.
#[derive(Clone)]
pub struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    unverified_iss: Option<String>,
    /// Shared with the [`VerifiedClaims`] made from it, so verifying copies no claims.
    payload: Arc<Map<String, Value>>,
    /// A keyed hash of the inspected token, so [`verify`] can refuse a different one. This
    /// guards against a programming error, not an attacker (both tokens come from our code), so
    /// SipHash with a per-process random key does: a fraction of SHA-256's cost, and no copy of
    /// the token (docs/performance.md).
    fingerprint: u64,
}

impl fmt::Debug for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified")
            .field("alg", &self.alg)
            .field("has_kid", &self.kid.is_some())
            .field("has_typ", &self.typ.is_some())
            .finish_non_exhaustive()
    }
}

impl Unverified {
    /// Header `alg` (never `none`).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
    /// Header `kid`: untrusted, length-limited printable ASCII (BCP-07).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// Header `typ`, as sent.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    /// Payload `iss` BEFORE signature verification: use only to select the
    /// trust configuration, never as an identity (BCP-04, BCP-05).
    pub fn unverified_iss(&self) -> Option<&str> {
        self.unverified_iss.as_deref()
    }
}

/// Whether five dot-separated parts look like a JWE in compact serialization (RFC 7516 §7.1):
/// every part base64url, and a JSON object header naming its content encryption (`enc`).
fn is_jwe_compact(parts: &[&str]) -> bool {
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.iter().all(|part| base64url(part))
        && b64url(parts[0])
            .and_then(|header| parse_strict_object(&header))
            .is_some_and(|header| header.get("enc").is_some_and(Value::is_string))
}

/// Cheap structural pre-checks, done before any key lookup or network I/O.
pub fn inspect(token: &str, max_len: usize) -> Result<Unverified, JoseError> {
    if token.len() > max_len {
        return Err(JoseError::TokenTooLarge);
    }
    // Bounded split: anything beyond 5 parts is malformed anyway.
    let parts: Vec<&str> = token.splitn(6, '.').collect();
    match parts.len() {
        3 => {}
        // JWE compact (JWTB-09): five base64url parts whose header names an `enc`. Anything else
        // with five parts (two JWTs run together, say) is malformed, not "encrypted", so the
        // audit reason tells the operator what the client really sent.
        5 if is_jwe_compact(&parts) => return Err(JoseError::Encrypted),
        _ => return Err(JoseError::Malformed("expected three dot-separated parts")), // BCP-10
    }
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JoseError::Malformed("empty part"));
    }
    let header_bytes = b64url(h).ok_or(JoseError::Malformed("header is not base64url"))?;
    let payload_bytes = b64url(p).ok_or(JoseError::Malformed("payload is not base64url"))?;
    let sig_bytes = b64url(s).ok_or(JoseError::Malformed("signature is not base64url"))?;
    if sig_bytes.is_empty() {
        return Err(JoseError::Malformed("empty signature"));
    }
    let header = parse_strict_object(&header_bytes).ok_or(JoseError::Malformed(
        "header is not a JSON object without duplicate members",
    ))?;

    // BCP-02: alg present and not none (any case).
    let alg_str = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(JoseError::Malformed("alg is not a string")),
        None => return Err(JoseError::Malformed("alg is missing")),
    };
    if alg_str.eq_ignore_ascii_case("none") {
        return Err(JoseError::AlgNone);
    }
    // BCP-07 / JWKS-07: key-bearing headers are never followed.
    for name in FORBIDDEN_KEY_HEADERS {
        if header.contains_key(name) {
            return Err(JoseError::ForbiddenHeader(name));
        }
    }
    // BCP-09: we understand no extensions, so any crit is refused.
    if header.contains_key("crit") {
        return Err(JoseError::CritUnsupported);
    }
    // BCP-10: no nested JWTs / JWE-only or unencoded-payload parameters.
    if header.contains_key("cty") {
        return Err(JoseError::NestedToken);
    }
    for name in FORBIDDEN_OTHER_HEADERS {
        if header.contains_key(name) {
            return Err(JoseError::ForbiddenHeader(name));
        }
    }
    let alg = Algorithm::from_str(alg_str).map_err(|_| JoseError::AlgNotAllowed)?;

    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => {
            // BCP-07: kid is untrusted; bound it and keep it printable ASCII.
            if k.is_empty()
                || k.len() > MAX_KID_LEN
                || !k.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(JoseError::Malformed(
                    "kid is empty, too long or not printable",
                ));
            }
            Some(k.clone())
        }
        Some(_) => return Err(JoseError::Malformed("kid is not a string")),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) if t.len() <= MAX_TYP_LEN => Some(t.clone()),
        Some(_) => return Err(JoseError::Malformed("typ is not an acceptable string")),
    };

    let payload = parse_strict_object(&payload_bytes).ok_or(JoseError::Malformed(
        "payload is not a JSON object without duplicate members",
    ))?;
    let unverified_iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned);

    Ok(Unverified {
        alg,
        kid,
        typ,
        unverified_iss,
        payload: Arc::new(payload),
        fingerprint: fingerprint(token),
    })
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// Normalises a `typ` for comparison: ASCII case-insensitive, and a leading
/// `application/` is ignored (RFC 7515 section 4.1.9, RFC 8725 section 3.11).
fn normalize_typ(t: &str) -> &str {
    const PREFIX: &str = "application/";
    match t.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
        _ => t,
    }
}

/// Whether two `typ` values are the same media type: [`normalize_typ`] on both, then an ASCII
/// case-insensitive compare (no allocation: this runs for every verified token).
pub(super) fn same_typ(a: &str, b: &str) -> bool {
    normalize_typ(a).eq_ignore_ascii_case(normalize_typ(b))
}

/// How the header `typ` is checked (BCP-08).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypRule {
    /// `typ` must equal one of `values` (normalised compare). An absent `typ`
    /// is accepted only if `allow_absent` (e.g. legacy client assertions, CAUTH-05).
    OneOf {
        values: Vec<String>,
        allow_absent: bool,
    },
    /// Any `typ` (or none) except the listed ones (normalised compare).
    AnyExcept(Vec<String>),
}

impl TypRule {
    /// Exactly one of `values`; absent `typ` refused.
    pub fn exactly(values: &[&str]) -> Self {
        Self::OneOf {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            allow_absent: false,
        }
    }
    /// ID-JAG: `typ` must be `oauth-id-jag+jwt` (IDJAG, INT-02).
    pub fn id_jag() -> Self {
        Self::exactly(&[ID_JAG_TYP])
    }
    /// OIDC ID token: absent or `JWT` (or other untyped values), but never an
    /// explicitly typed token of another kind (IDJAG-ISSUE-13, JWTB-11).
    pub fn id_token() -> Self {
        Self::AnyExcept(NOT_ID_TOKEN_TYPS.iter().map(|v| (*v).to_owned()).collect())
    }
    /// `private_key_jwt` client assertion: `client-authentication+jwt` (RFC 7523bis), the generic
    /// `JWT` most client libraries set by default, or no `typ` (CAUTH-05, docs/decisions.md §4);
    /// never a `typ` of another kind of token.
    pub fn client_assertion() -> Self {
        Self::OneOf {
            values: vec!["client-authentication+jwt".to_owned(), "JWT".to_owned()],
            allow_absent: true,
        }
    }

    fn check(&self, typ: Option<&str>) -> Result<(), JoseError> {
        let ok = match (self, typ) {
            (Self::OneOf { allow_absent, .. }, None) => *allow_absent,
            (Self::OneOf { values, .. }, Some(t)) => values.iter().any(|v| same_typ(v, t)),
            (Self::AnyExcept(_), None) => true,
            (Self::AnyExcept(bad), Some(t)) => !bad.iter().any(|v| same_typ(v, t)),
        };
        if ok { Ok(()) } else { Err(JoseError::WrongTyp) }
    }
}

/// How `aud` is checked (BCP-06).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceRule {
    /// `aud` (string or array) contains at least one of `values`.
    /// If `azp` is `Some(client)`: when `aud` has several entries `azp` must be
    /// present and equal `client`, and a present `azp` must always equal it
    /// (OIDC Core 3.1.3.7, IDJAG-ISSUE-09).
    AnyOf {
        values: Vec<String>,
        azp: Option<String>,
    },
    /// `aud` is exactly this one value: a string, or a one-element array
    /// (ID-JAG acceptance, REQUIREMENTS section 20 item 4).
    Single(String),
    /// `aud` must be present and well-formed, but any value is accepted. Only for tokens this
    /// server signed itself (introspection, revocation): the signature proves we chose it.
    Present,
}

impl AudienceRule {
    /// OIDC ID token issued to `client_id`.
    pub fn id_token_for(client_id: &str) -> Self {
        Self::AnyOf {
            values: vec![client_id.to_owned()],
            azp: Some(client_id.to_owned()),
        }
    }
}

/// Everything `verify` checks, explicitly. No defaults hide a check.
#[derive(Debug, Clone)]
pub struct VerifyRules {
    /// Allowed `alg` values for this issuer (BCP-01). HS* are refused regardless (BCP-03).
    pub algorithms: Vec<Algorithm>,
    pub typ: TypRule,
    /// Expected `iss`, compared byte for byte (BCP-05, FED-02).
    pub issuer: String,
    pub audience: AudienceRule,
    /// Clock skew allowance for `exp`/`nbf`/`iat`; clamped to [`MAX_LEEWAY_SECS`] (BCP-11).
    pub leeway_secs: u64,
    /// Reject when `now - iat > max_age_secs + leeway` (JWTB-05).
    pub max_age_secs: Option<u64>,
    /// Reject when `exp - iat` exceeds this (JWTB-04 far-future `exp`, CAUTH-06).
    pub max_lifetime_secs: Option<u64>,
    /// Require a non-empty string `jti` (replay cache is the caller's job).
    pub require_jti: bool,
}

impl VerifyRules {
    /// Rules with the common defaults: 60 s leeway, no max age, no lifetime
    /// cap, `jti` not required.
    pub fn new(
        algorithms: Vec<Algorithm>,
        typ: TypRule,
        issuer: impl Into<String>,
        audience: AudienceRule,
    ) -> Self {
        Self {
            algorithms,
            typ,
            issuer: issuer.into(),
            audience,
            leeway_secs: 60,
            max_age_secs: None,
            max_lifetime_secs: None,
            require_jti: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn rsa_modulus_bits(n_b64: &str) -> usize {
    match b64url(n_b64) {
        Some(n) => {
            let skip = n.iter().take_while(|b| **b == 0).count();
            match n.get(skip) {
                Some(first) => (n.len() - skip - 1) * 8 + (8 - first.leading_zeros() as usize),
                None => 0,
            }
        }
        None => 0,
    }
}

/// Key type / curve / size compatible with `alg` (BCP-03, JWKS-08). Never true for HS*.
fn key_type_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(p),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => rsa_modulus_bits(&p.n) >= MIN_RSA_BITS,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

/// Whether `jwk` may verify a token signed with `alg`: signature use only,
/// `key_ops` (if any) includes `verify`, JWK `alg` (if any) equals `alg`,
/// key type fits (BCP-03, JWKS-08).
pub fn key_usable_for(jwk: &Jwk, alg: Algorithm) -> bool {
    if is_hmac(alg) {
        return false;
    }
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return false,
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return false;
    }
    if let Some(kalg) = jwk.common.key_algorithm
        && kalg != KeyAlgorithm::from(alg)
    {
        return false;
    }
    key_type_fits(jwk, alg)
}

/// Picks the verification key for a token from a JWK set. With a `kid`: the
/// first key with that `kid` usable for the token's `alg`. Without a `kid`:
/// the only usable key, if exactly one. `use: enc` keys are never chosen.
pub fn select_key<'a>(set: &'a JwkSet, unverified: &Unverified) -> Option<&'a Jwk> {
    select_among(&set.keys, |jwk| jwk, unverified)
}

/// [`select_key`]'s rule over any list of keys that carry a JWK (also [`KeySet::select`]).
pub(crate) fn select_among<'a, K>(
    keys: &'a [K],
    jwk_of: impl Fn(&K) -> &Jwk,
    unverified: &Unverified,
) -> Option<&'a K> {
    let alg = unverified.alg;
    let usable = |k: &&K| key_usable_for(jwk_of(k), alg);
    match unverified.kid.as_deref() {
        Some(kid) => keys
            .iter()
            .filter(|k| jwk_of(k).common.key_id.as_deref() == Some(kid))
            .find(usable),
        None => {
            let mut found = keys.iter().filter(usable);
            match (found.next(), found.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

/// Claims of a token whose signature and rules were verified.
#[derive(Clone)]
pub struct VerifiedClaims {
    claims: Arc<Map<String, Value>>,
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: Option<String>,
}

impl fmt::Debug for VerifiedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims may be personal data; keep Debug minimal.
        f.debug_struct("VerifiedClaims")
            .field("alg", &self.alg)
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .finish_non_exhaustive()
    }
}

impl VerifiedClaims {
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    pub fn iss(&self) -> &str {
        &self.iss
    }
    pub fn sub(&self) -> &str {
        &self.sub
    }
    /// `aud` as a list (a string `aud` is a one-element list).
    pub fn aud(&self) -> &[String] {
        &self.aud
    }
    pub fn exp(&self) -> i64 {
        self.exp
    }
    pub fn iat(&self) -> i64 {
        self.iat
    }
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    /// A string claim, `None` if absent or not a string.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
    /// Any claim as JSON.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    /// The claims, owned: without a copy once the [`Unverified`] they came from is gone.
    pub fn into_claims(self) -> Map<String, Value> {
        Arc::try_unwrap(self.claims).unwrap_or_else(|shared| (*shared).clone())
    }
}

/// NumericDate: integer or finite number (fraction floored). `None` if absent.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JoseError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                // Saturating cast; absurd values are then caught by the time checks.
                Ok(Some(f.floor() as i64))
            } else {
                Err(JoseError::InvalidClaim(name))
            }
        }
        Some(_) => Err(JoseError::InvalidClaim(name)),
    }
}

fn required_string(claims: &Map<String, Value>, name: &'static str) -> Result<String, JoseError> {
    match claims.get(name) {
        None => Err(JoseError::MissingClaim(name)),
        Some(Value::String(s)) if s.is_empty() => Err(JoseError::MissingClaim(name)),
        Some(Value::String(s)) => identifier(s, name),
        Some(_) => Err(JoseError::InvalidClaim(name)),
    }
}

/// An identifying claim (`iss`, `sub`, `jti`) as recorded: never with a NUL character, which no
/// issuer means and PostgreSQL cannot store — a `jti` with one would fail the group commit of
/// every request batched with it.
fn identifier(value: &str, name: &'static str) -> Result<String, JoseError> {
    if value.contains('\0') {
        return Err(JoseError::InvalidClaim(name));
    }
    Ok(value.to_owned())
}

fn check_audience(
    claims: &Map<String, Value>,
    rule: &AudienceRule,
) -> Result<Vec<String>, JoseError> {
    let aud: Vec<String> = match claims.get("aud") {
        None => return Err(JoseError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(JoseError::InvalidClaim("aud"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JoseError::InvalidClaim("aud")),
    };
    match rule {
        AudienceRule::Present => {
            if aud.is_empty() {
                return Err(JoseError::MissingClaim("aud"));
            }
        }
        AudienceRule::Single(expected) => {
            if aud.len() != 1 || aud[0] != *expected {
                return Err(JoseError::WrongAudience);
            }
        }
        AudienceRule::AnyOf { values, azp } => {
            if !aud.iter().any(|a| values.contains(a)) {
                return Err(JoseError::WrongAudience);
            }
            if let Some(client) = azp {
                match claims.get("azp") {
                    Some(Value::String(s)) if s == client => {}
                    Some(Value::String(_)) => return Err(JoseError::WrongAuthorizedParty),
                    Some(_) => return Err(JoseError::InvalidClaim("azp")),
                    None if aud.len() > 1 => return Err(JoseError::WrongAuthorizedParty),
                    None => {}
                }
            }
        }
    }
    Ok(aud)
}

/// Verifies `token` (which must be the one given to [`inspect`]) with `key`
/// against `rules` at time `now` (unix seconds).
pub fn verify(
    unverified: &Unverified,
    token: &str,
    key: &VerifyingKey,
    rules: &VerifyRules,
    now: i64,
) -> Result<VerifiedClaims, JoseError> {
    if fingerprint(token) != unverified.fingerprint {
        return Err(JoseError::InspectMismatch);
    }
    let alg = unverified.alg;
    // BCP-03: never HMAC for inbound tokens (all our issuers use asymmetric keys).
    if is_hmac(alg) {
        return Err(JoseError::AlgNotAllowed);
    }
    // BCP-01: per-issuer allow-list.
    if !rules.algorithms.contains(&alg) {
        return Err(JoseError::AlgNotAllowed);
    }
    // BCP-03 / JWKS-08: key type, size, use and JWK alg bound to the header alg.
    if !key_usable_for(key.jwk(), alg) {
        return Err(JoseError::KeyAlgMismatch);
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(JoseError::Malformed("expected three dot-separated parts"))?;
    // JWTB-07 / BCP-04: signature first; nothing below is trusted before this.
    key.verify_signature(alg, signing_input.as_bytes(), signature)?;

    // BCP-08: explicit typing.
    rules.typ.check(unverified.typ.as_deref())?;

    let claims = &unverified.payload;
    // BCP-05 / FED-02: exact issuer, no normalisation.
    let iss = required_string(claims, "iss")?;
    if iss != rules.issuer {
        return Err(JoseError::WrongIssuer);
    }

    let leeway = rules.leeway_secs.min(MAX_LEEWAY_SECS) as i64; // BCP-11
    let exp = numeric_date(claims, "exp")?.ok_or(JoseError::MissingClaim("exp"))?; // JWTB-04
    if now >= exp.saturating_add(leeway) {
        return Err(JoseError::Expired);
    }
    let nbf = numeric_date(claims, "nbf")?; // JWTB-05
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(JoseError::NotYetValid);
    }
    let iat = numeric_date(claims, "iat")?.ok_or(JoseError::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(JoseError::IssuedInFuture);
    }
    if let Some(max_age) = rules.max_age_secs {
        let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
        if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
            return Err(JoseError::TooOld);
        }
    }
    if let Some(max_life) = rules.max_lifetime_secs {
        let max_life = i64::try_from(max_life).unwrap_or(i64::MAX);
        if exp.saturating_sub(iat) > max_life {
            return Err(JoseError::LifetimeTooLong);
        }
    }

    let aud = check_audience(claims, &rules.audience)?; // BCP-06, JWTB-03
    let sub = required_string(claims, "sub")?; // JWTB-02
    let jti = if rules.require_jti {
        Some(required_string(claims, "jti")?)
    } else {
        match claims.get("jti") {
            None => None,
            Some(Value::String(s)) => Some(identifier(s, "jti")?),
            Some(_) => return Err(JoseError::InvalidClaim("jti")),
        }
    };

    Ok(VerifiedClaims {
        claims: Arc::clone(claims),
        alg,
        kid: unverified.kid.clone(),
        typ: unverified.typ.clone(),
        iss,
        sub,
        aud,
        exp,
        iat,
        nbf,
        jti,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn forgeries_are_told_apart_from_the_wear_of_honest_tokens() {
        for forged in [
            JoseError::BadSignature,
            JoseError::AlgNone,
            JoseError::WrongIssuer,
            JoseError::WrongAudience,
            JoseError::Malformed("segments"),
        ] {
            assert!(forged.suggests_forgery(), "{forged:?}");
        }
        for honest in [
            JoseError::Expired,
            JoseError::TooOld,
            JoseError::UnknownKid,
            JoseError::KeyUnavailable,
        ] {
            assert!(!honest.suggests_forgery(), "{honest:?}");
        }
    }
    use crate::jose::testutil::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.com";
    const CLIENT: &str = "client-a";
    const NOW: i64 = 1_700_000_000;

    fn id_token_rules() -> VerifyRules {
        VerifyRules::new(
            vec![Algorithm::RS256, Algorithm::ES256],
            TypRule::id_token(),
            ISS,
            AudienceRule::id_token_for(CLIENT),
        )
    }

    fn id_jag_rules() -> VerifyRules {
        let mut r = VerifyRules::new(
            vec![Algorithm::RS256, Algorithm::ES256],
            TypRule::id_jag(),
            ISS,
            AudienceRule::Single("https://ras.example.com".into()),
        );
        r.require_jti = true;
        r
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "alice", "aud": CLIENT, "exp": NOW + 300, "iat": NOW, "jti": "j1"})
    }

    fn es_header() -> Value {
        json!({"alg": "ES256", "kid": "ec-1"})
    }

    fn with(mut v: Value, k: &str, new: Value) -> Value {
        v[k] = new;
        v
    }

    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    /// inspect + verify with the EC key.
    fn check(token: &str, rules: &VerifyRules, now: i64) -> Result<VerifiedClaims, JoseError> {
        let u = inspect(token, DEFAULT_MAX_TOKEN_LEN)?;
        verify(&u, token, &VerifyingKey::new(ec_key().jwk()), rules, now)
    }

    fn es(header: &Value, payload: &Value) -> String {
        es256(ec_key(), header, payload)
    }

    fn reason(r: Result<VerifiedClaims, JoseError>) -> &'static str {
        r.expect_err("token must be rejected").reason()
    }

    // --- happy paths -------------------------------------------------------

    #[test]
    fn valid_es256_id_token_verifies_with_accessors() {
        let t = es(&es_header(), &claims());
        let v = check(&t, &id_token_rules(), NOW).unwrap();
        assert_eq!(v.sub(), "alice");
        assert_eq!(v.iss(), ISS);
        assert_eq!(v.aud(), [CLIENT.to_string()]);
        assert_eq!(v.exp(), NOW + 300);
        assert_eq!(v.iat(), NOW);
        assert_eq!(v.jti(), Some("j1"));
        assert_eq!(v.kid(), Some("ec-1"));
        assert_eq!(v.alg(), Algorithm::ES256);
        assert_eq!(v.str_claim("sub"), Some("alice"));
        assert_eq!(v.str_claim("exp"), None);
        // Debug prints no claim values.
        assert!(!format!("{v:?}").contains("alice"));
    }

    #[test]
    fn valid_rs256_token_verifies() {
        let t = rs256(
            rsa_key(),
            &json!({"alg": "RS256", "kid": "rsa-1"}),
            &claims(),
        );
        let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
        let v = verify(
            &u,
            &t,
            &VerifyingKey::new(rsa_key().jwk()),
            &id_token_rules(),
            NOW,
        )
        .unwrap();
        assert_eq!(v.sub(), "alice");
    }

    #[test]
    fn token_from_jsonwebtoken_encoder_verifies() {
        // Interop: a token produced by jsonwebtoken's own encoder.
        let pkcs8 = ec_key().pair.to_pkcs8v1().unwrap();
        let ek = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
        h.kid = Some("ec-1".into());
        let t = jsonwebtoken::encode(&h, &claims(), &ek).unwrap();
        check(&t, &id_token_rules(), NOW).unwrap();
    }

    #[test]
    fn inspect_exposes_untrusted_fields_only_for_selection() {
        let t = es(
            &json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}),
            &claims(),
        );
        let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
        assert_eq!(u.alg(), Algorithm::ES256);
        assert_eq!(u.kid(), Some("ec-1"));
        assert_eq!(u.typ(), Some("JWT"));
        assert_eq!(u.unverified_iss(), Some(ISS));
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("ec-1") && !dbg.contains("idp.example"));
    }

    // --- alg none -----------------------------------------------------------

    /// BCP-02, EMA-05: `alg: none` in any case is refused by `inspect`, the first step of every
    /// JWT frontdesk accepts (ID tokens, ID-JAGs and chaining grants, client assertions).
    #[test]
    fn bcp02_alg_none_rejected_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let input = signing_input(&format!(r#"{{"alg":"{alg}"}}"#), &claims().to_string());
            // Unsigned token with empty signature, and with a junk signature.
            assert_eq!(
                inspect(&format!("{input}."), 10_000).unwrap_err().reason(),
                "malformed"
            );
            let t = format!("{input}.{}", b64(b"sig"));
            assert_eq!(inspect(&t, 10_000).unwrap_err(), JoseError::AlgNone);
        }
    }

    // --- algorithms and keys ------------------------------------------------

    /// BCP-03: an HS256 token keyed with the issuer's RSA public key (DER or JWK) is refused,
    /// even when an allow-list wrongly contains HS256, and no key is ever selected for HS*.
    #[test]
    fn bcp03_hs256_signed_with_rsa_public_key_rejected() {
        use aws_lc_rs::hmac;
        let k = rsa_key();
        for secret in [k.public_der(), serde_json::to_vec(&k.jwk_value()).unwrap()] {
            let input = signing_input(r#"{"alg":"HS256","kid":"rsa-1"}"#, &claims().to_string());
            let tag = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &secret),
                input.as_bytes(),
            );
            let t = format!("{input}.{}", b64(tag.as_ref()));
            let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
            // Even a misconfigured allow-list containing HS256 must not help.
            let mut rules = id_token_rules();
            rules.algorithms.push(Algorithm::HS256);
            let e = verify(&u, &t, &VerifyingKey::new(k.jwk()), &rules, NOW).unwrap_err();
            assert_eq!(e, JoseError::AlgNotAllowed);
            // And select_key never offers a key for HS*.
            let set = JwkSet {
                keys: vec![k.jwk()],
            };
            assert!(select_key(&set, &u).is_none());
        }
    }

    /// BCP-03: HMAC is refused even with a symmetric (`oct`) key configured.
    #[test]
    fn bcp03_hs256_with_oct_jwk_rejected() {
        let oct: Jwk =
            serde_json::from_value(json!({"kty":"oct","k": b64(b"secret"),"kid":"o"})).unwrap();
        let input = signing_input(r#"{"alg":"HS256","kid":"o"}"#, &claims().to_string());
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret"),
            input.as_bytes(),
        );
        let t = format!("{input}.{}", b64(tag.as_ref()));
        let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
        let mut rules = id_token_rules();
        rules.algorithms = vec![Algorithm::HS256];
        assert_eq!(
            verify(&u, &t, &VerifyingKey::new(oct), &rules, NOW).unwrap_err(),
            JoseError::AlgNotAllowed
        );
    }

    /// BCP-01, EMA-05: an algorithm outside the issuer's allow-list is refused even when the
    /// key could verify it (the rules an ID token, an ID-JAG or a client assertion is checked with
    /// all carry their issuer's list).
    #[test]
    fn bcp01_rs384_rejected_when_only_rs256_es256_allowed() {
        let k = rsa_key();
        let input = signing_input(r#"{"alg":"RS384","kid":"rsa-1"}"#, &claims().to_string());
        let t = format!("{input}.{}", b64(&k.sign_rs384(input.as_bytes())));
        let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
        let mut jwk = k.jwk();
        jwk.common.key_algorithm = None; // even with no JWK alg pin
        assert_eq!(
            verify(&u, &t, &VerifyingKey::new(jwk), &id_token_rules(), NOW).unwrap_err(),
            JoseError::AlgNotAllowed
        );
    }

    #[test]
    fn unknown_alg_name_rejected() {
        let t = es256_raw(ec_key(), r#"{"alg":"ES999"}"#, &claims().to_string());
        assert_eq!(inspect(&t, 10_000).unwrap_err(), JoseError::AlgNotAllowed);
    }

    /// JWKS-08, BCP-03: the key's type, JWK `alg` and `use` must fit the header `alg`.
    #[test]
    fn jwks08_key_type_must_match_alg() {
        // ES256 header verified with an RSA key -> refused before crypto.
        let t = es(&json!({"alg": "ES256"}), &claims());
        let u = inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap();
        let e = verify(
            &u,
            &t,
            &VerifyingKey::new(rsa_key().jwk()),
            &id_token_rules(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e, JoseError::KeyAlgMismatch);
        // JWK alg present and different from header alg -> refused.
        let mut jwk = ec_key().jwk();
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES384);
        assert_eq!(
            verify(&u, &t, &VerifyingKey::new(jwk), &id_token_rules(), NOW).unwrap_err(),
            JoseError::KeyAlgMismatch
        );
        // use=enc keys are never used.
        let mut jwk = ec_key().jwk();
        jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert_eq!(
            verify(&u, &t, &VerifyingKey::new(jwk), &id_token_rules(), NOW).unwrap_err(),
            JoseError::KeyAlgMismatch
        );
    }

    /// JWKS-08: RSA keys under 2048 bits are not usable.
    #[test]
    fn jwks08_small_rsa_modulus_rejected() {
        assert_eq!(
            rsa_modulus_bits(rsa_key().jwk_value()["n"].as_str().unwrap()),
            2048
        );
        let small: Jwk = serde_json::from_value(
            json!({"kty":"RSA","n": b64(&[0xC0u8; 128]),"e":"AQAB"}), // 1024-bit
        )
        .unwrap();
        assert!(!key_usable_for(&small, Algorithm::RS256));
    }

    // --- tampering / malformed --------------------------------------------

    /// JWTB-07: a tampered signature or payload, or another key under the same `kid`, is a bad
    /// signature.
    #[test]
    fn jwtb07_tampered_signature_and_payload_rejected() {
        let t = es(&es_header(), &claims());
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig_bytes[5] ^= 0x01;
        let bad = format!("{input}.{}", b64(&sig_bytes));
        assert_eq!(reason(check(&bad, &id_token_rules(), NOW)), "bad_signature");

        // Payload swapped for another (sub=mallory), original signature kept.
        let (h, _) = input.split_once('.').unwrap();
        let evil = with(claims(), "sub", json!("mallory"));
        let forged = format!("{h}.{}.{sig}", b64(evil.to_string().as_bytes()));
        assert_eq!(
            reason(check(&forged, &id_token_rules(), NOW)),
            "bad_signature"
        );

        // Truncated (still valid base64url) signature.
        let short = &t[..t.len() - 2];
        assert_eq!(
            reason(check(short, &id_token_rules(), NOW)),
            "bad_signature"
        );

        // Signature by another key with the same kid.
        let other = es256(ec_key2(), &es_header(), &claims());
        assert_eq!(
            reason(check(&other, &id_token_rules(), NOW)),
            "bad_signature"
        );
    }

    /// BCP-04: the signature is checked before any claim. A token signed by another key whose
    /// every claim is wrong too fails on its signature, whatever the rules; only a genuine
    /// signature lets the claim checks answer.
    #[test]
    fn bcp04_the_signature_is_checked_before_any_claim() {
        let everything_wrong = json!({"iss": "https://evil.example", "aud": "someone-else",
            "exp": NOW - 3600, "iat": NOW + 3600, "nbf": NOW + 3600});
        let header = with(es_header(), "typ", json!("at+jwt"));
        let forged = es256(ec_key2(), &header, &everything_wrong);
        for rules in [id_token_rules(), id_jag_rules()] {
            assert_eq!(
                check(&forged, &rules, NOW).unwrap_err(),
                JoseError::BadSignature
            );
        }
        let genuine = es(&header, &everything_wrong);
        assert_eq!(reason(check(&genuine, &id_token_rules(), NOW)), "wrong_typ");
        assert_eq!(reason(check(&genuine, &id_jag_rules(), NOW)), "wrong_typ");
    }

    /// BCP-10: compact serialization only; anything else is refused as malformed.
    #[test]
    fn bcp10_malformed_inputs_rejected_cleanly() {
        let good = es(&es_header(), &claims());
        let (h, rest) = good.split_once('.').unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            "abc".into(),
            "a.b".into(),
            json!({"payload": "e30", "signatures": []}).to_string(), // JSON serialization
            format!("{good}.x"),                                     // four parts
            format!("{good}.x.y.z"),                                 // six parts
            format!(".{rest}"),                                      // empty header
            format!("{h}..{}", b64(b"s")),                           // empty payload
            good[..good.len() - 1].to_string(), // truncated: 85 base64 chars is never valid
            format!("{h}=.{rest}"),             // padding
            format!("{h}+.{rest}"),             // non-url-safe alphabet
            format!("{}.{rest}", b64(b"[1,2]")), // header not an object
            format!("{}.{rest}", b64(b"{\"alg\":")), // truncated JSON
            format!("{}.{}.{}", h, b64(b"\"str\""), b64(b"s")), // payload not an object
            format!("{}.{rest}", b64(br#"{"alg":5}"#)), // alg wrong type
            format!("{}.{rest}", b64(br#"{"kid":"x"}"#)), // alg missing
            format!("{}.{rest}", b64(br#"{"alg":"ES256","kid":7}"#)),
            format!("{}.{rest}", b64(br#"{"alg":"ES256","kid":""}"#)),
            format!("{}.{rest}", b64(br#"{"alg":"ES256","typ":["JWT"]}"#)),
        ];
        for (i, c) in cases.iter().enumerate() {
            let e = inspect(c, DEFAULT_MAX_TOKEN_LEN)
                .map(|_| ())
                .expect_err(&format!("case {i} must be refused"));
            assert_eq!(e.reason(), "malformed");
            assert!(!e.description().contains(c.as_str()) || c.is_empty());
        }
    }

    /// BCP-10: duplicate member names in the header or the claims, at any depth.
    #[test]
    fn bcp10_duplicate_json_members_rejected() {
        let payload = format!(
            r#"{{"iss":"{ISS}","sub":"alice","sub":"admin","aud":"{CLIENT}","exp":{},"iat":{NOW}}}"#,
            NOW + 300
        );
        let t = es256_raw(ec_key(), r#"{"alg":"ES256","kid":"ec-1"}"#, &payload);
        assert_eq!(inspect(&t, 10_000).unwrap_err().reason(), "malformed");
        // Duplicate via escape sequence.
        let t = es256_raw(
            ec_key(),
            r#"{"alg":"ES256","\u0061lg":"none"}"#,
            &claims().to_string(),
        );
        assert_eq!(inspect(&t, 10_000).unwrap_err().reason(), "malformed");
        // Duplicate nested member.
        let payload = with(claims(), "x", json!(null))
            .to_string()
            .replace("\"x\":null", "\"x\":{\"a\":1,\"a\":2}");
        let t = es256_raw(ec_key(), r#"{"alg":"ES256"}"#, &payload);
        assert_eq!(inspect(&t, 10_000).unwrap_err().reason(), "malformed");
    }

    /// BCP-10: a JWE (five parts) is not a token we expect.
    #[test]
    fn jwe_five_parts_rejected_as_encrypted() {
        let t = format!(
            "{}.{}.{}.{}.{}",
            b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
            "a",
            "b",
            "c",
            "d"
        );
        assert_eq!(inspect(&t, 10_000).unwrap_err(), JoseError::Encrypted);
    }

    /// JWTB-09: two JWTs run together (five parts, but no JWE header) are malformed, not
    /// "encrypted": the reason says what was sent.
    #[test]
    fn two_jwts_run_together_are_malformed_not_encrypted() {
        let jwt = format!("{}.{}.{}", b64(br#"{"alg":"RS256"}"#), b64(b"{}"), "c2ln");
        for joined in [format!("{jwt} {jwt}"), format!("{jwt}.{jwt}")] {
            let error = inspect(&joined, 10_000).unwrap_err();
            assert!(
                matches!(error, JoseError::Malformed(_)),
                "{joined}: {error:?}"
            );
        }
    }

    #[test]
    fn oversized_token_rejected_before_parsing() {
        let big = with(claims(), "pad", json!("x".repeat(1024 * 1024)));
        let t = es(&es_header(), &big);
        assert!(t.len() > 1024 * 1024);
        assert_eq!(
            inspect(&t, DEFAULT_MAX_TOKEN_LEN).unwrap_err(),
            JoseError::TokenTooLarge
        );
        // A 1 MB blob of garbage also fails on size, not on parsing.
        assert_eq!(
            inspect(&"a".repeat(1 << 20), 8192).unwrap_err(),
            JoseError::TokenTooLarge
        );
    }

    // --- headers -------------------------------------------------------------

    /// BCP-07: `jku`, `x5u`, `jwk` and `x5c` are never used to find a key; a token carrying one
    /// is refused before any key lookup.
    #[test]
    fn bcp07_key_bearing_headers_rejected() {
        let cases = [
            ("jku", json!("https://evil.example/jwks")),
            ("x5u", json!("https://evil.example/cert")),
            ("jwk", ec_key2().jwk_value()),
            ("x5c", json!(["MIIB"])),
        ];
        for (name, value) in cases {
            let h = with(es_header(), name, value);
            let t = es(&h, &claims());
            assert_eq!(
                inspect(&t, 10_000).unwrap_err(),
                JoseError::ForbiddenHeader(name)
            );
        }
    }

    /// BCP-07: `kid` is untrusted input, only compared: a path or SQL fragment selects nothing.
    #[test]
    fn bcp07_hostile_kid_is_just_unknown() {
        let t = es(
            &json!({"alg":"ES256","kid":"../../etc/passwd' OR 1=1 --"}),
            &claims(),
        );
        let u = inspect(&t, 10_000).unwrap();
        let set = JwkSet {
            keys: vec![ec_key().jwk()],
        };
        assert!(select_key(&set, &u).is_none());
        // Over-long and control-character kids are refused outright.
        let long = es(
            &json!({"alg":"ES256","kid":"k".repeat(MAX_KID_LEN + 1)}),
            &claims(),
        );
        assert_eq!(inspect(&long, 10_000).unwrap_err().reason(), "malformed");
        let ctl = es(&json!({"alg":"ES256","kid":"a\nb"}), &claims());
        assert_eq!(inspect(&ctl, 10_000).unwrap_err().reason(), "malformed");
    }

    /// BCP-09: any `crit` header is refused (no extension is understood).
    #[test]
    fn bcp09_crit_rejected() {
        for crit in [json!(["x"]), json!(["exp"]), json!([])] {
            let t = es(&with(es_header(), "crit", crit), &claims());
            assert_eq!(inspect(&t, 10_000).unwrap_err(), JoseError::CritUnsupported);
        }
    }

    /// BCP-10: nested (`cty`) and JWE-only or unencoded-payload headers are refused.
    #[test]
    fn bcp10_nested_and_jwe_headers_rejected() {
        let t = es(&with(es_header(), "cty", json!("JWT")), &claims());
        assert_eq!(inspect(&t, 10_000).unwrap_err(), JoseError::NestedToken);
        for name in ["enc", "zip", "b64"] {
            let t = es(&with(es_header(), name, json!("x")), &claims());
            assert_eq!(
                inspect(&t, 10_000).unwrap_err(),
                JoseError::ForbiddenHeader(name)
            );
        }
    }

    // --- typ -----------------------------------------------------------------

    /// BCP-08, IDJAG-ISSUE-13: the ID token rule refuses every explicitly typed JWT of another kind (an ID-JAG,
    /// an access token, a DPoP proof, a client assertion ...), so none can stand in for an ID token.
    #[test]
    fn idjag_issue13_id_jag_presented_as_id_token_refused() {
        for typ in NOT_ID_TOKEN_TYPS.iter().map(|t| t.to_string()).chain([
            "application/oauth-id-jag+jwt".to_string(),
            "AT+JWT".to_string(),
        ]) {
            let t = es(&with(es_header(), "typ", json!(typ)), &claims());
            assert_eq!(
                reason(check(&t, &id_token_rules(), NOW)),
                "wrong_typ",
                "{typ}"
            );
        }
        // ID tokens: absent or JWT accepted.
        check(&es(&es_header(), &claims()), &id_token_rules(), NOW).unwrap();
        for typ in ["JWT", "jwt", "application/jwt"] {
            let t = es(&with(es_header(), "typ", json!(typ)), &claims());
            check(&t, &id_token_rules(), NOW).unwrap();
        }
    }

    /// BCP-08: the ID-JAG rule (leg 2) accepts only `oauth-id-jag+jwt`, never an untyped JWT or
    /// an access token.
    #[test]
    fn bcp08_id_jag_rule_accepts_only_id_jag_typ() {
        let c = with(claims(), "aud", json!("https://ras.example.com"));
        for typ in [
            "oauth-id-jag+jwt",
            "application/oauth-id-jag+jwt",
            "OAuth-ID-JAG+JWT",
        ] {
            let t = es(&with(es_header(), "typ", json!(typ)), &c);
            check(&t, &id_jag_rules(), NOW).unwrap();
        }
        for typ in ["JWT", "at+jwt", "oauth-id-jag", "application/at+jwt"] {
            let t = es(&with(es_header(), "typ", json!(typ)), &c);
            assert_eq!(
                reason(check(&t, &id_jag_rules(), NOW)),
                "wrong_typ",
                "{typ}"
            );
        }
        let t = es(&es_header(), &c); // absent
        assert_eq!(reason(check(&t, &id_jag_rules(), NOW)), "wrong_typ");
    }

    /// CAUTH-05, BCP-08: a client assertion may be typed `client-authentication+jwt`, `JWT` or
    /// not at all (docs/decisions.md §4), and never as another kind of token, so an ID-JAG, an
    /// access token or a DPoP proof cannot pass as one.
    #[test]
    fn cauth05_client_assertion_typ_rule() {
        let r = TypRule::client_assertion();
        assert!(r.check(None).is_ok());
        for typ in [
            "client-authentication+jwt",
            "application/client-authentication+jwt",
            "JWT",
            "jwt",
        ] {
            assert!(r.check(Some(typ)).is_ok(), "{typ}");
        }
        for typ in ["oauth-id-jag+jwt", "at+jwt", "dpop+jwt", "secevent+jwt"] {
            assert_eq!(r.check(Some(typ)), Err(JoseError::WrongTyp), "{typ}");
        }
    }

    // --- issuer --------------------------------------------------------------

    /// BCP-05, FED-02, EMA-05: `iss` must equal the trusted issuer whose key verified the token, byte for
    /// byte.
    #[test]
    fn fed02_issuer_exact_match_no_trailing_slash_normalisation() {
        for iss in [
            json!(format!("{ISS}/")),
            json!("https://IDP.example.com"),
            json!("https://other.example.com"),
            json!(""),
        ] {
            let t = es(&es_header(), &with(claims(), "iss", iss.clone()));
            assert!(
                matches!(
                    check(&t, &id_token_rules(), NOW),
                    Err(JoseError::WrongIssuer | JoseError::MissingClaim("iss"))
                ),
                "{iss}"
            );
        }
        let mut rules = id_token_rules();
        rules.issuer = format!("{ISS}/");
        assert_eq!(
            reason(check(&es(&es_header(), &claims()), &rules, NOW)),
            "wrong_issuer"
        );
        let t = es(&es_header(), &without(claims(), "iss"));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::MissingClaim("iss")
        );
        let t = es(
            &es_header(),
            &with(claims(), "iss", json!(["https://idp.example.com"])),
        );
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::InvalidClaim("iss")
        );
    }

    // --- audience --------------------------------------------------------------

    /// BCP-06, EMA-05: an ID token's `aud` must name our client at the IdP; missing or
    /// malformed `aud` is refused.
    #[test]
    fn bcp06_wrong_audience_rejected() {
        for aud in [
            json!("client-b"),
            json!(["client-b", "client-c"]),
            json!([]),
        ] {
            let t = es(&es_header(), &with(claims(), "aud", aud));
            assert_eq!(reason(check(&t, &id_token_rules(), NOW)), "wrong_audience");
        }
        let t = es(&es_header(), &without(claims(), "aud"));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::MissingClaim("aud")
        );
        let t = es(&es_header(), &with(claims(), "aud", json!([CLIENT, 5])));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::InvalidClaim("aud")
        );
    }

    /// IDJAG-ISSUE-09: with several audiences `azp` must name our client, and a present `azp`
    /// must always name it.
    #[test]
    fn idjag_issue09_multi_aud_requires_matching_azp() {
        let multi = with(claims(), "aud", json!([CLIENT, "client-b"]));
        let t = es(&es_header(), &multi);
        assert_eq!(reason(check(&t, &id_token_rules(), NOW)), "wrong_azp");
        let t = es(&es_header(), &with(multi.clone(), "azp", json!("client-b")));
        assert_eq!(reason(check(&t, &id_token_rules(), NOW)), "wrong_azp");
        let t = es(&es_header(), &with(multi, "azp", json!(CLIENT)));
        check(&t, &id_token_rules(), NOW).unwrap();
        // Single aud with a foreign azp is also refused.
        let t = es(&es_header(), &with(claims(), "azp", json!("client-b")));
        assert_eq!(reason(check(&t, &id_token_rules(), NOW)), "wrong_azp");
    }

    /// BCP-06: an ID-JAG's `aud` is exactly our issuer (one value).
    #[test]
    fn single_audience_rule_for_id_jag() {
        let ras = "https://ras.example.com";
        let hdr = with(es_header(), "typ", json!(ID_JAG_TYP));
        for ok in [json!(ras), json!([ras])] {
            check(&es(&hdr, &with(claims(), "aud", ok)), &id_jag_rules(), NOW).unwrap();
        }
        for bad in [
            json!([ras, "https://other"]),
            json!(format!("{ras}/")),
            json!([]),
        ] {
            let t = es(&hdr, &with(claims(), "aud", bad));
            assert_eq!(reason(check(&t, &id_jag_rules(), NOW)), "wrong_audience");
        }
    }

    // --- time ----------------------------------------------------------------

    /// BCP-11, EMA-05: `exp` with the 60 s skew, exactly at its edge.
    #[test]
    fn bcp11_exp_boundaries() {
        let c = with(with(claims(), "exp", json!(NOW)), "iat", json!(NOW - 100));
        let t = es(&es_header(), &c);
        let r = id_token_rules(); // leeway 60
        check(&t, &r, NOW + 59).unwrap();
        assert_eq!(reason(check(&t, &r, NOW + 60)), "expired");
        let mut strict = id_token_rules();
        strict.leeway_secs = 0;
        assert_eq!(reason(check(&t, &strict, NOW)), "expired");
        check(&t, &strict, NOW - 1).unwrap();
        let t = es(&es_header(), &without(claims(), "exp"));
        assert_eq!(
            check(&t, &r, NOW).unwrap_err(),
            JoseError::MissingClaim("exp")
        );
        let t = es(&es_header(), &with(claims(), "exp", json!("tomorrow")));
        assert_eq!(
            check(&t, &r, NOW).unwrap_err(),
            JoseError::InvalidClaim("exp")
        );
    }

    /// BCP-11: `nbf` at and beyond the skew.
    #[test]
    fn bcp11_nbf_in_future_rejected() {
        let t = es(&es_header(), &with(claims(), "nbf", json!(NOW + 61)));
        assert_eq!(reason(check(&t, &id_token_rules(), NOW)), "not_yet_valid");
        let t = es(&es_header(), &with(claims(), "nbf", json!(NOW + 60)));
        check(&t, &id_token_rules(), NOW).unwrap();
    }

    /// BCP-11, EMA-05: `iat` required, and not beyond the skew in the future.
    #[test]
    fn bcp11_iat_future_beyond_and_within_leeway() {
        let t = es(&es_header(), &with(claims(), "iat", json!(NOW + 61)));
        assert_eq!(
            reason(check(&t, &id_token_rules(), NOW)),
            "issued_in_future"
        );
        let t = es(&es_header(), &with(claims(), "iat", json!(NOW + 60)));
        check(&t, &id_token_rules(), NOW).unwrap();
        let t = es(&es_header(), &without(claims(), "iat"));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::MissingClaim("iat")
        );
    }

    /// BCP-11: a misconfigured skew is clamped to `MAX_LEEWAY_SECS`.
    #[test]
    fn bcp11_leeway_is_bounded() {
        let t = es(&es_header(), &with(claims(), "exp", json!(NOW)));
        let mut r = id_token_rules();
        r.leeway_secs = 86_400; // misconfiguration is clamped to MAX_LEEWAY_SECS
        check(&t, &r, NOW + MAX_LEEWAY_SECS as i64 - 1).unwrap();
        assert_eq!(
            reason(check(&t, &r, NOW + MAX_LEEWAY_SECS as i64)),
            "expired"
        );
    }

    /// JWTB-05: the maximum age since `iat` and the maximum lifetime `exp - iat`, at their edges.
    #[test]
    fn jwtb05_too_old_and_lifetime_caps() {
        let c = with(
            with(claims(), "iat", json!(NOW - 1000)),
            "exp",
            json!(NOW + 100),
        );
        let t = es(&es_header(), &c);
        let mut r = id_token_rules();
        r.max_age_secs = Some(940);
        check(&t, &r, NOW).unwrap(); // 1000 <= 940 + 60
        r.max_age_secs = Some(939);
        assert_eq!(reason(check(&t, &r, NOW)), "too_old");
        let mut r = id_token_rules();
        r.max_lifetime_secs = Some(1099);
        assert_eq!(reason(check(&t, &r, NOW)), "lifetime_too_long");
        r.max_lifetime_secs = Some(1100);
        check(&t, &r, NOW).unwrap();
    }

    #[test]
    fn numeric_dates_accept_fractions_and_extremes_safely() {
        let t = es(
            &es_header(),
            &with(claims(), "exp", json!((NOW + 10) as f64 + 0.5)),
        );
        assert_eq!(check(&t, &id_token_rules(), NOW).unwrap().exp(), NOW + 10);
        let t = es(&es_header(), &with(claims(), "exp", json!(i64::MAX)));
        check(&t, &id_token_rules(), NOW).unwrap();
        let t = es(&es_header(), &with(claims(), "iat", json!(i64::MIN)));
        let mut r = id_token_rules();
        r.max_age_secs = Some(u64::MAX);
        check(&t, &r, NOW).unwrap();
        r.max_age_secs = Some(3600);
        assert_eq!(reason(check(&t, &r, NOW)), "too_old");
    }

    // --- required claims ------------------------------------------------------

    /// JWTB-02, EMA-05: `sub` is validated (present, a non-empty string).
    #[test]
    fn jwtb02_sub_required_non_empty() {
        let t = es(&es_header(), &without(claims(), "sub"));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::MissingClaim("sub")
        );
        let t = es(&es_header(), &with(claims(), "sub", json!("")));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::MissingClaim("sub")
        );
        let t = es(&es_header(), &with(claims(), "sub", json!(42)));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::InvalidClaim("sub")
        );
    }

    #[test]
    fn jti_required_when_asked() {
        let mut r = id_token_rules();
        r.require_jti = true;
        let t = es(&es_header(), &without(claims(), "jti"));
        check(&t, &id_token_rules(), NOW).unwrap();
        assert_eq!(
            check(&t, &r, NOW).unwrap_err(),
            JoseError::MissingClaim("jti")
        );
        let t = es(&es_header(), &with(claims(), "jti", json!("")));
        assert_eq!(
            check(&t, &r, NOW).unwrap_err(),
            JoseError::MissingClaim("jti")
        );
    }

    #[test]
    fn identifying_claims_with_a_nul_character_are_invalid() {
        let mut r = id_token_rules();
        r.require_jti = true;
        for name in ["sub", "jti"] {
            let t = es(&es_header(), &with(claims(), name, json!("user\u{0}1")));
            assert_eq!(
                check(&t, &r, NOW).unwrap_err(),
                JoseError::InvalidClaim(name)
            );
        }
        // An optional jti is held to the same rule.
        let t = es(&es_header(), &with(claims(), "jti", json!("a\u{0}")));
        assert_eq!(
            check(&t, &id_token_rules(), NOW).unwrap_err(),
            JoseError::InvalidClaim("jti")
        );
        let t = es(&es_header(), &with(claims(), "jti", json!("a\u{fffd}")));
        check(&t, &r, NOW).unwrap();
    }

    // --- select_key -----------------------------------------------------------

    #[test]
    fn select_key_by_kid_and_by_alg() {
        let set = JwkSet {
            keys: vec![rsa_key().jwk(), ec_key().jwk(), ec_key2().jwk()],
        };
        let u = inspect(&es(&json!({"alg":"ES256","kid":"ec-2"}), &claims()), 10_000).unwrap();
        assert_eq!(
            select_key(&set, &u).unwrap().common.key_id.as_deref(),
            Some("ec-2")
        );
        // kid of an RSA key with an ES256 header: no key.
        let u = inspect(
            &es(&json!({"alg":"ES256","kid":"rsa-1"}), &claims()),
            10_000,
        )
        .unwrap();
        assert!(select_key(&set, &u).is_none());
        // No kid: two EC keys -> ambiguous -> none; one RSA key -> it.
        let u = inspect(&es(&json!({"alg":"ES256"}), &claims()), 10_000).unwrap();
        assert!(select_key(&set, &u).is_none());
        let u = inspect(
            &rs256(rsa_key(), &json!({"alg":"RS256"}), &claims()),
            10_000,
        )
        .unwrap();
        assert_eq!(
            select_key(&set, &u).unwrap().common.key_id.as_deref(),
            Some("rsa-1")
        );
        // enc keys never chosen.
        let mut enc = ec_key().jwk();
        enc.common.public_key_use = Some(PublicKeyUse::Encryption);
        let set = JwkSet { keys: vec![enc] };
        let u = inspect(&es(&es_header(), &claims()), 10_000).unwrap();
        assert!(select_key(&set, &u).is_none());
    }

    #[test]
    fn verify_refuses_a_different_token_than_inspected() {
        let a = es(&es_header(), &claims());
        let b = es(&es_header(), &with(claims(), "sub", json!("bob")));
        let u = inspect(&a, 10_000).unwrap();
        assert_eq!(
            verify(
                &u,
                &b,
                &VerifyingKey::new(ec_key().jwk()),
                &id_token_rules(),
                NOW
            )
            .unwrap_err(),
            JoseError::InspectMismatch
        );
    }

    // --- error hygiene ----------------------------------------------------------

    #[test]
    fn error_descriptions_are_rfc6749_safe_and_reasons_snake_case() {
        let all = [
            JoseError::TokenTooLarge,
            JoseError::Malformed("header is not base64url"),
            JoseError::Encrypted,
            JoseError::AlgNone,
            JoseError::AlgNotAllowed,
            JoseError::ForbiddenHeader("jku"),
            JoseError::CritUnsupported,
            JoseError::NestedToken,
            JoseError::WrongTyp,
            JoseError::UnknownKid,
            JoseError::KeyAlgMismatch,
            JoseError::BadSignature,
            JoseError::WrongIssuer,
            JoseError::WrongAudience,
            JoseError::WrongAuthorizedParty,
            JoseError::Expired,
            JoseError::NotYetValid,
            JoseError::IssuedInFuture,
            JoseError::TooOld,
            JoseError::LifetimeTooLong,
            JoseError::MissingClaim("sub"),
            JoseError::InvalidClaim("aud"),
            JoseError::KeyUnavailable,
            JoseError::InspectMismatch,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let d = e.description();
            assert!(
                d.bytes()
                    .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
                "{d}"
            );
            assert!(
                e.reason()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(seen.insert(e.reason()), "duplicate reason {}", e.reason());
        }
    }
}
