//! A frontdesk server on a random loopback port, on a fresh SQLite file, trusting a real test IdP
//! (tests/support/idp.rs), with one audience of each kind and a few clients. Include with
//! `#[path = "support/env.rs"] mod env;` next to `#[path = "support/idp.rs"] mod idp;`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine;
use frontdesk::app::{RunningServer, spawn_on};
use frontdesk::config::{AudienceConfig, ClientConfig, Config, IdentityProviderConfig};
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use frontdesk::secret::{SecretString, hash_secret};
use serde_json::{Value, json};

use super::idp::TestIdp;

#[path = "test_db.rs"]
pub mod test_db;

/// The secret of every secret-authenticated test client.
pub const SECRET: &str = "s3cret-for-tests-only";
/// The ID-JAG audience (a resource authorization server) and its MCP resource.
pub const RAS_ISSUER: &str = "https://as.saas.example";
pub const RAS_ALIAS: &str = "urn:example:saas";
pub const MCP_RESOURCE: &str = "https://mcp.saas.example/mcp";
/// Another RAS, whose resource must not pair with the first.
pub const OTHER_RAS_ISSUER: &str = "https://as.other.example/";
pub const OTHER_RESOURCE: &str = "https://api.other.example/";
/// The chaining-grant audience (another trust domain's AS).
pub const DOMAIN_B_ISSUER: &str = "https://as.domain-b.example";
/// A resource of this deployment, issued RFC 9068 access tokens.
pub const LOCAL_API: &str = "https://api.local.example/";
/// Client ids.
pub const AGENT: &str = "agent";
pub const AGENT_AT_IDP: &str = "0oa-agent-at-idp";
pub const AGENT_AT_RAS: &str = "agent-at-saas";
pub const POST_CLIENT: &str = "post-client";
pub const JWT_CLIENT: &str = "jwt-client";

pub struct Env {
    pub idp: TestIdp,
    pub server: RunningServer,
    /// The server's issuer without a final `/`: where it answers, under the issuer's path.
    pub url: String,
    pub http: reqwest::Client,
    pub client_key: PrivateKey,
    _dir: tempfile::TempDir,
}

/// Trusts a second identity provider, `partner`, at `issuer`: the first provider's settings and
/// keys (the test IdP mints its tokens with `"iss": issuer`), another issuer, and so — unless a
/// test declares one `subject_namespace` — another user directory.
pub fn add_partner_idp(config: &mut Config, issuer: &str) {
    let mut partner = config.identity_providers[0].clone();
    partner.id = "partner".into();
    // Signed with the test IdP's keys, served at `{its issuer}/jwks`.
    partner.jwks_uri = Some(format!("{}/jwks", partner.issuer));
    partner.issuer = issuer.into();
    config.identity_providers.push(partner);
}

pub fn audience(id: &str, issuer: &str, token_type: &str) -> AudienceConfig {
    AudienceConfig {
        id: id.into(),
        issuer: issuer.into(),
        aliases: vec![],
        resources: vec![],
        scopes: vec![],
        authorization_details_types: vec![],
        token_type: token_type.into(),
        lifetime_secs: None,
        claims: BTreeMap::new(),
        release: vec![],
        condition: None,
        require_acr: vec![],
        max_auth_age_secs: None,
        requests_per_minute: None,
    }
}

pub fn client(id: &str, method: &str, audiences: &[&str]) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        auth_method: method.into(),
        client_name: None,
        source: None,
        authorization_grant_profiles_supported: Vec::new(),
        secret_hash: None,
        jwks: None,
        jwks_uri: None,
        grant_types: vec!["urn:ietf:params:oauth:grant-type:token-exchange".into()],
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        scopes: vec![],
        idp_client_ids: BTreeMap::new(),
        audience_client_ids: BTreeMap::new(),
        redirect_uris: vec![],
        enabled: true,
        dpop_bound_access_tokens: false,
        registration_access_token_hash: None,
        require_dpop_nonce: false,
        requests_per_minute: None,
        introspect_audiences: Vec::new(),
        audience_tenant_client_ids: BTreeMap::new(),
    }
}

