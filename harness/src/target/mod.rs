//! Where a run happens, started and stopped by the tool itself.
//!
//! Every target yields one `aws_config::SdkConfig` (every client derives from it) and its
//! [`Capabilities`]: the named ways it departs from AWS, probed where that is cheap.
//!
//! | target                  | what runs                                              |
//! |-------------------------|--------------------------------------------------------|
//! | `localstack-host`       | LocalStack 4.14.0 as our child process, from a cached venv |
//! | `localstack-container`  | LocalStack in a container (testcontainers)             |
//! | `reuse`                 | one LocalStack kept running across invocations (`reuse`) |
//! | `moto`                  | moto's server 5.2.5 as our child process, from a cached venv |
//! | `localemu`              | localemu 1.3.2 as our child process, from a cached venv (Python ≥ 3.13) |
//! | `endpoint=<url>`        | an emulator already running (LocalStack, localemu or moto) |
//! | `aws`                   | a real account, only one that `--allow-account` names  |
//! | `auto`                  | the container if Docker answers and the image is here, else the host process |

mod child;
pub mod container;
pub mod health;
pub mod host;
pub mod listen;
pub mod probe_cache;
pub mod pyemu;
pub mod python;
pub mod reaper;
pub mod reuse;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;

use crate::aws::{AwsError, Clients};
use crate::capabilities::{self, Capabilities, ProbeError};
use crate::ledger::{self, Ledger, LedgerError};
use crate::run_id::RunId;

pub use child::{OWNER_FILE, remove_orphaned_scratch};
pub use container::LocalStackContainer;
pub use host::LocalStackHost;
pub use pyemu::{Flavor, PyEmulator};

/// Region used on emulators unless one is given.
pub const DEFAULT_EMULATOR_REGION: &str = "us-east-1";

/// Which target to use, as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Container if possible, else host process.
    Auto,
    /// LocalStack as a child process.
    LocalStackHost,
    /// LocalStack in a container.
    LocalStackContainer,
    /// One LocalStack host process kept running across invocations, started if none is.
    Reuse,
    /// moto's server as a child process.
    Moto,
    /// localemu as a child process.
    LocalEmu,
    /// Every emulator target available here, one after another (`run`'s differential
    /// mode, `doctor --all`); [`Target::start`] refuses it, since it names several.
    AllEmulators,
    /// An emulator already running at this URL.
    Endpoint(String),
    /// A real AWS account.
    Aws,
}

impl FromStr for TargetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(TargetKind::Auto),
            "localstack-host" | "host" => Ok(TargetKind::LocalStackHost),
            "localstack-container" | "container" => Ok(TargetKind::LocalStackContainer),
            "moto" => Ok(TargetKind::Moto),
            "localemu" => Ok(TargetKind::LocalEmu),
            "all-emulators" => Ok(TargetKind::AllEmulators),
            "aws" => Ok(TargetKind::Aws),
            "reuse" => Ok(TargetKind::Reuse),
            other => match other.strip_prefix("endpoint=") {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Ok(TargetKind::Endpoint(url.trim_end_matches('/').to_string()))
                }
                Some(url) => Err(format!("endpoint URL {url:?} must start with http:// or https://")),
                None => Err(format!(
                    "unknown target {other:?}; use auto, localstack-host, localstack-container, reuse, moto, localemu, all-emulators, endpoint=<url> or aws"
                )),
            },
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Auto => f.write_str("auto"),
            TargetKind::LocalStackHost => f.write_str("localstack-host"),
            TargetKind::LocalStackContainer => f.write_str("localstack-container"),
            TargetKind::Reuse => f.write_str("reuse"),
            TargetKind::Moto => f.write_str("moto"),
            TargetKind::LocalEmu => f.write_str("localemu"),
            TargetKind::AllEmulators => f.write_str("all-emulators"),
            TargetKind::Endpoint(u) => write!(f, "endpoint={u}"),
            TargetKind::Aws => f.write_str("aws"),
        }
    }
}

