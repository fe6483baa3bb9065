//! Browser scripts for the tests: `tests/browser/<name>.mjs` run with node (playwright-core
//! driving Debian's Chromium). Their stdout lines are the protocol (the script prints what it
//! reached, a test answers on stdin), their stderr the log shown when one fails. Include it next
//! to `support/idp.rs` (as `mod idp`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::idp::node_binary;

/// Debian's Chromium, installed by scripts/test-deps.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on a whole browser session.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// Where screenshots go: `$FRONTDESK_TEST_SCREENSHOTS` (docs/img was made that way) or `temp`.
pub fn screenshot_dir(temp: &tempfile::TempDir) -> PathBuf {
    std::env::var_os("FRONTDESK_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf())
}

/// A browser script (`tests/browser/<name>`) run with node: its stdout lines are the protocol
/// (the script prints what it reached, the test answers on stdin), its stderr the log shown when
/// it fails. Fails with a message saying what to install when the browser parts are missing.
pub struct Spec {
    /// The node process.
    pub child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl Spec {
    pub fn start(script: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Spec> {
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
    pub async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self.lines.next_line().await?)
    }

    /// Answers the script on its stdin.
    pub async fn reply(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Reads the rest of the output, waits for the script, and requires that it succeeded and
    /// printed `done` at some point.
    pub async fn expect_done(&mut self, done: &str, mut seen: bool) -> anyhow::Result<()> {
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
    pub async fn run<T>(
        mut self,
        session: impl AsyncFnOnce(&mut Spec) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let outcome = tokio::time::timeout(BROWSER_TIMEOUT, session(&mut self)).await;
        let _ = self.child.start_kill();
        let log = tokio::time::timeout(Duration::from_secs(5), self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.context(format!("browser log:\n{log}"))),
            Err(_) => {
                bail!("the browser session took longer than {BROWSER_TIMEOUT:?}; log:\n{log}")
            }
        }
    }
}
