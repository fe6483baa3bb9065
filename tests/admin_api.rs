//! The admin JSON API (`/admin/api/v1`) over real HTTP: API tokens (CLI and library), bearer
//! authentication and roles, CRUD of the trust objects with validation and config-managed
//! refusals, a client created through the API performing a real token exchange, key rotation,
//! the audit log, and the OpenAPI document against the router.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::collections::BTreeSet;

use env::{AGENT_AT_IDP, Env, ID_JAG, ID_TOKEN, RAS_ISSUER, TOKEN_EXCHANGE};
use frontdesk::admin::api::{ROUTES, create_token, revoke_token};
use frontdesk::store::{AdminRole, AdminStore};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPS: &str = "ops";

struct Api {
    env: Env,
    admin: String,
    auditor: String,
}

impl Api {
    async fn start() -> anyhow::Result<Api> {
        let env = Env::start().await?;
        let store = &env.server.state.store;
        let now = env::now();
        let admin = create_token(store, OPS, AdminRole::Admin, None, "test", now).await?;
        let auditor = create_token(store, "reader", AdminRole::Auditor, None, "test", now).await?;
        Ok(Api {
            env,
            admin,
            auditor,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .env
            .http
            .request(method, format!("{}/admin/api/v1{path}", self.env.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}: {text}"))?
        };
        Ok((status, value))
    }

    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(method, path, Some(&self.admin), body).await
    }

    /// The audit events with actor `api:ops`, newest first.
    async fn api_changes(&self) -> anyhow::Result<Vec<Value>> {
        let (status, page) = self
            .admin(
                Method::GET,
                "/audit-events?decision=changed&limit=1000",
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        Ok(page["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|event| event["detail"]["actor"] == "api:ops")
            .collect())
    }
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"].as_str().unwrap_or(""),
        body["field"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn the_cli_prints_a_token_once_and_stores_only_its_hash() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("fd.db");
    let config = dir.path().join("frontdesk.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"https://sts.example.com\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[keys]\nencryption_key = \"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\"\n",
            db.display()
        ),
    )?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FRONTDESK_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["--config", config.to_str().unwrap_or_default()])
        .args(["admin", "create-token", "--name", "ci", "--role", "auditor"])
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)?.trim().to_string();
    assert!(token.starts_with("fd_") && token.len() == 3 + 43, "{token}");

    let env = Env::start_with(|config| {
        config.database.url =
            frontdesk::secret::SecretString::new(format!("sqlite://{}", db.display()));
    })
    .await?;
    let tokens = env.server.state.store.list_api_tokens().await?;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].name, "ci");
    assert_eq!(tokens[0].role, AdminRole::Auditor);
    assert!(tokens[0].last_used_at.is_none());
    assert_ne!(tokens[0].id_hash, token);
    assert!(!tokens[0].id_hash.contains(&token[3..]));

    let response = env
        .http
        .get(format!("{}/admin/api/v1/keys", env.url))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = env.server.state.store.list_api_tokens().await?;
    assert!(tokens[0].last_used_at.is_some());
    Ok(())
}

