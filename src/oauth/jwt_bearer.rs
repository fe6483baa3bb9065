//! The RFC 7523 jwt-bearer grant (leg 2): redeem an ID-JAG or an identity-chaining grant issued
//! by another trusted issuer for an RFC 9068 access token. Every assertion failure is
//! `invalid_grant` (IDJAG-ACCEPT-26); only client authentication answers `invalid_client`.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::exchange::{TYP_ACCESS_TOKEN, TYP_ID_JAG};
use super::request::parse_scope;
use super::service::{TokenResponse, TokenService};
use super::{ErrorCode, GrantRequest, OAuthError};
use crate::config::ResourceConfig;
use crate::jose::{AudienceRule, JoseError, TypRule, VerifiedClaims, inspect};
use crate::policy::PolicyInput;
use crate::registry::{IdentityProvider, Registry};
use crate::store::{AuditDetail, AuditEvent, ReplayStore, TokenStore};

/// Longest assertion lifetime accepted (`exp - iat`, IDJAG-ACCEPT-08).
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

fn invalid_grant(reason: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, reason, description)
}

pub(super) fn assertion_error(error: JoseError) -> OAuthError {
    let suspicious = error.suggests_forgery();
    let reason = match error.reason() {
        "token_too_large" => "assertion_too_large",
        "malformed" => "assertion_malformed",
        "encrypted_token" => "assertion_encrypted",
        "alg_none" => "assertion_alg_none",
        "alg_not_allowed" => "assertion_alg_not_allowed",
        "forbidden_header" => "assertion_forbidden_header",
        "wrong_typ" => "assertion_wrong_typ",
        "unknown_kid" => "assertion_unknown_kid",
        "bad_signature" => "assertion_bad_signature",
        "wrong_issuer" => "assertion_wrong_issuer",
        "wrong_audience" => "assertion_wrong_audience",
        "expired" => "assertion_expired",
        "not_yet_valid" => "assertion_not_yet_valid",
        "issued_in_future" => "assertion_issued_in_future",
        "lifetime_too_long" => "assertion_lifetime_too_long",
        "missing_claim" => "assertion_missing_claim",
        "invalid_claim" => "assertion_invalid_claim",
        "too_old" => "assertion_too_old",
        "crit_unsupported" => "assertion_crit_unsupported",
        "nested_token" => "assertion_nested_token",
        "key_alg_mismatch" => "assertion_key_alg_mismatch",
        "key_unavailable" => "assertion_keys_unavailable",
        _ => "assertion_invalid",
    };
    invalid_grant(reason, error.description()).suspicious_if(suspicious)
}

/// Which profile an assertion follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `typ: oauth-id-jag+jwt`: the ID-JAG draft's rules.
    IdJag,
    /// Any other JWT grant: the identity-chaining draft's rules.
    Chaining,
}

impl Profile {
    /// Both profiles, in the order answers list them.
    pub(crate) const ALL: [Profile; 2] = [Profile::IdJag, Profile::Chaining];

    /// The `token_types` entry an issuer must be trusted for to have grants of this profile
    /// redeemed.
    fn trusted_token_type(self) -> &'static str {
        match self {
            Profile::IdJag => "id_jag",
            Profile::Chaining => "jwt_grant",
        }
    }

    /// The RFC 8693 token type of grants of this profile: what the issuing server calls the
    /// grant it issued (`issued_token_type`), and so what a client knows it by.
    pub(crate) fn token_type_uri(self) -> &'static str {
        match self {
            Profile::IdJag => super::TOKEN_TYPE_ID_JAG,
            Profile::Chaining => super::TOKEN_TYPE_JWT,
        }
    }
}

/// The identity provider whose grants of `profile` leg 2 redeems from `issuer`, or the
/// `invalid_grant` a redemption gets: never this server's own issuer (IDJAG-ACCEPT-23), else an
/// enabled provider with exactly this issuer (FED-02) trusted for the profile's token type. The
/// one place that decides it, for redemptions and for the issuer-acceptance endpoint
/// (IDJAG-ACCEPT-27), so that the endpoint never tells a client other than what the grant does.
pub(crate) fn trusted_issuer<'r>(
    registry: &'r Registry,
    our_issuer: &str,
    issuer: &str,
    profile: Profile,
) -> Result<&'r Arc<IdentityProvider>, OAuthError> {
    if issuer == our_issuer {
        return Err(invalid_grant(
            "self_issued_assertion",
            "This server does not redeem grants it issued itself",
        )
        .suspicious());
    }
    registry
        .idp_by_issuer(issuer)
        .filter(|idp| idp.accepts(profile.trusted_token_type()))
        .ok_or_else(|| {
            invalid_grant(
                "untrusted_assertion_issuer",
                "The assertion was not issued by an issuer trusted for this grant",
            )
            .suspicious()
        })
}

