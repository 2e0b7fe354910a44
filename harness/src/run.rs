//! One run of a scenario: plan → build → observe → checks → teardown → inventory.
//!
//! Teardown is not a line at the end that a panic could skip. Build and checks run
//! under `catch_unwind` and against Ctrl-C; whatever ends them, teardown follows. If the
//! whole run future is dropped (a test timed out, a caller gave up), [`TeardownGuard`]'s
//! `Drop` tears down on a thread of its own. After a `SIGKILL`, the ledger and the tags
//! are left for `sweep`.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::Serialize;

use crate::aws::{Clients, aws_err};
use crate::bindings::Bindings;
use crate::build::{self, BuildContext, BuildError, Fault};
use crate::capabilities::Capabilities;
use crate::checks::{self, CheckResult, Status};
use crate::inventory::{self, Scope};
use crate::ledger::{self, Ledger};
use crate::observe::{self, Observed};
use crate::plan::Plan;
use crate::run_id::RunId;
use crate::target::Target;
use crate::teardown::{self, Backoff, TeardownReport};
use crate::verdict::Verdict;

/// Tracing target of the "a phase starts" events (field `phase`: `build`, `observe`,
/// `checks`, `traffic` when asked for, `teardown`, `inventory`). A front end that shows progress listens for it;
/// the engine draws nothing itself.
pub const PHASE_TARGET: &str = "microseg::phase";

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Leave the deployment in place (no teardown).
    pub keep: bool,
    /// Inject a failure (tests).
    pub fault: Option<Fault>,
    /// Where ledgers go; the cache's `runs/` by default.
    pub ledger_dir: Option<std::path::PathBuf>,
    /// Ignore Ctrl-C (tests run many runs in one process).
    pub no_signal_handler: bool,
    /// The job this run belongs to: its resources carry the label, and the job's earlier
    /// runs are looked for before anything is built ([`crate::job`]).
    pub job: Option<crate::job::Job>,
    /// What to do when the job's earlier runs still have resources.
    pub earlier_runs: crate::job::EarlierRuns,
    /// The permissions boundary of the flow-log role ([`BuildContext::role_boundary`]).
    pub role_boundary: Option<String>,
    /// After the checks, send real traffic between instance containers and compare it
    /// with the evaluator ([`crate::traffic`]); the target must be localemu started
    /// with instances as containers.
    pub traffic: bool,
}

/// Where a run happens: the clients it calls through, and what the ledger and the
/// report record about the target they reach.
#[derive(Debug, Clone)]
pub struct RunTarget {
    /// Clients of the target; the report counts the calls they send.
    pub clients: Clients,
    /// One line on the target, for the ledger and the report.
    pub description: String,
    /// The emulator's endpoint, recorded in the ledger so `sweep` can find it again.
    pub endpoint: Option<String>,
    /// What the target cannot do as AWS does.
    pub capabilities: Capabilities,
    /// The account, if known; otherwise the run asks STS.
    pub account_id: Option<String>,
}

impl RunTarget {
    /// A target reached through `clients`, with no endpoint to record; the run asks STS
    /// for the account.
    pub fn new(clients: Clients, description: impl Into<String>, capabilities: Capabilities) -> RunTarget {
        RunTarget { clients, description: description.into(), endpoint: None, capabilities, account_id: None }
    }
}

impl From<&Target> for RunTarget {
    /// A started target, with fresh clients (and so a fresh call count).
    fn from(target: &Target) -> RunTarget {
        RunTarget {
            clients: target.clients(),
            description: target.description.clone(),
            endpoint: target.endpoint.clone(),
            capabilities: target.capabilities.clone(),
            account_id: target.account_id.clone(),
        }
    }
}

/// Wall time and API calls of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `build`, `observe`, `checks`, `traffic` (with [`RunOptions::traffic`]), `teardown`, `inventory`.
    pub name: String,
    /// Wall time.
    #[serde(serialize_with = "ser_ms")]
    pub wall: Duration,
    /// Requests sent.
    pub calls: usize,
    /// Requests sent, per operation (`ec2:CreateVpc`).
    pub calls_by_operation: std::collections::BTreeMap<String, usize>,
}

/// Times a phase and counts its calls, from the clients' call counter.
struct PhaseClock {
    name: &'static str,
    started: Instant,
    before: std::collections::BTreeMap<String, usize>,
}

