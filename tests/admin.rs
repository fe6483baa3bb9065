//! The admin page over real HTTP (reqwest with a cookie jar): sign-in, sessions, CSRF, roles,
//! security headers, and the trust forms, against a server with config-managed trust.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use env::Env;
use frontdesk::admin::auth::create_user;
use frontdesk::store::{
    AdminRole, AdminStore, AuditDetail, AuditFilter, AuditLog, Decision, TrustKind, TrustStore,
};
use reqwest::StatusCode;

const ADMIN: &str = "alice";
const AUDITOR: &str = "audrey";
const PASSWORD: &str = "correct horse battery staple";

struct Admin {
    env: Env,
    http: reqwest::Client,
}

impl Admin {
    async fn start() -> anyhow::Result<Admin> {
        Admin::start_on(Env::start().await?).await
    }

    /// The same on a fresh PostgreSQL database; `None` when no test server is configured.
    async fn start_on_postgres(
        test: &str,
    ) -> anyhow::Result<Option<(Admin, env::test_db::TestDatabase)>> {
        let Some((env, database)) = Env::start_on_postgres(test).await? else {
            return Ok(None);
        };
        Ok(Some((Admin::start_on(env).await?, database)))
    }

    async fn start_on(env: Env) -> anyhow::Result<Admin> {
        let store = &env.server.state.store;
        let now = env::now();
        create_user(store, ADMIN, PASSWORD, AdminRole::Admin, "test", now).await?;
        create_user(store, AUDITOR, PASSWORD, AdminRole::Auditor, "test", now).await?;
        Ok(Admin {
            http: browser(&env.url)?,
            env,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.env.url)
    }

    async fn sign_in_as(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url("/admin/sign-in"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await?)
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let response = self.http.get(self.url(path)).send().await?;
        Ok((response.status(), response.text().await?))
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, String)> {
        let response = self.http.post(self.url(path)).form(form).send().await?;
        Ok((response.status(), response.text().await?))
    }

    /// The CSRF token of the signed-in session, read from a page's sign-out form.
    async fn csrf(&self) -> anyhow::Result<String> {
        let (_, html) = self.get("/admin").await?;
        csrf_of(&html)
    }
}

/// A client that behaves like a browser on the admin page at `url`: it keeps cookies, follows
/// no redirects, and sends the page's `Origin` with every request, as a browser does with every
/// form post (the admin page refuses a post that names no origin).
fn browser(url: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ORIGIN,
        reqwest::header::HeaderValue::from_str(&origin_of(url)?)?,
    );
    Ok(reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()?)
}

/// The origin (`scheme://host:port`) of `url`.
fn origin_of(url: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(url)?.origin().ascii_serialization())
}

fn csrf_of(html: &str) -> anyhow::Result<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .ok_or_else(|| anyhow::anyhow!("no csrf field in page: {html}"))?
        + marker.len();
    let end = html[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated csrf value"))?;
    Ok(html[start..start + end].to_string())
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A new password ends the user's open sessions and only the new one signs in; removing a
/// user ends theirs too; the last admin is never removed, not even by two removals at once
/// (each of two admins removed concurrently: exactly one goes). Run on SQLite and PostgreSQL,
/// where the removals' transactions really overlap.
async fn users_are_managed_and_the_last_admin_stays(admin: &Admin) -> anyhow::Result<()> {
    use frontdesk::admin::auth::{remove_user, set_password};
    let store = &admin.env.server.state.store;
    let signed_in = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/admin").await?.0, StatusCode::OK);
    let renewed = "another correct horse battery";
    set_password(store, ADMIN, renewed, "test", env::now()).await?;
    assert_eq!(
        admin.get("/admin").await?.0,
        StatusCode::SEE_OTHER,
        "the session ended with the old password"
    );
    let old = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = admin.sign_in_as(ADMIN, renewed).await?;
    assert_eq!(new.status(), StatusCode::SEE_OTHER);
    remove_user(store, AUDITOR, "test", env::now()).await?;
    assert!(store.admin_user(AUDITOR).await?.is_none());
    let last = remove_user(store, ADMIN, "test", env::now()).await;
    assert!(
        last.as_ref()
            .is_err_and(|error| error.to_string().contains("last admin")),
        "{last:?}"
    );
    create_user(store, "zed", PASSWORD, AdminRole::Admin, "test", env::now()).await?;
    let (first, second) = tokio::join!(
        remove_user(store, ADMIN, "test", env::now()),
        remove_user(store, "zed", "test", env::now()),
    );
    assert!(
        first.is_ok() != second.is_ok(),
        "exactly one of two admins removed at once goes: {first:?} {second:?}"
    );
    let admins = store
        .list_admin_users()
        .await?
        .into_iter()
        .filter(|user| user.role == AdminRole::Admin)
        .count();
    assert_eq!(admins, 1);
    assert_eq!(
        admin.get("/admin").await?.0,
        if first.is_ok() {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::OK
        },
        "a removed admin's session ends with the account"
    );
    Ok(())
}

#[tokio::test]
async fn users_are_managed_and_the_last_admin_stays_on_sqlite() -> anyhow::Result<()> {
    users_are_managed_and_the_last_admin_stays(&Admin::start().await?).await
}

#[tokio::test]
async fn users_are_managed_and_the_last_admin_stays_on_postgres() -> anyhow::Result<()> {
    let Some((admin, _database)) = Admin::start_on_postgres("admin_user_management").await? else {
        return Ok(());
    };
    users_are_managed_and_the_last_admin_stays(&admin).await
}

/// A NUL character in the sign-in form is a wrong username like any other, on PostgreSQL too,
/// whose TEXT cannot hold one: the lookup used to fail and the page answered with a database
/// error (docs/decisions.md §30).
#[tokio::test]
async fn a_nul_character_in_the_username_is_wrong_credentials_on_postgres() -> anyhow::Result<()> {
    let Some((admin, _database)) = Admin::start_on_postgres("admin_nul_username").await? else {
        return Ok(());
    };
    let refused = admin.sign_in_as("alice\0", PASSWORD).await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    assert!(refused.text().await?.contains("Wrong username or password"));
    let log = admin.env.audit_log().await?;
    assert!(
        log.iter()
            .any(|record| record.event.event == "admin_sign_in"
                && record.event.reason.as_deref() == Some("bad_credentials")),
        "the failure is audited: {log:?}"
    );
    // The real user still signs in.
    let signed_in = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn sign_in_sets_a_strict_session_cookie_and_failures_are_audited() -> anyhow::Result<()> {
    let admin = Admin::start().await?;

    // Without a session every page redirects to the sign-in page.
    let (status, _) = admin.get("/admin/clients").await?;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let wrong = admin.sign_in_as(ADMIN, "not the password").await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await?.contains("Wrong username or password"));
    let unknown = admin.sign_in_as("mallory", "whatever-password").await?;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    let denied = admin
        .env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            decision: Some(Decision::Denied),
            ..AuditFilter::default()
        })
        .await?;
    let sign_ins: Vec<_> = denied
        .iter()
        .filter(|record| record.event.event == "admin_sign_in")
        .collect();
    assert_eq!(sign_ins.len(), 2, "both failures are audited: {denied:?}");
    assert!(
        sign_ins
            .iter()
            .all(|r| r.event.reason.as_deref() == Some("bad_credentials"))
    );
    let text = serde_json::to_string(&denied)?;
    assert!(!text.contains("not the password") && !text.contains("whatever-password"));

    let ok = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&ok), "/admin");
    let cookie = ok
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(cookie.starts_with("frontdesk_admin="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback cannot use Secure cookies: {cookie}"
    );
    let (status, html) = admin.get("/admin").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Dashboard") && html.contains(ADMIN));

    // Sign-out ends the session server-side.
    let csrf = csrf_of(&html)?;
    let (status, _) = admin.post("/admin/sign-out", &[("csrf", &csrf)]).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = admin.get("/admin").await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_per_user_and_address() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    for _ in 0..5 {
        let response = admin.sign_in_as(ADMIN, "wrong password!").await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while the limit holds.
    let blocked = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let limited = admin
        .env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some("rate_limited".into()),
            ..AuditFilter::default()
        })
        .await?;
    assert_eq!(limited.len(), 1);
    // Another user is unaffected.
    let other = admin.sign_in_as(AUDITOR, PASSWORD).await?;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);
    // After the window the user may try again.
    admin.env.server.state.admin.advance_clock(16 * 60);
    let again = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    Ok(())
}