/// IDJAG-ACCEPT-22: `invalid_grant` unless `idp` may vouch for the client `client_id` (its
/// `allowed_clients`). Shared with the issuer-acceptance endpoint, as [`trusted_issuer`] is.
pub(crate) fn vouches_for_client(
    idp: &IdentityProvider,
    client_id: &str,
) -> Result<(), OAuthError> {
    if idp.vouches_for(client_id) {
        Ok(())
    } else {
        Err(invalid_grant(
            "issuer_not_trusted_for_client",
            "The assertion's issuer is not trusted for this client",
        ))
    }
}

/// The refusal every redemption of `idp`'s grants gets whatever they say, because its
/// subjects would be ambiguous: they are used as they are (`federated`) while issuers of several
/// subject namespaces are trusted for assertions (decisions §43). Shared with the
/// issuer-acceptance endpoint, which tells a client so instead of calling the issuer accepted.
pub(crate) fn ambiguous_subjects(idp: &IdentityProvider) -> Option<OAuthError> {
    let mapped_or_linked = matches!(idp.config.subject_mode.as_str(), "mapped" | "linked");
    (!mapped_or_linked && idp.assertion_sub_shared_with_other_namespaces).then(|| {
        invalid_grant(
            "subject_namespace_ambiguous",
            "Assertions of several issuers are trusted and this issuer's subjects are used \
             as they are; its administrator must set subject_mode to mapped or linked, or \
             give the issuers one subject_namespace",
        )
    })
}

fn is_id_jag_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ.to_ascii_lowercase();
        typ == TYP_ID_JAG || typ == format!("application/{TYP_ID_JAG}")
    })
}

