//! The resource side (B) of a two-instance leg-2 setup: a frontdesk that trusts another
//! frontdesk (A, see env.rs) as an ID-JAG issuer and protects MCP_RESOURCE. Include with
//! `#[path = "support/legs.rs"] mod legs;` after `env`.
#![allow(dead_code)]

use base64::Engine;
use frontdesk::app::{RunningServer, spawn_on};
use frontdesk::config::{Config, IdentityProviderConfig, ResourceConfig};
use frontdesk::secret::{SecretString, hash_secret};
use serde_json::{Value, json};

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
        saml_certificates: None,
        saml_metadata_url: None,
        saml_max_lifetime_secs: None,
        saml_name_id_formats: vec![],
        algorithms: vec!["ES256".into()],
        token_types: vec!["id_jag".into()],
        audiences: vec![],
        clock_skew_secs: Some(30),
        max_token_age_secs: None,
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
    config.resources.push(ResourceConfig {
        resource: MCP_RESOURCE.into(),
        scopes: vec!["read".into(), "write".into()],
        authorization_details_types: vec![],
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

/// Two frontdesks: A (enterprise side, issues ID-JAGs for B) and B (resource side).
pub struct Legs {
    pub a: Env,
    pub b: RunningServer,
    pub b_url: String,
    _dir: tempfile::TempDir,
}

impl Legs {
    pub async fn start() -> anyhow::Result<Legs> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customize_b: impl FnOnce(&mut Config)) -> anyhow::Result<Legs> {
        Self::start_under("", "", customize_b).await
    }

    /// Both instances with their issuers under `a_path` and `b_path` (`""` for the root).
    pub async fn start_under(
        a_path: &str,
        b_path: &str,
        customize_b: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Legs> {
        Self::start_both(a_path, b_path, |_| {}, customize_b).await
    }

    /// Both instances, each configuration customised.
    pub async fn start_both(
        a_path: &str,
        b_path: &str,
        customize_a: impl FnOnce(&mut Config),
        customize_b: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Legs> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let b_url = format!("http://{}{b_path}", listener.local_addr()?);
        let b_issuer = b_url.clone();
        let a_path = a_path.to_string();
        let a = Env::start_with(move |config| {
            config.issuer = format!("{}{a_path}", config.issuer);
            // A issues ID-JAGs whose audience is B.
            for audience in &mut config.audiences {
                if audience.id == "saas" {
                    audience.issuer = b_issuer.clone();
                }
            }
            customize_a(config);
        })
        .await?;
        let dir = tempfile::tempdir()?;
        let db = format!("sqlite://{}", dir.path().join("b.db").display());
        let config = resource_side(&b_url, &a.url, &db, customize_b)?;
        let b = spawn_on(config, listener)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Legs {
            a,
            b,
            b_url,
            _dir: dir,
        })
    }

    /// Leg 1 at A: an ID-JAG for B.
    pub async fn id_jag(&self, scope: &str) -> anyhow::Result<String> {
        let id_token = self.a.id_token().await?;
        let (status, body) = self
            .a
            .exchange_as_agent(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", self.b_url.as_str()),
                ("resource", MCP_RESOURCE),
                ("scope", scope),
                ("subject_token", id_token.as_str()),
                ("subject_token_type", ID_TOKEN),
            ])
            .await?;
        anyhow::ensure!(status == 200, "leg 1 failed: {body}");
        Ok(body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// B's access token for the MCP resource, verified by an independent JOSE library against
    /// B's published keys and issuer; its header and payload.
    pub async fn verify_access_token(&self, token: &str) -> anyhow::Result<Value> {
        super::idp::verify_independently(
            token,
            &format!("{}/jwks.json", self.b_url),
            &self.b_url,
            MCP_RESOURCE,
            "at+jwt",
        )
        .await
    }

    /// An ID-JAG signed by A's active key with arbitrary claims (for hostile cases).
    pub fn forged_by_a(&self, claims: Value, typ: &str) -> anyhow::Result<String> {
        Ok(self.a.server.state.keys.sign(typ, &claims)?)
    }

    pub fn valid_claims(&self) -> Value {
        json!({
            "iss": self.a.url, "sub": "user-1", "aud": self.b_url, "client_id": AGENT_AT_RAS,
            "jti": uuid(), "iat": now(), "exp": now() + 120, "resource": MCP_RESOURCE, "scope": "read",
        })
    }

    pub async fn redeem(
        &self,
        form: &[(&str, &str)],
        client_id: &str,
    ) -> anyhow::Result<(u16, Value)> {
        post(&self.b_url, "/token", form, client_id).await
    }

    /// Redeems at B, as `AGENT_AT_RAS`, a fresh ID-JAG signed with A's key over
    /// [`Legs::valid_claims`], with nothing else in the request.
    pub async fn redeem_valid_id_jag(&self) -> anyhow::Result<(u16, Value)> {
        let assertion = self.forged_by_a(self.valid_claims(), "oauth-id-jag+jwt")?;
        self.redeem_assertion(&assertion, AGENT_AT_RAS).await
    }

    /// Redeems `assertion` at B as `client_id` with nothing else in the request.
    pub async fn redeem_assertion(
        &self,
        assertion: &str,
        client_id: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.redeem(
            &[("grant_type", JWT_BEARER), ("assertion", assertion)],
            client_id,
        )
        .await
    }
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn post(
    base: &str,
    path: &str,
    form: &[(&str, &str)],
    client_id: &str,
) -> anyhow::Result<(u16, Value)> {
    post_as(base, path, form, Some((client_id, SECRET))).await
}

/// POSTs `form` to `{base}{path}` with HTTP Basic `credentials`, or with none (a public client,
/// or one that authenticates in the form); the status and the JSON body.
pub async fn post_as(
    base: &str,
    path: &str,
    form: &[(&str, &str)],
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{base}{path}"));
    if let Some((client_id, secret)) = credentials {
        request = request.basic_auth(client_id, Some(secret));
    }
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// A (issuing ID-JAGs for B) and two resource-side instances B1 and B2 behind one issuer,
/// sharing the database `db`, as behind a load balancer; `customize` applies to both Bs.
pub struct SharedResourceSide {
    pub a: Env,
    pub b1: RunningServer,
    pub b2: RunningServer,
    /// The one issuer both Bs answer for.
    pub b_url: String,
}

impl SharedResourceSide {
    pub async fn start(db: &str, customize: impl Fn(&mut Config)) -> anyhow::Result<Self> {
        let listener_1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let listener_2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let b_url = format!("http://{}", listener_1.local_addr()?);
        let b_issuer = b_url.clone();
        let a = Env::start_with(move |config| {
            for audience in &mut config.audiences {
                if audience.id == "saas" {
                    audience.issuer = b_issuer.clone();
                }
            }
        })
        .await?;
        let config_1 = resource_side(&b_url, &a.url, db, &customize)?;
        let mut config_2 = resource_side(&b_url, &a.url, db, &customize)?;
        config_2.server.listen = listener_2.local_addr()?.to_string();
        let b1 = spawn_on(config_1, listener_1)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let b2 = spawn_on(config_2, listener_2)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(SharedResourceSide { a, b1, b2, b_url })
    }

    /// Stops both resource-side instances.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.b1
            .shutdown()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.b2
            .shutdown()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}
