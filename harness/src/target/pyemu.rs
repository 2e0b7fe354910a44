//! moto and localemu as child processes of ours, each from its own cached venv
//! (`python.rs`, [`python::MOTO`] and [`python::LOCALEMU`]).
//!
//! As for the LocalStack host process (`host.rs`): the emulator leads its own process
//! group and listens on loopback (or `MICROSEG_LISTEN_ADDRESS`) on a free port;
//! [`PyEmulator::stop`] and `Drop` send SIGTERM to the group, wait out a grace period,
//! then SIGKILL; the reaper stops one kept in a `static`, and `PR_SET_PDEATHSIG` one
//! whose test process dies. Each instance gets a scratch directory of its own
//! (`microseg-<name>-*` under the temp dir), named in its environment as
//! `MICROSEG_EMULATOR_DIR` so a leak check can tell its processes from others'.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::TargetError;
use super::child::{EmulatorProcess, Scratch};
use super::host::free_port;
use super::listen::Listen;
use super::python::{self, VenvSpec, tail_of};

/// The environment variable naming an instance's scratch directory.
pub const EMULATOR_DIR_ENV: &str = "MICROSEG_EMULATOR_DIR";

/// Which Python emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// moto's server (`moto_server`), the engine under LocalStack's EC2.
    Moto,
    /// localemu, a maintained fork of LocalStack community.
    LocalEmu,
}

