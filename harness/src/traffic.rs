//! Real traffic through an emulator that runs EC2 instances as containers: localemu
//! 1.3.2 started with `EC2_VM_MANAGER=docker` ([`crate::target::TargetOptions::localemu_containers`]).
//!
//! After a run has built and checked a scenario, [`send`] places one minimal instance
//! per endpoint of the reach evaluator (a zone, or each workload of a zone) from an
//! image built offline ([`ensure_image`]), sends every intended zone-to-zone flow and a
//! sample of the closed ones as real TCP and UDP connections between those containers
//! (a `socat` listener in the server, a `socat` client through `docker exec` in the
//! client), and compares each outcome with the evaluator's verdict on the same observed
//! deployment ([`crate::reach::analyse`]'s matrix). A disagreement the emulator's
//! enforcement explains is named by an [`EnforcementDivergence`], as API behaviour is
//! by [`crate::capabilities::Divergence`]; any other is a finding.
//!
//! Traffic only ever goes to the addresses of the containers placed here, read from
//! Docker: never to the internet, an external or any other address. Flows from or to
//! the internet or an external are out of scope and listed as such.
//!
//! Everything placed is removed before [`send`] returns, whatever happens: the
//! containers are killed, the instances terminated through the API and the containers'
//! absence checked; a panic or a dropped future leaves it to the instance guard's `Drop`. What
//! localemu itself leaves on the engine goes when the emulator stops ([`sweep_docker`]).
//! docs/EMULATOR.md, "Real traffic through localemu", has the measured facts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use microseg_reach::ProtocolClass;
use microseg_reach::model::Direction;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::{AwsError, Clients, aws_err};
use crate::bindings::Bindings;
use crate::checks::{CheckResult, Finding, Status};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::reach::Reachability;
use crate::run_id::RunId;

/// The AMI id instances are launched with; localemu maps it to [`IMAGE`].
pub const AMI: &str = "ami-microseg";
/// The image localemu runs for [`AMI`]: its `ami_mapping.py` uses a local image tagged
/// `localemu-ec2/<ami-id>` before anything else, and never pulls it.
pub const IMAGE: &str = "localemu-ec2/ami-microseg";
/// The script that builds [`IMAGE`] (`emulators/localemu/build-instance-image.sh`),
/// compiled in so an installed binary can build it too.
pub const BUILD_SCRIPT: &str = include_str!("../../emulators/localemu/build-instance-image.sh");
/// The image label holding the SHA-256 of the script that built it.
pub const RECIPE_LABEL: &str = "microseg.recipe-sha256";
/// Prefix of the containers localemu names after instances.
pub const CONTAINER_PREFIX: &str = "localemu-ec2-";
/// The network localemu makes for published ports and never removes.
pub const PUBPORT_NETWORK: &str = "localemu-pubport-br";
/// Prefix of the network localemu makes per VPC.
pub const VPC_NETWORK_PREFIX: &str = "localemu-vpc-";

/// How long a client waits for a connection and its answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on any one `docker` command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the image build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Closed ports sampled per ordered pair of endpoints, one per protocol, taken in turn
/// from these lists (skipping any port the design intends for that pair).
const CLOSED_TCP: [u16; 6] = [22, 3306, 5432, 6379, 9200, 27017];
const CLOSED_UDP: [u16; 5] = [123, 161, 514, 1812, 5353];

/// A way localemu's enforcement departs from AWS's, measured with real traffic
/// (docs/EMULATOR.md, "Real traffic through localemu"). Parallel to
/// [`crate::capabilities::Divergence`], which names departures of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnforcementDivergence {
    /// In a subnet with a custom NACL, a packet the NACL allows is accepted without
    /// the security groups being consulted: localemu inserts its `NACL_IN`/`NACL_OUT`
    /// chains above `SG_IN`/`SG_OUT`, and the NACL's allow is an iptables `ACCEPT`.
    NaclAllowSkipsSecurityGroups,
    /// A NACL is not applied to an instance launched after it: RunInstances installs
    /// only the groups' chains. [`send`] works around it (it re-associates each custom
    /// NACL with its subnet once the instances are up), so no verdict is put down to it.
    NaclNotAppliedAtLaunch,
    /// The group chains accept UDP port 53 in both directions whatever the rules say.
    Udp53AlwaysAllowed,
}

impl EnforcementDivergence {
    /// Every one, for documentation.
    pub const ALL: [EnforcementDivergence; 3] = [
        EnforcementDivergence::NaclAllowSkipsSecurityGroups,
        EnforcementDivergence::NaclNotAppliedAtLaunch,
        EnforcementDivergence::Udp53AlwaysAllowed,
    ];

    /// Stable id, as used in reports.
    pub fn id(self) -> &'static str {
        match self {
            EnforcementDivergence::NaclAllowSkipsSecurityGroups => "nacl-allow-skips-security-groups",
            EnforcementDivergence::NaclNotAppliedAtLaunch => "nacl-not-applied-at-launch",
            EnforcementDivergence::Udp53AlwaysAllowed => "udp-53-always-allowed",
        }
    }

    /// What it means, in one sentence.
    pub fn description(self) -> &'static str {
        match self {
            EnforcementDivergence::NaclAllowSkipsSecurityGroups => {
                "in a subnet with a custom NACL, traffic the NACL allows is accepted without consulting the security \
                 groups (the NACL chain comes first and ends in ACCEPT)"
            }
            EnforcementDivergence::NaclNotAppliedAtLaunch => {
                "an instance launched into a subnet gets no NACL chain until the NACL or its association changes \
                 (worked around: each custom NACL is re-associated once the instances are up)"
            }
            EnforcementDivergence::Udp53AlwaysAllowed => {
                "the security-group chains accept UDP port 53 in both directions whatever the rules"
            }
        }
    }
}

impl std::fmt::Display for EnforcementDivergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Why traffic could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrafficError {
    /// No Docker engine answers.
    #[error("no Docker engine: {0}\n(hint: real traffic needs a Docker engine that localemu can run instances on)")]
    NoDocker(String),
    /// Containers cannot get `NET_ADMIN`, so no firewall can be enforced in them.
    #[error(
        "a container with --cap-add NET_ADMIN cannot run iptables here: {0}\n(hint: localemu enforces groups and \
         NACLs with iptables inside each instance's container; a rootless or restricted engine cannot)"
    )]
    NoNetAdmin(String),
    /// The instance image could not be built.
    #[error("building the instance image {IMAGE} failed (exit {code}): {tail}\n(hint: {hint})")]
    ImageBuild {
        /// The script's exit code.
        code: i32,
        /// The end of its output.
        tail: String,
        /// What to do.
        hint: String,
    },
    /// A `docker` command failed or took too long.
    #[error("docker {what}: {detail}")]
    Docker {
        /// The command, in short.
        what: String,
        /// Its error.
        detail: String,
    },
    /// localemu did not install the firewall an instance's probes rely on, even after
    /// the NACLs were associated again.
    #[error(
        "localemu's firewall in {container} ({endpoint}) is not what its groups and NACL make it: {problems}\n(hint: \
         localemu installs it with iptables through docker exec and, when that fails, says so only in its log, \
         which names the container)"
    )]
    Enforcement {
        /// The container.
        container: String,
        /// Its endpoint.
        endpoint: String,
        /// What is missing or wrong, `; `-separated.
        problems: String,
    },
    /// An API call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The target made no container for an instance: it is not localemu with instances
    /// as containers.
    #[error(
        "instance {instance} has no container {container}: the target does not run instances as containers\n(hint: \
         real traffic needs --target localemu, which microseg then starts with EC2_VM_MANAGER=docker)"
    )]
    NoContainer {
        /// The instance.
        instance: String,
        /// The container expected.
        container: String,
    },
}

/// One instance placed for an endpoint of the evaluator.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedInstance {
    /// The evaluator's endpoint (a zone, or a workload).
    pub endpoint: String,
    /// `i-…`
    pub instance_id: String,
    /// The container localemu runs it in.
    pub container: String,
    /// Its address on the VPC's network, read from Docker.
    pub address: IpAddr,
    /// The address the evaluator stands the endpoint for (in the same subnet).
    pub evaluator_address: IpAddr,
    /// Groups it was launched with (`sg-…`); empty: the VPC's default group.
    pub groups: Vec<String>,
    /// RunInstances' wall time, in ms.
    pub launch_ms: u64,
}

