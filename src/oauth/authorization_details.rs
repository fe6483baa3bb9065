//! Rich authorization requests (RFC 9396) on both legs: one notion of a well-formed
//! `authorization_details`, so the value an ID-JAG carries out of leg 1 is exactly what leg 2
//! accepts; which types each side takes (an audience's, a resource's
//! `authorization_details_types`); and one rule for what leg 2 may grant from an assertion.

use serde_json::Value;

use super::error::{ErrorCode, OAuthError};
use crate::jose::JoseError;

/// RFC 9396 §2: a non-empty JSON array of objects, each with a string `type`.
pub fn is_well_formed(value: &Value) -> bool {
    value.as_array().is_some_and(|items| {
        !items.is_empty()
            && items
                .iter()
                .all(|item| item.get("type").is_some_and(Value::is_string))
    })
}

fn invalid() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidAuthorizationDetails,
        "invalid_authorization_details",
        "authorization_details must be a JSON array of objects, each with a string type (RFC 9396)",
    )
}

/// The request's `authorization_details` parameter, if sent (IDJAG-ISSUE-19); a malformed one
/// is `invalid_authorization_details` (RFC 9396 §5).
pub fn parse(text: Option<&str>) -> Result<Option<Value>, OAuthError> {
    let Some(text) = text else {
        return Ok(None);
    };
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(is_well_formed)
        .map(Some)
        .ok_or_else(invalid)
}

