//! Trusted public keys, parsed once for signature verification.
//!
//! Why this exists: `jsonwebtoken::crypto::verify` takes a `DecodingKey` and rebuilds aws-lc's
//! key object from it on every call — the RSA modulus into big numbers, the EC point decoded and
//! checked to lie on its curve. For a P-256 key that is about 10 µs of an ES256 verification's
//! 60–70 µs, for RSA about 2 µs of 17 (docs/performance.md, fifteenth run). An identity
//! provider's or a client's key verifies thousands of tokens between two changes of its JWKS, so
//! a [`VerifyingKey`] keeps the JWK together with aws-lc-rs's [`ParsedPublicKey`] built the first
//! time it verifies a signature. The cryptography is the same aws-lc code either way; only the
//! repeated parsing is gone.
//!
//! Which key may verify which token (key type, curve, size, `use`, `key_ops`, JWK `alg`) is
//! decided before this module is reached, by [`super::verify::key_usable_for`]; here the key is
//! only parsed for the algorithm the caller already bound it to.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, RsaParameters,
    RsaPublicKeyComponents, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use serde::{Deserialize, Deserializer};

use super::verify::{JoseError, Unverified, select_among};

/// One trusted JWK and, once it has verified a signature, its parsed public key.
///
/// Only the first algorithm a key verifies with is kept parsed: a JWK is in practice used with
/// one algorithm (most carry `alg`), and one slot keeps a large client registry small. A key
/// used with a second algorithm (an RSA key without `alg`, for RS256 and PS256) parses the key
/// for that one on each use, as it did before.
pub struct VerifyingKey {
    jwk: Jwk,
    parsed: OnceLock<(Algorithm, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// Wraps `jwk`; nothing is parsed until the key first verifies a signature.
    pub fn new(jwk: Jwk) -> Self {
        Self {
            jwk,
            parsed: OnceLock::new(),
        }
    }

    /// The JWK as configured or published.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Checks the base64url `signature` over `signing_input` with this key under `alg`, which
    /// the caller has already found usable with this key ([`super::verify::key_usable_for`]).
    ///
    /// Key material that does not decode as a key of `alg`'s type is [`JoseError::KeyAlgMismatch`]
    /// (as when `jsonwebtoken` refused to build the key); a signature that does not verify,
    /// including one under key material aws-lc rejects, is [`JoseError::BadSignature`].
    pub fn verify_signature(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &str,
    ) -> Result<(), JoseError> {
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JoseError::BadSignature)?;
        let outcome = match self.parsed.get() {
            Some((parsed_alg, key)) if *parsed_alg == alg => {
                key.verify_sig(signing_input, &signature)
            }
            _ => {
                let key = match parse(&self.jwk, alg)? {
                    Some(key) => key,
                    None => return Err(JoseError::BadSignature),
                };
                let outcome = key.verify_sig(signing_input, &signature);
                // Kept only if this is the key's first algorithm (see the type's comment).
                let _ = self.parsed.set((alg, key));
                outcome
            }
        };
        outcome.map_err(|_| JoseError::BadSignature)
    }
}

impl From<Jwk> for VerifyingKey {
    fn from(jwk: Jwk) -> Self {
        Self::new(jwk)
    }
}

impl PartialEq for VerifyingKey {
    /// Two keys are the same key when their JWKs are; the parsed form follows from the JWK.
    fn eq(&self, other: &Self) -> bool {
        self.jwk == other.jwk
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.jwk.common.key_id)
            .field("parsed", &self.parsed.get().map(|(alg, _)| *alg))
            .finish()
    }
}

/// The RSA verification parameters aws-lc-rs uses for `alg` (the same as `jsonwebtoken`'s:
/// moduli of 2048 to 8192 bits).
fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn decode_field(value: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JoseError::KeyAlgMismatch)
}

/// Parses `jwk` for `alg`. `Err` when the JWK's fields do not decode as a key of `alg`'s type;
/// `Ok(None)` when they decode but aws-lc refuses them as a key (no signature can verify).
fn parse(jwk: &Jwk, alg: Algorithm) -> Result<Option<ParsedPublicKey>, JoseError> {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(rsa), _) => {
            let params = rsa_parameters(alg).ok_or(JoseError::KeyAlgMismatch)?;
            let n = decode_field(&rsa.n)?;
            let e = decode_field(&rsa.e)?;
            // RFC 7518 §6.3.1.1 forbids leading zero octets in `n`, but some libraries emit one;
            // aws-lc wants the minimal form.
            let components = RsaPublicKeyComponents {
                n: strip_leading_zeros(&n),
                e: strip_leading_zeros(&e),
            };
            Ok(components.to_parsed_public_key(params).ok())
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256 | Algorithm::ES384) => {
            let (algorithm, size): (&'static dyn VerificationAlgorithm, usize) = match ec.curve {
                EllipticCurve::P256 => (&ECDSA_P256_SHA256_FIXED, 32),
                EllipticCurve::P384 => (&ECDSA_P384_SHA384_FIXED, 48),
                _ => return Err(JoseError::KeyAlgMismatch),
            };
            let (x, y) = (decode_field(&ec.x)?, decode_field(&ec.y)?);
            // RFC 7518 §6.2.1.2–3: each coordinate is the full size of the curve's field.
            if x.len() != size || y.len() != size {
                return Err(JoseError::KeyAlgMismatch);
            }
            // SEC 1 uncompressed point: 0x04 || x || y.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(ParsedPublicKey::new(algorithm, point).ok())
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA)
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            let x = decode_field(&okp.x)?;
            Ok(ParsedPublicKey::new(&ED25519, x).ok())
        }
        _ => Err(JoseError::KeyAlgMismatch),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[skip..]
}

