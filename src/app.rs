//! The composition root: turns a validated [`Config`] into a running server — key-encryption
//! key, database (migrated), trust configuration, key ring, router, listener, background tasks —
//! and shuts it down gracefully. Each startup failure becomes one line saying what is wrong and
//! how to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::unix_now;
use crate::config::AuthorizationConfig;
use crate::config::{Config, DEVELOPMENT_KEK_FILE};
use crate::http::{AppState, router};
use crate::jose::jwks_cache::{JwksCache, JwksCacheConfig};
use crate::keys::{Kek, KeyPolicy, KeyRing, SigningAlgorithm};
use crate::oauth::TokenService;
use crate::oauth::client_auth::SecretCache;
use crate::registry::Trust;
use crate::retention;
use crate::store::{CodeStore, ReplayStore, Store, StoreError, TokenStore, UserStore};

/// A startup failure, printed as one line before exiting non-zero.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, StartupError> {
    Err(StartupError(message.into()))
}

/// The key-encryption key named by the configuration. In development without one, a KEK file is
/// created next to the database with mode 0600, and a warning says so.
pub fn load_kek(config: &Config) -> Result<Kek, StartupError> {
    if let Some(key) = &config.keys.encryption_key {
        return Kek::from_base64(key.expose()).map_err(StartupError);
    }
    if let Some(path) = &config.keys.encryption_key_file {
        let kek = Kek::from_file(path).map_err(|message| {
            StartupError(format!(
                "{message}; set keys.encryption_key_file or FRONTDESK_KEY_ENCRYPTION_KEY_FILE to a readable file"
            ))
        })?;
        // Warned about, not refused: container runtimes mount secrets 0644 or 0444 by default,
        // where the container's one user is the only reader.
        if let Some(mode) = open_to_others(path) {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{mode:04o}"),
                "the key-encryption key file is readable by other users than its owner; make it 0600 (or 0400) unless it is a container secret no other user can reach"
            );
        }
        return Ok(kek);
    }
    if config.development {
        let path = PathBuf::from(DEVELOPMENT_KEK_FILE);
        let (kek, created) = Kek::load_or_create_file(&path).map_err(StartupError)?;
        if created {
            tracing::warn!(path = %path.display(), "generated a development key-encryption key; production deployments must supply FRONTDESK_KEY_ENCRYPTION_KEY");
        }
        return Ok(kek);
    }
    fail(
        "no key-encryption key: set FRONTDESK_KEY_ENCRYPTION_KEY (32 random bytes, base64) or keys.encryption_key_file",
    )
}

/// Warns about each `*_FILE` secret that users other than its owner can read or change — a
/// database password or a client secret handed to every local account. Warned about, not
/// refused, for the reason the KEK file is (container secrets are mounted 0644 or 0444).
fn warn_about_open_secret_files(config: &Config) {
    for (variable, path) in &config.secret_files {
        if let Some(mode) = open_to_others(path) {
            tracing::warn!(
                variable = %variable,
                path = %path.display(),
                mode = %format!("{mode:04o}"),
                "a secret file is readable by other users than its owner; make it 0600 (or 0400) unless it is a container secret no other user can reach"
            );
        }
    }
}

