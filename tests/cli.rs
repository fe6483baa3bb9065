//! The real `frontdesk` binary, run in a temporary working directory with a clean environment
//! (no inherited `FRONTDESK_*` variable): `check-config`, `hash-secret`, `keys`, `migrate`, a
//! development `serve` from no configuration at all with a graceful SIGTERM, and the startup
//! failures that must end in one clear line and a non-zero exit.
//!
//! Waits are bounded and event-driven (a line on stderr, the process exiting), never sleeps.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// Generous: the first run in a fresh process may create the database and generate keys.
const WAIT: Duration = Duration::from_secs(60);

/// `frontdesk <args>` in `dir`, with the given `FRONTDESK_*` variables only.
fn frontdesk(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("FRONTDESK_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    frontdesk(dir, args, env)
        .stdin(Stdio::null())
        .output()
        .expect("run frontdesk")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lines of stderr that are not JSON log records: what a person reads.
fn plain_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| !line.trim_start().starts_with('{') && !line.trim().is_empty())
        .collect()
}

/// Asserts a failed start: non-zero exit, exactly one `frontdesk: ...` line containing every
/// `needles`. Returns that line.
#[track_caller]
fn assert_one_line_failure(output: &Output, needles: &[&str]) -> String {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stderr: {stderr}"
    );
    let lines: Vec<&str> = plain_lines(&stderr)
        .into_iter()
        .filter(|line| line.starts_with("frontdesk: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, stderr: {stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing from: {}",
            lines[0]
        );
    }
    lines[0].to_string()
}

/// A production-style configuration file in `dir` (explicit KEK, SQLite in `dir`).
fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("frontdesk.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"https://sts.example.com\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[keys]\nencryption_key = \"{KEK}\"\n{extra}",
            dir.join("data.db").display()
        ),
    )
    .expect("write config");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let output = run(dir.path(), &["--config", &config, "check-config"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("configuration OK"));
    // Through FRONTDESK_CONFIG as well.
    let output = run(
        dir.path(),
        &["check-config"],
        &[("FRONTDESK_CONFIG", &config)],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&config));
}

#[test]
fn check_config_names_an_unknown_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "\n[server]\nlisten_adress = \"0.0.0.0:80\"\n");
    let output = run(dir.path(), &["--config", &config, "check-config"], &[]);
    assert_one_line_failure(&output, &["listen_adress", &config]);
}

#[test]
fn check_config_names_a_bad_environment_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let output = run(
        dir.path(),
        &["--config", &config, "check-config"],
        &[("FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS", "abc")],
    );
    assert_one_line_failure(
        &output,
        &[
            "server.request_timeout_secs",
            "FRONTDESK_SERVER__REQUEST_TIMEOUT_SECS",
        ],
    );
    let output = run(
        dir.path(),
        &["--config", &config, "check-config"],
        &[("FRONTDESK_FOO", "1")],
    );
    assert_one_line_failure(&output, &["FRONTDESK_FOO"]);
}

#[test]
fn hash_secret_prints_an_argon2id_hash_that_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_with_stdin(
        dir.path(),
        &["hash-secret"],
        "correct horse battery staple\n",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let phc = stdout.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(!stdout.contains("correct horse"));
    assert!(frontdesk::secret::verify_secret(
        "correct horse battery staple",
        phc
    ));
    assert!(!frontdesk::secret::verify_secret(
        "correct horse battery staple\n",
        phc
    ));
}

#[test]
fn hash_secret_refuses_an_empty_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(dir.path(), &["hash-secret"], &[]);
    assert_one_line_failure(&output, &["empty"]);
}

