//! The live reader: one paginated describe per resource type, filtered by VPC, the EC2
//! reads in parallel, then IAM, CloudWatch Logs and CloudWatch for what the flow logs
//! point at.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use ipnet::IpNet;

use super::*;
use crate::aws::{AwsError, Clients, all_items, aws_err};
use crate::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};

/// Why a deployment could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// No VPC of that id.
    #[error("VPC {0} not found\n(hint: check --vpc-id and the region)")]
    VpcNotFound(String),
    /// A read failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn cidr(v4: Option<&str>, v6: Option<&str>) -> Option<IpNet> {
    v4.or(v6)?.parse().ok()
}

/// A NACL entry as EC2 reports it, normalised.
pub fn nacl_entry(e: &aws_sdk_ec2::types::NetworkAclEntry) -> Option<NaclEntry> {
    let protocol = Protocol::parse(e.protocol()?)?;
    let ports = if protocol.has_ports() {
        // Some emulators omit PortRange on a TCP entry; AWS always sends it. Absent means
        // every port, which is also what EC2 does with such an entry.
        e.port_range()
            .and_then(|p| Some(PortRange { from: u16::try_from(p.from()?).ok()?, to: u16::try_from(p.to()?).ok()? }))
    } else {
        None
    };
    Some(NaclEntry {
        rule_number: e.rule_number()?,
        direction: if e.egress()? { Direction::Egress } else { Direction::Ingress },
        protocol,
        ports,
        cidr: cidr(e.cidr_block(), e.ipv6_cidr_block())?,
        action: match e.rule_action()? {
            aws_sdk_ec2::types::RuleAction::Allow => RuleAction::Allow,
            _ => RuleAction::Deny,
        },
    })
}

/// One `IpPermission` expanded into one rule per peer.
pub fn sg_rules(p: &aws_sdk_ec2::types::IpPermission, direction: Direction) -> Vec<SgRule> {
    let Some(protocol) = p.ip_protocol().and_then(Protocol::parse) else { return Vec::new() };
    let ports = match (protocol.has_ports(), p.from_port(), p.to_port()) {
        (true, Some(from), Some(to)) => match (u16::try_from(from), u16::try_from(to)) {
            (Ok(from), Ok(to)) => Some(PortRange { from, to }),
            _ => None,
        },
        _ => None,
    };
    let mut peers: Vec<Peer> = Vec::new();
    peers.extend(p.ip_ranges().iter().filter_map(|r| r.cidr_ip()?.parse().ok()).map(Peer::Cidr));
    peers.extend(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()?.parse().ok()).map(Peer::Cidr));
    peers.extend(p.user_id_group_pairs().iter().filter_map(|g| g.group_id()).map(|g| Peer::GroupId(g.to_string())));
    peers
        .extend(p.prefix_list_ids().iter().filter_map(|l| l.prefix_list_id()).map(|l| Peer::PrefixList(l.to_string())));
    peers.into_iter().map(|peer| SgRule { direction, protocol, ports, peer }).collect()
}

/// Decodes a policy document: IAM returns it URL-encoded (RFC 3986); some emulators
/// return it plain. Either way the result is parsed JSON.
pub fn policy_document(raw: &str) -> serde_json::Value {
    if let Ok(v) = serde_json::from_str(raw) {
        return v;
    }
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    serde_json::from_str(&decoded).unwrap_or(serde_json::Value::String(raw.to_string()))
}

