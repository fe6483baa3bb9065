//! `frontdesk client add|list|remove`: clients stored in the database (the admin page's
//! territory); config-file clients are listed but never changed here.

use std::collections::BTreeMap;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::app::StartupError;
use crate::cli::ClientCommand;
use crate::clock::unix_now;
use crate::config::ClientConfig;
use crate::store::{
    AuditDetail, AuditEvent, AuditLog, Decision, Store, TrustDocument, TrustKind, TrustStore,
};

/// Arguments of `client add`.
#[derive(Debug, clap::Args)]
pub struct ClientAddArgs {
    /// The client_id.
    #[arg(long)]
    pub id: String,
    /// client_secret_basic, client_secret_post, private_key_jwt, or none (a public client:
    /// authorization_code and refresh_token only).
    #[arg(long, default_value = "client_secret_basic")]
    pub auth_method: String,
    /// For private_key_jwt: the client's JWKS URL.
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// For private_key_jwt: a file holding the client's public JWKS.
    #[arg(long)]
    pub jwks_file: Option<std::path::PathBuf>,
    /// An audience id the client may request (repeatable).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// A scope the client may be granted (repeatable; none = whatever the audience allows).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// `IDP=ID`: the client's identifier at an identity provider (repeatable).
    #[arg(long = "idp-client-id", value_parser = parse_pair)]
    pub idp_client_ids: Vec<(String, String)>,
    /// `AUDIENCE=ID`: the client's identifier at an audience (repeatable).
    #[arg(long = "audience-client-id", value_parser = parse_pair)]
    pub audience_client_ids: Vec<(String, String)>,
    /// Its client id at an audience for one tenant, `AUDIENCE/TENANT=ID`, where the resource AS
    /// scopes client ids to tenants (repeatable; `audience_tenant_client_ids`).
    #[arg(long = "audience-tenant-client-id", value_parser = parse_pair)]
    pub audience_tenant_client_ids: Vec<(String, String)>,
    /// A grant type (repeatable; default: token-exchange).
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// A redirect URI for the authorization code flow (repeatable; matched exactly).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// The name shown on the consent page.
    #[arg(long)]
    pub name: Option<String>,
    /// Every token request must carry a DPoP proof (`dpop_bound_access_tokens`).
    #[arg(long)]
    pub require_dpop: bool,
    /// Its DPoP proofs must echo a server nonce (`require_dpop_nonce`).
    #[arg(long)]
    pub require_dpop_nonce: bool,
    /// Token requests allowed per minute on each instance (`requests_per_minute`).
    #[arg(long)]
    pub requests_per_minute: Option<u32>,
    /// An `aud` (a resource server's identifier) whose tokens it may introspect besides its
    /// own; repeat it, or `*` for every token (`introspect_audiences`).
    #[arg(long = "introspect-audience")]
    pub introspect_audiences: Vec<String>,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

/// Runs a client command.
pub async fn run(command: ClientCommand, store: &Store) -> Result<(), StartupError> {
    let fail = |error: crate::store::StoreError| StartupError(format!("database error: {error}"));
    match command {
        ClientCommand::List => {
            for document in store.list_trust(TrustKind::Client).await.map_err(fail)? {
                let method = document.document["auth_method"].as_str().unwrap_or("?");
                let origin = if document.managed_by_config {
                    "config"
                } else {
                    "database"
                };
                println!("{:<32} {:<22} {origin}", document.id, method);
            }
            Ok(())
        }
        ClientCommand::Remove { client_id } => {
            let existing = store.list_trust(TrustKind::Client).await.map_err(fail)?;
            match existing.iter().find(|document| document.id == client_id) {
                None => Err(StartupError(format!("no client has id {client_id}"))),
                Some(document) if document.managed_by_config => Err(StartupError(format!(
                    "{client_id} is managed by the configuration file; remove it there"
                ))),
                Some(_) => {
                    store
                        .delete_trust(TrustKind::Client, &client_id, crate::clock::unix_now())
                        .await
                        .map_err(fail)?;
                    audit(store, "client_removed", &client_id).await?;
                    println!("removed {client_id}");
                    Ok(())
                }
            }
        }
        ClientCommand::RevokeTokens { client_id } => {
            let existing = store.list_trust(TrustKind::Client).await.map_err(fail)?;
            if !existing.iter().any(|document| document.id == client_id) {
                return Err(StartupError(format!("no client has id {client_id}")));
            }
            crate::cli::revoke_tokens(store, crate::store::RevocationScope::Client(&client_id))
                .await
        }
        ClientCommand::Add(args) => add(*args, store).await,
    }
}

async fn add(args: ClientAddArgs, store: &Store) -> Result<(), StartupError> {
    let fail = |error: crate::store::StoreError| StartupError(format!("database error: {error}"));
    let existing = store.list_trust(TrustKind::Client).await.map_err(fail)?;
    if existing.iter().any(|document| document.id == args.id) {
        return Err(StartupError(format!(
            "a client with id {} already exists",
            args.id
        )));
    }
    let secret = args
        .auth_method
        .starts_with("client_secret")
        .then(|| new_secret(|bytes| SystemRandom::new().fill(bytes).is_ok()))
        .transpose()?;
    let secret_hash = secret
        .as_deref()
        .map(crate::secret::hash_secret)
        .transpose()
        .map_err(StartupError)?;
    let jwks = args
        .jwks_file
        .as_ref()
        .map(std::fs::read_to_string)
        .transpose()
        .map_err(|error| StartupError(format!("cannot read the JWKS file: {error}")))?;
    let public = args.auth_method == "none";
    let client = ClientConfig {
        client_id: args.id.clone(),
        auth_method: args.auth_method,
        client_name: args.name,
        source: None,
        authorization_grant_profiles_supported: Vec::new(),
        dpop_bound_access_tokens: args.require_dpop,
        registration_access_token_hash: None,
        require_dpop_nonce: args.require_dpop_nonce,
        requests_per_minute: args.requests_per_minute,
        introspect_audiences: args.introspect_audiences,
        secret_hash,
        jwks,
        jwks_uri: args.jwks_uri,
        grant_types: if args.grant_types.is_empty() && public {
            vec![
                crate::oauth::GRANT_AUTHORIZATION_CODE.to_string(),
                crate::oauth::GRANT_REFRESH_TOKEN.to_string(),
            ]
        } else if args.grant_types.is_empty() {
            vec![crate::oauth::GRANT_TOKEN_EXCHANGE.to_string()]
        } else {
            args.grant_types
        },
        audiences: args.audiences,
        scopes: args.scopes,
        idp_client_ids: args.idp_client_ids.into_iter().collect::<BTreeMap<_, _>>(),
        audience_client_ids: args
            .audience_client_ids
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        audience_tenant_client_ids: args
            .audience_tenant_client_ids
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        redirect_uris: args.redirect_uris,
        enabled: true,
    };
    crate::trust::validate_client(&client)
        .map_err(|(key, message)| StartupError(format!("invalid client: {key}: {message}")))?;
    let audiences = store.list_trust(TrustKind::Audience).await.map_err(fail)?;
    for audience in client
        .audiences
        .iter()
        .chain(client.audience_client_ids.keys())
    {
        if !audiences.iter().any(|document| &document.id == audience) {
            return Err(StartupError(format!("no audience has id {audience}")));
        }
    }
    let idps = store
        .list_trust(TrustKind::IdentityProvider)
        .await
        .map_err(fail)?;
    for idp in client.idp_client_ids.keys() {
        if !idps.iter().any(|document| &document.id == idp) {
            return Err(StartupError(format!("no identity provider has id {idp}")));
        }
    }
    let document = TrustDocument {
        id: client.client_id.clone(),
        document: serde_json::to_value(&client).map_err(|error| StartupError(error.to_string()))?,
        managed_by_config: false,
        updated_at: unix_now(),
    };
    store
        .upsert_trust(TrustKind::Client, &document)
        .await
        .map_err(fail)?;
    audit(store, "client_created", &client.client_id).await?;
    println!("created client {}", client.client_id);
    if let Some(secret) = secret {
        println!("client_secret: {secret}");
        println!("(shown once; only its argon2id hash is stored)");
    }
    Ok(())
}

/// A new client secret: 32 bytes from `fill` (the system random generator), base64url. A
/// failed `fill` is an error: ignored, it left the secret 32 zero bytes, which anyone could
/// compute and present.
fn new_secret(fill: impl FnOnce(&mut [u8]) -> bool) -> Result<String, StartupError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    if !fill(bytes.as_mut()) {
        return Err(StartupError(
            "the system random number generator failed; no client was created".into(),
        ));
    }
    Ok(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

async fn audit(store: &Store, event: &str, client_id: &str) -> Result<(), StartupError> {
    let mut record = AuditEvent::new(unix_now(), event, Decision::Changed);
    record.client_id = Some(client_id.to_string());
    record.detail = Some(AuditDetail::of(&serde_json::json!({ "actor": "cli" })));
    store
        .record(&record)
        .await
        .map_err(|error| StartupError(format!("cannot write the audit event: {error}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A secret is 32 random bytes; when the random generator fails, no client is created
    /// rather than one whose secret is 32 zero bytes, which anyone could compute.
    #[test]
    fn a_failed_random_generator_creates_no_secret() {
        let secret = new_secret(|bytes| {
            bytes.fill(7);
            true
        })
        .expect("a secret");
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap(), [7u8; 32]);
        let error = new_secret(|_| false).expect_err("no secret without randomness");
        assert!(error.0.contains("random"), "{error}");
    }
}
