//! Shared fixtures: an emulator per group of tests, clients for it, inventory helpers,
//! and a per-test timer.
//!
//! Why groups: LocalStack never forgets some state (a VPC's default NACL once it had
//! subnets, NAT gateways in state `deleted`), and `DescribeNetworkAcls` gets 10–20×
//! slower as that piles up (docs/EMULATOR.md, "More LocalStack 4.14.0 facts measured by
//! the project"). The heavy groups, the fault matrices and the NAT scenarios, each get a
//! fresh emulator, so neither slows the other or the rest.
//! A LocalStack is single-threaded Python: three of them also use both cores.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use microseg_harness::aws::Clients;
use microseg_harness::capabilities::Capabilities;
use microseg_harness::inventory::{self, Item, Scope};
use microseg_harness::plan::Plan;
use microseg_harness::run_id::RunId;
use microseg_harness::spec;
use microseg_harness::target::{LocalStackHost, Target, TargetKind, TargetOptions};

/// A set of tests that shares one emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Everything not heavy: the recipe, the gate, the CLI, CloudFormation.
    Shared,
    /// The fault-injection matrices (`faults.rs`): many runs, many orphaned NACLs.
    Faults,
    /// The scenarios with NAT gateways (`scenarios.rs`), which LocalStack never purges.
    Nat,
}

impl Group {
    const ALL: [Group; 3] = [Group::Shared, Group::Faults, Group::Nat];

    fn index(self) -> usize {
        Group::ALL.iter().position(|g| *g == self).expect("listed")
    }
}

/// The group's emulator: started on first use, on a thread with its own runtime, and
/// kept in a static. Statics are never dropped; the reaper's atexit hook stops it.
///
/// With `MICROSEG_TEST_REUSE=1` the shared group runs on the reused emulator instead
/// (`microseg emulator`, started with CloudFormation if none is up, and left up for the
/// next suite): a developer's repeated suites skip its start and its probe. Its runs keep
/// to their own tags, as on any shared emulator. Not for CI, whose leak check wants every
/// emulator gone.
pub fn endpoint(group: Group) -> &'static str {
    static REUSED: OnceLock<String> = OnceLock::new();
    if group == Group::Shared && std::env::var("MICROSEG_TEST_REUSE").is_ok_and(|v| v == "1") {
        return REUSED.get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let exe = std::path::Path::new(env!("CARGO_BIN_EXE_microseg"));
                let services = ["cloudformation".to_string()];
                let idle = microseg_harness::target::reuse::DEFAULT_IDLE;
                let up = rt.block_on(microseg_harness::target::reuse::ensure_up(
                    exe,
                    idle,
                    Duration::from_secs(300),
                    &services,
                ));
                up.unwrap_or_else(|e| panic!("MICROSEG_TEST_REUSE=1: the reused emulator: {e}")).0.endpoint
            })
            .join()
            .expect("emulator thread")
        });
    }
    static EMULATORS: [OnceLock<(LocalStackHost, String)>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    &EMULATORS[group.index()]
        .get_or_init(|| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                // CloudFormation too where the gate's tests deploy a second implementation.
                let extra: &[&str] = if group == Group::Shared { &["cloudformation"] } else { &[] };
                let host = rt
                    .block_on(LocalStackHost::start_with_services(Duration::from_secs(300), false, extra))
                    .unwrap_or_else(|e| panic!("the {group:?} group's LocalStack starts: {e}"));
                let url = host.endpoint();
                (host, url)
            })
            .join()
            .expect("emulator thread")
        })
        .1
}

/// The shared group's emulator.
pub fn shared_endpoint() -> &'static str {
    endpoint(Group::Shared)
}

/// Times the test it is created in, from creation to drop, and appends the time to
/// `target/tmp/test-times.tsv` (`seconds<TAB>test`): libtest on stable reports no
/// per-test times, and `.ci/run` lists the slowest from this file.
#[must_use = "the timer measures until it is dropped"]
pub struct Timer {
    started: Instant,
}

/// Starts a [`Timer`] for the calling test (named by its thread, as libtest names it).
pub fn timer() -> Timer {
    Timer { started: Instant::now() }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("unnamed").to_string();
        let outcome = if std::thread::panicking() { "\tFAILED" } else { "" };
        let line = format!("{:.1}\t{name}{outcome}\n", self.started.elapsed().as_secs_f64());
        let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-times.tsv");
        // One write of one short line: appends from concurrent tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Whether the exhaustive fault matrices run: `MICROSEG_EXHAUSTIVE=1` (the nightly
/// workflow sets it). By default they are sampled.
pub fn exhaustive() -> bool {
    std::env::var("MICROSEG_EXHAUSTIVE").is_ok_and(|v| v == "1")
}

/// The seed of a sampled matrix: `MICROSEG_TEST_SEED` when set, else drawn from the
/// clock. Printed either way, so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("MICROSEG_TEST_SEED") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("MICROSEG_TEST_SEED={v:?} is not an unsigned integer")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64,
    };
    eprintln!("{test}: MICROSEG_TEST_SEED={seed} (set it to replay this sample)");
    seed
}

