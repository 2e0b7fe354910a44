//! The `microseg` command line: parse, call the engine (`microseg-harness`), map the
//! outcome to an exit code.
//!
//! The binary's `main` only calls [`main`]. Progress goes to stderr, reports to stdout
//! (or a file), so `microseg run --format json > report.json` works.
#![warn(missing_docs)]

pub mod args;
mod commands;
pub mod exit;
pub mod terminal;

use clap::Parser;

/// Parses the process arguments, runs the command on a Tokio runtime of its own, and
/// returns the exit code.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn dispatch() -> i32 {
    let cli = args::Cli::parse();
    terminal::init(cli.verbose);
    commands::dispatch(cli).await
}
