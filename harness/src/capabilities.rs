//! What a target can and cannot show: its named divergences from AWS.
//!
//! A divergence is data, never a blanket tolerance. Checks ask whether a specific one
//! applies and, if so, report the question as undecidable on this target. The cheap
//! ones are probed at start-up ([`probe`]); the rest are known properties of the
//! emulator family (docs/EMULATOR.md, "Divergences from AWS", which gives what was measured
//! for each of these names).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use aws_sdk_ec2::types::{Filter, ResourceType, RuleAction, Tag, TagSpecification};
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, aws_err, settle};
use crate::inventory::{self, Scope};
use crate::ledger::{Ledger, LedgerEntry, LedgerError, ResourceKind};
use crate::run_id::RunId;
use crate::sweep::{self, Selection};

/// One way a target departs from AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// A new custom NACL has no entries; AWS gives it the two `*` (32767) deny entries.
    NaclWithoutDefaultDeny,
    /// Rule numbers above 32766 are accepted; AWS rejects them.
    NaclRuleNumberUnbounded,
    /// `FlowLogStatus` is always `ACTIVE`, the role is never checked, no records are written.
    FlowLogStatusAlwaysActive,
    /// IAM policies are not enforced.
    IamNotEnforced,
    /// Metric filters match every event whatever their pattern.
    MetricFilterMatchesEverything,
    /// `DeleteVpc` succeeds while NACLs remain, orphaning them.
    DeleteVpcOrphansDependents,
    /// No Reachability Analyzer (NetworkInsights) API.
    NoReachabilityAnalyzer,
    /// A VPC's default security group is created with only the all-egress rule; AWS also
    /// gives it ingress from itself, so a default group found empty may have been closed
    /// by the deployment or half-closed by the emulator.
    DefaultSecurityGroupNoSelfIngress,
    /// A NAT gateway's connectivity type is reported as the create request gave it:
    /// `None` when the request left it out, where AWS reports its default, `public`.
    NatConnectivityTypeEchoed,
    /// CloudWatch does not answer the smithy-rpc-v2-cbor protocol that
    /// `aws-sdk-cloudwatch` ≥ 1.100 speaks (moto 5.2.5 answers HTTP 404), so no alarm can
    /// be created, read or listed there: the build creates the metric filter but no
    /// alarm, and the alarm is reported as not decidable.
    CloudwatchNoCbor,
}

impl Divergence {
    /// Every divergence, for documentation and `doctor`.
    pub const ALL: [Divergence; 10] = [
        Divergence::NaclWithoutDefaultDeny,
        Divergence::NaclRuleNumberUnbounded,
        Divergence::FlowLogStatusAlwaysActive,
        Divergence::IamNotEnforced,
        Divergence::MetricFilterMatchesEverything,
        Divergence::DeleteVpcOrphansDependents,
        Divergence::NoReachabilityAnalyzer,
        Divergence::DefaultSecurityGroupNoSelfIngress,
        Divergence::NatConnectivityTypeEchoed,
        Divergence::CloudwatchNoCbor,
    ];