/// The permission bits of the file at `path` when they let users other than its owner (its
/// group, or everyone) read or change it; `None` when only the owner may, when they cannot be
/// read, and off Unix. Why: a KEK file any local account can read hands every private signing
/// key to whoever copies it together with the database (or a backup of it).
fn open_to_others(path: &std::path::Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Connects to the database (without migrating), with a message that names the URL's scheme
/// and host but never its password.
pub async fn connect_store(config: &Config) -> Result<Store, StartupError> {
    let url = config.database.url.expose();
    Store::connect(url, config.database.max_connections)
        .await
        .map_err(|error| {
            StartupError(format!(
                "cannot open the database {}: {error}; check database.url / FRONTDESK_DATABASE_URL and that the server is running",
                redact_url(url)
            ))
        })
}

/// Connects and applies migrations (each in a transaction).
pub async fn open_store(config: &Config) -> Result<Store, StartupError> {
    let store = connect_store(config).await?;
    store.migrate().await.map_err(|error| {
        StartupError(format!(
            "database migration failed on {}: {error}; nothing was half-applied (each migration runs in a transaction)",
            redact_url(config.database.url.expose())
        ))
    })?;
    Ok(store)
}

/// The key policy implied by the configuration.
pub fn key_policy(config: &Config) -> KeyPolicy {
    let longest = config
        .tokens
        .id_jag_lifetime_secs
        .max(config.tokens.access_token_lifetime_secs)
        .max(config.tokens.chaining_grant_lifetime_secs)
        // Audiences can be added at run time (admin page, API) with any lifetime up to the
        // largest allowed, after this policy was computed: a retired key stays published for
        // that long too, so no token outlives the key that verifies it.
        .max(crate::trust::MAX_AUDIENCE_LIFETIME_SECS)
        .max(
            config
                .resources
                .iter()
                .filter_map(|r| r.access_token_lifetime_secs)
                .max()
                .unwrap_or(0),
        );
    KeyPolicy {
        algorithm: SigningAlgorithm::parse(&config.keys.algorithm)
            .unwrap_or(SigningAlgorithm::Es256),
        rsa_bits: config.keys.rsa_bits,
        promote_after_secs: i64::try_from(config.keys.promote_after_secs).unwrap_or(i64::MAX / 4),
        retired_publish_secs: i64::try_from(
            longest + config.tokens.clock_skew_secs + config.keys.jwks_max_age_secs,
        )
        .unwrap_or(i64::MAX / 4),
        rotate_after_secs: i64::from(config.keys.rotate_after_days) * 86_400,
    }
}

/// Opens the key ring, with a clear message if stored keys do not open under this KEK.
pub async fn open_key_ring(config: &Config, store: Store) -> Result<KeyRing, StartupError> {
    let kek = load_kek(config)?;
    KeyRing::open(store, kek, key_policy(config), unix_now())
        .await
        .map_err(|error| StartupError(format!("cannot load the signing keys: {error}")))
}

/// Hides the passwords of a database URL: the URL's own, and the value of every query
/// parameter whose name holds `password` (sqlx's PostgreSQL driver takes `?password=` like the
/// URL's own, and the URL is printed at every start and in every database error). The rest of
/// the query is kept byte for byte.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let mut changed = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
        changed = true;
    }
    if let Some(query) = parsed.query().map(str::to_owned) {
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _))
                    if form_urlencoded::parse(name.as_bytes()).next().is_some_and(
                        |(name, _)| name.to_ascii_lowercase().contains("password"),
                    ) =>
                {
                    changed = true;
                    format!("{name}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        parsed.set_query(Some(&redacted.join("&")));
    }
    // Unchanged, the URL is printed as configured, not as the parser normalises it.
    if changed {
        parsed.to_string()
    } else {
        url.to_string()
    }
}

/// A server running in the background (tests, embedding).
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The shared state (tests inspect the store and keys through it).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<Result<(), StartupError>>,
    retention_passes: watch::Receiver<u64>,
}

impl RunningServer {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many times the audit retention task has finished a pass (successful or not; it
    /// never runs when `audit.retention_days` is 0): what an embedder or a test waits on,
    /// instead of guessing how long the pass at start takes.
    pub fn retention_passes(&self) -> watch::Receiver<u64> {
        self.retention_passes.clone()
    }

    /// Stops accepting, finishes in-flight requests, and waits for the end.
    pub async fn shutdown(self) -> Result<(), StartupError> {
        let _ = self.shutdown.send(true);
        self.handle
            .await
            .map_err(|error| StartupError(format!("server task failed: {error}")))?
    }
}

/// Builds everything and starts serving in a background task. The returned server is ready:
/// the listener is bound and migrations, trust and keys are loaded.
pub async fn spawn(config: Config) -> Result<RunningServer, StartupError> {
    spawn_with(config, AuditMode::Durable).await
}

/// Whether token decisions reach the audit log. Every server is `Durable`;
/// `DiscardedForBenchmarks` exists only for the load test's baseline binary
/// (`benches/bin/unaudited.rs`), which measures what the durable writes cost
/// (docs/performance.md).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditMode {
    /// Every decision and replay record committed before the response.
    Durable,
    /// Nothing written: a benchmark baseline, never a server.
    DiscardedForBenchmarks,
}

