//! The acceptance gate: check a deployment that microseg did not build.
//!
//! `validate` reads a deployment (live by VPC id or tag, or from a snapshot file),
//! binds the plan's names to it by discovery, and runs the same checks as `run`. The
//! snapshot holds the normalised model plus the capabilities of the target it was read
//! from, so an offline gate still knows which questions that target could not decide.
//! What another implementation's cleanup left is [`crate::inventory`]'s to list
//! (`validate --expect-gone`).

use std::path::Path;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, aws_err};
use crate::bindings::Bindings;
use crate::capabilities::Capabilities;
use crate::checks::{self, CheckResult, Status};
use crate::discover::{self, ZoneMapping};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::verdict::Verdict;

/// Version of the snapshot file.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// What `microseg snapshot` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Unix seconds when it was read.
    pub captured_at: u64,
    /// The target it was read from (never credentials).
    pub target: String,
    /// That target's divergences.
    pub capabilities: Capabilities,
    /// The deployment.
    pub observed: Observed,
}

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Unreadable file.
    #[error("cannot read snapshot {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a snapshot, or another version.
    #[error("{}: not a microseg snapshot: {message}\n(hint: write one with `microseg snapshot --vpc-id … --out FILE`)", path.display())]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Snapshot {
    /// Reads and checks a snapshot file.
    pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
        let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Read { path: path.into(), source })?;
        let snap: Snapshot = serde_json::from_str(&text)
            .map_err(|e| SnapshotError::Format { path: path.into(), message: e.to_string() })?;
        if snap.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::Format {
                path: path.into(),
                message: format!(
                    "format version {} (this microseg reads {SNAPSHOT_FORMAT_VERSION})",
                    snap.format_version
                ),
            });
        }
        Ok(snap)
    }
}

/// The gate's verdict on one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// Scenario.
    pub scenario: String,
    /// Variant.
    pub variant: String,
    /// What was validated (`vpc-… on LocalStack …`, `snapshot FILE`).
    pub source: String,
    /// Divergences of the target the deployment was read from.
    pub capabilities: Capabilities,
    /// How the plan's names were bound.
    pub bindings: Bindings,
    /// Check results.
    pub checks: Vec<CheckResult>,
    /// What the deployed network lets through (absent when there is no VPC to read).
    pub reachability: Option<crate::reach::Reachability>,
}

impl ValidateReport {
    /// Pass when every check passes or is a named divergence, findings otherwise.
    pub fn verdict(&self) -> Verdict {
        if self.checks.iter().any(|c| c.status == Status::Fail) { Verdict::Findings } else { Verdict::Pass }
    }

    /// The process exit code this validation deserves ([`Verdict::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code()
    }
}

/// Binds and checks an observed deployment.
pub fn validate(
    plan: &Plan,
    observed: &Observed,
    mapping: &ZoneMapping,
    caps: &Capabilities,
    source: String,
) -> ValidateReport {
    let bindings = discover::discover(plan, observed, mapping);
    let mut checks = Vec::new();
    let mut reachability = None;
    if observed.vpc.is_none() {
        checks.push(checks::check_vpc(plan, observed, &source));
    } else {
        let (results, r) = checks::run_checks_with_reachability(plan, observed, &bindings, caps);
        checks = results;
        reachability = Some(r);
    }
    ValidateReport {
        scenario: plan.scenario.clone(),
        variant: plan.variant.clone(),
        source,
        capabilities: caps.clone(),
        bindings,
        checks,
        reachability,
    }
}

/// Finds the VPC that carries a tag.
pub async fn vpc_by_tag(clients: &Clients, key: &str, value: &str) -> Result<Vec<String>, AwsError> {
    let vpcs = clients
        .ec2
        .describe_vpcs()
        .filters(Filter::builder().name(format!("tag:{key}")).values(value).build())
        .send()
        .await
        .map_err(aws_err("DescribeVpcs"))?;
    Ok(vpcs.vpcs().iter().filter_map(|v| v.vpc_id().map(str::to_string)).collect())
}
