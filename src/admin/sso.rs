//! Single sign-on into the admin page through an enterprise IdP (`[admin_sso]`).
//!
//! frontdesk is the OpenID Connect relying party of one configured identity provider (the same
//! `openidconnect`-based [`RelyingParty`] as the authorization endpoint's sign-in: discovery,
//! authorization code + PKCE + nonce, ID-token validation). Who may do what is not a list kept
//! here but two CEL conditions over the ID token's claims, evaluated at every sign-in: the IdP's
//! groups stay the source of truth. Local accounts remain for bootstrap and break-glass.
//!
//! The pending sign-in (hashes of `state` and of a browser-binding cookie, the nonce, our PKCE
//! verifier, and the hash of the session cookie the browser held when it started) is kept in the
//! database, so the IdP's callback may land on any instance, and it is taken exactly once. The
//! callback ends that earlier session whatever the outcome: the session cookie is
//! `SameSite=Strict` and does not come back on the IdP's redirect, so otherwise it would stay
//! valid beside the new one (or, after a refused sign-in, with the privileges of whoever signed
//! in on that browser before).

use std::time::Duration;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::auth::{ClientIp, random_token, sha256, start_session};
use super::cookie::{named_cookie, session_cookie};
use super::views::{Layout, render_with_status};
use super::{AdminError, now_of};
use crate::authorize::rp::RelyingParty;
use crate::config::Config;
use crate::http::AppState;
use crate::policy::{Expression, PolicyInput};
use crate::store::{
    AdminRole, AdminSsoRequest, AdminStore, AuditDetail, AuditEvent, AuditLog, Decision,
};

/// The browser-binding cookie of a pending sign-in, without its prefix. `SameSite=Lax`, because
/// it must come back on the IdP's top-level redirect to the callback; scoped to `/admin/sso`, so
/// it cannot be `__Host-`: on an https issuer it is `__Secure-frontdesk_admin_sso`
/// ([`sso_cookie_name`]).
pub const SSO_COOKIE: &str = "frontdesk_admin_sso";

/// The binding cookie's name on `config`'s issuer: `__Secure-frontdesk_admin_sso` on https
/// (a plain-http page of the same host cannot plant one), `frontdesk_admin_sso` on a plain http
/// development issuer. Only this name is read back.
pub fn sso_cookie_name(config: &Config) -> String {
    super::cookie::path_scoped_cookie_name(config, SSO_COOKIE)
}

/// How long a user has to sign in at the IdP.
pub const SSO_REQUEST_TTL_SECS: i64 = 600;
/// Sign-ins one address may start per minute (in a burst of as many). Starting needs no
/// session and stores a pending sign-in for [`SSO_REQUEST_TTL_SECS`], so without a cap anyone
/// could fill the table; an administrator signs in a few times a day.
pub const SSO_STARTS_PER_MINUTE: u32 = 20;

/// The configured single sign-on, with its conditions compiled once.
#[derive(Debug)]
pub struct Sso {
    rp: RelyingParty,
    idp: String,
    client_id: String,
    admin_condition: Expression,
    auditor_condition: Option<Expression>,
    /// Text of the sign-in page's button.
    pub button_label: String,
}

impl Sso {
    /// The single sign-on of `config`, or `None` when `[admin_sso] idp` is not set. The
    /// configuration was validated at load, so the conditions compile; if one did not, SSO stays
    /// off (fail closed) and the reason is logged.
    pub fn from_config(config: &Config, http_timeout: Duration) -> Option<Sso> {
        let sso = &config.admin_sso;
        let idp = sso.idp.clone()?;
        let compiled = sso
            .admin_condition
            .as_deref()
            .map(crate::policy::compile)
            .transpose()
            .and_then(|admin| {
                let auditor = sso
                    .auditor_condition
                    .as_deref()
                    .map(crate::policy::compile)
                    .transpose()?;
                Ok((admin, auditor))
            });
        let (Some(admin_condition), auditor_condition) = (match compiled {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!(%error, "admin single sign-on disabled: a condition does not compile");
                return None;
            }
        }) else {
            return None;
        };
        Some(Sso {
            rp: RelyingParty::new(
                http_timeout,
                Duration::from_secs(300),
                config.tokens.clock_skew_secs,
            ),
            idp,
            client_id: sso.client_id.clone().unwrap_or_default(),
            admin_condition,
            auditor_condition,
            button_label: sso
                .button_label
                .clone()
                .unwrap_or_else(|| "Sign in with single sign-on".into()),
        })
    }

    /// The role the ID token's claims earn (see [`decide_role`]).
    pub fn role_for(&self, claims: &Value) -> RoleDecision {
        decide_role(
            &self.admin_condition,
            self.auditor_condition.as_ref(),
            claims,
        )
    }
}

