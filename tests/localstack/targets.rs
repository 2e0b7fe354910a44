//! Each target starts, serves an EC2 call, and leaves nothing running when stopped.

use std::time::Duration;

use microseg_harness::capabilities::Divergence;
use microseg_harness::target::{Guard, LocalStackHost, Target, TargetError, TargetKind, TargetOptions};

use crate::support::{listening_addresses, process_alive, shared_endpoint};

async fn describe_vpcs(t: &Target) -> usize {
    let out = t.clients().ec2.describe_vpcs().send().await.expect("DescribeVpcs through the target");
    out.vpcs().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_target_serves_and_leaves_no_process() {
    let _t = crate::support::timer();
    // LocalStack places CloudWatch's metrics database under `$TMPDIR/localstack/state`
    // before FILESYSTEM_ROOT applies: every host once shared that SQLite file.
    let shared_db_dir = std::env::temp_dir().join("localstack/state/cloudwatch");
    let shared_before = shared_db_dir.exists();
    let t = Target::start(&TargetOptions::new(TargetKind::LocalStackHost)).await.expect("host target");
    assert!(t.description.contains("LocalStack 4.14.0"), "{}", t.description);
    describe_vpcs(&t).await;
    let (pid, volume_dir) = match t.guard() {
        Guard::Host(h) => (h.pid().expect("running"), h.volume_dir().to_path_buf()),
        other => panic!("expected a host guard, got {other:?}"),
    };
    assert!(process_alive(pid));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let tmpdir = environ.split(|&b| b == 0).find_map(|kv| kv.strip_prefix(b"TMPDIR=")).map(|v| v.to_vec());
    assert_eq!(tmpdir, Some(volume_dir.as_os_str().as_encoded_bytes().to_vec()), "its temp dir is its own");
    assert!(shared_before || !shared_db_dir.exists(), "a host wrote {}", shared_db_dir.display());
    // Loopback only, on every socket any of its processes listens on: an emulator
    // answers any AWS call without authentication.
    let listening = listening_addresses(pid);
    let port: u16 = t.endpoint.as_deref().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    assert!(listening.iter().any(|a| a.port() == port), "the gateway's port {port} is not among {listening:?}");
    let exposed: Vec<_> = listening.iter().filter(|a| !a.ip().is_loopback()).collect();
    assert!(exposed.is_empty(), "LocalStack listens beyond loopback: {exposed:?} (all: {listening:?})");
    t.stop().await;
    assert!(!process_alive(pid), "LocalStack pid {pid} survived stop");
}

#[test]
fn a_listen_address_that_is_not_an_ip_is_refused_before_anything_starts() {
    let _t = crate::support::timer();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", "localstack-host"])
        .env("MICROSEG_LISTEN_ADDRESS", "localhost:4566")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(microseg_cli::exit::TARGET_UNAVAILABLE), "{stderr}");
    assert!(stderr.contains("MICROSEG_LISTEN_ADDRESS=\"localhost:4566\" is not an IP address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_target_is_stopped_by_drop_too() {
    let _t = crate::support::timer();
    let host = LocalStackHost::start(Duration::from_secs(300), false).await.expect("host");
    let pid = host.pid().unwrap();
    drop(host);
    assert!(!process_alive(pid), "LocalStack pid {pid} survived drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_targets_run_at_once_on_different_ports() {
    let _t = crate::support::timer();
    let opts = TargetOptions::new(TargetKind::LocalStackHost);
    let (a, b) = tokio::join!(Target::start(&opts), Target::start(&opts));
    let (a, b) = (a.expect("first host"), b.expect("second host"));
    assert_ne!(a.endpoint, b.endpoint);
    // State is separate: a VPC made on one is not on the other.
    let before_b = describe_vpcs(&b).await;
    a.clients().ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.unwrap();
    assert_eq!(describe_vpcs(&b).await, before_b);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_target_serves_an_emulator_already_running() {
    let _t = crate::support::timer();
    let t = Target::start(&TargetOptions::new(TargetKind::Endpoint(shared_endpoint().to_string()))).await.unwrap();
    assert!(t.description.starts_with("LocalStack"), "{}", t.description);
    describe_vpcs(&t).await;
    t.stop().await;
}

/// See docs/EMULATOR.md, "Divergences from AWS": a new custom NACL has no entries, and rule
/// numbers above 32766 are accepted. The probe must find both, by behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_finds_the_nacl_divergences_by_behaviour() {
    let _t = crate::support::timer();
    // A probe now, not an earlier verdict for this emulator instance.
    let mut opts = TargetOptions::new(TargetKind::Endpoint(shared_endpoint().to_string()));
    opts.reuse_probe = false;
    let t = Target::start(&opts).await.unwrap();
    assert!(!t.probe_cached);
    assert!(t.capabilities.has(Divergence::NaclWithoutDefaultDeny));
    assert!(t.capabilities.has(Divergence::NaclRuleNumberUnbounded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_target_serves_and_is_removed() {
    let _t = crate::support::timer();
    let image = microseg_harness::target::container::configured_image();
    let ready =
        microseg_harness::target::docker_status().is_ok() && microseg_harness::target::container::image_present(&image);
    if !ready {
        // `.ci/run` builds the image (localstack/build-image.sh) wherever Docker answers.
        let why =
            format!("no Docker engine answers, or image {image} is missing (localstack/build-image.sh builds it)");
        crate::skip::skip("container_target_serves_and_is_removed", &why);
        return;
    }
    let t = Target::start(&TargetOptions::new(TargetKind::LocalStackContainer)).await.expect("container target");
    let id = match t.guard() {
        Guard::Container(c) => c.id().unwrap().to_string(),
        other => panic!("expected a container guard, got {other:?}"),
    };
    describe_vpcs(&t).await;
    // Published on loopback alone (Docker's default is every interface, v4 and v6).
    let port = std::process::Command::new("docker").args(["port", &id]).output().unwrap();
    let published = String::from_utf8_lossy(&port.stdout).to_string();
    let addresses: Vec<&str> = published.lines().filter_map(|l| l.split(" -> ").nth(1)).collect();
    assert!(!addresses.is_empty(), "docker port {id} lists nothing: {}", String::from_utf8_lossy(&port.stderr));
    for a in &addresses {
        let address: std::net::SocketAddr = a.parse().unwrap_or_else(|e| panic!("{a}: {e}"));
        assert!(address.ip().is_loopback(), "the container's port is published on {address}: {published}");
    }
    t.stop().await;
    let ps = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty(), "container {id} survived stop");
}

/// The real-account guard, to the API boundary: the emulator stands in for AWS, and its
/// STS says the account is 000000000000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_target_refuses_an_account_not_in_the_allowlist() {
    let _t = crate::support::timer();
    let mut opts = TargetOptions::new(TargetKind::Aws);
    opts.aws_endpoint_override = Some(shared_endpoint().to_string());
    opts.region = Some("us-east-1".into());
    opts.allow_regions = vec!["us-east-1".into()];
    opts.allow_accounts = vec!["111111111111".into()];
    match Target::start(&opts).await {
        Err(TargetError::AccountNotAllowed { actual, allowed }) => {
            assert_eq!(actual, "000000000000");
            assert_eq!(allowed, vec!["111111111111".to_string()]);
        }
        other => panic!("expected AccountNotAllowed, got {other:?}"),
    }
    opts.allow_accounts = vec!["000000000000".into()];
    let t = Target::start(&opts).await.expect("allowed account");
    assert_eq!(t.account_id.as_deref(), Some("000000000000"));
    assert!(t.capabilities.divergences.is_empty(), "aws is the reference");
}
