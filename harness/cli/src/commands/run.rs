//! `microseg run`: build a scenario, check it, tear it down, and prove nothing is left.

use microseg_harness::report;
use microseg_harness::run::{self, RunError, RunOptions, RunTarget};

use super::{count_resources, load_plan, progress, start_target, target_options};
use crate::args::{Format, RunArgs};
use crate::exit::CliError;
use crate::terminal;

pub(crate) async fn run(args: &RunArgs, quiet: bool) -> Result<(), CliError> {
    // Everything the user gave was checked (by clap, and the spec here) before any API call.
    let plan = load_plan(&args.spec)?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
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
    let run_opts = RunOptions { keep: args.keep, fault: args.inject, ..Default::default() };
    let result = run::run(&plan, &RunTarget::from(&target), &run_opts).await;
    terminal::stop_spinner();
    if let Some(log) = terminal::log_file() {
        progress(quiet, format!("log: {}", log.display()));
    }
    let result = match result {
        Err(RunError::TeardownAbandoned { run_id }) => {
            eprintln!("second Ctrl-C: stopping now; finish with `microseg sweep --run-id {run_id}`");
            // At once, as a second Ctrl-C promises: no emulator shutdown and no waiting on
            // the runtime (the reaper's exit hook still stops what we started).
            std::process::exit(CliError::Interrupted.exit_code());
        }
        Err(e) => Err(CliError::TargetUnavailable(e.to_string())),
        Ok(report) => {
            if let Some(path) = &args.report_json
                && let Err(e) = std::fs::write(path, report::json(&report))
            {
                // The report on stdout still comes; the exit code is the run's.
                eprintln!("error: cannot write {}: {e}", path.display());
            }
            match args.format {
                Format::Text => {
                    print!("{}", report::text_with(&report, terminal::paint_status))
                }
                Format::Json => println!("{}", report::json(&report)),
                Format::Junit => println!("{}", report::junit(&report.scenario, &report.checks)),
                Format::Sarif => {
                    println!("{}", report::sarif(&report.checks, &plan.spec_file.display().to_string()))
                }
                Format::Mermaid | Format::Html => {
                    // Drawn from what was observed before teardown.
                    let observed = report.observed.clone().unwrap_or_default();
                    let t = microseg_harness::topology::topology(&plan, &observed, &report.bindings);
                    if args.format == Format::Mermaid {
                        print!("{}", microseg_harness::topology::mermaid(&t, report.reachability.as_ref()));
                    } else {
                        let title =
                            format!("microseg run {} · {} ({})", report.run_id, report.scenario, report.variant);
                        print!(
                            "{}",
                            microseg_harness::topology::html(&title, &t, report.reachability.as_ref(), &report.checks)
                        );
                    }
                }
                Format::Markdown => print!(
                    "{}",
                    report::markdown(
                        &format!("microseg run {} · {} ({})", report.run_id, report.scenario, report.variant),
                        &report.checks,
                        report.reachability.as_ref().map(|r| &r.matrix)
                    )
                ),
            }
            CliError::from_verdict(report.verdict())
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