/// One connection attempt, or two: from each end of the client's ephemeral range.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Client endpoint.
    pub from: String,
    /// Server endpoint.
    pub to: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Whether the design intends it.
    pub intended: bool,
    /// The evaluator's verdict on the observed deployment.
    pub expected: bool,
    /// The source ports tried (the lowest and the highest free port of the client's
    /// ephemeral range), with whether an answer came back from each.
    pub attempts: Vec<(u16, bool)>,
    /// Whether it passed from every source port tried.
    pub passed: bool,
    /// Whether a failed attempt was sent again, with longer to answer (see [`send`]).
    pub retried: bool,
    /// The comparison.
    pub agreement: Agreement,
}

/// How one probe's outcome compares with the evaluator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Agreement {
    /// Both say the same.
    Agrees,
    /// They differ, and the emulator's enforcement explains it.
    Divergence(EnforcementDivergence),
    /// They differ, and nothing named explains it: an emulator or an evaluator bug.
    Disagrees(String),
}

/// What [`send`] did and found.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficReport {
    /// The image the instances ran.
    pub image: String,
    /// Time to build it, in ms, when this run built it.
    pub image_build_ms: Option<u64>,
    /// The instances, one per endpoint inside the VPC.
    pub instances: Vec<PlacedInstance>,
    /// Custom NACLs re-associated after placement (the `nacl-not-applied-at-launch`
    /// work-around), by id.
    pub nacls_reapplied: Vec<String>,
    /// Every connection sent, intended ones first.
    pub probes: Vec<Probe>,
    /// Intended flows not sent, each with why (the internet, externals, protocols
    /// other than TCP and UDP).
    pub out_of_scope: Vec<String>,
    /// Enforcement divergences met (each explains at least one probe).
    pub divergences: Vec<EnforcementDivergence>,
    /// Wall times, in ms: placing, sending, removing.
    pub placement_ms: u64,
    /// Sending, listeners included.
    pub sending_ms: u64,
    /// Removing the instances.
    pub cleanup_ms: u64,
    /// Containers of this run still present after cleanup (should be none).
    pub leftovers: Vec<String>,
}

impl TrafficReport {
    /// Probes whose outcome matched the evaluator.
    pub fn agreements(&self) -> usize {
        self.probes.iter().filter(|p| p.agreement == Agreement::Agrees).count()
    }
}

// ---------------------------------------------------------------------------------
// Docker, always under a timeout.

async fn docker(args: &[&str], what: &str) -> Result<String, TrafficError> {
    docker_for(args, what, DOCKER_TIMEOUT).await
}

async fn docker_for(args: &[&str], what: &str, limit: Duration) -> Result<String, TrafficError> {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => {
            return Err(TrafficError::Docker { what: what.into(), detail: format!("no answer within {limit:?}") });
        }
        Ok(Err(e)) => return Err(TrafficError::Docker { what: what.into(), detail: e.to_string() }),
        Ok(Ok(o)) => o,
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TrafficError::Docker {
            what: what.into(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// The same, synchronously, for `Drop` and the emulator's stop: errors only logged.
fn docker_sync(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("timeout")
        .arg(DOCKER_TIMEOUT.as_secs().to_string())
        .arg("docker")
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            tracing::debug!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
            None
        }
        Err(e) => {
            tracing::debug!("docker {}: {e}", args.join(" "));
            None
        }
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// The SHA-256 of the build script microseg carries.
pub fn recipe_sha256() -> String {
    hex::encode(Sha256::digest(BUILD_SCRIPT.as_bytes()))
}

/// Whether [`IMAGE`] is present and was built by this very script.
pub fn image_up_to_date() -> bool {
    docker_sync(&["image", "inspect", "--format", &format!("{{{{ index .Config.Labels \"{RECIPE_LABEL}\" }}}}"), IMAGE])
        .is_some_and(|l| l.trim() == recipe_sha256())
}

/// Builds [`IMAGE`] unless it is present and up to date; returns the build's wall time
/// when it built. Needs root and Debian's mirror (debootstrap), about a minute.
pub async fn ensure_image() -> Result<Option<Duration>, TrafficError> {
    if tokio::task::spawn_blocking(image_up_to_date).await.expect("inspect does not panic") {
        return Ok(None);
    }
    tracing::info!("building the instance image {IMAGE} offline (debootstrap; about a minute)");
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-s")
        .env("MICROSEG_RECIPE_SHA256", recipe_sha256())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| TrafficError::ImageBuild {
        code: -1,
        tail: e.to_string(),
        hint: "is bash installed?".into(),
    })?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(BUILD_SCRIPT.as_bytes()).await.map_err(|e| TrafficError::ImageBuild {
            code: -1,
            tail: e.to_string(),
            hint: "the build script could not be handed to bash".into(),
        })?;
    }
    let out =
        tokio::time::timeout(BUILD_TIMEOUT, child.wait_with_output()).await.map_err(|_| TrafficError::ImageBuild {
            code: -1,
            tail: format!("no end after {BUILD_TIMEOUT:?}"),
            hint: "is Debian's mirror reachable? set MICROSEG_DEBIAN_MIRROR".into(),
        })?;
    let out = out.map_err(|e| TrafficError::ImageBuild { code: -1, tail: e.to_string(), hint: String::new() })?;
    let code = out.status.code().unwrap_or(-1);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: String = text.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    match code {
        0 => Ok(Some(started.elapsed())),
        3 => Err(TrafficError::NoDocker(tail)),
        4 => Err(TrafficError::ImageBuild {
            code,
            tail,
            hint: format!(
                "build it once as root: bash emulators/localemu/build-instance-image.sh (or `microseg run --traffic` \
                 as root); it is labelled {RECIPE_LABEL} and reused after"
            ),
        }),
        _ => Err(TrafficError::ImageBuild {
            code,
            tail,
            hint: "see the output above; MICROSEG_DEBIAN_MIRROR names another Debian mirror".into(),
        }),
    }
}

/// Whether real traffic can run here: a Docker engine answers, and a container of
/// [`IMAGE`] given `NET_ADMIN` can run iptables. Builds the image first if needed
/// (returns the build time then). Nothing is left behind. Once it has passed, later
/// calls in the same process return at once: the command line checks before it starts
/// the emulator, and [`send`] checks again for a library caller.
pub async fn preflight() -> Result<Option<Duration>, TrafficError> {
    static PASSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if PASSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(None);
    }
    let built = preflight_once().await?;
    PASSED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(built)
}

async fn preflight_once() -> Result<Option<Duration>, TrafficError> {
    tokio::task::spawn_blocking(crate::target::docker_status)
        .await
        .expect("docker version does not panic")
        .map_err(TrafficError::NoDocker)?;
    let built = ensure_image().await?;
    docker(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-add",
            "NET_ADMIN",
            "--label",
            "managed-by=microseg",
            IMAGE,
            "iptables",
            "-S",
            "INPUT",
        ],
        "run a NET_ADMIN container",
    )
    .await
    .map_err(|e| TrafficError::NoNetAdmin(e.to_string()))?;
    Ok(built)
}

/// Removes what a localemu with instances as containers leaves on the engine: the
/// containers of [`IMAGE`] and every container localemu labels `localemu.service` (its
/// IMDS sidecars and NAT gateways, where their images can be pulled), every
/// `localemu-vpc-*` network without containers, and its port-publishing bridge (which it
/// never removes, even on a clean stop). localemu removes the same at its own start. Called when
/// such an emulator stops, holding the lock that keeps any other off the engine.
/// Best effort; failures are logged. Returns what it removed.
pub fn sweep_docker() -> Vec<String> {
    let mut removed = Vec::new();
    let mut found = BTreeSet::new();
    for filter in [format!("ancestor={IMAGE}"), "label=localemu.service".to_string()] {
        if let Some(ids) = docker_sync(&["ps", "-a", "--format", "{{.ID}} {{.Names}}", "--filter", &filter]) {
            found.extend(lines(&ids));
        }
    }
    for line in found {
        let (id, name) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        if docker_sync(&["rm", "-f", id]).is_some() {
            tracing::warn!("removed container {name} left by localemu");
            removed.push(format!("container {name}"));
        }
    }
    if let Some(nets) = docker_sync(&["network", "ls", "--format", "{{.Name}}"]) {
        for n in lines(&nets) {
            // `network rm` fails (and the network stays) while a container still uses it.
            if (n.starts_with(VPC_NETWORK_PREFIX) || n == PUBPORT_NETWORK)
                && docker_sync(&["network", "rm", &n]).is_some()
            {
                tracing::debug!("removed network {n} left by localemu");
                removed.push(format!("network {n}"));
            }
        }
    }
    removed
}

