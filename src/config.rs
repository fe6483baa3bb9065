//! Typed configuration: built-in defaults, then one TOML file, then `FRONTDESK_*` environment
//! variables, then `*_FILE` secrets. Validation runs once, at load, so a bad setting stops startup
//! with a message naming the key and where it came from, instead of failing on the first request.
//!
//! Environment variables (every one is optional):
//!
//! | variable | key |
//! |---|---|
//! | `FRONTDESK_CONFIG` | path of the TOML file (same as `--config`) |
//! | `FRONTDESK_LOG` | tracing filter overriding `log.level` |
//! | `FRONTDESK_CLIENT_SECRET` | read by `frontdesk exchange` only |
//! | `FRONTDESK_ISSUER` | `issuer` |
//! | `FRONTDESK_LISTEN` | `server.listen` |
//! | `FRONTDESK_DATABASE_URL` | `database.url` |
//! | `FRONTDESK_KEY_ENCRYPTION_KEY` | `keys.encryption_key` |
//! | `FRONTDESK_<SECTION>__<KEY>` | `<section>.<key>` for every scalar key of a section |
//!
//! Any of them may instead be given as `<NAME>_FILE`, naming a file whose content (trimmed) is the
//! value — the usual way to mount secrets. `FRONTDESK_TEST_*` variables belong to the test suite
//! and are ignored here; any other unknown `FRONTDESK_*` variable is an error, so typos surface.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// The issuer of a development instance started without any configuration.
pub const DEVELOPMENT_ISSUER: &str = "http://127.0.0.1:8080";
/// File name of the embedded database of a development instance (in the working directory).
pub const DEVELOPMENT_DATABASE_FILE: &str = "frontdesk.db";
/// File name of the generated key-encryption key of a development instance.
pub const DEVELOPMENT_KEK_FILE: &str = "frontdesk.kek";

/// The whole configuration. Field names are the TOML keys documented in `docs/configuration.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of the file, so the format can evolve without guessing.
    pub version: u32,
    /// This server's issuer identifier (RFC 8414 §2): the exact string put in `iss` and metadata.
    pub issuer: String,
    /// HTTP listener settings.
    pub server: ServerConfig,
    /// Database location and pool size.
    pub database: DatabaseConfig,
    /// Signing keys and the key-encryption key that protects them at rest.
    pub keys: KeysConfig,
    /// Lifetimes and error-code choices for the tokens frontdesk issues.
    pub tokens: TokensConfig,
    /// Logging.
    pub log: LogConfig,
    /// How long the audit log keeps its events.
    pub audit: AuditConfig,
    /// How keys of trusted issuers are fetched and cached.
    pub federation: FederationConfig,
    /// Enterprise IdPs and other issuers whose tokens frontdesk accepts (inbound trust).
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// Authorization servers and trust domains frontdesk issues grants for (outbound trust).
    pub audiences: Vec<AudienceConfig>,
    /// Confidential clients allowed to call the token endpoint.
    pub clients: Vec<ClientConfig>,
    /// Resources this deployment protects (the jwt-bearer side).
    pub resources: Vec<ResourceConfig>,
    /// The authorization code flow (`GET /authorize`): where users sign in, code and refresh
    /// token lifetimes, pre-approved clients.
    pub authorization: AuthorizationConfig,
    /// Client ID Metadata Documents: clients whose `client_id` is an https URL.
    pub client_id_metadata: ClientIdMetadataConfig,
    /// Dynamic Client Registration (RFC 7591) at `POST /register`.
    pub registration: RegistrationConfig,
    /// Single sign-on into the admin page through an enterprise IdP.
    pub admin_sso: AdminSsoConfig,
    /// Set when no configuration file was given and the issuer is plain http on a loopback
    /// address: a local, single-user development instance.
    #[serde(skip)]
    pub development: bool,
    /// Where the settings came from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The files `*_FILE` variables named (variable, path): secrets, so start-up warns about
    /// one that other users can read, as it does about the key-encryption key file.
    #[serde(skip)]
    pub secret_files: Vec<(String, PathBuf)>,
}

/// The authorization code flow. `GET /authorize` is enabled only when `sign_in_idp` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// Id of the `[[identity_providers]]` entry users sign in at (frontdesk is its OpenID Connect
    /// relying party). Its `condition` applies to every sign-in.
    pub sign_in_idp: Option<String>,
    /// frontdesk's client id at that identity provider (the `aud` of the ID tokens it gets).
    pub client_id: Option<String>,
    /// frontdesk's client secret at that identity provider (use
    /// `FRONTDESK_AUTHORIZATION__CLIENT_SECRET_FILE` or `FRONTDESK_AUTHORIZATION__CLIENT_SECRET`).
    pub client_secret: Option<SecretString>,
    /// Lifetime of an authorization code (at most 60 s).
    pub code_lifetime_secs: u64,
    /// Lifetime of a refresh-token family, counted from sign-in (rotation keeps it).
    pub refresh_token_lifetime_secs: u64,
    /// How long a user has to sign in and decide on the consent page.
    pub request_lifetime_secs: u64,
    /// Clients whose requests skip the consent page.
    pub pre_approved_clients: Vec<String>,
    /// Authorization requests (`GET /authorize`) one address may start per minute, in bursts of
    /// as many; 0: no limit. Starting needs no credentials and stores a pending request for
    /// `request_lifetime_secs`, so without a limit anyone could fill the database (and the
    /// audit log, with refused ones) at the rate they can send requests.
    pub requests_per_minute_per_address: u32,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        Self {
            sign_in_idp: None,
            client_id: None,
            client_secret: None,
            code_lifetime_secs: 60,
            refresh_token_lifetime_secs: 14 * 86400,
            request_lifetime_secs: 600,
            pre_approved_clients: Vec::new(),
            requests_per_minute_per_address: 60,
        }
    }
}

/// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
/// `client_id` is an https URL is described by the JSON document served at that URL. Off by
/// default, because turning it on lets anyone who controls an allowed host become a client
/// (public, or `private_key_jwt` with keys from the document); the administrator decides which
/// hosts may do so.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIdMetadataConfig {
    /// Accept URL client ids at all (and advertise `client_id_metadata_document_supported`).
    pub enabled: bool,
    /// Hosts whose documents are accepted: `app.example.com` (exactly that host),
    /// `*.example.com` (any subdomain, not the apex) or `*` (any host). Required when enabled.
    pub allowed_hosts: Vec<String>,
    /// Largest accepted document.
    pub max_document_bytes: usize,
    /// Connect and overall timeout of one fetch.
    pub fetch_timeout_secs: u64,
    /// Lower bound of how long a fetched document is trusted (`Cache-Control: max-age` is
    /// clamped into `min_cache_secs..=max_cache_secs`).
    pub min_cache_secs: u64,
    /// Upper bound of how long a fetched document is trusted.
    pub max_cache_secs: u64,
    /// Tests and local development only: also accept `http://` documents on loopback
    /// addresses (and connect to loopback addresses at all). Never in production.
    pub allow_loopback_http: bool,
}