    /// Stable id, as used in reports.
    pub fn id(self) -> &'static str {
        match self {
            Divergence::NaclWithoutDefaultDeny => "nacl-without-default-deny",
            Divergence::NaclRuleNumberUnbounded => "nacl-rule-number-unbounded",
            Divergence::FlowLogStatusAlwaysActive => "flow-log-status-always-active",
            Divergence::IamNotEnforced => "iam-not-enforced",
            Divergence::MetricFilterMatchesEverything => "metric-filter-matches-everything",
            Divergence::DeleteVpcOrphansDependents => "delete-vpc-orphans-dependents",
            Divergence::NoReachabilityAnalyzer => "no-reachability-analyzer",
            Divergence::DefaultSecurityGroupNoSelfIngress => "default-security-group-no-self-ingress",
            Divergence::NatConnectivityTypeEchoed => "nat-connectivity-type-echoed",
            Divergence::CloudwatchNoCbor => "cloudwatch-no-cbor",
        }
    }

    /// What it means, in one sentence.
    pub fn description(self) -> &'static str {
        match self {
            Divergence::NaclWithoutDefaultDeny => {
                "a new custom NACL has no entries; AWS adds the * (32767) deny entry in each direction"
            }
            Divergence::NaclRuleNumberUnbounded => "NACL rule numbers above 32766 are accepted; AWS rejects them",
            Divergence::FlowLogStatusAlwaysActive => {
                "flow logs are always ACTIVE, the delivery role is never checked and no records are written"
            }
            Divergence::IamNotEnforced => "IAM policies are stored but not enforced",
            Divergence::MetricFilterMatchesEverything => "metric filters match every event whatever their pattern",
            Divergence::DeleteVpcOrphansDependents => "DeleteVpc succeeds while NACLs remain, leaving them orphaned",
            Divergence::NoReachabilityAnalyzer => "no Reachability Analyzer (NetworkInsights) API",
            Divergence::DefaultSecurityGroupNoSelfIngress => {
                "a VPC's default security group has only the all-egress rule; AWS also gives it ingress from itself"
            }
            Divergence::NatConnectivityTypeEchoed => {
                "a NAT gateway created without ConnectivityType reports connectivity None; AWS reports its default, public"
            }
            Divergence::CloudwatchNoCbor => {
                "CloudWatch does not answer the CBOR protocol the current SDK speaks, so no alarm can be created or read"
            }
        }
    }

    /// How it was established.
    pub fn probed(self) -> bool {
        matches!(
            self,
            Divergence::NaclWithoutDefaultDeny | Divergence::NaclRuleNumberUnbounded | Divergence::CloudwatchNoCbor
        )
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A target's capabilities: which emulator it is, and how it departs from AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Emulator name and version (`LocalStack 4.14.0`), or `None` for AWS itself.
    pub emulator: Option<String>,
    /// Divergences that apply.
    pub divergences: BTreeSet<Divergence>,
    /// What the probe saw, by [`Behaviour`] id (empty when nothing was probed). The
    /// fidelity matrix (`doctor --all`) prints these beside AWS's documented answers.
    #[serde(default)]
    pub observed: std::collections::BTreeMap<String, String>,
}

/// One behaviour the probe measures: a row of the fidelity matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// Stable id, the key in [`Capabilities::observed`].
    pub id: &'static str,
    /// What is asked of the target, in a few words.
    pub question: &'static str,
    /// AWS's documented answer, in the form the probe writes an observation: an observed
    /// value that differs from it is a difference from AWS.
    pub aws: &'static str,
    /// The divergence this behaviour establishes or illustrates, if one is named.
    pub divergence: Option<Divergence>,
    /// Whether only the full probe (`doctor --all`) measures it: because it strands a
    /// default NACL on LocalStack-family emulators, or because its answer names no
    /// divergence the start-up probe could establish, so every run need not pay for it.
    pub full_only: bool,
}

/// Every behaviour the probes measure, in the matrix's order (docs/EMULATOR.md,
/// "Fidelity matrix", gives AWS's side of each).
pub const BEHAVIOURS: [Behaviour; 8] = [
    Behaviour {
        id: "custom-nacl-entries",
        question: "entries of a new custom NACL",
        aws: "* deny (32767) in and out",
        divergence: Some(Divergence::NaclWithoutDefaultDeny),
        full_only: false,
    },
    Behaviour {
        id: "rule-number-40000",
        question: "NACL rule number 40000",
        aws: "refused",
        divergence: Some(Divergence::NaclRuleNumberUnbounded),
        full_only: false,
    },
    Behaviour {
        id: "delete-vpc-with-nacl",
        question: "DeleteVpc while a custom NACL remains",
        aws: "DependencyViolation",
        divergence: Some(Divergence::DeleteVpcOrphansDependents),
        full_only: false,
    },
    Behaviour {
        id: "delete-vpc-with-subnet",
        question: "DeleteVpc while a subnet remains",
        aws: "DependencyViolation",
        divergence: None,
        full_only: true,
    },
    Behaviour {
        id: "stale-association",
        question: "a deleted subnet's NACL association",
        aws: "removed with the subnet",
        divergence: None,
        full_only: true,
    },
    Behaviour {
        id: "flow-log-unusable-role",
        question: "flow log delivering through a role that does not exist",
        aws: "ACTIVE, delivery FAILED",
        divergence: Some(Divergence::FlowLogStatusAlwaysActive),
        full_only: true,
    },
    Behaviour {
        id: "cloudwatch-cbor",
        question: "CloudWatch DescribeAlarms in CBOR (the current SDK)",
        aws: "answers",
        divergence: Some(Divergence::CloudwatchNoCbor),
        full_only: false,
    },
    Behaviour {
        id: "default-group-rules",
        question: "rules of a new VPC's default security group",
        aws: "ingress from itself, egress all",
        divergence: Some(Divergence::DefaultSecurityGroupNoSelfIngress),
        full_only: false,
    },
];

