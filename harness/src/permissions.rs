//! Every AWS operation microseg calls, and the IAM actions each one needs: the one list
//! that the sandbox role's policy (`.github/aws/sandbox-policy.json`), the
//! policy's tests and `doctor`'s permission simulation all read.
//!
//! An operation is named as the call counter names it ([`crate::aws::CallCounter`]:
//! `EC2:CreateVpc`, `CloudWatch Logs:PutMetricFilter`). Its grants are the IAM actions AWS
//! authorises for it, each on the resources it is authorised against, as AWS's Service
//! Authorization Reference lists them: the operation's own action, and the ones a request
//! of microseg's shape adds (`ec2:CreateTags` for tags given at creation, `iam:TagRole`
//! for a role created with tags, `iam:PassRole` for the flow log's delivery role).
//! docs/SANDBOX.md explains the policy statement by statement.
//!
//! [`Need`] says when a scenario calls an operation, from what its plan contains (NAT
//! gateways, a flow log, an alarm…), so `doctor` simulates what that scenario will call
//! and nothing else; nothing here names a scenario.

use std::collections::BTreeSet;

use crate::plan::Plan;
use crate::run_id::RunId;

/// When an operation is called, judged from a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// By every run, sweep or validation (the VPC, its subnets and groups, every read of
    /// the inventory and of the observation).
    Always,
    /// When the plan has NACLs of its own.
    Nacls,
    /// When the plan has route tables.
    RouteTables,
    /// When the plan has an internet gateway.
    InternetGateway,
    /// When the plan has NAT gateways (and so Elastic IPs).
    NatGateways,
    /// When the plan has a flow log (its role, log group and flow log).
    FlowLog,
    /// When the plan has an alarm (its metric filter and alarm).
    Alarm,
    /// By `doctor`'s preflight (quotas, the permission simulation).
    Preflight,
}

impl Need {
    /// Whether a run of `plan` needs it.
    pub fn applies(self, plan: &Plan) -> bool {
        match self {
            Need::Always | Need::Preflight => true,
            Need::Nacls => !plan.nacls.is_empty(),
            Need::RouteTables => !plan.route_tables.is_empty(),
            Need::InternetGateway => plan.internet_gateway.is_some(),
            Need::NatGateways => !plan.nat_gateways.is_empty(),
            Need::FlowLog => plan.flow_log.is_some(),
            Need::Alarm => plan.alarm.is_some(),
        }
    }
}

/// A resource an action is authorised against, as a kind. [`Resource::sample_arn`]
/// gives the ARN of one that a run would touch, for the permission simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// No resource-level permission: the action is authorised on `*`.
    Any,
    /// A run's VPC.
    Vpc,
    /// A run's subnet.
    Subnet,
    /// A run's NACL.
    NetworkAcl,
    /// A VPC's default NACL (which AWS creates without the run's tags).
    DefaultNetworkAcl,
    /// A VPC's default security group (which AWS creates without the run's tags), whose
    /// rules a hardened build revokes.
    DefaultSecurityGroup,
    /// A run's security group.
    SecurityGroup,
    /// A run's route table.
    RouteTable,
    /// A run's internet gateway.
    InternetGateway,
    /// A run's Elastic IP.
    ElasticIp,
    /// A run's NAT gateway.
    NatGateway,
    /// A run's flow log.
    FlowLog,
    /// A run's flow-log delivery role (under `/microseg/`, named `<base>-<run id>`).
    Role,
    /// Any role: a deployment that microseg did not build names its own.
    AnyRole,
    /// The role `doctor` simulates: the caller's own.
    CallerRole,
    /// A run's log group (`<base>-<run id>`).
    LogGroup,
    /// Any log group (what a validated deployment's flow log writes to).
    AnyLogGroup,
    /// A run's alarm (`<base>-<run id>`).
    Alarm,
    /// Any alarm (listing reads every alarm of the region).
    AnyAlarm,
    /// One Service Quotas quota: service code and quota code.
    Quota(&'static str, &'static str),
}

