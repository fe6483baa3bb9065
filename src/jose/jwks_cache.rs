//! In-memory cache of external issuers' JWK sets (JWKS-06, JWKS-07).
//!
//! * Hot path: [`JwksCache::key_for`] answers from memory once warm.
//! * Unknown `kid` (key rotation): one refetch per source at most every
//!   `min_refetch_interval`, single-flight (concurrent callers wait on the
//!   same fetch instead of each fetching).
//! * Freshness: `Cache-Control: max-age` honoured, clamped to
//!   `[min_ttl, max_ttl]`, `default_ttl` when absent; [`JwksCache::refresh_due`]
//!   / [`JwksCache::spawn_refresher`] refresh ahead of expiry.
//! * Stale-if-error: when a refresh fails the previous keys keep being served
//!   (bounded by `max_stale`); only a source that never produced keys yields
//!   `key_unavailable`. A successful refresh replaces the set, so removed keys
//!   are gone (no rollback, JWKS-07).
//! * Keys come only from the trust config (inline set, `jwks_uri`, or
//!   discovery from the configured issuer), never from token headers (BCP-07);
//!   https only unless `allow_insecure_http` (tests); bounded body size.
//!
//! Time comes from a [`Clock`] so the interval logic is testable without sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;
use tokio::task::JoinHandle;
use url::Url;

use super::verify::{JoseError, Unverified};
use super::verifying_key::{KeySet, VerifyingKey};

/// Source of monotonic time for the cache.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset_ms: AtomicU64::new(0),
        }
    }
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Where an issuer's keys come from (FED-01).
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// Static keys from the trust config; never fetched.
    Inline(KeySet),
    /// A configured `jwks_uri`.
    JwksUri(Url),
    /// OIDC discovery (`{issuer}/.well-known/openid-configuration`), falling
    /// back to RFC 8414 (`/.well-known/oauth-authorization-server` inserted
    /// before the issuer path). The document's `issuer` must equal `issuer`
    /// exactly (FED-02), then its `jwks_uri` is used.
    Discovery { issuer: String },
}

/// Tunables. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct JwksCacheConfig {
    /// At most one fetch per source in this interval for unknown-`kid`
    /// refetches and failed-fetch retries (JWKS-06).
    pub min_refetch_interval: Duration,
    /// Lower clamp for `Cache-Control: max-age`.
    pub min_ttl: Duration,
    /// Upper clamp for `Cache-Control: max-age`.
    pub max_ttl: Duration,
    /// TTL when the response has no usable `max-age`.
    pub default_ttl: Duration,
    /// How long past expiry cached keys may still be served when refreshes fail.
    pub max_stale: Duration,
    /// Response body cap for JWKS and discovery documents.
    pub max_body_bytes: usize,
    /// Keys beyond this many in one set are ignored.
    pub max_keys: usize,
    /// Permit `http://` URLs (tests only; JWKS-07 requires https).
    pub allow_insecure_http: bool,
    /// Permit `http://` URLs whose host is a loopback address (development instances and
    /// local test IdPs); remote keys still need https.
    pub allow_loopback_http: bool,
}

impl Default for JwksCacheConfig {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(30),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(300),
            max_stale: Duration::from_secs(24 * 3600),
            max_body_bytes: 1024 * 1024,
            max_keys: 100,
            allow_insecure_http: false,
            allow_loopback_http: false,
        }
    }
}

/// Why a fetch failed; only for logs (static text, no response content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchError {
    InsecureUrl,
    BadUrl,
    Http,
    Status,
    ContentType,
    TooLarge,
    Json,
    IssuerMismatch,
    NoJwksUri,
}

impl FetchError {
    /// A short code for the metrics' `outcome` label.
    fn code(self) -> &'static str {
        match self {
            Self::InsecureUrl => "insecure_url",
            Self::BadUrl => "bad_url",
            Self::Http => "http_error",
            Self::Status => "http_status",
            Self::ContentType => "content_type",
            Self::TooLarge => "too_large",
            Self::Json => "invalid_document",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::NoJwksUri => "no_jwks_uri",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::InsecureUrl => "url is not https",
            Self::BadUrl => "url is invalid",
            Self::Http => "request failed",
            Self::Status => "unexpected http status",
            Self::ContentType => "content type is not json",
            Self::TooLarge => "response too large",
            Self::Json => "response is not a valid document",
            Self::IssuerMismatch => "discovery issuer does not match configured issuer",
            Self::NoJwksUri => "discovery document has no usable jwks_uri",
        }
    }
}

struct CachedKeys {
    set: KeySet,
    expires_at: Instant,
    refresh_at: Instant,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    /// `jwks_uri` resolved by discovery; cleared when a fetch fails.
    discovered_jwks_uri: Option<Url>,
}

struct SourceState {
    source: KeySource,
    keys: RwLock<Option<Arc<CachedKeys>>>,
    /// Single-flight guard for fetches of this source.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Bumped after every completed fetch attempt.
    generation: AtomicU64,
    fetch_count: AtomicU64,
    /// Lookups currently waiting for the fetch guard (observability/tests).
    waiting: AtomicU64,
}

impl SourceState {
    fn new(source: KeySource) -> Self {
        Self {
            source,
            keys: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            generation: AtomicU64::new(0),
            fetch_count: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Arc<CachedKeys>> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, keys: CachedKeys) {
        let mut g = match self.keys.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Some(Arc::new(keys));
    }
}

/// Counts a waiter; decrements on drop (also when the lookup is cancelled).
struct WaitGuard<'a>(&'a AtomicU64);