/// [`sweep_docker`], unless a localemu with instances as containers runs on this machine
/// (it holds [`crate::target::pyemu::DOCKER_LOCK`]): then `None`, and nothing is
/// touched. For `sweep --abandoned`, after a microseg was killed mid-traffic (its
/// localemu died with it and removed nothing).
pub fn sweep_docker_if_idle() -> Option<Vec<String>> {
    let lock = crate::target::pyemu::open_docker_lock().ok()?;
    lock.try_lock().ok()?;
    Some(sweep_docker())
}

// ---------------------------------------------------------------------------------
// Placement.

/// The instances placed so far: removed by [`Placed::remove`], or by `Drop` on a
/// thread of its own if the future was dropped or panicked.
struct Placed {
    clients: Clients,
    /// The run whose tag every instance carries.
    run_id: RunId,
    instances: Vec<PlacedInstance>,
    /// Instance ids launched whose container may exist even if the rest failed.
    launched: Vec<String>,
    armed: bool,
}

impl Placed {
    fn containers(&self) -> Vec<String> {
        self.launched.iter().map(|i| format!("{CONTAINER_PREFIX}{i}")).collect()
    }

    /// Kills the containers (localemu's own stop waits 5 s per instance: its PID 1 is a
    /// shell that ignores SIGTERM), terminates the instances, and returns the
    /// containers still there.
    async fn remove(mut self) -> Vec<String> {
        self.armed = false;
        for id in tagged_instances(&self.clients, &self.run_id).await {
            if !self.launched.contains(&id) {
                self.launched.push(id);
            }
        }
        let containers = self.containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            if let Err(e) = docker(&args, "rm -f the instance containers").await {
                tracing::warn!("{e}");
            }
        }
        if !self.launched.is_empty()
            && let Err(e) = self
                .clients
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(self.launched.clone()))
                .send()
                .await
                .map_err(aws_err("TerminateInstances"))
        {
            tracing::warn!("{e}");
        }
        left_containers(&containers).await
    }
}

/// The run's instances still running, found by its tag: one whose RunInstances was in
/// flight when the work stopped is known only there.
async fn tagged_instances(clients: &Clients, run_id: &RunId) -> Vec<String> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{}", crate::run_id::TAG_RUN_ID))
        .values(run_id.as_str())
        .build();
    let state =
        aws_sdk_ec2::types::Filter::builder().name("instance-state-name").values("pending").values("running").build();
    match clients.ec2.describe_instances().filters(filter).filters(state).send().await {
        Ok(out) => out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect(),
        Err(e) => {
            tracing::warn!("traffic: listing the run's instances: {e}");
            Vec::new()
        }
    }
}

async fn left_containers(containers: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for c in containers {
        if docker(&["container", "inspect", "--format", "{{.Name}}", c], "inspect").await.is_ok() {
            left.push(c.clone());
        }
    }
    left
}

impl Drop for Placed {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (clients, run_id, known) = (self.clients.clone(), self.run_id.clone(), self.launched.clone());
        // Drop may run inside the caller's runtime: a runtime of its own, on a thread.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let mut ids = known;
                for id in tagged_instances(&clients, &run_id).await {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                if ids.is_empty() {
                    return;
                }
                let containers: Vec<String> = ids.iter().map(|i| format!("{CONTAINER_PREFIX}{i}")).collect();
                let mut args = vec!["rm", "-f"];
                args.extend(containers.iter().map(String::as_str));
                docker_sync(&args);
                if let Err(e) = clients.ec2.terminate_instances().set_instance_ids(Some(ids)).send().await {
                    tracing::error!("traffic: terminating the instances on drop: {e}");
                }
            })
        })
        .join();
        if joined.is_err() {
            tracing::error!("traffic: removing the instances on drop panicked");
        }
    }
}

/// The endpoints of the evaluator inside the VPC, in its order, with their subnets'
/// ids and groups' ids.
struct Site {
    endpoint: String,
    subnet_id: String,
    groups: Vec<String>,
    evaluator_address: IpAddr,
    /// When its subnet has a custom (not the VPC's default) NACL: how many numbered
    /// entries (the `*` deny aside) it has inbound and outbound, each one iptables rule
    /// in localemu's chain.
    nacl_rules: Option<[usize; 2]>,
    /// The client's ephemeral range.
    ephemeral: microseg_reach::model::PortRange,
}

impl Site {
    /// Whether its subnet has a custom NACL, which localemu puts before the groups.
    fn custom_nacl(&self) -> bool {
        self.nacl_rules.is_some()
    }
}

fn sites(observed: &Observed, net: &microseg_reach::Network) -> Vec<Site> {
    net.endpoints
        .iter()
        .filter(|e| !e.internet)
        .filter_map(|e| {
            let subnet = observed.subnets.get(e.subnet?)?;
            let nacl = e.nacl.and_then(|n| observed.nacls.get(n)).filter(|n| !n.is_default);
            let numbered = |d: Direction| {
                nacl.map_or(0, |n| n.entries.iter().filter(|r| r.direction == d && r.rule_number < 32767).count())
            };
            let nacl_rules = nacl.map(|_| [numbered(Direction::Ingress), numbered(Direction::Egress)]);
            Some(Site {
                endpoint: e.name.clone(),
                subnet_id: subnet.id.clone(),
                groups: e
                    .groups
                    .iter()
                    .filter_map(|&g| observed.security_groups.get(g))
                    .map(|g| g.id.clone())
                    .collect(),
                evaluator_address: e.addr,
                nacl_rules,
                ephemeral: e.ephemeral.unwrap_or(net.ephemeral),
            })
        })
        .collect()
}

async fn place(
    clients: &Clients,
    run_id: &RunId,
    plan: &Plan,
    sites: &[Site],
    placed: &mut Placed,
) -> Result<(), TrafficError> {
    use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
    for site in sites {
        let mut tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(run_id.name(&format!("traffic-{}", site.endpoint))).build());
        for (k, v) in run_id.tags(&plan.scenario) {
            tags = tags.tags(Tag::builder().key(k).value(v).build());
        }
        let started = Instant::now();
        let out = clients
            .ec2
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Nano)
            .min_count(1)
            .max_count(1)
            .subnet_id(&site.subnet_id)
            .set_security_group_ids((!site.groups.is_empty()).then(|| site.groups.clone()))
            .tag_specifications(tags.build())
            .send()
            .await
            .map_err(aws_err("RunInstances"))?;
        let launch_ms = started.elapsed().as_millis() as u64;
        let Some(id) = out.instances().first().and_then(|i| i.instance_id()).map(str::to_string) else {
            return Err(TrafficError::Docker {
                what: "RunInstances".into(),
                detail: "no instance in the answer".into(),
            });
        };
        placed.launched.push(id.clone());
        let container = format!("{CONTAINER_PREFIX}{id}");
        let address = container_address(&container, &id).await?;
        tracing::info!("traffic: {} is instance {id}, container {container}, {address}", site.endpoint);
        placed.instances.push(PlacedInstance {
            endpoint: site.endpoint.clone(),
            instance_id: id,
            container,
            address,
            evaluator_address: site.evaluator_address,
            groups: site.groups.clone(),
            launch_ms,
        });
    }
    Ok(())
}