async fn spawn_with(config: Config, audit: AuditMode) -> Result<RunningServer, StartupError> {
    let listen = config.server.listen.clone();
    let listener = TcpListener::bind(&listen).await.map_err(|error| {
        StartupError(format!(
            "cannot listen on {listen}: {error}; stop the other process or choose another address with server.listen / FRONTDESK_LISTEN"
        ))
    })?;
    spawn_on_with(config, listener, audit).await
}

/// Like [`spawn`], on a listener the caller bound (tests bind port 0 first so the issuer can name
/// the real port).
pub async fn spawn_on(
    config: Config,
    listener: TcpListener,
) -> Result<RunningServer, StartupError> {
    spawn_on_with(config, listener, AuditMode::Durable).await
}

async fn spawn_on_with(
    mut config: Config,
    listener: TcpListener,
    audit: AuditMode,
) -> Result<RunningServer, StartupError> {
    crate::http::metrics_handle();
    warn_about_open_secret_files(&config);
    if let Some(warning) = crate::http::serve::descriptor_shortfall(
        config.server.max_connections,
        config.database.max_connections,
        crate::http::serve::open_files_limit(),
    ) {
        tracing::warn!("{warning}");
    }
    let store = open_store(&config).await?;
    store
        .claim_for_this_process()
        .await
        .map_err(|error| StartupError(format!("cannot serve the database: {error}")))?;
    crate::trust::sync_config(&store, &config, unix_now())
        .await
        .map_err(|error| {
            StartupError(format!(
                "cannot load the configured trust into the database: {error}"
            ))
        })?;
    config.forget_trust_lists();
    let config = Arc::new(config);
    let keys = Arc::new(open_key_ring(&config, store.clone()).await?);
    let addr = listener
        .local_addr()
        .map_err(|error| StartupError(format!("cannot read the bound address: {error}")))?;
    let mut tokens = build_token_service(config.clone(), store.clone(), keys.clone()).await?;
    if audit == AuditMode::DiscardedForBenchmarks {
        tokens.audit = crate::store::AuditWriter::discarding_for_benchmarks();
    }
    let tokens = Arc::new(tokens);
    let state = AppState::new(crate::http::Shared {
        config: config.clone(),
        store: store.clone(),
        keys: keys.clone(),
        tokens,
        admin: Arc::new(crate::admin::AdminRuntime::new(
            Duration::from_secs(config.federation.http_timeout_secs),
            &config,
        )),
        readiness: Default::default(),
    });
    let app = router(state.clone());
    let (shutdown, mut stop) = watch::channel(false);
    let (passes, retention_passes) = watch::channel(0u64);
    let mut background = spawn_background(state.clone(), stop.clone(), passes);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let limits = crate::http::serve::ConnectionLimits {
        io_timeout: Duration::from_secs(config.server.request_timeout_secs),
        max_connections: config.server.max_connections,
    };
    let handle = tokio::spawn(async move {
        let mut stopping = stop.clone();
        // A request head must arrive within the request timeout too: a client that never
        // finishes one (or idles on a keep-alive connection, or never reads its answer) is
        // disconnected (slowloris).
        let serve = crate::http::serve::serve(listener, app, limits, async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
        tokio::select! {
            () = serve => {}
            () = async {
                let _ = stop.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within the shutdown grace period");
            }
        }
        // The background tasks have seen the stop; a retention purge finishes the chunk in
        // hand and records what it deleted before the pool closes under it.
        if tokio::time::timeout(BACKGROUND_STOP, &mut background)
            .await
            .is_err()
        {
            background.abort();
        }
        store.close().await;
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        handle,
        retention_passes,
    })
}

/// The token endpoint's service: trust registry, IdP key cache, verified-secret cache.
pub async fn build_token_service(
    config: Arc<Config>,
    store: Store,
    keys: Arc<KeyRing>,
) -> Result<TokenService, StartupError> {
    let trust = Trust::load(store.clone(), config.resources.clone())
        .await
        .map_err(|error| StartupError(format!("cannot load the trust configuration: {error}")))?;
    let http = crate::jose::jwks_cache::trust_http_client(Duration::from_secs(
        config.federation.http_timeout_secs,
    ))
    .map_err(|error| StartupError(format!("cannot build the HTTP client: {error}")))?;
    let saml_metadata = Arc::new(crate::saml::metadata::MetadataCache::new(
        http.clone(),
        crate::saml::metadata::MetadataCacheConfig {
            ttl: Duration::from_secs(config.federation.jwks_default_ttl_secs),
            min_refetch_interval: Duration::from_secs(config.federation.jwks_min_refetch_secs),
        },
    ));
    let jwks = Arc::new(JwksCache::new(
        http,
        JwksCacheConfig {
            allow_loopback_http: true,
            min_refetch_interval: Duration::from_secs(config.federation.jwks_min_refetch_secs),
            default_ttl: Duration::from_secs(config.federation.jwks_default_ttl_secs),
            ..JwksCacheConfig::default()
        },
    ));
    let token_endpoint = format!("{}/token", config.issuer.trim_end_matches('/'));
    let client_metadata = crate::oauth::client_metadata::ClientMetadataResolver::new(
        config.client_id_metadata.clone(),
    )
    .map_err(|error| StartupError(format!("cannot build the HTTP client: {error}")))?;
    // Derived from the KEK, so every instance of the deployment accepts the others' nonces.
    let dpop_nonces = crate::oauth::dpop_nonce::DpopNonces::new(
        keys.derive_hmac_key(crate::oauth::dpop_nonce::NONCE_KEY_PURPOSE),
        config.tokens.dpop_nonce_lifetime_secs,
    );
    Ok(TokenService {
        client_metadata,
        audit: crate::store::AuditWriter::spawn(store.clone()),
        replay: crate::store::ReplayWriter::spawn(store.clone()),
        throttle: crate::oauth::throttle::FailedAuthThrottle::new(
            config.server.failed_auth_per_minute,
        ),
        forged_tokens: crate::oauth::throttle::FailureThrottle::new(
            config.server.invalid_subject_tokens_per_minute,
        ),
        config,
        store,
        keys,
        trust: Arc::new(trust),
        jwks,
        saml_metadata,
        secrets: SecretCache::new(),
        token_endpoint,
        dpop_nonces,
        limits: crate::oauth::request_limit::RequestLimits::default(),
        status_indexes: crate::oauth::status_list::StatusIndexes::default(),
        status_list_tokens: crate::oauth::status_list::ListTokens::default(),
    })
}

/// How long an authorization code is kept past its expiry, so a replay soon after still revokes
/// what was issued from it (RFC 6749 §4.1.2) instead of meeting an unknown code.
const CODE_REUSE_RETENTION_SECS: i64 = 86_400;

/// Deletes what can no longer be used: expired authorization requests, codes past the reuse
/// retention, refresh tokens past their family's expiry (revoked families stay until then, so
/// reuse is still detected), records of access tokens expired for longer than any verifier's
/// leeway, and users' claims older than any refresh token of theirs could be. Returns how many rows went.
async fn purge_grant_state(
    store: &Store,
    authorization: &AuthorizationConfig,
    now: i64,
) -> Result<u64, StoreError> {
    let flow = store
        .purge_authorization_state(now, now.saturating_sub(CODE_REUSE_RETENTION_SECS))
        .await?;
    // Kept past `exp` by the largest clock-skew leeway, like replay records: a resource server
    // may accept a token that long after `exp`, and the Token Status List is derived from these
    // rows, so a revoked token purged at `exp` would show as valid there during the leeway.
    let tokens = store.purge_expired_tokens(replay_purge_cutoff(now)).await?;
    // A refresh token lives at most its lifetime from redemption, which follows the sign-in
    // (which rewrote the user's claims) by at most the request and code lifetimes.
    let longest = authorization
        .refresh_token_lifetime_secs
        .saturating_add(authorization.request_lifetime_secs)
        .saturating_add(authorization.code_lifetime_secs);
    let users = store
        .purge_user_claims(now.saturating_sub(i64::try_from(longest).unwrap_or(i64::MAX)))
        .await?;
    Ok(flow + tokens + users)
}

/// How often expired replay records are deleted.
const REPLAY_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The `expires_at` before which a replay record may go. A token is accepted until its `exp`
/// plus the clock-skew leeway of its verification, so its `jti` must stay recorded that long:
/// purged at `exp`, a captured assertion could be replayed during the leeway (CAUTH-06,
/// IDJAG-ACCEPT-11). The bound is the largest leeway any verification may use.
fn replay_purge_cutoff(now: i64) -> i64 {
    now.saturating_sub(crate::jose::verify::MAX_LEEWAY_SECS as i64)
}

/// How long a stopping server waits for its background tasks to end their step in hand.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

/// Applies `audit.retention_days` now and every [`retention::PURGE_INTERVAL`], in a task of its
/// own: a first purge of a large backlog takes minutes, and key promotion and trust reloads
/// must not wait for it. Ends at the stop, after the chunk in hand.
fn spawn_retention(
    store: Store,
    days: u32,
    mut stop: watch::Receiver<bool>,
    passes: watch::Sender<u64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(retention::PURGE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    let stopping = stop.clone();
                    match retention::apply(&store, days, "retention", unix_now(), || *stopping.borrow()).await {
                        Ok(purged) if purged.deleted > 0 => tracing::info!(
                            deleted = purged.deleted,
                            before = purged.before,
                            "deleted audit events older than the retention"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "applying the audit retention failed"),
                    }
                    passes.send_modify(|count| *count += 1);
                }
                _ = stop.changed() => return,
            }
        }
    })
}

