//! `microseg bench`: how fast a full run is, side by side with the recipe's own script on
//! the same emulator, how many calls each phase makes against the floor, how long the
//! targets take to start, and the evaluator on synthetic networks. One run of the
//! command measures everything, so ratios compare like with like on a noisy machine.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plan::Plan;
use crate::run::{self, RunOptions, RunReport, RunTarget};
use crate::target::{Target, TargetKind, TargetOptions, python};
use crate::verdict::Verdict;

/// The ```bash blocks of the sections of a Markdown document whose `## ` heading starts
/// with one of `sections`, in order: how a recipe's own script is lifted out of it.
pub fn shell_blocks(markdown: &str, sections: &[&str]) -> String {
    let mut out = String::new();
    let (mut in_section, mut in_block) = (false, false);
    for line in markdown.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            in_section = sections.iter().any(|s| h.starts_with(s));
            continue;
        }
        let t = line.trim();
        if in_section && t == "```bash" {
            in_block = true;
        } else if in_block && t == "```" {
            in_block = false;
            out.push('\n');
        } else if in_block {
            out.push_str(line.trim_start());
            out.push('\n');
        }
    }
    out
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Full runs of the recipe (the median is reported).
    pub runs: usize,
    /// The recipe's Markdown, for its own script; `None` skips the script.
    pub recipe: Option<PathBuf>,
    /// Also measure a cold host start (a fresh venv in a temporary cache: minutes).
    pub cold: bool,
    /// How the `microseg` binary names the scenario (`--scenario recipe --variant
    /// as-written`, or `--spec FILE`), for the whole-process runs.
    pub spec_args: Vec<String>,
}

/// Whole `microseg run` processes, as a user waits for them: a reused emulator against a
/// fresh one, taken in turns so both see the same machine.
#[derive(Debug, Clone, Serialize)]
pub struct WholeProcess {
    /// `microseg run --target reuse` with the emulator up and probed: median seconds.
    pub reuse_seconds: f64,
    /// `microseg run --target localstack-host`: start, probe, run, stop; median seconds.
    pub fresh_seconds: f64,
    /// Processes of each kind.
    pub runs: usize,
}

/// A start-to-ready time.
#[derive(Debug, Clone, Serialize)]
pub struct StartTime {
    /// Which target, and how (`localstack-host, warm`).
    pub what: String,
    /// Seconds, or why it was not measured.
    pub seconds: Result<f64, String>,
}

/// One phase's numbers, median over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseNumbers {
    /// `build`, `observe`, `checks`, `teardown`, `inventory`.
    pub phase: String,
    /// Median wall time, seconds.
    pub seconds: f64,
    /// Calls (the same in every run unless retries happened).
    pub calls: usize,
    /// Calls that change something (create, put, delete, …).
    pub mutating: usize,
    /// Reads (describe, list, get).
    pub reads: usize,
    /// Operations called more than once with the same name and no pagination reason,
    /// with their counts (reads only: one read per resource type is the floor).
    pub repeated_reads: BTreeMap<String, usize>,
}

/// Calls of one operation that teardown makes beyond its floor, and why.
#[derive(Debug, Clone, Serialize)]
pub struct AboveFloor {
    /// `EC2:DescribeNetworkAcls`.
    pub operation: String,
    /// Calls beyond the floor.
    pub calls: usize,
    /// Why it is needed; `None` for a call nobody accounted for (a regression).
    pub reason: Option<&'static str>,
}

/// Why teardown makes calls of `operation` beyond one delete per resource.
pub fn teardown_reason(operation: &str) -> Option<&'static str> {
    const INVENTORY: &str = "the inventory: teardown deletes what carries the run's tag, so it lists that first";
    const TAG: &str = "the inventory confirms an account-wide resource's run tag before it may be deleted";
    let name = operation.split_once(':').map_or(operation, |(_, n)| n);
    Some(match name {
        "DescribeVpcs"
        | "DescribeSubnets"
        | "DescribeFlowLogs"
        | "DescribeAddresses"
        | "DescribeInternetGateways"
        | "ListRoles"
        | "DescribeLogGroups"
        | "DescribeAlarms"
        | "DescribeMetricFilters" => INVENTORY,
        "ListRoleTags" | "ListTagsForResource" => TAG,
        "DescribeNatGateways" => {
            "the inventory, then polling until a NAT gateway is gone: its address and subnet wait on it"
        }
        "DescribeSecurityGroups" => {
            "the inventory, then the groups' rules as they are now, to revoke references between groups"
        }
        "DescribeNetworkAcls" => {
            "the inventory, then one read of the NACLs' VPCs: associations still on them, and the default NACL to move them to"
        }
        "DescribeRouteTables" => "the inventory, then one read of the tables' associations",
        "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => {
            "a group that another group's rules reference cannot be deleted"
        }
        "ReplaceNetworkAclAssociation" => {
            "a NACL with associations cannot be deleted; LocalStack keeps a deleted subnet's association (AWS drops it)"
        }
        "DisassociateRouteTable" => {
            "a table with associations cannot be deleted; LocalStack keeps a deleted subnet's association (AWS drops it)"
        }
        "DetachInternetGateway" => "an attached internet gateway cannot be deleted",
        "ListRolePolicies" | "ListAttachedRolePolicies" | "DeleteRolePolicy" | "DetachRolePolicy" => {
            "a role with policies cannot be deleted"
        }
        _ => return None,
    })
}