/// The `type` of one detail (present and a string once [`is_well_formed`] held).
fn type_of(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// Leg 1 (IDJAG §4.3.3, IDJAG-ISSUE-19): every requested detail must be of a type the audience
/// accepts, else `invalid_authorization_details` (RFC 9396 §5) — the IdP vouches for what it
/// puts in a grant, so it passes on no type it was not told about.
pub fn check_types(details: Option<&Value>, accepted: &[String]) -> Result<(), OAuthError> {
    let items = details.and_then(Value::as_array).into_iter().flatten();
    for item in items {
        let kind = type_of(item);
        if !accepted.iter().any(|accepted| accepted == kind) {
            return Err(OAuthError::new(
                ErrorCode::InvalidAuthorizationDetails,
                "authorization_details_type_not_allowed",
                format!(
                    "authorization_details of type `{}` are not accepted for this audience",
                    crate::oauth::request::clip(kind, 100)
                ),
            ));
        }
    }
    Ok(())
}

/// What leg 2 grants (IDJAG-ACCEPT-18): the assertion's `authorization_details` of the types
/// `accepted` for every granted resource (the others are left out: IDJAG §4.4.1 lets the RAS
/// filter them, and a resource should not receive a type it never agreed to understand), or
/// the requested ones when each is, member for member, among those. A malformed claim in the
/// assertion makes the assertion invalid (`invalid_grant`); a request for more than that is
/// `invalid_authorization_details`.
pub fn grant(
    asserted: Option<&Value>,
    requested: Option<&str>,
    accepted: impl Fn(&str) -> bool,
) -> Result<Option<Value>, OAuthError> {
    if let Some(asserted) = asserted
        && !is_well_formed(asserted)
    {
        return Err(super::jwt_bearer::assertion_error(JoseError::InvalidClaim(
            "authorization_details",
        )));
    }
    let grantable: Vec<Value> = asserted
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| accepted(type_of(item)))
        .cloned()
        .collect();
    let Some(requested) = parse(requested)? else {
        return Ok((!grantable.is_empty()).then_some(Value::Array(grantable)));
    };
    let within = |item: &Value| grantable.contains(item);
    if !requested.as_array().into_iter().flatten().all(within) {
        return Err(OAuthError::new(
            ErrorCode::InvalidAuthorizationDetails,
            "authorization_details_not_granted",
            "The requested authorization_details are not among those the assertion grants",
        ));
    }
    Ok(Some(requested))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// IDJAG-ISSUE-19: a JSON array of objects with a string `type`, nothing else.
    #[test]
    fn authorization_details_must_be_an_array_of_typed_objects_idjag_issue_19() {
        assert!(parse(Some(r#"[{"type":"payment"}]"#)).is_ok());
        assert_eq!(parse(None).expect("absent"), None);
        for bad in [
            r#"{"type":"x"}"#,
            "[]",
            r#"[{"kind":"x"}]"#,
            "[1]",
            "not json",
            r#"[{"type":1}]"#,
        ] {
            let error = parse(Some(bad)).expect_err(bad);
            assert_eq!(error.code, ErrorCode::InvalidAuthorizationDetails, "{bad}");
        }
    }

    /// IDJAG-ACCEPT-18: the assertion's `authorization_details` are granted, or the requested
    /// ones when each is among them; anything more, or malformed, is refused.
    #[test]
    fn authorization_details_are_the_assertions_or_a_subset_of_them_idjag_accept_18() {
        let asserted = json!([{"type": "payment", "amount": "5.00"}, {"type": "read_docs"}]);
        let grant = |asserted: Option<&Value>, requested: Option<&str>| {
            grant(asserted, requested, |_| true).map_err(|e| (e.code, e.reason))
        };
        assert_eq!(grant(Some(&asserted), None), Ok(Some(asserted.clone())));
        assert_eq!(grant(None, None), Ok(None));
        assert_eq!(
            grant(Some(&asserted), Some(r#"[{"type":"read_docs"}]"#)),
            Ok(Some(json!([{"type": "read_docs"}])))
        );
        for (asserted, requested, code, reason) in [
            (
                Some(&asserted),
                r#"[{"type":"payment","amount":"500.00"}]"#,
                ErrorCode::InvalidAuthorizationDetails,
                "authorization_details_not_granted",
            ),
            (
                None,
                r#"[{"type":"read_docs"}]"#,
                ErrorCode::InvalidAuthorizationDetails,
                "authorization_details_not_granted",
            ),
            (
                Some(&asserted),
                r#"{"type":"read_docs"}"#,
                ErrorCode::InvalidAuthorizationDetails,
                "invalid_authorization_details",
            ),
            (
                Some(&asserted),
                "[]",
                ErrorCode::InvalidAuthorizationDetails,
                "invalid_authorization_details",
            ),
            (
                Some(&json!({"type": "read_docs"})),
                r#"[{"type":"read_docs"}]"#,
                ErrorCode::InvalidGrant,
                "assertion_invalid_claim",
            ),
        ] {
            assert_eq!(
                grant(asserted, Some(requested)),
                Err((code, reason)),
                "{requested}"
            );
        }
        assert_eq!(
            grant(Some(&json!([{"kind": "x"}])), None),
            Err((ErrorCode::InvalidGrant, "assertion_invalid_claim"))
        );
    }

    /// IDJAG-ISSUE-19 (IDJAG §4.3.3): at leg 1 only the audience's types pass; an unknown type
    /// is named in the error, clipped.
    #[test]
    fn leg_1_takes_only_the_audiences_types_idjag_issue_19() {
        let accepted = vec!["mcp_tools".to_string(), "urn:x:files".to_string()];
        let fine = json!([{"type": "mcp_tools"}, {"type": "urn:x:files", "actions": ["read"]}]);
        assert!(check_types(Some(&fine), &accepted).is_ok());
        assert!(check_types(None, &accepted).is_ok());
        assert!(check_types(None, &[]).is_ok());
        let mixed = json!([{"type": "mcp_tools"}, {"type": "payment_initiation"}]);
        for (details, accepted) in [(&mixed, &accepted[..]), (&fine, &[][..])] {
            let error = check_types(Some(details), accepted).expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidAuthorizationDetails);
            assert_eq!(error.reason, "authorization_details_type_not_allowed");
        }
        let error = check_types(Some(&mixed), &accepted).expect_err("refused");
        assert!(
            error.description.contains("payment_initiation"),
            "{}",
            error.description
        );
        let long = json!([{"type": "x".repeat(5000)}]);
        let error = check_types(Some(&long), &accepted).expect_err("refused");
        assert!(error.description.len() < 300, "{}", error.description);
    }

    /// IDJAG-ACCEPT-18: at leg 2 the assertion's details of types the resources do not take are
    /// left out, and cannot be asked for either.
    #[test]
    fn leg_2_grants_only_the_resources_types_idjag_accept_18() {
        let asserted = json!([{"type": "payment", "amount": "5.00"}, {"type": "read_docs"}]);
        let only_docs = |kind: &str| kind == "read_docs";
        assert_eq!(
            grant(Some(&asserted), None, only_docs).map_err(|e| e.reason),
            Ok(Some(json!([{"type": "read_docs"}])))
        );
        assert_eq!(
            grant(Some(&asserted), None, |_| false).map_err(|e| e.reason),
            Ok(None)
        );
        assert_eq!(
            grant(
                Some(&asserted),
                Some(r#"[{"type":"payment","amount":"5.00"}]"#),
                only_docs
            )
            .map_err(|e| e.reason),
            Err("authorization_details_not_granted")
        );
        assert_eq!(
            grant(
                Some(&asserted),
                Some(r#"[{"type":"read_docs"}]"#),
                only_docs
            )
            .map_err(|e| e.reason),
            Ok(Some(json!([{"type": "read_docs"}])))
        );
    }
}
