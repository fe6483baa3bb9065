//! RFC 8693 token exchange (leg 1): verify a subject token from a trusted IdP, decide what this
//! client may get for which audience, and mint an ID-JAG, an identity-chaining grant or an
//! RFC 9068 access token. `requested_token_type` selects the profile (TX-14, REQUIREMENTS §20.3).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::client_auth::{AuthMethod, AuthenticatedClient};
use super::refresh_subject;
use super::request::parse_scope;
use super::service::{TokenResponse, TokenService};
use super::{
    ErrorCode, GrantRequest, OAuthError, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT, TOKEN_TYPE_REFRESH_TOKEN, TOKEN_TYPE_SAML2,
};
use crate::config::Config;
use crate::jose::{
    AudienceRule, JoseError, MAX_ID_TOKEN_SUB_BYTES, TypRule, VerifiedClaims, inspect,
};
use crate::policy::{Decision as PolicyDecision, PolicyInput};
use crate::registry::{Audience, IdentityProvider, IssueKind, Registry};
use crate::store::{AuditDetail, AuditEvent, ReplayStore};

/// JOSE `typ` of an ID-JAG (IDJAG-JWT-01).
pub const TYP_ID_JAG: &str = "oauth-id-jag+jwt";
/// JOSE `typ` of an RFC 9068 access token (AT-01).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
/// JOSE `typ` of an identity-chaining grant (the draft defines none since -14).
pub const TYP_CHAINING_GRANT: &str = "JWT";

/// Subject token types frontdesk accepts: JWTs and SAML 2.0 assertions from trusted issuers,
/// and its own refresh tokens (for ID-JAGs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubjectTokenType {
    IdToken,
    Jwt,
    AccessToken,
    RefreshToken,
    Saml2,
}

impl SubjectTokenType {
    fn parse(uri: &str) -> Result<SubjectTokenType, OAuthError> {
        match uri {
            TOKEN_TYPE_ID_TOKEN => Ok(SubjectTokenType::IdToken),
            TOKEN_TYPE_JWT => Ok(SubjectTokenType::Jwt),
            TOKEN_TYPE_ACCESS_TOKEN => Ok(SubjectTokenType::AccessToken),
            TOKEN_TYPE_REFRESH_TOKEN => Ok(SubjectTokenType::RefreshToken),
            // IDJAG-ISSUE-07.
            TOKEN_TYPE_SAML2 => Ok(SubjectTokenType::Saml2),
            "urn:ietf:params:oauth:token-type:saml1" => Err(OAuthError::invalid_request(
                "unsupported_subject_token_type",
                "SAML 1.1 assertions are not supported; use a SAML 2.0 assertion (saml2), an ID token, a JWT or a refresh token issued by this server",
            )),
            _ => Err(OAuthError::invalid_request(
                "unknown_subject_token_type",
                "The subject_token_type is not a token type this server knows (TX-09)",
            )),
        }
    }

    /// The name used in identity provider configuration.
    fn config_name(self) -> &'static str {
        match self {
            SubjectTokenType::IdToken => "id_token",
            SubjectTokenType::Jwt => "jwt",
            SubjectTokenType::AccessToken => "access_token",
            SubjectTokenType::RefreshToken => "refresh_token",
            SubjectTokenType::Saml2 => "saml2",
        }
    }
}

/// Who an exchange is for, whichever kind of subject token proved it: the identity provider
/// that vouches for the user and the user's claims (a verified token's, or for a refresh token
/// the user's current ones).
pub(super) struct Subject {
    pub(super) idp: Arc<IdentityProvider>,
    pub(super) claims: Map<String, Value>,
    /// Scopes the subject token itself carries, bounding what it can be exchanged for
    /// (CHAIN-A-07); `None` for ID tokens and SAML assertions.
    token_scopes: Option<Vec<String>>,
    /// A subject token accepted once: the replay key (issuer-qualified id) and until when it is
    /// kept. SAML assertions (IDJAG-SAML-04).
    single_use: Option<(String, String, i64)>,
    /// When the identity provider ends sessions derived from the subject token (a SAML
    /// `AuthnStatement`'s `SessionNotOnOrAfter`, SAML core §2.7.2): nothing lasting, such as a
    /// §4.5 refresh token, outlives it.
    pub(super) session_ends_at: Option<i64>,
}

/// The scopes a subject token carries itself: `scope` (RFC 9068, space-separated) or `scp`
/// (Okta, Entra: a string or an array); `None` for ID tokens, which carry none.
fn token_scopes(claims: &Map<String, Value>, token_type: SubjectTokenType) -> Option<Vec<String>> {
    if matches!(
        token_type,
        SubjectTokenType::IdToken | SubjectTokenType::Saml2
    ) {
        return None;
    }
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(scope)) => Some(
            scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        // Present but of another type: what the token may do cannot be read, so it bounds the
        // exchange to nothing rather than lifting the bound (CHAIN-A-07).
        Some(_) => Some(Vec::new()),
        None => None,
    }
}

impl Subject {
    /// Takes the verified claims over rather than copying them (one map fewer per exchange).
    fn verified(
        idp: Arc<IdentityProvider>,
        verified: VerifiedClaims,
        token_type: SubjectTokenType,
    ) -> Subject {
        let token_scopes = token_scopes(verified.claims(), token_type);
        let sub = verified.sub().to_string();
        let mut claims = verified.into_claims();
        claims.insert("sub".into(), Value::String(sub));
        Subject {
            idp,
            claims,
            token_scopes,
            single_use: None,
            session_ends_at: None,
        }
    }

    pub(super) fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// The value of a claim an audience `release`s. `sub_id` falls back to the SAML NameID's
    /// `saml-nameid` identifier (IDJAG-JWT-17), so a resource AS that resolves users by NameID
    /// gets it by asking for `sub_id`, and no other does (IDJAG-JWT-18).
    fn released(&self, claim: &str) -> Option<&Value> {
        self.claims.get(claim).or_else(|| {
            (claim == "sub_id")
                .then(|| self.claims.get("saml_nameid"))
                .flatten()
        })
    }