/// The container's address on its VPC's network (`localemu-vpc-*`), from Docker.
async fn container_address(container: &str, instance: &str) -> Result<IpAddr, TrafficError> {
    let out = docker(
        &[
            "container",
            "inspect",
            "--format",
            "{{range $n, $v := .NetworkSettings.Networks}}{{$n}} {{$v.IPAddress}}\n{{end}}",
            container,
        ],
        "inspect the instance container",
    )
    .await
    .map_err(|_| TrafficError::NoContainer { instance: instance.into(), container: container.into() })?;
    lines(&out)
        .iter()
        .filter_map(|l| l.split_once(' '))
        .find(|(net, _)| net.starts_with(VPC_NETWORK_PREFIX))
        .and_then(|(_, ip)| ip.parse().ok())
        .ok_or_else(|| TrafficError::Docker {
            what: format!("inspect {container}"),
            detail: format!("no address on a {VPC_NETWORK_PREFIX}* network: {}", out.trim()),
        })
}

/// Re-associates each custom NACL of the placed sites with its subnet, same NACL, so
/// localemu builds its chains in the containers ([`EnforcementDivergence::NaclNotAppliedAtLaunch`]).
async fn reapply_nacls(clients: &Clients, sites: &[Site]) -> Result<Vec<String>, TrafficError> {
    let subnets: BTreeSet<&str> = sites.iter().filter(|s| s.custom_nacl()).map(|s| s.subnet_id.as_str()).collect();
    let mut done = Vec::new();
    for subnet in subnets {
        let out = clients
            .ec2
            .describe_network_acls()
            .filters(aws_sdk_ec2::types::Filter::builder().name("association.subnet-id").values(subnet).build())
            .send()
            .await
            .map_err(aws_err("DescribeNetworkAcls"))?;
        for acl in out.network_acls() {
            let Some(acl_id) = acl.network_acl_id() else { continue };
            for a in acl.associations().iter().filter(|a| a.subnet_id() == Some(subnet)) {
                if let Some(assoc) = a.network_acl_association_id() {
                    clients
                        .ec2
                        .replace_network_acl_association()
                        .association_id(assoc)
                        .network_acl_id(acl_id)
                        .send()
                        .await
                        .map_err(aws_err("ReplaceNetworkAclAssociation"))?;
                    done.push(format!("{acl_id} on {subnet}"));
                }
            }
        }
    }
    Ok(done)
}

/// What is wrong with the firewall localemu installed in a site's container, read from
/// `iptables-save` there: the groups' chains (`SG_IN`, `SG_OUT`) must be jumped to from
/// `INPUT` and `OUTPUT`; behind a custom NACL, so must the NACL's (`NACL_IN`, `NACL_OUT`),
/// each with one rule per numbered entry and a last `DROP`. localemu's fail-closed
/// stand-in, which it installs when applying a NACL fails and reports only in its log,
/// accepts loopback and drops the rest: it would fail intended flows, and the run would
/// blame the evaluator. Empty when all is in place.
fn enforcement_problems(rules: &str, site: &Site) -> Vec<String> {
    let rules: Vec<&str> = rules.lines().map(str::trim).filter(|l| l.starts_with("-A ")).collect();
    let in_chain = |chain: &str| -> Vec<&str> {
        let head = format!("-A {chain} ");
        rules.iter().filter_map(|r| r.strip_prefix(head.as_str())).collect()
    };
    let jumped = |from: &str, to: &str| in_chain(from).iter().any(|r| *r == format!("-j {to}"));
    let mut problems = Vec::new();
    for (from, to) in [("INPUT", "SG_IN"), ("OUTPUT", "SG_OUT")] {
        if !jumped(from, to) {
            problems.push(format!("no jump from {from} to the groups' chain {to}"));
        }
    }
    let Some(counts) = site.nacl_rules else { return problems };
    for ((from, to), want) in [("INPUT", "NACL_IN"), ("OUTPUT", "NACL_OUT")].into_iter().zip(counts) {
        if !jumped(from, to) {
            problems.push(format!("no jump from {from} to the NACL's chain {to}"));
            continue;
        }
        let chain = in_chain(to);
        if chain.iter().any(|r| r.starts_with("-i lo ") || r.starts_with("-o lo ")) {
            problems.push(format!("{to} is localemu's fail-closed stand-in (loopback only), not the NACL"));
        } else if chain.len() != want + 1 || chain.last() != Some(&"-j DROP") {
            problems.push(format!(
                "{to} has {} rule(s), not the NACL's {want} entries and a last DROP: {}",
                chain.len(),
                chain.join(" | ")
            ));
        }
    }
    problems
}

/// [`enforcement_problems`] of every placed instance that has any, by index.
async fn enforcement(instances: &[PlacedInstance], sites: &[Site]) -> Result<Vec<(usize, Vec<String>)>, TrafficError> {
    let mut wrong = Vec::new();
    for (n, (instance, site)) in instances.iter().zip(sites).enumerate() {
        let rules =
            docker(&["exec", &instance.container, "iptables-save", "-t", "filter"], "read the firewall").await?;
        let problems = enforcement_problems(&rules, site);
        if !problems.is_empty() {
            wrong.push((n, problems));
        }
    }
    Ok(wrong)
}

/// How often the NACLs are associated again while a container's firewall is incomplete.
const ENFORCEMENT_TRIES: usize = 3;

/// Re-associates the custom NACLs ([`reapply_nacls`]) until every container's firewall
/// is in place ([`enforcement_problems`]), [`ENFORCEMENT_TRIES`] times at most; the
/// re-associations made, or [`TrafficError::Enforcement`] for the first container still
/// wrong.
async fn install_nacls(
    clients: &Clients,
    instances: &[PlacedInstance],
    sites: &[Site],
) -> Result<Vec<String>, TrafficError> {
    let mut reapplied: Vec<String> = Vec::new();
    let mut attempt = 1;
    loop {
        for done in reapply_nacls(clients, sites).await? {
            if !reapplied.contains(&done) {
                reapplied.push(done);
            }
        }
        let wrong = enforcement(instances, sites).await?;
        let Some((n, problems)) = wrong.into_iter().next() else { return Ok(reapplied) };
        if attempt == ENFORCEMENT_TRIES {
            return Err(TrafficError::Enforcement {
                container: instances[n].container.clone(),
                endpoint: instances[n].endpoint.clone(),
                problems: problems.join("; "),
            });
        }
        tracing::warn!(
            "traffic: {}'s firewall is incomplete after the NACLs' association {attempt}: {}; associating them again",
            instances[n].endpoint,
            problems.join("; ")
        );
        attempt += 1;
    }
}

// ---------------------------------------------------------------------------------
// Probes.

/// One probe to send, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    from: usize,
    to: usize,
    class: ProtocolClass,
    port: u16,
    intended: bool,
    expected: bool,
}

fn allowed_in(r: &Reachability, from: &str, to: &str, class: ProtocolClass, port: u16) -> bool {
    r.matrix.cell(from, to).is_some_and(|c| c.allowed.iter().any(|s| s.protocol == class && s.ports.contains(port)))
}

fn intended_in(r: &Reachability, from: &str, to: &str, class: ProtocolClass, port: u16) -> bool {
    r.matrix.cell(from, to).is_some_and(|c| c.intended.iter().any(|s| s.protocol == class && s.ports.contains(port)))
}

