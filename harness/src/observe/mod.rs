//! What is deployed, in one normalised model: [`Observed`].
//!
//! Everything that reads a deployment produces an `Observed`: the live reader here (a
//! fixed set of describe calls, each resource type read once, filtered by VPC) and a
//! JSON snapshot of an earlier read. Checks and the reachability evaluator take nothing
//! else, so there are no two code paths for "what is deployed".

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{NaclEntry, SgRule};

/// Version of the snapshot format; bumped on incompatible changes.
pub const OBSERVED_FORMAT_VERSION: u32 = 1;

/// A deployment as read, normalised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// [`OBSERVED_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Region read.
    pub region: String,
    /// The VPC, if found.
    pub vpc: Option<ObservedVpc>,
    /// Subnets of the VPC.
    pub subnets: Vec<ObservedSubnet>,
    /// NACLs of the VPC, the default one included.
    pub nacls: Vec<ObservedNacl>,
    /// Security groups of the VPC, the default one included.
    pub security_groups: Vec<ObservedSecurityGroup>,
    /// Route tables of the VPC, the main one included.
    pub route_tables: Vec<ObservedRouteTable>,
    /// Internet gateways attached to the VPC.
    pub internet_gateways: Vec<ObservedInternetGateway>,
    /// NAT gateways in the VPC's subnets, deleted ones left out.
    #[serde(default)]
    pub nat_gateways: Vec<ObservedNatGateway>,
    /// Egress-only internet gateways attached to the VPC.
    #[serde(default)]
    pub egress_only_internet_gateways: Vec<ObservedInternetGateway>,
    /// VPC endpoints in the VPC.
    #[serde(default)]
    pub vpc_endpoints: Vec<ObservedVpcEndpoint>,
    /// Peering connections the VPC requested or accepted, closed ones left out.
    #[serde(default)]
    pub peering_connections: Vec<ObservedPeering>,
    /// Network interfaces in the VPC's subnets.
    #[serde(default)]
    pub network_interfaces: Vec<ObservedNetworkInterface>,
    /// Flow logs whose resource is the VPC or one of its subnets.
    pub flow_logs: Vec<ObservedFlowLog>,
    /// IAM roles that flow logs deliver through.
    pub roles: Vec<ObservedRole>,
    /// Log groups that flow logs deliver to.
    pub log_groups: Vec<ObservedLogGroup>,
    /// Alarms on metrics that those log groups' metric filters publish.
    pub alarms: Vec<ObservedAlarm>,
}

/// Tags as a sorted map.
pub type Tags = BTreeMap<String, String>;

/// The VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedVpc {
    /// `vpc-…`
    pub id: String,
    /// Primary IPv4 CIDR.
    pub cidr: IpNet,
    /// Tags.
    pub tags: Tags,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedSubnet {
    /// `subnet-…`
    pub id: String,
    /// IPv4 CIDR.
    pub cidr: IpNet,
    /// Availability zone.
    pub availability_zone: String,
    /// Whether instances launched here get a public IPv4 address by default
    /// (`MapPublicIpOnLaunch`).
    #[serde(default)]
    pub map_public_ip_on_launch: bool,
    /// Whether network interfaces created here get an IPv6 address by default
    /// (`AssignIpv6AddressOnCreation`); IPv6 addresses are public.
    #[serde(default)]
    pub assign_ipv6_on_creation: bool,
    /// Tags.
    pub tags: Tags,
}

/// A network ACL with its entries sorted by direction, then rule number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNacl {
    /// `acl-…`
    pub id: String,
    /// Whether this is the VPC's default NACL.
    pub is_default: bool,
    /// Entries, the `*` default deny (32767) included where the target has it.
    pub entries: Vec<NaclEntry>,
    /// Associations.
    pub associations: Vec<NaclAssociation>,
    /// Tags.
    pub tags: Tags,
}

/// A NACL–subnet association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NaclAssociation {
    /// `aclassoc-…`
    pub id: String,
    /// The subnet.
    pub subnet_id: String,
}