#[tokio::test]
async fn bearer_authentication_and_roles() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let url = format!("{}/admin/api/v1/identity-providers", api.env.url);

    // No token, a bad token, a token without the prefix: 401 JSON with WWW-Authenticate.
    for token in [None, Some("fd_not-a-real-token"), Some("not-even-prefixed")] {
        let mut request = api.env.http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "unauthorized");
    }
    // A browser session cookie alone does not drive the API.
    let response = api
        .env
        .http
        .post(&url)
        .header("cookie", "frontdesk_admin=whatever")
        .json(&json!({ "id": "x", "issuer": "https://x.example" }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await?;
    assert!(
        body["message"].as_str().unwrap_or("").contains("cookie"),
        "{body}"
    );

    // Auditors read, but every write is 403.
    let (status, list) = api
        .call(Method::GET, "/identity-providers", Some(&api.auditor), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], "corp");
    let writes = [
        (
            Method::POST,
            "/identity-providers",
            Some(json!({ "id": "x", "issuer": "https://x.example" })),
        ),
        (
            Method::PUT,
            "/audiences/saas",
            Some(json!({ "issuer": RAS_ISSUER })),
        ),
        (Method::DELETE, "/clients/agent", None),
        (Method::POST, "/clients/agent/rotate-secret", None),
        (Method::POST, "/keys/rotate", Some(json!({ "now": true }))),
        (Method::POST, "/keys/some-kid/retire", None),
    ];
    for (method, path, body) in writes {
        let (status, body) = api
            .call(method.clone(), path, Some(&api.auditor), body)
            .await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "forbidden");
    }

    // Revoked and expired tokens stop working.
    let store = &api.env.server.state.store;
    assert!(revoke_token(store, "reader", "test", env::now()).await?);
    let (status, _) = api
        .call(Method::GET, "/keys", Some(&api.auditor), None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let now = api.env.server.state.admin.now();
    let short = create_token(
        store,
        "short",
        AdminRole::Admin,
        Some(now + 60),
        "test",
        now,
    )
    .await?;
    let (status, _) = api.call(Method::GET, "/keys", Some(&short), None).await?;
    assert_eq!(status, StatusCode::OK);
    api.env.server.state.admin.advance_clock(61);
    let (status, _) = api.call(Method::GET, "/keys", Some(&short), None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn invalid_tokens_are_audited_then_throttled_and_valid_ones_still_work() -> anyhow::Result<()>
{
    let api = Api::start().await?;
    // Five invalid tokens from this address: 401 each, each audited with its reason.
    for token in [
        "fd_guess-1",
        "fd_guess-2",
        "no-prefix",
        "fd_guess-3",
        "fd_guess-4",
    ] {
        let (status, body) = api.call(Method::GET, "/keys", Some(token), None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // The sixth is refused before any lookup or audit write.
    let (status, body) = api
        .call(Method::GET, "/keys", Some("fd_guess-5"), None)
        .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "too_many_attempts");
    // A valid token from the same address is not locked out.
    let (status, _) = api.admin(Method::GET, "/keys", None).await?;
    assert_eq!(status, StatusCode::OK);

    let (_, page) = api
        .admin(Method::GET, "/audit-events?decision=denied&limit=100", None)
        .await?;
    let items: Vec<Value> = page["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["event"] == "admin_api_auth")
        .collect();
    let reasons: Vec<&str> = items.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 5, "{page}");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "api_token_unknown")
            .count(),
        4
    );
    assert!(reasons.contains(&"api_token_malformed"));
    assert!(items.iter().all(|e| e["decision"] == "denied"));
    let dump = page.to_string();
    assert!(
        !dump.contains("fd_guess"),
        "tokens never reach the audit log"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_with_allow() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let response = api
        .env
        .http
        .patch(format!("{}/admin/api/v1/keys", api.env.url))
        .bearer_auth(&api.admin)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(allow.contains("GET"), "{allow}");
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "method_not_allowed");
    Ok(())
}

#[tokio::test]
async fn identity_providers_and_audiences_crud_with_validation() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let partner = json!({ "id": "partner", "issuer": "https://partner.example",
                          "jwks_uri": "https://partner.example/jwks", "token_types": ["id_token"] });

    let (status, created) = api
        .admin(Method::POST, "/identity-providers", Some(partner.clone()))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["managed_by_config"], false);
    let (status, again) = api
        .admin(Method::POST, "/identity-providers", Some(partner.clone()))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(error_of(&again), ("conflict", "id"));
    // FED-02: a second provider for the same issuer as URL parsers read it (host case, a
    // default port, a final slash) is refused here, not saved and then skipped by the registry.
    for issuer in [
        "https://partner.example",
        "https://PARTNER.example",
        "https://partner.example:443/",
    ] {
        let twin = json!({ "id": "partner-twin", "issuer": issuer,
                           "jwks_uri": "https://partner.example/jwks", "token_types": ["id_token"] });
        let (status, body) = api
            .admin(Method::POST, "/identity-providers", Some(twin))
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{issuer}: {body}");
        assert_eq!(error_of(&body), ("invalid", "issuer"), "{issuer}: {body}");
    }

    // Validation: 422 naming the field, nothing saved.
    let cases = [
        (
            json!({ "id": "bad", "issuer": "ftp://bad.example", "jwks_uri": "https://bad.example/k" }),
            "issuer",
        ),
        (
            json!({ "id": "bad", "issuer": "https://bad.example", "condition": "subject.email ==" }),
            "condition",
        ),
        (
            json!({ "id": "bad", "issuer": "https://bad.example", "algorithms": ["HS256"] }),
            "algorithms",
        ),
        (
            json!({ "id": "bad", "issuer": "https://bad.example", "colour": "blue" }),
            "colour",
        ),
        (json!({ "id": "bad" }), "issuer"),
        (
            json!({ "id": "bad", "issuer": "https://bad.example", "clock_skew_secs": "soon" }),
            "clock_skew_secs",
        ),
    ];
    for (document, field) in cases {
        let (status, body) = api
            .admin(Method::POST, "/identity-providers", Some(document.clone()))
            .await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{document}: {body}"
        );
        assert_eq!(error_of(&body), ("invalid", field), "{document}: {body}");
        assert!(!body["message"].as_str().unwrap_or("").is_empty());
    }
    let (status, _) = api
        .admin(Method::GET, "/identity-providers/bad", None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replace: the id comes from the URL; a different id in the body is refused.
    let mut changed = partner.clone();
    changed["enabled"] = json!(false);
    changed["condition"] = json!("subject.email.endsWith('@partner.example')");
    let (status, body) = api
        .admin(
            Method::PUT,
            "/identity-providers/partner",
            Some(changed.clone()),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    changed["id"] = json!("other");
    let (status, body) = api
        .admin(Method::PUT, "/identity-providers/partner", Some(changed))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&body), ("invalid", "id"));
    let (_, fetched) = api
        .admin(Method::GET, "/identity-providers/partner", None)
        .await?;
    assert_eq!(fetched["enabled"], false);

    // Config-managed objects are read-only: 409.
    let (status, body) = api
        .admin(
            Method::PUT,
            "/identity-providers/corp",
            Some(partner.clone()),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "config_managed");
    let (status, body) = api.admin(Method::DELETE, "/audiences/saas", None).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "config_managed");

    // Audiences: a CEL parse error in a claim mapping names the claim.
    let crm = json!({ "id": "crm", "issuer": "https://as.crm.example", "token_type": "id-jag",
                      "scopes": ["read"], "claims": { "sub": "subject.sub +" } });
    let (status, body) = api
        .admin(Method::POST, "/audiences", Some(crm.clone()))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(error_of(&body).1.starts_with("claims"), "{body}");
    let mut crm = crm;
    crm["claims"] = json!({ "sub": "subject.sub" });
    let (status, body) = api.admin(Method::POST, "/audiences", Some(crm)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = api.admin(Method::GET, "/audiences", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|a| a["id"] == "crm"))
    );

    // Delete.
    for path in ["/identity-providers/partner", "/audiences/crm"] {
        let (status, _) = api.admin(Method::DELETE, path, None).await?;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = api.admin(Method::GET, path, None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
    }

    // Every change is audited with actor api:ops.
    let events: Vec<String> = api
        .api_changes()
        .await?
        .iter()
        .map(|event| event["event"].as_str().unwrap_or("").to_string())
        .collect();
    for expected in [
        "identity_provider_created",
        "identity_provider_updated",
        "identity_provider_deleted",
        "audience_created",
        "audience_deleted",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "{expected} in {events:?}"
        );
    }
    assert_eq!(events.len(), 5, "{events:?}");
    Ok(())
}