/// What a sample ARN is built from.
#[derive(Debug, Clone)]
pub struct ArnContext<'a> {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: &'a str,
    /// Region of the run.
    pub region: &'a str,
    /// Account of the run.
    pub account: &'a str,
    /// The caller's role ARN (for [`Resource::CallerRole`]).
    pub caller_role: &'a str,
    /// The account-wide names a run of the plan would create.
    pub names: &'a SampleNames,
}

/// The account-wide names a run of a plan creates, with a sample run id: what the
/// simulation authorises, so a policy scoped by name is judged on the real names.
#[derive(Debug, Clone)]
pub struct SampleNames {
    /// Role name.
    pub role: String,
    /// Log group name.
    pub log_group: String,
    /// Alarm name.
    pub alarm: String,
}

impl SampleNames {
    /// The names a run of `plan` with run id `ms-0000000000` would create.
    pub fn of(plan: &Plan) -> SampleNames {
        let run = sample_run_id();
        SampleNames {
            role: plan.flow_log.as_ref().map_or_else(|| run.name("FlowLogsRole"), |f| run.name(&f.role_name)),
            log_group: plan.flow_log.as_ref().map_or_else(|| run.name("/flowlogs"), |f| run.name(&f.log_group)),
            alarm: plan.alarm.as_ref().map_or_else(|| run.name("alarm"), |a| run.name(&a.name)),
        }
    }
}

/// The run id the simulation puts in the run tag and the names.
pub fn sample_run_id() -> RunId {
    RunId::parse("ms-0000000000").expect("a well-formed run id")
}

impl Resource {
    /// The ARN of one such resource as a run would touch it (`*` for [`Resource::Any`]).
    pub fn sample_arn(self, c: &ArnContext<'_>) -> String {
        let ec2 = |kind: &str, id: &str| format!("arn:{}:ec2:{}:{}:{kind}/{id}", c.partition, c.region, c.account);
        match self {
            Resource::Any => "*".into(),
            Resource::Vpc => ec2("vpc", "vpc-0123456789abcdef0"),
            Resource::Subnet => ec2("subnet", "subnet-0123456789abcdef0"),
            Resource::NetworkAcl => ec2("network-acl", "acl-0123456789abcdef0"),
            Resource::DefaultNetworkAcl => ec2("network-acl", "acl-0fedcba9876543210"),
            Resource::DefaultSecurityGroup => ec2("security-group", "sg-0fedcba9876543210"),
            Resource::SecurityGroup => ec2("security-group", "sg-0123456789abcdef0"),
            Resource::RouteTable => ec2("route-table", "rtb-0123456789abcdef0"),
            Resource::InternetGateway => ec2("internet-gateway", "igw-0123456789abcdef0"),
            Resource::ElasticIp => ec2("elastic-ip", "eipalloc-0123456789abcdef0"),
            Resource::NatGateway => ec2("natgateway", "nat-0123456789abcdef0"),
            Resource::FlowLog => ec2("vpc-flow-log", "fl-0123456789abcdef0"),
            Resource::Role => format!("arn:{}:iam::{}:role/microseg/{}", c.partition, c.account, c.names.role),
            Resource::AnyRole => format!("arn:{}:iam::{}:role/flow-logs-delivery", c.partition, c.account),
            Resource::CallerRole => c.caller_role.to_string(),
            Resource::LogGroup => {
                format!("arn:{}:logs:{}:{}:log-group:{}", c.partition, c.region, c.account, c.names.log_group)
            }
            Resource::AnyLogGroup => {
                format!("arn:{}:logs:{}:{}:log-group:/aws/vpc/flow-logs", c.partition, c.region, c.account)
            }
            Resource::Alarm => {
                format!("arn:{}:cloudwatch:{}:{}:alarm:{}", c.partition, c.region, c.account, c.names.alarm)
            }
            Resource::AnyAlarm => {
                format!("arn:{}:cloudwatch:{}:{}:alarm:rejected-traffic", c.partition, c.region, c.account)
            }
            Resource::Quota(service, code) => {
                format!("arn:{}:servicequotas:{}:{}:{service}/{code}", c.partition, c.region, c.account)
            }
        }
    }
}

