//! Identity providers, audiences and clients: list, create, edit, delete, plus "test
//! connection" for identity providers and secret rotation and enable/disable for clients.
//!
//! One generic form model serves all three: each kind declares its fields once ([`Spec`]), the
//! form is turned into the same JSON document the config file produces, deserialized into the
//! config struct and checked with the `trust::validate_*` functions, so the page accepts exactly
//! what a config file would. Errors are shown next to the field they name.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::auth::{Session, random_token};
use super::now_of;
use super::views::{AdminError, FormData, Layout, render, render_with_status};
use crate::config::{AudienceConfig, ClientConfig, IdentityProviderConfig};
use crate::http::AppState;
use crate::store::{
    AdminStore, AuditDetail, AuditEvent, Decision, StoreError, TrustChange, TrustDocument,
    TrustKind, TrustStore,
};

/// The three kinds of trust object the page manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Identity providers.
    Idp,
    /// Audiences.
    Audience,
    /// Clients.
    Client,
}

impl Kind {
    pub(super) fn trust(self) -> TrustKind {
        match self {
            Kind::Idp => TrustKind::IdentityProvider,
            Kind::Audience => TrustKind::Audience,
            Kind::Client => TrustKind::Client,
        }
    }
    pub(super) fn path(self) -> &'static str {
        match self {
            Kind::Idp => "identity-providers",
            Kind::Audience => "audiences",
            Kind::Client => "clients",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Idp => "Identity providers",
            Kind::Audience => "Audiences",
            Kind::Client => "Clients",
        }
    }
    pub(super) fn singular(self) -> &'static str {
        match self {
            Kind::Idp => "identity provider",
            Kind::Audience => "audience",
            Kind::Client => "client",
        }
    }
    fn event(self) -> &'static str {
        match self {
            Kind::Idp => "identity_provider",
            Kind::Audience => "audience",
            Kind::Client => "client",
        }
    }
    pub(super) fn id_field(self) -> &'static str {
        match self {
            Kind::Client => "client_id",
            _ => "id",
        }
    }
    fn intro(self) -> &'static str {
        match self {
            Kind::Idp => {
                "Issuers whose tokens frontdesk accepts: ID tokens and JWTs as subject tokens, ID-JAGs and chaining grants as assertions."
            }
            Kind::Audience => {
                "Resource authorization servers and trust domains frontdesk issues grants for, with the CEL conditions and claim mappings that decide who gets what."
            }
            Kind::Client => {
                "Confidential clients of the token endpoint. Secrets are shown once when created or rotated; only their argon2id hashes are stored."
            }
        }
    }
    fn columns(self) -> Vec<&'static str> {
        match self {
            Kind::Idp => vec!["Issuer", "Token types", "Enabled"],
            Kind::Audience => vec!["Issuer", "Issues", "Scopes"],
            Kind::Client => vec!["Authentication", "Audiences", "Enabled", "Source"],
        }
    }
    fn cells(self, document: &Value) -> Vec<String> {
        let text = |key: &str| document[key].as_str().unwrap_or("").to_string();
        let list = |key: &str| {
            document[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        let enabled = || {
            if document["enabled"].as_bool().unwrap_or(true) {
                "yes".to_string()
            } else {
                "no".to_string()
            }
        };
        match self {
            Kind::Idp => vec![text("issuer"), list("token_types"), enabled()],
            Kind::Audience => vec![text("issuer"), text("token_type"), list("scopes")],
            Kind::Client => vec![
                text("auth_method"),
                list("audiences"),
                enabled(),
                match document["source"].as_str() {
                    Some("dcr") => "self-registered".to_string(),
                    _ => String::new(),
                },
            ],
        }
    }
}

/// How a form field maps to the JSON document.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// A string that must be present (may be empty; validation says why that is wrong).
    Text,
    /// A string, omitted when empty.
    OptText,
    /// Multi-line optional string (JSON, CEL).
    OptTextarea,
    /// Whole seconds, omitted when empty.
    Number,
    /// A list typed as words separated by spaces, commas or new lines.
    List,
    /// `key=value` per line.
    Map,
    /// A checkbox, checked when the document does not say (`enabled`).
    Bool,
    /// A checkbox, unchecked when the document does not say, and left out of it when off.
    Flag,
    /// One of fixed values.
    Select(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    label: &'static str,
    format: Format,
    help: &'static str,
}

const fn spec(name: &'static str, label: &'static str, format: Format, help: &'static str) -> Spec {
    Spec {
        name,
        label,
        format,
        help,
    }
}

const IDP_FIELDS: &[Spec] = &[
    spec(
        "id",
        "Id",
        Format::Text,
        "Stable name used by clients' ids at each IdP and in the audit log.",
    ),
    spec(
        "issuer",
        "Issuer",
        Format::Text,
        "The exact iss value (https; http only on loopback).",
    ),
    spec(
        "jwks_uri",
        "JWKS URI",
        Format::OptText,
        "Leave empty (and JWKS empty) to discover it from the issuer's metadata.",
    ),
    spec(
        "jwks",
        "Inline JWKS",
        Format::OptTextarea,
        "A JWK set as JSON, instead of a JWKS URI.",
    ),
    spec(
        "saml_certificates",
        "SAML signing certificates",
        Format::OptTextarea,
        "saml2 only: the IdP's signing certificates (PEM, from its SAML metadata); several during a rollover.",
    ),
    spec(
        "saml_metadata_url",
        "SAML metadata URL",
        Format::OptText,
        "saml2 only, instead of or besides the certificates: the IdP's metadata (https), whose signing certificates follow its rollovers.",
    ),
    spec(
        "saml_max_lifetime_secs",
        "SAML max lifetime (s)",
        Format::Number,
        "saml2 only: longest assertion lifetime accepted, IssueInstant to NotOnOrAfter; empty = 600.",
    ),
    spec(
        "saml_name_id_formats",
        "SAML NameID formats",
        Format::List,
        "saml2 only: NameID format URIs accepted; empty = persistent, emailAddress, unspecified, X509SubjectName, WindowsDomainQualifiedName, kerberos (never transient).",
    ),
    spec(
        "algorithms",
        "Algorithms",
        Format::List,
        "Asymmetric only, e.g. RS256 ES256.",
    ),
    spec(
        "token_types",
        "Token types",
        Format::List,
        "Any of id_token jwt access_token saml2 id_jag jwt_grant.",
    ),
    spec(
        "audiences",
        "Audiences",
        Format::List,
        "Expected aud of JWT access tokens from this issuer.",
    ),
    spec(
        "clock_skew_secs",
        "Clock skew (s)",
        Format::Number,
        "At most 300; empty = the server default.",
    ),
    spec(
        "max_token_age_secs",
        "Max token age (s)",
        Format::Number,
        "Oldest acceptable iat; empty = no limit.",
    ),
    spec(
        "condition",
        "Condition (CEL)",
        Format::OptTextarea,
        "Over subject, actor, client, request; false or an error denies.",
    ),
    spec(
        "subject_namespace",
        "Subject namespace",
        Format::OptText,
        "Leg 1: providers of one user directory share a name; unset, this provider is its own (several: audiences must map sub).",
    ),
    spec(
        "subject_mode",
        "Subject mode",
        Format::Select(crate::trust::SUBJECT_MODES),
        "Leg 2: how an assertion's subject becomes the local subject.",
    ),
    spec(
        "subject_mapping",
        "Subject mapping (CEL)",
        Format::OptTextarea,
        "For subject mode mapped.",
    ),
    spec(
        "allowed_clients",
        "Allowed clients",
        Format::List,
        "Leg 2: clients this issuer may vouch for; empty = any.",
    ),
    spec(
        "transcribe_claims",
        "Transcribed claims",
        Format::List,
        "Leg 2: assertion claims copied into access tokens when present (e.g. groups roles entitlements).",
    ),
    spec(
        "requests_per_minute",
        "Requests per minute",
        Format::Number,
        "Verified tokens from this issuer accepted a minute on each instance (then 429 slow_down); empty = no limit.",
    ),
    spec(
        "subject_requests_per_minute",
        "Requests per minute per user",
        Format::Number,
        "The same for each user (sub) of this issuer, whatever the client; empty = no limit.",
    ),
    spec("enabled", "Enabled", Format::Bool, ""),
];

const AUDIENCE_FIELDS: &[Spec] = &[
    spec(
        "id",
        "Id",
        Format::Text,
        "Stable name used in clients' audience lists.",
    ),
    spec(
        "issuer",
        "Issuer",
        Format::Text,
        "The audience's issuer identifier, written into aud.",
    ),
    spec(
        "aliases",
        "Aliases",
        Format::List,
        "Other values a client may send as audience (e.g. URNs).",
    ),
    spec(
        "resources",
        "Resources",
        Format::List,
        "Resource indicators (RFC 8707) this audience governs.",
    ),
    spec(
        "scopes",
        "Scopes",
        Format::List,
        "Scopes that may be granted.",
    ),
    spec(
        "authorization_details_types",
        "Authorization details types",
        Format::List,
        "RFC 9396 types a client may ask its grants to carry; others are invalid_authorization_details. Empty = none.",
    ),
    spec(
        "token_type",
        "Issues",
        Format::Select(crate::trust::AUDIENCE_TOKEN_TYPES),
        "id-jag, jwt (identity-chaining grant) or access_token.",
    ),
    spec(
        "lifetime_secs",
        "Lifetime (s)",
        Format::Number,
        "1-3600; empty = the server default.",
    ),
    spec(
        "claims",
        "Claim mappings (CEL)",
        Format::Map,
        "One claim=expression per line; claims sub, aud_sub, email, tenant, aud_tenant.",
    ),
    spec(
        "release",
        "Released claims",
        Format::List,
        "Copied from the subject token: auth_time acr amr sub_id (SAML NameID), email and the other OpenID Connect standard claims (name, given_name, preferred_username, …), groups roles entitlements.",
    ),
    spec(
        "condition",
        "Condition (CEL)",
        Format::OptTextarea,
        "Who may get a grant; false or an error denies.",
    ),
    spec(
        "require_acr",
        "Required acr",
        Format::List,
        "Step-up: at least one of these acr values.",
    ),
    spec(
        "max_auth_age_secs",
        "Max auth age (s)",
        Format::Number,
        "Step-up: the user authenticated within this many seconds.",
    ),
    spec(
        "requests_per_minute",
        "Requests per minute",
        Format::Number,
        "Grants for this audience issued a minute on each instance (then 429 slow_down); empty = no limit.",
    ),
];

const CLIENT_FIELDS: &[Spec] = &[
    spec(
        "client_id",
        "Client id",
        Format::Text,
        "The client's identifier at frontdesk.",
    ),
    spec(
        "auth_method",
        "Authentication",
        Format::Select(crate::trust::CLIENT_AUTH_METHODS),
        "A secret is generated for the client_secret_* methods; none = a public client (code flow only).",
    ),
    spec(
        "jwks",
        "Inline JWKS",
        Format::OptTextarea,
        "private_key_jwt: the client's public keys as a JWK set.",
    ),
    spec(
        "jwks_uri",
        "JWKS URI",
        Format::OptText,
        "private_key_jwt: where the client publishes its keys.",
    ),
    spec(
        "grant_types",
        "Grant types",
        Format::List,
        "Full URNs or short names.",
    ),
    spec(
        "audiences",
        "Audiences",
        Format::List,
        "Audience ids this client may request.",
    ),
    spec(
        "scopes",
        "Scopes",
        Format::List,
        "Empty = whatever the audience allows.",
    ),
    spec(
        "idp_client_ids",
        "Ids at identity providers",
        Format::Map,
        "One idp-id=client-id per line: the aud of its ID tokens at that IdP.",
    ),
    spec(
        "audience_client_ids",
        "Ids at audiences",
        Format::Map,
        "One audience-id=client-id per line: the ID-JAG client_id claim.",
    ),
    spec(
        "audience_tenant_client_ids",
        "Ids at audiences per tenant",
        Format::Map,
        "One audience-id/tenant=client-id per line, where the audience scopes client ids to its tenants (keyed by the grant's tenant claim).",
    ),
    spec(
        "client_name",
        "Name",
        Format::OptText,
        "Shown to users on the consent page.",
    ),
    spec(
        "redirect_uris",
        "Redirect URIs",
        Format::List,
        "authorization_code: exact https (or loopback http) URIs.",
    ),
    spec(
        "requests_per_minute",
        "Requests per minute",
        Format::Number,
        "Token requests allowed a minute on each instance (then 429 slow_down); empty = no limit.",
    ),
    spec(
        "introspect_audiences",
        "May introspect",
        Format::List,
        "aud values (resource identifiers) of other clients' tokens it may introspect, or * for all; its own always.",
    ),
    spec(
        "dpop_bound_access_tokens",
        "Require DPoP",
        Format::Flag,
        "Every token request must carry a DPoP proof (RFC 9449), so all it gets is bound to its key.",
    ),
    spec(
        "require_dpop_nonce",
        "Require DPoP nonces",
        Format::Flag,
        "Its DPoP proofs must echo a nonce frontdesk issued (use_dpop_nonce otherwise); for clients whose libraries retry on it.",
    ),
    spec(
        "enabled",
        "Enabled",
        Format::Bool,
        "Disabled clients are refused with invalid_client.",
    ),
];

fn specs(kind: Kind) -> &'static [Spec] {
    match kind {
        Kind::Idp => IDP_FIELDS,
        Kind::Audience => AUDIENCE_FIELDS,
        Kind::Client => CLIENT_FIELDS,
    }
}

