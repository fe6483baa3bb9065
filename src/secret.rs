//! Secret values: redacted in `Debug` and `Display`, zeroed on drop, compared in constant time,
//! and hashed with argon2id at rest. Anything that could end up in a log line holds secrets in
//! these types, so a stray `{:?}` cannot leak them.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A string that must never be logged: a client secret, a database URL with a password,
/// a key-encryption key, a token.
///
/// `Serialize` writes the plaintext: it exists only so configuration layers can be merged;
/// never serialize a type holding one for display.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext, for the one place that needs it. Grep for `expose` to audit its uses.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(SecretString::new(value))
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString::new)
    }
}

/// Constant-time equality of two byte strings (the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// argon2id with explicit parameters (OWASP: m=19 MiB, t=2, p=1), so hashes do not change
/// silently when the crate's defaults do.
fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds.
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a secret to an argon2id PHC string (`$argon2id$v=19$...`). CPU-heavy: call it on the
/// blocking pool from async code.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let hash: Result<PasswordHash, _> = argon2().hash_password(secret.as_bytes());
    hash.map(|hash| hash.to_string())
        .map_err(|error| format!("argon2 hashing failed: {error}"))
}

/// Checks a secret against a PHC string. Any malformed hash is simply a mismatch.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().verify_password(secret.as_bytes(), &hash).is_ok()
}

/// argon2id checks the process runs at once; more wait for a turn. Each holds 19 MiB, and the
/// places that run them (client secrets at the token, introspection and revocation endpoints,
/// passwords at the admin sign-in form) are reachable without credentials: a distinct wrong
/// secret or username per request misses every cache and, before a failure is counted by the
/// throttles, concurrent requests each started a check on the blocking pool, up to its 512
/// threads (about 10 GiB). Checks are CPU-bound, so more than a few at once on a few cores would
/// not finish sooner anyway; the cost under a flood is waiting, not memory.
pub const CONCURRENT_ARGON2_CHECKS: usize = 4;

/// The process's argon2id turns ([`CONCURRENT_ARGON2_CHECKS`]), shared by every caller.
#[derive(Debug)]
pub struct Argon2Checks {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The process-wide [`Argon2Checks`]: one budget however many servers or services the process
/// holds, since the memory is the process's.
pub fn argon2_checks() -> &'static Argon2Checks {
    static CHECKS: std::sync::LazyLock<Argon2Checks> = std::sync::LazyLock::new(|| Argon2Checks {
        permits: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_ARGON2_CHECKS)),
        running: std::sync::Arc::default(),
        peak: std::sync::Arc::default(),
    });
    &CHECKS
}

impl Argon2Checks {
    /// Runs `check` on the blocking pool when a turn is free; `None` if it panicked. The turn
    /// is held by the blocking task itself, so a request abandoned while argon2 runs (the
    /// client went away, the request timed out) keeps it until argon2 is done.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        use std::sync::atomic::Ordering;
        let permit = std::sync::Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .ok()?;
        let (running, peak) = (
            std::sync::Arc::clone(&self.running),
            std::sync::Arc::clone(&self.peak),
        );
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let result = check();
            running.fetch_sub(1, Ordering::SeqCst);
            result
        })
        .await
        .ok()
    }

    /// The most checks that have run at once in this process (for tests).
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// True if `phc` is a well-formed argon2id PHC string; used to validate configuration.
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| hash.algorithm.as_str() == "argon2id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = SecretString::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn hash_then_verify_round_trips_and_rejects_other_secrets() {
        let phc = hash_secret("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(is_argon2id_phc(&phc));
        assert!(verify_secret("correct horse", &phc));
        assert!(!verify_secret("correct horse ", &phc));
        assert!(!verify_secret("correct horse", "not a hash"));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
