//! Rich authorization requests (RFC 9396) on both legs: one notion of a well-formed
//! `authorization_details`, so the value an ID-JAG carries out of leg 1 is exactly what leg 2
//! accepts, and one rule for what leg 2 may grant from it.

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

/// What leg 2 grants (IDJAG-ACCEPT-18): the assertion's `authorization_details`, or the
/// requested ones when each is, member for member, among the assertion's. A malformed claim in
/// the assertion makes the assertion invalid (`invalid_grant`); a request for more than it
/// grants is `invalid_authorization_details`.
pub fn grant(
    asserted: Option<&Value>,
    requested: Option<&str>,
) -> Result<Option<Value>, OAuthError> {
    if let Some(asserted) = asserted
        && !is_well_formed(asserted)
    {
        return Err(super::jwt_bearer::assertion_error(JoseError::InvalidClaim(
            "authorization_details",
        )));
    }
    let Some(requested) = parse(requested)? else {
        return Ok(asserted.cloned());
    };
    let granted = asserted.and_then(Value::as_array);
    let within = |item: &Value| granted.is_some_and(|granted| granted.contains(item));
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
            grant(asserted, requested).map_err(|e| (e.code, e.reason))
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
}
