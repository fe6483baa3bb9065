//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §3; REQUIREMENTS §13):
//! `client_secret_basic`, `client_secret_post` and `private_key_jwt`, exactly one per request;
//! a public client (`auth_method = "none"`) names itself with `client_id` alone and sends no
//! credentials at all (a secret from it, or no credentials from a confidential client, is
//! `invalid_client`). argon2 runs once per distinct secret value: verified secrets are
//! remembered under a keyed hash that also covers the stored hash, so changing a client's secret
//! invalidates the entry by construction. A request that is about to run argon2 is first
//! counted against its address's quota of failed authentications (TOK-14,
//! [`crate::oauth::throttle::Attempt::admit`]); one answered from the cache never is.

// Keyed digests of verified secrets, looked up on every authenticated request: foldhash
// instead of SipHash (docs/architecture.md).
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::client_metadata::ClientMetadataResolver;
use super::request::FormParams;
use super::throttle::{ClientAuthAttempt, Throttled};
use super::{CLIENT_ASSERTION_TYPE_JWT_BEARER, ErrorCode, OAuthError};
use crate::jose::jwks_cache::{JwksCache, KeySource};
use crate::jose::{AudienceRule, TypRule, VerifyRules, inspect, verify};
use crate::registry::{Client, Registry};
use crate::secret::SecretString;
use crate::store::{AuditEvent, Decision, PendingReplay, ReplayStore};

/// Longest accepted client-assertion lifetime (CAUTH-06).
pub const MAX_CLIENT_ASSERTION_LIFETIME_SECS: u64 = 300;
/// Largest accepted client assertion.
const MAX_CLIENT_ASSERTION_BYTES: usize = 8 * 1024;
/// Verified-secret cache bound; cleared when full (a flood of distinct valid secrets is not a
/// realistic workload, and clearing only costs argon2 runs).
const SECRET_CACHE_CAPACITY: usize = 10_000;

/// Algorithms accepted for client assertions (never `none`, never HMAC).
pub const CLIENT_ASSERTION_ALGORITHMS: &[jsonwebtoken::Algorithm] = &[
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// How a client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic.
    ClientSecretBasic,
    /// Secret in the form body.
    ClientSecretPost,
    /// Signed client assertion.
    PrivateKeyJwt,
    /// A public client: no authentication (RFC 6749 §2.1); only `client_id` in the body.
    None,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// A client that proved its identity in this request.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    /// The registered client.
    pub client: Arc<Client>,
    /// How it authenticated.
    pub method: AuthMethod,
}

/// Remembers secrets that passed argon2, keyed by an HMAC under a per-process random key.
/// Concurrent misses for the same (client, hash, secret) share one argon2 run (single flight),
/// so a burst of new connections cannot start dozens of 19 MiB verifications at once; misses
/// for distinct secrets wait for a turn of the process's argon2 budget
/// ([`crate::secret::argon2_checks`]). The request that starts a run is admitted first by its
/// caller's throttle (`verify`'s `admit`); those that share its run or hit the cache are not.
pub struct SecretCache {
    key: hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
    argon2_runs: Arc<AtomicU64>,
}

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCache")
    }
}