/// Which probes to send: for every intended flow between two endpoints inside the VPC,
/// the first and last port of its range, over TCP and UDP as it names them (both for
/// protocol `-1`); then, for every ordered pair of those endpoints, one TCP and one UDP
/// port the design does not intend there. The expected outcome of each is the
/// evaluator's, read from the matrix.
fn plan_probes(plan: &Plan, reach: &Reachability, names: &[String]) -> (Vec<Planned>, Vec<String>) {
    use crate::plan::FlowEnd;
    let index = |e: &FlowEnd| match e {
        FlowEnd::Zone(z) => names.iter().position(|n| n == z),
        _ => None,
    };
    let mut out: Vec<Planned> = Vec::new();
    let mut out_of_scope = Vec::new();
    for f in &plan.intent {
        let flow =
            format!("{} → {} {}{}", f.from, f.to, f.protocol, f.ports.map(|p| format!("/{p}")).unwrap_or_default());
        let (Some(from), Some(to)) = (index(&f.from), index(&f.to)) else {
            out_of_scope.push(format!("{flow}: an end outside the VPC (the internet or an external) is never sent to"));
            continue;
        };
        let classes: Vec<ProtocolClass> = match ProtocolClass::of(f.protocol) {
            Some(c @ (ProtocolClass::Tcp | ProtocolClass::Udp)) => vec![c],
            None => vec![ProtocolClass::Tcp, ProtocolClass::Udp],
            Some(other) => {
                out_of_scope.push(format!("{flow}: {other} is not sent, only TCP and UDP"));
                continue;
            }
        };
        let range = f.ports.unwrap_or(microseg_reach::model::PortRange::ALL);
        let ports: BTreeSet<u16> = [range.from.max(1), range.to].into_iter().collect();
        for class in classes {
            for &port in &ports {
                let p = Planned {
                    from,
                    to,
                    class,
                    port,
                    intended: true,
                    expected: allowed_in(reach, &names[from], &names[to], class, port),
                };
                if !out.iter().any(|q| q.from == p.from && q.to == p.to && q.class == p.class && q.port == p.port) {
                    out.push(p);
                }
            }
        }
    }
    let mut pair = 0usize;
    for from in 0..names.len() {
        for to in 0..names.len() {
            if from == to {
                continue;
            }
            for (class, list) in [(ProtocolClass::Tcp, &CLOSED_TCP[..]), (ProtocolClass::Udp, &CLOSED_UDP[..])] {
                let pick = (0..list.len())
                    .map(|k| list[(pair + k) % list.len()])
                    .find(|&port| !intended_in(reach, &names[from], &names[to], class, port));
                if let Some(port) = pick
                    && !out.iter().any(|q| q.from == from && q.to == to && q.class == class && q.port == port)
                {
                    out.push(Planned {
                        from,
                        to,
                        class,
                        port,
                        intended: false,
                        expected: allowed_in(reach, &names[from], &names[to], class, port),
                    });
                }
            }
            pair += 1;
        }
    }
    (out, out_of_scope)
}

/// Source ports for each probe: the lowest and the highest port of the client's
/// ephemeral range that no listener uses and no other probe took (two connections must
/// not share a source port). Replies must pass to every port of that range for the
/// evaluator to call a flow allowed; the two ends are what is tried.
fn source_ports(probes: &[Planned], sites: &[Site]) -> Vec<[u16; 2]> {
    let listening: BTreeSet<u16> = probes.iter().map(|p| p.port).collect();
    let mut taken: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
    probes
        .iter()
        .map(|p| {
            let r = sites[p.from].ephemeral;
            let used = taken.entry(p.from).or_default();
            let low = (r.from.max(1024)..=r.to).find(|x| !listening.contains(x) && !used.contains(x)).unwrap_or(r.from);
            used.insert(low);
            let high =
                (r.from.max(1024)..=r.to).rev().find(|x| !listening.contains(x) && !used.contains(x)).unwrap_or(r.to);
            used.insert(high);
            [low, high]
        })
        .collect()
}

fn proto(class: ProtocolClass) -> &'static str {
    match class {
        ProtocolClass::Udp => "udp",
        _ => "tcp",
    }
}

