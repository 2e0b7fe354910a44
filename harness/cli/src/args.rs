//! The command line's arguments, as clap parses them. Every value arrives typed (a
//! [`TargetKind`], a [`Duration`], a [`RunId`], a [`Fault`]…): a malformed one is clap's
//! usage error, exit 2, before any command runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use microseg_harness::build::{Fault, Wave};
use microseg_harness::job::{EarlierRuns, Job};
use microseg_harness::run_id::RunId;
use microseg_harness::target::TargetKind;

use crate::render::Format;

/// Tests AWS network micro-segmentation: builds a scenario on LocalStack or a sandbox
/// account, checks it and tears it down, or gates a deployment something else built.
#[derive(Debug, Parser)]
#[command(name = "microseg", version, long_about = None, after_help = EXAMPLES_TOP)]
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

/// Examples under each `--help`. Each line after `$ ` is a command line that parses
/// (`tests::every_example_in_the_help_parses`).
const EXAMPLES_TOP: &str = "Examples:
  $ microseg run
  $ microseg plan --scenario three-tier --reach
  $ microseg validate --scenario recipe --target endpoint=http://127.0.0.1:4566 --tag app=payments";
const EXAMPLES_RUN: &str = "Examples:
  $ microseg run
  $ microseg run --scenario microservices --variant hardened --format junit --report-json report.json
  $ microseg run --spec my-design.toml --target endpoint=http://127.0.0.1:4566 --wait 30s
  $ microseg run --scenario three-tier --target moto
  $ microseg run --scenario three-tier --target all-emulators
  $ microseg run --variant hardened --target localemu --traffic
  $ microseg run --target aws --region eu-west-1 --allow-account 123456789012 --allow-region eu-west-1 --job eu-west-1-recipe --earlier-runs sweep";
const EXAMPLES_PLAN: &str = "Examples:
  $ microseg plan --spec my-design.toml
  $ microseg plan --scenario recipe --reach";
const EXAMPLES_SWEEP: &str = "Examples:
  $ microseg sweep --abandoned
  $ microseg sweep --older-than 6h --target aws --region eu-west-1 --allow-account 123456789012 --allow-region eu-west-1
  $ microseg sweep --all --yes-delete-all-runs --target aws --region eu-west-1 --allow-account 123456789012 --allow-region eu-west-1";
const EXAMPLES_VALIDATE: &str = "Examples:
  $ microseg validate --scenario recipe --target endpoint=http://127.0.0.1:4566 --vpc-id vpc-0abc
  $ microseg validate --spec ours.toml --target aws --allow-account 123456789012 --allow-region eu-west-1 --tag app=payments --format sarif
  $ microseg validate --spec ours.toml --target aws --allow-account 123456789012 --allow-region eu-west-1 --tag app=payments --report-json gate.json";
const EXAMPLES_SNAPSHOT: &str = "Examples:
  $ microseg snapshot --target endpoint=http://127.0.0.1:4566 --vpc-id vpc-0abc --out deployment.json
  $ microseg validate --scenario recipe --from-snapshot deployment.json";
const EXAMPLES_DOCTOR: &str = "Examples:
  $ microseg doctor
  $ microseg doctor --target localstack-container
  $ microseg doctor --all
  $ microseg doctor --target aws --region eu-west-1 --allow-account 123456789012 --allow-region eu-west-1 --all-scenarios";
const EXAMPLES_REPORT: &str = "Examples:
  $ microseg report --scenario recipe --target endpoint=http://127.0.0.1:4566 --vpc-id vpc-0abc
  $ microseg report --scenario recipe --from-snapshot deployment.json --format html
  $ microseg report --from-json gate.json --format sarif";
const EXAMPLES_BENCH: &str = "Examples:
  $ microseg bench
  $ microseg bench --runs 3 --no-script --json";
const EXAMPLES_EMULATOR: &str = "Examples:
  $ microseg emulator up --idle 1h
  $ microseg run --target reuse
  $ microseg emulator status
  $ microseg emulator down";
const EXAMPLES_COMPLETIONS: &str = "Examples:
  $ microseg completions bash
  $ microseg completions zsh";
