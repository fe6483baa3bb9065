//! Several `frontdesk serve` processes started at the same moment on one empty PostgreSQL
//! database — a deployment's replicas rolled out together — must all come up, and agree: one
//! signing key, published by every instance, so a token issued by one verifies with the JWKS
//! of any other (JWKS-04: every token we sign has a `kid` in the current JWKS, and a relying
//! party may fetch the JWKS from any instance behind the load balancer).
//!
//! The instances are real processes (the binary), configured the way an operator would: one
//! TOML file with the trust (an identity provider, an audience, a client) and the database and
//! key-encryption key in `FRONTDESK_*` variables. Every write at start-up is raced:
//!
//! - on a database nobody migrated, the three start together (migrations, trust import, first
//!   key, all at their natural pace);
//! - on a migrated, empty database, the test holds an exclusive lock on the tables of one step
//!   (the configured trust, or the signing keys), waits until all three instances are blocked
//!   on it, and releases them at once: a barrier, so they meet exactly at that step.
//!
//! Waits are bounded and event-driven (a line on stderr, a lock waiter counted in `pg_locks`),
//! never sleeps for synchronisation.

#[path = "support/idp.rs"]
mod idp;

#[path = "support/env.rs"]
mod env;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use frontdesk::config::Config;
use frontdesk::secret::hash_secret;
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use env::test_db::TestDatabase;
use env::{AGENT, AGENT_AT_IDP, ID_JAG, ID_TOKEN, RAS_ISSUER, SECRET, TOKEN_EXCHANGE};
use idp::TestIdp;