impl Default for SecretCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretCache {
    /// A cache with a fresh random key.
    pub fn new() -> SecretCache {
        let mut seed = [0u8; 32];
        // If the system RNG fails the key is all zeros: entries are still bound to the client,
        // the stored hash and the secret, only not unpredictable across processes.
        let _ = SystemRandom::new().fill(&mut seed);
        SecretCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            verified: Mutex::new(HashSet::new()),
            in_flight: Mutex::new(HashMap::new()),
            argon2_runs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn entry(&self, client_id: &str, phc: &str, secret: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [client_id, phc, secret] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Verifies `secret` against `phc`, running argon2 (on the blocking pool) only on a miss.
    /// `admit` is asked right before this call would start an argon2 run, and only then: not
    /// on a hit, not when the call gets the result of a run another call started (single
    /// flight). It counts the attempt against the caller's throttle in one step with the check
    /// that the quota allows it, so guesses sent at once cannot all start a run before the
    /// first failure is counted. Refused, no run starts and this returns `Err`; another call
    /// waiting on the same run then asks its own `admit` (a refusal is its caller's, not the
    /// secret's).
    pub async fn verify(
        &self,
        client_id: &str,
        phc: &str,
        secret: &str,
        admit: impl FnOnce() -> Result<(), Throttled>,
    ) -> Result<bool, Throttled> {
        let entry = self.entry(client_id, phc, secret);
        if self.lock().contains(&entry) {
            return Ok(true);
        }
        let cell = {
            let mut in_flight = self.in_flight();
            in_flight.entry(entry).or_default().clone()
        };
        // Removes the in-flight entry however this call ends: also when the request is dropped
        // while argon2 runs (the client went away, the request timed out). Otherwise every
        // abandoned verification of a distinct secret would stay in the map for good.
        let _in_flight = InFlight { cache: self, entry };
        let (phc_owned, secret_owned) = (phc.to_string(), SecretString::new(secret));
        let runs = self.argon2_runs.clone();
        // A turn of the process's argon2 budget: distinct wrong secrets miss the single flight
        // and the cache, so without it a burst of them ran a 19 MiB check each, at once.
        // A refused `admit` leaves the cell empty, so the next caller waiting on it runs its
        // own initializer, and with it its own `admit`.
        let ok = *cell
            .get_or_try_init(|| async move {
                admit()?;
                Ok(crate::secret::argon2_checks()
                    .run(move || {
                        runs.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("frontdesk_argon2_verifications_total").increment(1);
                        crate::secret::verify_secret(secret_owned.expose(), &phc_owned)
                    })
                    .await
                    .unwrap_or(false))
            })
            .await?;
        if ok {
            let mut verified = self.lock();
            if verified.len() >= SECRET_CACHE_CAPACITY {
                verified.clear();
            }
            verified.insert(entry);
        }
        Ok(ok)
    }

    /// How many argon2 verifications this cache has run (tests prove the hot path runs none).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// Number of remembered secrets (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        match self.verified.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>> {
        match self.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// One verification under way in a [`SecretCache`]; its entry goes when this is dropped.
struct InFlight<'a> {
    cache: &'a SecretCache,
    entry: [u8; 32],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.cache.in_flight().remove(&self.entry);
    }
}

/// Where client authentication records a client assertion's `jti` (CAUTH-06).
pub enum AssertionReplay<'a, R: ReplayStore> {
    /// Committed before authentication succeeds. For requests with side effects (redeeming a
    /// code, a refresh token or a grant, introspection, revocation) a replayed assertion must
    /// be refused before anything else happens.
    Now(&'a R),
    /// Left in the slot, to be committed in one transaction with the request's audit event
    /// before the response, which is refused then if the `jti` was already recorded. For a token
    /// exchange, whose only write is its audit event, this decides the same but waits for one
    /// durable commit instead of two (docs/performance.md).
    WithAudit(&'a std::sync::OnceLock<PendingReplay>),
}

/// The error for a replayed client assertion, whether found at authentication or at the commit.
pub fn assertion_replayed() -> OAuthError {
    invalid_client(
        "assertion_replayed",
        "The client assertion was already used (jti replay)",
    )
}

/// Rewrites the audit event of a request whose client assertion turned out to be a replay at
/// the commit: the request is refused, so the log must not say what it would have issued.
fn audit_assertion_replayed(event: &mut AuditEvent) {
    let error = assertion_replayed();
    event.decision = Decision::Denied;
    event.error_code = Some(error.code.as_str().to_string());
    event.reason = Some(error.reason.to_string());
    event.issued_jti = None;
    event.issued_expires_at = None;
    event.scopes_granted.clear();
    // The detail describes the token that was prepared and is now dropped.
    event.detail = None;
}

/// What client authentication needs from the server.
pub struct ClientAuthContext<'a, R: ReplayStore> {
    /// Our issuer (the expected `aud` of client assertions, RFC 7523bis).
    pub issuer: &'a str,
    /// Our token endpoint URL (tolerated as `aud`, legacy RFC 7523).
    pub token_endpoint: &'a str,
    /// Trust snapshot.
    pub registry: &'a Registry,
    /// Verified-secret cache.
    pub secrets: &'a SecretCache,
    /// Clients named by the URL of a Client ID Metadata Document.
    pub client_metadata: &'a ClientMetadataResolver,
    /// Keys of clients with a `jwks_uri`.
    pub jwks: &'a JwksCache,
    /// Where assertion `jti`s are recorded.
    pub replay: AssertionReplay<'a, R>,
    /// This request against the address's quota of failed authentications (TOK-14): admitted
    /// before each argon2 run. The caller counts a failure with it afterwards
    /// ([`crate::oauth::throttle::Attempt::fail`]), which does not count twice.
    pub attempt: &'a ClientAuthAttempt<'a>,
    /// Current time.
    pub now: i64,
}

fn invalid_client(reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, reason, description)
}

