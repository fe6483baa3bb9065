//! Limits on token requests (PEERS §3.9, §4 item 14), per instance:
//! - per client (`[[clients]] requests_per_minute`): an agent that runs away — a loop that
//!   exchanges a token per tool call, a leaked credential used in bulk — is slowed to what its
//!   owner set, and no other client pays for it;
//! - per identity provider (`[[identity_providers]] requests_per_minute`): what one trusted
//!   issuer's tokens may drive, so a compromised or misconfigured IdP cannot take the server (or
//!   the audit log) for itself;
//! - per user of an identity provider (`subject_requests_per_minute`): one user's agents, on any
//!   number of clients, get a fair share and no more;
//! - per audience (`[[audiences]] requests_per_minute`): the grants one other domain is sent,
//!   whoever asks for them.
//!
//! Why per instance: a shared counter would put a database round trip on every limited request.
//! With N instances behind a balancer a limit admits at most N times its value, which is what
//! the operator sizes against; configuration.md says so. Only what has been verified counts — an
//! authenticated client, a subject token that passed its signature check — so nobody can spend
//! another's allowance by naming it.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{ErrorCode, OAuthError};
use crate::config::IdentityProviderConfig;

/// Distinct users remembered per identity provider before the idle ones are dropped: bounds the
/// memory a flood of distinct `sub`s can take (each entry is a few dozen bytes).
const MAX_TRACKED_SUBJECTS: usize = 100_000;

/// Every limiter of one instance.
#[derive(Default)]
pub struct RequestLimits {
    clients: Limiters<DefaultDirectRateLimiter>,
    identity_providers: Limiters<DefaultDirectRateLimiter>,
    audiences: Limiters<DefaultDirectRateLimiter>,
    subjects: Limiters<DefaultKeyedRateLimiter<String>>,
    public_clients: Limiters<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for RequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestLimits")
    }
}

impl RequestLimits {
    /// Counts one request of `client_id`, allowed `per_minute` a minute (bursts of the same
    /// size). `None`: go ahead; `Some(wait)`: over the limit until `wait` has passed.
    pub fn check_client(&self, client_id: &str, per_minute: u32) -> Option<Duration> {
        wait_time(self.clients.get(client_id, per_minute).check())
    }

    /// Counts one verified token from the identity provider `idp_id`.
    pub fn check_identity_provider(&self, idp_id: &str, per_minute: u32) -> Option<Duration> {
        wait_time(self.identity_providers.get(idp_id, per_minute).check())
    }

    /// Counts one grant for the audience `audience_id`.
    pub fn check_audience(&self, audience_id: &str, per_minute: u32) -> Option<Duration> {
        wait_time(self.audiences.get(audience_id, per_minute).check())
    }

    /// Counts one verified token of the user `subject` of the identity provider `idp_id`.
    pub fn check_subject(&self, idp_id: &str, subject: &str, per_minute: u32) -> Option<Duration> {
        check_keyed(&self.subjects, idp_id, subject.to_string(), per_minute)
    }

    /// Counts one request of the public client `client_id` from `address`. A public client
    /// proves nothing but its id, so a limit counted per client would let anyone who knows the
    /// id spend every user's allowance; each address gets the limit instead.
    pub fn check_public_client(
        &self,
        client_id: &str,
        address: Option<std::net::IpAddr>,
        per_minute: u32,
    ) -> Option<Duration> {
        let address = address.map_or_else(|| "unknown".to_string(), |address| address.to_string());
        check_keyed(&self.public_clients, client_id, address, per_minute)
    }
}