/// How to start a target.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Which one.
    pub kind: TargetKind,
    /// Region (`--region`); emulators default to us-east-1, AWS to the credential chain's.
    pub region: Option<String>,
    /// Credentials profile for `aws` (`--profile`).
    pub profile: Option<String>,
    /// Account ids a run may touch on `aws` (`--allow-account`).
    pub allow_accounts: Vec<String>,
    /// Regions a run may touch on `aws` (`--allow-region`): any other region, the one
    /// the credential chain or the profile picks included, is refused before any call.
    pub allow_regions: Vec<String>,
    /// Start-up timeout for emulators.
    pub startup_timeout: Duration,
    /// Leave a started emulator running (`MICROSEG_KEEP=1`).
    pub keep_emulator: bool,
    /// Probe cheap divergences at start (emulators only).
    pub probe: bool,
    /// Where the probe keeps its ledger while it runs (default: [`ledger::runs_dir`]).
    pub ledger_dir: Option<PathBuf>,
    /// Send `aws` traffic to this endpoint instead of AWS, with fixed fake credentials.
    /// Only for tests of the guard, where an emulator stands in for the account; the
    /// CLI does not expose it.
    pub aws_endpoint_override: Option<String>,
    /// Take the probe's verdict from an earlier probe of the same emulator instance
    /// when there is one (`probe_cache`); `false` probes regardless.
    pub reuse_probe: bool,
    /// How long an `endpoint=<url>` may stay silent (`--wait`). `None`: up to
    /// [`ENDPOINT_PATIENCE`], but only [`REFUSED_PATIENCE`] while loopback refuses every
    /// connection, since then nothing listens there.
    pub endpoint_wait: Option<Duration>,
    /// `reuse`: the `microseg` binary that supervises a reused emulator it has to start
    /// (the CLI passes itself). `None`: `reuse` only takes one that is already up.
    pub supervisor: Option<PathBuf>,
    /// `reuse`: how long a reused emulator this invocation starts may stay unused.
    pub reuse_idle: Duration,
    /// `localemu`: run EC2 instances as Docker containers, for real traffic
    /// ([`crate::traffic`]); otherwise it keeps state only and never touches Docker.
    pub localemu_containers: bool,
}

impl TargetOptions {
    /// Options for a target kind with defaults for the rest.
    pub fn new(kind: TargetKind) -> TargetOptions {
        TargetOptions {
            kind,
            region: None,
            profile: None,
            allow_accounts: Vec::new(),
            allow_regions: Vec::new(),
            startup_timeout: Duration::from_secs(180),
            keep_emulator: std::env::var("MICROSEG_KEEP").is_ok_and(|v| v == "1"),
            probe: true,
            ledger_dir: None,
            aws_endpoint_override: None,
            endpoint_wait: None,
            reuse_probe: true,
            supervisor: None,
            reuse_idle: reuse::DEFAULT_IDLE,
            localemu_containers: false,
        }
    }
}

