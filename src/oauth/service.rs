//! The token service: everything `POST /token` needs, and the dispatch on `grant_type`.
//! Every decision, issued or denied, is written to the audit log before the answer is returned;
//! if the audit write fails the client gets `server_error`, never an unaudited token.

use std::sync::Arc;

use serde_json::Value;

use super::client_auth::{
    AssertionReplay, AuthenticatedClient, ClientAuthContext, SecretCache, authenticate,
};
use super::request::FormParams;
use super::throttle::ClientAuthAttempt;
use super::{ErrorCode, GrantType, OAuthError};
use crate::config::Config;
use crate::jose::jwks_cache::JwksCache;
use crate::jose::{
    AudienceRule, JoseError, TypRule, Unverified, VerifiedClaims, VerifyRules, verify,
};
use crate::keys::KeyRing;
use crate::registry::IdentityProvider;
use crate::registry::Trust;
use crate::store::{
    AuditEvent, AuditWriter, Decision, IssuedToken, PendingReplay, ReplayWriter, Store, TokenStore,
};

/// A successful token response body (RFC 6749 §5.1 / RFC 8693 §2.2.1).
#[derive(Debug)]
pub struct TokenResponse {
    /// The JSON object to send.
    pub body: Value,
}

/// Per-request facts from the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// `Authorization` header value, if any. Never logged.
    pub authorization: Option<crate::secret::SecretString>,
    /// Request id for the audit log.
    pub request_id: Option<String>,
    /// Unix seconds.
    pub now: i64,
    /// What per-address limits count the peer as (failed authentication, public clients'
    /// request limits): its address, an IPv6 address's /64 (`http::forwarded::limit_key`).
    pub peer: Option<std::net::IpAddr>,
    /// The `DPoP` header's proof, if the request sent one (RFC 9449). Never logged.
    pub dpop: Option<crate::secret::SecretString>,
}

/// What the token endpoint needs, shared by all requests.
#[derive(Debug)]
pub struct TokenService {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Database (audit, replay).
    pub store: Store,
    /// Our signing keys.
    pub keys: Arc<KeyRing>,
    /// Trust registry.
    pub trust: Arc<Trust>,
    /// External issuers' keys.
    pub jwks: Arc<JwksCache>,
    /// SAML identity providers' signing certificates from their metadata (`saml_metadata_url`).
    pub saml_metadata: Arc<crate::saml::metadata::MetadataCache>,
    /// Verified-secret cache.
    pub secrets: SecretCache,
    /// `{issuer}/token`.
    pub token_endpoint: String,
    /// Group-committing audit writer.
    pub audit: AuditWriter,
    /// Group-committing replay records.
    pub replay: ReplayWriter,
    /// Failed-authentication throttle.
    pub throttle: super::throttle::FailedAuthThrottle,
    /// Clients named by the URL of their Client ID Metadata Document.
    pub client_metadata: super::client_metadata::ClientMetadataResolver,
    /// Server-provided DPoP nonces: offered to every request with a proof, required when
    /// `tokens.require_dpop_nonce` or the client's `require_dpop_nonce` asks for them.
    pub dpop_nonces: super::dpop_nonce::DpopNonces,
    /// Clients that keep presenting forged-looking subject tokens or assertions
    /// (`server.invalid_subject_tokens_per_minute`).
    pub forged_tokens: super::throttle::FailureThrottle<String>,
    /// Status-list indexes reserved for this instance's access tokens.
    pub status_indexes: super::status_list::StatusIndexes,
    /// The signed status lists this instance served last.
    pub status_list_tokens: super::status_list::ListTokens,
    /// Request limits per client, identity provider, user and audience
    /// (`requests_per_minute`, `subject_requests_per_minute`).
    pub limits: super::request_limit::RequestLimits,
}

impl TokenService {
    /// With status lists on, gives the access token being built its `status` claim and returns
    /// the index to record with it (`status_list.rs`).
    pub(crate) async fn assign_status(
        &self,
        claims: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<i64>, OAuthError> {
        if !self.config.tokens.status_list {
            return Ok(None);
        }
        let index = self
            .status_indexes
            .next(&self.store)
            .await
            .map_err(|error| {
                tracing::error!(%error, "reserving status-list indexes failed");
                OAuthError::server_error()
            })?;
        claims.insert(
            "status".into(),
            super::status_list::status_claim(&self.config.issuer, index),
        );
        Ok(Some(index))
    }

    /// Records an access token we issued, so `/introspect` and `/revoke` know it (and its
    /// status list, with `status_index`). Committed before the token is returned; a failure is
    /// `server_error`, never an untracked token.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_access_token(
        &self,
        jti: &str,
        client_id: &str,
        subject: &str,
        subject_issuer: &str,
        issued_at: i64,
        expires_at: i64,
        status_index: Option<i64>,
    ) -> Result<(), OAuthError> {
        self.store
            .record_issued(&IssuedToken {
                jti: jti.to_string(),
                client_id: client_id.to_string(),
                subject: subject.to_string(),
                token_type: "access_token".into(),
                issued_at,
                expires_at,
                revoked_at: None,
                status_index,
                subject_issuer: Some(subject_issuer.to_string()),
            })
            .await
            .map_err(|error| {
                tracing::error!(%error, "recording the issued token failed");
                OAuthError::server_error()
            })
    }

