//! LocalStack as a child process of ours, from the cached venv (`python.rs`).
//!
//! The process leads its own process group, so stopping it stops everything it started.
//! [`LocalStackHost::stop`] sends SIGTERM to the group, waits out a grace period, then
//! sends SIGKILL; `Drop` does the same when `stop` was not called (error, panic). The
//! reaper covers a host kept in a `static`, and `PR_SET_PDEATHSIG` covers our death.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::TargetError;
use super::child::{EmulatorProcess, Scratch};
use super::health::{self, NotReady, REQUIRED_SERVICES};
use super::listen::Listen;
use super::python::{self, tail_of};

/// How a start whose service failed to load is reported (and recognised for a retry).
const BROKEN: &str = "a service failed to load";

/// A running LocalStack host process.
#[derive(Debug)]
pub struct LocalStackHost {
    process: EmulatorProcess,
    port: u16,
    listen: Listen,
    log_path: PathBuf,
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
        let scratch = Scratch::new("localstack", port)?;
        let (log_path, volume_dir) = (scratch.log_path.clone(), scratch.dir.clone());

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
            // And the temp dir: CloudWatch's metrics database is placed at import time,
            // before FILESYSTEM_ROOT applies, under `$TMPDIR/localstack/state/cloudwatch`.
            // Without this every host LocalStack on the machine opened the same SQLite
            // file there, and left it behind.
            .env("TMPDIR", &volume_dir)
            // No network beyond loopback: no analytics, no certificate download.
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("SKIP_INFRA_DOWNLOADS", "1");
        let spawned = Instant::now();
        let process = EmulatorProcess::spawn(cmd, scratch, keep)
            .map_err(|e| TargetError::io("start LocalStack", &venv.python, e))?;
        let mut host = LocalStackHost {
            process,
            port,
            listen,
            log_path,
            venv_install: venv.install_time,
            start_to_ready: Duration::ZERO,
            version: String::new(),
        };

        let endpoint = host.endpoint();
        let process = &mut host.process;
        let ready = health::wait_ready(&endpoint, startup_timeout, || process.exited()).await;
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
        self.process.dir()
    }

    /// The emulator's log file.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The process-group id (also the process id).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the whole process group: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let what = format!("LocalStack at {}", self.endpoint());
        self.process.terminate(&what);
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
