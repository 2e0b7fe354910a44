//! Faults between the SDK and LocalStack: a proxy that, at a set rate, answers in the
//! emulator's place with throttling (EC2's `RequestLimitExceeded` with HTTP 503; a bare
//! 503 for the other services), an internal error (500), or a dropped connection. A full
//! run through it must still pass, its retries bounded, and leave nothing behind
//! (checked against LocalStack directly, not through the proxy).
//!
//! These tests have an emulator of their own ([`Group::Faults`]). The per-step failure
//! matrix is sampled by default: the first, a middle and the last step of each build
//! wave, plus a few steps drawn with a printed seed (`MICROSEG_TEST_SEED` sets it).
//! `MICROSEG_EXHAUSTIVE=1` runs every step instead (the nightly workflow does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use microseg_cli::exit;
use microseg_harness::capabilities;
use microseg_harness::inventory::{self, Scope};
use microseg_harness::ledger::ResourceKind;
use microseg_harness::run_id::RunId;

use crate::support::{Group, endpoint, exhaustive, on, seed, sweep_abandoned, timer};

/// What the proxy did instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Throttle,
    InternalError,
    Reset,
    /// A resource created a moment ago answered as unknown (eventual consistency).
    YoungNotFound,
}

/// What the proxy does besides forwarding.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Percent of requests answered with a transient fault.
    percent: u64,
    /// Seed of the fault sequence.
    seed: u64,
    /// Never answer the request after this many were forwarded (a crash point).
    stall_after: Option<u64>,
    /// Never answer a call of this operation (a crash point named by what it does).
    stall_on: Option<&'static str>,
    /// Answer the n-th call (from 1) of this operation with a 400 that no retry clears.
    fail_op: Option<(String, u64)>,
    /// Answer the k-th build step ([`is_step`]: create, put, authorize, revoke, …) with a
    /// 400 that no retry clears.
    fail_mutation: Option<u64>,
    /// Percent of EC2 and IAM creates whose new id then answers "not found" (the code
    /// AWS gives for that kind of id) to the next [`YOUNG_ANSWERS`] mutating calls that
    /// name it, as AWS may right after a create.
    young_not_found: u64,
}

/// How many calls naming a young id are answered "not found".
const YOUNG_ANSWERS: u8 = 2;

/// The element of a create's response that holds the new id, and the error code AWS
/// answers for an unknown id of that kind.
fn young_id_of(op: &str) -> Option<(&'static str, &'static str)> {
    Some(match op {
        "CreateVpc" => ("vpcId", "InvalidVpcID.NotFound"),
        "CreateSubnet" => ("subnetId", "InvalidSubnetID.NotFound"),
        "CreateNetworkAcl" => ("networkAclId", "InvalidNetworkAclID.NotFound"),
        "CreateSecurityGroup" => ("groupId", "InvalidGroup.NotFound"),
        "CreateRouteTable" => ("routeTableId", "InvalidRouteTableID.NotFound"),
        "CreateInternetGateway" => ("internetGatewayId", "InvalidInternetGatewayID.NotFound"),
        "AllocateAddress" => ("allocationId", "InvalidAllocationID.NotFound"),
        "CreateNatGateway" => ("natGatewayId", "NatGatewayNotFound"),
        "CreateRole" => ("RoleName", "NoSuchEntity"),
        _ => return None,
    })
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// A young id: its error code, the API version of its service, and answers left.
type Young = Arc<Mutex<BTreeMap<String, (&'static str, String, u8)>>>;

fn api_version(body: &str) -> Option<String> {
    body.split('&').find_map(|kv| kv.strip_prefix("Version=")).map(str::to_string)
}

fn not_found_response(version: &str, code: &str, id: &str) -> Response<Full<Bytes>> {
    // EC2's error document, or IAM's (the query protocols' two shapes).
    let (status, xml) = if version == "2010-05-08" {
        (
            StatusCode::NOT_FOUND,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>The role with name {id} cannot be found.</Message></Error><RequestId>microseg-fault</RequestId></ErrorResponse>"
            ),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>The ID '{id}' does not exist</Message></Error></Errors><RequestID>microseg-fault</RequestID></Response>"
            ),
        )
    };
    Response::builder().status(status).header("content-type", "text/xml").body(Full::new(Bytes::from(xml))).unwrap()
}

