//! Throttling of what keeps failing, with `429 slow_down` and a `Retry-After` until the rate
//! allows again. Only failures count (and attempts that may fail and cost real work, counted
//! before it), so a busy legitimate caller is never slowed down.
//! - Failed client authentication, per address (TOK-14, EMA §7.5.1): an attacker cannot lock a
//!   client out from another address. A secret that is not yet known to be right costs an
//!   argon2 run, so such an attempt is counted *before* argon2, in one step with the check
//!   that the address may still try ([`Attempt::admit`]); counted after the failure, every
//!   guess sent at once passed the check while the first ones were still being verified. A
//!   secret already verified costs nothing and is never counted; a new right secret costs one
//!   unit, once per process (the verified-secret cache remembers it).
//! - Subject tokens and assertions that look forged, per authenticated client (PEERS §4 item
//!   14, like Auth0's `rejectInvalidSubjectToken`): a client probing with tokens it did not get
//!   from the IdP is stopped and shows up in the log, and nobody can trip it for another client,
//!   since only authenticated requests count.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};

/// Failed-authentication limiter keyed by client address.
pub type FailedAuthThrottle = FailureThrottle<IpAddr>;

/// One client authentication's dealings with the [`FailedAuthThrottle`].
pub type ClientAuthAttempt<'a> = Attempt<'a, IpAddr>;

/// A key over its quota: it may try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the quota allows the key one more attempt (at least a second).
    pub retry_after: Duration,
}

/// Blocks a key (an address, a client) for a while once its failures outrun a per-minute quota.
/// Successes are never counted, so only what keeps failing is slowed.
pub struct FailureThrottle<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    blocked: Mutex<HashMap<K, Instant>>,
    /// How many keys `blocked` holds, readable without the lock: every request asks, and
    /// almost always nothing is blocked.
    blocked_count: AtomicUsize,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for FailureThrottle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureThrottle")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> FailureThrottle<K> {
    /// Allows `per_minute` failures per key (with the same burst); 0 disables throttling.
    pub fn new(per_minute: u32) -> FailureThrottle<K> {
        FailureThrottle {
            limiter: NonZeroU32::new(per_minute)
                .map(|quota| RateLimiter::keyed(Quota::per_minute(quota))),
            blocked: Mutex::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        match self.blocked.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// If `key` is currently throttled, how long until it may try again.
    pub fn retry_after<Q>(&self, key: &Q) -> Option<Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut blocked = self.lock();
        let until = *blocked.get(key)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(key);
            self.blocked_count.store(blocked.len(), Ordering::Relaxed);
            None
        }
    }

    /// Counts one failure of `key`; past the quota, blocks it until the quota replenishes.
    /// `true` when this failure blocked it.
    pub fn record_failure(&self, key: K) -> bool {
        let Some(limiter) = &self.limiter else {
            return false;
        };
        let Err(not_until) = limiter.check_key(&key) else {
            return false;
        };
        self.block(limiter, key, &not_until);
        true
    }

    /// Counts an attempt of `key` that may fail *before* the costly work it starts, in one step
    /// with the check that the quota still allows it: `Ok` when it may go ahead (and counts),
    /// `Err` when `key` is blocked or this attempt is past the quota (which blocks it; it is not
    /// counted). The limiter's check-and-count is a single atomic step, so attempts made at once
    /// get no more than the quota between them, where checking first and counting after the
    /// work let every attempt that arrived meanwhile through. A refused attempt does no work.
    pub fn try_attempt(&self, key: K) -> Result<(), Throttled> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if let Some(retry_after) = self.retry_after(&key) {
            return Err(Throttled { retry_after });
        }
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(Throttled {
                retry_after: self.block(limiter, key, &not_until),
            }),
        }
    }

    /// One request's attempt for `key` (`None`: a request with no address, never throttled).
    pub fn attempt(&self, key: Option<K>) -> Attempt<'_, K> {
        Attempt {
            throttle: self,
            key,
            counted: AtomicBool::new(false),
        }
    }

    /// Blocks `key` until the limiter allows it again (at least a second); how long that is.
    fn block(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: K,
        not_until: &NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> Duration {
        let wait = not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_secs(1));
        let mut blocked = self.lock();
        if blocked.len() > 100_000 {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            limiter.retain_recent();
        }
        blocked.insert(key, Instant::now() + wait);
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
        wait
    }
}

