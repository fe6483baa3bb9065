//! Admin sign-in: local accounts (argon2id), server-side sessions, CSRF tokens, the failed
//! sign-in rate limiter, and the one-time development bootstrap link.
//!
//! The cookie holds 32 random bytes (base64url); the database holds only their SHA-256, so a
//! copy of the database does not let anyone ride a session. Sessions end after
//! [`IDLE_TIMEOUT_SECS`] without a request or [`ABSOLUTE_TIMEOUT_SECS`] after sign-in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use askama::Template;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};

use super::cookie::{session_cookie, set_session_cookie};
use super::views::{AdminError, FormData, Layout, render, render_with_status};
use super::{AdminRuntime, now_of};
use crate::http::AppState;
use crate::secret::{constant_time_eq, hash_secret, verify_secret};
use crate::store::{
    AdminRole, AdminSessionRecord, AdminStore, AdminUser, AuditDetail, AuditEvent, AuditLog,
    Decision, Store, StoreError,
};

/// A session ends after this long without a request (30 min).
pub const IDLE_TIMEOUT_SECS: i64 = 30 * 60;
/// A session ends this long after sign-in, however active (12 h).
pub const ABSOLUTE_TIMEOUT_SECS: i64 = 12 * 3600;
/// Failed sign-ins allowed per username and client address within [`RATE_WINDOW_SECS`].
pub const MAX_FAILED_SIGN_INS: u32 = 5;
/// The rate limiter's window.
pub const RATE_WINDOW_SECS: i64 = 15 * 60;
/// The development bootstrap link is valid this long.
pub const BOOTSTRAP_TTL_SECS: i64 = 3600;
/// How much of a typed username a failed sign-in records (longer than any account's name).
const RECORDED_USERNAME_CHARS: usize = 100;
/// Shortest accepted admin password.
pub const MIN_PASSWORD_LEN: usize = 12;

/// 32 random bytes as base64url: session ids, CSRF tokens, bootstrap, SSO state and nonce, API
/// tokens, client secrets.
pub fn random_token() -> String {
    token_from(|bytes| SystemRandom::new().fill(bytes).is_ok())
}

/// A token of the 32 bytes `fill` writes. When `fill` fails (the system random generator, which
/// fails only without an entropy source) nothing is made: the request fails (the HTTP layer
/// answers the panic with a 500) and a command stops. The zeros it used to go on with made the
/// same session id, API token and client secret for everyone, while the log said only that
/// the generator had failed.
fn token_from(fill: impl FnOnce(&mut [u8]) -> bool) -> String {
    let mut bytes = [0u8; 32];
    if !fill(&mut bytes) {
        panic!("the system random number generator failed");
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn sha256(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        text.as_bytes(),
    ))
}

/// The in-memory failed sign-in counter, per username and client address, over a fixed window.
/// Per instance: several instances each allow the limit (documented; good enough against
/// online guessing given argon2id's cost).
#[derive(Debug, Default)]
pub struct RateLimiter {
    failures: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// Counted per username and address — an IPv6 address by its /64, as every per-address
    /// limit is (`forwarded::limit_key`).
    fn key(username: &str, ip: &str) -> String {
        format!("{username}\n{}", crate::http::forwarded::limit_key_text(ip))
    }

    pub(crate) fn blocked(&self, username: &str, ip: &str, now: i64) -> bool {
        let failures = match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        failures
            .get(&Self::key(username, ip))
            .is_some_and(|(start, count)| {
                now - start < RATE_WINDOW_SECS && *count >= MAX_FAILED_SIGN_INS
            })
    }

    /// Counts a sign-in attempt of (username, address) before its password is checked, unless
    /// the limit is reached; true if the attempt may go ahead. The check and the count are one
    /// step under the lock: checking first and counting after argon2 let every request that
    /// arrived while the first ones were still verifying through, so concurrent requests got
    /// as many guesses as the attacker could open connections. A success clears the count.
    pub(crate) fn try_attempt(&self, username: &str, ip: &str, now: i64) -> bool {
        self.count(username, ip, now, |count| *count < MAX_FAILED_SIGN_INS)
    }

    pub(crate) fn fail(&self, username: &str, ip: &str, now: i64) {
        self.count(username, ip, now, |_| true);
    }