/// One IAM action an operation needs, and the resources AWS authorises it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// `ec2:CreateVpc`.
    pub action: &'static str,
    /// Each resource the request is authorised against; every one must be allowed.
    pub on: &'static [Resource],
    /// For `ec2:CreateTags` at creation: the create action it comes with, which AWS
    /// gives as the condition key `ec2:CreateAction`.
    pub create_action: Option<&'static str>,
}

/// An operation microseg calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// As the call counter names it: `EC2:CreateVpc`.
    pub name: &'static str,
    /// The IAM actions it needs (none for `STS:GetCallerIdentity`, which AWS allows
    /// every caller).
    pub grants: &'static [Grant],
    /// When a scenario calls it.
    pub need: Need,
}

impl Operation {
    /// Whether the call changes anything (a create, a change or a delete), judged by
    /// its verb: AWS's reads are `Describe*`, `List*`, `Get*` and IAM's `Simulate*`.
    pub fn is_mutating(&self) -> bool {
        is_mutating(self.name)
    }
}

/// Whether an operation as the counter names it (`EC2:CreateVpc`) changes anything.
pub fn is_mutating(operation: &str) -> bool {
    let verb = operation.rsplit(':').next().unwrap_or(operation);
    !["Describe", "List", "Get", "Simulate"].iter().any(|p| verb.starts_with(p))
}

const fn g(action: &'static str, on: &'static [Resource]) -> Grant {
    Grant { action, on, create_action: None }
}

/// `ec2:CreateTags` on a resource created with tags by `create_action`.
const fn tag_on_create(create_action: &'static str, on: &'static [Resource]) -> Grant {
    Grant { action: "ec2:CreateTags", on, create_action: Some(create_action) }
}

const fn op(name: &'static str, grants: &'static [Grant], need: Need) -> Operation {
    Operation { name, grants, need }
}

use Resource as R;

/// The Service Quotas quotas `doctor` reads (`crate::preflight` holds what each one
/// limits). The sandbox policy grants `servicequotas:GetServiceQuota` on exactly these.
pub const QUOTA_RESOURCES: &[Resource] = &[
    R::Quota("vpc", "L-F678F1CE"),
    R::Quota("vpc", "L-A4707A72"),
    R::Quota("vpc", "L-FE5A380F"),
    R::Quota("vpc", "L-E79EC296"),
    R::Quota("vpc", "L-407747CB"),
    R::Quota("vpc", "L-B4A6D682"),
    R::Quota("vpc", "L-2AEEBF1A"),
    R::Quota("vpc", "L-589F43AA"),
    R::Quota("vpc", "L-93826ACB"),
    R::Quota("vpc", "L-0EA8095F"),
    R::Quota("ec2", "L-0263D0A3"),
];

