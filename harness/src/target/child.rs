//! What every emulator process that microseg starts has in common (LocalStack on the
//! host, moto, localemu): a log file and a private scratch directory, a process group of
//! its own so that stopping it stops everything it started, death with us even by
//! SIGKILL (`PR_SET_PDEATHSIG`) unless it is to be kept, the reaper for a process kept in
//! a `static`, and a stop that sends SIGTERM, waits out a grace period, then SIGKILL.
//!
//! Only a SIGKILL of microseg itself skips the stop, and with it the removal of the
//! scratch directory (the emulator dies with us, its directory does not). Each scratch
//! directory therefore names its emulator's pid in [`OWNER_FILE`], and
//! [`remove_orphaned_scratch`] (`sweep --abandoned`) removes those whose emulator is gone.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::TargetError;
use super::python::cache_dir;
use super::reaper::{self, Reapable, Ticket};

/// How long an emulator gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The file in a scratch directory that holds its emulator's pid, written at spawn.
pub const OWNER_FILE: &str = ".microseg-owner";

/// The emulators whose scratch directories are named `microseg-<name>-…` in the temp dir.
const SCRATCH_NAMES: [&str; 3] = ["localstack", "moto", "localemu"];

/// One start's log file (under the cache's `logs/`) and scratch directory (in the temp
/// dir, `microseg-<name>-…`, which CI's leak check looks for).
pub(crate) struct Scratch {
    /// The log file's path.
    pub log_path: PathBuf,
    /// The emulator's stdout.
    pub stdout: Stdio,
    /// The emulator's stderr (the same file).
    pub stderr: Stdio,
    /// The scratch directory, removed when the emulator stops.
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh log and scratch directory for emulator `name` on `port`.
    pub(crate) fn new(name: &str, port: u16) -> Result<Scratch, TargetError> {
        let logs = cache_dir().join("logs");
        fs::create_dir_all(&logs).map_err(|e| TargetError::io("create the log directory", &logs, e))?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let log_path = logs.join(format!("{name}-{port}-{stamp}.log"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("microseg-{name}-"))
            .tempdir()
            .map_err(|e| TargetError::io(&format!("create {name}'s scratch dir"), &std::env::temp_dir(), e))?
            .keep();
        let log = fs::File::create(&log_path).map_err(|e| TargetError::io("create the emulator log", &log_path, e))?;
        let log_err = log.try_clone().map_err(|e| TargetError::io("create the emulator log", &log_path, e))?;
        Ok(Scratch { log_path, stdout: log.into(), stderr: log_err.into(), dir })
    }
}

/// A running emulator process and its scratch directory.
#[derive(Debug)]
pub(crate) struct EmulatorProcess {
    child: Option<Child>,
    dir: PathBuf,
    ticket: Ticket,
    dir_ticket: Ticket,
    keep: bool,
}

impl EmulatorProcess {
    /// Spawns `cmd` (its output to the scratch's log) as the leader of a new process
    /// group that dies with us unless `keep` (`MICROSEG_KEEP=1`: it must outlive us),
    /// registered with the reaper together with the scratch directory.
    pub(crate) fn spawn(mut cmd: Command, scratch: Scratch, keep: bool) -> std::io::Result<EmulatorProcess> {
        cmd.stdin(Stdio::null()).stdout(scratch.stdout).stderr(scratch.stderr).process_group(0);
        if !keep {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = spawn_on_keeper(cmd)?;
        // Best effort: without it a SIGKILL of ours leaves the directory to be removed by
        // hand, which is all that is at stake.
        if let Err(e) = fs::write(scratch.dir.join(OWNER_FILE), child.id().to_string()) {
            tracing::debug!("writing {}: {e}", scratch.dir.join(OWNER_FILE).display());
        }
        let ticket = reaper::register(Reapable::ProcessGroup(child.id() as i32));
        let dir_ticket = reaper::register(Reapable::Dir(scratch.dir.clone()));
        Ok(EmulatorProcess { child: Some(child), dir: scratch.dir, ticket, dir_ticket, keep })
    }

    /// The process-group id (also the process id), while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The scratch directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it is to be left running when stopped (`MICROSEG_KEEP=1`).
    pub(crate) fn kept(&self) -> bool {
        self.keep
    }

    /// How it exited, if it has.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Stops the whole process group (SIGTERM, [`GRACE`], SIGKILL) and removes the scratch
    /// directory; a kept one is left running and unregistered. `what` names it in logs.
    /// Idempotent.
    pub(crate) fn terminate(&mut self, what: &str) {
        let Some(mut child) = self.child.take() else { return };
        if self.keep {
            tracing::warn!("MICROSEG_KEEP: leaving {what} running (pid {})", child.id());
            reaper::unregister(self.ticket);
            reaper::unregister(self.dir_ticket);
            return;
        }
        let pgid = child.id() as i32;
        // SAFETY: plain syscalls on our own child's group.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group may hold children even after the leader exited.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if let Err(e) = child.wait() {
            tracing::warn!("waiting for {what} (pid {pgid}): {e}");
        }
        reaper::unregister(self.ticket);
        reaper::unregister(self.dir_ticket);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the scratch directories in `temp_dir` whose emulator is gone: those that
/// [`OWNER_FILE`] says belonged to a process that no longer exists, which only happens
/// when the microseg that started it was SIGKILLed. A directory without the file (an
/// emulator being started this instant, or an older microseg's) or whose pid is alive
/// is left alone; so is anything not named `microseg-<emulator>-…`. Returns what it
/// removed.
pub fn remove_orphaned_scratch(temp_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(temp_dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !SCRATCH_NAMES.iter().any(|e| name.starts_with(&format!("microseg-{e}-"))) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else { continue };
        let Ok(pid) = owner.trim().parse::<i32>() else { continue };
        if pid <= 0 || process_exists(pid) {
            continue;
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            Err(e) => tracing::warn!("removing the orphaned scratch dir {}: {e}", dir.display()),
        }
    }
    removed.sort();
    removed
}

/// Whether the emulator whose process group `pgid` leads still runs: its leader, or any
/// process of its group, exists and is not a zombie. A zombie does not count: the leader
/// SIGKILLed with us is reparented to PID 1, which may take its time to reap it.
fn process_exists(pgid: i32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        // No procfs: signal 0 says whether the pid exists at all.
        // SAFETY: signal 0 only checks that the pid exists and may be signalled.
        let r = unsafe { libc::kill(pgid, 0) };
        return r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    };
    entries.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { return false };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        state != Some("Z") && (pid == pgid || pgrp == Some(pgid))
    })
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns on a thread that lives as long as the process. `PR_SET_PDEATHSIG` fires when
/// the *thread* that forked the child exits, not the process; a test's thread ends long
/// before a shared emulator should.
fn spawn_on_keeper(cmd: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("microseg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the keeper thread");
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    result.recv().map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that existed and is gone: a child that exited and was reaped.
    fn dead_pid() -> u32 {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    fn scratch(root: &Path, name: &str, owner: Option<String>) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("state")).unwrap();
        fs::write(dir.join("state/data"), "x").unwrap();
        if let Some(owner) = owner {
            fs::write(dir.join(OWNER_FILE), owner).unwrap();
        }
        dir
    }