/// The proxy, serving on a loopback port until dropped.
struct FaultProxy {
    addr: SocketAddr,
    injected: Arc<Mutex<BTreeMap<Fault, usize>>>,
    forwarded: Arc<AtomicU64>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    /// Calls seen, per operation, faults and stalls included.
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Every build step ([`is_step`]) in the order it arrived, faults included.
    steps: Arc<Mutex<Vec<String>>>,
    /// The operations answered with an injected refusal, in order.
    refused: Arc<Mutex<Vec<String>>>,
    /// The operation of the request the proxy holds, once it holds one.
    stalled_op: Arc<Mutex<Option<String>>>,
    /// The SDK's attempts, per invocation (`amz-sdk-invocation-id`).
    attempts: Attempts,
    task: tokio::task::JoinHandle<()>,
}

/// One attempt of an SDK call: its number and the maximum the client announced
/// (`amz-sdk-request: attempt=N; max=M`), and when it arrived.
type Attempt = (u32, u32, std::time::Instant);

/// The SDK's attempts, per invocation id.
type Attempts = Arc<Mutex<BTreeMap<String, Vec<Attempt>>>>;

/// `attempt=N; max=M` of the SDK's `amz-sdk-request` header.
fn attempt_header(parts: &hyper::http::request::Parts) -> Option<(String, u32, u32)> {
    let id = parts.headers.get("amz-sdk-invocation-id")?.to_str().ok()?.to_string();
    let value = parts.headers.get("amz-sdk-request")?.to_str().ok()?;
    let field = |name: &str| value.split(';').find_map(|kv| kv.trim().strip_prefix(name)?.parse().ok());
    Some((id, field("attempt=")?, field("max=")?))
}

/// The operation a request calls: `Action=` of the query protocols (EC2, IAM), the
/// target header of JSON ones (Logs), or the path's last segment (CloudWatch's CBOR).
fn operation(parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(a) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return a.to_string();
    }
    if let Some(t) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    parts.uri.path().rsplit('/').next().unwrap_or_default().to_string()
}

fn is_mutation(op: &str) -> bool {
    ["Create", "Authorize", "Replace", "Associate", "Attach", "Put", "Tag"].iter().any(|p| op.starts_with(p))
}