impl<'a> WaitGuard<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Redirects followed by [`trust_http_client`].
const MAX_REDIRECTS: usize = 3;

/// The HTTP client for what frontdesk fetches from its trust configuration: identity providers'
/// JWKS and discovery documents, clients' `jwks_uri`, SAML metadata. An overall `timeout`, and
/// at most three redirects, each to https (or http on a loopback host, like the configured URLs):
/// checking only where a chain ends would let a plain-http hop in the middle, which anyone on
/// the path can rewrite, send the fetch anywhere (JWKS-07).
pub fn trust_http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if crate::trust::is_https_or_loopback(attempt.url().as_str()) {
                attempt.follow()
            } else {
                attempt.error("a redirect to a URL that is not https")
            }
        }))
        .user_agent(concat!("frontdesk/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Shared cache of external issuers' keys. Wrap in `Arc`.
pub struct JwksCache {
    http: reqwest::Client,
    config: JwksCacheConfig,
    clock: Arc<dyn Clock>,
    sources: RwLock<HashMap<String, Arc<SourceState>>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// `http` should have a request timeout set and redirects limited/disabled.
    pub fn new(http: reqwest::Client, config: JwksCacheConfig) -> Self {
        Self::with_clock(http, config, Arc::new(SystemClock))
    }

    pub fn with_clock(
        http: reqwest::Client,
        config: JwksCacheConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            config,
            clock,
            sources: RwLock::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &JwksCacheConfig {
        &self.config
    }

    /// The key for `unverified` from `source` (registered under `source_id`).
    pub async fn key_for(
        &self,
        source_id: &str,
        source: &KeySource,
        unverified: &Unverified,
    ) -> Result<Arc<VerifyingKey>, JoseError> {
        if let KeySource::Inline(set) = source {
            return set.select(unverified).cloned().ok_or(JoseError::UnknownKid);
        }
        let state = self.state_for(source_id, source);
        // Read the generation BEFORE the keys: if a fetch lands in between we
        // see a changed generation and skip fetching again (single-flight).
        let observed = state.generation.load(Ordering::Acquire);
        if let Some(c) = state.current()
            && self.clock.now() < c.expires_at
            && let Some(k) = c.set.select(unverified)
        {
            return Ok(k.clone());
        }
        // Unknown kid, expired, or cold: one rate-limited, single-flight fetch.
        self.refresh_source(source_id, &state, observed).await;
        match state.current() {
            None => Err(JoseError::KeyUnavailable),
            Some(c) => {
                if self.clock.now() > c.expires_at + self.config.max_stale {
                    return Err(JoseError::KeyUnavailable);
                }
                c.set
                    .select(unverified)
                    .cloned()
                    .ok_or(JoseError::UnknownKid)
            }
        }
    }

    /// Forget a source (admin changed the trust); next lookup fetches anew.
    pub fn invalidate(&self, source_id: &str) {
        let mut map = match self.sources.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.remove(source_id);
    }

    /// Number of fetch attempts made for `source_id` (tests, metrics).
    pub fn fetch_count(&self, source_id: &str) -> u64 {
        self.get_state(source_id)
            .map_or(0, |s| s.fetch_count.load(Ordering::Acquire))
    }

    /// Number of lookups currently waiting on an in-flight fetch of `source_id`.
    pub fn waiting_count(&self, source_id: &str) -> u64 {
        self.get_state(source_id)
            .map_or(0, |s| s.waiting.load(Ordering::Acquire))
    }

    /// Number of keys currently cached for `source_id`.
    pub fn cached_key_count(&self, source_id: &str) -> usize {
        self.get_state(source_id)
            .and_then(|s| s.current())
            .map_or(0, |c| c.set.len())
    }

    /// Refreshes every fetched source that is due (past its refresh point,
    /// 80 % of its TTL) or has never succeeded; failed sources are retried at
    /// most every `min_refetch_interval`. Returns the number of fetch attempts.
    pub async fn refresh_due(&self) -> usize {
        let states: Vec<(String, Arc<SourceState>)> = {
            let map = match self.sources.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut attempts = 0;
        for (id, state) in states {
            let observed = state.generation.load(Ordering::Acquire);
            let due = match state.current() {
                None => true,
                Some(c) => self.clock.now() >= c.refresh_at,
            };
            if due && self.refresh_source(&id, &state, observed).await {
                attempts += 1;
            }
        }
        attempts
    }

    /// Background task calling [`Self::refresh_due`] every `period`. Holds
    /// only a weak reference: the task ends when the cache is dropped.
    pub fn spawn_refresher(self: Arc<Self>, period: Duration) -> JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { break };
                cache.refresh_due().await;
            }
        })
    }

    fn get_state(&self, source_id: &str) -> Option<Arc<SourceState>> {
        let map = match self.sources.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(source_id).cloned()
    }

    fn state_for(&self, source_id: &str, source: &KeySource) -> Arc<SourceState> {
        if let Some(s) = self.get_state(source_id)
            && s.source == *source
        {
            return s;
        }
        let mut map = match self.sources.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match map.get(source_id) {
            Some(s) if s.source == *source => s.clone(),
            _ => {
                // New source, or its configuration changed: start afresh.
                let s = Arc::new(SourceState::new(source.clone()));
                map.insert(source_id.to_owned(), s.clone());
                s
            }
        }
    }

    /// Single-flight, rate-limited fetch. Returns whether a fetch was attempted.
    async fn refresh_source(&self, source_id: &str, state: &SourceState, observed: u64) -> bool {
        let waiting = WaitGuard::enter(&state.waiting);
        let mut fs = state.fetch.lock().await;
        drop(waiting);
        if state.generation.load(Ordering::Acquire) != observed {
            return false; // someone else fetched while we waited
        }
        let now = self.clock.now();
        if let Some(last) = fs.last_attempt
            && now.saturating_duration_since(last) < self.config.min_refetch_interval
        {
            return false;
        }
        state.fetch_count.fetch_add(1, Ordering::AcqRel);
        let result = self.fetch_source(&state.source, &mut fs).await;
        // Recorded only once the attempt completed: if this lookup is
        // cancelled mid-fetch, the next caller may fetch instead of being
        // rate-limited by an attempt that never finished.
        fs.last_attempt = Some(now);
        let label = metrics_source(source_id);
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        metrics::counter!("frontdesk_jwks_fetches_total", "source" => label.clone(), "outcome" => outcome)
            .increment(1);
        match result {
            Ok((set, ttl)) => {
                let fetched = self.clock.now();
                if label != CLIENTS_LABEL {
                    metrics::gauge!("frontdesk_jwks_keys", "source" => label.clone())
                        .set(set.len() as f64);
                    metrics::gauge!("frontdesk_jwks_last_success_timestamp_seconds", "source" => label)
                        .set(crate::clock::unix_now() as f64);
                }
                state.store(CachedKeys {
                    set,
                    expires_at: fetched + ttl,
                    refresh_at: fetched + ttl.mul_f64(0.8),
                });
                tracing::debug!(source_id, "JWKS refreshed");
            }
            Err(e) => {
                let have_keys = state.current().is_some();
                tracing::warn!(
                    source_id,
                    reason = e.reason(),
                    serving_cached = have_keys,
                    "JWKS fetch failed"
                );
            }
        }
        state.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    async fn fetch_source(
        &self,
        source: &KeySource,
        fs: &mut FetchState,
    ) -> Result<(KeySet, Duration), FetchError> {
        match source {
            KeySource::Inline(set) => Ok((set.clone(), self.config.max_ttl)),
            KeySource::JwksUri(url) => self.fetch_jwks(url).await,
            KeySource::Discovery { issuer } => {
                let uri = match fs.discovered_jwks_uri.clone() {
                    Some(u) => u,
                    None => {
                        let u = self.discover(issuer).await?;
                        fs.discovered_jwks_uri = Some(u.clone());
                        u
                    }
                };
                let res = self.fetch_jwks(&uri).await;
                if res.is_err() {
                    fs.discovered_jwks_uri = None; // re-discover next time
                }
                res
            }
        }
    }

    fn check_scheme(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.config.allow_insecure_http => Ok(()),
            "http"
                if self.config.allow_loopback_http
                    && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) =>
            {
                Ok(())
            }
            _ => Err(FetchError::InsecureUrl),
        }
    }

    /// GET `url`, require 200 + JSON content type, cap the body; returns
    /// the body and the `Cache-Control` header.
    async fn get_json(
        &self,
        url: &Url,
        accept: &'static str,
    ) -> Result<(Value, Option<String>), FetchError> {
        self.check_scheme(url)?;
        let mut resp = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|_| FetchError::Http)?;
        // A redirect must not downgrade to http (JWKS-07).
        self.check_scheme(resp.url())?;
        if resp.status() != http::StatusCode::OK {
            return Err(FetchError::Status);
        }
        let ct = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json_content_type(ct) {
            return Err(FetchError::ContentType);
        }
        let cache_control = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = self.config.max_body_bytes;
        if resp.content_length().is_some_and(|l| l > cap as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| FetchError::Http)? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body).map_err(|_| FetchError::Json)?;
        Ok((value, cache_control))
    }

    async fn fetch_jwks(&self, url: &Url) -> Result<(KeySet, Duration), FetchError> {
        let (doc, cache_control) = self
            .get_json(url, "application/jwk-set+json, application/json")
            .await?;
        let set = parse_jwks(&doc, self.config.max_keys).ok_or(FetchError::Json)?;
        Ok((
            set,
            ttl_from_cache_control(cache_control.as_deref(), &self.config),
        ))
    }

    /// Resolves `jwks_uri` from the issuer's metadata. The document `issuer`
    /// must equal the configured issuer byte for byte (FED-02, RFC 8414 section 3.3).
    async fn discover(&self, issuer: &str) -> Result<Url, FetchError> {
        let mut last_err = FetchError::NoJwksUri;
        for url in discovery_urls(issuer)? {
            let doc = match self.get_json(&url, "application/json").await {
                Ok((doc, _)) => doc,
                Err(e) => {
                    last_err = e;
                    continue; // try the next well-known location
                }
            };
            if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                return Err(FetchError::IssuerMismatch);
            }
            let jwks_uri = doc
                .get("jwks_uri")
                .and_then(Value::as_str)
                .and_then(|s| Url::parse(s).ok())
                .ok_or(FetchError::NoJwksUri)?;
            self.check_scheme(&jwks_uri)?;
            return Ok(jwks_uri);
        }
        Err(last_err)
    }
}

