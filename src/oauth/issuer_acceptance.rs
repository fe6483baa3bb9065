//! Issuer-acceptance discovery (IDJAG §9.5 "Metadata Disclosure", IDJAG-ACCEPT-27): an
//! authenticated client asks whether an ID-JAG (or identity-chaining grant) from one issuer
//! would be accepted for it at the jwt-bearer grant, optionally for one resource (RFC 8707).
//!
//! Public metadata never lists the issuers trusted for leg 2 (the draft forbids disclosing allow
//! lists there); this endpoint answers one issuer at a time, only for the client that proved its
//! identity, and only with that client's own view: an issuer that is unknown, disabled, this
//! server itself, trusted for no grant, or trusted for other clients only gets one and the same
//! `{"accepted": false}`. The answer is computed by the functions the grant itself decides with
//! (`jwt_bearer::trusted_issuer`, `vouches_for_client`, `ambiguous_subjects`,
//! `grant_resources`), so it cannot disagree with a redemption. "Accepted" says that the issuer
//! is trusted for this client; a particular grant is still verified in full when redeemed (its
//! signature, claims, the issuer's CEL `condition`, replay, limits).

use serde_json::{Value, json};

use super::jwt_bearer::{self, Profile};
use super::request::{FormParams, clip};
use super::service::{RequestContext, TokenService};
use super::{GrantType, OAuthError};
use crate::registry::Registry;
use crate::store::{AuditDetail, AuditEvent, Decision};

/// The audit event of every request to the endpoint, answered or refused.
pub const EVENT: &str = "issuer_acceptance";

/// Longest issuer recorded in the audit log: the value is whatever the client sent.
const MAX_AUDITED_ISSUER_CHARS: usize = 255;

/// What the jwt-bearer grant would do with grants from one issuer for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Grants of these profiles from the issuer are redeemed for the client (each one still
    /// verified in full).
    Accepted(Vec<Profile>),
    /// Not accepted, for a reason the client is not told: every such issuer gets the same
    /// answer, so the endpoint is no oracle for other clients' trust or for which issuers exist.
    /// The reason (the grant's own refusal reason) goes to the audit log only.
    NotAccepted(&'static str),
    /// The issuer is trusted for the client, but every redemption is refused for this reason,
    /// which the client is told: the grant's error would tell it the same, and it names a fix
    /// for the server's administrator.
    Refused(&'static str),
}

impl Acceptance {
    /// The reason recorded in the audit event.
    fn audit_reason(&self) -> &'static str {
        match self {
            Acceptance::Accepted(_) => "issuer_accepted",
            Acceptance::NotAccepted(reason) | Acceptance::Refused(reason) => reason,
        }
    }

    /// The `answer` label of `frontdesk_issuer_acceptance_total`.
    fn metric_label(&self) -> &'static str {
        match self {
            Acceptance::Accepted(_) => "accepted",
            Acceptance::NotAccepted(_) | Acceptance::Refused(_) => "not_accepted",
        }
    }

    /// The JSON answer for `issuer` (and `resource`, echoed when the client named one).
    pub fn body(&self, issuer: &str, resource: Option<&str>) -> Value {
        let mut body = json!({ "issuer": issuer, "accepted": false });
        match self {
            Acceptance::Accepted(profiles) => {
                body["accepted"] = json!(true);
                body["grant_types"] = json!([super::GRANT_JWT_BEARER]);
                body["assertion_types"] = profiles
                    .iter()
                    .map(|profile| profile.token_type_uri())
                    .collect();
            }
            Acceptance::NotAccepted(_) => {}
            Acceptance::Refused(reason) => body["reason"] = json!(reason),
        }
        if let Some(resource) = resource {
            body["resource"] = json!(resource);
        }
        body
    }
}

