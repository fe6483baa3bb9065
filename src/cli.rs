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
}

/// Runs the parsed command. Errors are one line for the terminal.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    if let Command::HashSecret = cli.command {
        return hash_secret();
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
        Command::HashSecret => hash_secret(),
    }
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
            println!(
                "{:<8} {:<6} {:<44} {:<12} NOTE",
                "STATE", "ALG", "KID", "CREATED"
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
                .rotate(unix_now(), now)
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
        KeysCommand::Retire { kid } => {
            let ring = app::open_key_ring(config, store).await?;
            match ring.retire(&kid, unix_now()).await {
                Ok(true) => {
                    println!("{kid} retired");
                    Ok(())
                }
                Ok(false) => Err(StartupError(format!("no published key has kid {kid}"))),
                Err(error) => Err(StartupError(error.to_string())),
            }
        }
    }
}

fn hash_secret() -> Result<(), StartupError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| {
            StartupError(format!(
                "cannot read the secret from standard input: {error}"
            ))
        })?;
    let secret = input.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(StartupError("the secret on standard input is empty".into()));
    }
    let phc = crate::secret::hash_secret(secret).map_err(StartupError)?;
    println!("{phc}");
    Ok(())
}
