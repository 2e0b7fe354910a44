//! The reused emulator (`microseg emulator up|status|down`, `--target reuse`): runs share
//! one LocalStack and its probe; it stops on `down`, by itself when unused, and what a
//! killed supervisor leaves is cleared by the next `up`. Each test keeps its own state
//! directory (`MICROSEG_REUSE_DIR`), apart from a developer's reused emulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use microseg_cli::exit;
use microseg_harness::target::health;
use microseg_harness::target::reuse::Reused;

use crate::support::{process_alive, text};

/// A state directory, and `emulator down` on drop: a failed assertion leaves nothing.
struct Reuse {
    dir: tempfile::TempDir,
}

impl Reuse {
    fn new() -> Reuse {
        Reuse { dir: tempfile::tempdir().unwrap() }
    }

    fn microseg(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_microseg"))
            .args(args)
            .env("MICROSEG_REUSE_DIR", self.dir.path())
            .output()
            .unwrap()
    }

    fn state(&self) -> Option<Reused> {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("localstack.json")).ok()?).ok()
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        let _ = self.microseg(&["emulator", "down"]);
    }
}

fn answers(endpoint: &str) -> bool {
    health::fetch_within(endpoint, Duration::from_secs(2)).is_ok()
}

/// The supervisor, its emulator and its state directory are all gone, within a few
/// seconds: an exited supervisor stays a zombie until its adoptive parent (init) reaps it.
fn gone(pid: u32, endpoint: &str, volume_dir: &Path) -> bool {
    wait_until(Duration::from_secs(10), || !process_alive(pid) && !answers(endpoint) && !volume_dir.exists())
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    done()
}

fn run_json(reuse: &Reuse) -> serde_json::Value {
    let out = reuse.microseg(&["--quiet", "run", "--target", "reuse", "--format", "json"]);
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn runs_share_one_reused_emulator_until_down() {
    let _t = crate::support::timer();
    let reuse = Reuse::new();
    let none = reuse.microseg(&["emulator", "status"]);
    assert!(text(&none).contains("none: no reused emulator"), "{}", text(&none));

    let up = reuse.microseg(&["--quiet", "emulator", "up", "--idle", "10m"]);
    assert_eq!(up.status.code(), Some(exit::PASS), "{}", text(&up));
    let state = reuse.state().expect("up records the emulator");
    assert!(text(&up).contains(&format!("started LocalStack 4.14.0 at {}", state.endpoint)), "{}", text(&up));
    assert!(state.endpoint.starts_with("http://127.0.0.1:"), "loopback only: {}", state.endpoint);
    assert!(process_alive(state.supervisor_pid) && answers(&state.endpoint));

    // Two runs: both on the same emulator, which nothing started again.
    let first = run_json(&reuse);
    let second = run_json(&reuse);
    for r in [&first, &second] {
        let target = r["target"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(target.contains(&format!("reused host process on {} (already up", state.endpoint)), "{target}");
    }
    assert_eq!(reuse.state(), Some(state.clone()), "the same supervisor and emulator throughout");
    let again = reuse.microseg(&["--quiet", "emulator", "up"]);
    assert!(text(&again).contains(&format!("already up: LocalStack 4.14.0 at {}", state.endpoint)), "{}", text(&again));

    let status = reuse.microseg(&["emulator", "status"]);
    assert!(text(&status).contains(&format!("up: LocalStack 4.14.0 at {}", state.endpoint)), "{}", text(&status));

    let down = reuse.microseg(&["emulator", "down"]);
    assert!(text(&down).contains(&format!("stopped LocalStack 4.14.0 at {}", state.endpoint)), "{}", text(&down));
    assert!(gone(state.supervisor_pid, &state.endpoint, &state.volume_dir), "down left something of {state:?}");
    assert!(reuse.state().is_none());
    // With nothing up, validate-style reads refuse rather than start an empty emulator.
    let read = reuse.microseg(&["validate", "--vpc-id", "vpc-1", "--target", "reuse"]);
    assert_eq!(read.status.code(), Some(exit::TARGET_UNAVAILABLE), "{}", text(&read));
    assert!(text(&read).contains("no reused emulator is up"), "{}", text(&read));
}

#[test]
fn an_unused_emulator_stops_by_itself() {
    let _t = crate::support::timer();
    let reuse = Reuse::new();
    let up = reuse.microseg(&["--quiet", "emulator", "up", "--idle", "3s"]);
    assert_eq!(up.status.code(), Some(exit::PASS), "{}", text(&up));
    let state = reuse.state().expect("up records the emulator");
    // Idle 3 s, checked every 0.75 s; stopping takes a few seconds more.
    let stopped = wait_until(Duration::from_secs(30), || reuse.state().is_none())
        && gone(state.supervisor_pid, &state.endpoint, &state.volume_dir);
    assert!(stopped, "still there after 30 s: {state:?}");
}

#[test]
fn what_a_killed_supervisor_leaves_is_cleared_by_the_next_up() {
    let _t = crate::support::timer();
    let reuse = Reuse::new();
    let up = reuse.microseg(&["--quiet", "emulator", "up", "--idle", "10m"]);
    assert_eq!(up.status.code(), Some(exit::PASS), "{}", text(&up));
    let killed = reuse.state().expect("up records the emulator");
    // SAFETY: SIGKILL to the supervisor this test started.
    unsafe { libc::kill(killed.supervisor_pid as i32, libc::SIGKILL) };
    // Its emulator dies with it (PR_SET_PDEATHSIG).
    assert!(wait_until(Duration::from_secs(15), || !answers(&killed.endpoint)), "the emulator outlived its supervisor");
    let stale = reuse.microseg(&["emulator", "status"]);
    assert!(text(&stale).contains("stale:"), "{}", text(&stale));

    let up = reuse.microseg(&["--quiet", "emulator", "up", "--idle", "10m"]);
    assert_eq!(up.status.code(), Some(exit::PASS), "{}", text(&up));
    let fresh = reuse.state().unwrap();
    assert_ne!(fresh.supervisor_pid, killed.supervisor_pid);
    assert!(!PathBuf::from(&killed.volume_dir).exists(), "the killed one's state dir is left: {killed:?}");
    drop(reuse);
    assert!(gone(fresh.supervisor_pid, &fresh.endpoint, &fresh.volume_dir), "{fresh:?}");
}
