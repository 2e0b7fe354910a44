//! The `microseg` command line: parse, call the engine (`microseg-harness`), map the
//! outcome to an exit code.
//!
//! The binary's `main` only calls [`main`]. Progress goes to stderr, reports to stdout
//! (or a file), so `microseg run --format json > report.json` works.
#![warn(missing_docs)]

pub mod exit;
pub mod terminal;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use microseg_harness::build::{Fault, Wave};
use microseg_harness::capabilities::Divergence;
use microseg_harness::plan::Plan;
use microseg_harness::run::{self, RunOptions, RunTarget};
use microseg_harness::run_id::RunId;
use microseg_harness::spec;
use microseg_harness::sweep::{self, Selection};
use microseg_harness::target::{self, Target, TargetKind, TargetOptions, python};

/// microseg: build, validate and tear down AWS micro-segmentation scenarios.
#[derive(Debug, Parser)]
#[command(name = "microseg", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a scenario, check it, tear it down, and prove nothing is left.
    Run(RunArgs),
    /// Validate a scenario spec and print the plan; no API calls.
    Plan(PlanArgs),
    /// Delete what crashed or kept runs left behind (only resources with a run tag).
    Sweep(SweepArgs),
    /// Check a deployment that microseg did not build (the acceptance gate).
    Validate(ValidateArgs),
    /// Write what a deployment looks like to a file, for an offline `validate`.
    Snapshot(SnapshotArgs),
    /// Which targets can serve here, their versions and divergences.
    Doctor(TargetArgs),
    /// Draw a deployment (as `validate` reads it): Mermaid by default, or any format.
    Report(ValidateArgs),
    /// Measure full runs, their calls against the floor, target start times, the
    /// recipe's own script on the same emulator, and the evaluator.
    Bench(BenchArgs),
}

/// `bench` arguments.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Scenario.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Full runs to take the median of.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The recipe's Markdown, whose bash blocks are run for comparison (default: the
    /// copy in tests/fixtures when run from a checkout).
    #[arg(long, conflicts_with = "no_script")]
    pub recipe: Option<PathBuf>,
    /// Skip the recipe's script (it takes over a minute on LocalStack).
    #[arg(long)]
    pub no_script: bool,
    /// Also measure a cold host start (fresh venv; one to two minutes).
    #[arg(long)]
    pub cold: bool,
    /// JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `validate` arguments.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["vpc_id", "tag", "from_snapshot"])))]
pub struct ValidateArgs {
    /// Scenario the deployment implements.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Where the deployment is: endpoint=<url> or aws.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The deployment's VPC.
    #[arg(long)]
    pub vpc_id: Option<String>,
    /// A tag the deployment carries (`Key=Value`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Option<String>,
    /// Validate a snapshot file offline, with no credentials.
    #[arg(long, conflicts_with = "expect_gone")]
    pub from_snapshot: Option<PathBuf>,
    /// After a cleanup: prove that nothing of the deployment remains.
    #[arg(long)]
    pub expect_gone: bool,
    /// Match a zone by its subnet's `Zone` tag instead of its CIDR (`zone=TagValue`).
    #[arg(long = "zone-tag", value_name = "ZONE=TAG")]
    pub zone_tag: Vec<String>,
    /// Report format (`validate`: text; `report`: mermaid).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// `snapshot` arguments.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Where the deployment is: endpoint=<url> or aws.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The deployment's VPC.
    #[arg(long)]
    pub vpc_id: String,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Which scenario.
#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// A built-in scenario (`recipe`) or a spec file path.
    #[arg(long, default_value = "recipe")]
    pub scenario: String,
    /// A spec file of your own (overrides --scenario).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Variant of a built-in scenario: `as-written` keeps the source's rules, `hardened`
    /// corrects them so exactly the intended flows pass.
    #[arg(long, default_value = "as-written", value_parser = ["as-written", "hardened"])]
    pub variant: String,
}