/// Why a target could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// `MICROSEG_LISTEN_ADDRESS` is not an IP address.
    #[error(
        "MICROSEG_LISTEN_ADDRESS={value:?} is not an IP address (unset it for loopback, or name one, e.g. 0.0.0.0 for every interface)"
    )]
    ListenAddress {
        /// The variable's value.
        value: String,
    },
    /// No Python new enough for a self-started Python emulator.
    #[error(
        "{} needs Python >= {min}; none found ({})\n(hint: install python{min} or newer, set MICROSEG_PYTHON=/path/to/python{min}{})",
        if emulator == "localstack" { "LocalStack host mode" } else { emulator.as_str() },
        tried.join("; "),
        if emulator == "localstack" { ", or use --target localstack-container with Docker" } else { "" }
    )]
    NoPython {
        /// Which emulator's venv (`localstack`, `moto`, `localemu`).
        emulator: String,
        /// The oldest Python it runs on, `3.12`.
        min: String,
        /// What was tried and why it did not fit.
        tried: Vec<String>,
    },
    /// Building the venv failed.
    #[error("building an emulator venv failed at `{step}` (log: {})\n{tail}\n(hint: the venv needs PyPI; check the log, then retry — a half-built venv is rebuilt)", log.display())]
    Bootstrap {
        /// The step.
        step: String,
        /// Install log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A file-system or process operation failed.
    #[error("cannot {what} ({}): {source}", path.display())]
    Io {
        /// What we tried.
        what: String,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The emulator started but never became ready.
    #[error("{target} did not become ready: {condition}{}{}", log.as_ref().map(|l| format!("\n(log: {})", l.display())).unwrap_or_default(), if tail.is_empty() { String::new() } else { format!("\nlast lines:\n{tail}") })]
    NotReady {
        /// Which target.
        target: String,
        /// The condition that never held.
        condition: String,
        /// The emulator's log file.
        log: Option<PathBuf>,
        /// Its last lines.
        tail: String,
    },
    /// Docker or the image failed.
    #[error(
        "LocalStack container ({image}) failed: {message}\n(hint: without a registry, build the image offline with localstack/build-image.sh and set MICROSEG_LOCALSTACK_IMAGE=microseg/localstack:4.14.0)"
    )]
    Container {
        /// The image.
        image: String,
        /// What testcontainers said.
        message: String,
    },
    /// Docker is not usable for the container target.
    #[error("{0}\n(hint: start Docker, or use --target localstack-host)")]
    NoDocker(String),
    /// The endpoint does not answer as an emulator.
    #[error("endpoint {url} does not answer: {message}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// `--target aws` without `--allow-account`.
    #[error(
        "refusing to use a real AWS account: no --allow-account given\n(hint: pass --allow-account <12-digit id> naming the sandbox account this run may create and delete resources in)"
    )]
    NoAllowlist,
    /// `--target aws` without `--allow-region`.
    #[error(
        "refusing to use a real AWS account without --allow-region\n(hint: pass --allow-region <region> for each region of the sandbox account this run may create and delete resources in)"
    )]
    NoRegionAllowlist,
    /// The region the run would use is not allowed.
    #[error("refusing AWS region {}: it is not in --allow-region ({})\n(hint: check --region, the profile's region and AWS_REGION; only the listed regions are touched)", if region.is_empty() { "(none: no --region, AWS_REGION or profile region)" } else { region.as_str() }, allowed.join(", "))]
    RegionNotAllowed {
        /// The region the run would use.
        region: String,
        /// The allowlist.
        allowed: Vec<String>,
    },
    /// The credentials belong to another account.
    #[error("refusing to use AWS account {actual}: it is not in --allow-account ({})\n(hint: check --profile and the credentials in the environment; only the listed accounts are touched)", allowed.join(", "))]
    AccountNotAllowed {
        /// The account the credentials belong to.
        actual: String,
        /// The allowlist.
        allowed: Vec<String>,
    },
    /// An endpoint override in the environment would send "real account" traffic elsewhere.
    #[error(
        "refusing --target aws while {var} is set: requests would not go to AWS\n(hint: unset it, or use --target endpoint=<url> for an emulator)"
    )]
    EndpointEnvSet {
        /// The variable.
        var: String,
    },
    /// An AWS call failed while starting (STS).
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// A target name that stands for several targets where one is needed.
    #[error(
        "--target {0} names several targets; only `run` and `doctor --all` take it\n(hint: name one: localstack-host, localstack-container, moto or localemu)"
    )]
    Several(String),
    /// The capability probe failed (boxed: it is far larger than the other variants).
    #[error("{0}")]
    Probe(Box<ProbeError>),
    /// The probe's ledger could not be created.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
}

impl From<ProbeError> for TargetError {
    fn from(e: ProbeError) -> Self {
        TargetError::Probe(Box::new(e))
    }
}

impl TargetError {
    pub(crate) fn io(what: &str, path: &Path, source: std::io::Error) -> TargetError {
        TargetError::Io { what: what.into(), path: path.into(), source }
    }
}

/// What keeps an emulator alive; dropping it stops the emulator.
#[derive(Debug)]
pub enum Guard {
    /// Nothing to stop (endpoint, aws).
    None,
    /// A host process.
    Host(Box<LocalStackHost>),
    /// A container.
    Container(Box<LocalStackContainer>),
    /// A reused emulator: not ours to stop; stopping the target restarts its idle clock.
    Reused,
    /// A moto or localemu process.
    Py(Box<PyEmulator>),
}

/// A started target.
#[derive(Debug)]
pub struct Target {
    /// Which target serves.
    pub kind: TargetKind,
    /// One line on what it is (`LocalStack 4.14.0, host process on 127.0.0.1:40123`).
    pub description: String,
    /// Why `auto` chose it, if it did.
    pub chosen_because: Option<String>,
    /// The shared SDK config.
    pub sdk_config: SdkConfig,
    /// The endpoint, for emulators.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Account id (from STS on `aws`; the emulator's otherwise, when asked).
    pub account_id: Option<String>,
    /// Divergences from AWS.
    pub capabilities: Capabilities,
    /// From start to ready (zero for endpoint and aws).
    pub start_to_ready: Duration,
    /// Time spent installing the venv (host, cold only).
    pub venv_install: Duration,
    /// Whether the divergences came from an earlier probe of this same emulator instance
    /// (`probe_cache`) instead of a probe now.
    pub probe_cached: bool,
    guard: Guard,
}