/// `429 slow_down` for an address over its quota of failed client authentications (TOK-14),
/// whether found when the request starts or when it is about to run argon2.
pub fn failed_authentications_throttled(throttled: Throttled) -> OAuthError {
    super::request_limit::over_limit(
        "throttled",
        "Too many failed client authentications from this address; retry later",
        throttled.retry_after,
    )
}

/// Decodes `Authorization: Basic` into (client_id, secret). Both parts are form-urlencoded per
/// RFC 6749 §2.3.1; clients that send them raw are tolerated (INT-06) by also trying the raw form.
fn parse_basic(header: &str) -> Option<(String, String, String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (raw_id, raw_secret) = text.split_once(':')?;
    let unescape = |part: &str| -> String {
        form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_else(|| part.to_string())
    };
    Some((
        unescape(raw_id),
        unescape(raw_secret),
        raw_id.to_string(),
        raw_secret.to_string(),
    ))
}

/// The client a request claims to be, for the audit record of a failed authentication: the
/// id in `Authorization: Basic`, else the form's `client_id`. Unverified by definition — it says
/// whose secret someone is trying, which is what an operator needs to see — and clipped.
pub fn claimed_client_id(authorization: Option<&str>, form: &FormParams) -> Option<String> {
    authorization
        .and_then(parse_basic)
        .map(|(client_id, ..)| client_id)
        .or_else(|| form.single("client_id").ok().flatten().map(str::to_string))
        .map(|id| crate::oauth::request::clip(&id, 200))
}

