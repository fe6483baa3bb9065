//! The key-encryption key (KEK): AES-256-GCM from aws-lc-rs, the same audited library that signs
//! our tokens. Private signing keys are only ever stored sealed under it, with the key id as
//! associated data so a sealed key cannot be swapped onto another row unnoticed.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Length of the key-encryption key in bytes.
pub const KEK_LEN: usize = 32;

/// HKDF salt of keys derived from the KEK: fixed, so every instance holding the same KEK derives
/// the same keys.
const DERIVATION_SALT: &[u8] = b"frontdesk kek derivation v1";

/// The key-encryption key. `Debug` never shows it.
pub struct Kek {
    key: LessSafeKey,
    /// HKDF-Extract of the KEK (RFC 5869 §2.2), for keys derived per purpose
    /// ([`Kek::derive_hmac_key`]).
    prk: hmac::Key,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// Parses a base64 (standard or URL-safe, padded or not) 32-byte key.
    pub fn from_base64(text: &str) -> Result<Kek, String> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| {
                    "the key-encryption key is not valid base64 (expected 32 random bytes, e.g. from `openssl rand -base64 32`)".to_string()
                })?,
        );
        Self::from_bytes(&bytes)
    }

    /// Builds a KEK from raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, String> {
        if bytes.len() != KEK_LEN {
            return Err(format!(
                "the key-encryption key must be {KEK_LEN} bytes, found {}",
                bytes.len()
            ));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| "the key-encryption key was rejected".to_string())?;
        Ok(Kek {
            key: LessSafeKey::new(unbound),
            prk: hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, DERIVATION_SALT), bytes).as_ref(),
            ),
        })
    }

    /// Reads a KEK from a file holding its base64 form.
    pub fn from_file(path: &Path) -> Result<Kek, String> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read the key-encryption key file {}: {error}",
                path.display()
            )
        })?);
        Self::from_base64(&text).map_err(|message| format!("{message} (in {})", path.display()))
    }

    /// Development only: reads the KEK file, or creates it with mode 0600 if it does not exist.
    /// Returns the KEK and whether it was created.
    pub fn load_or_create_file(path: &Path) -> Result<(Kek, bool), String> {
        if path.exists() {
            return Self::from_file(path).map(|kek| (kek, false));
        }
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| "the system random generator failed".to_string())?;
        let encoded = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
        write_private_file(path, encoded.as_bytes()).map_err(|error| {
            format!(
                "cannot create the key-encryption key file {}: {error}",
                path.display()
            )
        })?;
        Self::from_bytes(bytes.as_ref()).map(|kek| (kek, true))
    }

    /// An HMAC-SHA256 key for one `purpose`, derived from the KEK with HKDF (RFC 5869). Why: state
    /// that every instance must agree on without a database round trip (DPoP nonces) needs a
    /// secret they all hold, and the KEK is the one secret a deployment already shares between
    /// instances; a distinct `purpose` gives an independent key, so the KEK itself is never used
    /// for anything but sealing.
    pub fn derive_hmac_key(&self, purpose: &str) -> hmac::Key {
        // HKDF-Expand (RFC 5869 §2.3) for one hash length of output: T(1) = HMAC(PRK, info ‖ 1).
        let mut context = hmac::Context::with_key(&self.prk);
        context.update(purpose.as_bytes());
        context.update(&[1]);
        hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref())
    }

    /// Encrypts `plaintext`, binding it to `associated` (the key id). Output: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, associated: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce_bytes)
            .map_err(|_| "the system random generator failed".to_string())?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(associated.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Decrypts what [`Kek::seal`] produced. Fails if the KEK, the key id or the bytes differ.
    pub fn open(&self, associated: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err("sealed key is truncated".into());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| "sealed key has a bad nonce".to_string())?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(associated.as_bytes()), buffer.as_mut_slice())
            .map_err(|_| {
                "cannot decrypt a signing key: the key-encryption key is not the one it was sealed with".to_string()
            })?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

/// Writes a file readable only by its owner.
fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> Kek {
        Kek::from_bytes(&[7u8; KEK_LEN]).expect("kek")
    }

    #[test]
    fn derived_keys_are_hkdf_sha256_of_the_kek_one_per_purpose() {
        use aws_lc_rs::hkdf;
        let tag = |key: &hmac::Key| hmac::sign(key, b"message").as_ref().to_vec();
        // The same derivation through aws-lc-rs's own HKDF.
        let okm: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVATION_SALT)
            .extract(&[7u8; KEK_LEN])
            .expand(&[b"purpose-a"], hmac::HMAC_SHA256)
            .expect("expand")
            .into();
        assert_eq!(tag(&kek().derive_hmac_key("purpose-a")), tag(&okm));
        assert_eq!(
            tag(&kek().derive_hmac_key("purpose-a")),
            tag(&kek().derive_hmac_key("purpose-a"))
        );
        assert_ne!(
            tag(&kek().derive_hmac_key("purpose-a")),
            tag(&kek().derive_hmac_key("purpose-b"))
        );
        let other = Kek::from_bytes(&[8u8; KEK_LEN]).expect("kek");
        assert_ne!(
            tag(&kek().derive_hmac_key("purpose-a")),
            tag(&other.derive_hmac_key("purpose-a"))
        );
    }

    #[test]
    fn seal_then_open_round_trips() {
        let sealed = kek().seal("kid-1", b"private key bytes").expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        let opened = kek().open("kid-1", &sealed).expect("open");
        assert_eq!(opened.as_slice(), b"private key bytes");
    }

    #[test]
    fn open_fails_with_another_kid_or_another_kek() {
        let sealed = kek().seal("kid-1", b"secret").expect("seal");
        assert!(kek().open("kid-2", &sealed).is_err());
        let other = Kek::from_bytes(&[8u8; KEK_LEN]).expect("kek");
        assert!(other.open("kid-1", &sealed).is_err());
        assert!(kek().open("kid-1", &sealed[..10]).is_err());
    }

    #[test]
    fn base64_forms_are_accepted_and_wrong_lengths_refused() {
        let standard = STANDARD.encode([1u8; KEK_LEN]);
        let url_safe = URL_SAFE_NO_PAD.encode([1u8; KEK_LEN]);
        assert!(Kek::from_base64(&standard).is_ok());
        assert!(Kek::from_base64(&url_safe).is_ok());
        let short = Kek::from_base64(&STANDARD.encode([1u8; 16])).expect_err("short key");
        assert!(short.contains("32 bytes"), "{short}");
        assert!(Kek::from_base64("not base64 !!").is_err());
    }

    #[test]
    fn development_kek_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev.kek");
        let (first, created) = Kek::load_or_create_file(&path).expect("create");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, created) = Kek::load_or_create_file(&path).expect("load");
        assert!(!created);
        let sealed = first.seal("k", b"x").expect("seal");
        assert_eq!(second.open("k", &sealed).expect("open").as_slice(), b"x");
        assert!(format!("{first:?}").contains("redacted"));
    }
}