/// Every operation microseg calls on AWS, with what it needs.
pub const OPERATIONS: &[Operation] = &[
    // Identity: AWS answers GetCallerIdentity for every caller, whatever its policies.
    op("STS:GetCallerIdentity", &[], Need::Always),
    // EC2: creates, each tagged at creation (so ec2:CreateTags with ec2:CreateAction).
    op("EC2:CreateVpc", &[g("ec2:CreateVpc", &[R::Vpc]), tag_on_create("CreateVpc", &[R::Vpc])], Need::Always),
    op(
        "EC2:CreateSubnet",
        &[g("ec2:CreateSubnet", &[R::Subnet, R::Vpc]), tag_on_create("CreateSubnet", &[R::Subnet])],
        Need::Always,
    ),
    op(
        "EC2:CreateNetworkAcl",
        &[g("ec2:CreateNetworkAcl", &[R::NetworkAcl, R::Vpc]), tag_on_create("CreateNetworkAcl", &[R::NetworkAcl])],
        Need::Nacls,
    ),
    op(
        "EC2:CreateSecurityGroup",
        &[
            g("ec2:CreateSecurityGroup", &[R::SecurityGroup, R::Vpc]),
            tag_on_create("CreateSecurityGroup", &[R::SecurityGroup]),
        ],
        Need::Always,
    ),
    op(
        "EC2:CreateRouteTable",
        &[g("ec2:CreateRouteTable", &[R::RouteTable, R::Vpc]), tag_on_create("CreateRouteTable", &[R::RouteTable])],
        Need::RouteTables,
    ),
    op(
        "EC2:CreateInternetGateway",
        &[
            g("ec2:CreateInternetGateway", &[R::InternetGateway]),
            tag_on_create("CreateInternetGateway", &[R::InternetGateway]),
        ],
        Need::InternetGateway,
    ),
    op(
        "EC2:AllocateAddress",
        &[g("ec2:AllocateAddress", &[R::ElasticIp]), tag_on_create("AllocateAddress", &[R::ElasticIp])],
        Need::NatGateways,
    ),
    op(
        "EC2:CreateNatGateway",
        &[
            g("ec2:CreateNatGateway", &[R::NatGateway, R::ElasticIp, R::Subnet, R::Vpc]),
            tag_on_create("CreateNatGateway", &[R::NatGateway]),
        ],
        Need::NatGateways,
    ),
    op(
        "EC2:CreateFlowLogs",
        &[
            g("ec2:CreateFlowLogs", &[R::FlowLog, R::Vpc]),
            tag_on_create("CreateFlowLogs", &[R::FlowLog]),
            g("iam:PassRole", &[R::Role]),
        ],
        Need::FlowLog,
    ),
    // EC2: changes to the run's own resources.
    op("EC2:CreateNetworkAclEntry", &[g("ec2:CreateNetworkAclEntry", &[R::NetworkAcl])], Need::Nacls),
    op(
        "EC2:ReplaceNetworkAclAssociation",
        &[g("ec2:ReplaceNetworkAclAssociation", &[R::NetworkAcl, R::DefaultNetworkAcl, R::Subnet])],
        Need::Nacls,
    ),
    op(
        "EC2:AuthorizeSecurityGroupIngress",
        &[g("ec2:AuthorizeSecurityGroupIngress", &[R::SecurityGroup])],
        Need::Always,
    ),
    op("EC2:AuthorizeSecurityGroupEgress", &[g("ec2:AuthorizeSecurityGroupEgress", &[R::SecurityGroup])], Need::Always),
    op(
        "EC2:RevokeSecurityGroupEgress",
        &[g("ec2:RevokeSecurityGroupEgress", &[R::SecurityGroup, R::DefaultSecurityGroup])],
        Need::Always,
    ),
    op(
        "EC2:RevokeSecurityGroupIngress",
        &[g("ec2:RevokeSecurityGroupIngress", &[R::SecurityGroup, R::DefaultSecurityGroup])],
        Need::Always,
    ),
    op("EC2:ModifySubnetAttribute", &[g("ec2:ModifySubnetAttribute", &[R::Subnet])], Need::Always),
    op("EC2:CreateRoute", &[g("ec2:CreateRoute", &[R::RouteTable])], Need::RouteTables),
    op("EC2:AssociateRouteTable", &[g("ec2:AssociateRouteTable", &[R::RouteTable, R::Subnet])], Need::RouteTables),
    op(
        "EC2:DisassociateRouteTable",
        &[g("ec2:DisassociateRouteTable", &[R::RouteTable, R::Subnet])],
        Need::RouteTables,
    ),
    op(
        "EC2:AttachInternetGateway",
        &[g("ec2:AttachInternetGateway", &[R::InternetGateway, R::Vpc])],
        Need::InternetGateway,
    ),
    op(
        "EC2:DetachInternetGateway",
        &[g("ec2:DetachInternetGateway", &[R::InternetGateway, R::Vpc])],
        Need::InternetGateway,
    ),
    // EC2: deletes, each of a resource carrying the run tag.
    op("EC2:DeleteVpc", &[g("ec2:DeleteVpc", &[R::Vpc])], Need::Always),
    op("EC2:DeleteSubnet", &[g("ec2:DeleteSubnet", &[R::Subnet])], Need::Always),
    op("EC2:DeleteNetworkAcl", &[g("ec2:DeleteNetworkAcl", &[R::NetworkAcl])], Need::Nacls),
    op("EC2:DeleteSecurityGroup", &[g("ec2:DeleteSecurityGroup", &[R::SecurityGroup])], Need::Always),
    op("EC2:DeleteRouteTable", &[g("ec2:DeleteRouteTable", &[R::RouteTable])], Need::RouteTables),
    op("EC2:DeleteInternetGateway", &[g("ec2:DeleteInternetGateway", &[R::InternetGateway])], Need::InternetGateway),
    op("EC2:DeleteNatGateway", &[g("ec2:DeleteNatGateway", &[R::NatGateway])], Need::NatGateways),
    op("EC2:ReleaseAddress", &[g("ec2:ReleaseAddress", &[R::ElasticIp])], Need::NatGateways),
    op("EC2:DeleteFlowLogs", &[g("ec2:DeleteFlowLogs", &[R::FlowLog])], Need::FlowLog),
    // EC2: reads. EC2's Describe actions have no resource-level permissions.
    op("EC2:DescribeVpcs", &[g("ec2:DescribeVpcs", &[R::Any])], Need::Always),
    op("EC2:DescribeSubnets", &[g("ec2:DescribeSubnets", &[R::Any])], Need::Always),
    op("EC2:DescribeNetworkAcls", &[g("ec2:DescribeNetworkAcls", &[R::Any])], Need::Always),
    op("EC2:DescribeSecurityGroups", &[g("ec2:DescribeSecurityGroups", &[R::Any])], Need::Always),
    op("EC2:DescribeRouteTables", &[g("ec2:DescribeRouteTables", &[R::Any])], Need::Always),
    op("EC2:DescribeInternetGateways", &[g("ec2:DescribeInternetGateways", &[R::Any])], Need::Always),
    op("EC2:DescribeFlowLogs", &[g("ec2:DescribeFlowLogs", &[R::Any])], Need::Always),
    op("EC2:DescribeNatGateways", &[g("ec2:DescribeNatGateways", &[R::Any])], Need::Always),
    op("EC2:DescribeAddresses", &[g("ec2:DescribeAddresses", &[R::Any])], Need::Always),
    op(
        "EC2:DescribeEgressOnlyInternetGateways",
        &[g("ec2:DescribeEgressOnlyInternetGateways", &[R::Any])],
        Need::Always,
    ),
    op("EC2:DescribeVpcEndpoints", &[g("ec2:DescribeVpcEndpoints", &[R::Any])], Need::Always),
    op("EC2:DescribeVpcPeeringConnections", &[g("ec2:DescribeVpcPeeringConnections", &[R::Any])], Need::Always),
    op("EC2:DescribeNetworkInterfaces", &[g("ec2:DescribeNetworkInterfaces", &[R::Any])], Need::Always),
    op("EC2:DescribeAccountAttributes", &[g("ec2:DescribeAccountAttributes", &[R::Any])], Need::Preflight),
    // IAM: the flow log's delivery role, created with tags (so iam:TagRole too).
    op("IAM:CreateRole", &[g("iam:CreateRole", &[R::Role]), g("iam:TagRole", &[R::Role])], Need::FlowLog),
    op("IAM:PutRolePolicy", &[g("iam:PutRolePolicy", &[R::Role])], Need::FlowLog),
    op("IAM:DeleteRolePolicy", &[g("iam:DeleteRolePolicy", &[R::Role])], Need::FlowLog),
    op("IAM:DeleteRole", &[g("iam:DeleteRole", &[R::Role])], Need::FlowLog),
    op("IAM:GetRole", &[g("iam:GetRole", &[R::AnyRole])], Need::Always),
    op("IAM:GetRolePolicy", &[g("iam:GetRolePolicy", &[R::AnyRole])], Need::Always),
    op("IAM:ListRolePolicies", &[g("iam:ListRolePolicies", &[R::AnyRole])], Need::Always),
    op("IAM:ListAttachedRolePolicies", &[g("iam:ListAttachedRolePolicies", &[R::AnyRole])], Need::Always),
    op("IAM:ListRoleTags", &[g("iam:ListRoleTags", &[R::AnyRole])], Need::Always),
    op("IAM:ListRoles", &[g("iam:ListRoles", &[R::Any])], Need::Always),
    op("IAM:SimulatePrincipalPolicy", &[g("iam:SimulatePrincipalPolicy", &[R::CallerRole])], Need::Preflight),
    // CloudWatch Logs: the log group (created with tags: logs:TagResource too), its
    // retention and metric filter.
    op(
        "CloudWatch Logs:CreateLogGroup",
        &[g("logs:CreateLogGroup", &[R::LogGroup]), g("logs:TagResource", &[R::LogGroup])],
        Need::FlowLog,
    ),
    op("CloudWatch Logs:PutRetentionPolicy", &[g("logs:PutRetentionPolicy", &[R::LogGroup])], Need::FlowLog),
    op("CloudWatch Logs:PutMetricFilter", &[g("logs:PutMetricFilter", &[R::LogGroup])], Need::Alarm),
    op("CloudWatch Logs:DeleteMetricFilter", &[g("logs:DeleteMetricFilter", &[R::LogGroup])], Need::Alarm),
    op("CloudWatch Logs:DeleteLogGroup", &[g("logs:DeleteLogGroup", &[R::LogGroup])], Need::FlowLog),
    op("CloudWatch Logs:DescribeLogGroups", &[g("logs:DescribeLogGroups", &[R::Any])], Need::Always),
    op("CloudWatch Logs:DescribeMetricFilters", &[g("logs:DescribeMetricFilters", &[R::AnyLogGroup])], Need::Always),
    op("CloudWatch Logs:ListTagsForResource", &[g("logs:ListTagsForResource", &[R::AnyLogGroup])], Need::Always),
    // CloudWatch: the alarm, created with tags (so cloudwatch:TagResource too; an
    // emulator gets them in a TagResource call of their own).
    op(
        "CloudWatch:PutMetricAlarm",
        &[g("cloudwatch:PutMetricAlarm", &[R::Alarm]), g("cloudwatch:TagResource", &[R::Alarm])],
        Need::Alarm,
    ),
    op("CloudWatch:TagResource", &[g("cloudwatch:TagResource", &[R::Alarm])], Need::Alarm),
    op("CloudWatch:DeleteAlarms", &[g("cloudwatch:DeleteAlarms", &[R::Alarm])], Need::Alarm),
    op("CloudWatch:DescribeAlarms", &[g("cloudwatch:DescribeAlarms", &[R::AnyAlarm])], Need::Always),
    op("CloudWatch:DescribeAlarmsForMetric", &[g("cloudwatch:DescribeAlarmsForMetric", &[R::Any])], Need::Always),
    op("CloudWatch:ListTagsForResource", &[g("cloudwatch:ListTagsForResource", &[R::AnyAlarm])], Need::Always),
    // Service Quotas: the applied value of each quota doctor reads; AWS's default where
    // the account holds no applied value.
    op("Service Quotas:GetServiceQuota", &[g("servicequotas:GetServiceQuota", QUOTA_RESOURCES)], Need::Preflight),
    op(
        "Service Quotas:GetAWSDefaultServiceQuota",
        &[g("servicequotas:GetAWSDefaultServiceQuota", &[R::Any])],
        Need::Preflight,
    ),
];

