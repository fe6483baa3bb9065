//! Throttling of what keeps failing, with `429 slow_down` and a `Retry-After` until the rate
//! allows again. Only failures count, so a busy legitimate caller is never slowed down.
//! - Failed client authentication, per address (TOK-14, EMA §7.5.1): an attacker cannot lock a
//!   client out from another address.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failed-authentication limiter keyed by client address.
pub type FailedAuthThrottle = FailureThrottle<IpAddr>;

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
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut blocked = self.lock();
        if blocked.len() > 100_000 {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            limiter.retain_recent();
        }
        blocked.insert(key, Instant::now() + wait.max(Duration::from_secs(1)));
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
        true
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
}
