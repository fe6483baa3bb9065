//! The in-memory view of trust configuration used on the hot path: identity providers indexed by
//! exact issuer, audiences by every value a client may send, clients by id — with CEL compiled
//! and JWKS parsed once. Rebuilt from the database when it changes, so several instances and the
//! admin page agree without a restart.

use std::collections::BTreeMap;

// Lookups by issuer, audience and client id on every token request: foldhash instead of
// SipHash (docs/architecture.md). Only configuration inserts keys here.
use foldhash::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::Algorithm;

use crate::config::{AudienceConfig, ClientConfig, IdentityProviderConfig, ResourceConfig};
use crate::jose::KeySet;
use crate::jose::jwks_cache::KeySource;
use crate::oauth::GrantType;
use crate::policy::{Expression, compile};
use crate::store::{Store, StoreError, TrustKind, TrustStore};

/// A trusted issuer, ready to verify tokens.
#[derive(Debug)]
pub struct IdentityProvider {
    /// The validated configuration.
    pub config: IdentityProviderConfig,
    /// Allowed algorithms, parsed.
    pub algorithms: Vec<Algorithm>,
    /// Where its keys come from.
    pub key_source: KeySource,
    /// Compiled condition.
    pub condition: Option<Expression>,
    /// Compiled leg-2 subject mapping.
    pub subject_mapping: Option<Expression>,
    /// The certificates its SAML assertions are verified with, when it is trusted for `saml2`.
    pub saml_keys: Option<crate::saml::SamlKeys>,
    /// True while another enabled provider trusted for subject tokens has another subject
    /// namespace (`subject_namespace`): a grant for this provider's user must then carry a
    /// mapped `sub`, or it could name another provider's user (IDJAG-JWT-05).
    pub sub_shared_with_other_namespaces: bool,
    /// The same for leg 2: true while another enabled provider trusted for assertions (`id_jag`,
    /// `jwt_grant`) has another subject namespace. A `federated` redemption would then issue
    /// the assertion's `sub` as is, and a partner issuer could name one of another issuer's
    /// users, so it is refused (decisions §43).
    pub assertion_sub_shared_with_other_namespaces: bool,
}

impl IdentityProvider {
    /// True if this issuer is trusted for the given token type name (`id_token`, `id_jag`, …).
    pub fn accepts(&self, token_type: &str) -> bool {
        self.config.enabled && self.config.token_types.iter().any(|t| t == token_type)
    }

    /// The namespace its `sub` values live in: `subject_namespace`, else its own issuer.
    pub fn subject_namespace(&self) -> &str {
        self.config
            .subject_namespace
            .as_deref()
            .unwrap_or(&self.config.issuer)
    }

    /// True if it is enabled and trusted for some leg-1 subject token type.
    fn issues_subject_tokens(&self) -> bool {
        crate::trust::SUBJECT_TOKEN_TYPES
            .iter()
            .any(|token_type| self.accepts(token_type))
    }

    /// True if it is enabled and trusted for some leg-2 assertion type.
    fn issues_assertions(&self) -> bool {
        crate::trust::ASSERTION_TOKEN_TYPES
            .iter()
            .any(|token_type| self.accepts(token_type))
    }

    /// True if this issuer may vouch for `client_id` (IDJAG-ACCEPT-22).
    pub fn vouches_for(&self, client_id: &str) -> bool {
        self.config.allowed_clients.is_empty()
            || self.config.allowed_clients.iter().any(|c| c == client_id)
    }
}

/// What an audience is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// An ID-JAG (`typ: oauth-id-jag+jwt`).
    IdJag,
    /// An identity-chaining JWT authorization grant.
    ChainingGrant,
    /// An RFC 9068 access token for a resource of this deployment.
    AccessToken,
}

