//! Dynamic Client Registration (RFC 7591) — the protocol rules, without HTTP: which metadata a
//! self-registering client may ask for, turned into the same client document an administrator
//! would store. Off unless `[registration] enabled = true`; the HTTP side (`http/register.rs`)
//! adds the initial access token, the per-address rate limit and the audit.
//!
//! Rules: redirect URIs are https or loopback http (RFC 8252); `grant_types` and
//! `response_types` must agree (RFC 7591 §2.1); `authorization_grant_profiles_supported` must be
//! an array of strings (CMETA-03) and the ID-JAG profile needs both the token-exchange and
//! jwt-bearer grants (CMETA-02); jwt-bearer is refused unless the administrator allows it
//! (CMETA-04); public clients (`none`) get the code and refresh grants only.

use serde_json::{Map, Value, json};

use crate::config::RegistrationConfig;
use crate::oauth::GrantType;

/// An RFC 7591 §3.2.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    pub error: &'static str,
    /// Stable reason for the audit log.
    pub reason: &'static str,
    /// What is wrong, for the client developer (never echoes secrets).
    pub description: String,
}

fn metadata_error(reason: &'static str, description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        error: "invalid_client_metadata",
        reason,
        description: description.into(),
    }
}

/// Methods a self-registering client may choose. `private_key_jwt` keys must be inline
/// (`jwks`): a registered `jwks_uri` would let a stranger make this server fetch any URL.
pub const REGISTRATION_AUTH_METHODS: &[&str] = &[
    "none",
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

fn string_list(
    request: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, RegistrationError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                metadata_error(
                    "metadata_not_string_array",
                    format!("{key} must be an array of strings"),
                )
            }),
        Some(_) => Err(metadata_error(
            "metadata_not_string_array",
            format!("{key} must be an array of strings"),
        )),
    }
}

/// True for a character that changes how the text around it is displayed, or that cannot be
/// seen at all: the bidirectional-text controls (Unicode TR9 §2: ALM, LRM, RLM, the embeddings
/// and overrides, the isolates), zero-width space, word joiner and the invisible operators,
/// the byte order mark, the Mongolian vowel separator, the Hangul fillers and the tag
/// characters. The zero-width joiner and non-joiner are not among them: scripts (Persian,
/// Indic) and emoji need them, and they reorder nothing.
pub fn disguising_char(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\u{180E}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A stranger's `client_name` (self-registered or from a Client ID Metadata Document) is shown on
/// the consent page next to the hint that names its origin ("(self-registered)", the document's
/// host). Characters that reorder the text after them (U+202E shows that hint backwards) or that
/// cannot be seen (a name passing for another) would disguise both, so they are refused here;
/// an administrator's names are the administrator's business.
pub fn client_name_disguised(name: &str) -> bool {
    name.chars().any(disguising_char)
}

fn optional_string(
    request: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, RegistrationError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(metadata_error(
            "metadata_not_string",
            format!("{key} must be a string"),
        )),
    }
}

