//! Protocol errors: one code per RFC 6749 §5.2 / RFC 8693 / ID-JAG error, each with a short,
//! safe description. `http::error` maps them to responses in exactly one place.

use std::fmt;

/// The `error` values frontdesk returns (REQUIREMENTS.md §1, §19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed request, or (RFC 8693 §2.2.2) an invalid subject/actor token.
    InvalidRequest,
    /// Client authentication failed (401).
    InvalidClient,
    /// Invalid grant or assertion.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// Unknown grant type.
    UnsupportedGrantType,
    /// Scope not allowed.
    InvalidScope,
    /// Audience or resource not allowed (RFC 8693).
    InvalidTarget,
    /// Malformed `authorization_details` (RFC 9396).
    InvalidAuthorizationDetails,
    /// Step-up needed (RFC 9470).
    InsufficientUserAuthentication,
    /// Revocation of an unsupported token type (RFC 7009).
    UnsupportedTokenType,
    /// A missing, malformed, replayed or mismatched DPoP proof (RFC 9449 §5).
    InvalidDpopProof,
    /// The DPoP proof must carry a current server-provided nonce, sent in the `DPoP-Nonce`
    /// header of the same response (RFC 9449 §8).
    UseDpopNonce,
    /// Throttled.
    SlowDown,
    /// Something failed on our side; details are logged, never sent.
    ServerError,
}

impl ErrorCode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidAuthorizationDetails => "invalid_authorization_details",
            ErrorCode::InsufficientUserAuthentication => "insufficient_user_authentication",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An OAuth error with a stable reason code (for the audit log and metrics) and a description
/// that helps the caller without echoing anything secret.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// The `error` value.
    pub code: ErrorCode,
    /// Stable snake_case reason, recorded in the audit log.
    pub reason: &'static str,
    /// `error_description`: printable ASCII only (RFC 6749 §5.2).
    pub description: String,
    /// `max_age` for `insufficient_user_authentication` (RFC 9470).
    pub max_age: Option<u64>,
    /// `acr_values` for `insufficient_user_authentication` (RFC 9470).
    pub acr_values: Option<String>,
    /// Seconds for a `Retry-After` header (throttling).
    pub retry_after: Option<u64>,
    /// The refused subject token or assertion looks forged, stolen or replayed: counted against
    /// the client by the throttle of `server.invalid_subject_tokens_per_minute`.
    pub suspicious: bool,
}

impl OAuthError {
    /// A new error. The description is sanitised to the RFC 6749 §5.2 character set.
    pub fn new(code: ErrorCode, reason: &'static str, description: impl Into<String>) -> Self {
        let description: String = description
            .into()
            .chars()
            .map(|c| match c {
                '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
                '"' => '\'',
                _ => ' ',
            })
            .take(300)
            .collect();
        OAuthError {
            code,
            reason,
            description,
            max_age: None,
            acr_values: None,
            retry_after: None,
            suspicious: false,
        }
    }

    /// Marks the error as a sign of a forged, stolen or replayed token (see `suspicious`).
    pub fn suspicious(mut self) -> Self {
        self.suspicious = true;
        self
    }

    /// Marks it when `suspicious` says so.
    pub fn suspicious_if(mut self, suspicious: bool) -> Self {
        self.suspicious = suspicious;
        self
    }

    /// `invalid_request`.
    pub fn invalid_request(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, reason, description)
    }

    /// `server_error` with a generic description; log the cause before calling.
    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "internal_error",
            "The server could not complete the request; try again later",
        )
    }

    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self.code {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::SlowDown => 429,
            _ => 400,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_str(),
            self.reason,
            self.description
        )
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_restricted_to_the_rfc_6749_charset() {
        let error = OAuthError::invalid_request("x", "bad \"value\" \\ with\nnewline é");
        assert!(
            error
                .description
                .chars()
                .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'))
        );
        assert_eq!(error.description, "bad 'value'   with newline  ");
    }

    #[test]
    fn invalid_client_is_401_and_server_error_500() {
        assert_eq!(
            OAuthError::new(ErrorCode::InvalidClient, "x", "y").status(),
            401
        );
        assert_eq!(OAuthError::server_error().status(), 500);
        assert_eq!(OAuthError::invalid_request("x", "y").status(), 400);
    }
}