/// Periodic work: key promotion and reload (so several instances and the CLI agree), purging
/// expired replay records and authorization-code-flow state, and the audit retention.
fn spawn_background(
    state: AppState,
    mut stop: watch::Receiver<bool>,
    retention_passes: watch::Sender<u64>,
) -> JoinHandle<()> {
    let retention = (state.config.audit.retention_days > 0).then(|| {
        spawn_retention(
            state.store.clone(),
            state.config.audit.retention_days,
            stop.clone(),
            retention_passes,
        )
    });
    tokio::spawn(async move {
        let mut keys = tokio::time::interval(Duration::from_secs(crate::config::KEY_RELOAD_SECS));
        let mut purge = tokio::time::interval(Duration::from_secs(300));
        // Replay records more often: on SQLite each live one is also held in memory
        // (decisions §27), and the delete is a range of the expiry index.
        let mut replay_purge = tokio::time::interval(REPLAY_PURGE_INTERVAL);
        let mut trust = tokio::time::interval(Duration::from_secs(5));
        let refresher = state
            .tokens
            .jwks
            .clone()
            .spawn_refresher(Duration::from_secs(15));
        loop {
            tokio::select! {
                _ = keys.tick() => {
                    if let Err(error) = state.keys.tick(unix_now()).await {
                        tracing::error!(%error, "key ring refresh failed");
                    }
                }
                _ = trust.tick() => {
                    if let Err(error) = state.tokens.trust.refresh().await {
                        tracing::error!(%error, "trust refresh failed");
                    }
                }
                _ = replay_purge.tick() => {
                    if let Err(error) = state.store.purge_expired(replay_purge_cutoff(unix_now())).await {
                        tracing::warn!(%error, "purging expired replay records failed");
                    }
                }
                _ = purge.tick() => {
                    let authorization = &state.config.authorization;
                    match purge_grant_state(&state.store, authorization, unix_now()).await {
                        Ok(purged) => tracing::debug!(purged, "purged expired grant state"),
                        Err(error) => tracing::warn!(%error, "purging expired grant state failed"),
                    }
                }
                // The only value ever sent is `true`: any change means stop.
                _ = stop.changed() => {
                    refresher.abort();
                    if let Some(retention) = retention {
                        let _ = retention.await;
                    }
                    return;
                }
            }
        }
    })
}

