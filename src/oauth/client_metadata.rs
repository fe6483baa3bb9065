//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; CAUTH-10,
//! EMA-11, META-15): a `client_id` that is an https URL names the JSON document describing the
//! client. frontdesk fetches it when the client first shows up and keeps it for a while, so an
//! MCP client that was never registered here can still run the authorization code flow — if the
//! administrator allows its host.
//!
//! Fetching a URL chosen by a stranger is a server-side request forgery risk, so every fetch is
//! https only, resolves the host itself and refuses private, loopback and link-local addresses
//! (unless the test-only `allow_loopback_http` is set), follows no redirects, uses no proxy,
//! has connect and overall timeouts and a size cap. Concurrent lookups of one URL share one
//! fetch, and results (failures too, briefly) are cached within configured bounds.
//!
//! [`ClientMetadataResolver::find_client`] is the one lookup used wherever a client is named by
//! its id (`/authorize`, the token endpoint).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{ClientConfig, ClientIdMetadataConfig};
use crate::registry::{Client, Registry};

/// Cached entries beyond this many are dropped: refusals and expired entries first, all of
/// them if the cache is still full (refetching is cheap).
const CACHE_CAPACITY: usize = 1000;
/// How long a failed resolution is remembered, so a bad URL cannot make us fetch per request.
const FAILURE_CACHE: Duration = Duration::from_secs(30);
/// Largest JWKS fetched from a document's `jwks_uri`.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Documents fetched at once, per instance (their `jwks_uri` keys included). Caching and
/// single flight hold back repeated lookups of one URL; this bounds lookups of many made-up
/// ones, each of which could otherwise hold a connection open for the whole fetch timeout.
const MAX_CONCURRENT_FETCHES: usize = 32;

/// Why a URL client id was not accepted. The description is safe to show the user agent or the
/// client: it names the rule, never the fetched content or internal addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadataError {
    /// Stable reason for the audit log.
    pub reason: &'static str,
    /// Human-readable explanation.
    pub description: String,
}

impl ClientMetadataError {
    fn new(reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            reason,
            description: description.into(),
        }
    }
}

impl std::fmt::Display for ClientMetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.description)
    }
}

type Resolution = Result<Arc<Client>, ClientMetadataError>;

struct Cached {
    result: Resolution,
    until: Instant,
}

/// Fetches, validates and caches client metadata documents.
pub struct ClientMetadataResolver {
    config: ClientIdMetadataConfig,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
    /// Permits for fetches under way ([`MAX_CONCURRENT_FETCHES`]).
    fetches: tokio::sync::Semaphore,
    in_flight: InFlightMap,
}

impl std::fmt::Debug for ClientMetadataResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetadataResolver")
            .field("enabled", &self.config.enabled)
            .finish()
    }
}

/// A DNS resolver that drops every address frontdesk must not connect to, so a host name that
/// resolves to an internal address fails like an unreachable one (and a name resolving to both
/// is only ever reached at its public addresses).
struct PublicOnlyResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| address_allowed(address.ip(), allow_loopback))
                .collect();
            if addresses.is_empty() {
                return Err("the host has no public address".into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// True for an address on the public internet (or loopback, when allowed for tests). Refused
/// besides loopback: the IANA special-purpose ranges that are not globally reachable, and the
/// IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4) when that address is refused.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 88 && v4.octets()[2] == 99)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let first = segments[0];
            // ::/96, IPv4-compatible (deprecated); `::` and `::1` are in it too.
            let compatible = segments[..6].iter().all(|segment| *segment == 0);
            // 2002::/16, 6to4: the IPv4 address follows the prefix.
            let six_to_four = first == 0x2002 && {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                !address_allowed(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)), false)
            };
            !(compatible
                || six_to_four
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && (segments[1] == 0x0db8 || segments[1] == 0))
                || (first == 0x0100 && segments[1..4].iter().all(|segment| *segment == 0))
                || first == 0x0064)
        }
    }
}

