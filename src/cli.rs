//! The `frontdesk` command line (clap). Every command loads and validates the same
//! configuration as the server, so `check-config` is an honest preview of startup.

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::{self, StartupError};
use crate::clock::unix_now;
use crate::config::Config;
use crate::keys::KeyRing;

/// frontdesk: an OAuth 2.0 token-exchange authorization server (STS).
#[derive(Debug, Parser)]
#[command(name = "frontdesk", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without one, `serve` starts a development instance.
    #[arg(long, short = 'c', global = true, env = "FRONTDESK_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrates the database and loads the configured trust first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and exit non-zero on the first error.
    CheckConfig,
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read a secret from standard input and print its argon2id PHC string.
    HashSecret,
    /// Manage clients stored in the database (clients in the config file are read-only).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Link an external subject (issuer + sub) to a local subject, for identity providers with
    /// `subject_mode = "linked"` (leg 2).
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Manage local accounts of the web admin page.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Perform a token exchange against a frontdesk (or any RFC 8693 server) and print the
    /// decoded result: a client-side helper for trying a deployment out.
    Exchange(crate::exchange_cli::ExchangeArgs),
    /// The audit log: export it (to a file or a SIEM) and apply its retention.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Test trust and CEL policy without a token.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide a token exchange for a subject given as claims, as the token endpoint would with
    /// the current trust (configuration file and database), and print the decision, the granted
    /// scopes and the claims the token would carry as JSON. Exits non-zero when it would be
    /// denied, so trust and CEL changes can be tested in CI. The subject token's own checks
    /// (signature, lifetimes, `aud`) are not repeated: the claims stand for a verified token.
    Eval {
        /// The requesting client's `client_id`.
        #[arg(long)]
        client: String,
        /// A JSON file (or `-` for standard input) with the subject token's claims; `iss` names
        /// the identity provider.
        #[arg(long)]
        claims: PathBuf,
        /// `subject_token_type`: `id_token` (default), `access_token`, `jwt`, `saml2` or a
        /// token-type URI.
        #[arg(long)]
        subject_token_type: Option<String>,
        /// `audience` (an audience's issuer identifier or alias).
        #[arg(long)]
        audience: Option<String>,
        /// `resource` (repeatable).
        #[arg(long)]
        resource: Vec<String>,
        /// `scope`, space-separated.
        #[arg(long)]
        scope: Option<String>,
        /// `requested_token_type` URI.
        #[arg(long)]
        requested_token_type: Option<String>,
        /// `authorization_details` (RFC 9396), a JSON array.
        #[arg(long)]
        authorization_details: Option<String>,
    },
}

/// Audit-log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write every matching audit event to standard output, oldest first, as JSON lines or CSV
    /// (the admin page's export format, without its row cap), for an archive or a SIEM. Only
    /// reads the database. With `--follow`, keeps writing new events as they are committed until
    /// standard output closes or SIGINT/SIGTERM (docs/deployment.md §7).
    Export(Box<AuditExportArgs>),
    /// Delete audit events older than the retention now, as a running server does every 15
    /// minutes; the deletion is itself recorded as an `audit_events_purged` event. Export what
    /// must be kept first (`audit export`).
    Purge {
        /// Delete events older than this many days (default: `audit.retention_days`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::config::MAX_AUDIT_RETENTION_DAYS)))]
        older_than_days: Option<u32>,
    },
}

/// `audit export`'s filters and output. Every filter is exact and optional; they combine.
#[derive(Debug, clap::Args)]
pub struct AuditExportArgs {
    /// Only events that occurred at or after this time (RFC 3339 or unix seconds).
    #[arg(long, value_parser = crate::audit_export::parse_time)]
    pub since: Option<i64>,
    /// Only events that occurred before this time (RFC 3339 or unix seconds).
    #[arg(long, value_parser = crate::audit_export::parse_time)]
    pub until: Option<i64>,
    /// Only events of this client_id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Only events about this subject (`sub`).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events for this audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Only events with this decision: issued, denied or changed.
    #[arg(long, value_parser = crate::audit_export::parse_decision)]
    pub decision: Option<crate::store::Decision>,
    /// Only events with this reason code (e.g. `subject_token_expired`).
    #[arg(long)]
    pub reason: Option<String>,
    /// `jsonl` (one JSON object per line) or `csv` (with a header line).
    #[arg(long, value_enum, default_value_t = crate::audit_export::Format::Jsonl)]
    pub format: crate::audit_export::Format,
    /// After the existing events, keep polling for new ones and write them as they appear.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between polls with `--follow` (1–60).
    #[arg(long, default_value_t = 2, requires = "follow", value_parser = clap::value_parser!(u64).range(1..=60))]
    pub poll_interval_secs: u64,
    /// With `--follow`, write an event only once every smaller id has had this many seconds to
    /// commit (default: 0 on SQLite, whose ids become visible in order; 10 on PostgreSQL, where
    /// concurrent commits can make a later id visible first).
    #[arg(long, requires = "follow", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub settle_secs: Option<u64>,
}

