//! The recipe end to end on LocalStack, and teardown whatever happens.

use microseg_cli::exit;
use microseg_harness::build::{Fault, Wave};
use microseg_harness::checks::Status;
use microseg_harness::run::{self, Interruption, RunOptions, RunTarget};
use microseg_harness::sweep::{self, Selection};

use crate::support::{
    Group, SweepOnDrop, inventory_of, kept_recipe_run, ledger_dir, recipe, shared, shared_endpoint, sweep_abandoned,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_builds_checks_and_tears_down_to_an_empty_inventory() {
    let _t = crate::support::timer();
    let (clients, caps, desc) = shared().await;
    let dir = ledger_dir();
    let opts = RunOptions { ledger_dir: Some(dir.path().into()), no_signal_handler: true, ..Default::default() };
    let report = run::run(&recipe(), &RunTarget::new(clients.clone(), &desc, caps.clone()), &opts).await.unwrap();
    assert_eq!(report.interruption, None);
    for c in &report.checks {
        assert!(
            matches!(c.status, Status::Pass | Status::Divergence | Status::Skipped),
            "{} failed: {:?}",
            c.id,
            c.findings
        );
        if c.status == Status::Divergence {
            assert!(!c.divergences.is_empty(), "{}: a divergence must be named", c.id);
        }
    }
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    assert!(inventory_of(&clients, &report.run_id).await.is_empty());
    assert_eq!(report.exit_code(), exit::PASS);
    let ledger = microseg_harness::ledger::read(std::path::Path::new(&report.ledger)).unwrap();
    assert!(ledger.torn_down);
    assert!(
        ledger.resources.len() >= 1 + 6 + 6 + 5,
        "every created resource is in the ledger: {}",
        ledger.resources.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_or_error_at_any_wave_leaves_an_empty_inventory() {
    let _t = crate::support::timer();
    let (clients, caps, desc) = shared().await;
    for wave in Wave::ALL {
        for fault in [Fault::PanicAfter(wave), Fault::ErrorAfter(wave)] {
            let dir = ledger_dir();
            let opts = RunOptions {
                ledger_dir: Some(dir.path().into()),
                no_signal_handler: true,
                fault: Some(fault),
                ..Default::default()
            };
            let report =
                run::run(&recipe(), &RunTarget::new(clients.clone(), &desc, caps.clone()), &opts).await.unwrap();
            match (&fault, &report.interruption) {
                (Fault::PanicAfter(_), Some(Interruption::Panic(m))) => assert!(m.contains("injected panic"), "{m}"),
                (Fault::ErrorAfter(_), Some(Interruption::Error(m))) => assert!(m.contains("injected failure"), "{m}"),
                (f, i) => panic!("{f:?} ended as {i:?}"),
            }
            let ledger = microseg_harness::ledger::read(std::path::Path::new(&report.ledger)).unwrap();
            assert!(!ledger.resources.is_empty(), "{fault:?}: something was built before the fault");
            assert!(inventory_of(&clients, &report.run_id).await.is_empty(), "{fault:?} left resources");
            assert_eq!(report.exit_code(), exit::FINDINGS);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_then_sweep_leaves_an_empty_inventory() {
    let _t = crate::support::timer();
    let (clients, caps, desc) = shared().await;
    let dir = ledger_dir();
    let opts =
        RunOptions { keep: true, ledger_dir: Some(dir.path().into()), no_signal_handler: true, ..Default::default() };
    let report = run::run(&recipe(), &RunTarget::new(clients.clone(), &desc, caps.clone()), &opts).await.unwrap();
    assert!(report.kept);
    let kept = inventory_of(&clients, &report.run_id).await;
    assert!(kept.len() >= 20, "the deployment is still there: {}", kept.len());
    let swept = sweep::sweep(&clients, &Selection::Run(report.run_id.clone())).await.unwrap();
    assert_eq!(swept.found.len(), kept.len());
    assert!(swept.leftovers.is_empty(), "{:?}", swept.leftovers);
    assert!(inventory_of(&clients, &report.run_id).await.is_empty());
}

/// `sweep --older-than 6h` finishes a stale run of an earlier crashed job and leaves a
/// fresh one alone. The stale run is a kept run whose VPC is re-tagged as created seven
/// hours ago (a run is as old as its oldest tagged resource).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_older_than_removes_stale_runs_and_keeps_fresh_ones() {
    let _t = crate::support::timer();
    let (clients, _, stale) = kept_recipe_run().await;
    let (_, _, fresh) = kept_recipe_run().await;
    let _sweep_fresh = SweepOnDrop::new(&clients, &fresh.run_id);
    let _sweep_stale = SweepOnDrop::new(&clients, &stale.run_id);
    let seven_hours_ago = microseg_harness::run_id::now_unix() - 7 * 3600;
    clients
        .ec2
        .create_tags()
        .resources(stale.bindings.vpc_id.clone().unwrap())
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(microseg_harness::run_id::TAG_CREATED_AT)
                .value(seven_hours_ago.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let stale_items = inventory_of(&clients, &stale.run_id).await.len();
    let fresh_items = inventory_of(&clients, &fresh.run_id).await.len();
    assert!(stale_items >= 20 && fresh_items >= 20, "{stale_items} stale, {fresh_items} fresh");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["sweep", "--quiet", "--older-than", "6h", "--target", &format!("endpoint={}", shared_endpoint())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(inventory_of(&clients, &stale.run_id).await.is_empty(), "the stale run is gone");
    assert_eq!(inventory_of(&clients, &fresh.run_id).await.len(), fresh_items, "the fresh run is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_on_an_endpoint_passes_and_reports_json() {
    let _t = crate::support::timer();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // Fake secrets in the environment must never reach output, logs, report or ledger.
    let secrets = ["AKIAMICROSEGFAKEKEY1", "microseg/fake+secret/value", "FwoGZXIvYXdzEMicrosegFakeSessionToken"];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["-vv", "run", "--target", &format!("endpoint={}", shared_endpoint()), "--report-json"])
        .arg(&json)
        .env("MICROSEG_CACHE_DIR", dir.path())
        .env("AWS_ACCESS_KEY_ID", secrets[0])
        .env("AWS_SECRET_ACCESS_KEY", secrets[1])
        .env("AWS_SESSION_TOKEN", secrets[2])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut written = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for entry in walk(dir.path()) {
        written.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    for s in secrets {
        assert!(!written.contains(s), "secret {s:?} leaked into output or files");
    }
    assert_eq!(
        out.status.code(),
        Some(exit::PASS),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["leftovers"].as_array().map(Vec::len), Some(0));
    // The report keeps the documented schema (harness/schemas/report-v1.schema.json).
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../harness/schemas/report-v1.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Teardown and sweep delete only what carries the run's tag: an untagged look-alike in
/// the run's own VPC, and an untagged log group whose name even ends in the run id,
/// survive the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_never_deletes_an_untagged_look_alike() {
    let _t = crate::support::timer();
    let (clients, _, report) = kept_recipe_run().await;
    let vpc = report.bindings.vpc_id.clone().unwrap();
    let look_alike = clients
        .ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name("web-tier-sg-copy")
        .description("untagged look-alike")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let lg = report.run_id.name("/aws/vpc/microsegmentation/flowlogs-lookalike");
    clients.logs.create_log_group().log_group_name(&lg).send().await.unwrap();

    let swept = sweep::sweep(&clients, &Selection::Run(report.run_id.clone())).await.unwrap();
    assert!(
        !swept.found.iter().any(|i| i.id == look_alike || i.id == lg),
        "look-alikes were selected: {:?}",
        swept.found
    );
    let sg = clients.ec2.describe_security_groups().group_ids(&look_alike).send().await.unwrap();
    assert_eq!(sg.security_groups().len(), 1, "the untagged group survives");
    let groups = clients.logs.describe_log_groups().log_group_name_prefix(&lg).send().await.unwrap();
    assert_eq!(groups.log_groups().len(), 1, "the untagged log group survives");

    // Clean up what the test made by hand.
    clients.ec2.delete_security_group().group_id(&look_alike).send().await.unwrap();
    clients.logs.delete_log_group().log_group_name(&lg).send().await.unwrap();
    let _ = clients.ec2.delete_vpc().vpc_id(&vpc).send().await;
}

/// The teardown check trusts the inventory, not the ledger: a resource carrying the run's
/// tag that the ledger never recorded is reported by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_check_names_a_tagged_leftover_the_ledger_never_knew() {
    let _t = crate::support::timer();
    let (clients, _, _) = shared().await;
    let run = microseg_harness::run_id::RunId::generate();
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(aws_sdk_ec2::types::Tag::builder().key("microseg:run-id").value(run.as_str()).build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let left: Vec<String> = inventory_of(&clients, &run).await.iter().map(|i| i.to_string()).collect();
    let check = microseg_harness::checks::check_teardown(&left);
    assert_eq!(check.status, Status::Fail);
    assert!(check.findings.iter().any(|f| f.id == "MS-TEARDOWN-LEFTOVER" && f.resource.contains(&vpc)), "{check:?}");
    let swept = sweep::sweep(&clients, &Selection::Run(run.clone())).await.unwrap();
    assert!(swept.leftovers.is_empty());
    assert!(inventory_of(&clients, &run).await.is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Starts `microseg run` that hangs after the network wave, and waits until its ledger
/// shows that wave (six NACLs and the flow log recorded).
async fn spawn_hung_run(dir: &std::path::Path) -> (std::process::Child, microseg_harness::ledger::LedgerData) {
    use microseg_harness::ledger::ResourceKind;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--quiet", "--target", &format!("endpoint={}", shared_endpoint())])
        .env("MICROSEG_CACHE_DIR", dir)
        .env("MICROSEG_INJECT", "hang@network")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runs = dir.join("runs");
    loop {
        let found = std::fs::read_dir(&runs)
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "json")));
        if let Some(p) = found
            && let Ok(l) = microseg_harness::ledger::read(&p)
            && l.resources.iter().filter(|r| r.kind == ResourceKind::NetworkAcl).count() == 6
            && l.resources.iter().any(|r| r.kind == ResourceKind::FlowLog)
        {
            return (child, l);
        }
        assert!(child.try_wait().unwrap().is_none(), "microseg exited before it was interrupted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Ctrl-C stops the build and tears down: the process exits 130 and the run's inventory
/// is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_build_tears_down_and_exits_130() {
    let _t = crate::support::timer();
    let (clients, _, _) = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ledger) = spawn_hung_run(dir.path()).await;
    assert!(!inventory_of(&clients, &ledger.run_id).await.is_empty(), "the deployment exists before Ctrl-C");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(exit::INTERRUPTED));
    assert!(inventory_of(&clients, &ledger.run_id).await.is_empty(), "Ctrl-C left resources");
}

/// SIGKILL skips every handler; the ledger on disk is what `sweep --abandoned` finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_build_leaves_a_ledger_that_sweep_finishes() {
    let _t = crate::support::timer();
    let (clients, _, _) = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ledger) = spawn_hung_run(dir.path()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!inventory_of(&clients, &ledger.run_id).await.is_empty(), "the kill left the deployment");
    let out = sweep_abandoned(Group::Shared, dir.path());
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}: ", ledger.run_id)));
    assert!(inventory_of(&clients, &ledger.run_id).await.is_empty(), "sweep left resources");
    let path = dir.path().join("runs").join(format!("{}.json", ledger.run_id));
    assert!(microseg_harness::ledger::read(&path).unwrap().torn_down, "the ledger is marked done");
}

/// Eight runs at once on one emulator: distinct run ids, no cross-talk (every run's
/// checks pass against its own bindings), every run torn down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_runs_pass_and_leave_nothing() {
    let _t = crate::support::timer();
    let (clients, caps, desc) = shared().await;
    let dir = ledger_dir();
    let plan = recipe();
    let started = std::time::Instant::now();
    let runs = futures::future::join_all((0..8).map(|_| {
        let opts = RunOptions { ledger_dir: Some(dir.path().into()), no_signal_handler: true, ..Default::default() };
        let (clients, caps, desc, plan) = (clients.clone(), caps.clone(), desc.clone(), plan.clone());
        async move { run::run(&plan, &RunTarget::new(clients, desc, caps), &opts).await.unwrap() }
    }))
    .await;
    eprintln!("eight concurrent runs took {:.1?}", started.elapsed());
    let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids.len(), 8);
    let vpcs: std::collections::BTreeSet<_> = runs.iter().map(|r| r.bindings.vpc_id.clone()).collect();
    assert_eq!(vpcs.len(), 8, "each run has its own VPC");
    for r in &runs {
        assert_eq!(
            r.exit_code(),
            exit::PASS,
            "{}: {:?}",
            r.run_id,
            r.checks.iter().filter(|c| c.status == Status::Fail).collect::<Vec<_>>()
        );
        assert!(inventory_of(&clients, &r.run_id).await.is_empty());
    }
}

/// The hardened variant builds, passes every check with all 15 intended flows through,
/// and tears down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_variant_passes_with_every_intended_flow() {
    let _t = crate::support::timer();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--quiet", "--scenario", "recipe", "--variant", "hardened", "--format", "json"])
        .args(["--target", &format!("endpoint={}", shared_endpoint())])
        .env("MICROSEG_CACHE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scenario"], "recipe-hardened");
    let intent = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "intent").unwrap();
    assert_eq!(intent["status"], "pass");
    assert!(intent["note"].as_str().unwrap().starts_with("15 of 15 intended flows pass"), "{intent}");
    assert_eq!(report["leftovers"].as_array().map(Vec::len), Some(0));
}
