//! `microseg run`: build, check, tear down, prove nothing is left.

use microseg_harness::run::{self, RunOptions, RunTarget};

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) async fn run_cmd(args: &RunArgs, quiet: bool) -> i32 {
    // Everything the user gave is checked before any API call.
    let plan = match load_plan(&args.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let (opts, fault) = match (target_options(&args.target), args.inject.as_deref().map(parse_inject).transpose()) {
        (Ok(o), Ok(f)) => (o, f),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {}", e.0);
            return exit::USAGE;
        }
    };
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
        return exit::PASS;
    }
    let target = match start_target(&opts, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    progress(quiet, format!("▸ building {} ({}), checking, tearing down…", plan.scenario, plan.variant));
    if !quiet {
        crate::terminal::start_spinner("build");
    }
    let run_opts = RunOptions { keep: args.keep, fault, ..Default::default() };
    let result = run::run(&plan, &RunTarget::from(&target), &run_opts).await;
    crate::terminal::stop_spinner();
    if let Some(log) = crate::terminal::log_file() {
        progress(quiet, format!("log: {}", log.display()));
    }
    let code = match result {
        Err(run::RunError::TeardownAbandoned { run_id }) => {
            eprintln!("second Ctrl-C: stopping now; finish with `microseg sweep --run-id {run_id}`");
            // At once, as a second Ctrl-C promises: no emulator shutdown and no waiting on
            // the runtime here (the reaper's exit hook still stops what we started).
            std::process::exit(exit::INTERRUPTED);
        }
        Ok(report) => {
            if let Some(path) = &args.report_json
                && let Err(e) = std::fs::write(path, microseg_harness::report::json(&report))
            {
                eprintln!("error: cannot write {}: {e}", path.display());
            }
            match args.format {
                Format::Text => {
                    print!("{}", microseg_harness::report::text_with(&report, crate::terminal::paint_status))
                }
                Format::Json => println!("{}", microseg_harness::report::json(&report)),
                Format::Junit => println!("{}", microseg_harness::report::junit(&report.scenario, &report.checks)),
                Format::Sarif => {
                    println!(
                        "{}",
                        microseg_harness::report::sarif(&report.checks, &plan.spec_file.display().to_string())
                    )
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
                    microseg_harness::report::markdown(
                        &format!("microseg run {} · {} ({})", report.run_id, report.scenario, report.variant),
                        &report.checks,
                        report.reachability.as_ref().map(|r| &r.matrix)
                    )
                ),
            }
            report.exit_code()
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    };
    if args.keep && code == exit::PASS && target.endpoint.is_some() && !target.is_aws() {
        progress(
            quiet,
            "note: the emulator stops with this process; --keep is useful with --target endpoint=<url> or aws",
        );
    }
    target.stop().await;
    code
}
