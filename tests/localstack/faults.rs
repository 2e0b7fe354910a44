//! Faults between the SDK and LocalStack: a proxy that, at a set rate, answers in the
//! emulator's place with throttling (EC2's `RequestLimitExceeded` with HTTP 503; a bare
//! 503 for the other services), an internal error (500), or a dropped connection. A full
//! run through it must still pass, its retries bounded, and leave nothing behind
//! (checked against LocalStack directly, not through the proxy).

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
use microseg_harness::exit;
use microseg_harness::inventory::{self, Scope};
use microseg_harness::run_id::RunId;

use crate::support::{shared, shared_endpoint};

/// What the proxy did instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Throttle,
    InternalError,
    Reset,
}

/// The proxy, serving on a loopback port until dropped.
struct FaultProxy {
    addr: SocketAddr,
    injected: Arc<Mutex<BTreeMap<Fault, usize>>>,
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
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

const EC2_THROTTLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>microseg-fault</RequestID></Response>";

impl FaultProxy {
    async fn start(upstream: &str, percent: u64, seed: u64) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let injected: Arc<Mutex<BTreeMap<Fault, usize>>> = Arc::default();
        let forwarded = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(AtomicU64::new(seed.max(1)));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (inj, fwd) = (injected.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (client, upstream, inj, fwd, rng) =
                    (client.clone(), upstream.clone(), inj.clone(), fwd.clone(), rng.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, inj, fwd, rng) =
                            (client.clone(), upstream.clone(), inj.clone(), fwd.clone(), rng.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
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
                            Ok::<_, String>(Response::from_parts(rp, Full::new(rb)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { addr, injected, forwarded, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_through_throttling_errors_and_resets_pass_and_leave_nothing() {
    let (clients, _, _) = shared().await;
    for (percent, seed) in [(5, 11), (10, 23), (20, 37)] {
        let proxy = FaultProxy::start(shared_endpoint(), percent, seed).await;
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking({
            let url = proxy.url();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
                    .args(["--quiet", "run", "--target", &format!("endpoint={url}"), "--format", "json"])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let injected = proxy.injected.lock().unwrap().clone();
        let total: usize = injected.values().sum();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::PASS), "{percent}%: injected {injected:?}\n{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The faults happened, and the retries stayed bounded.
        assert!(total > 0, "{percent}%: nothing was injected");
        let run = RunId::parse(report["run_id"].as_str().unwrap()).unwrap();
        // Against LocalStack itself, not through the proxy: nothing of the run is left.
        let left = inventory::list(&clients, &Scope::Run(run)).await.unwrap();
        assert!(left.is_empty(), "{percent}%: left {left:?}");
        eprintln!(
            "{percent}% faults: {total} injected {injected:?}, {} forwarded, run passed in {:.1} s",
            proxy.forwarded.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }
}
