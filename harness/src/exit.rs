//! The process exit codes, in one place. Tests assert on these constants, never on
//! literals.

/// Every check passed (or was a named, explained divergence).
pub const PASS: i32 = 0;
/// At least one check failed: the report lists the findings.
pub const FINDINGS: i32 = 1;
/// Bad usage or a bad spec; nothing was called.
pub const USAGE: i32 = 2;
/// The target could not serve (no emulator, no Docker, account not allowed).
pub const TARGET_UNAVAILABLE: i32 = 3;
/// Teardown or sweep left resources behind; the report lists them.
pub const TEARDOWN_INCOMPLETE: i32 = 4;
/// Interrupted (Ctrl-C); teardown ran.
pub const INTERRUPTED: i32 = 130;