/// Validates a registration request and returns the client document to store (without
/// `client_id`, which the caller assigns, and without a secret, which storage generates).
/// Unknown metadata is ignored (RFC 7591 §2).
pub fn client_document(
    request: &Value,
    policy: &RegistrationConfig,
) -> Result<Value, RegistrationError> {
    let Some(request) = request.as_object() else {
        return Err(metadata_error(
            "metadata_not_object",
            "The registration request must be a JSON object",
        ));
    };
    let auth_method = optional_string(request, "token_endpoint_auth_method")?
        .unwrap_or_else(|| "client_secret_basic".into());
    if !REGISTRATION_AUTH_METHODS.contains(&auth_method.as_str()) {
        return Err(metadata_error(
            "unsupported_auth_method",
            format!(
                "token_endpoint_auth_method must be one of {}",
                REGISTRATION_AUTH_METHODS.join(", ")
            ),
        ));
    }
    let grant_types = string_list(request, "grant_types")?
        .unwrap_or_else(|| vec![crate::oauth::GRANT_AUTHORIZATION_CODE.to_string()]);
    let mut grants = Vec::new();
    for grant in &grant_types {
        match GrantType::parse(grant).filter(|parsed| parsed.as_str() == grant) {
            Some(parsed) => grants.push(parsed),
            None => {
                return Err(metadata_error(
                    "unsupported_grant_type",
                    format!("grant type `{}` is not supported here", truncate(grant)),
                ));
            }
        }
    }
    let response_types = string_list(request, "response_types")?;
    let uses_code = grants.contains(&GrantType::AuthorizationCode);
    match &response_types {
        Some(types) if types.iter().any(|t| t != "code") => {
            return Err(metadata_error(
                "unsupported_response_type",
                "only the response type code is supported",
            ));
        }
        Some(types) if types.is_empty() == uses_code => {
            return Err(metadata_error(
                "grant_response_mismatch",
                "response_types must be [\"code\"] exactly when grant_types contains authorization_code (RFC 7591 §2.1)",
            ));
        }
        _ => {}
    }
    if grants.contains(&GrantType::RefreshToken) && !uses_code {
        return Err(metadata_error(
            "grant_response_mismatch",
            "refresh_token is only issued with the authorization_code grant",
        ));
    }
    if auth_method == "none"
        && grants
            .iter()
            .any(|grant| !crate::trust::PUBLIC_CLIENT_GRANTS.contains(grant))
    {
        return Err(metadata_error(
            "public_client_grant",
            "a public client (token_endpoint_auth_method none) may only use authorization_code and refresh_token",
        ));
    }
    if grants.contains(&GrantType::JwtBearer) && !policy.allow_jwt_bearer {
        return Err(metadata_error(
            "jwt_bearer_not_allowed",
            "self-registered clients may not use the jwt-bearer grant here; ask the administrator for a registered client (CMETA-04)",
        ));
    }
    let profiles = match request.get("authorization_grant_profiles_supported") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            string_list(request, "authorization_grant_profiles_supported")?.unwrap_or_default()
        }
    };
    crate::trust::validate_grant_profiles(&profiles, &grant_types)
        .map_err(|message| metadata_error("grant_profile_mismatch", message))?;
    let redirect_uris = string_list(request, "redirect_uris")?.unwrap_or_default();
    if uses_code && redirect_uris.is_empty() {
        return Err(RegistrationError {
            error: "invalid_redirect_uri",
            reason: "redirect_uris_missing",
            description: "the authorization_code grant needs at least one redirect URI".into(),
        });
    }
    for uri in &redirect_uris {
        crate::trust::validate_redirect_uri(uri).map_err(|message| RegistrationError {
            error: "invalid_redirect_uri",
            reason: "redirect_uri_invalid",
            description: message,
        })?;
    }
    let jwks = match request.get("jwks") {
        None | Some(Value::Null) => None,
        Some(keys @ Value::Object(_)) => Some(keys.to_string()),
        Some(_) => {
            return Err(metadata_error(
                "jwks_invalid",
                "jwks must be a JWK set object",
            ));
        }
    };
    if request
        .get("jwks_uri")
        .is_some_and(|value| !value.is_null())
    {
        return Err(metadata_error(
            "jwks_uri_not_allowed",
            "register public keys inline with jwks; jwks_uri is not accepted at registration",
        ));
    }
    if auth_method == "private_key_jwt" && jwks.is_none() {
        return Err(metadata_error(
            "jwks_missing",
            "private_key_jwt needs the client's public keys in jwks",
        ));
    }
    if auth_method != "private_key_jwt" && jwks.is_some() {
        return Err(metadata_error(
            "jwks_unused",
            "jwks is only used with private_key_jwt",
        ));
    }
    // RFC 7591 §2: scope values as RFC 6749 §3.3 defines them, the syntax `/token` accepts.
    let scopes = crate::oauth::request::parse_scope(optional_string(request, "scope")?.as_deref())
        .map_err(|error| {
            metadata_error(
                "scope_invalid",
                if error.reason == "too_many_scopes" {
                    format!(
                        "scope may hold at most {} values",
                        crate::oauth::request::MAX_SCOPE_VALUES
                    )
                } else {
                    "scope must be space-separated scope values of visible ASCII characters other than \" and \\ (RFC 6749 §3.3)".into()
                },
            )
        })?;
    let client_name = optional_string(request, "client_name")?;
    if client_name.as_deref().is_some_and(client_name_disguised) {
        return Err(metadata_error(
            "client_name_invalid",
            "client_name must not contain bidirectional-text controls or invisible characters: the consent page shows it to users",
        ));
    }
    // RFC 9449 §5.2: the client asks for every token request of its own to need a proof.
    let dpop_bound_access_tokens = match request.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(value)) => *value,
        Some(_) => {
            return Err(metadata_error(
                "dpop_bound_access_tokens_invalid",
                "dpop_bound_access_tokens must be a boolean",
            ));
        }
    };
    let mut document = json!({
        "auth_method": auth_method,
        "grant_types": grant_types,
        "redirect_uris": redirect_uris,
        "scopes": scopes,
        "source": "dcr",
        "enabled": true,
    });
    if let Some(name) = client_name {
        document["client_name"] = json!(name);
    }
    if let Some(jwks) = jwks {
        document["jwks"] = json!(jwks);
    }
    if !profiles.is_empty() {
        document["authorization_grant_profiles_supported"] = json!(profiles);
    }
    if dpop_bound_access_tokens {
        document["dpop_bound_access_tokens"] = json!(true);
    }
    if document.to_string().len() > MAX_STORED_METADATA_BYTES {
        return Err(metadata_error(
            "metadata_too_large",
            format!(
                "the client metadata to store (redirect URIs, scope, keys, grant types, name) exceeds {MAX_STORED_METADATA_BYTES} bytes"
            ),
        ));
    }
    Ok(document)
}

