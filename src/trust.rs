//! Trust configuration: identity providers (inbound), audiences (outbound) and clients, as
//! declared in the config file or created through the admin page. This module validates them
//! (one path for every source) and loads the config-declared ones into the database, where they
//! are marked "managed by config".

use std::collections::BTreeSet;

use crate::config::{AudienceConfig, ClientConfig, Config, IdentityProviderConfig};
use crate::store::{StoreError, TrustDocument, TrustKind, TrustStore};

/// Subject token types an identity provider may be trusted for.
/// `id_jag` and `jwt_grant` are accepted as jwt-bearer assertions (leg 2); the others as
/// subject tokens (leg 1).
pub const IDP_TOKEN_TYPES: &[&str] = &[
    "id_token",
    "jwt",
    "access_token",
    "saml2",
    "id_jag",
    "jwt_grant",
];
/// The token types of leg 1's subject tokens: what makes a provider's users reach audiences.
pub const SUBJECT_TOKEN_TYPES: &[&str] = &["id_token", "jwt", "access_token", "saml2"];
/// The token types of leg 2's assertions: what makes an issuer's users reach our resources.
pub const ASSERTION_TOKEN_TYPES: &[&str] = &["id_jag", "jwt_grant"];
/// How leg 2 resolves an assertion's subject.
pub const SUBJECT_MODES: &[&str] = &["federated", "mapped", "linked"];
/// Signature algorithms an identity provider may be trusted for: asymmetric only (BCP-02, BCP-03).
pub const IDP_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// What an audience may be issued.
pub const AUDIENCE_TOKEN_TYPES: &[&str] = &["id-jag", "jwt", "access_token"];
/// Client authentication methods: three for confidential clients, and `none` for public
/// clients (RFC 7591 §2), which prove nothing at the token endpoint and therefore get only the
/// grants whose security rests on PKCE and the user's consent.
pub const CLIENT_AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
/// The grants a public client may use: token exchange and jwt-bearer turn a token into a new
/// grant for another party and need a client that can authenticate (CMETA-04, IDJAG §9.1).
pub const PUBLIC_CLIENT_GRANTS: &[crate::oauth::GrantType] = &[
    crate::oauth::GrantType::AuthorizationCode,
    crate::oauth::GrantType::RefreshToken,
];
/// Longest accepted `client_name`.
pub const MAX_CLIENT_NAME_CHARS: usize = 100;
/// The longest `saml_max_lifetime_secs` an identity provider may set: a day. An assertion is a
/// sign-in artefact; its ID is kept in the replay records for as long as it is accepted.
pub const MAX_SAML_LIFETIME_SECS: u64 = 86_400;

/// The longest `lifetime_secs` an audience may set. The key policy counts on it: an audience
/// added at run time may use all of it, so retired keys stay published at least this long.
pub const MAX_AUDIENCE_LIFETIME_SECS: u64 = 3600;
/// Claims an audience may derive by CEL mapping.
pub const MAPPABLE_CLAIMS: &[&str] = &["sub", "aud_sub", "email", "tenant", "aud_tenant"];
/// Subject-token claims an audience may release: the authentication context, `sub_id` (a SAML
/// NameID), the OpenID Connect standard claims (OIDC Core §5.1), which the ID-JAG draft lets an
/// IdP add for a resource AS that provisions users (IDJAG-JWT-16, IDJAG-JWT-19), and the
/// `groups`, `roles` and `entitlements` a resource AS may authorize on (RFC 9068 §2.2.3.1,
/// which it transcribes with `transcribe_claims`). Nothing else: a
/// claim outside this list could be a registered JWT claim (`iss`, `cnf`, …) or one with a
/// meaning at the resource AS that the subject token's issuer did not intend.
pub const RELEASABLE_CLAIMS: &[&str] = &[
    "auth_time",
    "acr",
    "amr",
    "sub_id",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "groups",
    "roles",
    "entitlements",
];

type Invalid = (String, String);

fn invalid<T>(key: String, message: impl Into<String>) -> Result<T, Invalid> {
    Err((key, message.into()))
}

