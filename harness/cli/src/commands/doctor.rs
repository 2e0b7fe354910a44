//! `microseg doctor`: which targets can serve here, their versions and divergences;
//! with `--target`, that target started, probed and put through the preflight
//! (`microseg_harness::preflight`) for the scenarios given: quotas and permissions,
//! read-only.

use crate::out::outln;
use std::time::Instant;

use microseg_harness::capabilities::Divergence;
use microseg_harness::fidelity;
use microseg_harness::plan::Plan;
use microseg_harness::preflight::{self, PreflightInput, PreflightReport, Status};
use microseg_harness::spec;
use microseg_harness::target::{self, Target, TargetKind, python};

use super::{progress, target_options};
use crate::args::DoctorArgs;
use crate::exit::CliError;

pub(crate) async fn doctor(args: &DoctorArgs, quiet: bool) -> Result<(), CliError> {
    if args.all {
        return matrix(args, quiet).await;
    }
    // Bad scenario names are usage errors, before any target starts.
    let plans = plans(args)?;
    outln!("microseg {} doctor", env!("CARGO_PKG_VERSION"));
    let target_args = &args.target;
    // On a real account, the local targets are beside the point.
    if target_args.target != TargetKind::Aws {
        local_targets(args)?;
    }
    if target_args.target == TargetKind::Auto {
        return Ok(());
    }
    let mut opts = target_options(target_args);
    let started = Instant::now();
    progress(quiet, format!("▸ starting target {}…", opts.kind));
    // An emulator's probe deletes what it makes before the preflight counts anything.
    opts.probe = opts.kind != TargetKind::Aws;
    let t = match Target::start(&opts).await {
        Ok(t) => t,
        Err(e) => {
            // Part of doctor's table, on stdout, rather than an error line.
            outln!("\n{} cannot serve: {e}", opts.kind);
            return Err(CliError::TargetUnavailableShown);
        }
    };
    outln!("\nstarted {} in {:.1}s", t.description, started.elapsed().as_secs_f64());
    if !t.is_aws() {
        let ids: Vec<&str> = t.capabilities.divergences.iter().map(|d| d.id()).collect();
        outln!("divergences: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
    }
    let input = PreflightInput {
        emulator: t.capabilities.emulator.clone(),
        allow_accounts: target_args.allow_account.clone(),
        allow_regions: target_args.allow_region.clone(),
        role_boundary: args.role_boundary.clone(),
    };
    progress(quiet, "▸ preflight: credentials, quotas, permissions (read-only)…");
    let report = preflight::preflight(&t.clients(), &input, &plans).await;
    t.stop().await;
    render(&report, input.emulator.as_deref())?;
    if report.passed() { Ok(()) } else { Err(CliError::TargetUnavailableShown) }
}

/// `doctor --all`: every emulator target available here, started, fully probed and
/// stopped one after another, then the fidelity matrix. Exits non-zero when a target
/// that should be available could not serve.
async fn matrix(args: &DoctorArgs, quiet: bool) -> Result<(), CliError> {
    outln!("microseg {} doctor --all", env!("CARGO_PKG_VERSION"));
    let (available, missing) = fidelity::available_emulators();
    for (kind, why) in &missing {
        outln!("{:<21} not available here: {}", format!("{kind}:"), why.lines().next().unwrap_or_default());
    }
    let opts = target_options(&args.target);
    let (mut columns, mut failed) = (Vec::new(), Vec::new());
    for kind in available {
        progress(quiet, format!("▸ starting {kind} and probing it…"));
        match fidelity::measure(&kind, &opts).await {
            Ok(c) => {
                outln!(
                    "{:<21} {}; venv install {}, ready in {:.1}s, full probe {:.1}s",
                    format!("{kind}:"),
                    c.description,
                    if c.venv_install.is_zero() {
                        "cached".to_string()
                    } else {
                        format!("{:.0}s", c.venv_install.as_secs_f64())
                    },
                    c.start_to_ready.as_secs_f64(),
                    c.probe_time.as_secs_f64()
                );
                columns.push(c);
            }
            Err(e) => {
                outln!("{:<21} cannot serve: {e}", format!("{kind}:"));
                failed.push(kind);
            }
        }
    }
    outln!(
        "
{}",
        fidelity::render(&columns)
    );
    let nowhere = fidelity::nowhere_as_aws(&columns);
    if !nowhere.is_empty() {
        outln!(
            "no emulator here behaves as AWS in: {} (checks that depend on these are decided only on AWS, or in the replay tests)",
            nowhere.join(", ")
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        outln!("verdict: {} could not serve", failed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
        Err(CliError::TargetUnavailableShown)
    }
}

/// The plans the preflight is for: `--all-scenarios`, each `--scenario`, or the recipe.
fn plans(args: &DoctorArgs) -> Result<Vec<Plan>, CliError> {
    let names: Vec<String> = if args.all_scenarios {
        spec::BUILTIN_SCENARIOS.iter().map(|(n, _)| n.to_string()).collect()
    } else if args.scenarios.is_empty() {
        vec!["recipe".into()]
    } else {
        args.scenarios.clone()
    };
    names
        .iter()
        .map(|n| {
            let (s, source) = spec::load(n).map_err(|e| CliError::Spec(e.to_string()))?;
            Plan::from_spec(&s, &source).map_err(|e| CliError::Spec(e.to_string()))
        })
        .collect()
}

fn local_targets(args: &DoctorArgs) -> Result<(), CliError> {
    match python::find_python() {
        Ok(p) => {
            let venv = python::venv_dir(python::REQUIREMENTS, &p);
            let state = if venv.join(".ready").exists() {
                "cached"
            } else {
                "not built yet (first start installs it, ~1-2 min)"
            };
            outln!(
                "localstack-host:      Python {}.{} at {}; venv {} ({state})",
                p.version.0,
                p.version.1,
                p.path.display(),
                venv.display()
            );
        }
        Err(e) => outln!("localstack-host:      unavailable: {e}"),
    }
    for (name, spec) in [("moto", python::MOTO), ("localemu", python::LOCALEMU)] {
        match python::find_python_for(&spec) {
            Ok(p) => {
                let venv = python::venv_dir_for(&spec, &p);
                let state =
                    if venv.join(".ready").exists() { "cached" } else { "not built yet (first start installs it)" };
                outln!(
                    "{:<21} Python {}.{} at {}; venv {} ({state})",
                    format!("{name}:"),
                    p.version.0,
                    p.version.1,
                    p.path.display(),
                    venv.display()
                );
            }
            Err(e) => {
                outln!("{:<21} unavailable: {}", format!("{name}:"), e.to_string().lines().next().unwrap_or_default())
            }
        }
    }
    let image = target::container::configured_image();
    match target::docker_status() {
        Ok(v) if target::container::image_present(&image) => {
            outln!("localstack-container: Docker {v}; image {image} present")
        }
        Ok(v) => outln!(
            "localstack-container: Docker {v}; image {image} NOT present (no registry here: run localstack/build-image.sh and set MICROSEG_LOCALSTACK_IMAGE=microseg/localstack:4.14.0)"
        ),
        Err(e) => outln!("localstack-container: unavailable: {e}"),
    }
    let (kind, why) = target::choose_auto();
    outln!("auto:                 would use {kind} ({why})");
    outln!(
        "aws:                  needs --allow-account <id> and --allow-region <region>; credentials from the standard chain{}",
        args.target.profile.as_ref().map(|p| format!(" (profile {p})")).unwrap_or_default()
    );
    outln!("\nKnown divergences of emulators (probed ones are confirmed at start):");
    for d in Divergence::ALL {
        outln!("  {:<34} {}{}", d.id(), d.description(), if d.probed() { " [probed]" } else { "" });
    }
    Ok(())
}

/// The preflight as a table: one line per check, a continuation line per hint.
fn render(report: &PreflightReport, emulator: Option<&str>) -> Result<(), CliError> {
    outln!(
        "\npreflight for {} on {} {} in {}",
        report.scenarios.join(", "),
        emulator.unwrap_or("AWS account"),
        report.account.as_deref().unwrap_or("?"),
        report.region
    );
    outln!("{:<12} {:<58} {:<12} DETAIL", "AREA", "CHECK", "STATUS");
    for c in &report.checks {
        let mut lines = c.detail.lines();
        outln!(
            "{:<12} {:<58} {:<12} {}",
            c.area.to_string(),
            c.subject,
            c.status.to_string(),
            lines.next().unwrap_or("")
        );
        for more in lines {
            outln!("{:<84} {more}", "");
        }
    }
    let total: usize = report.calls.values().sum();
    let changed: Vec<&String> =
        report.calls.keys().filter(|op| microseg_harness::permissions::is_mutating(op)).collect();
    outln!(
        "calls: {total}, {}",
        if changed.is_empty() { "all of them reads".to_string() } else { format!("CHANGES: {changed:?}") }
    );
    let problems: Vec<String> = report.problems().map(|c| format!("{} {} ({})", c.area, c.subject, c.status)).collect();
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let (unanswered, not_enforced) = (count(Status::Unanswered), count(Status::NotEnforced));
    if problems.is_empty() {
        let caveats: Vec<String> =
            [(unanswered, "this target could not answer"), (not_enforced, "it does not enforce")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} check(s) {what}"))
                .collect();
        outln!(
            "verdict: READY{}",
            if caveats.is_empty() { String::new() } else { format!(" ({}, named above)", caveats.join("; ")) }
        );
    } else {
        outln!("verdict: NOT READY: {}", problems.join("; "));
    }
    Ok(())
}