/// Starts the listeners each server needs and waits until they listen.
async fn start_listeners(instances: &[PlacedInstance], probes: &[Planned]) -> Result<(), TrafficError> {
    let mut wanted: BTreeMap<usize, BTreeSet<(&'static str, u16)>> = BTreeMap::new();
    for p in probes {
        wanted.entry(p.to).or_default().insert((proto(p.class), p.port));
    }
    for (&to, ports) in &wanted {
        let mut script = String::new();
        for (pr, port) in ports {
            // The answer names the server, so a reply from anything else would not pass.
            let _ = match *pr {
                "udp" => write!(script, "socat UDP-RECVFROM:{port},fork SYSTEM:'echo ok-{port}' & "),
                _ => write!(script, "socat TCP-LISTEN:{port},reuseaddr,fork SYSTEM:'echo ok-{port}' & "),
            };
        }
        script.push_str("wait");
        docker(&["exec", "-d", &instances[to].container, "sh", "-c", &script], "start the listeners").await?;
    }
    // Bounded wait until every port listens (ss from iproute2, inside the container).
    let deadline = Instant::now() + Duration::from_secs(10);
    for (&to, ports) in &wanted {
        loop {
            let out = docker(&["exec", &instances[to].container, "ss", "-Hlntu"], "list the listeners").await?;
            let open: BTreeSet<(&str, u16)> = out
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let pr = f.next()?;
                    let local = f.nth(3)?;
                    let port = local.rsplit(':').next()?.parse().ok()?;
                    Some((if pr == "udp" { "udp" } else { "tcp" }, port))
                })
                .collect();
            if ports.iter().all(|p| open.contains(&(p.0, p.1))) {
                break;
            }
            if Instant::now() > deadline {
                return Err(TrafficError::Docker {
                    what: format!("listeners in {}", instances[to].container),
                    detail: format!("not all listening after 10 s: wanted {ports:?}, listening {open:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// One round of sending: how long a client waits for its answer, and how many
/// connection attempts one client makes at once.
#[derive(Debug, Clone, Copy)]
struct Round {
    timeout: Duration,
    batch: usize,
}

/// The first round sends every attempt, twelve at once per client (all at once
/// overloaded this 2-core machine: an allowed connection now and then missed its 2 s
/// window; a listener forks `sh` for each answer). The later ones send again only the
/// failures that may be the machine's load (see [`send_probes`]), fewer at a time and
/// with longer to answer: about one attempt a run misses its first window even on a quiet
/// machine, and a test suite running beside it makes that likelier.
const ROUNDS: [Round; 3] = [
    Round { timeout: CONNECT_TIMEOUT, batch: 12 },
    Round { timeout: Duration::from_secs(5), batch: 6 },
    Round { timeout: Duration::from_secs(10), batch: 3 },
];

/// Sends the given attempts (probe index, which source port), each client's in batches
/// of `round.batch` in one `docker exec`, all clients at once; returns whether an answer
/// came back, per attempt.
async fn send_attempts(
    instances: &[PlacedInstance],
    probes: &[Planned],
    sports: &[[u16; 2]],
    attempts: &[(usize, usize)],
    round: Round,
) -> Result<BTreeMap<(usize, usize), bool>, TrafficError> {
    let ours: BTreeSet<IpAddr> = instances.iter().map(|i| i.address).collect();
    let t = round.timeout.as_secs();
    let mut by_client: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for &(n, k) in attempts {
        let p = &probes[n];
        let dst = instances[p.to].address;
        // Never anything but a container placed here.
        assert!(ours.contains(&dst), "probe to {dst}, which is not one of this run's containers");
        let s = sports[n][k];
        let target = match p.class {
            ProtocolClass::Udp => format!("UDP:{dst}:{},sourceport={s},reuseaddr", p.port),
            _ => format!("TCP:{dst}:{},connect-timeout={t},sourceport={s},reuseaddr", p.port),
        };
        by_client.entry(p.from).or_default().push(format!(
            "(r=$(echo probe | timeout {} socat -T{t} -t{t} - {target} 2>/dev/null); \
             case \"$r\" in ok-{}*) echo \"{n} {k} pass\";; *) echo \"{n} {k} fail\";; esac) & ",
            t + 2,
            p.port
        ));
    }
    let runs = by_client.iter().map(|(&from, lines)| {
        let container = instances[from].container.clone();
        let script: String = lines.chunks(round.batch).map(|c| format!("{}wait; ", c.concat())).collect();
        let limit = (round.timeout + Duration::from_secs(3)) * lines.len().div_ceil(round.batch) as u32
            + Duration::from_secs(20);
        async move { docker_for(&["exec", &container, "sh", "-c", &script], "send probes", limit).await }
    });
    let mut results = BTreeMap::new();
    for out in futures::future::join_all(runs).await {
        for l in out?.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [n, k, verdict] = f[..]
                && let (Ok(n), Ok(k)) = (n.parse::<usize>(), k.parse::<usize>())
            {
                results.insert((n, k), verdict == "pass");
            }
        }
    }
    Ok(results)
}

/// Sends every probe from both source ports; then, in each later [`ROUNDS`], each
/// attempt that failed where its probe's other attempt passed or where `predicted` (the
/// evaluator's verdict, or a named enforcement divergence's) says it passes. A connection
/// that answered is proof; one that did not may have lost its window to the machine's
/// load, so only a failure is tried again, and only where a pass is what anyone expects:
/// a port that is closed as predicted costs no second round. Returns the outcomes and
/// which probes were tried again.
async fn send_probes(
    instances: &[PlacedInstance],
    probes: &[Planned],
    predicted: &[bool],
    sports: &[[u16; 2]],
) -> Result<(Vec<[bool; 2]>, Vec<bool>), TrafficError> {
    let all: Vec<(usize, usize)> = (0..probes.len()).flat_map(|n| [(n, 0), (n, 1)]).collect();
    let mut passed: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut retried = vec![false; probes.len()];
    for (r, &round) in ROUNDS.iter().enumerate() {
        let attempts = if r == 0 { all.clone() } else { to_send_again(predicted, &passed) };
        if attempts.is_empty() {
            break;
        }
        if r > 0 {
            tracing::info!("traffic: {} attempt(s) failed; sending them again ({round:?})", attempts.len());
            for &(n, _) in &attempts {
                retried[n] = true;
            }
        }
        let got = send_attempts(instances, probes, sports, &attempts, round).await?;
        passed.extend(got.into_iter().filter(|&(_, ok)| ok).map(|(a, _)| a));
    }
    let results = (0..probes.len()).map(|n| [passed.contains(&(n, 0)), passed.contains(&(n, 1))]).collect();
    Ok((results, retried))
}

/// The attempts (probe, source port) to send again: each that has not passed where its
/// probe's other attempt passed or a pass is predicted.
fn to_send_again(predicted: &[bool], passed: &BTreeSet<(usize, usize)>) -> Vec<(usize, usize)> {
    (0..predicted.len())
        .flat_map(|n| [(n, 0), (n, 1)])
        .filter(|&(n, k)| !passed.contains(&(n, k)) && (predicted[n] || passed.contains(&(n, 1 - k))))
        .collect()
}

/// Why the emulator's outcome differs from the evaluator's, when its enforcement
/// explains it. Only an outcome more permissive than the evaluator's is explained.
fn explain(
    p: &Planned,
    passed: bool,
    sites: &[Site],
    net: &microseg_reach::Network,
    reach_from: usize,
    reach_to: usize,
) -> Agreement {
    if passed == p.expected {
        return Agreement::Agrees;
    }
    use microseg_reach::path::Part;
    let steps = microseg_reach::path::trace(net, reach_from, reach_to, p.class, p.port);
    let is_group = |part: Part| matches!(part, Part::ClientGroups | Part::ServerGroups);
    let blockers: Vec<String> = steps
        .iter()
        .filter(|step| !step.passes)
        .map(|step| format!("{}{}", if is_group(step.part) { "[group] " } else { "" }, step.text))
        .collect();
    if passed {
        let failing: Vec<Part> = steps.iter().filter(|s| !s.passes).map(|s| s.part).collect();
        let only_groups = !failing.is_empty() && failing.iter().all(|&part| is_group(part));
        if only_groups {
            // A group's drop is skipped where the container's NACL chain comes first.
            let skipped = |part: Part| {
                if part == Part::ClientGroups { sites[p.from].custom_nacl() } else { sites[p.to].custom_nacl() }
            };
            if failing.iter().all(|&part| skipped(part)) {
                return Agreement::Divergence(EnforcementDivergence::NaclAllowSkipsSecurityGroups);
            }
            if p.class == ProtocolClass::Udp && p.port == 53 {
                return Agreement::Divergence(EnforcementDivergence::Udp53AlwaysAllowed);
            }
        }
        Agreement::Disagrees(format!("passed; the evaluator blocks it at: {}", blockers.join("; ")))
    } else {
        Agreement::Disagrees("blocked; the evaluator lets it through".into())
    }
}

/// Places one instance per endpoint of the evaluator inside the VPC (one after another:
/// localemu resolves group references to members' addresses as each instance joins),
/// re-associates each custom NACL so localemu builds its chains, sends the probes
/// (a failure where a pass is predicted is tried again, twice at most),
/// compares each with the evaluator's matrix, and removes the instances before it
/// returns, whatever happened in between: explicitly on success and on error, by
/// the instance guard's `Drop` when the future is dropped or unwinds. Needs the target to be
/// localemu with instances as containers ([`TrafficError::NoContainer`] otherwise).
pub async fn send(
    plan: &Plan,
    clients: &Clients,
    observed: &Observed,
    bindings: &Bindings,
    reach: &Reachability,
    run_id: &RunId,
) -> Result<TrafficReport, TrafficError> {
    let image_build = preflight().await?;
    // The evaluator's view of the deployment: where each endpoint is, and later why a
    // connection differs from its verdict.
    let d = crate::reach::deployment(plan, observed, bindings);
    let sites = sites(observed, &d.network);
    let names: Vec<String> = sites.iter().map(|s| s.endpoint.clone()).collect();
    let (planned, out_of_scope) = plan_probes(plan, reach, &names);
    let sports = source_ports(&planned, &sites);
    let idx = |name: &str| d.network.endpoint(name).expect("a site is an endpoint of the evaluator");
    // What localemu should answer: the evaluator's verdict, or a pass the NACL bug
    // explains between two subnets. Within one subnet the evaluator crosses no NACL while
    // localemu's chains still filter (docs/EMULATOR.md): a closed port there may die at
    // the NACL or pass by the bug, so no pass is predicted.
    let predicted: Vec<bool> = planned
        .iter()
        .map(|p| {
            let (from, to) = (idx(&names[p.from]), idx(&names[p.to]));
            p.expected
                || (sites[p.from].subnet_id != sites[p.to].subnet_id
                    && !matches!(explain(p, true, &sites, &d.network, from, to), Agreement::Disagrees(_)))
        })
        .collect();

    let mut placed = Placed {
        clients: clients.clone(),
        run_id: run_id.clone(),
        instances: Vec::new(),
        launched: Vec::new(),
        armed: true,
    };
    let started = Instant::now();
    let work = async {
        place(clients, run_id, plan, &sites, &mut placed).await?;
        let reapplied = install_nacls(clients, &placed.instances, &sites).await?;
        let placement = started.elapsed();
        let sending_started = Instant::now();
        start_listeners(&placed.instances, &planned).await?;
        let (results, retried) = send_probes(&placed.instances, &planned, &predicted, &sports).await?;
        Ok::<_, TrafficError>((reapplied, placement, sending_started.elapsed(), results, retried))
    }
    .await;
    let instances = placed.instances.clone();
    let cleanup_started = Instant::now();
    let leftovers = placed.remove().await;
    let cleanup = cleanup_started.elapsed();
    let (nacls_reapplied, placement, sending, results, retried) = work?;

    let mut probes: Vec<Probe> = planned
        .iter()
        .zip(&sports)
        .zip(&results)
        .zip(&retried)
        .map(|(((p, sp), r), &retried)| {
            let passed = r.iter().all(|&x| x);
            Probe {
                from: names[p.from].clone(),
                to: names[p.to].clone(),
                protocol: proto(p.class).into(),
                port: p.port,
                intended: p.intended,
                expected: p.expected,
                attempts: vec![(sp[0], r[0]), (sp[1], r[1])],
                passed,
                retried,
                agreement: explain(p, passed, &sites, &d.network, idx(&names[p.from]), idx(&names[p.to])),
            }
        })
        .collect();
    probes.sort_by_key(|p| !p.intended);
    let divergences: Vec<EnforcementDivergence> = probes
        .iter()
        .filter_map(|p| match p.agreement {
            Agreement::Divergence(d) => Some(d),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(TrafficReport {
        image: IMAGE.into(),
        image_build_ms: image_build.map(|d| d.as_millis() as u64),
        instances,
        nacls_reapplied,
        probes,
        out_of_scope,
        divergences,
        placement_ms: placement.as_millis() as u64,
        sending_ms: sending.as_millis() as u64,
        cleanup_ms: cleanup.as_millis() as u64,
        leftovers,
    })
}

/// The `traffic` check: passes when every probe agrees with the evaluator; names the
/// enforcement divergences that explain the others; fails on any other disagreement and
/// on a container left behind.
pub fn check(t: &TrafficReport) -> CheckResult {
    let mut findings: Vec<Finding> = t
        .probes
        .iter()
        .filter_map(|p| match &p.agreement {
            Agreement::Disagrees(why) => Some(Finding {
                id: "MS-TRAFFIC-DISAGREES".into(),
                resource: format!("{} → {} {}/{}", p.from, p.to, p.protocol, p.port),
                expected: format!("{} (the evaluator)", if p.expected { "passes" } else { "blocked" }),
                found: why.clone(),
            }),
            _ => None,
        })
        .collect();
    findings.extend(t.leftovers.iter().map(|c| Finding {
        id: "MS-TRAFFIC-LEFTOVER".into(),
        resource: format!("container {c}"),
        expected: "removed after the traffic".into(),
        found: "still present".into(),
    }));
    let named = t.probes.iter().filter(|p| matches!(p.agreement, Agreement::Divergence(_))).count();
    let note = format!(
        "{} connection(s) between {} instance containers: {} agree with the evaluator, {} differ by a named \
         enforcement divergence, {} differ unexplained; {} intended flow(s) out of scope",
        t.probes.len(),
        t.instances.len(),
        t.agreements(),
        named,
        findings.len() - t.leftovers.len(),
        t.out_of_scope.len()
    );
    let status = if !findings.is_empty() {
        Status::Fail
    } else if named > 0 {
        Status::Divergence
    } else {
        Status::Pass
    };
    CheckResult {
        id: "traffic".into(),
        title: "real TCP/UDP connections between instance containers match the evaluator".into(),
        status,
        findings,
        divergences: t.divergences.iter().map(|d| d.id().to_string()).collect(),
        note,
    }
}

/// The traffic section of a run's text report: the verdicts side by side.
pub fn text(t: &TrafficReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Traffic ({} instances of {}, placed in {:.1} s; sent in {:.1} s; removed in {:.1} s{}):",
        t.instances.len(),
        t.image,
        t.placement_ms as f64 / 1000.0,
        t.sending_ms as f64 / 1000.0,
        t.cleanup_ms as f64 / 1000.0,
        t.image_build_ms.map(|m| format!("; image built in {:.0} s", m as f64 / 1000.0)).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  {:<14} {:<14} {:<10} {:<8} {:<9} {:<9} RESULT",
        "FROM", "TO", "SERVICE", "INTENT", "EVALUATOR", "TRAFFIC"
    );
    for p in &t.probes {
        let result = match &p.agreement {
            Agreement::Agrees => "agree".to_string(),
            Agreement::Divergence(d) => format!("divergence: {d}"),
            Agreement::Disagrees(why) => format!("DISAGREE: {why}"),
        };
        let word = |b: bool| if b { "passes" } else { "blocked" };
        let _ = writeln!(
            out,
            "  {:<14} {:<14} {:<10} {:<8} {:<9} {:<9} {result}",
            p.from,
            p.to,
            format!("{}/{}", p.protocol, p.port),
            if p.intended { "intended" } else { "closed" },
            word(p.expected),
            word(p.passed)
        );
    }
    for o in &t.out_of_scope {
        let _ = writeln!(out, "  not sent: {o}");
    }
    for d in &t.divergences {
        let _ = writeln!(out, "  {d}: {}", d.description());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enforcement_divergence_has_a_distinct_id_and_a_line_in_the_docs() {
        let ids: BTreeSet<&str> = EnforcementDivergence::ALL.iter().map(|d| d.id()).collect();
        assert_eq!(ids.len(), EnforcementDivergence::ALL.len());
        let doc = include_str!("../../docs/EMULATOR.md");
        for d in EnforcementDivergence::ALL {
            assert!(doc.contains(&format!("`{}`", d.id())), "docs/EMULATOR.md does not name {}", d.id());
        }
    }

    use microseg_reach::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
    use microseg_reach::{Endpoint, Group, GroupPeer, GroupRule, Nacl, Network};

    fn planned(class: ProtocolClass, port: u16, expected: bool) -> Planned {
        Planned { from: 0, to: 1, class, port, intended: false, expected }
    }

    fn site(custom_nacl: bool) -> Site {
        Site {
            endpoint: String::new(),
            subnet_id: String::new(),
            groups: vec![],
            evaluator_address: "10.0.1.10".parse().unwrap(),
            nacl_rules: custom_nacl.then_some([2, 1]),
            ephemeral: PortRange { from: 1024, to: 65535 },
        }
    }

    /// A container's filter table as `iptables-save` prints it once localemu has put its
    /// groups' chains and, when `nacl` is given, a NACL's chains in place.
    fn saved(nacl: Option<(&[&str], &[&str])>) -> String {
        let mut s = String::from(
            "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT \
             [0:0]\n:SG_IN - [0:0]\n:SG_OUT - [0:0]\n",
        );
        if let Some((input, output)) = nacl {
            s.push_str(":NACL_IN - [0:0]\n:NACL_OUT - [0:0]\n-A INPUT -j NACL_IN\n-A OUTPUT -j NACL_OUT\n");
            for r in input {
                s.push_str(&format!("-A NACL_IN {r}\n"));
            }
            for r in output {
                s.push_str(&format!("-A NACL_OUT {r}\n"));
            }
        }
        s.push_str(
            "-A INPUT -j SG_IN\n-A OUTPUT -j SG_OUT\n-A SG_IN -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A \
             SG_IN -s 10.30.1.5/32 -p tcp -m tcp --dport 8080 -j ACCEPT\n-A SG_IN -j DROP\nCOMMIT\n",
        );
        s
    }

    const NACL_IN: [&str; 3] = [
        "-s 10.30.0.0/16 -p tcp -m tcp --dport 1024:65535 -j ACCEPT",
        "-s 0.0.0.0/0 -p tcp -m tcp --dport 22 -j DROP",
        "-j DROP",
    ];
    const NACL_OUT: [&str; 2] = ["-d 10.30.0.0/16 -p tcp -m tcp --dport 1024:65535 -j ACCEPT", "-j DROP"];

    #[test]
    fn a_firewall_with_the_groups_and_every_nacl_entry_in_place_is_complete() {
        assert_eq!(enforcement_problems(&saved(Some((&NACL_IN, &NACL_OUT))), &site(true)), Vec::<String>::new());
        // The VPC's default NACL: localemu installs no chain for it, and none is needed.
        assert_eq!(enforcement_problems(&saved(None), &site(false)), Vec::<String>::new());
    }

    #[test]
    fn a_custom_nacl_not_yet_applied_is_found_missing() {
        // As RunInstances leaves a container (nacl-not-applied-at-launch).
        let problems = enforcement_problems(&saved(None), &site(true));
        assert_eq!(
            problems,
            ["no jump from INPUT to the NACL's chain NACL_IN", "no jump from OUTPUT to the NACL's chain NACL_OUT"]
        );
    }

    #[test]
    fn localemus_fail_closed_stand_in_is_not_taken_for_the_nacl() {
        let stand_in = saved(Some((&["-i lo -j ACCEPT", "-j DROP"], &["-o lo -j ACCEPT", "-j DROP"])));
        let problems = enforcement_problems(&stand_in, &site(true));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("fail-closed stand-in")), "{problems:?}");
    }

    #[test]
    fn a_nacl_chain_with_an_entry_missing_or_no_last_drop_is_named() {
        let short = enforcement_problems(&saved(Some((&NACL_IN[1..], &NACL_OUT))), &site(true));
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(short[0].starts_with("NACL_IN has 2 rule(s), not the NACL's 2 entries and a last DROP"), "{short:?}");
        let no_drop = enforcement_problems(&saved(Some((&NACL_IN, &NACL_OUT[..1]))), &site(true));
        assert_eq!(no_drop.len(), 1, "{no_drop:?}");
        assert!(no_drop[0].starts_with("NACL_OUT has 1 rule(s)"), "{no_drop:?}");
    }

    #[test]
    fn only_a_silence_where_a_pass_is_predicted_or_the_other_port_passed_is_sent_again() {
        // Probe 0: predicted to pass, one port answered. Probe 1: predicted to pass,
        // neither answered. Probe 2: predicted closed, neither answered. Probe 3:
        // predicted closed, one port answered (the other's silence may be the load).
        // Probe 4: predicted to pass, both answered.
        let predicted = [true, true, false, false, true];
        let passed: BTreeSet<(usize, usize)> = [(0, 0), (3, 1), (4, 0), (4, 1)].into();
        assert_eq!(to_send_again(&predicted, &passed), [(0, 1), (1, 0), (1, 1), (3, 0)]);
        assert_eq!(to_send_again(&[false, false], &BTreeSet::new()), [], "closed as predicted: nothing again");
    }

    #[test]
    fn a_container_without_its_groups_chains_is_named() {
        let bare = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(
            enforcement_problems(bare, &site(false)),
            ["no jump from INPUT to the groups' chain SG_IN", "no jump from OUTPUT to the groups' chain SG_OUT"]
        );
    }

    /// Two endpoints in two subnets, each NACL allowing everything both ways; the
    /// client's group allows all egress, the server's group admits nothing.
    fn two_subnets() -> Network {
        let all = |direction| NaclEntry {
            rule_number: 100,
            direction,
            protocol: Protocol::All,
            ports: None,
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: RuleAction::Allow,
        };
        let nacl = |n: &str| Nacl::new(n, [all(Direction::Ingress), all(Direction::Egress)]);
        let egress = SgRule {
            direction: Direction::Egress,
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
        };
        let client_group = Group {
            name: "c".into(),
            rules: vec![GroupRule { peer: GroupPeer::Cidr("0.0.0.0/0".parse().unwrap()), rule: egress }],
        };
        let server_group = Group { name: "s".into(), rules: vec![] };
        let endpoint = |name: &str, addr: &str, i: usize| Endpoint {
            name: name.into(),
            addr: addr.parse().unwrap(),
            internet: false,
            subnet: Some(i),
            nacl: Some(i),
            groups: [i].into(),
            internet_route: None,
            problems: vec![],
            ephemeral: None,
        };
        Network {
            nacls: vec![nacl("a"), nacl("b")],
            groups: vec![client_group, server_group],
            endpoints: vec![endpoint("client", "10.0.1.10", 0), endpoint("server", "10.0.2.10", 1)],
            ephemeral: PortRange { from: 1024, to: 65535 },
        }
    }

    #[test]
    fn a_connection_only_the_servers_group_blocks_is_the_nacl_bug_where_the_server_has_a_custom_nacl() {
        let net = two_subnets();
        let p = planned(ProtocolClass::Tcp, 5432, false);
        // The server's subnet has a custom NACL: localemu's NACL chain accepts first.
        assert_eq!(
            explain(&p, true, &[site(true), site(true)], &net, 0, 1),
            Agreement::Divergence(EnforcementDivergence::NaclAllowSkipsSecurityGroups)
        );
        // Only the client's subnet has one: the server's group chain decides, and it
        // let the connection through: nothing named explains that.
        assert!(matches!(explain(&p, true, &[site(true), site(false)], &net, 0, 1), Agreement::Disagrees(_)));
        // Agreement either way round.
        assert_eq!(explain(&p, false, &[site(true), site(true)], &net, 0, 1), Agreement::Agrees);
        assert_eq!(
            explain(&planned(ProtocolClass::Tcp, 5432, true), true, &[site(false), site(false)], &net, 0, 1),
            Agreement::Agrees
        );
    }

    #[test]
    fn udp_53_through_a_group_that_admits_nothing_is_its_own_divergence() {
        let net = two_subnets();
        assert_eq!(
            explain(&planned(ProtocolClass::Udp, 53, false), true, &[site(false), site(false)], &net, 0, 1),
            Agreement::Divergence(EnforcementDivergence::Udp53AlwaysAllowed)
        );
        assert!(matches!(
            explain(&planned(ProtocolClass::Udp, 54, false), true, &[site(false), site(false)], &net, 0, 1),
            Agreement::Disagrees(_)
        ));
    }

    #[test]
    fn a_blocked_connection_the_evaluator_lets_through_is_never_explained_away() {
        let net = two_subnets();
        let got = explain(&planned(ProtocolClass::Tcp, 80, true), false, &[site(true), site(true)], &net, 0, 1);
        assert_eq!(got, Agreement::Disagrees("blocked; the evaluator lets it through".into()));
    }

    #[test]
    fn a_blocking_nacl_is_not_put_down_to_the_group_bug() {
        // The server's NACL denies tcp/5432 before its allow: the evaluator blocks at the
        // NACL, so a connection that passed is unexplained even with custom NACLs.
        let mut net = two_subnets();
        let deny = NaclEntry {
            rule_number: 50,
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange::single(5432)),
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: RuleAction::Deny,
        };
        let entries: Vec<NaclEntry> = [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(|d| net.nacls[1].entries(d).to_vec())
            .chain([deny])
            .collect();
        net.nacls[1] = Nacl::new("b", entries);
        assert!(matches!(
            explain(&planned(ProtocolClass::Tcp, 5432, false), true, &[site(true), site(true)], &net, 0, 1),
            Agreement::Disagrees(_)
        ));
    }

    #[test]
    fn source_ports_are_the_ends_of_the_clients_range_never_a_listening_port_nor_used_twice() {
        let p = |from, port| Planned {
            from,
            to: 1 - from,
            class: ProtocolClass::Tcp,
            port,
            intended: true,
            expected: true,
        };
        let probes = [p(0, 1024), p(0, 8080), p(1, 65535)];
        let mut narrow = site(false);
        narrow.ephemeral = PortRange { from: 32768, to: 60999 };
        let ports = source_ports(&probes, &[site(false), narrow]);
        // 1024 and 65535 listen (destination ports of probes): each end moves in by one,
        // and the second probe of the same client takes the next ports in.
        assert_eq!(ports, vec![[1025, 65534], [1026, 65533], [32768, 60999]]);
    }

    fn plan_of(name: &str) -> Plan {
        let (spec, source) = crate::spec::load(name).expect("a shipped scenario");
        Plan::from_spec(&spec, &source).expect("it plans")
    }

    #[test]
    fn the_hardened_recipe_gets_its_ten_zone_flows_and_two_closed_ports_per_pair() {
        // recipe-hardened.toml: 15 intents; 5 involve the internet (internet → dmz 80 and
        // 443, web, app and database → internet 443); the other 10 are single-port flows
        // between zones, all passing in the hardened design (docs/GUIDE.md).
        let plan = plan_of("recipe-hardened");
        let (observed, bindings) = crate::reach::designed(&plan);
        let reach = crate::reach::analyse(&plan, &observed, &bindings);
        let names: Vec<String> = ["dmz", "web", "app", "database", "management", "monitoring"].map(String::from).into();
        let (probes, out_of_scope) = plan_probes(&plan, &reach, &names);
        assert_eq!(out_of_scope.len(), 5, "{out_of_scope:?}");
        let intended: Vec<&Planned> = probes.iter().filter(|p| p.intended).collect();
        assert_eq!(intended.len(), 10);
        assert!(intended.iter().all(|p| p.expected), "the hardened design lets every intended flow through");
        let closed: Vec<&Planned> = probes.iter().filter(|p| !p.intended).collect();
        assert_eq!(closed.len(), 6 * 5 * 2, "one TCP and one UDP port per ordered pair of the six zones");
        for p in &closed {
            let cell = reach.matrix.cell(&names[p.from], &names[p.to]).unwrap();
            assert!(!cell.intended.iter().any(|s| s.protocol == p.class && s.ports.contains(p.port)));
        }
    }

    #[test]
    fn the_image_is_labelled_with_the_hash_of_the_script_it_carries() {
        // The script must not change behind the label: the hash is of the text compiled in.
        let on_disk = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../emulators/localemu/build-instance-image.sh"
        ))
        .expect("the script");
        assert_eq!(hex::encode(Sha256::digest(on_disk.as_bytes())), recipe_sha256());
        assert!(BUILD_SCRIPT.contains(IMAGE), "the script tags the image microseg asks localemu for");
    }
}