/// What the role conditions say about one signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDecision {
    /// The user gets this role.
    Role(AdminRole),
    /// Neither condition holds: no access.
    None,
    /// A condition failed to evaluate (a missing claim, a wrong type): no access, fail closed.
    Error(String),
}

/// Evaluates the admin condition, then the auditor condition, over `claims` (exposed to CEL as
/// `subject`, as in every other condition). Admin wins when both hold; an evaluation error in
/// the admin condition denies rather than falling through to auditor, so a broken expression
/// never grants anything.
pub fn decide_role(
    admin: &Expression,
    auditor: Option<&Expression>,
    claims: &Value,
) -> RoleDecision {
    let input = PolicyInput {
        subject: claims.clone(),
        ..PolicyInput::default()
    }
    .prepare();
    match input.condition(admin) {
        Ok(true) => return RoleDecision::Role(AdminRole::Admin),
        Ok(false) => {}
        Err(error) => return RoleDecision::Error(error.to_string()),
    }
    match auditor.map(|expr| input.condition(expr)) {
        Some(Ok(true)) => RoleDecision::Role(AdminRole::Auditor),
        Some(Err(error)) => RoleDecision::Error(error.to_string()),
        Some(Ok(false)) | None => RoleDecision::None,
    }
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/admin/sso/callback",
        state.config.issuer.trim_end_matches('/')
    )
}

fn sso_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.issuer_is_loopback_http() {
        ""
    } else {
        "; Secure"
    };
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Lax; Path={}/admin/sso; Max-Age={max_age}{secure}",
        sso_cookie_name(&state.config),
        state.config.issuer_path()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("frontdesk_admin_sso=; Max-Age=0"))
}

/// The configured SSO and its identity provider as the trust registry has it now.
fn configured(
    state: &AppState,
) -> Result<(&Sso, std::sync::Arc<crate::registry::IdentityProvider>), AdminError> {
    let sso = state.admin.sso.as_ref().ok_or(AdminError::NotFound)?;
    let idp = state
        .tokens
        .trust
        .current()
        .idp_by_id(&sso.idp)
        .filter(|idp| idp.config.enabled)
        .cloned()
        .ok_or_else(|| {
            AdminError::Unavailable(format!(
                "Single sign-on is configured with the identity provider `{}`, which is missing or disabled. Use a local account.",
                sso.idp
            ))
        })?;
    Ok((sso, idp))
}

/// The failed-attempt counter's "user" for single sign-on refusals (counted per address).
const SSO_LIMIT_KEY: &str = "\u{0}admin-sso";

/// Audits a refusal. One that comes before the identity provider has answered with an ID token
/// (a made-up or spent state, another browser, no code, a code the IdP refuses, an unreachable
/// IdP) costs its sender a request or two, so only the first
/// [`super::auth::MAX_FAILED_SIGN_INS`] of those from one address in the limiter's window are
/// written: a scanner cannot flood the log (as with invalid API tokens). An ID token that fails
/// its checks (`id_token_*`) and a signed-in user without a role (`subject` set) are always
/// written.
async fn audit_failure(
    state: &AppState,
    ip: &str,
    reason: &str,
    subject: Option<&str>,
) -> Result<(), AdminError> {
    if subject.is_none() && !reason.starts_with("id_token_") {
        let now = now_of(state);
        if state.admin.limiter.blocked(SSO_LIMIT_KEY, ip, now) {
            return Ok(());
        }
        state.admin.limiter.fail(SSO_LIMIT_KEY, ip, now);
    }
    let mut event = AuditEvent::new(now_of(state), "admin_sign_in", Decision::Denied);
    event.reason = Some(reason.to_string());
    event.subject = subject.map(str::to_string);
    event.detail = Some(AuditDetail::of(&json!({ "via": "sso", "ip": ip })));
    state.store.record(&event).await?;
    Ok(())
}

/// Ends every open session of an SSO user whose sign-in was just refused. The identity provider
/// has said, at this sign-in, that the user no longer qualifies (taken out of the admin group,
/// say): a session opened before would otherwise keep its role for up to twelve hours. A user
/// who never signed in has none, and nothing happens.
async fn end_sessions_of(state: &AppState, username: &str) -> Result<(), AdminError> {
    let ended = state.store.delete_admin_sessions_of(username).await?;
    if ended > 0 {
        tracing::info!(%username, ended, "ended the sessions of an admin the identity provider no longer qualifies");
    }
    Ok(())
}