/// An outbound trust.
#[derive(Debug)]
pub struct Audience {
    /// The validated configuration.
    pub config: AudienceConfig,
    /// What it is issued.
    pub kind: IssueKind,
    /// Compiled condition.
    pub condition: Option<Expression>,
    /// Compiled claim mappings (`sub`, `aud_sub`, `email`, `tenant`, `aud_tenant`).
    pub claims: BTreeMap<String, Expression>,
}

/// A client: registered (config file, admin page, API, self-registration) or described by a
/// Client ID Metadata Document.
#[derive(Debug)]
pub struct Client {
    /// The validated configuration.
    pub config: ClientConfig,
    /// Parsed inline JWKS for `private_key_jwt`, each key kept parsed after its first use.
    pub jwks: Option<KeySet>,
    /// Allowed grants.
    pub grant_types: Vec<GrantType>,
}

impl Client {
    /// Builds a client from a configuration, validating it like every other source does.
    pub fn build(config: ClientConfig) -> Result<Client, String> {
        build_client(config)
    }

    /// True for a public client (`auth_method = "none"`): it cannot authenticate, so it only
    /// gets the authorization code and refresh token grants.
    pub fn is_public(&self) -> bool {
        self.config.auth_method == "none"
    }

    /// What the consent page calls the client, next to its id: its name; for a metadata-document
    /// client also the host that published the document, and a self-registered client is marked
    /// as such, so the user can tell who asks — a name alone is whatever its author chose. The
    /// host or the mark is shown even when the client has no `client_name`: those are the only
    /// hints that no administrator vetted the client, so they never depend on what it sent.
    pub fn display_name(&self) -> Option<String> {
        let name = self.config.client_name.as_deref();
        match self.config.source.as_deref() {
            Some("cimd") => {
                let host = url::Url::parse(&self.config.client_id)
                    .ok()
                    .and_then(|url| url.host_str().map(str::to_string))
                    .unwrap_or_default();
                Some(format!("{} ({host})", name.unwrap_or("Unnamed client")))
            }
            Some("dcr") => Some(format!(
                "{} (self-registered)",
                name.unwrap_or("Unnamed client")
            )),
            _ => name.map(str::to_string),
        }
    }

    /// The identifier this client is known by at `idp` (the `aud` of its ID tokens).
    pub fn id_at_idp(&self, idp: &str) -> &str {
        self.config
            .idp_client_ids
            .get(idp)
            .map_or(self.config.client_id.as_str(), String::as_str)
    }

    /// The identifier this client is known by at `audience` (the ID-JAG `client_id` claim).
    pub fn id_at_audience(&self, audience: &str) -> &str {
        self.config
            .audience_client_ids
            .get(audience)
            .map_or(self.config.client_id.as_str(), String::as_str)
    }

    /// The identifier this client is known by at `audience` for a user of `tenant` (TEN-02,
    /// IDJAG §6.2). Where the resource AS scopes client ids to its tenants the client has one
    /// per tenant (`audience_tenant_client_ids`); a grant for a user of a tenant it has none in,
    /// or of no tenant, would name a client the resource AS does not know there, so there is
    /// none (`None`). Other audiences: [`Self::id_at_audience`].
    pub fn id_at_audience_in_tenant(&self, audience: &str, tenant: Option<&str>) -> Option<&str> {
        let scoped = &self.config.audience_tenant_client_ids;
        let tenant_scoped = !scoped.is_empty()
            && scoped.keys().any(|key| {
                key.strip_prefix(audience)
                    .is_some_and(|rest| rest.starts_with('/'))
            });
        if !tenant_scoped {
            return Some(self.id_at_audience(audience));
        }
        scoped
            .get(&format!("{audience}/{}", tenant?))
            .map(String::as_str)
    }
}

/// One consistent snapshot of all trust objects.
#[derive(Debug, Default)]
pub struct Registry {
    idps_by_issuer: HashMap<String, Arc<IdentityProvider>>,
    audiences_by_value: HashMap<String, Arc<Audience>>,
    audiences_by_resource: HashMap<String, Vec<Arc<Audience>>>,
    clients: HashMap<String, Arc<Client>>,
    resources: HashMap<String, Arc<ResourceConfig>>,
    default_resource: Option<Arc<ResourceConfig>>,
    version: String,
}