/// A call that changes the account and can fail a build: the mutations, and the build's
/// address allocations and revokes of default egress. (Young-id answers keep to
/// [`is_mutation`].)
fn is_step(op: &str) -> bool {
    is_mutation(op) || op.starts_with("Allocate") || op.starts_with("Revoke")
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift64*, seeded: the same seed injects the same faults in the same order.
fn next(state: &AtomicU64) -> u64 {
    let mut x = state.load(Ordering::Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A 400 that no retry clears, naming the call it refused.
fn refusal(op: &str) -> Response<Full<Bytes>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>microseg injected a failure into {op}</Message></Error></Errors><RequestID>microseg-fault</RequestID></Response>"
    );
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

const EC2_THROTTLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>microseg-fault</RequestID></Response>";

impl FaultProxy {
    async fn start(upstream: &str, plan: Plan) -> FaultProxy {
        let Plan { percent, seed, stall_after, stall_on, fail_op, young_not_found, fail_mutation } = plan;
        let calls: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let injected: Arc<Mutex<BTreeMap<Fault, usize>>> = Arc::default();
        let forwarded = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(AtomicU64::new(seed.max(1)));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_string();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mutations = Arc::new(AtomicU64::new(0));
        let young: Young = Arc::default();
        let steps: Arc<Mutex<Vec<String>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let stalled_op: Arc<Mutex<Option<String>>> = Arc::default();
        let attempts: Attempts = Arc::default();
        let (inj, fwd, stl, muts, seen) =
            (injected.clone(), forwarded.clone(), stalled.clone(), mutations.clone(), calls.clone());
        let log = (steps.clone(), refused.clone(), stalled_op.clone(), attempts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (client, upstream, inj, fwd, rng) =
                    (client.clone(), upstream.clone(), inj.clone(), fwd.clone(), rng.clone());
                let (stl, muts, young, seen, fail_op) =
                    (stl.clone(), muts.clone(), young.clone(), seen.clone(), fail_op.clone());
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, inj, fwd, rng) =
                            (client.clone(), upstream.clone(), inj.clone(), fwd.clone(), rng.clone());
                        let (stl, muts, young, seen, fail_op) =
                            (stl.clone(), muts.clone(), young.clone(), seen.clone(), fail_op.clone());
                        let (steps, refused, stalled_op, attempts) = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let op = operation(&parts, &body);
                            if let Some((id, attempt, max)) = attempt_header(&parts) {
                                let arrived = std::time::Instant::now();
                                attempts.lock().unwrap().entry(id).or_default().push((attempt, max, arrived));
                            }
                            if is_step(&op) {
                                steps.lock().unwrap().push(op.clone());
                            }
                            let nth = {
                                let mut seen = seen.lock().unwrap();
                                let n = seen.entry(op.clone()).or_default();
                                *n += 1;
                                *n
                            };
                            if stall_after.is_some_and(|n| fwd.load(Ordering::Relaxed) >= n)
                                || stall_on.is_some_and(|o| o == op)
                            {
                                *stalled_op.lock().unwrap() = Some(op.clone());
                                stl.store(true, Ordering::Relaxed);
                                std::future::pending::<()>().await;
                            }
                            if (is_step(&op) && Some(muts.fetch_add(1, Ordering::Relaxed) + 1) == fail_mutation)
                                || fail_op.as_ref().is_some_and(|(o, n)| *o == op && *n == nth)
                            {
                                refused.lock().unwrap().push(op.clone());
                                return Ok(refusal(&op));
                            }
                            let text = String::from_utf8_lossy(&body).to_string();
                            let version = api_version(&text).unwrap_or_default();
                            if is_mutation(&op) {
                                let mut young = young.lock().unwrap();
                                let hit = young.iter_mut().find(|(id, (_, v, left))| {
                                    *left > 0 && *v == version && text.contains(id.as_str())
                                });
                                if let Some((id, (code, _, left))) = hit {
                                    *left -= 1;
                                    *inj.lock().unwrap().entry(Fault::YoungNotFound).or_default() += 1;
                                    return Ok(not_found_response(&version, code, id));
                                }
                            }
                            let roll = next(&rng);
                            if roll % 100 < percent {
                                let fault =
                                    [Fault::Throttle, Fault::InternalError, Fault::Reset][((roll / 100) % 3) as usize];
                                *inj.lock().unwrap().entry(fault).or_default() += 1;
                                let is_ec2 = body.windows(18).any(|w| w == b"Version=2016-11-15");
                                return match fault {
                                    // An error from the service makes hyper close the
                                    // connection without an answer: a reset to the SDK.
                                    Fault::Reset => Err("injected connection reset".to_string()),
                                    Fault::Throttle if is_ec2 => Ok(Response::builder()
                                        .status(StatusCode::SERVICE_UNAVAILABLE)
                                        .header("content-type", "text/xml")
                                        .body(Full::new(Bytes::from_static(EC2_THROTTLE.as_bytes())))
                                        .unwrap()),
                                    Fault::Throttle => Ok(Response::builder()
                                        .status(StatusCode::SERVICE_UNAVAILABLE)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap()),
                                    Fault::InternalError => Ok(Response::builder()
                                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap()),
                                    Fault::YoungNotFound => unreachable!("answered above, never rolled"),
                                };
                            }
                            fwd.fetch_add(1, Ordering::Relaxed);
                            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            let mut out =
                                Request::builder().method(parts.method.clone()).uri(format!("{upstream}{path}"));
                            for (k, v) in &parts.headers {
                                if k != "host" {
                                    out = out.header(k, v);
                                }
                            }
                            let resp =
                                client.request(out.body(Full::new(body)).unwrap()).await.map_err(|e| e.to_string())?;
                            let (rp, rb) = resp.into_parts();
                            let rb = rb.collect().await.map_err(|e| e.to_string())?.to_bytes();
                            if let Some((tag, code)) = young_id_of(&op)
                                && rp.status.is_success()
                                && next(&rng) % 100 < young_not_found
                                && let Some(id) = element(&String::from_utf8_lossy(&rb), tag)
                            {
                                young.lock().unwrap().insert(id.to_string(), (code, version.clone(), YOUNG_ANSWERS));
                            }
                            Ok::<_, String>(Response::from_parts(rp, Full::new(rb)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { addr, injected, forwarded, stalled, calls, steps, refused, stalled_op, attempts, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The retry bound on emulator targets (`target::emulator_retry`): what users rely on
/// when an emulator throttles. At most 8 attempts per call, and backoffs of at most 2 s
/// (the gap between two attempts also holds the failed attempt's round trip, hence the
/// slack).
const MAX_ATTEMPTS: u32 = 8;
const MAX_GAP_BETWEEN_ATTEMPTS: std::time::Duration = std::time::Duration::from_millis(3_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_through_throttling_errors_and_resets_pass_and_leave_nothing() {
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    for (percent, seed) in [(5, 11), (10, 23), (20, 37)] {
        let proxy = FaultProxy::start(endpoint(Group::Faults), Plan { percent, seed, ..Plan::default() }).await;
        let started = std::time::Instant::now();
        let (out, _dir) = run_through(&proxy, &[]).await;
        let injected = proxy.injected.lock().unwrap().clone();
        let total: usize = injected.values().sum();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::PASS), "{percent}%: injected {injected:?}\n{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(total > 0, "{percent}%: nothing was injected");
        // The retries stayed within their bounds: every call announced the emulator
        // bound, numbered its attempts 1, 2, … without a gap, never went past the bound,
        // and waited no longer than the backoff cap between two attempts.
        let attempts = proxy.attempts.lock().unwrap().clone();
        let mut retried = 0;
        for (call, tries) in &attempts {
            let numbers: Vec<u32> = tries.iter().map(|(n, _, _)| *n).collect();
            assert_eq!(numbers, (1..=tries.len() as u32).collect::<Vec<_>>(), "{percent}%: call {call}");
            assert!(tries.iter().all(|(_, max, _)| *max == MAX_ATTEMPTS), "{percent}%: call {call}: {tries:?}");
            assert!(tries.len() as u32 <= MAX_ATTEMPTS, "{percent}%: call {call} tried {} times", tries.len());
            for pair in tries.windows(2) {
                let gap = pair[1].2 - pair[0].2;
                assert!(gap <= MAX_GAP_BETWEEN_ATTEMPTS, "{percent}%: call {call} waited {gap:?} between attempts");
            }
            retried += usize::from(tries.len() > 1);
        }
        assert!(retried > 0, "{percent}%: {total} faults injected, yet no call was retried");
        let run = RunId::parse(report["run_id"].as_str().unwrap()).unwrap();
        // Against LocalStack itself, not through the proxy: nothing of the run is left.
        let left = inventory::list(&clients, &Scope::Run(run)).await.unwrap();
        assert!(left.is_empty(), "{percent}%: left {left:?}");
        eprintln!(
            "{percent}% faults: {total} injected {injected:?}, {retried} of {} calls retried, {} forwarded, run passed in {:.1} s",
            attempts.len(),
            proxy.forwarded.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Eventual consistency: ids a create has just returned answer "not found"
/// (`InvalidGroup.NotFound`, `InvalidSubnetID.NotFound`, `NoSuchEntity`, …) to the next
/// calls that name them. The build waits them out (bounded, `aws::settle`), the run
/// passes, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_unknown_right_after_their_create_are_waited_out() {
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    for (young_not_found, seed) in [(50, 5), (100, 7)] {
        let plan = Plan { young_not_found, seed, ..Plan::default() };
        let proxy = FaultProxy::start(endpoint(Group::Faults), plan).await;
        let started = std::time::Instant::now();
        let (out, _dir) = run_through(&proxy, &["--scenario", "three-tier", "--variant", "hardened"]).await;
        let injected = proxy.injected.lock().unwrap().get(&Fault::YoungNotFound).copied().unwrap_or(0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::PASS), "{young_not_found}%: {injected} injected\n{stderr}");
        assert!(injected > 0, "{young_not_found}%: nothing was injected");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let run = RunId::parse(report["run_id"].as_str().unwrap()).unwrap();
        let left = inventory::list(&clients, &Scope::Run(run)).await.unwrap();
        assert!(left.is_empty(), "{young_not_found}%: left {left:?}");
        eprintln!(
            "{young_not_found}% of creates young: {injected} not-found answers waited out, run passed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// The one run ledger a run left in its cache directory.
fn the_ledger(cache: &std::path::Path) -> microseg_harness::ledger::LedgerData {
    let ledgers: Vec<_> = std::fs::read_dir(cache.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(ledgers.len(), 1, "one ledger: {ledgers:?}");
    microseg_harness::ledger::read(&ledgers[0]).unwrap()
}

/// What a killed run left, and where the kill landed.
struct Killed {
    /// The run's ledger as the kill left it.
    ledger: microseg_harness::ledger::LedgerData,
    /// The operation of the request the proxy held when the process was killed.
    op: String,
}

/// Runs the real binary through a proxy that stalls at `plan`'s point, kills it with
/// SIGKILL while it waits, and has `microseg sweep --abandoned` (from the ledger, then by
/// tag) finish what it left.
async fn kill_then_sweep(clients: &microseg_harness::aws::Clients, plan: Plan, point: &str) -> Killed {
    let proxy = FaultProxy::start(endpoint(Group::Faults), plan).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "run", "--target", &format!("endpoint={}", proxy.url())])
        .env("MICROSEG_CACHE_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !proxy.stalled.load(Ordering::Relaxed) {
        assert!(std::time::Instant::now() < deadline, "{point}: the run never reached it");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{point}: the run ended ({status}) before the point");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ledger = the_ledger(dir.path());
    let out = sweep_abandoned(Group::Faults, dir.path());
    assert_eq!(out.status.code(), Some(exit::PASS), "{point}: {}", String::from_utf8_lossy(&out.stdout));
    let left = inventory::list(clients, &Scope::Run(ledger.run_id.clone())).await.unwrap();
    assert!(left.is_empty(), "{point}: sweep left {left:?}");
    assert!(the_ledger(dir.path()).torn_down, "{point}: the swept ledger is not marked done");
    let op = proxy.stalled_op.lock().unwrap().clone().expect("a held request");
    Killed { ledger, op }
}

/// The real binary killed with SIGKILL in build, observe and teardown: the proxy holds
/// the n-th request, the test kills the process while it waits, and `microseg sweep
/// --abandoned` (from the ledger, then by tag) leaves nothing. The points come from a
/// clean reference run's calls per phase (the first, a middle and the last request of
/// the build; a middle one of observe; the first and a middle one of teardown), and
/// each kill must land on an operation of that phase, with the ledger in the state
/// that phase leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_each_phase_then_sweep_leaves_nothing() {
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    let reference = reference_run("recipe", &[]).await;
    let phase = |name: &str| reference.phases.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name}"));
    let (build, observe, teardown) = (phase("build"), phase("observe"), phase("teardown"));
    let points = [
        (build, build.first),
        (build, (build.first + build.last) / 2),
        (build, build.last),
        (observe, (observe.first + observe.last) / 2),
        (teardown, teardown.first),
        (teardown, (teardown.first + teardown.last) / 2),
    ];
    for (phase, request) in points {
        // Held: the request that arrives once `request - 1` were forwarded.
        let plan = Plan { stall_after: Some(request - 1), ..Plan::default() };
        let point = format!("request {request} ({} phase)", phase.name);
        let killed = kill_then_sweep(&clients, plan, &point).await;
        assert_eq!(killed.ledger.scenario, "recipe", "{point}: the killed run is the recipe's");
        assert!(
            phase.operations.contains(&killed.op),
            "{point}: killed in {}, which the {} phase never calls ({:?})",
            killed.op,
            phase.name,
            phase.operations
        );
        // Killed before teardown, the ledger is open and holds what the build made;
        // from the first teardown request on it is still open (never marked done).
        assert!(!killed.ledger.torn_down, "{point}: the ledger was marked done before the run ended");
        if phase.name != "build" {
            assert!(
                killed.ledger.resources.iter().any(|r| r.kind == ResourceKind::Vpc),
                "{point}: after the build the ledger holds the VPC: {:?}",
                killed.ledger.resources
            );
        }
        eprintln!("killed at {point}, in {}: swept", killed.op);
    }
}

/// Killed inside the start-up capability probe, with its throwaway VPC made (and, at
/// `DeleteVpc`, its NACL already gone): the probe is a run of its own, with a ledger and
/// the run tags, so the same `sweep --abandoned` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_capability_probe_then_sweep_leaves_nothing() {
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    for op in ["CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteVpc"] {
        let plan = Plan { stall_on: Some(op), ..Plan::default() };
        let killed = kill_then_sweep(&clients, plan, op).await;
        assert_eq!(killed.op, op);
        assert_eq!(killed.ledger.scenario, capabilities::PROBE_SCENARIO, "{op}: the killed run is the probe");
        assert!(
            killed.ledger.resources.iter().any(|r| r.kind == ResourceKind::Vpc),
            "{op}: the probe's VPC was recorded before it went on: {:?}",
            killed.ledger.resources
        );
    }
}

/// A call of the capability probe fails for good (a create, or a delete of its
/// throwaway NACL or VPC): start-up fails naming the call and the probe's run, the probe
/// sweeps its own run at once, and keeps its ledger marked done. Nothing of the run is
/// built. (The probe's rule-40000 entry is left out: AWS refuses it with the same
/// `InvalidParameterValue` the proxy injects, so there a refusal is the AWS answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_capability_probe_is_cleaned_up_at_once() {
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    for op in ["CreateVpc", "CreateTags", "CreateNetworkAcl", "DeleteNetworkAcl", "DeleteVpc"] {
        let plan = Plan { fail_op: Some((op.to_string(), 1)), ..Plan::default() };
        let proxy = FaultProxy::start(endpoint(Group::Faults), plan).await;
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::task::spawn_blocking({
            let (url, path) = (proxy.url(), dir.path().to_path_buf());
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
                    .args(["--quiet", "run", "--target", &format!("endpoint={url}")])
                    .env("MICROSEG_CACHE_DIR", path)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::TARGET_UNAVAILABLE), "{op}: {stderr}");
        assert_eq!(*proxy.refused.lock().unwrap(), [op], "{op}: the one refusal");
        let ledger = the_ledger(dir.path());
        assert_eq!(ledger.scenario, capabilities::PROBE_SCENARIO, "{op}: only the probe ran");
        for said in
            [&format!("capability probe (run {})", ledger.run_id), &format!("microseg injected a failure into {op}")]
        {
            assert!(stderr.contains(said.as_str()), "{op}: stderr does not say {said:?}:\n{stderr}");
        }
        assert!(ledger.torn_down, "{op}: the probe's ledger is not marked done");
        // What the probe had made, and recorded, when the call failed.
        // (The VPC, then its default NACL once tagged, then the probe's own NACL.)
        let made = match op {
            "CreateVpc" => 0,
            "CreateTags" => 1,
            "CreateNetworkAcl" => 2,
            _ => 3,
        };
        assert_eq!(ledger.resources.len(), made, "{op}: {:?}", ledger.resources);
        let left = inventory::list(&clients, &Scope::Run(ledger.run_id.clone())).await.unwrap();
        assert!(left.is_empty(), "{op}: the probe left {left:?}");
    }
}

/// Runs the binary through `proxy`, with its own cache dir, and returns its output and
/// that dir.
async fn run_through(proxy: &FaultProxy, args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"));
    cmd.args(["--quiet", "run", "--target", &format!("endpoint={}", proxy.url()), "--format", "json"])
        .args(args)
        .env("MICROSEG_CACHE_DIR", dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    (out, dir)
}

/// One phase of a clean reference run, as the proxy numbers its requests.
#[derive(Debug)]
struct Phase {
    name: String,
    /// The phase's first and last request, counted from 1 over everything the proxy
    /// forwarded (the start-up probe's requests come first).
    first: u64,
    last: u64,
    /// Every operation the phase called.
    operations: std::collections::BTreeSet<String>,
}

/// A clean run through a proxy, as the reference for failure injection.
struct Reference {
    /// The build's steps ([`is_step`]) per operation.
    build: BTreeMap<String, u64>,
    /// The build's steps in the order they arrived.
    build_order: Vec<String>,
    /// The calls per operation made before the build (the target's divergence probe:
    /// what the proxy saw and no phase of the report counted).
    before: BTreeMap<String, u64>,
    /// The report's phases that made calls, in order.
    phases: Vec<Phase>,
}

impl Reference {
    /// Build steps the probe makes before the build's first.
    fn probe_steps(&self) -> u64 {
        self.before.iter().filter(|(op, _)| is_step(op)).map(|(_, n)| n).sum()
    }
}

async fn reference_run(scenario: &str, args: &[&str]) -> Reference {
    let reference = FaultProxy::start(endpoint(Group::Faults), Plan::default()).await;
    let (out, _dir) = run_through(&reference, args).await;
    assert_eq!(out.status.code(), Some(exit::PASS), "{scenario}: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_op = |phase: &serde_json::Value| -> Vec<(String, u64)> {
        let ops = phase["calls_by_operation"].as_object().unwrap();
        // `ec2:CreateVpc` in the report, `CreateVpc` on the wire.
        ops.iter().map(|(op, n)| (op.rsplit(':').next().unwrap_or(op).to_string(), n.as_u64().unwrap())).collect()
    };
    let report_phases = report["phases"].as_array().unwrap();
    let build: BTreeMap<String, u64> =
        report_phases.iter().filter(|p| p["name"] == "build").flat_map(per_op).filter(|(op, _)| is_step(op)).collect();
    let mut before = reference.calls.lock().unwrap().clone();
    for (op, n) in report_phases.iter().flat_map(per_op) {
        let seen = before.entry(op).or_default();
        *seen = seen.checked_sub(n).expect("the proxy saw every call the report counts");
    }
    before.retain(|_, n| *n > 0);
    let mut next = before.values().sum::<u64>() + 1;
    let mut phases = Vec::new();
    for p in report_phases {
        let ops = per_op(p);
        let calls: u64 = ops.iter().map(|(_, n)| n).sum();
        if calls > 0 {
            let operations = ops.into_iter().map(|(op, _)| op).collect();
            phases.push(Phase {
                name: p["name"].as_str().unwrap().into(),
                first: next,
                last: next + calls - 1,
                operations,
            });
            next += calls;
        }
    }
    let steps = reference.steps.lock().unwrap().clone();
    let probe: usize = before.iter().filter(|(op, _)| is_step(op)).map(|(_, n)| *n as usize).sum();
    let build_order = steps[probe..probe + build.values().sum::<u64>() as usize].to_vec();
    Reference { build, build_order, before, phases }
}

/// The build wave an operation belongs to (`build.rs`): foundation, network, rules.
fn wave_of(op: &str) -> usize {
    match op {
        "CreateVpc"
        | "CreateInternetGateway"
        | "CreateRole"
        | "CreateLogGroup"
        | "PutRetentionPolicy"
        | "AllocateAddress" => 1,
        "CreateSubnet"
        | "CreateNetworkAcl"
        | "CreateSecurityGroup"
        | "CreateRouteTable"
        | "AttachInternetGateway"
        | "ModifySubnetAttribute"
        | "PutRolePolicy"
        | "PutMetricFilter"
        | "PutMetricAlarm"
        | "TagResource"
        | "CreateFlowLogs" => 2,
        "CreateNetworkAclEntry"
        | "ReplaceNetworkAclAssociation"
        | "AuthorizeSecurityGroupIngress"
        | "AuthorizeSecurityGroupEgress"
        | "RevokeSecurityGroupEgress"
        | "RevokeSecurityGroupIngress"
        | "CreateNatGateway"
        | "CreateRoute"
        | "AssociateRouteTable" => 3,
        other => panic!("{other}: a build step of no known wave; add it to wave_of"),
    }
}

/// Runs `args` through a proxy that injects `plan`'s failure, and checks what users rely
/// on: the run fails, names the failure, tears down, marks its ledger, and leaves nothing.
/// Returns the operation the failure hit, as the proxy refused it and the run named it.
async fn fail_and_check(
    clients: &microseg_harness::aws::Clients,
    scenario: &str,
    args: &[&str],
    plan: Plan,
    label: &str,
) -> String {
    let proxy = FaultProxy::start(endpoint(Group::Faults), plan).await;
    let (out, dir) = run_through(&proxy, args).await;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(exit::PASS), "{scenario} {label}: the failure went unnoticed");
    // The failure is named, in the report's interruption or on stderr.
    let op = said
        .split("microseg injected a failure into ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .unwrap_or_else(|| panic!("{scenario} {label}: the failure is not named: {said}"))
        .to_string();
    assert_eq!(*proxy.refused.lock().unwrap(), [op.as_str()], "{scenario} {label}: the run named another call");
    let ledger = the_ledger(dir.path());
    assert_eq!(ledger.scenario, scenario, "{label}");
    assert!(ledger.torn_down, "{scenario} {label}: the ledger is not marked torn down");
    let left = inventory::list(clients, &Scope::Run(ledger.run_id.clone())).await.unwrap();
    assert!(left.is_empty(), "{scenario} {label} ({op}): left {left:?}");
    op
}

/// The build steps to fail, counted from 1: by default the first, a middle and the last
/// step of each wave, and `random` more drawn with `seed`; with `MICROSEG_EXHAUSTIVE=1`
/// every step.
fn sampled_steps(waves: &[(usize, u64, u64)], total: u64, seed: u64, random: usize) -> Vec<u64> {
    if exhaustive() {
        return (1..=total).collect();
    }
    let mut picked: std::collections::BTreeSet<u64> =
        waves.iter().flat_map(|&(_, first, last)| [first, (first + last) / 2, last]).collect();
    let rng = AtomicU64::new(seed.max(1));
    while picked.len() < (waves.len() * 3 + random).min(total as usize) {
        picked.insert(next(&rng) % total + 1);
    }
    picked.into_iter().collect()
}

/// A failure no retry clears, injected at the recipe's build steps (the k-th mutating
/// call, sampled or every k, see [`sampled_steps`]): the run reports it, tears down, and
/// leaves nothing. The steps and their waves are counted from a clean reference run, and
/// each failure must hit a call of its step's wave. Three runs go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_build_steps_leaves_nothing() {
    use futures::StreamExt;
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    let reference = reference_run("recipe", &[]).await;
    let (probe, order) = (reference.probe_steps(), &reference.build_order);
    let steps = order.len() as u64;
    assert!(steps >= 20 && (1..=5).contains(&probe), "{steps} build steps after {probe} probe mutations");
    // The waves follow each other: every step of wave n comes before any of wave n+1.
    let waves_in_order: Vec<usize> = order.iter().map(|op| wave_of(op)).collect();
    assert!(waves_in_order.is_sorted(), "build steps out of wave order: {order:?}");
    let waves: Vec<(usize, u64, u64)> = (1..=3)
        .filter_map(|w| {
            let first = waves_in_order.iter().position(|x| *x == w)? as u64 + 1;
            let last = waves_in_order.iter().rposition(|x| *x == w)? as u64 + 1;
            Some((w, first, last))
        })
        .collect();
    assert_eq!(waves.len(), 3, "the recipe's build has three waves: {order:?}");
    let seed = seed("a_failure_at_build_steps_leaves_nothing");
    let sample = sampled_steps(&waves, steps, seed, 4);
    let started = std::time::Instant::now();
    let hit: Vec<(u64, String)> = futures::stream::iter(sample.iter().copied())
        .map(|k| {
            let clients = clients.clone();
            async move {
                let plan = Plan { fail_mutation: Some(probe + k), ..Plan::default() };
                (k, fail_and_check(&clients, "recipe", &[], plan, &format!("step {k}")).await)
            }
        })
        .buffer_unordered(3)
        .collect()
        .await;
    for (k, op) in &hit {
        let wave = waves.iter().find(|(_, first, last)| (first..=last).contains(&k)).unwrap().0;
        assert_eq!(wave_of(op), wave, "step {k} is in wave {wave}, yet the failure hit {op}");
    }
    let kinds: std::collections::BTreeSet<&str> = hit.iter().map(|(_, op)| op.as_str()).collect();
    if exhaustive() {
        let all: std::collections::BTreeSet<&str> = reference.build.keys().map(String::as_str).collect();
        assert_eq!(kinds, all, "every kind of build step was failed once");
    }
    eprintln!(
        "recipe: a failure at {} of {steps} build steps ({} operations: {kinds:?}) left nothing; {:.1} s",
        hit.len(),
        kinds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The same for every kind of build call of the hardened three-tier scenario (NAT
/// gateways, Elastic IPs, routes to them, egress by reference): the first build call of
/// each mutating operation fails in turn, and that exact call is the one the run names.
/// Every kind is covered, sampled or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_kind_of_build_call_leaves_nothing() {
    use futures::StreamExt;
    let _t = timer();
    let (clients, _, _) = on(Group::Faults).await;
    let args = &["--scenario", "three-tier", "--variant", "hardened"][..];
    let reference = reference_run("three-tier-hardened", args).await;
    for op in ["CreateNatGateway", "AllocateAddress", "CreateRoute", "AuthorizeSecurityGroupEgress"] {
        assert!(reference.build.contains_key(op), "the three-tier build makes no {op}: {:?}", reference.build);
    }
    let started = std::time::Instant::now();
    let ops: Vec<String> = reference.build.keys().cloned().collect();
    let hit: Vec<String> = futures::stream::iter(ops.iter())
        .map(|op| {
            let clients = clients.clone();
            // The first call of `op` after the probe's own calls of it.
            let nth = reference.before.get(op).copied().unwrap_or(0) + 1;
            async move {
                let plan = Plan { fail_op: Some((op.clone(), nth)), ..Plan::default() };
                let hit = fail_and_check(&clients, "three-tier-hardened", args, plan, op).await;
                assert_eq!(&hit, op, "the run named another call than the one that failed");
                hit
            }
        })
        .buffer_unordered(3)
        .collect()
        .await;
    let hit: std::collections::BTreeSet<String> = hit.into_iter().collect();
    assert_eq!(hit, reference.build.keys().cloned().collect(), "every kind of build call was failed once");
    eprintln!(
        "three-tier-hardened: a failure at the first build call of each of {} operations ({ops:?}) left nothing; {:.1} s",
        ops.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The capability probe runs once per emulator instance: a second invocation against the
/// same LocalStack, with the same cache, takes the first one's verdict (its only VPC is
/// the run's own), and so does a third; an emulator started anew (another session) is
/// probed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_runs_once_per_emulator_instance() {
    let _t = timer();
    let cache = tempfile::tempdir().unwrap();
    let run = |url: String| {
        let cache = cache.path().to_path_buf();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
                    .args(["--quiet", "run", "--target", &format!("endpoint={url}"), "--format", "json"])
                    .env("MICROSEG_CACHE_DIR", cache)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            assert_eq!(out.status.code(), Some(exit::PASS), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["capabilities"].clone()
        }
    };
    let vpcs = |proxy: &FaultProxy| proxy.calls.lock().unwrap().get("CreateVpc").copied().unwrap_or(0);
    let proxy = FaultProxy::start(endpoint(Group::Faults), Plan::default()).await;
    let probed = run(proxy.url()).await;
    assert_eq!(vpcs(&proxy), 2, "the first invocation probes (a VPC) and runs (a VPC)");
    for n in [3, 4] {
        let reused = run(proxy.url()).await;
        assert_eq!(vpcs(&proxy), n, "a later invocation on the same instance makes only its run's VPC");
        assert_eq!(reused, probed, "the verdict is the one the probe reached");
    }
    // Another instance (the shared group's emulator: another session id), same cache.
    let other = FaultProxy::start(endpoint(Group::Shared), Plan::default()).await;
    run(other.url()).await;
    assert_eq!(vpcs(&other), 2, "another emulator instance is probed afresh");
}
