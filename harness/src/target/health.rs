//! Readiness of a LocalStack endpoint: `GET /_localstack/health` lists every service the
//! harness needs as available. Polled under one timeout, never a fixed sleep.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// The services a run talks to.
pub const REQUIRED_SERVICES: &[&str] = &["ec2", "iam", "logs", "cloudwatch", "sts"];

/// The parts of LocalStack's health answer we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    /// Service name → state (`available`, `running`, `disabled`, `error`, …).
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, String>,
    /// LocalStack version.
    #[serde(default)]
    pub version: Option<String>,
    /// `community`, …
    #[serde(default)]
    pub edition: Option<String>,
}

impl Health {
    /// The required services that are not yet usable, with their state.
    pub fn missing(&self) -> Vec<String> {
        REQUIRED_SERVICES
            .iter()
            .filter_map(|s| match self.services.get(*s).map(String::as_str) {
                Some("available") | Some("running") => None,
                Some(state) => Some(format!("{s}={state}")),
                None => Some(format!("{s}=absent")),
            })
            .collect()
    }
}

/// Fetches the health document once, with a 2 s limit (readiness polls retry anyway).
pub fn fetch(base_url: &str) -> Result<Health, String> {
    fetch_within(base_url, Duration::from_secs(2)).map_err(|e| e.to_string())
}

/// Why one health fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing answered in time: refused, reset or timed out. A busy or starting emulator
    /// looks like this, so it is worth asking again.
    Silent(String),
    /// The connection was refused: nothing listens on that port (yet).
    Refused(String),
    /// Something answered, but not with LocalStack's health document.
    NotLocalStack(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Silent(m) | FetchError::Refused(m) | FetchError::NotLocalStack(m) => f.write_str(m),
        }
    }
}

/// Fetches the health document once, giving up after `limit`.
pub fn fetch_within(base_url: &str, limit: Duration) -> Result<Health, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(limit)).build().into();
    let url = format!("{}/_localstack/health", base_url.trim_end_matches('/'));
    let classify = |e: ureq::Error| match e {
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            FetchError::Refused(e.to_string())
        }
        ureq::Error::Timeout(_) | ureq::Error::Io(_) | ureq::Error::ConnectionFailed => {
            FetchError::Silent(e.to_string())
        }
        other => FetchError::NotLocalStack(other.to_string()),
    };
    let mut resp = agent.get(&url).call().map_err(classify)?;
    resp.body_mut().read_json::<Health>().map_err(classify)
}

/// Why an endpoint never became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The process behind it exited; its status.
    Exited(String),
    /// A required service reports `error`: its plugin failed to load, and LocalStack
    /// does not load it again. Seen once in about a dozen suites, when two host
    /// instances started at the same moment (`could not load service plugin
    /// cloudwatch`); waiting on would only spend the whole timeout.
    Broken(String),
    /// The timeout passed; the last state seen.
    Timeout {
        /// How long we waited.
        waited: Duration,
        /// What the last poll saw.
        last: String,
    },
}

/// Polls until every required service is available, the `alive` probe reports an exit,
/// or `timeout` passes.
pub async fn wait_ready(
    base_url: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> Option<String>,
) -> Result<Health, NotReady> {
    let start = Instant::now();
    loop {
        if let Some(exit) = alive() {
            return Err(NotReady::Exited(exit));
        }
        let url = base_url.to_string();
        let last = match tokio::task::spawn_blocking(move || fetch(&url)).await.expect("health poll does not panic") {
            Ok(h) if h.missing().is_empty() => return Ok(h),
            Ok(h) if h.missing().iter().any(|m| m.ends_with("=error")) => {
                return Err(NotReady::Broken(h.missing().join(", ")));
            }
            Ok(h) => format!("services not ready: {}", h.missing().join(", ")),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(NotReady::Timeout { waited: start.elapsed(), last });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
