//! Teardown: delete what the inventory lists, in dependency order, and keep going.
//!
//! Order: flow log, alarm and metric filter, log group, role (policies first), group
//! references revoked, groups, NAT gateways (waited out), Elastic IPs, subnets, NACLs
//! (subnets re-associated with the default NACL first), route tables (disassociated),
//! IGW (detached), VPC, and last a tagged default NACL (the probe's) an emulator orphaned.
//! "Not found" counts as done;
//! `DependencyViolation` is retried with bounded backoff. Every resource gets an outcome,
//! and nothing outside the inventory (that is, without the run's tag) is touched.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use crate::aws::{AwsError, Clients, aws_err};
use crate::inventory::Item;
use crate::ledger::ResourceKind;

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "error", rename_all = "kebab-case")]
pub enum Outcome {
    /// Deleted now.
    Deleted,
    /// Already gone.
    AlreadyGone,
    /// Could not be deleted.
    Failed(String),
}

/// Outcome per resource.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TeardownReport {
    /// `(item, outcome)` in teardown order.
    pub outcomes: Vec<(Item, Outcome)>,
    /// API calls made.
    pub calls: usize,
}

impl TeardownReport {
    /// The resources that could not be deleted.
    pub fn failures(&self) -> impl Iterator<Item = &(Item, Outcome)> {
        self.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_)))
    }
}

/// How often and how long to retry `DependencyViolation`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all.
    pub attempts: u32,
    /// First delay; doubles each time.
    pub first: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempts: 8, first: Duration::from_millis(100), max: Duration::from_secs(4) }
    }
}

/// Deletes every item, kind by kind in dependency order; items of one kind in parallel.
pub async fn teardown(clients: &Clients, items: &[Item], backoff: Backoff) -> TeardownReport {
    let mut report = TeardownReport::default();
    for kind in ResourceKind::TEARDOWN_ORDER {
        let of_kind: Vec<&Item> = items.iter().filter(|i| i.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let prep_calls = prepare(clients, kind, &of_kind).await;
        report.calls += prep_calls;
        let results = join_all(of_kind.iter().map(|item| delete_with_retry(clients, item, backoff))).await;
        for (item, (outcome, calls)) in of_kind.into_iter().zip(results) {
            if let Outcome::Failed(e) = &outcome {
                tracing::warn!("teardown: {item}: {e}");
            }
            report.calls += calls;
            report.outcomes.push((item.clone(), outcome));
        }
    }
    report
}

/// Work that must happen for a whole kind before any of it can go, with one read for the
/// kind: revoking group references (a referenced group cannot be deleted on AWS), moving
/// subnets back to the default NACL (a NACL with associations cannot be deleted), and
/// disassociating route tables.
async fn prepare(clients: &Clients, kind: ResourceKind, items: &[&Item]) -> usize {
    let result = match kind {
        ResourceKind::SecurityGroup => revoke_group_references(clients, items).await,
        ResourceKind::NetworkAcl => restore_default_nacl(clients, items).await,
        ResourceKind::RouteTable => disassociate_route_tables(clients, items).await,
        _ => Ok(0),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!("teardown: preparing {kind}: {e}");
        1
    })
}

async fn revoke_group_references(clients: &Clients, items: &[&Item]) -> Result<usize, AwsError> {
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    let groups = match clients
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids))
        .send()
        .await
        .map_err(aws_err("DescribeSecurityGroups"))
    {
        Ok(g) => g,
        Err(e) if e.is_not_found() => return Ok(1),
        Err(e) => return Err(e),
    };
    let mut calls = 1;
    for g in groups.security_groups() {
        let gid = g.group_id().unwrap_or_default();
        let ingress: Vec<_> =
            g.ip_permissions().iter().filter(|p| !p.user_id_group_pairs().is_empty()).cloned().collect();
        let egress: Vec<_> =
            g.ip_permissions_egress().iter().filter(|p| !p.user_id_group_pairs().is_empty()).cloned().collect();
        if !ingress.is_empty() {
            calls += 1;
            if let Err(e) = clients
                .ec2
                .revoke_security_group_ingress()
                .group_id(gid)
                .set_ip_permissions(Some(ingress))
                .send()
                .await
                .map_err(aws_err("RevokeSecurityGroupIngress"))
                && !e.is_not_found()
            {
                return Err(e);
            }
        }
        if !egress.is_empty() {
            calls += 1;
            if let Err(e) = clients
                .ec2
                .revoke_security_group_egress()
                .group_id(gid)
                .set_ip_permissions(Some(egress))
                .send()
                .await
                .map_err(aws_err("RevokeSecurityGroupEgress"))
                && !e.is_not_found()
            {
                return Err(e);
            }
        }
    }
    Ok(calls)
}