/// Validates every trust object of the configuration; returns the offending key and why.
pub fn validate_config(config: &Config) -> Result<(), Invalid> {
    let mut seen = BTreeSet::new();
    for (index, idp) in config.identity_providers.iter().enumerate() {
        let key = format!("identity_providers[{index}]");
        validate_identity_provider(idp)
            .map_err(|(field, message)| (format!("{key}.{field}"), message))?;
        if !seen.insert(idp.id.clone()) {
            return invalid(
                format!("{key}.id"),
                format!("duplicate identity provider id `{}`", idp.id),
            );
        }
    }
    let mut issuers = std::collections::BTreeMap::new();
    for (index, idp) in config.identity_providers.iter().enumerate() {
        if let Some(other) = issuers.insert(issuer_identity(&idp.issuer), &idp.issuer) {
            let message = if *other == idp.issuer {
                format!(
                    "another identity provider already has issuer `{}`",
                    idp.issuer
                )
            } else {
                format!(
                    "`{}` differs from another identity provider's issuer `{other}` only by the \
                     case of its scheme or host, a default port or a final `/`: one issuer, \
                     which tokens name exactly one way (FED-02); keep only that one",
                    idp.issuer
                )
            };
            return invalid(format!("identity_providers[{index}].issuer"), message);
        }
    }
    let idp_ids = seen;
    let mut seen = BTreeSet::new();
    let mut audience_values = BTreeSet::new();
    for (index, audience) in config.audiences.iter().enumerate() {
        let key = format!("audiences[{index}]");
        validate_audience(audience)
            .map_err(|(field, message)| (format!("{key}.{field}"), message))?;
        if !seen.insert(audience.id.clone()) {
            return invalid(
                format!("{key}.id"),
                format!("duplicate audience id `{}`", audience.id),
            );
        }
        for value in std::iter::once(&audience.issuer).chain(&audience.aliases) {
            if !audience_values.insert(value.clone()) {
                return invalid(
                    format!("{key}.aliases"),
                    format!("`{value}` already names another audience"),
                );
            }
        }
        if audience.issuer == config.issuer && audience.token_type != "access_token" {
            return invalid(
                format!("{key}.issuer"),
                "an audience cannot be this server's own issuer: frontdesk does not redeem grants it issued itself within one domain (IDJAG-ISSUE-31)",
            );
        }
    }
    let audience_ids = seen;
    let mut resources = BTreeSet::new();
    let mut defaults = 0;
    for (index, resource) in config.resources.iter().enumerate() {
        let key = format!("resources[{index}]");
        validate_resource(resource)
            .map_err(|(field, message)| (format!("{key}.{field}"), message))?;
        if !resources.insert(resource.resource.clone()) {
            return invalid(
                format!("{key}.resource"),
                format!("duplicate resource `{}`", resource.resource),
            );
        }
        defaults += usize::from(resource.default);
    }
    if defaults > 1 {
        return invalid(
            "resources".into(),
            "at most one resource may be the default",
        );
    }
    for (index, idp) in config.identity_providers.iter().enumerate() {
        validate_identity_provider_against(idp, &config.issuer).map_err(|(field, message)| {
            (format!("identity_providers[{index}].{field}"), message)
        })?;
    }
    let mut seen = BTreeSet::new();
    let authorization = &config.authorization;
    if let Some(idp) = &authorization.sign_in_idp {
        validate_relying_party(
            RelyingPartyKeys {
                idp: "authorization.sign_in_idp",
                client_id: "authorization.client_id",
                client_secret: "authorization.client_secret",
                secret_variable: "FRONTDESK_AUTHORIZATION__CLIENT_SECRET_FILE",
            },
            idp,
            authorization.client_id.as_deref(),
            authorization.client_secret.as_ref(),
            &idp_ids,
        )?;
    }
    validate_admin_sso(&config.admin_sso, &idp_ids)?;
    for (index, client) in config.clients.iter().enumerate() {
        let key = format!("clients[{index}]");
        validate_client(client).map_err(|(field, message)| (format!("{key}.{field}"), message))?;
        if client.source.is_some() {
            return invalid(
                format!("{key}.source"),
                "set only for self-registered and metadata-document clients",
            );
        }
        if !seen.insert(client.client_id.clone()) {
            return invalid(
                format!("{key}.client_id"),
                format!("duplicate client_id `{}`", client.client_id),
            );
        }
        for audience in client
            .audiences
            .iter()
            .chain(client.audience_client_ids.keys())
        {
            if !audience_ids.contains(audience) {
                return invalid(
                    format!("{key}.audiences"),
                    format!("no audience has id `{audience}`"),
                );
            }
        }
        for idp in client.idp_client_ids.keys() {
            if !idp_ids.contains(idp) {
                return invalid(
                    format!("{key}.idp_client_ids"),
                    format!("no identity provider has id `{idp}`"),
                );
            }
        }
    }
    // Clients may also be registered through the admin page, so only the syntax is checked.
    for (index, client_id) in authorization.pre_approved_clients.iter().enumerate() {
        validate_id(client_id)
            .or_else(|m| invalid(format!("authorization.pre_approved_clients[{index}]"), m))?;
    }
    Ok(())
}

/// What makes two issuer identifiers one issuer, for refusing a second trust of it: the URL as
/// a parser normalises it (scheme and host in lower case, no default port) without a final
/// `/`. Tokens are still matched against the configured string exactly (FED-02); this only
/// stops two trusts from existing for strings every URL parser, and IdPs that build `iss` from
/// the request's host, treat as one, where the laxer trust could stand in for the stricter.
/// The path keeps its case (two realms of one server are two issuers). Not a URL (a SAML
/// entity ID that is a URN): the string itself.
pub fn issuer_identity(issuer: &str) -> String {
    match url::Url::parse(issuer) {
        Ok(url) => url.as_str().trim_end_matches('/').to_string(),
        Err(_) => issuer.to_string(),
    }
}

fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be 1-128 characters of letters, digits, - _ . :".into())
    }
}

fn validate_url(text: &str, allow_http_loopback: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|error| format!("`{text}` is not a URL: {error}"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() == "https" || (allow_http_loopback && url.scheme() == "http" && loopback) {
        Ok(url)
    } else {
        Err(format!(
            "`{text}` must be an https URL (http only on a loopback address)"
        ))
    }
}

/// Whether `text` is a URL frontdesk fetches trust from: https, or http on a loopback address.
pub fn is_https_or_loopback(text: &str) -> bool {
    validate_url(text, true).is_ok()
}

/// A SAML entity ID (SAML core §8.3.6): an absolute URI of at most 1024 characters.
fn validate_entity_id(text: &str) -> Result<(), String> {
    if text.len() > 1024 {
        return Err("an entity ID has at most 1024 characters".into());
    }
    url::Url::parse(text)
        .map(|_| ())
        .map_err(|error| format!("`{text}` is not an absolute URI: {error}"))
}

/// A redirect URI for the authorization code flow (OAuth 2.1 §2.3.1, RFC 8252 §7.3): an absolute
/// https URL, or http on a loopback address; no fragment; no userinfo. Matched exactly later.
pub fn validate_redirect_uri(text: &str) -> Result<(), String> {
    let url = validate_url(text, true)?;
    if url.fragment().is_some() {
        return Err(format!("`{text}` has a fragment (RFC 6749 §3.1.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not carry credentials"));
    }
    Ok(())
}

/// Validates one identity provider; the key in the error is relative to the provider.
/// What an identity provider may not be trusted for, given this server's own `issuer` (the
/// configuration file and the admin page both ask):
/// - grants frontdesk issued itself (IDJAG-ACCEPT-23);
/// - grants for frontdesk as leg-1 subject tokens: a provider trusted for `jwt_grant` or
///   `id_jag` sends grants addressed to us, and if its `jwt` / `access_token` subject tokens
///   may also be addressed to us (our issuer or token endpoint in `audiences`), such a grant
///   would pass as a subject token too — exchanged again and again, by any client, where leg 2
///   would have redeemed it once for the client it names.
pub fn validate_identity_provider_against(
    idp: &IdentityProviderConfig,
    issuer: &str,
) -> Result<(), Invalid> {
    let grants = idp
        .token_types
        .iter()
        .any(|t| t == "id_jag" || t == "jwt_grant");
    if grants && idp.issuer == issuer {
        return invalid(
            "issuer".into(),
            "frontdesk never redeems grants it issued itself (IDJAG-ACCEPT-23)",
        );
    }
    let token_endpoint = format!("{}/token", issuer.trim_end_matches('/'));
    let subject_tokens_for_us = idp
        .token_types
        .iter()
        .any(|t| t == "jwt" || t == "access_token")
        && idp
            .audiences
            .iter()
            .any(|audience| audience == issuer || *audience == token_endpoint);
    if grants && subject_tokens_for_us {
        return invalid(
            "audiences".into(),
            "a provider trusted for jwt_grant or id_jag sends grants addressed to this server; \
             its jwt and access_token subject tokens cannot be addressed to this server too \
             (its grants would pass as subject tokens): use another audience value for them",
        );
    }
    Ok(())
}

pub fn validate_identity_provider(idp: &IdentityProviderConfig) -> Result<(), Invalid> {
    validate_id(&idp.id).or_else(|m| invalid("id".into(), m))?;
    refuse_private_keys(idp.jwks.as_deref(), idp.saml_certificates.as_deref())?;
    let saml = idp.token_types.iter().any(|t| t == "saml2");
    if saml && idp.token_types.iter().all(|t| t == "saml2") {
        // A SAML entity ID is any absolute URI, and IdPs use http ones and URNs
        // (`http://www.okta.com/…`, ADFS's `http://…/adfs/services/trust`): nothing is fetched
        // from it, so the https rule for JWT issuers does not apply.
        validate_entity_id(&idp.issuer).or_else(|m| invalid("issuer".into(), m))?;
    } else {
        validate_url(&idp.issuer, true).or_else(|m| invalid("issuer".into(), m))?;
    }
    if let Some(pem) = &idp.saml_certificates {
        if !saml {
            return invalid(
                "saml_certificates".into(),
                "only used when token_types lists saml2",
            );
        }
        crate::saml::SamlKeys::from_pem(pem).or_else(|m| invalid("saml_certificates".into(), m))?;
    }
    if let Some(url) = &idp.saml_metadata_url {
        if !saml {
            return invalid(
                "saml_metadata_url".into(),
                "only used when token_types lists saml2",
            );
        }
        validate_url(url, true).or_else(|m| invalid("saml_metadata_url".into(), m))?;
    }
    if let Some(lifetime) = idp.saml_max_lifetime_secs {
        if !saml {
            return invalid(
                "saml_max_lifetime_secs".into(),
                "only used when token_types lists saml2",
            );
        }
        if !(1..=MAX_SAML_LIFETIME_SECS).contains(&lifetime) {
            return invalid(
                "saml_max_lifetime_secs".into(),
                format!("between 1 and {MAX_SAML_LIFETIME_SECS} seconds"),
            );
        }
    }
    if !idp.saml_name_id_formats.is_empty() && !saml {
        return invalid(
            "saml_name_id_formats".into(),
            "only used when token_types lists saml2",
        );
    }
    for format in &idp.saml_name_id_formats {
        validate_entity_id(format).or_else(|m| invalid("saml_name_id_formats".into(), m))?;
    }
    if saml && idp.saml_certificates.is_none() && idp.saml_metadata_url.is_none() {
        return invalid(
            "saml_certificates".into(),
            "saml2 subject tokens are verified with the IdP's signing certificates: paste them (PEM) or set saml_metadata_url",
        );
    }
    if let Some(uri) = &idp.jwks_uri {
        validate_url(uri, true).or_else(|m| invalid("jwks_uri".into(), m))?;
    }
    if idp.jwks_uri.is_some() && idp.jwks.is_some() {
        return invalid("jwks".into(), "set either jwks or jwks_uri, not both");
    }
    if let Some(jwks) = &idp.jwks {
        serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(jwks)
            .or_else(|e| invalid("jwks".into(), format!("not a JWK set: {e}")))?;
    }
    if idp.algorithms.is_empty() {
        return invalid("algorithms".into(), "list at least one algorithm");
    }
    for alg in &idp.algorithms {
        if !IDP_ALGORITHMS.contains(&alg.as_str()) {
            return invalid(
                "algorithms".into(),
                format!(
                    "`{alg}` is not allowed; use asymmetric algorithms only ({})",
                    IDP_ALGORITHMS.join(", ")
                ),
            );
        }
    }
    if idp.token_types.is_empty() {
        return invalid("token_types".into(), "list at least one token type");
    }
    if let Some(namespace) = &idp.subject_namespace
        && (namespace.is_empty()
            || namespace.len() > 200
            || namespace.chars().any(|c| c.is_control()))
    {
        return invalid(
            "subject_namespace".into(),
            "1 to 200 printable characters, the same for every provider of one user directory",
        );
    }
    for token_type in &idp.token_types {
        if !IDP_TOKEN_TYPES.contains(&token_type.as_str()) {
            return invalid(
                "token_types".into(),
                format!(
                    "`{token_type}` is not one of {}",
                    IDP_TOKEN_TYPES.join(", ")
                ),
            );
        }
    }
    let needs_audiences = idp
        .token_types
        .iter()
        .any(|t| t == "jwt" || t == "access_token");
    if needs_audiences && idp.audiences.is_empty() {
        return invalid(
            "audiences".into(),
            "jwt and access_token subject tokens are checked against these audiences: list at least one",
        );
    }
    for (field, limit) in [
        ("requests_per_minute", idp.requests_per_minute),
        (
            "subject_requests_per_minute",
            idp.subject_requests_per_minute,
        ),
    ] {
        validate_per_minute(field, limit)?;
    }
    if idp.clock_skew_secs.is_some_and(|skew| skew > 300) {
        return invalid("clock_skew_secs".into(), "must be at most 300");
    }
    if let Some(condition) = &idp.condition {
        crate::policy::compile(condition).map_err(|e| ("condition".to_string(), e.to_string()))?;
    }
    if !SUBJECT_MODES.contains(&idp.subject_mode.as_str()) {
        return invalid(
            "subject_mode".into(),
            format!("must be one of {}", SUBJECT_MODES.join(", ")),
        );
    }
    match (idp.subject_mode.as_str(), &idp.subject_mapping) {
        ("mapped", None) => {
            return invalid(
                "subject_mapping".into(),
                "subject_mode = \"mapped\" needs a subject_mapping expression",
            );
        }
        ("mapped", Some(mapping)) => {
            crate::policy::compile(mapping)
                .map_err(|e| ("subject_mapping".to_string(), e.to_string()))?;
        }
        (_, Some(_)) => {
            return invalid(
                "subject_mapping".into(),
                "only used with subject_mode = \"mapped\"",
            );
        }
        _ => {}
    }
    validate_transcribed_claims(&idp.transcribe_claims)
}

/// Claims of an access token that frontdesk sets itself or that carry a meaning of their own
/// (registered JWT claims, RFC 9068's and RFC 8693's, confirmation and status), so an issuer's
/// assertion never supplies them by transcription. `auth_time`, `acr`, `amr`, `act` and `tenant`
/// are carried over already.
pub const RESERVED_TRANSCRIBED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "scp",
    "resource",
    "authorization_details",
    "cnf",
    "act",
    "may_act",
    "status",
    "azp",
    "nonce",
    "typ",
    "auth_time",
    "acr",
    "amr",
    "tenant",
];
/// The most claims one issuer may transcribe: a list, not a pass-through.
pub const MAX_TRANSCRIBED_CLAIMS: usize = 32;