impl Default for ClientIdMetadataConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allowed_hosts: Vec::new(),
            max_document_bytes: 5 * 1024,
            fetch_timeout_secs: 5,
            min_cache_secs: 60,
            max_cache_secs: 86400,
            allow_loopback_http: false,
        }
    }
}

/// Dynamic Client Registration (RFC 7591). Off by default: self-registered clients are
/// strangers, so an administrator turns this on deliberately, optionally behind an initial
/// access token, and it is rate limited per peer address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Serve `POST /register` (and advertise `registration_endpoint`).
    pub enabled: bool,
    /// When set, a registration must carry `Authorization: Bearer <this>` (RFC 7591 §3).
    /// Use `FRONTDESK_REGISTRATION__INITIAL_ACCESS_TOKEN_FILE`.
    pub initial_access_token: Option<SecretString>,
    /// Registrations allowed per peer address and minute (with the same burst).
    pub per_minute: u32,
    /// Let self-registered clients ask for the jwt-bearer grant (CMETA-04; off: ID-JAG
    /// redemption stays with pre-registered clients).
    pub allow_jwt_bearer: bool,
    /// Most self-registered clients kept at once: the per-address rate limit slows one
    /// registrant, but many addresses could otherwise grow the client table (and every
    /// instance's memory) without bound. Deleting registrations makes room again.
    pub max_clients: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            initial_access_token: None,
            per_minute: 10,
            allow_jwt_bearer: false,
            max_clients: 10_000,
        }
    }
}

/// Single sign-on into the admin page: frontdesk is an OpenID Connect relying party of one of
/// the configured identity providers, and CEL conditions over the IdP's ID-token claims decide
/// who becomes an admin and who an auditor. Enabled only when `idp` is set; local accounts stay
/// for bootstrap and break-glass.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSsoConfig {
    /// Id of the `[[identity_providers]]` entry admins sign in at.
    pub idp: Option<String>,
    /// frontdesk's client id at that identity provider for the admin page.
    pub client_id: Option<String>,
    /// frontdesk's client secret there (use `FRONTDESK_ADMIN_SSO__CLIENT_SECRET_FILE`).
    pub client_secret: Option<SecretString>,
    /// CEL over the ID token's claims (as `subject`): true makes the user an admin.
    pub admin_condition: Option<String>,
    /// CEL over the same claims: true (and not admin) makes the user an auditor.
    pub auditor_condition: Option<String>,
    /// The text of the sign-in button, e.g. "Sign in with Corp SSO".
    pub button_label: Option<String>,
}

/// HTTP listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket address to listen on.
    pub listen: String,
    /// Requests that take longer are answered 408 and their work dropped.
    pub request_timeout_secs: u64,
    /// Largest accepted request body; token requests are small, so this stays low.
    pub max_body_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Open HTTP connections served at once; a connection beyond it is answered `503` with
    /// `Retry-After` and closed. Each connection holds a file descriptor, so without a cap a
    /// flood of connections (or slow ones, each lasting up to the request timeout) would use up
    /// the process's descriptors, and then the database and the JWKS fetches fail with them.
    /// Keep it below the process's open-files limit (`ulimit -n`, systemd's `LimitNOFILE`).
    pub max_connections: usize,
    /// Failed client authentications allowed per minute from one address (token endpoint,
    /// introspection and revocation together) before its requests to them are answered `429
    /// slow_down` (TOK-14). 0 disables throttling.
    pub failed_auth_per_minute: u32,
    /// Subject tokens and assertions that look forged (bad signature, wrong issuer or audience,
    /// a replayed or misdirected grant) allowed per minute from one authenticated client before
    /// its token requests are answered `429 slow_down`. 0 disables.
    pub invalid_subject_tokens_per_minute: u32,
    /// Addresses or networks (`10.0.0.0/8`, `127.0.0.1`) of the TLS proxies or load balancers in
    /// front of frontdesk, whose `X-Forwarded-For` names the client. Without it every client
    /// behind the proxy shares the proxy's address, so each per-address limit (failed client
    /// authentications, admin sign-in, registration) would count everyone together and one
    /// attacker could lock everyone out. Empty (the default): the header is ignored, since
    /// anyone can send it.
    pub trusted_proxies: Vec<String>,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>` (Prometheus's
    /// `authorization.credentials_file`). The metrics name identity providers, clients' limits
    /// and refusal rates — reconnaissance for whoever can reach the server; unset, they are
    /// public, as Prometheus endpoints usually are, and the proxy should not forward the path.
    /// Use `FRONTDESK_SERVER__METRICS_TOKEN_FILE`.
    pub metrics_token: Option<SecretString>,
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (embedded) or `postgres://…` (shared by several instances).
    pub url: SecretString,
    /// Connection pool size.
    pub max_connections: u32,
}

/// Signing-key settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Algorithm of newly generated signing keys: ES256, RS256, PS256 or EdDSA.
    pub algorithm: String,
    /// Key-encryption key: 32 bytes, base64 (standard or URL-safe). Protects private keys at rest.
    pub encryption_key: Option<SecretString>,
    /// File holding the key-encryption key (base64), as an alternative to `encryption_key`.
    pub encryption_key_file: Option<PathBuf>,
    /// How long a new key stays published as `next` before it signs. Must exceed how long
    /// relying parties cache our JWKS, so nobody sees a signature from a key they have not fetched.
    pub promote_after_secs: u64,
    /// `Cache-Control: max-age` of `/jwks.json`.
    pub jwks_max_age_secs: u64,
    /// RSA modulus size for RS256/PS256 keys.
    pub rsa_bits: u32,
    /// Days after its activation at which the active key is replaced on schedule: a `next`
    /// key is published and signs `promote_after_secs` later. Bounds how much any one private
    /// key signs and how long a copy of it stays useful. 0 rotates only on demand.
    pub rotate_after_days: u32,
}

/// The longest `keys.rotate_after_days` accepted (ten years).
pub const MAX_ROTATE_AFTER_DAYS: u32 = 3_650;

