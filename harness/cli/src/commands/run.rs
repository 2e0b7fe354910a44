//! `microseg run`: build a scenario, check it, tear it down, and prove nothing is left.

use crate::out::{errln, outln};
use microseg_harness::report;
use microseg_harness::run::{self, RunError, RunOptions, RunTarget};

use super::{count_resources, load_plan, print_report, progress, start_target, target_options};
use crate::args::RunArgs;
use crate::exit::CliError;
use crate::render::Report;
use crate::terminal;

pub(crate) async fn run(args: &RunArgs, quiet: bool) -> Result<(), CliError> {
    // Everything the user gave was checked (by clap, and the spec here) before any API call.
    let plan = load_plan(&args.spec)?;
    if args.dry_run {
        outln!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
        progress(
            quiet,
            format!(
                "dry run: {} resources planned for scenario {}; nothing was called",
                count_resources(&plan),
                plan.scenario
            ),
        );
        return Ok(());
    }
    let target = start_target(&target_options(&args.target), quiet).await?;
    progress(quiet, format!("▸ building {} ({}), checking, tearing down…", plan.scenario, plan.variant));
    if !quiet {
        terminal::start_spinner("build");
    }
    let run_opts = RunOptions {
        keep: args.keep,
        fault: args.inject,
        job: args.job.clone(),
        earlier_runs: args.earlier_runs.into(),
        role_boundary: args.role_boundary.clone(),
        ..Default::default()
    };
    let result = run::run(&plan, &RunTarget::from(&target), &run_opts).await;
    terminal::stop_spinner();
    if let Some(log) = terminal::log_file() {
        progress(quiet, format!("log: {}", log.display()));
    }
    let result = match result {
        Err(RunError::TeardownAbandoned { run_id }) => {
            errln!("second Ctrl-C: stopping now; finish with `microseg sweep --run-id {run_id}`");
            // At once, as a second Ctrl-C promises: no emulator shutdown and no waiting on
            // the runtime (the reaper's exit hook still stops what we started).
            std::process::exit(CliError::Interrupted.exit_code());
        }
        Err(e) => Err(CliError::TargetUnavailable(e.to_string())),
        Ok(report) => {
            for run in &report.swept_earlier_runs {
                progress(
                    quiet,
                    format!(
                        "swept earlier run {run} of job {} before this one",
                        args.job.as_ref().map(|j| j.as_str()).unwrap_or_default()
                    ),
                );
            }
            if let Some(path) = &args.report_json
                && let Err(e) = std::fs::write(path, report::json(&report))
            {
                // The report on stdout still comes; the exit code is the run's.
                errln!("error: cannot write {}: {e}", path.display());
            }
            print_report(Report::Run { report: &report, plan: &plan }, args.format)
        }
    };
    if args.keep && result.is_ok() && target.endpoint.is_some() && !target.is_aws() {
        progress(
            quiet,
            "note: the emulator stops with this process; --keep is useful with --target endpoint=<url> or aws",
        );
    }
    target.stop().await;
    result
}
