//! The one error type of the public API ([`crate::Emulator`], [`crate::Scenario`],
//! [`crate::Deployment`], [`crate::gate()`]): every way those can fail, each with a
//! message that names what to fix.

use crate::aws::AwsError;
use crate::build::BuildError;
use crate::ledger::LedgerError;
use crate::observe::ObserveError;
use crate::plan::PlanError;
use crate::spec::SpecError;
use crate::target::TargetError;

/// Why a deployment, a check or a gate could not be done. A check that *finds*
/// something is not an error: it is a [`crate::validate::ValidateReport`] that did not
/// pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec could not be read or parsed (names the file and line).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The spec parsed but is not a valid design (names file, line, field and value).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The emulator or account could not serve.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The shared emulator failed to start earlier in this process.
    #[error("the shared emulator could not start: {0}")]
    SharedEmulator(String),
    /// The run's ledger could not be written: nothing was built.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An AWS call failed outside the build (reading the account id, finding a VPC).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The build failed; what it had made was torn down.
    #[error("the build failed and was torn down: {0}")]
    Build(#[from] BuildError),
    /// The deployment could not be read back.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The gate found no VPC, or more than one, where it was told to look.
    #[error("expected exactly one VPC for {locate}, found {}: {}", found.len(), found.join(", "))]
    NotOneVpc {
        /// Where the gate looked.
        locate: String,
        /// The VPC ids it found there.
        found: Vec<String>,
    },
}
