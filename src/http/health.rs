//! Liveness and readiness. `/healthz` answers as long as the process serves HTTP; `/readyz`
//! also requires the database to answer and an active signing key to be loaded, so a load
//! balancer only sends token requests to an instance that can complete them.
//!
//! Both are public, so the database answer behind `/readyz` is cached for [`READINESS_TTL`]
//! and fetched by one request at a time ([`Readiness`]): a flood of probes costs at most one
//! database round trip a second per instance, and an outage still shows within about a second.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// How long one database ping answers `/readyz`.
pub const READINESS_TTL: Duration = Duration::from_secs(1);

/// The cached database answer of `/readyz`. Why a lock held across the ping: it makes the ping
/// single-flight — a caller finding the answer stale pings while the others wait, then they all
/// read the fresh answer instead of pinging again.
#[derive(Debug)]
pub struct Readiness {
    ttl: Duration,
    /// `(when the ping finished, whether it succeeded)`; `None` before the first.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Added to the clock, so tests can expire the answer without sleeping.
    offset_ms: AtomicU64,
    pings: AtomicU64,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::with_ttl(READINESS_TTL)
    }
}

impl Readiness {
    /// A cache whose answers last `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        Readiness {
            ttl,
            last: tokio::sync::Mutex::new(None),
            offset_ms: AtomicU64::new(0),
            pings: AtomicU64::new(0),
        }
    }

    /// The database's answer: the cached one while fresh, else `ping`'s, run by one caller
    /// at a time and shared with those waiting for it.
    pub async fn database<F, P>(&self, ping: P) -> bool
    where
        P: FnOnce() -> F,
        F: Future<Output = bool>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && self.now().saturating_duration_since(at) < self.ttl
        {
            return answer;
        }
        self.pings.fetch_add(1, Ordering::Relaxed);
        let answer = ping().await;
        *last = Some((self.now(), answer));
        answer
    }

    /// How many pings were run (each cache miss): lets tests count database round trips.
    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    /// Moves this cache's clock forward, so tests can expire the answer without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(millis, Ordering::Relaxed);
    }

    fn now(&self) -> Instant {
        let offset = Duration::from_millis(self.offset_ms.load(Ordering::Relaxed));
        let now = Instant::now();
        now.checked_add(offset).unwrap_or(now)
    }
}

/// `GET /healthz`.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`. The database answer may be up to [`READINESS_TTL`] old; the key is checked
/// every time (it is in memory).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.readiness.database(|| state.store.ping()).await;
    let key = state.keys.active_kid().is_some();
    let status = if database && key {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": if database { "ok" } else { "unreachable" },
            "signing_key": if key { "active" } else { "missing" },
        })),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A flood of concurrent probes shares one ping: the first caller pings (held until it is
    /// inside its ping; the others queue behind it), the rest read its answer. The answer lasts
    /// an hour here, so the count cannot depend on how fast the machine is. The gate lets every
    /// ping through once opened, so a cache that did not share would fail here, not hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_probes_share_one_ping() {
        let readiness = Arc::new(Readiness::with_ttl(Duration::from_secs(3600)));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut probes = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (readiness, gate) = (readiness.clone(), gate.clone());
            probes.spawn(async move {
                readiness
                    .database(|| async move {
                        gate.acquire().await.expect("gate").forget();
                        true
                    })
                    .await
            });
        }
        while readiness.pings() == 0 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(64);
        while let Some(answer) = probes.join_next().await {
            assert!(answer.unwrap());
        }
        assert_eq!(readiness.pings(), 1);
    }

    /// Once the answer expires the next probe pings again and sees the outage.
    #[tokio::test]
    async fn an_outage_shows_once_the_answer_expires() {
        let readiness = Readiness::with_ttl(Duration::from_secs(3600));
        let up = AtomicBool::new(true);
        let ping = || async { up.load(Ordering::SeqCst) };
        assert!(readiness.database(ping).await);
        up.store(false, Ordering::SeqCst);
        assert!(readiness.database(ping).await, "still the cached answer");
        assert_eq!(readiness.pings(), 1);
        readiness.advance_clock(Duration::from_secs(3600));
        assert!(!readiness.database(ping).await);
        assert_eq!(readiness.pings(), 2);
    }
}
