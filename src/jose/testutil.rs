//! Test-only key generation and hand-crafted token signing (aws-lc-rs
//! directly, so hostile headers can be produced and jsonwebtoken's
//! verification is exercised against an independent signer).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA384, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Value, json};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub struct EcKey {
    pub pair: EcdsaKeyPair,
    pub kid: String,
}

pub struct RsaKey {
    pub pair: RsaKeyPair,
    pub kid: String,
}

impl EcKey {
    pub fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        // Round-trip through PKCS#8 as a real deployment would load it.
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        Self {
            pair,
            kid: kid.to_owned(),
        }
    }

    pub fn jwk_value(&self) -> Value {
        let point = self.pair.public_key().as_ref(); // 0x04 || x || y
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    pub fn jwk(&self) -> Jwk {
        serde_json::from_value(self.jwk_value()).unwrap()
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

impl RsaKey {
    pub fn generate(kid: &str) -> Self {
        Self {
            pair: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            kid: kid.to_owned(),
        }
    }

    pub fn jwk_value(&self) -> Value {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64(&c.n), "e": b64(&c.e),
        })
    }

    pub fn jwk(&self) -> Jwk {
        serde_json::from_value(self.jwk_value()).unwrap()
    }

    /// X.509 SubjectPublicKeyInfo DER of the public key (what an attacker
    /// would use as an HMAC secret in a key-confusion attack).
    pub fn public_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der<'static> = self.pair.public_key().as_der().unwrap();
        der.as_ref().to_vec()
    }

    pub fn sign_rs256(&self, input: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut sig)
            .unwrap();
        sig
    }

    pub fn sign_rs384(&self, input: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA384, &SystemRandom::new(), input, &mut sig)
            .unwrap();
        sig
    }
}

/// Shared keys: RSA generation is slow, so generate once per test binary.
pub fn ec_key() -> &'static EcKey {
    static K: OnceLock<EcKey> = OnceLock::new();
    K.get_or_init(|| EcKey::generate("ec-1"))
}

pub fn ec_key2() -> &'static EcKey {
    static K: OnceLock<EcKey> = OnceLock::new();
    K.get_or_init(|| EcKey::generate("ec-2"))
}

pub fn rsa_key() -> &'static RsaKey {
    static K: OnceLock<RsaKey> = OnceLock::new();
    K.get_or_init(|| RsaKey::generate("rsa-1"))
}

/// `b64(header).b64(payload)` from raw JSON text (raw so that duplicate
/// members and odd headers can be expressed).
pub fn signing_input(header_json: &str, payload_json: &str) -> String {
    format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(payload_json.as_bytes())
    )
}

/// Compact ES256 token from raw header/payload JSON text.
pub fn es256_raw(key: &EcKey, header_json: &str, payload_json: &str) -> String {
    let input = signing_input(header_json, payload_json);
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Compact ES256 token from JSON values.
pub fn es256(key: &EcKey, header: &Value, payload: &Value) -> String {
    es256_raw(key, &header.to_string(), &payload.to_string())
}

/// Compact RS256 token from JSON values.
pub fn rs256(key: &RsaKey, header: &Value, payload: &Value) -> String {
    let input = signing_input(&header.to_string(), &payload.to_string());
    let sig = key.sign_rs256(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}
