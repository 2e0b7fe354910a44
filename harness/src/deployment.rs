//! A scenario deployed by [`crate::Emulator::deploy`]: check it, then tear it down, or
//! let `Drop` tear it down, panics included.

use crate::Error;
use crate::aws::Clients;
use crate::bindings::Bindings;
use crate::build::{self, BuildContext};
use crate::capabilities::Capabilities;
use crate::checks;
use crate::inventory::{self, Scope};
use crate::ledger::{self, Ledger};
use crate::observe;
use crate::plan::Plan;
use crate::run_id::RunId;
use crate::teardown::{self, Backoff, TeardownReport};
use crate::validate::ValidateReport;

/// A deployed scenario. Every resource carries its run's tags (`microseg:run-id`), and
/// its ledger is in the cache (`runs/<run-id>.json`) from the first create on.
///
/// Dropping it tears everything down on a thread of its own, so a test that panics
/// halfway leaves nothing; [`Deployment::teardown`] does the same explicitly and returns
/// what it did. A process killed outright leaves the ledger for `microseg sweep
/// --abandoned`.
#[derive(Debug)]
pub struct Deployment {
    plan: Plan,
    clients: Clients,
    /// Where the emulator answers, to make fresh clients for a teardown in `Drop`.
    endpoint: String,
    target: String,
    capabilities: Capabilities,
    run_id: RunId,
    bindings: Bindings,
    ledger: Ledger,
    armed: bool,
}

/// What a teardown did, and what it left.
#[derive(Debug, Clone)]
#[must_use = "a teardown can leave resources behind: check Teardown::leftovers or call assert_complete"]
pub struct Teardown {
    /// Every resource of the run, and what happened to it.
    pub report: TeardownReport,
    /// Resources still tagged with the run afterwards, by the inventory: empty when the
    /// teardown is complete. (Never judged by the success of `DeleteVpc`: emulators
    /// orphan what a VPC held.)
    pub leftovers: Vec<String>,
}

impl Teardown {
    /// Whether nothing of the run is left.
    pub fn is_complete(&self) -> bool {
        self.leftovers.is_empty()
    }

    /// Panics, listing what is left, unless the teardown is complete.
    #[track_caller]
    pub fn assert_complete(&self) {
        assert!(
            self.is_complete(),
            "teardown left {} resource(s):\n  {}",
            self.leftovers.len(),
            self.leftovers.join("\n  ")
        );
    }
}

impl Deployment {
    pub(crate) async fn build(
        plan: Plan,
        clients: Clients,
        endpoint: String,
        target: String,
        capabilities: Capabilities,
    ) -> Result<Deployment, Error> {
        let account_id = clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(crate::aws::aws_err("GetCallerIdentity"))?
            .account()
            .unwrap_or_default()
            .to_string();
        let run_id = RunId::generate();
        let ledger = Ledger::create(
            &ledger::runs_dir(),
            &run_id,
            &plan.scenario,
            &target,
            Some(endpoint.clone()),
            &clients.region,
        )?;
        let mut deployment = Deployment {
            bindings: Bindings::default(),
            plan,
            clients,
            endpoint,
            target,
            capabilities,
            run_id,
            ledger,
            armed: true,
        };
        let ctx = BuildContext {
            clients: &deployment.clients,
            run_id: &deployment.run_id,
            ledger: &deployment.ledger,
            account_id,
            fault: None,
            tag_alarm_separately: deployment.capabilities.emulator.is_some(),
            job: None,
            role_boundary: None,
        };
        // On failure `deployment` drops here, armed: what the build made is torn down.
        deployment.bindings = build::build(&deployment.plan, &ctx).await?;
        Ok(deployment)
    }

    /// The run id every resource is tagged with.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The deployment's VPC.
    pub fn vpc_id(&self) -> &str {
        self.bindings.vpc_id.as_deref().unwrap_or_default()
    }

    /// The id of every resource the build made, by the spec's logical names.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// The validated plan it was built from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Clients for the emulator it runs on, for the caller's own calls (a test that
    /// changes the deployment behind microseg's back, say).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Reads the deployment back and runs every check of its scenario: associations,
    /// rule order, group references, flow log, alarm, routes, intent and reachability.
    /// Findings are in the report, not an error; see
    /// [`ValidateReport::assert_pass`].
    pub async fn check(&self) -> Result<ValidateReport, Error> {
        let observed = observe::read_live(&self.clients, self.vpc_id()).await?;
        let (checks, reachability) =
            checks::run_checks_with_reachability(&self.plan, &observed, &self.bindings, &self.capabilities);
        Ok(ValidateReport {
            scenario: self.plan.scenario.clone(),
            variant: self.plan.variant.clone(),
            source: format!("run {} on {}", self.run_id, self.target),
            capabilities: self.capabilities.clone(),
            bindings: self.bindings.clone(),
            checks,
            reachability: Some(reachability),
        })
    }

    /// Tears everything of the run down, proves by inventory what is left, and marks
    /// the ledger done when nothing is.
    pub async fn teardown(mut self) -> Result<Teardown, Error> {
        self.armed = false;
        tear_down(&self.clients, &self.run_id, &self.ledger).await
    }
}

async fn tear_down(clients: &Clients, run_id: &RunId, ledger: &Ledger) -> Result<Teardown, Error> {
    let scope = Scope::Run(run_id.clone());
    let items = inventory::list(clients, &scope).await?;
    let report = teardown::teardown(clients, &items, Backoff::default()).await;
    let leftovers: Vec<String> = inventory::list(clients, &scope).await?.iter().map(|i| i.to_string()).collect();
    if leftovers.is_empty() {
        ledger.mark_torn_down()?;
    }
    Ok(Teardown { report, leftovers })
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (endpoint, region, run_id) = (self.endpoint.clone(), self.clients.region.clone(), self.run_id.clone());
        let ledger = &self.ledger;
        // A thread and runtime of their own: Drop may run inside the caller's runtime,
        // where blocking would deadlock, and fresh clients, since the caller's pool
        // keeps its connections on a runtime that is blocked in this very drop.
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                rt.block_on(async {
                    let config = crate::target::emulator_sdk_config(&endpoint, &region).await;
                    tear_down(&Clients::new(&config), &run_id, ledger).await.map_err(|e| e.to_string())
                })
            })
            .join()
        });
        match outcome {
            Ok(Ok(t)) if t.is_complete() => {}
            Ok(Ok(t)) => tracing::error!(
                "dropping deployment {run_id}: {} resource(s) left; run `microseg sweep --run-id {run_id}`",
                t.leftovers.len()
            ),
            Ok(Err(e)) => tracing::error!("dropping deployment {run_id}: {e}; run `microseg sweep --run-id {run_id}`"),
            Err(_) => tracing::error!(
                "dropping deployment {run_id}: teardown panicked; run `microseg sweep --run-id {run_id}`"
            ),
        }
    }
}