    /// Under the lock: the window of (username, address), restarted when it has passed, gets
    /// one more count if `allowed` says so of the count so far; returns what `allowed` said.
    fn count(&self, username: &str, ip: &str, now: i64, allowed: impl Fn(&u32) -> bool) -> bool {
        let mut failures = match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if failures.len() > 10_000 {
            failures.retain(|_, (start, _)| now - *start < RATE_WINDOW_SECS);
        }
        let entry = failures.entry(Self::key(username, ip)).or_insert((now, 0));
        if now - entry.0 >= RATE_WINDOW_SECS {
            *entry = (now, 0);
        }
        let allow = allowed(&entry.1);
        if allow {
            entry.1 += 1;
        }
        allow
    }

    /// Counts a refusal of a blocked (username, address) and says whether it is the first of
    /// the window: only that one is audited, so requests past the limit, which cost no argon2
    /// work, cannot flood the audit log.
    pub(crate) fn first_refusal(&self, username: &str, ip: &str) -> bool {
        let mut failures = match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        failures
            .get_mut(&Self::key(username, ip))
            .is_some_and(|(_, count)| {
                let first = *count == MAX_FAILED_SIGN_INS;
                *count = count.saturating_add(1);
                first
            })
    }

    fn clear(&self, username: &str, ip: &str) {
        let mut failures = match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        failures.remove(&Self::key(username, ip));
    }
}

/// The one-time development bootstrap token (kept in memory only).
pub struct BootstrapToken {
    token: String,
    expires_at: i64,
}

/// Redacted: the token is a credential (whoever holds it creates the first admin account).
impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AdminRuntime {
    /// Issues (replacing any earlier one) the single-use bootstrap token, valid for an hour.
    pub fn issue_bootstrap_token(&self) -> String {
        let token = random_token();
        let mut slot = match self.bootstrap.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Some(BootstrapToken {
            token: token.clone(),
            expires_at: self.now() + BOOTSTRAP_TTL_SECS,
        });
        token
    }

    fn bootstrap_valid(&self, token: &str) -> bool {
        let slot = match self.bootstrap.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.as_ref().is_some_and(|held| {
            held.expires_at > self.now()
                && constant_time_eq(held.token.as_bytes(), token.as_bytes())
        })
    }

    /// Consumes the token if it is valid; true if it was.
    fn take_bootstrap(&self, token: &str) -> bool {
        let mut slot = match self.bootstrap.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let valid = slot.as_ref().is_some_and(|held| {
            held.expires_at > self.now()
                && constant_time_eq(held.token.as_bytes(), token.as_bytes())
        });
        if valid {
            *slot = None;
        }
        valid
    }
}

/// A signed-in admin, extracted from the session cookie on every admin page. Missing, unknown
/// or expired sessions redirect to the sign-in page.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub username: String,
    /// What they may do.
    pub role: AdminRole,
    /// The session's CSRF token.
    pub csrf: String,
    /// The server's path under its origin (`Config::issuer_path`), for the page's links.
    pub base_path: String,
}

impl Session {
    /// Admins may change things; auditors may only read.
    pub fn can_change(&self) -> bool {
        self.role == AdminRole::Admin
    }

    /// Checks a state-changing form: the CSRF token (constant time) first, then the role.
    pub fn authorize_change(&self, form: &FormData) -> Result<(), AdminError> {
        self.check_csrf(form)?;
        if !self.can_change() {
            return Err(AdminError::Forbidden(
                "Your role is auditor: you can read everything but change nothing.".into(),
            ));
        }
        Ok(())
    }

    /// Checks only the CSRF token (for forms every role may submit, such as sign-out).
    pub fn check_csrf(&self, form: &FormData) -> Result<(), AdminError> {
        if constant_time_eq(form.get("csrf").as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(AdminError::Forbidden(
                "The form's security token is missing or does not match your session. Reload the page and try again.".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(cookie) = session_cookie(&state.config, &parts.headers) else {
            return Err(AdminError::SignIn);
        };
        let id_hash = sha256(&cookie);
        let Some(record) = state.store.admin_session(&id_hash).await? else {
            return Err(AdminError::SignIn);
        };
        let now = now_of(state);
        if now - record.last_seen_at >= IDLE_TIMEOUT_SECS
            || now - record.created_at >= ABSOLUTE_TIMEOUT_SECS
        {
            state.store.delete_admin_session(&id_hash).await?;
            return Err(AdminError::SignIn);
        }
        // Refresh the idle clock at most every few seconds, not on every request.
        if now - record.last_seen_at >= 10 {
            state.store.touch_admin_session(&id_hash, now).await?;
        }
        Ok(Session {
            username: record.username,
            role: record.role,
            csrf: record.csrf_token,
            base_path: state.config.issuer_path().to_string(),
        })
    }
}

/// The client's address for the rate limiter ("unknown" if the server was not started with
/// connection info).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_string(), |info| info.0.ip().to_string()),
        ))
    }
}

