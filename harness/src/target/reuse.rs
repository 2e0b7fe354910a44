//! One LocalStack kept running across invocations (`--target reuse`, `microseg emulator
//! up|status|down`), in the spirit of testcontainers' reusable containers.
//!
//! A fresh host emulator costs 3.4–5.5 s to start and a probe; an edit-run loop pays
//! that on every run. Here a small supervisor process (`microseg emulator serve`, in a
//! process group of its own so a terminal's Ctrl-C does not reach it) owns one
//! [`LocalStackHost`] and records it in a state file in the cache. Later invocations find
//! it there, check that it answers, and use it as an endpoint; its probe verdict is
//! already cached per instance ([`super::probe_cache`]).
//!
//! The emulator stops by itself after an idle time: every invocation that uses it
//! touches a file, and the supervisor stops the emulator once that file is older than
//! the idle limit. `emulator down` stops it at once (SIGTERM to the supervisor). If the
//! supervisor is killed, the kernel kills its emulator too (`PR_SET_PDEATHSIG`, as for
//! any host emulator), and the state file it leaves is recognised as stale.
//!
//! Sharing is safe for runs because a run touches only what carries its own run tag:
//! build tags everything, and teardown, the probe and `sweep --run-id` delete from
//! [`crate::inventory`] by that tag, so concurrent runs on one emulator never see each
//! other's resources as theirs (the suite's concurrency test runs eight at once on one
//! emulator). Two things are not per run and are the user's call: `sweep --all` and
//! `--older-than` take every run on the emulator, and LocalStack's orphaned default
//! NACLs slow it down over many runs (docs/EMULATOR.md), which a restart clears.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::{LocalStackHost, TargetError, health, python::cache_dir};
use crate::run_id::now_unix;

/// How long a reused emulator may stay unused before it stops, unless `--idle` says.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

/// Format of the state file.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// What the state file records about the running emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    /// [`STATE_FORMAT_VERSION`].
    pub format_version: u32,
    /// LocalStack's version, as its health document reports it.
    pub version: String,
    /// Where it listens.
    pub endpoint: String,
    /// The supervisor's process id (`emulator down` signals it).
    pub supervisor_pid: u32,
    /// The emulator's log.
    pub log: PathBuf,
    /// Its state directory: a supervisor killed before it could clean up leaves it, and
    /// whoever finds the stale state removes it.
    pub volume_dir: PathBuf,
    /// Unix seconds when it became ready.
    pub started_at: u64,
    /// Idle limit, seconds.
    pub idle_seconds: u64,
    /// Services enabled beyond the ones every run needs (`cloudformation`).
    #[serde(default)]
    pub extra_services: Vec<String>,
}

impl Reused {
    /// Seconds since the last invocation used it (or since it started).
    pub fn idle_for(&self) -> Duration {
        fs::metadata(used_path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_else(|| Duration::from_secs(now_unix().saturating_sub(self.started_at)))
    }
}

/// `30m`, `2h`, `45s`, `29m24s`: how a duration is written on the command line
/// (humantime reads each of them back).
pub fn short_duration(seconds: u64) -> String {
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Where the state lives: `MICROSEG_REUSE_DIR`, else `emulators/` in the cache. A test
/// points it elsewhere to keep its own reused emulator apart from a developer's.
fn dir() -> PathBuf {
    std::env::var_os("MICROSEG_REUSE_DIR").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("emulators"))
}

/// The state file: one reused emulator per cache directory (and so per user).
pub fn state_path() -> PathBuf {
    dir().join("localstack.json")
}

fn used_path() -> PathBuf {
    dir().join("localstack.used")
}

fn lock_path() -> PathBuf {
    dir().join("localstack.lock")
}

/// Marks the emulator as used now, which restarts its idle clock.
pub fn touch() {
    let path = used_path();
    let touched = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).and_then(|f| {
        f.set_modified(SystemTime::now())?;
        Ok(())
    });
    if let Err(e) = touched {
        tracing::debug!("touching {}: {e}", path.display());
    }
}

fn read_state() -> Option<Reused> {
    let state: Reused = serde_json::from_slice(&fs::read(state_path()).ok()?).ok()?;
    (state.format_version == STATE_FORMAT_VERSION).then_some(state)
}

fn write_state(state: &Reused) -> Result<(), TargetError> {
    let path = state_path();
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    fs::write(&tmp, serde_json::to_vec_pretty(state).expect("state serialises"))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| TargetError::io("write the reused emulator's state", &path, e))
}

