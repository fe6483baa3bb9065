//! Per-client limits on token requests (`[[clients]] requests_per_minute`): an agent that runs
//! away — a loop that exchanges a token per tool call, a leaked credential used in bulk — is
//! slowed to what its owner set, and no other client pays for it (PEERS §3.9, §4 item 14).
//!
//! Why per instance: a shared counter would put a database round trip on every request of every
//! limited client. With N instances behind a balancer a client gets at most N times its limit,
//! which is what the operator sizes against; configuration.md says so. Only authenticated
//! requests count, so nobody can spend another client's allowance by naming it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One limiter per limited client, made on its first request and remade when its limit changes.
#[derive(Default)]
pub struct ClientRateLimits {
    limiters: RwLock<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl std::fmt::Debug for ClientRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRateLimits")
    }
}

impl ClientRateLimits {
    /// Counts one request of `client_id`, allowed `per_minute` a minute (bursts of the same
    /// size). `None`: go ahead; `Some(wait)`: over the limit until `wait` has passed.
    pub fn check(&self, client_id: &str, per_minute: u32) -> Option<Duration> {
        let limiter = self.limiter(client_id, per_minute);
        let not_until = limiter.check().err()?;
        Some(not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn limiter(&self, client_id: &str, per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
        {
            let read = match self.limiters.read() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((limit, limiter)) = read.get(client_id)
                && *limit == per_minute
            {
                return limiter.clone();
            }
        }
        let mut write = match self.limiters.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match write.get(client_id) {
            Some((limit, limiter)) if *limit == per_minute => limiter.clone(),
            _ => {
                let quota =
                    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
                let limiter = Arc::new(RateLimiter::direct(quota));
                write.insert(client_id.to_string(), (per_minute, limiter.clone()));
                limiter
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_other_clients_are_not_affected() {
        let limits = ClientRateLimits::default();
        assert_eq!(limits.check("agent", 2), None);
        assert_eq!(limits.check("agent", 2), None);
        let wait = limits.check("agent", 2);
        // Two a minute: the next one is due within 30 s.
        assert!(wait.is_some_and(|wait| wait > Duration::ZERO && wait <= Duration::from_secs(30)));
        assert_eq!(limits.check("other", 2), None);
        // A new limit is a new allowance.
        assert_eq!(limits.check("agent", 3), None);
    }
}