impl Target {
    /// Starts (or connects to) the target, waits until it is ready, and probes it.
    pub async fn start(opts: &TargetOptions) -> Result<Target, TargetError> {
        let (kind, chosen_because) = match &opts.kind {
            TargetKind::Auto => {
                let (k, why) = choose_auto();
                (k, Some(why))
            }
            k => (k.clone(), None),
        };
        let mut target = match &kind {
            TargetKind::Aws => start_aws(opts).await?,
            TargetKind::Endpoint(url) => {
                let region = opts.region.clone().unwrap_or_else(|| DEFAULT_EMULATOR_REGION.into());
                let name = identify_endpoint_within(url, opts.endpoint_wait).await?;
                Target::emulator(kind.clone(), format!("{name} at {url}"), url.clone(), region, Guard::None).await
            }
            TargetKind::LocalStackHost => {
                let host = LocalStackHost::start(opts.startup_timeout, opts.keep_emulator).await?;
                let region = opts.region.clone().unwrap_or_else(|| DEFAULT_EMULATOR_REGION.into());
                let desc = format!(
                    "LocalStack {}, host process on {} (log {})",
                    host.version,
                    host.endpoint(),
                    host.log_path().display()
                );
                let (endpoint, ready, install) = (host.endpoint(), host.start_to_ready, host.venv_install);
                let mut t = Target::emulator(kind.clone(), desc, endpoint, region, Guard::Host(Box::new(host))).await;
                t.start_to_ready = ready;
                t.venv_install = install;
                t
            }
            TargetKind::LocalStackContainer => {
                docker_status().map_err(TargetError::NoDocker)?;
                let c = LocalStackContainer::start(opts.startup_timeout).await?;
                let region = opts.region.clone().unwrap_or_else(|| DEFAULT_EMULATOR_REGION.into());
                let desc = format!("LocalStack {}, container {} on {}", c.version, c.image, c.endpoint());
                let (endpoint, ready) = (c.endpoint(), c.start_to_ready);
                let mut t = Target::emulator(kind.clone(), desc, endpoint, region, Guard::Container(Box::new(c))).await;
                t.start_to_ready = ready;
                t
            }
            TargetKind::Reuse => {
                // Either way the emulator's idle clock starts again (ensure_up touches it).
                let (state, started) = match &opts.supervisor {
                    Some(exe) => reuse::ensure_up(exe, opts.reuse_idle, opts.startup_timeout, &[]).await?,
                    None => {
                        let live = reuse::live().await.ok_or_else(|| TargetError::NotReady {
                            target: "reuse".into(),
                            condition: "no reused emulator is up (start one with `microseg emulator up`)".into(),
                            log: None,
                            tail: String::new(),
                        })?;
                        reuse::touch();
                        (live, false)
                    }
                };
                let region = opts.region.clone().unwrap_or_else(|| DEFAULT_EMULATOR_REGION.into());
                let desc = format!(
                    "LocalStack {}, reused host process on {} ({}; stops after {} unused, or `microseg emulator down`)",
                    state.version,
                    state.endpoint,
                    if started { "started now" } else { "already up" },
                    reuse::short_duration(state.idle_seconds)
                );
                Target::emulator(kind.clone(), desc, state.endpoint, region, Guard::Reused).await
            }
            TargetKind::Moto | TargetKind::LocalEmu => {
                let flavor = if kind == TargetKind::Moto { Flavor::Moto } else { Flavor::LocalEmu };
                let emu =
                    PyEmulator::start_with(flavor, opts.startup_timeout, opts.keep_emulator, opts.localemu_containers)
                        .await?;
                let region = opts.region.clone().unwrap_or_else(|| DEFAULT_EMULATOR_REGION.into());
                let desc = format!(
                    "{flavor} {}, host process{} on {} (log {})",
                    flavor.venv().version,
                    if emu.ec2_docker() { " with instances as containers" } else { "" },
                    emu.endpoint(),
                    emu.log_path().display()
                );
                let (endpoint, ready, install) = (emu.endpoint(), emu.start_to_ready, emu.venv_install);
                let mut t = Target::emulator(kind.clone(), desc, endpoint, region, Guard::Py(Box::new(emu))).await;
                t.start_to_ready = ready;
                t.venv_install = install;
                t
            }
            TargetKind::AllEmulators => return Err(TargetError::Several(kind.to_string())),
            TargetKind::Auto => unreachable!("auto resolved above"),
        };
        target.chosen_because = chosen_because;
        if target.capabilities.emulator.is_some() && opts.probe {
            // Probed already, this very instance: its behaviour has not changed.
            let endpoint = target.endpoint.clone().unwrap_or_default();
            let instance = tokio::task::spawn_blocking(move || probe_cache::instance_id(&endpoint))
                .await
                .expect("the info fetch does not panic");
            if let Some(known) = instance.as_deref().filter(|_| opts.reuse_probe).and_then(probe_cache::load) {
                tracing::info!("divergences of this emulator instance probed earlier: {:?}", known.divergences);
                target.capabilities = known;
                target.probe_cached = true;
                return Ok(target);
            }
            let clients = Clients::new(&target.sdk_config);
            let dir = opts.ledger_dir.clone().unwrap_or_else(ledger::runs_dir);
            let ledger = Ledger::create(
                &dir,
                &RunId::generate(),
                capabilities::PROBE_SCENARIO,
                &target.description,
                target.endpoint.clone(),
                &target.region,
            )?;
            capabilities::probe(&clients, &mut target.capabilities, ledger).await?;
            if let Some(instance) = instance {
                probe_cache::store(&instance, &target.capabilities);
            }
        }
        Ok(target)
    }