/// Starts a session for `username` and redirects to the dashboard with the cookie set.
pub(crate) async fn start_session(
    state: &AppState,
    username: &str,
    previous: Option<String>,
) -> Result<Response, AdminError> {
    let now = now_of(state);
    let _ = state
        .store
        .purge_admin_sessions(now - IDLE_TIMEOUT_SECS, now - ABSOLUTE_TIMEOUT_SECS)
        .await;
    // A sign-in in a browser that still held a session ends that one: its cookie is replaced,
    // and a copy of it must not outlive the sign-in that superseded it.
    if let Some(previous) = previous {
        state.store.delete_admin_session(&sha256(&previous)).await?;
    }
    let id = random_token();
    state
        .store
        .create_admin_session(&AdminSessionRecord {
            id_hash: sha256(&id),
            username: username.to_string(),
            role: AdminRole::Admin, // not stored: the role is joined from admin_users
            csrf_token: random_token(),
            created_at: now,
            last_seen_at: now,
        })
        .await?;
    let mut response =
        Redirect::to(&format!("{}/admin", state.config.issuer_path())).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_session_cookie(&state.config, &id, None),
    );
    Ok(response)
}

/// A PHC hash of a random password, verified against for unknown usernames so that a wrong
/// username costs as much time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&random_token()).unwrap_or_default())
}

#[derive(Template)]
#[template(path = "admin/sign_in.html")]
struct SignInPage {
    layout: Layout,
    username: String,
    error: Option<String>,
    /// The single sign-on button's label, when SSO is configured.
    sso_label: Option<String>,
}

fn sso_label(state: &AppState) -> Option<String> {
    state.admin.sso.as_ref().map(|sso| sso.button_label.clone())
}

/// `GET /admin/sign-in`.
pub async fn sign_in_page(State(state): State<AppState>) -> Response {
    render(&SignInPage {
        layout: Layout::anonymous("Sign in", state.config.issuer_path()),
        username: String::new(),
        error: None,
        sso_label: sso_label(&state),
    })
}

/// `POST /admin/sign-in`: verifies the password (argon2id, on the blocking pool), rate limits
/// and audits failures, and starts a session.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, AdminError> {
    // No account's name is longer than 64 bytes (`check_new_user`), so a longer one is cut to
    // its first characters, still longer than any account's, before it is looked up, counted
    // or recorded: otherwise every failed sign-in wrote a body-sized name (64 KiB by default)
    // into the audit log twice, and into the rate limiter's memory, for anyone who cared to
    // send one.
    let username =
        crate::oauth::request::clip(form.get("username").trim(), RECORDED_USERNAME_CHARS);
    let password = form.get("password").to_string();
    let now = now_of(&state);
    // Counted before the password is checked (see `RateLimiter::try_attempt`), under the name
    // as typed: an unknown name is limited like a known one.
    if !state.admin.limiter.try_attempt(&username, &ip, now) {
        if state.admin.limiter.first_refusal(&username, &ip) {
            let known = state.store.admin_user(&username).await?.is_some();
            let typed = TypedUsername::of(&username, known);
            audit_sign_in_failure(&state.store, now, &typed, &ip, "rate_limited").await?;
        }
        return Err(AdminError::TooManyAttempts);
    }
    let account = state.store.admin_user(&username).await?;
    let typed = TypedUsername::of(&username, account.is_some());
    // Single sign-on users have no password: they verify against the dummy hash like an
    // unknown name, so a local sign-in can neither succeed for them nor tell that they exist.
    let user = account.filter(|user| !user.sso);
    let phc = user.as_ref().map_or_else(
        || dummy_hash().to_string(),
        |user| user.password_hash.clone(),
    );
    let matches = crate::secret::argon2_checks()
        .run(move || verify_secret(&password, &phc))
        .await
        .unwrap_or(false);
    if let (true, Some(user)) = (matches, user) {
        state.admin.limiter.clear(&username, &ip);
        let mut event = AuditEvent::new(now, "admin_sign_in", Decision::Changed);
        event.detail = Some(AuditDetail::of(
            &serde_json::json!({ "actor": user.username, "ip": ip }),
        ));
        state.store.record(&event).await?;
        return start_session(
            &state,
            &user.username,
            session_cookie(&state.config, &headers),
        )
        .await;
    }
    audit_sign_in_failure(&state.store, now, &typed, &ip, "bad_credentials").await?;
    Ok(render_with_status(
        StatusCode::UNAUTHORIZED,
        &SignInPage {
            layout: Layout::anonymous("Sign in", state.config.issuer_path()),
            username,
            error: Some("Wrong username or password.".into()),
            sso_label: sso_label(&state),
        },
    ))
}