/// The `source` label of the JWKS metrics for the key source `source_id`: each identity provider
/// by its id (`idp:corp`), so an operator can alert on one whose keys stop refreshing; every
/// client's `jwks_uri` under one label, because clients (registered, or URL-named) are too many
/// to label one by one.
fn metrics_source(source_id: &str) -> String {
    if source_id.starts_with("client:") {
        CLIENTS_LABEL.to_string()
    } else {
        source_id.to_string()
    }
}

/// The one `source` label of all clients' key sets.
const CLIENTS_LABEL: &str = "clients";

/// OIDC location first, then RFC 8414 path insertion.
fn discovery_urls(issuer: &str) -> Result<Vec<Url>, FetchError> {
    let parsed = Url::parse(issuer).map_err(|_| FetchError::BadUrl)?;
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.host_str().is_none() {
        return Err(FetchError::BadUrl);
    }
    let oidc = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    Ok(vec![
        Url::parse(&oidc).map_err(|_| FetchError::BadUrl)?,
        oauth_metadata_url(&parsed).map_err(|_| FetchError::BadUrl)?,
    ])
}

/// Where RFC 8414 §3.1 puts an authorization server's metadata: `/.well-known/oauth-authorization-server`
/// inserted between the issuer's origin and its path (without a final `/`), so
/// `https://as.example.com/tenant` is described at
/// `https://as.example.com/.well-known/oauth-authorization-server/tenant`.
pub fn oauth_metadata_url(issuer: &Url) -> Result<Url, url::ParseError> {
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_path("");
    Url::parse(&format!(
        "{}/.well-known/oauth-authorization-server{path}",
        origin.as_str().trim_end_matches('/')
    ))
}