    #[test]
    fn only_scratch_dirs_whose_emulator_is_gone_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dead = dead_pid().to_string();
        let alive = std::process::id().to_string();
        // A leader killed with us and not yet reaped by PID 1 is a zombie: gone too.
        let mut zombie = Command::new("true").spawn().unwrap();
        let zombie_pid = zombie.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fs::read_to_string(format!("/proc/{zombie_pid}/stat")).unwrap().contains(") Z ") {
            assert!(Instant::now() < deadline, "`true` did not exit in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let orphan_zombie = scratch(root.path(), "microseg-localemu-z0", Some(zombie_pid.to_string()));
        let orphan_moto = scratch(root.path(), "microseg-moto-a1", Some(dead.clone()));
        let orphan_localstack = scratch(root.path(), "microseg-localstack-b2", Some(dead.clone()));
        let running = scratch(root.path(), "microseg-localemu-c3", Some(alive));
        let starting = scratch(root.path(), "microseg-localemu-d4", None);
        let garbled = scratch(root.path(), "microseg-moto-e5", Some("not a pid".into()));
        let foreign = scratch(root.path(), "microseg-ci.f6", Some(dead.clone()));
        let other = scratch(root.path(), "someone-else", Some(dead));

        let removed = remove_orphaned_scratch(root.path());
        zombie.wait().unwrap();

        assert_eq!(removed, vec![orphan_zombie.clone(), orphan_localstack.clone(), orphan_moto.clone()]);
        assert!(!orphan_moto.exists() && !orphan_localstack.exists() && !orphan_zombie.exists());
        for kept in [running, starting, garbled, foreign, other] {
            assert!(kept.join("state/data").exists(), "{} was removed", kept.display());
        }
        // Nothing further to remove the second time.
        assert!(remove_orphaned_scratch(root.path()).is_empty());
        assert!(remove_orphaned_scratch(&root.path().join("missing")).is_empty());
    }
}