/// Verifies the assertion against its issuer's keys and the profile's rules.
async fn verify_assertion(
    service: &TokenService,
    registry: &Registry,
    assertion: &str,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<(Arc<IdentityProvider>, Profile, VerifiedClaims), OAuthError> {
    let unverified =
        inspect(assertion, service.config.tokens.max_token_bytes).map_err(assertion_error)?;
    let claimed_issuer = unverified.unverified_iss().unwrap_or_default();
    let profile = if is_id_jag_typ(unverified.typ()) {
        Profile::IdJag
    } else {
        Profile::Chaining
    };
    // IDJAG-ACCEPT-23 (never what this server issued itself) and the issuer's trust.
    let idp = trusted_issuer(registry, &service.config.issuer, claimed_issuer, profile)?;
    audit.subject_issuer = Some(idp.config.issuer.clone());
    let (typ, audience) = match profile {
        // IDJAG-ACCEPT-04, -06: exact typ; aud exactly our issuer (string or one-element array).
        Profile::IdJag => (
            TypRule::id_jag(),
            AudienceRule::Single(service.config.issuer.clone()),
        ),
        // CHAIN-B-02: our issuer or our token endpoint; JWTB-11: never another kind of token.
        Profile::Chaining => (
            TypRule::id_token(),
            AudienceRule::AnyOf {
                values: vec![
                    service.config.issuer.clone(),
                    service.token_endpoint.clone(),
                ],
                azp: None,
            },
        ),
    };
    let claims = service
        .verify_from_issuer(
            idp,
            &unverified,
            assertion,
            typ,
            audience,
            Some(MAX_ASSERTION_LIFETIME_SECS),
            now,
        )
        .await
        .map_err(assertion_error)?;
    audit.subject = Some(claims.sub().to_string());
    Ok((idp.clone(), profile, claims))
}

/// Resolves the local subject (IDJAG-ACCEPT-12, CHAIN-B-03).
async fn resolve_subject(
    service: &TokenService,
    idp: &IdentityProvider,
    claims: &VerifiedClaims,
) -> Result<String, OAuthError> {
    match idp.config.subject_mode.as_str() {
        "mapped" => {
            let Some(mapping) = &idp.subject_mapping else {
                return Err(invalid_grant(
                    "subject_unmapped",
                    "The subject cannot be mapped",
                ));
            };
            let input = PolicyInput {
                subject: Value::Object(claims.claims().clone()),
                ..PolicyInput::default()
            };
            match input.prepare().string(mapping) {
                Ok(Some(subject)) if !subject.is_empty() => Ok(subject),
                Ok(_) => Err(invalid_grant(
                    "subject_unmapped",
                    "The assertion's subject does not map to a local subject",
                )),
                Err(error) => {
                    tracing::warn!(idp = %idp.config.id, %error, "subject mapping failed; denying");
                    Err(invalid_grant(
                        "subject_mapping_error",
                        "The assertion's subject could not be mapped",
                    ))
                }
            }
        }
        "linked" => {
            let linked = service
                .store
                .linked_subject(&idp.config.issuer, claims.sub())
                .await
                .map_err(|error| {
                    tracing::error!(%error, "subject link lookup failed");
                    OAuthError::server_error()
                })?;
            linked.ok_or_else(|| {
                invalid_grant(
                    "subject_not_linked",
                    "The assertion's subject is not linked to a local subject",
                )
            })
        }
        // Federated: `sub` is unique per single-tenant issuer (TEN-03), so the pair is the
        // identity; the access token's `sub` is the issuer's `sub`, and `iss` of the assertion
        // is audited. A multi-tenant issuer's `sub` is unique per tenant only: it takes `mapped`
        // with the tenant in the mapping (docs/mcp.md). With issuers of several subject
        // namespaces trusted, the access token (which does not name the assertion's issuer)
        // could make one issuer's user another's: refused, as leg 1 refuses (decisions §43).
        _ => match ambiguous_subjects(idp) {
            Some(refusal) => {
                tracing::warn!(idp = %idp.config.id, "several assertion issuers' subject namespaces and a federated subject; denying");
                Err(refusal)
            }
            None => Ok(claims.sub().to_string()),
        },
    }
}

/// Picks the resources to grant (IDJAG-ACCEPT-14/15, EMA-04/08). The issuer-acceptance endpoint
/// checks the resource a client names with it too.
pub(crate) fn grant_resources(
    registry: &Registry,
    asserted: &[String],
    requested: &[String],
) -> Result<Vec<Arc<ResourceConfig>>, OAuthError> {
    for resource in asserted {
        if registry.resource(resource).is_none() {
            return Err(invalid_grant(
                "assertion_resource_unknown",
                "The assertion names a resource this server does not protect",
            ));
        }
    }
    let mut chosen: Vec<&String> = if !requested.is_empty() {
        if !asserted.is_empty() && requested.iter().any(|r| !asserted.contains(r)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource_outside_assertion",
                "A requested resource is not among the assertion's resources",
            ));
        }
        requested.iter().collect()
    } else {
        asserted.iter().collect()
    };
    // A resource named twice is one audience: the token's `aud` lists each once.
    let mut seen = std::collections::HashSet::new();
    chosen.retain(|resource| seen.insert(*resource));
    if chosen.is_empty() {
        return registry
            .default_resource()
            .map(|resource| vec![resource.clone()])
            .ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "no_resource",
                    "Name the resource the access token is for (the resource parameter)",
                )
            });
    }
    chosen
        .into_iter()
        .map(|resource| {
            registry.resource(resource).cloned().ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "unknown_resource",
                    "The requested resource is not protected by this server",
                )
            })
        })
        .collect()
}

/// What a redemption's audit event adds to its columns: the lineage from the incoming grant to
/// the issued token, typed so the detail is one string written once (`AuditDetail`); members in
/// alphabetical order, as the log has always stored them.
#[derive(serde::Serialize)]
struct RedemptionDetail<'a> {
    assertion_issuer: &'a str,
    /// `null` when the grant has none.
    assertion_jti: Option<&'a str>,
    assertion_subject: &'a str,
    /// The thumbprint of the DPoP key the access token is bound to, when it is bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_jkt: Option<&'a str>,
    identity_provider: &'a str,
    /// `id-jag` or `chaining`.
    profile: &'static str,
}

