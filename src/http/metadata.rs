//! RFC 8414 authorization server metadata and our JWKS. The metadata advertises only what this
//! build implements (META-04..META-19): an unimplemented feature is never listed.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{Value, json};

use super::AppState;
use crate::config::Config;
use crate::oauth::{
    GRANT_AUTHORIZATION_CODE, GRANT_JWT_BEARER, GRANT_PROFILE_ID_JAG, GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_JWT,
};

/// The metadata document for `config`, with endpoint URLs on the issuer's origin (META-17).
pub fn metadata_document(config: &Config) -> Value {
    let base = config.issuer.trim_end_matches('/');
    let names = |algs: &[jsonwebtoken::Algorithm]| -> Vec<&'static str> {
        algs.iter().copied().map(crate::jose::alg_name).collect()
    };
    let signing_algs = names(crate::oauth::client_auth::CLIENT_ASSERTION_ALGORITHMS);
    let code_flow = config.authorization.sign_in_idp.is_some();
    let mut grant_types = vec![GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER];
    if code_flow {
        grant_types.extend([GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN]);
    }
    let mut document = json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{base}/jwks.json"),
        "token_endpoint": format!("{base}/token"),
        // RFC 8414 requires this member; without a sign-in identity provider frontdesk has no
        // authorization endpoint, so it supports no response type.
        "response_types_supported": [],
        "grant_types_supported": grant_types,
        // IDJAG §7.2, EMA §6 (META-07..09): ID-JAGs are redeemed with the jwt-bearer grant.
        "authorization_grant_profiles_supported": [GRANT_PROFILE_ID_JAG],
        "introspection_endpoint": format!("{base}/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint": format!("{base}/revoke"),
        // IDJAG §9.5 (IDJAG-ACCEPT-27): where an authenticated client asks whether an issuer's
        // grants would be accepted for it. frontdesk's own member (no registered name exists);
        // the endpoint, never the issuers it trusts, is what public metadata may name. It takes
        // the token endpoint's confidential client authentication methods.
        "frontdesk_issuer_acceptance_endpoint": format!("{base}/issuer-acceptance"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        // RFC 8414 §2 (META-12): required wherever private_key_jwt is listed.
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        // CHAIN §3, IDJAG §7.1 (META-06).
        "identity_chaining_requested_token_types_supported": [TOKEN_TYPE_ID_JAG, TOKEN_TYPE_JWT],
        // RFC 9449 §5.1 (META-14): DPoP proofs are accepted at the token endpoint.
        "dpop_signing_alg_values_supported": names(crate::jose::dpop::DPOP_ALGORITHMS),
    });
    // The authorization code flow, only when a sign-in identity provider is configured.
    if code_flow {
        document["authorization_endpoint"] = json!(format!("{base}/authorize"));
        document["response_types_supported"] = json!(["code"]);
        document["response_modes_supported"] = json!(["query"]);
        document["code_challenge_methods_supported"] = json!(["S256"]);
        // RFC 9207.
        document["authorization_response_iss_parameter_supported"] = json!(true);
        // Public clients (no authentication) at the token endpoint, for the code flow only.
        document["token_endpoint_auth_methods_supported"] = json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ]);
        // RFC 7009 §2.1: public clients may revoke their own tokens (never introspect).
        document["revocation_endpoint_auth_methods_supported"] = json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ]);
    }
    // Token Status List (draft-ietf-oauth-status-list §9.3): where the lists are enumerated.
    if config.tokens.status_list {
        document["status_list_aggregation_endpoint"] = json!(format!("{base}/status-lists"));
    }
    // META-15: URL client ids only when the administrator turned them on.
    document["client_id_metadata_document_supported"] = json!(config.client_id_metadata.enabled);
    // RFC 7591: advertised only while registration is enabled.
    if config.registration.enabled {
        document["registration_endpoint"] = json!(format!("{base}/register"));
    }
    document
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
pub async fn oauth_metadata(State(state): State<AppState>) -> Response {
    let mut response = Json(metadata_document(&state.config)).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /jwks.json`: the published keys (next, active, retired-but-not-expired).
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.jwks_json();
    let mut response = body.as_ref().clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "public, max-age={}",
        state.config.keys.jwks_max_age_secs
    )) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(issuer: &str, code_flow: bool) -> Config {
        let mut config = Config {
            issuer: issuer.into(),
            ..Config::default()
        };
        if code_flow {
            config.authorization.sign_in_idp = Some("corp".into());
        }
        config
    }

    /// The scheme, host and port of a URL.
    fn origin(url: &str) -> (String, Option<String>, Option<u16>) {
        let url = url::Url::parse(url).expect("a URL");
        (
            url.scheme().to_owned(),
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
        )
    }

    /// META-18: `authorization_response_iss_parameter_supported` (RFC 9207) only alongside an
    /// authorization endpoint, which exists only with a sign-in identity provider.
    #[test]
    fn the_iss_response_parameter_is_advertised_only_with_an_authorization_endpoint() {
        let without = metadata_document(&config("https://sts.example.com", false));
        assert!(without.get("authorization_endpoint").is_none(), "{without}");
        assert!(
            without
                .get("authorization_response_iss_parameter_supported")
                .is_none(),
            "{without}"
        );
        let with = metadata_document(&config("https://sts.example.com", true));
        assert_eq!(
            with["authorization_endpoint"],
            "https://sts.example.com/authorize"
        );
        assert_eq!(with["authorization_response_iss_parameter_supported"], true);
    }

    /// CHAIN-META-01: the requested token types usable for chaining, a JSON array of token-type
    /// URNs: the ID-JAG and the generic JWT grant, both of which the exchange issues.
    #[test]
    fn the_chaining_token_types_are_listed_as_urns() {
        for code_flow in [false, true] {
            let document = metadata_document(&config("https://sts.example.com", code_flow));
            assert_eq!(
                document["identity_chaining_requested_token_types_supported"],
                json!([
                    "urn:ietf:params:oauth:token-type:id-jag",
                    "urn:ietf:params:oauth:token-type:jwt"
                ])
            );
        }
    }

    /// INT-10: the ID-JAG grant profile is published (META-07) for the clients that read it,
    /// though redeeming an ID-JAG does not depend on a client having read it.
    #[test]
    fn the_id_jag_grant_profile_is_published_with_the_jwt_bearer_grant() {
        let document = metadata_document(&config("https://sts.example.com", false));
        assert_eq!(
            document["authorization_grant_profiles_supported"],
            json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
        );
        let grants = document["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&json!("urn:ietf:params:oauth:grant-type:jwt-bearer")));
    }

    /// INT-08: every endpoint, the token endpoint first, is on the issuer's scheme, host and
    /// port, also for an issuer with a path or a port.
    #[test]
    fn endpoints_share_the_issuers_origin() {
        for issuer in [
            "https://sts.example.com",
            "https://login.example.com/sts",
            "http://127.0.0.1:8080",
            "https://sts.example.com:8443/",
        ] {
            let document = metadata_document(&config(issuer, true));
            let base = issuer.trim_end_matches('/');
            assert_eq!(document["token_endpoint"], format!("{base}/token"));
            for (name, value) in document.as_object().unwrap() {
                if let Some(url) = value.as_str().filter(|v| v.starts_with("http")) {
                    assert_eq!(origin(url), origin(issuer), "{issuer}: {name}");
                }
            }
        }
    }

    /// CAUTH-07: mutual-TLS client authentication is not implemented, so it is not advertised;
    /// only the methods the token endpoint accepts are.
    #[test]
    fn only_implemented_client_authentication_methods_are_advertised() {
        for code_flow in [false, true] {
            let document = metadata_document(&config("https://sts.example.com", code_flow));
            for name in [
                "token_endpoint_auth_methods_supported",
                "introspection_endpoint_auth_methods_supported",
                "revocation_endpoint_auth_methods_supported",
            ] {
                let methods = document[name].as_array().unwrap();
                for method in methods {
                    assert!(
                        [
                            "client_secret_basic",
                            "client_secret_post",
                            "private_key_jwt",
                            "none"
                        ]
                        .contains(&method.as_str().unwrap()),
                        "{name}: {method}"
                    );
                }
                assert!(!methods.contains(&json!("tls_client_auth")));
                assert!(!methods.contains(&json!("self_signed_tls_client_auth")));
            }
            assert!(
                document
                    .get("tls_client_certificate_bound_access_tokens")
                    .is_none()
            );
            assert!(document.get("mtls_endpoint_aliases").is_none());
        }
    }
}
