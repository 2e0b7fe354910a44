//! What every emulator process that microseg starts has in common (LocalStack on the
//! host, moto, localemu): a log file and a private scratch directory, a process group of
//! its own so that stopping it stops everything it started, death with us even by
//! SIGKILL (`PR_SET_PDEATHSIG`) unless it is to be kept, the reaper for a process kept in
//! a `static`, and a stop that sends SIGTERM, waits out a grace period, then SIGKILL.

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