/// A security group with its rules, one per peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedSecurityGroup {
    /// `sg-…`
    pub id: String,
    /// `GroupName`.
    pub name: String,
    /// Description.
    pub description: String,
    /// Rules; group peers are [`crate::model::Peer::GroupId`] as read.
    pub rules: Vec<SgRule>,
    /// Tags.
    pub tags: Tags,
}

/// A route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRouteTable {
    /// `rtb-…`
    pub id: String,
    /// Whether this is the VPC's main route table.
    pub is_main: bool,
    /// Subnets explicitly associated.
    pub subnet_ids: Vec<String>,
    /// Routes.
    pub routes: Vec<ObservedRoute>,
    /// Tags.
    pub tags: Tags,
}

/// The target of a route that names none.
pub const NO_TARGET: &str = "(no target)";

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRoute {
    /// Destination CIDR.
    pub destination: String,
    /// `local`, `igw-…`, `nat-…`, … as EC2 reports it; [`NO_TARGET`] for a route that
    /// names none.
    pub target: String,
    /// `active` or `blackhole`.
    pub state: Option<String>,
}

/// An internet gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInternetGateway {
    /// `igw-…`
    pub id: String,
    /// VPCs it is attached to.
    pub attached_vpc_ids: Vec<String>,
    /// Tags.
    pub tags: Tags,
}

/// A NAT gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNatGateway {
    /// `nat-…`
    pub id: String,
    /// The subnet it sits in.
    pub subnet_id: String,
    /// `pending`, `available`, `deleting`, `failed`.
    pub state: String,
    /// `public` or `private`.
    pub connectivity: String,
    /// Elastic IP allocations (`eipalloc-…`) of its public addresses.
    pub allocation_ids: Vec<String>,
    /// Its private address in the subnet, where known.
    pub private_ip: Option<String>,
    /// Tags.
    pub tags: Tags,
}

/// A VPC endpoint: a private way to a service, which routes (gateway endpoints) or
/// places interfaces in subnets (interface endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedVpcEndpoint {
    /// `vpce-…`
    pub id: String,
    /// The service, e.g. `com.amazonaws.us-east-1.s3`.
    pub service_name: String,
    /// `Gateway`, `Interface` or `GatewayLoadBalancer`.
    pub endpoint_type: String,
    /// `available`, `pending`, …
    pub state: String,
    /// Route tables a gateway endpoint adds its routes to.
    pub route_table_ids: Vec<String>,
    /// Subnets an interface endpoint has interfaces in.
    pub subnet_ids: Vec<String>,
    /// Tags.
    pub tags: Tags,
}

/// A VPC peering connection of the VPC, either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedPeering {
    /// `pcx-…`
    pub id: String,
    /// The VPC that asked.
    pub requester_vpc_id: String,
    /// The VPC that accepted (or is asked to).
    pub accepter_vpc_id: String,
    /// `active`, `pending-acceptance`, `provisioning`, …
    pub status: String,
    /// Tags.
    pub tags: Tags,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNetworkInterface {
    /// `eni-…`
    pub id: String,
    /// The subnet it sits in.
    pub subnet_id: String,
    /// `interface`, `nat_gateway`, `vpc_endpoint`, … as EC2 reports it.
    pub interface_type: String,
    /// Description, as its creator set it.
    pub description: String,
    /// Public IPv4 addresses on it (an Elastic IP or an auto-assigned one).
    pub public_ips: Vec<String>,
    /// IPv6 addresses on it.
    pub ipv6_addresses: Vec<String>,
    /// Tags.
    pub tags: Tags,
}