#[test]
fn migrate_then_keys_rotate_shows_a_next_key_in_keys_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let output = run(dir.path(), &["--config", &config, "migrate"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("migrations applied"));

    let output = run(dir.path(), &["--config", &config, "keys", "rotate"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rotated = text(&output.stdout);
    assert!(rotated.contains("published as next"), "{rotated}");
    let next_kid = rotated.split_whitespace().next().expect("kid").to_string();

    let output = run(dir.path(), &["--config", &config, "keys", "list"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let listed = text(&output.stdout);
    let states: Vec<(String, String)> = listed
        .lines()
        .skip(1)
        .map(|line| {
            let mut columns = line.split_whitespace();
            let state = columns.next().expect("state").to_string();
            let _alg = columns.next();
            (state, columns.next().expect("kid").to_string())
        })
        .collect();
    assert!(listed.starts_with("STATE"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("active") && line.contains("rotation due at")),
        "the active key's scheduled rotation is listed: {listed}"
    );
    assert!(
        states.contains(&("next".into(), next_kid.clone())),
        "{listed}"
    );
    assert_eq!(
        states.iter().filter(|(state, _)| state == "active").count(),
        1,
        "{listed}"
    );

    // Emergency rotation: the new key signs at once and the earlier ones are retired.
    let output = run(
        dir.path(),
        &["--config", &config, "keys", "rotate", "--now"],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("is now the active key"));
    let output = run(dir.path(), &["--config", &config, "keys", "list"], &[]);
    let listed = text(&output.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|line| line.starts_with("active"))
            .count(),
        1,
        "{listed}"
    );
    assert!(
        listed.lines().any(|line| line.starts_with("retired")),
        "{listed}"
    );

    let output = run(
        dir.path(),
        &["--config", &config, "keys", "retire", "no-such-kid"],
        &[],
    );
    assert_one_line_failure(&output, &["no-such-kid"]);
}

/// `frontdesk <args>` with `input` on standard input.
fn run_with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = frontdesk(dir, args, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// The local admin accounts can be managed without touching the database by hand: `admin
/// set-password` rotates a password (the break-glass account's, a leaked one) and ends the
/// user's open sessions; `admin remove-user` revokes an account and its sessions but never the
/// last admin, which would lock everyone out of the admin page; `admin list-users` shows them.
/// Each change is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_users_can_be_listed_given_a_new_password_and_removed_but_not_the_last_admin() {
    use frontdesk::store::{AdminRole, AdminSessionRecord, AdminStore, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    // `frontdesk --config <config> admin <rest>`, with `input` on standard input if given.
    let admin = |rest: &[&str], input: Option<&str>| {
        let mut all = vec!["--config", config.as_str(), "admin"];
        all.extend_from_slice(rest);
        match input {
            Some(input) => run_with_stdin(dir.path(), &all, input),
            None => run(dir.path(), &all, &[]),
        }
    };
    for (user, role) in [("alice", "admin"), ("bob", "auditor")] {
        let output = admin(
            &["create-user", "--username", user, "--role", role],
            Some("a long first passphrase\n"),
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let listed = admin(&["list-users"], None);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let rows: Vec<Vec<String>> = text(&listed.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [["alice", "admin", "local"], ["bob", "auditor", "local"]]
    );

    // alice has a session open; a new password ends it.
    let url = format!("sqlite://{}", dir.path().join("data.db").display());
    let store = Store::connect(&url, 1).await.expect("open the database");
    let session = AdminSessionRecord {
        id_hash: "alice-session".into(),
        username: "alice".into(),
        role: AdminRole::Admin,
        csrf_token: "csrf".into(),
        created_at: 1,
        last_seen_at: 1,
    };
    store
        .create_admin_session(&session)
        .await
        .expect("a session");
    let short = admin(&["set-password", "--username", "alice"], Some("short\n"));
    assert_one_line_failure(&short, &["at least"]);
    let changed = admin(
        &["set-password", "--username", "alice"],
        Some("a long second passphrase\n"),
    );
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    let alice = store
        .admin_user("alice")
        .await
        .expect("read")
        .expect("alice");
    assert!(frontdesk::secret::verify_secret(
        "a long second passphrase",
        &alice.password_hash
    ));
    assert!(!frontdesk::secret::verify_secret(
        "a long first passphrase",
        &alice.password_hash
    ));
    assert!(
        store
            .admin_session("alice-session")
            .await
            .expect("read")
            .is_none(),
        "the new password ended the session"
    );
    let nobody = admin(
        &["set-password", "--username", "nobody"],
        Some("a long second passphrase\n"),
    );
    assert_one_line_failure(&nobody, &["no local admin user is named nobody"]);

    // alice is the only admin: not removed. With another admin she is.
    let last = admin(&["remove-user", "--username", "alice"], None);
    assert_one_line_failure(&last, &["alice is the last admin"]);
    let output = admin(
        &["create-user", "--username", "carol", "--role", "admin"],
        Some("a long third passphrase\n"),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let removed = admin(&["remove-user", "--username", "alice"], None);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(store.admin_user("alice").await.expect("read").is_none());
    let gone = admin(&["remove-user", "--username", "alice"], None);
    assert_one_line_failure(&gone, &["no admin user is named alice"]);
    store.close().await;
    let events: Vec<String> = audit_rows(dir.path())
        .await
        .into_iter()
        .map(|(event, _, _)| event)
        .filter(|event| event.starts_with("admin_user"))
        .collect();
    assert_eq!(
        events,
        [
            "admin_user_created",
            "admin_user_created",
            "admin_user_password_changed",
            "admin_user_created",
            "admin_user_removed"
        ]
    );
}

/// The audit events in `dir`'s database, oldest first, as (event, `occurred_at`, detail).
async fn audit_rows(dir: &Path) -> Vec<(String, i64, Option<String>)> {
    use frontdesk::store::{AuditFilter, AuditLog, Store};
    let url = format!("sqlite://{}", dir.join("data.db").display());
    let store = Store::connect(&url, 1).await.expect("open the database");
    let filter = AuditFilter {
        limit: Some(1000),
        ..Default::default()
    };
    let mut rows: Vec<_> = store
        .audit_events(&filter)
        .await
        .expect("read the log")
        .into_iter()
        .map(|record| {
            let detail = record
                .event
                .detail
                .map(|detail| detail.as_str().to_string());
            (record.event.event, record.event.occurred_at, detail)
        })
        .collect();
    store.close().await;
    rows.reverse();
    rows
}

/// `audit purge` applies `audit.retention_days` (or `--older-than-days`) to the database the
/// configuration names, records the deletion as an audit event, and refuses to guess a
/// retention when none is configured (docs/decisions.md §36).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_purge_deletes_events_older_than_the_retention_and_records_the_deletion() {
    use frontdesk::store::{AuditEvent, AuditLog, Decision, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "\n[audit]\nretention_days = 30\n");
    let output = run(dir.path(), &["--config", &config, "migrate"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let now = frontdesk::clock::unix_now();
    let day = 86_400;
    let url = format!("sqlite://{}", dir.path().join("data.db").display());
    let store = Store::connect(&url, 1).await.expect("open the database");
    for age in [41, 40, 31, 10, 9] {
        let event = AuditEvent::new(now - age * day, "token_exchange", Decision::Issued);
        store.record(&event).await.expect("record");
    }
    store.close().await;

    // The configured 30 days: the three older events go.
    let output = run(dir.path(), &["--config", &config, "audit", "purge"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(
        printed.starts_with("deleted 3 audit events that occurred before "),
        "{printed}"
    );
    let rows = audit_rows(dir.path()).await;
    let kept: Vec<i64> = rows.iter().map(|(_, time, _)| now - time).collect();
    assert_eq!(kept.len(), 3, "{rows:?}");
    assert_eq!(&kept[..2], [10 * day, 9 * day]);
    let (event, _, detail) = &rows[2];
    assert_eq!(event, "audit_events_purged");
    let detail: serde_json::Value =
        serde_json::from_str(detail.as_deref().expect("detail")).expect("JSON");
    assert_eq!(detail["actor"], "cli");
    assert_eq!(detail["deleted"], 3);
    let before = detail["before"].as_i64().expect("before");
    assert!(
        (now - 30 * day..=now - 30 * day + 60).contains(&before),
        "the cutoff is 30 days before the purge: {before}"
    );

    // An explicit retention wins over the configured one.
    let purge_older_than = |days: &str| {
        run(
            dir.path(),
            &[
                "--config",
                &config,
                "audit",
                "purge",
                "--older-than-days",
                days,
            ],
            &[],
        )
    };
    let output = purge_older_than("5");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("deleted 2 audit events"));
    let events: Vec<String> = audit_rows(dir.path())
        .await
        .into_iter()
        .map(|(event, _, _)| event)
        .collect();
    assert_eq!(events, ["audit_events_purged", "audit_events_purged"]);

    // Zero days is no retention: refused before anything is touched.
    let output = purge_older_than("0");
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--older-than-days"));

    // Without a retention anywhere, nothing is guessed.
    let unset = tempfile::tempdir().expect("tempdir");
    let config = write_config(unset.path(), "");
    let output = run(unset.path(), &["--config", &config, "audit", "purge"], &[]);
    assert_one_line_failure(&output, &["audit.retention_days", "--older-than-days"]);
}

/// Reads a child's stderr on a thread, forwarding lines, so waits can be bounded.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits (bounded) for the child to exit.
fn wait_exit(mut child: Child) -> ExitStatus {
    let (sender, receiver) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    match receiver.recv_timeout(WAIT) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("frontdesk (pid {pid}) did not exit within {WAIT:?}");
        }
    }
}

/// With no configuration at all, `serve` starts a development instance in the working
/// directory, says where it listens, where its data is and that it is a development setup, then
/// stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_configuration_starts_a_development_instance_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = frontdesk(
        dir.path(),
        &["serve"],
        &[("FRONTDESK_LISTEN", "127.0.0.1:0")],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn serve");
    let lines = stderr_lines(&mut child);
    let mut seen = Vec::new();
    let mut address = None;
    while !seen
        .iter()
        .any(|line: &String| line.contains("DEVELOPMENT"))
    {
        let line = match lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                panic!("no startup message ({error}); stderr so far: {seen:#?}");
            }
        };
        if let Some(rest) = line.strip_prefix("frontdesk listening on http://") {
            address = rest.split_whitespace().next().map(str::to_string);
        }
        seen.push(line);
    }
    let address = address.expect("the listening line names the address");
    assert!(
        !address.ends_with(":0"),
        "the real bound port is shown: {address}"
    );
    let message = seen.join("\n");
    assert!(
        message.contains("issuer http://127.0.0.1:8080"),
        "{message}"
    );
    assert!(message.contains("data: sqlite://frontdesk.db"), "{message}");
    assert!(message.contains("signing with ES256 key"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );

    // It serves: readiness over HTTP on the announced address.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let response = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let response = client
        .get(format!(
            "http://{address}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .expect("GET metadata");
    let metadata: serde_json::Value = response.json().await.expect("json");
    assert_eq!(metadata["issuer"], "http://127.0.0.1:8080");

    // The data lives in the working directory; the generated KEK is owner-only.
    assert!(dir.path().join("frontdesk.db").exists());
    let kek = dir.path().join("frontdesk.kek");
    assert!(kek.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek)
            .expect("kek metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "frontdesk.kek mode {mode:o}");
    }
    // The KEK never appears in the output.
    let kek_value = std::fs::read_to_string(&kek).expect("read kek");
    assert!(!message.contains(kek_value.trim()));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let status = wait_exit(child);
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("shutting down")),
        "no shutdown log: {rest:#?}"
    );

    // A restart reuses the same KEK and keys (no second key is created).
    let output = run(dir.path(), &["keys", "list"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).lines().count(),
        2,
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn serve_fails_in_one_line_when_the_port_is_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let output = run(dir.path(), &["serve"], &[("FRONTDESK_LISTEN", &address)]);
    assert_one_line_failure(&output, &["cannot listen on", &address]);
    drop(taken);
}

#[test]
fn serve_fails_in_one_line_when_the_kek_file_is_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("secrets").join("kek");
    let missing = missing.to_str().expect("utf-8");
    let path = dir.path().join("frontdesk.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"https://sts.example.com\"\n[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}\"\n[keys]\nencryption_key_file = \"{missing}\"\n",
            dir.path().join("data.db").display()
        ),
    )
    .expect("write");
    let config = path.to_str().expect("utf-8");
    let output = run(dir.path(), &["--config", config, "serve"], &[]);
    assert_one_line_failure(&output, &["key-encryption key", missing]);
    // A KEK file that is not a KEK is named too.
    std::fs::create_dir_all(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(missing, "not base64!").expect("write");
    let output = run(dir.path(), &["--config", config, "serve"], &[]);
    assert_one_line_failure(&output, &["base64", missing]);
}

#[test]
fn serve_fails_in_one_line_when_the_database_is_unreachable_without_showing_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(
        dir.path(),
        &["serve"],
        &[
            ("FRONTDESK_LISTEN", "127.0.0.1:0"),
            (
                "FRONTDESK_DATABASE_URL",
                "postgres://postgres:hunter2@127.0.0.1:1/x",
            ),
        ],
    );
    let line = assert_one_line_failure(&output, &["cannot open the database", "127.0.0.1:1"]);
    assert!(line.contains("***"), "{line}");
    assert!(
        !text(&output.stderr).contains("hunter2"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn serve_fails_in_one_line_on_a_broken_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "algorithm = \"HS256\"\n");
    let output = run(dir.path(), &["--config", &config, "serve"], &[]);
    assert_one_line_failure(&output, &["keys.algorithm", &config]);
    assert!(
        !dir.path().join("data.db").exists(),
        "nothing is created before validation"
    );
}

/// `policy eval` decides an exchange from claims with the configured trust and CEL, exactly as
/// the token endpoint's policy would, prints what would be issued, and exits non-zero with the
/// audit reason when the exchange would be denied: a policy test an operator can run in CI.
#[test]
fn policy_eval_decides_an_exchange_from_claims_and_fails_on_a_denial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        r#"
[[identity_providers]]
id = "corp"
issuer = "https://idp.example.com"
jwks_uri = "https://idp.example.com/jwks"
condition = 'has(subject.groups) && "staff" in subject.groups'

[[audiences]]
id = "wiki"
issuer = "https://auth.wiki.example.com"
aliases = ["urn:wiki"]
scopes = ["read", "write"]
authorization_details_types = ["wiki_pages"]
release = ["email"]
condition = 'subject.email.endsWith("@example.com")'
claims = { sub = 'subject.email', tenant = '"acme"' }

[[audiences]]
id = "crm"
issuer = "https://auth.crm.example.com"
scopes = ["read"]

[[clients]]
client_id = "agent"
auth_method = "private_key_jwt"
jwks_uri = "https://agent.example.com/jwks.json"
audiences = ["wiki"]
"#,
    );
    let claims = |dir: &Path, name: &str, value: serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).expect("write claims");
        path.to_str().expect("utf-8 path").to_string()
    };
    let ada = claims(
        dir.path(),
        "ada.json",
        serde_json::json!({ "iss": "https://idp.example.com", "sub": "00u1",
                            "email": "ada@example.com", "groups": ["staff"] }),
    );
    let eval = |claims: &str, extra: &[&str]| {
        let mut args = vec![
            "--config", &config, "policy", "eval", "--client", "agent", "--claims", claims,
        ];
        args.extend_from_slice(extra);
        let output = run(dir.path(), &args, &[]);
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON report on stdout");
        (output, report)
    };

    let (output, report) = eval(&ada, &["--audience", "urn:wiki", "--scope", "read admin"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(report["decision"], "issued");
    assert_eq!(report["audience"], "wiki");
    assert_eq!(report["identity_provider"], "corp");
    assert_eq!(
        report["issued_token_type"],
        "urn:ietf:params:oauth:token-type:id-jag"
    );
    assert_eq!(report["scopes_granted"], serde_json::json!(["read"]));
    // The audience's mapped `sub` and `tenant` and released `email` (FED-03, TEN-01,
    // IDJAG-JWT-13); nothing else of the subject's claims.
    assert_eq!(
        report["claims"],
        serde_json::json!({ "sub": "ada@example.com", "email": "ada@example.com", "tenant": "acme" })
    );

    // The identity provider's condition: not staff.
    let guest = claims(
        dir.path(),
        "guest.json",
        serde_json::json!({ "iss": "https://idp.example.com", "sub": "00u2",
                            "email": "guest@example.com", "groups": [] }),
    );
    let (output, report) = eval(&guest, &["--audience", "urn:wiki"]);
    assert!(!output.status.success());
    assert_eq!(report["decision"], "denied");
    assert_eq!(report["reason"], "idp_condition_denied");
    assert_eq!(report["error"], "invalid_request");
    assert!(text(&output.stderr).contains("idp_condition_denied"));

    // The audience's condition: another domain's email.
    let outsider = claims(
        dir.path(),
        "outsider.json",
        serde_json::json!({ "iss": "https://idp.example.com", "sub": "00u3",
                            "email": "eve@elsewhere.example", "groups": ["staff"] }),
    );
    let (_, report) = eval(&outsider, &["--audience", "urn:wiki"]);
    assert_eq!(report["reason"], "audience_condition_denied");
    assert_eq!(report["error"], "invalid_target");

    // RFC 9396 authorization details: only the audience's types (IDJAG-ISSUE-19).
    let details = |value: &str| {
        eval(
            &ada,
            &["--audience", "urn:wiki", "--authorization-details", value],
        )
        .1
    };
    assert_eq!(
        details(r#"[{"type": "wiki_pages", "actions": ["read"]}]"#)["decision"],
        "issued"
    );
    let refused = details(r#"[{"type": "payments"}]"#);
    assert_eq!(refused["reason"], "authorization_details_type_not_allowed");
    assert_eq!(refused["error"], "invalid_authorization_details");
    assert_eq!(
        details(r#"{"type": "wiki_pages"}"#)["reason"],
        "invalid_authorization_details"
    );

    // An audience the client may not request, an unknown issuer, an unknown client.
    let (_, report) = eval(&ada, &["--audience", "https://auth.crm.example.com"]);
    assert_eq!(report["reason"], "audience_not_allowed_for_client");
    let stranger = claims(
        dir.path(),
        "stranger.json",
        serde_json::json!({ "iss": "https://other.example.com", "sub": "x" }),
    );
    let (_, report) = eval(&stranger, &["--audience", "urn:wiki"]);
    assert_eq!(report["reason"], "subject_untrusted_issuer");
    // An identity provider trusts only the token types it lists (here the default: ID tokens).
    let (_, report) = eval(
        &ada,
        &[
            "--audience",
            "urn:wiki",
            "--subject-token-type",
            "access_token",
        ],
    );
    assert_eq!(report["reason"], "subject_token_type_not_accepted");
    let output = run(
        dir.path(),
        &[
            "--config", &config, "policy", "eval", "--client", "nobody", "--claims", &ada,
        ],
        &[],
    );
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["reason"], "client_unknown");
}

/// `subject revoke` revokes the live access tokens issued to one subject in the database the
/// configuration names, prints the counts, and records the revocation (actor `cli`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_revoke_revokes_a_users_tokens_and_records_it() {
    use frontdesk::store::{IssuedToken, Store, TokenStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let output = run(dir.path(), &["--config", &config, "migrate"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let now = frontdesk::clock::unix_now();
    let url = format!("sqlite://{}", dir.path().join("data.db").display());
    let store = Store::connect(&url, 1).await.expect("open the database");
    for (jti, subject) in [("t1", "ada@example.com"), ("t2", "bob@example.com")] {
        let token = IssuedToken {
            jti: jti.into(),
            client_id: "agent".into(),
            subject: subject.into(),
            token_type: "access_token".into(),
            issued_at: now,
            expires_at: now + 600,
            revoked_at: None,
            status_index: None,
            subject_issuer: Some(format!("https://idp-of-{jti}.example")),
        };
        store.record_issued(&token).await.expect("record");
    }
    store.close().await;

    let output = run(
        dir.path(),
        &[
            "--config",
            &config,
            "subject",
            "revoke",
            "--subject",
            "ada@example.com",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "revoked 1 access tokens, 0 refresh tokens and 0 authorization codes of ada@example.com"
    );
    let store = Store::connect(&url, 1).await.expect("open the database");
    let revoked = |jti: &'static str| {
        let store = store.clone();
        async move {
            store
                .issued_token(jti)
                .await
                .expect("get")
                .and_then(|t| t.revoked_at)
        }
    };
    assert!(revoked("t1").await.is_some());
    assert_eq!(revoked("t2").await, None);
    store.close().await;

    // `--issuer`: everything issued for the users of one identity provider.
    let output = run(
        dir.path(),
        &[
            "--config",
            &config,
            "subject",
            "revoke",
            "--issuer",
            "https://idp-of-t2.example",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "revoked 1 access tokens, 0 refresh tokens and 0 authorization codes of the subjects of https://idp-of-t2.example"
    );
    let output = run(dir.path(), &["--config", &config, "subject", "revoke"], &[]);
    assert!(
        !output.status.success(),
        "--subject or --issuer is required"
    );
    let store = Store::connect(&url, 1).await.expect("open the database");
    assert!(
        store
            .issued_token("t2")
            .await
            .expect("get")
            .and_then(|t| t.revoked_at)
            .is_some()
    );
    store.close().await;
    let rows = audit_rows(dir.path()).await;
    let (_, _, detail) = rows
        .iter()
        .find(|(event, _, _)| event == "subject_tokens_revoked")
        .expect("audited");
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.contains("\"actor\":\"cli\"")),
        "{detail:?}"
    );
}

/// The events `audit export` tests write: one a second from `EXPORT_BASE`, every fifth of
/// client `agent-a` (the rest `agent-b`), every seventh denied for `audience_unknown`.
const EXPORT_BASE: i64 = 1_700_000_000;

fn export_event(index: i64) -> frontdesk::store::AuditEvent {
    use frontdesk::store::{AuditEvent, Decision};
    let denied = index % 7 == 0;
    let decision = if denied {
        Decision::Denied
    } else {
        Decision::Issued
    };
    let mut event = AuditEvent::new(EXPORT_BASE + index, "token_exchange", decision);
    event.client_id = Some(if index % 5 == 0 { "agent-a" } else { "agent-b" }.into());
    event.subject = Some(format!("user-{index}"));
    event.reason = denied.then(|| "audience_unknown".to_string());
    event
}

/// Reads a child's stdout on a thread, forwarding lines, so waits can be bounded. One line at a
/// time (a rendezvous channel): once the receiver is dropped, the thread stops at the next line
/// and closes the pipe, as a shipper that went away would.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::sync_channel(0);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `audit export` writes every event oldest first, across more than one of the store's
/// 1000-row pages, as JSON lines or CSV, with filters; refuses a bad time or decision in one
/// clear line; and with `--follow` writes an event committed after it started (synchronised by
/// the lines it printed, never by a sleep), then ends with success on SIGTERM or when its
/// reader goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_writes_every_event_oldest_first_and_follows_new_ones() {
    use frontdesk::store::{AuditLog, Store};
    const EVENTS: i64 = 2_500;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let output = run(dir.path(), &["--config", &config, "migrate"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let url = format!("sqlite://{}", dir.path().join("data.db").display());
    let store = Store::connect(&url, 1).await.expect("open the database");
    let events: Vec<_> = (0..EVENTS).map(export_event).collect();
    for chunk in events.chunks(500) {
        store.record_batch(chunk).await.expect("record");
    }
    store.close().await;

    // Everything, as JSON lines, oldest first.
    let output = run(dir.path(), &["--config", &config, "audit", "export"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is a JSON event"))
        .collect();
    assert_eq!(lines.len(), EVENTS as usize);
    let times: Vec<i64> = lines
        .iter()
        .map(|line| line["occurred_at"].as_i64().expect("occurred_at"))
        .collect();
    assert_eq!(
        times,
        (0..EVENTS).map(|i| EXPORT_BASE + i).collect::<Vec<_>>()
    );
    let ids: Vec<i64> = lines
        .iter()
        .map(|line| line["id"].as_i64().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ascending ids"
    );
    assert_eq!(lines[7]["decision"], "denied");
    assert_eq!(lines[7]["reason"], "audience_unknown");
    assert_eq!(lines[5]["client_id"], "agent-a");

    // Filtered (client, decision, RFC 3339 and unix bounds), as CSV.
    let output = run(
        dir.path(),
        &[
            "--config",
            &config,
            "audit",
            "export",
            "--client-id",
            "agent-a",
            "--decision",
            "denied",
            "--since",
            "2023-11-14T22:15:00Z", // EXPORT_BASE + 100
            "--until",
            &(EXPORT_BASE + 2_100).to_string(),
            "--format",
            "csv",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let csv = text(&output.stdout);
    let mut rows = csv.split("\r\n").filter(|row| !row.is_empty());
    assert_eq!(
        rows.next(),
        Some(frontdesk::audit_export::CSV_HEADER.trim_end())
    );
    let rows: Vec<Vec<&str>> = rows.map(|row| row.split(',').collect()).collect();
    let expected: Vec<String> = (100..2_100)
        .filter(|index| index % 35 == 0)
        .map(|index| (EXPORT_BASE + index).to_string())
        .collect();
    assert_eq!(
        rows.iter().map(|row| row[1]).collect::<Vec<_>>(),
        expected,
        "occurred_at column, oldest first"
    );
    assert!(
        rows.iter()
            .all(|row| row[4] == "denied" && row[7] == "agent-a")
    );

    // Bad input: one clear line on stderr, a non-zero status, nothing on stdout.
    for (flag, value) in [("--since", "yesterday"), ("--decision", "deny")] {
        let output = run(
            dir.path(),
            &["--config", &config, "audit", "export", flag, value],
            &[],
        );
        assert!(!output.status.success());
        assert!(output.stdout.is_empty());
        let stderr = text(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
    }

    // --follow: the existing matching events, then one committed after they were read.
    let follow = |dir: &Path| {
        frontdesk(
            dir,
            &[
                "--config",
                &config,
                "audit",
                "export",
                "--follow",
                "--poll-interval-secs",
                "1",
                "--client-id",
                "agent-a",
                "--decision",
                "denied",
            ],
            &[],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the follower")
    };
    let mut child = follow(dir.path());
    let _stderr = stderr_lines(&mut child);
    let lines = stdout_lines(&mut child);
    let next_time = |lines: &mpsc::Receiver<String>| {
        let line = lines.recv_timeout(WAIT).expect("a line from the follower");
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
        event["occurred_at"].as_i64().expect("occurred_at")
    };
    for index in (0..EVENTS).filter(|index| index % 35 == 0) {
        assert_eq!(next_time(&lines), EXPORT_BASE + index);
    }
    // Every existing line has been read, so these commit after the follower's first pass: one
    // outside its filter, then one inside (2520 = 35 × 72).
    let store = Store::connect(&url, 1).await.expect("open the database");
    store
        .record(&export_event(EVENTS + 1))
        .await
        .expect("record");
    store.record(&export_event(2_520)).await.expect("record");
    store.close().await;
    assert_eq!(next_time(&lines), EXPORT_BASE + 2_520);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        wait_exit(child).success(),
        "SIGTERM ends a follower quietly"
    );

    // A follower whose reader goes away ends with success, though no new event comes.
    let mut child = follow(dir.path());
    let _stderr = stderr_lines(&mut child);
    let lines = stdout_lines(&mut child);
    assert_eq!(next_time(&lines), EXPORT_BASE);
    drop(lines); // the reading thread stops at its next line and closes the pipe
    assert!(
        wait_exit(child).success(),
        "a closed pipe ends a follower quietly"
    );
}