/// Token lifetimes and error-code decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Default lifetime of an ID-JAG (IDJAG-JWT-08: at most 300 s by default).
    pub id_jag_lifetime_secs: u64,
    /// Default lifetime of an identity-chaining JWT grant.
    pub chaining_grant_lifetime_secs: u64,
    /// Default lifetime of an RFC 9068 access token.
    pub access_token_lifetime_secs: u64,
    /// Allowed clock skew when checking `exp`, `nbf` and `iat` of tokens we accept (BCP-11).
    pub clock_skew_secs: u64,
    /// Error code for a bad subject token: `invalid_request` (RFC 8693 §2.2.2) or
    /// `invalid_grant` (the ID-JAG draft's example). See docs/decisions.md.
    pub subject_token_error: String,
    /// Largest token accepted as a subject token, actor token or assertion.
    pub max_token_bytes: usize,
    /// How old a DPoP proof's `iat` may be (plus `clock_skew_secs`). Proofs are made per
    /// request, so a short window keeps a captured one useless; its `jti` is remembered that long
    /// (RFC 9449 §11.1, DPOP-03).
    pub dpop_proof_max_age_secs: u64,
    /// Require every DPoP proof to echo a nonce frontdesk issued (RFC 9449 §8): a proof
    /// without a current one is answered `use_dpop_nonce` with a fresh nonce in `DPoP-Nonce`.
    pub require_dpop_nonce: bool,
    /// How long each nonce window lasts; a nonce is accepted for one to two windows.
    pub dpop_nonce_lifetime_secs: u64,
    /// Give every access token a `status` claim pointing at a published Token Status List
    /// (`oauth/status_list.rs`), so resource servers that verify tokens locally learn of
    /// revocations within `status_list_ttl_secs`.
    pub status_list: bool,
    /// The `ttl` of status list tokens and their `Cache-Control: max-age`: how stale a
    /// resource server's copy may be, hence how long a revocation may take to reach it.
    pub status_list_ttl_secs: u64,
}

/// Fetching and caching the keys of trusted issuers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// A token with an unknown `kid` triggers at most one JWKS refetch per issuer in this many
    /// seconds (JWKS-06); protects IdPs from floods of forged `kid`s. 0 disables the limit
    /// (tests only).
    pub jwks_min_refetch_secs: u64,
    /// Cache lifetime of a JWKS whose response has no `Cache-Control: max-age`.
    pub jwks_default_ttl_secs: u64,
    /// Timeout of one HTTP request to an issuer.
    pub http_timeout_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            jwks_min_refetch_secs: 30,
            jwks_default_ttl_secs: 300,
            http_timeout_secs: 10,
        }
    }
}

/// The audit log's retention. Every event is kept unless an operator sets a retention: the log
/// is evidence, and deleting it is a decision only the deployment can make (docs/decisions.md
/// §36). Events can be exported first from the admin page or its API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this many days are deleted by a background task (and by `frontdesk
    /// audit purge`). 0, the default, keeps every event.
    pub retention_days: u32,
}

/// The longest retention `audit.retention_days` accepts (100 years): a larger value is more
/// likely a unit mistake than a policy.
pub const MAX_AUDIT_RETENTION_DAYS: u32 = 36_500;

/// How often every instance reloads the signing keys from the database (seconds): a key
/// published by one instance is in the others' JWKS up to this much later, so a relying party
/// may first see it that much after it was published.
pub const KEY_RELOAD_SECS: u64 = 5;

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (structured, for production) or `pretty` (for a terminal).
    pub format: String,
    /// A tracing filter such as `info` or `frontdesk=debug,info`.
    pub level: String,
}