/// True if `host` matches one `allowed_hosts` pattern (`*`, `*.domain`, or the exact host).
pub fn host_allowed(host: &str, patterns: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    patterns.iter().any(|pattern| {
        pattern == "*"
            || pattern
                .strip_prefix("*.")
                .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
            || *pattern == host
    })
}

impl ClientMetadataResolver {
    /// A resolver for `config`. Fails only if the HTTP client cannot be built.
    pub fn new(config: ClientIdMetadataConfig) -> Result<Self, String> {
        let timeout = Duration::from_secs(config.fetch_timeout_secs);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PublicOnlyResolver {
                allow_loopback: config.allow_loopback_http,
            })
            .user_agent(concat!("frontdesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            config,
            http,
            cache: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// True when URL client ids are accepted (metadata `client_id_metadata_document_supported`).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The client named `client_id`: a registered one from `registry`, else — when enabled and
    /// the id is a URL — the client its metadata document describes. `Ok(None)`: no such client.
    /// A disabled registered client is returned as is; callers check `enabled`.
    pub async fn find_client(
        &self,
        registry: &Registry,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, ClientMetadataError> {
        if let Some(client) = registry.client(client_id) {
            return Ok(Some(client.clone()));
        }
        let looks_like_url = client_id.starts_with("https://") || client_id.starts_with("http://");
        if !looks_like_url {
            return Ok(None);
        }
        if !self.config.enabled {
            return Err(ClientMetadataError::new(
                "client_metadata_disabled",
                "This server does not accept URL client identifiers (client metadata documents)",
            ));
        }
        // The URL's own rules need no fetch: a malformed id is refused here, before it takes a
        // fetch slot or a cache entry (each variant of a URL would otherwise take its own).
        self.check_url(client_id)?;
        self.resolve(client_id).await.map(Some)
    }

    fn cached(&self, url: &str) -> Option<Resolution> {
        let cache = lock(&self.cache);
        cache
            .get(url)
            .filter(|entry| entry.until > Instant::now())
            .map(|entry| entry.result.clone())
    }

    async fn resolve(&self, url: &str) -> Resolution {
        if let Some(result) = self.cached(url) {
            return result;
        }
        let share = InFlight {
            map: &self.in_flight,
            url,
            cell: lock(&self.in_flight)
                .entry(url.to_string())
                .or_default()
                .clone(),
        };
        share
            .cell
            .get_or_init(|| async {
                // Another task may have finished while this one waited for the cell.
                if let Some(result) = self.cached(url) {
                    return result;
                }
                // Refused at once and not remembered: the URL itself may be fine.
                let Ok(_permit) = self.fetches.try_acquire() else {
                    tracing::warn!("client metadata document refused: too many fetches under way");
                    return Err(ClientMetadataError::new(
                        "client_metadata_busy",
                        "Too many client metadata documents are being fetched; try again shortly",
                    ));
                };
                let (result, ttl) = match self.fetch_client(url).await {
                    Ok((client, ttl)) => (Ok(Arc::new(client)), ttl),
                    Err(error) => {
                        tracing::info!(reason = error.reason, "client metadata document refused");
                        (Err(error), FAILURE_CACHE)
                    }
                };
                let mut cache = lock(&self.cache);
                if cache.len() >= CACHE_CAPACITY {
                    // Refusals and expired entries go first, so made-up URLs cannot flush the
                    // good documents; only a cache full of good ones is emptied.
                    let now = Instant::now();
                    cache.retain(|_, entry| entry.result.is_ok() && entry.until > now);
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                }
                cache.insert(
                    url.to_string(),
                    Cached {
                        result: result.clone(),
                        until: Instant::now() + ttl,
                    },
                );
                result
            })
            .await
            .clone()
    }

    /// Checks the URL itself: scheme, allowed host, no credentials, fragment or query (CIMD §3).
    /// The draft says a client id URL SHOULD NOT have a query; one is refused, as the server
    /// fetching it cannot tell a query the document depends on from one added to it, and every
    /// `?x=1`, `?x=2`… would be a new client id for one document: another cache entry, another
    /// fetch.
    fn check_url(&self, text: &str) -> Result<url::Url, ClientMetadataError> {
        let refused = |reason, text: &str| Err(ClientMetadataError::new(reason, text));
        let Ok(url) = url::Url::parse(text) else {
            return refused("client_id_not_a_url", "The client_id is not a valid URL");
        };
        let loopback_http =
            self.config.allow_loopback_http && url.scheme() == "http" && is_loopback_host(&url);
        if url.scheme() != "https" && !loopback_http {
            return refused(
                "client_id_not_https",
                "A URL client_id must use https (client metadata documents)",
            );
        }
        if url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() == "/"
            || has_dot_segment(text)
        {
            return refused(
                "client_id_url_malformed",
                "A URL client_id needs a path, and no fragment, credentials or dot segments",
            );
        }
        if url.query().is_some() {
            return refused(
                "client_id_has_query",
                "A URL client_id must not have a query string (client metadata documents)",
            );
        }
        let host = url.host_str().unwrap_or("");
        if !host_allowed(host, &self.config.allowed_hosts) {
            return refused(
                "client_host_not_allowed",
                "This server does not accept clients whose metadata document is on this host",
            );
        }
        Ok(url)
    }

    /// Refuses IP literals outside the allowed ranges (the resolver only sees host names).
    fn check_literal(&self, url: &url::Url) -> Result<(), ClientMetadataError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if address_allowed(ip, self.config.allow_loopback_http) {
            Ok(())
        } else {
            Err(ClientMetadataError::new(
                "client_metadata_address_refused",
                "The client metadata document's address is not reachable from this server",
            ))
        }
    }

    /// GETs `url` as JSON under the size cap; returns the document and its cache lifetime.
    async fn get_json(
        &self,
        url: &url::Url,
        max_bytes: usize,
    ) -> Result<(Value, Duration), ClientMetadataError> {
        let unreachable = || {
            ClientMetadataError::new(
                "client_metadata_fetch_failed",
                "The client metadata document could not be fetched",
            )
        };
        self.check_literal(url)?;
        let mut response = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| unreachable())?;
        if response.status() != http::StatusCode::OK {
            return Err(ClientMetadataError::new(
                "client_metadata_fetch_failed",
                format!(
                    "The client metadata document could not be fetched (HTTP {})",
                    response.status().as_u16()
                ),
            ));
        }
        // CIMD §4: any other content type is an error response, whatever the body holds.
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !crate::jose::jwks_cache::is_json_content_type(content_type) {
            return Err(ClientMetadataError::new(
                "client_metadata_not_json",
                "The client metadata document (or its keys) is not served as application/json",
            ));
        }
        let too_large = || {
            ClientMetadataError::new(
                "client_metadata_too_large",
                format!("The client metadata document is larger than {max_bytes} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes as u64)
        {
            return Err(too_large());
        }
        let cache_control = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| unreachable())? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let document = serde_json::from_slice::<Value>(&body).map_err(|_| {
            ClientMetadataError::new(
                "client_metadata_not_json",
                "The client metadata document is not a JSON object",
            )
        })?;
        let bounds = crate::jose::jwks_cache::JwksCacheConfig {
            min_ttl: Duration::from_secs(self.config.min_cache_secs),
            max_ttl: Duration::from_secs(self.config.max_cache_secs),
            default_ttl: Duration::from_secs(300).clamp(
                Duration::from_secs(self.config.min_cache_secs),
                Duration::from_secs(self.config.max_cache_secs),
            ),
            ..Default::default()
        };
        let ttl =
            crate::jose::jwks_cache::ttl_from_cache_control(cache_control.as_deref(), &bounds);
        Ok((document, ttl))
    }

    async fn fetch_client(&self, text: &str) -> Result<(Client, Duration), ClientMetadataError> {
        let url = self.check_url(text)?;
        let (document, ttl) = self.get_json(&url, self.config.max_document_bytes).await?;
        let mut config = client_from_document(text, &document)?;
        if config.jwks.is_none()
            && let Some(uri) = config.jwks_uri.take()
        {
            // Keys are fetched now, under the same rules, and kept with the document.
            let jwks_url = url::Url::parse(&uri).map_err(|_| invalid("jwks_uri is not a URL"))?;
            let scheme_ok = jwks_url.scheme() == "https"
                || (self.config.allow_loopback_http
                    && jwks_url.scheme() == "http"
                    && is_loopback_host(&jwks_url));
            if !scheme_ok {
                return Err(invalid("jwks_uri must be an https URL"));
            }
            // The keys decide who the client is, so they come from a host the administrator
            // accepts clients from, like the document itself: otherwise one allowed host could
            // hand its clients' identity to any other host on the internet.
            if !host_allowed(
                jwks_url.host_str().unwrap_or(""),
                &self.config.allowed_hosts,
            ) {
                return Err(ClientMetadataError::new(
                    "client_jwks_host_not_allowed",
                    "The client metadata document's jwks_uri is on a host this server does not \
                     accept clients from",
                ));
            }
            let (keys, _) = self.get_json(&jwks_url, MAX_JWKS_BYTES).await?;
            config.jwks = Some(keys.to_string());
        }
        let client =
            Client::build(config).map_err(|_| invalid("it does not describe a valid client"))?;
        Ok((client, ttl))
    }
}

/// True if the path of the URL `text`, as sent, has a single-dot or double-dot segment, also
/// percent-encoded (`%2e`) or after a backslash (CIMD §3). Checked on the text because URL
/// parsing resolves such segments away: `/a/../x.json` parses as `/x.json`, and would let one
/// document answer for many client ids.
fn has_dot_segment(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let before_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    // The first piece is the authority; every later one is a path segment.
    before_query.split(['/', '\\']).skip(1).any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    })
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

fn invalid(what: &str) -> ClientMetadataError {
    ClientMetadataError::new(
        "client_metadata_invalid",
        format!("The client metadata document is not acceptable: {what}"),
    )
}

fn strings(document: &Value, key: &str) -> Result<Option<Vec<String>>, ClientMetadataError> {
    match document.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| invalid(&format!("{key} must be an array of strings"))),
        Some(_) => Err(invalid(&format!("{key} must be an array of strings"))),
    }
}

