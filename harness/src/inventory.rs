//! Everything that carries a run's tag, across EC2, IAM, CloudWatch Logs and CloudWatch.
//!
//! An empty inventory after teardown is the teardown check: a successful `DeleteVpc` is
//! never taken as proof, because the emulator orphans dependents. The inventory is also
//! what teardown and `sweep` delete from, so a resource that lacks the run's tag is never
//! in it and never deleted (an untagged look-alike in the same VPC stays).
//!
//! EC2 resources are found with tag filters, one paginated describe per type. IAM roles
//! live under the path `/microseg/`; log groups, metric filters and alarms are found by
//! their `-<run id>` name suffix and then confirmed by tag where the service has tags.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Clients, all_items, aws_err};
use crate::ledger::ResourceKind;
use crate::run_id::{IAM_PATH, RunId, TAG_CREATED_AT, TAG_RUN_ID};

/// Which runs to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One run.
    Run(RunId),
    /// Every microseg run in the account and region.
    AllRuns,
}

impl Scope {
    fn matches(&self, run: &RunId) -> bool {
        match self {
            Scope::Run(id) => id == run,
            Scope::AllRuns => true,
        }
    }

    fn ec2_filter(&self) -> Filter {
        match self {
            Scope::Run(id) => Filter::builder().name(format!("tag:{TAG_RUN_ID}")).values(id.as_str()).build(),
            Scope::AllRuns => Filter::builder().name("tag-key").values(TAG_RUN_ID).build(),
        }
    }
}

/// One tagged resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Kind.
    pub kind: ResourceKind,
    /// Id, or name for account-wide resources.
    pub id: String,
    /// The run it belongs to.
    pub run_id: RunId,
    /// Creation time from its tag, Unix seconds.
    pub created_at: Option<u64>,
    /// Its VPC, for VPC resources.
    pub vpc_id: Option<String>,
    /// Parent, where deletion needs it (a metric filter's log group).
    pub parent: Option<String>,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({TAG_RUN_ID}={}", self.kind, self.id, self.run_id)?;
        if let Some(v) = &self.vpc_id {
            write!(f, ", {v}")?;
        }
        f.write_str(")")
    }
}

type TagMap = BTreeMap<String, String>;

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> TagMap {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn item_from_tags(kind: ResourceKind, id: &str, tags: &TagMap, vpc_id: Option<&str>, scope: &Scope) -> Option<Item> {
    let run_id = RunId::parse(tags.get(TAG_RUN_ID)?).ok()?;
    scope.matches(&run_id).then(|| Item {
        kind,
        id: id.to_string(),
        created_at: tags.get(TAG_CREATED_AT).and_then(|t| t.parse().ok()),
        run_id,
        vpc_id: vpc_id.map(str::to_string),
        parent: None,
    })
}

/// Lists every resource of `scope` across the four services.
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
    let (vpcs, subnets, nacls, sgs, rts, igws, fls, nats, eips) = tokio::try_join!(
        async { all_items!(ec2.describe_vpcs().filters(f.clone()), "DescribeVpcs") },
        async { all_items!(ec2.describe_subnets().filters(f.clone()), "DescribeSubnets") },
        async { all_items!(ec2.describe_network_acls().filters(f.clone()), "DescribeNetworkAcls") },
        async { all_items!(ec2.describe_security_groups().filters(f.clone()), "DescribeSecurityGroups") },
        async { all_items!(ec2.describe_route_tables().filters(f.clone()), "DescribeRouteTables") },
        async { all_items!(ec2.describe_internet_gateways().filters(f.clone()), "DescribeInternetGateways") },
        // Flow logs are few; filter by tag client-side, since not every emulator
        // implements tag filters on DescribeFlowLogs.
        async { all_items!(ec2.describe_flow_logs(), "DescribeFlowLogs") },
        async { all_items!(ec2.describe_nat_gateways().filter(f.clone()), "DescribeNatGateways") },
        // DescribeAddresses has no pagination.
        async { ec2.describe_addresses().filters(f.clone()).send().await.map_err(aws_err("DescribeAddresses")) },
    )?;
    let mut out = Vec::new();
    out.extend(
        vpcs.iter()
            .filter_map(|v| item_from_tags(ResourceKind::Vpc, v.vpc_id()?, &ec2_tags(v.tags()), v.vpc_id(), scope)),
    );
    out.extend(
        subnets.iter().filter_map(|s| {
            item_from_tags(ResourceKind::Subnet, s.subnet_id()?, &ec2_tags(s.tags()), s.vpc_id(), scope)
        }),
    );
    out.extend(nacls.iter().filter_map(|n| {
        let kind =
            if n.is_default() == Some(true) { ResourceKind::DefaultNetworkAcl } else { ResourceKind::NetworkAcl };
        item_from_tags(kind, n.network_acl_id()?, &ec2_tags(n.tags()), n.vpc_id(), scope)
    }));
    out.extend(sgs.iter().filter_map(|g| {
        item_from_tags(ResourceKind::SecurityGroup, g.group_id()?, &ec2_tags(g.tags()), g.vpc_id(), scope)
    }));
    out.extend(rts.iter().filter_map(|r| {
        item_from_tags(ResourceKind::RouteTable, r.route_table_id()?, &ec2_tags(r.tags()), r.vpc_id(), scope)
    }));
    out.extend(igws.iter().filter_map(|i| {
        let vpc = i.attachments().first().and_then(|a| a.vpc_id());
        item_from_tags(ResourceKind::InternetGateway, i.internet_gateway_id()?, &ec2_tags(i.tags()), vpc, scope)
    }));
    // A deleted NAT gateway stays listed for about an hour on AWS; it is gone.
    out.extend(nats.iter().filter(|n| n.state().is_none_or(|s| s.as_str() != "deleted")).filter_map(|n| {
        item_from_tags(ResourceKind::NatGateway, n.nat_gateway_id()?, &ec2_tags(n.tags()), n.vpc_id(), scope)
    }));
    out.extend(
        eips.addresses().iter().filter_map(|a| {
            item_from_tags(ResourceKind::ElasticIp, a.allocation_id()?, &ec2_tags(a.tags()), None, scope)
        }),
    );
    out.extend(fls.iter().filter_map(|l| {
        item_from_tags(ResourceKind::FlowLog, l.flow_log_id()?, &ec2_tags(l.tags()), l.resource_id(), scope)
    }));
    Ok(out)
}

