//! Throttling of failed client authentication (TOK-14, EMA §7.5.1): after too many failures
//! from one address, further token requests from it are answered `429 slow_down` with a
//! `Retry-After` until the rate allows again. Only failures count, so a busy legitimate client is
//! never slowed down, and an attacker cannot lock a client out from another address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failed-authentication limiter keyed by client address.
pub struct FailedAuthThrottle {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for FailedAuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuthThrottle")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl FailedAuthThrottle {
    /// Allows `per_minute` failures per address (with the same burst); 0 disables throttling.
    pub fn new(per_minute: u32) -> FailedAuthThrottle {
        FailedAuthThrottle {
            limiter: NonZeroU32::new(per_minute)
                .map(|quota| RateLimiter::keyed(Quota::per_minute(quota))),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        match self.blocked.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// If `address` is currently throttled, how long until it may try again.
    pub fn retry_after(&self, address: IpAddr) -> Option<Duration> {
        let mut blocked = self.lock();
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&address);
            None
        }
    }

    /// Counts one failed authentication from `address`; past the quota, blocks it until the
    /// quota replenishes.
    pub fn record_failure(&self, address: IpAddr) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        if let Err(not_until) = limiter.check_key(&address) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.lock();
            if blocked.len() > 100_000 {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                limiter.retain_recent();
            }
            blocked.insert(address, Instant::now() + wait.max(Duration::from_secs(1)));
        }
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
            throttle.record_failure(attacker);
            assert!(throttle.retry_after(attacker).is_none());
        }
        throttle.record_failure(attacker);
        let wait = throttle
            .retry_after(attacker)
            .expect("blocked after the quota");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(throttle.retry_after(other).is_none());
    }

    #[test]
    fn zero_disables_throttling() {
        let throttle = FailedAuthThrottle::new(0);
        let address: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            throttle.record_failure(address);
        }
        assert!(throttle.retry_after(address).is_none());
    }
}