/// `transcribe_claims` (CHAIN-B-09): claim names, each once, none reserved.
fn validate_transcribed_claims(claims: &[String]) -> Result<(), Invalid> {
    let key = || "transcribe_claims".to_string();
    if claims.len() > MAX_TRANSCRIBED_CLAIMS {
        return invalid(key(), format!("at most {MAX_TRANSCRIBED_CLAIMS} claims"));
    }
    let mut seen = BTreeSet::new();
    for claim in claims {
        let well_formed = !claim.is_empty()
            && claim.len() <= 64
            && claim.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
            });
        if !well_formed {
            return invalid(
                key(),
                format!("`{claim}` is not a claim name (letters, digits, _ - . : /, at most 64)"),
            );
        }
        if RESERVED_TRANSCRIBED_CLAIMS.contains(&claim.as_str()) {
            return invalid(
                key(),
                format!(
                    "`{claim}` is set by frontdesk itself and cannot be copied from an assertion"
                ),
            );
        }
        if !seen.insert(claim.as_str()) {
            return invalid(key(), format!("`{claim}` is listed twice"));
        }
    }
    Ok(())
}

/// A request limit (`request_limit.rs`): absent, or 1 to 1,000,000 a minute.
fn validate_per_minute(field: &str, limit: Option<u32>) -> Result<(), Invalid> {
    if limit.is_some_and(|limit| limit == 0 || limit > 1_000_000) {
        return invalid(
            field.into(),
            "must be between 1 and 1000000 (leave it out for no limit)",
        );
    }
    Ok(())
}

