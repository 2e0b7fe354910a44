//! The subcommands, one module each, and what they share: loading a spec, starting a
//! target, progress lines. Each returns `Result<(), CliError>`; `main` turns that into
//! the exit code.

mod bench;
mod doctor;
mod emulator;
mod plan;
mod run;
mod snapshot;
mod sweep;
mod validate;

use crate::out::{errln, out};
use std::time::Instant;

use microseg_harness::plan::Plan;
use microseg_harness::spec::{self, SpecSource};
use microseg_harness::target::{Target, TargetKind, TargetOptions};

use crate::args::{Cli, Command, SpecArgs, TargetArgs, Variant};
use crate::exit::CliError;
use crate::render::{Format, Report};

/// Runs a parsed command line.
pub(crate) async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Plan(args) => plan::plan(&args),
        Command::Run(args) => run::run(&args, quiet).await,
        Command::Sweep(args) => sweep::sweep(&args, quiet).await,
        Command::Validate(args) => validate::validate(&args, Format::Text, quiet).await,
        Command::Report(args) => validate::validate(&args, Format::Mermaid, quiet).await,
        Command::Bench(args) => bench::bench(&args, quiet).await,
        Command::Snapshot(args) => snapshot::snapshot(&args, quiet).await,
        Command::Doctor(args) => doctor::doctor(&args, quiet).await,
        Command::Emulator { action } => emulator::emulator(&action, quiet).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "microseg", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map_err(|e| CliError::Output(format!("rendering the man page: {e}")))?;
            out!("{}", String::from_utf8_lossy(&page));
            Ok(())
        }
    }
}

/// A progress line on stderr, unless `--quiet`.
fn progress(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        errln!("{}", msg.as_ref());
    }
}

/// Loads and validates a spec; every problem is reported at once.
fn load_plan(args: &SpecArgs) -> Result<Plan, CliError> {
    load_plan_and_source(args).map(|(plan, _)| plan)
}

/// [`load_plan`], with the spec's text as loaded (what a gate's JSON report records).
fn load_plan_and_source(args: &SpecArgs) -> Result<(Plan, SpecSource), CliError> {
    let loaded = match (&args.spec, args.variant) {
        (Some(path), _) => spec::load_file(path),
        (None, Variant::Hardened) => spec::load(&format!("{}-hardened", args.scenario)),
        (None, Variant::AsWritten) => spec::load(&args.scenario),
    };
    let (spec, source) = loaded.map_err(|e| CliError::Spec(e.to_string()))?;
    let plan = Plan::from_spec(&spec, &source).map_err(|e| CliError::Spec(e.to_string()))?;
    Ok((plan, source))
}

fn target_options(args: &TargetArgs) -> TargetOptions {
    let mut opts = TargetOptions::new(args.target.clone());
    opts.region = args.region.clone();
    opts.profile = args.profile.clone();
    opts.allow_accounts = args.allow_account.clone();
    opts.allow_regions = args.allow_region.clone();
    if let Some(wait) = args.wait {
        opts.startup_timeout = wait;
        opts.endpoint_wait = Some(wait);
    }
    // `reuse` starts its emulator under this very binary as the supervisor.
    opts.supervisor = std::env::current_exe().ok();
    opts
}

/// Starts a target, saying which and how long it took.
async fn start_target(opts: &TargetOptions, quiet: bool) -> Result<Target, CliError> {
    let started = Instant::now();
    progress(quiet, format!("▸ starting target {}…", opts.kind));
    let t = Target::start(opts).await.map_err(|e| CliError::TargetUnavailable(e.to_string()))?;
    if let Some(why) = &t.chosen_because {
        progress(quiet, format!("  auto chose {} because {why}", t.kind));
    }
    progress(quiet, format!("✓ {} ready in {:.1}s", t.description, started.elapsed().as_secs_f64()));
    Ok(t)
}

/// Resources a plan creates (what a dry run and bench announce).
fn count_resources(plan: &Plan) -> usize {
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
fn existing_target(args: &TargetArgs) -> Result<TargetOptions, CliError> {
    let mut opts = target_options(args);
    match opts.kind {
        TargetKind::Endpoint(_) | TargetKind::Aws => {
            opts.probe = !matches!(opts.kind, TargetKind::Aws);
            Ok(opts)
        }
        // The reused emulator if it is up; never a fresh, empty one.
        TargetKind::Reuse => {
            opts.supervisor = None;
            Ok(opts)
        }
        _ => Err(CliError::Usage(format!(
            "--target {}: this command reads an existing deployment; use --target endpoint=<url>, reuse or aws",
            args.target
        ))),
    }
}

/// Prints a run's or a validation's report in `format` on stdout; its verdict is the
/// command's result.
fn print_report(report: Report<'_>, format: Format) -> Result<(), CliError> {
    out!("{}", report.render(format));
    CliError::from_verdict(report.verdict())
}
