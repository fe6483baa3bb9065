//! Server-provided DPoP nonces (RFC 9449 §8, DPOP-02): when `tokens.require_dpop_nonce` is on
//! (or the client's own `require_dpop_nonce`), a proof must echo a nonce frontdesk handed out recently, so a proof cannot be made ahead of
//! time — someone who could sign with a client's key for a moment (a compromised host, a
//! malicious dependency) cannot stock proofs to use later.
//!
//! Why stateless: the nonce is the time window it was made in and an HMAC over it, under a key
//! derived from the key-encryption key ([`crate::keys::KeyRing::derive_hmac_key`]). Every instance
//! of a deployment holds that key, so a nonce from one instance is good at any other, with no
//! database write per nonce and nothing to clean up; it cannot be forged or predicted without the
//! key. A nonce made in window `w` is accepted in windows `w - 1` to `w + 1`: for between one and
//! two lifetimes after it was made, and from an instance whose clock runs up to a window ahead.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// The purpose under which the nonce key is derived from the key-encryption key.
pub const NONCE_KEY_PURPOSE: &str = "dpop-nonce v1";

/// Bytes of the MAC kept in a nonce: 128 bits, as much as a guess would need to forge.
const MAC_LEN: usize = 16;

/// Window counter (8 bytes, big-endian) then the truncated MAC: 32 base64url characters.
const NONCE_LEN: usize = 8 + MAC_LEN;

/// Makes and checks nonces. `Debug` never shows the key.
pub struct DpopNonces {
    key: hmac::Key,
    lifetime_secs: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// Why a proof's nonce was not accepted; each is answered `use_dpop_nonce` with a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    /// The proof has no `nonce` claim.
    Missing,
    /// The nonce is not one of ours: malformed, or its MAC does not verify.
    Unknown,
    /// One of ours, from a window no longer (or not yet) accepted.
    Expired,
}

impl NonceRefusal {
    /// Stable audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "dpop_nonce_required",
            Self::Unknown => "dpop_nonce_unknown",
            Self::Expired => "dpop_nonce_expired",
        }
    }
}

impl DpopNonces {
    /// Nonces under `key` (derived for [`NONCE_KEY_PURPOSE`]), each window `lifetime_secs` long
    /// (at least 1).
    pub fn new(key: hmac::Key, lifetime_secs: u64) -> DpopNonces {
        DpopNonces {
            key,
            lifetime_secs: i64::try_from(lifetime_secs.max(1)).unwrap_or(i64::MAX),
        }
    }

    fn window(&self, now: i64) -> i64 {
        now.div_euclid(self.lifetime_secs)
    }

    fn mac(&self, window: i64) -> hmac::Tag {
        hmac::sign(&self.key, &window.to_be_bytes())
    }

    /// The nonce of the window `now` falls in, for a `DPoP-Nonce` response header.
    pub fn issue(&self, now: i64) -> String {
        let window = self.window(now);
        let mut bytes = [0u8; NONCE_LEN];
        bytes[..8].copy_from_slice(&window.to_be_bytes());
        bytes[8..].copy_from_slice(&self.mac(window).as_ref()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce`, from a proof received at `now`, is one of ours and still current.
    pub fn check(&self, nonce: Option<&str>, now: i64) -> Result<(), NonceRefusal> {
        let nonce = nonce.ok_or(NonceRefusal::Missing)?;
        let mut bytes = [0u8; NONCE_LEN];
        match URL_SAFE_NO_PAD.decode_slice(nonce.as_bytes(), &mut bytes) {
            Ok(NONCE_LEN) => {}
            _ => return Err(NonceRefusal::Unknown),
        }
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&bytes[..8]);
        let window = i64::from_be_bytes(counter);
        let expected = self.mac(window);
        if !bool::from(bytes[8..].ct_eq(&expected.as_ref()[..MAC_LEN])) {
            return Err(NonceRefusal::Unknown);
        }
        let current = self.window(now);
        if (current.saturating_sub(1)..=current.saturating_add(1)).contains(&window) {
            Ok(())
        } else {
            Err(NonceRefusal::Expired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces(seed: u8, lifetime: u64) -> DpopNonces {
        DpopNonces::new(hmac::Key::new(hmac::HMAC_SHA256, &[seed; 32]), lifetime)
    }

    #[test]
    fn a_nonce_is_accepted_from_the_window_before_to_the_window_after_its_own() {
        let server = nonces(1, 300);
        let made_at = 1_800_000_100; // window 6,000,000 starts at 1,800,000,000
        let nonce = server.issue(made_at);
        assert_eq!(nonce.len(), 32);
        assert!(
            nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        // The same window issues the same nonce: nothing to store, any instance agrees.
        assert_eq!(server.issue(made_at + 199), nonce);
        assert_ne!(server.issue(made_at + 200), nonce);
        for now in [made_at, made_at + 499, 1_799_999_700] {
            assert_eq!(server.check(Some(&nonce), now), Ok(()), "{now}");
        }
        for now in [made_at + 500, made_at + 10_000, 1_799_999_699] {
            assert_eq!(
                server.check(Some(&nonce), now),
                Err(NonceRefusal::Expired),
                "{now}"
            );
        }
    }

    #[test]
    fn only_nonces_made_under_the_same_key_are_accepted() {
        let (server, other) = (nonces(1, 300), nonces(2, 300));
        let now = 1_800_000_000;
        assert_eq!(server.check(Some(&server.issue(now)), now), Ok(()));
        assert_eq!(
            server.check(Some(&other.issue(now)), now),
            Err(NonceRefusal::Unknown)
        );
        // A window moved forward without the key's MAC is not a nonce.
        let mut forged = URL_SAFE_NO_PAD
            .decode(server.issue(now))
            .unwrap_or_else(|error| panic!("{error}"));
        forged[7] ^= 1;
        assert_eq!(
            server.check(Some(&URL_SAFE_NO_PAD.encode(&forged)), now),
            Err(NonceRefusal::Unknown)
        );
        for bad in ["", "abc", "not base64 at all!", &"A".repeat(33)] {
            assert_eq!(
                server.check(Some(bad), now),
                Err(NonceRefusal::Unknown),
                "{bad}"
            );
        }
        assert_eq!(server.check(None, now), Err(NonceRefusal::Missing));
    }

    #[test]
    fn refusals_have_stable_reasons_and_debug_hides_the_key() {
        assert_eq!(NonceRefusal::Missing.reason(), "dpop_nonce_required");
        assert_eq!(NonceRefusal::Unknown.reason(), "dpop_nonce_unknown");
        assert_eq!(NonceRefusal::Expired.reason(), "dpop_nonce_expired");
        assert_eq!(
            format!("{:?}", nonces(1, 300)),
            "DpopNonces { lifetime_secs: 300, .. }"
        );
    }
}