    pub(super) fn sub(&self) -> &str {
        self.claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

fn requested_kind(uri: Option<&str>) -> Result<Option<IssueKind>, OAuthError> {
    match uri {
        None => Ok(None),
        Some(TOKEN_TYPE_ID_JAG) => Ok(Some(IssueKind::IdJag)),
        Some(TOKEN_TYPE_JWT) => Ok(Some(IssueKind::ChainingGrant)),
        Some(TOKEN_TYPE_ACCESS_TOKEN) => Ok(Some(IssueKind::AccessToken)),
        Some(_) => Err(OAuthError::invalid_request(
            "unsupported_requested_token_type",
            "The requested_token_type is not one this server issues (id-jag, jwt or access_token)",
        )),
    }
}

/// What a token exchange's audit event adds to its columns: which configuration entries
/// decided it and the subject token's `jti` (lineage). Typed, so the event's detail is one
/// string written once (`AuditDetail`); the members in alphabetical order, as the log has always
/// stored them.
#[derive(serde::Serialize)]
struct ExchangeDetail<'a> {
    audience_id: &'a str,
    /// The thumbprint of the DPoP key the issued token is bound to, when the request proved one.
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_jkt: Option<&'a str>,
    /// The refresh-token family an access token belongs to, when one was issued with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    family_id: Option<&'a str>,
    identity_provider: &'a str,
    issued_token_type: &'static str,
    /// `null` when the subject token has none.
    subject_jti: Option<&'a Value>,
    subject_token_type: &'static str,
}

fn issued_token_type(kind: IssueKind) -> &'static str {
    match kind {
        IssueKind::IdJag => TOKEN_TYPE_ID_JAG,
        IssueKind::ChainingGrant => TOKEN_TYPE_JWT,
        IssueKind::AccessToken => TOKEN_TYPE_ACCESS_TOKEN,
    }
}

fn invalid_target(reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, reason, description)
}

/// Validates `resource` values: absolute URIs without a fragment (RFC 8707 §2, TX-03).
fn parse_resources(values: Vec<&str>) -> Result<Vec<String>, OAuthError> {
    let mut resources: Vec<String> = Vec::new();
    for value in values {
        let Ok(url) = url::Url::parse(value) else {
            return Err(invalid_target(
                "invalid_resource",
                "Each resource must be an absolute URI (RFC 8707)",
            ));
        };
        if url.fragment().is_some() || value.contains('#') {
            return Err(invalid_target(
                "invalid_resource",
                "A resource must not contain a fragment (RFC 8707)",
            ));
        }
        if !resources.iter().any(|existing| existing == value) {
            resources.push(value.to_string());
        }
    }
    Ok(resources)
}

/// Finds the one audience a request targets, per the profile's rules.
fn resolve_target(
    registry: &Registry,
    own_issuer: &str,
    kind: Option<IssueKind>,
    audiences: &[&str],
    resources: &[String],
) -> Result<Arc<Audience>, OAuthError> {
    if audiences.len() > 1 {
        // IDJAG-ISSUE-05, CHAIN-A-04: one audience per grant.
        return Err(invalid_target(
            "multiple_audiences",
            "Only one audience may be requested per token",
        ));
    }
    if kind == Some(IssueKind::IdJag) && audiences.is_empty() {
        // IDJAG-ISSUE-02.
        return Err(OAuthError::invalid_request(
            "missing_audience",
            "The audience parameter (the resource authorization server's issuer) is required for an ID-JAG",
        ));
    }
    let audience = if let Some(value) = audiences.first() {
        registry.audience(value).cloned().ok_or_else(|| {
            invalid_target(
                "unknown_audience",
                "The requested audience is not a trusted target",
            )
        })?
    } else {
        // Chaining (CHAIN §2.3.1: resource may name the other domain's AS) and access tokens:
        // the resources identify the target.
        let Some(first) = resources.first() else {
            return Err(OAuthError::invalid_request(
                "missing_target",
                "Name the target with the audience or resource parameter",
            ));
        };
        let mut candidates: Vec<Arc<Audience>> =
            registry.audience(first).cloned().into_iter().collect();
        candidates.extend(registry.audiences_for_resource(first).iter().cloned());
        if let Some(kind) = kind {
            candidates.retain(|audience| audience.kind == kind);
        }
        candidates.dedup_by(|a, b| a.config.id == b.config.id);
        match candidates.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(invalid_target(
                    "unknown_resource",
                    "The requested resource is not a trusted target",
                ));
            }
            _ => {
                return Err(invalid_target(
                    "ambiguous_resource",
                    "The resource belongs to several audiences; name one with the audience parameter",
                ));
            }
        }
    };
    if audience.kind != IssueKind::AccessToken
        && audience.config.issuer.trim_end_matches('/') == own_issuer.trim_end_matches('/')
    {
        // IDJAG-ISSUE-31: never issue a grant whose audience is this server itself.
        return Err(invalid_target(
            "audience_is_self",
            "This server does not issue grants addressed to itself",
        ));
    }
    if let Some(kind) = kind
        && audience.kind != kind
    {
        return Err(invalid_target(
            "token_type_not_offered",
            "The requested audience is not issued this token type",
        ));
    }
    for resource in resources {
        let governed = audience.config.resources.iter().any(|r| r == resource)
            || (audience.kind == IssueKind::ChainingGrant
                && (audience.config.issuer == *resource
                    || audience.config.aliases.contains(resource)));
        if !governed {
            // IDJAG-ISSUE-17 / EMA-07: (audience, resource) pairs are checked.
            return Err(invalid_target(
                "resource_not_governed",
                "A requested resource does not belong to the requested audience",
            ));
        }
    }
    Ok(audience)
}

