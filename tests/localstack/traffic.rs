//! Real traffic through localemu (issue #21 part 4; docs/EMULATOR.md, "Real traffic
//! through localemu"): `run --traffic` places instance containers, sends real TCP and
//! UDP connections, compares them with the evaluator cell by cell, names the NACL bug,
//! and leaves no container, network or host iptables rule; a run dropped in the middle
//! of placing its instances leaves none either, and what a SIGKILLed one leaves,
//! `sweep --abandoned` removes.
//!
//! Needs Docker with NET_ADMIN, a Python ≥ 3.13 for localemu, and the instance image
//! (built offline by `emulators/localemu/build-instance-image.sh`, which needs root the
//! first time). Outside CI a missing one skips the test, saying which.

use std::collections::BTreeSet;
use std::time::Duration;

use microseg_harness::target::{Flavor, Target, TargetKind, TargetOptions, python};
use microseg_harness::traffic;

use crate::skip::skip;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/traffic-nacl-before-groups.toml");

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Instance containers (not the preflight's short-lived NET_ADMIN check, of the same
/// image), running or not.
fn instance_containers() -> String {
    sh("docker", &["ps", "-aq", "--filter", &format!("ancestor={}", traffic::IMAGE), "--filter", "name=localemu-ec2-"])
}

/// Waits until the instance containers and their states are the same for 1.5 s running
/// (30 s at most).
async fn settle_instance_containers() {
    let state = || sh("docker", &["ps", "-a", "--format", "{{.ID}} {{.State}}", "--filter", "name=localemu-ec2-"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (state(), std::time::Instant::now());
    while since.elapsed() < Duration::from_millis(1500) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = state();
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
    }
}

/// What is on the engine and in the host's firewall.
#[derive(Debug)]
struct Snapshot {
    containers: BTreeSet<String>,
    networks: BTreeSet<String>,
    /// None where this user cannot read the host's firewall (`iptables-save` needs root).
    iptables: Option<BTreeSet<String>>,
}

fn snapshot() -> Snapshot {
    let set = |s: String| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    Snapshot {
        containers: set(sh("docker", &["ps", "-a", "--format", "{{.Names}} {{.Image}}"])),
        networks: set(sh("docker", &["network", "ls", "--format", "{{.Name}}"])),
        iptables: host_rules(),
    }
}

/// The host's firewall rules, without comments or counters; None when they cannot be read.
fn host_rules() -> Option<BTreeSet<String>> {
    let out = std::process::Command::new("iptables-save").output().ok()?;
    // As another user than root, iptables-save prints nothing (or a permission error):
    // an empty table would pass the check below without looking at anything.
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("*filter") {
        return None;
    }
    Some(text.lines().filter(|l| !l.starts_with('#') && !l.starts_with(':')).map(String::from).collect())
}

/// Nothing of localemu's is left, and every host rule added since `before` names only
/// interfaces that still exist (tests running beside this one may add their own).
fn assert_nothing_left(before: &Snapshot, what: &str) {
    let after = snapshot();
    let new_containers: Vec<&String> = after.containers.difference(&before.containers).collect();
    let ours: Vec<&&String> =
        new_containers.iter().filter(|c| c.starts_with("localemu-") || c.contains(traffic::IMAGE)).collect();
    assert!(ours.is_empty(), "{what}: containers left: {ours:?}");
    let nets: Vec<&String> =
        after.networks.difference(&before.networks).filter(|n| n.starts_with("localemu-")).collect();
    assert!(nets.is_empty(), "{what}: networks left: {nets:?}");
    let (Some(rules_before), Some(rules_after)) = (&before.iptables, &after.iptables) else {
        // Containers and networks were checked; the host's rules skip, saying so (under
        // CI, where the runner is root, a skip fails).
        crate::skip::skip(what, "the host's firewall was not checked: iptables-save needs root");
        return;
    };
    let links = sh("ip", &["-o", "link", "show"]);
    let added: Vec<&String> = rules_after.difference(rules_before).collect();
    for rule in &added {
        assert!(!rule.contains("localemu"), "{what}: host rule left: {rule}");
        for iface in rule.split_whitespace().filter(|w| w.starts_with("br-")) {
            assert!(links.contains(&format!(": {iface}")), "{what}: host rule for a bridge that is gone: {rule}");
        }
    }
    eprintln!(
        "{what}: containers, networks and host rules as before (host rules added meanwhile by others: {added:?})"
    );
}

/// The failed checks' findings and every probe that disagrees with the evaluator, a line each.
fn failures(report: &serde_json::Value) -> String {
    let mut lines = Vec::new();
    for c in report["checks"].as_array().into_iter().flatten().filter(|c| c["status"] == "fail") {
        for f in c["findings"].as_array().into_iter().flatten() {
            lines.push(format!(
                "check {}: {} {}: expected {}, found {}",
                c["id"], f["id"], f["resource"], f["expected"], f["found"]
            ));
        }
    }
    for p in
        report["traffic"]["probes"].as_array().into_iter().flatten().filter(|p| p["agreement"]["kind"] == "disagrees")
    {
        lines.push(format!(
            "probe {} → {} {}/{}: attempts {}, retried {}",
            p["from"], p["to"], p["protocol"], p["port"], p["attempts"], p["retried"]
        ));
    }
    lines.join("\n")
}

/// Whether traffic can run here; says why and skips (fails under CI) if not.
async fn ready(test: &str) -> bool {
    if let Err(e) = python::find_python_for(&Flavor::LocalEmu.venv()) {
        skip(test, &format!("localemu needs a Python this machine lacks: {e}"));
        return false;
    }
    match traffic::preflight().await {
        Ok(built) => {
            if let Some(d) = built {
                eprintln!("built {} in {:.0} s", traffic::IMAGE, d.as_secs_f64());
            }
            true
        }
        Err(e) => {
            skip(test, &format!("no real traffic here: {e}"));
            false
        }
    }
}

/// The fixture's design, worked by hand (tests/fixtures/traffic-nacl-before-groups.toml):
/// front and back have custom NACLs allowing TCP 1024-65535 within the VPC both ways; side
/// is on the default NACL. Groups: front sends only 8080 (to back and side) and admits
/// nothing; back admits 8080 from front and sends nothing; side admits 8080 from the VPC
/// and sends anything. The closed ports sampled per ordered pair, in the order front,
/// back, side, take turns through 22, 3306, 5432, 6379, 9200, 27017 (TCP) and 123, 161,
/// 514, 1812, 5353 (UDP). So:
/// - both intended flows pass, on AWS and on localemu;
/// - every UDP probe and front → back tcp/22 die at a NACL (UDP, or a port below 1024);
/// - front → side tcp/3306 and back → side tcp/6379 die at side's group, which localemu
///   enforces (side has no custom NACL): agreement;
/// - back → front tcp/5432, side → front tcp/9200 and side → back tcp/27017 are stopped
///   on AWS by a group only, behind a custom NACL that allows them: localemu lets them
///   through, the NACL bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_through_localemu_matches_the_evaluator_but_for_the_named_nacl_bug_and_leaves_nothing() {
    let _t = crate::support::timer();
    let test = "traffic_through_localemu_matches_the_evaluator_but_for_the_named_nacl_bug_and_leaves_nothing";
    if !ready(test).await {
        return;
    }
    let before = snapshot();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--quiet", "--spec", SPEC, "--target", "localemu", "--traffic", "--format", "json"])
        .output()
        .unwrap();
    let text = crate::support::text(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    // What failed first, briefly: the whole report is long, and a log viewer cuts it.
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", failures(&report));
    let t = &report["traffic"];

    let instances = t["instances"].as_array().unwrap();
    let placed: Vec<(&str, &str)> =
        instances.iter().map(|i| (i["endpoint"].as_str().unwrap(), i["address"].as_str().unwrap())).collect();
    assert_eq!(placed.len(), 3, "{placed:?}");
    for (endpoint, address) in &placed {
        let subnet = match *endpoint {
            "front" => "10.30.1.",
            "back" => "10.30.2.",
            "side" => "10.30.3.",
            other => panic!("unexpected endpoint {other}"),
        };
        assert!(address.starts_with(subnet), "{endpoint} at {address}, outside its subnet");
    }
    assert_eq!(t["nacls_reapplied"].as_array().unwrap().len(), 2, "front's and back's custom NACLs");

    let probes = t["probes"].as_array().unwrap();
    let key = |p: &serde_json::Value| {
        format!(
            "{} → {} {}/{}",
            p["from"].as_str().unwrap(),
            p["to"].as_str().unwrap(),
            p["protocol"].as_str().unwrap(),
            p["port"]
        )
    };
    assert_eq!(
        probes.len(),
        14,
        "2 intended, and 6 ordered pairs × TCP and UDP: {:#?}",
        probes.iter().map(key).collect::<Vec<_>>()
    );
    let intended: BTreeSet<String> = probes.iter().filter(|p| p["intended"] == true).map(key).collect();
    assert_eq!(intended, ["front → back tcp/8080", "front → side tcp/8080"].map(String::from).into());
    for p in probes.iter().filter(|p| p["intended"] == true) {
        assert_eq!((p["expected"].as_bool(), p["passed"].as_bool()), (Some(true), Some(true)), "{}", key(p));
    }
    let by_bug: BTreeSet<String> = probes
        .iter()
        .filter(|p| p["agreement"]["kind"] == "divergence")
        .inspect(|p| assert_eq!(p["agreement"]["detail"], "nacl-allow-skips-security-groups", "{}", key(p)))
        .map(key)
        .collect();
    assert_eq!(
        by_bug,
        ["back → front tcp/5432", "side → front tcp/9200", "side → back tcp/27017"].map(String::from).into(),
        "{text}"
    );
    for p in probes.iter().filter(|p| p["agreement"]["kind"] != "divergence") {
        assert_eq!(p["agreement"]["kind"], "agrees", "{}: {p}", key(p));
    }
    for p in probes.iter().filter(|p| p["intended"] == false && !by_bug.contains(&key(p))) {
        assert_eq!(p["passed"], false, "{} is closed on AWS and on localemu", key(p));
    }
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "traffic").expect("a traffic check");
    assert_eq!(check["status"], "divergence");
    assert_eq!(check["divergences"], serde_json::json!(["nacl-allow-skips-security-groups"]));
    assert_eq!(t["leftovers"], serde_json::json!([]));
    assert_eq!(t["out_of_scope"], serde_json::json!([]));
    assert_nothing_left(&before, "after a run with traffic");

    // The same run through the library, dropped as soon as its first instance container
    // exists (as a panic or a test's timeout would drop it): the instances' guard and
    // the run's teardown guard remove everything, and the emulator's stop what is left.
    let before = snapshot();
    let mut opts = TargetOptions::new(TargetKind::LocalEmu);
    opts.localemu_containers = true;
    opts.startup_timeout = Duration::from_secs(600);
    let ledgers = crate::support::ledger_dir();
    opts.ledger_dir = Some(ledgers.path().to_path_buf());
    let target = Target::start(&opts).await.expect("localemu with containers");
    let (spec, source) = microseg_harness::spec::load_file(std::path::Path::new(SPEC)).unwrap();
    let plan = microseg_harness::plan::Plan::from_spec(&spec, &source).unwrap();
    let run_opts = microseg_harness::run::RunOptions {
        traffic: true,
        no_signal_handler: true,
        ledger_dir: Some(ledgers.path().to_path_buf()),
        ..Default::default()
    };
    let run_target = microseg_harness::run::RunTarget::from(&target);
    let run = microseg_harness::run::run(&plan, &run_target, &run_opts);
    let first_container = async {
        loop {
            let ids = instance_containers();
            if !ids.trim().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let appeared = tokio::select! {
        r = run => panic!("the run ended before any instance container appeared: {:?}", r.map(|r| r.verdict())),
        a = tokio::time::timeout(Duration::from_secs(120), first_container) => a.is_ok(),
    };
    assert!(appeared, "no instance container within 120 s");
    // Dropped: the guards did their work synchronously, before select! returned; an
    // instance whose RunInstances was still in flight is found by the run's tag.
    let left = instance_containers();
    assert!(left.trim().is_empty(), "containers left by the dropped run before the emulator stopped: {left}");
    target.stop().await;
    assert_nothing_left(&before, "after a run dropped while placing");

    // A microseg SIGKILLed while placing: its localemu dies with it (PR_SET_PDEATHSIG)
    // and removes nothing, so the instance containers and localemu's networks stay until
    // `sweep --abandoned` removes them. The killed run gets a cache dir of its own (its
    // ledger stays there; the venv is linked in), the sweep another, empty one: only the
    // Docker side is at stake here. It also gets a temp dir of its own, which the sweep
    // is given too: the killed localemu's scratch dir is left there, and the sweep must
    // remove it.
    let before = snapshot();
    let run_cache = tempfile::tempdir().unwrap();
    let run_tmp = tempfile::tempdir().unwrap();
    let venv = python::venv_dir_for(
        &Flavor::LocalEmu.venv(),
        &python::find_python_for(&Flavor::LocalEmu.venv()).expect("checked above"),
    );
    std::os::unix::fs::symlink(&venv, run_cache.path().join(venv.file_name().unwrap())).unwrap();
    let mut killed = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["run", "--quiet", "--spec", SPEC, "--target", "localemu", "--traffic"])
        .env("MICROSEG_CACHE_DIR", run_cache.path())
        .env("TMPDIR", run_tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let appeared = tokio::time::timeout(Duration::from_secs(120), async {
        while instance_containers().trim().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(appeared, "no instance container within 120 s");
    let left = instance_containers();
    assert!(!left.trim().is_empty(), "the killed run's containers should outlive it, for the sweep to remove");
    // A request the killed localemu had sent (a container's create, start or network
    // connect) is still carried out by the engine: wait until its containers stop changing.
    settle_instance_containers().await;
    let sweep_cache = tempfile::tempdir().unwrap();
    // The lock is free once the killed run's localemu is gone (the kernel kills it at once).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["sweep", "--abandoned"])
        .env("MICROSEG_CACHE_DIR", sweep_cache.path())
        .env("TMPDIR", run_tmp.path())
        .output()
        .unwrap();
    let said = crate::support::text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("removed container localemu-ec2-i-"), "{said}");
    assert!(said.contains("removed network localemu-vpc-vpc-"), "{said}");
    let scratch_left: Vec<String> = std::fs::read_dir(run_tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("microseg-localemu-"))
        .collect();
    assert!(scratch_left.is_empty(), "the killed run's scratch dir survived the sweep: {scratch_left:?}\n{said}");
    assert!(said.contains("the scratch dir of an emulator whose microseg was killed"), "{said}");
    assert_nothing_left(&before, "after a killed run and sweep --abandoned");
}