/// An issuer whose tokens frontdesk accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Stable name used by clients' `idp_client_ids` and in the audit log.
    pub id: String,
    /// The exact `iss` value (no trailing-slash normalisation, FED-02).
    pub issuer: String,
    /// Where the keys come from: an explicit JWKS URL; when neither this nor `jwks` is set the
    /// issuer's metadata is discovered.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Inline JWKS document (JSON text).
    #[serde(default)]
    pub jwks: Option<String>,
    /// The PEM certificates whose keys sign this issuer's SAML 2.0 assertions (one, or several
    /// during the IdP's certificate rollover), for `token_types` with `saml2`. Pinned here, never
    /// taken from the assertion: a SAML IdP publishes them in its metadata for administrators to
    /// copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_certificates: Option<String>,
    /// The IdP's SAML 2.0 metadata URL (https), whose `IDPSSODescriptor` signing certificates
    /// are trusted besides `saml_certificates` and follow the IdP's rollovers by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_metadata_url: Option<String>,
    /// The longest lifetime accepted for this issuer's SAML 2.0 assertions, in seconds, from
    /// `IssueInstant` to the earlier of the conditions' and the bearer confirmation's
    /// `NotOnOrAfter`; unset: `saml::DEFAULT_MAX_LIFETIME_SECS` (600). For IdPs that sign
    /// longer-lived assertions (Auth0's default is an hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_max_lifetime_secs: Option<u64>,
    /// The `NameID` formats (URIs) accepted from this issuer's SAML 2.0 assertions, whose
    /// `NameID` is the subject; empty: `saml::DEFAULT_NAME_ID_FORMATS` (persistent, emailAddress,
    /// unspecified, …), never `transient`, a new value at every sign-in. List `transient` only
    /// when every audience maps `sub` from a stable attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saml_name_id_formats: Vec<String>,
    /// Signature algorithms accepted from this issuer (never `none`, never HMAC).
    #[serde(default = "default_idp_algorithms")]
    pub algorithms: Vec<String>,
    /// Subject token types accepted from this issuer: `id_token`, `jwt`, `access_token`,
    /// `saml2` (leg 1), `id_jag`, `jwt_grant` (leg 2).
    #[serde(default = "default_idp_token_types")]
    pub token_types: Vec<String>,
    /// Audiences accepted in JWT access tokens / generic JWTs from this issuer. ID tokens are
    /// checked against the authenticated client's identifier at this IdP instead.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew for this issuer's tokens; defaults to `tokens.clock_skew_secs`.
    #[serde(default)]
    pub clock_skew_secs: Option<u64>,
    /// Oldest acceptable `iat`, in seconds.
    #[serde(default)]
    pub max_token_age_secs: Option<u64>,
    /// CEL condition over `subject`, `actor`, `client`, `request`; false or error denies.
    #[serde(default)]
    pub condition: Option<String>,
    /// Leg 2: how an assertion's `iss`+`sub` becomes the local subject: `federated` (use
    /// `sub` as is, unique per issuer), `mapped` (the CEL `subject_mapping`), or `linked`
    /// (a subject linked beforehand with `frontdesk subject link`; unknown → `invalid_grant`).
    #[serde(default = "default_subject_mode")]
    pub subject_mode: String,
    /// CEL expression over `subject` (the assertion's claims) giving the local subject, for
    /// `subject_mode = "mapped"`.
    #[serde(default)]
    pub subject_mapping: Option<String>,
    /// Leg 1: the namespace of this issuer's `sub` values. What frontdesk issues from a subject
    /// token carries its `sub` under frontdesk's own `iss`, so two providers' users with the same
    /// `sub` would be one user to the audience (IDJAG-JWT-05: `sub` unique per `iss`). Providers
    /// that share one user directory (two issuers of one tenant, an IdP's OIDC and SAML faces)
    /// name the same namespace; unset, each provider is a namespace of its own, and while more
    /// than one namespace is trusted for subject tokens an audience must map `sub`
    /// (`claims.sub`) to issue anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_namespace: Option<String>,
    /// Leg 2: the clients this issuer may vouch for (IDJAG-ACCEPT-22); empty = any client.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// Leg 2: claims of this issuer's assertions copied into the access token when present
    /// (claims transcription, CHAIN-B-09; `groups`, `roles`, `entitlements` of RFC 9068 §2.2.3.1,
    /// AT-10), for resource servers that authorize on them. Only what is listed passes, and never
    /// a claim frontdesk sets itself (`trust::RESERVED_TRANSCRIBED_CLAIMS`).
    #[serde(default)]
    pub transcribe_claims: Vec<String>,
    /// Verified tokens from this issuer accepted per minute on each instance (subject tokens
    /// at leg 1, assertions at leg 2), with bursts of the same number; beyond it `429
    /// slow_down`. None: no limit. What one issuer's tokens may drive, compromised or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// The same per user (`sub`) of this issuer, whatever client presents the token: one
    /// user's agents get their share and no more. None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_requests_per_minute: Option<u32>,
    /// Disabled providers are kept but refuse every token.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// A resource this deployment protects (leg 2): access tokens are audience-restricted to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource identifier, exactly as the resource publishes it in its RFC 9728
    /// protected resource metadata (e.g. `https://mcp.example.com/mcp`).
    pub resource: String,
    /// Scopes that may be granted for it.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 9396 `authorization_details` types granted for it at `jwt-bearer` (IDJAG §4.4.1): an
    /// assertion's details of other types are left out of the access token, and a request for
    /// one is `invalid_authorization_details`. Empty: none, so what another domain's IdP put in
    /// an assertion reaches this resource only when its type is one it understands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types: Vec<String>,
    /// Access-token lifetime; defaults to `tokens.access_token_lifetime_secs`.
    #[serde(default)]
    pub access_token_lifetime_secs: Option<u64>,
    /// Refuse a second presentation of the same assertion `jti` (the MCP profile requires it,
    /// the ID-JAG draft allows re-use). On by default. See docs/decisions.md.
    #[serde(default = "default_true")]
    pub single_use_assertions: bool,
    /// Used when neither the assertion nor the request names a resource.
    #[serde(default)]
    pub default: bool,
    /// Issue only DPoP-bound access tokens for this resource (RFC 9449): a token request
    /// without a DPoP proof is refused (DPOP-08). Off by default, because a resource server must
    /// check the proof on every call before it can rely on the binding.
    #[serde(default)]
    pub require_dpop: bool,
}

/// A resource authorization server or trust domain frontdesk issues grants for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceConfig {
    /// Stable name used by clients' `audiences` lists.
    pub id: String,
    /// The audience's issuer identifier, written into `aud`.
    pub issuer: String,
    /// Other values a client may send as `audience` (e.g. URNs); they resolve to `issuer`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Resource indicators (RFC 8707) this audience governs.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Scopes that may be granted for this audience.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 9396 `authorization_details` types a client may ask this audience's grants to carry
    /// (IDJAG §4.3.3): a request with any other type is `invalid_authorization_details`. Empty:
    /// none, so no client puts unvetted rich authorization into a grant another domain trusts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types: Vec<String>,
    /// What to issue: `id-jag`, `jwt` (identity-chaining grant) or `access_token`.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// Lifetime of issued grants; defaults from `[tokens]`.
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
    /// CEL expressions deriving claims for the target domain: keys `sub`, `aud_sub`, `email`,
    /// `tenant`, `aud_tenant`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Subject-token claims copied when present: any of `auth_time`, `acr`, `amr`, `email`.
    #[serde(default)]
    pub release: Vec<String>,
    /// CEL condition deciding who may get a grant.
    #[serde(default)]
    pub condition: Option<String>,
    /// Step-up: at least one of these `acr` values is required.
    #[serde(default)]
    pub require_acr: Vec<String>,
    /// Step-up: the user must have authenticated within this many seconds.
    #[serde(default)]
    pub max_auth_age_secs: Option<u64>,
    /// Grants for this audience issued per minute on each instance, in bursts of up to the same
    /// number; beyond it `429 slow_down`. None: no limit. Spares the other domain a flood of
    /// grants it would have to verify, whoever asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
}