/// IDJAG-ACCEPT-23: the configuration file refuses an identity provider at this server's own
/// issuer that would vouch for ID-JAGs or chaining grants (frontdesk never redeems what it
/// issued itself); the API and the page, which promise the file's validation, refuse it too.
#[tokio::test]
async fn an_identity_provider_at_this_servers_own_issuer_cannot_vouch_for_grants()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let own = api.env.server.state.config.issuer.clone();
    for token_type in ["id_jag", "jwt_grant"] {
        let document = json!({ "id": "myself", "issuer": own, "token_types": [token_type],
                               "jwks_uri": format!("{own}/jwks.json") });
        let (status, body) = api
            .admin(Method::POST, "/identity-providers", Some(document))
            .await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{token_type}: {body}"
        );
        assert_eq!(error_of(&body), ("invalid", "issuer"), "{body}");
    }
    // Nor by an update of an identity provider that was fine when created.
    let partner = json!({ "id": "partner", "issuer": "https://partner.example",
                          "jwks_uri": "https://partner.example/jwks", "token_types": ["id_jag"] });
    let (status, body) = api
        .admin(Method::POST, "/identity-providers", Some(partner))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let moved = json!({ "issuer": own, "jwks_uri": format!("{own}/jwks.json"),
                        "token_types": ["id_jag"] });
    let (status, body) = api
        .admin(Method::PUT, "/identity-providers/partner", Some(moved))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "issuer"), "{body}");
    // Nor may its jwt subject tokens be addressed to this server while it sends grants here:
    // a grant would pass as a subject token (the file's rule, trust.rs).
    let both = json!({ "issuer": "https://partner.example", "jwks_uri": "https://partner.example/jwks",
                       "token_types": ["id_jag", "jwt"], "audiences": [own] });
    let (status, body) = api
        .admin(Method::PUT, "/identity-providers/partner", Some(both))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "audiences"), "{body}");
    Ok(())
}