/// Replicas started together (a Kubernetes deployment of three pods).
const INSTANCES: usize = 3;
/// Generous: each process may migrate the database and generate a key.
const WAIT: Duration = Duration::from_secs(60);
const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// A KEK of another deployment (32 bytes of 0x2a).
const OTHER_KEK: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// Where the instances are made to meet.
#[derive(Clone, Copy, Debug)]
enum Barrier {
    /// Nothing held: a database nobody migrated, three processes spawned back to back.
    None,
    /// The database is migrated first; the listed tables are locked until all instances wait.
    Tables(&'static str),
}

/// The instances' processes; killed (by their own ids) when the test ends, also on failure.
struct Instances {
    children: Vec<Child>,
    lines: Vec<mpsc::Receiver<String>>,
    seen: Vec<Vec<String>>,
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Instances {
    /// Everything instance `index` has written to stderr so far, for a failure message.
    fn stderr(&mut self, index: usize) -> String {
        let rest: Vec<String> = self.lines[index].try_iter().collect();
        self.seen[index].extend(rest);
        self.seen[index].join("\n")
    }

    /// Whether instance `index` has exited (a failed start).
    fn exited(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        self.children[index].try_wait().ok().flatten()
    }

    /// Waits for each instance's "listening" line and returns their addresses; an instance
    /// that exits instead fails the test with its own words.
    fn addresses(&mut self) -> Vec<String> {
        let mut addresses = Vec::new();
        for index in 0..self.children.len() {
            let deadline = Instant::now() + WAIT;
            let address = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines[index].recv_timeout(left) {
                    Ok(line) => {
                        let address = line
                            .strip_prefix("frontdesk listening on http://")
                            .and_then(|rest| rest.split_whitespace().next())
                            .map(str::to_string);
                        self.seen[index].push(line);
                        if let Some(address) = address {
                            break address;
                        }
                    }
                    Err(error) => {
                        // Its stderr closed: it is exiting, so wait for its status.
                        let status = match error {
                            mpsc::RecvTimeoutError::Disconnected => {
                                self.children[index].wait().ok()
                            }
                            mpsc::RecvTimeoutError::Timeout => self.exited(index),
                        };
                        panic!(
                            "instance {index} did not come up (exit: {status:?}); its stderr:\n{}",
                            self.stderr(index)
                        );
                    }
                }
            };
            addresses.push(address);
        }
        addresses
    }
}

/// The configuration file of every instance: one identity provider (the test IdP), the ID-JAG
/// audience and a secret-authenticated client; the database and KEK come from variables.
fn write_config(dir: &std::path::Path, idp: &TestIdp) -> anyhow::Result<std::path::PathBuf> {
    let mut config = Config {
        issuer: "https://sts.example.com".into(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.federation.jwks_min_refetch_secs = 0;
    let mut ras = env::audience("saas", RAS_ISSUER, "id-jag");
    ras.scopes = vec!["read".into()];
    config.audiences = vec![ras];
    let mut agent = env::client(AGENT, "client_secret_basic", &["saas"]);
    agent.secret_hash = Some(hash_secret(SECRET).map_err(anyhow::Error::msg)?);
    agent
        .idp_client_ids
        .insert("corp".into(), AGENT_AT_IDP.into());
    config.clients = vec![agent];
    // The identity provider as an operator writes it: only the keys it needs.
    let mut file: toml::Table = toml::from_str(&toml::to_string(&config)?)?;
    let provider: toml::Table = toml::from_str(&format!(
        "id = \"corp\"\nissuer = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
         token_types = [\"id_token\"]\naudiences = [\"frontdesk-api\"]\nsubject_mode = \"federated\"\n",
        idp.issuer
    ))?;
    file.insert(
        "identity_providers".into(),
        toml::Value::Array(vec![toml::Value::Table(provider)]),
    );
    let path = dir.join("frontdesk.toml");
    std::fs::write(&path, toml::to_string(&file)?)?;
    Ok(path)
}

/// `frontdesk --config <file> <args>` with the database and KEK in variables and no other
/// inherited `FRONTDESK_*` variable.
fn frontdesk(config: &std::path::Path, database: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FRONTDESK_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FRONTDESK_DATABASE_URL", database)
        .env("FRONTDESK_KEY_ENCRYPTION_KEY", KEK)
        .stdin(Stdio::null());
    command
}

/// Spawns the instances back to back, each with a thread forwarding its stderr lines.
fn spawn_instances(config: &std::path::Path, database: &str) -> Instances {
    let mut instances = Instances {
        children: Vec::new(),
        lines: Vec::new(),
        seen: Vec::new(),
    };
    // Commands built first, so the spawns follow each other as closely as possible.
    let mut commands: Vec<Command> = (0..INSTANCES)
        .map(|_| frontdesk(config, database, &["serve"]))
        .collect();
    for command in &mut commands {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn frontdesk serve");
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
        instances.children.push(child);
        instances.lines.push(receiver);
        instances.seen.push(Vec::new());
    }
    instances
}

/// Backends of other sessions of this database waiting for a lock.
async fn lock_waiters(monitor: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND locktype = 'relation' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(monitor)
    .await?)
}

/// Starts the instances meeting at `barrier`, and returns them with their addresses.
async fn start_together(
    barrier: Barrier,
    config: &std::path::Path,
    database: &str,
) -> anyhow::Result<(Instances, Vec<String>)> {
    let Barrier::Tables(tables) = barrier else {
        let mut instances = spawn_instances(config, database);
        let addresses = instances.addresses();
        return Ok((instances, addresses));
    };
    let output = frontdesk(config, database, &["migrate"]).output()?;
    anyhow::ensure!(
        output.status.success(),
        "frontdesk migrate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut holder = PgConnection::connect(database).await?;
    let mut monitor = PgConnection::connect(database).await?;
    let mut hold = holder.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *hold)
    .await?;
    let mut instances = spawn_instances(config, database);
    // The barrier: every instance blocked on the held lock (polled in pg_locks, bounded).
    let deadline = Instant::now() + WAIT;
    while lock_waiters(&mut monitor).await? < INSTANCES as i64 {
        for index in 0..INSTANCES {
            if let Some(status) = instances.exited(index) {
                panic!(
                    "instance {index} exited ({status}) before reaching the barrier on {tables}:\n{}",
                    instances.stderr(index)
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "the instances did not all reach the lock on {tables} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Released together.
    hold.commit().await?;
    let addresses = instances.addresses();
    holder.close().await?;
    monitor.close().await?;
    Ok((instances, addresses))
}

/// The kids of a JWKS document.
fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|key| key["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Verifies `token`'s signature with the key its header names in `jwks`.
fn verifies_with(token: &str, jwks: &Value) -> anyhow::Result<()> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().unwrap_or_default();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone())?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| anyhow::anyhow!("kid {kid} is not in the other instance's JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)?;
    Ok(())
}

/// Starts [`INSTANCES`] instances meeting at `barrier` on a fresh PostgreSQL database and checks
/// that all come up ready, publish the same single signing key, and accept one another's
/// tokens; returns nothing when PostgreSQL is not available (the test is then skipped).
async fn all_instances_come_up_and_agree(test: &str, barrier: Barrier) -> anyhow::Result<()> {
    let Some(database) = TestDatabase::postgres(test).await else {
        return Ok(());
    };
    let idp = TestIdp::start().await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &idp)?;
    let (mut instances, addresses) = start_together(barrier, &config, database.url()).await?;

    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut published = Vec::new();
    for (index, address) in addresses.iter().enumerate() {
        let ready = http.get(format!("http://{address}/readyz")).send().await?;
        assert_eq!(
            ready.status(),
            reqwest::StatusCode::OK,
            "instance {index}: {}",
            instances.stderr(index)
        );
        let jwks: Value = http
            .get(format!("http://{address}/jwks.json"))
            .send()
            .await?
            .json()
            .await?;
        published.push(jwks);
    }
    // One key, the same everywhere: not one per instance.
    let first = kids(&published[0]);
    assert_eq!(first.len(), 1, "one signing key published: {first:?}");
    for (index, jwks) in published.iter().enumerate() {
        assert_eq!(kids(jwks), first, "instance {index} publishes another JWKS");
    }
    let mut db = PgConnection::connect(database.url()).await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kid, state FROM signing_keys ORDER BY kid")
            .fetch_all(&mut db)
            .await?;
    assert_eq!(
        rows,
        vec![(
            first.iter().next().cloned().unwrap_or_default(),
            "active".to_string()
        )],
        "exactly one key stored, the active one"
    );
    // Each instance imported the configured trust (its client can exchange there), and a token
    // it issues verifies with the JWKS of the next instance.
    for (index, address) in addresses.iter().enumerate() {
        let id_token = idp
            .mint(serde_json::json!({ "aud": AGENT_AT_IDP, "sub": "user-1" }))
            .await?;
        let response = http
            .post(format!("http://{address}/token"))
            .basic_auth(AGENT, Some(SECRET))
            .form(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", RAS_ISSUER),
                ("subject_token", id_token.as_str()),
                ("subject_token_type", ID_TOKEN),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        assert_eq!(status, reqwest::StatusCode::OK, "instance {index}: {body}");
        let token = body["access_token"].as_str().unwrap_or_default();
        let other = (index + 1) % addresses.len();
        verifies_with(token, &published[other]).map_err(|error| {
            anyhow::anyhow!("a token of instance {index} against instance {other}'s JWKS: {error}")
        })?;
    }
    let configured: i64 = sqlx::query_scalar("SELECT count(*) FROM clients")
        .fetch_one(&mut db)
        .await?;
    assert_eq!(configured, 1, "the configured client, once");
    db.close().await?;

    // A failure that is no race still stops a replica with its one clear line: one given
    // another key-encryption key cannot open the shared signing key.
    let mut command = frontdesk(&config, database.url(), &["serve"]);
    command.env("FRONTDESK_KEY_ENCRYPTION_KEY", OTHER_KEK);
    let (status, stderr) = exit_of(command);
    assert!(!status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("frontdesk: "))
        .unwrap_or_default();
    assert!(
        line.contains("cannot load the signing keys") && line.contains("key-encryption key"),
        "{stderr}"
    );
    drop(instances);
    Ok(())
}

/// Runs `command` to its end (bounded: killed by its id after [`WAIT`]) and returns its exit
/// status and stderr.
fn exit_of(mut command: Command) -> (std::process::ExitStatus, String) {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn frontdesk");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(WAIT) {
        Ok(output) => {
            let output = output.expect("wait");
            (
                output.status,
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("frontdesk (pid {pid}) with another KEK did not exit within {WAIT:?}");
        }
    }
}

/// A database nobody migrated: the instances migrate, import the trust and create the first
/// key at their own pace, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_on_an_unmigrated_database_all_come_up_jwks_04()
-> anyhow::Result<()> {
    all_instances_come_up_and_agree("replicas_unmigrated", Barrier::None).await
}

/// The instances released together into the import of the configured trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_meeting_at_the_trust_import_all_come_up_jwks_04() -> anyhow::Result<()> {
    all_instances_come_up_and_agree(
        "replicas_trust_import",
        Barrier::Tables("identity_providers, audiences, clients, trust_generation"),
    )
    .await
}

/// The instances released together into the creation of the first signing key: the one that
/// commits first wins, the others adopt its key (one key, not three; none exits on the unique
/// index of the active key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_meeting_at_the_first_signing_key_all_come_up_with_one_key_jwks_04()
-> anyhow::Result<()> {
    all_instances_come_up_and_agree("replicas_first_key", Barrier::Tables("signing_keys")).await
}
