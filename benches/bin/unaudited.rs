//! `frontdesk-unaudited`: frontdesk with its audit log switched off, built for one purpose —
//! the load test's measure of what durability costs. The performance issue bounds the cost of
//! committing every audit event and replay record before the response at 20 % against the
//! same run without them; this binary is "without them": the same server, configuration and
//! code path, except that the audit writer acknowledges every event (and the replay record
//! riding with it) without writing anything. `scripts/loadtest` runs it beside the real server
//! (docs/performance.md). It takes the same command line as `frontdesk` but only `serve`.
//!
//! Never deploy it: it records no decision and does not stop a replayed client assertion.

use clap::Parser;

/// The same allocator as `frontdesk` (src/main.rs), so the two differ only in the audit log.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use frontdesk::app::AuditMode;
use frontdesk::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    frontdesk::allocator::run_server_main("frontdesk-unaudited", serve())
}

async fn serve() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve) {
        eprintln!("frontdesk-unaudited: only `serve` is available (a load-test baseline)");
        return std::process::ExitCode::FAILURE;
    }
    let result = match frontdesk::cli::load_config(cli.config.as_deref()) {
        Ok(config) => {
            frontdesk::telemetry::init(&config.log.format, &config.log.level);
            frontdesk::app::serve_with(config, AuditMode::DiscardedForBenchmarks).await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("frontdesk-unaudited: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
