//! Runs the black-box conformance suite (conformance/check.py, Python standard library only)
//! against a real frontdesk trusting a real test IdP, with and without client credentials, and
//! checks that the suite itself reports failures when nothing conforming answers.

#[path = "support/env.rs"]
mod env;
#[path = "support/idp.rs"]
mod idp;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use env::{AGENT, Env, SECRET};
use tokio::process::Command;

/// Generous: the suite makes a few dozen requests, on a machine shared with other builds.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks the suite fails because frontdesk is wrong, as (row, text in the FAIL line). Strict:
/// each must still fail (remove it once frontdesk is fixed) and nothing else may fail. Empty:
/// frontdesk passes every check.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/check.py")
}

async fn check(args: &[&str]) -> anyhow::Result<(Output, String)> {
    let mut command = Command::new("python3");
    command
        .arg(script())
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(SUITE_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("conformance/check.py did not finish in {SUITE_TIMEOUT:?}"))?
        .map_err(|error| anyhow::anyhow!("cannot run python3 conformance/check.py: {error}"))?;
    let transcript = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output, transcript))
}

/// Asserts the run failed exactly the known checks, and says so in its final line.
fn assert_only_known_failures(output: &Output, transcript: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("FAIL "))
        .collect();
    let known = |line: &str| {
        KNOWN_FAILURES
            .iter()
            .any(|(row, text)| line.starts_with(&format!("FAIL {row} ")) && line.contains(text))
    };
    let unexpected: Vec<&&str> = failed.iter().filter(|line| !known(line)).collect();
    assert!(
        unexpected.is_empty(),
        "frontdesk failed conformance checks: {unexpected:#?}\n{transcript}"
    );
    for (row, text) in KNOWN_FAILURES {
        assert!(
            failed
                .iter()
                .any(|line| line.starts_with(&format!("FAIL {row} ")) && line.contains(text)),
            "known failure {row} ({text}) now passes: remove it from KNOWN_FAILURES\n{transcript}"
        );
    }
    let last = final_line(output);
    assert!(
        last.ends_with(&format!(" {} failed", KNOWN_FAILURES.len()))
            && !last.starts_with("conformance: 0 passed"),
        "final line {last:?}\n{transcript}"
    );
    let expected_exit = if KNOWN_FAILURES.is_empty() { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected_exit), "{transcript}");
}

fn final_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The whole suite against `env`'s server, with the `agent` client's credentials.
async fn check_as_agent(env: &Env) -> anyhow::Result<(Output, String)> {
    check(&[
        "--issuer",
        &env.url,
        "--client-id",
        AGENT,
        "--client-secret",
        SECRET,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn frontdesk_passes_the_black_box_conformance_suite() -> anyhow::Result<()> {
    let env = Env::start().await?;

    let (output, transcript) = check_as_agent(&env).await?;
    assert_only_known_failures(&output, &transcript);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for row in [
        "META-02",
        "JWKS-03",
        "TOK-09",
        "TOK-10",
        "INTRO-03",
        "REVOKE-02",
        // CHAIN-META-01, META-18, INT-08: the metadata's chaining token types, no RFC 9207 `iss`
        // parameter without an authorization endpoint, a token endpoint on the issuer's origin
        // that answers without redirecting.
        "CHAIN-META-01",
        "META-18",
        "INT-08",
    ] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("PASS {row} "))),
            "{row} did not pass\n{transcript}"
        );
    }

    // Without credentials the checks that need them are skipped, not failed.
    let (output, transcript) = check(&["--issuer", &env.url]).await?;
    assert_only_known_failures(&output, &transcript);
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.starts_with("SKIP TOK-10 ")),
        "TOK-10 needs credentials and should be skipped\n{transcript}"
    );
    Ok(())
}

/// The same suite against an issuer with a path: the checker finds the metadata at RFC 8414
/// §3.1's path-inserted URL (META-01) and every endpoint where the metadata says.
#[tokio::test(flavor = "multi_thread")]
async fn frontdesk_under_an_issuer_path_passes_the_black_box_conformance_suite()
-> anyhow::Result<()> {
    let env =
        Env::start_with(|config| config.issuer = format!("{}/tenants/acme", config.issuer)).await?;
    let (output, transcript) = check_as_agent(&env).await?;
    assert_only_known_failures(&output, &transcript);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // INT-08 under a path: the token endpoint is still on the issuer's origin.
    for row in [
        "META-01", "META-02", "JWKS-03", "TOK-10", "INTRO-03", "INT-08",
    ] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("PASS {row} "))),
            "{row} did not pass\n{transcript}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_suite_fails_when_no_server_answers() -> anyhow::Result<()> {
    // A port that was free a moment ago: nothing answers there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let issuer = format!("http://{}", listener.local_addr()?);
    drop(listener);
    let (output, transcript) = check(&["--issuer", &issuer, "--timeout", "5"]).await?;
    assert_eq!(output.status.code(), Some(1), "{transcript}");
    let last = final_line(&output);
    assert!(
        last.starts_with("conformance: 0 passed, ") && !last.ends_with(" 0 failed"),
        "final line {last:?}\n{transcript}"
    );
    Ok(())
}