const EXAMPLES_MAN: &str = "Examples:
  $ microseg man";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a scenario, check it, tear it down, and prove nothing is left.
    #[command(after_help = EXAMPLES_RUN)]
    Run(RunArgs),
    /// Validate a scenario spec and print the plan; no API calls.
    #[command(after_help = EXAMPLES_PLAN)]
    Plan(PlanArgs),
    /// Delete what crashed or kept runs left behind (only resources with a run tag).
    #[command(after_help = EXAMPLES_SWEEP)]
    Sweep(SweepArgs),
    /// Check a deployment that microseg did not build (the acceptance gate).
    #[command(after_help = EXAMPLES_VALIDATE)]
    Validate(ValidateArgs),
    /// Write what a deployment looks like to a file, for an offline `validate`.
    #[command(after_help = EXAMPLES_SNAPSHOT)]
    Snapshot(SnapshotArgs),
    /// Which targets can serve here, their versions and divergences; with --target, a
    /// preflight of that target for the scenarios (quotas, permissions), read-only.
    #[command(after_help = EXAMPLES_DOCTOR)]
    Doctor(DoctorArgs),
    /// Draw a deployment (as `validate` reads it), or render a gate's JSON report again
    /// (`--from-json`): Mermaid by default, or any format.
    #[command(after_help = EXAMPLES_REPORT)]
    Report(ValidateArgs),
    /// Measure full runs, their calls against the floor, target start times, the
    /// recipe's own script on the same emulator, and the evaluator.
    #[command(after_help = EXAMPLES_BENCH)]
    Bench(BenchArgs),
    /// Keep one LocalStack running across invocations, for `--target reuse`: up, status,
    /// down. It stops by itself once unused for its idle time.
    #[command(after_help = EXAMPLES_EMULATOR)]
    Emulator {
        /// What to do.
        #[command(subcommand)]
        action: EmulatorAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = EXAMPLES_COMPLETIONS)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these same definitions.
    #[command(after_help = EXAMPLES_MAN)]
    Man,
}

/// `doctor` arguments.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The target to start and check (default: only list what could serve).
    #[command(flatten)]
    pub target: TargetArgs,
    /// With --target: a scenario the preflight checks room and permissions for, a built-in
    /// name (`three-tier-hardened`) or a spec file; repeatable (default: recipe). Several
    /// are taken to run one after another, as the nightly runs them.
    #[arg(long = "scenario", value_name = "NAME|FILE")]
    pub scenarios: Vec<String>,
    /// With --target: every built-in scenario in both variants.
    #[arg(long, conflicts_with = "scenarios")]
    pub all_scenarios: bool,
    /// Start every emulator target available here (localstack-host, localstack-container,
    /// moto, localemu), probe each fully, and print the fidelity matrix: the probed
    /// behaviours by target, beside AWS's documented answers. Ignores --target.
    #[arg(long, conflicts_with_all = ["scenarios", "all_scenarios"])]
    pub all: bool,
    /// The permissions boundary runs give the flow-log role (see `run --role-boundary`);
    /// the preflight simulates iam:CreateRole with it.
    #[arg(long, value_name = "POLICY_ARN", env = "MICROSEG_ROLE_BOUNDARY")]
    pub role_boundary: Option<String>,
}

/// `emulator` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum EmulatorAction {
    /// Start the reused emulator unless one is up; print where it listens.
    Up(EmulatorUpArgs),
    /// Whether one is up, where, since when, and how long until it stops unused.
    Status,
    /// Stop it now.
    Down,
    /// The supervisor that `up` starts in the background (not for direct use).
    #[command(hide = true)]
    Serve(EmulatorUpArgs),
}

/// `emulator up` arguments.
#[derive(Debug, Clone, Args)]
pub struct EmulatorUpArgs {
    /// Stop after this long unused (`30m`, `2h`); each invocation that uses it starts
    /// the clock again.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub idle: std::time::Duration,
    /// How long LocalStack may take to become ready.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
    /// A LocalStack service to enable besides those every run needs (`cloudformation`,
    /// to deploy a stack beside the runs); repeatable.
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
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
#[command(group(clap::ArgGroup::new("what").required(true).args(["vpc_id", "tag", "from_snapshot", "from_json"])))]
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
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub tag: Option<KeyValue>,
    /// Validate a snapshot file offline, with no credentials.
    #[arg(long, conflicts_with = "expect_gone")]
    pub from_snapshot: Option<PathBuf>,
    /// Render the gate's JSON report (`--format json` or `--report-json` of an earlier
    /// validate) in any format, offline: its verdict is computed again from the spec and
    /// the deployment it records, and must be the one it holds. Takes no spec and no
    /// target: the file names both.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["expect_gone", "scenario", "spec", "variant", "zone_tag", "region", "profile", "allow_account", "wait"]
    )]
    pub from_json: Option<PathBuf>,
    /// Also write the JSON report, with what its verdict was computed from, to this file
    /// (what `--from-json` reads).
    #[arg(long, value_name = "FILE", conflicts_with = "expect_gone")]
    pub report_json: Option<PathBuf>,
    /// After a cleanup: prove that nothing of the deployment remains.
    #[arg(long)]
    pub expect_gone: bool,
    /// Match a zone by its subnet's `Zone` tag instead of its CIDR (`zone=TagValue`).
    #[arg(long = "zone-tag", value_name = "ZONE=TAG", value_parser = key_value)]
    pub zone_tag: Vec<KeyValue>,
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
    #[arg(long, value_enum, default_value = "as-written")]
    pub variant: Variant,
}