/// A set of trusted keys (an identity provider's, a client's, a fetched JWKS), each kept
/// with its parsed form. Cheap to clone: the keys are shared.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<[Arc<VerifyingKey>]>,
}

impl KeySet {
    /// The verification key for `unverified`, chosen as [`super::verify::select_key`] chooses.
    pub fn select(&self, unverified: &Unverified) -> Option<&Arc<VerifyingKey>> {
        select_among(&self.keys, |key| &key.jwk, unverified)
    }

    /// The keys, in the order of the set.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl From<JwkSet> for KeySet {
    fn from(set: JwkSet) -> Self {
        Self {
            keys: set
                .keys
                .into_iter()
                .map(|jwk| Arc::new(VerifyingKey::new(jwk)))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for KeySet {
    /// A JWK set document (`{"keys": [...]}`), as `jsonwebtoken` reads it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JwkSet::deserialize(deserializer).map(Self::from)
    }
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(other.keys.iter()).all(|(a, b)| a == b)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, RSA_PSS_SHA256};
    use serde_json::{Value, json};

    use super::*;
    use crate::jose::testutil::*;

    fn parsed_alg(key: &VerifyingKey) -> Option<Algorithm> {
        key.parsed.get().map(|(alg, _)| *alg)
    }

    /// The key of the JWK `value` with its base64url member `field` decoded, changed and
    /// re-encoded.
    fn with_field(
        mut value: Value,
        field: &str,
        change: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> VerifyingKey {
        let bytes = URL_SAFE_NO_PAD
            .decode(value[field].as_str().unwrap())
            .unwrap();
        value[field] = json!(b64(&change(bytes)));
        VerifyingKey::new(serde_json::from_value(value).unwrap())
    }

    fn tampered(signature: &[u8]) -> String {
        let mut bad = signature.to_vec();
        bad[5] ^= 1;
        b64(&bad)
    }

    #[test]
    fn a_key_is_parsed_on_its_first_verification_and_reused_after() {
        let key = VerifyingKey::new(rsa_key().jwk());
        assert_eq!(parsed_alg(&key), None, "nothing parsed before first use");
        let input = b"header.payload";
        let signature = b64(&rsa_key().sign_rs256(input));
        key.verify_signature(Algorithm::RS256, input, &signature)
            .unwrap();
        assert_eq!(parsed_alg(&key), Some(Algorithm::RS256));
        // The parsed form verifies again, and still refuses what does not verify.
        key.verify_signature(Algorithm::RS256, input, &signature)
            .unwrap();
        assert_eq!(
            key.verify_signature(Algorithm::RS256, b"header.other", &signature),
            Err(JoseError::BadSignature)
        );
        assert_eq!(
            key.verify_signature(
                Algorithm::RS256,
                input,
                &tampered(&rsa_key().sign_rs256(input))
            ),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn a_failed_first_verification_still_keeps_the_parsed_key_for_the_next() {
        let key = VerifyingKey::new(ec_key().jwk());
        let input = b"a.b";
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &tampered(&ec_key().sign(input))),
            Err(JoseError::BadSignature)
        );
        assert_eq!(parsed_alg(&key), Some(Algorithm::ES256));
        key.verify_signature(Algorithm::ES256, input, &b64(&ec_key().sign(input)))
            .unwrap();
        // Another P-256 key's signature does not verify under this one.
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &b64(&ec_key2().sign(input))),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn a_second_algorithm_verifies_without_replacing_the_first() {
        let mut value = rsa_key().jwk_value();
        value.as_object_mut().unwrap().remove("alg");
        let key = VerifyingKey::new(serde_json::from_value(value).unwrap());
        let input = b"x.y";
        key.verify_signature(Algorithm::RS256, input, &b64(&rsa_key().sign_rs256(input)))
            .unwrap();
        let mut pss = vec![0u8; rsa_key().pair.public_modulus_len()];
        rsa_key()
            .pair
            .sign(&RSA_PSS_SHA256, &SystemRandom::new(), input, &mut pss)
            .unwrap();
        key.verify_signature(Algorithm::PS256, input, &b64(&pss))
            .unwrap();
        // A PKCS#1 signature is not a PSS one, parsed anew or not.
        assert_eq!(
            key.verify_signature(Algorithm::PS256, input, &b64(&rsa_key().sign_rs256(input))),
            Err(JoseError::BadSignature)
        );
        assert_eq!(parsed_alg(&key), Some(Algorithm::RS256));
        key.verify_signature(Algorithm::RS384, input, &b64(&rsa_key().sign_rs384(input)))
            .unwrap();
    }

    #[test]
    fn an_rsa_modulus_with_a_leading_zero_octet_verifies() {
        let key = with_field(rsa_key().jwk_value(), "n", |n| [&[0u8][..], &n].concat());
        let input = b"p.q";
        key.verify_signature(Algorithm::RS256, input, &b64(&rsa_key().sign_rs256(input)))
            .unwrap();
    }

    #[test]
    fn ec_coordinates_of_the_wrong_size_are_not_a_key_for_the_algorithm() {
        let key = with_field(ec_key().jwk_value(), "x", |x| x[1..].to_vec());
        let input = b"a.b";
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &b64(&ec_key().sign(input))),
            Err(JoseError::KeyAlgMismatch)
        );
        assert_eq!(parsed_alg(&key), None);
    }