/// The limit holds for guesses sent at once: each attempt is counted before its password is
/// checked. It used to be counted after argon2, so every request that arrived while the first
/// ones were verifying passed the check, and an attacker got as many guesses per window as
/// connections it could open instead of five.
#[tokio::test]
async fn concurrent_wrong_passwords_get_no_more_guesses_than_the_limit() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..20 {
        let http = admin.http.clone();
        let url = admin.url("/admin/sign-in");
        guesses.spawn(async move {
            let password = format!("wrong password {n}");
            http.post(url)
                .form(&[("username", ADMIN), ("password", password.as_str())])
                .send()
                .await
                .map(|response| response.status())
        });
    }
    let mut checked = 0;
    let mut refused = 0;
    while let Some(status) = guesses.join_next().await {
        match status?? {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (checked, refused),
        (5, 15),
        "only five passwords were checked"
    );
    let blocked = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    Ok(())
}

/// The sign-in form runs at most a few argon2id checks (19 MiB each) at once, however many
/// requests arrive: with a new username per request the rate limiter never applies, and every
/// request used to start its own check on the blocking pool, up to its 512 threads (~10 GiB).
#[tokio::test]
async fn the_sign_in_form_runs_a_bounded_number_of_password_checks_at_once() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..16 {
        let http = admin.http.clone();
        let url = admin.url("/admin/sign-in");
        guesses.spawn(async move {
            let username = format!("nobody{n}");
            http.post(url)
                .form(&[("username", username.as_str()), ("password", "a guess")])
                .send()
                .await
                .map(|response| response.status())
        });
    }
    while let Some(status) = guesses.join_next().await {
        assert_eq!(status??, StatusCode::UNAUTHORIZED);
    }
    let peak = frontdesk::secret::argon2_checks().peak();
    assert!(
        (1..=frontdesk::secret::CONCURRENT_ARGON2_CHECKS).contains(&peak),
        "{peak} password checks ran at once"
    );
    Ok(())
}

/// A failed sign-in records a bounded amount of the typed username: it used to record the whole
/// form field, twice, so anyone could write the request body limit (64 KiB by default) into the
/// audit log with every request. (The name is cut to 100 characters, longer than any account's,
/// before it is looked up; a name that is no account's is recorded only as a fingerprint.)
#[tokio::test]
async fn a_failed_sign_in_records_a_bounded_username() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let huge = "m".repeat(60_000);
    let refused = admin.sign_in_as(&huge, "whatever-password").await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let log = admin.env.audit_log().await?;
    let failure = log
        .iter()
        .find(|record| record.event.event == "admin_sign_in")
        .ok_or_else(|| anyhow::anyhow!("the failure is audited: {log:?}"))?;
    assert_eq!(failure.event.subject, None);
    let detail = failure
        .event
        .detail
        .as_ref()
        .map(|detail| detail.as_str().len())
        .unwrap_or(0);
    assert!(detail < 300, "detail of {detail} bytes");
    // A real account is unaffected.
    let signed_in = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    Ok(())
}

/// Past the limit a sign-in costs no argon2 work, so a scanner could send them as fast as the
/// network allows: only the first refusal of the window is audited, or it could bury the log
/// (as invalid API tokens are, tests/admin_api.rs).
#[tokio::test]
async fn refusals_past_the_sign_in_limit_do_not_flood_the_audit_log() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    for _ in 0..5 {
        let response = admin.sign_in_as(ADMIN, "wrong password!").await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..20 {
        let refused = admin.sign_in_as(ADMIN, "still guessing").await?;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let count = |reason: &'static str| {
        let store = admin.env.server.state.store.clone();
        async move {
            store
                .audit_events(&AuditFilter {
                    reason: Some(reason.into()),
                    ..AuditFilter::default()
                })
                .await
                .map(|events| events.len())
        }
    };
    assert_eq!(count("bad_credentials").await?, 5);
    assert_eq!(count("rate_limited").await?, 1, "one per window");
    // The next window audits its first refusal again.
    admin.env.server.state.admin.advance_clock(16 * 60);
    for _ in 0..6 {
        admin.sign_in_as(ADMIN, "wrong password!").await?;
    }
    assert_eq!(count("rate_limited").await?, 2);
    Ok(())
}

