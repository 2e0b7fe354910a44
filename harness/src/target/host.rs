//! LocalStack as a child process of ours, from the cached venv (`python.rs`).
//!
//! The process leads its own process group, so stopping it stops everything it started.
//! [`LocalStackHost::stop`] sends SIGTERM to the group, waits out a grace period, then
//! sends SIGKILL; `Drop` does the same when `stop` was not called (error, panic). The
//! reaper covers a host kept in a `static`, and `PR_SET_PDEATHSIG` covers our death.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::TargetError;
use super::health::{self, NotReady, REQUIRED_SERVICES};
use super::listen::Listen;
use super::python::{self, cache_dir, tail_of};
use super::reaper::{self, Reapable, Ticket};

/// How a start whose service failed to load is reported (and recognised for a retry).
const BROKEN: &str = "a service failed to load";

/// How long LocalStack gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A running LocalStack host process.
#[derive(Debug)]
pub struct LocalStackHost {
    child: Option<Child>,
    port: u16,
    listen: Listen,
    log_path: PathBuf,
    volume_dir: PathBuf,
    ticket: Ticket,
    dir_ticket: Ticket,
    keep: bool,
    /// Time spent building the venv (zero when cached).
    pub venv_install: Duration,
    /// From spawn to every service available.
    pub start_to_ready: Duration,
    /// Version the health endpoint reported.
    pub version: String,
}

impl LocalStackHost {
    /// Builds the venv if needed, starts LocalStack on a free loopback port and waits
    /// until ec2, iam, logs, cloudwatch and sts are available.
    pub async fn start(startup_timeout: Duration, keep: bool) -> Result<LocalStackHost, TargetError> {
        LocalStackHost::start_with_services(startup_timeout, keep, &[]).await
    }

    /// As [`LocalStackHost::start`], with more services enabled besides the required ones
    /// (the gate's tests deploy CloudFormation stacks).
    pub async fn start_with_services(
        startup_timeout: Duration,
        keep: bool,
        extra: &[&str],
    ) -> Result<LocalStackHost, TargetError> {
        // A service that failed to load never recovers in that process, and a fresh one
        // has always loaded it: one more start, then the error stands.
        match LocalStackHost::start_once(startup_timeout, keep, extra).await {
            Err(TargetError::NotReady { condition, .. }) if condition.starts_with(BROKEN) => {
                tracing::warn!("LocalStack started with {condition}; starting a fresh one");
                LocalStackHost::start_once(startup_timeout, keep, extra).await
            }
            other => other,
        }
    }