    /// Verifies a token issued by the trusted issuer `idp` (a subject token, an actor token or an
    /// assertion): the issuer's algorithm allow-list first (BCP-01/BCP-03: an HS256 token naming
    /// the issuer's RSA kid is refused as such, and a disallowed algorithm with an unknown kid
    /// never makes us refetch the issuer's JWKS), then its key by `kid` from the cache, then the
    /// signature and every claim rule, with the issuer's clock skew and maximum token age.
    /// `lifetime` optionally bounds `exp - iat`; assertions also require a `jti`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn verify_from_issuer(
        &self,
        idp: &IdentityProvider,
        unverified: &Unverified,
        token: &str,
        typ: TypRule,
        audience: AudienceRule,
        lifetime: Option<u64>,
        now: i64,
    ) -> Result<VerifiedClaims, JoseError> {
        if !idp.algorithms.contains(&unverified.alg()) {
            return Err(JoseError::AlgNotAllowed);
        }
        let key = self
            .jwks
            .key_for(
                &format!("idp:{}", idp.config.id),
                &idp.key_source,
                unverified,
            )
            .await?;
        let mut rules = VerifyRules::new(
            idp.algorithms.clone(),
            typ,
            idp.config.issuer.clone(),
            audience,
        );
        rules.require_jti = lifetime.is_some();
        rules.max_lifetime_secs = lifetime;
        rules.leeway_secs = idp
            .config
            .clock_skew_secs
            .unwrap_or(self.config.tokens.clock_skew_secs);
        rules.max_age_secs = idp.config.max_token_age_secs;
        verify(unverified, token, &key, &rules, now)
    }

    /// Handles one token request end to end.
    pub async fn token(
        &self,
        form: FormParams,
        context: RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let mut audit = AuditEvent::new(context.now, "token_request", Decision::Denied);
        audit.request_id = context.request_id.clone();
        let pending_replay = std::sync::OnceLock::new();
        let mut result = self
            .dispatch(&form, &context, &mut audit, &pending_replay)
            .await;
        match &result {
            Ok(_) => audit.decision = Decision::Issued,
            Err(error) => {
                audit.decision = Decision::Denied;
                audit.error_code = Some(error.code.as_str().to_string());
                audit.reason = Some(error.reason.to_string());
            }
        }
        let mut counter = decision_counter(
            &audit.event,
            result.as_ref().err().map(|error| error.code.as_str()),
        );
        let recorded = match pending_replay.into_inner() {
            None => self.audit.record(audit).await.map(|()| true),
            Some(pending) => {
                let replayed =
                    decision_counter(&audit.event, Some(ErrorCode::InvalidClient.as_str()));
                let recorded = self.audit.record_with_replay(audit, pending).await;
                if matches!(recorded, Ok(false)) {
                    counter = replayed;
                }
                recorded
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                // The assertion's jti was already recorded: the event went in as a denial and
                // whatever was prepared is discarded (CAUTH-06).
                if let Some(peer) = context.peer {
                    self.throttle.record_failure(peer);
                }
                result = Err(super::client_auth::assertion_replayed());
            }
            Err(error) => {
                tracing::error!(%error, "writing the audit event failed; refusing to answer without it");
                return Err(OAuthError::server_error());
            }
        }
        counter.increment(1);
        result
    }

    /// TOK-14: `429 slow_down` for an address over its quota of failed client authentications.
    /// Every endpoint that authenticates a client asks before it does (the token endpoint,
    /// introspection, revocation), so none of them is a way round the quota to guess secrets or
    /// to make the server run argon2 at will. This only turns away an address already blocked;
    /// what keeps guesses sent at once within the quota is that each argon2 run is counted
    /// before it starts (the request's [`ClientAuthAttempt`]).
    pub(super) fn refuse_throttled_address(
        &self,
        context: &RequestContext,
    ) -> Result<(), OAuthError> {
        match context
            .peer
            .and_then(|peer| self.throttle.retry_after(&peer))
        {
            Some(retry_after) => Err(super::client_auth::failed_authentications_throttled(
                super::throttle::Throttled { retry_after },
            )),
            None => Ok(()),
        }
    }

    /// The request's attempt at client authentication against its address's quota, for its
    /// [`ClientAuthContext`].
    pub(super) fn client_auth_attempt(&self, context: &RequestContext) -> ClientAuthAttempt<'_> {
        self.throttle.attempt(context.peer)
    }

    /// Counts a failed client authentication (`invalid_client`) against the request's address,
    /// unless it was counted before its argon2 run (`attempt`): once per failure either way.
    pub(super) fn count_failed_authentication(
        &self,
        error: &OAuthError,
        attempt: &ClientAuthAttempt<'_>,
    ) {
        if error.code == ErrorCode::InvalidClient {
            attempt.fail();
        }
    }

    /// Authenticates the caller of an endpoint beside `/token` (introspection, revocation,
    /// issuer acceptance) exactly as the token endpoint does: the same methods, TOK-14's quota
    /// checked first and argon2 admitted against it, a client assertion's `jti` recorded at
    /// once (these endpoints have no audit event to commit it with). `audit` names the client a
    /// refused request claimed to be, or the one it proved to be.
    pub(crate) async fn authenticate_endpoint_caller(
        &self,
        form: &FormParams,
        context: &RequestContext,
        audit: &mut AuditEvent,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let authorization = context.authorization.as_ref().map(|value| value.expose());
        audit.client_id = super::client_auth::claimed_client_id(authorization, form);
        form.reject_repeats()?;
        self.refuse_throttled_address(context)?;
        let registry = self.trust.current();
        let attempt = self.client_auth_attempt(context);
        let auth_context = ClientAuthContext {
            issuer: &self.config.issuer,
            token_endpoint: &self.token_endpoint,
            registry: &registry,
            secrets: &self.secrets,
            client_metadata: &self.client_metadata,
            jwks: &self.jwks,
            replay: AssertionReplay::Now(&self.replay),
            now: context.now,
            attempt: &attempt,
        };
        let result = authenticate(authorization, form, &auth_context).await;
        match &result {
            Ok(caller) => audit.client_id = Some(caller.client.config.client_id.clone()),
            Err(error) => self.count_failed_authentication(error, &attempt),
        }
        result
    }

    /// Audits a request refused before its form could be handled (body too large, wrong content
    /// type, query parameters). `Err` means the audit write failed.
    pub async fn audit_rejection(
        &self,
        error: &OAuthError,
        request_id: Option<String>,
        now: i64,
    ) -> Result<(), ()> {
        let mut audit = AuditEvent::new(now, "token_request", Decision::Denied);
        audit.request_id = request_id;
        audit.error_code = Some(error.code.as_str().to_string());
        audit.reason = Some(error.reason.to_string());
        self.audit.record(audit).await.map_err(|error| {
            tracing::error!(%error, "writing the audit event failed");
        })
    }

    async fn dispatch(
        &self,
        form: &FormParams,
        context: &RequestContext,
        audit: &mut AuditEvent,
        pending_replay: &std::sync::OnceLock<PendingReplay>,
    ) -> Result<TokenResponse, OAuthError> {
        form.reject_repeats()?;
        let grant_type = form.required("grant_type")?;
        audit.grant_type = Some(crate::oauth::request::clip(grant_type, 100));
        let Some(grant) = GrantType::parse(grant_type).filter(|grant| grant.as_str() == grant_type)
        else {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported_grant_type",
                "This grant_type is not supported",
            ));
        };
        self.refuse_throttled_address(context)?;
        let registry = self.trust.current();
        let attempt = self.client_auth_attempt(context);
        let client = {
            let auth_context = ClientAuthContext {
                issuer: &self.config.issuer,
                token_endpoint: &self.token_endpoint,
                registry: &registry,
                secrets: &self.secrets,
                client_metadata: &self.client_metadata,
                jwks: &self.jwks,
                // A token exchange writes nothing but its audit event, so its assertion's jti
                // commits with it; every other grant has side effects and records it first.
                replay: if grant == GrantType::TokenExchange {
                    AssertionReplay::WithAudit(pending_replay)
                } else {
                    AssertionReplay::Now(&self.replay)
                },
                now: context.now,
                attempt: &attempt,
            };
            let authorization = context.authorization.as_ref().map(|value| value.expose());
            authenticate(authorization, form, &auth_context).await
        };
        let client: AuthenticatedClient = match client {
            Ok(client) => client,
            Err(error) => {
                self.count_failed_authentication(&error, &attempt);
                audit.client_id = super::client_auth::claimed_client_id(
                    context.authorization.as_ref().map(|value| value.expose()),
                    form,
                );
                return Err(error);
            }
        };
        audit.client_id = Some(client.client.config.client_id.clone());
        if let Some(wait) = self
            .forged_tokens
            .retry_after(client.client.config.client_id.as_str())
        {
            return Err(super::request_limit::over_limit(
                "invalid_subject_tokens",
                "This client has sent too many invalid subject tokens or assertions; retry later",
                wait,
            ));
        }
        // Counted once the client is authenticated, so nobody spends another's allowance; a
        // public client, which proves only its id, per address.
        if let Some(per_minute) = client.client.config.requests_per_minute
            && let Some(wait) = if client.client.is_public() {
                self.limits.check_public_client(
                    &client.client.config.client_id,
                    context.peer,
                    per_minute,
                )
            } else {
                self.limits
                    .check_client(&client.client.config.client_id, per_minute)
            }
        {
            return Err(super::request_limit::over_limit(
                "client_rate_limited",
                "This client has made more token requests than its limit allows; retry later",
                wait,
            ));
        }
        client_may_use_grant(&client.client, grant)?;
        audit.event = match grant {
            GrantType::TokenExchange => "token_exchange",
            GrantType::JwtBearer => "jwt_bearer",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
        .into();
        // RFC 9449: a proof, when sent, is checked for every grant; each grant decides what to
        // bind to its key.
        let proof = super::dpop::check(
            self,
            context.dpop.as_ref().map(|proof| proof.expose()),
            self.config.tokens.require_dpop_nonce || client.client.config.require_dpop_nonce,
            context.now,
        )
        .await?;
        if proof.is_none() && client.client.config.dpop_bound_access_tokens {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "dpop_required_for_client",
                "This client must send a DPoP proof with every token request",
            ));
        }
        let grant_request = super::GrantRequest {
            registry: &registry,
            client: &client,
            form,
            proof: proof.as_ref(),
            now: context.now,
        };
        let outcome = match grant {
            GrantType::TokenExchange => {
                super::exchange::exchange(self, &grant_request, audit).await
            }
            GrantType::JwtBearer => super::jwt_bearer::redeem(self, &grant_request, audit).await,
            GrantType::AuthorizationCode => {
                super::code_grant::redeem_code(self, &grant_request, audit).await
            }
            GrantType::RefreshToken => {
                super::code_grant::refresh(self, &grant_request, audit).await
            }
        };
        // Set where a subject token or assertion is refused (`JoseError::suggests_forgery` and
        // the refusals of grants issued to another client, replayed, or bound to another key).
        if let Err(error) = &outcome
            && error.suspicious
            && self
                .forged_tokens
                .record_failure(client.client.config.client_id.clone())
        {
            tracing::warn!(
                client_id = %client.client.config.client_id,
                reason = error.reason,
                "client throttled: too many invalid subject tokens or assertions"
            );
        }
        outcome
    }
}