/// Counts one request of `key` under the keyed limiter `name`, forgetting the keys whose
/// allowance has refilled once [`MAX_TRACKED_SUBJECTS`] are tracked (they are
/// indistinguishable from new ones: dropping them loses nothing).
fn check_keyed(
    limiters: &Limiters<DefaultKeyedRateLimiter<String>>,
    name: &str,
    key: String,
    per_minute: u32,
) -> Option<Duration> {
    let limiter = limiters.get(name, per_minute);
    if limiter.len() >= MAX_TRACKED_SUBJECTS {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
    wait_time(limiter.check_key(&key))
}

/// The answer to a request over a limit: `429 slow_down` with `Retry-After` (RFC 6749 has no
/// code of its own for it; `slow_down` is the one clients already back off on).
/// Each refusal is counted in `frontdesk_requests_limited_total{reason}`, so operators can alert
/// on a runaway agent or an attack without reading the audit log.
pub fn over_limit(reason: &'static str, description: &'static str, wait: Duration) -> OAuthError {
    metrics::counter!("frontdesk_requests_limited_total", "reason" => reason).increment(1);
    let mut error = OAuthError::new(ErrorCode::SlowDown, reason, description);
    error.retry_after = Some(wait.as_secs().max(1));
    error
}

impl RequestLimits {
    /// Counts a verified token of `subject` from `idp` against the identity provider's limits:
    /// its user's first (the narrower), then its own.
    pub fn check_verified_subject(
        &self,
        idp: &IdentityProviderConfig,
        subject: &str,
    ) -> Result<(), OAuthError> {
        if let Some(per_minute) = idp.subject_requests_per_minute
            && let Some(wait) = self.check_subject(&idp.id, subject, per_minute)
        {
            return Err(over_limit(
                "subject_rate_limited",
                "This user has made more token requests than the identity provider's per-user limit allows; retry later",
                wait,
            ));
        }
        if let Some(per_minute) = idp.requests_per_minute
            && let Some(wait) = self.check_identity_provider(&idp.id, per_minute)
        {
            return Err(over_limit(
                "identity_provider_rate_limited",
                "Tokens from this identity provider exceed the requests it is allowed; retry later",
                wait,
            ));
        }
        Ok(())
    }
}

fn wait_time<T>(
    outcome: Result<T, governor::NotUntil<<DefaultClock as Clock>::Instant>>,
) -> Option<Duration> {
    let not_until = outcome.err()?;
    Some(not_until.wait_time_from(DefaultClock::default().now()))
}

/// A limiter that can be made for a per-minute quota.
trait FromQuota {
    fn from_quota(quota: Quota) -> Self;
}

impl FromQuota for DefaultDirectRateLimiter {
    fn from_quota(quota: Quota) -> Self {
        RateLimiter::direct(quota)
    }
}

impl<K: Hash + Eq + Clone> FromQuota for DefaultKeyedRateLimiter<K> {
    fn from_quota(quota: Quota) -> Self {
        RateLimiter::keyed(quota)
    }
}

/// One limiter per name (client or identity provider), made on its first request and remade
/// when its limit changes.
struct Limiters<L> {
    by_name: RwLock<HashMap<String, (u32, Arc<L>)>>,
}

impl<L> Default for Limiters<L> {
    fn default() -> Self {
        Limiters {
            by_name: RwLock::new(HashMap::new()),
        }
    }
}

impl<L: FromQuota> Limiters<L> {
    fn get(&self, name: &str, per_minute: u32) -> Arc<L> {
        {
            let read = match self.by_name.read() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((limit, limiter)) = read.get(name)
                && *limit == per_minute
            {
                return limiter.clone();
            }
        }
        let mut write = match self.by_name.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match write.get(name) {
            Some((limit, limiter)) if *limit == per_minute => limiter.clone(),
            _ => {
                let quota =
                    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
                let limiter = Arc::new(L::from_quota(quota));
                write.insert(name.to_string(), (per_minute, limiter.clone()));
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
        let limits = RequestLimits::default();
        assert_eq!(limits.check_client("agent", 2), None);
        assert_eq!(limits.check_client("agent", 2), None);
        let wait = limits.check_client("agent", 2);
        // Two a minute: the next one is due within 30 s.
        assert!(wait.is_some_and(|wait| wait > Duration::ZERO && wait <= Duration::from_secs(30)));
        assert_eq!(limits.check_client("other", 2), None);
        // A new limit is a new allowance.
        assert_eq!(limits.check_client("agent", 3), None);
    }

    #[test]
    fn an_identity_provider_has_its_own_allowance_apart_from_a_client_of_the_same_name() {
        let limits = RequestLimits::default();
        assert_eq!(limits.check_identity_provider("corp", 1), None);
        assert!(limits.check_identity_provider("corp", 1).is_some());
        assert_eq!(limits.check_identity_provider("partner", 1), None);
        assert_eq!(limits.check_client("corp", 1), None);
    }

    #[test]
    fn each_user_of_an_identity_provider_has_an_allowance_and_users_elsewhere_are_apart() {
        let limits = RequestLimits::default();
        assert_eq!(limits.check_subject("corp", "alice", 2), None);
        assert_eq!(limits.check_subject("corp", "alice", 2), None);
        let wait = limits.check_subject("corp", "alice", 2);
        assert!(wait.is_some_and(|wait| wait > Duration::ZERO && wait <= Duration::from_secs(30)));
        // Another user of the same IdP, and the same `sub` at another IdP, are not slowed.
        assert_eq!(limits.check_subject("corp", "bob", 2), None);
        assert_eq!(limits.check_subject("partner", "alice", 2), None);
    }
}
