//! An emulator for tests: started by microseg, stopped when dropped.
//!
//! The shape follows testcontainers: a value owns the emulator, and `Drop` stops what
//! it started. [`Emulator::shared`] serves every test of a process from one instance,
//! started on first use; a static is never dropped, so the process's exit handler
//! stops it (and a host process also dies with its parent, even by `SIGKILL`).

use std::sync::OnceLock;

use aws_config::SdkConfig;

use crate::Error;
use crate::aws::Clients;
use crate::capabilities::Capabilities;
use crate::deployment::Deployment;
use crate::gate::Locate;
use crate::scenario::Scenario;
use crate::target::{self, Target, TargetKind, TargetOptions};
use crate::validate::ValidateReport;

/// Which emulator to start, or which one to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorKind {
    /// The LocalStack container when a Docker engine answers and the image is present,
    /// else LocalStack as a host process.
    Auto,
    /// LocalStack 4.14.0 as a child process, from a venv microseg builds and caches.
    Host,
    /// LocalStack 4.14.0 in a container (`MICROSEG_LOCALSTACK_IMAGE`).
    Container,
    /// moto's server 5.2.5 as a child process, from a venv microseg builds and caches. It
    /// has no CloudWatch for the current SDK: a deployment's alarm is not built there,
    /// and its check reports the `cloudwatch-no-cbor` divergence.
    Moto,
    /// localemu 1.3.2 (a maintained fork of LocalStack community) as a child process,
    /// from a venv microseg builds and caches; needs Python ≥ 3.13.
    LocalEmu,
    /// An emulator already running at this URL (LocalStack, localemu or moto); nothing to
    /// stop.
    Endpoint(String),
}

/// A running emulator. Dropping it stops the emulator it started (a host process or a
/// container); an [`EmulatorKind::Endpoint`] is left as it was found.
///
/// ```no_run
/// # async fn demo() -> Result<(), microseg_harness::Error> {
/// use microseg_harness::{Emulator, EmulatorKind, Scenario};
///
/// let emulator = Emulator::start(EmulatorKind::Auto).await?;
/// let deployment = emulator.deploy(&Scenario::builtin("recipe").hardened()).await?;
/// deployment.check().await?.assert_pass();
/// deployment.teardown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Emulator {
    target: Target,
    endpoint: String,
}

impl Emulator {
    /// Starts (or connects to) an emulator, waits until it answers, and probes the ways
    /// it departs from AWS ([`Emulator::capabilities`]).
    pub async fn start(kind: EmulatorKind) -> Result<Emulator, Error> {
        let kind = match kind {
            EmulatorKind::Auto => TargetKind::Auto,
            EmulatorKind::Host => TargetKind::LocalStackHost,
            EmulatorKind::Container => TargetKind::LocalStackContainer,
            EmulatorKind::Moto => TargetKind::Moto,
            EmulatorKind::LocalEmu => TargetKind::LocalEmu,
            EmulatorKind::Endpoint(url) => TargetKind::Endpoint(url.trim_end_matches('/').to_string()),
        };
        let target = Target::start(&TargetOptions::new(kind)).await?;
        let endpoint = target.endpoint.clone().expect("an emulator target has an endpoint");
        Ok(Emulator { target, endpoint })
    }

    /// The process's shared emulator ([`EmulatorKind::Auto`]), started on first use.
    ///
    /// Every test of a test binary can call it: the first call starts the emulator on a
    /// thread and runtime of its own, so it outlives the runtime of the test that
    /// happened to start it; later calls return at once. Runs on it keep apart by their
    /// run tags. If the start failed, every call returns that failure.
    pub fn shared() -> Result<&'static Emulator, Error> {
        static SHARED: OnceLock<Result<Emulator, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                std::thread::spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("a runtime for the emulator: {e}"))?;
                    rt.block_on(Emulator::start(EmulatorKind::Auto)).map_err(|e| e.to_string())
                })
                .join()
                .unwrap_or_else(|_| Err("the thread starting it panicked".into()))
            })
            .as_ref()
            .map_err(|e| Error::SharedEmulator(e.clone()))
    }

    /// The emulator's URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One line on what it is (`LocalStack 4.14.0, host process on …`).
    pub fn description(&self) -> &str {
        &self.target.description
    }

    /// How this emulator departs from AWS. A check it cannot decide reports
    /// `divergence`, naming one of these, instead of passing.
    pub fn capabilities(&self) -> &Capabilities {
        &self.target.capabilities
    }

    /// An SDK config for this emulator (endpoint, region, test credentials, bounded
    /// retries), for the caller's own AWS SDK code. A fresh one on each call: an SDK
    /// client keeps connections on the runtime that made them, and each
    /// `#[tokio::test]` has a runtime of its own.
    pub async fn sdk_config(&self) -> SdkConfig {
        target::emulator_sdk_config(&self.endpoint, &self.target.region).await
    }

    pub(crate) async fn clients(&self) -> Clients {
        Clients::new(&self.sdk_config().await).serving(self.capabilities())
    }

    /// Builds a scenario and returns it deployed. Every resource carries the run's tags;
    /// the returned [`Deployment`] tears it all down when dropped, panics included. If
    /// the build fails, what it made is torn down before the error returns.
    pub async fn deploy(&self, scenario: &Scenario) -> Result<Deployment, Error> {
        let plan = scenario.plan()?;
        let description = self.target.description.clone();
        Deployment::build(plan, self.clients().await, self.endpoint.clone(), description, self.capabilities().clone())
            .await
    }

    /// The acceptance gate on a deployment that the caller's own code built on this
    /// emulator: see [`crate::gate()`].
    pub async fn gate(&self, scenario: &Scenario, locate: &Locate) -> Result<ValidateReport, Error> {
        crate::gate::gate(&self.sdk_config().await, self.capabilities(), scenario, locate).await
    }
}