/// Runs the server until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    serve_with(config, AuditMode::Durable).await
}

/// [`serve`] with a choice of audit mode, for the load test's baseline binary only.
#[doc(hidden)]
pub async fn serve_with(config: Config, audit: AuditMode) -> Result<(), StartupError> {
    let signals = ShutdownSignals::install();
    let development = config.development;
    let database = redact_url(config.database.url.expose());
    let issuer = config.issuer.clone();
    let server = spawn_with(config, audit).await?;
    let kid = server
        .state
        .keys
        .active_kid()
        .map(|(kid, alg)| format!("{alg} key {kid}"))
        .unwrap_or_default();
    eprintln!(
        "frontdesk listening on http://{} (issuer {issuer})",
        server.addr
    );
    eprintln!("  data: {database}");
    if audit == AuditMode::DiscardedForBenchmarks {
        eprintln!(
            "  AUDIT LOG OFF: a load-test baseline that records no decision and no replay record; never run it as a server"
        );
        tracing::warn!("audit log off (load-test baseline)");
    }
    eprintln!("  signing with {kid}");
    if development {
        eprintln!(
            "  DEVELOPMENT SETUP: no configuration file was given, so this instance uses a local SQLite file and a generated key-encryption key ({DEVELOPMENT_KEK_FILE}) in {}. Do not use it in production; see docs/deployment.md.",
            std::env::current_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_else(|_| ".".into())
        );
    }
    if let Some(link) = crate::admin::bootstrap_link(&server.state).await {
        eprintln!(
            "  ADMIN PAGE: no admin account exists yet. Open this one-time link within an hour to create one:\n    {link}"
        );
    }
    tracing::info!(addr = %server.addr, %issuer, development, "frontdesk started");
    signals.wait().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await
}

