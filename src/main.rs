//! The `frontdesk` binary: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = frontdesk::cli::Cli::parse();
    match frontdesk::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("frontdesk: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