async fn restore_default_nacl(clients: &Clients, items: &[&Item]) -> Result<usize, AwsError> {
    // One read of the NACLs' VPCs answers both questions: which associations are still
    // on our NACLs, and which default NACL each must move to.
    let mut vpcs: Vec<String> = items.iter().filter_map(|i| i.vpc_id.clone()).collect();
    let mut calls = 0;
    // An item that does not say its VPC (one made from a ledger entry) is asked once.
    let unplaced: Vec<String> = items.iter().filter(|i| i.vpc_id.is_none()).map(|i| i.id.clone()).collect();
    if !unplaced.is_empty() {
        calls += 1;
        match clients
            .ec2
            .describe_network_acls()
            .set_network_acl_ids(Some(unplaced))
            .send()
            .await
            .map_err(aws_err("DescribeNetworkAcls"))
        {
            Ok(n) => vpcs.extend(n.network_acls().iter().filter_map(|n| n.vpc_id().map(str::to_string))),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    vpcs.sort();
    vpcs.dedup();
    if vpcs.is_empty() {
        return Ok(calls);
    }
    let all = crate::aws::all_items!(
        clients
            .ec2
            .describe_network_acls()
            .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").set_values(Some(vpcs)).build()),
        "DescribeNetworkAcls"
    )?;
    calls += 1;
    let defaults: std::collections::BTreeMap<&str, &str> = all
        .iter()
        .filter(|n| n.is_default() == Some(true))
        .filter_map(|n| Some((n.vpc_id()?, n.network_acl_id()?)))
        .collect();
    let ours: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut moves: Vec<(String, String)> = Vec::new();
    for nacl in all.iter().filter(|n| n.network_acl_id().is_some_and(|id| ours.contains(&id))) {
        if nacl.associations().is_empty() {
            continue;
        }
        let vpc = nacl.vpc_id().unwrap_or_default();
        let Some(default_id) = defaults.get(vpc) else {
            return Err(AwsError {
                operation: "DescribeNetworkAcls",
                code: None,
                message: format!("VPC {vpc} has no default NACL"),
            });
        };
        moves.extend(
            nacl.associations()
                .iter()
                .filter_map(|a| a.network_acl_association_id())
                .map(|a| (a.to_string(), default_id.to_string())),
        );
    }
    let calls = calls + moves.len();
    let results = join_all(moves.iter().map(|(assoc, default)| {
        clients.ec2.replace_network_acl_association().association_id(assoc).network_acl_id(default).send()
    }))
    .await;
    for r in results {
        if let Err(e) = r.map_err(aws_err("ReplaceNetworkAclAssociation"))
            && !e.is_not_found()
        {
            return Err(e);
        }
    }
    Ok(calls)
}

/// Disassociates every subnet still on the run's route tables, with one read for all of
/// them (on AWS a deleted subnet took its association along, and nothing is left).
async fn disassociate_route_tables(clients: &Clients, items: &[&Item]) -> Result<usize, AwsError> {
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    let tables = match clients
        .ec2
        .describe_route_tables()
        .set_route_table_ids(Some(ids))
        .send()
        .await
        .map_err(aws_err("DescribeRouteTables"))
    {
        Ok(t) => t,
        // Gone already: nothing to disassociate.
        Err(e) if e.is_not_found() && items.len() == 1 => return Ok(1),
        // One of them is gone already: each is then asked about on its own.
        Err(e) if e.is_not_found() => {
            let mut calls = 1;
            for item in items {
                calls += Box::pin(disassociate_route_tables(clients, std::slice::from_ref(item))).await.unwrap_or(1);
            }
            return Ok(calls);
        }
        Err(e) => return Err(e),
    };
    let associations: Vec<&str> = tables
        .route_tables()
        .iter()
        .flat_map(|t| t.associations())
        .filter(|a| a.main() != Some(true))
        .filter_map(|a| a.route_table_association_id())
        .collect();
    let results =
        join_all(associations.iter().map(|a| clients.ec2.disassociate_route_table().association_id(*a).send())).await;
    for r in results {
        if let Err(e) = r.map_err(aws_err("DisassociateRouteTable"))
            && !e.is_not_found()
        {
            return Err(e);
        }
    }
    Ok(1 + associations.len())
}

async fn delete_with_retry(clients: &Clients, item: &Item, backoff: Backoff) -> (Outcome, usize) {
    let mut delay = backoff.first;
    let mut calls = 0;
    for attempt in 1..=backoff.attempts {
        let (result, n) = delete_once(clients, item).await;
        calls += n;
        match result {
            Ok(()) => return (Outcome::Deleted, calls),
            Err(e) if e.is_not_found() => return (Outcome::AlreadyGone, calls),
            Err(e) if e.is_dependency_violation() && attempt < backoff.attempts => {
                tracing::debug!("teardown: {item}: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
            }
            Err(e) => return (Outcome::Failed(e.to_string()), calls),
        }
    }
    unreachable!("the last attempt returns")
}

/// One deletion attempt; returns the result and the number of calls made.
async fn delete_once(clients: &Clients, item: &Item) -> (Result<(), AwsError>, usize) {
    let ec2 = &clients.ec2;
    let id = item.id.as_str();
    match item.kind {
        ResourceKind::FlowLog => {
            match ec2.delete_flow_logs().flow_log_ids(id).send().await.map_err(aws_err("DeleteFlowLogs")) {
                Ok(out) => {
                    let failed = out.unsuccessful().iter().find_map(|u| u.error()).map(|e| AwsError {
                        operation: "DeleteFlowLogs",
                        code: e.code().map(str::to_string),
                        message: e.message().unwrap_or_default().to_string(),
                    });
                    (failed.map_or(Ok(()), Err), 1)
                }
                Err(e) => (Err(e), 1),
            }
        }
        ResourceKind::Alarm => (
            clients
                .cloudwatch
                .delete_alarms()
                .alarm_names(id)
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err("DeleteAlarms")),
            1,
        ),
        ResourceKind::MetricFilter => (
            clients
                .logs
                .delete_metric_filter()
                .filter_name(id)
                .log_group_name(item.parent.as_deref().unwrap_or_default())
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err("DeleteMetricFilter")),
            1,
        ),
        ResourceKind::LogGroup => (
            clients
                .logs
                .delete_log_group()
                .log_group_name(id)
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err("DeleteLogGroup")),
            1,
        ),
        ResourceKind::Role => delete_role(clients, id).await,
        ResourceKind::SecurityGroup => (
            ec2.delete_security_group().group_id(id).send().await.map(|_| ()).map_err(aws_err("DeleteSecurityGroup")),
            1,
        ),
        // After its VPC: on AWS it went with the VPC ("not found"); an emulator that
        // orphaned it deletes it now.
        ResourceKind::NetworkAcl | ResourceKind::DefaultNetworkAcl => (
            ec2.delete_network_acl().network_acl_id(id).send().await.map(|_| ()).map_err(aws_err("DeleteNetworkAcl")),
            1,
        ),
        ResourceKind::NatGateway => delete_nat_gateway(clients, id).await,
        ResourceKind::ElasticIp => {
            (ec2.release_address().allocation_id(id).send().await.map(|_| ()).map_err(aws_err("ReleaseAddress")), 1)
        }
        ResourceKind::RouteTable => (
            ec2.delete_route_table().route_table_id(id).send().await.map(|_| ()).map_err(aws_err("DeleteRouteTable")),
            1,
        ),
        ResourceKind::Subnet => {
            (ec2.delete_subnet().subnet_id(id).send().await.map(|_| ()).map_err(aws_err("DeleteSubnet")), 1)
        }
        ResourceKind::InternetGateway => delete_igw(clients, id, item.vpc_id.as_deref()).await,
        ResourceKind::Vpc => (ec2.delete_vpc().vpc_id(id).send().await.map(|_| ()).map_err(aws_err("DeleteVpc")), 1),
    }
}

