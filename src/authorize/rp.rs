//! frontdesk as an OpenID Connect relying party of the sign-in identity provider
//! (`[authorization] sign_in_idp`): discovery, the authorization code flow with PKCE, state and
//! nonce, and ID-token validation with the `openidconnect` crate's own verifier (issuer = the
//! configured issuer, audience = our RP client id, nonce, signature by an algorithm the identity
//! provider entry allows — never HMAC).
//!
//! The crate is used without its bundled HTTP client: requests go through our reqwest client,
//! which never follows redirects (SSRF, as the crate's documentation warns), has the federation
//! timeout, and reads at most [`MAX_RESPONSE_BYTES`] of a response.

use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use tokio::sync::Mutex;

use crate::registry::IdentityProvider;
use crate::secret::SecretString;

/// Largest discovery, JWKS or token response read from the identity provider.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Why signing in at the identity provider failed. `reason` is the audited reason code.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct RpError {
    /// Stable reason code for the audit log.
    pub reason: &'static str,
    /// Diagnostic detail (logged, never shown to the browser).
    pub detail: String,
}

fn rp_error(reason: &'static str, detail: impl ToString) -> RpError {
    RpError {
        reason,
        detail: detail.to_string(),
    }
}

/// A failure of the HTTP client given to the `openidconnect` crate.
#[derive(Debug, thiserror::Error)]
pub enum RpHttpError {
    /// Transport failure.
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The response could not be rebuilt.
    #[error("bad response: {0}")]
    Http(#[from] http::Error),
    /// The HTTP client could not be built at startup.
    #[error("the HTTP client is unavailable")]
    Unavailable,
    /// The response exceeded [`MAX_RESPONSE_BYTES`].
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// A URL (from the discovery document) that is neither https nor http on a loopback host.
    #[error("not an https URL (http only on a loopback host)")]
    Insecure,
}

/// What the sign-in produced.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The verified ID token claims, as JSON (the identity provider's `condition` input).
    pub claims: serde_json::Value,
    /// `sub`.
    pub subject: String,
    /// `email`, if present.
    pub email: Option<String>,
    /// `auth_time`, if present.
    pub auth_time: Option<i64>,
}

/// The relying party: an HTTP client and a discovery cache.
#[derive(Debug)]
pub struct RelyingParty {
    http: RpHttp,
    cache_ttl: Duration,
    default_clock_skew_secs: u64,
    metadata: Mutex<Option<(String, Instant, CoreProviderMetadata)>>,
}

/// The HTTP client handed to the `openidconnect` crate.
#[derive(Debug, Clone)]
struct RpHttp(Option<reqwest::Client>);

impl<'c> openidconnect::AsyncHttpClient<'c> for RpHttp {
    type Error = RpHttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, RpHttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let http = self.0.clone();
        Box::pin(async move {
            match http {
                Some(http) => call(http, request).await,
                None => Err(RpHttpError::Unavailable),
            }
        })
    }
}

async fn call(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, RpHttpError> {
    let (parts, body) = request.into_parts();
    // The configured issuer is checked so; the URLs its discovery document names (JWKS, token
    // endpoint) are checked here, before anything is sent to them.
    if !crate::trust::is_https_or_loopback(&parts.uri.to_string()) {
        return Err(RpHttpError::Insecure);
    }
    let mut response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(RpHttpError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(builder.body(bytes)?)
}

fn signing_algorithms(idp: &IdentityProvider) -> Vec<CoreJwsSigningAlgorithm> {
    idp.config
        .algorithms
        .iter()
        .filter_map(|alg| match alg.as_str() {
            "RS256" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
            "RS384" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384),
            "RS512" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512),
            "PS256" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha256),
            "PS384" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha384),
            "PS512" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha512),
            "ES256" => Some(CoreJwsSigningAlgorithm::EcdsaP256Sha256),
            "ES384" => Some(CoreJwsSigningAlgorithm::EcdsaP384Sha384),
            "EdDSA" => Some(CoreJwsSigningAlgorithm::EdDsa),
            _ => None,
        })
        .collect()
}

/// Our `iat` check's message, recognised again to give the refusal its own reason code.
const ISSUED_IN_THE_FUTURE: &str = "the ID token was issued in the future";

/// Every claim of an ID token whose signature and claims the crate has just verified, as JSON.
/// The crate's typed claims drop the ones it does not model (such as `groups`), and conditions
/// over the IdP's claims need them all.
fn all_claims(id_token: &openidconnect::core::CoreIdToken) -> Option<serde_json::Value> {
    use base64::Engine;
    let compact = serde_json::to_value(id_token).ok()?;
    let payload = compact.as_str()?.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(serde_json::Value::is_object)
}