    async fn start_once(startup_timeout: Duration, keep: bool, extra: &[&str]) -> Result<LocalStackHost, TargetError> {
        // Before the venv: a bad address is a usage error, not worth a minute's install.
        let listen = Listen::from_env()?;
        let venv = tokio::task::spawn_blocking(|| {
            let py = python::find_python()?;
            python::ensure_venv(&py)
        })
        .await
        .expect("venv bootstrap does not panic")?;

        let port = free_port(listen)?;
        let logs = cache_dir().join("logs");
        fs::create_dir_all(&logs).map_err(|e| TargetError::io("create the log directory", &logs, e))?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let log_path = logs.join(format!("localstack-{port}-{stamp}.log"));
        let volume_dir = tempfile::Builder::new()
            .prefix("microseg-localstack-")
            .tempdir()
            .map_err(|e| TargetError::io("create LocalStack's volume dir", &std::env::temp_dir(), e))?
            .keep();
        let log = fs::File::create(&log_path).map_err(|e| TargetError::io("create the emulator log", &log_path, e))?;
        let log_err = log.try_clone().map_err(|e| TargetError::io("create the emulator log", &log_path, e))?;

        let mut cmd = Command::new(&venv.python);
        cmd.args(["-m", "localstack.runtime.main"])
            // Loopback unless MICROSEG_LISTEN_ADDRESS says otherwise (listen.rs). The
            // default server, twisted, binds every IPv4 interface whatever the host in
            // GATEWAY_LISTEN; hypercorn binds the host it is given (docs/EMULATOR.md,
            // "Listening address").
            .env("GATEWAY_SERVER", "hypercorn")
            .env("GATEWAY_LISTEN", std::net::SocketAddr::new(listen.bind, port).to_string())
            .env("SERVICES", REQUIRED_SERVICES.iter().chain(extra).copied().collect::<Vec<_>>().join(","))
            // Pay the lazy provider load (~1.7 s per service) during start-up, where the
            // readiness check absorbs it, not in the first call of a run
            // (docs/EMULATOR.md, "Per-call latency").
            .env("EAGER_SERVICE_LOADING", "1")
            // Per-instance state, so two emulators never share files. In host mode
            // LocalStack keeps its files under FILESYSTEM_ROOT (by default inside the
            // shared venv): two starting at once both wrote its TLS certificate there,
            // and one read it half-written ("PEM routines: no start line").
            .env("LOCALSTACK_VOLUME_DIR", &volume_dir)
            .env("FILESYSTEM_ROOT", &volume_dir)
            // No network beyond loopback: no analytics, no certificate download.
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("SKIP_INFRA_DOWNLOADS", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        // The emulator dies with us, even by SIGKILL, unless it is to be kept
        // (`MICROSEG_KEEP=1`): then it must outlive this process.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        if !keep {
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let spawned = Instant::now();
        let child = spawn_on_keeper(cmd).map_err(|e| TargetError::io("start LocalStack", &venv.python, e))?;
        let ticket = reaper::register(Reapable::ProcessGroup(child.id() as i32));
        let dir_ticket = reaper::register(Reapable::Dir(volume_dir.clone()));
        let mut host = LocalStackHost {
            child: Some(child),
            port,
            listen,
            log_path,
            volume_dir,
            ticket,
            dir_ticket,
            keep,
            venv_install: venv.install_time,
            start_to_ready: Duration::ZERO,
            version: String::new(),
        };

        let endpoint = host.endpoint();
        let child = host.child.as_mut().expect("just spawned");
        let ready = health::wait_ready(&endpoint, startup_timeout, || match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        })
        .await;
        match ready {
            Ok(h) => {
                host.start_to_ready = spawned.elapsed();
                host.version = h.version.unwrap_or_default();
                Ok(host)
            }
            Err(why) => {
                let condition = match why {
                    NotReady::Exited(status) => format!("LocalStack exited ({status}) before it was ready"),
                    NotReady::Broken(services) => format!("{BROKEN}: {services}"),
                    NotReady::Timeout { waited, last } => {
                        format!("services not available after {:.0?} (last: {last})", waited)
                    }
                };
                let (log, tail) = (host.log_path.clone(), tail_of(&host.log_path, 25));
                host.stop();
                Err(TargetError::NotReady { target: "localstack-host".into(), condition, log: Some(log), tail })
            }
        }
    }

    /// `http://127.0.0.1:<port>` (the bound address, when not loopback)
    pub fn endpoint(&self) -> String {
        self.listen.url(self.port)
    }

    /// Its state directory (`LOCALSTACK_VOLUME_DIR`), removed when it stops.
    pub fn volume_dir(&self) -> &std::path::Path {
        &self.volume_dir
    }

    /// The emulator's log file.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The process-group id (also the process id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the whole process group: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if self.keep {
            tracing::warn!("MICROSEG_KEEP: leaving LocalStack running at {} (pid {})", self.endpoint(), child.id());
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
            tracing::warn!("waiting for LocalStack (pid {pgid}): {e}");
        }
        reaper::unregister(self.ticket);
        reaper::unregister(self.dir_ticket);
        let _ = fs::remove_dir_all(&self.volume_dir);
    }
}

impl Drop for LocalStackHost {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A free port on the address the emulator will bind, as the kernel hands it out.
pub(super) fn free_port(listen: Listen) -> Result<u16, TargetError> {
    let at = listen.bind.to_string();
    let l = std::net::TcpListener::bind((listen.bind, 0))
        .map_err(|e| TargetError::io("find a free port", std::path::Path::new(&at), e))?;
    Ok(l.local_addr().map_err(|e| TargetError::io("find a free port", std::path::Path::new(&at), e))?.port())
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns on a thread that lives as long as the process. `PR_SET_PDEATHSIG` fires when
/// the *thread* that forked the child exits, not the process; a test's thread ends long
/// before a shared emulator should.
pub(super) fn spawn_on_keeper(cmd: Command) -> std::io::Result<Child> {
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
