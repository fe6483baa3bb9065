//! The development key generator (examples/dev_keys.rs, run by keys/generate-dev-keys), run
//! in-process into a temporary directory: the PEM is PKCS#8 with mode 0600, it signs JWTs that
//! verify with the written JWKS, the kid is the RFC 7638 thumbprint, and it refuses to write
//! anywhere but keys/dev or a temporary directory, and to overwrite a key.

#[allow(dead_code)]
#[path = "../examples/dev_keys.rs"]
mod dev_keys;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

fn generate(dir: &Path, alg: &str) -> Result<(), String> {
    dev_keys::run(vec![dir.display().to_string(), alg.to_string()])
}

/// The one file in `dir` with this suffix.
fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one *{suffix} in {}",
        dir.display()
    );
    found.remove(0)
}

fn round_trip(alg: &str, algorithm: Algorithm, encoding: fn(&[u8]) -> EncodingKey) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("dev");
    generate(&dir, alg).expect("generate");

    let pem_path = only_file(&dir, ".pem");
    let jwks_path = only_file(&dir, ".jwks.json");
    let mode = std::fs::metadata(&pem_path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    let pem = std::fs::read(&pem_path).expect("read pem");
    assert!(
        pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8 PEM expected"
    );

    let jwks: JwkSet = serde_json::from_slice(&std::fs::read(&jwks_path).expect("read jwks"))
        .expect("JWKS parses");
    assert_eq!(jwks.keys.len(), 1);
    let jwk = &jwks.keys[0];
    let kid = jwk.common.key_id.clone().expect("kid");
    assert_eq!(
        kid,
        jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint"),
        "kid is the RFC 7638 thumbprint"
    );
    let published: Value = serde_json::to_value(jwk).expect("json");
    assert_eq!(published["alg"], alg);
    assert_eq!(published["use"], "sig");
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(
            published.get(private).is_none(),
            "{private} in the public JWKS"
        );
    }
    let name = pem_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(name, format!("{alg}-{}.pem", &kid[..8]));

    let mut header = Header::new(algorithm);
    header.kid = Some(kid);
    let claims = json!({ "iss": "dev-agent", "sub": "dev-agent", "aud": "https://sts.example",
                         "exp": 4_000_000_000u64 });
    let token = jsonwebtoken::encode(&header, &claims, &encoding(&pem)).expect("sign");
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&["https://sts.example"]);
    let decoded = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_jwk(jwk).expect("decoding key from JWK"),
        &validation,
    )
    .expect("a JWT signed with the PEM verifies with the JWKS");
    assert_eq!(decoded.claims["sub"], "dev-agent");

    // Never overwrites: a second run writes a new pair beside the first.
    generate(&dir, alg).expect("second key");
    assert_eq!(std::fs::read_dir(&dir).expect("read dir").count(), 4);
}

#[test]
fn es256_dev_key_signs_and_verifies_with_its_jwks() {
    round_trip("ES256", Algorithm::ES256, |pem| {
        EncodingKey::from_ec_pem(pem).expect("EncodingKey::from_ec_pem")
    });
}

#[test]
fn eddsa_dev_key_signs_and_verifies_with_its_jwks() {
    round_trip("EdDSA", Algorithm::EdDSA, |pem| {
        EncodingKey::from_ed_pem(pem).expect("EncodingKey::from_ed_pem")
    });
}

#[test]
fn rs256_dev_key_signs_and_verifies_with_its_jwks() {
    round_trip("RS256", Algorithm::RS256, |pem| {
        EncodingKey::from_rsa_pem(pem).expect("EncodingKey::from_rsa_pem")
    });
}

#[test]
fn refuses_directories_other_than_keys_dev_or_a_temp_dir() {
    for dir in [
        "src",
        "keys",
        "keys/dev/../../src",
        "tests/keys/dev2",
        "/etc/keys",
    ] {
        let error = generate(Path::new(dir), "ES256").expect_err(dir);
        assert!(error.contains("refusing"), "{dir}: {error}");
    }
    let temp = std::env::temp_dir();
    let error = generate(&temp, "ES256").expect_err("the temp dir itself");
    assert!(error.contains("refusing"), "{error}");
    let error = generate(Path::new("keys/dev"), "HS256").expect_err("symmetric algorithm");
    assert!(error.contains("unknown algorithm"), "{error}");
}
