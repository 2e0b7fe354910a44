//! The process exit codes, and the one error type that maps to them.
//!
//! Every command returns `Result<(), CliError>`; [`CliError::exit_code`] is the only place
//! a failure becomes a number. Tests assert on the constants, never on literals.
//!
//! Four of the codes are the engine's [`Verdict`]s: the JSON report records the exit code
//! its verdict deserves, so the engine knows them, and they are taken from there. Usage
//! and target errors arise only at the command line.

use crate::out::errln;
use std::fmt;

use microseg_harness::verdict::Verdict;

/// Every check passed (or was a named, explained divergence).
pub const PASS: i32 = Verdict::Pass.exit_code();
/// At least one check failed: the report lists the findings.
pub const FINDINGS: i32 = Verdict::Findings.exit_code();
/// Bad usage or a bad spec; nothing was called.
pub const USAGE: i32 = 2;
/// The target could not serve (no emulator, no Docker, account not allowed).
pub const TARGET_UNAVAILABLE: i32 = 3;
/// Teardown or sweep left resources behind; the report lists them.
pub const TEARDOWN_INCOMPLETE: i32 = Verdict::TeardownIncomplete.exit_code();
/// Interrupted (Ctrl-C); teardown ran.
pub const INTERRUPTED: i32 = Verdict::Interrupted.exit_code();
/// The reader of standard output went away (`| head`): 128 + SIGPIPE, the status a
/// shell reports for a process that SIGPIPE ended. Nothing more is printed.
pub const CLOSED_PIPE: i32 = 141;

/// Why a command did not pass. The variants that carry a message print it on stderr as
/// `error: …`; the others were said by the command's own output (the report, the table).
#[derive(Debug)]
pub enum CliError {
    /// The arguments as clap rejects them (unknown flag, malformed value), printed as clap
    /// formats them. Exit 2.
    Clap(clap::Error),
    /// Arguments clap accepts but the command cannot use (a zone the spec lacks, a target
    /// that would read an empty account). Exit 2.
    Usage(String),
    /// A spec or snapshot that does not load or plan; nothing was called. Exit 2.
    Spec(String),
    /// An output file could not be written. Exit 2: the path given is the problem.
    Output(String),
    /// The target could not serve or failed mid-way. Exit 3.
    TargetUnavailable(String),
    /// As [`CliError::TargetUnavailable`], already said where the command's output says
    /// such things (`doctor`'s table, `sweep`'s line per run). Exit 3.
    TargetUnavailableShown,
    /// At least one check failed; the report lists the findings. Exit 1.
    Findings,
    /// Resources were left behind; the report lists them. Exit 4.
    TeardownIncomplete,
    /// Ctrl-C stopped the run, and teardown ran. Exit 130.
    Interrupted,
    /// Standard output's reader closed it (`| head`); output stopped there. Exit 141,
    /// quietly.
    ClosedPipe,
}

impl CliError {
    /// The process exit code: the one place errors become numbers.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Clap(_) | CliError::Usage(_) | CliError::Spec(_) | CliError::Output(_) => USAGE,
            CliError::TargetUnavailable(_) | CliError::TargetUnavailableShown => TARGET_UNAVAILABLE,
            CliError::Findings => FINDINGS,
            CliError::TeardownIncomplete => TEARDOWN_INCOMPLETE,
            CliError::Interrupted => INTERRUPTED,
            CliError::ClosedPipe => CLOSED_PIPE,
        }
    }

    /// Prints the error on stderr, unless the command's output already said it.
    pub fn print(&self) {
        match self {
            // clap styles its own message (and colours it at a terminal).
            CliError::Clap(e) => {
                let _ = e.print();
            }
            CliError::Usage(m) | CliError::Spec(m) | CliError::Output(m) | CliError::TargetUnavailable(m) => {
                errln!("error: {m}")
            }
            CliError::TargetUnavailableShown
            | CliError::Findings
            | CliError::TeardownIncomplete
            | CliError::Interrupted
            | CliError::ClosedPipe => {}
        }
    }

    /// A run's or a validation's verdict as a command's result.
    pub fn from_verdict(verdict: Verdict) -> Result<(), CliError> {
        match verdict {
            Verdict::Pass => Ok(()),
            Verdict::Findings => Err(CliError::Findings),
            Verdict::TeardownIncomplete => Err(CliError::TeardownIncomplete),
            Verdict::Interrupted => Err(CliError::Interrupted),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Clap(e) => write!(f, "{e}"),
            CliError::Usage(m) | CliError::Spec(m) | CliError::Output(m) | CliError::TargetUnavailable(m) => {
                f.write_str(m)
            }
            CliError::TargetUnavailableShown => f.write_str("the target could not serve"),
            CliError::Findings => f.write_str("the checks found problems"),
            CliError::TeardownIncomplete => f.write_str("resources were left behind"),
            CliError::Interrupted => f.write_str("interrupted"),
            CliError::ClosedPipe => f.write_str("standard output was closed"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<clap::Error> for CliError {
    fn from(e: clap::Error) -> CliError {
        CliError::Clap(e)
    }
}

/// The exit status of a command's result.
pub fn exit_code(result: &Result<(), CliError>) -> i32 {
    result.as_ref().err().map_or(PASS, CliError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_documented_code() {
        // docs/GUIDE.md, "Exit codes", lists these; a change here is a change there.
        assert_eq!(
            [PASS, FINDINGS, USAGE, TARGET_UNAVAILABLE, TEARDOWN_INCOMPLETE, INTERRUPTED, CLOSED_PIPE],
            [0, 1, 2, 3, 4, 130, 141]
        );
    }

    #[test]
    fn verdicts_map_to_their_codes() {
        for v in [Verdict::Pass, Verdict::Findings, Verdict::TeardownIncomplete, Verdict::Interrupted] {
            assert_eq!(exit_code(&CliError::from_verdict(v)), v.exit_code(), "{v:?}");
        }
    }
}
