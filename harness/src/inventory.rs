//! The one inventory: what a scope holds, across EC2, IAM, CloudWatch Logs and CloudWatch.
//!
//! Everything that reads "what is there" goes through [`list`]: teardown and `sweep`
//! delete from it, the capability probe and a run prove their cleanup with it, a job
//! finds its earlier runs in it, and `validate --expect-gone` reports it. One code path
//! means one set of kinds (every kind build creates) and one set of paginated reads.
//!
//! An empty inventory after teardown is the teardown check: a successful `DeleteVpc` is
//! never taken as proof, because the emulator orphans dependents. A resource that lacks
//! the scope's tag is never in a tag scope, so teardown never deletes an untagged
//! look-alike in the same VPC.
//!
//! How each kind is found:
//! - EC2: one paginated describe per type, filtered by tag (or by VPC for
//!   [`Scope::Vpc`]); flow logs are filtered client-side, since not every emulator
//!   implements tag filters on `DescribeFlowLogs`.
//! - IAM roles: listed (under `/microseg/` for microseg's own runs), then confirmed by
//!   their tags.
//! - Log groups and alarms: listed, then confirmed by their tags. For microseg's own runs
//!   the `-<run id>` name suffix only narrows which ones are asked about; the tag decides.
//! - Metric filters have no tags: they are the filters of the log groups found, so they
//!   belong to whoever the log group's tag names, never to a name alone.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, all_items, aws_err};
use crate::ledger::ResourceKind;
use crate::run_id::{IAM_PATH, RunId, TAG_CREATED_AT, TAG_RUN_ID};

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One microseg run: everything tagged with its run id.
    Run(RunId),
    /// Every microseg run in the account and region.
    AllRuns,
    /// Everything that carries this tag, whoever made it: another implementation's
    /// deployment, gated by `validate --expect-gone --tag`.
    Tag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
    /// A VPC and the EC2 resources in it or attached to it, tagged or not, AWS's
    /// defaults included. Account-wide resources (roles, log groups, alarms) name no VPC,
    /// so this scope cannot see them: a tag scope can.
    Vpc(String),
}

impl Scope {
    /// The tag this scope selects by, `None` for a VPC. `AllRuns` selects by key alone.
    fn tag(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Scope::Run(id) => Some((TAG_RUN_ID, Some(id.as_str()))),
            Scope::AllRuns => Some((TAG_RUN_ID, None)),
            Scope::Tag { key, value } => Some((key, Some(value))),
            Scope::Vpc(_) => None,
        }
    }

    /// Whether a resource with these tags is in the scope (a VPC scope asks where it is,
    /// not how it is tagged).
    fn admits(&self, tags: &TagMap) -> bool {
        match self.tag() {
            Some((key, Some(value))) => tags.get(key).is_some_and(|v| v == value),
            Some((key, None)) => tags.get(key).is_some_and(|v| RunId::parse(v).is_ok()),
            None => true,
        }
    }

    /// Whether an account-wide resource of this name may be in the scope, before its tags
    /// are read: microseg names its own with a `-<run id>` suffix, which saves a tag
    /// read per unrelated role, log group and alarm. A tag scope has to ask every one.
    fn may_name(&self, name: &str) -> bool {
        match self {
            Scope::Run(id) => RunId::suffix_of(name).is_some_and(|r| &r == id),
            Scope::AllRuns => RunId::suffix_of(name).is_some(),
            Scope::Tag { .. } => true,
            Scope::Vpc(_) => false,
        }
    }

    fn ec2_filter(&self) -> Filter {
        match self {
            Scope::Vpc(id) => Filter::builder().name("vpc-id").values(id).build(),
            _ => match self.tag() {
                Some((key, Some(value))) => Filter::builder().name(format!("tag:{key}")).values(value).build(),
                _ => Filter::builder().name("tag-key").values(TAG_RUN_ID).build(),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Run(id) => write!(f, "run {id}"),
            Scope::AllRuns => f.write_str("every microseg run"),
            Scope::Tag { key, value } => write!(f, "tag {key}={value}"),
            Scope::Vpc(id) => write!(f, "VPC {id}"),
        }
    }
}

/// One resource of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Kind.
    pub kind: ResourceKind,
    /// Id, or name for account-wide resources.
    pub id: String,
    /// The microseg run it belongs to; `None` for what no microseg run tagged (another
    /// implementation's resources, or AWS's defaults in a VPC scope).
    pub run_id: Option<RunId>,
    /// Creation time from its `microseg:created-at` tag, Unix seconds.
    pub created_at: Option<u64>,
    /// Its VPC, for VPC resources.
    pub vpc_id: Option<String>,
    /// Parent, where deletion needs it (a metric filter's log group).
    pub parent: Option<String>,
    /// Its tags, as read (a metric filter has its log group's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: TagMap,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)?;
        let mut about: Vec<String> = Vec::new();
        if let Some(r) = &self.run_id {
            about.push(format!("{TAG_RUN_ID}={r}"));
        }
        if let Some(v) = self.vpc_id.as_ref().filter(|v| **v != self.id) {
            about.push(v.clone());
        }
        if let Some(p) = &self.parent {
            about.push(format!("in {p}"));
        }
        if !about.is_empty() {
            write!(f, " ({})", about.join(", "))?;
        }
        Ok(())
    }
}