/// A flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFlowLog {
    /// `fl-…`
    pub id: String,
    /// The VPC, subnet or ENI it watches.
    pub resource_id: String,
    /// `ALL`, `ACCEPT` or `REJECT`.
    pub traffic_type: Option<String>,
    /// `cloud-watch-logs`, `s3`, …
    pub destination_type: Option<String>,
    /// Log group name, for CloudWatch Logs.
    pub log_group_name: Option<String>,
    /// Role ARN the service delivers through.
    pub deliver_logs_permission_arn: Option<String>,
    /// `ACTIVE`, …
    pub flow_log_status: Option<String>,
    /// `SUCCESS` or `FAILED`.
    pub deliver_logs_status: Option<String>,
    /// Error text of a failed delivery.
    pub deliver_logs_error_message: Option<String>,
    /// Tags.
    pub tags: Tags,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRole {
    /// Role name.
    pub name: String,
    /// Role ARN.
    pub arn: String,
    /// Path.
    pub path: String,
    /// Trust policy, parsed.
    pub trust_policy: serde_json::Value,
    /// Inline policies by name, parsed.
    pub inline_policies: BTreeMap<String, serde_json::Value>,
    /// ARNs of attached managed policies.
    pub attached_policy_arns: Vec<String>,
    /// Tags.
    pub tags: Tags,
}

/// A CloudWatch Logs group with its metric filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLogGroup {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: Option<String>,
    /// Retention in days; `None` is "never expire".
    pub retention_days: Option<i32>,
    /// Metric filters on the group.
    pub metric_filters: Vec<ObservedMetricFilter>,
    /// Tags.
    pub tags: Tags,
}

/// A metric filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedMetricFilter {
    /// Name.
    pub name: String,
    /// Filter pattern.
    pub pattern: String,
    /// Namespace, metric name and value it publishes.
    pub metrics: Vec<MetricTransformation>,
}

/// What a metric filter publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricTransformation {
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub name: String,
    /// Value per match.
    pub value: String,
}

/// A CloudWatch alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedAlarm {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: Option<String>,
    /// Namespace of the metric.
    pub namespace: Option<String>,
    /// Metric name.
    pub metric_name: Option<String>,
    /// Statistic.
    pub statistic: Option<String>,
    /// Period, seconds.
    pub period: Option<i32>,
    /// Evaluation periods.
    pub evaluation_periods: Option<i32>,
    /// Threshold.
    pub threshold: Option<f64>,
    /// Comparison operator.
    pub comparison: Option<String>,
    /// Dimensions.
    pub dimensions: BTreeMap<String, String>,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: Option<String>,
    /// Tags.
    pub tags: Tags,
}

impl Observed {
    /// The subnet of an id.
    pub fn subnet(&self, id: &str) -> Option<&ObservedSubnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// The NACL of an id.
    pub fn nacl(&self, id: &str) -> Option<&ObservedNacl> {
        self.nacls.iter().find(|n| n.id == id)
    }

    /// The NACL a subnet is associated with.
    pub fn nacl_of_subnet(&self, subnet_id: &str) -> Option<&ObservedNacl> {
        self.nacls.iter().find(|n| n.associations.iter().any(|a| a.subnet_id == subnet_id))
    }

    /// The VPC's default NACL.
    pub fn default_nacl(&self) -> Option<&ObservedNacl> {
        self.nacls.iter().find(|n| n.is_default)
    }

    /// The security group of an id.
    pub fn security_group(&self, id: &str) -> Option<&ObservedSecurityGroup> {
        self.security_groups.iter().find(|g| g.id == id)
    }

    /// Whether `id` is an internet gateway attached to `vpc`.
    pub fn internet_gateway_attached(&self, id: &str, vpc: &str) -> bool {
        self.internet_gateways.iter().any(|g| g.id == id && g.attached_vpc_ids.iter().any(|v| v == vpc))
    }

    /// A NAT gateway by id.
    pub fn nat_gateway(&self, id: &str) -> Option<&ObservedNatGateway> {
        self.nat_gateways.iter().find(|n| n.id == id)
    }

    /// The route table that governs a subnet: its explicit association, else the main one.
    pub fn route_table_of_subnet(&self, subnet_id: &str) -> Option<&ObservedRouteTable> {
        self.route_tables
            .iter()
            .find(|t| t.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.route_tables.iter().find(|t| t.is_main))
    }
}

mod live;

#[cfg(test)]
mod aws_shapes;

pub use live::{ObserveError, read_live};