/// `plan` arguments.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Scenario.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Instead of the plan, evaluate the design as AWS would enforce it: intended flows
    /// (NACLs both ways with ephemeral replies, security groups, routes), the zone matrix,
    /// unintended openings and pointless rules. Exit 1 on findings the spec does not record.
    #[arg(long)]
    pub reach: bool,
    /// With `--reach`: JSON instead of text.
    #[arg(long, requires = "reach")]
    pub json: bool,
}

/// Where to run.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// auto, localstack-host, localstack-container, endpoint=<url>, aws.
    #[arg(long, default_value = "auto", env = "MICROSEG_TARGET")]
    pub target: String,
    /// Region (emulators default to us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS credentials profile (aws target).
    #[arg(long)]
    pub profile: Option<String>,
    /// Account id the aws target may touch; repeatable. Required for --target aws.
    #[arg(long = "allow-account", value_name = "ACCOUNT_ID")]
    pub allow_account: Vec<String>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table and a verdict.
    Text,
    /// The versioned JSON report.
    Json,
    /// JUnit XML, one test case per check.
    Junit,
    /// Markdown for a CI job summary.
    Markdown,
    /// The deployed topology and the traffic between zones as a Mermaid graph.
    Mermaid,
    /// One self-contained HTML page: checks, topology, zone matrix.
    Html,
    /// SARIF 2.1.0 for code scanning.
    Sarif,
}

/// `run` arguments.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Scenario.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Leave the deployment in place; prints how to remove it.
    #[arg(long)]
    pub keep: bool,
    /// Print the plan and stop; no API calls.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Inject a failure for tests: `error@<wave>`, `panic@<wave>` or `hang@<wave>`, wave one of
    /// foundation, network, rules.
    #[arg(long, hide = true, env = "MICROSEG_INJECT")]
    pub inject: Option<String>,
}

/// `sweep` arguments.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sweep one run.
    #[arg(long, conflicts_with_all = ["older_than", "all"])]
    pub run_id: Option<String>,
    /// Sweep runs created longer ago than this (`6h`, `30m`).
    #[arg(long, conflicts_with = "all")]
    pub older_than: Option<String>,
    /// Sweep every microseg run in the account and region.
    #[arg(long)]
    pub all: bool,
    /// Sweep the runs whose on-disk ledgers were left by killed processes.
    #[arg(long, conflicts_with_all = ["run_id", "older_than", "all"])]
    pub abandoned: bool,
}

/// A usage or input error: printed, exit code 2, nothing called.
#[derive(Debug)]
struct UsageError(String);

fn progress(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("{}", msg.as_ref());
    }
}