/// Verifies the subject token against the trusted issuer it claims (IDJAG-ISSUE-09/14).
async fn verify_subject(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    token: &str,
    token_type: SubjectTokenType,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<(Arc<IdentityProvider>, VerifiedClaims), OAuthError> {
    let code = subject_error_code(&service.config);
    let fail = |error: JoseError| {
        OAuthError::new(code, subject_reason(&error), error.description())
            .suspicious_if(error.suggests_forgery())
    };
    let unverified = inspect(token, service.config.tokens.max_token_bytes).map_err(fail)?;
    let claimed_issuer = unverified.unverified_iss().unwrap_or_default();
    let idp = trusted_issuer(registry, claimed_issuer, code)?;
    audit.subject_issuer = Some(idp.config.issuer.clone());
    check_token_type(idp, token_type, code)?;
    let (typ, audience) = match token_type {
        SubjectTokenType::IdToken => (
            TypRule::id_token(),
            AudienceRule::id_token_for(client.client.id_at_idp(&idp.config.id)),
        ),
        SubjectTokenType::Jwt => (
            TypRule::id_token(),
            AudienceRule::AnyOf {
                values: idp.config.audiences.clone(),
                azp: None,
            },
        ),
        SubjectTokenType::AccessToken => (
            TypRule::OneOf {
                values: vec!["at+jwt".into(), "JWT".into()],
                allow_absent: true,
            },
            AudienceRule::AnyOf {
                values: idp.config.audiences.clone(),
                azp: None,
            },
        ),
        SubjectTokenType::RefreshToken => {
            // Only reached for an actor token: refresh tokens are not JWTs from an IdP.
            return Err(OAuthError::invalid_request(
                "refresh_token_not_accepted_here",
                "A refresh token is accepted only as the subject_token of an ID-JAG request",
            ));
        }
        SubjectTokenType::Saml2 => {
            // Only reached for an actor token: the actor is a workload, proven by a JWT.
            return Err(OAuthError::invalid_request(
                "saml_actor_not_accepted",
                "A SAML assertion is accepted only as the subject_token",
            ));
        }
    };
    let claims = service
        .verify_from_issuer(idp, &unverified, token, typ, audience, None, now)
        .await
        .map_err(fail)?;
    if token_type == SubjectTokenType::IdToken && claims.sub().len() > MAX_ID_TOKEN_SUB_BYTES {
        // OIDC Core §2. Not recorded as the audit's subject: it is not one.
        return Err(OAuthError::new(
            code,
            "subject_sub_too_long",
            "The ID token's sub exceeds the 255 characters OpenID Connect allows",
        ));
    }
    audit.subject = Some(claims.sub().to_string());
    Ok((idp.clone(), claims))
}

/// Verifies a SAML 2.0 assertion against the trusted issuer it names (IDJAG-ISSUE-07/10,
/// IDJAG-SAML-04): the same gates as a JWT's, then the assertion's signature with the issuer's
/// pinned certificates, its audience against the client's identifier at that IdP (its SAML SP
/// entity ID), its conditions and bearer confirmation.
pub(super) async fn verify_saml_subject(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    token: &str,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<Subject, OAuthError> {
    let code = subject_error_code(&service.config);
    let fail = |error: crate::saml::SamlError| {
        OAuthError::new(code, error.reason(), error.to_string())
            .suspicious_if(error.suggests_forgery())
    };
    let unverified =
        crate::saml::UnverifiedAssertion::parse(token, service.config.tokens.max_token_bytes)
            .map_err(fail)?;
    let claimed_issuer = unverified.unverified_issuer().unwrap_or_default();
    let idp = trusted_issuer(registry, &claimed_issuer, code)?;
    audit.subject_issuer = Some(idp.config.issuer.clone());
    check_token_type(idp, SubjectTokenType::Saml2, code)?;
    // The pinned certificates, and those of the metadata when it is configured; a copy only
    // when both are.
    let with_pinned = |keys: Option<Arc<crate::saml::SamlKeys>>| -> Option<
        std::borrow::Cow<'_, crate::saml::SamlKeys>,
    > {
        match (&idp.saml_keys, keys) {
            (Some(pinned), Some(fetched)) => Some(std::borrow::Cow::Owned(pinned.union(&fetched))),
            (Some(pinned), None) => Some(std::borrow::Cow::Borrowed(pinned)),
            (None, fetched) => fetched.map(|keys| std::borrow::Cow::Owned((*keys).clone())),
        }
    };
    let fetched = match &idp.config.saml_metadata_url {
        Some(url) => service
            .saml_metadata
            .keys(&idp.config.id, url, &idp.config.issuer)
            .await
            .map_err(|error| {
                tracing::warn!(idp = %idp.config.id, %error, "no SAML metadata keys");
            })
            .ok(),
        None => None,
    };
    let keys = with_pinned(fetched).ok_or_else(|| fail(crate::saml::SamlError::KeysUnavailable))?;
    let skew = idp
        .config
        .clock_skew_secs
        .unwrap_or(service.config.tokens.clock_skew_secs);
    let rules = crate::saml::SamlRules {
        issuer: &idp.config.issuer,
        audience: client.client.id_at_idp(&idp.config.id),
        now,
        skew: i64::try_from(skew).unwrap_or(300),
        max_age: idp
            .config
            .max_token_age_secs
            .map(|age| i64::try_from(age).unwrap_or(i64::MAX / 2)),
        max_lifetime: i64::try_from(
            idp.config
                .saml_max_lifetime_secs
                .unwrap_or(crate::saml::DEFAULT_MAX_LIFETIME_SECS),
        )
        .unwrap_or(i64::MAX / 2),
        name_id_formats: &idp.config.saml_name_id_formats,
    };
    let mut verified = unverified.verify(&keys, &rules);
    if verified.as_ref().err() == Some(&crate::saml::SamlError::BadSignature)
        && let Some(url) = &idp.config.saml_metadata_url
        && let Some(renewed) = service
            .saml_metadata
            .refetch(&idp.config.id, url, &idp.config.issuer)
            .await
        && let Some(keys) = with_pinned(Some(renewed))
    {
        // The IdP may have rolled its certificate over since the metadata was fetched.
        verified = unverified.verify(&keys, &rules);
    }
    let verified = verified.map_err(fail)?;
    let sub = verified.claims.get("sub").and_then(Value::as_str);
    audit.subject = sub.map(str::to_string);
    Ok(Subject {
        idp: idp.clone(),
        claims: verified.claims,
        token_scopes: None,
        // Kept as long as the assertion could still be accepted, skew included.
        single_use: Some((
            format!("saml:{}", idp.config.issuer),
            verified.id,
            verified.expires_at.saturating_add(rules.skew),
        )),
        session_ends_at: verified.session_ends_at,
    })
}

/// IDJAG-SAML-04: a SAML assertion is accepted once, whatever it is exchanged for, at every
/// instance (the replay records). Checked once the exchange is decided, so a refused request
/// does not spend it; a client that needs several grants exchanges it for a refresh token.
pub(super) async fn check_single_use(
    service: &TokenService,
    subject: &Subject,
) -> Result<(), OAuthError> {
    let Some((issuer, id, keep_until)) = &subject.single_use else {
        return Ok(());
    };
    let fresh = service
        .replay
        .record_once(issuer, id, *keep_until)
        .await
        .map_err(|error| {
            tracing::error!(%error, "recording a SAML assertion id failed");
            OAuthError::server_error()
        })?;
    if fresh {
        Ok(())
    } else {
        Err(OAuthError::new(
            subject_error_code(&service.config),
            "subject_saml_replayed",
            "This SAML assertion was already exchanged; each assertion is accepted once",
        )
        .suspicious())
    }
}

/// The enabled identity provider whose issuer is exactly `issuer`: the first gate a subject
/// passes, before its token is verified (and the one [`explain`] applies to claims).
fn trusted_issuer<'r>(
    registry: &'r Registry,
    issuer: &str,
    code: ErrorCode,
) -> Result<&'r Arc<IdentityProvider>, OAuthError> {
    registry
        .idp_by_issuer(issuer)
        .filter(|idp| idp.config.enabled)
        .ok_or_else(|| {
            OAuthError::new(
                code,
                "subject_untrusted_issuer",
                "The subject token was not issued by a trusted identity provider",
            )
            .suspicious()
        })
}

/// The second gate: the identity provider is trusted for this kind of subject token.
fn check_token_type(
    idp: &IdentityProvider,
    token_type: SubjectTokenType,
    code: ErrorCode,
) -> Result<(), OAuthError> {
    if idp
        .config
        .token_types
        .iter()
        .any(|t| t == token_type.config_name())
    {
        Ok(())
    } else {
        Err(OAuthError::new(
            code,
            "subject_token_type_not_accepted",
            "This identity provider is not trusted for this subject_token_type",
        ))
    }
}