/// One request's attempt against a [`FailureThrottle`], which counts it at most once: before
/// its costly work when it has any ([`Attempt::admit`]), else after it failed
/// ([`Attempt::fail`]). A client authentication that runs argon2 is counted before it, and its
/// failure is not counted again; one that fails without argon2 (a malformed header, an unknown
/// method, a client assertion) or that got its answer from another request's argon2 run is
/// counted when it fails, as cheap failures always were.
pub struct Attempt<'a, K: Hash + Eq + Clone> {
    throttle: &'a FailureThrottle<K>,
    key: Option<K>,
    /// Whether `admit` counted this attempt. Atomic only so that the attempt can be shared by
    /// the futures of one request (which must be `Send`); one request sets and reads it.
    counted: AtomicBool,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Attempt<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("counted", &self.counted())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> Attempt<'_, K> {
    /// Counts this attempt before its costly work, in one step with the check that the quota
    /// allows it ([`FailureThrottle::try_attempt`]); `Err` means do not do the work. Each call
    /// counts once more: each is one more run of the work (a Basic secret tried as sent and
    /// then form-decoded is two argon2 runs, and costs two).
    pub fn admit(&self) -> Result<(), Throttled> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        self.throttle.try_attempt(key.clone())?;
        self.counted.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Counts the failure of this attempt, unless `admit` already counted it: a failed guess
    /// costs one unit, not one before argon2 and one after.
    pub fn fail(&self) {
        if self.counted() {
            return;
        }
        if let Some(key) = &self.key {
            self.throttle.record_failure(key.clone());
        }
    }

    /// Whether this attempt has been counted before its work.
    pub fn counted(&self) -> bool {
        self.counted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_past_the_quota_block_and_only_that_address() {
        let throttle = FailedAuthThrottle::new(3);
        let attacker: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(!throttle.record_failure(attacker));
            assert!(throttle.retry_after(&attacker).is_none());
        }
        assert!(throttle.record_failure(attacker));
        let wait = throttle
            .retry_after(&attacker)
            .expect("blocked after the quota");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(throttle.retry_after(&other).is_none());
    }

    #[test]
    fn a_throttle_keyed_by_client_blocks_only_that_client() {
        let throttle = FailureThrottle::<String>::new(1);
        throttle.record_failure("forger".to_string());
        assert!(throttle.retry_after("forger").is_none());
        throttle.record_failure("forger".to_string());
        assert!(throttle.retry_after("forger").is_some());
        assert!(throttle.retry_after("honest").is_none());
    }

    #[test]
    fn zero_disables_throttling() {
        let throttle = FailedAuthThrottle::new(0);
        let address: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            assert!(!throttle.record_failure(address));
        }
        assert!(throttle.retry_after(&address).is_none());
    }

    /// An attempt counted before its work is counted once: its failure is not counted again,
    /// and the quota's last unit is admitted, the attempt after it refused (and it blocks).
    #[test]
    fn an_attempt_counted_before_its_work_is_not_counted_again_when_it_fails() {
        let throttle = FailedAuthThrottle::new(3);
        let address: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            let attempt = throttle.attempt(Some(address));
            assert!(attempt.admit().is_ok());
            attempt.fail();
            assert!(throttle.retry_after(&address).is_none());
        }
        let attempt = throttle.attempt(Some(address));
        let refused = attempt.admit().expect_err("past the quota");
        assert!(refused.retry_after >= Duration::from_secs(1));
        assert!(!attempt.counted());
        assert!(throttle.retry_after(&address).is_some(), "blocked");
    }

    /// A failure that did no costly work (never admitted) is counted when it fails, as before.
    #[test]
    fn a_failure_not_admitted_before_is_counted_when_it_fails() {
        let throttle = FailedAuthThrottle::new(2);
        let address: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            throttle.attempt(Some(address)).fail();
        }
        assert!(throttle.retry_after(&address).is_some());
        // No address, no throttling.
        let anonymous = throttle.attempt(None);
        assert!(anonymous.admit().is_ok());
        anonymous.fail();
    }
}