fn text(document: &Value, key: &str) -> Result<Option<String>, ClientMetadataError> {
    match document.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(invalid(&format!("{key} must be a string"))),
    }
}

/// Turns a fetched document into a client configuration (validated later by the shared
/// `trust::validate_client`). Pure, so every rule is unit-tested without a network.
pub fn client_from_document(
    url: &str,
    document: &Value,
) -> Result<ClientConfig, ClientMetadataError> {
    if !document.is_object() {
        return Err(invalid("it is not a JSON object"));
    }
    // CAUTH-10: the document must name itself, byte for byte.
    if document.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(ClientMetadataError::new(
            "client_metadata_client_id_mismatch",
            "The client metadata document's client_id does not equal its URL",
        ));
    }
    // A document is public: it can hold no shared secret (CIMD §4.1).
    if ["client_secret", "client_secret_expires_at"]
        .iter()
        .any(|key| document.get(*key).is_some())
    {
        return Err(invalid("it must not contain client_secret"));
    }
    let auth_method =
        text(document, "token_endpoint_auth_method")?.unwrap_or_else(|| "none".into());
    if auth_method != "none" && auth_method != "private_key_jwt" {
        return Err(invalid(
            "token_endpoint_auth_method must be none or private_key_jwt",
        ));
    }
    let redirect_uris = strings(document, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(invalid("redirect_uris must list at least one URI"));
    }
    for uri in &redirect_uris {
        crate::trust::validate_redirect_uri(uri)
            .map_err(|_| invalid("a redirect URI is not an https (or loopback http) URL"))?;
    }
    if let Some(types) = strings(document, "response_types")?
        && types.iter().any(|t| t != "code")
    {
        return Err(invalid("response_types may only contain code"));
    }
    let grant_types = strings(document, "grant_types")?
        .unwrap_or_else(|| vec![crate::oauth::GRANT_AUTHORIZATION_CODE.to_string()]);
    for grant in &grant_types {
        if crate::oauth::GrantType::parse(grant).is_none_or(|g| g.as_str() != grant) {
            return Err(invalid("grant_types lists an unsupported grant type"));
        }
    }
    let client_name = text(document, "client_name")?;
    // Shown on the consent page before the document's host, which it must not disguise.
    if client_name
        .as_deref()
        .is_some_and(crate::oauth::registration::client_name_disguised)
    {
        return Err(invalid(
            "client_name must not contain bidirectional-text controls or invisible characters",
        ));
    }
    let jwks = match document.get("jwks") {
        None | Some(Value::Null) => None,
        Some(keys @ Value::Object(_)) => Some(keys.to_string()),
        Some(_) => return Err(invalid("jwks must be a JWK set object")),
    };
    let jwks_uri = text(document, "jwks_uri")?;
    if auth_method == "private_key_jwt" && jwks.is_none() == jwks_uri.is_none() {
        return Err(invalid(
            "private_key_jwt needs exactly one of jwks and jwks_uri",
        ));
    }
    let profiles = strings(document, "authorization_grant_profiles_supported")?.unwrap_or_default();
    let dpop_bound_access_tokens = match document.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(value)) => *value,
        Some(_) => return Err(invalid("dpop_bound_access_tokens must be a boolean")),
    };
    Ok(ClientConfig {
        client_id: url.to_string(),
        auth_method,
        client_name,
        source: Some("cimd".into()),
        authorization_grant_profiles_supported: profiles,
        secret_hash: None,
        jwks,
        jwks_uri,
        grant_types,
        audiences: Vec::new(),
        scopes: Vec::new(),
        idp_client_ids: Default::default(),
        audience_client_ids: Default::default(),
        redirect_uris,
        enabled: true,
        dpop_bound_access_tokens,
        registration_access_token_hash: None,
        require_dpop_nonce: false,
        requests_per_minute: None,
        introspect_audiences: Vec::new(),
        audience_tenant_client_ids: Default::default(),
    })
}