/// Deletes a NAT gateway and waits until it is gone: AWS takes up to a few minutes, and
/// until then its Elastic IP cannot be released nor its subnet deleted. The wait is
/// bounded (10 minutes); polls start at 250 ms and grow to 10 s.
async fn delete_nat_gateway(clients: &Clients, id: &str) -> (Result<(), AwsError>, usize) {
    let ec2 = &clients.ec2;
    if let Err(e) = ec2.delete_nat_gateway().nat_gateway_id(id).send().await.map_err(aws_err("DeleteNatGateway")) {
        return (Err(e), 1);
    }
    let mut calls = 1;
    let mut patience = crate::aws::Patience::new(Duration::from_secs(600), Duration::from_secs(10));
    loop {
        calls += 1;
        let state = match crate::aws::nat_gateway_state(ec2, id).await {
            Ok(state) => state,
            Err(e) => return (Err(e), calls),
        };
        match state.as_deref() {
            None | Some("deleted") => return (Ok(()), calls),
            Some("failed") => return (Ok(()), calls),
            Some(other) if patience.expired() => {
                return (
                    Err(AwsError {
                        operation: "DeleteNatGateway",
                        code: Some("Timeout".into()),
                        message: format!("still {other} after 10 minutes"),
                    }),
                    calls,
                );
            }
            Some(_) => patience.pause().await,
        }
    }
}