/// Tags by key.
pub type TagMap = BTreeMap<String, String>;

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> TagMap {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn item(kind: ResourceKind, id: &str, tags: TagMap, vpc_id: Option<&str>, scope: &Scope) -> Option<Item> {
    scope.admits(&tags).then(|| Item {
        kind,
        id: id.to_string(),
        run_id: tags.get(TAG_RUN_ID).and_then(|v| RunId::parse(v).ok()),
        created_at: tags.get(TAG_CREATED_AT).and_then(|t| t.parse().ok()),
        vpc_id: vpc_id.map(str::to_string),
        parent: None,
        tags,
    })
}

/// Lists every resource of `scope`, sorted by kind and id.
pub async fn list(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    let (ec2, iam, logs, alarms) = tokio::try_join!(
        list_ec2(clients, scope),
        list_roles(clients, scope),
        list_logs(clients, scope),
        list_alarms(clients, scope)
    )?;
    let mut items: Vec<Item> = ec2.into_iter().chain(iam).chain(logs).chain(alarms).collect();
    items.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    Ok(items)
}

async fn list_ec2(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    let ec2 = &clients.ec2;
    let f = scope.ec2_filter();
    // Gateways name their VPC under `attachment.vpc-id`, not `vpc-id`.
    let igw_filter = match scope {
        Scope::Vpc(id) => Filter::builder().name("attachment.vpc-id").values(id).build(),
        _ => f.clone(),
    };
    let (vpcs, subnets, nacls, sgs, rts, igws, fls, nats, eips) = tokio::try_join!(
        async { all_items!(ec2.describe_vpcs().filters(f.clone()), "DescribeVpcs") },
        async { all_items!(ec2.describe_subnets().filters(f.clone()), "DescribeSubnets") },
        async { all_items!(ec2.describe_network_acls().filters(f.clone()), "DescribeNetworkAcls") },
        async { all_items!(ec2.describe_security_groups().filters(f.clone()), "DescribeSecurityGroups") },
        async { all_items!(ec2.describe_route_tables().filters(f.clone()), "DescribeRouteTables") },
        async { all_items!(ec2.describe_internet_gateways().filters(igw_filter), "DescribeInternetGateways") },
        // Few per region; kept by tag or by resource below.
        async { all_items!(ec2.describe_flow_logs(), "DescribeFlowLogs") },
        async { all_items!(ec2.describe_nat_gateways().filter(f.clone()), "DescribeNatGateways") },
        // DescribeAddresses has no pagination, and no VPC filter: a VPC scope keeps the
        // addresses its NAT gateways hold.
        async {
            let addresses = match scope {
                Scope::Vpc(_) => ec2.describe_addresses(),
                _ => ec2.describe_addresses().filters(f.clone()),
            };
            addresses.send().await.map_err(aws_err("DescribeAddresses"))
        },
    )?;
    let mut out = Vec::new();
    out.extend(vpcs.iter().filter_map(|v| item(ResourceKind::Vpc, v.vpc_id()?, ec2_tags(v.tags()), v.vpc_id(), scope)));
    out.extend(
        subnets
            .iter()
            .filter_map(|s| item(ResourceKind::Subnet, s.subnet_id()?, ec2_tags(s.tags()), s.vpc_id(), scope)),
    );
    out.extend(nacls.iter().filter_map(|n| {
        let kind =
            if n.is_default() == Some(true) { ResourceKind::DefaultNetworkAcl } else { ResourceKind::NetworkAcl };
        item(kind, n.network_acl_id()?, ec2_tags(n.tags()), n.vpc_id(), scope)
    }));
    out.extend(
        sgs.iter()
            .filter_map(|g| item(ResourceKind::SecurityGroup, g.group_id()?, ec2_tags(g.tags()), g.vpc_id(), scope)),
    );
    out.extend(
        rts.iter()
            .filter_map(|r| item(ResourceKind::RouteTable, r.route_table_id()?, ec2_tags(r.tags()), r.vpc_id(), scope)),
    );
    out.extend(igws.iter().filter_map(|i| {
        let vpc = i.attachments().first().and_then(|a| a.vpc_id());
        item(ResourceKind::InternetGateway, i.internet_gateway_id()?, ec2_tags(i.tags()), vpc, scope)
    }));
    // A deleted NAT gateway stays listed for about an hour on AWS; it is gone.
    let live_nats: Vec<_> = nats.iter().filter(|n| n.state().is_none_or(|s| s.as_str() != "deleted")).collect();
    out.extend(
        live_nats
            .iter()
            .filter_map(|n| item(ResourceKind::NatGateway, n.nat_gateway_id()?, ec2_tags(n.tags()), n.vpc_id(), scope)),
    );
    let held: Vec<&str> =
        live_nats.iter().flat_map(|n| n.nat_gateway_addresses()).filter_map(|a| a.allocation_id()).collect();
    out.extend(eips.addresses().iter().filter_map(|a| {
        let id = a.allocation_id()?;
        if matches!(scope, Scope::Vpc(_)) && !held.contains(&id) {
            return None;
        }
        item(ResourceKind::ElasticIp, id, ec2_tags(a.tags()), None, scope)
    }));
    // A VPC scope keeps the flow logs on the VPC and its subnets; a tag scope, the tagged.
    let in_vpc: Vec<&str> = out
        .iter()
        .filter(|i| matches!(i.kind, ResourceKind::Vpc | ResourceKind::Subnet))
        .map(|i| i.id.as_str())
        .collect();
    let flow_logs: Vec<Item> = fls
        .iter()
        .filter(|l| !matches!(scope, Scope::Vpc(_)) || l.resource_id().is_some_and(|r| in_vpc.contains(&r)))
        .filter_map(|l| item(ResourceKind::FlowLog, l.flow_log_id()?, ec2_tags(l.tags()), l.resource_id(), scope))
        .collect();
    out.extend(flow_logs);
    Ok(out)
}

async fn list_roles(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    let path = match scope {
        Scope::Vpc(_) => return Ok(Vec::new()),
        Scope::Tag { .. } => "/",
        Scope::Run(_) | Scope::AllRuns => IAM_PATH,
    };
    let roles = all_items!(clients.iam.list_roles().path_prefix(path), "ListRoles")?;
    let mut out = Vec::new();
    for role in roles {
        let name = role.role_name();
        if !scope.may_name(name) {
            continue;
        }
        let tags = match clients.iam.list_role_tags().role_name(name).send().await.map_err(aws_err("ListRoleTags")) {
            Ok(t) => t.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect::<TagMap>(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.extend(item(ResourceKind::Role, name, tags, None, scope));
    }
    Ok(out)
}

async fn list_logs(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    if matches!(scope, Scope::Vpc(_)) {
        return Ok(Vec::new());
    }
    let groups = all_items!(clients.logs.describe_log_groups(), "DescribeLogGroups")?;
    let mut out = Vec::new();
    for g in groups {
        let Some(name) = g.log_group_name() else { continue };
        let Some(arn) = crate::aws::log_group_arn(&g) else { continue };
        if !scope.may_name(name) {
            continue;
        }
        let tags = match clients
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(aws_err("ListTagsForResource"))
        {
            Ok(t) => t.tags().cloned().unwrap_or_default().into_iter().collect::<TagMap>(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let Some(group) = item(ResourceKind::LogGroup, name, tags, None, scope) else { continue };
        // Deleting the group deletes its filters too; listing them proves it.
        let filters =
            match all_items!(clients.logs.describe_metric_filters().log_group_name(name), "DescribeMetricFilters") {
                Ok(f) => f,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
        // An emulator that ignores the group filter answers with every group's filters.
        for f in filters.iter().filter(|f| f.log_group_name().is_none_or(|g| g == name)) {
            let Some(filter) = f.filter_name() else { continue };
            out.push(Item {
                kind: ResourceKind::MetricFilter,
                id: filter.to_string(),
                parent: Some(name.to_string()),
                ..group.clone()
            });
        }
        out.push(group);
    }
    Ok(out)
}

async fn list_alarms(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    // Where CloudWatch cannot answer the SDK (cloudwatch-no-cbor) no alarm was ever made,
    // and none can be listed.
    if matches!(scope, Scope::Vpc(_)) || !clients.cloudwatch_served {
        return Ok(Vec::new());
    }
    let pages = clients
        .cloudwatch
        .describe_alarms()
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws_err("DescribeAlarms"))?;
    let mut out = Vec::new();
    for alarm in pages.iter().flat_map(|p| p.metric_alarms()) {
        let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) else { continue };
        if !scope.may_name(name) {
            continue;
        }
        let tags = match clients
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(aws_err("ListTagsForResource"))
        {
            Ok(t) => {
                t.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect::<TagMap>()
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.extend(item(ResourceKind::Alarm, name, tags, None, scope));
    }
    Ok(out)
}

/// Splits what a VPC scope or a tag scope found after a cleanup into what is left and
/// what only an emulator leaves: LocalStack's DeleteVpc orphans the VPC's default NACL
/// ([`crate::capabilities::Divergence::DeleteVpcOrphansDependents`]). While the VPC is
/// still there, and on AWS, all of it is left.
pub fn split_emulator_orphans(items: Vec<Item>, caps: &crate::capabilities::Capabilities) -> (Vec<Item>, Vec<Item>) {
    let vpc_gone = !items.iter().any(|i| i.kind == ResourceKind::Vpc);
    if !(vpc_gone && caps.has(crate::capabilities::Divergence::DeleteVpcOrphansDependents)) {
        return (items, Vec::new());
    }
    items.into_iter().partition(|i| i.kind != ResourceKind::DefaultNetworkAcl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> TagMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_scope_admits_what_its_tag_names_and_nothing_else() {
        let run = RunId::generate();
        let other = RunId::generate();
        let ours = tags(&[(TAG_RUN_ID, run.as_str())]);
        let theirs = tags(&[(TAG_RUN_ID, other.as_str())]);
        let forged = tags(&[(TAG_RUN_ID, "not-a-run-id")]);
        let team = tags(&[("team", "payments")]);
        assert!(Scope::Run(run.clone()).admits(&ours));
        assert!(!Scope::Run(run.clone()).admits(&theirs));
        assert!(!Scope::Run(run.clone()).admits(&team));
        assert!(Scope::AllRuns.admits(&ours) && Scope::AllRuns.admits(&theirs));
        assert!(!Scope::AllRuns.admits(&forged), "a value that is no run id is not microseg's");
        assert!(!Scope::AllRuns.admits(&team));
        let tag = Scope::Tag { key: "team".into(), value: "payments".into() };
        assert!(tag.admits(&team) && !tag.admits(&ours));
        assert!(!tag.admits(&tags(&[("team", "billing")])));
        assert!(Scope::Vpc("vpc-1".into()).admits(&TagMap::new()), "a VPC scope asks where, not how tagged");
    }

    #[test]
    fn names_only_narrow_microseg_scopes_and_never_a_tag_scope() {
        let run = RunId::generate();
        let named = format!("microseg-flow-logs-{run}");
        assert!(Scope::Run(run.clone()).may_name(&named));
        assert!(!Scope::Run(RunId::generate()).may_name(&named));
        assert!(Scope::AllRuns.may_name(&named));
        assert!(!Scope::AllRuns.may_name("payments-flow-logs"));
        // Another implementation names its resources as it likes: every one is asked.
        assert!(Scope::Tag { key: "team".into(), value: "payments".into() }.may_name("payments-flow-logs"));
        assert!(!Scope::Vpc("vpc-1".into()).may_name(&named));
    }

    #[test]
    fn an_item_reads_its_run_and_age_from_its_tags() {
        let run = RunId::generate();
        let t = tags(&[(TAG_RUN_ID, run.as_str()), (TAG_CREATED_AT, "1700000000")]);
        let i = item(ResourceKind::Subnet, "subnet-1", t, Some("vpc-1"), &Scope::AllRuns).unwrap();
        assert_eq!(i.run_id.as_ref(), Some(&run));
        assert_eq!(i.created_at, Some(1_700_000_000));
        assert_eq!(i.to_string(), format!("subnet subnet-1 ({TAG_RUN_ID}={run}, vpc-1)"));
        let untagged =
            item(ResourceKind::SecurityGroup, "sg-1", TagMap::new(), Some("vpc-1"), &Scope::Vpc("vpc-1".into()));
        assert_eq!(untagged.unwrap().to_string(), "security-group sg-1 (vpc-1)");
    }

    #[test]
    fn only_an_emulator_with_the_divergence_has_its_default_nacl_orphan_set_aside() {
        use crate::capabilities::{Capabilities, Divergence};
        let nacl = Item {
            kind: ResourceKind::DefaultNetworkAcl,
            id: "acl-1".into(),
            run_id: None,
            created_at: None,
            vpc_id: Some("vpc-1".into()),
            parent: None,
            tags: TagMap::new(),
        };
        let vpc = Item { kind: ResourceKind::Vpc, id: "vpc-1".into(), ..nacl.clone() };
        let emulator = Capabilities::emulator("LocalStack".into());
        assert!(emulator.has(Divergence::DeleteVpcOrphansDependents));
        assert_eq!(split_emulator_orphans(vec![nacl.clone()], &emulator), (vec![], vec![nacl.clone()]));
        // While the VPC stands its default NACL is no orphan; on AWS it never is.
        assert_eq!(split_emulator_orphans(vec![vpc.clone(), nacl.clone()], &emulator).1, vec![]);
        assert_eq!(split_emulator_orphans(vec![nacl.clone()], &Capabilities::default()).0, vec![nacl]);
    }
}
