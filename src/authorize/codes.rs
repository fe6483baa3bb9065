//! Domain logic of the authorization code flow shared by `/authorize` and the token endpoint:
//! random secrets, their hashes at rest, PKCE S256, and issuing a code for an approved request.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::{AuthorizationRequest, CodeRecord, CodeStore, StoreError};

/// A random secret of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if SystemRandom::new().fill(&mut buffer).is_err() {
        // aws-lc-rs's system RNG does not fail in practice; refuse to go on with zeros.
        panic!("the system random number generator failed");
    }
    URL_SAFE_NO_PAD.encode(buffer)
}

/// SHA-256 of a secret, hex: how codes, refresh tokens and browser cookies are stored.
pub fn hash_token(token: &str) -> String {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time string equality (CSRF tokens, browser bindings, PKCE): the crate's one
/// comparison, on the strings' bytes.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    crate::secret::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// True for an RFC 7636 §4.2 S256 challenge: 43 base64url characters (a SHA-256 digest).
pub fn valid_challenge(challenge: &str) -> bool {
    is_base64url_sha256(challenge)
}

/// True for an RFC 9449 §10 `dpop_jkt`: an RFC 7638 SHA-256 JWK thumbprint, 43 base64url
/// characters.
pub fn valid_thumbprint(jkt: &str) -> bool {
    is_base64url_sha256(jkt)
}

/// The shape of a SHA-256 digest in unpadded base64url.
fn is_base64url_sha256(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// True if `verifier` is a well-formed RFC 7636 §4.1 verifier whose S256 is `challenge`.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let digest = digest::digest(&digest::SHA256, verifier.as_bytes());
    constant_time_eq(&URL_SAFE_NO_PAD.encode(digest.as_ref()), challenge)
}

/// Issues a code for an approved request (the request must carry its signed-in user): 32
/// random bytes, stored hashed with everything it is bound to. Returns the code.
pub async fn issue_code<S: CodeStore>(
    store: &S,
    request: &AuthorizationRequest,
    lifetime_secs: u64,
    now: i64,
) -> Result<(String, String), StoreError> {
    let code = random_token(32);
    let family_id = uuid::Uuid::new_v4().to_string();
    let record = CodeRecord {
        family_id: family_id.clone(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        subject: request.subject.clone().unwrap_or_default(),
        subject_issuer: request.subject_issuer.clone().unwrap_or_default(),
        resource: request.resource.clone(),
        scopes: request.scopes.clone(),
        auth_time: request.auth_time,
        created_at: now,
        expires_at: now + i64::try_from(lifetime_secs.min(60)).unwrap_or(60),
        dpop_jkt: request.dpop_jkt.clone(),
    };
    store.insert_code(&hash_token(&code), &record).await?;
    Ok((code, family_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_challenge(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(&verifier.replace('d', "e"), challenge));
        assert!(!verifier_matches("short", challenge));
    }

    #[test]
    fn tokens_are_random_and_hashes_hex() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert_eq!(hash_token("abc").len(), 64);
    }
}