/// Most RFC 9396 types one audience or resource accepts.
const MAX_DETAIL_TYPES: usize = 64;

/// An `authorization_details_types` list: RFC 9396 `type` strings (a name or a URI), each
/// printable, at most 256 characters, listed once.
fn validate_detail_types(types: &[String]) -> Result<(), String> {
    if types.len() > MAX_DETAIL_TYPES {
        return Err(format!("at most {MAX_DETAIL_TYPES} types"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for kind in types {
        if kind.is_empty() || kind.len() > 256 || !kind.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "`{kind}` is not an authorization_details type (1-256 printable ASCII characters, no spaces)"
            ));
        }
        if !seen.insert(kind.as_str()) {
            return Err(format!("`{kind}` is listed twice"));
        }
    }
    Ok(())
}

/// JWK members that hold a private or symmetric key (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Refuses private key material where only public keys belong (an inline JWKS, SAML signing
/// certificates): whatever is stored is shown on the edit page and by the API to every role,
/// and kept in the audit log's before/after documents for good — from the configuration file
/// as from the admin page.
fn refuse_private_keys(
    jwks: Option<&str>,
    saml_certificates: Option<&str>,
) -> Result<(), (String, String)> {
    if let Some(jwks) = jwks {
        let set: serde_json::Value = serde_json::from_str(jwks).unwrap_or_default();
        for key in set["keys"].as_array().into_iter().flatten() {
            if let Some(member) = PRIVATE_JWK_MEMBERS
                .iter()
                .find(|member| key.get(**member).is_some())
            {
                return Err((
                    "jwks".into(),
                    format!(
                        "key `{}` carries private key material (`{member}`): paste only the public keys",
                        key["kid"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
    }
    if saml_certificates.is_some_and(|pem| pem.contains("PRIVATE KEY")) {
        return Err((
            "saml_certificates".into(),
            "this holds a private key: paste only the certificates".into(),
        ));
    }
    Ok(())
}

/// Validates one protected resource.
pub fn validate_resource(resource: &crate::config::ResourceConfig) -> Result<(), Invalid> {
    let url = url::Url::parse(&resource.resource).or_else(|e| {
        invalid(
            "resource".into(),
            format!("`{}` is not an absolute URI: {e}", resource.resource),
        )
    })?;
    if url.fragment().is_some() {
        return invalid(
            "resource".into(),
            "a resource identifier has no fragment (RFC 8707 §2)",
        );
    }
    validate_detail_types(&resource.authorization_details_types)
        .or_else(|m| invalid("authorization_details_types".into(), m))?;
    for scope in &resource.scopes {
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c == '"' || c == '\\' || !c.is_ascii_graphic())
        {
            return invalid(
                "scopes".into(),
                format!("`{scope}` is not a valid scope token (RFC 6749 §3.3)"),
            );
        }
    }
    if resource
        .access_token_lifetime_secs
        .is_some_and(|secs| secs == 0 || secs > 86400)
    {
        return invalid(
            "access_token_lifetime_secs".into(),
            "must be between 1 and 86400",
        );
    }
    Ok(())
}

/// Validates one audience; the key in the error is relative to the audience.
pub fn validate_audience(audience: &AudienceConfig) -> Result<(), Invalid> {
    validate_id(&audience.id).or_else(|m| invalid("id".into(), m))?;
    validate_per_minute("requests_per_minute", audience.requests_per_minute)?;
    validate_detail_types(&audience.authorization_details_types)
        .or_else(|m| invalid("authorization_details_types".into(), m))?;
    if audience.issuer.is_empty() {
        return invalid("issuer".into(), "must not be empty");
    }
    url::Url::parse(&audience.issuer).or_else(|e| {
        invalid(
            "issuer".into(),
            format!("`{}` is not a URI: {e}", audience.issuer),
        )
    })?;
    if !AUDIENCE_TOKEN_TYPES.contains(&audience.token_type.as_str()) {
        return invalid(
            "token_type".into(),
            format!("must be one of {}", AUDIENCE_TOKEN_TYPES.join(", ")),
        );
    }
    for resource in &audience.resources {
        let url = url::Url::parse(resource).or_else(|e| {
            invalid(
                "resources".into(),
                format!("`{resource}` is not an absolute URI: {e}"),
            )
        })?;
        if url.fragment().is_some() {
            return invalid(
                "resources".into(),
                format!("`{resource}` has a fragment (RFC 8707 §2)"),
            );
        }
    }
    for scope in &audience.scopes {
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c == ' ' || c == '"' || c == '\\' || !c.is_ascii_graphic())
        {
            return invalid(
                "scopes".into(),
                format!("`{scope}` is not a valid scope token (RFC 6749 §3.3)"),
            );
        }
    }
    if audience
        .lifetime_secs
        .is_some_and(|secs| secs == 0 || secs > MAX_AUDIENCE_LIFETIME_SECS)
    {
        return invalid(
            "lifetime_secs".into(),
            format!("must be between 1 and {MAX_AUDIENCE_LIFETIME_SECS}"),
        );
    }
    for (claim, expression) in &audience.claims {
        if !MAPPABLE_CLAIMS.contains(&claim.as_str()) {
            return invalid(
                format!("claims.{claim}"),
                format!("only {} can be mapped", MAPPABLE_CLAIMS.join(", ")),
            );
        }
        crate::policy::compile(expression)
            .map_err(|e| (format!("claims.{claim}"), e.to_string()))?;
    }
    for claim in &audience.release {
        if !RELEASABLE_CLAIMS.contains(&claim.as_str()) {
            return invalid(
                "release".into(),
                format!("only {} can be released", RELEASABLE_CLAIMS.join(", ")),
            );
        }
    }
    if let Some(condition) = &audience.condition {
        crate::policy::compile(condition).map_err(|e| ("condition".to_string(), e.to_string()))?;
    }
    Ok(())
}

/// Validates one client; the key in the error is relative to the client.
pub fn validate_client(client: &ClientConfig) -> Result<(), Invalid> {
    refuse_private_keys(client.jwks.as_deref(), None)?;
    if client.source.as_deref() == Some("cimd") {
        // A Client ID Metadata Document client is named by the URL of its document.
        validate_url(&client.client_id, true).or_else(|m| invalid("client_id".into(), m))?;
    } else {
        validate_id(&client.client_id).or_else(|m| invalid("client_id".into(), m))?;
    }
    validate_per_minute("requests_per_minute", client.requests_per_minute)?;
    validate_introspect_audiences(&client.introspect_audiences)
        .or_else(|m| invalid("introspect_audiences".into(), m))?;
    validate_tenant_client_ids(client)
        .or_else(|m| invalid("audience_tenant_client_ids".into(), m))?;
    if client.auth_method == "none" && !client.introspect_audiences.is_empty() {
        return invalid(
            "introspect_audiences".into(),
            "a public client (auth_method = \"none\") cannot introspect (RFC 7662 §4)",
        );
    }
    if let Some(hash) = &client.registration_access_token_hash {
        // RFC 7592: only a client that registered itself manages its registration.
        if client.source.as_deref() != Some("dcr") {
            return invalid(
                "registration_access_token_hash".into(),
                "only self-registered clients (source = \"dcr\") have a registration access token",
            );
        }
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return invalid(
                "registration_access_token_hash".into(),
                "must be a SHA-256 digest in lowercase hex",
            );
        }
    }
    if !CLIENT_AUTH_METHODS.contains(&client.auth_method.as_str()) {
        return invalid(
            "auth_method".into(),
            format!(
                "must be one of {} (`none` for a public client)",
                CLIENT_AUTH_METHODS.join(", ")
            ),
        );
    }
    if client.auth_method == "none" {
        if client.secret_hash.is_some() {
            return invalid(
                "secret_hash".into(),
                "a public client (auth_method = \"none\") has no secret",
            );
        }
        if client.jwks.is_some() || client.jwks_uri.is_some() {
            return invalid(
                "jwks".into(),
                "a public client (auth_method = \"none\") has no keys; use private_key_jwt",
            );
        }
        for grant in &client.grant_types {
            if crate::oauth::GrantType::parse(grant)
                .is_some_and(|grant| !PUBLIC_CLIENT_GRANTS.contains(&grant))
            {
                return invalid(
                    "grant_types".into(),
                    format!(
                        "a public client may only use authorization_code and refresh_token, not `{grant}` (token exchange and jwt-bearer need a confidential client)"
                    ),
                );
            }
        }
    } else if client.auth_method.starts_with("client_secret") {
        match &client.secret_hash {
            Some(hash) if crate::secret::is_argon2id_phc(hash) => {}
            Some(_) => {
                return invalid(
                    "secret_hash".into(),
                    "must be an argon2id PHC string; create one with `frontdesk hash-secret`",
                );
            }
            None => {
                return invalid(
                    "secret_hash".into(),
                    "required for client_secret_* authentication",
                );
            }
        }
    } else {
        if client.jwks.is_none() && client.jwks_uri.is_none() {
            return invalid("jwks".into(), "private_key_jwt needs jwks or jwks_uri");
        }
        // RFC 7591 §2: never both, so which keys authenticate the client is never a question.
        if client.jwks.is_some() && client.jwks_uri.is_some() {
            return invalid("jwks".into(), "set either jwks or jwks_uri, not both");
        }
        if let Some(jwks) = &client.jwks {
            serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(jwks)
                .or_else(|e| invalid("jwks".into(), format!("not a JWK set: {e}")))?;
        }
        if let Some(uri) = &client.jwks_uri {
            validate_url(uri, true).or_else(|m| invalid("jwks_uri".into(), m))?;
        }
    }
    for grant in &client.grant_types {
        if crate::oauth::GrantType::parse(grant).is_none() {
            return invalid(
                "grant_types".into(),
                format!("`{grant}` is not a supported grant type"),
            );
        }
    }
    for uri in &client.redirect_uris {
        validate_redirect_uri(uri).or_else(|m| invalid("redirect_uris".into(), m))?;
    }
    if let Some(name) = &client.client_name
        && (name.trim().is_empty()
            || name.chars().count() > MAX_CLIENT_NAME_CHARS
            || name.chars().any(char::is_control))
    {
        return invalid(
            "client_name".into(),
            format!("must be 1-{MAX_CLIENT_NAME_CHARS} printable characters"),
        );
    }
    if client
        .source
        .as_deref()
        .is_some_and(|source| source != "dcr" && source != "cimd")
    {
        return invalid("source".into(), "must be dcr or cimd when set");
    }
    validate_grant_profiles(
        &client.authorization_grant_profiles_supported,
        &client.grant_types,
    )
    .or_else(|m| invalid("authorization_grant_profiles_supported".into(), m))?;
    let uses_code = client.grant_types.iter().any(|grant| {
        crate::oauth::GrantType::parse(grant) == Some(crate::oauth::GrantType::AuthorizationCode)
    });
    if uses_code && client.redirect_uris.is_empty() {
        return invalid(
            "redirect_uris".into(),
            "the authorization_code grant needs at least one registered redirect URI",
        );
    }
    Ok(())
}

/// Most tenant-scoped client ids one client may have.
const MAX_TENANT_CLIENT_IDS: usize = 10_000;

/// `audience_tenant_client_ids` (TEN-02): keys `audience-id/tenant` naming one of the client's
/// own audiences and a tenant, values the client id there; printable, at most 256 characters.
fn validate_tenant_client_ids(client: &ClientConfig) -> Result<(), String> {
    let ids = &client.audience_tenant_client_ids;
    if ids.len() > MAX_TENANT_CLIENT_IDS {
        return Err(format!("at most {MAX_TENANT_CLIENT_IDS} entries"));
    }
    let printable =
        |text: &str| !text.is_empty() && text.len() <= 256 && !text.chars().any(char::is_control);
    for (key, client_id) in ids {
        let Some((audience, tenant)) = key.split_once('/') else {
            return Err(format!("`{key}` is not `audience-id/tenant`"));
        };
        if !client.audiences.iter().any(|id| id == audience) {
            return Err(format!(
                "`{key}`: `{audience}` is not one of this client's audiences"
            ));
        }
        if !printable(tenant) || !printable(client_id) {
            return Err(format!(
                "`{key}`: the tenant and the client id are 1-256 printable characters"
            ));
        }
    }
    Ok(())
}

/// Most `aud` values one client may introspect: a resource server names its own few, `*` the
/// rest.
const MAX_INTROSPECT_AUDIENCES: usize = 100;

/// A client's `introspect_audiences`: `["*"]` alone, or absolute URIs (the `aud` values
/// frontdesk writes are audience issuers and resource identifiers, both URIs), each once.
fn validate_introspect_audiences(audiences: &[String]) -> Result<(), String> {
    if audiences.len() > MAX_INTROSPECT_AUDIENCES {
        return Err(format!("at most {MAX_INTROSPECT_AUDIENCES} entries"));
    }
    if audiences.iter().any(|aud| aud == "*") {
        return if audiences.len() == 1 {
            Ok(())
        } else {
            Err("`*` (every token) stands alone".into())
        };
    }
    let mut seen = std::collections::BTreeSet::new();
    for aud in audiences {
        if aud.len() > 1024 || url::Url::parse(aud).is_err() {
            return Err(format!(
                "`{aud}` is not an absolute URI of at most 1024 characters (an audience's issuer or a resource identifier), nor `*`"
            ));
        }
        if !seen.insert(aud.as_str()) {
            return Err(format!("`{aud}` is listed twice"));
        }
    }
    Ok(())
}

/// CMETA-02: a client that declares the ID-JAG grant profile must be able to use both halves of
/// it, the token exchange that obtains an ID-JAG and the jwt-bearer grant that redeems one.
pub fn validate_grant_profiles(profiles: &[String], grant_types: &[String]) -> Result<(), String> {
    use crate::oauth::GrantType;
    for profile in profiles {
        if profile.is_empty() || profile.len() > 200 || profile.chars().any(char::is_control) {
            return Err("each profile must be a non-empty URI".into());
        }
    }
    if profiles
        .iter()
        .any(|profile| profile == crate::oauth::GRANT_PROFILE_ID_JAG)
    {
        let has = |wanted: GrantType| {
            grant_types
                .iter()
                .any(|grant| GrantType::parse(grant) == Some(wanted))
        };
        if !has(GrantType::TokenExchange) || !has(GrantType::JwtBearer) {
            return Err(format!(
                "the `{}` profile needs both the token-exchange and the jwt-bearer grant types (CMETA-02)",
                crate::oauth::GRANT_PROFILE_ID_JAG
            ));
        }
    }
    Ok(())
}

/// Loads the config-declared trust objects into the database ("managed by config"), replacing
/// what an earlier version of the file declared.
pub async fn sync_config<S: TrustStore>(
    store: &S,
    config: &Config,
    now: i64,
) -> Result<(), StoreError> {
    fn documents<T: serde::Serialize>(
        items: &[T],
        id: impl Fn(&T) -> String,
        now: i64,
    ) -> Vec<TrustDocument> {
        items
            .iter()
            .map(|item| TrustDocument {
                id: id(item),
                document: serde_json::to_value(item).unwrap_or_default(),
                managed_by_config: true,
                updated_at: now,
            })
            .collect()
    }
    store
        .sync_config_trust(
            TrustKind::IdentityProvider,
            &documents(&config.identity_providers, |i| i.id.clone(), now),
        )
        .await?;
    store
        .sync_config_trust(
            TrustKind::Audience,
            &documents(&config.audiences, |a| a.id.clone(), now),
        )
        .await?;
    store
        .sync_config_trust(
            TrustKind::Client,
            &documents(&config.clients, |c| c.client_id.clone(), now),
        )
        .await
}

/// The configuration keys of one place where frontdesk is an OpenID Connect relying party.
struct RelyingPartyKeys {
    idp: &'static str,
    client_id: &'static str,
    client_secret: &'static str,
    secret_variable: &'static str,
}

/// frontdesk as a relying party needs a configured identity provider and its own credentials
/// there (`[authorization]` for users, `[admin_sso]` for admins).
fn validate_relying_party(
    keys: RelyingPartyKeys,
    idp: &str,
    client_id: Option<&str>,
    client_secret: Option<&crate::secret::SecretString>,
    idp_ids: &BTreeSet<String>,
) -> Result<(), Invalid> {
    if !idp_ids.contains(idp) {
        return invalid(
            keys.idp.into(),
            format!("no identity provider has id `{idp}`"),
        );
    }
    if client_id.is_none_or(str::is_empty) {
        return invalid(
            keys.client_id.into(),
            "frontdesk's client id at this identity provider is required",
        );
    }
    if client_secret.is_none_or(|secret| secret.expose().is_empty()) {
        return invalid(
            keys.client_secret.into(),
            format!(
                "frontdesk's client secret at this identity provider is required ({})",
                keys.secret_variable
            ),
        );
    }
    Ok(())
}

/// `[admin_sso]`: the identity provider must be configured, frontdesk's credentials there given,
/// and the role conditions must compile (at least the admin one, or nobody could ever get in).
fn validate_admin_sso(
    sso: &crate::config::AdminSsoConfig,
    idp_ids: &BTreeSet<String>,
) -> Result<(), (String, String)> {
    let Some(idp) = &sso.idp else {
        return Ok(());
    };
    validate_relying_party(
        RelyingPartyKeys {
            idp: "admin_sso.idp",
            client_id: "admin_sso.client_id",
            client_secret: "admin_sso.client_secret",
            secret_variable: "FRONTDESK_ADMIN_SSO__CLIENT_SECRET_FILE",
        },
        idp,
        sso.client_id.as_deref(),
        sso.client_secret.as_ref(),
        idp_ids,
    )?;
    match &sso.admin_condition {
        None => {
            return invalid(
                "admin_sso.admin_condition".into(),
                "a CEL condition over the ID token claims (`subject`) deciding who is an admin is required",
            );
        }
        Some(source) => {
            crate::policy::compile(source)
                .map_err(|e| ("admin_sso.admin_condition".to_string(), e.to_string()))?;
        }
    }
    if let Some(source) = &sso.auditor_condition {
        crate::policy::compile(source)
            .map_err(|e| ("admin_sso.auditor_condition".to_string(), e.to_string()))?;
    }
    Ok(())
}
