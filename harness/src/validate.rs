//! The acceptance gate: check a deployment that microseg did not build.
//!
//! `validate` reads a deployment (live by VPC id or tag, or from a snapshot file),
//! binds the plan's names to it by discovery, and runs the same checks as `run`. The
//! snapshot holds the normalised model plus the capabilities of the target it was read
//! from, so an offline gate still knows which questions that target could not decide.
//! `expect_gone` proves that another implementation's cleanup left nothing.

use std::path::Path;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, all_items, aws_err};
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

/// Everything that still carries a tag, across EC2, IAM, CloudWatch Logs and
/// CloudWatch: the proof that another implementation's cleanup finished.
pub async fn leftovers_by_tag(clients: &Clients, key: &str, value: &str) -> Result<Vec<String>, AwsError> {
    let ec2 = &clients.ec2;
    let f = Filter::builder().name(format!("tag:{key}")).values(value).build();
    let mut out = Vec::new();
    let (vpcs, subnets, nacls, sgs, rts, igws) = tokio::try_join!(
        async { ec2.describe_vpcs().filters(f.clone()).send().await.map_err(aws_err("DescribeVpcs")) },
        async { ec2.describe_subnets().filters(f.clone()).send().await.map_err(aws_err("DescribeSubnets")) },
        async { ec2.describe_network_acls().filters(f.clone()).send().await.map_err(aws_err("DescribeNetworkAcls")) },
        async {
            ec2.describe_security_groups().filters(f.clone()).send().await.map_err(aws_err("DescribeSecurityGroups"))
        },
        async { ec2.describe_route_tables().filters(f.clone()).send().await.map_err(aws_err("DescribeRouteTables")) },
        async {
            ec2.describe_internet_gateways()
                .filters(f.clone())
                .send()
                .await
                .map_err(aws_err("DescribeInternetGateways"))
        },
    )?;
    out.extend(vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).map(|id| format!("vpc {id}")));
    out.extend(subnets.subnets().iter().filter_map(|v| v.subnet_id()).map(|id| format!("subnet {id}")));
    out.extend(nacls.network_acls().iter().filter_map(|v| v.network_acl_id()).map(|id| format!("network-acl {id}")));
    out.extend(sgs.security_groups().iter().filter_map(|v| v.group_id()).map(|id| format!("security-group {id}")));
    out.extend(rts.route_tables().iter().filter_map(|v| v.route_table_id()).map(|id| format!("route-table {id}")));
    out.extend(
        igws.internet_gateways()
            .iter()
            .filter_map(|v| v.internet_gateway_id())
            .map(|id| format!("internet-gateway {id}")),
    );
    let flow_logs = ec2.describe_flow_logs().send().await.map_err(aws_err("DescribeFlowLogs"))?;
    for fl in flow_logs.flow_logs() {
        if fl.tags().iter().any(|t| t.key() == Some(key) && t.value() == Some(value)) {
            out.push(format!("flow-log {}", fl.flow_log_id().unwrap_or_default()));
        }
    }
    let roles = all_items!(clients.iam.list_roles(), "ListRoles")?;
    for r in roles {
        let tags =
            clients.iam.list_role_tags().role_name(r.role_name()).send().await.map_err(aws_err("ListRoleTags"))?;
        if tags.tags().iter().any(|t| t.key() == key && t.value() == value) {
            out.push(format!("iam-role {}", r.role_name()));
        }
    }
    let groups = all_items!(clients.logs.describe_log_groups(), "DescribeLogGroups")?;
    for g in groups {
        let Some(arn) = crate::aws::log_group_arn(&g) else {
            continue;
        };
        let tags = clients
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(aws_err("ListTagsForResource"))?;
        if tags.tags().is_some_and(|t| t.get(key).is_some_and(|v| v == value)) {
            out.push(format!("log-group {}", g.log_group_name().unwrap_or_default()));
        }
    }
    let alarms = clients.cloudwatch.describe_alarms().send().await.map_err(aws_err("DescribeAlarms"))?;
    for a in alarms.metric_alarms() {
        let Some(arn) = a.alarm_arn() else { continue };
        let tags = clients
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(aws_err("ListTagsForResource"))?;
        if tags.tags().iter().any(|t| t.key() == Some(key) && t.value() == Some(value)) {
            out.push(format!("alarm {}", a.alarm_name().unwrap_or_default()));
        }
    }
    Ok(out)
}

