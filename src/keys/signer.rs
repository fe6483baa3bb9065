//! The active signing key, parsed once.
//!
//! Why not `jsonwebtoken::encode` with an `EncodingKey`: that parses the PKCS#8 bytes into an
//! aws-lc key on every signature and re-runs the key's consistency check — for P-256 and
//! Ed25519 a public-key computation as costly as the signature itself, for RSA the private key's
//! validation. The load profile showed it as 13 % of a whole ES256 token exchange
//! (docs/performance.md, fourth run). A [`Signer`] holds aws-lc-rs's parsed key pair and frames
//! the compact JWS exactly as `jsonwebtoken::encode` does (RFC 7515 §7.1): base64url (no
//! padding) of the JSON header and claims, joined by `.`, and the signature over that text.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaEncoding,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use serde::Serialize;

use super::KeyError;
use super::material::{PrivateKey, SigningAlgorithm};

/// A private key ready to sign, for each algorithm frontdesk signs with.
pub(super) enum Signer {
    /// ES256: ECDSA P-256 with SHA-256, fixed-length `r ‖ s` signatures (RFC 7518 §3.4).
    Es256(EcdsaKeyPair),
    /// RS256 (PKCS#1 v1.5) or PS256 (PSS), both with SHA-256 (RFC 7518 §3.3, §3.5).
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    /// EdDSA with Ed25519 (RFC 8037).
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// Parses `key`'s PKCS#8 bytes once, for the key's algorithm.
    pub(super) fn new(key: &PrivateKey) -> Result<Self, KeyError> {
        let corrupt =
            |_| KeyError::Crypto(format!("stored {} key does not parse", key.algorithm()));
        Ok(match key.algorithm() {
            SigningAlgorithm::Es256 => Self::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8())
                    .map_err(corrupt)?,
            ),
            SigningAlgorithm::Rs256 => Self::Rsa(
                RsaKeyPair::from_pkcs8(key.pkcs8()).map_err(corrupt)?,
                &RSA_PKCS1_SHA256,
            ),
            SigningAlgorithm::Ps256 => Self::Rsa(
                RsaKeyPair::from_pkcs8(key.pkcs8()).map_err(corrupt)?,
                &RSA_PSS_SHA256,
            ),
            SigningAlgorithm::EdDsa => {
                Self::Ed25519(Ed25519KeyPair::from_pkcs8(key.pkcs8()).map_err(corrupt)?)
            }
        })
    }

    /// `header` and `claims` as a compact JWS signed with this key. The caller sets `header.alg`
    /// to this key's algorithm.
    pub(super) fn sign<T: Serialize>(
        &self,
        header: &Header,
        claims: &T,
    ) -> Result<String, KeyError> {
        let failed = |_| KeyError::Crypto("signing failed".into());
        let header =
            serde_json::to_vec(header).map_err(|error| KeyError::Crypto(error.to_string()))?;
        let claims =
            serde_json::to_vec(claims).map_err(|error| KeyError::Crypto(error.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let input = token.as_bytes();
        let signature = match self {
            Self::Es256(pair) => pair
                .sign(&SystemRandom::new(), input)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Self::Rsa(pair, padding) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &SystemRandom::new(), input, &mut signature)
                    .map_err(failed)?;
                signature
            }
            Self::Ed25519(pair) => pair.sign(input).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Es256(_) => "ES256",
            Self::Rsa(..) => "RSA",
            Self::Ed25519(_) => "EdDSA",
        };
        write!(f, "Signer({kind}, [redacted])")
    }
}