impl Flavor {
    /// The target's name (`moto`, `localemu`).
    pub fn name(self) -> &'static str {
        self.venv().name
    }

    /// The pinned package set.
    pub fn venv(self) -> VenvSpec<'static> {
        match self {
            Flavor::Moto => python::MOTO,
            Flavor::LocalEmu => python::LOCALEMU,
        }
    }

    /// The family name reports and capabilities use (`moto`, `localemu`).
    pub fn family(self) -> &'static str {
        match self {
            Flavor::Moto => "moto",
            Flavor::LocalEmu => "localemu",
        }
    }

    /// The path whose `200` answer means the emulator serves.
    fn ready_path(self) -> &'static str {
        match self {
            Flavor::Moto => "/moto-api/",
            Flavor::LocalEmu => "/_localemu/health",
        }
    }

    /// The command that runs it on `addr` (docs/EMULATOR.md, "moto 5.2.5 as a target",
    /// "localemu 1.3.2 as a target"); `ec2_docker` lets localemu run instances as
    /// containers (docs/EMULATOR.md, "Real traffic through localemu").
    fn command(self, venv: &Path, addr: std::net::SocketAddr, state: &Path, ec2_docker: bool) -> Command {
        match self {
            Flavor::Moto => {
                let mut cmd = Command::new(venv.join("bin/moto_server"));
                cmd.args(["-H", &addr.ip().to_string(), "-p", &addr.port().to_string()]);
                cmd
            }
            Flavor::LocalEmu => {
                let mut cmd = Command::new(venv.join("bin/python"));
                cmd.args(["-m", "localemu.runtime.main"])
                    // Its default server, twisted, binds every interface whatever
                    // GATEWAY_LISTEN's host; hypercorn binds the host it is given.
                    .env("GATEWAY_SERVER", "hypercorn")
                    .env("GATEWAY_LISTEN", addr.to_string())
                    .env("SERVICES", super::health::REQUIRED_SERVICES.join(","))
                    .env("EAGER_SERVICE_LOADING", "1")
                    .env("LOCALEMU_VOLUME_DIR", state)
                    .env("FILESYSTEM_ROOT", state)
                    .env("DISABLE_EVENTS", "1")
                    .env("SKIP_SSL_CERT_DOWNLOAD", "1");
                if ec2_docker {
                    // Instances as containers on the engine DOCKER_HOST names (or the
                    // default socket). At start it removes every `localemu-*` container
                    // and network on that engine: hence one at a time, under DOCKER_LOCK.
                    cmd.env("EC2_VM_MANAGER", "docker");
                    return cmd;
                }
                cmd
                    // State only, no Docker: with an engine it answers, localemu makes a
                    // Docker network per VPC, runs `docker run alpine` for host iptables
                    // (a registry pull) and removes "orphaned" resources of other
                    // instances at start. EC2_VM_MANAGER=none alone still made the
                    // networks; a socket that does not exist stops all of it.
                    .env("EC2_VM_MANAGER", "none")
                    .env("DOCKER_HOST", format!("unix://{}", state.join("no-docker.sock").display()));
                cmd
            }
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running moto or localemu process.
#[derive(Debug)]
pub struct PyEmulator {
    flavor: Flavor,
    process: EmulatorProcess,
    port: u16,
    listen: Listen,
    log_path: PathBuf,
    /// Time spent building the venv (zero when cached).
    pub venv_install: Duration,
    /// From spawn to the emulator's first good answer.
    pub start_to_ready: Duration,
    /// localemu with instances as containers: the machine-wide [`DOCKER_LOCK`], held
    /// until the process is gone and its Docker leftovers removed.
    docker_lock: Option<std::fs::File>,
}

/// The lock that keeps a second localemu with containers off the machine while one runs:
/// at start localemu removes every `localemu-*` container and network on the engine,
/// another's included. Machine-wide, like the engine: in `/var/tmp`, not in a user's
/// cache or `TMPDIR`.
pub const DOCKER_LOCK: &str = "/var/tmp/microseg-localemu-docker.lock";

/// Opens [`DOCKER_LOCK`] (created world-writable by whoever comes first; read-only is
/// enough to lock it).
pub fn open_docker_lock() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::OpenOptions::new().read(true).append(true).create(true).open(DOCKER_LOCK) {
        Ok(f) => {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
            Ok(f)
        }
        Err(_) => std::fs::File::open(DOCKER_LOCK),
    }
}

impl PyEmulator {
    /// Builds the venv if needed, starts the emulator on a free loopback port and waits
    /// until it answers.
    pub async fn start(flavor: Flavor, startup_timeout: Duration, keep: bool) -> Result<PyEmulator, TargetError> {
        PyEmulator::start_with(flavor, startup_timeout, keep, false).await
    }

    /// [`PyEmulator::start`], and for localemu with `ec2_docker`, with instances as
    /// Docker containers: it waits for the machine-wide [`DOCKER_LOCK`] first, and
    /// when it stops removes what localemu leaves on the engine (see
    /// [`crate::traffic::sweep_docker`]). `ec2_docker` means nothing to moto.
    pub async fn start_with(
        flavor: Flavor,
        startup_timeout: Duration,
        keep: bool,
        ec2_docker: bool,
    ) -> Result<PyEmulator, TargetError> {
        let ec2_docker = ec2_docker && flavor == Flavor::LocalEmu;
        let docker_lock = if ec2_docker {
            Some(
                tokio::task::spawn_blocking(move || -> Result<std::fs::File, TargetError> {
                    let path = Path::new(DOCKER_LOCK);
                    let f =
                        open_docker_lock().map_err(|e| TargetError::io("open the localemu Docker lock", path, e))?;
                    if f.try_lock().is_err() {
                        tracing::info!("waiting for another localemu with containers to stop ({DOCKER_LOCK})");
                        f.lock().map_err(|e| TargetError::io("lock", path, e))?;
                    }
                    Ok(f)
                })
                .await
                .expect("locking does not panic")?,
            )
        } else {
            None
        };
        // Before the venv: a bad address is a usage error, not worth minutes of install.
        let listen = Listen::from_env()?;
        let spec = flavor.venv();
        let venv = tokio::task::spawn_blocking(move || {
            let py = python::find_python_for(&spec)?;
            python::ensure_venv_for(&spec, &py)
        })
        .await
        .expect("venv bootstrap does not panic")?;

        let port = free_port(listen)?;
        let scratch = Scratch::new(flavor.name(), port)?;
        let (log_path, state_dir) = (scratch.log_path.clone(), scratch.dir.clone());
        let mut cmd = flavor.command(&venv.dir, std::net::SocketAddr::new(listen.bind, port), &state_dir, ec2_docker);
        cmd.env(EMULATOR_DIR_ENV, &state_dir).env("TMPDIR", &state_dir).current_dir(&state_dir);
        let spawned = Instant::now();
        let process = EmulatorProcess::spawn(cmd, scratch, keep)
            .map_err(|e| TargetError::io(&format!("start {flavor}"), &venv.dir, e))?;
        let mut emu = PyEmulator {
            flavor,
            process,
            port,
            listen,
            log_path,
            venv_install: venv.install_time,
            start_to_ready: Duration::ZERO,
            docker_lock,
        };
        match emu.wait_ready(startup_timeout).await {
            Ok(()) => {
                emu.start_to_ready = spawned.elapsed();
                Ok(emu)
            }
            Err(condition) => {
                let (log, tail) = (emu.log_path.clone(), tail_of(&emu.log_path, 25));
                emu.stop();
                Err(TargetError::NotReady { target: flavor.name().into(), condition, log: Some(log), tail })
            }
        }
    }

    /// Polls the ready path until it answers 200 (localemu: with every required service
    /// available), the process exits, or the timeout passes.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let url = format!("{}{}", self.endpoint(), self.flavor.ready_path());
        let started = Instant::now();
        let flavor = self.flavor;
        loop {
            if let Some(status) = self.process.exited() {
                return Err(format!("{flavor} exited ({status}) before it was ready"));
            }
            let u = url.clone();
            let last = match tokio::task::spawn_blocking(move || poll(flavor, &u)).await.expect("poll does not panic") {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if started.elapsed() >= timeout {
                return Err(format!("no good answer from {url} after {:.0?} (last: {last})", started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Which emulator this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `http://127.0.0.1:<port>` (the bound address, when not loopback).
    pub fn endpoint(&self) -> String {
        self.listen.url(self.port)
    }

    /// The emulator's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process-group id (also the process id).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Its scratch directory, removed when it stops.
    pub fn state_dir(&self) -> &Path {
        self.process.dir()
    }

    /// Stops the whole process group: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Whether localemu runs instances as containers.
    pub fn ec2_docker(&self) -> bool {
        self.docker_lock.is_some()
    }

    fn terminate(&mut self) {
        let what = format!("{} at {}", self.flavor, self.endpoint());
        let kept = self.process.kept();
        self.process.terminate(&what);
        if self.docker_lock.is_some() && !kept {
            // What localemu leaves behind even on a clean stop (its port-publishing
            // bridge), and everything after a SIGKILL.
            crate::traffic::sweep_docker();
        }
        self.docker_lock = None;
    }
}

impl Drop for PyEmulator {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// One readiness poll: moto's API page answers 200; localemu's health document lists
/// every required service as available.
fn poll(flavor: Flavor, url: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    match flavor {
        Flavor::Moto => Ok(()),
        Flavor::LocalEmu => {
            let health: super::health::Health = resp.body_mut().read_json().map_err(|e| e.to_string())?;
            let missing = health.missing();
            if missing.is_empty() { Ok(()) } else { Err(format!("services not ready: {}", missing.join(", "))) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(cmd: &Command) -> std::collections::BTreeMap<String, String> {
        cmd.get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().to_string(), v?.to_string_lossy().to_string())))
            .collect()
    }

    #[test]
    fn each_emulator_is_told_to_listen_on_the_address_given() {
        let addr: std::net::SocketAddr = "127.0.0.1:45123".parse().unwrap();
        let moto = Flavor::Moto.command(Path::new("/v"), addr, Path::new("/s"), false);
        let args: Vec<String> = moto.get_args().map(|a| a.to_string_lossy().to_string()).collect();
        assert_eq!(moto.get_program(), "/v/bin/moto_server");
        assert_eq!(args, ["-H", "127.0.0.1", "-p", "45123"]);
        // localemu's default server binds every interface: hypercorn binds the one named.
        let env = env_of(&Flavor::LocalEmu.command(Path::new("/v"), addr, Path::new("/s"), false));
        assert_eq!(env.get("GATEWAY_SERVER").map(String::as_str), Some("hypercorn"));
        assert_eq!(env.get("GATEWAY_LISTEN").map(String::as_str), Some("127.0.0.1:45123"));
    }

    #[test]
    fn localemu_is_kept_away_from_docker_and_in_its_own_directory() {
        let env = env_of(&Flavor::LocalEmu.command(
            Path::new("/v"),
            "127.0.0.1:1".parse().unwrap(),
            Path::new("/tmp/microseg-localemu-x"),
            false,
        ));
        assert_eq!(env.get("EC2_VM_MANAGER").map(String::as_str), Some("none"));
        assert_eq!(env.get("DOCKER_HOST").map(String::as_str), Some("unix:///tmp/microseg-localemu-x/no-docker.sock"));
        assert_eq!(env.get("LOCALEMU_VOLUME_DIR").map(String::as_str), Some("/tmp/microseg-localemu-x"));
        assert_eq!(env.get("SERVICES").map(String::as_str), Some("ec2,iam,logs,cloudwatch,sts"));
    }

    #[test]
    fn localemu_with_containers_reaches_the_engine_and_still_listens_on_loopback_only() {
        let env = env_of(&Flavor::LocalEmu.command(
            Path::new("/v"),
            "127.0.0.1:2".parse().unwrap(),
            Path::new("/tmp/microseg-localemu-y"),
            true,
        ));
        assert_eq!(env.get("EC2_VM_MANAGER").map(String::as_str), Some("docker"));
        // No DOCKER_HOST of ours: the caller's engine (or the default socket) serves.
        assert_eq!(env.get("DOCKER_HOST"), None);
        assert_eq!(env.get("GATEWAY_LISTEN").map(String::as_str), Some("127.0.0.1:2"));
        assert_eq!(env.get("GATEWAY_SERVER").map(String::as_str), Some("hypercorn"));
    }
}