/// A client: confidential (a secret or keys) or public (`auth_method = "none"`, authorization
/// code with PKCE and refresh tokens only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's identifier at frontdesk.
    pub client_id: String,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or `none` for a public
    /// client (one that cannot keep a secret, such as a desktop or CLI MCP client).
    pub auth_method: String,
    /// A human-readable name shown on the consent page (RFC 7591 `client_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// How the client came to be, when not from the config file or an administrator: `dcr`
    /// (self-registered at `POST /register`) or `cimd` (a Client ID Metadata Document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Grant profiles the client declared (IDJAG §8, CMETA-01), stored and echoed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_grant_profiles_supported: Vec<String>,
    /// argon2id PHC string of the secret (from `frontdesk hash-secret`).
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// Inline JWKS for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// JWKS URL for `private_key_jwt`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Grant types this client may use (full URNs or short names).
    #[serde(default = "default_client_grants")]
    pub grant_types: Vec<String>,
    /// Audience ids this client may request grants for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Scopes this client may be granted (empty: whatever the audience allows).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The client's identifier at each IdP (IdP id → the `aud` its ID tokens carry).
    #[serde(default)]
    pub idp_client_ids: BTreeMap<String, String>,
    /// The client's identifier at each audience (audience id → the ID-JAG `client_id` claim).
    #[serde(default)]
    pub audience_client_ids: BTreeMap<String, String>,
    /// Tenant-scoped identifiers at audiences whose client ids are unique only within a tenant
    /// (IDJAG §6.2, TEN-02): `"audience-id/tenant"` → the `client_id` claim of grants for users
    /// of that tenant (the grant's `tenant` claim, as the audience maps it). An audience named
    /// here gets no grant for a user of another tenant, rather than one naming a client id the
    /// resource AS does not know in that tenant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audience_tenant_client_ids: BTreeMap<String, String>,
    /// Redirect URIs for the authorization code flow, matched exactly (https, or http on a
    /// loopback address).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Disabled clients are refused with `invalid_client`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Every token request of this client must carry a DPoP proof, so everything it is issued
    /// is bound to its key (RFC 9449 §5.2 client metadata; PEERS §3.6 "require binding"). For
    /// agents whose tokens must be useless if copied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// This client's DPoP proofs must echo a nonce frontdesk issued (RFC 9449 §8), as
    /// `tokens.require_dpop_nonce` asks of every client: for the agents whose libraries answer
    /// `use_dpop_nonce`, without breaking the others. Set by the administrator only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_dpop_nonce: bool,
    /// SHA-256 (hex) of a self-registered client's registration access token (RFC 7592), with
    /// which the client reads, updates and deletes its own registration at
    /// `/register/{client_id}`. Set by `POST /register` only, never shown; not for the
    /// configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_access_token_hash: Option<String>,
    /// Token requests this client may make per minute on each instance, in bursts of up to the
    /// same number; beyond it `429 slow_down` with `Retry-After`. None: no limit. Keeps one
    /// runaway agent from taking the server (or its audit log) for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// The `aud` values of other clients' access tokens this client may introspect: a resource
    /// server (an MCP server) lists its own resource identifier, `["*"]` allows every token.
    /// A client may always introspect the tokens issued to it; any other token is
    /// `{"active": false}` to it (RFC 7662 §2.2, §4), so one compromised client's secret does
    /// not read every user's tokens. Set by the administrator only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspect_audiences: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_idp_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_idp_token_types() -> Vec<String> {
    vec!["id_token".into()]
}
fn default_subject_mode() -> String {
    "federated".into()
}
fn default_token_type() -> String {
    "id-jag".into()
}
fn default_client_grants() -> Vec<String> {
    vec!["urn:ietf:params:oauth:grant-type:token-exchange".into()]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            issuer: DEVELOPMENT_ISSUER.into(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            tokens: TokensConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            federation: FederationConfig::default(),
            identity_providers: Vec::new(),
            audiences: Vec::new(),
            clients: Vec::new(),
            resources: Vec::new(),
            authorization: AuthorizationConfig::default(),
            client_id_metadata: ClientIdMetadataConfig::default(),
            registration: RegistrationConfig::default(),
            admin_sso: AdminSsoConfig::default(),
            development: false,
            source: None,
            secret_files: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            request_timeout_secs: 15,
            max_body_bytes: 64 * 1024,
            shutdown_grace_secs: 20,
            max_connections: 900,
            failed_auth_per_minute: 30,
            invalid_subject_tokens_per_minute: 60,
            trusted_proxies: Vec::new(),
            metrics_token: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::new(format!("sqlite://{DEVELOPMENT_DATABASE_FILE}")),
            max_connections: 8,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            algorithm: "ES256".into(),
            encryption_key: None,
            encryption_key_file: None,
            promote_after_secs: 3600,
            jwks_max_age_secs: 300,
            rsa_bits: 2048,
            rotate_after_days: 90,
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            id_jag_lifetime_secs: 300,
            chaining_grant_lifetime_secs: 60,
            access_token_lifetime_secs: 600,
            clock_skew_secs: 60,
            subject_token_error: "invalid_request".into(),
            max_token_bytes: 16 * 1024,
            dpop_proof_max_age_secs: 60,
            require_dpop_nonce: false,
            dpop_nonce_lifetime_secs: 300,
            status_list: true,
            status_list_ttl_secs: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

/// The trust lists of a configuration file, held apart while [`Config::load`] applies the
/// environment. Environment variables name scalar settings only, never an entry of these lists,
/// so the lists need not make the round trip through `toml::Value` that applying them takes:
/// with 10,000 clients that copy and its second deserialization were most of start-up's
/// allocations after the parse (docs/performance.md, twenty-first run).
#[derive(Default)]
struct TrustLists {
    identity_providers: Vec<IdentityProviderConfig>,
    audiences: Vec<AudienceConfig>,
    clients: Vec<ClientConfig>,
}

impl TrustLists {
    fn take(config: &mut Config) -> TrustLists {
        TrustLists {
            identity_providers: std::mem::take(&mut config.identity_providers),
            audiences: std::mem::take(&mut config.audiences),
            clients: std::mem::take(&mut config.clients),
        }
    }

    fn restore(self, config: &mut Config) {
        config.identity_providers = self.identity_providers;
        config.audiences = self.audiences;
        config.clients = self.clients;
    }
}

/// Reads and deserializes the file alone, before the environment applies, so that its errors
/// carry the file's line numbers.
fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        key: "(file)".into(),
        origin: origin(),
        message: format!("cannot read the configuration file: {error}"),
    })?;
    let deserializer = toml::Deserializer::parse(&text).map_err(|error| ConfigError {
        key: "(syntax)".into(),
        origin: origin(),
        message: describe_toml_error(&text, &error),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| ConfigError {
        key: error.path().to_string(),
        origin: origin(),
        message: describe_toml_error(&text, error.inner()),
    })
}

/// `line L, column C: what is wrong`, without the excerpt of the file the TOML crate's own
/// `Display` adds: the offending line may hold a secret (`keys.encryption_key`, a password in
/// `database.url`, a client secret), and the error goes to the terminal and the logs.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}: {message}")
}

/// A configuration problem: which key, where it came from, and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    /// Dotted key path, or the environment variable's name.
    pub key: String,
    /// The file or environment variable that supplied the bad value.
    pub origin: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: `{}` in {}: {}",
            self.key, self.origin, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Variables that are not configuration keys but are read elsewhere.
const NON_CONFIG_VARIABLES: &[&str] = &[
    "FRONTDESK_CONFIG",
    "FRONTDESK_LOG",
    "FRONTDESK_CLIENT_SECRET",
    // The test suite's switch (scripts/test, .ci/run), like FRONTDESK_TEST_*.
    "FRONTDESK_REQUIRE_POSTGRES",
];
/// Short aliases for the most common settings.
const ALIASES: &[(&str, &str)] = &[
    ("FRONTDESK_ISSUER", "issuer"),
    ("FRONTDESK_LISTEN", "server.listen"),
    ("FRONTDESK_DATABASE_URL", "database.url"),
    ("FRONTDESK_KEY_ENCRYPTION_KEY", "keys.encryption_key"),
];

