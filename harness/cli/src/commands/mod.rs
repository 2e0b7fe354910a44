//! The subcommands, one module each, and what they share: loading a spec, starting a
//! target, progress lines.

mod bench;
mod doctor;
mod plan;
mod run;
mod snapshot;
mod sweep;
mod validate;

use std::time::Instant;

use microseg_harness::build::{Fault, Wave};
use microseg_harness::plan::Plan;
use microseg_harness::spec;
use microseg_harness::target::{Target, TargetKind, TargetOptions};

use crate::args::*;
use crate::exit;

/// Runs a parsed command line; returns the exit code.
pub async fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Plan(args) => plan::plan_cmd(&args),
        Command::Run(args) => run::run_cmd(&args, cli.quiet).await,
        Command::Sweep(args) => sweep::sweep_cmd(&args, cli.quiet).await,
        Command::Validate(args) => validate::validate_cmd(&args, Format::Text, cli.quiet).await,
        Command::Report(args) => validate::validate_cmd(&args, Format::Mermaid, cli.quiet).await,
        Command::Bench(args) => bench::bench_cmd(&args, cli.quiet).await,
        Command::Snapshot(args) => snapshot::snapshot_cmd(&args, cli.quiet).await,
        Command::Doctor(args) => doctor::doctor_cmd(&args).await,
    }
}

/// A usage or input error: printed, exit code 2, nothing called.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

pub(crate) fn progress(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("{}", msg.as_ref());
    }
}

/// Loads and validates a spec; every problem is reported at once.
pub fn load_plan(args: &SpecArgs) -> Result<Plan, String> {
    let loaded = match (&args.spec, args.variant.as_str()) {
        (Some(path), _) => spec::load_file(path),
        (None, "hardened") => spec::load(&format!("{}-hardened", args.scenario)),
        (None, _) => spec::load(&args.scenario),
    };
    let (spec, source) = loaded.map_err(|e| e.to_string())?;
    Plan::from_spec(&spec, &source).map_err(|e| e.to_string())
}

pub(crate) fn target_options(args: &TargetArgs) -> Result<TargetOptions, UsageError> {
    let kind: TargetKind = args.target.parse().map_err(|e| UsageError(format!("--target: {e}")))?;
    for a in &args.allow_account {
        if a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()) {
            return Err(UsageError(format!("--allow-account {a:?}: an AWS account id is 12 digits")));
        }
    }
    let mut opts = TargetOptions::new(kind);
    opts.region = args.region.clone();
    opts.profile = args.profile.clone();
    opts.allow_accounts = args.allow_account.clone();
    Ok(opts)
}

pub(crate) fn parse_inject(s: &str) -> Result<Fault, UsageError> {
    let (mode, wave) =
        s.split_once('@').ok_or_else(|| UsageError(format!("--inject {s:?}: use error@<wave> or panic@<wave>")))?;
    let wave =
        Wave::parse(wave).ok_or_else(|| UsageError(format!("--inject {s:?}: wave is foundation, network or rules")))?;
    match mode {
        "error" => Ok(Fault::ErrorAfter(wave)),
        "panic" => Ok(Fault::PanicAfter(wave)),
        "hang" => Ok(Fault::HangAfter(wave)),
        _ => Err(UsageError(format!("--inject {s:?}: mode is error, panic or hang"))),
    }
}

pub(crate) async fn start_target(opts: &TargetOptions, quiet: bool) -> Result<Target, i32> {
    let started = Instant::now();
    progress(quiet, format!("▸ starting target {}…", opts.kind));
    match Target::start(opts).await {
        Ok(t) => {
            if let Some(why) = &t.chosen_because {
                progress(quiet, format!("  auto chose {} because {why}", t.kind));
            }
            progress(quiet, format!("✓ {} ready in {:.1}s", t.description, started.elapsed().as_secs_f64()));
            Ok(t)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::TARGET_UNAVAILABLE)
        }
    }
}

pub(crate) fn count_resources(plan: &Plan) -> usize {
    1 + plan.internet_gateway.iter().count()
        + plan.zones.len()
        + plan.nacls.iter().map(|n| 1 + n.entries.len()).sum::<usize>()
        + plan.security_groups.iter().map(|g| 1 + g.rules.len()).sum::<usize>()
        + plan.route_tables.iter().map(|t| 1 + t.routes.len() + t.zones.len()).sum::<usize>()
        + plan.flow_log.as_ref().map_or(0, |_| 4)
        + plan.alarm.as_ref().map_or(0, |_| 2)
}

/// `validate` and `snapshot` read what exists: starting a fresh emulator would read an
/// empty account.
pub(crate) fn existing_target(args: &TargetArgs) -> Result<TargetOptions, UsageError> {
    let mut opts = target_options(args)?;
    match opts.kind {
        TargetKind::Endpoint(_) | TargetKind::Aws => {
            opts.probe = !matches!(opts.kind, TargetKind::Aws);
            Ok(opts)
        }
        _ => Err(UsageError(format!(
            "--target {}: this command reads an existing deployment; use --target endpoint=<url> or --target aws",
            args.target
        ))),
    }
}

pub(crate) fn split_pair<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str), UsageError> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| UsageError(format!("{flag} {s:?}: expected KEY=VALUE")))
}

/// The target a sweep lists and deletes on; it needs no divergence probe.
pub(crate) async fn sweep_target(args: &TargetArgs, quiet: bool) -> Result<Target, i32> {
    let mut opts = target_options(args).map_err(|e| {
        eprintln!("error: {}", e.0);
        exit::USAGE
    })?;
    opts.probe = false;
    start_target(&opts, quiet).await
}