impl PhaseClock {
    fn start(name: &'static str, clients: &Clients) -> PhaseClock {
        tracing::info!(target: PHASE_TARGET, phase = name, "phase starts");
        PhaseClock { name, started: Instant::now(), before: clients.calls.snapshot() }
    }

    fn stop(self, clients: &Clients) -> Phase {
        let calls_by_operation: std::collections::BTreeMap<String, usize> = clients
            .calls
            .snapshot()
            .into_iter()
            .map(|(op, n)| (n - self.before.get(&op).copied().unwrap_or(0), op))
            .filter(|(n, _)| *n > 0)
            .map(|(n, op)| (op, n))
            .collect();
        Phase {
            name: self.name.into(),
            wall: self.started.elapsed(),
            calls: calls_by_operation.values().sum(),
            calls_by_operation,
        }
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round())
}

/// How the run ended before teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum Interruption {
    /// Build or observation failed.
    Error(String),
    /// A panic.
    Panic(String),
    /// Ctrl-C.
    CtrlC,
}

/// Everything a report needs about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Run id.
    pub run_id: RunId,
    /// Scenario name.
    pub scenario: String,
    /// Variant.
    pub variant: String,
    /// Target description.
    pub target: String,
    /// Its capabilities.
    pub capabilities: Capabilities,
    /// The ledger file.
    pub ledger: String,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Bindings of the deployment.
    pub bindings: Bindings,
    /// What was observed (absent if the run stopped before observing).
    pub observed: Option<Observed>,
    /// Check results, the teardown check last.
    pub checks: Vec<CheckResult>,
    /// What the deployed network lets through: intents, zone matrix, unintended
    /// openings, pointless rules (absent if the run stopped before observing).
    pub reachability: Option<crate::reach::Reachability>,
    /// Why the run stopped early, if it did.
    pub interruption: Option<Interruption>,
    /// Teardown outcome per resource.
    pub teardown: Option<TeardownReport>,
    /// Tagged resources left after teardown.
    pub leftovers: Vec<String>,
    /// Whether the deployment was kept on purpose.
    pub kept: bool,
    /// Calls per operation over the whole run.
    pub calls_by_operation: std::collections::BTreeMap<String, usize>,
    /// Earlier runs of the same job that this run swept before it started.
    pub swept_earlier_runs: Vec<RunId>,
    /// Real traffic between instance containers, when asked for (`traffic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::TrafficReport>,
}

impl RunReport {
    /// What this run concluded.
    pub fn verdict(&self) -> Verdict {
        if matches!(self.interruption, Some(Interruption::CtrlC)) {
            return Verdict::Interrupted;
        }
        if !self.leftovers.is_empty() {
            return Verdict::TeardownIncomplete;
        }
        if self.interruption.is_some() || self.checks.iter().any(|c| c.status == Status::Fail) {
            return Verdict::Findings;
        }
        Verdict::Pass
    }

    /// The process exit code this run deserves ([`Verdict::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The ledger could not be created: nothing was built.
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    /// The account id could not be read.
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    /// The job's earlier runs still have resources: the run refused to start (or its
    /// sweep of them left some). Nothing was built.
    #[error(
        "job {job}: earlier run(s) still have resources: {}\n(hint: {})",
        runs.join("; "),
        if *swept { "the sweep could not remove them all; see what is left with `microseg sweep --run-id <id>` and the ledger".to_string() } else { "sweep them first with `--earlier-runs sweep`, or `microseg sweep --run-id <id>` for each".to_string() }
    )]
    EarlierRunsRemain {
        /// The job.
        job: String,
        /// Each run with what it still has.
        runs: Vec<String>,
        /// Whether they were swept first (and something survived).
        swept: bool,
    },
    /// A second Ctrl-C came during teardown: the run stopped without finishing it. The
    /// ledger stays on disk, unfinished, for `sweep`. A command line exits at once.
    #[error("second Ctrl-C: teardown abandoned; finish with `microseg sweep --run-id {run_id}`")]
    TeardownAbandoned {
        /// The run whose resources may remain.
        run_id: RunId,
    },
}

/// Tears a run down when dropped while armed: the last line of defence when the run
/// future itself is dropped mid-way.
pub struct TeardownGuard {
    clients: Clients,
    run_id: RunId,
    armed: bool,
}

impl TeardownGuard {
    /// Arms a guard for a run.
    pub fn new(clients: Clients, run_id: RunId) -> TeardownGuard {
        TeardownGuard { clients, run_id, armed: true }
    }

