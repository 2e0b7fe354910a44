//! `microseg sweep`: delete what crashed or kept runs left behind: only resources that
//! carry a run tag.

use crate::out::{errln, outln};
use microseg_harness::ledger;
use microseg_harness::sweep::{self, Selection};
use microseg_harness::target::{Target, TargetKind};
use microseg_harness::traffic;

use super::{start_target, target_options};
use crate::args::{SweepArgs, TargetArgs};
use crate::exit::CliError;

pub(crate) async fn sweep(args: &SweepArgs, quiet: bool) -> Result<(), CliError> {
    // (clap's `requires` counts a flag's default as given, so this is checked here.)
    if args.yes_delete_all_runs && !args.all {
        return Err(CliError::Usage("--yes-delete-all-runs confirms --all, and only --all".into()));
    }
    if args.abandoned {
        return sweep_abandoned(args, quiet).await;
    }
    let selection = match (&args.run_id, args.older_than, args.all) {
        (Some(id), _, _) => Selection::Run(id.clone()),
        (None, Some(age), _) => Selection::OlderThan(age),
        (None, None, true) => Selection::All,
        (None, None, false) => {
            return Err(CliError::Usage(
                "say what to sweep: --run-id <id>, --older-than <age>, --abandoned or --all".into(),
            ));
        }
    };
    // Decided before the target starts: no call of any kind without the confirmation.
    if selection == Selection::All && args.target.target == TargetKind::Aws && !args.yes_delete_all_runs {
        return Err(CliError::Usage(
            "refusing `sweep --all` on a real account without --yes-delete-all-runs: it deletes every microseg \
             run in the account and region, those of other people and of jobs still running included\n(hint: \
             --older-than <age> or --run-id <id> takes only what is stale or yours; add --yes-delete-all-runs if \
             you mean every run)"
                .into(),
        ));
    }
    let target = sweep_target(&args.target, quiet).await?;
    let result = async {
        let report = sweep::sweep(&target.clients(), &selection)
            .await
            .map_err(|e| CliError::TargetUnavailable(e.to_string()))?;
        outln!(
            "swept {} run(s): {} resource(s) found, {} left",
            report.runs.len(),
            report.found.len(),
            report.leftovers.len()
        );
        for (item, outcome) in &report.teardown.outcomes {
            outln!("  {item}: {outcome:?}");
        }
        for l in &report.leftovers {
            outln!("  LEFT: {l}");
        }
        if report.leftovers.is_empty() { Ok(()) } else { Err(CliError::TeardownIncomplete) }
    }
    .await;
    target.stop().await;
    result
}

/// The target a sweep lists and deletes on; it needs no divergence probe.
async fn sweep_target(args: &TargetArgs, quiet: bool) -> Result<Target, CliError> {
    let mut opts = target_options(args);
    opts.probe = false;
    start_target(&opts, quiet).await
}

/// Sweeps each run whose ledger a killed process left (unlocked, not torn down), and
/// marks the ledger done once the run's inventory is empty. Every run is tried; the last
/// failure decides the exit code.
async fn sweep_abandoned(args: &SweepArgs, quiet: bool) -> Result<(), CliError> {
    // A microseg killed during `run --traffic` leaves instance containers and localemu's
    // networks on the engine (its localemu died with it): removed here unless a localemu
    // with containers is running now.
    if let Some(removed) = tokio::task::spawn_blocking(traffic::sweep_docker_if_idle).await.unwrap_or_default() {
        for r in &removed {
            outln!("removed {r}, left by a killed run --traffic");
        }
    }
    // The emulator of a SIGKILLed microseg died with it; its scratch dir did not.
    for dir in microseg_harness::target::remove_orphaned_scratch(&std::env::temp_dir()) {
        outln!("removed {}, the scratch dir of an emulator whose microseg was killed", dir.display());
    }
    let ledgers = ledger::abandoned(&ledger::runs_dir());
    if ledgers.is_empty() {
        outln!("no abandoned ledgers in {}", ledger::runs_dir().display());
        return Ok(());
    }
    let target = sweep_target(&args.target, quiet).await?;
    let clients = target.clients();
    let mut result = Ok(());
    for (path, data) in ledgers {
        match sweep::sweep(&clients, &Selection::Run(data.run_id.clone())).await {
            Ok(r) if r.leftovers.is_empty() => {
                outln!("{}: {} resource(s) swept, none left", data.run_id, r.found.len());
                if let Err(e) = ledger::mark_file_torn_down(&path) {
                    errln!("warning: {e}");
                }
            }
            Ok(r) => {
                outln!("{}: {} resource(s) left", data.run_id, r.leftovers.len());
                result = Err(CliError::TeardownIncomplete);
            }
            Err(e) => {
                // Said here, by run, so the other runs are still tried.
                errln!("error: {}: {e}", data.run_id);
                result = Err(CliError::TargetUnavailableShown);
            }
        }
    }
    target.stop().await;
    result
}
