//! The self-started moto and localemu targets: each installs into its own cached venv,
//! listens on loopback alone, probes and names its divergences, serves a whole run, and
//! leaves no process, scratch directory or Docker network behind (docs/EMULATOR.md,
//! "moto 5.2.5 as a target", "localemu 1.3.2 as a target"). One test per target keeps
//! the suite's time modest: a cold localemu venv takes minutes, a warm start 11-17 s.

use std::time::{Duration, Instant};

use microseg_harness::capabilities::Divergence;
use microseg_harness::checks::Status;
use microseg_harness::run::{self, RunOptions, RunTarget};
use microseg_harness::target::{Flavor, Guard, PyEmulator, Target, TargetKind, TargetOptions, python};

use crate::skip::skip;
use crate::support::{listening_addresses, process_alive, recipe};

/// Whether a Python for `flavor` is here; says why and skips (fails under CI) if not.
fn python_for(test: &str, flavor: Flavor) -> bool {
    match python::find_python_for(&flavor.venv()) {
        Ok(_) => true,
        Err(e) => {
            skip(test, &format!("{flavor} needs a Python this machine lacks: {e}"));
            false
        }
    }
}

/// Starts the target, checks where it listens, runs the recipe on it, stops it, and
/// checks that its processes and scratch directory are gone. Returns the run's report.
async fn serve_one_run(kind: TargetKind) -> (Target, run::RunReport, u32, std::path::PathBuf) {
    let ledgers = crate::support::ledger_dir();
    let mut opts = TargetOptions::new(kind.clone());
    opts.ledger_dir = Some(ledgers.path().to_path_buf());
    opts.startup_timeout = Duration::from_secs(600);
    let t = Target::start(&opts).await.unwrap_or_else(|e| panic!("{kind} target: {e}"));
    let (pid, state) = match t.guard() {
        Guard::Py(p) => (p.pid().expect("running"), p.state_dir().to_path_buf()),
        other => panic!("expected a Python emulator guard, got {other:?}"),
    };
    assert!(process_alive(pid) && state.is_dir());
    // Loopback only, on every socket any of its processes listens on.
    let listening = listening_addresses(pid);
    let port: u16 = t.endpoint.as_deref().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    assert!(listening.iter().any(|a| a.port() == port), "the port {port} is not among {listening:?}");
    let exposed: Vec<_> = listening.iter().filter(|a| !a.ip().is_loopback()).collect();
    assert!(exposed.is_empty(), "{kind} listens beyond loopback: {exposed:?} (all: {listening:?})");
    let run_opts = RunOptions { ledger_dir: Some(ledgers.path().to_path_buf()), ..Default::default() };
    let report = run::run(&recipe(), &RunTarget::from(&t), &run_opts).await.expect("the run completes");
    (t, report, pid, state)
}

fn check_status<'a>(report: &'a run::RunReport, id: &str) -> &'a microseg_harness::checks::CheckResult {
    report.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no {id} check"))
}

