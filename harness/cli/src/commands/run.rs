//! `microseg run`: build a scenario, check it, tear it down, and prove nothing is left.

use crate::out::{errln, outln};
use microseg_harness::capabilities::Divergence;
use microseg_harness::checks::Status;
use microseg_harness::differential::{self, Model};
use microseg_harness::fidelity;
use microseg_harness::plan::Plan;
use microseg_harness::report;
use microseg_harness::run::{self, RunError, RunOptions, RunTarget};
use microseg_harness::target::TargetKind;
use microseg_harness::traffic;
use microseg_harness::verdict::Verdict;

use super::{count_resources, load_plan, print_report, progress, start_target, target_options};
use crate::args::RunArgs;
use crate::exit::CliError;
use crate::render::{Format, Report};
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
    if args.target.target == TargetKind::AllEmulators {
        if args.traffic {
            return Err(CliError::Usage(
                "--traffic needs one target, localemu, not all-emulators\n(hint: microseg run --target localemu --traffic)"
                    .into(),
            ));
        }
        return differential(args, &plan, quiet).await;
    }
    let mut target_opts = target_options(&args.target);
    if args.traffic {
        if args.target.target != TargetKind::LocalEmu {
            return Err(CliError::Usage(format!(
                "--traffic needs --target localemu, not {}: no other target runs instances as containers and enforces \
                 their groups and NACLs\n(hint: microseg run --target localemu --traffic)",
                args.target.target
            )));
        }
        if args.keep {
            return Err(CliError::Usage(
                "--traffic removes its instances before the teardown and takes no --keep".into(),
            ));
        }
        // Docker, NET_ADMIN and the image before the emulator: a missing one is said at once.
        progress(quiet, "▸ checking Docker, NET_ADMIN and the instance image for real traffic…");
        match traffic::preflight().await {
            Ok(Some(built)) => progress(quiet, format!("  built {} in {:.0}s", traffic::IMAGE, built.as_secs_f64())),
            Ok(None) => {}
            Err(e) => return Err(CliError::TargetUnavailable(e.to_string())),
        }
        target_opts.localemu_containers = true;
    }
    let target = start_target(&target_opts, quiet).await?;
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
        traffic: args.traffic,
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

/// How many disagreements are printed; the count says how many more there are.
const SHOWN: usize = 40;

/// `run --target all-emulators`: the scenario built, checked and torn down on every
/// emulator target available here, one after another; each run's verdict; then every
/// place where the emulators' observed models of the same deployment disagree, ids and
/// the like taken out (`microseg_harness::differential`). A disagreement is reported as
/// a finding: at most one of the emulators can be right.
async fn differential(args: &RunArgs, plan: &Plan, quiet: bool) -> Result<(), CliError> {
    if args.keep || args.inject.is_some() || args.job.is_some() || args.report_json.is_some() {
        return Err(CliError::Usage(
            "--target all-emulators runs the scenario once on each emulator and takes no --keep, --inject, --job or \
             --report-json\n(hint: name one target for those, e.g. --target moto)"
                .into(),
        ));
    }
    if args.format != Format::Text {
        return Err(CliError::Usage(format!(
            "--target all-emulators prints text only, not --format {:?}\n(hint: name one target for a report in \
             another format, e.g. --target moto)",
            args.format
        )));
    }
    let (available, missing) = fidelity::available_emulators();
    for (kind, why) in &missing {
        progress(quiet, format!("{kind}: not available here: {}", why.lines().next().unwrap_or_default()));
    }
    if available.len() < 2 {
        return Err(CliError::TargetUnavailable(format!(
            "a differential run needs two emulators or more; available here: {}",
            if available.is_empty() {
                "none".to_string()
            } else {
                available.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let mut runs = Vec::new();
    for kind in &available {
        let mut opts = target_options(&args.target);
        opts.kind = kind.clone();
        let target = match start_target(&opts, quiet).await {
            Ok(t) => t,
            Err(e) => {
                runs.push((kind.clone(), Err(e.to_string())));
                continue;
            }
        };
        progress(quiet, format!("▸ building {} ({}) on {kind}, checking, tearing down…", plan.scenario, plan.variant));
        let result = run::run(plan, &RunTarget::from(&target), &RunOptions::default()).await;
        target.stop().await;
        runs.push((kind.clone(), result.map_err(|e| e.to_string())));
    }
    outln!("differential run of {} ({}) on {} emulator(s)", plan.scenario, plan.variant, runs.len());
    outln!(
        "{:<22} {:<20} {:>6} {:>6} {:>10} {:>7}  DIVERGENCES",
        "TARGET",
        "VERDICT",
        "PASS",
        "FAIL",
        "DIVERGENCE",
        "SKIPPED"
    );
    let mut worst = Verdict::Pass;
    let mut models = Vec::new();
    for (kind, result) in &runs {
        match result {
            Ok(report) => {
                let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
                let verdict = report.verdict();
                if verdict != Verdict::Pass && worst == Verdict::Pass {
                    worst = verdict;
                }
                let ids: Vec<&str> = report.capabilities.divergences.iter().map(|d| d.id()).collect();
                outln!(
                    "{:<22} {:<20} {:>6} {:>6} {:>10} {:>7}  {}",
                    kind.to_string(),
                    format!("{verdict:?}"),
                    count(Status::Pass),
                    count(Status::Fail),
                    count(Status::Divergence),
                    count(Status::Skipped),
                    ids.join(", ")
                );
                for c in report.checks.iter().filter(|c| c.status == Status::Fail) {
                    for f in &c.findings {
                        outln!("    {} {} {}: expected {}, found {}", c.id, f.id, f.resource, f.expected, f.found);
                    }
                }
                if let Some(observed) = &report.observed {
                    let value = differential::normalise(observed, &report.bindings, &report.run_id);
                    models.push(Model { target: kind.to_string(), value });
                }
            }
            Err(e) => {
                worst = Verdict::Findings;
                outln!("{:<22} could not run: {}", kind.to_string(), e.lines().next().unwrap_or_default());
            }
        }
    }
    // What one emulator cannot serve at all (a named divergence) is compared on none: its
    // absence there is the divergence, not a disagreement.
    let no_alarms: Vec<String> = runs
        .iter()
        .filter_map(|(kind, r)| r.as_ref().ok().map(|r| (kind, r)))
        .filter(|(_, r)| r.capabilities.has(Divergence::CloudwatchNoCbor))
        .map(|(kind, _)| kind.to_string())
        .collect();
    if !no_alarms.is_empty() {
        for m in &mut models {
            if let Some(top) = m.value.as_object_mut() {
                top.remove("alarms");
            }
        }
        outln!("\nalarms not compared: {} cannot serve them ({})", no_alarms.join(", "), Divergence::CloudwatchNoCbor);
    }
    let disagreements = differential::compare(&models);
    if models.len() < 2 {
        outln!("\nfewer than two emulators observed the deployment: nothing to compare");
    } else if disagreements.is_empty() {
        outln!(
            "\nthe {} emulators agree on the observed deployment (ids, the run id, the account and the creation time taken out)",
            models.len()
        );
    } else {
        outln!(
            "\nthe emulators disagree about the same deployment in {} place(s); each is an emulator bug that could hide a \
             real failure:",
            disagreements.len()
        );
        for d in disagreements.iter().take(SHOWN) {
            outln!("  {d}");
        }
        if disagreements.len() > SHOWN {
            outln!("  … and {} more", disagreements.len() - SHOWN);
        }
        if worst == Verdict::Pass {
            worst = Verdict::Findings;
        }
    }
    outln!("verdict: {worst:?}");
    CliError::from_verdict(worst)
}