/// What a failed sign-in records of the typed username. People type their password into the
/// username field often enough (a misplaced tab, a password manager filling the wrong field) that
/// the audit log must not keep whatever was typed: a name that is an account's is recorded as
/// it is, anything else only as [`UNKNOWN_USER`] with a fingerprint. The fingerprint is a keyed
/// hash (HMAC-SHA-256 under a key made at start-up and never stored), cut to 48 bits, so the
/// log shows whether failures repeat one name or try many, and a weak password that was typed
/// there cannot be found by hashing guesses. Fingerprints compare within one server process
/// only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedUsername {
    /// The name of an existing account (local or single sign-on).
    Account(String),
    /// No account has this name: only its fingerprint.
    Unknown {
        /// base64url of the first 6 bytes of the keyed hash.
        fingerprint: String,
    },
}

/// How a failed sign-in's audit event shows a name that is no account's.
pub const UNKNOWN_USER: &str = "(unknown user)";

impl TypedUsername {
    /// `typed` as a failed sign-in records it; `known` says whether an account has that name.
    pub fn of(typed: &str, known: bool) -> TypedUsername {
        if known {
            return TypedUsername::Account(typed.to_string());
        }
        static KEY: OnceLock<aws_lc_rs::hmac::Key> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut secret = [0u8; 32];
            // As with tokens (`token_from`): without randomness, no key everyone could guess.
            if SystemRandom::new().fill(&mut secret).is_err() {
                panic!("the system random number generator failed");
            }
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret)
        });
        let tag = aws_lc_rs::hmac::sign(key, typed.as_bytes());
        TypedUsername::Unknown {
            fingerprint: URL_SAFE_NO_PAD.encode(&tag.as_ref()[..6]),
        }
    }

    /// The audit event's subject: the account, or none.
    fn subject(&self) -> Option<String> {
        match self {
            TypedUsername::Account(name) => Some(name.clone()),
            TypedUsername::Unknown { .. } => None,
        }
    }

    /// The audit event's detail fields for the name.
    fn detail(&self, ip: &str) -> serde_json::Value {
        match self {
            TypedUsername::Account(name) => serde_json::json!({ "username": name, "ip": ip }),
            TypedUsername::Unknown { fingerprint } => serde_json::json!({
                "username": UNKNOWN_USER,
                "username_fingerprint": fingerprint,
                "ip": ip,
            }),
        }
    }
}

async fn audit_sign_in_failure(
    store: &Store,
    now: i64,
    typed: &TypedUsername,
    ip: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let mut event = AuditEvent::new(now, "admin_sign_in", Decision::Denied);
    event.reason = Some(reason.to_string());
    event.subject = typed.subject();
    event.detail = Some(AuditDetail::of(&typed.detail(ip)));
    store.record(&event).await
}

/// `POST /admin/sign-out`: ends the session and clears the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, AdminError> {
    session.check_csrf(&form)?;
    if let Some(cookie) = session_cookie(&state.config, &headers) {
        state.store.delete_admin_session(&sha256(&cookie)).await?;
    }
    let mut event = AuditEvent::new(now_of(&state), "admin_sign_out", Decision::Changed);
    event.detail = Some(AuditDetail::of(
        &serde_json::json!({ "actor": session.username }),
    ));
    state.store.record(&event).await?;
    let mut response =
        Redirect::to(&format!("{}/admin/sign-in", state.config.issuer_path())).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_session_cookie(&state.config, "", Some(0)),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "admin/bootstrap.html")]
struct BootstrapPage {
    layout: Layout,
    token: String,
    username: String,
    error: Option<String>,
}

/// Query of the bootstrap link.
#[derive(Debug, serde::Deserialize)]
pub struct BootstrapQuery {
    #[serde(default)]
    token: String,
}

fn bootstrap_gone() -> AdminError {
    AdminError::Forbidden(
        "This bootstrap link is invalid, used or expired. Restart the development server for a new one, or create a user with `frontdesk admin create-user`.".into(),
    )
}