/// `source` says a client registered itself (`dcr`) or is a metadata-document client (`cimd`);
/// the configuration file refuses it on the clients it declares, and the consent page shows it
/// to users. An administrator's API call cannot set it or change it either.
#[tokio::test]
async fn an_administrator_cannot_make_a_client_pass_for_self_registered() -> anyhow::Result<()> {
    let api = Api::start().await?;
    for source in ["dcr", "cimd"] {
        let client = json!({ "client_id": "robot", "auth_method": "client_secret_basic",
                             "audiences": ["saas"], "source": source });
        let (status, body) = api.admin(Method::POST, "/clients", Some(client)).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{source}: {body}");
        assert_eq!(error_of(&body), ("invalid", "source"), "{body}");
    }
    let client = json!({ "client_id": "robot", "auth_method": "client_secret_basic",
                         "audiences": ["saas"] });
    let (status, body) = api
        .admin(Method::POST, "/clients", Some(client.clone()))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut relabelled = client;
    relabelled["source"] = json!("dcr");
    let (status, body) = api
        .admin(Method::PUT, "/clients/robot", Some(relabelled))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "source"), "{body}");
    let (_, fetched) = api.admin(Method::GET, "/clients/robot", None).await?;
    assert!(fetched.get("source").is_none(), "{fetched}");
    Ok(())
}

/// An identity provider's or a client's keys are public: a private JWK member (`d`, the primes,
/// a symmetric `k`) or a PEM private key pasted with the certificates would be shown on the
/// edit page and by the API to every auditor, and kept in the audit log for good. Refused.
#[tokio::test]
async fn private_key_material_is_refused_where_public_keys_belong() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let public = json!({ "kty": "RSA", "kid": "k1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB" });
    let mut private = public.clone();
    private["d"] = json!(
        "X4cTteJY_gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoVH-HLLKD9M7dx5oo7GURknchnrRweUkC7hT5fJLM0WbFAKNLWY2vv7B6NqXSzUvxT0_YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy_nHNKroADIkJ46pRUohsXywbReAdYaMwFs9tv8d_cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3Sk5ZiG7xojPLu4sbg1U2jx4IBTNBznbJSzFHK66jT8bgkuqsk0GjskDJk19Z4qwjwbsnn4j2WBii3RL-Us2lGVkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8Q"
    );
    let oct = json!({ "kty": "oct", "kid": "s1", "k": "GawgguFyGrWKav7AX4VKUg" });

    let idp = |key: &Value| {
        json!({ "id": "partner", "issuer": "https://partner.example",
                "jwks": json!({ "keys": [key] }).to_string(), "token_types": ["id_token"] })
    };
    for key in [&private, &oct] {
        let (status, body) = api
            .admin(Method::POST, "/identity-providers", Some(idp(key)))
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {body}");
        assert_eq!(error_of(&body), ("invalid", "jwks"), "{body}");
    }
    let client = |key: &Value| {
        json!({ "client_id": "signer", "auth_method": "private_key_jwt", "audiences": ["saas"],
                "jwks": json!({ "keys": [key] }).to_string() })
    };
    for key in [&private, &oct] {
        let (status, body) = api
            .admin(Method::POST, "/clients", Some(client(key)))
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {body}");
        assert_eq!(error_of(&body), ("invalid", "jwks"), "{body}");
    }
    let certificate = include_str!("fixtures/saml/idp.crt");
    let key = include_str!("fixtures/saml/idp.key");
    let saml = json!({ "id": "okta-saml", "issuer": "http://www.okta.com/exk1",
                       "token_types": ["saml2"],
                       "saml_certificates": format!("{certificate}\n{key}") });
    let (status, body) = api
        .admin(Method::POST, "/identity-providers", Some(saml))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "saml_certificates"), "{body}");

    // The public halves are fine, and nothing refused was stored or audited.
    let (status, body) = api
        .admin(Method::POST, "/identity-providers", Some(idp(&public)))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .admin(Method::POST, "/clients", Some(client(&public)))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let log = serde_json::to_string(&api.env.audit_log().await?)?;
    assert!(!log.contains("PRIVATE KEY") && !log.contains("GawgguFyGrWKav7AX4VKUg"));
    Ok(())
}

/// JWKS-07: "test connection" fetches with the same rule as the fetches it stands for, https
/// (or http on a loopback address) at every hop: a redirect to plain http elsewhere is refused
/// rather than followed, so the test neither reports a key set the token endpoint would never
/// load nor lets whoever configured the URL point the server at other addresses.
#[tokio::test]
async fn test_connection_does_not_follow_a_redirect_to_plain_http() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let api = Api::start().await?;
    // Where the redirect leads: plain http on an address that is not 127.0.0.1, counting hits.
    let hits = Arc::new(AtomicUsize::new(0));
    let target = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let target_url = format!("http://{}/jwks", target.local_addr()?);
    let counted = hits.clone();
    let jwks = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                axum::Json(
                    json!({ "keys": [{ "kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB" }] }),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(target, jwks).await });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let start_url = format!("http://{}/jwks", redirector.local_addr()?);
    let redirect = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::response::Redirect::to(&target_url) }),
    );
    tokio::spawn(async move { axum::serve(redirector, redirect).await });

    let idp = json!({ "id": "partner", "issuer": "https://partner.example",
                      "jwks_uri": start_url, "token_types": ["id_token"] });
    let (status, body) = api
        .admin(Method::POST, "/identity-providers", Some(idp))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, test) = api
        .admin(
            Method::POST,
            "/identity-providers/partner/test-connection",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(test["ok"], false, "{test}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the plain-http hop was fetched"
    );
    Ok(())
}

