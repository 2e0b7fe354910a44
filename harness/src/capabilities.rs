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

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
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
}

impl Divergence {
    /// Every divergence, for documentation and `doctor`.
    pub const ALL: [Divergence; 9] = [
        Divergence::NaclWithoutDefaultDeny,
        Divergence::NaclRuleNumberUnbounded,
        Divergence::FlowLogStatusAlwaysActive,
        Divergence::IamNotEnforced,
        Divergence::MetricFilterMatchesEverything,
        Divergence::DeleteVpcOrphansDependents,
        Divergence::NoReachabilityAnalyzer,
        Divergence::DefaultSecurityGroupNoSelfIngress,
        Divergence::NatConnectivityTypeEchoed,
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
        }
    }

    /// How it was established.
    pub fn probed(self) -> bool {
        matches!(self, Divergence::NaclWithoutDefaultDeny | Divergence::NaclRuleNumberUnbounded)
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
}

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
        }
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

/// Probes the cheap divergences on an emulator: creates a throwaway VPC and NACL, reads
/// the NACL's entries, tries rule number 40000, and deletes both, and the VPC's default
/// NACL where the emulator orphans it.
///
/// `ledger` is a fresh ledger for the probe's own run id: each resource is recorded
/// before the probe goes on, and tagged like a run's. When everything is deleted, the
/// ledger is discarded once the inventory proves it. When anything fails, the probe's
/// run is swept at once (by tag, so a resource the ledger missed is found too) and the
/// ledger kept: marked torn down if the sweep left nothing, open for
/// `sweep --abandoned` if it did not.
pub async fn probe(clients: &Clients, caps: &mut Capabilities, ledger: Ledger) -> Result<(), ProbeError> {
    let run_id = ledger.snapshot().run_id;
    let probed = probe_with(clients, caps, &run_id, &ledger).await;
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
) -> Result<(), ProbeCause> {
    let run_tags: Vec<Tag> = run_id
        .tags(PROBE_SCENARIO)
        .into_iter()
        .chain([(PROBE_TAG.into(), "capabilities".into()), ("Name".into(), "microseg-probe".into())])
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
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
    // Eventual consistency: the VPC just created may be unknown for a moment.
    let acl = settle("CreateNetworkAcl", || {
        clients.ec2.create_network_acl().vpc_id(&vpc_id).tag_specifications(tags(ResourceType::NetworkAcl)).send()
    })
    .await?;
    let acl = acl.network_acl().cloned().unwrap_or_else(|| aws_sdk_ec2::types::NetworkAcl::builder().build());
    let acl_id = acl.network_acl_id().unwrap_or_default().to_string();
    record(ResourceKind::NetworkAcl, &acl_id, "probe-nacl")?;
    if acl.entries().is_empty() {
        caps.divergences.insert(Divergence::NaclWithoutDefaultDeny);
    }
    let big = settle("CreateNetworkAclEntry", || {
        clients
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&acl_id)
            .rule_number(40000)
            .protocol("-1")
            .rule_action(aws_sdk_ec2::types::RuleAction::Deny)
            .egress(false)
            .cidr_block("0.0.0.0/0")
            .send()
    })
    .await;
    match big {
        Ok(_) => {
            caps.divergences.insert(Divergence::NaclRuleNumberUnbounded);
        }
        // AWS refuses rule numbers above 32766 as an invalid parameter.
        Err(e) if is_invalid_parameter(&e) => {}
        // Anything else (an unknown NACL, a denied call, a service that kept failing)
        // says nothing about rule numbers: the probe cannot decide, so it does not guess.
        Err(e) => return Err(e.into()),
    }
    clients.ec2.delete_network_acl().network_acl_id(&acl_id).send().await.map_err(aws_err("DeleteNetworkAcl"))?;
    clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc"))?;
    if let Some(id) = &default_acl {
        match clients.ec2.delete_network_acl().network_acl_id(id).send().await.map_err(aws_err("DeleteNetworkAcl")) {
            // Gone with its VPC, as on AWS.
            Err(e) if e.is_not_found() => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Whether an error is a validation refusal of the request's values (AWS's
/// `InvalidParameterValue` family), as opposed to a failure that says nothing of them.
fn is_invalid_parameter(e: &AwsError) -> bool {
    e.code.as_deref().is_some_and(|c| c.starts_with("InvalidParameter") || c == "ValidationError")
}
