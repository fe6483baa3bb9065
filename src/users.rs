//! Users' current claims. frontdesk keeps no user directory and never sees passwords; the only
//! account data it has is what the sign-in identity provider asserted at the user's most recent
//! sign-in. The authorization endpoint's callback records those attributes here, and a refresh
//! token exchanged for an ID-JAG reads them back, so the ID-JAG describes the user as the IdP
//! does now rather than as it did when the refresh token was issued (IDJAG-ISSUE-12).

use serde_json::{Map, Value};

use crate::store::{StoreError, UserStore};

/// Claims that describe one token or one authentication event rather than the user: they are
/// not remembered. Authentication-event claims (`auth_time`, `acr`, `amr`) of an ID-JAG issued
/// from a refresh token come from that token's own sign-in, never from a later one.
const NOT_USER_ATTRIBUTES: &[&str] = &[
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "auth_time",
    "acr",
    "amr",
    "typ",
];

/// The user attributes among a verified ID token's claims.
pub fn user_attributes(id_token_claims: &Value) -> Map<String, Value> {
    let Some(claims) = id_token_claims.as_object() else {
        return Map::new();
    };
    claims
        .iter()
        .filter(|(name, _)| !NOT_USER_ATTRIBUTES.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Records the attributes of a completed sign-in of `subject` (the local subject refresh tokens
/// will carry) at the identity provider `issuer`. Called at every sign-in; a failure must fail
/// the sign-in, or a later exchange would silently use stale attributes.
pub async fn remember_sign_in(
    store: &impl UserStore,
    issuer: &str,
    subject: &str,
    id_token_claims: &Value,
    now: i64,
) -> Result<(), StoreError> {
    store
        .remember_user_claims(issuer, subject, &user_attributes(id_token_claims), now)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_user_attributes_are_remembered_idjag_issue_12() {
        let claims = json!({
            "iss": "https://idp.example", "sub": "u1", "email": "ada@example.com",
            "groups": ["eng"], "aud": "frontdesk", "exp": 2, "iat": 1, "nonce": "n",
            "at_hash": "h", "auth_time": 1, "acr": "phr", "amr": ["pwd"], "sid": "s",
        });
        let kept = user_attributes(&claims);
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["email", "groups", "iss", "sub"]);
        assert!(user_attributes(&json!("not an object")).is_empty());
    }
}