/// SIGTERM and Ctrl-C, listened for from the start: a signal that arrives while the server is
/// still starting (or printing its startup message) must stop it gracefully, not kill it with
/// the default action.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ShutdownSignals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.terminate) => {}
                () = next(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserStore;

    /// A migrated SQLite store in `dir`.
    async fn migrated_store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("fd.db").display());
        let store = Store::connect(&url, 2).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// A replay record outlives its token's `exp` by the largest clock-skew leeway, because the
    /// token is still accepted during it (CAUTH-06): the purge keeps it, then drops it.
    #[tokio::test]
    async fn replay_records_outlive_exp_by_the_largest_leeway() {
        use crate::store::ReplayStore;
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = migrated_store(&dir).await;
        let leeway = crate::jose::verify::MAX_LEEWAY_SECS as i64;
        let now = 1_000_000;
        let record = |jti: &'static str, expires_at: i64| {
            let store = store.clone();
            async move {
                store
                    .record_once("i", jti, expires_at)
                    .await
                    .expect("record")
            }
        };
        // Expired a second ago: a verifier with the largest leeway still accepts the token.
        assert!(record("within", now - 1).await);
        assert!(record("beyond", now - leeway - 1).await);
        let purged = store
            .purge_expired(replay_purge_cutoff(now))
            .await
            .expect("purge");
        assert_eq!(purged, 1);
        assert!(!record("within", now - 1).await, "still recorded");
        assert!(record("beyond", now - leeway - 1).await, "purged");
        store.close().await;
    }

    /// A revoked access token's record — and with it its bit in the Token Status List — outlives
    /// the token's `exp` by the largest clock-skew leeway: a resource server may still accept
    /// the token that long, and must still see it revoked (the list is derived from these rows).
    #[tokio::test]
    async fn revoked_tokens_stay_revoked_in_the_status_list_through_the_leeway() {
        use crate::store::{IssuedToken, TokenStore};
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = migrated_store(&dir).await;
        let leeway = crate::jose::verify::MAX_LEEWAY_SECS as i64;
        let now = 1_000_000;
        for (index, expires_at) in [(7, now - 1), (8, now - leeway - 1)] {
            store
                .record_issued(&IssuedToken {
                    jti: format!("jti-{index}"),
                    client_id: "app".into(),
                    subject: "user".into(),
                    token_type: "access_token".into(),
                    issued_at: expires_at - 600,
                    expires_at,
                    revoked_at: Some(expires_at - 300),
                    status_index: Some(index),
                    subject_issuer: None,
                })
                .await
                .expect("record");
        }
        purge_grant_state(&store, &AuthorizationConfig::default(), now)
            .await
            .expect("purge");
        let revoked = store.revoked_status_indexes(0, 100).await.expect("read");
        assert_eq!(
            revoked,
            vec![7],
            "within the leeway still revoked; beyond it purged"
        );
        store.close().await;
    }

    /// Database URLs are printed at start-up and in errors with every password hidden: the
    /// URL's own and one in the query string (`?password=`, which sqlx's PostgreSQL driver
    /// reads like the URL's own). Everything else stays, so the message still says which
    /// database it is.
    #[test]
    fn redacted_database_urls_hide_every_password() {
        for (url, expected) in [
            (
                "postgres://fd:hunter2@db.internal:5432/frontdesk",
                "postgres://fd:***@db.internal:5432/frontdesk",
            ),
            (
                "postgres://fd@db.internal/frontdesk?password=hunter2&sslmode=require",
                "postgres://fd@db.internal/frontdesk?password=***&sslmode=require",
            ),
            (
                "postgres://db.internal/frontdesk?user=fd&Password=hunter2",
                "postgres://db.internal/frontdesk?user=fd&Password=***",
            ),
            (
                "postgres://fd@db.internal/frontdesk?sslmode=require",
                "postgres://fd@db.internal/frontdesk?sslmode=require",
            ),
            ("sqlite://frontdesk.db", "sqlite://frontdesk.db"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, expected, "{url}");
            assert!(!redacted.contains("hunter2"), "{redacted}");
        }
    }

    /// What `f` logs at warning level or above, as text.
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();
        (result, text)
    }

    /// A key-encryption key file that other users may read is still used (container secrets
    /// are often mounted 0644 or 0444), but the start-up log says so and how to fix it; one
    /// readable by its owner only is used without a word. The key never appears in the log.
    #[cfg(unix)]
    #[test]
    fn a_kek_file_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("frontdesk.kek");
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        std::fs::write(&path, key).expect("write the KEK file");
        let mut config = Config::default();
        config.keys.encryption_key_file = Some(path.clone());
        for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o644, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let (kek, log) = warnings_of(|| load_kek(&config));
            assert!(kek.is_ok(), "mode {mode:o}: the KEK is still used");
            assert_eq!(
                log.contains("readable by other users"),
                warned,
                "mode {mode:o}: {log}"
            );
            if warned {
                assert!(log.contains(&path.display().to_string()), "{log}");
                assert!(log.contains("0600"), "{log}");
            }
            assert!(!log.contains("BwcHBwcH"), "{log}");
        }
    }

    /// Users' claims are kept exactly as long as a refresh token of theirs could live.
    #[tokio::test]
    async fn purge_keeps_user_claims_while_a_refresh_token_could_need_them() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = migrated_store(&dir).await;
        let authorization = AuthorizationConfig::default();
        let longest = i64::try_from(
            authorization.refresh_token_lifetime_secs
                + authorization.request_lifetime_secs
                + authorization.code_lifetime_secs,
        )
        .expect("fits");
        let now = 10 * longest;
        let claims = serde_json::Map::new();
        for (subject, at) in [("stale", now - longest - 1), ("needed", now - longest)] {
            store
                .remember_user_claims("https://idp", subject, &claims, at)
                .await
                .expect("remember");
        }
        let purged = purge_grant_state(&store, &authorization, now)
            .await
            .expect("purge");
        assert_eq!(purged, 1);
        assert!(
            store
                .user_claims("https://idp", "stale")
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            store
                .user_claims("https://idp", "needed")
                .await
                .expect("get")
                .is_some()
        );
        store.close().await;
    }
}