/// A target on a group's emulator (endpoint kind, probed).
pub async fn target_on(group: Group) -> Target {
    Target::start(&TargetOptions::new(TargetKind::Endpoint(endpoint(group).to_string())))
        .await
        .expect("endpoint target")
}

/// Clients, capabilities and description of a group's emulator.
pub async fn on(group: Group) -> (Clients, Capabilities, String) {
    let t = target_on(group).await;
    (t.clients(), t.capabilities.clone(), t.description.clone())
}

/// Clients and capabilities on the shared emulator.
pub async fn shared() -> (Clients, Capabilities, String) {
    on(Group::Shared).await
}

/// The built-in recipe, planned.
pub fn recipe() -> Plan {
    let (s, src) = spec::load("recipe").unwrap();
    Plan::from_spec(&s, &src).unwrap()
}

/// Everything tagged with this run.
pub async fn inventory_of(clients: &Clients, run: &RunId) -> Vec<Item> {
    inventory::list(clients, &Scope::Run(run.clone())).await.expect("inventory")
}

/// Whether a process exists.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Every TCP address on which a process of this process group listens, read from
/// `/proc`: each process's socket inodes, matched against the LISTEN entries of
/// `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn listening_addresses(pgid: u32) -> Vec<std::net::SocketAddr> {
    let mut inodes = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // SAFETY: getpgid only reads the process table.
        if unsafe { libc::getpgid(pid) } != pgid as i32 {
            continue;
        }
        for fd in std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten() {
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            if let Some(inode) = link.to_str().and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1, st is field 3 (0A: LISTEN), inode is field 9.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                found.push(proc_net_address(fields[1]));
            }
        }
    }
    found
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as `/proc/net/tcp*` writes
/// them: each 32-bit word in host byte order.
fn proc_net_address(hex: &str) -> std::net::SocketAddr {
    let (ip, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let words: Vec<u32> = (0..ip.len() / 8).map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).unwrap()).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap()).into(),
        _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap()).into(),
    };
    std::net::SocketAddr::new(ip, port)
}

/// A ledger dir private to one test.
pub fn ledger_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A finished command's stdout and stderr, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs the `microseg` binary on the shared emulator (`--target endpoint=…` appended).
pub fn microseg_on_shared(args: &[&str]) -> std::process::Output {
    microseg_on(Group::Shared, args)
}

/// Runs the `microseg` binary on a group's emulator (`--target endpoint=…` appended).
pub fn microseg_on(group: Group, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(args)
        .arg("--target")
        .arg(format!("endpoint={}", endpoint(group)))
        .output()
        .unwrap()
}

/// `microseg sweep --abandoned` on a group's emulator, with `cache` as its cache dir:
/// where a killed run left its ledger.
pub fn sweep_abandoned(group: Group, cache: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["sweep", "--quiet", "--abandoned", "--target", &format!("endpoint={}", endpoint(group))])
        .env("MICROSEG_CACHE_DIR", cache)
        .output()
        .unwrap()
}

/// A run of the recipe kept in place on the shared emulator (the caller sweeps it).
pub async fn kept_recipe_run() -> (Clients, Capabilities, microseg_harness::run::RunReport) {
    let (clients, caps, desc) = shared().await;
    let dir = ledger_dir();
    let opts = microseg_harness::run::RunOptions {
        keep: true,
        ledger_dir: Some(dir.path().into()),
        no_signal_handler: true,
        ..Default::default()
    };
    let report = microseg_harness::run::run(
        &recipe(),
        &microseg_harness::run::RunTarget::new(clients.clone(), &desc, caps.clone()),
        &opts,
    )
    .await
    .unwrap();
    assert!(report.kept);
    (clients, caps, report)
}

/// Sweeps a kept run when dropped, so a failed assertion cannot leak the deployment.
/// Must be dropped inside a multi-threaded Tokio runtime (it blocks in place).
pub struct SweepOnDrop {
    clients: Clients,
    run_id: RunId,
}

impl SweepOnDrop {
    /// Guards the run's resources.
    pub fn new(clients: &Clients, run_id: &RunId) -> Self {
        SweepOnDrop { clients: clients.clone(), run_id: run_id.clone() }
    }
}

impl Drop for SweepOnDrop {
    fn drop(&mut self) {
        let selection = microseg_harness::sweep::Selection::Run(self.run_id.clone());
        let swept = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(microseg_harness::sweep::sweep(&self.clients, &selection))
        });
        if let Err(e) = swept {
            eprintln!("sweeping run {} failed: {e}", self.run_id);
        }
    }
}