/// The error code of a refused subject token: `invalid_request` (RFC 8693 §2.2.2), or
/// `invalid_grant` where `tokens.subject_token_error` asks for it.
pub(super) fn subject_error_code(config: &Config) -> ErrorCode {
    if config.tokens.subject_token_error == "invalid_grant" {
        ErrorCode::InvalidGrant
    } else {
        ErrorCode::InvalidRequest
    }
}

/// Prefixes verification reasons so the audit log tells subject and actor failures apart.
fn subject_reason(error: &JoseError) -> &'static str {
    match error.reason() {
        "token_too_large" => "subject_token_too_large",
        "malformed" => "subject_token_malformed",
        "encrypted_token" => "subject_token_encrypted",
        "alg_none" => "subject_alg_none",
        "alg_not_allowed" => "subject_alg_not_allowed",
        "forbidden_header" => "subject_forbidden_header",
        "crit_unsupported" => "subject_crit_unsupported",
        "wrong_typ" => "subject_wrong_typ",
        "unknown_kid" => "subject_unknown_kid",
        "bad_signature" => "subject_bad_signature",
        "wrong_issuer" => "subject_wrong_issuer",
        "wrong_audience" => "subject_wrong_audience",
        "wrong_azp" => "subject_wrong_azp",
        "expired" => "subject_token_expired",
        "not_yet_valid" => "subject_not_yet_valid",
        "issued_in_future" => "subject_issued_in_future",
        "too_old" => "subject_token_too_old",
        "missing_claim" => "subject_missing_claim",
        "key_unavailable" => "subject_keys_unavailable",
        _ => "subject_token_invalid",
    }
}

/// The scopes granted: request ∩ audience ∩ client (∩ the subject token's own scope for access
/// tokens, CHAIN-A-07). Never more than asked (TX-08, IDJAG-ISSUE-18).
fn grant_scopes(
    requested: &[String],
    audience: &Audience,
    client: &AuthenticatedClient,
    subject: &Subject,
) -> Result<Vec<String>, OAuthError> {
    let subject_scopes = subject.token_scopes.as_ref();
    let granted: Vec<String> = requested
        .iter()
        .filter(|scope| audience.config.scopes.contains(scope))
        .filter(|scope| {
            client.client.config.scopes.is_empty() || client.client.config.scopes.contains(scope)
        })
        .filter(|scope| {
            subject_scopes
                .as_ref()
                .is_none_or(|allowed| allowed.contains(scope))
        })
        .cloned()
        .collect();
    if !requested.is_empty() && granted.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope_not_allowed",
            "None of the requested scopes may be granted for this audience",
        ));
    }
    Ok(granted)
}

/// Step-up (IDJAG-ISSUE-24, RFC 9470): required `acr` values and authentication age.
fn check_authentication_context(
    audience: &Audience,
    subject: &Subject,
    now: i64,
) -> Result<(), OAuthError> {
    if !audience.config.require_acr.is_empty() {
        let acr = subject.claim("acr").and_then(Value::as_str);
        if !acr.is_some_and(|acr| {
            audience
                .config
                .require_acr
                .iter()
                .any(|required| required == acr)
        }) {
            let mut error = OAuthError::new(
                ErrorCode::InsufficientUserAuthentication,
                "acr_insufficient",
                "A stronger user authentication is required for this audience",
            );
            error.acr_values = Some(audience.config.require_acr.join(" "));
            return Err(error);
        }
    }
    if let Some(max_age) = audience.config.max_auth_age_secs {
        let auth_time = subject.claim("auth_time").and_then(Value::as_i64);
        let fresh = auth_time
            .is_some_and(|at| now.saturating_sub(at) <= i64::try_from(max_age).unwrap_or(i64::MAX));
        if !fresh {
            let mut error = OAuthError::new(
                ErrorCode::InsufficientUserAuthentication,
                "authentication_too_old",
                "The user must authenticate again: the authentication is older than this audience allows",
            );
            error.max_age = Some(max_age);
            return Err(error);
        }
    }
    Ok(())
}

/// The `client_id` claim of a grant for `audience` (TEN-02): the client's id there, in the
/// grant's tenant (its mapped `tenant` claim) when the audience scopes client ids to tenants.
fn client_id_at_audience<'a>(
    client: &'a AuthenticatedClient,
    audience: &Audience,
    mapped: &Map<String, Value>,
) -> Result<&'a str, OAuthError> {
    let tenant = mapped.get("tenant").and_then(Value::as_str);
    client
        .client
        .id_at_audience_in_tenant(&audience.config.id, tenant)
        .ok_or_else(|| {
            invalid_target(
                "client_not_registered_in_tenant",
                "This client has no client id at the requested audience for the user's tenant",
            )
        })
}

