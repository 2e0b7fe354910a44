//! Shared fixtures: one emulator per test binary, clients for it, inventory helpers.

use std::sync::OnceLock;
use std::time::Duration;

use microseg_harness::aws::Clients;
use microseg_harness::capabilities::Capabilities;
use microseg_harness::inventory::{self, Item, Scope};
use microseg_harness::plan::Plan;
use microseg_harness::run_id::RunId;
use microseg_harness::spec;
use microseg_harness::target::{LocalStackHost, Target, TargetKind, TargetOptions};

/// The binary's shared emulator: started once, on a thread with its own runtime, and
/// kept in a static. Statics are never dropped; the reaper's atexit hook stops it.
pub fn shared_endpoint() -> &'static str {
    static SHARED: OnceLock<(LocalStackHost, String)> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                // CloudFormation too: the gate's tests deploy a second implementation with it.
                let host = rt
                    .block_on(LocalStackHost::start_with_services(Duration::from_secs(300), false, &["cloudformation"]))
                    .expect("shared LocalStack starts");
                let url = host.endpoint();
                (host, url)
            })
            .join()
            .expect("shared emulator thread")
        })
        .1
}

/// A target on the shared emulator (endpoint kind, probed).
pub async fn shared_target() -> Target {
    Target::start(&TargetOptions::new(TargetKind::Endpoint(shared_endpoint().to_string())))
        .await
        .expect("endpoint target")
}

/// Clients and capabilities on the shared emulator.
pub async fn shared() -> (Clients, Capabilities, String) {
    let t = shared_target().await;
    (t.clients(), t.capabilities.clone(), t.description.clone())
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
    std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(args)
        .arg("--target")
        .arg(format!("endpoint={}", shared_endpoint()))
        .output()
        .unwrap()
}

/// `microseg sweep --abandoned` on the shared emulator, with `cache` as its cache dir:
/// where a killed run left its ledger.
pub fn sweep_abandoned(cache: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["sweep", "--quiet", "--abandoned", "--target", &format!("endpoint={}", shared_endpoint())])
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
    let report = microseg_harness::run::run(&recipe(), &clients, &desc, None, &caps, None, &opts).await.unwrap();
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
