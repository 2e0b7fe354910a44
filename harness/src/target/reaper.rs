//! Last line of defence for emulators that outlive their owner.
//!
//! `Drop` stops an emulator in normal operation, on error and on panic (unwind). Two
//! cases skip `Drop`: a value in a `static` (one emulator shared by a whole test binary),
//! and a process that is killed. For the first, every running emulator registers here
//! and an `atexit` hook stops whatever is still registered when the process exits. For
//! the second, the host emulator is spawned with `PR_SET_PDEATHSIG` from a thread that
//! lives as long as the process, so the kernel kills it when we die.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Mutex, Once, OnceLock};

/// Something the reaper must stop at exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reapable {
    /// A process group (the host emulator and its children).
    ProcessGroup(i32),
    /// A Docker container id.
    Container(String),
    /// A scratch directory (an emulator's state), removed after the processes are gone.
    Dir(std::path::PathBuf),
}

fn registry() -> &'static Mutex<BTreeMap<u64, Reapable>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<u64, Reapable>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// A registration; dropping it does not unregister (call [`unregister`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Registers something to stop at exit.
pub fn register(item: Reapable) -> Ticket {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: `reap_at_exit` is an `extern "C" fn()` with no preconditions.
        unsafe { libc::atexit(reap_at_exit) };
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    registry().lock().unwrap_or_else(|e| e.into_inner()).insert(id, item);
    Ticket(id)
}

/// Removes a registration once its owner has stopped it.
pub fn unregister(ticket: Ticket) {
    registry().lock().unwrap_or_else(|e| e.into_inner()).remove(&ticket.0);
}

extern "C" fn reap_at_exit() {
    let items: Vec<Reapable> = match registry().lock() {
        Ok(mut r) => std::mem::take(&mut *r).into_values().collect(),
        Err(_) => return,
    };
    // Processes and containers first: a directory is only safe to remove once nothing
    // writes to it.
    let (dirs, others): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| matches!(i, Reapable::Dir(_)));
    for item in others.iter().chain(dirs.iter()) {
        reap(item);
    }
}

/// Stops one item now: SIGKILL to a process group, `docker rm -f` for a container.
pub fn reap(item: &Reapable) {
    match item {
        Reapable::ProcessGroup(pgid) => {
            // SAFETY: plain syscall; a negative pid addresses the whole group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        Reapable::Container(id) => {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
        Reapable::Dir(path) => {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