/// `GET /admin/sso/start`: remembers a pending sign-in, with the session the browser holds now
/// (its cookie comes along here: the user clicked a link on the admin page), and sends the
/// browser to the IdP.
pub async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let (sso, idp) = configured(&state)?;
    // Counted before anything is fetched or stored; the start past the quota is refused too.
    let key = crate::http::forwarded::limit_key_text(&ip);
    if state.admin.sso_starts.retry_after(key.as_str()).is_some()
        || state.admin.sso_starts.record_failure(key)
    {
        return Err(AdminError::TooManyAttempts);
    }
    let now = now_of(&state);
    let (state_param, nonce, binding) = (random_token(), random_token(), random_token());
    let (url, verifier) = match sso
        .rp
        .authorization_url(
            &idp,
            &sso.client_id,
            &redirect_uri(&state),
            &state_param,
            &nonce,
        )
        .await
    {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(reason = error.reason, detail = %error.detail, "admin single sign-on could not start");
            audit_failure(&state, &ip, error.reason, None).await?;
            return Err(AdminError::Unavailable(
                "The identity provider could not be reached. Try again, or use a local account."
                    .into(),
            ));
        }
    };
    state
        .store
        .create_admin_sso_request(
            &AdminSsoRequest {
                state_hash: sha256(&state_param),
                binding_hash: sha256(&binding),
                nonce,
                pkce_verifier: verifier.expose().to_string(),
                created_at: now,
                previous_session_hash: session_cookie(&state.config, &headers)
                    .map(|cookie| sha256(&cookie)),
            },
            now - SSO_REQUEST_TTL_SECS,
        )
        .await?;
    let mut response = Redirect::to(&url).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        sso_cookie(&state, &binding, SSO_REQUEST_TTL_SECS),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "admin/sso_done.html")]
struct SignedInPage {
    layout: Layout,
}

