//! Key material: generation of private keys with aws-lc-rs, their conversion into jsonwebtoken
//! signing keys, and their public JWK. Private bytes live in `Zeroizing` buffers and are never
//! formatted.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use zeroize::Zeroizing;

/// The signature algorithms frontdesk signs with. Asymmetric only (RFC 8725 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256: the default, small and fast.
    Es256,
    /// RSA PKCS#1 v1.5 with SHA-256, for relying parties that only speak RSA.
    Rs256,
    /// RSA-PSS with SHA-256.
    Ps256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Parses the JOSE name (`ES256`, `RS256`, `PS256`, `EdDSA`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
            Self::Ps256 => Algorithm::PS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            Self::Es256 => KeyAlgorithm::ES256,
            Self::Rs256 => KeyAlgorithm::RS256,
            Self::Ps256 => KeyAlgorithm::PS256,
            Self::EdDsa => KeyAlgorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private signing key (PKCS#8 DER) with its algorithm. `Debug` shows only the algorithm.
pub struct PrivateKey {
    algorithm: SigningAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.algorithm)
    }
}

impl PrivateKey {
    /// Generates a fresh key. RSA sizes are 2048 bits or more.
    pub fn generate(algorithm: SigningAlgorithm, rsa_bits: u32) -> Result<PrivateKey, String> {
        let failed = |_| format!("generating a {algorithm} key failed");
        let pkcs8: Vec<u8> = match algorithm {
            SigningAlgorithm::Es256 => {
                let key =
                    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?;
                key.to_pkcs8v1().map_err(failed)?.as_ref().to_vec()
            }
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => {
                let size = match rsa_bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => return Err(format!("unsupported RSA size {other}")),
                };
                let key = aws_lc_rs::rsa::KeyPair::generate(size).map_err(failed)?;
                key.as_der().map_err(failed)?.as_ref().to_vec()
            }
            SigningAlgorithm::EdDsa => {
                let key = Ed25519KeyPair::generate().map_err(failed)?;
                key.to_pkcs8v1().map_err(failed)?.as_ref().to_vec()
            }
        };
        Ok(PrivateKey {
            algorithm,
            pkcs8: Zeroizing::new(pkcs8),
        })
    }

    /// Rebuilds a key from stored PKCS#8 bytes (after decryption).
    pub fn from_pkcs8(algorithm: SigningAlgorithm, pkcs8: Zeroizing<Vec<u8>>) -> PrivateKey {
        PrivateKey { algorithm, pkcs8 }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The PKCS#8 DER bytes, to be sealed under the KEK before storage.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// A jsonwebtoken signing key.
    pub fn encoding_key(&self) -> Result<EncodingKey, String> {
        match self.algorithm {
            SigningAlgorithm::Es256 => Ok(EncodingKey::from_ec_der(&self.pkcs8)),
            SigningAlgorithm::EdDsa => Ok(EncodingKey::from_ed_der(&self.pkcs8)),
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => {
                // jsonwebtoken's RSA DER constructor wants PKCS#1; its PEM reader unwraps PKCS#8.
                let pem = Zeroizing::new(format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(self.pkcs8.as_slice())
                ));
                EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|_| "the stored RSA key is not valid".to_string())
            }
        }
    }

    /// The public JWK with `kid` (the RFC 7638 thumbprint), `alg` and `use: sig` (JWKS-02).
    pub fn public_jwk(&self) -> Result<Jwk, String> {
        let encoding = self.encoding_key()?;
        let mut jwk = Jwk::from_encoding_key(&encoding, self.algorithm.jwt_algorithm())
            .map_err(|error| format!("deriving the public key failed: {error}"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|error| format!("computing the key id failed: {error}"))?;
        jwk.common.key_id = Some(kid);
        jwk.common.key_algorithm = Some(self.algorithm.key_algorithm());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Header, Validation, decode, encode};

    fn round_trip(algorithm: SigningAlgorithm) {
        let key = PrivateKey::generate(algorithm, 2048).expect("generate");
        let jwk = key.public_jwk().expect("jwk");
        let kid = jwk.common.key_id.clone().expect("kid");
        let mut header = Header::new(algorithm.jwt_algorithm());
        header.kid = Some(kid);
        let claims = serde_json::json!({"sub": "s", "exp": 4_000_000_000u64});
        let token = encode(&header, &claims, &key.encoding_key().expect("enc")).expect("sign");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(algorithm.jwt_algorithm());
        validation.validate_aud = false;
        decode::<serde_json::Value>(&token, &decoding, &validation).expect("verify");
        // The published JWK carries no private member (JWKS-03).
        let published = serde_json::to_value(&jwk).expect("json");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(published.get(private).is_none(), "{private} published");
        }
        assert_eq!(published["use"], "sig");
        assert_eq!(published["alg"], algorithm.as_str());
        // Stored bytes rebuild the same key.
        let rebuilt = PrivateKey::from_pkcs8(algorithm, Zeroizing::new(key.pkcs8().to_vec()));
        assert_eq!(rebuilt.public_jwk().expect("jwk"), jwk);
    }

    #[test]
    fn es256_keys_sign_and_verify() {
        round_trip(SigningAlgorithm::Es256);
    }

    #[test]
    fn rs256_keys_sign_and_verify() {
        round_trip(SigningAlgorithm::Rs256);
    }

    #[test]
    fn ps256_keys_sign_and_verify() {
        round_trip(SigningAlgorithm::Ps256);
    }

    #[test]
    fn eddsa_keys_sign_and_verify() {
        round_trip(SigningAlgorithm::EdDsa);
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = PrivateKey::generate(SigningAlgorithm::Es256, 2048).expect("generate");
        assert_eq!(format!("{key:?}"), "PrivateKey(ES256, [redacted])");
    }
}
