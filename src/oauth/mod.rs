//! The OAuth protocol core: grants, errors, and the decisions behind `POST /token`. Nothing here
//! knows about HTTP or SQL; handlers call in, and the store is reached through its traits.

pub mod authorization_details;
pub mod client_auth;
pub mod client_metadata;
pub mod code_grant;
pub mod dpop;
pub mod dpop_nonce;
mod error;
pub mod exchange;
pub mod introspection;
pub mod issuer_acceptance;
pub mod jwt_bearer;
mod refresh_subject;
pub mod registration;
pub mod request;
pub mod request_limit;
mod saml_bootstrap;
pub mod service;
pub mod status_list;
pub mod throttle;

pub use error::{ErrorCode, OAuthError};
pub use service::{RequestContext, TokenResponse, TokenService};

/// What every grant works from: the request as authenticated and checked by the token service.
/// One value instead of a growing parameter list, so adding a request-wide fact (as DPoP did)
/// touches the grants that use it and no others.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    /// The trust registry as of this request.
    pub registry: &'a crate::registry::Registry,
    /// The authenticated client.
    pub client: &'a client_auth::AuthenticatedClient,
    /// The form, repeats already refused.
    pub form: &'a request::FormParams,
    /// The verified, unreplayed DPoP proof, if the request sent one.
    pub proof: Option<&'a crate::jose::dpop::DpopProof>,
    /// Unix seconds.
    pub now: i64,
}

/// Token-exchange grant (RFC 8693).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// JWT bearer grant (RFC 7523).
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Authorization code grant (RFC 6749 §4.1).
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// Refresh token grant (RFC 6749 §6).
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// ID-JAG token type and `requested_token_type` value.
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// Generic JWT token type (identity-chaining grants).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Access token type.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// ID token type.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Refresh token type.
pub const TOKEN_TYPE_REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// A SAML 2.0 assertion as a subject token (RFC 8693 §3).
pub const TOKEN_TYPE_SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
/// The ID-JAG grant profile advertised in metadata (IDJAG §7.2).
pub const GRANT_PROFILE_ID_JAG: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// Client assertion type for `private_key_jwt`.
pub const CLIENT_ASSERTION_TYPE_JWT_BEARER: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The grant types frontdesk knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// RFC 8693 token exchange.
    TokenExchange,
    /// RFC 7523 JWT bearer.
    JwtBearer,
    /// RFC 6749 §4.1 authorization code (with PKCE).
    AuthorizationCode,
    /// RFC 6749 §6 refresh token (rotating).
    RefreshToken,
}

impl GrantType {
    /// Parses the full URN, or the short names `token-exchange` / `jwt-bearer` used in config, or
    /// `authorization_code` / `refresh_token`.
    pub fn parse(text: &str) -> Option<GrantType> {
        match text {
            GRANT_TOKEN_EXCHANGE | "token-exchange" | "token_exchange" => {
                Some(GrantType::TokenExchange)
            }
            GRANT_JWT_BEARER | "jwt-bearer" | "jwt_bearer" => Some(GrantType::JwtBearer),
            GRANT_AUTHORIZATION_CODE => Some(GrantType::AuthorizationCode),
            GRANT_REFRESH_TOKEN => Some(GrantType::RefreshToken),
            _ => None,
        }
    }

    /// The full URN.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::TokenExchange => GRANT_TOKEN_EXCHANGE,
            GrantType::JwtBearer => GRANT_JWT_BEARER,
            GrantType::AuthorizationCode => GRANT_AUTHORIZATION_CODE,
            GrantType::RefreshToken => GRANT_REFRESH_TOKEN,
        }
    }
}