/// `GET /admin/sso/callback`: checks the pending sign-in (state, browser binding, age), lets the
/// relying party redeem the code and validate the ID token (issuer, audience, nonce, signature
/// with the IdP's allowed algorithms), decides the role with the CEL conditions, and starts a
/// session. Every refusal is audited with its reason.
pub async fn callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let (sso, idp) = configured(&state)?;
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let start_again = "Start again from the sign-in page.";
    let Some(state_param) = param("state") else {
        audit_failure(&state, &ip, "sso_state_missing", None).await?;
        return Err(AdminError::BadRequest(format!(
            "The identity provider's answer has no state. {start_again}"
        )));
    };
    let Some(pending) = state
        .store
        .take_admin_sso_request(&sha256(state_param))
        .await?
    else {
        audit_failure(&state, &ip, "sso_state_unknown", None).await?;
        return Err(AdminError::BadRequest(format!(
            "This sign-in is unknown, already used or expired. {start_again}"
        )));
    };
    // The browser's session from before the sign-in ends here, before anything can refuse it:
    // a sign-in that succeeds replaces it, and one that is refused must not leave the browser
    // with the earlier (perhaps another person's) privileges.
    if let Some(previous) = &pending.previous_session_hash {
        state.store.delete_admin_session(previous).await?;
    }
    let bound = named_cookie(&headers, &sso_cookie_name(&state.config)).is_some_and(|cookie| {
        crate::secret::constant_time_eq(sha256(&cookie).as_bytes(), pending.binding_hash.as_bytes())
    });
    if !bound {
        audit_failure(&state, &ip, "sso_browser_mismatch", None).await?;
        return Err(AdminError::BadRequest(format!(
            "This sign-in was started in another browser. {start_again}"
        )));
    }
    if now_of(&state) - pending.created_at > SSO_REQUEST_TTL_SECS {
        audit_failure(&state, &ip, "sso_expired", None).await?;
        return Err(AdminError::BadRequest(format!(
            "The sign-in took too long. {start_again}"
        )));
    }
    if let Some(error) = param("error") {
        audit_failure(&state, &ip, "idp_error", None).await?;
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(AdminError::Forbidden(format!(
            "The identity provider did not sign you in ({code}). {start_again}"
        )));
    }
    let Some(code) = param("code") else {
        audit_failure(&state, &ip, "sso_code_missing", None).await?;
        return Err(AdminError::BadRequest(format!(
            "The identity provider's answer has no code. {start_again}"
        )));
    };
    let secret = state
        .config
        .admin_sso
        .client_secret
        .clone()
        .unwrap_or_default();
    let signed_in = match sso
        .rp
        .finish(
            &idp,
            &sso.client_id,
            &secret,
            &redirect_uri(&state),
            code,
            &pending.pkce_verifier,
            &pending.nonce,
        )
        .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => {
            tracing::warn!(reason = error.reason, detail = %error.detail, "admin single sign-on failed");
            audit_failure(&state, &ip, error.reason, None).await?;
            return Err(AdminError::Forbidden(format!(
                "The sign-in at the identity provider could not be verified ({}). {start_again}",
                error.reason
            )));
        }
    };
    let username = format!("{}:{}", sso.idp, signed_in.subject);
    let role = match sso.role_for(&signed_in.claims) {
        RoleDecision::Role(role) => role,
        RoleDecision::None => {
            end_sessions_of(&state, &username).await?;
            audit_failure(&state, &ip, "sso_no_role", Some(&username)).await?;
            return Err(AdminError::Forbidden(
                "You signed in at the identity provider, but your account is not allowed into this admin page. Ask an administrator to add you to the right group."
                    .into(),
            ));
        }
        RoleDecision::Error(detail) => {
            tracing::warn!(%detail, "admin single sign-on role condition failed");
            end_sessions_of(&state, &username).await?;
            audit_failure(&state, &ip, "sso_condition_error", Some(&username)).await?;
            return Err(AdminError::Forbidden(
                "Your account's claims could not be checked against the admin page's access rules, so access is refused. The server log has the details."
                    .into(),
            ));
        }
    };
    let now = now_of(&state);
    let mut event = AuditEvent::new(now, "admin_sign_in", Decision::Changed);
    event.subject = Some(username.clone());
    event.detail = Some(AuditDetail::of(&json!({
        "actor": username,
        "via": "sso",
        "idp": sso.idp,
        "email": signed_in.email,
        "role": role.as_str(),
        "ip": ip,
    })));
    state
        .store
        .upsert_sso_admin_user(&username, role, now, &event)
        .await?;
    // The session cookie is SameSite=Strict, and a browser arriving from the IdP is on a
    // cross-site navigation: a redirect would lose the cookie on its next hop. An ordinary page
    // that then moves on by itself starts a same-site navigation.
    let session = start_session(&state, &username, session_cookie(&state.config, &headers)).await?;
    let mut response = render_with_status(
        StatusCode::OK,
        &SignedInPage {
            layout: Layout::anonymous("Signed in", state.config.issuer_path()),
        },
    );
    for value in session.headers().get_all(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, value.clone());
    }
    response
        .headers_mut()
        .append(header::SET_COOKIE, sso_cookie(&state, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile;

    fn decide(admin: &str, auditor: Option<&str>, claims: Value) -> RoleDecision {
        let admin = compile(admin).expect("admin condition");
        let auditor = auditor.map(|source| compile(source).expect("auditor condition"));
        decide_role(&admin, auditor.as_ref(), &claims)
    }

    const ADMINS: &str = r#""idp-admins" in subject.groups"#;
    const AUDITORS: &str = r#"subject.email.endsWith("@example.com")"#;

    #[test]
    fn admin_condition_wins_over_auditor() {
        let claims = json!({ "groups": ["idp-admins"], "email": "ada@example.com" });
        assert_eq!(
            decide(ADMINS, Some(AUDITORS), claims),
            RoleDecision::Role(AdminRole::Admin)
        );
    }

    #[test]
    fn auditor_when_only_the_auditor_condition_holds() {
        let claims = json!({ "groups": ["staff"], "email": "bob@example.com" });
        assert_eq!(
            decide(ADMINS, Some(AUDITORS), claims),
            RoleDecision::Role(AdminRole::Auditor)
        );
    }

    #[test]
    fn nobody_when_neither_holds_or_no_auditor_condition() {
        let claims = json!({ "groups": ["staff"], "email": "eve@elsewhere.test" });
        assert_eq!(
            decide(ADMINS, Some(AUDITORS), claims.clone()),
            RoleDecision::None
        );
        assert_eq!(decide(ADMINS, None, claims), RoleDecision::None);
    }

    #[test]
    fn an_evaluation_error_denies_and_never_falls_through_to_auditor() {
        // No `groups` claim: the admin condition cannot be evaluated.
        let claims = json!({ "email": "ada@example.com" });
        assert!(matches!(
            decide(ADMINS, Some(AUDITORS), claims),
            RoleDecision::Error(_)
        ));
    }
}