impl Registry {
    /// The provider whose issuer is exactly `issuer` (FED-02: no normalisation).
    pub fn idp_by_issuer(&self, issuer: &str) -> Option<&Arc<IdentityProvider>> {
        self.idps_by_issuer.get(issuer)
    }

    /// The provider with configuration id `id` (the authorization code flow's sign-in IdP).
    pub fn idp_by_id(&self, id: &str) -> Option<&Arc<IdentityProvider>> {
        self.idps_by_issuer.values().find(|idp| idp.config.id == id)
    }

    /// The issuer of an enabled identity provider (the first by id): the admin page's policy
    /// simulator starts its example claims with it.
    pub fn first_idp_issuer(&self) -> Option<String> {
        self.idps_by_issuer
            .values()
            .filter(|idp| idp.config.enabled)
            .min_by(|a, b| a.config.id.cmp(&b.config.id))
            .map(|idp| idp.config.issuer.clone())
    }

    /// The audience named by `value` (its issuer identifier or an alias).
    pub fn audience(&self, value: &str) -> Option<&Arc<Audience>> {
        self.audiences_by_value.get(value)
    }

    /// The audience with configuration id `id` (a client's `audiences` name them by id). A scan:
    /// for the rare paths that start from a client's list, not for the token hot path.
    pub fn audience_by_id(&self, id: &str) -> Option<&Arc<Audience>> {
        self.audiences_by_value
            .values()
            .find(|audience| audience.config.id == id)
    }

    /// The audiences that govern `resource`.
    pub fn audiences_for_resource(&self, resource: &str) -> &[Arc<Audience>] {
        self.audiences_by_resource
            .get(resource)
            .map_or(&[], Vec::as_slice)
    }

    /// The client with this id.
    pub fn client(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }

    /// How many clients registered themselves (RFC 7591): what `registration.max_clients`
    /// caps. A scan, for the registration endpoint only.
    pub fn self_registered_clients(&self) -> usize {
        self.clients
            .values()
            .filter(|client| client.config.source.as_deref() == Some("dcr"))
            .count()
    }

    /// A protected resource by its exact identifier.
    pub fn resource(&self, resource: &str) -> Option<&Arc<ResourceConfig>> {
        self.resources.get(resource)
    }

    /// The resource used when none is named.
    pub fn default_resource(&self) -> Option<&Arc<ResourceConfig>> {
        self.default_resource.as_ref()
    }

    fn with_resources(mut self, resources: &[ResourceConfig]) -> Registry {
        for resource in resources {
            let resource = Arc::new(resource.clone());
            if resource.default {
                self.default_resource = Some(resource.clone());
            }
            self.resources.insert(resource.resource.clone(), resource);
        }
        self
    }

