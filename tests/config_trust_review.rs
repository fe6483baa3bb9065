//! Configuration, trust and registry review: how the trust declared in the configuration file
//! and the trust administrators create in the database are merged into the registry the token
//! endpoint reads.

#[path = "support/test_db.rs"]
mod test_db;

use frontdesk::config::{AudienceConfig, Config, IdentityProviderConfig};
use frontdesk::registry::{Registry, Trust};
use frontdesk::store::{Store, TrustDocument, TrustKind, TrustStore};
use serde_json::json;
use std::sync::Arc;
use test_db::TestDatabase;

const ISSUER: &str = "https://idp.corp.example";
const RAS: &str = "https://as.saas.example";

async fn open(database: &TestDatabase) -> Store {
    let store = Store::connect(database.url(), 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn idp(id: &str, condition: Option<&str>) -> IdentityProviderConfig {
    idp_at(id, ISSUER, condition)
}

fn idp_at(id: &str, issuer: &str, condition: Option<&str>) -> IdentityProviderConfig {
    serde_json::from_value(json!({
        "id": id,
        "issuer": issuer,
        "jwks_uri": "https://idp.corp.example/keys",
        "condition": condition,
    }))
    .expect("identity provider")
}

fn audience(id: &str, issuer: &str, aliases: &[&str]) -> AudienceConfig {
    serde_json::from_value(json!({ "id": id, "issuer": issuer, "aliases": aliases }))
        .expect("audience")
}

/// The registry built from a fresh database holding one admin-made trust document `id`, after
/// the configuration file `config` is synchronised over it (what `serve` does at start).
async fn registry_over(
    kind: TrustKind,
    id: &str,
    document: serde_json::Value,
    config: &Config,
) -> Arc<Registry> {
    let database = TestDatabase::sqlite();
    let store = open(&database).await;
    admin_made(&store, kind, id, document).await;
    frontdesk::trust::sync_config(&store, config, 2)
        .await
        .expect("sync");
    let trust = Trust::load(store.clone(), Vec::new()).await.expect("load");
    trust.current()
}

async fn admin_made(store: &Store, kind: TrustKind, id: &str, document: serde_json::Value) {
    store
        .upsert_trust(
            kind,
            &TrustDocument {
                id: id.into(),
                document,
                managed_by_config: false,
                updated_at: 1,
            },
        )
        .await
        .expect("admin-made trust");
}

/// FED-02 (one trust per exact issuer): an identity provider an administrator created before
/// the configuration file declared the same issuer never takes the place of the file's
/// provider, whatever the two ids sort as. Before the fix, the provider whose id sorted last
/// won, so an admin-made `zz-…` provider without the file's condition replaced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_made_provider_never_shadows_the_configured_issuer_fed_02() {
    for shadow_id in ["aa-lax", "zz-lax"] {
        let config = Config {
            identity_providers: vec![idp("corp", Some(r#""admins" in subject.groups"#))],
            ..Config::default()
        };
        let registry = registry_over(
            TrustKind::IdentityProvider,
            shadow_id,
            serde_json::to_value(idp(shadow_id, None)).expect("json"),
            &config,
        )
        .await;
        let trusted = registry.idp_by_issuer(ISSUER).expect("issuer trusted");
        assert_eq!(trusted.config.id, "corp", "shadowed by {shadow_id}");
        assert!(trusted.condition.is_some());
        // The configured provider is found by its id too (sign-in and admin SSO use ids).
        assert!(registry.idp_by_id("corp").is_some());
    }
}

/// An admin-made audience whose issuer or alias is a value the configuration file's audience
/// answers to does not take that value over: the file's audience keeps its issuer and aliases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_made_audience_never_shadows_a_configured_audience_value() {
    for shadow_id in ["aa-other", "zz-other"] {
        let config = Config {
            audiences: vec![audience("saas", RAS, &["urn:example:saas"])],
            ..Config::default()
        };
        let registry = registry_over(
            TrustKind::Audience,
            shadow_id,
            serde_json::to_value(audience(
                shadow_id,
                "https://as.attacker.example",
                &[RAS, "urn:example:saas"],
            ))
            .expect("json"),
            &config,
        )
        .await;
        for value in [RAS, "urn:example:saas"] {
            assert_eq!(
                registry.audience(value).expect("audience").config.id,
                "saas",
                "`{value}` shadowed by {shadow_id}"
            );
        }
        // The conflicting admin-made audience is not half-registered under its other values.
        assert!(registry.audience("https://as.attacker.example").is_none());
    }
}

/// FED-02: an admin-made provider whose issuer differs from the file's only by a final `/` or
/// the host's case is the same issuer to a URL parser (and to an IdP that echoes the request's
/// host into `iss`); it is not trusted beside the file's provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_made_near_duplicate_issuer_is_not_trusted_fed_02() {
    for variant in ["https://idp.corp.example/", "https://IDP.corp.example"] {
        let config = Config {
            identity_providers: vec![idp("corp", Some("false"))],
            ..Config::default()
        };
        let registry = registry_over(
            TrustKind::IdentityProvider,
            "aa-lax",
            serde_json::to_value(idp_at("aa-lax", variant, None)).expect("json"),
            &config,
        )
        .await;
        assert_eq!(
            registry
                .idp_by_issuer(ISSUER)
                .expect("configured")
                .config
                .id,
            "corp"
        );
        assert!(registry.idp_by_issuer(variant).is_none(), "{variant}");
    }
}