impl Config {
    /// Loads the configuration: defaults, then the file (if any), then the environment.
    /// With no file, the result is a development instance (see [`Config::development`]).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut parsed, origin) = match file {
            Some(path) => (parse_file(path)?, path.display().to_string()),
            None => (Config::default(), "built-in defaults".to_string()),
        };
        let trust = TrustLists::take(&mut parsed);
        let mut value = toml::Value::try_from(&parsed).map_err(internal)?;
        let defaults = toml::Value::try_from(Config::default()).map_err(internal)?;
        let (applied, secret_files) = apply_environment(&mut value, &defaults, env)?;
        let origin_of = |key: &str| {
            applied
                .iter()
                .find(|(_, path)| path == key)
                .map(|(var, _)| format!("environment variable {var}"))
                .unwrap_or_else(|| origin.clone())
        };
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|error| {
            let key = error.path().to_string();
            ConfigError {
                origin: origin_of(&key),
                message: one_line(&error.inner().to_string()),
                key,
            }
        })?;
        trust.restore(&mut config);
        // A file-less instance whose issuer is public (set through `FRONTDESK_ISSUER`, say in
        // a container configured by variables alone) is a deployment: it must be given a
        // key-encryption key rather than generate one in its working directory, and must not
        // print an admin bootstrap link into its logs.
        config.development = file.is_none() && issuer_is_loopback_http(&config.issuer);
        config.source = file.map(Path::to_path_buf);
        config.secret_files = secret_files;
        config
            .validate()
            .map_err(|(key, message): (String, String)| ConfigError {
                origin: origin_of(&key),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Empties the trust lists once they are in the database (`trust::sync_config`). From then
    /// on the registry built from the database is what the server reads; the configuration it
    /// keeps for its lifetime holds no second copy of 10,000 clients (docs/performance.md,
    /// twenty-first run).
    pub fn forget_trust_lists(&mut self) {
        drop(TrustLists::take(self));
    }

    /// Checks values that parse but make no sense. Returns the key and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        fn err<T>(key: &str, message: impl Into<String>) -> Result<T, (String, String)> {
            Err((key.to_string(), message.into()))
        }
        if self.version != 1 {
            return err("version", "only version 1 is understood");
        }
        validate_issuer(&self.issuer).or_else(|message| err("issuer", message))?;
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return err(
                "server.listen",
                format!(
                    "`{}` is not a socket address such as 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if let Err(message) =
            crate::http::forwarded::TrustedProxies::parse(&self.server.trusted_proxies)
        {
            return err("server.trusted_proxies", message);
        }
        // A network of every address would believe every client about its own address, and
        // each per-address limit would count whatever address the client writes.
        if let Some(every) = self.server.trusted_proxies.iter().find(|entry| {
            entry
                .trim()
                .parse::<ipnet::IpNet>()
                .is_ok_and(|net| net.prefix_len() == 0)
        }) {
            return err(
                "server.trusted_proxies",
                format!(
                    "`{}` trusts every address as a proxy, so any client could choose the \
                     address the per-address limits count; name the proxies' own addresses \
                     or networks",
                    every.trim()
                ),
            );
        }
        if self.server.request_timeout_secs == 0 || self.server.request_timeout_secs > 300 {
            return err("server.request_timeout_secs", "must be between 1 and 300");
        }
        if !(1024..=10 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            return err("server.max_body_bytes", "must be between 1024 and 10485760");
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return err("server.max_connections", "must be between 1 and 1000000");
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return err(
                "database.url",
                "must start with sqlite:// (embedded) or postgres:// (shared)",
            );
        }
        if self.database.max_connections == 0 {
            return err("database.max_connections", "must be at least 1");
        }
        if crate::keys::SigningAlgorithm::parse(&self.keys.algorithm).is_none() {
            return err(
                "keys.algorithm",
                format!(
                    "`{}` is not supported; use ES256, RS256, PS256 or EdDSA",
                    self.keys.algorithm
                ),
            );
        }
        if self.keys.encryption_key.is_some() && self.keys.encryption_key_file.is_some() {
            return err(
                "keys.encryption_key",
                "set either encryption_key or encryption_key_file, not both",
            );
        }
        if !self.development
            && self.keys.encryption_key.is_none()
            && self.keys.encryption_key_file.is_none()
        {
            return err(
                "keys.encryption_key",
                "a key-encryption key is required outside development (a development instance has no configuration file and a loopback http issuer): set FRONTDESK_KEY_ENCRYPTION_KEY (32 random bytes, base64; `openssl rand -base64 32`) or keys.encryption_key_file",
            );
        }
        if let Some(key) = &self.keys.encryption_key {
            crate::keys::Kek::from_base64(key.expose())
                .map_err(|message| ("keys.encryption_key".to_string(), message))?;
        }
        if !(2048..=4096).contains(&self.keys.rsa_bits) || !self.keys.rsa_bits.is_multiple_of(1024)
        {
            return err("keys.rsa_bits", "must be 2048, 3072 or 4096");
        }
        if self.keys.rotate_after_days > MAX_ROTATE_AFTER_DAYS {
            return err(
                "keys.rotate_after_days",
                format!("must be at most {MAX_ROTATE_AFTER_DAYS} (0 rotates only on demand)"),
            );
        }
        if self.keys.jwks_max_age_secs.saturating_add(KEY_RELOAD_SECS)
            > self.keys.promote_after_secs
        {
            return err(
                "keys.promote_after_secs",
                format!(
                    "must be at least keys.jwks_max_age_secs + {KEY_RELOAD_SECS}, so caches see a \
                     key before it signs (an instance learns of a new key up to \
                     {KEY_RELOAD_SECS} s after it is published)"
                ),
            );
        }
        for (key, value, max) in [
            (
                "tokens.id_jag_lifetime_secs",
                self.tokens.id_jag_lifetime_secs,
                3600,
            ),
            (
                "tokens.chaining_grant_lifetime_secs",
                self.tokens.chaining_grant_lifetime_secs,
                3600,
            ),
            (
                "tokens.access_token_lifetime_secs",
                self.tokens.access_token_lifetime_secs,
                86400,
            ),
            ("tokens.clock_skew_secs", self.tokens.clock_skew_secs, 300),
            (
                "tokens.dpop_proof_max_age_secs",
                self.tokens.dpop_proof_max_age_secs,
                300,
            ),
            (
                "tokens.dpop_nonce_lifetime_secs",
                self.tokens.dpop_nonce_lifetime_secs,
                86400,
            ),
            (
                "tokens.status_list_ttl_secs",
                self.tokens.status_list_ttl_secs,
                86400,
            ),
        ] {
            if value == 0 && key != "tokens.clock_skew_secs" || value > max {
                return err(key, format!("must be between 1 and {max}"));
            }
        }
        // Decoded and parsed (JSON, or XML for SAML) before any signature is checked.
        if !(1024..=1024 * 1024).contains(&self.tokens.max_token_bytes) {
            return err("tokens.max_token_bytes", "must be between 1024 and 1048576");
        }
        if !["invalid_request", "invalid_grant"].contains(&self.tokens.subject_token_error.as_str())
        {
            return err(
                "tokens.subject_token_error",
                "must be invalid_request or invalid_grant",
            );
        }
        if self.audit.retention_days > MAX_AUDIT_RETENTION_DAYS {
            return err(
                "audit.retention_days",
                format!("must be at most {MAX_AUDIT_RETENTION_DAYS} (0 keeps every event)"),
            );
        }
        if self.federation.jwks_min_refetch_secs > 3600 {
            return err("federation.jwks_min_refetch_secs", "must be at most 3600");
        }
        if !(60..=86400).contains(&self.federation.jwks_default_ttl_secs) {
            return err(
                "federation.jwks_default_ttl_secs",
                "must be between 60 and 86400",
            );
        }
        if !(1..=60).contains(&self.federation.http_timeout_secs) {
            return err("federation.http_timeout_secs", "must be between 1 and 60");
        }
        if !(1..=60).contains(&self.authorization.code_lifetime_secs) {
            return err(
                "authorization.code_lifetime_secs",
                "must be between 1 and 60",
            );
        }
        if !(60..=90 * 86400).contains(&self.authorization.refresh_token_lifetime_secs) {
            return err(
                "authorization.refresh_token_lifetime_secs",
                "must be between 60 and 7776000 (90 days)",
            );
        }
        if !(60..=3600).contains(&self.authorization.request_lifetime_secs) {
            return err(
                "authorization.request_lifetime_secs",
                "must be between 60 and 3600",
            );
        }
        if self.authorization.requests_per_minute_per_address > 1_000_000 {
            return err(
                "authorization.requests_per_minute_per_address",
                "must be at most 1000000 (0 for no limit)",
            );
        }
        let cimd = &self.client_id_metadata;
        if cimd.enabled && cimd.allowed_hosts.is_empty() {
            return err(
                "client_id_metadata.allowed_hosts",
                "list the hosts that may serve client metadata documents (`*` for any host)",
            );
        }
        for (index, pattern) in cimd.allowed_hosts.iter().enumerate() {
            if !valid_host_pattern(pattern) {
                return err(
                    &format!("client_id_metadata.allowed_hosts[{index}]"),
                    format!("`{pattern}` is not a host name, `*.domain` or `*`"),
                );
            }
        }
        // Anyone may present a URL client id: with this switch frontdesk would fetch from its
        // own loopback addresses (services listening only there) on a stranger's behalf.
        if cimd.allow_loopback_http && !self.issuer_is_loopback_http() {
            return err(
                "client_id_metadata.allow_loopback_http",
                "only for tests and development, where the issuer is plain http on a loopback address",
            );
        }
        if !(256..=64 * 1024).contains(&cimd.max_document_bytes) {
            return err(
                "client_id_metadata.max_document_bytes",
                "must be between 256 and 65536",
            );
        }
        if !(1..=30).contains(&cimd.fetch_timeout_secs) {
            return err(
                "client_id_metadata.fetch_timeout_secs",
                "must be between 1 and 30",
            );
        }
        if cimd.min_cache_secs > cimd.max_cache_secs || cimd.max_cache_secs > 7 * 86400 {
            return err(
                "client_id_metadata.max_cache_secs",
                "must be at least min_cache_secs and at most 604800 (7 days)",
            );
        }
        if self.registration.per_minute == 0 || self.registration.per_minute > 10_000 {
            return err("registration.per_minute", "must be between 1 and 10000");
        }
        if self.registration.max_clients == 0 || self.registration.max_clients > 1_000_000 {
            return err("registration.max_clients", "must be between 1 and 1000000");
        }
        // Bearer tokens an administrator chooses: long enough that guessing is hopeless.
        for (key, token) in [
            ("server.metrics_token", &self.server.metrics_token),
            (
                "registration.initial_access_token",
                &self.registration.initial_access_token,
            ),
        ] {
            if token
                .as_ref()
                .is_some_and(|token| token.expose().len() < 16)
            {
                return err(key, "must be at least 16 characters (use a random value)");
            }
        }
        if !["json", "pretty"].contains(&self.log.format.as_str()) {
            return err("log.format", "must be json or pretty");
        }
        crate::trust::validate_config(self)
    }

    /// True when the issuer is plain http on a loopback address: allowed for development and
    /// tests only (TOK-12), and then cookies cannot be `Secure`.
    pub fn issuer_is_loopback_http(&self) -> bool {
        issuer_is_loopback_http(&self.issuer)
    }

    /// Where this server's endpoints live under its origin: the issuer's path without its final
    /// `/` (`""` at the root). An issuer such as `https://login.example.com/sts` puts the token
    /// endpoint at `/sts/token`, the admin page at `/sts/admin` and the RFC 8414 metadata at
    /// `/.well-known/oauth-authorization-server/sts`, so a reverse proxy can route one path to
    /// frontdesk without rewriting it.
    pub fn issuer_path(&self) -> &str {
        issuer_path(&self.issuer)
    }
}

fn issuer_is_loopback_http(issuer: &str) -> bool {
    url::Url::parse(issuer).is_ok_and(|url| {
        url.scheme() == "http"
            && matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || url.scheme() == "http"
                && matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.scheme() == "http" && url.host_str() == Some("localhost")
    })
}

/// `host`, `*.domain` or `*`: lower-case DNS names (an IP address is a host name here too).
fn valid_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    pattern == "*"
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:[]".contains(c))
            && !name.starts_with('.')
            && !name.ends_with('.'))
}