/// The assertion's `resource` claim: absent, one URI, or a non-empty array of them (IDJAG §3.1,
/// RFC 8707). Anything else is an invalid claim (IDJAG-ACCEPT-15), never "no resource", which
/// would let the client pick any resource we protect.
fn asserted_resources(value: Option<&Value>) -> Result<Vec<String>, OAuthError> {
    let invalid = || assertion_error(JoseError::InvalidClaim("resource"));
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(many)) if !many.is_empty() => many
            .iter()
            .map(|item| item.as_str().map(str::to_string).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// Redeems an assertion for an access token.
pub async fn redeem(
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
    // IDJAG-ACCEPT-01.
    let assertion = form.required("assertion")?;
    let requested_resources: Vec<String> =
        form.all("resource").iter().map(|r| r.to_string()).collect();
    let requested_scopes = parse_scope(form.single("scope")?)?;
    audit.resources = requested_resources.clone();
    audit.scopes_requested = requested_scopes.clone();

    let (idp, profile, claims) = verify_assertion(service, registry, assertion, now, audit).await?;
    // Before anything is recorded: a refused redemption leaves a single-use grant unspent.
    service
        .limits
        .check_verified_subject(&idp.config, claims.sub())?;
    let client_id = &client.client.config.client_id;
    // IDJAG-ACCEPT-09/10: the ID-JAG names the client it was issued to, and only that client may
    // redeem it. Chaining grants may omit the claim; when present it must match too.
    // A `client_id` that is not a string binds the grant to no client we could compare; it is
    // invalid, not absent.
    let claimed_client = match claims.claim("client_id") {
        None => None,
        Some(Value::String(claimed)) => Some(claimed.as_str()),
        Some(_) => return Err(assertion_error(JoseError::InvalidClaim("client_id"))),
    };
    match (profile, claimed_client) {
        (_, Some(claimed)) if claimed == client_id => {}
        (Profile::Chaining, None) => {}
        (Profile::IdJag, None) => {
            return Err(assertion_error(JoseError::MissingClaim("client_id")));
        }
        (_, Some(_)) => {
            return Err(invalid_grant(
                "client_id_mismatch",
                "The assertion was issued to another client",
            )
            .suspicious());
        }
    }
    vouches_for_client(&idp, client_id)?;

    // IDJAG §9.9.1.2: an assertion bound to a key is redeemed only with a proof of that key
    // (DPOP-05, DPOP-06); redeeming it as a bearer grant would drop the binding its issuer made.
    super::dpop::require_possession(
        claims.claim("cnf"),
        proof,
        super::dpop::BoundToken::Assertion,
        ErrorCode::InvalidGrant,
    )?;
    let asserted_resources = asserted_resources(claims.claim("resource"))?;
    let resources = grant_resources(registry, &asserted_resources, &requested_resources)?;
    audit.resources = resources.iter().map(|r| r.resource.clone()).collect();
    audit.audience = audit.resources.first().cloned();
    // DPOP-08: a resource that takes only sender-constrained tokens gets no bearer token.
    if proof.is_none() && resources.iter().any(|resource| resource.require_dpop) {
        return Err(invalid_grant(
            "dpop_required",
            "This resource accepts only DPoP-bound access tokens; send a DPoP proof",
        ));
    }

    // Scopes: assertion ∩ request (if sent) ∩ resources ∩ client (IDJAG-ACCEPT-16, EMA-09).
    let asserted_scopes: Vec<String> = claims
        .str_claim("scope")
        .map(|scope| {
            scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let candidates = if requested_scopes.is_empty() {
        asserted_scopes.clone()
    } else {
        requested_scopes.clone()
    };
    let granted_scopes: Vec<String> = candidates
        .into_iter()
        .filter(|scope| asserted_scopes.contains(scope))
        .filter(|scope| {
            resources
                .iter()
                .all(|resource| resource.scopes.contains(scope))
        })
        .filter(|scope| {
            client.client.config.scopes.is_empty() || client.client.config.scopes.contains(scope)
        })
        .collect();
    if !requested_scopes.is_empty() && granted_scopes.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope_not_granted",
            "None of the requested scopes is granted by the assertion for this resource",
        ));
    }
    audit.scopes_granted = granted_scopes.clone();
    // A type is granted when every granted resource takes it, as a scope is.
    let authorization_details = super::authorization_details::grant(
        claims.claim("authorization_details"),
        form.single("authorization_details")?,
        |kind| {
            resources.iter().all(|resource| {
                resource
                    .authorization_details_types
                    .iter()
                    .any(|accepted| accepted == kind)
            })
        },
    )?;

    // The issuer's condition sees what would be granted, as at leg 1: a policy on
    // `request.scopes` or `request.resources` cannot be bypassed by leaving `scope` or
    // `resource` out of the request, which grants the assertion's (EMA-14).
    let input = PolicyInput {
        subject: Value::Object(claims.claims().clone()),
        actor: None,
        client: json!({
            "id": client_id,
            "auth_method": client.method.as_str(),
        }),
        request: json!({
            "grant_type": super::GRANT_JWT_BEARER,
            "resources": audit.resources,
            "scopes": granted_scopes,
            "authorization_details": authorization_details.clone().unwrap_or_else(|| json!([])),
        }),
    };
    match input.prepare().allows(idp.condition.as_ref()) {
        crate::policy::Decision::Allow => {}
        crate::policy::Decision::Deny => {
            return Err(invalid_grant(
                "idp_condition_denied",
                "The issuer's policy does not accept this assertion",
            ));
        }
        crate::policy::Decision::Error(message) => {
            tracing::warn!(idp = %idp.config.id, %message, "identity provider condition failed; denying");
            return Err(invalid_grant(
                "idp_condition_error",
                "The issuer's policy could not be evaluated for this assertion",
            ));
        }
    }

    let subject = resolve_subject(service, &idp, &claims).await?;

    // IDJAG-ACCEPT-11 / EMA-06: single use unless every granted resource allows re-use.
    if resources
        .iter()
        .any(|resource| resource.single_use_assertions)
    {
        let jti = claims.jti().unwrap_or_default();
        let fresh = service
            .replay
            .record_once(
                &format!("assertion:{}", idp.config.issuer),
                jti,
                claims.exp(),
            )
            .await
            .map_err(|error| {
                tracing::error!(%error, "recording an assertion jti failed");
                OAuthError::server_error()
            })?;
        if !fresh {
            return Err(invalid_grant(
                "assertion_replayed",
                "This assertion was already redeemed (jti replay)",
            )
            .suspicious());
        }
    }

    let lifetime = resources
        .iter()
        .filter_map(|resource| resource.access_token_lifetime_secs)
        .min()
        .unwrap_or(service.config.tokens.access_token_lifetime_secs);
    let lifetime = i64::try_from(lifetime).unwrap_or(600);
    let jti = crate::jose::new_jti();
    let expires_at = now + lifetime;
    let aud = match resources.as_slice() {
        [one] => json!(one.resource),
        many => json!(many.iter().map(|r| r.resource.clone()).collect::<Vec<_>>()),
    };
    let mut access = Map::new();
    access.insert("iss".into(), json!(service.config.issuer));
    access.insert("sub".into(), json!(subject));
    access.insert("aud".into(), aud.clone());
    access.insert("client_id".into(), json!(client_id));
    access.insert("iat".into(), json!(now));
    access.insert("exp".into(), json!(expires_at));
    access.insert("jti".into(), json!(jti));
    if !granted_scopes.is_empty() {
        access.insert("scope".into(), json!(granted_scopes.join(" ")));
    }
    if let Some(details) = &authorization_details {
        access.insert("authorization_details".into(), details.clone());
    }
    // AT-05 and AT-10: authentication context and delegation carried over; then the claims the
    // issuer's trust configuration transcribes (CHAIN-B-09), none of them reserved.
    let transcribed = idp.config.transcribe_claims.iter().map(String::as_str);
    for claim in ["auth_time", "acr", "amr", "act", "tenant"]
        .into_iter()
        .chain(transcribed)
    {
        if let Some(value) = claims.claim(claim) {
            access.insert(claim.into(), value.clone());
        }
    }
    // DPOP-05, DPOP-07: with a proof (the assertion's key, if it named one) the access token is
    // bound to that key.
    if let Some(proof) = proof {
        super::dpop::bind(&mut access, proof);
    }
    let status_index = service.assign_status(&mut access).await?;
    let token = service
        .keys
        .sign(TYP_ACCESS_TOKEN, &access)
        .map_err(|error| {
            tracing::error!(%error, "signing failed");
            OAuthError::server_error()
        })?;
    service
        .record_access_token(
            &jti,
            client_id,
            &subject,
            &idp.config.issuer,
            now,
            expires_at,
            status_index,
        )
        .await?;
    audit.issued_jti = Some(jti);
    audit.issued_expires_at = Some(expires_at);
    // Lineage: the incoming assertion's iss/jti linked to the issued token.
    audit.detail = Some(AuditDetail::of(&RedemptionDetail {
        assertion_issuer: claims.iss(),
        assertion_jti: claims.jti(),
        assertion_subject: claims.sub(),
        dpop_jkt: proof.map(|proof| proof.jkt()),
        identity_provider: &idp.config.id,
        profile: if profile == Profile::IdJag {
            "id-jag"
        } else {
            "chaining"
        },
    }));

    let mut body = json!({
        "access_token": token,
        "token_type": super::dpop::access_token_type(proof),
        "expires_in": lifetime,
    });
    if !granted_scopes.is_empty() {
        body["scope"] = json!(granted_scopes.join(" "));
    }
    if let Some(details) = authorization_details {
        body["authorization_details"] = details;
    }
    // IDJAG-ACCEPT-19.
    body["resource"] = aud;
    Ok(TokenResponse { body })
}