impl Capabilities {
    /// Real AWS: the reference, with no divergences.
    pub fn aws() -> Capabilities {
        Capabilities::default()
    }

    /// Whether a divergence applies.
    pub fn has(&self, d: Divergence) -> bool {
        self.divergences.contains(&d)
    }

    /// Capabilities of a moto-based emulator before probing: the divergences that are not
    /// cheap to probe are the ones measured on LocalStack 4.14.0 (docs/EMULATOR.md,
    /// "Divergences from AWS").
    pub fn emulator(name: String) -> Capabilities {
        Capabilities {
            emulator: Some(name),
            divergences: [
                Divergence::FlowLogStatusAlwaysActive,
                Divergence::IamNotEnforced,
                Divergence::MetricFilterMatchesEverything,
                Divergence::DeleteVpcOrphansDependents,
                Divergence::NoReachabilityAnalyzer,
                Divergence::DefaultSecurityGroupNoSelfIngress,
                Divergence::NatConnectivityTypeEchoed,
            ]
            .into_iter()
            .collect(),
            observed: Default::default(),
        }
    }

    fn saw(&mut self, behaviour: &str, value: impl Into<String>) {
        self.observed.insert(behaviour.to_string(), value.into());
    }
}

/// Tag key that marks probe resources, besides the probe's own run tags.
pub const PROBE_TAG: &str = "microseg:probe";

/// The scenario name in the probe's tags and ledger: its throwaway resources are a run
/// of their own, so `sweep` (`--abandoned`, `--older-than`, `--all`) finds any that a
/// crash or a failed delete left behind, like those of any run.
pub const PROBE_SCENARIO: &str = "capability-probe";

/// What stopped the probe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeCause {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Every delete succeeded, yet the inventory still lists resources of the probe's
    /// run (a create retried after a lost answer can make one the probe never saw).
    #[error("after its deletes, its run still lists {0}")]
    Undeleted(String),
}

/// Why the probe could not decide, or could not clean up after itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The probe stopped; its throwaway resources were removed.
    #[error("capability probe (run {run_id}): {cause}\n(its throwaway resources were removed)")]
    Failed {
        /// What stopped it.
        cause: ProbeCause,
        /// The probe's run id.
        run_id: RunId,
    },
    /// The probe stopped, and its throwaway resources could not all be removed.
    #[error(
        "capability probe (run {run_id}): {cause}\nits throwaway resources may still be there: {left}\n(hint: `microseg sweep --abandoned` finishes them from the ledger {})",
        ledger.display()
    )]
    LeftBehind {
        /// What stopped it.
        cause: ProbeCause,
        /// The probe's run id.
        run_id: RunId,
        /// What is left, or why the clean-up could not tell.
        left: String,
        /// The ledger kept for `sweep`.
        ledger: PathBuf,
    },
}