/// Authenticates the client of a token request. Exactly one method must be used (TOK-04 /
/// REQUIREMENTS §19: two methods is `invalid_request`); none is `invalid_client` (TX-13).
pub async fn authenticate<R: ReplayStore>(
    authorization: Option<&str>,
    form: &FormParams,
    context: &ClientAuthContext<'_, R>,
) -> Result<AuthenticatedClient, OAuthError> {
    let body_id = form.single("client_id")?;
    let body_secret = form.single("client_secret")?;
    let assertion_type = form.single("client_assertion_type")?;
    let assertion = form.single("client_assertion")?;
    let basic = match authorization {
        Some(header) if header.trim().to_ascii_lowercase().starts_with("basic ") => {
            Some(parse_basic(header).ok_or_else(|| {
                invalid_client(
                    "malformed_basic",
                    "The Basic authorization header is malformed",
                )
            })?)
        }
        Some(_) => {
            return Err(invalid_client(
                "unsupported_authorization_scheme",
                "Only the Basic authorization scheme is accepted for client authentication",
            ));
        }
        None => None,
    };
    let methods = usize::from(basic.is_some())
        + usize::from(body_secret.is_some())
        + usize::from(assertion.is_some() || assertion_type.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "multiple_client_authentication",
            "The client used more than one authentication method",
        ));
    }
    if let Some((client_id, secret, raw_id, raw_secret)) = basic {
        if body_id.is_some_and(|id| id != client_id && id != raw_id) {
            return Err(OAuthError::invalid_request(
                "client_id_mismatch",
                "The client_id in the body differs from the authenticated client",
            ));
        }
        let client_id = if context.registry.client(&client_id).is_some() {
            client_id
        } else {
            raw_id
        };
        let result =
            secret_client(&client_id, &secret, AuthMethod::ClientSecretBasic, context).await;
        // Raw (un-encoded) Basic secrets from clients that skip form encoding (INT-06). A
        // second argon2 run is admitted (and counted) on its own; refused, the request is
        // throttled rather than told the secret was wrong.
        return match result {
            Err(error) if error.reason == "bad_client_credentials" && raw_secret != secret => {
                secret_client(
                    &client_id,
                    &raw_secret,
                    AuthMethod::ClientSecretBasic,
                    context,
                )
                .await
                .map_err(|second| {
                    if second.code == ErrorCode::SlowDown {
                        second
                    } else {
                        error
                    }
                })
            }
            other => other,
        };
    }
    if let Some(secret) = body_secret {
        let Some(client_id) = body_id else {
            return Err(OAuthError::invalid_request(
                "missing_parameter",
                "client_secret was sent without client_id",
            ));
        };
        return secret_client(client_id, secret, AuthMethod::ClientSecretPost, context).await;
    }
    if assertion.is_some() || assertion_type.is_some() {
        if assertion_type != Some(CLIENT_ASSERTION_TYPE_JWT_BEARER) {
            return Err(OAuthError::invalid_request(
                "unsupported_client_assertion_type",
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        let Some(assertion) = assertion else {
            return Err(OAuthError::invalid_request(
                "missing_parameter",
                "client_assertion_type was sent without client_assertion",
            ));
        };
        return assertion_client(body_id, assertion, context).await;
    }
    match body_id {
        Some(client_id) => public_client(client_id, context).await,
        None => Err(invalid_client(
            "no_client_authentication",
            "Client authentication is required",
        )),
    }
}

/// The client of a request with `client_id` and no credentials: accepted only if it is a
/// public client (CAUTH-09: a confidential client must authenticate on every request).
async fn public_client<R: ReplayStore>(
    client_id: &str,
    context: &ClientAuthContext<'_, R>,
) -> Result<AuthenticatedClient, OAuthError> {
    let client = find(client_id, context).await?;
    if !client.is_public() {
        return Err(invalid_client(
            "no_client_authentication",
            "Client authentication is required for this client",
        ));
    }
    Ok(AuthenticatedClient {
        client,
        method: AuthMethod::None,
    })
}

/// The enabled client `client_id` — registered, or described by its metadata document — or
/// `invalid_client`.
async fn find<R: ReplayStore>(
    client_id: &str,
    context: &ClientAuthContext<'_, R>,
) -> Result<Arc<Client>, OAuthError> {
    let client = context
        .client_metadata
        .find_client(context.registry, client_id)
        .await
        .map_err(|error| invalid_client(error.reason, &error.description))?;
    match client {
        Some(client) if client.config.enabled => Ok(client),
        Some(_) => Err(invalid_client(
            "client_disabled",
            "Client authentication failed",
        )),
        None => Err(invalid_client(
            "unknown_client",
            "Client authentication failed",
        )),
    }
}

async fn secret_client<R: ReplayStore>(
    client_id: &str,
    secret: &str,
    method: AuthMethod,
    context: &ClientAuthContext<'_, R>,
) -> Result<AuthenticatedClient, OAuthError> {
    let failed = || invalid_client("bad_client_credentials", "Client authentication failed");
    let admit = || context.attempt.admit();
    let Some(client) = context.registry.client(client_id) else {
        // Spend the same effort as a real verification so unknown ids are not distinguishable
        // by timing; admitted and counted like a wrong secret too, so the throttle does not
        // tell them apart either.
        context
            .secrets
            .verify("", &DUMMY_HASH, secret, admit)
            .await
            .map_err(failed_authentications_throttled)?;
        return Err(failed());
    };
    if !client.config.enabled {
        return Err(invalid_client(
            "client_disabled",
            "Client authentication failed",
        ));
    }
    // A client with a secret may present it either way (INT-06: SDKs differ in their default,
    // e.g. the MCP Python SDK posts it); a private_key_jwt client has no secret to present.
    if !client.config.auth_method.starts_with("client_secret") {
        return Err(invalid_client(
            "wrong_authentication_method",
            "The client is not registered for this authentication method",
        ));
    }
    let Some(phc) = client.config.secret_hash.as_deref() else {
        return Err(failed());
    };
    let verified = context
        .secrets
        .verify(client_id, phc, secret, admit)
        .await
        .map_err(failed_authentications_throttled)?;
    if !verified {
        return Err(failed());
    }
    Ok(AuthenticatedClient {
        client: client.clone(),
        method,
    })
}

/// An argon2id hash of a random value, verified against when the client is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut random = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut random);
    crate::secret::hash_secret(&STANDARD.encode(random)).unwrap_or_default()
});