    /// Disarms it once teardown ran (or the user asked to keep the deployment).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let clients = self.clients.clone();
        let scope = Scope::Run(self.run_id.clone());
        // A runtime of its own on a thread of its own: Drop may run inside an async
        // context, where blocking on the caller's runtime would deadlock.
        let joined = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for teardown");
            rt.block_on(async {
                match inventory::list(&clients, &scope).await {
                    Ok(items) => {
                        teardown::teardown(&clients, &items, Backoff::default()).await;
                    }
                    Err(e) => tracing::error!("teardown guard: inventory failed: {e}"),
                }
            })
        })
        .join();
        if joined.is_err() {
            tracing::error!(
                "teardown guard for {} panicked; run `microseg sweep --run-id {}`",
                self.run_id,
                self.run_id
            );
        }
    }
}

/// Runs a planned scenario on a target: build, observe, check, tear down, inventory.
pub async fn run(plan: &Plan, target: &RunTarget, opts: &RunOptions) -> Result<RunReport, RunError> {
    let RunTarget { clients, description: target_description, endpoint, capabilities: caps, account_id } = target;
    let account_id = match account_id.clone() {
        Some(a) => a,
        None => clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(aws_err("GetCallerIdentity"))?
            .account()
            .unwrap_or_default()
            .to_string(),
    };
    let swept_earlier_runs = match &opts.job {
        Some(job) => clear_earlier_runs(clients, job, opts.earlier_runs).await?,
        None => Vec::new(),
    };
    let run_id = RunId::generate();
    let dir = opts.ledger_dir.clone().unwrap_or_else(ledger::runs_dir);
    let ledger = Ledger::create(&dir, &run_id, &plan.scenario, target_description, endpoint.clone(), &clients.region)?;
    let mut guard = TeardownGuard::new(clients.clone(), run_id.clone());
    let mut report = RunReport {
        run_id: run_id.clone(),
        scenario: plan.scenario.clone(),
        variant: plan.variant.clone(),
        target: target_description.to_string(),
        capabilities: caps.clone(),
        ledger: ledger.path().display().to_string(),
        phases: Vec::new(),
        bindings: Bindings::default(),
        observed: None,
        checks: Vec::new(),
        reachability: None,
        interruption: None,
        teardown: None,
        leftovers: Vec::new(),
        kept: false,
        calls_by_operation: Default::default(),
        swept_earlier_runs,
        traffic: None,
    };
    tracing::info!("run {run_id}: building {} on {target_description}", plan.scenario);

    // Build, observe and check; any way this ends, teardown follows.
    let work = AssertUnwindSafe(build_and_check(plan, clients, &run_id, &ledger, account_id, caps, opts, &mut report))
        .catch_unwind();
    let outcome = if opts.no_signal_handler {
        Some(work.await)
    } else {
        tokio::select! {
            r = work => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    report.interruption = match outcome {
        None => Some(Interruption::CtrlC),
        Some(Err(panic)) => Some(Interruption::Panic(panic_message(&panic))),
        Some(Ok(Err(e))) => Some(Interruption::Error(e)),
        Some(Ok(Ok(()))) => None,
    };

    if opts.keep && report.interruption.is_none() {
        report.kept = true;
        guard.disarm();
        return Ok(report);
    }

    let teardown = async {
        let clock = PhaseClock::start("teardown", clients);
        let items = inventory::list(clients, &Scope::Run(run_id.clone())).await;
        let td = match items {
            Ok(items) => teardown::teardown(clients, &items, Backoff::default()).await,
            Err(e) => {
                tracing::error!("teardown: inventory failed: {e}");
                TeardownReport::default()
            }
        };
        let phase = clock.stop(clients);
        (td, phase)
    };
    let (td, phase) = if opts.no_signal_handler {
        teardown.await
    } else {
        tokio::select! {
            r = teardown => r,
            _ = tokio::signal::ctrl_c() => {
                // The user wants out now: no guard tearing down on drop either. What stays
                // is in the ledger and the tags.
                guard.disarm();
                return Err(RunError::TeardownAbandoned { run_id });
            }
        }
    };
    report.phases.push(phase);
    report.teardown = Some(td);

    // The teardown check: an inventory by tag, never the success of DeleteVpc.
    let clock = PhaseClock::start("inventory", clients);
    let leftovers = match inventory::list(clients, &Scope::Run(run_id.clone())).await {
        Ok(items) => items.iter().map(|i| i.to_string()).collect(),
        Err(e) => vec![format!("inventory failed, teardown unproven: {e}")],
    };
    report.phases.push(clock.stop(clients));
    let mut teardown = checks::check_teardown(&leftovers);
    if !clients.cloudwatch_served && leftovers.is_empty() {
        // Honest about what was listed: no alarm was made, and none can be listed here.
        teardown.note = "inventory by run tag across EC2, IAM and CloudWatch Logs is empty (CloudWatch alarms cannot \
                         be listed on this target: cloudwatch-no-cbor; the build made none)"
            .into();
    }
    report.checks.push(teardown);
    report.leftovers = leftovers;
    if report.leftovers.is_empty() {
        guard.disarm();
        if let Err(e) = ledger.mark_torn_down() {
            tracing::warn!("{e}");
        }
    } else {
        // The guard would only retry what just failed; leave the rest to `sweep`.
        guard.disarm();
    }
    report.calls_by_operation = clients.calls.snapshot();
    Ok(report)
}

/// Finds what the job's earlier runs left; refuses, or sweeps it and returns the runs
/// swept. Any resource left after the sweep refuses the run as well.
async fn clear_earlier_runs(
    clients: &Clients,
    job: &crate::job::Job,
    policy: crate::job::EarlierRuns,
) -> Result<Vec<RunId>, RunError> {
    let describe = |by_run: &std::collections::BTreeMap<RunId, Vec<inventory::Item>>| -> Vec<String> {
        by_run
            .iter()
            .map(|(run, items)| {
                let kinds: Vec<String> = items.iter().map(|i| format!("{} {}", i.kind, i.id)).collect();
                format!("{run} ({})", kinds.join(", "))
            })
            .collect()
    };
    let earlier = crate::job::earlier_runs(clients, job).await?;
    if earlier.is_empty() {
        return Ok(Vec::new());
    }
    if policy == crate::job::EarlierRuns::Refuse {
        return Err(RunError::EarlierRunsRemain { job: job.to_string(), runs: describe(&earlier), swept: false });
    }
    let mut left = std::collections::BTreeMap::new();
    for run in earlier.keys() {
        tracing::warn!("job {job}: sweeping earlier run {run} before this one");
        let report = crate::sweep::sweep(clients, &crate::sweep::Selection::Run(run.clone())).await?;
        if !report.leftovers.is_empty() {
            left.insert(run.clone(), report.leftovers);
        }
    }
    if !left.is_empty() {
        return Err(RunError::EarlierRunsRemain { job: job.to_string(), runs: describe(&left), swept: true });
    }
    Ok(earlier.into_keys().collect())
}

#[allow(clippy::too_many_arguments)]
async fn build_and_check(
    plan: &Plan,
    clients: &Clients,
    run_id: &RunId,
    ledger: &Ledger,
    account_id: String,
    caps: &Capabilities,
    opts: &RunOptions,
    report: &mut RunReport,
) -> Result<(), String> {
    let ctx = BuildContext {
        clients,
        run_id,
        ledger,
        account_id,
        fault: opts.fault,
        tag_alarm_separately: caps.emulator.is_some(),
        job: opts.job.clone(),
        role_boundary: opts.role_boundary.clone(),
    };
    let clock = PhaseClock::start("build", clients);
    let built = build::build(plan, &ctx).await;
    report.phases.push(clock.stop(clients));
    let bindings = built.map_err(|e: BuildError| e.to_string())?;
    report.bindings = bindings.clone();

    let clock = PhaseClock::start("observe", clients);
    let vpc = bindings.vpc_id.clone().unwrap_or_default();
    let observed = observe::read_live(clients, &vpc).await.map_err(|e| e.to_string())?;
    report.phases.push(clock.stop(clients));
    let clock = PhaseClock::start("checks", clients);
    let (results, reachability) = checks::run_checks_with_reachability(plan, &observed, &bindings, caps);
    report.checks = results;
    report.phases.push(clock.stop(clients));
    if opts.traffic {
        // The instances go before this returns, whatever happens (traffic::send); the
        // teardown after it finds subnets free of them.
        let clock = PhaseClock::start("traffic", clients);
        let sent = crate::traffic::send(plan, clients, &observed, &bindings, &reachability, run_id).await;
        report.phases.push(clock.stop(clients));
        let sent = sent.map_err(|e| e.to_string())?;
        report.checks.push(crate::traffic::check(&sent));
        report.traffic = Some(sent);
    }
    report.reachability = Some(reachability);
    report.observed = Some(observed);
    Ok(())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