/// Reads a deployment into the normalised model.
pub async fn read_live(clients: &Clients, vpc_id: &str) -> Result<Observed, ObserveError> {
    let ec2 = &clients.ec2;
    let by_vpc = Filter::builder().name("vpc-id").values(vpc_id).build();
    let (vpcs, subnets, nacls, groups, tables, igws, nats) = tokio::try_join!(
        async { ec2.describe_vpcs().filters(by_vpc.clone()).send().await.map_err(aws_err("DescribeVpcs")) },
        async { all_items!(ec2.describe_subnets().filters(by_vpc.clone()), "DescribeSubnets") },
        async { all_items!(ec2.describe_network_acls().filters(by_vpc.clone()), "DescribeNetworkAcls") },
        async { all_items!(ec2.describe_security_groups().filters(by_vpc.clone()), "DescribeSecurityGroups") },
        async { all_items!(ec2.describe_route_tables().filters(by_vpc.clone()), "DescribeRouteTables") },
        async {
            all_items!(
                ec2.describe_internet_gateways()
                    .filters(Filter::builder().name("attachment.vpc-id").values(vpc_id).build()),
                "DescribeInternetGateways"
            )
        },
        async { all_items!(ec2.describe_nat_gateways().filter(by_vpc.clone()), "DescribeNatGateways") },
    )?;
    // What else the VPC holds or is joined to: the closed-world checks account for it.
    // Flow logs are read once the subnets are known, for the VPC and its subnets in one
    // call: each resource type is read once (the bench holds observe to that).
    let flow_log_resources: Vec<String> = std::iter::once(vpc_id.to_string())
        .chain(subnets.iter().filter_map(|s| s.subnet_id().map(str::to_string)))
        .collect();
    let (eigws, endpoints, peerings, interfaces, flow_logs) = tokio::try_join!(
        async {
            all_items!(
                ec2.describe_egress_only_internet_gateways()
                    .filters(Filter::builder().name("attachment.vpc-id").values(vpc_id).build()),
                "DescribeEgressOnlyInternetGateways"
            )
        },
        async { all_items!(ec2.describe_vpc_endpoints().filters(by_vpc.clone()), "DescribeVpcEndpoints") },
        // EC2's filters are ANDed, so "either side is this VPC" cannot be asked: the
        // region's connections are read once and kept where this VPC is a side.
        async { all_items!(ec2.describe_vpc_peering_connections(), "DescribeVpcPeeringConnections") },
        async { all_items!(ec2.describe_network_interfaces().filters(by_vpc.clone()), "DescribeNetworkInterfaces") },
        async {
            all_items!(
                ec2.describe_flow_logs()
                    .filter(Filter::builder().name("resource-id").set_values(Some(flow_log_resources.clone())).build()),
                "DescribeFlowLogs"
            )
        },
    )?;
    let vpc = vpcs.vpcs().first().ok_or_else(|| ObserveError::VpcNotFound(vpc_id.to_string()))?;
    let mut observed = Observed {
        format_version: OBSERVED_FORMAT_VERSION,
        region: clients.region.clone(),
        vpc: Some(ObservedVpc {
            id: vpc_id.to_string(),
            cidr: vpc.cidr_block().and_then(|c| c.parse().ok()).unwrap_or_else(|| IpNet::V4(Default::default())),
            tags: tags_of(vpc.tags()),
        }),
        ..Default::default()
    };
    observed.subnets = subnets
        .iter()
        .filter_map(|s| {
            Some(ObservedSubnet {
                id: s.subnet_id()?.to_string(),
                cidr: s.cidr_block()?.parse().ok()?,
                availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                assign_ipv6_on_creation: s.assign_ipv6_address_on_creation().unwrap_or(false),
                tags: tags_of(s.tags()),
            })
        })
        .collect();
    observed.nacls = nacls
        .iter()
        .filter_map(|n| {
            let mut entries: Vec<NaclEntry> = n.entries().iter().filter_map(nacl_entry).collect();
            entries.sort_by_key(|e| (e.direction, e.rule_number));
            Some(ObservedNacl {
                id: n.network_acl_id()?.to_string(),
                is_default: n.is_default().unwrap_or(false),
                entries,
                associations: n
                    .associations()
                    .iter()
                    .filter_map(|a| {
                        Some(NaclAssociation {
                            id: a.network_acl_association_id()?.to_string(),
                            subnet_id: a.subnet_id()?.to_string(),
                        })
                    })
                    .collect(),
                tags: tags_of(n.tags()),
            })
        })
        .collect();
    observed.security_groups = groups
        .iter()
        .filter_map(|g| {
            let mut rules: Vec<SgRule> =
                g.ip_permissions().iter().flat_map(|p| sg_rules(p, Direction::Ingress)).collect();
            rules.extend(g.ip_permissions_egress().iter().flat_map(|p| sg_rules(p, Direction::Egress)));
            rules.sort();
            rules.dedup();
            Some(ObservedSecurityGroup {
                id: g.group_id()?.to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
                description: g.description().unwrap_or_default().to_string(),
                rules,
                tags: tags_of(g.tags()),
            })
        })
        .collect();
    observed.route_tables = tables
        .iter()
        .filter_map(|t| {
            Some(ObservedRouteTable {
                id: t.route_table_id()?.to_string(),
                is_main: t.associations().iter().any(|a| a.main() == Some(true)),
                subnet_ids: t
                    .associations()
                    .iter()
                    .filter(|a| a.main() != Some(true))
                    .filter_map(|a| a.subnet_id().map(str::to_string))
                    .collect(),
                routes: t
                    .routes()
                    .iter()
                    .map(|r| ObservedRoute {
                        destination: r
                            .destination_cidr_block()
                            .or(r.destination_ipv6_cidr_block())
                            .or(r.destination_prefix_list_id())
                            .unwrap_or_default()
                            .to_string(),
                        target: r
                            .gateway_id()
                            .or(r.nat_gateway_id())
                            .or(r.transit_gateway_id())
                            .or(r.vpc_peering_connection_id())
                            .or(r.network_interface_id())
                            .or(r.instance_id())
                            .or(r.egress_only_internet_gateway_id())
                            .or(r.local_gateway_id())
                            .or(r.carrier_gateway_id())
                            .or(r.core_network_arn())
                            // A route with none (seen on LocalStack's CloudFormation) is
                            // named, so no planned target ever matches it by accident.
                            .unwrap_or(NO_TARGET)
                            .to_string(),
                        state: r.state().map(|s| s.as_str().to_string()),
                    })
                    .collect(),
                tags: tags_of(t.tags()),
            })
        })
        .collect();
    observed.internet_gateways = igws
        .iter()
        .filter_map(|g| {
            Some(ObservedInternetGateway {
                id: g.internet_gateway_id()?.to_string(),
                attached_vpc_ids: g.attachments().iter().filter_map(|a| a.vpc_id().map(str::to_string)).collect(),
                tags: tags_of(g.tags()),
            })
        })
        .collect();
    observed.nat_gateways = nats
        .iter()
        .filter(|n| !matches!(n.state().map(|s| s.as_str()), Some("deleted")))
        .filter_map(|n| {
            Some(ObservedNatGateway {
                id: n.nat_gateway_id()?.to_string(),
                subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                state: n.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                connectivity: n.connectivity_type().map_or("public", |c| c.as_str()).to_string(),
                allocation_ids: n
                    .nat_gateway_addresses()
                    .iter()
                    .filter_map(|a| a.allocation_id().map(str::to_string))
                    .collect(),
                private_ip: n.nat_gateway_addresses().iter().find_map(|a| a.private_ip().map(str::to_string)),
                tags: tags_of(n.tags()),
            })
        })
        .collect();
    observed.egress_only_internet_gateways = eigws
        .iter()
        .filter_map(|g| {
            Some(ObservedInternetGateway {
                id: g.egress_only_internet_gateway_id()?.to_string(),
                attached_vpc_ids: g.attachments().iter().filter_map(|a| a.vpc_id().map(str::to_string)).collect(),
                tags: tags_of(g.tags()),
            })
        })
        .collect();
    observed.vpc_endpoints = endpoints
        .iter()
        .filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "Deleted")))
        .filter_map(|e| {
            Some(ObservedVpcEndpoint {
                id: e.vpc_endpoint_id()?.to_string(),
                service_name: e.service_name().unwrap_or_default().to_string(),
                endpoint_type: e.vpc_endpoint_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                state: e.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                route_table_ids: e.route_table_ids().to_vec(),
                subnet_ids: e.subnet_ids().to_vec(),
                tags: tags_of(e.tags()),
            })
        })
        .collect();
    observed.peering_connections = peerings
        .iter()
        .filter_map(|p| {
            let status = p.status().and_then(|s| s.code()).map(|c| c.as_str().to_string()).unwrap_or_default();
            // Gone or never made: it joins nothing.
            if matches!(status.as_str(), "deleted" | "rejected" | "failed" | "expired") {
                return None;
            }
            Some(ObservedPeering {
                id: p.vpc_peering_connection_id()?.to_string(),
                requester_vpc_id: p.requester_vpc_info().and_then(|v| v.vpc_id()).unwrap_or_default().to_string(),
                accepter_vpc_id: p.accepter_vpc_info().and_then(|v| v.vpc_id()).unwrap_or_default().to_string(),
                status,
                tags: tags_of(p.tags()),
            })
        })
        .filter(|p| p.requester_vpc_id == vpc_id || p.accepter_vpc_id == vpc_id)
        .collect();
    observed.network_interfaces = interfaces
        .iter()
        .filter_map(|n| {
            let mut public_ips: Vec<String> = n
                .association()
                .and_then(|a| a.public_ip())
                .into_iter()
                .chain(n.private_ip_addresses().iter().filter_map(|p| p.association()?.public_ip()))
                .map(str::to_string)
                .collect();
            public_ips.sort();
            public_ips.dedup();
            Some(ObservedNetworkInterface {
                id: n.network_interface_id()?.to_string(),
                subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                interface_type: n.interface_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                description: n.description().unwrap_or_default().to_string(),
                public_ips,
                ipv6_addresses: n
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address().map(str::to_string))
                    .collect(),
                tags: tags_of(n.tag_set()),
            })
        })
        .collect();
    // A target that ignores the filter answers with other VPCs' flow logs: only those on
    // this VPC or its subnets are kept.
    observed.flow_logs = flow_logs
        .iter()
        .filter(|f| f.resource_id().is_some_and(|r| flow_log_resources.iter().any(|x| x == r)))
        .filter_map(|f| {
            Some(ObservedFlowLog {
                id: f.flow_log_id()?.to_string(),
                resource_id: f.resource_id().unwrap_or_default().to_string(),
                traffic_type: f.traffic_type().map(|t| t.as_str().to_string()),
                destination_type: f.log_destination_type().map(|t| t.as_str().to_string()),
                log_group_name: f.log_group_name().map(str::to_string),
                deliver_logs_permission_arn: f.deliver_logs_permission_arn().map(str::to_string),
                flow_log_status: f.flow_log_status().map(str::to_string),
                deliver_logs_status: f.deliver_logs_status().map(str::to_string),
                deliver_logs_error_message: f.deliver_logs_error_message().map(str::to_string),
                tags: tags_of(f.tags()),
            })
        })
        .collect();

    // What the flow logs point at: roles, then log groups with their filters, then alarms.
    let (role_names, group_names) = flow_log_targets(&observed.flow_logs);
    let (roles, log_groups) = tokio::try_join!(
        futures::future::try_join_all(role_names.iter().map(|r| read_role(clients, r))),
        futures::future::try_join_all(group_names.iter().map(|g| read_log_group(clients, g))),
    )?;
    observed.roles = roles.into_iter().flatten().collect();
    observed.log_groups = log_groups.into_iter().flatten().collect();
    let metrics = published_metrics(&observed.log_groups);
    let alarms = futures::future::try_join_all(metrics.iter().map(|(ns, name)| read_alarms(clients, ns, name))).await?;
    observed.alarms = alarms.into_iter().flatten().collect();
    Ok(observed)
}

