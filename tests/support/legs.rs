//! The resource side (B) of a two-instance leg-2 setup: a frontdesk that trusts another
//! frontdesk (A, see env.rs) as an ID-JAG issuer and protects MCP_RESOURCE. Include with
//! `#[path = "support/legs.rs"] mod legs;` after `env`.
#![allow(dead_code)]

use base64::Engine;
use frontdesk::config::{Config, IdentityProviderConfig, ResourceConfig};
use frontdesk::secret::{SecretString, hash_secret};

use super::env::*;

/// The jwt-bearer grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// B's configuration: trusts A for ID-JAGs, protects MCP_RESOURCE.
pub fn resource_side(
    b_url: &str,
    a_url: &str,
    db: &str,
    customize: impl FnOnce(&mut Config),
) -> anyhow::Result<Config> {
    let mut config = Config {
        issuer: b_url.to_string(),
        ..Config::default()
    };
    // The issuer may have a path; the server listens on its host and port.
    config.server.listen = b_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    config.database.url = SecretString::new(db.to_string());
    config.keys.encryption_key = Some(SecretString::new(
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    ));
    config.federation.jwks_min_refetch_secs = 0;
    config.identity_providers.push(IdentityProviderConfig {
        id: "frontdesk-a".into(),
        issuer: a_url.to_string(),
        jwks_uri: Some(format!("{a_url}/jwks.json")),
        jwks: None,
        algorithms: vec!["ES256".into()],
        token_types: vec!["id_jag".into()],
        audiences: vec![],
        clock_skew_secs: Some(30),
        max_token_age_secs: None,
        condition: None,
        subject_mode: "federated".into(),
        subject_mapping: None,
        allowed_clients: vec![],
        enabled: true,
    });
    config.resources.push(ResourceConfig {
        resource: MCP_RESOURCE.into(),
        scopes: vec!["read".into(), "write".into()],
        access_token_lifetime_secs: Some(300),
        single_use_assertions: true,
        require_dpop: false,
        default: true,
    });
    let mut redeemer = client(AGENT_AT_RAS, "client_secret_basic", &[]);
    redeemer.secret_hash = Some(hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    redeemer.grant_types = vec![JWT_BEARER.into()];
    let mut other = client("other-client", "client_secret_basic", &[]);
    other.secret_hash = redeemer.secret_hash.clone();
    other.grant_types = vec![JWT_BEARER.into()];
    config.clients = vec![redeemer, other];
    customize(&mut config);
    Ok(config)
}
