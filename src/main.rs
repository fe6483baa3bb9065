//! The `frontdesk` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    frontdesk::allocator::run_server_main("frontdesk", async {
        let cli = frontdesk::cli::Cli::parse();
        match frontdesk::cli::run(cli).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("frontdesk: {error}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// mimalloc instead of glibc's allocator: a request's allocations are freed on other threads
/// than the ones that made them (the group commit hands each audit event to SQLite's thread or
/// the database driver), where glibc's arenas spend their time consolidating free lists. +30 %
/// durable token exchanges per second in the load test (docs/performance.md, tenth run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