    /// Builds a registry from stored documents. Invalid documents are skipped with an error log
    /// (they were validated when written, so this means tampering or a version skew).
    ///
    /// Earlier entries take precedence: an identity provider whose issuer (compared as
    /// [`crate::trust::issuer_identity`]), or an audience any of whose values (issuer,
    /// aliases), is already taken by an earlier entry is skipped whole,
    /// with an error log. [`load_registry`] passes the configuration file's entries first, so a
    /// database entry (created before the file declared the same issuer, or in a race between
    /// two administrators) can never replace a trust the file manages, and the outcome never
    /// depends on how ids happen to sort.
    pub fn build(
        idps: Vec<IdentityProviderConfig>,
        audiences: Vec<AudienceConfig>,
        clients: Vec<ClientConfig>,
        version: String,
    ) -> Registry {
        let mut registry = Registry {
            version,
            ..Registry::default()
        };
        let mut built: Vec<IdentityProvider> = Vec::with_capacity(idps.len());
        let mut issuers = std::collections::HashSet::new();
        for config in idps {
            match build_idp(config) {
                Ok(idp) if !issuers.insert(crate::trust::issuer_identity(&idp.config.issuer)) => {
                    tracing::error!(
                    id = %idp.config.id,
                    issuer = %idp.config.issuer,
                    "skipping an identity provider whose issuer another provider already has \
                     (the same, or the same but for case, a default port or a final `/`)"
                    );
                }
                Ok(idp) => built.push(idp),
                Err(error) => tracing::error!(%error, "skipping an invalid identity provider"),
            }
        }
        let several = |issues: fn(&IdentityProvider) -> bool| {
            built
                .iter()
                .filter(|idp| issues(idp))
                .map(IdentityProvider::subject_namespace)
                .collect::<std::collections::HashSet<&str>>()
                .len()
                > 1
        };
        let several_for_subject_tokens = several(IdentityProvider::issues_subject_tokens);
        let several_for_assertions = several(IdentityProvider::issues_assertions);
        for mut idp in built {
            idp.sub_shared_with_other_namespaces =
                several_for_subject_tokens && idp.issues_subject_tokens();
            idp.assertion_sub_shared_with_other_namespaces =
                several_for_assertions && idp.issues_assertions();
            registry
                .idps_by_issuer
                .insert(idp.config.issuer.clone(), Arc::new(idp));
        }
        for config in audiences {
            match build_audience(config) {
                Ok(audience)
                    if std::iter::once(&audience.config.issuer)
                        .chain(&audience.config.aliases)
                        .any(|value| registry.audiences_by_value.contains_key(value)) =>
                {
                    tracing::error!(
                        id = %audience.config.id,
                        "skipping an audience whose issuer or alias already names another audience"
                    );
                }
                Ok(audience) => {
                    let audience = Arc::new(audience);
                    for value in
                        std::iter::once(&audience.config.issuer).chain(&audience.config.aliases)
                    {
                        registry
                            .audiences_by_value
                            .insert(value.clone(), audience.clone());
                    }
                    for resource in &audience.config.resources {
                        registry
                            .audiences_by_resource
                            .entry(resource.clone())
                            .or_default()
                            .push(audience.clone());
                    }
                }
                Err(error) => tracing::error!(%error, "skipping an invalid audience"),
            }
        }
        for config in clients {
            match build_client(config) {
                Ok(client) => {
                    registry
                        .clients
                        .insert(client.config.client_id.clone(), Arc::new(client));
                }
                Err(error) => tracing::error!(%error, "skipping an invalid client"),
            }
        }
        registry
    }
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

fn build_idp(config: IdentityProviderConfig) -> Result<IdentityProvider, String> {
    crate::trust::validate_identity_provider(&config)
        .map_err(|(key, message)| format!("identity provider {}: {key}: {message}", config.id))?;
    let algorithms = config
        .algorithms
        .iter()
        .filter_map(|name| parse_algorithm(name))
        .collect();
    let key_source = if let Some(jwks) = &config.jwks {
        KeySource::Inline(serde_json::from_str(jwks).map_err(|error| error.to_string())?)
    } else if let Some(uri) = &config.jwks_uri {
        KeySource::JwksUri(url::Url::parse(uri).map_err(|error| error.to_string())?)
    } else {
        KeySource::Discovery {
            issuer: config.issuer.clone(),
        }
    };
    let condition = config
        .condition
        .as_deref()
        .map(compile)
        .transpose()
        .map_err(|error| error.to_string())?;
    let subject_mapping = config
        .subject_mapping
        .as_deref()
        .map(compile)
        .transpose()
        .map_err(|error| error.to_string())?;
    let saml_keys = config
        .saml_certificates
        .as_deref()
        .map(crate::saml::SamlKeys::from_pem)
        .transpose()?;
    Ok(IdentityProvider {
        config,
        algorithms,
        key_source,
        condition,
        subject_mapping,
        saml_keys,
        sub_shared_with_other_namespaces: false,
        assertion_sub_shared_with_other_namespaces: false,
    })
}

fn build_audience(config: AudienceConfig) -> Result<Audience, String> {
    crate::trust::validate_audience(&config)
        .map_err(|(key, message)| format!("audience {}: {key}: {message}", config.id))?;
    let kind = match config.token_type.as_str() {
        "id-jag" => IssueKind::IdJag,
        "jwt" => IssueKind::ChainingGrant,
        _ => IssueKind::AccessToken,
    };
    let condition = config
        .condition
        .as_deref()
        .map(compile)
        .transpose()
        .map_err(|error| error.to_string())?;
    let mut claims = BTreeMap::new();
    for (claim, source) in &config.claims {
        claims.insert(
            claim.clone(),
            compile(source).map_err(|error| error.to_string())?,
        );
    }
    Ok(Audience {
        config,
        kind,
        condition,
        claims,
    })
}

fn build_client(config: ClientConfig) -> Result<Client, String> {
    crate::trust::validate_client(&config)
        .map_err(|(key, message)| format!("client {}: {key}: {message}", config.client_id))?;
    let jwks = config
        .jwks
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|error| error.to_string())?;
    let grant_types = config
        .grant_types
        .iter()
        .filter_map(|grant| GrantType::parse(grant))
        .collect();
    Ok(Client {
        config,
        jwks,
        grant_types,
    })
}

