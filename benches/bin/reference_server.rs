//! The reference token server for `scripts/loadtest` (docs/performance.md): the irreducible work
//! of an RFC 8693 token exchange and nothing else. It parses the form, verifies one RS256 subject
//! token against an in-memory key (signature, `exp`, `iss`), verifies the `private_key_jwt` client
//! assertion too when one is sent and `--client-jwks` is given (one ES256 verify), signs one ES256
//! JWT and answers JSON. No client registry, no policy, no replay store, no audit, no middleware:
//! frontdesk's throughput and latency are reported as ratios against this server measured in the
//! same run on the same machine.
//!
//! ```text
//! reference-server --port 18090 --jwks idp.jwks.json [--client-jwks client.jwks.json]
//! ```
//! (or `REFERENCE_PORT`, `REFERENCE_JWKS`, `REFERENCE_CLIENT_JWKS`). Listens on 127.0.0.1 only.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use frontdesk::keys::{PrivateKey, SigningAlgorithm};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "reference-server",
    about = "Minimal token-exchange reference server"
)]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, env = "REFERENCE_PORT")]
    port: u16,
    /// JWKS file of the test IdP (the first key verifies subject tokens, RS256).
    #[arg(long, env = "REFERENCE_JWKS")]
    jwks: std::path::PathBuf,
    /// JWKS file of the private_key_jwt client (the first key verifies client assertions, ES256).
    #[arg(long, env = "REFERENCE_CLIENT_JWKS")]
    client_jwks: Option<std::path::PathBuf>,
    /// Expected `iss` of subject tokens.
    #[arg(
        long,
        env = "REFERENCE_IDP_ISSUER",
        default_value = "https://idp.perf.example"
    )]
    idp_issuer: String,
}

struct State {
    subject_key: DecodingKey,
    subject_validation: Validation,
    client_key: Option<DecodingKey>,
    client_validation: Validation,
    signing_key: EncodingKey,
    signing_kid: String,
    issuer: String,
}

fn first_key(path: &std::path::Path) -> anyhow::Result<DecodingKey> {
    let set: JwkSet = serde_json::from_slice(&std::fs::read(path)?)?;
    let jwk = set
        .keys
        .first()
        .ok_or_else(|| anyhow::anyhow!("{} holds no key", path.display()))?;
    Ok(DecodingKey::from_jwk(jwk)?)
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({ "error": code }))).into_response()
}

async fn token(state: axum::extract::State<Arc<State>>, body: Bytes) -> Response {
    let mut subject_token = None;
    let mut audience = None;
    let mut assertion = None;
    for (name, value) in form_urlencoded::parse(&body) {
        match &*name {
            "subject_token" => subject_token = Some(value.into_owned()),
            "audience" => audience = Some(value.into_owned()),
            "client_assertion" => assertion = Some(value.into_owned()),
            _ => {}
        }
    }
    let (Some(subject_token), Some(audience)) = (subject_token, audience) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if let (Some(assertion), Some(key)) = (&assertion, &state.client_key)
        && jsonwebtoken::decode::<Value>(assertion, key, &state.client_validation).is_err()
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let subject = match jsonwebtoken::decode::<Value>(
        &subject_token,
        &state.subject_key,
        &state.subject_validation,
    ) {
        Ok(data) => data.claims,
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_grant"),
    };
    let now = frontdesk::clock::unix_now();
    let claims = json!({
        "iss": state.issuer,
        "sub": subject.get("sub").cloned().unwrap_or(Value::Null),
        "aud": audience,
        "client_id": subject.get("aud").cloned().unwrap_or(Value::Null),
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now,
        "exp": now + 300,
        "scope": "read",
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(state.signing_kid.clone());
    let Ok(issued) = jsonwebtoken::encode(&header, &claims, &state.signing_key) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let mut response = axum::Json(json!({
        "access_token": issued,
        "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
        "token_type": "N_A",
        "expires_in": 300,
        "scope": "read",
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut subject_validation = Validation::new(Algorithm::RS256);
    subject_validation.set_issuer(&[&args.idp_issuer]);
    subject_validation.validate_aud = false;
    let mut client_validation = Validation::new(Algorithm::ES256);
    client_validation.validate_aud = false;
    let signing =
        PrivateKey::generate(SigningAlgorithm::Es256, 2048).map_err(anyhow::Error::msg)?;
    let signing_kid = signing
        .public_jwk()
        .map_err(anyhow::Error::msg)?
        .common
        .key_id
        .unwrap_or_default();
    let state = Arc::new(State {
        subject_key: first_key(&args.jwks)?,
        subject_validation,
        client_key: args.client_jwks.as_deref().map(first_key).transpose()?,
        client_validation,
        signing_key: signing.encoding_key().map_err(anyhow::Error::msg)?,
        signing_kid,
        issuer: format!("http://127.0.0.1:{}", args.port),
    });
    let app = Router::new()
        .route("/token", axum::routing::post(token))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!(
        "reference-server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