/// Variants of a built-in scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// The source's rules as written.
    AsWritten,
    /// Corrected so that exactly the intended flows pass (`<scenario>-hardened`).
    Hardened,
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
    /// auto, localstack-host, localstack-container, reuse (one LocalStack kept up across
    /// invocations: `microseg emulator`), moto, localemu, endpoint=<url>, aws; for `run`,
    /// also all-emulators (the scenario on every emulator available here, and where they
    /// disagree about the deployment).
    #[arg(long, default_value = "auto", env = "MICROSEG_TARGET")]
    pub target: TargetKind,
    /// Region (emulators default to us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS credentials profile (aws target).
    #[arg(long)]
    pub profile: Option<String>,
    /// Account id the aws target may touch; repeatable. Required for --target aws.
    #[arg(long = "allow-account", value_name = "ACCOUNT_ID", value_parser = account_id)]
    pub allow_account: Vec<String>,
    /// Region the aws target may touch; repeatable. Required for --target aws: any other
    /// region (from --region, AWS_REGION or the profile) is refused before any call.
    #[arg(long = "allow-region", value_name = "REGION", value_parser = region_name)]
    pub allow_region: Vec<String>,
    /// How long to wait for an emulator to answer (`90s`, `5m`): for one microseg
    /// starts, until every service is ready (default 3m); for endpoint=<url>, until it
    /// answers (default 60s, but a few seconds when loopback refuses the connection,
    /// since nothing listens there yet).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,
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
    /// After the checks, place an instance container in each zone and send every intended
    /// zone-to-zone flow and a sample of the closed ones as real TCP/UDP connections;
    /// compare each with the reach evaluator. Only with --target localemu (it runs
    /// instances as Docker containers then); needs Docker with NET_ADMIN, and root the
    /// first time (the instance image is built offline with debootstrap).
    #[arg(long)]
    pub traffic: bool,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// A label for the job this run stands for (`eu-west-1-recipe-hardened`): every
    /// resource carries it, and before building, the run looks for what the job's earlier
    /// runs left (see --earlier-runs).
    #[arg(long, value_name = "LABEL", value_parser = Job::parse)]
    pub job: Option<Job>,
    /// With --job, when the job's earlier runs still have resources: refuse to start, or
    /// sweep them first (and refuse if anything is left).
    #[arg(long, value_enum, default_value = "refuse", requires = "job")]
    pub earlier_runs: EarlierRunsArg,
    /// A managed policy to create the flow-log role with as its permissions boundary
    /// (the sandbox policy in .github/aws/ allows iam:CreateRole only with one).
    #[arg(long, value_name = "POLICY_ARN", env = "MICROSEG_ROLE_BOUNDARY")]
    pub role_boundary: Option<String>,
    /// Inject a failure for tests: `error@<wave>`, `panic@<wave>` or `hang@<wave>`, wave one of
    /// foundation, network, rules.
    #[arg(long, hide = true, env = "MICROSEG_INJECT", value_parser = fault)]
    pub inject: Option<Fault>,
}

/// What a run does about the job's earlier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EarlierRunsArg {
    /// Refuse to start, naming them.
    Refuse,
    /// Sweep them first.
    Sweep,
}

impl From<EarlierRunsArg> for EarlierRuns {
    fn from(a: EarlierRunsArg) -> EarlierRuns {
        match a {
            EarlierRunsArg::Refuse => EarlierRuns::Refuse,
            EarlierRunsArg::Sweep => EarlierRuns::Sweep,
        }
    }
}

/// `sweep` arguments.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sweep one run.
    #[arg(long, conflicts_with_all = ["older_than", "all"], value_parser = RunId::parse)]
    pub run_id: Option<RunId>,
    /// Sweep runs created longer ago than this (`6h`, `30m`).
    #[arg(long, conflicts_with = "all", value_parser = age)]
    pub older_than: Option<Duration>,
    /// Sweep every microseg run in the account and region.
    #[arg(long)]
    pub all: bool,
    /// With --all on the aws target: yes, delete every microseg run in the account and
    /// region, those of other people and of running jobs included.
    #[arg(long)]
    pub yes_delete_all_runs: bool,
    /// Sweep the runs whose on-disk ledgers were left by killed processes; also remove
    /// the scratch dirs of emulators whose microseg was killed, and what a killed
    /// `run --traffic` left on the Docker engine.
    #[arg(long, conflicts_with_all = ["run_id", "older_than", "all"])]
    pub abandoned: bool,
}

/// A `KEY=VALUE` pair (`--tag`, `--zone-tag`), both sides non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Left of the first `=`.
    pub key: String,
    /// Right of it.
    pub value: String,
}

