//! frontdesk: a standalone OAuth 2.0 token-exchange authorization server (security token
//! service). It trades enterprise SSO tokens for short-lived, audience-bound grants (ID-JAGs,
//! identity-chaining grants, RFC 9068 access tokens) and redeems such grants from other issuers.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod audit_export;
pub mod authorize;
pub mod cli;
pub mod client_cli;
pub mod clock;
pub mod config;
pub mod exchange_cli;
pub mod http;
pub mod jose;
pub mod keys;
pub mod oauth;
pub mod policy;
pub mod registry;
pub mod retention;
pub mod saml;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod trust;
pub mod users;