/// Probes the divergences that are cheap to probe on an emulator, on a throwaway VPC:
/// the default security group's rules; a custom NACL's entries and rule number 40000;
/// CloudWatch in the SDK's CBOR; then `DeleteVpc` while the NACL remains. Everything is deleted again, the VPC's default
/// NACL included where the emulator orphans it. What it saw goes in
/// [`Capabilities::observed`], one entry per [`Behaviour`] it measures.
///
/// `ledger` is a fresh ledger for the probe's own run id: each resource is recorded
/// before the probe goes on, and tagged like a run's. When everything is deleted, the
/// ledger is discarded once the inventory proves it. When anything fails, the probe's
/// run is swept at once (by tag, so a resource the ledger missed is found too) and the
/// ledger kept: marked torn down if the sweep left nothing, open for
/// `sweep --abandoned` if it did not.
pub async fn probe(clients: &Clients, caps: &mut Capabilities, ledger: Ledger) -> Result<(), ProbeError> {
    probe_depth(clients, caps, ledger, false).await
}

/// As [`probe`], plus the behaviours only a full probe measures ([`Behaviour::full_only`]):
/// a flow log through a role that does not exist (with a log group of its own), and a
/// second VPC with a subnet: `DeleteVpc` while the subnet remains, and whether deleting
/// the subnet removes its NACL association. On LocalStack-family emulators that
/// leaves the second VPC's default NACL stranded (untagged, so no run lists it): use it on
/// an emulator that stops afterwards, as `doctor --all` does.
pub async fn probe_full(clients: &Clients, caps: &mut Capabilities, ledger: Ledger) -> Result<(), ProbeError> {
    probe_depth(clients, caps, ledger, true).await
}