    async fn emulator(kind: TargetKind, description: String, endpoint: String, region: String, guard: Guard) -> Target {
        let sdk_config = emulator_sdk_config(&endpoint, &region).await;
        let family = if description.starts_with("moto") {
            "moto"
        } else if description.starts_with("localemu") {
            "localemu"
        } else {
            "LocalStack"
        };
        Target {
            kind,
            description,
            chosen_because: None,
            sdk_config,
            endpoint: Some(endpoint),
            region,
            account_id: None,
            capabilities: Capabilities::emulator(family.to_string()),
            start_to_ready: Duration::ZERO,
            venv_install: Duration::ZERO,
            probe_cached: false,
            guard,
        }
    }

    /// Clients for this target, all from its one `SdkConfig`.
    pub fn clients(&self) -> Clients {
        Clients::new(&self.sdk_config).serving(&self.capabilities)
    }

    /// Whether this is a real account.
    pub fn is_aws(&self) -> bool {
        self.kind == TargetKind::Aws
    }

    /// Stops the emulator, if this target started one.
    pub async fn stop(self) {
        match self.guard {
            Guard::None => {}
            Guard::Reused => reuse::touch(),
            Guard::Host(h) => tokio::task::spawn_blocking(move || h.stop()).await.unwrap_or(()),
            Guard::Container(c) => c.stop().await,
            Guard::Py(p) => tokio::task::spawn_blocking(move || p.stop()).await.unwrap_or(()),
        }
    }

    /// The guard, for tests that check the emulator is gone after `stop`.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

/// The SDK config for an emulator: its endpoint, a fixed region and static test
/// credentials, so the default chain never reaches for instance metadata.
pub async fn emulator_sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(emulator_retry())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "microseg-emulator"))
        .load()
        .await
}

/// Retries on an emulator: standard mode, bounded at 8 attempts with short backoffs
/// (50 ms doubling to at most 2 s), since a local emulator's transient errors clear in
/// milliseconds, not seconds.
pub fn emulator_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(std::time::Duration::from_millis(50))
        .with_max_backoff(std::time::Duration::from_secs(2))
}

/// `auto`: the container when a Docker engine answers and the image is present, else
/// the host process; and why.
pub fn choose_auto() -> (TargetKind, String) {
    let image = container::configured_image();
    match docker_status() {
        Ok(version) if container::image_present(&image) => {
            (TargetKind::LocalStackContainer, format!("Docker {version} answers and image {image} is present"))
        }
        Ok(version) => (
            TargetKind::LocalStackHost,
            format!(
                "Docker {version} answers but image {image} is not present (build it with localstack/build-image.sh)"
            ),
        ),
        Err(why) => (TargetKind::LocalStackHost, why),
    }
}

pub use container::docker_status;

/// How long an endpoint the user named may stay silent before the run gives up. An
/// emulator that is still starting, or busy serving other runs, answers late: CI saw
/// LocalStack take over 2 s for its health answer while eight runs and a CloudFormation
/// stack shared it. A wrong address costs this long, with every attempt's reason named.
pub const ENDPOINT_PATIENCE: Duration = Duration::from_secs(60);

/// What one identification attempt may take.
const ENDPOINT_ATTEMPT: Duration = Duration::from_secs(10);

/// How long a loopback endpoint that refuses every connection gets by default: a
/// service container or an emulator in another terminal that is still starting binds
/// its port within a few seconds; a typo'd port never does.
pub const REFUSED_PATIENCE: Duration = Duration::from_secs(3);