async fn list_roles(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    let roles = all_items!(clients.iam.list_roles().path_prefix(IAM_PATH), "ListRoles")?;
    let mut out = Vec::new();
    for role in roles {
        let name = role.role_name();
        if RunId::suffix_of(name).is_none_or(|r| !scope.matches(&r)) {
            continue;
        }
        let tags = match clients.iam.list_role_tags().role_name(name).send().await.map_err(aws_err("ListRoleTags")) {
            Ok(t) => t.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect::<TagMap>(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.extend(item_from_tags(ResourceKind::Role, name, &tags, None, scope));
    }
    Ok(out)
}

async fn list_logs(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
    let (groups, filters) =
        tokio::try_join!(async { all_items!(clients.logs.describe_log_groups(), "DescribeLogGroups") }, async {
            all_items!(clients.logs.describe_metric_filters(), "DescribeMetricFilters")
        },)?;
    let mut out = Vec::new();
    for g in groups {
        let Some(name) = g.log_group_name() else { continue };
        if RunId::suffix_of(name).is_none_or(|r| !scope.matches(&r)) {
            continue;
        }
        let arn = crate::aws::log_group_arn(&g);
        let Some(arn) = arn else { continue };
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
        out.extend(item_from_tags(ResourceKind::LogGroup, name, &tags, None, scope));
    }
    // Metric filters have no tags: they count when their name carries a run id of the
    // scope. Deleting the log group deletes them too; listing them proves it.
    for f in filters {
        let (Some(name), Some(group)) = (f.filter_name(), f.log_group_name()) else { continue };
        if let Some(run_id) = RunId::suffix_of(name).filter(|r| scope.matches(r)) {
            out.push(Item {
                kind: ResourceKind::MetricFilter,
                id: name.to_string(),
                run_id,
                created_at: None,
                vpc_id: None,
                parent: Some(group.to_string()),
            });
        }
    }
    Ok(out)
}

async fn list_alarms(clients: &Clients, scope: &Scope) -> Result<Vec<Item>, AwsError> {
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
        if RunId::suffix_of(name).is_none_or(|r| !scope.matches(&r)) {
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
        out.extend(item_from_tags(ResourceKind::Alarm, name, &tags, None, scope));
    }
    Ok(out)
}