/// Operations that no run on an emulator calls, each with why: the policy's test adds
/// them to what it saw called, and a test of their own proves they are called.
pub const CALLED_ONLY_ON_AWS: &[(&str, &str)] = &[(
    "Service Quotas:GetAWSDefaultServiceQuota",
    "called only when Service Quotas holds no applied value for a quota; LocalStack 4.14.0 does not \
     emulate Service Quotas at all (the preflight's replay tests call it)",
)];

/// The operation the counter names `name`, if microseg knows it.
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The operations a run, sweep, validation and preflight of `plan` may call.
pub fn for_plan(plan: &Plan) -> Vec<&'static Operation> {
    OPERATIONS.iter().filter(|o| o.need.applies(plan)).collect()
}

/// The IAM actions the named operations need, and the names that are not in
/// [`OPERATIONS`] (which the caller must treat as an error: no one knows what they need).
pub fn actions_of<'a>(operations: impl IntoIterator<Item = &'a str>) -> (BTreeSet<&'static str>, BTreeSet<String>) {
    let mut actions = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for name in operations {
        match operation(name) {
            Some(o) => actions.extend(o.grants.iter().map(|g| g.action)),
            None => {
                unknown.insert(name.to_string());
            }
        }
    }
    (actions, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str) -> Plan {
        let (spec, source) = crate::spec::load(name).unwrap();
        Plan::from_spec(&spec, &source).unwrap()
    }

    #[test]
    fn every_operation_is_listed_once_and_named_as_the_counter_names_it() {
        let mut seen = BTreeSet::new();
        for o in OPERATIONS {
            assert!(seen.insert(o.name), "{} listed twice", o.name);
            let (service, verb) = o.name.split_once(':').expect("Service:Operation");
            assert!(
                ["EC2", "IAM", "STS", "CloudWatch", "CloudWatch Logs", "Service Quotas"].contains(&service),
                "{}",
                o.name
            );
            assert!(verb.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{}", o.name);
            for g in o.grants {
                let (prefix, action) = g.action.split_once(':').expect("prefix:Action");
                assert!(!action.contains('*') && !prefix.is_empty(), "{}: {}", o.name, g.action);
                assert!(!g.on.is_empty(), "{}: {} is authorised on nothing", o.name, g.action);
                assert_eq!(g.create_action.is_some(), g.action == "ec2:CreateTags", "{}", o.name);
            }
        }
    }

    #[test]
    fn reads_are_told_from_changes_by_their_verb() {
        assert!(is_mutating("EC2:CreateVpc") && is_mutating("EC2:ReleaseAddress") && is_mutating("IAM:PutRolePolicy"));
        assert!(!is_mutating("EC2:DescribeVpcs") && !is_mutating("IAM:ListRoles"));
        assert!(!is_mutating("Service Quotas:GetServiceQuota") && !is_mutating("IAM:SimulatePrincipalPolicy"));
    }

    #[test]
    fn the_plan_decides_which_operations_a_scenario_needs() {
        // recipe: no NAT gateway; three-tier: NAT gateways (and so Elastic IPs).
        let recipe = plan("recipe");
        let three = plan("three-tier");
        assert!(recipe.nat_gateways.is_empty() && !three.nat_gateways.is_empty(), "the fixtures changed");
        let names = |p: &Plan| for_plan(p).iter().map(|o| o.name).collect::<BTreeSet<_>>();
        assert!(!names(&recipe).contains("EC2:AllocateAddress"));
        assert!(names(&three).contains("EC2:AllocateAddress") && names(&three).contains("EC2:ReleaseAddress"));
        assert!(names(&recipe).contains("EC2:DescribeAddresses"), "the inventory lists addresses for every run");
    }

    #[test]
    fn unknown_operations_are_reported_not_dropped() {
        let (actions, unknown) = actions_of(["EC2:CreateVpc", "EC2:CreateCarrierGateway"]);
        assert!(actions.contains("ec2:CreateVpc") && actions.contains("ec2:CreateTags"));
        assert_eq!(unknown.into_iter().collect::<Vec<_>>(), ["EC2:CreateCarrierGateway"]);
    }

    #[test]
    fn sample_arns_name_the_resources_a_run_would_create() {
        let p = plan("recipe");
        let names = SampleNames::of(&p);
        let c = ArnContext {
            partition: "aws",
            region: "eu-west-1",
            account: "123456789012",
            caller_role: "x",
            names: &names,
        };
        assert_eq!(
            Resource::Role.sample_arn(&c),
            "arn:aws:iam::123456789012:role/microseg/VPCFlowLogsRole-ms-0000000000"
        );
        assert_eq!(
            Resource::LogGroup.sample_arn(&c),
            "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/vpc/microsegmentation/flowlogs-ms-0000000000"
        );
        assert_eq!(
            Resource::Quota("vpc", "L-F678F1CE").sample_arn(&c),
            "arn:aws:servicequotas:eu-west-1:123456789012:vpc/L-F678F1CE"
        );
    }
}