/// RFC 8414 §2: https, no query, no fragment. Plain http only on loopback (development, tests).
/// A path is allowed (the server then answers under it, `http::router`), written the way the
/// router and RFC 8414 §3.1's path insertion will use it: plain segments, nothing a URL parser
/// would rewrite.
fn validate_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("`{issuer}` is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an issuer has no query and no fragment (RFC 8414 §2)".into());
    }
    if url.scheme() != "https" && !issuer_is_loopback_http(issuer) {
        return Err("must be https (plain http is allowed only on a loopback address)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an issuer has no user name or password".into());
    }
    let path = issuer_path(issuer);
    // No segment starts with a dot: no `.`/`..` for a parser to resolve, and no `.well-known`
    // inside the path to be confused with the metadata's own location.
    let plain_segment = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    if !path.split('/').skip(1).all(plain_segment) || url.path().trim_end_matches('/') != path {
        return Err(format!(
            "the path `{path}` must be segments of letters, digits and `-._~`, none starting \
             with a dot (frontdesk serves its endpoints under it)"
        ));
    }
    Ok(())
}

/// The path of an issuer identifier without its final `/`: `""` for `https://sts.example.com`
/// or `https://sts.example.com/`, `"/tenant"` for `https://sts.example.com/tenant/`. Sliced from
/// the string as configured (the `iss` every token carries), not from a parsed and normalised
/// URL, so that what the router serves is exactly what the metadata names; `validate_issuer`
/// refuses any issuer where the two would differ.
fn issuer_path(issuer: &str) -> &str {
    let after_scheme = issuer.split_once("://").map_or("", |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |start| &after_scheme[start..]);
    path.trim_end_matches('/')
}