/// The role names and log group names the flow logs deliver through and to.
///
/// Sets, not lists: two flow logs may share a role or a log group, and each is read once
/// and appears once in [`Observed`]. The role name is the ARN's last path segment
/// (`arn:aws:iam::123:role/some/path/name`).
fn flow_log_targets(flow_logs: &[ObservedFlowLog]) -> (BTreeSet<String>, BTreeSet<String>) {
    let roles = flow_logs
        .iter()
        .filter_map(|f| f.deliver_logs_permission_arn.as_deref()?.rsplit('/').next().map(str::to_string))
        .collect();
    let groups = flow_logs.iter().filter_map(|f| f.log_group_name.clone()).collect();
    (roles, groups)
}

/// The (namespace, metric name) pairs the groups' metric filters publish, each once:
/// two filters publishing one metric must not read (and list) its alarms twice.
fn published_metrics(groups: &[ObservedLogGroup]) -> BTreeSet<(String, String)> {
    groups
        .iter()
        .flat_map(|g| &g.metric_filters)
        .flat_map(|f| &f.metrics)
        .map(|m| (m.namespace.clone(), m.name.clone()))
        .collect()
}

async fn read_role(clients: &Clients, name: &str) -> Result<Option<ObservedRole>, AwsError> {
    let iam = &clients.iam;
    let role = match iam.get_role().role_name(name).send().await.map_err(aws_err("GetRole")) {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(role) = role.role() else { return Ok(None) };
    let (inline_policies, attached, tags) = tokio::try_join!(
        async {
            let names = all_items!(iam.list_role_policies().role_name(name), "ListRolePolicies")?;
            futures::future::try_join_all(names.into_iter().map(|policy| async move {
                let doc = iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(&policy)
                    .send()
                    .await
                    .map_err(aws_err("GetRolePolicy"))?;
                Ok::<_, AwsError>((policy, policy_document(doc.policy_document())))
            }))
            .await
        },
        async { all_items!(iam.list_attached_role_policies().role_name(name), "ListAttachedRolePolicies") },
        async { all_items!(iam.list_role_tags().role_name(name), "ListRoleTags") },
    )?;
    Ok(Some(ObservedRole {
        name: name.to_string(),
        arn: role.arn().to_string(),
        path: role.path().to_string(),
        trust_policy: policy_document(role.assume_role_policy_document().unwrap_or("{}")),
        inline_policies: inline_policies.into_iter().collect(),
        attached_policy_arns: attached.iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect(),
        tags: tags.iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
    }))
}

async fn read_log_group(clients: &Clients, name: &str) -> Result<Option<ObservedLogGroup>, AwsError> {
    // One page, no paginator: groups come back sorted by name, and a name sorts before
    // every longer name it prefixes, so an exact match is on the first page or nowhere.
    let groups = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(aws_err("DescribeLogGroups"))?;
    let Some(group) = groups.log_groups().iter().find(|g| g.log_group_name() == Some(name)) else { return Ok(None) };
    let arn = crate::aws::log_group_arn(group);
    let (filters, tags) = tokio::try_join!(
        async { all_items!(clients.logs.describe_metric_filters().log_group_name(name), "DescribeMetricFilters") },
        async {
            match &arn {
                Some(arn) => clients
                    .logs
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map(|t| t.tags().cloned().unwrap_or_default())
                    .map_err(aws_err("ListTagsForResource")),
                None => Ok(Default::default()),
            }
        },
    )?;
    Ok(Some(ObservedLogGroup {
        name: name.to_string(),
        arn,
        retention_days: group.retention_in_days(),
        metric_filters: filters
            .iter()
            .map(|f| ObservedMetricFilter {
                name: f.filter_name().unwrap_or_default().to_string(),
                pattern: f.filter_pattern().unwrap_or_default().to_string(),
                metrics: f
                    .metric_transformations()
                    .iter()
                    .map(|m| MetricTransformation {
                        namespace: m.metric_namespace().to_string(),
                        name: m.metric_name().to_string(),
                        value: m.metric_value().to_string(),
                    })
                    .collect(),
            })
            .collect(),
        tags: tags.into_iter().collect(),
    }))
}

async fn read_alarms(clients: &Clients, namespace: &str, metric: &str) -> Result<Vec<ObservedAlarm>, AwsError> {
    // No alarm can be read where CloudWatch cannot answer the SDK (cloudwatch-no-cbor).
    if !clients.cloudwatch_served {
        return Ok(Vec::new());
    }
    let out = clients
        .cloudwatch
        .describe_alarms_for_metric()
        .namespace(namespace)
        .metric_name(metric)
        .send()
        .await
        .map_err(aws_err("DescribeAlarmsForMetric"))?;
    let mut alarms = Vec::new();
    for a in out.metric_alarms() {
        let tags = match a.alarm_arn() {
            Some(arn) => clients
                .cloudwatch
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(aws_err("ListTagsForResource"))?
                .tags()
                .to_vec(),
            None => Vec::new(),
        };
        alarms.push(ObservedAlarm {
            name: a.alarm_name().unwrap_or_default().to_string(),
            arn: a.alarm_arn().map(str::to_string),
            namespace: a.namespace().map(str::to_string),
            metric_name: a.metric_name().map(str::to_string),
            statistic: a.statistic().map(|s| s.as_str().to_string()),
            period: a.period(),
            evaluation_periods: a.evaluation_periods(),
            threshold: a.threshold(),
            comparison: a.comparison_operator().map(|c| c.as_str().to_string()),
            dimensions: a
                .dimensions()
                .iter()
                .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                .collect(),
            state: a.state_value().map(|s| s.as_str().to_string()),
            tags: tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect(),
        });
    }
    Ok(alarms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{IpPermission, IpRange, NetworkAclEntry, UserIdGroupPair};

    #[test]
    fn nacl_entry_numbers_become_protocols_and_ports() {
        let e = NetworkAclEntry::builder()
            .rule_number(110)
            .protocol("6")
            .egress(true)
            .cidr_block("10.0.2.0/24")
            .rule_action(aws_sdk_ec2::types::RuleAction::Allow)
            .port_range(aws_sdk_ec2::types::PortRange::builder().from(443).to(443).build())
            .build();
        let n = nacl_entry(&e).unwrap();
        assert_eq!(
            (n.rule_number, n.direction, n.protocol, n.ports),
            (110, Direction::Egress, Protocol::Tcp, Some(PortRange::single(443)))
        );
        let all = NetworkAclEntry::builder()
            .rule_number(32767)
            .protocol("-1")
            .egress(false)
            .cidr_block("0.0.0.0/0")
            .rule_action(aws_sdk_ec2::types::RuleAction::Deny)
            .build();
        assert!(nacl_entry(&all).unwrap().is_default_deny());
    }

    #[test]
    fn one_permission_with_two_peers_is_two_rules() {
        let p = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
            .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
            .build();
        let rules = sg_rules(&p, Direction::Ingress);
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().any(|r| r.peer == Peer::GroupId("sg-1".into())));
        assert!(rules.iter().all(|r| r.ports == Some(PortRange::single(22))));
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        assert_eq!(sg_rules(&all, Direction::Egress)[0].ports, None);
    }

    #[test]
    fn icmpv6_by_name_or_number_is_protocol_58() {
        for name in ["icmpv6", "58"] {
            let p = IpPermission::builder()
                .ip_protocol(name)
                .from_port(-1)
                .to_port(-1)
                .ipv6_ranges(aws_sdk_ec2::types::Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build();
            let rules = sg_rules(&p, Direction::Ingress);
            assert_eq!(rules.len(), 1, "{name}");
            assert_eq!((rules[0].protocol, rules[0].ports), (Protocol::Number(58), None), "{name}");
            assert_eq!(rules[0].peer, Peer::Cidr("::/0".parse().unwrap()), "{name}");
        }
    }

    #[test]
    fn policy_documents_decode_plain_or_url_encoded() {
        let plain = r#"{"Version":"2012-10-17"}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(policy_document(plain)["Version"], "2012-10-17");
        assert_eq!(policy_document(encoded)["Version"], "2012-10-17");
    }

    #[test]
    fn shared_roles_groups_and_metrics_are_read_once() {
        let flow_log = |id: &str, group: &str| ObservedFlowLog {
            id: id.into(),
            resource_id: "vpc-1".into(),
            traffic_type: Some("ALL".into()),
            destination_type: Some("cloud-watch-logs".into()),
            log_group_name: Some(group.into()),
            deliver_logs_permission_arn: Some("arn:aws:iam::000000000000:role/microseg/flowlogs".into()),
            flow_log_status: Some("ACTIVE".into()),
            deliver_logs_status: None,
            deliver_logs_error_message: None,
            tags: Tags::new(),
        };
        let (roles, groups) =
            flow_log_targets(&[flow_log("fl-1", "/a"), flow_log("fl-2", "/b"), flow_log("fl-3", "/a")]);
        assert_eq!(roles.into_iter().collect::<Vec<_>>(), ["flowlogs"]);
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), ["/a", "/b"]);

        let group = |name: &str| ObservedLogGroup {
            name: name.into(),
            arn: None,
            retention_days: None,
            metric_filters: vec![ObservedMetricFilter {
                name: "rejects".into(),
                pattern: String::new(),
                metrics: vec![MetricTransformation {
                    namespace: "Ns".into(),
                    name: "Rejects".into(),
                    value: "1".into(),
                }],
            }],
            tags: Tags::new(),
        };
        assert_eq!(published_metrics(&[group("/a"), group("/b")]).len(), 1);
    }

    /// Reads a deployment on a running emulator and checks what the offline tests cannot:
    /// that each resource is read once and listed once. Not part of any suite (the
    /// project's LocalStack suites build their own deployments); run by hand:
    ///
    /// `MICROSEG_TEST_ENDPOINT=http://127.0.0.1:4566 MICROSEG_TEST_VPC=vpc-… cargo test -p microseg-harness --lib read_live_on_an_emulator -- --ignored --nocapture`
    #[tokio::test]
    #[ignore = "needs a running emulator: set MICROSEG_TEST_ENDPOINT and MICROSEG_TEST_VPC"]
    async fn read_live_on_an_emulator() {
        let (Ok(url), Ok(vpc)) = (std::env::var("MICROSEG_TEST_ENDPOINT"), std::env::var("MICROSEG_TEST_VPC")) else {
            eprintln!("skipped: set MICROSEG_TEST_ENDPOINT and MICROSEG_TEST_VPC");
            return;
        };
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let clients = Clients::new(&config);
        let started = std::time::Instant::now();
        let observed = read_live(&clients, &vpc).await.expect("read_live");
        let elapsed = started.elapsed();
        let calls = clients.calls.snapshot();
        eprintln!("read_live: {} calls in {elapsed:?}: {calls:?}", calls.values().sum::<usize>());
        let (role_names, group_names) = flow_log_targets(&observed.flow_logs);
        let count = |op: &str| calls.get(op).copied().unwrap_or(0);
        assert_eq!(count("IAM:GetRole"), role_names.len(), "{calls:?}");
        assert_eq!(count("CloudWatch Logs:DescribeLogGroups"), group_names.len(), "{calls:?}");
        assert_eq!(count("CloudWatch:DescribeAlarmsForMetric"), published_metrics(&observed.log_groups).len());
        let roles: BTreeSet<_> = observed.roles.iter().map(|r| &r.name).collect();
        let groups: BTreeSet<_> = observed.log_groups.iter().map(|g| &g.name).collect();
        let alarms: BTreeSet<_> = observed.alarms.iter().map(|a| &a.name).collect();
        assert_eq!(
            (roles.len(), groups.len(), alarms.len()),
            (observed.roles.len(), observed.log_groups.len(), observed.alarms.len())
        );
        for nacl in &observed.nacls {
            assert!(nacl.entries.is_sorted_by_key(|e| (e.direction, e.rule_number)), "{}", nacl.id);
        }
    }
}