/// `GET /admin/bootstrap?token=…`: the form to create the first admin account.
pub async fn bootstrap_page(
    State(state): State<AppState>,
    Query(query): Query<BootstrapQuery>,
) -> Result<Response, AdminError> {
    if !state.admin.bootstrap_valid(&query.token) || state.store.count_admin_users().await? > 0 {
        return Err(bootstrap_gone());
    }
    Ok(render(&BootstrapPage {
        layout: Layout::anonymous("Create the first admin account", state.config.issuer_path()),
        token: query.token,
        username: String::new(),
        error: None,
    }))
}

/// `POST /admin/bootstrap`: creates the first admin (consuming the token) and signs them in.
pub async fn bootstrap(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, AdminError> {
    let token = form.get("token").to_string();
    if !state.admin.bootstrap_valid(&token) || state.store.count_admin_users().await? > 0 {
        return Err(bootstrap_gone());
    }
    let username = form.get("username").trim().to_string();
    let password = form.get("password").to_string();
    let problem = check_new_user(&username, &password)
        .err()
        .or_else(|| (password != form.get("confirm")).then(|| "The passwords differ.".to_string()));
    if let Some(error) = problem {
        return Ok(render_with_status(
            StatusCode::BAD_REQUEST,
            &BootstrapPage {
                layout: Layout::anonymous(
                    "Create the first admin account",
                    state.config.issuer_path(),
                ),
                token,
                username,
                error: Some(error),
            },
        ));
    }
    if !state.admin.take_bootstrap(&token) {
        return Err(bootstrap_gone());
    }
    create_user(
        &state.store,
        &username,
        &password,
        AdminRole::Admin,
        "bootstrap",
        now_of(&state),
    )
    .await
    .map_err(|error| match error {
        CreateUserError::Invalid(message) => AdminError::BadRequest(message),
        CreateUserError::Store(error) => AdminError::from(error),
    })?;
    let mut event = AuditEvent::new(now_of(&state), "admin_sign_in", Decision::Changed);
    event.detail = Some(AuditDetail::of(
        &serde_json::json!({ "actor": username, "ip": ip, "via": "bootstrap" }),
    ));
    state.store.record(&event).await?;
    start_session(&state, &username, session_cookie(&state.config, &headers)).await
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Bad username or password, or the name is taken.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Store(StoreError),
}

/// Actor names the audit log uses for what no person did: self-registration, metadata
/// documents, the command line, scheduled tasks, the audit retention, the first account's
/// creation, the configuration file.
const RESERVED_ACTORS: &[&str] = &[
    "dcr",
    "cimd",
    "cli",
    "schedule",
    "retention",
    "bootstrap",
    "config",
];

/// Checks a new account's username (1-64 of letters, digits, `-_.@`, not an actor name the
/// audit log reserves) and password length.
pub fn check_new_user(username: &str, password: &str) -> Result<(), String> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err("The username must be 1-64 letters, digits, - _ . or @.".into());
    }
    // The audit log names these as actors; a person called so would be mistaken for them.
    if RESERVED_ACTORS.contains(&username) {
        return Err(format!(
            "`{username}` is reserved for the audit log's own actors."
        ));
    }
    check_password(password)
}

/// A new password is long enough: [`MIN_PASSWORD_LEN`] characters at least.
fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "The password must be at least {MIN_PASSWORD_LEN} characters long."
        ));
    }
    Ok(())
}

/// Creates an admin user (hashing on the blocking pool) and audits it in the same transaction;
/// used by the bootstrap page and `frontdesk admin create-user`.
pub async fn create_user(
    store: &Store,
    username: &str,
    password: &str,
    role: AdminRole,
    actor: &str,
    now: i64,
) -> Result<(), CreateUserError> {
    check_new_user(username, password).map_err(CreateUserError::Invalid)?;
    let password_hash = hash_password(password).await?;
    let event = user_event(
        now,
        "admin_user_created",
        username,
        serde_json::json!({
            "actor": actor,
            "before": null,
            "after": { "username": username, "role": role.as_str() },
        }),
    );
    let user = AdminUser {
        username: username.to_string(),
        password_hash,
        role,
        created_at: now,
        sso: false,
    };
    match store.create_admin_user(&user, &event).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(CreateUserError::Invalid(format!(
            "an admin user named {username} already exists"
        ))),
        Err(error) => Err(CreateUserError::Store(error)),
    }
}