/// Subject-link commands.
#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Link `--issuer` + `--sub` to `--local`.
    Link {
        /// The assertion issuer (exactly as in `iss`).
        #[arg(long)]
        issuer: String,
        /// The subject at that issuer (`sub`).
        #[arg(long)]
        sub: String,
        /// The local subject that access tokens will carry.
        #[arg(long)]
        local: String,
    },
    /// Revoke everything issued to a user: live access tokens, refresh tokens and unredeemed
    /// authorization codes whose `sub` is `--subject` — or, with `--issuer`, whose subject came
    /// from that identity provider, for a compromised one (audited, actor `cli`). Prints the
    /// counts.
    Revoke {
        /// The `sub` of the tokens to revoke, exactly as frontdesk issued it.
        #[arg(long, required_unless_present = "issuer", conflicts_with = "issuer")]
        subject: Option<String>,
        /// The issuer (`iss`) of the identity provider whose users' tokens to revoke.
        #[arg(long)]
        issuer: Option<String>,
    },
}

/// Admin-page account commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a local admin account; the password is read from standard input, so
    /// it never appears in the shell history or the process list.
    CreateUser {
        /// Sign-in name (letters, digits, - _ . @).
        #[arg(long)]
        username: String,
        /// `admin` (reads and changes everything) or `auditor` (reads only).
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Give a local admin user a new password, read from standard input; the user's open
    /// sessions end.
    SetPassword {
        /// The user's sign-in name.
        #[arg(long)]
        username: String,
    },
    /// Remove an admin user (local or single sign-on) and end its sessions. The last user with
    /// the admin role cannot be removed.
    RemoveUser {
        /// The user's sign-in name (`<idp id>:<sub>` for a single sign-on user).
        #[arg(long)]
        username: String,
    },
    /// List the admin users: name, role, local or single sign-on, creation time (Unix seconds).
    ListUsers,
    /// Create a bearer token for the admin JSON API (/admin/api/v1) and print it once; only its
    /// SHA-256 is stored.
    CreateToken {
        /// Unique name (letters, digits, - _ . @); changes are audited as `api:<name>`.
        #[arg(long)]
        name: String,
        /// `admin` (reads and changes everything) or `auditor` (reads only).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Expire the token after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. With a secret method, a random secret is generated and printed once;
    /// only its argon2id hash is stored. `--auth-method none` registers a public client.
    Add(Box<crate::client_cli::ClientAddArgs>),
    /// List clients (from the config file and the database).
    List,
    /// Remove a client created with `client add`.
    Remove {
        /// The client_id.
        client_id: String,
    },
    /// Revoke everything issued to a client that is still live — access tokens, refresh tokens,
    /// unredeemed authorization codes — and keep the client (audited, actor `cli`). For a
    /// compromised agent; disable the client as well to stop new tokens.
    RevokeTokens {
        /// The client_id.
        client_id: String,
    },
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List keys with their state.
    List,
    /// Publish a new key as `next`; it starts signing after keys.promote_after_secs.
    Rotate {
        /// Promote the new key at once (emergency rotation after a compromise).
        #[arg(long)]
        now: bool,
    },
    /// Stop signing with a key; it stays published until its tokens have expired.
    Retire {
        /// The key id.
        kid: String,
    },
    /// Remove a retired (or next) key from the JWKS now, after a compromise: tokens it signed
    /// stop verifying as soon as relying parties refresh. The active key must be rotated away
    /// first (`keys rotate --now`).
    Withdraw {
        /// The key id.
        kid: String,
    },
}

/// Runs the parsed command. Errors are one line for the terminal.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    match cli.command {
        Command::HashSecret => return hash_secret(),
        Command::Exchange(args) => return crate::exchange_cli::run(args).await,
        _ => {}
    }
    let config = load_config(cli.config.as_deref())?;
    crate::telemetry::init(&config.log.format, &config.log.level);
    match cli.command {
        Command::Serve => app::serve(config).await,
        Command::Migrate => {
            app::open_store(&config).await?;
            println!(
                "migrations applied to {}",
                app::redact_url(config.database.url.expose())
            );
            Ok(())
        }
        Command::CheckConfig => {
            println!(
                "configuration OK ({})",
                config
                    .source
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_else(|| "no file: development defaults".into())
            );
            Ok(())
        }
        Command::Keys(command) => keys(command, &config).await,
        Command::Client(command) => {
            let store = open_store_with_trust(&config).await?;
            crate::client_cli::run(command, &store).await
        }
        Command::Admin(AdminCommand::CreateUser { username, role }) => {
            let role = crate::store::AdminRole::parse(&role).ok_or_else(|| {
                StartupError(format!("--role must be admin or auditor, not {role}"))
            })?;
            let password = read_stdin("the password")?;
            let store = app::open_store(&config).await?;
            crate::admin::auth::create_user(&store, &username, &password, role, "cli", unix_now())
                .await
                .map_err(|error| StartupError(error.to_string()))?;
            println!("created {} user {username}", role.as_str());
            Ok(())
        }
        Command::Admin(AdminCommand::SetPassword { username }) => {
            let password = read_stdin("the password")?;
            let store = app::open_store(&config).await?;
            crate::admin::auth::set_password(&store, &username, &password, "cli", unix_now())
                .await
                .map_err(|error| StartupError(error.to_string()))?;
            println!("changed the password of {username}; its sessions have ended");
            Ok(())
        }
        Command::Admin(AdminCommand::RemoveUser { username }) => {
            let store = app::open_store(&config).await?;
            crate::admin::auth::remove_user(&store, &username, "cli", unix_now())
                .await
                .map_err(|error| StartupError(error.to_string()))?;
            println!("removed admin user {username}");
            Ok(())
        }
        Command::Admin(AdminCommand::ListUsers) => {
            use crate::store::AdminStore;
            let store = app::open_store(&config).await?;
            let users = store
                .list_admin_users()
                .await
                .map_err(|error| StartupError(format!("database error: {error}")))?;
            println!("{:<40} {:<8} {:<6} CREATED", "USERNAME", "ROLE", "SOURCE");
            for user in users {
                println!(
                    "{:<40} {:<8} {:<6} {}",
                    user.username,
                    user.role.as_str(),
                    if user.sso { "sso" } else { "local" },
                    user.created_at
                );
            }
            Ok(())
        }
        Command::Admin(AdminCommand::CreateToken {
            name,
            role,
            expires_in_days,
        }) => {
            let role = crate::store::AdminRole::parse(&role).ok_or_else(|| {
                StartupError(format!("--role must be admin or auditor, not {role}"))
            })?;
            let store = app::open_store(&config).await?;
            let now = unix_now();
            let expires_at = expires_in_days.map(|days| now + i64::from(days) * 86_400);
            let token =
                crate::admin::api::create_token(&store, &name, role, expires_at, "cli", now)
                    .await
                    .map_err(|error| StartupError(error.to_string()))?;
            eprintln!(
                "created {} API token {name}; it is shown only now:",
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        Command::Subject(SubjectCommand::Link { issuer, sub, local }) => {
            use crate::store::{AuditDetail, AuditEvent, AuditLog, Decision, TokenStore};
            let store = app::open_store(&config).await?;
            let fail =
                |error: crate::store::StoreError| StartupError(format!("database error: {error}"));
            store
                .link_subject(&issuer, &sub, &local, unix_now())
                .await
                .map_err(fail)?;
            let mut event = AuditEvent::new(unix_now(), "subject_linked", Decision::Changed);
            event.subject_issuer = Some(issuer.clone());
            event.subject = Some(sub.clone());
            event.detail = Some(AuditDetail::of(
                &serde_json::json!({ "actor": "cli", "local_subject": local }),
            ));
            store.record(&event).await.map_err(fail)?;
            println!("linked {sub} at {issuer} to {local}");
            Ok(())
        }
        Command::Subject(SubjectCommand::Revoke { subject, issuer }) => {
            use crate::store::RevocationScope;
            let store = app::open_store(&config).await?;
            let scope = match (&subject, &issuer) {
                (Some(subject), _) => RevocationScope::Subject(subject),
                (None, Some(issuer)) => RevocationScope::Issuer(issuer),
                (None, None) => return Err(StartupError("give --subject or --issuer".into())),
            };
            revoke_tokens(&store, scope).await?;
            Ok(())
        }
        Command::Audit(AuditCommand::Export(args)) => audit_export(*args, &config).await,
        Command::Audit(AuditCommand::Purge { older_than_days }) => {
            let days = older_than_days
                .or((config.audit.retention_days > 0).then_some(config.audit.retention_days))
                .ok_or_else(|| {
                    StartupError(
                        "no retention to apply: audit.retention_days is 0 (keep every event); pass --older-than-days N or set it".into(),
                    )
                })?;
            let store = app::open_store(&config).await?;
            let purged = crate::retention::apply(&store, days, "cli", unix_now(), || false)
                .await
                .map_err(|error| StartupError(format!("database error: {error}")))?;
            println!(
                "deleted {} audit events that occurred before {}",
                purged.deleted,
                crate::admin::format_time(purged.before)
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Eval {
            client,
            claims,
            subject_token_type,
            audience,
            resource,
            scope,
            requested_token_type,
            authorization_details,
        }) => {
            let authorization_details = authorization_details
                .map(|text| {
                    serde_json::from_str::<serde_json::Value>(&text).map_err(|error| {
                        StartupError(format!("--authorization-details is not JSON: {error}"))
                    })
                })
                .transpose()?;
            let text = if claims.as_os_str() == "-" {
                read_stdin("the claims")?
            } else {
                std::fs::read_to_string(&claims).map_err(|error| {
                    StartupError(format!("cannot read {}: {error}", claims.display()))
                })?
            };
            let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .map_err(|error| {
                    StartupError(format!("the claims are not a JSON object: {error}"))
                })?;
            let store = open_store_with_trust(&config).await?;
            let trust = crate::registry::Trust::load(store, config.resources.clone())
                .await
                .map_err(|error| StartupError(format!("cannot load the trust: {error}")))?;
            let question = crate::oauth::exchange::PolicyQuestion {
                client_id: client,
                claims,
                subject_token_type,
                audience,
                resources: resource,
                scope,
                requested_token_type,
                authorization_details,
            };
            let explanation =
                crate::oauth::exchange::explain(&config, &trust.current(), &question, unix_now());
            let json = serde_json::to_string_pretty(&explanation)
                .map_err(|error| StartupError(error.to_string()))?;
            println!("{json}");
            match explanation.reason {
                Some(reason) => Err(StartupError(format!(
                    "the exchange would be denied: {reason}"
                ))),
                None => Ok(()),
            }
        }
        Command::HashSecret => hash_secret(),
        Command::Exchange(args) => crate::exchange_cli::run(args).await,
    }
}

/// `audit export`: reads (never migrates or writes) the configured database, so it can run
/// against a read replica, and writes to a buffered standard output. A reader that goes away
/// ends it with success: `audit export --follow | head` is not a failure, and a follower ends
/// with its shipper even while no event comes to be written.
async fn audit_export(args: AuditExportArgs, config: &Config) -> Result<(), StartupError> {
    use crate::audit_export::{Follow, PAGE_ROWS, POSTGRES_SETTLE, export};
    let filter = crate::store::AuditFilter {
        since: args.since,
        until: args.until,
        client_id: args.client_id,
        subject: args.subject,
        audience: args.audience,
        decision: args.decision,
        reason: args.reason,
        ..Default::default()
    };
    let store = app::connect_store(config).await?;
    let follow = args.follow.then(|| Follow {
        poll_interval: std::time::Duration::from_secs(args.poll_interval_secs),
        settle: match (args.settle_secs, store.backend()) {
            (Some(secs), _) => std::time::Duration::from_secs(secs),
            (None, crate::store::Backend::Postgres) => POSTGRES_SETTLE,
            (None, crate::store::Backend::Sqlite) => std::time::Duration::ZERO,
        },
    });
    // Only a follower listens for signals: they are how it is asked to stop. A one-off export
    // keeps their default action, so an interrupted one never ends as if it were complete.
    let signals = follow.is_some().then(stop_signal).transpose()?;
    let stop = async move {
        match signals {
            Some(signals) => tokio::select! {
                () = signals => {}
                () = crate::audit_export::stdout_reader_gone() => {}
            },
            None => std::future::pending().await,
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = export(
        &store,
        &filter,
        args.format,
        follow,
        PAGE_ROWS,
        &mut out,
        stop,
    )
    .await;
    store.close().await;
    result.map(|_| ()).map_err(|error| {
        StartupError(format!(
            "{error} ({})",
            app::redact_url(config.database.url.expose())
        ))
    })
}

/// Resolves on the first SIGTERM or SIGINT. Installed before the export starts, so that neither
/// kills a follower mid-line.
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, StartupError> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind| {
        signal(kind).map_err(|error| StartupError(format!("cannot listen for signals: {error}")))
    };
    let (mut terminate, mut interrupt) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Resolves on the first Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, StartupError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Opens the database with the configuration file's trust loaded into it, as `serve` does, for
/// commands that read or change trust.
async fn open_store_with_trust(config: &Config) -> Result<crate::store::Store, StartupError> {
    let store = app::open_store(config).await?;
    crate::trust::sync_config(&store, config, unix_now())
        .await
        .map_err(|error| StartupError(format!("cannot load the configured trust: {error}")))?;
    Ok(store)
}

/// Loads the configuration from the file and the process environment.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, StartupError> {
    Config::load(path, std::env::vars()).map_err(|error| StartupError(error.to_string()))
}

async fn keys(command: KeysCommand, config: &Config) -> Result<(), StartupError> {
    let store = app::open_store(config).await?;
    match command {
        KeysCommand::List => {
            let keys = KeyRing::list(&store)
                .await
                .map_err(|error| StartupError(error.to_string()))?;
            let days = config.keys.rotate_after_days;
            println!(
                "STATE    ALG    KID                                          CREATED      NOTE"
            );
            for key in keys {
                let note = match key.state {
                    "next" => key
                        .activate_at
                        .map(|at| format!("promoted at {at}"))
                        .unwrap_or_default(),
                    "retired" => key
                        .publish_until
                        .map(|at| format!("published until {at}"))
                        .unwrap_or_default(),
                    "active" => key
                        .activated_at
                        .and_then(|at| crate::keys::scheduled_rotation_at(at, days))
                        .map(|at| format!("rotation due at {at}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                println!(
                    "{:<8} {:<6} {:<44} {:<12} {}",
                    key.state, key.algorithm, key.kid, key.created_at, note
                );
            }
            Ok(())
        }
        KeysCommand::Rotate { now } => {
            let ring = app::open_key_ring(config, store).await?;
            let kid = ring
                .rotate(unix_now(), now, Some("cli"))
                .await
                .map_err(|error| StartupError(error.to_string()))?;
            if now {
                println!("{kid} is now the active key");
            } else {
                println!(
                    "{kid} published as next; it becomes active in {} s (running servers pick it up on their own)",
                    config.keys.promote_after_secs
                );
            }
            Ok(())
        }
        KeysCommand::Withdraw { kid } => {
            let ring = app::open_key_ring(config, store).await?;
            match ring.withdraw(&kid, unix_now(), Some("cli")).await {
                Ok(true) => {
                    println!("{kid} withdrawn from the JWKS");
                    Ok(())
                }
                Ok(false) => Err(StartupError(format!(
                    "no withdrawable key has kid {kid} (unknown, or the active key: run `keys rotate --now` first)"
                ))),
                Err(error) => Err(StartupError(error.to_string())),
            }
        }
        KeysCommand::Retire { kid } => {
            let ring = app::open_key_ring(config, store).await?;
            match ring.retire(&kid, unix_now(), Some("cli")).await {
                Ok(true) => {
                    println!("{kid} retired");
                    Ok(())
                }
                Ok(false) => Err(StartupError(format!(
                    "no published key with kid {kid} is left to retire (unknown or already retired)"
                ))),
                Err(error) => Err(StartupError(error.to_string())),
            }
        }
    }
}

/// Reads one secret from standard input, without its trailing line end.
fn read_stdin(what: &str) -> Result<String, StartupError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| {
            StartupError(format!("cannot read {what} from standard input: {error}"))
        })?;
    let value = input.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(StartupError(format!("{what} on standard input is empty")));
    }
    Ok(value)
}

fn hash_secret() -> Result<(), StartupError> {
    let secret = read_stdin("the secret")?;
    let phc = crate::secret::hash_secret(&secret).map_err(StartupError)?;
    println!("{phc}");
    Ok(())
}

/// Revokes everything issued in `scope` (audited, actor `cli`) and prints the counts: `frontdesk
/// subject revoke` and `frontdesk client revoke-tokens`.
pub(crate) async fn revoke_tokens(
    store: &crate::store::Store,
    scope: crate::store::RevocationScope<'_>,
) -> Result<(), StartupError> {
    use crate::store::{RevocationScope, TokenStore};
    let now = unix_now();
    let event = crate::oauth::introspection::revocation_event(scope, "cli", now);
    let revoked = store
        .revoke_tokens(scope, now, event)
        .await
        .map_err(|error| StartupError(format!("database error: {error}")))?;
    let whose = match scope {
        RevocationScope::Subject(subject) => subject.to_string(),
        RevocationScope::Client(client_id) => format!("client {client_id}"),
        RevocationScope::Issuer(issuer) => format!("the subjects of {issuer}"),
    };
    println!(
        "revoked {} access tokens, {} refresh tokens and {} authorization codes of {whose}",
        revoked.access_tokens, revoked.refresh_tokens, revoked.authorization_codes
    );
    Ok(())
}