/// Marks a default NACL in [`leftovers_in_vpc`].
pub const DEFAULT_MARK: &str = "(the VPC's default NACL)";

/// Splits leftovers of a deleted VPC into real ones and the default NACL that an
/// emulator's DeleteVpc orphans ([`crate::capabilities::Divergence::DeleteVpcOrphansDependents`]).
/// On AWS, and while the VPC still exists, every leftover is real.
pub fn split_emulator_orphans(leftovers: Vec<String>, caps: &Capabilities) -> (Vec<String>, Vec<String>) {
    let vpc_gone = !leftovers.iter().any(|l| l.starts_with("vpc "));
    if !(vpc_gone && caps.has(crate::capabilities::Divergence::DeleteVpcOrphansDependents)) {
        return (leftovers, Vec::new());
    }
    leftovers.into_iter().partition(|l| !l.ends_with(DEFAULT_MARK))
}

/// What remains of a VPC: the VPC itself and anything still inside it or attached to it.
pub async fn leftovers_in_vpc(clients: &Clients, vpc_id: &str) -> Result<Vec<String>, AwsError> {
    let ec2 = &clients.ec2;
    let f = Filter::builder().name("vpc-id").values(vpc_id).build();
    let mut out = Vec::new();
    let vpcs = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .map_err(aws_err("DescribeVpcs"))?;
    out.extend(vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).map(|id| format!("vpc {id}")));
    let (subnets, nacls, sgs, rts) = tokio::try_join!(
        async { ec2.describe_subnets().filters(f.clone()).send().await.map_err(aws_err("DescribeSubnets")) },
        async { ec2.describe_network_acls().filters(f.clone()).send().await.map_err(aws_err("DescribeNetworkAcls")) },
        async {
            ec2.describe_security_groups().filters(f.clone()).send().await.map_err(aws_err("DescribeSecurityGroups"))
        },
        async { ec2.describe_route_tables().filters(f.clone()).send().await.map_err(aws_err("DescribeRouteTables")) },
    )?;
    out.extend(subnets.subnets().iter().filter_map(|v| v.subnet_id()).map(|id| format!("subnet {id}")));
    // Orphans count: DeleteVpc on LocalStack leaves NACLs behind (docs/EMULATOR.md,
    // "Divergences from AWS": delete-vpc-orphans-dependents). The default one is marked,
    // so the caller can tell the emulator's orphan apart.
    out.extend(nacls.network_acls().iter().filter_map(|v| {
        let id = v.network_acl_id()?;
        Some(if v.is_default() == Some(true) {
            format!("network-acl {id} {DEFAULT_MARK}")
        } else {
            format!("network-acl {id}")
        })
    }));
    out.extend(sgs.security_groups().iter().filter_map(|v| v.group_id()).map(|id| format!("security-group {id}")));
    out.extend(rts.route_tables().iter().filter_map(|v| v.route_table_id()).map(|id| format!("route-table {id}")));
    let igws = ec2
        .describe_internet_gateways()
        .filters(Filter::builder().name("attachment.vpc-id").values(vpc_id).build())
        .send()
        .await
        .map_err(aws_err("DescribeInternetGateways"))?;
    out.extend(
        igws.internet_gateways()
            .iter()
            .filter_map(|v| v.internet_gateway_id())
            .map(|id| format!("internet-gateway {id}")),
    );
    let fls = ec2
        .describe_flow_logs()
        .filter(Filter::builder().name("resource-id").values(vpc_id).build())
        .send()
        .await
        .map_err(aws_err("DescribeFlowLogs"))?;
    out.extend(fls.flow_logs().iter().filter_map(|v| v.flow_log_id()).map(|id| format!("flow-log {id}")));
    Ok(out)
}