/// Most bytes of metadata a self-registered client may have stored (the document this module
/// returns, as JSON). Every such client is held in each instance's memory and read again by each
/// trust reload, which every registration triggers, so `registration.max_clients` bounds that
/// memory and work only together with this; a request body may be larger
/// (`server.max_body_bytes`), since metadata this server ignores is not stored. A few redirect
/// URIs, scopes and inline keys take a fraction of it.
pub const MAX_STORED_METADATA_BYTES: usize = 8 * 1024;

/// The RFC 7591 §3.2.1 response for a stored client document.
pub fn registration_response(
    client_id: &str,
    document: &Value,
    secret: Option<&str>,
    issued_at: Option<i64>,
) -> Value {
    let grant_types = document["grant_types"].clone();
    let uses_code = grant_types.as_array().is_some_and(|grants| {
        grants
            .iter()
            .any(|g| g == crate::oauth::GRANT_AUTHORIZATION_CODE)
    });
    let mut response = json!({
        "client_id": client_id,
        "token_endpoint_auth_method": document["auth_method"],
        "grant_types": grant_types,
        "response_types": if uses_code { json!(["code"]) } else { json!([]) },
        "redirect_uris": document["redirect_uris"],
    });
    for (from, to) in [
        ("client_name", "client_name"),
        (
            "authorization_grant_profiles_supported",
            "authorization_grant_profiles_supported",
        ),
        ("dpop_bound_access_tokens", "dpop_bound_access_tokens"),
    ] {
        // An empty list (grant profiles an update removed) is not echoed, as if never declared.
        if let Some(value) = document
            .get(from)
            .filter(|value| value.as_array().is_none_or(|items| !items.is_empty()))
        {
            response[to] = value.clone();
        }
    }
    if let Some(jwks) = document["jwks"]
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    {
        response["jwks"] = jwks;
    }
    if let Some(scopes) = document["scopes"].as_array().filter(|s| !s.is_empty()) {
        let scope: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
        response["scope"] = json!(scope.join(" "));
    }
    if let Some(issued_at) = issued_at {
        response["client_id_issued_at"] = json!(issued_at);
    }
    if let Some(secret) = secret {
        response["client_secret"] = json!(secret);
        // RFC 7591 §3.2.1: 0 means the secret does not expire.
        response["client_secret_expires_at"] = json!(0);
    }
    response
}