/// The policy half of an exchange, once the client, the audience and the subject are known:
/// the granted scopes (recorded in `audit` as soon as they are known, so a later denial still
/// shows them), step-up, the identity provider's and the audience's CEL conditions, and the
/// claims mapped for the target domain, which it returns. Nothing here verifies or signs, so
/// `frontdesk policy eval` runs exactly this for claims an operator supplies ([`explain`]).
#[allow(clippy::too_many_arguments)]
fn decide(
    config: &Config,
    client: &AuthenticatedClient,
    audience: &Audience,
    resources: &[String],
    requested_scopes: &[String],
    authorization_details: Option<&Value>,
    subject: &Subject,
    actor: Option<&Map<String, Value>>,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<Map<String, Value>, OAuthError> {
    let idp = &subject.idp;
    let kind = audience.kind;
    let granted_scopes = grant_scopes(requested_scopes, audience, client, subject)?;
    audit.scopes_granted = granted_scopes.clone();
    super::authorization_details::check_types(
        authorization_details,
        &audience.config.authorization_details_types,
    )?;
    check_authentication_context(audience, subject, now)?;

    // Converting the claims for CEL costs microseconds per request: only when policy exists.
    let needs_policy =
        idp.condition.is_some() || audience.condition.is_some() || !audience.claims.is_empty();
    let input = if needs_policy {
        PolicyInput {
            subject: Value::Object(subject.claims.clone()),
            actor: actor.map(|claims| Value::Object(claims.clone())),
            client: json!({
                "id": client.client.config.client_id,
                "audiences": client.client.config.audiences,
                "auth_method": client.method.as_str(),
            }),
            request: json!({
                "audience": audience.config.issuer,
                "audience_id": audience.config.id,
                "resources": resources,
                "scopes": granted_scopes,
                // IDJAG-ISSUE-20: a condition can hold the details to the scopes and resources.
                "authorization_details": authorization_details.cloned().unwrap_or_else(|| json!([])),
                "requested_token_type": issued_token_type(kind),
            }),
        }
    } else {
        PolicyInput::default()
    };
    let prepared = input.prepare();
    idp_verdict(config, idp, prepared.allows(idp.condition.as_ref()))?;
    match prepared.allows(audience.condition.as_ref()) {
        PolicyDecision::Allow => {}
        PolicyDecision::Deny => {
            return Err(invalid_target(
                "audience_condition_denied",
                "Policy does not allow this subject to obtain a token for the requested audience",
            ));
        }
        PolicyDecision::Error(message) => {
            tracing::warn!(audience = %audience.config.id, %message, "audience condition failed; denying");
            return Err(invalid_target(
                "audience_condition_error",
                "The audience policy could not be evaluated for this subject",
            ));
        }
    }

    // Claims for the target domain (CHAIN-A-06, IDJAG-JWT-05/13/15).
    let mut mapped: Map<String, Value> = Map::new();
    for (claim, expression) in &audience.claims {
        match prepared.string(expression) {
            // IDJAG-JWT-05, AT-02: what is issued names a subject; an empty one is no mapping.
            // A NUL names nothing either, and PostgreSQL could not record it (decisions §30).
            Ok(Some(value)) if (claim == "sub" && value.is_empty()) || value.contains('\0') => {
                tracing::warn!(audience = %audience.config.id, claim = %claim, "claim mapping yielded an empty sub or a NUL; denying");
                return Err(invalid_target(
                    "claim_mapping_error",
                    "The subject could not be mapped into the target domain",
                ));
            }
            Ok(Some(value)) => {
                mapped.insert(claim.clone(), Value::String(value));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(audience = %audience.config.id, claim = %claim, %error, "claim mapping failed; denying");
                return Err(invalid_target(
                    "claim_mapping_error",
                    "The subject could not be mapped into the target domain",
                ));
            }
        }
    }
    // IDJAG-JWT-05: what is issued names its user by `sub` under our `iss`, which must be
    // unique there. While providers of more than one subject namespace are trusted, the
    // subject token's own `sub` could equally be another provider's user: only a mapped one
    // (which can say whose user it is) is issued.
    if idp.sub_shared_with_other_namespaces && !mapped.contains_key("sub") {
        tracing::warn!(audience = %audience.config.id, idp = %idp.config.id, "several subject namespaces and no sub mapping; denying");
        return Err(invalid_target(
            "subject_namespace_ambiguous",
            "Users of several identity providers reach this audience and it does not map sub; \
             its administrator must map sub or give the providers one subject_namespace",
        ));
    }
    Ok(mapped)
}

/// The identity provider's `condition` decided: denial and evaluation failure refuse the subject.
fn idp_verdict(
    config: &Config,
    idp: &IdentityProvider,
    decision: PolicyDecision,
) -> Result<(), OAuthError> {
    match decision {
        PolicyDecision::Allow => Ok(()),
        PolicyDecision::Deny => Err(OAuthError::new(
            subject_error_code(config),
            "idp_condition_denied",
            "The identity provider's policy does not accept this subject",
        )),
        PolicyDecision::Error(message) => {
            tracing::warn!(idp = %idp.config.id, %message, "identity provider condition failed; denying");
            Err(OAuthError::new(
                subject_error_code(config),
                "idp_condition_error",
                "The identity provider's policy could not be evaluated for this subject",
            ))
        }
    }
}

/// The identity provider's `condition` alone, for an exchange that issues no grant for an
/// audience (a SAML assertion for a refresh token): `request.requested_token_type` says so.
pub(super) fn check_identity_provider_condition(
    service: &TokenService,
    client: &AuthenticatedClient,
    subject: &Subject,
    scopes: &[String],
) -> Result<(), OAuthError> {
    let idp = &subject.idp;
    let Some(condition) = idp.condition.as_ref() else {
        return Ok(());
    };
    let input = PolicyInput {
        subject: Value::Object(subject.claims.clone()),
        actor: None,
        client: json!({
            "id": client.client.config.client_id,
            "audiences": client.client.config.audiences,
            "auth_method": client.method.as_str(),
        }),
        request: json!({
            "resources": [],
            "scopes": scopes,
            "requested_token_type": TOKEN_TYPE_REFRESH_TOKEN,
        }),
    };
    idp_verdict(
        &service.config,
        idp,
        input.prepare().allows(Some(condition)),
    )
}

/// Performs a token exchange for an authenticated client.
pub async fn exchange(
    service: &TokenService,
    request: &GrantRequest<'_>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let GrantRequest {
        registry,
        client,
        form,
        proof,
        now,
    } = *request;
    // TX-01, TX-02: required and paired parameters.
    let subject_token = form.required("subject_token")?;
    let subject_type = SubjectTokenType::parse(form.required("subject_token_type")?)?;
    let actor_token = form.single("actor_token")?;
    let actor_token_type = form.single("actor_token_type")?;
    if actor_token.is_some() != actor_token_type.is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token_type_mismatch",
            "actor_token and actor_token_type must be sent together",
        ));
    }
    let requested_uri = form.single("requested_token_type")?;
    if subject_type == SubjectTokenType::Saml2 && requested_uri == Some(TOKEN_TYPE_REFRESH_TOKEN) {
        // IDJAG-SAML-01: the draft's SAML path, an assertion for a refresh token.
        let requested_scopes = parse_scope(form.single("scope")?)?;
        audit.scopes_requested = requested_scopes.clone();
        return super::saml_bootstrap::exchange(
            service,
            registry,
            client,
            subject_token,
            &requested_scopes,
            now,
            audit,
        )
        .await;
    }
    let requested = requested_kind(requested_uri)?;
    let audiences = form.all("audience");
    let resources = parse_resources(form.all("resource"))?;
    let requested_scopes = parse_scope(form.single("scope")?)?;
    let authorization_details =
        super::authorization_details::parse(form.single("authorization_details")?)?;
    audit.audience = audiences
        .first()
        .map(|value| crate::oauth::request::clip(value, 300));
    audit.resources = resources.clone();
    audit.scopes_requested = requested_scopes.clone();
    // A refresh token is examined before the request's token type, target and scopes, so a
    // leaked one is detected (and its family revoked) whatever else the request gets wrong.
    let refresh = if subject_type == SubjectTokenType::RefreshToken {
        Some(refresh_subject::validate(service, client, subject_token, now, audit).await?)
    } else {
        None
    };
    if subject_type == SubjectTokenType::RefreshToken && requested != Some(IssueKind::IdJag) {
        // The ID-JAG draft's refresh-token path (§4.3.3) is for ID-JAGs; chaining grants and
        // access tokens need a subject token from the IdP (docs/decisions.md).
        return Err(OAuthError::invalid_request(
            "refresh_token_requires_id_jag",
            "A refresh token can only be exchanged for an ID-JAG (requested_token_type=urn:ietf:params:oauth:token-type:id-jag)",
        ));
    }

    let audience = resolve_target(
        registry,
        &service.config.issuer,
        requested,
        &audiences,
        &resources,
    )?;
    audit.audience = Some(audience.config.issuer.clone());
    let kind = audience.kind;
    if !client.client.config.audiences.contains(&audience.config.id) {
        return Err(invalid_target(
            "audience_not_allowed_for_client",
            "This client may not request tokens for the requested audience",
        ));
    }

    let subject = match &refresh {
        Some(record) => {
            refresh_subject::check_scopes(record, &requested_scopes)?;
            let (idp, claims) = refresh_subject::current_subject(service, registry, record).await?;
            Subject {
                idp,
                claims,
                token_scopes: Some(record.scopes.clone()),
                single_use: None,
                session_ends_at: None,
            }
        }
        None if subject_type == SubjectTokenType::Saml2 => {
            verify_saml_subject(service, registry, client, subject_token, now, audit).await?
        }
        None => {
            let (idp, verified) = verify_subject(
                service,
                registry,
                client,
                subject_token,
                subject_type,
                now,
                audit,
            )
            .await?;
            Subject::verified(idp, verified, subject_type)
        }
    };
    let idp = subject.idp.clone();
    // Counted once the subject is verified, so forged tokens spend no one's allowance.
    service
        .limits
        .check_verified_subject(&idp.config, subject.sub())?;
    if let Some(per_minute) = audience.config.requests_per_minute
        && let Some(wait) = service
            .limits
            .check_audience(&audience.config.id, per_minute)
    {
        return Err(super::request_limit::over_limit(
            "audience_rate_limited",
            "Grants for this audience exceed the requests it is allowed; retry later",
            wait,
        ));
    }
    // PEERS §3.6: a subject token bound to a key is exchanged only by the key's holder, so an
    // exchange never turns a stolen sender-constrained token into a bearer grant. What is issued
    // is then bound to the same key (below).
    super::dpop::require_possession(
        subject.claim("cnf"),
        proof,
        super::dpop::BoundToken::SubjectToken,
        subject_error_code(&service.config),
    )?;

    let actor = match (actor_token, actor_token_type) {
        (Some(token), Some(token_type)) if kind == IssueKind::AccessToken => {
            let actor_type = SubjectTokenType::parse(token_type)?;
            let (actor_idp, actor) =
                verify_actor(service, registry, client, token, actor_type, now).await?;
            super::dpop::require_possession(
                actor.claim("cnf"),
                proof,
                super::dpop::BoundToken::ActorToken,
                subject_error_code(&service.config),
            )?;
            check_may_act(&subject, &actor_idp, &actor)?;
            Some(actor)
        }
        // IDJAG-ISSUE-15: an actor token is accepted syntactically for ID-JAGs and chaining
        // grants and ignored; no `act` is ever fabricated (TX-11).
        _ => None,
    };

    let mut mapped = decide(
        &service.config,
        client,
        &audience,
        &resources,
        &requested_scopes,
        authorization_details.as_ref(),
        &subject,
        actor.as_ref().map(|actor| actor.claims()),
        now,
        audit,
    )?;
    let granted_scopes = audit.scopes_granted.clone();
    let client_id_at_audience = match kind {
        IssueKind::AccessToken => None,
        IssueKind::IdJag | IssueKind::ChainingGrant => {
            Some(client_id_at_audience(client, &audience, &mapped)?)
        }
    };
    check_single_use(service, &subject).await?;

    let lifetime = audience.config.lifetime_secs.unwrap_or(match kind {
        IssueKind::IdJag => service.config.tokens.id_jag_lifetime_secs,
        IssueKind::ChainingGrant => service.config.tokens.chaining_grant_lifetime_secs,
        IssueKind::AccessToken => service.config.tokens.access_token_lifetime_secs,
    });
    let lifetime = i64::try_from(lifetime).unwrap_or(300);
    let jti = crate::jose::new_jti();
    let expires_at = now + lifetime;
    let sub = mapped
        .remove("sub")
        .unwrap_or_else(|| Value::String(subject.sub().to_string()));

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(service.config.issuer));
    claims.insert("sub".into(), sub);
    claims.insert("jti".into(), json!(jti));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(expires_at));
    match kind {
        IssueKind::IdJag | IssueKind::ChainingGrant => {
            claims.insert("aud".into(), json!(audience.config.issuer));
            claims.insert("client_id".into(), json!(client_id_at_audience));
        }
        IssueKind::AccessToken => {
            // AT-03: the granted resources, or the audience's identifier when none was named.
            let aud = match resources.as_slice() {
                [] => json!(audience.config.issuer),
                [one] => json!(one),
                many => json!(many),
            };
            claims.insert("aud".into(), aud);
            claims.insert("client_id".into(), json!(client.client.config.client_id));
        }
    }
    if kind != IssueKind::AccessToken {
        // A chaining request may name the other domain's AS itself as `resource` (CHAIN
        // §2.3.1); that is the grant's `aud`, not a resource to carry.
        let resources: Vec<&String> = resources
            .iter()
            .filter(|resource| audience.config.resources.contains(resource))
            .collect();
        match resources.as_slice() {
            [] => {}
            [one] => {
                claims.insert("resource".into(), json!(one));
            }
            many => {
                claims.insert("resource".into(), json!(many));
            }
        }
    }
    if !granted_scopes.is_empty() {
        claims.insert("scope".into(), json!(granted_scopes.join(" ")));
    }
    if let Some(details) = &authorization_details {
        claims.insert("authorization_details".into(), details.clone());
    }
    for claim in &audience.config.release {
        if let Some(value) = subject.released(claim) {
            claims.insert(claim.clone(), value.clone());
        }
    }
    for (claim, value) in mapped {
        claims.insert(claim, value);
    }
    if let Some(actor) = &actor {
        claims.insert("act".into(), act_claim(&subject, actor));
    }
    // DPOP-04: an ID-JAG or chaining grant requested with a proof is bound to the proof's key,
    // so only its holder can redeem it; an access token likewise (RFC 9449 §6.1). Without a
    // proof nothing is bound.
    if let Some(proof) = proof {
        super::dpop::bind(&mut claims, proof);
    }

    // Only access tokens are recorded, so only they can be revoked and have a status.
    let status_index = if kind == IssueKind::AccessToken {
        service.assign_status(&mut claims).await?
    } else {
        None
    };
    let typ = match kind {
        IssueKind::IdJag => TYP_ID_JAG,
        IssueKind::ChainingGrant => TYP_CHAINING_GRANT,
        IssueKind::AccessToken => TYP_ACCESS_TOKEN,
    };
    let token = service.keys.sign(typ, &claims).map_err(|error| {
        tracing::error!(%error, "signing failed");
        OAuthError::server_error()
    })?;
    if kind == IssueKind::AccessToken {
        // Recorded so the token can be introspected and revoked (RFC 7662, RFC 7009).
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let client_id = &client.client.config.client_id;
        service
            .record_access_token(
                &jti,
                client_id,
                sub,
                &idp.config.issuer,
                now,
                expires_at,
                status_index,
            )
            .await?;
    }
    audit.issued_jti = Some(jti.clone());
    audit.issued_expires_at = Some(expires_at);
    audit.detail = Some(AuditDetail::of(&ExchangeDetail {
        audience_id: &audience.config.id,
        dpop_jkt: proof.map(|proof| proof.jkt()),
        family_id: refresh.as_ref().map(|record| record.family_id.as_str()),
        identity_provider: &idp.config.id,
        issued_token_type: issued_token_type(kind),
        subject_jti: subject.claim("jti"),
        subject_token_type: subject_type.config_name(),
    }));

    let mut body = json!({
        "access_token": token,
        "issued_token_type": issued_token_type(kind),
        // DPOP-04: an ID-JAG or chaining grant is not an access token, bound or not.
        "token_type": if kind == IssueKind::AccessToken {
            super::dpop::access_token_type(proof)
        } else {
            "N_A"
        },
        "expires_in": lifetime,
    });
    // TOK-07, IDJAG-ISSUE-27, INT-03: scope whenever something was granted.
    if !granted_scopes.is_empty() {
        body["scope"] = json!(granted_scopes.join(" "));
    }
    if let Some(details) = authorization_details {
        body["authorization_details"] = details;
    }
    Ok(TokenResponse { body })
}

