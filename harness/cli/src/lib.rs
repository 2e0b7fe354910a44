//! The `microseg` command line: parse, call the engine (`microseg-harness`), map the
//! outcome to an exit code.
//!
//! The binary's `main` only calls [`main`]. Progress goes to stderr, reports to stdout
//! (or a file), so `microseg run --format json > report.json` works.
#![warn(missing_docs)]

pub mod args;
mod commands;
pub mod exit;
mod out;
pub mod render;
pub mod terminal;

use std::process::ExitCode;

use clap::Parser;

use crate::exit::CliError;

/// Parses the process arguments, runs the command on a Tokio runtime of its own, prints
/// what went wrong if something did, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` arrive as clap errors that are not failures.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return to_exit_code(exit::PASS);
        }
        Err(e) => return fail(CliError::Clap(e)),
    };
    terminal::init(cli.verbose);
    // As `#[tokio::main]` would: a machine that cannot start one cannot run anything.
    let runtime = tokio::runtime::Runtime::new().expect("the Tokio runtime starts");
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(()) => to_exit_code(exit::PASS),
        Err(e) => fail(e),
    }
}

fn fail(e: CliError) -> ExitCode {
    e.print();
    to_exit_code(e.exit_code())
}

fn to_exit_code(code: i32) -> ExitCode {
    // Every code in `exit` fits a byte.
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