/// Removes the state file if it still names this supervisor: a newer one may have
/// replaced it.
fn clear_state(supervisor_pid: u32) {
    if read_state().is_some_and(|s| s.supervisor_pid == supervisor_pid) {
        let _ = fs::remove_file(state_path());
    }
}

/// Clears what a supervisor that was killed left: its state file and its emulator's
/// state directory (the emulator itself died with the supervisor).
fn forget(stale: &Reused) {
    if !process_alive(stale.supervisor_pid) {
        let _ = fs::remove_dir_all(&stale.volume_dir);
    }
    let _ = fs::remove_file(state_path());
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // A zombie still answers kill(0); its /proc status says so.
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

/// The reused emulator, if one is recorded, its supervisor lives and it answers.
pub async fn live() -> Option<Reused> {
    let state = read_state()?;
    if !process_alive(state.supervisor_pid) {
        return None;
    }
    let endpoint = state.endpoint.clone();
    let answers = tokio::task::spawn_blocking(move || health::fetch_within(&endpoint, Duration::from_secs(2)))
        .await
        .is_ok_and(|h| h.is_ok_and(|h| h.missing().is_empty()));
    answers.then_some(state)
}

/// An exclusive lock on the reuse directory, so two invocations never both start one.
struct Lock {
    _held: fs::File,
}

impl Lock {
    fn acquire() -> Result<Lock, TargetError> {
        let path = lock_path();
        fs::create_dir_all(dir()).map_err(|e| TargetError::io("create the emulators directory", &dir(), e))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TargetError::io("open the reuse lock", &path, e))?;
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on a file descriptor we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(TargetError::io("lock", &path, std::io::Error::last_os_error()));
        }
        Ok(Lock { _held: file })
    }
}