/// Verifies an actor token like a subject token (same trust rules), for delegation.
async fn verify_actor(
    service: &TokenService,
    registry: &Registry,
    client: &AuthenticatedClient,
    token: &str,
    token_type: SubjectTokenType,
    now: i64,
) -> Result<(Arc<IdentityProvider>, VerifiedClaims), OAuthError> {
    let mut scratch = AuditEvent::new(now, "actor", crate::store::Decision::Denied);
    verify_subject(
        service,
        registry,
        client,
        token,
        token_type,
        now,
        &mut scratch,
    )
    .await
    .map_err(|mut error| {
        error.reason = match error.reason {
            "subject_token_expired" => "actor_token_expired",
            "subject_untrusted_issuer" => "actor_untrusted_issuer",
            "subject_bad_signature" => "actor_bad_signature",
            _ => "actor_token_invalid",
        };
        error.description = format!("actor_token: {}", error.description);
        error
    })
}

/// Delegation is allowed only when the subject token's `may_act` names the actor (RFC 8693 §4.4).
/// A `may_act` without `iss` names a `sub` of the subject's own user directory: an actor of a
/// provider in another subject namespace (decisions §43) with that `sub` is someone else.
fn check_may_act(
    subject: &Subject,
    actor_idp: &IdentityProvider,
    actor: &VerifiedClaims,
) -> Result<(), OAuthError> {
    let allowed = subject.claim("may_act").is_some_and(|may_act| {
        may_act.get("sub").and_then(Value::as_str) == Some(actor.sub())
            && match may_act.get("iss") {
                None => actor_idp.subject_namespace() == subject.idp.subject_namespace(),
                Some(Value::String(iss)) => iss == actor.iss(),
                // Names no issuer the actor could have; never read as absent.
                Some(_) => false,
            }
    });
    if allowed {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "delegation_not_permitted",
            "The subject token does not permit this actor (may_act)",
        ))
    }
}