/// `application/json`, `application/jwk-set+json` or any `application/*+json`, parameters
/// aside: what JWKS (JWKS-01) and client metadata documents (CIMD §4) must be served as.
pub(crate) fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `{"keys":[...]}`; members that are not parseable JWKs are skipped (an IdP
/// publishing one exotic key must not break the others); at most `max_keys`.
fn parse_jwks(doc: &Value, max_keys: usize) -> Option<KeySet> {
    let keys = doc.get("keys")?.as_array()?;
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for k in keys.iter().take(max_keys) {
        match serde_json::from_value::<Jwk>(k.clone()) {
            Ok(jwk) => out.push(jwk),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 || keys.len() > max_keys {
        tracing::warn!(
            skipped,
            total = keys.len(),
            "JWKS contained unusable or excess keys"
        );
    }
    Some(JwkSet { keys: out }.into())
}

/// Parses `max-age` from a `Cache-Control` value (`no-store`/`no-cache` mean 0),
/// clamps to `[min_ttl, max_ttl]`; `default_ttl` when absent.
pub fn ttl_from_cache_control(header: Option<&str>, cfg: &JwksCacheConfig) -> Duration {
    let mut max_age: Option<u64> = None;
    if let Some(h) = header {
        for directive in h.split(',') {
            let d = directive.trim();
            let lower = d.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                max_age = Some(0);
                break;
            }
            if let Some(v) = lower.strip_prefix("max-age=") {
                let v = v.trim_matches('"');
                if let Ok(secs) = v.parse::<u64>() {
                    max_age = Some(secs);
                }
            }
        }
    }
    match max_age {
        None => cfg.default_ttl,
        Some(secs) => Duration::from_secs(secs).clamp(cfg.min_ttl, cfg.max_ttl),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::jose::testutil::*;
    use crate::jose::verify::inspect;
    use axum::Router;
    use axum::extract::State;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tokio::sync::{Notify, Semaphore};

    /// A real HTTP JWKS/discovery server on 127.0.0.1:0 that counts requests.
    struct Srv {
        jwks: Mutex<Value>,
        status: Mutex<u16>,
        content_type: Mutex<&'static str>,
        cache_control: Mutex<Option<String>>,
        /// Served at `/.well-known/openid-configuration`.
        oidc_doc: Mutex<Option<Value>>,
        /// Served at `/.well-known/oauth-authorization-server/tenant`.
        oauth_doc: Mutex<Option<Value>>,
        jwks_hits: AtomicU64,
        disc_hits: AtomicU64,
        /// When set, `/jwks` waits for a permit before answering.
        gate: Mutex<Option<Arc<Semaphore>>>,
        arrived: Notify,
    }

    impl Srv {
        fn new(keys: Vec<Value>) -> Arc<Self> {
            Arc::new(Self {
                jwks: Mutex::new(json!({ "keys": keys })),
                status: Mutex::new(200),
                content_type: Mutex::new("application/json"),
                cache_control: Mutex::new(None),
                oidc_doc: Mutex::new(None),
                oauth_doc: Mutex::new(None),
                jwks_hits: AtomicU64::new(0),
                disc_hits: AtomicU64::new(0),
                gate: Mutex::new(None),
                arrived: Notify::new(),
            })
        }
        fn set_keys(&self, keys: Vec<Value>) {
            *self.jwks.lock().unwrap() = json!({ "keys": keys });
        }
        fn hits(&self) -> u64 {
            self.jwks_hits.load(Ordering::SeqCst)
        }
    }

    async fn jwks_handler(State(s): State<Arc<Srv>>) -> Response {
        s.jwks_hits.fetch_add(1, Ordering::SeqCst);
        s.arrived.notify_one();
        let gate = s.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let _permit = g.acquire().await.unwrap();
        }
        let status = http::StatusCode::from_u16(*s.status.lock().unwrap()).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(*s.content_type.lock().unwrap()),
        );
        if let Some(cc) = s.cache_control.lock().unwrap().clone() {
            headers.insert(http::header::CACHE_CONTROL, cc.parse().unwrap());
        }
        let body = s.jwks.lock().unwrap().to_string();
        (status, headers, body).into_response()
    }

    fn doc_response(doc: Option<Value>) -> Response {
        match doc {
            Some(d) => (
                [(http::header::CONTENT_TYPE, "application/json")],
                d.to_string(),
            )
                .into_response(),
            None => http::StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn oidc_handler(State(s): State<Arc<Srv>>) -> Response {
        s.disc_hits.fetch_add(1, Ordering::SeqCst);
        doc_response(s.oidc_doc.lock().unwrap().clone())
    }

    async fn oauth_handler(State(s): State<Arc<Srv>>) -> Response {
        s.disc_hits.fetch_add(1, Ordering::SeqCst);
        doc_response(s.oauth_doc.lock().unwrap().clone())
    }

    async fn serve(s: Arc<Srv>) -> SocketAddr {
        let app = Router::new()
            .route("/jwks", get(jwks_handler))
            .route("/.well-known/openid-configuration", get(oidc_handler))
            .route(
                "/tenant/.well-known/openid-configuration",
                get(oidc_handler),
            )
            .route(
                "/.well-known/oauth-authorization-server/tenant",
                get(oauth_handler),
            )
            .with_state(s);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        addr
    }

    fn test_config() -> JwksCacheConfig {
        JwksCacheConfig {
            allow_insecure_http: true,
            ..JwksCacheConfig::default()
        }
    }

    fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    struct Fixture {
        srv: Arc<Srv>,
        addr: SocketAddr,
        clock: Arc<ManualClock>,
        cache: Arc<JwksCache>,
        source: KeySource,
    }

    async fn fixture_with(config: JwksCacheConfig, keys: Vec<Value>) -> Fixture {
        let srv = Srv::new(keys);
        let addr = serve(srv.clone()).await;
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(JwksCache::with_clock(http_client(), config, clock.clone()));
        let source = KeySource::JwksUri(Url::parse(&format!("http://{addr}/jwks")).unwrap());
        Fixture {
            srv,
            addr,
            clock,
            cache,
            source,
        }
    }

    async fn fixture() -> Fixture {
        fixture_with(test_config(), vec![ec_key().jwk_value()]).await
    }

    fn token_for(kid: &str) -> Unverified {
        let t = es256(
            ec_key(),
            &json!({"alg":"ES256","kid": kid}),
            &json!({"iss":"x"}),
        );
        inspect(&t, 10_000).unwrap()
    }

    fn kid_of(k: &VerifyingKey) -> &str {
        k.jwk().common.key_id.as_deref().unwrap()
    }

    #[tokio::test]
    async fn jwks06_warm_lookups_are_served_from_memory() {
        let f = fixture().await;
        let u = token_for("ec-1");
        let k = f.cache.key_for("idp", &f.source, &u).await.unwrap();
        assert_eq!(kid_of(&k), "ec-1");
        for _ in 0..100 {
            f.cache.key_for("idp", &f.source, &u).await.unwrap();
        }
        assert_eq!(f.srv.hits(), 1);
        assert_eq!(f.cache.fetch_count("idp"), 1);
        assert_eq!(f.cache.cached_key_count("idp"), 1);
    }

    /// EMA-05: key rotation is followed by `kid` (one rate-limited refetch on an unknown one).
    #[tokio::test]
    async fn jwks05_rotation_is_picked_up_on_unknown_kid_rate_limited() {
        let f = fixture().await;
        f.cache
            .key_for("idp", &f.source, &token_for("ec-1"))
            .await
            .unwrap();
        // The IdP publishes a new key.
        f.srv
            .set_keys(vec![ec_key().jwk_value(), ec_key2().jwk_value()]);
        // Within min_refetch_interval of the last fetch: no refetch.
        f.clock.advance(Duration::from_secs(29));
        let e = f
            .cache
            .key_for("idp", &f.source, &token_for("ec-2"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::UnknownKid);
        assert_eq!(f.srv.hits(), 1);
        // Interval elapsed: the unknown kid triggers exactly one refetch.
        f.clock.advance(Duration::from_secs(1));
        let k = f
            .cache
            .key_for("idp", &f.source, &token_for("ec-2"))
            .await
            .unwrap();
        assert_eq!(kid_of(&k), "ec-2");
        assert_eq!(f.srv.hits(), 2);
        // A second unknown kid right after: no new fetch.
        let e = f
            .cache
            .key_for("idp", &f.source, &token_for("nope"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::UnknownKid);
        assert_eq!(f.srv.hits(), 2);
        assert_eq!(f.cache.fetch_count("idp"), 2);
    }

    /// EMA-05: a key the issuer withdrew is gone with the next fetch (no rollback to it).
    /// Rows: JWKS-07.
    #[tokio::test]
    async fn jwks07_removed_keys_are_not_rolled_back() {
        let f = fixture_with(
            test_config(),
            vec![ec_key().jwk_value(), ec_key2().jwk_value()],
        )
        .await;
        f.cache
            .key_for("idp", &f.source, &token_for("ec-1"))
            .await
            .unwrap();
        f.srv.set_keys(vec![ec_key2().jwk_value()]); // ec-1 retired by the IdP
        f.clock.advance(Duration::from_secs(30));
        // Some other unknown kid causes a refetch; ec-1 disappears with it.
        let _ = f.cache.key_for("idp", &f.source, &token_for("other")).await;
        assert_eq!(f.srv.hits(), 2);
        let e = f
            .cache
            .key_for("idp", &f.source, &token_for("ec-1"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::UnknownKid);
        f.cache
            .key_for("idp", &f.source, &token_for("ec-2"))
            .await
            .unwrap();
    }

    /// BCP-05: each issuer's keys are kept under that issuer alone. With both warm, a token
    /// naming the other issuer's key finds nothing here, so a key of issuer B never verifies a
    /// token that claims issuer A (and the issuer is then checked against the same trust entry).
    #[tokio::test]
    async fn bcp05_one_issuers_keys_never_serve_another() {
        let a = fixture_with(test_config(), vec![ec_key().jwk_value()]).await;
        let b_srv = Srv::new(vec![ec_key2().jwk_value()]);
        let b_addr = serve(b_srv.clone()).await;
        let b = KeySource::JwksUri(Url::parse(&format!("http://{b_addr}/jwks")).unwrap());
        let cache = &a.cache;
        let found = cache
            .key_for("idp:a", &a.source, &token_for("ec-1"))
            .await
            .unwrap();
        assert_eq!(kid_of(&found), "ec-1");
        let found = cache
            .key_for("idp:b", &b, &token_for("ec-2"))
            .await
            .unwrap();
        assert_eq!(kid_of(&found), "ec-2");
        // Past the refetch interval, so the misses below are not a rate-limit artefact.
        a.clock.advance(Duration::from_secs(30));
        assert_eq!(
            cache
                .key_for("idp:a", &a.source, &token_for("ec-2"))
                .await
                .unwrap_err(),
            JoseError::UnknownKid
        );
        assert_eq!(
            cache
                .key_for("idp:b", &b, &token_for("ec-1"))
                .await
                .unwrap_err(),
            JoseError::UnknownKid
        );
        let inline_a = KeySource::Inline(KeySet::from(JwkSet {
            keys: vec![ec_key().jwk()],
        }));
        assert_eq!(
            cache
                .key_for("idp:c", &inline_a, &token_for("ec-2"))
                .await
                .unwrap_err(),
            JoseError::UnknownKid
        );
        assert_eq!((a.srv.hits(), b_srv.hits()), (2, 2));
    }

    async fn burst(
        f: &Fixture,
        kid: &'static str,
        n: usize,
    ) -> Vec<Result<Arc<VerifyingKey>, JoseError>> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let cache = f.cache.clone();
            let source = f.source.clone();
            tasks.push(tokio::spawn(async move {
                cache.key_for("idp", &source, &token_for(kid)).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jwks06_burst_of_unknown_kids_causes_exactly_one_fetch() {
        let f = fixture().await;
        f.cache
            .key_for("idp", &f.source, &token_for("ec-1"))
            .await
            .unwrap();
        f.srv
            .set_keys(vec![ec_key().jwk_value(), ec_key2().jwk_value()]);
        f.clock.advance(Duration::from_secs(31));
        let results = burst(&f, "unknown-kid", 50).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().err() == Some(&JoseError::UnknownKid))
        );
        assert_eq!(f.srv.hits(), 2, "initial fetch + exactly one refetch");
        assert_eq!(f.cache.fetch_count("idp"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn single_flight_concurrent_callers_share_one_in_flight_fetch() {
        // Rate limit disabled, so only single-flight can prevent extra fetches.
        let cfg = JwksCacheConfig {
            min_refetch_interval: Duration::ZERO,
            ..test_config()
        };
        let f = fixture_with(cfg, vec![ec_key().jwk_value(), ec_key2().jwk_value()]).await;
        let gate = Arc::new(Semaphore::new(0));
        *f.srv.gate.lock().unwrap() = Some(gate.clone());

        let mut tasks = Vec::new();
        for i in 0..50 {
            let cache = f.cache.clone();
            let source = f.source.clone();
            let kid = if i % 2 == 0 { "ec-1" } else { "ec-2" };
            tasks.push(tokio::spawn(async move {
                cache.key_for("idp", &source, &token_for(kid)).await
            }));
        }
        // The first fetch reaches the server and is held there...
        f.srv.arrived.notified().await;
        // ...until the other 49 lookups are queued behind it.
        while f.cache.waiting_count("idp") < 49 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1000);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(f.srv.hits(), 1);
        assert_eq!(f.cache.fetch_count("idp"), 1);
    }

    #[tokio::test]
    async fn stale_if_error_keeps_serving_cached_keys() {
        let f = fixture().await;
        let u = token_for("ec-1");
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        *f.srv.status.lock().unwrap() = 500;
        // Past the TTL (default 5 min): the lookup tries to refresh, fails,
        // and still serves the cached key.
        f.clock.advance(Duration::from_secs(301));
        let k = f.cache.key_for("idp", &f.source, &u).await.unwrap();
        assert_eq!(kid_of(&k), "ec-1");
        assert_eq!(f.srv.hits(), 2);
        // Background refresh fails too: still served.
        f.clock.advance(Duration::from_secs(30));
        assert_eq!(f.cache.refresh_due().await, 1);
        assert_eq!(f.srv.hits(), 3);
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        // Garbage (non-JWKS JSON) is a failure as well, not an empty key set.
        *f.srv.status.lock().unwrap() = 200;
        *f.srv.jwks.lock().unwrap() = json!({"nokeys": true});
        f.clock.advance(Duration::from_secs(30));
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        assert_eq!(f.cache.cached_key_count("idp"), 1);
        // Beyond max_stale the keys are no longer trusted.
        f.clock.advance(f.cache.config().max_stale);
        let e = f.cache.key_for("idp", &f.source, &u).await.unwrap_err();
        assert_eq!(e, JoseError::KeyUnavailable);
    }

    #[tokio::test]
    async fn never_any_keys_is_key_unavailable_and_retries_are_rate_limited() {
        let f = fixture().await;
        *f.srv.status.lock().unwrap() = 503;
        let u = token_for("ec-1");
        let e = f.cache.key_for("idp", &f.source, &u).await.unwrap_err();
        assert_eq!(e, JoseError::KeyUnavailable);
        assert!(e.is_server_side());
        let _ = f.cache.key_for("idp", &f.source, &u).await;
        assert_eq!(f.srv.hits(), 1);
        *f.srv.status.lock().unwrap() = 200;
        f.clock.advance(Duration::from_secs(30));
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        assert_eq!(f.srv.hits(), 2);
    }

    #[tokio::test]
    async fn jwks01_non_json_content_type_and_oversized_bodies_refused() {
        let f = fixture().await;
        *f.srv.content_type.lock().unwrap() = "text/html";
        let u = token_for("ec-1");
        assert_eq!(
            f.cache.key_for("idp", &f.source, &u).await.unwrap_err(),
            JoseError::KeyUnavailable
        );
        // application/jwk-set+json with parameters is fine.
        *f.srv.content_type.lock().unwrap() = "application/jwk-set+json; charset=utf-8";
        f.clock.advance(Duration::from_secs(30));
        f.cache.key_for("idp", &f.source, &u).await.unwrap();

        let cfg = JwksCacheConfig {
            max_body_bytes: 64,
            ..test_config()
        };
        let f = fixture_with(cfg, vec![ec_key().jwk_value()]).await;
        assert_eq!(
            f.cache.key_for("idp", &f.source, &u).await.unwrap_err(),
            JoseError::KeyUnavailable
        );
        assert_eq!(f.srv.hits(), 1);
    }

    /// EMA-05: keys are fetched over TLS only; an http `jwks_uri` is not even requested.
    /// Rows: JWKS-07.
    #[tokio::test]
    async fn jwks07_http_urls_refused_without_request_in_production_config() {
        let srv = Srv::new(vec![ec_key().jwk_value()]);
        let addr = serve(srv.clone()).await;
        let cache = JwksCache::new(http_client(), JwksCacheConfig::default());
        let source = KeySource::JwksUri(Url::parse(&format!("http://{addr}/jwks")).unwrap());
        let e = cache
            .key_for("idp", &source, &token_for("ec-1"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::KeyUnavailable);
        assert_eq!(srv.hits(), 0);
    }

    /// JWKS-07 (https only): a redirect chain through a plain-http hop is not followed, even
    /// when it ends at an acceptable URL. The hop is a non-loopback http URL (the IPv4-mapped
    /// IPv6 form of a loopback address, which the loopback exception does not cover) standing
    /// for `http://idp.example/…` between two acceptable URLs.
    #[tokio::test]
    async fn jwks07_a_redirect_through_plain_http_is_not_followed() {
        let srv = Srv::new(vec![ec_key().jwk_value()]);
        let addr = serve(srv.clone()).await;
        // Dual stack: reached as 127.0.0.1 and as [::ffff:127.0.0.1].
        let listener = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hop = format!("http://[::ffff:127.0.0.1]:{port}/bounce");
        let end = format!("http://{addr}/jwks");
        let bounces = Arc::new(AtomicU64::new(0));
        let counted = bounces.clone();
        let app =
            Router::new()
                .route(
                    "/start",
                    get(move || async move {
                        (http::StatusCode::FOUND, [(http::header::LOCATION, hop)])
                    }),
                )
                .route(
                    "/bounce",
                    get(move || async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        (http::StatusCode::FOUND, [(http::header::LOCATION, end)])
                    }),
                );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        // The production client and settings: loopback http allowed, remote http not.
        let cache = JwksCache::new(
            trust_http_client(Duration::from_secs(10)).unwrap(),
            JwksCacheConfig {
                allow_loopback_http: true,
                ..JwksCacheConfig::default()
            },
        );
        let source =
            KeySource::JwksUri(Url::parse(&format!("http://127.0.0.1:{port}/start")).unwrap());
        let e = cache
            .key_for("idp", &source, &token_for("ec-1"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::KeyUnavailable);
        assert_eq!(
            bounces.load(Ordering::SeqCst),
            0,
            "the http hop is not requested"
        );
        assert_eq!(srv.hits(), 0, "nor where the chain ends");
    }

    #[test]
    fn cache_control_max_age_parsed_and_clamped() {
        let cfg = JwksCacheConfig::default();
        let ttl = |h: Option<&str>| ttl_from_cache_control(h, &cfg).as_secs();
        assert_eq!(ttl(None), 300);
        assert_eq!(ttl(Some("public, max-age=3600")), 3600);
        assert_eq!(ttl(Some("Max-Age=120, must-revalidate")), 120);
        assert_eq!(ttl(Some("max-age=\"900\"")), 900);
        assert_eq!(ttl(Some("max-age=5")), 60); // clamped up to min_ttl
        assert_eq!(ttl(Some("max-age=999999999")), 24 * 3600); // clamped to max_ttl
        assert_eq!(ttl(Some("no-store")), 60);
        assert_eq!(ttl(Some("no-cache, max-age=600")), 60);
        assert_eq!(ttl(Some("max-age=abc")), 300);
        assert_eq!(ttl(Some("s-maxage=100")), 300);
    }

    #[tokio::test]
    async fn jwks06_cache_control_from_response_drives_refresh() {
        let f = fixture().await;
        *f.srv.cache_control.lock().unwrap() = Some("public, max-age=120".into());
        f.cache
            .key_for("idp", &f.source, &token_for("ec-1"))
            .await
            .unwrap();
        // Refresh point is 80 % of 120 s = 96 s.
        f.clock.advance(Duration::from_secs(95));
        assert_eq!(f.cache.refresh_due().await, 0);
        f.clock.advance(Duration::from_secs(2));
        assert_eq!(f.cache.refresh_due().await, 1);
        assert_eq!(f.srv.hits(), 2);

        // max-age below the minimum is clamped to 60 s (refresh at 48 s).
        *f.srv.cache_control.lock().unwrap() = Some("max-age=1".into());
        f.clock.advance(Duration::from_secs(200));
        assert_eq!(f.cache.refresh_due().await, 1); // picks up the new header
        f.clock.advance(Duration::from_secs(47));
        assert_eq!(f.cache.refresh_due().await, 0);
        f.clock.advance(Duration::from_secs(2));
        assert_eq!(f.cache.refresh_due().await, 1);
        assert_eq!(f.srv.hits(), 4);
    }

    #[tokio::test]
    async fn discovery_resolves_jwks_uri_and_caches_it() {
        let f = fixture().await;
        let issuer = format!("http://{}", f.addr);
        *f.srv.oidc_doc.lock().unwrap() =
            Some(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}));
        let source = KeySource::Discovery {
            issuer: issuer.clone(),
        };
        f.cache
            .key_for("idp", &source, &token_for("ec-1"))
            .await
            .unwrap();
        assert_eq!(f.srv.disc_hits.load(Ordering::SeqCst), 1);
        f.clock.advance(Duration::from_secs(30));
        let _ = f.cache.key_for("idp", &source, &token_for("unknown")).await;
        assert_eq!(f.srv.hits(), 2);
        assert_eq!(f.srv.disc_hits.load(Ordering::SeqCst), 1, "jwks_uri reused");
    }

    #[tokio::test]
    async fn fed02_discovery_with_mismatched_issuer_refused() {
        let f = fixture().await;
        let issuer = format!("http://{}", f.addr);
        // The document claims the trailing-slash variant: not the same issuer.
        *f.srv.oidc_doc.lock().unwrap() =
            Some(json!({"issuer": format!("{issuer}/"), "jwks_uri": format!("{issuer}/jwks")}));
        let source = KeySource::Discovery { issuer };
        let e = f
            .cache
            .key_for("idp", &source, &token_for("ec-1"))
            .await
            .unwrap_err();
        assert_eq!(e, JoseError::KeyUnavailable);
        assert_eq!(
            f.srv.hits(),
            0,
            "jwks_uri of a mismatched document is never fetched"
        );
    }

    #[tokio::test]
    async fn discovery_falls_back_to_rfc8414_path_insertion() {
        let f = fixture().await;
        let issuer = format!("http://{}/tenant", f.addr);
        // No OIDC document at {issuer}/.well-known/openid-configuration (404),
        // RFC 8414 document at /.well-known/oauth-authorization-server/tenant.
        *f.srv.oauth_doc.lock().unwrap() =
            Some(json!({"issuer": issuer, "jwks_uri": format!("http://{}/jwks", f.addr)}));
        let source = KeySource::Discovery { issuer };
        f.cache
            .key_for("idp", &source, &token_for("ec-1"))
            .await
            .unwrap();
        assert_eq!(f.srv.disc_hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn discovery_url_construction() {
        let urls = |i: &str| {
            discovery_urls(i)
                .unwrap()
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            urls("https://idp.example.com"),
            [
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            urls("https://idp.example.com/"),
            [
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            urls("https://idp.example.com/t/1"),
            [
                "https://idp.example.com/t/1/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/t/1",
            ]
        );
        assert!(discovery_urls("https://idp.example.com/?q=1").is_err());
        assert!(discovery_urls("not a url").is_err());
    }

    #[tokio::test]
    async fn invalidate_forces_a_new_fetch_and_inline_never_fetches() {
        let f = fixture().await;
        let u = token_for("ec-1");
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        f.cache.invalidate("idp");
        assert_eq!(f.cache.fetch_count("idp"), 0);
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        assert_eq!(f.srv.hits(), 2);

        let inline = KeySource::Inline(KeySet::from(JwkSet {
            keys: vec![ec_key().jwk()],
        }));
        f.cache.key_for("static", &inline, &u).await.unwrap();
        assert_eq!(
            f.cache
                .key_for("static", &inline, &token_for("x"))
                .await
                .unwrap_err(),
            JoseError::UnknownKid
        );
        assert_eq!(f.cache.fetch_count("static"), 0);
    }

    #[tokio::test]
    async fn changed_source_for_same_id_starts_afresh() {
        let f = fixture().await;
        let u = token_for("ec-1");
        f.cache.key_for("idp", &f.source, &u).await.unwrap();
        let other = KeySource::JwksUri(Url::parse(&format!("http://{}/jwks?v=2", f.addr)).unwrap());
        f.cache.key_for("idp", &other, &u).await.unwrap();
        assert_eq!(f.srv.hits(), 2);
    }

    #[tokio::test]
    async fn refresher_task_ends_when_cache_is_dropped() {
        let f = fixture().await;
        let handle = f.cache.clone().spawn_refresher(Duration::from_millis(1));
        drop(f.cache);
        handle.await.unwrap();
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=UTF-8"));
        assert!(is_json_content_type("application/jwk-set+json"));
        assert!(!is_json_content_type("text/json"));
        assert!(!is_json_content_type(""));
        assert!(!is_json_content_type("application/jsonp"));
    }
}