/// The reused emulator, started first if none is live: `microseg` (the binary at `exe`)
/// is spawned as its supervisor, and this waits until the supervisor records it ready.
/// Returns it and whether this call started it.
///
/// `extra_services` are enabled besides those every run needs; a live emulator that lacks
/// one is refused, naming it, rather than restarted under someone else's runs.
pub async fn ensure_up(
    exe: &Path,
    idle: Duration,
    startup_timeout: Duration,
    extra_services: &[String],
) -> Result<(Reused, bool), TargetError> {
    let _lock = tokio::task::spawn_blocking(Lock::acquire).await.expect("locking does not panic")?;
    if let Some(state) = live().await {
        if let Some(missing) = extra_services.iter().find(|s| !state.extra_services.contains(s)) {
            return Err(TargetError::NotReady {
                target: "reuse".into(),
                condition: format!(
                    "the reused emulator at {} runs without {missing} (`microseg emulator down`, then `emulator up --service {missing}`)",
                    state.endpoint
                ),
                log: None,
                tail: String::new(),
            });
        }
        touch();
        return Ok((state, false));
    }
    if let Some(stale) = read_state() {
        forget(&stale);
    }
    let logs = cache_dir().join("logs");
    fs::create_dir_all(&logs).map_err(|e| TargetError::io("create the log directory", &logs, e))?;
    let log_path = logs.join(format!("emulator-supervisor-{}.log", now_unix()));
    let log = fs::File::create(&log_path).map_err(|e| TargetError::io("create the supervisor log", &log_path, e))?;
    let log_err = log.try_clone().map_err(|e| TargetError::io("create the supervisor log", &log_path, e))?;
    let mut child = Command::new(exe)
        .args(["--quiet", "emulator", "serve", "--idle"])
        .arg(short_duration(idle.as_secs().max(1)))
        .arg("--wait")
        .arg(short_duration(startup_timeout.as_secs().max(1)))
        .args(extra_services.iter().flat_map(|s| ["--service", s.as_str()]))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in the terminal that started it stops the run,
        // not the emulator meant to outlive it.
        .process_group(0)
        .spawn()
        .map_err(|e| TargetError::io("start the emulator's supervisor", exe, e))?;
    let pid = child.id();
    let started = Instant::now();
    let outcome = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("its supervisor exited ({status}) before the emulator was ready"));
        }
        if let Some(state) = read_state().filter(|s| s.supervisor_pid == pid) {
            break Ok(state);
        }
        if started.elapsed() > startup_timeout + Duration::from_secs(60) {
            break Err(format!("not recorded ready after {:.0?}", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match outcome {
        Ok(state) => {
            // Collect the supervisor's exit status whenever it ends, so a long-lived
            // caller (a test binary) keeps no zombie.
            std::thread::spawn(move || child.wait());
            touch();
            Ok((state, true))
        }
        Err(condition) => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = fs::read_to_string(&log_path)
                .map(|t| t.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            Err(TargetError::NotReady { target: "reuse".into(), condition, log: Some(log_path), tail })
        }
    }
}

/// Why a supervisor stopped its emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing used it for the idle limit.
    Idle(Duration),
    /// `emulator down`, or another SIGTERM/SIGINT.
    Signalled,
    /// The emulator stopped answering its health check.
    Unhealthy(String),
}

/// The supervisor (`microseg emulator serve`): starts LocalStack, records it, and stops
/// it when it has been idle for `idle`, when signalled, or when it stops answering.
pub async fn serve(
    idle: Duration,
    startup_timeout: Duration,
    extra_services: &[String],
) -> Result<Stopped, TargetError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = |kind| signal(kind).map_err(|e| TargetError::io("handle signals", Path::new("-"), e));
    let (mut term, mut int) = (signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    let extra: Vec<&str> = extra_services.iter().map(String::as_str).collect();
    let host = LocalStackHost::start_with_services(startup_timeout, false, &extra).await?;
    let me = std::process::id();
    let state = Reused {
        format_version: STATE_FORMAT_VERSION,
        version: host.version.clone(),
        endpoint: host.endpoint(),
        supervisor_pid: me,
        log: host.log_path().to_path_buf(),
        volume_dir: host.volume_dir().to_path_buf(),
        started_at: now_unix(),
        idle_seconds: idle.as_secs(),
        extra_services: extra_services.to_vec(),
    };
    fs::create_dir_all(dir()).map_err(|e| TargetError::io("create the emulators directory", &dir(), e))?;
    touch();
    write_state(&state)?;
    let _ = writeln!(std::io::stderr(), "serving LocalStack {} at {}", state.version, state.endpoint);
    // Often enough that a short idle limit is kept to within a quarter of itself.
    let tick = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let mut failed_checks = 0;
    let why = loop {
        tokio::select! {
            _ = term.recv() => break Stopped::Signalled,
            _ = int.recv() => break Stopped::Signalled,
            () = tokio::time::sleep(tick) => {}
        }
        let idle_for = state.idle_for();
        if idle_for >= idle {
            break Stopped::Idle(idle_for);
        }
        let endpoint = state.endpoint.clone();
        match tokio::task::spawn_blocking(move || health::fetch_within(&endpoint, Duration::from_secs(5))).await {
            Ok(Ok(_)) => failed_checks = 0,
            Ok(Err(e)) if failed_checks >= 2 => break Stopped::Unhealthy(e.to_string()),
            _ => failed_checks += 1,
        }
    };
    // The state goes first: nobody may pick up an emulator that is stopping.
    clear_state(me);
    tokio::task::spawn_blocking(move || host.stop()).await.expect("stopping does not panic");
    let _ = writeln!(std::io::stderr(), "stopped: {why:?}");
    Ok(why)
}

/// Stops the reused emulator, if one runs, and waits until its supervisor is gone.
/// Returns what was stopped.
pub async fn down() -> Result<Option<Reused>, TargetError> {
    let Some(state) = read_state() else { return Ok(None) };
    let pid = state.supervisor_pid;
    if !process_alive(pid) {
        // Killed without cleaning up; its emulator died with it.
        forget(&state);
        return Ok(None);
    }
    let Ok(signed) = i32::try_from(pid) else { return Ok(None) };
    // SAFETY: a signal to the recorded supervisor.
    unsafe { libc::kill(signed, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if process_alive(pid) {
        // Its emulator dies with it (PR_SET_PDEATHSIG); what it leaves is forgotten below.
        // SAFETY: as above.
        unsafe { libc::kill(signed, libc::SIGKILL) };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if read_state().is_some_and(|s| s.supervisor_pid == pid) {
        forget(&state);
    }
    Ok(Some(state))
}

/// What `emulator status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// None recorded.
    None,
    /// Recorded, but its supervisor is gone or it does not answer.
    Stale(Reused),
    /// Running and answering.
    Up(Reused),
}

/// The reused emulator's status, without touching its idle clock.
pub async fn status() -> Status {
    match (read_state(), live().await) {
        (_, Some(s)) => Status::Up(s),
        (Some(s), None) => Status::Stale(s),
        (None, None) => Status::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_the_command_line_takes_them() {
        assert_eq!(short_duration(1800), "30m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(1764), "29m24s");
        assert_eq!(short_duration(5400), "90m");
    }
}
