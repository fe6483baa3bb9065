//! Test harness: a real, interactive OpenID Connect provider (`tests/oidc-idp/start.mjs`, the
//! npm package oidc-provider with its development sign-in and consent pages), started per test
//! on a random loopback port. A browser signs in there with any login and password; the login
//! becomes `sub` and the email `<login>@example.com`.
//!
//! The provider learns its one client after it has started ([`OidcIdp::register_client`]), so
//! a test can register frontdesk's callback once frontdesk listens. Include it with
//! `#[path = "support/oidc_idp.rs"] mod oidc_idp;` next to `#[path = "support/idp.rs"] mod idp;`
//! (for the Node binary). Needs `scripts/test-deps` (tests/oidc-idp/node_modules).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::idp::node_binary;

/// Bound on each of the provider's status lines.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn oidc_idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-idp")
}

/// A running provider. Dropping it closes its stdin (it exits on EOF) and kills it.
pub struct OidcIdp {
    /// Issuer identifier, `http://127.0.0.1:PORT`.
    pub issuer: String,
    // Field order matters for drop: stdin closes first, then the child is killed.
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    child: Child,
}

impl OidcIdp {
    /// Starts the provider and waits (bounded) for the line with its issuer. Its log goes to the
    /// test's stderr, prefixed `[oidc-idp]`.
    pub async fn start() -> anyhow::Result<OidcIdp> {
        let dir = oidc_idp_dir();
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            bail!("tests/oidc-idp/node_modules/oidc-provider is missing: run scripts/test-deps");
        }
        let node = node_binary();
        let mut child = Command::new(&node)
            .arg("start.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} tests/oidc-idp/start.mjs", node.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[oidc-idp] {line}");
            }
        });
        let mut idp = OidcIdp {
            issuer: String::new(),
            stdin,
            stdout: BufReader::new(stdout).lines(),
            child,
        };
        let started = idp.next_json_line().await?;
        idp.issuer = started
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the provider's first line lacks issuer: {started}"))?
            .to_string();
        Ok(idp)
    }

    /// Registers the provider's one client (a confidential web client using
    /// `client_secret_basic`) and waits until the provider serves requests.
    pub async fn register_client(
        &mut self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<()> {
        let line = json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": [redirect_uri],
        });
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .context("writing the client to the provider")?;
        self.stdin.flush().await?;
        let ready = self.next_json_line().await?;
        if ready.get("ready") != Some(&Value::Bool(true)) {
            bail!("the provider did not become ready: {ready}");
        }
        Ok(())
    }

    async fn next_json_line(&mut self) -> anyhow::Result<Value> {
        match tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .with_context(|| format!("the provider printed a non-JSON line: {line:?}")),
            Ok(Ok(None)) => {
                let status = self.child.try_wait().ok().flatten();
                bail!("the provider exited ({status:?}); its log is above, prefixed [oidc-idp]")
            }
            Ok(Err(error)) => Err(error).context("reading the provider's stdout"),
            Err(_) => bail!("no line from the provider within {LINE_TIMEOUT:?}"),
        }
    }
}