async fn probe_depth(clients: &Clients, caps: &mut Capabilities, ledger: Ledger, full: bool) -> Result<(), ProbeError> {
    let run_id = ledger.snapshot().run_id;
    let probed = probe_with(clients, caps, &run_id, &ledger, full).await;
    // Where CloudWatch cannot answer, the inventory and the sweep cannot list alarms.
    let served = clients.clone().serving(caps);
    let clients = &served;
    // The deletes succeeding is not proof: the inventory (by tag) is.
    let cause = match probed {
        Ok(()) => match inventory::list(clients, &Scope::Run(run_id.clone())).await {
            Ok(items) if items.is_empty() => {
                // A ledger file that outlives a failed removal only makes
                // `sweep --abandoned` list an empty run.
                if let Err(e) = ledger.discard() {
                    tracing::warn!("{e}");
                }
                return Ok(());
            }
            Ok(items) => ProbeCause::Undeleted(items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
            Err(e) => ProbeCause::Aws(e),
        },
        Err(cause) => cause,
    };
    let left = match sweep::sweep(clients, &Selection::Run(run_id.clone())).await {
        Ok(report) if report.leftovers.is_empty() => match ledger.mark_torn_down() {
            // Kept, marked done: a record of the failed probe and what it made.
            Ok(()) => return Err(ProbeError::Failed { cause, run_id }),
            Err(e) => format!("none, but the ledger could not be marked done: {e}"),
        },
        Ok(report) => report.leftovers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        Err(e) => format!("the clean-up could not list them: {e}"),
    };
    Err(ProbeError::LeftBehind { cause, run_id, left, ledger: ledger.path().to_path_buf() })
}

async fn probe_with(
    clients: &Clients,
    caps: &mut Capabilities,
    run_id: &RunId,
    ledger: &Ledger,
    full: bool,
) -> Result<(), ProbeCause> {
    let tag_pairs: Vec<(String, String)> = run_id
        .tags(PROBE_SCENARIO)
        .into_iter()
        .chain([(PROBE_TAG.into(), "capabilities".into()), ("Name".into(), "microseg-probe".into())])
        .collect();
    let run_tags: Vec<Tag> = tag_pairs.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    let tags =
        |rt: ResourceType| TagSpecification::builder().resource_type(rt).set_tags(Some(run_tags.clone())).build();
    let record = |kind: ResourceKind, id: &str, logical: &str| {
        ledger.record(LedgerEntry { kind, id: id.to_string(), logical: logical.into(), parent: None })
    };
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.254.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc))
        .send()
        .await
        .map_err(aws_err("CreateVpc"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    record(ResourceKind::Vpc, &vpc_id, "probe-vpc")?;
    // The VPC's default NACL is the probe's too. AWS deletes it with the VPC; LocalStack
    // orphans it (delete-vpc-orphans-dependents), and every orphan slows each later
    // DescribeNetworkAcls on that emulator (measured: 200-400 ms a call after 40 runs,
    // 10-20 ms on a fresh one). Tagged with the probe's run, it is found and removed like
    // the rest, even by a sweep after a crash.
    let defaults = settle("DescribeNetworkAcls", || {
        clients
            .ec2
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
            .filters(Filter::builder().name("default").values("true").build())
            .send()
    })
    .await?;
    let default_acl = defaults.network_acls().first().and_then(|a| a.network_acl_id()).map(str::to_string);
    if let Some(id) = &default_acl {
        settle("CreateTags", || clients.ec2.create_tags().resources(id).set_tags(Some(run_tags.clone())).send())
            .await?;
        record(ResourceKind::DefaultNetworkAcl, id, "probe-default-nacl")?;
    }
    probe_default_group(clients, caps, &vpc_id).await?;
    // Eventual consistency: the VPC just created may be unknown for a moment.
    let acl = settle("CreateNetworkAcl", || {
        clients.ec2.create_network_acl().vpc_id(&vpc_id).tag_specifications(tags(ResourceType::NetworkAcl)).send()
    })
    .await?;
    let acl = acl.network_acl().cloned().unwrap_or_else(|| aws_sdk_ec2::types::NetworkAcl::builder().build());
    let acl_id = acl.network_acl_id().unwrap_or_default().to_string();
    record(ResourceKind::NetworkAcl, &acl_id, "probe-nacl")?;
    let entries = acl.entries();
    let default_deny = entries.len() == 2
        && entries.iter().all(|e| e.rule_number() == Some(32767) && e.rule_action() == Some(&RuleAction::Deny))
        && entries.iter().any(|e| e.egress() == Some(true));
    caps.saw(
        "custom-nacl-entries",
        match entries.len() {
            _ if default_deny => "* deny (32767) in and out".to_string(),
            0 => "none".to_string(),
            n => format!("{n} entries"),
        },
    );
    if entries.is_empty() {
        caps.divergences.insert(Divergence::NaclWithoutDefaultDeny);
    }
    let big = settle("CreateNetworkAclEntry", || {
        clients
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&acl_id)
            .rule_number(40000)
            .protocol("-1")
            .rule_action(RuleAction::Deny)
            .egress(false)
            .cidr_block("0.0.0.0/0")
            .send()
    })
    .await;
    match big {
        Ok(_) => {
            caps.saw("rule-number-40000", "accepted");
            caps.divergences.insert(Divergence::NaclRuleNumberUnbounded);
        }
        // AWS refuses rule numbers above 32766 as an invalid parameter.
        Err(e) if is_invalid_parameter(&e) => caps.saw("rule-number-40000", "refused"),
        // Anything else (an unknown NACL, a denied call, a service that kept failing)
        // says nothing about rule numbers: the probe cannot decide, so it does not guess.
        Err(e) => return Err(e.into()),
    }
    // Two more creates and deletes: the full probe's alone, since flow-log-status-always-
    // active stays a known divergence whatever the answer (no records are ever written).
    if full {
        probe_flow_log(clients, caps, run_id, ledger, &vpc_id, &tag_pairs, &tags(ResourceType::VpcFlowLog)).await?;
    }
    probe_cloudwatch(clients, caps).await?;
    // DeleteVpc while the custom NACL remains: AWS refuses (DependencyViolation); a
    // LocalStack-family emulator deletes the VPC and orphans the NACLs.
    let vpc_gone = match clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc")) {
        Ok(_) => {
            caps.saw("delete-vpc-with-nacl", "deleted, NACLs orphaned");
            caps.divergences.insert(Divergence::DeleteVpcOrphansDependents);
            true
        }
        Err(e) if e.code.as_deref() == Some("DependencyViolation") => {
            caps.saw("delete-vpc-with-nacl", "DependencyViolation");
            false
        }
        Err(e) => return Err(e.into()),
    };
    clients.ec2.delete_network_acl().network_acl_id(&acl_id).send().await.map_err(aws_err("DeleteNetworkAcl"))?;
    if !vpc_gone {
        clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc"))?;
    }
    if let Some(id) = &default_acl {
        match clients.ec2.delete_network_acl().network_acl_id(id).send().await.map_err(aws_err("DeleteNetworkAcl")) {
            // Gone with its VPC, as on AWS.
            Err(e) if e.is_not_found() => {}
            other => {
                other?;
            }
        }
    }
    if full {
        probe_subnet_deletion(clients, caps, ledger, &tags).await?;
    }
    Ok(())
}