/// One rendered form field.
#[derive(Debug, Clone)]
pub struct Field {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
    options: Vec<(String, bool)>,
    help: &'static str,
    error: Option<String>,
    locked: bool,
}

fn words(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Fields filled from a stored document (or the defaults of a new object).
fn fields_from(kind: Kind, document: &Value, locked_id: bool) -> Vec<Field> {
    specs(kind)
        .iter()
        .map(|spec| {
            let raw = &document[spec.name];
            let (html_kind, value) = match spec.format {
                Format::Text | Format::OptText => ("text", raw.as_str().unwrap_or("").to_string()),
                Format::OptTextarea => ("textarea", raw.as_str().unwrap_or("").to_string()),
                Format::Number => (
                    "text",
                    raw.as_u64().map(|n| n.to_string()).unwrap_or_default(),
                ),
                Format::List => ("text", words(raw).join(" ")),
                Format::Map => (
                    "textarea",
                    raw.as_object()
                        .map(|map| {
                            map.iter()
                                .map(|(key, value)| {
                                    format!("{key}={}", value.as_str().unwrap_or(""))
                                })
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default(),
                ),
                Format::Bool | Format::Flag => (
                    "checkbox",
                    if raw.as_bool().unwrap_or(matches!(spec.format, Format::Bool)) {
                        "on"
                    } else {
                        ""
                    }
                    .to_string(),
                ),
                Format::Select(_) => ("select", raw.as_str().unwrap_or("").to_string()),
            };
            let options = match spec.format {
                Format::Select(values) => values
                    .iter()
                    .map(|option| (option.to_string(), *option == value))
                    .collect(),
                _ => Vec::new(),
            };
            Field {
                name: spec.name,
                label: spec.label,
                kind: html_kind,
                value,
                options,
                help: spec.help,
                error: None,
                locked: locked_id && spec.name == kind.id_field(),
            }
        })
        .collect()
}

/// The defaults a new object starts from (what a config file entry with only ids would get).
fn new_document(kind: Kind) -> Value {
    match kind {
        Kind::Idp => json!({ "algorithms": ["RS256", "ES256"], "token_types": ["id_token"],
                             "subject_mode": "federated", "enabled": true }),
        Kind::Audience => json!({ "token_type": "id-jag" }),
        Kind::Client => json!({ "auth_method": "client_secret_basic",
                                "grant_types": [crate::oauth::GRANT_TOKEN_EXCHANGE], "enabled": true }),
    }
}

/// Turns a submitted form into the JSON document, or field errors.
fn document_from_form(kind: Kind, form: &FormData) -> Result<Value, Vec<(String, String)>> {
    let mut map = Map::new();
    let mut errors = Vec::new();
    for spec in specs(kind) {
        let text = form.get(spec.name);
        match spec.format {
            Format::Text => {
                map.insert(spec.name.into(), Value::String(text.trim().to_string()));
            }
            Format::Select(_) => {
                map.insert(spec.name.into(), Value::String(text.trim().to_string()));
            }
            Format::OptText | Format::OptTextarea => {
                if !text.trim().is_empty() {
                    map.insert(spec.name.into(), Value::String(text.trim().to_string()));
                }
            }
            Format::Number => {
                let text = text.trim();
                if !text.is_empty() {
                    match text.parse::<u64>() {
                        Ok(number) => {
                            map.insert(spec.name.into(), Value::from(number));
                        }
                        Err(_) => errors.push((
                            spec.name.to_string(),
                            "must be a whole number of seconds".to_string(),
                        )),
                    }
                }
            }
            Format::List => {
                let items: Vec<Value> = text
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_string()))
                    .collect();
                map.insert(spec.name.into(), Value::Array(items));
            }
            Format::Map => {
                let mut entries = Map::new();
                for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
                    match line.split_once('=') {
                        Some((key, value)) if !key.trim().is_empty() => {
                            entries.insert(
                                key.trim().to_string(),
                                Value::String(value.trim().to_string()),
                            );
                        }
                        _ => {
                            errors.push((
                                spec.name.to_string(),
                                format!("`{line}` is not key=value"),
                            ));
                            break;
                        }
                    }
                }
                map.insert(spec.name.into(), Value::Object(entries));
            }
            Format::Bool => {
                map.insert(spec.name.into(), Value::Bool(form.checked(spec.name)));
            }
            Format::Flag => {
                if form.checked(spec.name) {
                    map.insert(spec.name.into(), Value::Bool(true));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(map))
    } else {
        Err(errors)
    }
}

/// Which form field a validation key (`claims.sub`, `secret_hash`) belongs to.
fn field_of(kind: Kind, key: &str) -> String {
    let field = key.split(['.', '[']).next().unwrap_or(key);
    let known = specs(kind).iter().any(|spec| spec.name == field);
    match field {
        "secret_hash" => "auth_method".to_string(),
        _ if known => field.to_string(),
        _ => String::new(),
    }
}

/// The top-level key a deserialization error is about (`""` if it cannot tell).
fn field_of_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let first = path.split(['.', '[']).next().unwrap_or("");
    if !first.is_empty() && first != "?" {
        return first.to_string();
    }
    // "missing field `x`" / "unknown field `x`, expected …" are reported at the parent.
    let message = error.inner().to_string();
    message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"))
        .unwrap_or("")
        .to_string()
}

/// Deserializes and validates a document of `kind`, including checks against the other stored
/// objects. Returns (field, message) on the first problem.
async fn validate(state: &AppState, kind: Kind, document: &Value) -> Result<(), (String, String)> {
    let typed = |error: serde_path_to_error::Error<serde_json::Error>| {
        (
            field_of_error(&error),
            format!("invalid {}: {}", kind.singular(), error.inner()),
        )
    };
    let others = |list: Vec<TrustDocument>, id: &str| -> Vec<Value> {
        list.into_iter()
            .filter(|d| d.id != id)
            .map(|d| d.document)
            .collect()
    };
    let load = |kind: TrustKind| {
        let store = state.store.clone();
        async move {
            store
                .list_trust(kind)
                .await
                .map_err(|e| (String::new(), e.to_string()))
        }
    };
    match kind {
        Kind::Idp => {
            let idp: IdentityProviderConfig =
                serde_path_to_error::deserialize(document.clone()).map_err(typed)?;
            crate::trust::validate_identity_provider(&idp)?;
            // As the configuration file (trust::validate_config).
            crate::trust::validate_identity_provider_against(&idp, &state.config.issuer)?;
            // One trust per issuer as URL parsers see it (case, default port, final `/`): the
            // registry would skip the second one (trust::issuer_identity, FED-02).
            let identity = crate::trust::issuer_identity(&idp.issuer);
            for other in others(load(TrustKind::IdentityProvider).await?, &idp.id) {
                if other["issuer"]
                    .as_str()
                    .is_some_and(|issuer| crate::trust::issuer_identity(issuer) == identity)
                {
                    return Err((
                        "issuer".into(),
                        format!(
                            "identity provider `{}` already has this issuer",
                            other["id"].as_str().unwrap_or("?")
                        ),
                    ));
                }
            }
        }
        Kind::Audience => {
            let audience: AudienceConfig =
                serde_path_to_error::deserialize(document.clone()).map_err(typed)?;
            crate::trust::validate_audience(&audience)?;
            if audience.issuer == state.config.issuer && audience.token_type != "access_token" {
                return Err((
                    "issuer".into(),
                    "an audience cannot be this server's own issuer (IDJAG-ISSUE-31)".into(),
                ));
            }
            for other in others(load(TrustKind::Audience).await?, &audience.id) {
                let taken: Vec<String> =
                    std::iter::once(other["issuer"].as_str().unwrap_or("").to_string())
                        .chain(words(&other["aliases"]))
                        .collect();
                for value in std::iter::once(&audience.issuer).chain(&audience.aliases) {
                    if taken.contains(value) {
                        let field = if *value == audience.issuer {
                            "issuer"
                        } else {
                            "aliases"
                        };
                        return Err((
                            field.into(),
                            format!(
                                "`{value}` already names audience `{}`",
                                other["id"].as_str().unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
        }
        Kind::Client => {
            let client: ClientConfig =
                serde_path_to_error::deserialize(document.clone()).map_err(typed)?;
            crate::trust::validate_client(&client)?;
            let audiences = load(TrustKind::Audience).await?;
            for audience in &client.audiences {
                if !audiences.iter().any(|d| &d.id == audience) {
                    return Err((
                        "audiences".into(),
                        format!("no audience has id `{audience}`"),
                    ));
                }
            }
            for audience in client.audience_client_ids.keys() {
                if !audiences.iter().any(|d| &d.id == audience) {
                    return Err((
                        "audience_client_ids".into(),
                        format!("no audience has id `{audience}`"),
                    ));
                }
            }
            let idps = load(TrustKind::IdentityProvider).await?;
            for idp in client.idp_client_ids.keys() {
                if !idps.iter().any(|d| &d.id == idp) {
                    return Err((
                        "idp_client_ids".into(),
                        format!("no identity provider has id `{idp}`"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A document without secret material, for the audit log.
fn redacted(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(map) = document.as_object_mut() {
        for key in ["secret_hash", "registration_access_token_hash"] {
            if map.contains_key(key) {
                map.insert(key.into(), Value::String("[redacted]".into()));
            }
        }
    }
    document
}

fn audit_event(
    state: &AppState,
    actor: &str,
    kind: Kind,
    action: &str,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> AuditEvent {
    let mut event = AuditEvent::new(
        now_of(state),
        &format!("{}_{action}", kind.event()),
        Decision::Changed,
    );
    match kind {
        Kind::Client => event.client_id = Some(id.to_string()),
        Kind::Audience => {
            event.audience = after
                .or(before)
                .and_then(|d| d["issuer"].as_str())
                .map(str::to_string);
        }
        Kind::Idp => {
            event.subject_issuer = after
                .or(before)
                .and_then(|d| d["issuer"].as_str())
                .map(str::to_string);
        }
    }
    event.detail = Some(AuditDetail::of(&json!({
        "actor": actor,
        "id": id,
        "before": before.map(redacted),
        "after": after.map(redacted),
    })));
    event
}

pub(super) async fn find(
    state: &AppState,
    kind: Kind,
    id: &str,
) -> Result<TrustDocument, AdminError> {
    state
        .store
        .list_trust(kind.trust())
        .await?
        .into_iter()
        .find(|document| document.id == id)
        .ok_or(AdminError::NotFound)
}

fn refuse_managed(kind: Kind, document: &TrustDocument) -> Result<(), AdminError> {
    if document.managed_by_config {
        Err(AdminError::Forbidden(format!(
            "The {} `{}` is managed by the configuration file: change it there.",
            kind.singular(),
            document.id
        )))
    } else {
        Ok(())
    }
}

/// Applies a change and its audit event atomically, then makes it take effect at once.
async fn apply(
    state: &AppState,
    kind: Kind,
    change: TrustChange<'_>,
    event: &AuditEvent,
) -> Result<bool, StoreError> {
    let changed = state
        .store
        .apply_trust_change(kind.trust(), change, event)
        .await?;
    if changed {
        state.tokens.trust.reload().await?;
    }
    Ok(changed)
}

#[derive(Template)]
#[template(path = "admin/trust_list.html")]
struct ListPage {
    layout: Layout,
    notice: Option<String>,
    intro: &'static str,
    path: &'static str,
    singular: &'static str,
    columns: Vec<&'static str>,
    rows: Vec<Row>,
}

struct Row {
    id: String,
    cells: Vec<String>,
    managed: bool,
}

/// A button under the form that posts somewhere (delete, rotate, test…).
struct Action {
    url: String,
    label: &'static str,
    class: &'static str,
    id: &'static str,
}

/// The outcome of "test connection".
pub struct TestResult {
    pub(super) ok: bool,
    pub(super) lines: Vec<String>,
    pub(super) keys: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "admin/trust_form.html")]
struct FormPage {
    layout: Layout,
    notice: Option<String>,
    singular: &'static str,
    managed: bool,
    readonly: bool,
    form_error: Option<String>,
    action: String,
    submit: &'static str,
    fields: Vec<Field>,
    actions: Vec<Action>,
    test: Option<TestResult>,
}

#[derive(Template)]
#[template(path = "admin/secret.html")]
struct SecretPage {
    layout: Layout,
    client_id: String,
    secret: String,
}

fn notice_text(code: &str) -> Option<String> {
    Some(
        match code {
            "created" => "Created. It is in effect now.",
            "saved" => "Saved. The change is in effect now.",
            "deleted" => "Deleted.",
            "enabled" => "Enabled.",
            "disabled" => "Disabled.",
            _ => return None,
        }
        .to_string(),
    )
}

/// Query of list and edit pages: an optional notice code after a redirect.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

async fn list(
    state: AppState,
    session: Session,
    kind: Kind,
    query: NoticeQuery,
) -> Result<Response, AdminError> {
    let rows = state
        .store
        .list_trust(kind.trust())
        .await?
        .into_iter()
        .map(|document| Row {
            cells: kind.cells(&document.document),
            id: document.id,
            managed: document.managed_by_config,
        })
        .collect();
    Ok(render(&ListPage {
        layout: Layout::new(kind.title(), kind.path(), &session),
        notice: notice_text(&query.notice),
        intro: kind.intro(),
        path: kind.path(),
        singular: kind.singular(),
        columns: kind.columns(),
        rows,
    }))
}

fn form_page(
    session: &Session,
    kind: Kind,
    id: Option<&str>,
    fields: Vec<Field>,
    managed: bool,
    document: Option<&Value>,
) -> FormPage {
    let (title, action, submit) = match id {
        Some(id) => (
            format!("{} {id}", capitalize(kind.singular())),
            format!("{}/admin/{}/{}", session.base_path, kind.path(), encode(id)),
            "Save",
        ),
        None => (
            format!("New {}", kind.singular()),
            format!("{}/admin/{}", session.base_path, kind.path()),
            "Create",
        ),
    };
    let mut actions = Vec::new();
    if let Some(id) = id {
        let base = format!("{}/admin/{}/{}", session.base_path, kind.path(), encode(id));
        if kind == Kind::Idp {
            actions.push(Action {
                url: format!("{base}/test"),
                label: "Test connection",
                class: "secondary",
                id: "test-connection",
            });
        }
        if session.can_change() && !managed {
            if kind == Kind::Client {
                let method = document
                    .and_then(|d| d["auth_method"].as_str())
                    .unwrap_or("");
                if method.starts_with("client_secret") {
                    actions.push(Action {
                        url: format!("{base}/rotate-secret"),
                        label: "Rotate secret",
                        class: "secondary",
                        id: "rotate-secret",
                    });
                }
                let enabled = document
                    .and_then(|d| d["enabled"].as_bool())
                    .unwrap_or(true);
                if enabled {
                    actions.push(Action {
                        url: format!("{base}/disable"),
                        label: "Disable",
                        class: "secondary",
                        id: "disable",
                    });
                } else {
                    actions.push(Action {
                        url: format!("{base}/enable"),
                        label: "Enable",
                        class: "secondary",
                        id: "enable",
                    });
                }
            }
            actions.push(Action {
                url: format!("{base}/delete"),
                label: "Delete",
                class: "danger",
                id: "delete",
            });
        }
    }
    FormPage {
        layout: Layout::new(title, kind.path(), session),
        notice: None,
        singular: kind.singular(),
        managed,
        readonly: managed || !session.can_change(),
        form_error: None,
        action,
        submit,
        fields,
        actions,
        test: None,
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn encode(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn new_form(session: Session, kind: Kind) -> Result<Response, AdminError> {
    if !session.can_change() {
        return Err(AdminError::Forbidden(
            "Your role is auditor: you can read everything but change nothing.".into(),
        ));
    }
    Ok(render(&form_page(
        &session,
        kind,
        None,
        fields_from(kind, &new_document(kind), false),
        false,
        None,
    )))
}

async fn edit_form(
    state: AppState,
    session: Session,
    kind: Kind,
    id: String,
    query: NoticeQuery,
) -> Result<Response, AdminError> {
    let document = find(&state, kind, &id).await?;
    let mut page = form_page(
        &session,
        kind,
        Some(&id),
        fields_from(kind, &document.document, true),
        document.managed_by_config,
        Some(&document.document),
    );
    page.notice = notice_text(&query.notice);
    Ok(render(&page))
}

/// Re-renders the submitted form with the error next to its field; nothing was saved.
fn invalid_form(
    session: &Session,
    kind: Kind,
    id: Option<&str>,
    form: &FormData,
    errors: Vec<(String, String)>,
) -> Response {
    let mut fields = fields_from(kind, &json!({}), id.is_some());
    for field in &mut fields {
        field.value = match field.kind {
            "checkbox" => {
                if form.checked(field.name) {
                    "on".into()
                } else {
                    String::new()
                }
            }
            _ => form.get(field.name).to_string(),
        };
        if let Some(id) = id.filter(|_| field.locked) {
            field.value = id.to_string();
        }
        for option in &mut field.options {
            option.1 = option.0 == field.value;
        }
    }
    let mut form_error = None;
    for (key, message) in errors {
        let name = field_of(kind, &key);
        match fields.iter_mut().find(|field| field.name == name) {
            Some(field) => {
                field.error = Some(if key.contains('.') {
                    format!("{key}: {message}")
                } else {
                    message
                })
            }
            None => form_error = Some(message),
        }
    }
    let mut page = form_page(session, kind, id, fields, false, None);
    page.actions.clear();
    page.form_error =
        form_error.or_else(|| Some("Nothing was saved: fix the fields marked below.".into()));
    render_with_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// Why a change through the page or the API was refused.
#[derive(Debug)]
pub(super) enum ChangeError {
    /// The document is invalid: (field, message) pairs; the field may be empty.
    Invalid(Vec<(String, String)>),
    /// The id is taken: (field, message).
    Conflict(String, String),
    /// No such object.
    NotFound,
    /// The object is managed by the configuration file (message says so).
    Managed(String),
    /// The operation does not apply to this object (e.g. rotating a private_key_jwt secret).
    NotApplicable(String),
    /// Anything else (database, hashing).
    Internal(String),
}

impl From<StoreError> for ChangeError {
    fn from(error: StoreError) -> Self {
        ChangeError::Internal(error.to_string())
    }
}

impl From<AdminError> for ChangeError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound => ChangeError::NotFound,
            AdminError::Forbidden(message) => ChangeError::Managed(message),
            AdminError::BadRequest(message) => ChangeError::NotApplicable(message),
            other => ChangeError::Internal(format!("{other:?}")),
        }
    }
}

impl From<ChangeError> for AdminError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::NotFound => AdminError::NotFound,
            ChangeError::Managed(message) => AdminError::Forbidden(message),
            ChangeError::NotApplicable(message) => AdminError::BadRequest(message),
            ChangeError::Invalid(errors) => AdminError::BadRequest(
                errors
                    .into_iter()
                    .map(|(_, message)| message)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ChangeError::Conflict(_, message) => AdminError::BadRequest(message),
            ChangeError::Internal(detail) => AdminError::Internal(detail),
        }
    }
}

fn uses_secret(document: &Value) -> bool {
    document["auth_method"]
        .as_str()
        .is_some_and(|m| m.starts_with("client_secret"))
}

/// Creates an object from its JSON document (the config file's shape), generating a client
/// secret for the client_secret_* methods; validates it like the config file, stores it with
/// its audit event (actor `actor`) and reloads trust. Returns the new secret, shown once.
/// Shared by the page and the JSON API.
pub(super) async fn create_object(
    state: &AppState,
    actor: &str,
    kind: Kind,
    mut document: Value,
) -> Result<Option<String>, ChangeError> {
    let id = document[kind.id_field()].as_str().unwrap_or("").to_string();
    let secret = (kind == Kind::Client && uses_secret(&document)).then(random_token);
    if let Some(map) = document.as_object_mut() {
        map.remove("secret_hash");
    }
    if let Some(secret) = &secret {
        document["secret_hash"] = Value::String(hash(secret).await?);
    }
    validate(state, kind, &document)
        .await
        .map_err(|error| ChangeError::Invalid(vec![error]))?;
    let stored = TrustDocument {
        id: id.clone(),
        document: document.clone(),
        managed_by_config: false,
        updated_at: now_of(state),
    };
    let event = audit_event(state, actor, kind, "created", &id, None, Some(&document));
    match apply(state, kind, TrustChange::Create(&stored), &event).await {
        Ok(_) => Ok(secret),
        Err(StoreError::Conflict) => Err(ChangeError::Conflict(
            kind.id_field().into(),
            format!("a {} with this id already exists", kind.singular()),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Stores a client that registered itself at `POST /register` (RFC 7591) through the same
/// validation, storage, audit and trust reload as a client an administrator creates, so it is
/// listed (as self-registered) and managed on the admin page like any other. Returns the new
/// secret for a confidential client, or why the document was refused.
pub(crate) async fn create_registered_client(
    state: &AppState,
    document: Value,
) -> Result<Option<String>, RegisterError> {
    create_object(state, "dcr", Kind::Client, document)
        .await
        .map_err(register_error)
}

/// Replaces a self-registered client's registration with `document` (RFC 7592 §2.2), through
/// the administrator's update path: validated, audited (actor `dcr`), trust reloaded. What only
/// an administrator decides is kept from `existing`: whether the client is enabled, its
/// audiences, its client ids at identity providers and audiences, its request limit and what it
/// may introspect; so are its secret (a new one is made if it moves to a secret method without
/// one, and returned) and its registration access token. A client required to use DPoP stays
/// required: it may ask for the requirement, never drop it, since an administrator may have set
/// it. Returns the new secret, if one was made, and the document as stored, for the answer.
pub(crate) async fn update_registered_client(
    state: &AppState,
    existing: &TrustDocument,
    mut document: Value,
) -> Result<(Option<String>, Value), RegisterError> {
    for key in [
        "enabled",
        "audiences",
        "idp_client_ids",
        "audience_client_ids",
        "audience_tenant_client_ids",
        "requests_per_minute",
        "require_dpop_nonce",
        "introspect_audiences",
        "registration_access_token_hash",
    ] {
        match existing.document.get(key) {
            Some(value) => document[key] = value.clone(),
            None => {
                if let Some(map) = document.as_object_mut() {
                    map.remove(key);
                }
            }
        }
    }
    if existing.document["dpop_bound_access_tokens"] == Value::Bool(true) {
        document["dpop_bound_access_tokens"] = Value::Bool(true);
    }
    refuse_widening(&existing.document, &document)?;
    let secret = update_object(state, "dcr", Kind::Client, existing, document.clone())
        .await
        .map_err(register_error)?;
    Ok((secret, document))
}

/// Deletes a self-registered client at its own request (RFC 7592 §2.3), audited (actor `dcr`).
pub(crate) async fn delete_registered_client(
    state: &AppState,
    id: &str,
) -> Result<(), RegisterError> {
    delete_object(state, "dcr", Kind::Client, id)
        .await
        .map_err(register_error)
}

/// The stored document of client `id`, for an update or delete of its registration.
pub(crate) async fn registered_client(
    state: &AppState,
    id: &str,
) -> Result<TrustDocument, RegisterError> {
    editable(state, Kind::Client, id)
        .await
        .map_err(register_error)
}

/// A self-registered client may narrow its grant types and scopes, never widen them past what
/// is registered now: an administrator may have narrowed them, and the client's own update must
/// not undo that. (Empty `scopes` means "whatever the audience allows", the widest.) A client
/// that needs more registers again, under the registration rules.
fn refuse_widening(existing: &Value, document: &Value) -> Result<(), RegisterError> {
    let strings = |document: &Value, key: &str| -> Vec<String> {
        document[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let was = strings(existing, "grant_types");
    let grants = strings(document, "grant_types");
    if let Some(added) = grants.iter().find(|grant| {
        crate::oauth::GrantType::parse(grant).is_none_or(|parsed| {
            !was.iter()
                .any(|old| crate::oauth::GrantType::parse(old) == Some(parsed))
        })
    }) {
        return Err(RegisterError::Invalid(format!(
            "grant_types: `{added}` is not in the current registration; an update may only remove grant types (register again for more)"
        )));
    }
    let was = strings(existing, "scopes");
    if !was.is_empty() {
        let scopes = strings(document, "scopes");
        if scopes.is_empty() {
            return Err(RegisterError::Invalid(
                "scope: the registration is limited to some scopes; an update must name them (or fewer)"
                    .into(),
            ));
        }
        if let Some(added) = scopes.iter().find(|scope| !was.contains(scope)) {
            return Err(RegisterError::Invalid(format!(
                "scope: `{added}` is not in the current registration; an update may only remove scopes"
            )));
        }
    }
    Ok(())
}

fn register_error(error: ChangeError) -> RegisterError {
    match error {
        ChangeError::Invalid(errors) => RegisterError::Invalid(
            errors
                .into_iter()
                .map(|(field, message)| {
                    if field.is_empty() {
                        message
                    } else {
                        format!("{field}: {message}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ChangeError::Conflict(_, message) | ChangeError::Managed(message) => {
            RegisterError::Invalid(message)
        }
        ChangeError::NotFound => RegisterError::NotFound,
        ChangeError::NotApplicable(detail) | ChangeError::Internal(detail) => {
            tracing::error!(%detail, "storing a registered client failed");
            RegisterError::Internal
        }
    }
}

/// Why a self-registered client was not stored.
#[derive(Debug)]
pub(crate) enum RegisterError {
    /// The metadata failed validation (the message says which field and why).
    Invalid(String),
    /// The client is gone (deleted meanwhile).
    NotFound,
    /// The database or hashing failed; logged, not shown.
    Internal,
}

/// The stored object `id` of `kind`, if it may be changed here (not config-managed).
pub(super) async fn editable(
    state: &AppState,
    kind: Kind,
    id: &str,
) -> Result<TrustDocument, ChangeError> {
    let existing = find(state, kind, id).await?;
    refuse_managed(kind, &existing)?;
    Ok(existing)
}

/// Replaces `existing` with `document` (its id is kept; a client keeps its secret hash, or
/// gets a new secret if it switches to a secret method without one). Returns that new secret.
pub(super) async fn update_object(
    state: &AppState,
    actor: &str,
    kind: Kind,
    existing: &TrustDocument,
    mut document: Value,
) -> Result<Option<String>, ChangeError> {
    document[kind.id_field()] = Value::String(existing.id.clone());
    let mut secret = None;
    if kind == Kind::Client {
        if let Some(map) = document.as_object_mut() {
            map.remove("secret_hash");
            // Not on the form: where a self-registered client came from, and what it declared.
            for key in [
                "source",
                "authorization_grant_profiles_supported",
                "registration_access_token_hash",
            ] {
                if let Some(value) = existing.document.get(key)
                    && !map.contains_key(key)
                {
                    map.insert(key.to_string(), value.clone());
                }
            }
        }
        // Whether a client registered itself is a fact, not a setting (the configuration
        // file refuses `source` too): an update keeps it.
        if document
            .get("source")
            .is_some_and(|source| Some(source) != existing.document.get("source"))
        {
            return Err(ChangeError::Invalid(vec![(
                "source".into(),
                "set only for self-registered and metadata-document clients; it cannot be changed"
                    .into(),
            )]));
        }
        let secret_method = uses_secret(&document);
        match existing
            .document
            .get("secret_hash")
            .filter(|hash| hash.is_string())
        {
            Some(hash) if secret_method => document["secret_hash"] = hash.clone(),
            None if secret_method => {
                let new_secret = random_token();
                document["secret_hash"] = Value::String(hash(&new_secret).await?);
                secret = Some(new_secret);
            }
            _ => {}
        }
    }
    validate(state, kind, &document)
        .await
        .map_err(|error| ChangeError::Invalid(vec![error]))?;
    save(state, actor, kind, existing, document, "updated").await?;
    Ok(secret)
}

/// Deletes the database-managed object `id`.
pub(super) async fn delete_object(
    state: &AppState,
    actor: &str,
    kind: Kind,
    id: &str,
) -> Result<(), ChangeError> {
    let existing = editable(state, kind, id).await?;
    let event = audit_event(
        state,
        actor,
        kind,
        "deleted",
        id,
        Some(&existing.document),
        None,
    );
    if !apply(state, kind, TrustChange::Delete(id), &event).await? {
        return Err(ChangeError::NotFound);
    }
    Ok(())
}

/// Enables or disables client `id`.
pub(super) async fn set_client_enabled(
    state: &AppState,
    actor: &str,
    id: &str,
    enabled: bool,
) -> Result<(), ChangeError> {
    let existing = editable(state, Kind::Client, id).await?;
    let mut document = existing.document.clone();
    document["enabled"] = Value::Bool(enabled);
    let action = if enabled { "enabled" } else { "disabled" };
    save(state, actor, Kind::Client, &existing, document, action).await
}

/// Gives client `id` a new random secret and returns it (shown once).
pub(super) async fn rotate_client_secret(
    state: &AppState,
    actor: &str,
    id: &str,
) -> Result<String, ChangeError> {
    let existing = editable(state, Kind::Client, id).await?;
    if !uses_secret(&existing.document) {
        return Err(ChangeError::NotApplicable(
            "This client authenticates with private_key_jwt: it has no secret.".into(),
        ));
    }
    let secret = random_token();
    let mut document = existing.document.clone();
    document["secret_hash"] = Value::String(hash(&secret).await?);
    save(
        state,
        actor,
        Kind::Client,
        &existing,
        document,
        "secret_rotated",
    )
    .await?;
    // The verified-secret cache is keyed by the stored hash, so the old secret stops working
    // as soon as the registry is reloaded.
    Ok(secret)
}

/// "Test connection" of identity provider `id`.
pub(super) async fn test_identity_provider(
    state: &AppState,
    id: &str,
) -> Result<(TrustDocument, TestResult), ChangeError> {
    let document = find(state, Kind::Idp, id).await?;
    let idp: IdentityProviderConfig = serde_json::from_value(document.document.clone())
        .map_err(|error| ChangeError::Internal(error.to_string()))?;
    let test = probe(&state.admin.http, &idp).await;
    Ok((document, test))
}

fn secret_page(session: &Session, kind: Kind, client_id: String, secret: String) -> Response {
    render(&SecretPage {
        layout: Layout::new("Client secret", kind.path(), session),
        client_id,
        secret,
    })
}

async fn create(
    state: AppState,
    session: Session,
    kind: Kind,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let document = match document_from_form(kind, &form) {
        Ok(document) => document,
        Err(errors) => return Ok(invalid_form(&session, kind, None, &form, errors)),
    };
    let id = document[kind.id_field()].as_str().unwrap_or("").to_string();
    match create_object(&state, &session.username, kind, document).await {
        Ok(Some(secret)) => Ok(secret_page(&session, kind, id, secret)),
        Ok(None) => Ok(Redirect::to(&format!(
            "{}/admin/{}/{}?notice=created",
            session.base_path,
            kind.path(),
            encode(&id)
        ))
        .into_response()),
        Err(ChangeError::Invalid(errors)) => Ok(invalid_form(&session, kind, None, &form, errors)),
        Err(ChangeError::Conflict(field, message)) => Ok(invalid_form(
            &session,
            kind,
            None,
            &form,
            vec![(field, message)],
        )),
        Err(error) => Err(error.into()),
    }
}

async fn hash(secret: &str) -> Result<String, ChangeError> {
    let secret = secret.to_string();
    tokio::task::spawn_blocking(move || crate::secret::hash_secret(&secret))
        .await
        .map_err(|error| ChangeError::Internal(error.to_string()))?
        .map_err(ChangeError::Internal)
}

async fn update(
    state: AppState,
    session: Session,
    kind: Kind,
    id: String,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let existing = editable(&state, kind, &id).await?;
    let document = match document_from_form(kind, &form) {
        Ok(document) => document,
        Err(errors) => return Ok(invalid_form(&session, kind, Some(&id), &form, errors)),
    };
    match update_object(&state, &session.username, kind, &existing, document).await {
        Ok(Some(secret)) => Ok(secret_page(&session, kind, id, secret)),
        Ok(None) => Ok(Redirect::to(&format!(
            "{}/admin/{}/{}?notice=saved",
            session.base_path,
            kind.path(),
            encode(&id)
        ))
        .into_response()),
        Err(ChangeError::Invalid(errors)) => {
            Ok(invalid_form(&session, kind, Some(&id), &form, errors))
        }
        Err(error) => Err(error.into()),
    }
}

async fn save(
    state: &AppState,
    actor: &str,
    kind: Kind,
    existing: &TrustDocument,
    document: Value,
    action: &str,
) -> Result<(), ChangeError> {
    let stored = TrustDocument {
        id: existing.id.clone(),
        document,
        managed_by_config: false,
        updated_at: now_of(state).max(existing.updated_at + 1),
    };
    let event = audit_event(
        state,
        actor,
        kind,
        action,
        &existing.id,
        Some(&existing.document),
        Some(&stored.document),
    );
    if apply(state, kind, TrustChange::Update(&stored), &event).await? {
        Ok(())
    } else {
        Err(ChangeError::NotFound)
    }
}

async fn delete(
    state: AppState,
    session: Session,
    kind: Kind,
    id: String,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    delete_object(&state, &session.username, kind, &id).await?;
    Ok(Redirect::to(&format!(
        "{}/admin/{}?notice=deleted",
        session.base_path,
        kind.path()
    ))
    .into_response())
}

async fn client_toggle(
    state: AppState,
    session: Session,
    id: String,
    form: FormData,
    enabled: bool,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    set_client_enabled(&state, &session.username, &id, enabled).await?;
    let action = if enabled { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!(
        "{}/admin/clients/{}?notice={action}",
        session.base_path,
        encode(&id)
    ))
    .into_response())
}

async fn rotate_secret(
    state: AppState,
    session: Session,
    id: String,
    form: FormData,
) -> Result<Response, AdminError> {
    session.authorize_change(&form)?;
    let secret = rotate_client_secret(&state, &session.username, &id).await?;
    Ok(secret_page(&session, Kind::Client, id, secret))
}

/// `POST /admin/identity-providers/{id}/test`: fetches the issuer's discovery document and
/// JWKS (or parses the inline JWKS) and shows what was found or why it failed. Read-only, so
/// auditors may use it too; still a CSRF-checked POST because it makes outbound requests.
async fn test_connection(
    state: AppState,
    session: Session,
    id: String,
    form: FormData,
) -> Result<Response, AdminError> {
    session.check_csrf(&form)?;
    let (document, test) = test_identity_provider(&state, &id).await?;
    let mut page = form_page(
        &session,
        Kind::Idp,
        Some(&id),
        fields_from(Kind::Idp, &document.document, true),
        document.managed_by_config,
        Some(&document.document),
    );
    page.test = Some(test);
    Ok(render(&page))
}

fn fetchable(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(format!(
            "`{url}` must be https (http only on a loopback address)"
        ))
    }
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    fetchable(url)?;
    let response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|error| format!("GET {url} failed: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered HTTP {status}"));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|error| format!("reading {url} failed: {error}"))?;
    if bytes.len() > 512 * 1024 {
        return Err(format!("{url} returned more than 512 KiB"));
    }
    serde_json::from_slice(&bytes).map_err(|error| format!("{url} is not JSON: {error}"))
}

async fn probe(http: &reqwest::Client, idp: &IdentityProviderConfig) -> TestResult {
    let mut lines = Vec::new();
    let fail = |mut lines: Vec<String>, message: String| {
        lines.push(message);
        TestResult {
            ok: false,
            lines,
            keys: Vec::new(),
        }
    };
    if let Some(pem) = &idp.saml_certificates {
        match crate::saml::SamlKeys::from_pem(pem) {
            Ok(keys) => lines.push(format!(
                "SAML 2.0: assertions are verified with {} pinned certificate(s); nothing is fetched for them.",
                keys.certificates()
            )),
            Err(error) => {
                return fail(lines, format!("The SAML certificates do not parse: {error}"));
            }
        }
    }
    if let Some(url) = &idp.saml_metadata_url {
        match crate::saml::metadata::fetch_keys(http, url, &idp.issuer).await {
            Ok(keys) => lines.push(format!(
                "SAML metadata: {url} publishes {} signing certificate(s) for `{}`.",
                keys.certificates(),
                idp.issuer
            )),
            Err(error) => return fail(lines, format!("SAML metadata: {error}")),
        }
    }
    if idp.token_types.iter().all(|t| t == "saml2") {
        return TestResult {
            ok: true,
            lines,
            keys: Vec::new(),
        };
    }
    let jwks = if let Some(inline) = &idp.jwks {
        lines.push("Keys: inline JWKS (no request made).".into());
        match serde_json::from_str::<Value>(inline) {
            Ok(value) => value,
            Err(error) => return fail(lines, format!("The inline JWKS is not JSON: {error}")),
        }
    } else {
        let jwks_uri = if let Some(uri) = &idp.jwks_uri {
            lines.push(format!("JWKS URI (configured): {uri}"));
            uri.clone()
        } else {
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                idp.issuer.trim_end_matches('/')
            );
            let metadata = match fetch_json(http, &discovery).await {
                Ok(metadata) => metadata,
                Err(error) => return fail(lines, error),
            };
            lines.push(format!("Discovery document: {discovery}"));
            let issuer = metadata["issuer"].as_str().unwrap_or("");
            if issuer != idp.issuer {
                return fail(
                    lines,
                    format!(
                        "The discovery document names issuer `{issuer}`, not `{}` (they must match exactly).",
                        idp.issuer
                    ),
                );
            }
            lines.push(format!("Issuer: {issuer} (matches)"));
            let Some(uri) = metadata["jwks_uri"].as_str() else {
                return fail(lines, "The discovery document has no jwks_uri.".into());
            };
            lines.push(format!("JWKS URI (discovered): {uri}"));
            uri.to_string()
        };
        match fetch_json(http, &jwks_uri).await {
            Ok(jwks) => jwks,
            Err(error) => return fail(lines, error),
        }
    };
    if let Err(error) = serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.clone()) {
        return fail(lines, format!("Not a JWK set: {error}"));
    }
    let keys: Vec<(String, String, String)> = jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|key| {
                    let text = |name: &str| key[name].as_str().unwrap_or("—").to_string();
                    (text("kid"), text("alg"), text("kty"))
                })
                .collect()
        })
        .unwrap_or_default();
    if keys.is_empty() {
        return fail(lines, "The JWK set has no keys.".into());
    }
    lines.push(format!("{} key(s) found.", keys.len()));
    TestResult {
        ok: true,
        lines,
        keys,
    }
}

macro_rules! kind_routes {
    ($router:expr, $kind:expr) => {{
        let kind: Kind = $kind;
        let base = format!("/admin/{}", kind.path());
        $router
            .route(
                &base,
                get(move |State(state): State<AppState>, session: Session, axum::extract::Query(query): axum::extract::Query<NoticeQuery>| list(state, session, kind, query))
                    .post(move |State(state): State<AppState>, session: Session, form: FormData| create(state, session, kind, form)),
            )
            .route(&format!("{base}/new"), get(move |session: Session| new_form(session, kind)))
            .route(
                &format!("{base}/{{id}}"),
                get(move |State(state): State<AppState>, session: Session, Path(id): Path<String>, axum::extract::Query(query): axum::extract::Query<NoticeQuery>| edit_form(state, session, kind, id, query))
                    .post(move |State(state): State<AppState>, session: Session, Path(id): Path<String>, form: FormData| update(state, session, kind, id, form)),
            )
            .route(
                &format!("{base}/{{id}}/delete"),
                post(move |State(state): State<AppState>, session: Session, Path(id): Path<String>, form: FormData| delete(state, session, kind, id, form)),
            )
    }};
}

/// The routes of the three trust pages.
pub fn routes() -> Router<AppState> {
    let router = Router::new();
    let router = kind_routes!(router, Kind::Idp);
    let router = kind_routes!(router, Kind::Audience);
    let router = kind_routes!(router, Kind::Client);
    router
        .route(
            "/admin/identity-providers/{id}/test",
            post(
                |State(state): State<AppState>,
                 session: Session,
                 Path(id): Path<String>,
                 form: FormData| test_connection(state, session, id, form),
            ),
        )
        .route(
            "/admin/clients/{id}/rotate-secret",
            post(
                |State(state): State<AppState>,
                 session: Session,
                 Path(id): Path<String>,
                 form: FormData| rotate_secret(state, session, id, form),
            ),
        )
        .route(
            "/admin/clients/{id}/enable",
            post(
                |State(state): State<AppState>,
                 session: Session,
                 Path(id): Path<String>,
                 form: FormData| client_toggle(state, session, id, form, true),
            ),
        )
        .route(
            "/admin/clients/{id}/disable",
            post(
                |State(state): State<AppState>,
                 session: Session,
                 Path(id): Path<String>,
                 form: FormData| client_toggle(state, session, id, form, false),
            ),
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn saml_idp(certificates: &str) -> IdentityProviderConfig {
        let mut idp: IdentityProviderConfig = serde_json::from_value(serde_json::json!({
            "id": "okta-saml",
            // Nothing answers here: a SAML-only test connection must not try.
            "issuer": "http://127.0.0.1:9/exk1",
            "token_types": ["saml2"],
        }))
        .unwrap();
        idp.saml_certificates = Some(certificates.to_string());
        idp
    }

    #[tokio::test]
    async fn test_connection_of_a_saml_identity_provider_checks_its_certificates_offline() {
        let http = reqwest::Client::new();
        let certificate = include_str!("../../tests/fixtures/saml/idp.crt");
        let result = probe(&http, &saml_idp(certificate)).await;
        assert!(result.ok, "{:?}", result.lines);
        assert_eq!(
            result.lines,
            vec![
                "SAML 2.0: assertions are verified with 1 pinned certificate(s); nothing is fetched for them."
                    .to_string()
            ]
        );
        let broken = probe(&http, &saml_idp("-----BEGIN CERTIFICATE-----\nAAAA")).await;
        assert!(!broken.ok);
        assert!(broken.lines[0].starts_with("The SAML certificates do not parse"));
    }
}
