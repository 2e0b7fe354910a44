//! What only AWS can decide, tested with AWS's answers: a deployment of a plan written
//! as EC2, IAM, CloudWatch Logs and CloudWatch answer their describe calls (the fields
//! of docs/EMULATOR.md, "What only AWS decides, replayed"), read by the real observe code
//! ([`super::read_live`]) through the replay client, then checked as on AWS.
//!
//! Three things LocalStack cannot show are in every answer, as AWS gives them: each
//! custom NACL's two `*` entries (rule 32767, deny), the default security group's ingress
//! from itself, and a flow log's delivery status. The checks that are a `divergence` on
//! LocalStack are decided here, and each test states the findings they produce.

use std::collections::BTreeMap;
use std::fmt::Write;

use ipnet::IpNet;

use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::checks::{CheckResult, Status, run_checks};
use crate::model::{Direction, NaclEntry, Peer, Protocol, RuleAction, SgRule, default_sg_egress};
use crate::plan::{Plan, RouteTarget};
use crate::replay::{self, Answer, Cbor, Replay, Request};
use crate::run_id::RunId;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const VPC: &str = "vpc-0a1b2c3d4e5f60001";
const DEFAULT_NACL: &str = "acl-0a1b2c3d4e5f6ffff";
const DEFAULT_GROUP: &str = "sg-0a1b2c3d4e5f6ffff";
const MAIN_TABLE: &str = "rtb-0a1b2c3d4e5f6ffff";
const FLOW_LOG: &str = "fl-0a1b2c3d4e5f60001";

/// What the answers say about the three AWS-only questions.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Each custom NACL carries the `*` deny entries (AWS always adds them).
    default_deny: bool,
    /// The flow log's `DeliverLogsStatus` and `DeliverLogsErrorMessage`.
    delivery: (&'static str, Option<&'static str>),
    /// The default group as AWS makes it: ingress from itself and all egress (else only
    /// the egress, as LocalStack makes it).
    default_group_self_ingress: bool,
}

/// AWS's answers for a deployment of `plan`: every resource of the plan, with AWS's
/// defaults (the default NACL, group and main route table) beside them.
const AWS: Shape =
    Shape { default_deny: true, delivery: ("FAILED", Some("Access error")), default_group_self_ingress: true };

fn id(prefix: &str, n: usize) -> String {
    format!("{prefix}-0a1b2c3d4e5f6{n:04x}")
}

fn tag_set(name: &str) -> String {
    format!("<tagSet><item><key>Name</key><value>{name}</value></item></tagSet>")
}

fn cidr_xml(cidr: &IpNet) -> String {
    match cidr {
        IpNet::V4(_) => format!("<cidrBlock>{cidr}</cidrBlock>"),
        IpNet::V6(_) => format!("<ipv6CidrBlock>{cidr}</ipv6CidrBlock>"),
    }
}

/// One NACL entry as `DescribeNetworkAcls` gives it (`entrySet/item`).
fn entry_xml(e: &NaclEntry) -> String {
    let ports =
        e.ports.map(|p| format!("<portRange><from>{}</from><to>{}</to></portRange>", p.from, p.to)).unwrap_or_default();
    let icmp =
        if e.protocol == Protocol::Icmp { "<icmpTypeCode><code>-1</code><type>-1</type></icmpTypeCode>" } else { "" };
    format!(
        "<item><ruleNumber>{}</ruleNumber><protocol>{}</protocol><ruleAction>{}</ruleAction><egress>{}</egress>{}{icmp}{ports}</item>",
        e.rule_number,
        e.protocol.nacl_api_value(),
        e.action,
        e.direction.is_egress(),
        cidr_xml(&e.cidr)
    )
}

fn every(direction: Direction, number: i32, action: RuleAction) -> NaclEntry {
    NaclEntry {
        rule_number: number,
        direction,
        protocol: Protocol::All,
        ports: None,
        cidr: "0.0.0.0/0".parse().unwrap(),
        action,
    }
}