async fn delete_role(clients: &Clients, name: &str) -> (Result<(), AwsError>, usize) {
    let iam = &clients.iam;
    let mut calls = 2;
    let result = async {
        let inline = iam.list_role_policies().role_name(name).send().await.map_err(aws_err("ListRolePolicies"))?;
        for policy in inline.policy_names() {
            calls += 1;
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .map_err(aws_err("DeleteRolePolicy"))?;
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(aws_err("ListAttachedRolePolicies"))?;
        for policy in attached.attached_policies() {
            calls += 1;
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(policy.policy_arn().unwrap_or_default())
                .send()
                .await
                .map_err(aws_err("DetachRolePolicy"))?;
        }
        calls += 1;
        iam.delete_role().role_name(name).send().await.map_err(aws_err("DeleteRole"))?;
        Ok(())
    }
    .await;
    (result, calls)
}

/// Detaches a gateway from the VPC the inventory found it attached to (a gateway has at
/// most one attachment, and nothing in a run re-attaches it), then deletes it. An item
/// that does not say (one made from a ledger entry) has its attachments read first.
async fn delete_igw(clients: &Clients, id: &str, attached_to: Option<&str>) -> (Result<(), AwsError>, usize) {
    let ec2 = &clients.ec2;
    let mut calls = 0;
    let result = async {
        let vpcs: Vec<String> = match attached_to {
            Some(vpc) => vec![vpc.to_string()],
            None => {
                calls += 1;
                ec2.describe_internet_gateways()
                    .internet_gateway_ids(id)
                    .send()
                    .await
                    .map_err(aws_err("DescribeInternetGateways"))?
                    .internet_gateways()
                    .iter()
                    .flat_map(|g| g.attachments())
                    .filter_map(|a| a.vpc_id().map(str::to_string))
                    .collect()
            }
        };
        for vpc in &vpcs {
            calls += 1;
            match ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(aws_err("DetachInternetGateway"))
            {
                // Not attached any more ("not found", `Gateway.NotAttached` included) is
                // what detaching is for.
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        calls += 1;
        ec2.delete_internet_gateway().internet_gateway_id(id).send().await.map_err(aws_err("DeleteInternetGateway"))?;
        Ok(())
    }
    .await;
    (result, calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{Answer, Replay};

    fn ec2_error(code: &str) -> Answer {
        Answer::with_status(
            400,
            format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>gone</Message></Error></Errors><RequestID>r</RequestID></Response>"
            ),
        )
    }

    fn table(id: &str) -> Item {
        Item {
            kind: ResourceKind::RouteTable,
            id: id.into(),
            run_id: None,
            created_at: None,
            vpc_id: Some("vpc-1".into()),
            parent: None,
            tags: Default::default(),
        }
    }

    /// Route tables already gone: one is asked about once, several each once more on
    /// their own, and every one ends "already gone" (no endless asking).
    #[tokio::test]
    async fn route_tables_already_gone_are_asked_about_a_bounded_number_of_times() {
        for n in [1, 3] {
            let replay = Replay::new(|r| match r.operation.as_str() {
                "DescribeRouteTables" | "DeleteRouteTable" => Some(ec2_error("InvalidRouteTableID.NotFound")),
                _ => None,
            });
            let clients = Clients::new(&replay.sdk_config("eu-west-1").await);
            let items: Vec<Item> = (0..n).map(|i| table(&format!("rtb-{i}"))).collect();
            let report = teardown(&clients, &items, Backoff::default()).await;
            assert!(report.outcomes.iter().all(|(_, o)| *o == Outcome::AlreadyGone), "{:?}", report.outcomes);
            let describes = replay.requests().iter().filter(|r| r.operation == "DescribeRouteTables").count();
            assert_eq!(describes, if n == 1 { 1 } else { 1 + n }, "{n} table(s)");
        }
    }
}