/// The live registry, refreshed from the store when the trust version changes.
#[derive(Debug)]
pub struct Trust {
    store: Store,
    resources: Vec<ResourceConfig>,
    current: RwLock<Arc<Registry>>,
    /// Numbers each load in the order it starts reading the database (see [`Trust::install`]).
    loads: std::sync::atomic::AtomicU64,
    /// The number of the load `current` came from.
    installed: std::sync::Mutex<u64>,
}

impl Trust {
    /// Loads the registry from the store; protected resources come from the configuration.
    pub async fn load(store: Store, resources: Vec<ResourceConfig>) -> Result<Trust, StoreError> {
        let registry = load_registry(&store).await?.with_resources(&resources);
        Ok(Trust {
            store,
            resources,
            current: RwLock::new(Arc::new(registry)),
            loads: std::sync::atomic::AtomicU64::new(1),
            installed: std::sync::Mutex::new(0),
        })
    }

    /// The current snapshot (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<Registry> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads if the stored trust changed. Returns true if it did.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let version = self.store.trust_version().await?;
        if version == self.current().version {
            return Ok(false);
        }
        let load = self.start_load();
        let registry = load_registry(&self.store)
            .await?
            .with_resources(&self.resources);
        self.install(load, registry);
        Ok(true)
    }

    /// Reloads unconditionally (after an admin change on this instance).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let load = self.start_load();
        let registry = load_registry(&self.store)
            .await?
            .with_resources(&self.resources);
        self.install(load, registry);
        Ok(())
    }

    /// The number of a load about to read the database: later loads get larger numbers.
    fn start_load(&self) -> u64 {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes `registry`, read by load number `load`, the current snapshot unless a load that
    /// started later installed its snapshot already. The periodic refresh and the reload after
    /// an administrator's change run concurrently: a refresh that read the database before the
    /// change (an identity provider or client disabled) could otherwise finish last and bring
    /// the old state back until the next tick. Ordered by when loads start, not by the stored
    /// generation, so a database restored from a backup (an older generation) still loads.
    fn install(&self, load: u64, registry: Registry) {
        let mut installed = match self.installed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if load < *installed {
            return;
        }
        *installed = load;
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(registry),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(registry),
        }
    }
}