/// Teardown's calls beyond one delete per inventoried resource (`floor`), by operation.
/// Deletes beyond the floor are retries (`DependencyViolation`, throttling).
fn above_floor(calls_by_operation: &BTreeMap<String, usize>, floor: usize) -> Vec<AboveFloor> {
    let is_delete = |op: &str| {
        let name = op.split_once(':').map_or(op, |(_, n)| n);
        (name.starts_with("Delete") || name.starts_with("Release")) && teardown_reason(op).is_none()
    };
    let deletes: usize = calls_by_operation.iter().filter(|(op, _)| is_delete(op)).map(|(_, n)| n).sum();
    let mut out: Vec<AboveFloor> = calls_by_operation
        .iter()
        .filter(|(op, _)| !is_delete(op))
        .map(|(op, n)| AboveFloor { operation: op.clone(), calls: *n, reason: teardown_reason(op) })
        .collect();
    if deletes > floor {
        out.push(AboveFloor {
            operation: "deletes retried".into(),
            calls: deletes - floor,
            reason: Some("DependencyViolation or throttling, retried with backoff"),
        });
    }
    out
}

/// The recipe's own script on the same emulator.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptTiming {
    /// Its build blocks (preparation and steps), seconds.
    pub build_seconds: f64,
    /// Its cleanup blocks, seconds.
    pub cleanup_seconds: f64,
}

/// The evaluator on one synthetic network.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluatorTiming {
    /// `200 subnets, 1000 groups, 50000 rules`.
    pub network: String,
    /// Full matrix, seconds.
    pub seconds: f64,
}

/// Everything `microseg bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Target start times.
    pub starts: Vec<StartTime>,
    /// Median full run (build + observe + checks + teardown + inventory), seconds.
    pub run_seconds: f64,
    /// Per phase.
    pub phases: Vec<PhaseNumbers>,
    /// The build's floor: one mutating call per planned resource.
    pub planned_resources: usize,
    /// The teardown's floor: one delete per resource the inventory lists (entries and
    /// rules go with their NACL or group).
    pub teardown_resources: usize,
    /// Teardown's calls beyond that floor, each with its reason.
    pub teardown_above_floor: Vec<AboveFloor>,
    /// The recipe's script, or why it did not run.
    pub script: Result<ScriptTiming, String>,
    /// Whole processes, reused emulator against fresh, or why they were not measured.
    pub whole_process: Result<WholeProcess, String>,
    /// Evaluator timings, in this binary's profile.
    pub evaluator: Vec<EvaluatorTiming>,
    /// `dev` or `release`.
    pub profile: &'static str,
}