/// moto 5.2.5: no CloudWatch CBOR, so the alarm is a named divergence, never a failure;
/// the rest of the recipe is built, checked and torn down. Also: `Drop` stops it, and
/// so does the death of the process that started it (SIGKILL skips every handler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_target_probes_serves_a_run_and_leaves_nothing() {
    let _t = crate::support::timer();
    let test = "moto_target_probes_serves_a_run_and_leaves_nothing";
    if !python_for(test, Flavor::Moto) {
        return;
    }
    let (t, report, pid, state) = serve_one_run(TargetKind::Moto).await;
    assert!(t.description.starts_with("moto 5.2.5, host process on http://127.0.0.1:"), "{}", t.description);
    // Probed by behaviour (docs/EMULATOR.md, "Fidelity matrix").
    let caps = &t.capabilities;
    for d in [Divergence::CloudwatchNoCbor, Divergence::NaclWithoutDefaultDeny, Divergence::NaclRuleNumberUnbounded] {
        assert!(caps.has(d), "{d} not found: {:?}", caps.divergences);
    }
    assert_eq!(caps.observed.get("cloudwatch-cbor").map(String::as_str), Some("HTTP 404"));
    assert_eq!(caps.observed.get("delete-vpc-with-nacl").map(String::as_str), Some("deleted, NACLs orphaned"));
    assert_eq!(caps.observed.get("default-group-rules").map(String::as_str), Some("no ingress, egress all"));
    // The alarm: not decidable, by name; the filter part of the check still decided.
    let alarm = check_status(&report, "alarm");
    assert_eq!((alarm.status, alarm.divergences.clone()), (Status::Divergence, vec!["cloudwatch-no-cbor".to_string()]));
    assert_eq!(report.verdict(), microseg_harness::verdict::Verdict::Pass, "{:#?}", report.checks);
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    assert!(check_status(&report, "teardown").note.contains("cloudwatch-no-cbor"));
    t.stop().await;
    assert!(!process_alive(pid), "moto pid {pid} survived stop");
    assert!(!state.exists(), "scratch dir {} survived stop", state.display());

    // Through the library's API, as a user's test would: the hardened recipe deployed,
    // checked (its alarm a named divergence, not a failure) and torn down.
    let emulator = microseg_harness::Emulator::start(microseg_harness::EmulatorKind::Moto).await.expect("moto");
    let deployment = emulator.deploy(&microseg_harness::Scenario::builtin("recipe").hardened()).await.unwrap();
    let verdict = deployment.check().await.unwrap();
    let alarm = verdict.checks.iter().find(|c| c.id == "alarm").unwrap();
    assert_eq!((alarm.status, alarm.divergences.clone()), (Status::Divergence, vec!["cloudwatch-no-cbor".to_string()]));
    verdict.assert_pass();
    deployment.teardown().await.unwrap().assert_complete();
    drop(emulator);

    // Drop stops it too.
    let emu = PyEmulator::start(Flavor::Moto, Duration::from_secs(120), false).await.expect("moto");
    let (pid, state) = (emu.pid().unwrap(), emu.state_dir().to_path_buf());
    drop(emu);
    assert!(!process_alive(pid) && !state.exists(), "moto pid {pid} or its dir survived drop");

    // The death of its starter: microseg killed while it waits for moto to be ready.
    let mut microseg = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", "moto"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let child = loop {
        if let Some(pid) = children_of(microseg.id()).into_iter().next() {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "microseg started no emulator in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(microseg.try_wait().unwrap().is_none(), "microseg finished before it could be killed");
    microseg.kill().unwrap();
    microseg.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process_alive(child), "moto pid {child} outlived the microseg that started it");
}

/// localemu 1.3.2: CBOR works, so the alarm is built and checked; its EC2 divergences are
/// moto's. It must listen on loopback alone (its default server binds every interface)
/// and must not touch Docker (with an engine it answers, it makes a network per VPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localemu_target_probes_serves_a_run_and_leaves_nothing() {
    let _t = crate::support::timer();
    let test = "localemu_target_probes_serves_a_run_and_leaves_nothing";
    if !python_for(test, Flavor::LocalEmu) {
        return;
    }
    let networks_before = localemu_networks();
    let (t, report, pid, state) = serve_one_run(TargetKind::LocalEmu).await;
    assert!(t.description.starts_with("localemu 1.3.2, host process on http://127.0.0.1:"), "{}", t.description);
    let caps = &t.capabilities;
    assert!(!caps.has(Divergence::CloudwatchNoCbor), "{:?}", caps.divergences);
    assert_eq!(caps.observed.get("cloudwatch-cbor").map(String::as_str), Some("answers"));
    for d in [Divergence::NaclWithoutDefaultDeny, Divergence::NaclRuleNumberUnbounded] {
        assert!(caps.has(d), "{d} not found: {:?}", caps.divergences);
    }
    let alarm = check_status(&report, "alarm");
    assert_eq!(alarm.status, Status::Pass, "{alarm:?}");
    assert_eq!(report.verdict(), microseg_harness::verdict::Verdict::Pass, "{:#?}", report.checks);
    assert_eq!(localemu_networks(), networks_before, "localemu made Docker networks");
    t.stop().await;
    assert!(!process_alive(pid), "localemu pid {pid} survived stop");
    assert!(!state.exists(), "scratch dir {} survived stop", state.display());
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: comm may hold spaces, so read after its closing paren.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Docker networks named like localemu's per-VPC ones (none where Docker does not answer).
fn localemu_networks() -> Vec<String> {
    let out = std::process::Command::new("docker").args(["network", "ls", "--format", "{{.Name}}"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("localemu-")).map(String::from).collect()
    })
    .unwrap_or_default()
}