async fn exchange(api: &Api, client: &str, secret: &str) -> anyhow::Result<(u16, Value)> {
    let id_token = api
        .env
        .idp
        .mint(json!({ "aud": format!("{client}-at-idp"), "sub": "user-1", "email": "ada@example.com" }))
        .await?;
    api.env
        .post_token(
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", RAS_ISSUER),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            Some((client, secret)),
        )
        .await
}

#[tokio::test]
async fn a_client_created_through_the_api_exchanges_tokens() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let client = json!({ "client_id": "robot", "auth_method": "client_secret_basic",
                         "audiences": ["saas"], "idp_client_ids": { "corp": "robot-at-idp" } });

    // Validation names the field.
    let mut bad = client.clone();
    bad["audiences"] = json!(["nowhere"]);
    let (status, body) = api.admin(Method::POST, "/clients", Some(bad)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "audiences"));

    // The secret is returned once, never stored or shown again.
    let (status, created) = api
        .admin(Method::POST, "/clients", Some(client.clone()))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["client_secret"].as_str().unwrap_or("").to_string();
    assert!(secret.len() >= 40, "{created}");
    assert!(created.get("secret_hash").is_none());
    let (_, fetched) = api.admin(Method::GET, "/clients/robot", None).await?;
    assert!(fetched.get("client_secret").is_none() && fetched.get("secret_hash").is_none());
    let (_, list) = api.admin(Method::GET, "/clients", None).await?;
    assert!(!list.to_string().contains(&secret));
    assert!(!list.to_string().contains("argon2"));

    let (status, body) = exchange(&api, "robot", &secret).await?;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());

    // Rotation: the new secret works, the old one no longer does.
    let (status, rotated) = api
        .admin(Method::POST, "/clients/robot/rotate-secret", None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap_or("").to_string();
    assert_ne!(new_secret, secret);
    let (status, _) = exchange(&api, "robot", &secret).await?;
    assert_eq!(status, 401);
    let (status, body) = exchange(&api, "robot", &new_secret).await?;
    assert_eq!(status, 200, "{body}");

    // A PUT keeps the secret; disabling through PUT refuses the client.
    let mut disabled = client.clone();
    disabled["enabled"] = json!(false);
    let (status, body) = api
        .admin(Method::PUT, "/clients/robot", Some(disabled))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("client_secret").is_none());
    let (status, _) = exchange(&api, "robot", &new_secret).await?;
    assert_eq!(status, 401);
    let (status, _) = api
        .admin(Method::PUT, "/clients/robot", Some(client))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = exchange(&api, "robot", &new_secret).await?;
    assert_eq!(status, 200, "{body}");

    // Config-managed clients cannot be rotated.
    let (status, body) = api
        .admin(Method::POST, "/clients/agent/rotate-secret", None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let _ = AGENT_AT_IDP;

    let events: Vec<Value> = api.api_changes().await?;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        [
            "client_updated",
            "client_updated",
            "client_secret_rotated",
            "client_created"
        ]
    );
    assert!(!serde_json::to_string(&events)?.contains(&secret));
    Ok(())
}