fn is_read(op: &str) -> bool {
    let name = op.rsplit(':').next().unwrap_or(op);
    ["Describe", "List", "Get"].iter().any(|p| name.starts_with(p))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn time_start(kind: TargetKind, what: &str) -> StartTime {
    let started = Instant::now();
    let seconds = match Target::start(&TargetOptions::new(kind)).await {
        Ok(t) => {
            let s = started.elapsed().as_secs_f64();
            t.stop().await;
            Ok(s)
        }
        Err(e) => Err(e.to_string()),
    };
    StartTime { what: what.into(), seconds }
}

/// Runs the recipe's build, then its cleanup, with the AWS CLI of LocalStack's venv, in a
/// private mount namespace whose /tmp is a fresh directory (the script writes ids to
/// fixed /tmp paths and its cleanup removes `/tmp/*-id`).
fn run_script(markdown: &str, endpoint: &str) -> Result<ScriptTiming, String> {
    let py = python::find_python().map_err(|e| e.to_string())?;
    let cli = python::venv_dir(python::REQUIREMENTS, &py).join("bin");
    if !cli.join("aws").is_file() {
        return Err(format!("no AWS CLI in {}", cli.display()));
    }
    // Outside /tmp: the script's private /tmp is mounted over it.
    let base = python::cache_dir();
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    let work = tempfile::tempdir_in(&base).map_err(|e| e.to_string())?;
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| e.to_string())?;
    let config = work.path().join("config");
    std::fs::write(&config, "[default]\nregion = us-east-1\noutput = text\n").map_err(|e| e.to_string())?;
    let session = "declare -p | grep -vE '^declare -[a-zA-Z]*r' > /tmp/.recipe-session\n";
    let build = format!("{}\n{session}", shell_blocks(markdown, &["Preparation", "Steps"]));
    let cleanup = format!("source /tmp/.recipe-session 2>/dev/null\n{}", shell_blocks(markdown, &["Cleanup"]));
    let run = |script: &str, name: &str| -> Result<f64, String> {
        let path = work.path().join(name);
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &format!("mount --bind {} /tmp && exec bash {}", tmp.display(), path.display())])
            .env("PATH", format!("{}:{}", cli.display(), std::env::var("PATH").unwrap_or_default()))
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .output()
            .map_err(|e| format!("unshare: {e}"))?;
        let s = started.elapsed().as_secs_f64();
        if !out.status.success() && !tmp.join(".recipe-session").exists() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(format!("the script did not run ({}): {}", out.status, tail.join(" / ")));
        }
        Ok(s)
    };
    let build_seconds = run(&build, "build.sh")?;
    // The build writes the VPC id to /tmp/vpc-id: without it nothing was built, and a
    // time would measure nothing.
    if !tmp.join("vpc-id").is_file() {
        return Err("the script's build wrote no /tmp/vpc-id: it did not build a VPC".into());
    }
    Ok(ScriptTiming { build_seconds, cleanup_seconds: run(&cleanup, "cleanup.sh")? })
}

