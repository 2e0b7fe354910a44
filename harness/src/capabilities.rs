//! What a target can and cannot show: its named divergences from AWS.
//!
//! A divergence is data, never a blanket tolerance. Checks ask whether a specific one
//! applies and, if so, report the question as undecidable on this target. The cheap
//! ones are probed at start-up ([`probe`]); the rest are known properties of the
//! emulator family (EMULATOR.md, "Divergences from AWS").

use std::collections::BTreeSet;
use std::fmt;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, aws_err, settle};

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
    /// cheap to probe are taken from EMULATOR.md.
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

/// Tag key that marks probe resources, so `sweep` can find any a crash left behind.
pub const PROBE_TAG: &str = "microseg:probe";

/// Probes the cheap divergences on an emulator: creates a throwaway VPC and NACL, reads
/// the NACL's entries, tries rule number 40000, and deletes both.
pub async fn probe(clients: &Clients, caps: &mut Capabilities) -> Result<(), AwsError> {
    let tags = |rt: ResourceType| {
        TagSpecification::builder()
            .resource_type(rt)
            .tags(Tag::builder().key(PROBE_TAG).value("capabilities").build())
            .tags(Tag::builder().key("Name").value("microseg-probe").build())
            .build()
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
    let result = async {
        // Eventual consistency: the VPC just created may be unknown for a moment.
        let acl = settle("CreateNetworkAcl", || {
            clients.ec2.create_network_acl().vpc_id(&vpc_id).tag_specifications(tags(ResourceType::NetworkAcl)).send()
        })
        .await?;
        let acl = acl.network_acl().cloned().unwrap_or_else(|| aws_sdk_ec2::types::NetworkAcl::builder().build());
        let acl_id = acl.network_acl_id().unwrap_or_default().to_string();
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
            // An unknown NACL says nothing about rule numbers.
            Err(e) if e.is_unknown_id() => return Err(e),
            // AWS refuses rule numbers above 32766.
            Err(_) => {}
        }
        clients.ec2.delete_network_acl().network_acl_id(&acl_id).send().await.map_err(aws_err("DeleteNetworkAcl"))?;
        Ok::<_, AwsError>(())
    }
    .await;
    let deleted = clients.ec2.delete_vpc().vpc_id(&vpc_id).send().await.map_err(aws_err("DeleteVpc"));
    result?;
    deleted?;
    Ok(())
}