/// What [`apply_environment`] applied: (variable, key path) for each variable, and (variable,
/// path) for each file a `*_FILE` variable was read from.
type Applied = (Vec<(String, String)>, Vec<(String, PathBuf)>);

/// Applies `FRONTDESK_*` variables to `value`.
fn apply_environment(
    value: &mut toml::Value,
    defaults: &toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Applied, ConfigError> {
    let mut applied = Vec::new();
    let mut files = Vec::new();
    let mut variables: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with("FRONTDESK_"))
        .filter(|(name, _)| !name.starts_with("FRONTDESK_TEST_"))
        .filter(|(name, _)| !NON_CONFIG_VARIABLES.contains(&name.as_str()))
        .collect();
    variables.sort();
    for (name, raw) in variables {
        // A name that is itself a key (FRONTDESK_KEYS__ENCRYPTION_KEY_FILE names the path key
        // `keys.encryption_key_file`) wins over reading it as `<key>_FILE`.
        let (base, from_file) = match name.strip_suffix("_FILE") {
            Some(base)
                if env_key_path(&name, defaults).is_none()
                    && env_key_path(base, defaults).is_some() =>
            {
                (base.to_string(), true)
            }
            _ => (name.clone(), false),
        };
        let Some(path) = env_key_path(&base, defaults) else {
            return Err(ConfigError {
                key: name.clone(),
                origin: "the environment".into(),
                message: "unknown FRONTDESK_ variable; see docs/configuration.md for the list"
                    .into(),
            });
        };
        let text = if from_file {
            read_secret_file(Path::new(&raw))
                .map_err(|message| ConfigError {
                    key: path.clone(),
                    origin: format!("environment variable {name}"),
                    message: format!("file `{raw}`: {message}"),
                })
                .inspect(|_| files.push((name.clone(), PathBuf::from(&raw))))?
        } else {
            raw
        };
        let typed = typed_like(lookup(defaults, &path), &text).ok_or_else(|| ConfigError {
            key: path.clone(),
            origin: format!("environment variable {name}"),
            message: format!("`{text}` is not a valid value for this key"),
        })?;
        set(value, &path, typed);
        applied.push((name, path));
    }
    Ok((applied, files))
}

/// The largest file a `*_FILE` variable may name. Every such value is a URL, a key or a token
/// (the largest, a PostgreSQL URL, is well under a kilobyte); a bigger file is a mistake —
/// `/dev/zero` or a log file named in place of the secret — that would otherwise stall start-up
/// or fill memory, and is refused instead.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a `*_FILE` secret: at most [`MAX_SECRET_FILE_BYTES`] of UTF-8, surrounding whitespace
/// (the final newline of `echo … > file`) trimmed. The message never quotes the content.
fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read it: {error}"))?;
    let mut content = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(|error| format!("cannot read it: {error}"))?;
    if content.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes; it should hold the value alone"
        ));
    }
    let text = String::from_utf8(content).map_err(|_| "not UTF-8 text".to_string())?;
    Ok(text.trim().to_string())
}

/// Maps a variable name to a key path, or None when it names no known scalar key.
fn env_key_path(name: &str, defaults: &toml::Value) -> Option<String> {
    if let Some((_, path)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Some((*path).to_string());
    }
    let rest = name.strip_prefix("FRONTDESK_")?;
    let path = rest.to_ascii_lowercase().replace("__", ".");
    let (section, key) = path.split_once('.')?;
    let table = defaults.get(section)?.as_table()?;
    // Optional keys are absent from the serialized defaults; accept those the structs declare.
    let known = table.contains_key(key) || OPTIONAL_KEYS.contains(&path.as_str());
    (known && !key.contains('.')).then_some(path.clone())
}

/// Optional scalar keys (no default value, so not in the serialized defaults).
const OPTIONAL_KEYS: &[&str] = &[
    "keys.encryption_key",
    "keys.encryption_key_file",
    "authorization.sign_in_idp",
    "authorization.client_id",
    "authorization.client_secret",
    "registration.initial_access_token",
    "server.metrics_token",
    "admin_sso.idp",
    "admin_sso.client_id",
    "admin_sso.client_secret",
    "admin_sso.admin_condition",
    "admin_sso.auditor_condition",
    "admin_sso.button_label",
];

fn lookup<'a>(value: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

fn set(value: &mut toml::Value, path: &str, new: toml::Value) {
    let mut current = value;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Some(table) = current.as_table_mut() else {
            return;
        };
        if keys.peek().is_none() {
            table.insert(key.to_string(), new);
            return;
        }
        current = table
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
}

/// Converts an environment string to the type the key has in the defaults.
fn typed_like(example: Option<&toml::Value>, text: &str) -> Option<toml::Value> {
    match example {
        Some(toml::Value::Integer(_)) => text.trim().parse().ok().map(toml::Value::Integer),
        Some(toml::Value::Boolean(_)) => text.trim().parse().ok().map(toml::Value::Boolean),
        Some(toml::Value::Float(_)) => text.trim().parse().ok().map(toml::Value::Float),
        Some(toml::Value::Array(_)) => Some(toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )),
        _ => Some(toml::Value::String(text.to_string())),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn internal(error: impl fmt::Display) -> ConfigError {
    ConfigError {
        key: "(internal)".into(),
        origin: "frontdesk".into(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests;