/// The `act` claim: the actor, with any delegation chain of the subject nested inside (TX-11).
fn act_claim(subject: &Subject, actor: &VerifiedClaims) -> Value {
    let mut act = json!({ "sub": actor.sub(), "iss": actor.iss() });
    if let Some(prior) = subject.claim("act") {
        act["act"] = prior.clone();
    }
    act
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resource` per RFC 8707: an absolute URI without a fragment, else `invalid_target`
    /// (TX-03, IDJAG-ISSUE-16).
    #[test]
    fn resources_must_be_absolute_without_fragment_tx_03() {
        assert!(parse_resources(vec!["https://api.example/mcp"]).is_ok());
        assert_eq!(
            parse_resources(vec!["https://x/#f"])
                .expect_err("fragment")
                .code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            parse_resources(vec!["not a uri"])
                .expect_err("relative")
                .code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            parse_resources(vec!["https://a/", "https://a/"])
                .expect("dedup")
                .len(),
            1
        );
    }

    /// Unknown subject and requested token type URNs are `invalid_request` (TX-09); the
    /// hyphenated `id-token` spelling is no alias of `id_token` (INT-09, not offered).
    #[test]
    fn unknown_token_types_are_invalid_request_tx_09() {
        assert_eq!(
            SubjectTokenType::parse("urn:x:unknown")
                .expect_err("unknown")
                .code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            requested_kind(Some("urn:x:unknown"))
                .expect_err("unknown")
                .code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            requested_kind(Some(TOKEN_TYPE_ID_JAG)).expect("id-jag"),
            Some(IssueKind::IdJag)
        );
        assert_eq!(
            SubjectTokenType::parse("urn:ietf:params:oauth:token-type:id-token")
                .expect_err("INT-09")
                .reason,
            "unknown_subject_token_type"
        );
    }

    /// CHAIN-A-07: the scopes a `jwt` or `access_token` subject token carries (`scope`, or `scp`
    /// as Okta and Entra write it; a string or an array) bound what it is exchanged for. A claim
    /// of another type (a number, an object, `null`) bounds it to nothing; it used to lift the
    /// bound, as if the token carried no scope claim at all.
    #[test]
    fn a_subject_scope_claim_of_another_type_grants_nothing_chain_a_07() {
        let scopes = |claims: Value, token_type| {
            token_scopes(claims.as_object().expect("an object"), token_type)
        };
        let read = Some(vec!["read".to_string()]);
        for token_type in [SubjectTokenType::AccessToken, SubjectTokenType::Jwt] {
            assert_eq!(scopes(json!({ "scope": "read" }), token_type), read);
            assert_eq!(scopes(json!({ "scp": ["read", 7] }), token_type), read);
            assert_eq!(scopes(json!({}), token_type), None, "no claim, no bound");
            for malformed in [
                json!({ "scope": 42 }),
                json!({ "scope": { "read": true } }),
                json!({ "scope": null }),
                json!({ "scp": true }),
                json!({ "scope": 1, "scp": "read write" }),
            ] {
                assert_eq!(
                    scopes(malformed.clone(), token_type),
                    Some(Vec::new()),
                    "{malformed}"
                );
            }
        }
        // ID tokens and SAML assertions carry no scopes of their own.
        assert_eq!(
            scopes(json!({ "scope": 42 }), SubjectTokenType::IdToken),
            None
        );
    }

    /// TX-14: `requested_token_type` selects the profile; absent, the audience decides (TX-04,
    /// docs/decisions.md §11).
    #[test]
    fn the_requested_token_type_selects_the_profile_tx_14() {
        assert_eq!(requested_kind(None).expect("absent"), None);
        assert_eq!(
            requested_kind(Some(TOKEN_TYPE_JWT)).expect("jwt"),
            Some(IssueKind::ChainingGrant)
        );
        assert_eq!(
            requested_kind(Some(TOKEN_TYPE_ACCESS_TOKEN)).expect("access token"),
            Some(IssueKind::AccessToken)
        );
        assert_eq!(
            requested_kind(Some(TOKEN_TYPE_REFRESH_TOKEN))
                .expect_err("only the SAML path issues refresh tokens")
                .code,
            ErrorCode::InvalidRequest
        );
    }
}

/// A question for [`explain`]: the request a client would send, with the subject token's
/// claims instead of the token. Also the body of `POST /admin/api/v1/policy/eval`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuestion {
    /// The requesting client.
    pub client_id: String,
    /// The subject token's claims as verification would yield them (`iss` names the identity
    /// provider, `sub` the user).
    pub claims: Map<String, Value>,
    /// `subject_token_type` (a URI or a short name such as `id_token`; default `id_token`).
    pub subject_token_type: Option<String>,
    /// `audience`, if the request names one.
    pub audience: Option<String>,
    /// `resource` values.
    #[serde(default)]
    pub resources: Vec<String>,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `requested_token_type`.
    pub requested_token_type: Option<String>,
    /// `authorization_details` (RFC 9396), as the JSON the request would carry.
    #[serde(default)]
    pub authorization_details: Option<Value>,
}

/// What [`explain`] found: the decision a token exchange would reach, and what it would issue.
#[derive(Debug, serde::Serialize)]
pub struct Explanation {
    /// `issued` or `denied`.
    pub decision: &'static str,
    /// The audit log's reason code of a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The OAuth error the client would receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Its `error_description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// The identity provider the claims' `iss` names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// The audience resolved from `audience` or `resource`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The token type that would be issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// Scopes that would be granted.
    pub scopes_granted: Vec<String>,
    /// Claims the audience's mappings and `release` list would put in the token, `sub` included.
    pub claims: Map<String, Value>,
}