/// The rules of a new VPC's default security group: AWS gives it ingress from itself and
/// egress to everywhere.
async fn probe_default_group(clients: &Clients, caps: &mut Capabilities, vpc_id: &str) -> Result<(), ProbeCause> {
    let groups = settle("DescribeSecurityGroups", || {
        clients
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(Filter::builder().name("group-name").values("default").build())
            .send()
    })
    .await?;
    let Some(g) = groups.security_groups().first() else {
        caps.saw("default-group-rules", "no default group");
        return Ok(());
    };
    let all = |p: &aws_sdk_ec2::types::IpPermission| p.ip_protocol() == Some("-1");
    let from_self = g
        .ip_permissions()
        .iter()
        .any(|p| all(p) && p.user_id_group_pairs().iter().any(|u| u.group_id() == g.group_id()));
    let ingress = match (from_self, g.ip_permissions().len()) {
        (_, 0) => "no ingress",
        (true, 1) => "ingress from itself",
        _ => "other ingress",
    };
    let egress_all =
        |p: &aws_sdk_ec2::types::IpPermission| all(p) && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0"));
    let egress = match g.ip_permissions_egress() {
        [] => "no egress",
        [one] if egress_all(one) => "egress all",
        _ => "other egress",
    };
    caps.saw("default-group-rules", format!("{ingress}, {egress}"));
    if !from_self {
        caps.divergences.insert(Divergence::DefaultSecurityGroupNoSelfIngress);
    }
    Ok(())
}

/// A flow log on the probe's VPC to a log group of its own, through a role that does not
/// exist: AWS shows the delivery as FAILED; an emulator that never checks the role says
/// otherwise. Both are deleted before the probe goes on.
async fn probe_flow_log(
    clients: &Clients,
    caps: &mut Capabilities,
    run_id: &RunId,
    ledger: &Ledger,
    vpc_id: &str,
    tag_pairs: &[(String, String)],
    flow_log_tags: &TagSpecification,
) -> Result<(), ProbeCause> {
    let group = run_id.name("microseg-probe-flow-logs");
    let mut req = clients.logs.create_log_group().log_group_name(&group);
    for (k, v) in tag_pairs {
        req = req.tags(k, v);
    }
    req.send().await.map_err(aws_err("CreateLogGroup"))?;
    ledger.record(LedgerEntry {
        kind: ResourceKind::LogGroup,
        id: group.clone(),
        logical: "probe-log-group".into(),
        parent: None,
    })?;
    let role = format!("arn:aws:iam::000000000000:role/{}", run_id.name("microseg-probe-no-such-role"));
    let out = settle("CreateFlowLogs", || {
        clients
            .ec2
            .create_flow_logs()
            .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::Vpc)
            .resource_ids(vpc_id)
            .traffic_type(aws_sdk_ec2::types::TrafficType::All)
            .log_destination_type(aws_sdk_ec2::types::LogDestinationType::CloudWatchLogs)
            .log_group_name(&group)
            .deliver_logs_permission_arn(&role)
            .tag_specifications(flow_log_tags.clone())
            .send()
    })
    .await?;
    match out.flow_log_ids().first() {
        Some(id) => {
            ledger.record(LedgerEntry {
                kind: ResourceKind::FlowLog,
                id: id.clone(),
                logical: "probe-flow-log".into(),
                parent: None,
            })?;
            let described =
                settle("DescribeFlowLogs", || clients.ec2.describe_flow_logs().flow_log_ids(id).send()).await?;
            let seen = described.flow_logs().first().map_or("not listed".to_string(), |f| {
                format!(
                    "{}, delivery {}",
                    f.flow_log_status().unwrap_or("no status"),
                    f.deliver_logs_status().unwrap_or("no status")
                )
            });
            caps.saw("flow-log-unusable-role", seen);
            clients.ec2.delete_flow_logs().flow_log_ids(id).send().await.map_err(aws_err("DeleteFlowLogs"))?;
        }
        None => {
            let why = out.unsuccessful().iter().find_map(|u| u.error()).and_then(|e| e.code()).unwrap_or("no reason");
            caps.saw("flow-log-unusable-role", format!("refused at creation ({why})"));
        }
    }
    clients.logs.delete_log_group().log_group_name(&group).send().await.map_err(aws_err("DeleteLogGroup"))?;
    Ok(())
}