#[tokio::test]
async fn every_admin_response_carries_the_security_headers() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let check = |response: &reqwest::Response| {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            header("content-security-policy"),
            frontdesk::admin::CONTENT_SECURITY_POLICY
        );
        assert_eq!(header("x-frame-options"), "DENY");
        // `same-origin`, not `no-referrer`: the pages' own form posts then carry their real
        // `Origin`, so `Origin: null` can be refused (no referrer still leaves for other sites).
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-store");
    };
    for path in [
        "/admin/sign-in",
        "/admin",
        "/admin/static/admin.css",
        "/admin/nope",
    ] {
        let response = admin.http.get(admin.url(path)).send().await?;
        check(&response);
    }
    let response = admin.sign_in_as(ADMIN, PASSWORD).await?;
    check(&response);
    for path in [
        "/admin",
        "/admin/identity-providers",
        "/admin/audiences",
        "/admin/clients",
        "/admin/keys",
        "/admin/audit",
    ] {
        let response = admin.http.get(admin.url(path)).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        check(&response);
    }
    let css = admin
        .http
        .get(admin.url("/admin/static/admin.css"))
        .send()
        .await?;
    assert!(
        css.headers()["content-type"]
            .to_str()?
            .starts_with("text/css")
    );
    Ok(())
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_and_the_admin_role() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let form = |csrf: &'static str| {
        vec![
            ("csrf", csrf),
            ("id", "sneaky"),
            ("issuer", "https://sneaky.example"),
            ("algorithms", "RS256"),
            ("token_types", "id_token"),
            ("subject_mode", "federated"),
            ("enabled", "on"),
        ]
    };
    let (status, html) = admin.post("/admin/identity-providers", &form("")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("security token"));
    let (status, _) = admin
        .post("/admin/identity-providers", &form("forged-token"))
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin.post("/admin/keys/rotate", &[]).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An auditor reads everything but changes nothing, even with a valid token.
    let auditor = Admin {
        http: browser(&admin.env.url)?,
        env: admin.env,
    };
    auditor.sign_in_as(AUDITOR, PASSWORD).await?;
    let csrf = auditor.csrf().await?;
    let mut fields = form("");
    fields[0] = ("csrf", &csrf);
    let (status, html) = auditor.post("/admin/identity-providers", &fields).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("auditor"));
    let (status, _) = auditor
        .post("/admin/keys/rotate", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = auditor.get("/admin/identity-providers/new").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, html) = auditor.get("/admin/audit").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("audit-table"));

    let stored = auditor
        .env
        .server
        .state
        .store
        .list_trust(TrustKind::IdentityProvider)
        .await?;
    assert!(stored.iter().all(|d| d.id != "sneaky"));
    Ok(())
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_the_session() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let state = &admin.env.server.state;
    state
        .admin
        .advance_clock(frontdesk::admin::IDLE_TIMEOUT_SECS - 60);
    let (status, _) = admin.get("/admin").await?;
    assert_eq!(status, StatusCode::OK, "still within the idle timeout");
    state
        .admin
        .advance_clock(frontdesk::admin::IDLE_TIMEOUT_SECS);
    let response = admin.http.get(admin.url("/admin/keys")).send().await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/admin/sign-in");

    // Staying active does not extend a session past the absolute timeout.
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let mut elapsed = 0;
    while elapsed + 20 * 60 < frontdesk::admin::ABSOLUTE_TIMEOUT_SECS {
        state.admin.advance_clock(20 * 60);
        elapsed += 20 * 60;
        let (status, _) = admin.get("/admin").await?;
        assert_eq!(status, StatusCode::OK);
    }
    state.admin.advance_clock(20 * 60);
    let (status, _) = admin.get("/admin").await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn an_identity_provider_created_in_the_form_is_listed_audited_and_in_effect()
-> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let csrf = admin.csrf().await?;
    let response = admin
        .http
        .post(admin.url("/admin/identity-providers"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("id", "partner"),
            ("issuer", "https://idp.partner.example"),
            ("jwks_uri", "https://idp.partner.example/keys"),
            ("algorithms", "RS256, ES256"),
            ("token_types", "id_token"),
            ("clock_skew_secs", "60"),
            ("condition", "subject.email.endsWith('@partner.example')"),
            ("subject_mode", "federated"),
            ("enabled", "on"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response),
        "/admin/identity-providers/partner?notice=created"
    );
    let (status, html) = admin.get("/admin/identity-providers").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("https://idp.partner.example"));
    assert!(
        html.contains("managed by config"),
        "corp comes from the config file"
    );

    let state = &admin.env.server.state;
    assert!(
        state
            .tokens
            .trust
            .current()
            .idp_by_issuer("https://idp.partner.example")
            .is_some(),
        "the change takes effect at once"
    );
    let changes = state
        .store
        .audit_events(&AuditFilter {
            decision: Some(Decision::Changed),
            ..AuditFilter::default()
        })
        .await?;
    let created = changes
        .iter()
        .find(|r| r.event.event == "identity_provider_created")
        .ok_or_else(|| anyhow::anyhow!("no audit event: {changes:?}"))?;
    let detail = created
        .event
        .detail
        .as_ref()
        .map(AuditDetail::value)
        .unwrap_or_default();
    assert_eq!(detail["actor"], ADMIN);
    assert_eq!(detail["before"], serde_json::Value::Null);
    assert_eq!(detail["after"]["issuer"], "https://idp.partner.example");
    assert_eq!(detail["after"]["clock_skew_secs"], 60);

    // Editing shows the stored values; deleting removes it and is audited too.
    let (_, html) = admin.get("/admin/identity-providers/partner").await?;
    assert!(
        html.contains("subject.email.endsWith(&#39;@partner.example&#39;)")
            || html.contains("subject.email.endsWith(&#x27;@partner.example&#x27;)"),
        "{html}"
    );
    let (status, _) = admin
        .post(
            "/admin/identity-providers/partner/delete",
            &[("csrf", &csrf)],
        )
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        state
            .tokens
            .trust
            .current()
            .idp_by_issuer("https://idp.partner.example")
            .is_none()
    );
    let deleted = state
        .store
        .audit_events(&AuditFilter::default())
        .await?
        .into_iter()
        .find(|r| r.event.event == "identity_provider_deleted");
    assert!(deleted.is_some());
    Ok(())
}

/// A metadata-document client is named by a URL, slashes and all. The list linked to it with
/// the slashes left as they were, so the link split the id into path segments and led to "There
/// is nothing here": such a client could not be opened, disabled or deleted from the page.
#[tokio::test]
async fn a_client_named_by_a_url_is_reachable_from_the_list() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let client_id = "https://app.example/clients/agent.json";
    admin
        .env
        .server
        .state
        .store
        .upsert_trust(
            TrustKind::Client,
            &frontdesk::store::TrustDocument {
                id: client_id.into(),
                document: serde_json::json!({
                    "client_id": client_id, "auth_method": "none", "source": "cimd",
                    "audiences": [], "redirect_uris": ["https://app.example/callback"],
                }),
                managed_by_config: false,
                updated_at: env::now(),
            },
        )
        .await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let (status, list) = admin.get("/admin/clients").await?;
    assert_eq!(status, StatusCode::OK);
    let link = between(&list, "href=\"/admin/clients/https", "\"")?;
    let (status, page) = admin.get(&format!("/admin/clients/https{link}")).await?;
    assert_eq!(status, StatusCode::OK, "{link}: {page}");
    assert!(page.contains(client_id), "{page}");
    // Its buttons work too: it can be deleted.
    let delete = "/admin/clients/https%3A%2F%2Fapp.example%2Fclients%2Fagent.json/delete";
    assert!(page.contains(delete), "{page}");
    let (status, _) = admin.post(delete, &[("csrf", &csrf_of(&page)?)]).await?;
    assert_eq!(status, StatusCode::SEE_OTHER, "{delete}");
    let (_, list) = admin.get("/admin/clients").await?;
    assert!(!list.contains(client_id), "{list}");
    Ok(())
}