/// `frontdesk policy eval`: runs a token exchange's target resolution and policy ([`decide`],
/// the same code the token endpoint runs) for a subject given as claims, so that trust and CEL
/// changes can be tested, in CI too, before any user meets them. The subject token's own checks
/// (signature, lifetimes, `aud`, the identity provider's allowed clients and token types) are
/// not repeated: the claims stand for a token that passed them. Nothing is signed or recorded.
pub fn explain(
    config: &Config,
    registry: &Registry,
    question: &PolicyQuestion,
    now: i64,
) -> Explanation {
    let mut explanation = Explanation {
        decision: "denied",
        reason: None,
        error: None,
        error_description: None,
        identity_provider: None,
        audience: None,
        issued_token_type: None,
        scopes_granted: Vec::new(),
        claims: Map::new(),
    };
    if let Err(error) = explain_into(config, registry, question, now, &mut explanation) {
        explanation.reason = Some(error.reason.to_string());
        explanation.error = Some(error.code.as_str());
        explanation.error_description = Some(error.description.clone());
    }
    explanation
}

fn explain_into(
    config: &Config,
    registry: &Registry,
    question: &PolicyQuestion,
    now: i64,
    explanation: &mut Explanation,
) -> Result<(), OAuthError> {
    let Some(client) = registry.client(&question.client_id) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client_unknown",
            "No client is registered with this client_id",
        ));
    };
    let method = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ]
    .into_iter()
    .find(|method| method.as_str() == client.config.auth_method)
    .unwrap_or(AuthMethod::None);
    let client = AuthenticatedClient {
        client: client.clone(),
        method,
    };
    let subject_type = SubjectTokenType::parse(
        question
            .subject_token_type
            .as_deref()
            .map(|name| match name {
                "id_token" => "urn:ietf:params:oauth:token-type:id_token",
                "access_token" => "urn:ietf:params:oauth:token-type:access_token",
                "jwt" => "urn:ietf:params:oauth:token-type:jwt",
                "saml2" => TOKEN_TYPE_SAML2,
                other => other,
            })
            .unwrap_or("urn:ietf:params:oauth:token-type:id_token"),
    )?;
    let requested = requested_kind(question.requested_token_type.as_deref())?;
    let resources = parse_resources(question.resources.iter().map(String::as_str).collect())?;
    let requested_scopes = parse_scope(question.scope.as_deref())?;
    let audiences: Vec<&str> = question.audience.as_deref().into_iter().collect();
    let audience = resolve_target(registry, &config.issuer, requested, &audiences, &resources)?;
    explanation.audience = Some(audience.config.id.clone());
    explanation.issued_token_type = Some(issued_token_type(audience.kind));
    if !client.client.config.audiences.contains(&audience.config.id) {
        return Err(invalid_target(
            "audience_not_allowed_for_client",
            "This client may not request tokens for the requested audience",
        ));
    }
    // The identity provider's own gates, as `verify_subject` applies them before the token.
    let code = subject_error_code(config);
    let issuer = question
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let idp = trusted_issuer(registry, issuer, code)?;
    explanation.identity_provider = Some(idp.config.id.clone());
    if subject_type == SubjectTokenType::RefreshToken {
        return Err(OAuthError::invalid_request(
            "refresh_token_not_accepted_here",
            "policy eval takes the claims of an id_token, access_token or jwt subject token",
        ));
    }
    check_token_type(idp, subject_type, code)?;
    let Some(sub) = question.claims.get("sub").and_then(Value::as_str) else {
        return Err(OAuthError::new(
            code,
            "subject_missing_claim",
            "The claims have no sub",
        ));
    };
    let sub = sub.to_string();
    let subject = Subject {
        idp: idp.clone(),
        token_scopes: token_scopes(&question.claims, subject_type),
        claims: question.claims.clone(),
        single_use: None,
        session_ends_at: None,
    };
    if let Some(details) = &question.authorization_details {
        super::authorization_details::parse(Some(&details.to_string()))?;
    }
    let mut scratch = AuditEvent::new(now, "policy_eval", crate::store::Decision::Denied);
    let mut mapped = decide(
        config,
        &client,
        &audience,
        &resources,
        &requested_scopes,
        question.authorization_details.as_ref(),
        &subject,
        None,
        now,
        &mut scratch,
    )?;
    explanation.scopes_granted = scratch.scopes_granted;
    let mut claims = Map::new();
    claims.insert(
        "sub".into(),
        mapped.remove("sub").unwrap_or(Value::String(sub)),
    );
    for claim in &audience.config.release {
        if let Some(value) = subject.released(claim) {
            claims.insert(claim.clone(), value.clone());
        }
    }
    if audience.kind != IssueKind::AccessToken {
        client_id_at_audience(&client, &audience, &mapped)?;
    }
    claims.extend(mapped);
    explanation.claims = claims;
    explanation.decision = "issued";
    Ok(())
}