fn truncate(text: &str) -> String {
    crate::oauth::request::clip(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RegistrationConfig {
        RegistrationConfig::default()
    }

    #[test]
    fn a_public_mcp_client_registers() {
        let document = client_document(
            &json!({
                "redirect_uris": ["http://127.0.0.1:4567/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "client_name": "CLI", "logo_uri": "https://ignored.example/logo.png",
            }),
            &policy(),
        )
        .expect("valid");
        assert_eq!(document["auth_method"], "none");
        assert_eq!(document["source"], "dcr");
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback() {
        let error = client_document(
            &json!({ "redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none" }),
            &policy(),
        )
        .expect_err("plain http");
        assert_eq!(error.error, "invalid_redirect_uri");
        let error = client_document(&json!({ "token_endpoint_auth_method": "none" }), &policy())
            .expect_err("none at all");
        assert_eq!(error.error, "invalid_redirect_uri");
    }

    #[test]
    fn dpop_bound_access_tokens_is_a_boolean_kept_and_echoed_rfc_9449_5_2() {
        let request = json!({ "redirect_uris": ["https://a.example/cb"],
                              "token_endpoint_auth_method": "none",
                              "dpop_bound_access_tokens": true });
        let document = client_document(&request, &policy()).expect("valid");
        assert_eq!(document["dpop_bound_access_tokens"], true);
        let config: crate::config::ClientConfig = serde_json::from_value(json!({
            "client_id": "c", "auth_method": "none", "dpop_bound_access_tokens": true,
        }))
        .expect("a client document");
        assert!(config.dpop_bound_access_tokens);
        assert_eq!(
            registration_response("c", &document, None, Some(0))["dpop_bound_access_tokens"],
            true
        );
        let mut off = request.clone();
        off["dpop_bound_access_tokens"] = json!(false);
        let document = client_document(&off, &policy()).expect("valid");
        assert!(document.get("dpop_bound_access_tokens").is_none());
        let mut wrong = request;
        wrong["dpop_bound_access_tokens"] = json!("yes");
        assert_eq!(
            client_document(&wrong, &policy())
                .expect_err("a string")
                .reason,
            "dpop_bound_access_tokens_invalid"
        );
    }

    #[test]
    fn grant_and_response_types_must_agree() {
        let error = client_document(
            &json!({ "redirect_uris": ["https://a.example/cb"], "response_types": ["token"] }),
            &policy(),
        )
        .expect_err("implicit");
        assert_eq!(error.error, "invalid_client_metadata");
        let error = client_document(
            &json!({ "grant_types": [crate::oauth::GRANT_TOKEN_EXCHANGE], "response_types": ["code"] }),
            &policy(),
        )
        .expect_err("code without the code grant");
        assert_eq!(error.reason, "grant_response_mismatch");
    }

    #[test]
    fn cmeta_02_03_04_grant_profiles_and_jwt_bearer_policy() {
        let both = json!([
            crate::oauth::GRANT_TOKEN_EXCHANGE,
            crate::oauth::GRANT_JWT_BEARER
        ]);
        let profile = json!([crate::oauth::GRANT_PROFILE_ID_JAG]);
        // CMETA-03: not an array of strings.
        let error = client_document(
            &json!({ "grant_types": both, "authorization_grant_profiles_supported": "x" }),
            &policy(),
        )
        .expect_err("string");
        assert_eq!(error.error, "invalid_client_metadata");
        // CMETA-02: the profile with only one of the two grants.
        let allow = RegistrationConfig {
            allow_jwt_bearer: true,
            ..policy()
        };
        let error = client_document(
            &json!({ "grant_types": [crate::oauth::GRANT_TOKEN_EXCHANGE],
                     "authorization_grant_profiles_supported": profile }),
            &allow,
        )
        .expect_err("one grant");
        assert_eq!(error.reason, "grant_profile_mismatch");
        // CMETA-04: jwt-bearer refused by default, accepted when allowed (and CMETA-01 stored).
        let request =
            json!({ "grant_types": both, "authorization_grant_profiles_supported": profile });
        assert_eq!(
            client_document(&request, &policy())
                .expect_err("policy")
                .reason,
            "jwt_bearer_not_allowed"
        );
        let document = client_document(&request, &allow).expect("allowed");
        assert_eq!(document["authorization_grant_profiles_supported"], profile);
    }

    #[test]
    fn private_key_jwt_needs_inline_keys_and_no_jwks_uri() {
        let error = client_document(
            &json!({ "grant_types": [crate::oauth::GRANT_TOKEN_EXCHANGE],
                     "token_endpoint_auth_method": "private_key_jwt",
                     "jwks_uri": "http://169.254.169.254/keys" }),
            &policy(),
        )
        .expect_err("jwks_uri");
        assert_eq!(error.reason, "jwks_uri_not_allowed");
    }
}