/// Rules with the same protocol and ports in one `ipPermissions` item, as EC2 lists them.
fn permissions_xml(rules: &[SgRule], group_id: impl Fn(&str) -> String) -> String {
    type Key = (String, Option<(u16, u16)>);
    let mut by_key: BTreeMap<Key, Vec<&Peer>> = BTreeMap::new();
    for r in rules {
        by_key.entry((r.protocol.sg_api_value(), r.ports.map(|p| (p.from, p.to)))).or_default().push(&r.peer);
    }
    let mut out = String::new();
    for ((protocol, ports), peers) in by_key {
        let ports = match (protocol.as_str(), ports) {
            ("-1", _) => String::new(),
            ("icmp", _) => "<fromPort>-1</fromPort><toPort>-1</toPort>".into(),
            (_, Some((from, to))) => format!("<fromPort>{from}</fromPort><toPort>{to}</toPort>"),
            (_, None) => "<fromPort>0</fromPort><toPort>65535</toPort>".into(),
        };
        let (mut groups, mut v4, mut v6, mut lists) = (String::new(), String::new(), String::new(), String::new());
        for p in peers {
            match p {
                Peer::Cidr(IpNet::V4(c)) => write!(v4, "<item><cidrIp>{c}</cidrIp></item>").unwrap(),
                Peer::Cidr(IpNet::V6(c)) => write!(v6, "<item><cidrIpv6>{c}</cidrIpv6></item>").unwrap(),
                Peer::Group(name) => {
                    write!(groups, "<item><userId>{ACCOUNT}</userId><groupId>{}</groupId></item>", group_id(name))
                        .unwrap()
                }
                Peer::GroupId(g) => {
                    write!(groups, "<item><userId>{ACCOUNT}</userId><groupId>{g}</groupId></item>").unwrap()
                }
                Peer::PrefixList(l) => write!(lists, "<item><prefixListId>{l}</prefixListId></item>").unwrap(),
            }
        }
        write!(
            out,
            "<item><ipProtocol>{protocol}</ipProtocol>{ports}<groups>{groups}</groups><ipRanges>{v4}</ipRanges>\
             <ipv6Ranges>{v6}</ipv6Ranges><prefixListIds>{lists}</prefixListIds></item>"
        )
        .unwrap();
    }
    out
}

/// The names a run with id `ms-0123456789` gives the account-wide resources.
struct Names {
    role: String,
    log_group: String,
    metric_filter: String,
    alarm: String,
    metric: String,
}

/// The bindings of the deployment and the replay that answers for it.
fn deployment(plan: &Plan, shape: Shape) -> (Bindings, Replay) {
    let run = RunId::parse("ms-0123456789").unwrap();
    let names = Names {
        role: plan.flow_log.as_ref().map(|f| run.name(&f.role_name)).unwrap_or_default(),
        log_group: plan.flow_log.as_ref().map(|f| run.name(&f.log_group)).unwrap_or_default(),
        metric_filter: plan.alarm.as_ref().map(|a| run.name(&a.metric_filter_name)).unwrap_or_default(),
        alarm: plan.alarm.as_ref().map(|a| run.name(&a.name)).unwrap_or_default(),
        metric: plan.alarm.as_ref().map(|a| run.name(&a.metric_name)).unwrap_or_default(),
    };
    let mut b = Bindings { vpc_id: Some(VPC.into()), ..Default::default() };
    for (i, z) in plan.zones.iter().enumerate() {
        b.zones.insert(z.name.clone(), id("subnet", i));
    }
    for (i, n) in plan.nacls.iter().enumerate() {
        b.nacls.insert(n.name.clone(), id("acl", i));
    }
    for (i, g) in plan.security_groups.iter().enumerate() {
        b.security_groups.insert(g.name.clone(), id("sg", i));
    }
    for (i, t) in plan.route_tables.iter().enumerate() {
        b.route_tables.insert(t.name.clone(), id("rtb", i));
    }
    for (i, n) in plan.nat_gateways.iter().enumerate() {
        b.nat_gateways.insert(n.name.clone(), id("nat", i));
        b.elastic_ips.insert(n.name.clone(), id("eipalloc", i));
    }
    b.internet_gateway_id = plan.internet_gateway.as_ref().map(|_| id("igw", 0));
    if plan.flow_log.is_some() {
        b.flow_log_id = Some(FLOW_LOG.into());
        b.role_name = Some(names.role.clone());
        b.log_group_name = Some(names.log_group.clone());
    }
    if plan.alarm.is_some() {
        b.metric_filter_name = Some(names.metric_filter.clone());
        b.alarm_name = Some(names.alarm.clone());
        b.metric_name = Some(names.metric.clone());
    }
    let answers = answers(plan, &b, &names, shape);
    // CloudWatch's ListTagsForResource (CBOR) shares its name with CloudWatch Logs' (JSON).
    let alarm_tags = Cbor::default()
        .map(1)
        .text("Tags")
        .array(1)
        .map(2)
        .pair("Key", "microseg:run-id")
        .pair("Value", "ms-0123456789");
    let replay = Replay::new(move |r: &Request| {
        if r.operation == "ListTagsForResource" && !r.body.starts_with('{') {
            return Some(Answer::cbor(alarm_tags.clone()));
        }
        answers.get(r.operation.as_str()).cloned()
    });
    (b, replay)
}