    #[test]
    fn a_point_off_the_curve_verifies_nothing() {
        let key = with_field(ec_key().jwk_value(), "y", |mut y| {
            y[31] ^= 1;
            y
        });
        let input = b"a.b";
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &b64(&ec_key().sign(input))),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn a_key_is_never_parsed_for_an_algorithm_of_another_family() {
        let input = b"a.b";
        let signature = b64(&ec_key().sign(input));
        for alg in [Algorithm::RS256, Algorithm::EdDSA, Algorithm::HS256] {
            let key = VerifyingKey::new(ec_key().jwk());
            assert_eq!(
                key.verify_signature(alg, input, &signature),
                Err(JoseError::KeyAlgMismatch),
                "{alg:?}"
            );
        }
        let key = VerifyingKey::new(rsa_key().jwk());
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &signature),
            Err(JoseError::KeyAlgMismatch)
        );
    }

    #[test]
    fn ed25519_keys_verify_eddsa() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = serde_json::from_value(json!({
            "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
        }))
        .unwrap();
        let key = VerifyingKey::new(jwk);
        let input = b"e.d";
        key.verify_signature(Algorithm::EdDSA, input, &b64(pair.sign(input).as_ref()))
            .unwrap();
        assert_eq!(
            key.verify_signature(Algorithm::EdDSA, b"e.x", &b64(pair.sign(input).as_ref())),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn a_signature_that_is_not_base64url_is_a_bad_signature() {
        let key = VerifyingKey::new(ec_key().jwk());
        let input = b"a.b";
        let padded = format!("{}=", b64(&ec_key().sign(input)));
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, &padded),
            Err(JoseError::BadSignature)
        );
        assert_eq!(
            key.verify_signature(Algorithm::ES256, input, "not base64!"),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn key_sets_select_as_select_key_does_and_share_their_keys() {
        let set = JwkSet {
            keys: vec![rsa_key().jwk(), ec_key().jwk(), ec_key2().jwk()],
        };
        let keys = KeySet::from(set.clone());
        let token = es256(ec_key2(), &json!({"alg":"ES256","kid":"ec-2"}), &json!({}));
        let unverified = crate::jose::inspect(&token, 10_000).unwrap();
        let chosen = keys.select(&unverified).unwrap();
        assert_eq!(
            chosen.jwk(),
            crate::jose::select_key(&set, &unverified).unwrap()
        );
        // A clone of the set shares the keys (and so their parsed forms).
        let copy = keys.clone();
        assert!(Arc::ptr_eq(chosen, copy.select(&unverified).unwrap()));
        assert_eq!(keys, copy);
        assert_eq!(keys.len(), 3);
        // Parsed from a JWK set document as jsonwebtoken reads one.
        let parsed: KeySet =
            serde_json::from_value(json!({ "keys": [ec_key().jwk_value()] })).unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(serde_json::from_value::<KeySet>(json!({ "keys": "no" })).is_err());
    }

    #[test]
    fn debug_names_the_key_and_never_its_material() {
        let key = VerifyingKey::new(rsa_key().jwk());
        let text = format!("{key:?}");
        assert!(text.contains("rsa-1"), "{text}");
        assert!(
            !text.contains(rsa_key().jwk_value()["n"].as_str().unwrap()),
            "{text}"
        );
    }
}