/// Names the emulator behind `url`: LocalStack by its health document, moto by its API
/// page. Silence (refused, reset, timed out) is asked again until the patience is spent:
/// `wait` when the user set it, else [`ENDPOINT_PATIENCE`], or [`REFUSED_PATIENCE`] when
/// the host is loopback and every attempt was refused. An answer that is neither fails
/// at once.
async fn identify_endpoint_within(url: &str, wait: Option<Duration>) -> Result<String, TargetError> {
    let started = Instant::now();
    let loopback = endpoint_is_loopback(url);
    let (mut attempts, mut refused) = (0u32, 0u32);
    loop {
        attempts += 1;
        let u = url.to_string();
        let health = tokio::task::spawn_blocking(move || health::fetch_within(&u, ENDPOINT_ATTEMPT))
            .await
            .expect("health fetch does not panic");
        let why = match health {
            Ok(h) => return Ok(format!("LocalStack {}", h.version.unwrap_or_default())),
            Err(health::FetchError::NotLocalStack(_)) => return identify_other(url).await,
            Err(health::FetchError::Refused(why)) => {
                refused += 1;
                why
            }
            Err(health::FetchError::Silent(why)) => why,
        };
        let waited = started.elapsed();
        let only_refusals = loopback && refused == attempts;
        let patience = match wait {
            Some(w) => w,
            None if only_refusals => REFUSED_PATIENCE,
            None => ENDPOINT_PATIENCE,
        };
        if waited >= patience {
            let hint = match (wait, only_refusals) {
                (None, true) => format!(
                    "; every connection was refused, so nothing listens there: check the port, or if the emulator is \
                     still starting, wait longer with --wait {}s",
                    ENDPOINT_PATIENCE.as_secs()
                ),
                _ => format!("; wait longer with --wait (now {:.0?})", patience),
            };
            return Err(TargetError::Endpoint {
                url: url.into(),
                message: format!("no answer in {waited:.1?} ({attempts} attempts); last: {why}{hint}"),
            });
        }
        tracing::debug!(url, attempts, %why, "endpoint silent; asking again");
        tokio::time::sleep(Duration::from_millis(500).min(patience.saturating_sub(waited))).await;
    }
}

/// Whether the URL's host is a loopback address (or `localhost`).
fn endpoint_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// localemu by its own health document (`/_localemu/health`, with its version from
/// `/_localemu/info`); else anything answering HTTP on moto's API page counts as moto.
async fn identify_other(url: &str) -> Result<String, TargetError> {
    let base = url.to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(ENDPOINT_ATTEMPT)).build().into();
    let answer = tokio::task::spawn_blocking(move || {
        #[derive(serde::Deserialize)]
        struct Info {
            version: String,
        }
        if agent.get(format!("{base}/_localemu/health")).call().is_ok() {
            let version = agent
                .get(format!("{base}/_localemu/info"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Info>().ok())
                .map(|i| i.version)
                .unwrap_or_default();
            return Ok(format!("localemu {version}").trim_end().to_string());
        }
        agent.get(format!("{base}/moto-api/")).call().map(|_| "moto server".to_string())
    })
    .await
    .expect("no panic");
    answer.map_err(|e| TargetError::Endpoint {
        url: url.into(),
        message: format!("neither LocalStack, localemu nor moto: {e}"),
    })
}

/// Environment variables that would redirect SDK traffic away from AWS.
fn endpoint_env_var() -> Option<String> {
    std::env::vars().map(|(k, _)| k).find(|k| k == "AWS_ENDPOINT_URL" || k.starts_with("AWS_ENDPOINT_URL_"))
}

