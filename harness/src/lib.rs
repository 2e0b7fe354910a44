//! microseg's engine: everything but the command line.
//!
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
pub mod discover;
pub mod findings;
pub mod inventory;
pub mod ledger;
pub mod observe;
pub mod plan;
pub mod reach;
pub mod report;
pub mod run;
pub mod run_id;
pub mod spec;
pub mod sweep;
pub mod target;
pub mod teardown;
pub mod topology;
pub mod validate;
pub mod verdict;

/// The vocabulary shared by specs, plans and observed deployments (from `microseg-reach`).
pub use microseg_reach::model;
