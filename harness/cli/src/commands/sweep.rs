//! `microseg sweep`: delete what crashed or kept runs left behind.

use microseg_harness::run_id::RunId;
use microseg_harness::sweep::{self, Selection};

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) async fn sweep_cmd(args: &SweepArgs, quiet: bool) -> i32 {
    if args.abandoned {
        return sweep_abandoned(args, quiet).await;
    }
    let selection = match (&args.run_id, &args.older_than, args.all) {
        (Some(id), _, _) => match RunId::parse(id) {
            Ok(id) => Selection::Run(id),
            Err(e) => {
                eprintln!("error: --run-id: {e}");
                return exit::USAGE;
            }
        },
        (None, Some(age), _) => match humantime::parse_duration(age) {
            Ok(d) => Selection::OlderThan(d),
            Err(e) => {
                eprintln!("error: --older-than {age:?}: {e} (e.g. 6h, 30m)");
                return exit::USAGE;
            }
        },
        (None, None, true) => Selection::All,
        (None, None, false) => {
            eprintln!("error: say what to sweep: --run-id <id>, --older-than <age>, --abandoned or --all");
            return exit::USAGE;
        }
    };
    let target = match sweep_target(&args.target, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let clients = target.clients();
    let code = match sweep::sweep(&clients, &selection).await {
        Ok(report) => {
            println!(
                "swept {} run(s): {} resource(s) found, {} left",
                report.runs.len(),
                report.found.len(),
                report.leftovers.len()
            );
            for (item, outcome) in &report.teardown.outcomes {
                println!("  {item}: {outcome:?}");
            }
            for l in &report.leftovers {
                println!("  LEFT: {l}");
            }
            if report.leftovers.is_empty() { exit::PASS } else { exit::TEARDOWN_INCOMPLETE }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    };
    target.stop().await;
    code
}

/// Sweeps each run whose ledger a killed process left (unlocked, not torn down), and
/// marks the ledger done once the run's inventory is empty.
pub(crate) async fn sweep_abandoned(args: &SweepArgs, quiet: bool) -> i32 {
    let ledgers = microseg_harness::ledger::abandoned(&microseg_harness::ledger::runs_dir());
    if ledgers.is_empty() {
        println!("no abandoned ledgers in {}", microseg_harness::ledger::runs_dir().display());
        return exit::PASS;
    }
    let target = match sweep_target(&args.target, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let clients = target.clients();
    let mut code = exit::PASS;
    for (path, data) in ledgers {
        match sweep::sweep(&clients, &Selection::Run(data.run_id.clone())).await {
            Ok(r) if r.leftovers.is_empty() => {
                println!("{}: {} resource(s) swept, none left", data.run_id, r.found.len());
                if let Err(e) = microseg_harness::ledger::mark_file_torn_down(&path) {
                    eprintln!("warning: {e}");
                }
            }
            Ok(r) => {
                println!("{}: {} resource(s) left", data.run_id, r.leftovers.len());
                code = exit::TEARDOWN_INCOMPLETE;
            }
            Err(e) => {
                eprintln!("error: {}: {e}", data.run_id);
                code = exit::TARGET_UNAVAILABLE;
            }
        }
    }
    target.stop().await;
    code
}
