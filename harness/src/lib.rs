//! microseg's engine: everything but the command line.
//!
//! For tests in your own crate, four items are the API: an [`Emulator`] that microseg
//! starts and `Drop` stops (or [`Emulator::shared`], one per test process), a
//! [`Scenario`] (built-in, from a file or a string), the [`Deployment`] that
//! [`Emulator::deploy`] returns and that tears itself down, and [`gate()`] for a
//! deployment your own code built. Every failure is an [`Error`]; every verdict is a
//! [`validate::ValidateReport`] with [`validate::ValidateReport::assert_pass`].
//!
//! ```no_run
//! use microseg_harness::{Emulator, Scenario};
//!
//! #[tokio::test]
//! async fn hardened_recipe_passes() -> Result<(), microseg_harness::Error> {
//!     let deployment = Emulator::shared()?.deploy(&Scenario::builtin("recipe").hardened()).await?;
//!     deployment.check().await?.assert_pass(); // panics listing each finding
//!     Ok(())
//! } // the deployment is torn down here, panics included
//! ```
//!
//! The rest of the crate is the engine the `microseg` command line is built on.
//! A run goes spec → [`plan`] (validated before any API call) → [`build`] (every id into
//! the [`ledger`]) → [`observe`] → [`checks`] → report → [`teardown`] → [`inventory`]
//! (must be empty). The [`target`] decides where that happens: LocalStack as a host
//! process or a container, an emulator already running, or a real account.
#![warn(missing_docs)]

pub mod aws;
pub mod bench;
pub mod bindings;
pub mod build;
pub mod capabilities;
pub mod checks;
pub mod deployment;
pub mod differential;
pub mod discover;
pub mod emulator;
mod error;
pub mod fidelity;
pub mod findings;
pub mod gate;
pub mod inventory;
pub mod job;
pub mod ledger;
pub mod observe;
pub mod permissions;
pub mod plan;
pub mod preflight;
pub mod reach;
pub mod recorded;
#[cfg(test)]
mod replay;
pub mod report;
pub mod run;
pub mod run_id;
pub mod scenario;
pub mod spec;
pub mod sweep;
pub mod target;
pub mod teardown;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod traffic;
pub mod validate;
pub mod verdict;

pub use deployment::{Deployment, Teardown};
pub use emulator::{Emulator, EmulatorKind};
pub use error::Error;
pub use gate::{Locate, gate};
pub use scenario::Scenario;

/// The vocabulary shared by specs, plans and observed deployments (from `microseg-reach`).
pub use microseg_reach::model;
