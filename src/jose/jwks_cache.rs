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

use super::verify::{JoseError, Unverified, select_key};

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
    Inline(JwkSet),
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
    set: JwkSet,
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
}

impl SourceState {
    fn new(source: KeySource) -> Self {
        Self {
            source,
            keys: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            generation: AtomicU64::new(0),
            fetch_count: AtomicU64::new(0),
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
    ) -> Result<Jwk, JoseError> {
        if let KeySource::Inline(set) = source {
            return select_key(set, unverified)
                .cloned()
                .ok_or(JoseError::UnknownKid);
        }
        let state = self.state_for(source_id, source);
        // Read the generation BEFORE the keys: if a fetch lands in between we
        // see a changed generation and skip fetching again (single-flight).
        let observed = state.generation.load(Ordering::Acquire);
        if let Some(c) = state.current()
            && self.clock.now() < c.expires_at
            && let Some(k) = select_key(&c.set, unverified)
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
                select_key(&c.set, unverified)
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

    /// Number of keys currently cached for `source_id`.
    pub fn cached_key_count(&self, source_id: &str) -> usize {
        self.get_state(source_id)
            .and_then(|s| s.current())
            .map_or(0, |c| c.set.keys.len())
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
        let mut fs = state.fetch.lock().await;
        if state.generation.load(Ordering::Acquire) != observed {
            return false; // someone else fetched while we waited
        }
        let now = self.clock.now();
        if let Some(last) = fs.last_attempt
            && now.saturating_duration_since(last) < self.config.min_refetch_interval
        {
            return false;
        }
        fs.last_attempt = Some(now);
        state.fetch_count.fetch_add(1, Ordering::AcqRel);
        match self.fetch_source(&state.source, &mut fs).await {
            Ok((set, ttl)) => {
                let fetched = self.clock.now();
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
    ) -> Result<(JwkSet, Duration), FetchError> {
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

    async fn fetch_jwks(&self, url: &Url) -> Result<(JwkSet, Duration), FetchError> {
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
    let path = parsed.path().trim_end_matches('/');
    let mut origin = parsed.clone();
    origin.set_path("");
    let oauth = format!(
        "{}/.well-known/oauth-authorization-server{}",
        origin.as_str().trim_end_matches('/'),
        path
    );
    let mut out = Vec::with_capacity(2);
    for u in [oidc, oauth] {
        out.push(Url::parse(&u).map_err(|_| FetchError::BadUrl)?);
    }
    Ok(out)
}

/// `application/json`, `application/jwk-set+json` or any `application/*+json`.
fn is_json_content_type(ct: &str) -> bool {
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
fn parse_jwks(doc: &Value, max_keys: usize) -> Option<JwkSet> {
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
    Some(JwkSet { keys: out })
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