impl RelyingParty {
    /// A relying party whose requests time out after `timeout` and whose discovery results are
    /// reused for `cache_ttl`.
    /// `default_clock_skew_secs` is the tolerance for the ID token's `exp` and `iat` when the
    /// identity provider sets no `clock_skew_secs` of its own.
    pub fn new(
        timeout: Duration,
        cache_ttl: Duration,
        default_clock_skew_secs: u64,
    ) -> RelyingParty {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|error| tracing::error!(%error, "building the sign-in HTTP client failed"))
            .ok();
        RelyingParty {
            http: RpHttp(http),
            cache_ttl,
            default_clock_skew_secs,
            metadata: Mutex::new(None),
        }
    }

    /// The identity provider's discovery document (and JWKS), cached.
    async fn provider(&self, issuer: &str) -> Result<CoreProviderMetadata, RpError> {
        let mut cached = self.metadata.lock().await;
        if let Some((cached_issuer, fetched, metadata)) = cached.as_ref()
            && cached_issuer == issuer
            && fetched.elapsed() < self.cache_ttl
        {
            return Ok(metadata.clone());
        }
        let issuer_url =
            IssuerUrl::new(issuer.to_string()).map_err(|e| rp_error("idp_issuer_invalid", e))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| rp_error("idp_discovery_failed", e))?;
        *cached = Some((issuer.to_string(), Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// The URL to send the browser to, and our PKCE verifier to keep with the request.
    pub async fn authorization_url(
        &self,
        idp: &IdentityProvider,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
    ) -> Result<(String, SecretString), RpError> {
        let metadata = self.provider(&idp.config.issuer).await?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| rp_error("rp_redirect_invalid", e))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_string()),
            None,
        )
        .set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_string();
        let nonce = nonce.to_string();
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            SecretString::new(verifier.secret().clone()),
        ))
    }

    /// Redeems the identity provider's code and validates its ID token.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        idp: &IdentityProvider,
        client_id: &str,
        client_secret: &SecretString,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, RpError> {
        let metadata = self.provider(&idp.config.issuer).await?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| rp_error("rp_redirect_invalid", e))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_string()),
            Some(ClientSecret::new(client_secret.expose().to_string())),
        )
        .set_redirect_uri(redirect);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| rp_error("idp_no_token_endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| rp_error("idp_code_exchange_failed", e))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| rp_error("id_token_missing", "the token response has no id_token"))?;
        // The same clock tolerance as for this IdP's tokens at the token endpoint: an ID token
        // expired by less than the skew is still accepted, one issued more than the skew in the
        // future is not.
        let skew = chrono::Duration::seconds(
            i64::try_from(
                idp.config
                    .clock_skew_secs
                    .unwrap_or(self.default_clock_skew_secs),
            )
            .unwrap_or(0),
        );
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(signing_algorithms(idp))
            .set_time_fn(move || chrono::Utc::now() - skew)
            .set_issue_time_verifier_fn(move |iat| {
                if iat > chrono::Utc::now() + skew {
                    Err(ISSUED_IN_THE_FUTURE.to_string())
                } else {
                    Ok(())
                }
            });
        let claims: &CoreIdTokenClaims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map_err(|error| {
                let reason = match &error {
                    ClaimsVerificationError::InvalidAudience(_) => "id_token_wrong_audience",
                    ClaimsVerificationError::InvalidNonce(_) => "id_token_wrong_nonce",
                    ClaimsVerificationError::InvalidIssuer(_) => "id_token_wrong_issuer",
                    ClaimsVerificationError::Expired(message)
                        if message.contains(ISSUED_IN_THE_FUTURE) =>
                    {
                        "id_token_issued_in_the_future"
                    }
                    ClaimsVerificationError::Expired(_) => "id_token_expired",
                    ClaimsVerificationError::SignatureVerification(_) => "id_token_bad_signature",
                    _ => "id_token_invalid",
                };
                rp_error(reason, error)
            })?;
        let subject = claims.subject().as_str();
        if subject.len() > crate::jose::MAX_ID_TOKEN_SUB_BYTES {
            // OIDC Core §2; a longer `sub` would also be a key PostgreSQL cannot index.
            return Err(rp_error(
                "id_token_sub_too_long",
                "the ID token's sub exceeds 255 characters",
            ));
        }
        Ok(SignedIn {
            claims: all_claims(id_token)
                .unwrap_or_else(|| serde_json::to_value(claims).unwrap_or_default()),
            subject: subject.to_string(),
            email: claims.email().map(|email| email.as_str().to_string()),
            auth_time: claims.auth_time().map(|time| time.timestamp()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every request of the sign-in goes to https, or http on a loopback host (the issuer's own
    /// rule): the discovery document names the JWKS (RFC 8414 §2: `jwks_uri` MUST be https;
    /// JWKS-07) and the token endpoint (RFC 6749 §3.2: TLS; frontdesk sends its client secret
    /// there), and an http one outside loopback is refused without a request. The non-loopback
    /// URL is the IPv4-mapped form of a loopback address, standing for `http://idp.example/`.
    #[tokio::test]
    async fn plain_http_outside_loopback_is_not_requested() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                "{\"keys\":[]}"
            }),
        );
        // Dual stack: reached as 127.0.0.1 and as [::ffff:127.0.0.1].
        let listener = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let relying_party = RelyingParty::new(Duration::from_secs(10), Duration::from_secs(60), 60);
        let Some(http) = relying_party.http.0.clone() else {
            panic!("the HTTP client was built");
        };
        let get = |url: String| http::Request::get(url).body(Vec::new()).unwrap();
        let refused = call(
            http.clone(),
            get(format!("http://[::ffff:127.0.0.1]:{port}/jwks")),
        )
        .await;
        assert!(matches!(refused, Err(RpHttpError::Insecure)), "{refused:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "not requested");
        let loopback = call(http, get(format!("http://127.0.0.1:{port}/jwks"))).await;
        assert_eq!(loopback.unwrap().status(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