async fn assertion_client<R: ReplayStore>(
    body_id: Option<&str>,
    assertion: &str,
    context: &ClientAuthContext<'_, R>,
) -> Result<AuthenticatedClient, OAuthError> {
    let unverified = inspect(assertion, MAX_CLIENT_ASSERTION_BYTES)
        .map_err(|error| invalid_client(error.reason(), &error.description()))?;
    // RFC 7523 §3: iss and sub are the client_id. Peek at iss only to choose the client.
    let Some(client_id) = body_id.or(unverified.unverified_iss()) else {
        return Err(invalid_client(
            "missing_client_id",
            "The client assertion names no client",
        ));
    };
    let client = find(client_id, context).await?;
    if client.config.auth_method != AuthMethod::PrivateKeyJwt.as_str() {
        return Err(invalid_client(
            "wrong_authentication_method",
            "The client is not registered for this authentication method",
        ));
    }
    // Refuse a disallowed algorithm before any key lookup (no JWKS fetch for an HS256 assertion).
    if !CLIENT_ASSERTION_ALGORITHMS.contains(&unverified.alg()) {
        let error = crate::jose::JoseError::AlgNotAllowed;
        return Err(invalid_client(error.reason(), &error.description()));
    }
    let key = if let Some(set) = &client.jwks {
        set.select(&unverified).cloned().ok_or_else(|| {
            invalid_client(
                "unknown_kid",
                "No registered key of the client matches the assertion",
            )
        })?
    } else if let Some(uri) = &client.config.jwks_uri {
        let url = url::Url::parse(uri).map_err(|_| {
            invalid_client(
                "bad_jwks_uri",
                "The client's registered jwks_uri is invalid",
            )
        })?;
        context
            .jwks
            .key_for(
                &format!("client:{client_id}"),
                &KeySource::JwksUri(url),
                &unverified,
            )
            .await
            .map_err(|error| invalid_client(error.reason(), &error.description()))?
    } else {
        return Err(invalid_client(
            "no_client_keys",
            "The client has no registered keys",
        ));
    };
    let mut rules = VerifyRules::new(
        CLIENT_ASSERTION_ALGORITHMS.to_vec(),
        // CAUTH-05: the 7523bis type, no type, or the generic `JWT` that most client libraries
        // set by default (see docs/decisions.md).
        TypRule::client_assertion(),
        client_id,
        AudienceRule::AnyOf {
            values: vec![
                context.issuer.to_string(),
                context.token_endpoint.to_string(),
            ],
            azp: None,
        },
    );
    rules.require_jti = true;
    rules.max_lifetime_secs = Some(MAX_CLIENT_ASSERTION_LIFETIME_SECS);
    let claims = verify(&unverified, assertion, &key, &rules, context.now)
        .map_err(|error| invalid_client(error.reason(), &error.description()))?;
    if claims.sub() != client_id {
        return Err(invalid_client(
            "assertion_subject_mismatch",
            "The client assertion sub must equal its iss (the client_id)",
        ));
    }
    let jti = claims.jti().unwrap_or_default();
    let issuer = format!("client-assertion:{client_id}");
    match &context.replay {
        AssertionReplay::Now(replay) => {
            let fresh = replay
                .record_once(&issuer, jti, claims.exp())
                .await
                .map_err(|error| {
                    tracing::error!(%error, "recording a client assertion jti failed");
                    OAuthError::server_error()
                })?;
            if !fresh {
                return Err(assertion_replayed());
            }
        }
        AssertionReplay::WithAudit(slot) => {
            let pending = PendingReplay {
                issuer,
                jti: jti.to_string(),
                expires_at: claims.exp(),
                on_replay: audit_assertion_replayed,
            };
            if slot.set(pending).is_err() {
                // One assertion per request; a second would have to be recorded too.
                tracing::error!("a second client assertion in one request");
                return Err(OAuthError::server_error());
            }
        }
    }
    Ok(AuthenticatedClient {
        client,
        method: AuthMethod::PrivateKeyJwt,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::oauth::throttle::FailedAuthThrottle;
    use std::net::IpAddr;

    /// No throttle: every run is allowed.
    fn admit_all() -> Result<(), Throttled> {
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_runs_once_per_secret_even_under_a_burst_of_misses() {
        let cache = Arc::new(SecretCache::new());
        let phc = crate::secret::hash_secret("s3cret").expect("hash");
        let burst: Vec<_> = (0..32)
            .map(|_| {
                let (cache, phc) = (cache.clone(), phc.clone());
                tokio::spawn(async move {
                    cache
                        .verify("client", &phc, "s3cret", admit_all)
                        .await
                        .expect("not throttled")
                })
            })
            .collect();
        for task in burst {
            assert!(task.await.expect("join"));
        }
        assert_eq!(
            cache.argon2_runs(),
            1,
            "concurrent misses share one argon2 run"
        );
        for _ in 0..100 {
            assert!(
                cache
                    .verify("client", &phc, "s3cret", admit_all)
                    .await
                    .expect("not throttled")
            );
        }
        assert_eq!(
            cache.argon2_runs(),
            1,
            "verified secrets never run argon2 again"
        );
        // A wrong secret, or the same secret under a changed hash, is verified afresh.
        assert!(
            !cache
                .verify("client", &phc, "wrong", admit_all)
                .await
                .expect("not throttled")
        );
        let rotated = crate::secret::hash_secret("s3cret").expect("hash");
        assert!(
            cache
                .verify("client", &rotated, "s3cret", admit_all)
                .await
                .expect("not throttled")
        );
        assert_eq!(cache.argon2_runs(), 3);
    }

    /// Distinct wrong secrets miss the cache and the single flight, and arrive before any
    /// throttle has counted a failure; each used to start its own 19 MiB argon2 run on the
    /// blocking pool (up to 512 at once, about 10 GiB). They now take turns of the process's
    /// argon2 budget: all are verified (and refused), never more than the budget at once
    /// (CAUTH-08, TOK-14: failed authentications must cost the server a bounded amount).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn distinct_wrong_secrets_at_once_run_at_most_the_argon2_budget_together() {
        let cache = Arc::new(SecretCache::new());
        let phc = crate::secret::hash_secret("s3cret").expect("hash");
        let burst: Vec<_> = (0..16)
            .map(|n| {
                let (cache, phc) = (cache.clone(), phc.clone());
                tokio::spawn(async move {
                    cache
                        .verify("client", &phc, &format!("guess{n}"), admit_all)
                        .await
                        .expect("not throttled")
                })
            })
            .collect();
        for task in burst {
            assert!(!task.await.expect("join"), "a wrong secret is refused");
        }
        assert_eq!(cache.argon2_runs(), 16, "every guess was verified");
        let peak = crate::secret::argon2_checks().peak();
        assert!(
            (1..=crate::secret::CONCURRENT_ARGON2_CHECKS).contains(&peak),
            "{peak} argon2 runs at once"
        );
    }

    /// A request dropped while argon2 runs for it (the client went away, the request timed
    /// out) leaves nothing behind: every such verification of a distinct secret used to keep
    /// its in-flight entry for good, so abandoned requests grew the map without bound
    /// (CAUTH-08, TOK-14: failed authentications must cost the server a bounded amount).
    #[tokio::test(flavor = "current_thread")]
    async fn a_verification_abandoned_while_argon2_runs_leaves_no_entry_behind() {
        let cache = Arc::new(SecretCache::new());
        let phc = crate::secret::hash_secret("s3cret").expect("hash");
        let task = {
            let (cache, phc) = (cache.clone(), phc.clone());
            tokio::spawn(async move {
                cache
                    .verify("client", &phc, "guess", admit_all)
                    .await
                    .expect("not throttled")
            })
        };
        // One thread: the task runs only while this one yields, so once its entry is in the
        // map it is waiting for argon2, and it is aborted there.
        for _ in 0..1000 {
            if !cache.in_flight().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.in_flight().len(), 1, "the verification started");
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert!(cache.in_flight().is_empty(), "the abandoned entry is gone");
        // The next attempt with the same secret verifies afresh and says no.
        assert!(
            !cache
                .verify("client", &phc, "guess", admit_all)
                .await
                .expect("not throttled")
        );
        assert!(cache.in_flight().is_empty());
    }

    /// TOK-14 with guesses sent at once: each run of argon2 is admitted by the caller's throttle
    /// before it starts, in one step with the count, so distinct wrong secrets from one address
    /// get no more runs than its quota, however many arrive before the first one fails. They
    /// were counted after argon2, and all of them passed the check first: every guess was
    /// verified. No tolerance: the quota (5 a minute) gives one more unit only after 12 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_from_one_address_run_argon2_no_more_than_its_quota() {
        let cache = Arc::new(SecretCache::new());
        let throttle = Arc::new(FailedAuthThrottle::new(5));
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let phc = crate::secret::hash_secret("s3cret").expect("hash");
        let burst: Vec<_> = (0..40)
            .map(|n| {
                let (cache, throttle, phc) = (cache.clone(), throttle.clone(), phc.clone());
                tokio::spawn(async move {
                    let attempt = throttle.attempt(Some(attacker));
                    let secret = format!("guess{n}");
                    let result = cache
                        .verify("client", &phc, &secret, || attempt.admit())
                        .await;
                    (result, attempt.counted())
                })
            })
            .collect();
        let (mut verified, mut throttled) = (0, 0);
        for task in burst {
            match task.await.expect("join") {
                (Ok(false), true) => verified += 1,
                (Err(_), false) => throttled += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((verified, throttled), (5, 35));
        assert_eq!(cache.argon2_runs(), 5, "only admitted guesses ran argon2");
        assert!(
            throttle.retry_after(&attacker).is_some(),
            "and it is blocked"
        );
    }

    /// A secret already verified is never counted and never refused by the throttle; a new right
    /// secret sent at once by many requests costs one unit, for the one request that runs
    /// argon2 (the others share its run). And a refusal is the address's, not the secret's:
    /// when a blocked address would have started the run, another address waiting on the same
    /// secret runs it itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn only_the_request_that_runs_argon2_is_counted_and_hits_never_are() {
        let cache = Arc::new(SecretCache::new());
        let throttle = Arc::new(FailedAuthThrottle::new(2));
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let blocked: IpAddr = "192.0.2.66".parse().unwrap();
        let phc = crate::secret::hash_secret("s3cret").expect("hash");
        let burst: Vec<_> = (0..32)
            .map(|_| {
                let (cache, throttle, phc) = (cache.clone(), throttle.clone(), phc.clone());
                tokio::spawn(async move {
                    let attempt = throttle.attempt(Some(client));
                    cache
                        .verify("client", &phc, "s3cret", || attempt.admit())
                        .await
                })
            })
            .collect();
        for task in burst {
            assert_eq!(task.await.expect("join"), Ok(true));
        }
        assert_eq!(cache.argon2_runs(), 1);
        // One unit of two was spent: one more attempt is admitted, the next is not.
        assert!(throttle.try_attempt(client).is_ok());
        assert!(throttle.try_attempt(client).is_err());
        for _ in 0..100 {
            let attempt = throttle.attempt(Some(client));
            let hit = cache
                .verify("client", &phc, "s3cret", || attempt.admit())
                .await;
            assert_eq!(hit, Ok(true), "a verified secret is never throttled");
            assert!(!attempt.counted());
        }
        assert_eq!(cache.argon2_runs(), 1);

        // A new secret (rotated hash), wanted at once by a blocked address and another one.
        for _ in 0..3 {
            throttle.record_failure(blocked);
        }
        assert!(throttle.retry_after(&blocked).is_some());
        let rotated = crate::secret::hash_secret("s3cret").expect("hash");
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let burst: Vec<_> = [blocked, blocked, blocked, other, blocked, blocked]
            .into_iter()
            .map(|peer| {
                let (cache, throttle, phc) = (cache.clone(), throttle.clone(), rotated.clone());
                tokio::spawn(async move {
                    let attempt = throttle.attempt(Some(peer));
                    let result = cache
                        .verify("client", &phc, "s3cret", || attempt.admit())
                        .await;
                    (peer, result)
                })
            })
            .collect();
        for task in burst {
            let (peer, result) = task.await.expect("join");
            if peer == other {
                assert_eq!(result, Ok(true), "not refused for the blocked address");
            } else {
                assert!(result.is_err() || result == Ok(true), "{result:?}");
            }
        }
        assert_eq!(cache.argon2_runs(), 2);
    }
}