impl Env {
    /// Starts an IdP and a frontdesk trusting it; `customize` may change the config first.
    pub async fn start_with(customize: impl FnOnce(&mut Config)) -> anyhow::Result<Env> {
        let idp = TestIdp::start().await?;
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let client_key =
            PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
        let client_jwk = client_key.public_jwk().map_err(anyhow::Error::msg)?;
        let secret_hash = hash_secret(SECRET).map_err(anyhow::Error::msg)?;

        let mut config = Config {
            issuer: url.clone(),
            ..Config::default()
        };
        config.server.listen = listener.local_addr()?.to_string();
        config.database.url =
            SecretString::new(format!("sqlite://{}", dir.path().join("fd.db").display()));
        config.keys.encryption_key = Some(SecretString::new(
            base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
        ));
        config.federation.jwks_min_refetch_secs = 0;
        config.identity_providers.push(IdentityProviderConfig {
            id: "corp".into(),
            issuer: idp.issuer.clone(),
            jwks_uri: None,
            jwks: None,
            saml_certificates: None,
            saml_metadata_url: None,
            saml_max_lifetime_secs: None,
            saml_name_id_formats: vec![],
            algorithms: vec!["RS256".into(), "ES256".into()],
            token_types: vec!["id_token".into(), "access_token".into(), "jwt".into()],
            audiences: vec!["frontdesk-api".into()],
            clock_skew_secs: Some(30),
            max_token_age_secs: Some(3600),
            condition: None,
            subject_mode: "federated".into(),
            subject_mapping: None,
            subject_namespace: None,
            allowed_clients: vec![],
            transcribe_claims: vec![],
            requests_per_minute: None,
            subject_requests_per_minute: None,
            enabled: true,
        });
        let mut ras = audience("saas", RAS_ISSUER, "id-jag");
        ras.aliases = vec![RAS_ALIAS.into()];
        ras.resources = vec![MCP_RESOURCE.into()];
        ras.scopes = vec!["read".into(), "write".into()];
        ras.release = vec![
            "auth_time".into(),
            "acr".into(),
            "amr".into(),
            "email".into(),
        ];
        let mut other = audience("other", OTHER_RAS_ISSUER, "id-jag");
        other.resources = vec![OTHER_RESOURCE.into()];
        other.scopes = vec!["read".into()];
        let mut domain_b = audience("domain-b", DOMAIN_B_ISSUER, "jwt");
        domain_b.scopes = vec!["read".into()];
        let mut local = audience("local-api", LOCAL_API, "access_token");
        local.resources = vec![LOCAL_API.into()];
        local.scopes = vec!["read".into(), "write".into()];
        config.audiences = vec![ras, other, domain_b, local];

        let all = ["saas", "other", "domain-b", "local-api"];
        let mut agent = client(AGENT, "client_secret_basic", &all);
        agent.secret_hash = Some(secret_hash.clone());
        agent
            .idp_client_ids
            .insert("corp".into(), AGENT_AT_IDP.into());
        agent
            .audience_client_ids
            .insert("saas".into(), AGENT_AT_RAS.into());
        let mut post = client(POST_CLIENT, "client_secret_post", &["saas"]);
        post.secret_hash = Some(secret_hash);
        let mut jwt = client(JWT_CLIENT, "private_key_jwt", &["saas"]);
        jwt.jwks = Some(json!({ "keys": [client_jwk] }).to_string());
        config.clients = vec![agent, post, jwt];
        customize(&mut config);
        // Where the server answers: its issuer, which a test may have given a path.
        let url = config.issuer.trim_end_matches('/').to_string();

        let server = spawn_on(config, listener)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Env {
            idp,
            server,
            url,
            http: reqwest::Client::builder().no_proxy().build()?,
            client_key,
            _dir: dir,
        })
    }

    pub async fn start() -> anyhow::Result<Env> {
        Self::start_with(|_| {}).await
    }

    /// The same server on a fresh PostgreSQL database, which lives as long as the returned
    /// `TestDatabase`; `None` when no test server is configured (`test_db.rs`).
    pub async fn start_on_postgres(
        test: &str,
    ) -> anyhow::Result<Option<(Env, test_db::TestDatabase)>> {
        let Some(database) = test_db::TestDatabase::postgres(test).await else {
            return Ok(None);
        };
        let url = database.url().to_string();
        let env = Self::start_with(move |config| {
            config.database.url = SecretString::new(url);
        })
        .await?;
        Ok(Some((env, database)))
    }

    /// An ID token for `agent` (audience = its id at the IdP).
    pub async fn id_token(&self) -> anyhow::Result<String> {
        self.idp
            .mint(
                json!({ "aud": AGENT_AT_IDP, "sub": "user-1", "email": "ada@example.com",
                          "auth_time": now() - 60, "acr": "phr", "amr": ["pwd", "otp"] }),
            )
            .await
    }

    /// The audit log as the store's default query returns it (newest first).
    pub async fn audit_log(&self) -> anyhow::Result<Vec<frontdesk::store::AuditRecord>> {
        use frontdesk::store::{AuditFilter, AuditLog};
        Ok(self
            .server
            .state
            .store
            .audit_events(&AuditFilter::default())
            .await?)
    }

    /// The plainest ID-JAG exchange as `agent`: `id_token` for `audience`, nothing else asked.
    pub async fn id_jag_exchange(
        &self,
        id_token: &str,
        audience: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.exchange_as_agent(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", audience),
            ("subject_token", id_token),
            ("subject_token_type", ID_TOKEN),
        ])
        .await
    }

    /// A leg-1 access token for the local API (`local-api`), exchanged as `agent` for a fresh
    /// ID token, and its `sub`.
    pub async fn local_access_token(&self) -> anyhow::Result<(String, String)> {
        let id_token = self.id_token().await?;
        let (status, body) = self
            .exchange_as_agent(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ACCESS_TOKEN),
                ("audience", LOCAL_API),
                ("subject_token", id_token.as_str()),
                ("subject_token_type", ID_TOKEN),
            ])
            .await?;
        anyhow::ensure!(status == 200, "local access token: {status} {body}");
        let token = body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, claims) = super::idp::decode_unverified(&token)?;
        let subject = claims["sub"].as_str().unwrap_or_default().to_string();
        Ok((token, subject))
    }

    /// The server's `/metrics` text (Prometheus exposition format).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.url);
        Ok(self.http.get(url).send().await?.text().await?)
    }

    /// Whether `/introspect`, asked by `agent`, calls `token` active.
    pub async fn introspect_active(&self, token: &str) -> anyhow::Result<bool> {
        let response = self
            .http
            .post(format!("{}/introspect", self.url))
            .basic_auth(AGENT, Some(SECRET))
            .form(&[("token", token)])
            .send()
            .await?;
        let body: Value = response.json().await?;
        anyhow::ensure!(body["active"].is_boolean(), "introspection: {body}");
        Ok(body["active"] == json!(true))
    }

    /// POSTs a form to /token with Basic auth as `agent`.
    pub async fn exchange_as_agent(
        &self,
        form: &(impl serde::Serialize + ?Sized),
    ) -> anyhow::Result<(u16, Value)> {
        self.post_token(form, Some((AGENT, SECRET))).await
    }

    /// POSTs a form to /token, optionally with Basic credentials.
    pub async fn post_token(
        &self,
        form: &(impl serde::Serialize + ?Sized),
        basic: Option<(&str, &str)>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .post(format!("{}/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form)?);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        anyhow::ensure!(
            cache == "no-store",
            "token responses must carry Cache-Control: no-store, got {cache:?}"
        );
        Ok((status, response.json().await?))
    }

    /// A `private_key_jwt` client assertion for `jwt-client`.
    pub fn client_assertion(&self, jti: &str, aud: &str) -> anyhow::Result<String> {
        let jwk = self.client_key.public_jwk().map_err(anyhow::Error::msg)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = jwk.common.key_id.clone();
        let claims = json!({ "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": aud, "jti": jti,
                             "iat": now(), "exp": now() + 120 });
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &self.client_key.encoding_key().map_err(anyhow::Error::msg)?,
        )?)
    }

    /// The server's RFC 8414 metadata, from the URL a client without an issuer path uses.
    pub async fn metadata(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!(
                "{}/.well-known/oauth-authorization-server",
                self.url
            ))
            .send()
            .await?
            .json()
            .await?)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.url)
    }

    /// Verifies a token this server issued with an independent JOSE library (`jose` on Node,
    /// tests/idp/verify.mjs) against the server's published keys and issuer, for `audience` and
    /// header `typ`; its header and payload.
    pub async fn verify_issued(
        &self,
        token: &str,
        audience: &str,
        typ: &str,
    ) -> anyhow::Result<Value> {
        super::idp::verify_independently(token, &self.jwks_uri(), &self.url, audience, typ).await
    }
}

/// An ID-JAG exchange of `id_token` authenticated by the client assertion `assertion`
/// (`private_key_jwt`).
pub fn assertion_exchange_form(id_token: String, assertion: String) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("requested_token_type", ID_JAG.to_string()),
        ("audience", RAS_ISSUER.to_string()),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN.to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", assertion),
    ]
}

/// The value of the Prometheus sample `name` (in `metrics`, the text of `/metrics`) whose labels
/// include every one of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

pub fn now() -> i64 {
    frontdesk::clock::unix_now()
}

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
