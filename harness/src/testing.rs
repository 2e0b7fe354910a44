//! rstest fixtures for tests in your own crate (feature `testing`): the shared emulator,
//! and a scenario deployed on it for the length of one test.
//!
//! ```no_run
//! use microseg_harness::testing::{deployed, emulator};
//! use microseg_harness::{Deployment, Emulator, Scenario};
//! use rstest::rstest;
//!
//! #[rstest]
//! #[tokio::test]
//! async fn the_hardened_recipe_passes(#[future(awt)] deployed: Deployment) {
//!     deployed.check().await.unwrap().assert_pass();
//! }
//!
//! #[rstest]
//! #[tokio::test]
//! async fn three_tier_as_written_is_deployable(
//!     #[future(awt)]
//!     #[with(Scenario::builtin("three-tier"))]
//!     deployed: Deployment,
//!     emulator: &'static Emulator,
//! ) {
//!     assert!(deployed.vpc_id().starts_with("vpc-"), "on {}", emulator.description());
//! }
//! ```

use rstest::fixture;

use crate::{Deployment, Emulator, Scenario};

/// The process's shared emulator ([`Emulator::shared`]), started by the first test
/// that asks. Panics with the reason when it cannot start (no Docker and no Python
/// ≥ 3.12, say).
#[fixture]
pub fn emulator() -> &'static Emulator {
    Emulator::shared().unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario deployed on the shared emulator: the hardened recipe unless the test
/// passes another with `#[with(Scenario::…)]`. Torn down when the test ends, however
/// it ends.
#[fixture]
pub async fn deployed(#[default(Scenario::builtin("recipe").hardened())] scenario: Scenario) -> Deployment {
    emulator().deploy(&scenario).await.unwrap_or_else(|e| panic!("deploying {scenario:?}: {e}"))
}