/// One read-only CloudWatch call in the protocol the SDK speaks (smithy-rpc-v2-cbor). A
/// 404 means the target does not know the protocol (docs/EMULATOR.md, "CloudWatch
/// protocol"); any other failure says nothing about it, and the probe stops.
async fn probe_cloudwatch(clients: &Clients, caps: &mut Capabilities) -> Result<(), ProbeCause> {
    match clients.cloudwatch.describe_alarms().max_records(1).send().await {
        Ok(_) => caps.saw("cloudwatch-cbor", "answers"),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            caps.saw("cloudwatch-cbor", "HTTP 404");
            caps.divergences.insert(Divergence::CloudwatchNoCbor);
        }
        Err(e) => return Err(AwsError::from_sdk("DescribeAlarms", e).into()),
    }
    Ok(())
}

/// The full probe's part: a VPC with one subnet. `DeleteVpc` while the subnet remains
/// (AWS: DependencyViolation), then `DeleteSubnet`, then whether the VPC's default NACL
/// still lists an association for the deleted subnet (AWS removes it with the subnet).
async fn probe_subnet_deletion(
    clients: &Clients,
    caps: &mut Capabilities,
    ledger: &Ledger,
    tags: &impl Fn(ResourceType) -> TagSpecification,
) -> Result<(), ProbeCause> {
    let record = |kind: ResourceKind, id: &str, logical: &str| {
        ledger.record(LedgerEntry { kind, id: id.to_string(), logical: logical.into(), parent: None })
    };
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.253.0.0/16")
        .tag_specifications(tags(ResourceType::Vpc))
        .send()
        .await
        .map_err(aws_err("CreateVpc"))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    record(ResourceKind::Vpc, &vpc_id, "probe-subnet-vpc")?;
    let subnet = settle("CreateSubnet", || {
        clients
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.253.1.0/24")
            .tag_specifications(tags(ResourceType::Subnet))
            .send()
    })
    .await?;
    let subnet_id = subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
    record(ResourceKind::Subnet, &subnet_id, "probe-subnet")?;
    let vpc_gone = match clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc")) {
        Ok(_) => {
            caps.saw("delete-vpc-with-subnet", "deleted");
            true
        }
        Err(e) if e.code.as_deref() == Some("DependencyViolation") => {
            caps.saw("delete-vpc-with-subnet", "DependencyViolation");
            false
        }
        Err(e) => return Err(e.into()),
    };
    match clients.ec2.delete_subnet().subnet_id(&subnet_id).send().await.map_err(aws_err("DeleteSubnet")) {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    let acls = settle("DescribeNetworkAcls", || {
        clients.ec2.describe_network_acls().filters(Filter::builder().name("vpc-id").values(&vpc_id).build()).send()
    })
    .await?;
    let stale =
        acls.network_acls().iter().flat_map(|a| a.associations()).any(|a| a.subnet_id() == Some(subnet_id.as_str()));
    caps.saw("stale-association", if stale { "kept" } else { "removed with the subnet" });
    if !vpc_gone {
        clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc"))?;
    }
    Ok(())
}

/// Whether an error is a validation refusal of the request's values (AWS's
/// `InvalidParameterValue` family), as opposed to a failure that says nothing of them.
fn is_invalid_parameter(e: &AwsError) -> bool {
    e.code.as_deref().is_some_and(|c| c.starts_with("InvalidParameter") || c == "ValidationError")
}