/// argon2id of a new password, on the blocking pool (it takes tens of milliseconds).
async fn hash_password(password: &str) -> Result<String, CreateUserError> {
    let secret = password.to_string();
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|error| CreateUserError::Invalid(format!("hashing failed: {error}")))?
        .map_err(CreateUserError::Invalid)
}

/// The audit event of a change to the admin user `username`.
fn user_event(now: i64, name: &str, username: &str, detail: serde_json::Value) -> AuditEvent {
    let mut event = AuditEvent::new(now, name, Decision::Changed);
    event.subject = Some(username.to_string());
    event.detail = Some(AuditDetail::of(&detail));
    event
}

/// Gives a local user a new password (`frontdesk admin set-password`): the break-glass account's
/// password can be rotated, and a leaked one replaced, without touching the database by hand.
/// Every session of the user ends with the change, so whoever held the old password is signed
/// out too; audited as `admin_user_password_changed` in the same transaction.
pub async fn set_password(
    store: &Store,
    username: &str,
    password: &str,
    actor: &str,
    now: i64,
) -> Result<(), CreateUserError> {
    check_password(password).map_err(CreateUserError::Invalid)?;
    let password_hash = hash_password(password).await?;
    let event = user_event(
        now,
        "admin_user_password_changed",
        username,
        serde_json::json!({ "actor": actor }),
    );
    match store
        .set_admin_password(username, &password_hash, &event)
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(CreateUserError::Invalid(format!(
            "no local admin user is named {username} (single sign-on users have no password)"
        ))),
        Err(error) => Err(CreateUserError::Store(error)),
    }
}

/// Removes an admin user, local or single sign-on, and ends its sessions (`frontdesk admin
/// remove-user`): an account that is no longer needed, or whose holder left, is revoked at once.
/// The last user with the admin role is kept — without one, nobody could change anything on
/// the admin page again. Audited as `admin_user_removed` in the same transaction.
pub async fn remove_user(
    store: &Store,
    username: &str,
    actor: &str,
    now: i64,
) -> Result<(), CreateUserError> {
    let event = user_event(
        now,
        "admin_user_removed",
        username,
        serde_json::json!({ "actor": actor }),
    );
    match store.delete_admin_user(username, &event).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(CreateUserError::Invalid(format!(
            "no admin user is named {username}"
        ))),
        Err(StoreError::Conflict) => Err(CreateUserError::Invalid(format!(
            "{username} is the last admin; create another admin user first"
        ))),
        Err(error) => Err(CreateUserError::Store(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::{BootstrapToken, TypedUsername, UNKNOWN_USER, token_from};

    /// A failed sign-in under a name that is no account's records only a keyed fingerprint of
    /// it: equal for the same name, different for another, never the name itself.
    #[test]
    fn an_unknown_typed_username_is_recorded_only_as_a_fingerprint() {
        let typed = "my secret password 123";
        let first = TypedUsername::of(typed, false);
        let TypedUsername::Unknown { fingerprint } = &first else {
            panic!("{first:?}");
        };
        assert_eq!(fingerprint.len(), 8);
        assert_eq!(TypedUsername::of(typed, false), first);
        assert_ne!(TypedUsername::of("my secret password 124", false), first);
        assert_eq!(first.subject(), None);
        let detail = first.detail("192.0.2.1").to_string();
        assert!(
            !detail.contains("secret") && detail.contains(UNKNOWN_USER),
            "{detail}"
        );
        let known = TypedUsername::of("alice", true);
        assert_eq!(known.subject().as_deref(), Some("alice"));
        assert_eq!(known.detail("192.0.2.1")["username"], "alice");
    }

    /// Without randomness no token is made: a token of zeros would be everyone's.
    #[test]
    #[should_panic(expected = "random number generator failed")]
    fn a_failed_random_generator_makes_no_token() {
        let _ = token_from(|_| false);
    }

    #[test]
    fn tokens_are_the_bytes_the_generator_wrote() {
        let token = token_from(|bytes| {
            bytes.fill(0xff);
            true
        });
        assert_eq!(token, "_".repeat(42) + "8");
    }

    /// A stray `{:?}` of the bootstrap token (a log line, a panic) does not print it.
    #[test]
    fn the_bootstrap_tokens_debug_form_hides_the_token() {
        let token = BootstrapToken {
            token: "s3cret-bootstrap-value".to_owned(),
            expires_at: 1,
        };
        let printed = format!("{token:?}");
        assert!(!printed.contains("s3cret-bootstrap-value"), "{printed}");
        assert!(printed.contains("expires_at"), "{printed}");
    }
}