async fn load_registry(store: &Store) -> Result<Registry, StoreError> {
    let version = store.trust_version().await?;
    fn decode<T: serde::de::DeserializeOwned>(
        documents: Vec<crate::store::TrustDocument>,
    ) -> Vec<T> {
        documents
            .into_iter()
            .filter_map(|document| match serde_json::from_value(document.document) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::error!(id = %document.id, %error, "skipping an undecodable trust document");
                    None
                }
            })
            .collect()
    }
    // The configuration file's entries first (a stable sort keeps the id order within each
    // group): they take precedence over database entries claiming the same issuer or audience
    // value (`Registry::build`).
    let config_first = |mut documents: Vec<crate::store::TrustDocument>| {
        documents.sort_by_key(|document| !document.managed_by_config);
        documents
    };
    let idps = decode(config_first(
        store.list_trust(TrustKind::IdentityProvider).await?,
    ));
    let audiences = decode(config_first(store.list_trust(TrustKind::Audience).await?));
    let clients = decode(store.list_trust(TrustKind::Client).await?);
    Ok(Registry::build(idps, audiences, clients, version))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn client(tenant_ids: &[(&str, &str)]) -> Client {
        let mut config: ClientConfig = serde_json::from_value(serde_json::json!({
            "client_id": "agent",
            "auth_method": "private_key_jwt",
            "jwks_uri": "https://agent.example/jwks.json",
            "audiences": ["saas", "saasy", "wiki"],
            "audience_client_ids": { "saas": "agent-at-saas", "wiki": "agent-at-wiki" },
        }))
        .unwrap();
        for (key, id) in tenant_ids {
            config
                .audience_tenant_client_ids
                .insert(key.to_string(), id.to_string());
        }
        Client::build(config).unwrap()
    }

    /// A snapshot read before another one never replaces it: a slow refresh finishing after
    /// the reload of an administrator's change (a client disabled) would otherwise bring the
    /// old state back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("frontdesk.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let trust = Trust::load(store, Vec::new()).await.unwrap();
        let snapshot = |version: &str, enabled: bool| {
            let mut config = client(&[]).config.clone();
            config.enabled = enabled;
            Registry::build(Vec::new(), Vec::new(), vec![config], version.into())
        };
        // A refresh starts reading, then an administrator's reload reads and installs first.
        let refresh = trust.start_load();
        let reload = trust.start_load();
        trust.install(reload, snapshot("7", false));
        trust.install(refresh, snapshot("6", true));
        let current = trust.current();
        assert_eq!(current.version, "7");
        assert!(!current.client("agent").unwrap().config.enabled);
        // A later load installs, whatever its generation (a database restored from a backup).
        let later = trust.start_load();
        trust.install(later, snapshot("3", true));
        assert!(trust.current().client("agent").unwrap().config.enabled);
    }

    /// TEN-02 (IDJAG §6.2): where an audience scopes client ids to tenants, the grant names the
    /// client's id in the user's tenant, and there is none for another tenant or no tenant; an
    /// audience whose id merely starts like a tenant-scoped one is not affected.
    #[test]
    fn tenant_scoped_client_ids_ten_02() {
        let agent = client(&[("saas/acme", "agent-acme"), ("saas/globex", "agent-globex")]);
        assert_eq!(
            agent.id_at_audience_in_tenant("saas", Some("acme")),
            Some("agent-acme")
        );
        assert_eq!(
            agent.id_at_audience_in_tenant("saas", Some("globex")),
            Some("agent-globex")
        );
        assert_eq!(
            agent.id_at_audience_in_tenant("saas", Some("initech")),
            None
        );
        assert_eq!(agent.id_at_audience_in_tenant("saas", None), None);
        assert_eq!(
            agent.id_at_audience_in_tenant("wiki", Some("acme")),
            Some("agent-at-wiki")
        );
        assert_eq!(
            agent.id_at_audience_in_tenant("saasy", Some("acme")),
            Some("agent")
        );
        let plain = client(&[]);
        assert_eq!(
            plain.id_at_audience_in_tenant("saas", None),
            Some("agent-at-saas")
        );
    }
}