#[tokio::test]
async fn config_managed_items_are_read_only() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let csrf = admin.csrf().await?;
    let (status, html) = admin.get("/admin/identity-providers/corp").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"managed-badge\""));
    assert!(
        !html.contains(">Save<"),
        "no save button on a config-managed item"
    );
    assert!(!html.contains("id=\"delete\""));
    let (status, _) = admin
        .post(
            "/admin/identity-providers/corp",
            &[
                ("csrf", &csrf),
                ("issuer", "https://evil.example"),
                ("algorithms", "RS256"),
                ("token_types", "id_token"),
                ("subject_mode", "federated"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .post("/admin/identity-providers/corp/delete", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .post("/admin/clients/agent/rotate-secret", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .post("/admin/clients/agent/disable", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Creating an object with a config-managed id does not overwrite it.
    let (status, html) = admin
        .post(
            "/admin/audiences",
            &[
                ("csrf", &csrf),
                ("id", "saas"),
                ("issuer", "https://new.example"),
                ("token_type", "id-jag"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("id=\"error-id\"") || html.contains("id=\"error-issuer\""),
        "{html}"
    );
    let idp = admin
        .env
        .server
        .state
        .store
        .list_trust(TrustKind::IdentityProvider)
        .await?;
    let corp = idp
        .iter()
        .find(|d| d.id == "corp")
        .ok_or_else(|| anyhow::anyhow!("corp gone"))?;
    assert_eq!(corp.document["issuer"], admin.env.idp.issuer.as_str());
    assert!(corp.managed_by_config);
    Ok(())
}

#[tokio::test]
async fn a_cel_error_is_shown_next_to_its_field_and_nothing_is_saved() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let csrf = admin.csrf().await?;
    let before = admin.env.audit_log().await?.len();
    let (status, html) = admin
        .post(
            "/admin/audiences",
            &[
                ("csrf", csrf.as_str()),
                ("id", "broken"),
                ("issuer", "https://as.broken.example"),
                ("token_type", "id-jag"),
                ("scopes", "read"),
                ("condition", "subject.email == <b>"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"error-condition\""), "{html}");
    assert!(
        html.contains("subject.email == &#60;b&#62;"),
        "the input is kept, escaped: {html}"
    );
    assert!(!html.contains("<b>"));
    // A claim mapping error names the claim.
    let (status, html) = admin
        .post(
            "/admin/audiences",
            &[
                ("csrf", csrf.as_str()),
                ("id", "broken"),
                ("issuer", "https://as.broken.example"),
                ("token_type", "id-jag"),
                ("claims", "sub=subject.("),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"error-claims\""), "{html}");
    let state = &admin.env.server.state;
    let audiences = state.store.list_trust(TrustKind::Audience).await?;
    assert!(audiences.iter().all(|d| d.id != "broken"));
    let after = state
        .store
        .audit_events(&AuditFilter::default())
        .await?
        .len();
    assert_eq!(before, after, "nothing was recorded");
    Ok(())
}

#[tokio::test]
async fn clients_get_a_secret_shown_once_that_rotates() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let csrf = admin.csrf().await?;
    let (status, html) = admin
        .post(
            "/admin/clients",
            &[
                ("csrf", csrf.as_str()),
                ("client_id", "new-agent"),
                ("auth_method", "client_secret_basic"),
                (
                    "grant_types",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("audiences", "saas"),
                ("idp_client_ids", "corp=new-agent-at-idp"),
                ("enabled", "on"),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    let secret = between(&html, "<code id=\"client-secret\">", "</code>")?;
    assert!(secret.len() >= 40);
    let state = &admin.env.server.state;
    let stored = state.store.list_trust(TrustKind::Client).await?;
    let client = stored
        .iter()
        .find(|d| d.id == "new-agent")
        .ok_or_else(|| anyhow::anyhow!("not stored"))?;
    let hash = client.document["secret_hash"].as_str().unwrap_or("");
    assert!(frontdesk::secret::verify_secret(&secret, hash));
    assert_eq!(
        client.document["idp_client_ids"]["corp"],
        "new-agent-at-idp"
    );
    let log = serde_json::to_string(&state.store.audit_events(&AuditFilter::default()).await?)?;
    assert!(
        !log.contains(hash) && !log.contains(&secret),
        "no secret or hash in the audit log"
    );
    // The edit page never shows it again.
    let (_, html) = admin.get("/admin/clients/new-agent").await?;
    assert!(!html.contains(&secret));

    let (status, html) = admin
        .post("/admin/clients/new-agent/rotate-secret", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::OK);
    let rotated = between(&html, "<code id=\"client-secret\">", "</code>")?;
    assert_ne!(rotated, secret);
    let (status, _) = admin
        .post("/admin/clients/new-agent/disable", &[("csrf", &csrf)])
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let registry = state.tokens.trust.current();
    let client = registry
        .client("new-agent")
        .ok_or_else(|| anyhow::anyhow!("not loaded"))?;
    assert!(!client.config.enabled);
    assert!(frontdesk::secret::verify_secret(
        &rotated,
        client.config.secret_hash.as_deref().unwrap_or("")
    ));
    Ok(())
}

#[tokio::test]
async fn the_bootstrap_link_creates_the_first_admin_once() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let http = browser(&env.url)?;
    let token = env.server.state.admin.issue_bootstrap_token();
    let page = http
        .get(format!("{}/admin/bootstrap?token={token}", env.url))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let wrong = http
        .get(format!("{}/admin/bootstrap?token=guess", env.url))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let short = http
        .post(format!("{}/admin/bootstrap", env.url))
        .form(&[
            ("token", token.as_str()),
            ("username", "root"),
            ("password", "short"),
            ("confirm", "short"),
        ])
        .send()
        .await?;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let created = http
        .post(format!("{}/admin/bootstrap", env.url))
        .form(&[
            ("token", token.as_str()),
            ("username", "root"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let dashboard = http.get(format!("{}/admin", env.url)).send().await?;
    assert_eq!(dashboard.status(), StatusCode::OK, "signed in right away");
    let again = http
        .post(format!("{}/admin/bootstrap", env.url))
        .form(&[
            ("token", token.as_str()),
            ("username", "second"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "single use");
    // A cross-site POST is refused outright.
    let token = env.server.state.admin.issue_bootstrap_token();
    let cross = http
        .post(format!("{}/admin/sign-in", env.url))
        .header("origin", "https://evil.example")
        .form(&[
            ("token", token.as_str()),
            ("username", "root"),
            ("password", PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let cross = http
        .post(format!("{}/admin/sign-in", env.url))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "null")
        .form(&[("username", "root"), ("password", PASSWORD)])
        .send()
        .await?;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn the_audit_log_filters_pages_and_exports() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    for _ in 0..3 {
        admin.sign_in_as("nobody", "wrong password!").await?;
    }
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let (status, html) = admin
        .get("/admin/audit?decision=denied&reason=bad_credentials")
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<tr class=\"decision-denied\">").count(), 3);
    assert!(
        html.contains("Every event is kept"),
        "the page says no retention is set"
    );
    let (status, _) = admin.get("/admin/audit?since=not-a-time").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = admin
        .http
        .get(admin.url("/admin/audit/export?format=jsonl&decision=denied"))
        .send()
        .await?;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await?;
    assert_eq!(body.lines().count(), 3);
    for line in body.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        assert_eq!(row["decision"], "denied");
    }
    let csv = admin
        .http
        .get(admin.url("/admin/audit/export?format=csv"))
        .send()
        .await?
        .text()
        .await?;
    assert!(csv.starts_with("id,occurred_at,"));
    assert!(csv.lines().count() >= 5, "header, 3 denials, the sign-in");
    // Keyset pagination: before_id skips newer rows.
    let records = admin.env.audit_log().await?;
    let newest = records.first().map(|r| r.id).unwrap_or(0);
    let (_, html) = admin
        .get(&format!("/admin/audit?before_id={newest}"))
        .await?;
    assert!(!html.contains(&format!("<td>{newest}</td>")));
    Ok(())
}

fn between(text: &str, start: &str, end: &str) -> anyhow::Result<String> {
    let from = text
        .find(start)
        .ok_or_else(|| anyhow::anyhow!("{start} not in {text}"))?
        + start.len();
    let to = text[from..]
        .find(end)
        .ok_or_else(|| anyhow::anyhow!("{end} not found"))?;
    Ok(text[from..from + to].to_string())
}

/// Records events 40 and 10 days old in the database at `url` (migrated here) and returns the
/// current time they were measured from.
async fn seed_old_and_recent_events(url: &str) -> anyhow::Result<i64> {
    use frontdesk::store::{AuditEvent, Store};
    let store = Store::connect(url, 1).await?;
    store.migrate().await?;
    let now = env::now();
    for age_days in [40, 40, 10] {
        let mut event =
            AuditEvent::new(now - age_days * 86_400, "token_exchange", Decision::Issued);
        event.client_id = Some(format!("seeded-{age_days}"));
        store.record(&event).await?;
    }
    store.close().await;
    Ok(now)
}

/// A server with `audit.retention_days` deletes older events as it starts, records the purge
/// in the log, and its audit page says how long events are kept (decisions §36).
async fn a_server_with_a_retention_purges_at_start(url: String) -> anyhow::Result<()> {
    let now = seed_old_and_recent_events(&url).await?;
    let env = Env::start_with(move |config| {
        config.database.url = frontdesk::secret::SecretString::new(url);
        config.audit.retention_days = 30;
    })
    .await?;
    let mut passes = env.server.retention_passes();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        passes.wait_for(|count| *count >= 1),
    )
    .await??;
    let log = env.audit_log().await?;
    let seeded: Vec<&str> = log
        .iter()
        .filter_map(|record| record.event.client_id.as_deref())
        .filter(|client| client.starts_with("seeded-"))
        .collect();
    assert_eq!(
        seeded,
        ["seeded-10"],
        "only the event inside the retention stays"
    );
    let purge = log
        .iter()
        .find(|record| record.event.event == "audit_events_purged")
        .expect("the purge is in the log");
    assert_eq!(purge.event.decision, Decision::Changed);
    let detail: serde_json::Value =
        serde_json::from_str(purge.event.detail.as_ref().expect("detail").as_str())?;
    assert_eq!(detail["actor"], "retention");
    assert_eq!(detail["deleted"], 2);
    let before = detail["before"].as_i64().expect("before");
    assert!(before > now - 30 * 86_400 - 5 && before <= env::now() - 30 * 86_400);

    let admin = Admin::start_on(env).await?;
    admin.sign_in_as(AUDITOR, PASSWORD).await?;
    let (status, html) = admin.get("/admin/audit").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Events older than 30 days are deleted"),
        "the page states the retention"
    );
    assert!(html.contains("audit_events_purged"), "and shows the purge");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_an_audit_retention_purges_older_events_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("seeded.db").display());
    a_server_with_a_retention_purges_at_start(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_an_audit_retention_purges_older_events_at_start_on_postgres()
-> anyhow::Result<()> {
    let Some(database) = env::test_db::TestDatabase::postgres("retention_at_start").await else {
        return Ok(());
    };
    a_server_with_a_retention_purges_at_start(database.url().to_string()).await
}

/// The keys page says when the active key rotates on schedule (`keys.rotate_after_days`,
/// decisions §37), or that it rotates only by hand.
#[tokio::test]
async fn the_keys_page_states_the_rotation_schedule() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(AUDITOR, PASSWORD).await?;
    let (status, html) = admin.get("/admin/keys").await?;
    assert_eq!(status, StatusCode::OK);
    let keys = frontdesk::keys::KeyRing::list(&admin.env.server.state.store).await?;
    let activated = keys
        .iter()
        .find(|key| key.state == "active")
        .and_then(|key| key.activated_at)
        .expect("an active key");
    let due = chrono::DateTime::from_timestamp(activated + 90 * 86_400, 0)
        .expect("a time")
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    assert!(
        html.contains(&format!(
            "rotate on their own 90 days after they start signing (keys.rotate_after_days): the active key is due for rotation on {due}."
        )),
        "the page names the due date {due}"
    );

    let manual =
        Admin::start_on(Env::start_with(|config| config.keys.rotate_after_days = 0).await?).await?;
    manual.sign_in_as(AUDITOR, PASSWORD).await?;
    let (_, html) = manual.get("/admin/keys").await?;
    assert!(html.contains("Keys rotate only when rotated here"));
    assert!(!html.contains("rotate on their own"));
    Ok(())
}

/// The policy simulator: the token endpoint's decision for claims typed into a form, for any
/// role (an auditor here), behind the CSRF check like every form.
#[tokio::test]
async fn the_policy_simulator_shows_what_an_exchange_would_decide() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    admin.sign_in_as(AUDITOR, PASSWORD).await?;
    let (status, html) = admin.get("/admin/policy").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>Policy simulator</h1>"));
    assert!(html.contains(r#"<a href="/admin/policy" aria-current="page">"#));
    assert!(
        html.contains(&admin.env.idp.issuer),
        "the example claims name a configured identity provider"
    );
    let csrf = admin.csrf().await?;
    let claims = serde_json::json!({ "iss": admin.env.idp.issuer, "sub": "user-1",
                                     "email": "ada@example.com" })
    .to_string();
    let form = |audience: &'static str, claims: &str| {
        vec![
            ("csrf".to_string(), csrf.clone()),
            ("client_id".to_string(), "agent".to_string()),
            ("audience".to_string(), audience.to_string()),
            ("scope".to_string(), "read delete".to_string()),
            ("subject_token_type".to_string(), "id_token".to_string()),
            ("claims".to_string(), claims.to_string()),
        ]
    };
    let post = |fields: Vec<(String, String)>| {
        let http = admin.http.clone();
        let url = admin.url("/admin/policy");
        async move {
            let response = http.post(url).form(&fields).send().await?;
            Ok::<_, anyhow::Error>((response.status(), response.text().await?))
        }
    };

    let (status, html) = post(form(env::RAS_ISSUER, &claims)).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="decision">issued<"#), "{html}");
    assert!(html.contains(r#"<dd id="audience">saas</dd>"#));
    assert!(html.contains(r#"<dd id="scopes">read</dd>"#));
    let escaped_sub = [
        "&quot;sub&quot;: &quot;user-1&quot;",
        "&#34;sub&#34;: &#34;user-1&#34;",
    ];
    assert!(
        escaped_sub.iter().any(|sub| html.contains(sub)),
        "the token's claims are shown, HTML-escaped: {html}"
    );

    let (_, html) = post(form("https://nowhere.example", &claims)).await?;
    assert!(html.contains(r#"id="decision">denied<"#));
    assert!(html.contains(r#"<code id="reason">unknown_audience</code>"#));

    let (status, html) = post(form(env::RAS_ISSUER, "{ not json")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"id="form-error""#));

    let mut forged = form(env::RAS_ISSUER, &claims);
    forged[0].1 = "forged".into();
    let (status, _) = post(forged).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

/// Every root-relative URL (`href`, `action`, `src`, a refresh's `url=`) in `html`, after
/// checking that it starts with `base`; their number, so a check cannot pass on a page without
/// links.
fn links_under(html: &str, base: &str) -> usize {
    let mut count = 0;
    for marker in ["href=\"", "action=\"", "src=\"", "url="] {
        for (at, _) in html.match_indices(marker) {
            let url = &html[at + marker.len()..];
            if url.starts_with('/') {
                assert!(
                    url.starts_with(&format!("{base}/")),
                    "a link outside {base}: {}",
                    &url[..url.find('"').unwrap_or(url.len()).min(80)]
                );
                count += 1;
            }
        }
    }
    count
}

/// Behind a path-routing proxy (issuer `…/sts`) the admin page never leaves the path: redirects,
/// the session cookie's `Path`, every link, form and asset, the error pages and the OpenAPI
/// document's server all carry it. A cookie scoped to `/admin` would not even reach the pages.
#[tokio::test]
async fn under_an_issuer_path_every_admin_url_redirect_and_cookie_carries_the_path()
-> anyhow::Result<()> {
    let env = Env::start_with(|config| config.issuer = format!("{}/sts", config.issuer)).await?;
    let admin = Admin::start_on(env).await?;

    let response = admin.http.get(admin.url("/admin/keys")).send().await?;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/sts/admin/sign-in");
    let (status, html) = admin.get("/admin/sign-in").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(links_under(&html, "/sts") >= 3, "{html}");

    let response = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(location(&response), "/sts/admin");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(cookie.contains("; Path=/sts/admin"), "{cookie}");

    for (path, expected) in [
        ("/admin", StatusCode::OK),
        ("/admin/identity-providers", StatusCode::OK),
        ("/admin/audiences", StatusCode::OK),
        ("/admin/clients", StatusCode::OK),
        ("/admin/clients/agent", StatusCode::OK),
        ("/admin/keys", StatusCode::OK),
        ("/admin/policy", StatusCode::OK),
        ("/admin/audit", StatusCode::OK),
        ("/admin/api-tokens", StatusCode::OK),
    ] {
        let (status, html) = admin.get(path).await?;
        assert_eq!(status, expected, "{path}");
        // The layout alone has the stylesheet, icon, brand, eight nav links and sign-out.
        assert!(links_under(&html, "/sts") >= 12, "{path}: {html}");
    }
    // An error page (drawn by the admin router's error layer): stylesheet, icon, brand and
    // the way back.
    let (status, html) = admin.get("/admin/no-such-page").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(links_under(&html, "/sts") >= 4, "{html}");
    assert!(html.contains("href=\"/sts/admin\">Back"), "{html}");

    let csrf = admin.csrf().await?;
    let (_, html) = admin.get("/admin/identity-providers/corp").await?;
    assert!(
        html.contains("\"/sts/admin/identity-providers/corp/test\""),
        "{html}"
    );
    let response = admin
        .http
        .post(admin.url("/admin/keys/rotate"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(location(&response), "/sts/admin/keys?notice=rotated");

    let document: serde_json::Value = admin
        .http
        .get(admin.url("/admin/api/v1/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(document["servers"][0]["url"], "/sts");

    let response = admin
        .http
        .post(admin.url("/admin/sign-out"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(location(&response), "/sts/admin/sign-in");
    let cleared = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        cleared.contains("; Path=/sts/admin") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    Ok(())
}

/// "Revoke": an admin revokes every live token of one user, then of one client, from the page (the same store call as
/// the API and the CLI); introspection then answers inactive and the audit log names the admin.
/// An auditor sees the page without the form, and a forged post is refused.
#[tokio::test]
async fn an_admin_revokes_every_live_token_of_a_user_from_the_page() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let env = &admin.env;
    let (token, subject) = env.local_access_token().await?;
    let active = || env.introspect_active(&token);

    admin.sign_in_as(AUDITOR, PASSWORD).await?;
    let (status, html) = admin.get("/admin/revocations").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<a href="/admin/revocations" aria-current="page">"#));
    assert!(html.contains(r#"id="auditor-note""#) && !html.contains(r#"id="revoke""#));
    let csrf = admin.csrf().await?;
    let (status, _) = admin
        .post(
            "/admin/revocations",
            &[("csrf", &csrf), ("subject", &subject)],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "an auditor cannot revoke");
    assert!(active().await?);

    // The same browser signs in again, as an admin.
    admin.sign_in_as(ADMIN, PASSWORD).await?;
    let csrf = admin.csrf().await?;
    let (status, _) = admin
        .post(
            "/admin/revocations",
            &[("csrf", "forged"), ("subject", &subject)],
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .post("/admin/revocations", &[("csrf", &csrf), ("subject", " ")])
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(active().await?);
    let (status, html) = admin
        .post(
            "/admin/revocations",
            &[("csrf", &csrf), ("subject", &subject)],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(r#"<span id="access-tokens">1</span>"#),
        "{html}"
    );
    assert!(!active().await?);
    let events = env
        .server
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await?;
    let event = events
        .iter()
        .find(|record| record.event.event == "subject_tokens_revoked")
        .ok_or_else(|| anyhow::anyhow!("not audited"))?;
    assert_eq!(event.event.subject.as_deref(), Some(subject.as_str()));
    assert_eq!(
        event
            .event
            .detail
            .as_ref()
            .map(AuditDetail::value)
            .map(|d| d["actor"].clone()),
        Some(serde_json::json!(ADMIN))
    );

    // The second form: every live token of one client, which keeps its registration.
    let (token, _) = env.local_access_token().await?;
    let (status, html) = admin
        .post(
            "/admin/revocations",
            &[("csrf", &csrf), ("client_id", env::AGENT)],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(&format!(r#"<code id="whose">client {}</code>"#, env::AGENT)),
        "{html}"
    );
    assert!(
        html.contains(r#"<span id="access-tokens">1</span>"#),
        "{html}"
    );
    assert!(!env.introspect_active(&token).await?);
    let (status, _) = admin
        .post(
            "/admin/revocations",
            &[
                ("csrf", &csrf),
                ("subject", &subject),
                ("client_id", env::AGENT),
            ],
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "one at a time");

    // The third form: everything issued for the users of one identity provider.
    let (token, _) = env.local_access_token().await?;
    let (status, html) = admin
        .post(
            "/admin/revocations",
            &[("csrf", &csrf), ("issuer", &env.idp.issuer)],
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(&format!(
            r#"<code id="whose">the users of {}</code>"#,
            env.idp.issuer
        )),
        "{html}"
    );
    assert!(!env.introspect_active(&token).await?);
    Ok(())
}

/// Signing in again in the same browser ends the session it replaces, so a copy of the old
/// cookie stops working; signing out is audited with its actor; the audit log's own actor names
/// cannot become usernames.
#[tokio::test]
async fn a_new_sign_in_ends_the_previous_session_and_sign_out_is_audited() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let session_cookie = |response: &reqwest::Response| {
        response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .unwrap_or_default()
            .to_string()
    };
    let first = session_cookie(&admin.sign_in_as(ADMIN, PASSWORD).await?);
    let second = session_cookie(&admin.sign_in_as(ADMIN, PASSWORD).await?);
    assert!(first.starts_with("frontdesk_admin=") && first != second);
    let with = |cookie: &str| {
        let request = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(|http| http.get(admin.url("/admin")).header("cookie", cookie));
        async move { anyhow::Ok(request?.send().await?.status()) }
    };
    assert_eq!(
        with(&first).await?,
        StatusCode::SEE_OTHER,
        "the replaced session"
    );
    assert_eq!(with(&second).await?, StatusCode::OK);

    let (_, html) = admin.get("/admin").await?;
    let (status, _) = admin
        .post("/admin/sign-out", &[("csrf", &csrf_of(&html)?)])
        .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let log = admin.env.audit_log().await?;
    let sign_out = log
        .iter()
        .find(|record| record.event.event == "admin_sign_out")
        .expect("sign-out audited");
    assert_eq!(
        sign_out.event.detail.as_ref().expect("detail").value()["actor"],
        ADMIN
    );

    for reserved in ["cli", "dcr", "schedule", "bootstrap"] {
        let error = frontdesk::admin::auth::check_new_user(reserved, "a long enough password")
            .expect_err(reserved);
        assert!(error.contains("reserved"), "{error}");
    }
    Ok(())
}

/// The session cookie pair (`name=value`) a response sets, if any.
fn set_cookie_pair(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_string)
}

/// A client that adds nothing by itself: no cookie jar, no `Origin`.
fn bare_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Every state-changing form of the admin page — the sign-in and bootstrap forms, which have
/// no session and so no CSRF token to check, and every form behind a session — refuses a post
/// that carries neither `Origin` nor `Sec-Fetch-Site` (every browser that can run the page
/// sends `Origin` with a form post), one from another site, and one saying only `Origin: null`
/// (what a page of another site with its own `no-referrer` policy makes a browser without Fetch
/// metadata send), and does nothing; a post a browser makes from the page itself
/// (`Sec-Fetch-Site: same-origin`, even beside `Origin: null`, or the page's `Origin`) passes.
/// The JSON API, which takes bearer tokens and no cookies, needs neither header.
#[tokio::test]
async fn every_admin_form_refuses_a_post_that_names_no_origin_or_another_site() -> anyhow::Result<()>
{
    let admin = Admin::start().await?;
    let signed_in = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = set_cookie_pair(&signed_in).unwrap_or_default();
    let csrf = admin.csrf().await?;
    let bare = bare_client()?;
    let post = |path: &str,
                form: Vec<(&'static str, String)>,
                headers: Vec<(&'static str, &'static str)>| {
        let mut request = bare
            .post(admin.url(path))
            .header("cookie", session.as_str())
            .form(&form);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await?;
            anyhow::Ok((response.status(), response.text().await?))
        }
    };
    let token = admin.env.server.state.admin.issue_bootstrap_token();
    let forms: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        (
            "/admin/sign-in",
            vec![("username", ADMIN.into()), ("password", PASSWORD.into())],
        ),
        (
            "/admin/bootstrap",
            vec![
                ("token", token),
                ("username", "root".into()),
                ("password", PASSWORD.into()),
                ("confirm", PASSWORD.into()),
            ],
        ),
        ("/admin/keys/rotate", vec![("csrf", csrf.clone())]),
        (
            "/admin/identity-providers",
            vec![
                ("csrf", csrf.clone()),
                ("id", "sneaky".into()),
                ("issuer", "https://sneaky.example".into()),
                ("algorithms", "RS256".into()),
                ("token_types", "id_token".into()),
                ("subject_mode", "federated".into()),
                ("enabled", "on".into()),
            ],
        ),
        (
            "/admin/api-tokens",
            vec![
                ("csrf", csrf.clone()),
                ("name", "sneaky".into()),
                ("role", "admin".into()),
            ],
        ),
        (
            "/admin/revocations",
            vec![("csrf", csrf.clone()), ("subject", "user-1".into())],
        ),
        ("/admin/sign-out", vec![("csrf", csrf.clone())]),
    ];
    let changed = |admin: &Admin| {
        let store = admin.env.server.state.store.clone();
        async move {
            let events = store
                .audit_events(&AuditFilter {
                    decision: Some(Decision::Changed),
                    ..AuditFilter::default()
                })
                .await?;
            anyhow::Ok(events.len())
        }
    };
    let before = changed(&admin).await?;
    for (path, form) in &forms {
        let (status, html) = post(path, form.clone(), vec![]).await?;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path} without either header"
        );
        assert!(
            html.contains("without an Origin or Sec-Fetch-Site header"),
            "{path}: {html}"
        );
        for headers in [
            vec![("origin", "https://evil.example")],
            vec![("sec-fetch-site", "cross-site"), ("origin", "null")],
            vec![("sec-fetch-site", "same-site")],
        ] {
            let (status, html) = post(path, form.clone(), headers.clone()).await?;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} with {headers:?}");
            assert!(html.contains("came from another site"), "{path}: {html}");
        }
        let (status, html) = post(path, form.clone(), vec![("origin", "null")]).await?;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path} with Origin: null alone"
        );
        assert!(
            html.contains("with `Origin: null` and without a Sec-Fetch-Site header"),
            "{path}: {html}"
        );
    }
    assert_eq!(changed(&admin).await?, before, "nothing was done");
    assert_eq!(
        admin.get("/admin").await?.0,
        StatusCode::OK,
        "still signed in"
    );

    // What a browser sends from the page itself passes.
    let rotate = vec![("csrf", csrf.clone())];
    let (status, _) = post(
        "/admin/keys/rotate",
        rotate.clone(),
        vec![("sec-fetch-site", "same-origin")],
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = post(
        "/admin/keys/rotate",
        rotate,
        vec![("sec-fetch-site", "same-origin"), ("origin", "null")],
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = post(
        "/admin/sign-in",
        vec![("username", AUDITOR.into()), ("password", PASSWORD.into())],
        vec![("sec-fetch-site", "same-origin")],
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(changed(&admin).await?, before + 3);

    // The JSON API takes a bearer token and no cookie: no Origin needed.
    let api_token = frontdesk::admin::api::create_token(
        &admin.env.server.state.store,
        "ops",
        AdminRole::Admin,
        None,
        "test",
        env::now(),
    )
    .await?;
    let response = bare
        .post(admin.url("/admin/api/v1/keys/rotate"))
        .bearer_auth(api_token)
        .json(&serde_json::json!({}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    Ok(())
}

/// Login CSRF through an opaque origin: a page of another site that sets its own
/// `Referrer-Policy: no-referrer` makes the browser say `Origin: null` on its forged sign-in
/// post, and a browser without Fetch metadata (Safari before 16.4, older Firefox) adds nothing
/// else. The sign-in form refuses that post with the right credentials — no session cookie, no
/// sign-in audited — since frontdesk's own pages (`Referrer-Policy: same-origin`) make a browser
/// send their real origin; `null` beside `Sec-Fetch-Site: same-origin`, or the real `Origin`
/// alone, still signs in.
#[tokio::test]
async fn the_sign_in_form_refuses_a_null_origin_without_fetch_metadata() -> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let bare = bare_client()?;
    let sign_in = |headers: Vec<(&'static str, String)>| {
        let mut request = bare
            .post(admin.url("/admin/sign-in"))
            .form(&[("username", ADMIN), ("password", PASSWORD)]);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let sign_ins = async || {
        let log = admin.env.audit_log().await?;
        anyhow::Ok(
            log.iter()
                .filter(|record| record.event.event == "admin_sign_in")
                .count(),
        )
    };

    let before = sign_ins().await?;
    let forged = sign_in(vec![("origin", "null".into())]).await?;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get("set-cookie").is_none());
    let page = forged.text().await?;
    assert!(
        page.contains("with `Origin: null` and without a Sec-Fetch-Site header"),
        "{page}"
    );
    assert_eq!(sign_ins().await?, before, "nothing was signed in");

    let origin = origin_of(&admin.env.url)?;
    for headers in [
        vec![
            ("origin", "null".to_string()),
            ("sec-fetch-site", "same-origin".to_string()),
        ],
        vec![("origin", origin)],
    ] {
        let response = sign_in(headers.clone()).await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{headers:?}");
        assert!(set_cookie_pair(&response).is_some(), "{headers:?}");
    }
    Ok(())
}

/// A password typed into the username field is not written to the audit log: a failed sign-in
/// records the name only when it is an account's, and otherwise "(unknown user)" with a keyed
/// fingerprint, the same for the same name, so repeated failures can still be told apart from
/// a spray of names. The rate limit still counts the name as typed.
#[tokio::test]
async fn a_password_typed_as_the_username_is_not_audited_and_still_rate_limited()
-> anyhow::Result<()> {
    let admin = Admin::start().await?;
    let typed = "Tr0ub4dor&3-typed-in-the-wrong-field";
    for _ in 0..2 {
        let refused = admin.sign_in_as(typed, "").await?;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = admin.sign_in_as("mallory", "whatever-password").await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = admin.sign_in_as(ADMIN, "not the password").await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let log = admin.env.audit_log().await?;
    let text = serde_json::to_string(&log)?;
    assert!(
        !text.contains("Tr0ub4dor") && !text.contains("mallory"),
        "{text}"
    );
    let failures: Vec<serde_json::Value> = log
        .iter()
        .filter(|record| record.event.event == "admin_sign_in")
        .map(|record| {
            serde_json::json!({
                "subject": record.event.subject,
                "detail": record.event.detail.as_ref().map(AuditDetail::value),
            })
        })
        .collect();
    assert_eq!(failures.len(), 4, "{failures:?}");
    let unknown: Vec<&serde_json::Value> = failures
        .iter()
        .filter(|failure| failure["detail"]["username"] == "(unknown user)")
        .collect();
    assert_eq!(unknown.len(), 3, "{failures:?}");
    assert!(unknown.iter().all(|failure| failure["subject"].is_null()));
    let fingerprints: std::collections::HashSet<&str> = unknown
        .iter()
        .filter_map(|failure| failure["detail"]["username_fingerprint"].as_str())
        .collect();
    assert_eq!(fingerprints.len(), 2, "one per distinct name: {unknown:?}");
    assert!(
        failures
            .iter()
            .any(|failure| failure["subject"] == ADMIN && failure["detail"]["username"] == ADMIN),
        "an account's name is recorded: {failures:?}"
    );

    // Three more failures of the same typed name reach the limit; the sixth is refused without
    // a check, and its audit event does not name it either.
    for _ in 0..3 {
        let refused = admin.sign_in_as(typed, "").await?;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = admin.sign_in_as(typed, "").await?;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let limited = admin
        .env
        .server
        .state
        .store
        .audit_events(&AuditFilter {
            reason: Some("rate_limited".into()),
            ..AuditFilter::default()
        })
        .await?;
    assert_eq!(limited.len(), 1);
    let detail = limited[0]
        .event
        .detail
        .as_ref()
        .map(AuditDetail::value)
        .unwrap_or_default();
    assert_eq!(detail["username"], "(unknown user)");
    assert!(fingerprints.contains(detail["username_fingerprint"].as_str().unwrap_or("")));
    assert!(!serde_json::to_string(&admin.env.audit_log().await?)?.contains("Tr0ub4dor"));
    // Another name from the same address is not limited.
    let other = admin.sign_in_as(ADMIN, PASSWORD).await?;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);
    Ok(())
}

/// On an https issuer the session cookie carries a cookie prefix, so a browser takes it only
/// from this origin over https: `__Host-` (with `Path=/`) at the root, `__Secure-` under a
/// path. A cookie of the bare name is then no session. Signing in, using the page and signing
/// out work as before. (The server is reached over plain http here, as behind a TLS-terminating
/// proxy, with the `Origin` the browser would send.)
#[tokio::test]
async fn an_https_issuer_names_the_session_cookie_with_a_prefix_and_the_page_still_works()
-> anyhow::Result<()> {
    for (path, name, cookie_path) in [
        ("", "__Host-frontdesk_admin", "Path=/;"),
        ("/sts", "__Secure-frontdesk_admin", "Path=/sts/admin;"),
    ] {
        let issuer = format!("https://admin.frontdesk.test{path}");
        let env = Env::start_with(|config| config.issuer = issuer.clone()).await?;
        let store = &env.server.state.store;
        create_user(store, ADMIN, PASSWORD, AdminRole::Admin, "test", env::now()).await?;
        let base = format!("http://{}{path}", env.server.addr);
        let http = bare_client()?;
        let signed_in = http
            .post(format!("{base}/admin/sign-in"))
            .header("origin", "https://admin.frontdesk.test")
            .form(&[("username", ADMIN), ("password", PASSWORD)])
            .send()
            .await?;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let set = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(set.starts_with(&format!("{name}=")), "{set}");
        for attribute in ["HttpOnly", "SameSite=Strict", cookie_path, "Secure"] {
            assert!(
                format!("{set};").contains(attribute),
                "{attribute} missing: {set}"
            );
        }
        assert!(!set.contains("Domain"), "{set}");
        let session = set_cookie_pair(&signed_in).unwrap_or_default();
        let page = |cookie: String| {
            let request = http.get(format!("{base}/admin")).header("cookie", cookie);
            async move {
                let response = request.send().await?;
                anyhow::Ok((response.status(), response.text().await?))
            }
        };
        let (status, html) = page(session.clone()).await?;
        assert_eq!(status, StatusCode::OK, "{html}");
        let value = session.split_once('=').map(|(_, v)| v).unwrap_or_default();
        let (status, _) = page(format!("frontdesk_admin={value}")).await?;
        assert_eq!(status, StatusCode::SEE_OTHER, "the bare name is no session");
        let signed_out = http
            .post(format!("{base}/admin/sign-out"))
            .header("origin", "https://admin.frontdesk.test")
            .header("cookie", session.as_str())
            .form(&[("csrf", csrf_of(&html)?)])
            .send()
            .await?;
        assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
        let cleared = signed_out
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            cleared.starts_with(&format!("{name}=;"))
                && format!("{cleared};").contains(cookie_path)
                && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        assert_eq!(page(session).await?.0, StatusCode::SEE_OTHER);
    }
    Ok(())
}