type InFlightMap = Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Resolution>>>>;

/// One lookup's share of a single-flight entry. The last lookup to leave removes the entry,
/// whether it finished or was cancelled (its request's connection closed): a cancelled first
/// lookup must not leave an entry for a URL that may never be asked for again.
struct InFlight<'a> {
    map: &'a InFlightMap,
    url: &'a str,
    cell: Arc<tokio::sync::OnceCell<Resolution>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        // Shares are taken under this lock, so the count is exact: the map's and this one's.
        if map
            .get(self.url)
            .is_some_and(|entry| Arc::ptr_eq(entry, &self.cell) && Arc::strong_count(entry) <= 2)
        {
            map.remove(self.url);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A resolver that fetches from this machine's test servers (loopback http allowed), with a
    /// timeout long enough never to end a test's fetch by itself.
    fn loopback_resolver() -> Arc<ClientMetadataResolver> {
        Arc::new(
            ClientMetadataResolver::new(ClientIdMetadataConfig {
                enabled: true,
                allowed_hosts: vec!["127.0.0.1".into()],
                allow_loopback_http: true,
                fetch_timeout_secs: 30,
                ..ClientIdMetadataConfig::default()
            })
            .expect("resolver"),
        )
    }
    use serde_json::json;

    const URL: &str = "https://app.example.com/oauth/client.json";

    fn document() -> Value {
        json!({
            "client_id": URL,
            "client_name": "Example MCP client",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    }

    #[test]
    fn a_good_document_becomes_a_public_client() {
        let config = client_from_document(URL, &document()).expect("valid");
        assert_eq!(config.auth_method, "none");
        assert_eq!(config.source.as_deref(), Some("cimd"));
        let client = Client::build(config).expect("validates");
        assert_eq!(
            client.display_name().as_deref(),
            Some("Example MCP client (app.example.com)")
        );
    }

    #[test]
    fn a_document_may_require_dpop_with_a_boolean() {
        assert!(
            !client_from_document(URL, &document())
                .expect("valid")
                .dpop_bound_access_tokens
        );
        let mut doc = document();
        doc["dpop_bound_access_tokens"] = json!(true);
        assert!(
            client_from_document(URL, &doc)
                .expect("valid")
                .dpop_bound_access_tokens
        );
        doc["dpop_bound_access_tokens"] = json!(1);
        assert!(client_from_document(URL, &doc).is_err());
    }

    #[test]
    fn cauth_10_the_document_must_name_its_own_url() {
        let mut doc = document();
        doc["client_id"] = json!("https://app.example.com/other.json");
        let error = client_from_document(URL, &doc).expect_err("mismatch");
        assert_eq!(error.reason, "client_metadata_client_id_mismatch");
    }

    #[test]
    fn secrets_and_secret_methods_are_refused() {
        let mut doc = document();
        doc["client_secret"] = json!("s3cret");
        assert!(client_from_document(URL, &doc).is_err());
        let mut doc = document();
        doc["token_endpoint_auth_method"] = json!("client_secret_basic");
        assert!(client_from_document(URL, &doc).is_err());
    }

    #[test]
    fn private_key_jwt_needs_keys_and_redirects_must_be_valid() {
        let mut doc = document();
        doc["token_endpoint_auth_method"] = json!("private_key_jwt");
        assert!(client_from_document(URL, &doc).is_err());
        let mut doc = document();
        doc["redirect_uris"] = json!(["http://evil.example/cb"]);
        assert!(client_from_document(URL, &doc).is_err());
        let mut doc = document();
        doc["redirect_uris"] = json!([]);
        assert!(client_from_document(URL, &doc).is_err());
    }

    #[test]
    fn a_public_document_cannot_ask_for_token_exchange() {
        let mut doc = document();
        doc["grant_types"] = json!([crate::oauth::GRANT_TOKEN_EXCHANGE]);
        let config = client_from_document(URL, &doc).expect("parsed");
        assert!(
            Client::build(config).is_err(),
            "public clients get no token exchange"
        );
    }

    /// A lookup cancelled while its fetch is under way (its request's connection closed) leaves
    /// no single-flight entry behind: otherwise every abandoned URL — an attacker can make up
    /// any number on an allowed host — would stay in memory for good.
    #[tokio::test]
    async fn a_cancelled_lookup_leaves_no_in_flight_entry() {
        let arrived = Arc::new(tokio::sync::Notify::new());
        let notify = arrived.clone();
        let app = axum::Router::new().route(
            "/clients/slow.json",
            axum::routing::get(move || async move {
                notify.notify_one();
                std::future::pending::<()>().await;
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/clients/slow.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let resolver = loopback_resolver();
        let lookup = {
            let (resolver, url) = (resolver.clone(), url.clone());
            tokio::spawn(async move { resolver.resolve(&url).await.is_ok() })
        };
        arrived.notified().await;
        assert_eq!(lock(&resolver.in_flight).len(), 1, "the fetch is under way");
        lookup.abort();
        assert!(lookup.await.expect_err("cancelled").is_cancelled());
        assert!(lock(&resolver.in_flight).is_empty(), "nothing left behind");
    }

    /// Lookups of made-up URLs cannot pile up outbound connections without bound: past
    /// `MAX_CONCURRENT_FETCHES` fetches under way, a lookup of yet another URL is refused at
    /// once (`client_metadata_busy`, not remembered as a failure) instead of opening another.
    #[tokio::test]
    async fn concurrent_fetches_of_different_urls_are_bounded() {
        let arrivals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (count, notify) = (arrivals.clone(), arrived.clone());
        let app = axum::Router::new().route(
            "/clients/{name}",
            axum::routing::get(move || async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                notify.notify_one();
                std::future::pending::<()>().await;
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/clients", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let resolver = loopback_resolver();
        let mut lookups = Vec::new();
        for n in 0..MAX_CONCURRENT_FETCHES {
            let (resolver, url) = (resolver.clone(), format!("{base}/{n}.json"));
            lookups.push(tokio::spawn(
                async move { resolver.resolve(&url).await.is_ok() },
            ));
        }
        while arrivals.load(std::sync::atomic::Ordering::SeqCst) < MAX_CONCURRENT_FETCHES {
            arrived.notified().await;
        }
        let one_more = format!("{base}/one-more.json");
        let error = resolver.resolve(&one_more).await.expect_err("busy");
        assert_eq!(error.reason, "client_metadata_busy");
        assert!(resolver.cached(&one_more).is_none(), "not remembered");
        assert_eq!(
            arrivals.load(std::sync::atomic::Ordering::SeqCst),
            MAX_CONCURRENT_FETCHES,
            "not requested"
        );
        for lookup in lookups {
            lookup.abort();
        }
    }

    /// A full cache makes room by dropping refusals and expired entries first: otherwise
    /// `CACHE_CAPACITY` made-up URLs (each a remembered refusal) would flush every good
    /// document, and every client would be fetched again.
    #[tokio::test]
    async fn made_up_urls_do_not_flush_good_documents_from_the_cache() {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/clients", listener.local_addr().expect("addr"));
        let good = format!("{base}/good.json");
        let document = serde_json::json!({
            "client_id": good,
            "redirect_uris": ["http://127.0.0.1:9/callback"],
        })
        .to_string();
        let app = axum::Router::new()
            .route(
                "/clients/good.json",
                axum::routing::get(move || async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ([(http::header::CONTENT_TYPE, "application/json")], document)
                }),
            )
            .fallback(|| async { http::StatusCode::NOT_FOUND });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let resolver = ClientMetadataResolver::new(ClientIdMetadataConfig {
            enabled: true,
            allowed_hosts: vec!["127.0.0.1".into()],
            allow_loopback_http: true,
            ..ClientIdMetadataConfig::default()
        })
        .expect("resolver");
        assert!(resolver.resolve(&good).await.is_ok());
        for n in 0..CACHE_CAPACITY {
            let refused = resolver.resolve(&format!("{base}/made-up-{n}.json")).await;
            assert_eq!(
                refused.expect_err("404").reason,
                "client_metadata_fetch_failed"
            );
        }
        assert!(resolver.resolve(&good).await.is_ok());
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "still cached"
        );
        assert!(lock(&resolver.cache).len() <= CACHE_CAPACITY);
    }

    #[test]
    fn host_patterns() {
        let patterns = vec![
            "app.example.com".to_string(),
            "*.clients.example".to_string(),
        ];
        assert!(host_allowed("app.example.com", &patterns));
        assert!(host_allowed("a.clients.example", &patterns));
        assert!(!host_allowed("clients.example", &patterns));
        assert!(!host_allowed("evilapp.example.com", &patterns));
        assert!(!host_allowed("x.evil-clients.example", &patterns));
        assert!(host_allowed("anything.test", &["*".to_string()]));
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            // Benchmarking, the old 6to4 relay, site-local, IPv4-compatible, 6to4 of a
            // private or loopback address, Teredo, discard-only.
            "198.18.0.1",
            "198.19.255.254",
            "192.88.99.1",
            "fec0::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!address_allowed(ip, false), "{ip} must be refused");
        }
        assert!(address_allowed("127.0.0.1".parse().expect("ip"), true));
        assert!(!address_allowed("10.0.0.1".parse().expect("ip"), true));
        assert!(address_allowed("93.184.216.34".parse().expect("ip"), false));
        assert!(address_allowed("2606:4700::1".parse().expect("ip"), false));
        assert!(address_allowed(
            "2002:5db8:d822::1".parse().expect("ip"),
            false
        ));
        assert!(address_allowed(
            "2001:4860::8888".parse().expect("ip"),
            false
        ));
    }
}