/// Resolved `frontdesk_token_requests_total` handles by (event, error code): both come from
/// small fixed sets, and resolving a labelled handle once instead of per request saves its
/// allocations and hashing on the hot path (docs/performance.md).
type DecisionCounters = Vec<(String, Option<&'static str>, metrics::Counter)>;

static DECISION_COUNTERS: std::sync::RwLock<DecisionCounters> = std::sync::RwLock::new(Vec::new());

/// The counter of decisions for `event` that ended with `error` (`None`: issued).
fn decision_counter(event: &str, error: Option<&'static str>) -> metrics::Counter {
    let find = |counters: &DecisionCounters| {
        counters
            .iter()
            .find(|(e, code, _)| e == event && *code == error)
            .map(|(_, _, counter)| counter.clone())
    };
    {
        let read = match DECISION_COUNTERS.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(counter) = find(&read) {
            return counter;
        }
    }
    let mut write = match DECISION_COUNTERS.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(counter) = find(&write) {
        return counter;
    }
    let counter = match error {
        None => {
            metrics::counter!("frontdesk_token_requests_total", "event" => event.to_owned(), "decision" => "issued")
        }
        Some(code) => {
            metrics::counter!("frontdesk_token_requests_total", "event" => event.to_owned(), "decision" => "denied", "error" => code)
        }
    };
    write.push((event.to_owned(), error, counter.clone()));
    counter
}

/// Whether `client` may use `grant` at all, whatever the request says: CMETA-04 and IDJAG §9.1
/// (a client that cannot authenticate gets no token exchange or jwt-bearer grant, whatever its
/// registration says), then its registered `grant_types`. Shared with the issuer-acceptance
/// endpoint, which must refuse exactly the clients the grant refuses.
pub(crate) fn client_may_use_grant(
    client: &crate::registry::Client,
    grant: GrantType,
) -> Result<(), OAuthError> {
    if client.is_public() && !crate::trust::PUBLIC_CLIENT_GRANTS.contains(&grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public_client",
            "This grant needs a confidential client; public clients may only use authorization_code and refresh_token",
        ));
    }
    if !client.grant_types.contains(&grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "grant_not_allowed",
            "The client is not allowed to use this grant type",
        ));
    }
    Ok(())
}