fn phases(reports: &[RunReport]) -> Vec<PhaseNumbers> {
    let names: Vec<String> =
        reports.first().map(|r| r.phases.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
    names
        .into_iter()
        .map(|name| {
            let all: Vec<&run::Phase> =
                reports.iter().flat_map(|r| r.phases.iter().filter(|p| p.name == name)).collect();
            let last = all.last().expect("every run has every phase");
            let repeated_reads = last
                .calls_by_operation
                .iter()
                .filter(|(op, n)| is_read(op) && **n > 1)
                .map(|(op, n)| (op.clone(), *n))
                .collect();
            PhaseNumbers {
                phase: name,
                seconds: median(all.iter().map(|p| p.wall.as_secs_f64()).collect()),
                calls: last.calls,
                mutating: last.calls_by_operation.iter().filter(|(op, _)| !is_read(op)).map(|(_, n)| n).sum(),
                reads: last.calls_by_operation.iter().filter(|(op, _)| is_read(op)).map(|(_, n)| n).sum(),
                repeated_reads,
            }
        })
        .collect()
}

/// Measures everything on a warm LocalStack host process that the bench starts itself.
pub async fn bench(plan: &Plan, planned_resources: usize, opts: &BenchOptions) -> Result<BenchReport, String> {
    let mut starts = Vec::new();
    if opts.cold {
        // A child process with a fresh, empty cache: it must build the venv first. The
        // environment is the child's alone.
        let cache = tempfile::tempdir().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let out = Command::new(exe)
            .args(["--quiet", "run", "--target", "localstack-host"])
            .env("MICROSEG_CACHE_DIR", cache.path())
            .output()
            .map_err(|e| e.to_string())?;
        let seconds = started.elapsed().as_secs_f64();
        starts.push(StartTime {
            what: "localstack-host, cold: venv install + start + one full run".into(),
            seconds: if out.status.success() {
                Ok(seconds)
            } else {
                Err(format!("the cold run failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
            },
        });
    }
    starts.push(time_start(TargetKind::LocalStackContainer, "localstack-container").await);

    let started = Instant::now();
    let target = Target::start(&TargetOptions::new(TargetKind::LocalStackHost)).await.map_err(|e| e.to_string())?;
    starts.insert(0, StartTime { what: "localstack-host, warm".into(), seconds: Ok(started.elapsed().as_secs_f64()) });

    let mut reports = Vec::new();
    for _ in 0..opts.runs.max(1) {
        let report =
            run::run(plan, &RunTarget::from(&target), &RunOptions { no_signal_handler: true, ..Default::default() })
                .await
                .map_err(|e| e.to_string())?;
        if report.verdict() != Verdict::Pass {
            target.stop().await;
            return Err(format!(
                "run {} did not pass (exit {}); no timing of a failing run",
                report.run_id,
                report.exit_code()
            ));
        }
        reports.push(report);
    }
    let script = match (&opts.recipe, &target.endpoint) {
        (None, _) => Err("skipped (--no-script, or no recipe document found)".to_string()),
        (_, None) => Err("the target has no endpoint".to_string()),
        (Some(path), Some(endpoint)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|md| run_script(&md, endpoint)),
    };
    target.stop().await;

    let whole_process = whole_process(&opts.spec_args, opts.runs.max(1)).await;

    let evaluator = [8, 4, 2, 1]
        .into_iter()
        .map(|scale| {
            let size =
                microseg_reach::synthetic::Size { subnets: 200 / scale, groups: 1000 / scale, rules: 50_000 / scale };
            let net = microseg_reach::synthetic::network(size, 42);
            let started = Instant::now();
            let a = microseg_reach::analyse(&net, &[]);
            let seconds = started.elapsed().as_secs_f64();
            std::hint::black_box(a);
            EvaluatorTiming {
                network: format!("{} subnets, {} groups, {} rules", size.subnets, size.groups, size.rules),
                seconds,
            }
        })
        .collect();
    let teardown_resources = reports.last().and_then(|r| r.teardown.as_ref()).map_or(0, |t| t.outcomes.len());
    let run_seconds =
        median(reports.iter().map(|r| r.phases.iter().map(|p| p.wall).sum::<Duration>().as_secs_f64()).collect());
    Ok(BenchReport {
        starts,
        run_seconds,
        phases: phases(&reports),
        planned_resources,
        teardown_resources,
        teardown_above_floor: reports
            .last()
            .and_then(|r| r.phases.iter().find(|p| p.name == "teardown"))
            .map(|p| above_floor(&p.calls_by_operation, teardown_resources))
            .unwrap_or_default(),
        script,
        whole_process,
        evaluator,
        profile: if cfg!(debug_assertions) { "dev" } else { "release" },
    })
}

/// Times `runs` whole `microseg run` processes on a reused emulator and as many on a fresh
/// host emulator, in turns. A reused emulator that is already up is used and left up;
/// one this starts is stopped again.
async fn whole_process(spec_args: &[String], runs: usize) -> Result<WholeProcess, String> {
    use crate::target::reuse;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let was_up = reuse::live().await.is_some();
    let time = |target: &'static str| {
        let (exe, args) = (exe.clone(), spec_args.to_vec());
        async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let out = Command::new(exe)
                    .args(["--quiet", "run", "--format", "json", "--target", target])
                    .args(args)
                    .output()
                    .map_err(|e| e.to_string())?;
                match out.status.success() {
                    true => Ok(started.elapsed().as_secs_f64()),
                    false => Err(format!(
                        "microseg run --target {target} exited {:?}: {}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                }
            })
            .await
            .map_err(|e| e.to_string())?
        }
    };
    let measured = async {
        // The first run on a reused emulator may start it and probes it: not measured.
        time("reuse").await?;
        let (mut reused, mut fresh) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            reused.push(time("reuse").await?);
            fresh.push(time("localstack-host").await?);
        }
        Ok(WholeProcess { reuse_seconds: median(reused), fresh_seconds: median(fresh), runs })
    }
    .await;
    if !was_up {
        reuse::down().await.map_err(|e| e.to_string())?;
    }
    measured
}

/// The report as Markdown tables, for the terminal and for docs/BENCHMARKS.md alike.
pub fn text(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| measurement | value |\n|---|---|");
    let _ = writeln!(out, "| microseg full run of the recipe (median) | {:.2} s |", r.run_seconds);
    match &r.script {
        Ok(s) => {
            let _ = writeln!(out, "| recipe's own script, build blocks | {:.1} s |", s.build_seconds);
            let _ = writeln!(out, "| recipe's own script, cleanup blocks | {:.1} s |", s.cleanup_seconds);
            let build = r.phases.iter().find(|p| p.phase == "build").map_or(0.0, |p| p.seconds);
            let _ =
                writeln!(out, "| ratio: script build ÷ microseg build | {:.0}× |", s.build_seconds / build.max(1e-9));
            let _ = writeln!(
                out,
                "| ratio: script build + cleanup ÷ microseg full run | {:.0}× |",
                (s.build_seconds + s.cleanup_seconds) / r.run_seconds.max(1e-9)
            );
        }
        Err(why) => {
            let _ = writeln!(out, "| recipe's own script | not run: {why} |");
        }
    }
    match &r.whole_process {
        Ok(w) => {
            let _ = writeln!(
                out,
                "| whole `microseg run` process, reused emulator (median of {}) | {:.2} s |",
                w.runs, w.reuse_seconds
            );
            let _ = writeln!(
                out,
                "| whole `microseg run` process, fresh host emulator (median of {}) | {:.2} s |",
                w.runs, w.fresh_seconds
            );
            let _ = writeln!(out, "| ratio: fresh ÷ reused | {:.1}× |", w.fresh_seconds / w.reuse_seconds.max(1e-9));
        }
        Err(why) => {
            let _ = writeln!(out, "| whole `microseg run` processes | not measured: {why} |");
        }
    }
    for s in &r.starts {
        let v = match &s.seconds {
            Ok(x) => format!("{x:.1} s"),
            Err(e) => format!("not measured: {e}"),
        };
        let _ = writeln!(out, "| start-to-ready: {} | {v} |", s.what);
    }
    let _ = writeln!(
        out,
        "\n| phase | median wall | calls | mutating | reads | repeated reads |\n|---|---|---|---|---|---|"
    );
    for p in &r.phases {
        let repeated: Vec<String> = p.repeated_reads.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.3} s | {} | {} | {} | {} |",
            p.phase,
            p.seconds,
            p.calls,
            p.mutating,
            p.reads,
            if repeated.is_empty() { "none".into() } else { repeated.join(", ") }
        );
    }
    let _ = writeln!(
        out,
        "\nfloor: build, one create per planned resource = {}; teardown, one delete per inventoried resource = {}",
        r.planned_resources, r.teardown_resources
    );
    let _ = writeln!(out, "\n| teardown calls above the floor | calls | why |\n|---|---|---|");
    for a in &r.teardown_above_floor {
        let _ = writeln!(out, "| {} | {} | {} |", a.operation, a.calls, a.reason.unwrap_or("**unaccounted for**"));
    }
    let _ = writeln!(out, "\n| evaluator ({} profile), full matrix | seconds |\n|---|---|", r.profile);
    for e in &r.evaluator {
        let _ = writeln!(out, "| {} | {:.3} |", e.network, e.seconds);
    }
    out
}