/// Parses the process arguments, runs the command on a Tokio runtime of its own, and
/// returns the exit code.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn dispatch() -> i32 {
    let cli = Cli::parse();
    crate::terminal::init(cli.verbose);
    match cli.command {
        Command::Plan(args) => plan_cmd(&args),
        Command::Run(args) => run_cmd(&args, cli.quiet).await,
        Command::Sweep(args) => sweep_cmd(&args, cli.quiet).await,
        Command::Validate(args) => validate_cmd(&args, Format::Text, cli.quiet).await,
        Command::Report(args) => validate_cmd(&args, Format::Mermaid, cli.quiet).await,
        Command::Bench(args) => bench_cmd(&args, cli.quiet).await,
        Command::Snapshot(args) => snapshot_cmd(&args, cli.quiet).await,
        Command::Doctor(args) => doctor_cmd(&args).await,
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

fn plan_cmd(args: &PlanArgs) -> i32 {
    match load_plan(&args.spec) {
        Ok(plan) if args.reach => {
            // The design evaluated on AWS semantics before anything is built: the same
            // checks a deployment gets, so the exit code says whether the design is sound.
            let (observed, bindings) = microseg_harness::reach::designed(&plan);
            let (checks, r) = microseg_harness::checks::run_checks_with_reachability(
                &plan,
                &observed,
                &bindings,
                &microseg_harness::capabilities::Capabilities::aws(),
            );
            let reach_checks: Vec<_> = checks.into_iter().filter(|c| c.id == "intent" || c.id == "rule-lint").collect();
            if args.json {
                let doc = serde_json::json!({ "reachability": r, "checks": reach_checks });
                println!("{}", serde_json::to_string_pretty(&doc).expect("analysis serialises"));
            } else {
                print!("{}", microseg_harness::reach::text(&r.intents));
                print!("\n{}", microseg_harness::reach::matrix_text(&r.matrix));
                print!("{}", microseg_harness::report::checks_table_with(&reach_checks, crate::terminal::paint_status));
            }
            if reach_checks.iter().any(|c| c.status == microseg_harness::checks::Status::Fail) {
                exit::FINDINGS
            } else {
                exit::PASS
            }
        }
        Ok(plan) => {
            println!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

fn target_options(args: &TargetArgs) -> Result<TargetOptions, UsageError> {
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

fn parse_inject(s: &str) -> Result<Fault, UsageError> {
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

async fn start_target(opts: &TargetOptions, quiet: bool) -> Result<Target, i32> {
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

async fn run_cmd(args: &RunArgs, quiet: bool) -> i32 {
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
                Format::Text => print!("{}", microseg_harness::report::text_with(&report, crate::terminal::paint_status)),
                Format::Json => println!("{}", microseg_harness::report::json(&report)),
                Format::Junit => println!("{}", microseg_harness::report::junit(&report.scenario, &report.checks)),
                Format::Sarif => {
                    println!("{}", microseg_harness::report::sarif(&report.checks, &plan.spec_file.display().to_string()))
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
                        print!("{}", microseg_harness::topology::html(&title, &t, report.reachability.as_ref(), &report.checks));
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

async fn bench_cmd(args: &BenchArgs, quiet: bool) -> i32 {
    let plan = match load_plan(&args.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let opts = microseg_harness::bench::BenchOptions {
        runs: args.runs,
        recipe: if args.no_script { None } else { args.recipe.clone().or_else(microseg_harness::bench::default_recipe) },
        cold: args.cold,
    };
    progress(quiet, format!("▸ bench: {} runs of {} on a LocalStack host process…", opts.runs, plan.scenario));
    match microseg_harness::bench::bench(&plan, count_resources(&plan), &opts).await {
        Ok(r) if args.json => {
            println!("{}", serde_json::to_string_pretty(&r).expect("bench report serialises"));
            exit::PASS
        }
        Ok(r) => {
            print!("{}", microseg_harness::bench::text(&r));
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    }
}

fn count_resources(plan: &Plan) -> usize {
    1 + plan.internet_gateway.iter().count()
        + plan.zones.len()
        + plan.nacls.iter().map(|n| 1 + n.entries.len()).sum::<usize>()
        + plan.security_groups.iter().map(|g| 1 + g.rules.len()).sum::<usize>()
        + plan.route_tables.iter().map(|t| 1 + t.routes.len() + t.zones.len()).sum::<usize>()
        + plan.flow_log.as_ref().map_or(0, |_| 4)
        + plan.alarm.as_ref().map_or(0, |_| 2)
}

async fn sweep_cmd(args: &SweepArgs, quiet: bool) -> i32 {
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

async fn doctor_cmd(args: &TargetArgs) -> i32 {
    println!("microseg {} doctor", env!("CARGO_PKG_VERSION"));
    match python::find_python() {
        Ok(p) => {
            let venv = python::venv_dir(python::REQUIREMENTS, &p);
            let state = if venv.join(".ready").exists() {
                "cached"
            } else {
                "not built yet (first start installs it, ~1-2 min)"
            };
            println!(
                "localstack-host:      Python {}.{} at {}; venv {} ({state})",
                p.version.0,
                p.version.1,
                p.path.display(),
                venv.display()
            );
        }
        Err(e) => println!("localstack-host:      unavailable: {e}"),
    }
    let image = target::container::configured_image();
    match target::docker_status() {
        Ok(v) if target::container::image_present(&image) => {
            println!("localstack-container: Docker {v}; image {image} present")
        }
        Ok(v) => println!(
            "localstack-container: Docker {v}; image {image} NOT present (no registry here: run localstack/build-image.sh and set MICROSEG_LOCALSTACK_IMAGE=microseg/localstack:4.14.0)"
        ),
        Err(e) => println!("localstack-container: unavailable: {e}"),
    }
    let (kind, why) = target::choose_auto();
    println!("auto:                 would use {kind} ({why})");
    println!(
        "aws:                  needs --allow-account <id>; credentials from the standard chain{}",
        args.profile.as_ref().map(|p| format!(" (profile {p})")).unwrap_or_default()
    );
    println!("\nKnown divergences of emulators (probed ones are confirmed at start):");
    for d in Divergence::ALL {
        println!("  {:<34} {}{}", d.id(), d.description(), if d.probed() { " [probed]" } else { "" });
    }
    if args.target != "auto" {
        let opts = match target_options(args) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {}", e.0);
                return exit::USAGE;
            }
        };
        let started = Instant::now();
        match Target::start(&opts).await {
            Ok(t) => {
                println!("\nstarted {} in {:.1}s", t.description, started.elapsed().as_secs_f64());
                let ids: Vec<&str> = t.capabilities.divergences.iter().map(|d| d.id()).collect();
                println!("divergences: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
                t.stop().await;
            }
            Err(e) => {
                println!("\n{} cannot serve: {e}", opts.kind);
                return exit::TARGET_UNAVAILABLE;
            }
        }
    }
    exit::PASS
}

/// `validate` and `snapshot` read what exists: starting a fresh emulator would read an
/// empty account.
fn existing_target(args: &TargetArgs) -> Result<TargetOptions, UsageError> {
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

fn split_pair<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str), UsageError> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| UsageError(format!("{flag} {s:?}: expected KEY=VALUE")))
}

async fn validate_cmd(args: &ValidateArgs, default_format: Format, quiet: bool) -> i32 {
    let format = args.format.unwrap_or(default_format);
    let usage = |e: UsageError| {
        eprintln!("error: {}", e.0);
        exit::USAGE
    };
    let plan = match load_plan(&args.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut mapping = microseg_harness::discover::ZoneMapping::default();
    for z in &args.zone_tag {
        match split_pair("--zone-tag", z) {
            Ok((zone, tag)) if plan.zone(zone).is_some() => {
                mapping.by_tag.insert(zone.to_string(), tag.to_string());
            }
            Ok((zone, _)) => return usage(UsageError(format!("--zone-tag {z:?}: the scenario has no zone {zone:?}"))),
            Err(e) => return usage(e),
        }
    }
    let tag = match args.tag.as_deref().map(|t| split_pair("--tag", t)).transpose() {
        Ok(t) => t,
        Err(e) => return usage(e),
    };

    if let Some(path) = &args.from_snapshot {
        let snap = match microseg_harness::validate::Snapshot::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let source = format!("snapshot {} (read from {})", path.display(), snap.target);
        let report = microseg_harness::validate::validate(&plan, &snap.observed, &mapping, &snap.capabilities, source);
        return print_validate(&report, format, &plan, &snap.observed);
    }

    let opts = match existing_target(&args.target) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let target = match start_target(&opts, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let clients = target.clients();
    let vpc_ids = match (&args.vpc_id, tag) {
        (Some(v), _) => Ok(vec![v.clone()]),
        (None, Some((k, v))) => microseg_harness::validate::vpc_by_tag(&clients, k, v).await,
        (None, None) => Ok(vec![]),
    };
    let code = match vpc_ids {
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
        Ok(_) if args.expect_gone => {
            let left = match (&args.vpc_id, tag) {
                (Some(v), _) => microseg_harness::validate::leftovers_in_vpc(&clients, v).await,
                (None, Some((k, v))) => microseg_harness::validate::leftovers_by_tag(&clients, k, v).await,
                (None, None) => Ok(vec![]),
            };
            let left = left.map(|l| microseg_harness::validate::split_emulator_orphans(l, &target.capabilities));
            if let Ok((_, orphans)) = &left {
                for o in orphans {
                    println!(
                        "not counted: {o}: orphaned by the emulator's DeleteVpc (divergence delete-vpc-orphans-dependents)"
                    );
                }
            }
            match left.map(|(real, _)| real) {
                Ok(left) if left.is_empty() => {
                    println!("expect-gone: PASS, nothing of the deployment remains");
                    exit::PASS
                }
                Ok(left) => {
                    println!("expect-gone: FAIL, {} resource(s) remain:", left.len());
                    for l in left {
                        println!("  {l}");
                    }
                    exit::FINDINGS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::TARGET_UNAVAILABLE
                }
            }
        }
        Ok(ids) if ids.len() != 1 => {
            eprintln!("error: expected exactly one VPC, found {}: {}", ids.len(), ids.join(", "));
            exit::USAGE
        }
        Ok(ids) => match microseg_harness::observe::read_live(&clients, &ids[0]).await {
            Ok(observed) => {
                let report = microseg_harness::validate::validate(
                    &plan,
                    &observed,
                    &mapping,
                    &target.capabilities,
                    format!("{} on {}", ids[0], target.description),
                );
                print_validate(&report, format, &plan, &observed)
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::TARGET_UNAVAILABLE
            }
        },
    };
    target.stop().await;
    code
}

fn print_validate(
    report: &microseg_harness::validate::ValidateReport,
    format: Format,
    plan: &Plan,
    observed: &microseg_harness::observe::Observed,
) -> i32 {
    let title = format!("microseg validate · {} · {}", report.scenario, report.source);
    match format {
        Format::Sarif => println!("{}", microseg_harness::report::sarif(&report.checks, &plan.spec_file.display().to_string())),
        Format::Mermaid => {
            let t = microseg_harness::topology::topology(plan, observed, &report.bindings);
            print!("{}", microseg_harness::topology::mermaid(&t, report.reachability.as_ref()));
        }
        Format::Html => {
            let t = microseg_harness::topology::topology(plan, observed, &report.bindings);
            print!("{}", microseg_harness::topology::html(&title, &t, report.reachability.as_ref(), &report.checks));
        }
        Format::Text => print!("{}", microseg_harness::report::validate_text_with(report, crate::terminal::paint_status)),
        Format::Json => println!("{}", microseg_harness::report::validate_json(report)),
        Format::Junit => println!("{}", microseg_harness::report::junit(&report.scenario, &report.checks)),
        Format::Markdown => print!(
            "{}",
            microseg_harness::report::markdown(
                &format!("microseg validate · {} · {}", report.scenario, report.source),
                &report.checks,
                report.reachability.as_ref().map(|r| &r.matrix)
            )
        ),
    }
    report.exit_code()
}

async fn snapshot_cmd(args: &SnapshotArgs, quiet: bool) -> i32 {
    let opts = match existing_target(&args.target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {}", e.0);
            return exit::USAGE;
        }
    };
    let target = match start_target(&opts, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let code = match microseg_harness::observe::read_live(&target.clients(), &args.vpc_id).await {
        Ok(observed) => {
            let snap = microseg_harness::validate::Snapshot {
                format_version: microseg_harness::validate::SNAPSHOT_FORMAT_VERSION,
                captured_at: microseg_harness::run_id::now_unix(),
                target: target.description.clone(),
                capabilities: target.capabilities.clone(),
                observed,
            };
            match std::fs::write(&args.out, serde_json::to_string_pretty(&snap).expect("snapshot serialises")) {
                Ok(()) => {
                    progress(quiet, format!("wrote {}", args.out.display()));
                    exit::PASS
                }
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", args.out.display());
                    exit::USAGE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    };
    target.stop().await;
    code
}

/// The target a sweep lists and deletes on; it needs no divergence probe.
async fn sweep_target(args: &TargetArgs, quiet: bool) -> Result<Target, i32> {
    let mut opts = target_options(args).map_err(|e| {
        eprintln!("error: {}", e.0);
        exit::USAGE
    })?;
    opts.probe = false;
    start_target(&opts, quiet).await
}

/// Sweeps each run whose ledger a killed process left (unlocked, not torn down), and
/// marks the ledger done once the run's inventory is empty.
async fn sweep_abandoned(args: &SweepArgs, quiet: bool) -> i32 {
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