/// `doctor --all`: every emulator target available here started, fully probed and
/// stopped, and the matrix printed. The cells asserted are the ones measured by hand
/// with boto3 against each emulator (docs/EMULATOR.md, "Fidelity matrix"); the AWS
/// column is AWS's documented behaviour, never an emulator's.
#[test]
fn doctor_all_prints_the_fidelity_matrix_of_every_emulator_here() {
    let _t = crate::support::timer();
    let test = "doctor_all_prints_the_fidelity_matrix_of_every_emulator_here";
    if !python_for(test, Flavor::Moto) || !python_for(test, Flavor::LocalEmu) {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "doctor", "--all"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", crate::support::text(&out));
    let header = stdout.lines().find(|l| l.starts_with("BEHAVIOUR")).unwrap_or_else(|| panic!("no matrix:\n{stdout}"));
    let columns: Vec<&str> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    // localstack-host, moto and localemu serve here; the container where its image is.
    for target in ["localstack-host", "moto", "localemu"] {
        assert!(columns.contains(&target), "no {target} column in {columns:?}");
    }
    let cells = |question: &str| -> Vec<String> {
        let line = stdout.lines().find(|l| l.starts_with(question)).unwrap_or_else(|| panic!("no {question} row"));
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
    };
    let at = |row: &[String], target: &str| row[columns.iter().position(|c| *c == target).unwrap()].clone();
    let cbor = cells("CloudWatch DescribeAlarms");
    assert_eq!(
        (at(&cbor, "AWS (documented)"), at(&cbor, "moto"), at(&cbor, "localemu"), at(&cbor, "localstack-host")),
        ("answers".into(), "≠ HTTP 404".into(), "answers".into(), "answers".into())
    );
    for target in ["localstack-host", "moto", "localemu"] {
        assert_eq!(at(&cells("entries of a new custom NACL"), target), "≠ none");
        assert_eq!(at(&cells("NACL rule number 40000"), target), "≠ accepted");
        assert_eq!(at(&cells("a deleted subnet's NACL association"), target), "≠ kept");
        assert_eq!(at(&cells("DeleteVpc while a subnet remains"), target), "DependencyViolation");
        assert_eq!(at(&cells("flow log delivering through a role"), target), "≠ ACTIVE, delivery SUCCESS");
    }
    assert!(
        stdout.contains("moto: ")
            && stdout.lines().any(|l| l.trim_start().starts_with("moto:") && l.contains("cloudwatch-no-cbor"))
    );
}

/// `run --target all-emulators`: the recipe on every emulator here, each run's verdict,
/// and no disagreement about the deployment once ids are taken out (measured by hand on
/// 2026-11-30 for the recipe and three-tier on LocalStack 4.14.0, moto 5.2.5 and
/// localemu 1.3.2). Each disagreement would be an emulator bug, and the run would fail.
#[test]
fn a_differential_run_builds_the_recipe_on_every_emulator_and_finds_them_agreeing() {
    let _t = crate::support::timer();
    let test = "a_differential_run_builds_the_recipe_on_every_emulator_and_finds_them_agreeing";
    if !python_for(test, Flavor::Moto) || !python_for(test, Flavor::LocalEmu) {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", "all-emulators"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", crate::support::text(&out));
    for target in ["localstack-host", "moto", "localemu"] {
        let row = stdout.lines().find(|l| l.starts_with(&format!("{target} "))).unwrap_or_else(|| panic!("{stdout}"));
        assert!(row.split_whitespace().nth(1) == Some("Pass"), "{row}");
    }
    let moto = stdout.lines().find(|l| l.starts_with("moto ")).unwrap();
    assert!(moto.contains("cloudwatch-no-cbor"), "{moto}");
    assert!(stdout.contains("emulators agree on the observed deployment"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "verdict: Pass"), "{stdout}");
}

/// Flags that belong to one target are refused with all-emulators, before anything starts.
#[test]
fn a_differential_run_refuses_flags_of_a_single_run() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", "all-emulators", "--keep"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(microseg_cli::exit::USAGE), "{}", crate::support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--target all-emulators") && stderr.contains("--keep"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", "all-emulators", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(microseg_cli::exit::USAGE), "{}", crate::support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prints text only, not --format Json"), "{stderr}");
}