/// The recipe document next to the tests, if this is a checkout of microseg.
pub fn default_recipe() -> Option<PathBuf> {
    let p = Path::new("tests/fixtures/recipe-microsegmentation-nacl-sg.md");
    p.is_file().then(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_teardown_call_above_the_floor_is_explained_and_retries_are_counted() {
        let calls: BTreeMap<String, usize> = [
            ("EC2:DeleteSubnet", 7),
            ("EC2:DeleteVpc", 1),
            ("EC2:DescribeNetworkAcls", 2),
            ("EC2:ReplaceNetworkAclAssociation", 6),
            ("IAM:DeleteRolePolicy", 1),
            ("EC2:CreateVpc", 1),
        ]
        .into_iter()
        .map(|(op, n)| (op.to_string(), n))
        .collect();
        let above = above_floor(&calls, 7);
        let by_op = |op: &str| above.iter().find(|a| a.operation == op).map(|a| (a.calls, a.reason.is_some()));
        assert_eq!(by_op("EC2:DescribeNetworkAcls"), Some((2, true)));
        assert_eq!(by_op("EC2:ReplaceNetworkAclAssociation"), Some((6, true)));
        // A role's policy goes first: explained, not a delete of the floor.
        assert_eq!(by_op("IAM:DeleteRolePolicy"), Some((1, true)));
        // 8 deletes against a floor of 7: one retry.
        assert_eq!(by_op("deletes retried"), Some((1, true)));
        // Nothing in teardown creates: a create there is unaccounted for.
        assert_eq!(by_op("EC2:CreateVpc"), Some((1, false)));
    }

    #[test]
    fn shell_blocks_takes_bash_blocks_of_the_named_sections_only() {
        let md = "## Preparation\n```bash\n  export A=1\n```\n```json\n{}\n```\n## Steps\n### 1\n```bash\naws ec2 create-vpc\n```\n## Cleanup\n```bash\naws ec2 delete-vpc\n```\n";
        assert_eq!(shell_blocks(md, &["Preparation", "Steps"]), "export A=1\n\naws ec2 create-vpc\n\n");
        assert_eq!(shell_blocks(md, &["Cleanup"]), "aws ec2 delete-vpc\n\n");
    }
}