/// Every describe answer, by operation. Each is asked once per read (the observe code
/// filters by the VPC, and the answer holds only this VPC's resources).
fn answers(plan: &Plan, b: &Bindings, names: &Names, shape: Shape) -> BTreeMap<&'static str, Answer> {
    let group_id = |name: &str| b.security_groups.get(name).cloned().unwrap_or_else(|| name.to_string());
    let mut a: BTreeMap<&'static str, Answer> = BTreeMap::new();
    let ec2 = |op: &str, inner: String| Answer::ok(replay::ec2(op, &inner));

    a.insert(
        "DescribeVpcs",
        ec2(
            "DescribeVpcs",
            format!(
                "<vpcSet><item><vpcId>{VPC}</vpcId><state>available</state><cidrBlock>{}</cidrBlock><ownerId>{ACCOUNT}</ownerId>\
                 <instanceTenancy>default</instanceTenancy><isDefault>false</isDefault>{}</item></vpcSet>",
                plan.vpc.cidr,
                tag_set(&plan.vpc.name)
            ),
        ),
    );
    let subnets: String = plan
        .zones
        .iter()
        .map(|z| {
            format!(
                "<item><subnetId>{}</subnetId><state>available</state><vpcId>{VPC}</vpcId><cidrBlock>{}</cidrBlock>\
                 <availabilityZone>{REGION}{}</availabilityZone>{}</item>",
                b.zones[&z.name],
                z.cidr,
                z.az_suffix,
                tag_set(&z.subnet_name)
            )
        })
        .collect();
    a.insert("DescribeSubnets", ec2("DescribeSubnets", format!("<subnetSet>{subnets}</subnetSet>")));

    // NACLs: the default one (AWS's allow-all 100 and deny 32767 each way) holding the
    // subnets of zones that stay on it, and each custom one with its entries.
    let association = |subnet: &str, acl: &str, n: usize| {
        format!(
            "<item><networkAclAssociationId>aclassoc-0a1b2c3d4e5f6{n:04x}</networkAclAssociationId><networkAclId>{acl}</networkAclId><subnetId>{subnet}</subnetId></item>"
        )
    };
    let mut nacls = String::new();
    let default_entries: String = [Direction::Ingress, Direction::Egress]
        .into_iter()
        .flat_map(|d| [every(d, 100, RuleAction::Allow), every(d, 32767, RuleAction::Deny)])
        .map(|e| entry_xml(&e))
        .collect();
    let on_default: String = plan
        .zones
        .iter()
        .enumerate()
        .filter(|(_, z)| z.on_default_nacl())
        .map(|(i, z)| association(&b.zones[&z.name], DEFAULT_NACL, i))
        .collect();
    write!(
        nacls,
        "<item><networkAclId>{DEFAULT_NACL}</networkAclId><vpcId>{VPC}</vpcId><default>true</default><entrySet>{default_entries}</entrySet>\
         <associationSet>{on_default}</associationSet><tagSet/><ownerId>{ACCOUNT}</ownerId></item>"
    )
    .unwrap();
    for n in &plan.nacls {
        let acl = &b.nacls[&n.name];
        let mut entries: String = n.entries.iter().map(entry_xml).collect();
        if shape.default_deny {
            for d in [Direction::Ingress, Direction::Egress] {
                entries.push_str(&entry_xml(&every(d, 32767, RuleAction::Deny)));
            }
        }
        let assoc: String = plan
            .zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.nacl == n.name)
            .map(|(i, z)| association(&b.zones[&z.name], acl, i))
            .collect();
        write!(
            nacls,
            "<item><networkAclId>{acl}</networkAclId><vpcId>{VPC}</vpcId><default>false</default><entrySet>{entries}</entrySet>\
             <associationSet>{assoc}</associationSet>{}<ownerId>{ACCOUNT}</ownerId></item>",
            tag_set(&n.tag_name)
        )
        .unwrap();
    }
    a.insert("DescribeNetworkAcls", ec2("DescribeNetworkAcls", format!("<networkAclSet>{nacls}</networkAclSet>")));

    // Groups: the default one as AWS makes it (or closed, where the plan has build revoke
    // its rules), then each planned one with its rules.
    let mut default_rules = vec![default_sg_egress()];
    if shape.default_group_self_ingress {
        default_rules.push(crate::reach::default_sg_self_ingress(DEFAULT_GROUP));
    }
    if plan.vpc.close_default_group {
        default_rules.clear();
    }
    let group_xml = |gid: &str, name: &str, description: &str, rules: &[SgRule]| {
        let (ingress, egress): (Vec<SgRule>, Vec<SgRule>) =
            rules.iter().cloned().partition(|r| r.direction == Direction::Ingress);
        format!(
            "<item><ownerId>{ACCOUNT}</ownerId><groupId>{gid}</groupId><groupName>{name}</groupName><groupDescription>{description}</groupDescription>\
             <vpcId>{VPC}</vpcId><ipPermissions>{}</ipPermissions><ipPermissionsEgress>{}</ipPermissionsEgress>{}</item>",
            permissions_xml(&ingress, group_id),
            permissions_xml(&egress, group_id),
            tag_set(name)
        )
    };
    let mut groups = group_xml(DEFAULT_GROUP, "default", "default VPC security group", &default_rules);
    for g in &plan.security_groups {
        groups.push_str(&group_xml(&b.security_groups[&g.name], &g.group_name, &g.description, &g.expected_rules()));
    }
    a.insert(
        "DescribeSecurityGroups",
        ec2("DescribeSecurityGroups", format!("<securityGroupInfo>{groups}</securityGroupInfo>")),
    );

    // Route tables: the main one (the local route only), then each planned one.
    let local = format!(
        "<item><destinationCidrBlock>{}</destinationCidrBlock><gatewayId>local</gatewayId><state>active</state><origin>CreateRouteTable</origin></item>",
        plan.vpc.cidr
    );
    let mut tables = format!(
        "<item><routeTableId>{MAIN_TABLE}</routeTableId><vpcId>{VPC}</vpcId><routeSet>{local}</routeSet><associationSet><item>\
         <routeTableAssociationId>rtbassoc-0a1b2c3d4e5f6ffff</routeTableAssociationId><routeTableId>{MAIN_TABLE}</routeTableId>\
         <main>true</main><associationState><state>associated</state></associationState></item></associationSet><tagSet/></item>"
    );
    for (i, t) in plan.route_tables.iter().enumerate() {
        let rtb = &b.route_tables[&t.name];
        let routes: String = t
            .routes
            .iter()
            .map(|(dest, target)| {
                let target = match target {
                    RouteTarget::InternetGateway => format!("<gatewayId>{}</gatewayId>", b.internet_gateway_id.clone().unwrap()),
                    RouteTarget::NatGateway(n) => format!("<natGatewayId>{}</natGatewayId>", b.nat_gateways[n]),
                };
                format!("<item><destinationCidrBlock>{dest}</destinationCidrBlock>{target}<state>active</state><origin>CreateRoute</origin></item>")
            })
            .collect();
        let assoc: String = t
            .zones
            .iter()
            .enumerate()
            .map(|(j, z)| {
                format!(
                    "<item><routeTableAssociationId>rtbassoc-0a1b2c3d4e5f6{i:02x}{j:02x}</routeTableAssociationId><routeTableId>{rtb}</routeTableId>\
                     <subnetId>{}</subnetId><main>false</main><associationState><state>associated</state></associationState></item>",
                    b.zones[z]
                )
            })
            .collect();
        write!(
            tables,
            "<item><routeTableId>{rtb}</routeTableId><vpcId>{VPC}</vpcId><routeSet>{local}{routes}</routeSet><associationSet>{assoc}</associationSet>{}</item>",
            tag_set(&t.tag_name)
        )
        .unwrap();
    }
    a.insert("DescribeRouteTables", ec2("DescribeRouteTables", format!("<routeTableSet>{tables}</routeTableSet>")));

    let igws = match (&plan.internet_gateway, &b.internet_gateway_id) {
        (Some(name), Some(igw)) => format!(
            "<item><internetGatewayId>{igw}</internetGatewayId><attachmentSet><item><vpcId>{VPC}</vpcId><state>available</state></item></attachmentSet>{}</item>",
            tag_set(name)
        ),
        _ => String::new(),
    };
    a.insert(
        "DescribeInternetGateways",
        ec2("DescribeInternetGateways", format!("<internetGatewaySet>{igws}</internetGatewaySet>")),
    );

    let nats: String = plan
        .nat_gateways
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "<item><natGatewayId>{}</natGatewayId><subnetId>{}</subnetId><vpcId>{VPC}</vpcId><state>available</state>\
                 <connectivityType>public</connectivityType><natGatewayAddressSet><item><allocationId>{}</allocationId>\
                 <networkInterfaceId>eni-0a1b2c3d4e5f6{i:04x}</networkInterfaceId><privateIp>10.255.0.{i}</privateIp><publicIp>198.51.100.{i}</publicIp>\
                 <isPrimary>true</isPrimary><status>succeeded</status></item></natGatewayAddressSet>{}</item>",
                b.nat_gateways[&n.name],
                b.zones[&n.zone],
                b.elastic_ips[&n.name],
                tag_set(&n.tag_name)
            )
        })
        .collect();
    a.insert("DescribeNatGateways", ec2("DescribeNatGateways", format!("<natGatewaySet>{nats}</natGatewaySet>")));
    // Nothing beyond the plan: no egress-only gateway, endpoint, peering or interface.
    a.insert(
        "DescribeEgressOnlyInternetGateways",
        ec2("DescribeEgressOnlyInternetGateways", "<egressOnlyInternetGatewaySet/>".to_string()),
    );
    a.insert("DescribeVpcEndpoints", ec2("DescribeVpcEndpoints", "<vpcEndpointSet/>".to_string()));
    a.insert(
        "DescribeVpcPeeringConnections",
        ec2("DescribeVpcPeeringConnections", "<vpcPeeringConnectionSet/>".to_string()),
    );
    a.insert("DescribeNetworkInterfaces", ec2("DescribeNetworkInterfaces", "<networkInterfaceSet/>".to_string()));

    // The flow log: ACTIVE (it exists and is set up), its delivery as `shape` says.
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/microseg/{}", names.role);
    let log_group_arn = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{}", names.log_group);
    let flow_logs = match &plan.flow_log {
        Some(fl) => {
            let (status, error) = shape.delivery;
            format!(
                "<item><creationTime>2026-11-30T03:17:00.000Z</creationTime>{}<deliverLogsPermissionArn>{role_arn}</deliverLogsPermissionArn>\
                 <deliverLogsStatus>{status}</deliverLogsStatus><flowLogId>{FLOW_LOG}</flowLogId><flowLogStatus>ACTIVE</flowLogStatus>\
                 <logGroupName>{}</logGroupName><resourceId>{VPC}</resourceId><trafficType>{}</trafficType>\
                 <logDestinationType>cloud-watch-logs</logDestinationType><logDestination>{log_group_arn}</logDestination>\
                 <logFormat>${{version}} ${{account-id}} ${{interface-id}} ${{srcaddr}} ${{dstaddr}} ${{srcport}} ${{dstport}} ${{protocol}} ${{packets}} ${{bytes}} ${{start}} ${{end}} ${{action}} ${{log-status}}</logFormat>\
                 <maxAggregationInterval>600</maxAggregationInterval><tagSet/></item>",
                error.map(|e| format!("<deliverLogsErrorMessage>{e}</deliverLogsErrorMessage>")).unwrap_or_default(),
                names.log_group,
                fl.traffic_type
            )
        }
        None => String::new(),
    };
    a.insert("DescribeFlowLogs", ec2("DescribeFlowLogs", format!("<flowLogSet>{flow_logs}</flowLogSet>")));

    // IAM: the delivery role, its documents URL-encoded as IAM returns them.
    let encode = |v: &serde_json::Value| {
        percent_encoding::utf8_percent_encode(&v.to_string(), percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    if let Some(fl) = &plan.flow_log {
        let trust = crate::build::trust_policy("aws", REGION, ACCOUNT);
        let delivery = crate::build::delivery_policy(&log_group_arn);
        a.insert(
            "GetRole",
            Answer::ok(replay::query(
                replay::IAM,
                "GetRole",
                &format!(
                    "<Role><Path>/microseg/</Path><RoleName>{}</RoleName><RoleId>AROAEXAMPLEROLE</RoleId><Arn>{role_arn}</Arn>\
                     <CreateDate>2026-11-30T03:16:58Z</CreateDate><AssumeRolePolicyDocument>{}</AssumeRolePolicyDocument>\
                     <MaxSessionDuration>3600</MaxSessionDuration></Role>",
                    names.role,
                    encode(&trust)
                ),
            )),
        );
        a.insert(
            "ListRolePolicies",
            Answer::ok(replay::query(
                replay::IAM,
                "ListRolePolicies",
                &format!(
                    "<PolicyNames><member>{}</member></PolicyNames><IsTruncated>false</IsTruncated>",
                    fl.role_policy_name
                ),
            )),
        );
        a.insert(
            "GetRolePolicy",
            Answer::ok(replay::query(
                replay::IAM,
                "GetRolePolicy",
                &format!(
                    "<RoleName>{}</RoleName><PolicyName>{}</PolicyName><PolicyDocument>{}</PolicyDocument>",
                    names.role,
                    fl.role_policy_name,
                    encode(&delivery)
                ),
            )),
        );
        a.insert(
            "ListAttachedRolePolicies",
            Answer::ok(replay::query(
                replay::IAM,
                "ListAttachedRolePolicies",
                "<AttachedPolicies/><IsTruncated>false</IsTruncated>",
            )),
        );
        a.insert(
            "ListRoleTags",
            Answer::ok(replay::query(
                replay::IAM,
                "ListRoleTags",
                "<Tags><member><Key>microseg:run-id</Key><Value>ms-0123456789</Value></member></Tags><IsTruncated>false</IsTruncated>",
            )),
        );
        // CloudWatch Logs: the group, its filter, its tags (JSON 1.1).
        a.insert(
            "DescribeLogGroups",
            Answer::ok(
                serde_json::json!({"logGroups": [{
                    "logGroupName": names.log_group, "creationTime": 1_796_000_000_000u64, "retentionInDays": fl.retention_days,
                    "metricFilterCount": u8::from(plan.alarm.is_some()), "arn": format!("{log_group_arn}:*"), "storedBytes": 0,
                    "logGroupClass": "STANDARD", "logGroupArn": log_group_arn
                }]})
                .to_string(),
            ),
        );
        let filters = match &plan.alarm {
            Some(al) => serde_json::json!([{
                "filterName": names.metric_filter, "filterPattern": al.filter_pattern, "logGroupName": names.log_group,
                "creationTime": 1_796_000_000_000u64,
                "metricTransformations": [{"metricName": names.metric, "metricNamespace": al.namespace, "metricValue": al.metric_value}]
            }]),
            None => serde_json::json!([]),
        };
        a.insert("DescribeMetricFilters", Answer::ok(serde_json::json!({ "metricFilters": filters }).to_string()));
        a.insert("ListTagsForResource", Answer::ok(r#"{"tags":{"microseg:run-id":"ms-0123456789"}}"#));
    }
    // CloudWatch: the alarm on the filter's metric (Smithy RPC v2 CBOR).
    if let Some(al) = &plan.alarm {
        let alarm = Cbor::default()
            .map(1)
            .text("MetricAlarms")
            .array(1)
            .map(12)
            .pair("AlarmName", &names.alarm)
            .pair("AlarmArn", &format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{}", names.alarm))
            .pair("AlarmDescription", &al.description)
            .pair("Namespace", &al.namespace)
            .pair("MetricName", &names.metric)
            .pair("Statistic", &al.statistic)
            .text("Period")
            .uint(al.period as u64)
            .text("EvaluationPeriods")
            .uint(al.evaluation_periods as u64)
            .text("Threshold")
            .float(al.threshold)
            .pair("ComparisonOperator", &al.comparison)
            .pair("StateValue", "OK")
            .text("Dimensions")
            .array(0);
        a.insert("DescribeAlarmsForMetric", Answer::cbor(alarm));
    }
    a
}

fn plan(name: &str) -> Plan {
    let (spec, source) = crate::spec::load(name).unwrap();
    Plan::from_spec(&spec, &source).unwrap()
}

async fn observe(plan: &Plan, shape: Shape) -> (crate::observe::Observed, Bindings, Vec<Request>) {
    let (b, replay) = deployment(plan, shape);
    let clients = crate::aws::Clients::new(&replay.sdk_config(REGION).await);
    let observed = super::read_live(&clients, VPC).await.expect("the observe code reads AWS's answers");
    (observed, b, replay.requests())
}

fn check<'a>(results: &'a [CheckResult], id: &str) -> &'a CheckResult {
    results.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"))
}

fn finding_ids(c: &CheckResult) -> Vec<&str> {
    c.findings.iter().map(|f| f.id.as_str()).collect()
}

/// LocalStack 4.14.0's capabilities, as its probe finds them.
fn localstack() -> Capabilities {
    let mut caps = Capabilities::emulator("LocalStack 4.14.0".into());
    caps.divergences.extend([Divergence::NaclWithoutDefaultDeny, Divergence::NaclRuleNumberUnbounded]);
    caps
}

#[tokio::test]
async fn aws_answers_decide_what_localstack_leaves_open() {
    let p = plan("recipe-hardened");
    let (observed, b, requests) = observe(&p, AWS).await;
    // Read through the real code: every answer was asked for, none is missing.
    assert!(requests.iter().all(|r| r.operation != "unknown"), "{requests:?}");
    let aws = run_checks(&p, &observed, &b, &Capabilities::aws());
    assert!(aws.iter().all(|c| c.status != Status::Divergence), "{aws:#?}");
    // The one failure: delivery fails although the flow log is ACTIVE.
    let failing: Vec<(&str, Vec<&str>)> =
        aws.iter().filter(|c| c.status == Status::Fail).map(|c| (c.id.as_str(), finding_ids(c))).collect();
    assert_eq!(failing, [("flow-log", vec!["MS-FLOW-DELIVERY-FAILED"])], "{aws:#?}");
    let delivery = &check(&aws, "flow-log").findings[0];
    assert_eq!((delivery.expected.as_str(), delivery.found.as_str()), ("delivery not FAILED", "FAILED: Access error"));
    // The recipe's own step asks only for ACTIVE, and passes.
    assert_eq!(check(&aws, "recipe-v3-flow-log-active").status, Status::Pass);
    // Both `*` entries of each NACL are there: nacl-rules is decided, and passes.
    assert_eq!(check(&aws, "nacl-rules").status, Status::Pass);
    // The hardened build closes the default group: nothing to record as the design's.
    let baseline = check(&aws, "baseline");
    assert_eq!(baseline.status, Status::Pass);
    assert!(!baseline.note.contains("MS-DEFAULT-SG-OPEN"), "{}", baseline.note);

    // What LocalStack answers for the same deployment (no `*` entries, the default group
    // without its self-reference, delivery never failing), with LocalStack's
    // capabilities: the three are divergences there, never a pass.
    let (observed, b, _) = observe(&p, LOCALSTACK).await;
    let ls = run_checks(&p, &observed, &b, &localstack());
    for id in ["nacl-rules", "flow-log", "recipe-v3-flow-log-active"] {
        assert_eq!(check(&ls, id).status, Status::Divergence, "{id}: {:?}", check(&ls, id));
    }
}

#[tokio::test]
async fn delivery_that_succeeds_passes_the_flow_log_check() {
    let p = plan("recipe-hardened");
    let (observed, b, _) = observe(&p, Shape { delivery: ("SUCCESS", None), ..AWS }).await;
    let aws = run_checks(&p, &observed, &b, &Capabilities::aws());
    assert_eq!(check(&aws, "flow-log").status, Status::Pass, "{:?}", check(&aws, "flow-log"));
    assert!(aws.iter().all(|c| c.status == Status::Pass || c.status == Status::Skipped), "{aws:#?}");
}

#[tokio::test]
async fn a_custom_nacl_without_the_star_entries_is_a_finding_on_aws() {
    // AWS never lists a custom NACL without them; this is the check's other side.
    let p = plan("recipe-hardened");
    let (observed, b, _) = observe(&p, Shape { default_deny: false, ..AWS }).await;
    assert!(observed.nacls.iter().filter(|n| !n.is_default).all(|n| !n.entries.iter().any(NaclEntry::is_default_deny)));
    let nacl = run_checks(&p, &observed, &b, &Capabilities::aws()).into_iter().find(|c| c.id == "nacl-rules").unwrap();
    assert_eq!(nacl.status, Status::Fail);
    // One finding per custom NACL and direction, and nothing else.
    assert_eq!(finding_ids(&nacl), vec!["MS-NACL-NO-DEFAULT-DENY"; 2 * p.nacls.len()]);
}

#[tokio::test]
async fn the_star_entries_and_the_self_reference_are_read_as_aws_writes_them() {
    // The as-written recipe leaves the default group as AWS makes it.
    let p = plan("recipe");
    let (observed, _, _) = observe(&p, AWS).await;
    for n in observed.nacls.iter().filter(|n| !n.is_default) {
        let stars: Vec<Direction> = n.entries.iter().filter(|e| e.is_default_deny()).map(|e| e.direction).collect();
        assert_eq!(stars, [Direction::Ingress, Direction::Egress], "{}", n.id);
        // Sorted by direction, then number: the `*` entry comes last in each direction.
        assert!(n.entries.is_sorted_by_key(|e| (e.direction, e.rule_number)), "{}", n.id);
    }
    let default = crate::reach::default_group(&observed).expect("the default group is read");
    assert!(default.rules.contains(&crate::reach::default_sg_self_ingress(DEFAULT_GROUP)), "{:?}", default.rules);
    assert!(default.rules.contains(&default_sg_egress()));
    let fl = &observed.flow_logs[0];
    assert_eq!(
        (fl.flow_log_status.as_deref(), fl.deliver_logs_status.as_deref(), fl.deliver_logs_error_message.as_deref()),
        (Some("ACTIVE"), Some("FAILED"), Some("Access error"))
    );
}

/// Two zones left to the VPC's default group (no group of their own), and one flow
/// between them: whether it passes depends on the default group's ingress from itself.
const ON_THE_DEFAULT_GROUP: &str = r#"
[scenario]
name = "default-group"
title = "Two zones on the default group"
source = "harness/src/observe/aws_shapes.rs"
variant = "as-written"

[vpc]
cidr = "10.40.0.0/16"
name = "default-group-vpc"

[[zones]]
name = "app"
subnet_name = "app"
cidr = "10.40.1.0/24"
az = "a"
nacl = "app"

[[zones]]
name = "db"
subnet_name = "db"
cidr = "10.40.2.0/24"
az = "b"
nacl = "db"

[[nacls]]
name = "app"
tag_name = "app-nacl"
ingress = [{ rule = 100, protocol = "tcp", ports = "1024-65535", cidr = "10.40.2.0/24", action = "allow" }]
egress = [{ rule = 100, protocol = "tcp", ports = 5432, cidr = "10.40.2.0/24", action = "allow" }]

[[nacls]]
name = "db"
tag_name = "db-nacl"
ingress = [{ rule = 100, protocol = "tcp", ports = 5432, cidr = "10.40.1.0/24", action = "allow" }]
egress = [{ rule = 100, protocol = "tcp", ports = "1024-65535", cidr = "10.40.1.0/24", action = "allow" }]

[[intent]]
from = "app"
to = "db"
protocol = "tcp"
ports = 5432

[[expected_findings]]
id = "MS-DEFAULT-SG-OPEN"
resource = "default security group"
why = "both zones rely on it"
"#;

/// What LocalStack 4.14.0 answers: no `*` entries, the default group without ingress
/// from itself, and delivery that never fails.
const LOCALSTACK: Shape = Shape { default_deny: false, delivery: ("SUCCESS", None), default_group_self_ingress: false };

#[tokio::test]
async fn the_default_groups_self_reference_decides_the_flows_between_its_members() {
    let (spec, source) = crate::spec::parse(crate::spec::SpecSource {
        path: "default-group.toml".into(),
        text: ON_THE_DEFAULT_GROUP.into(),
    })
    .unwrap();
    let p = Plan::from_spec(&spec, &source).unwrap();
    assert_eq!(crate::reach::default_group_members(&p), ["app", "db"]);
    let (observed, b, _) = observe(&p, AWS).await;
    let aws = run_checks(&p, &observed, &b, &Capabilities::aws());
    let intent = check(&aws, "intent");
    assert_eq!((intent.status, intent.divergences.len()), (Status::Pass, 0), "{intent:?}");
    // Without the self-reference on AWS (someone revoked it), the flow is blocked: the
    // rule decides, it is not assumed.
    let (observed, b, _) = observe(&p, Shape { default_group_self_ingress: false, ..AWS }).await;
    let intent = run_checks(&p, &observed, &b, &Capabilities::aws()).into_iter().find(|c| c.id == "intent").unwrap();
    assert_eq!(intent.status, Status::Fail, "{intent:?}");
    // On LocalStack the default group has no self-ingress by its own doing: open.
    let (observed, b, _) = observe(&p, LOCALSTACK).await;
    let ls = run_checks(&p, &observed, &b, &localstack());
    let intent = check(&ls, "intent");
    assert_eq!(intent.status, Status::Divergence, "{intent:?}");
    assert_eq!(intent.divergences, ["default-security-group-no-self-ingress"]);
}