/// The grant's decision on grants from `issuer` for the client `client_id`, before any grant is
/// seen: which profiles the issuer is trusted for ([`jwt_bearer::trusted_issuer`], which also
/// refuses this server's own issuer), whether it vouches for the client (IDJAG-ACCEPT-22) and
/// whether its subjects are refused whatever they are (decisions §43).
pub fn decide(registry: &Registry, our_issuer: &str, client_id: &str, issuer: &str) -> Acceptance {
    let mut profiles = Vec::new();
    let mut provider = None;
    let mut untrusted = "untrusted_assertion_issuer";
    for profile in Profile::ALL {
        match jwt_bearer::trusted_issuer(registry, our_issuer, issuer, profile) {
            Ok(idp) => {
                profiles.push(profile);
                provider = Some(idp);
            }
            Err(error) => untrusted = error.reason,
        }
    }
    // One provider per issuer: every profile it is trusted for names the same one.
    let Some(idp) = provider else {
        return Acceptance::NotAccepted(untrusted);
    };
    if let Err(error) = jwt_bearer::vouches_for_client(idp, client_id) {
        return Acceptance::NotAccepted(error.reason);
    }
    if let Some(refusal) = jwt_bearer::ambiguous_subjects(idp) {
        return Acceptance::Refused(refusal.reason);
    }
    Acceptance::Accepted(profiles)
}

/// `POST /issuer-acceptance`: authenticates the client exactly as the token endpoint does
/// (the same methods, the failed-authentication quota, argon2 admitted against it), then
/// answers for `issuer` and the optional `resource`. Every request is audited as
/// [`EVENT`], answered (`issued`, with the decision's reason) or refused (`denied`).
pub async fn answer(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
) -> Result<Value, OAuthError> {
    let mut audit = AuditEvent::new(context.now, EVENT, Decision::Denied);
    audit.request_id = context.request_id.clone();
    audit.grant_type = Some(super::GRANT_JWT_BEARER.to_string());
    let result = decide_request(service, form, context, &mut audit).await;
    let (answer_label, outcome) = match result {
        Ok((acceptance, body)) => {
            audit.decision = Decision::Issued;
            audit.reason = Some(acceptance.audit_reason().to_string());
            audit.detail = Some(AuditDetail::of(&json!({
                "accepted": matches!(acceptance, Acceptance::Accepted(_)),
            })));
            (acceptance.metric_label(), Ok(body))
        }
        Err(error) => {
            audit.error_code = Some(error.code.as_str().to_string());
            audit.reason = Some(error.reason.to_string());
            ("refused", Err(error))
        }
    };
    service.audit.record(audit).await.map_err(|error| {
        tracing::error!(%error, "writing the audit event failed; refusing to answer without it");
        OAuthError::server_error()
    })?;
    metrics::counter!("frontdesk_issuer_acceptance_total", "answer" => answer_label).increment(1);
    outcome
}