#[tokio::test]
async fn keys_rotate_and_retire_and_audit_events_paginate() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let (status, keys) = api.admin(Method::GET, "/keys", None).await?;
    assert_eq!(status, StatusCode::OK);
    let items = keys["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{keys}");
    assert_eq!(items[0]["state"], "active");
    let first = items[0]["kid"].as_str().unwrap_or("").to_string();

    let (status, body) = api
        .admin(Method::POST, "/keys/rotate", Some(json!({ "now": "yes" })))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "now"));
    let (status, rotated) = api
        .admin(Method::POST, "/keys/rotate", Some(json!({})))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["state"], "next");
    let next_kid = rotated["kid"].as_str().unwrap_or("").to_string();
    let (status, body) = api
        .admin(Method::POST, &format!("/keys/{next_kid}/retire"), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "retired");
    let (status, rotated) = api
        .admin(Method::POST, "/keys/rotate", Some(json!({ "now": true })))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let active = rotated["kid"].as_str().unwrap_or("").to_string();
    let (_, keys) = api.admin(Method::GET, "/keys", None).await?;
    let state_of = |kid: &str| {
        keys["items"]
            .as_array()
            .and_then(|items| items.iter().find(|k| k["kid"] == kid))
            .map(|k| k["state"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(state_of(&active).as_deref(), Some("active"), "{keys}");
    assert_eq!(state_of(&first).as_deref(), Some("retired"), "{keys}");
    assert_eq!(state_of(&next_kid).as_deref(), Some("retired"), "{keys}");
    let (status, _) = api
        .admin(Method::POST, "/keys/no-such-kid/retire", None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The audit log lists the API's changes, pageable with before_id/limit.
    let (status, page) = api
        .admin(Method::GET, "/audit-events?decision=changed&limit=2", None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["event"], "key_rotated");
    assert_eq!(items[0]["detail"]["actor"], "api:ops");
    assert_eq!(items[1]["event"], "key_retired");
    let next = page["next_before_id"].as_i64().unwrap_or_default();
    let (_, older) = api
        .admin(
            Method::GET,
            &format!("/audit-events?decision=changed&limit=2&before_id={next}"),
            None,
        )
        .await?;
    assert_eq!(older["items"][0]["event"], "key_rotated");
    assert!(older["items"][0]["id"].as_i64().unwrap_or(i64::MAX) < next);
    let (status, body) = api
        .admin(Method::GET, "/audit-events?limit=0", None)
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&body), ("invalid", "limit"));
    let (status, _) = api
        .admin(Method::GET, "/audit-events?decision=maybe", None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api.api_changes().await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_is_served() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let (status, document) = api.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["bearerToken"]["scheme"],
        "bearer"
    );
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    // Every listed route is really served: without a token the handler answers 401 (an
    // unrouted path would be the API's JSON 404, a wrong method 405).
    for (method, path) in ROUTES {
        let path = path.replace("{id}", "x").replace("{kid}", "x");
        let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
        let response = api
            .env
            .http
            .request(method.clone(), format!("{}{path}", api.env.url))
            .send()
            .await?;
        let expected = if path.ends_with("openapi.json") {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(response.status(), expected, "{method} {path}");
    }
    let (status, body) = api.admin(Method::GET, "/nothing-here", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    Ok(())
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> anyhow::Result<&'a str> {
    let from = html
        .find(start)
        .ok_or_else(|| anyhow::anyhow!("no {start} in {html}"))?
        + start.len();
    let to = html[from..]
        .find(end)
        .ok_or_else(|| anyhow::anyhow!("no {end} after {start}"))?;
    Ok(&html[from..from + to])
}

#[tokio::test]
async fn the_admin_page_creates_lists_and_revokes_api_tokens() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let store = &api.env.server.state.store;
    let password = "correct horse battery staple";
    frontdesk::admin::auth::create_user(store, "alice", password, AdminRole::Admin, "test", 0)
        .await?;
    // The page's forms refuse a post that names no origin; a browser sends `Origin`.
    let mut origin = reqwest::header::HeaderMap::new();
    origin.insert(
        reqwest::header::ORIGIN,
        reqwest::header::HeaderValue::from_str(&api.env.url)?,
    );
    let browser = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(origin)
        .build()?;
    let url = |path: &str| format!("{}{path}", api.env.url);
    let response = browser
        .post(url("/admin/sign-in"))
        .form(&[("username", "alice"), ("password", password)])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let html = browser
        .get(url("/admin/api-tokens"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("<code>ops</code>") && html.contains("<code>reader</code>"));
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"")?.to_string();

    // Without the CSRF token: refused.
    let response = browser
        .post(url("/admin/api-tokens"))
        .form(&[("name", "web"), ("role", "admin")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Invalid name: 422 with the reason, nothing created.
    let response = browser
        .post(url("/admin/api-tokens"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "no spaces"),
            ("role", "admin"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await?.contains("form-error"));

    let response = browser
        .post(url("/admin/api-tokens"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "web"),
            ("role", "auditor"),
            ("expires_in_days", "30"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await?;
    let token = between(&html, "<code id=\"api-token\">", "</code>")?.to_string();
    assert!(token.starts_with("fd_"));
    let (status, _) = api.call(Method::GET, "/keys", Some(&token), None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call(Method::POST, "/keys/rotate", Some(&token), Some(json!({})))
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Shown once: the list does not contain it.
    let html = browser
        .get(url("/admin/api-tokens"))
        .send()
        .await?
        .text()
        .await?;
    assert!(html.contains("<code>web</code>") && !html.contains(&token));
    // The browser session cannot use the API.
    let response = browser.get(url("/admin/api/v1/keys")).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = browser
        .post(url("/admin/api-tokens/web/revoke"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, _) = api.call(Method::GET, "/keys", Some(&token), None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, page) = api
        .admin(Method::GET, "/audit-events?decision=changed", None)
        .await?;
    let by_alice: Vec<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["detail"]["actor"] == "alice")
        .filter_map(|event| event["event"].as_str())
        .filter(|name| name.starts_with("api_token"))
        .collect();
    assert_eq!(by_alice, ["api_token_revoked", "api_token_created"]);
    Ok(())
}

/// `POST /policy/eval`: the token endpoint's decision for a subject given as claims, with the
/// trust this instance runs now (API-created audiences included), for any role; a denial is a
/// 200 with its reason, a malformed question a 422.
#[tokio::test]
async fn policy_eval_decides_an_exchange_from_claims_for_any_role() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let ada = json!({ "iss": api.env.idp.issuer, "sub": "user-1", "email": "ada@example.com",
                      "acr": "phr", "groups": ["staff"] });
    let question = json!({ "client_id": "agent", "claims": ada, "audience": RAS_ISSUER,
                           "scope": "read delete" });
    let (status, report) = api
        .call(
            Method::POST,
            "/policy/eval",
            Some(&api.auditor),
            Some(question.clone()),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["decision"], "issued");
    assert_eq!(report["audience"], "saas");
    assert_eq!(report["identity_provider"], "corp");
    assert_eq!(report["issued_token_type"], ID_JAG);
    assert_eq!(report["scopes_granted"], json!(["read"]));
    assert_eq!(
        report["claims"],
        json!({ "sub": "user-1", "email": "ada@example.com", "acr": "phr" })
    );

    // An audience created through the API a moment ago is in the trust evaluated.
    let gated = json!({ "id": "gated", "issuer": "https://as.gated.example", "token_type": "id-jag",
                        "scopes": ["read"] });
    let (status, body) = api.admin(Method::POST, "/audiences", Some(gated)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut other = question.clone();
    other["audience"] = json!("https://as.gated.example");
    let (status, report) = api.admin(Method::POST, "/policy/eval", Some(other)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["decision"], "denied");
    assert_eq!(report["audience"], "gated");
    assert_eq!(report["reason"], "audience_not_allowed_for_client");
    assert_eq!(report["error"], "invalid_target");

    // The identity provider must be trusted, as at the token endpoint.
    let mut stranger = question.clone();
    stranger["claims"]["iss"] = json!("https://stranger.example");
    let (_, report) = api
        .admin(Method::POST, "/policy/eval", Some(stranger))
        .await?;
    assert_eq!(report["reason"], "subject_untrusted_issuer");
    assert_eq!(report["error"], "invalid_request");

    // A malformed question names the problem; without a token there is no answer.
    let (status, body) = api
        .admin(
            Method::POST,
            "/policy/eval",
            Some(json!({ "client_id": "agent", "claims": {}, "colour": "red" })),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = api
        .admin(Method::POST, "/policy/eval", Some(json!({ "claims": {} })))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .call(Method::POST, "/policy/eval", None, Some(question))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// `POST /revocations` (and `frontdesk subject revoke`): every live access token of one user
/// revoked at once — introspection then says inactive — in an audit event with the counts and
/// the API token's name; the same for one client's tokens with `{"client_id": …}`. Admin role
/// only; a body that is neither is 422.
#[tokio::test]
async fn a_revocation_kills_every_live_token_of_a_subject() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let env = &api.env;
    let mut tokens = Vec::new();
    let mut subject = String::new();
    for _ in 0..2 {
        let (token, sub) = env.local_access_token().await?;
        tokens.push(token);
        subject = sub;
    }
    let active = |token: String| async move { env.introspect_active(&token).await };
    assert!(active(tokens[0].clone()).await?);

    let body = json!({ "subject": subject });
    let (status, _) = api
        .call(
            Method::POST,
            "/revocations",
            Some(&api.auditor),
            Some(body.clone()),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({ "user": subject })),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        active(tokens[1].clone()).await?,
        json!(true),
        "nothing revoked yet"
    );

    let (status, revoked) = api
        .admin(Method::POST, "/revocations", Some(body.clone()))
        .await?;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(
        revoked,
        json!({ "subject": subject, "access_tokens": 2, "refresh_tokens": 0, "authorization_codes": 0 })
    );
    for token in &tokens {
        assert!(!active(token.clone()).await?);
    }
    let (_, again) = api.admin(Method::POST, "/revocations", Some(body)).await?;
    assert_eq!(again["access_tokens"], 0, "already revoked");
    let changes = api.api_changes().await?;
    let event = changes
        .iter()
        .find(|event| {
            event["event"] == "subject_tokens_revoked" && event["detail"]["access_tokens"] == 2
        })
        .ok_or_else(|| anyhow::anyhow!("no audit event: {changes:?}"))?;
    assert_eq!(event["subject"], json!(subject));

    // A client's tokens, the client kept: `{"client_id": …}`; both members at once is 422.
    let (token, _) = env.local_access_token().await?;
    let both = json!({ "subject": subject, "client_id": env::AGENT });
    let (status, _) = api.admin(Method::POST, "/revocations", Some(both)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(active(token.clone()).await?);
    let (status, revoked) = api
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({ "client_id": env::AGENT })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(
        revoked,
        json!({ "client_id": env::AGENT, "access_tokens": 1, "refresh_tokens": 0, "authorization_codes": 0 })
    );
    assert!(!active(token).await?);
    let changes = api.api_changes().await?;
    let event = changes
        .iter()
        .find(|event| event["event"] == "client_tokens_revoked")
        .ok_or_else(|| anyhow::anyhow!("no audit event: {changes:?}"))?;
    assert_eq!(event["client_id"], json!(env::AGENT));
    // The client is still there and gets tokens again.
    let (token, _) = env.local_access_token().await?;

    // Everything issued for the users of one identity provider: `{"issuer": …}`.
    let (status, revoked) = api
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({ "issuer": env.idp.issuer })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["issuer"], json!(env.idp.issuer));
    assert_eq!(revoked["access_tokens"], 1, "{revoked}");
    assert!(!active(token).await?);
    let changes = api.api_changes().await?;
    assert!(
        changes
            .iter()
            .any(|event| event["event"] == "issuer_tokens_revoked"
                && event["subject_issuer"] == json!(env.idp.issuer)),
        "{changes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_saml_identity_provider_created_through_the_api_vouches_for_assertions_at_once()
-> anyhow::Result<()> {
    let api = Api::start().await?;
    let fixture = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/saml")
                .join(name),
        )
    };
    let certificate = fixture("idp.crt")?;
    // Without its certificates a SAML identity provider is refused, naming the field.
    let (status, body) = api
        .admin(
            Method::POST,
            "/identity-providers",
            Some(
                json!({ "id": "adfs", "issuer": "http://adfs.example.com/adfs/services/trust",
                         "token_types": ["saml2"] }),
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(&body), ("invalid", "saml_certificates"));
    // The SAML face of the directory behind the OIDC IdP `corp`: its users' `sub`s are one
    // namespace, named by corp's issuer (a provider's default namespace), so audiences that do
    // not map `sub` keep issuing (decisions §43).
    let (status, body) = api
        .admin(
            Method::POST,
            "/identity-providers",
            Some(
                json!({ "id": "adfs", "issuer": "http://adfs.example.com/adfs/services/trust",
                         "token_types": ["saml2"], "saml_certificates": certificate,
                         "subject_namespace": api.env.idp.issuer }),
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An assertion from that IdP for the agent (known there by its client_id) is exchanged.
    let xml = idp::saml_assertion(&json!({
        "key": fixture("idp.key")?,
        "cert": certificate,
        "issuer": "http://adfs.example.com/adfs/services/trust",
        "audience": env::AGENT,
        "name_id": "carol@example.com",
    }))
    .await?;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&xml);
    let (status, body) = api
        .env
        .exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", RAS_ISSUER),
            ("subject_token", token.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ])
        .await?;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = idp::decode_unverified(body["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(claims["sub"], json!("carol@example.com"));

    // The policy simulator decides for the claims a SAML assertion becomes.
    let question = json!({ "client_id": "agent", "subject_token_type": "saml2",
        "claims": { "iss": "http://adfs.example.com/adfs/services/trust", "sub": "dave@example.com",
                    "saml_attributes": { "groups": ["eng"] } },
        "audience": RAS_ISSUER });
    let (status, report) = api
        .admin(Method::POST, "/policy/eval", Some(question.clone()))
        .await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["decision"], "issued", "{report}");
    assert_eq!(report["identity_provider"], "adfs");
    assert_eq!(report["claims"]["sub"], "dave@example.com");
    // The same claims as an ID token: that IdP is trusted for saml2 only.
    let mut as_id_token = question;
    as_id_token["subject_token_type"] = json!("id_token");
    let (_, report) = api
        .admin(Method::POST, "/policy/eval", Some(as_id_token))
        .await?;
    assert_eq!(
        report["reason"], "subject_token_type_not_accepted",
        "{report}"
    );
    Ok(())
}
