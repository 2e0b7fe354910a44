//! What a run or a validation concluded.
//!
//! The process exit codes live with the command line (`microseg-cli`'s `exit` module),
//! except these four: the JSON report records the exit code its verdict deserves
//! (`exit_code`, part of the report's schema), so the engine has to know them.

/// The conclusion of a run or a validation. Where several apply, an interruption
/// outranks leftovers, which outrank findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed (or was a named, explained divergence).
    Pass,
    /// At least one check failed, or the run stopped early on an error or a panic.
    Findings,
    /// Teardown left resources behind.
    TeardownIncomplete,
    /// Ctrl-C stopped the run; teardown ran.
    Interrupted,
}

impl Verdict {
    /// The process exit code this verdict deserves, as the JSON report records it and
    /// the command line exits with.
    pub const fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Findings => 1,
            Verdict::TeardownIncomplete => 4,
            Verdict::Interrupted => 130,
        }
    }
}