async fn decide_request(
    service: &TokenService,
    form: &FormParams,
    context: &RequestContext,
    audit: &mut AuditEvent,
) -> Result<(Acceptance, Value), OAuthError> {
    let client = service
        .authenticate_endpoint_caller(form, context, audit)
        .await?;
    // The grant's own refusals of this client, whatever the issuer (a public client, one not
    // registered for jwt-bearer), with its codes.
    super::service::client_may_use_grant(&client.client, GrantType::JwtBearer)?;
    // Asked only of a client that proved its identity: nothing about the issuer is said, or
    // recorded, before that.
    let issuer = form.required("issuer")?;
    audit.subject_issuer = Some(clip(issuer, MAX_AUDITED_ISSUER_CHARS));
    let resource = match form.all("resource").as_slice() {
        [] => None,
        [one] => Some(*one),
        _ => {
            return Err(OAuthError::invalid_request(
                "repeated_parameter",
                "Ask about one resource at a time",
            ));
        }
    };
    let registry = service.trust.current();
    if let Some(resource) = resource {
        audit.resources = vec![clip(resource, MAX_AUDITED_ISSUER_CHARS)];
        // The grant's own check of a requested resource: one this server protects.
        jwt_bearer::grant_resources(&registry, &[], &[resource.to_string()])?;
    }
    let acceptance = decide(
        &registry,
        &service.config.issuer,
        &client.client.config.client_id,
        issuer,
    );
    let body = acceptance.body(issuer, resource);
    Ok((acceptance, body))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::{ClientConfig, IdentityProviderConfig};

    const US: &str = "https://ras.example.com";
    const PARTNER: &str = "https://idp.partner.example";

    /// A trusted issuer as the configuration file would declare it (its defaults otherwise).
    fn idp(
        id: &str,
        issuer: &str,
        token_types: &[&str],
        allowed: &[&str],
    ) -> IdentityProviderConfig {
        serde_json::from_value(json!({
            "id": id,
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "algorithms": ["ES256"],
            "token_types": token_types,
            "subject_mode": "federated",
            "allowed_clients": allowed,
        }))
        .expect("a valid identity provider")
    }

    fn registry(idps: Vec<IdentityProviderConfig>) -> Registry {
        Registry::build(idps, vec![], Vec::<ClientConfig>::new(), "test".into())
    }

    /// IDJAG-ACCEPT-27: an issuer trusted for another client only, an unknown issuer, a
    /// disabled one, one trusted only for leg-1 subject tokens and this server's own issuer are
    /// all the same answer to the client; an issuer trusted for it names the profiles.
    #[test]
    fn only_the_clients_own_trust_is_told_idjag_accept_27() {
        let mut disabled = idp("off", "https://off.example", &["id_jag"], &[]);
        disabled.enabled = false;
        let registry = registry(vec![
            idp("partner", PARTNER, &["id_jag", "jwt_grant"], &["agent"]),
            idp("leg-1", "https://sso.example", &["id_token"], &[]),
            disabled,
        ]);
        assert_eq!(
            decide(&registry, US, "agent", PARTNER),
            Acceptance::Accepted(vec![Profile::IdJag, Profile::Chaining])
        );
        let refused = [
            (PARTNER, "issuer_not_trusted_for_client"),
            ("https://unknown.example", "untrusted_assertion_issuer"),
            ("https://off.example", "untrusted_assertion_issuer"),
            ("https://sso.example", "untrusted_assertion_issuer"),
            (US, "self_issued_assertion"),
        ];
        for (issuer, reason) in refused {
            let acceptance = decide(&registry, US, "someone-else", issuer);
            assert_eq!(acceptance, Acceptance::NotAccepted(reason), "{issuer}");
            assert_eq!(
                acceptance.body("x", None),
                json!({ "issuer": "x", "accepted": false }),
                "{issuer}"
            );
        }
    }

    /// decisions §43: with assertion issuers of two subject namespaces, a federated issuer's
    /// grants are all refused; the client it is trusted for is told why, and only that client.
    #[test]
    fn an_issuer_whose_subjects_are_ambiguous_is_refused_with_its_reason() {
        let registry = registry(vec![
            idp("partner", PARTNER, &["id_jag"], &["agent"]),
            idp("other", "https://other.example", &["id_jag"], &[]),
        ]);
        let acceptance = decide(&registry, US, "agent", PARTNER);
        assert_eq!(
            acceptance,
            Acceptance::Refused("subject_namespace_ambiguous")
        );
        assert_eq!(
            acceptance.body(PARTNER, Some("https://api.example")),
            json!({
                "issuer": PARTNER, "accepted": false, "reason": "subject_namespace_ambiguous",
                "resource": "https://api.example",
            })
        );
        assert_eq!(
            decide(&registry, US, "stranger", PARTNER),
            Acceptance::NotAccepted("issuer_not_trusted_for_client")
        );
    }

    #[test]
    fn an_accepted_answer_names_the_grant_and_the_token_types() {
        let body = Acceptance::Accepted(vec![Profile::IdJag]).body(PARTNER, None);
        assert_eq!(
            body,
            json!({
                "issuer": PARTNER, "accepted": true,
                "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
                "assertion_types": ["urn:ietf:params:oauth:token-type:id-jag"],
            })
        );
    }
}
