//! The process exit codes, in one place. Tests assert on these constants, never on
//! literals.

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