async fn start_aws(opts: &TargetOptions) -> Result<Target, TargetError> {
    // The guard comes first: no allowlist, no API call of any kind.
    if opts.allow_accounts.is_empty() {
        return Err(TargetError::NoAllowlist);
    }
    if opts.allow_regions.is_empty() {
        return Err(TargetError::NoRegionAllowlist);
    }
    if opts.aws_endpoint_override.is_none()
        && let Some(var) = endpoint_env_var()
    {
        return Err(TargetError::EndpointEnvSet { var });
    }
    let started = Instant::now();
    // Adaptive retry: on AWS throttling is the common transient, and adaptive mode also
    // slows the client down when it sees it. Bounded, never endless.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::adaptive().with_max_attempts(10));
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(url) = &opts.aws_endpoint_override {
        // An emulator stands in for the account: it ignores credentials, and fixed fake
        // ones keep the test from depending on (or changing) the process's environment.
        let fake = Credentials::new("AKIAFAKEFAKEFAKEFAKE", "fake", None, None, "microseg-test");
        loader = loader.endpoint_url(url).credentials_provider(fake);
    }
    let sdk_config = loader.load().await;
    let region = sdk_config.region().map(|r| r.to_string()).unwrap_or_default();
    // The region is known once the chain is read, and no request has been sent yet.
    if !opts.allow_regions.iter().any(|r| r == &region) {
        return Err(TargetError::RegionNotAllowed { region, allowed: opts.allow_regions.clone() });
    }
    let identity = aws_sdk_sts::Client::new(&sdk_config)
        .get_caller_identity()
        .send()
        .await
        .map_err(crate::aws::aws_err("GetCallerIdentity"))?;
    let account = identity.account().unwrap_or_default().to_string();
    if !opts.allow_accounts.iter().any(|a| a == &account) {
        return Err(TargetError::AccountNotAllowed { actual: account, allowed: opts.allow_accounts.clone() });
    }
    Ok(Target {
        kind: TargetKind::Aws,
        description: format!("AWS account {account} in {region}"),
        chosen_because: None,
        sdk_config,
        endpoint: opts.aws_endpoint_override.clone(),
        region,
        account_id: Some(account),
        capabilities: Capabilities::aws(),
        start_to_ready: started.elapsed(),
        venv_install: Duration::ZERO,
        probe_cached: false,
        guard: Guard::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!("auto".parse::<TargetKind>(), Ok(TargetKind::Auto));
        assert_eq!(
            "endpoint=http://127.0.0.1:4566/".parse::<TargetKind>(),
            Ok(TargetKind::Endpoint("http://127.0.0.1:4566".into()))
        );
        assert!("endpoint=127.0.0.1:4566".parse::<TargetKind>().unwrap_err().contains("http://"));
        assert!("lokalstack".parse::<TargetKind>().unwrap_err().contains("localstack-host"));
        for (name, kind) in [
            ("moto", TargetKind::Moto),
            ("localemu", TargetKind::LocalEmu),
            ("all-emulators", TargetKind::AllEmulators),
        ] {
            assert_eq!(name.parse::<TargetKind>(), Ok(kind.clone()));
            assert_eq!(kind.to_string(), name, "names round-trip");
        }
        let err = "motto".parse::<TargetKind>().unwrap_err();
        assert!(err.contains("\"motto\"") && err.contains("moto") && err.contains("localemu"), "{err}");
    }

    #[tokio::test]
    async fn all_emulators_is_refused_where_one_target_is_needed() {
        let err = Target::start(&TargetOptions::new(TargetKind::AllEmulators)).await.unwrap_err();
        assert!(matches!(err, TargetError::Several(_)), "{err}");
        assert!(err.to_string().contains("--target all-emulators names several targets"), "{err}");
    }

    #[tokio::test]
    async fn localemu_behind_an_endpoint_is_named_with_its_version() {
        // localemu answers LocalStack's health path as an S3 request (501) and serves its
        // own under /_localemu/ (docs/EMULATOR.md, "localemu 1.3.2 as a target").
        let url = server(|_, conn| {
            // Peeked, not read: `answer` reads the request itself.
            let mut buf = [0u8; 2048];
            let n = conn.peek(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or_default().to_string();
            match path.as_str() {
                "/_localemu/health" => answer(conn, "200 OK", r#"{"services":{"ec2":"running"}}"#),
                "/_localemu/info" => answer(conn, "200 OK", r#"{"version":"1.3.2","uptime":5}"#),
                _ => answer(conn, "501 Not Implemented", "{}"),
            }
        });
        let name = identify_endpoint_within(&url, Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(name, "localemu 1.3.2");
    }

    #[tokio::test]
    async fn aws_without_allowlist_refuses_before_any_call() {
        // An endpoint that nothing listens on: had the guard let a call through, the
        // error would be a connection failure, not NoAllowlist.
        let mut opts = TargetOptions::new(TargetKind::Aws);
        opts.aws_endpoint_override = Some("http://127.0.0.1:9".into());
        let err = Target::start(&opts).await.unwrap_err();
        assert!(matches!(err, TargetError::NoAllowlist), "{err}");
    }

    #[tokio::test]
    async fn aws_refuses_a_region_not_named_before_any_call() {
        // As above: a call would fail to connect; the guard must answer first.
        let mut opts = TargetOptions::new(TargetKind::Aws);
        opts.aws_endpoint_override = Some("http://127.0.0.1:9".into());
        opts.allow_accounts = vec!["123456789012".into()];
        opts.region = Some("eu-west-1".into());
        let err = Target::start(&opts).await.unwrap_err();
        assert!(matches!(err, TargetError::NoRegionAllowlist), "{err}");
        assert!(err.to_string().contains("--allow-region"), "{err}");
        opts.allow_regions = vec!["us-east-1".into()];
        match Target::start(&opts).await.unwrap_err() {
            TargetError::RegionNotAllowed { region, allowed } => {
                assert_eq!((region.as_str(), allowed), ("eu-west-1", vec!["us-east-1".to_string()]));
            }
            other => panic!("expected RegionNotAllowed, got {other}"),
        }
    }

    /// A one-thread HTTP server: each connection is handed to `serve` with its index.
    fn server(serve: impl Fn(usize, std::net::TcpStream) + Send + 'static) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { return };
                serve(i, conn);
            }
        });
        url
    }

    fn answer(mut conn: std::net::TcpStream, status: &str, body: &str) {
        use std::io::{Read, Write};
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    #[tokio::test]
    async fn a_busy_endpoint_is_asked_again_until_it_answers() {
        // The first two connections are dropped unanswered (as a saturated emulator
        // resets them); the third gets LocalStack's health document.
        let url = server(|i, conn| {
            if i < 2 {
                drop(conn);
            } else {
                answer(conn, "200 OK", r#"{"services":{},"version":"4.14.0"}"#);
            }
        });
        let name = identify_endpoint_within(&url, Some(Duration::from_secs(20))).await.unwrap();
        assert_eq!(name, "LocalStack 4.14.0");
    }

    #[tokio::test]
    async fn a_silent_endpoint_fails_after_the_patience_naming_the_attempts() {
        // Bound then closed: nothing listens, every connection is refused.
        let url = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        // With --wait, refusals are waited out for as long as the user said.
        let started = Instant::now();
        let err = identify_endpoint_within(&url, Some(Duration::from_millis(4200))).await.unwrap_err();
        let waited = started.elapsed();
        let msg = err.to_string();
        assert!(msg.contains(&url) && msg.contains("no answer in") && msg.contains("attempts"), "{msg}");
        assert!(msg.contains("wait longer with --wait"), "{msg}");
        assert!(waited >= Duration::from_millis(4200), "gave up early: {waited:?}");
    }

    #[tokio::test]
    async fn a_refused_loopback_endpoint_fails_within_seconds_by_default_and_says_how_to_wait() {
        let url = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let started = Instant::now();
        let msg = identify_endpoint_within(&url, None).await.unwrap_err().to_string();
        let waited = started.elapsed();
        assert!(waited >= REFUSED_PATIENCE, "gave up before the refusal patience: {waited:?}");
        assert!(waited < REFUSED_PATIENCE + Duration::from_secs(2), "a refused loopback port kept us {waited:?}");
        assert!(msg.contains("every connection was refused") && msg.contains("--wait 60s"), "{msg}");
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_others() {
        for url in ["http://127.0.0.1:4566", "http://localhost:4566", "http://[::1]:4566/", "http://127.0.0.2:1"] {
            assert!(endpoint_is_loopback(url), "{url}");
        }
        for url in ["http://localstack:4566", "http://10.0.0.5:4566", "https://example.com"] {
            assert!(!endpoint_is_loopback(url), "{url}");
        }
    }

    #[tokio::test]
    async fn a_service_that_failed_to_load_is_reported_at_once_not_after_the_timeout() {
        let url = server(|_, conn| {
            let services = r#"{"ec2":"running","iam":"running","logs":"running","cloudwatch":"error","sts":"running"}"#;
            answer(conn, "200 OK", &format!(r#"{{"services":{services},"version":"4.14.0"}}"#))
        });
        let started = Instant::now();
        let err = health::wait_ready(&url, Duration::from_secs(30), || None).await.unwrap_err();
        assert_eq!(err, health::NotReady::Broken("cloudwatch=error".into()));
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?} for a broken service", started.elapsed());
    }

    #[tokio::test]
    async fn an_endpoint_that_answers_as_neither_emulator_fails_at_once() {
        let url = server(|_, conn| answer(conn, "404 Not Found", "{}"));
        let started = Instant::now();
        let err = identify_endpoint_within(&url, Some(Duration::from_secs(30))).await.unwrap_err();
        assert!(err.to_string().contains("neither LocalStack, localemu nor moto"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "an answer is not retried: {:?}", started.elapsed());
    }
}