fn key_value(s: &str) -> Result<KeyValue, String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() })
        .ok_or_else(|| "expected KEY=VALUE".to_string())
}

fn account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.chars().all(|c| c.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("an AWS account id is 12 digits".to_string())
    }
}

/// An AWS region's name (`eu-west-1`, `us-gov-west-1`): lowercase words and a number,
/// joined by hyphens.
fn region_name(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let words = &parts[..parts.len().saturating_sub(1)];
    let ok = parts.len() >= 3
        && words.iter().all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
        && parts.last().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if ok { Ok(s.to_string()) } else { Err("an AWS region is like eu-west-1".to_string()) }
}

/// `6h`, `30m`: what humantime reads, with an example when it cannot.
fn age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 6h, 30m)"))
}

/// `error@<wave>`, `panic@<wave>` or `hang@<wave>`.
fn fault(s: &str) -> Result<Fault, String> {
    let (mode, wave) = s.split_once('@').ok_or("use error@<wave>, panic@<wave> or hang@<wave>")?;
    let wave = Wave::parse(wave).ok_or("wave is foundation, network or rules")?;
    match mode {
        "error" => Ok(Fault::ErrorAfter(wave)),
        "panic" => Ok(Fault::PanicAfter(wave)),
        "hang" => Ok(Fault::HangAfter(wave)),
        _ => Err("mode is error, panic or hang".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("microseg").chain(args.iter().copied()))
    }

    #[test]
    fn values_arrive_typed() {
        let Command::Sweep(s) =
            parse(&["sweep", "--older-than", "6h", "--target", "endpoint=http://x:1/"]).unwrap().command
        else {
            panic!("sweep")
        };
        assert_eq!(s.older_than, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(s.target.target, TargetKind::Endpoint("http://x:1".into()));
        let Command::Run(r) = parse(&["run", "--inject", "hang@network", "--variant", "hardened"]).unwrap().command
        else {
            panic!("run")
        };
        assert_eq!(r.inject, Some(Fault::HangAfter(Wave::Network)));
        assert_eq!(r.spec.variant, Variant::Hardened);
        let Command::Validate(v) = parse(&["validate", "--tag", "a=b=c", "--zone-tag", "web=Web"]).unwrap().command
        else {
            panic!("validate")
        };
        assert_eq!(v.tag, Some(KeyValue { key: "a".into(), value: "b=c".into() }));
        assert_eq!(v.zone_tag, [KeyValue { key: "web".into(), value: "Web".into() }]);
    }

    #[test]
    fn malformed_values_are_usage_errors_that_say_why() {
        for (args, says) in [
            (&["run", "--target", "lokalstack"][..], "unknown target"),
            (&["run", "--inject", "boom@rules"], "mode is error, panic or hang"),
            (&["run", "--inject", "error@roof"], "wave is foundation, network or rules"),
            (&["sweep", "--run-id", "not-a-run"], "must start with"),
            (&["sweep", "--older-than", "six hours"], "e.g. 6h, 30m"),
            (&["validate", "--vpc-id", "v", "--tag", "novalue"], "expected KEY=VALUE"),
            (&["run", "--allow-account", "12345"], "12 digits"),
            (&["run", "--allow-region", "EU-WEST-1"], "like eu-west-1"),
            (&["run", "--allow-region", "eu-west"], "like eu-west-1"),
            (&["run", "--job", "a;b"], "letters, digits"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}: {e}");
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn earlier_runs_is_a_choice_of_a_job() {
        let Command::Run(r) = parse(&["run", "--job", "eu-west-1-recipe", "--earlier-runs", "sweep"]).unwrap().command
        else {
            panic!("run")
        };
        assert_eq!(
            (r.job.map(|j| j.to_string()), r.earlier_runs),
            (Some("eu-west-1-recipe".into()), EarlierRunsArg::Sweep)
        );
        let Command::Run(r) = parse(&["run"]).unwrap().command else { panic!("run") };
        assert_eq!((r.job, r.earlier_runs), (None, EarlierRunsArg::Refuse));
        let e = parse(&["run", "--earlier-runs", "sweep"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{e}");
    }

    /// Every `$ microseg …` line under every `--help` is a command line that parses: an
    /// example a user copies must not fail on a typo'd flag.
    #[test]
    fn every_example_in_the_help_parses() {
        let top = Cli::command();
        let mut checked = 0;
        for cmd in std::iter::once(&top).chain(top.get_subcommands()) {
            let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(help.starts_with("Examples:"), "`{}` has no examples in its help", cmd.get_name());
            for line in help.lines().filter_map(|l| l.trim().strip_prefix("$ ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("the example `{line}` does not parse: {e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 2 * top.get_subcommands().count(), "{checked} examples");
    }
}
