//! Break one thing on a live deployment through the SDK; the right check must fail and
//! name the resource. The unmutated deployment must have no findings.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use microseg_harness::aws::Clients;
use microseg_harness::bindings::Bindings;
use microseg_harness::capabilities::Capabilities;
use microseg_harness::checks::{self, CheckResult, Finding, Status};
use microseg_harness::observe;
use microseg_harness::run::RunReport;
use microseg_harness::sweep::{self, Selection};
use rstest::rstest;

use crate::support::{inventory_of, kept_recipe_run, recipe};

/// A kept deployment of the recipe, swept when dropped by the test's end.
struct Deployed {
    clients: Clients,
    caps: Capabilities,
    report: RunReport,
}

impl Deployed {
    async fn new() -> Deployed {
        let (clients, caps, report) = kept_recipe_run().await;
        Deployed { clients, caps, report }
    }

    fn b(&self) -> &Bindings {
        &self.report.bindings
    }

    fn id(&self, map: &std::collections::BTreeMap<String, String>, name: &str) -> String {
        map.get(name).cloned().unwrap_or_else(|| panic!("{name} is bound"))
    }

    async fn checks(&self) -> Vec<CheckResult> {
        let observed = observe::read_live(&self.clients, self.b().vpc_id.as_deref().unwrap()).await.unwrap();
        checks::run_checks(&recipe(), &observed, self.b(), &self.caps)
    }

    async fn sweep(self) {
        let swept = sweep::sweep(&self.clients, &Selection::Run(self.report.run_id.clone())).await.unwrap();
        assert!(swept.leftovers.is_empty(), "{:?}", swept.leftovers);
        assert!(inventory_of(&self.clients, &self.report.run_id).await.is_empty());
    }
}

fn finding<'a>(checks: &'a [CheckResult], check: &str, id: &str) -> &'a Finding {
    let c = checks.iter().find(|c| c.id == check).unwrap_or_else(|| panic!("no check {check}"));
    assert_eq!(c.status, Status::Fail, "{check} should fail: {c:?}");
    c.findings.iter().find(|f| f.id == id).unwrap_or_else(|| panic!("{check} has no {id}: {:?}", c.findings))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmutated_deployment_has_no_findings() {
    let _t = crate::support::timer();
    let d = Deployed::new().await;
    let checks = d.checks().await;
    let failed: Vec<_> = checks.iter().filter(|c| c.status == Status::Fail).collect();
    assert!(failed.is_empty(), "{failed:?}");
    d.sweep().await;
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    WebSubnetBackOnDefaultNacl,
    DeleteAppEgressEntry,
    ShadowingDenyBeforeWebAllow,
    OpenDatabaseSshToWorld,
    CidrInsteadOfGroupReference,
    WrongGroupReference,
    ExtraEgressRule,
    DeleteFlowLog,
    FlowLogTrafficReject,
    RemoveRolePolicy,
    AlarmThresholdChanged,
    DeleteIgwRoute,
    // Closed world: what an implementation adds that the spec says nothing about.
    ManagementRoutedToIgw,
    WebSubnetAutoPublicIp,
    ExtraSubnet,
    ExtraNacl,
    ExtraGroup,
    MainTableRouteToIgw,
    S3GatewayEndpoint,
    EgressOnlyGateway,
    PeeringToAnotherVpc,
    ExtraSubnetFlowLog,
}

#[rstest]
#[case::reassociate_default(
    Mutation::WebSubnetBackOnDefaultNacl,
    "associations",
    "MS-ASSOC-DEFAULT-NACL",
    "subnet web"
)]
#[case::delete_entry(Mutation::DeleteAppEgressEntry, "nacl-rules", "MS-NACL-ENTRY-MISSING", "NACL app")]
#[case::shadowing_deny(Mutation::ShadowingDenyBeforeWebAllow, "nacl-rules", "MS-NACL-SHADOWED", "NACL web")]
#[case::open_to_world(
    Mutation::OpenDatabaseSshToWorld,
    "security-groups",
    "MS-SG-OPEN-TO-WORLD",
    "security group database"
)]
#[case::cidr_for_reference(
    Mutation::CidrInsteadOfGroupReference,
    "security-groups",
    "MS-SG-CIDR-FOR-REFERENCE",
    "security group app"
)]
#[case::wrong_reference(
    Mutation::WrongGroupReference,
    "security-groups",
    "MS-SG-WRONG-REFERENCE",
    "security group web"
)]
#[case::extra_egress(Mutation::ExtraEgressRule, "security-groups", "MS-SG-EGRESS-UNEXPECTED", "security group web")]
#[case::delete_flow_log(Mutation::DeleteFlowLog, "flow-log", "MS-FLOW-MISSING", "VPC vpc-")]
#[case::traffic_type(Mutation::FlowLogTrafficReject, "flow-log", "MS-FLOW-TRAFFIC-TYPE", "flow log fl-")]
#[case::role_policy(Mutation::RemoveRolePolicy, "flow-log", "MS-ROLE-POLICY-MISSING", "IAM role VPCFlowLogsRole-ms-")]
#[case::alarm_threshold(
    Mutation::AlarmThresholdChanged,
    "alarm",
    "MS-ALARM-CONFIG",
    "alarm VPC-Rejected-Traffic-High-ms-"
)]
#[case::igw_route(Mutation::DeleteIgwRoute, "routes", "MS-RT-ROUTE-MISSING", "route table public")]
#[case::isolated_zone_to_igw(Mutation::ManagementRoutedToIgw, "routes", "MS-RT-UNPLANNED", "route table mutation-rt")]
#[case::auto_public_ip(Mutation::WebSubnetAutoPublicIp, "exposure", "MS-SUBNET-AUTO-PUBLIC-IP", "subnet web")]
#[case::extra_subnet(Mutation::ExtraSubnet, "associations", "MS-SUBNET-UNPLANNED", "subnet 10.0.9.0/24")]
#[case::extra_nacl(Mutation::ExtraNacl, "nacl-rules", "MS-NACL-UNPLANNED", "NACL mutation-nacl")]
#[case::extra_group(Mutation::ExtraGroup, "security-groups", "MS-SG-UNPLANNED", "security group mutation-sg")]
#[case::main_table_route(Mutation::MainTableRouteToIgw, "routes", "MS-RT-MAIN-ROUTE", "main route table")]
#[case::vpc_endpoint(
    Mutation::S3GatewayEndpoint,
    "gateways",
    "MS-VPCE-UNPLANNED",
    "VPC endpoint com.amazonaws.us-east-1.s3"
)]
#[case::egress_only(Mutation::EgressOnlyGateway, "gateways", "MS-EIGW-UNPLANNED", "egress-only internet gateway")]
#[case::peering(Mutation::PeeringToAnotherVpc, "gateways", "MS-PEERING-UNPLANNED", "peering connection")]
#[case::extra_flow_log(Mutation::ExtraSubnetFlowLog, "flow-log", "MS-FLOW-UNPLANNED", "flow log to cloud-watch-logs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mutation_is_caught_by_the_right_finding(
    #[case] m: Mutation,
    #[case] check: &str,
    #[case] id: &str,
    #[case] resource: &str,
) {
    let _t = crate::support::timer();
    let d = Deployed::new().await;
    let added = mutate(&d, m).await;
    let checks = d.checks().await;
    // What the sweep cannot know (it deletes by the run's tag what build creates) goes
    // first, whatever the assertions below say.
    remove(&d, added).await;
    let f = finding(&checks, check, id);
    assert!(f.resource.starts_with(resource), "{m:?}: resource {:?} should start with {resource:?}", f.resource);
    // The bound id is named too, so a reviewer can find the resource.
    if let Some(sub) = f.resource.split('(').nth(1) {
        assert!(!sub.starts_with("not found"), "{m:?}: {}", f.resource);
    }
    d.sweep().await;
}

/// What a mutation added that only the test knows how to remove.
#[derive(Default)]
struct Added {
    vpc_endpoint: Option<String>,
    egress_only_gateway: Option<String>,
    peering: Option<String>,
}

async fn remove(d: &Deployed, added: Added) {
    let ec2 = &d.clients.ec2;
    if let Some(id) = added.vpc_endpoint {
        ec2.delete_vpc_endpoints().vpc_endpoint_ids(id).send().await.unwrap();
    }
    if let Some(id) = added.egress_only_gateway {
        ec2.delete_egress_only_internet_gateway().egress_only_internet_gateway_id(id).send().await.unwrap();
    }
    if let Some(id) = added.peering {
        ec2.delete_vpc_peering_connection().vpc_peering_connection_id(id).send().await.unwrap();
    }
}

/// The run's tag and a `Name`, so the sweep finds what a mutation creates.
fn tagged(d: &Deployed, kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key(microseg_harness::run_id::TAG_RUN_ID).value(d.report.run_id.as_str()).build())
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

async fn mutate(d: &Deployed, m: Mutation) -> Added {
    let ec2 = &d.clients.ec2;
    let b = d.b();
    let vpc = b.vpc_id.clone().unwrap();
    match m {
        Mutation::WebSubnetBackOnDefaultNacl => {
            let subnet = d.id(&b.zones, "web");
            let current = ec2
                .describe_network_acls()
                .filters(Filter::builder().name("association.subnet-id").values(&subnet).build())
                .send()
                .await
                .unwrap();
            let assoc = current
                .network_acls()
                .iter()
                .flat_map(|n| n.associations())
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .unwrap()
                .network_acl_association_id()
                .unwrap()
                .to_string();
            let default = ec2
                .describe_network_acls()
                .filters(Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(Filter::builder().name("default").values("true").build())
                .send()
                .await
                .unwrap();
            let default_id = default.network_acls()[0].network_acl_id().unwrap();
            ec2.replace_network_acl_association()
                .association_id(assoc)
                .network_acl_id(default_id)
                .send()
                .await
                .unwrap();
        }
        Mutation::DeleteAppEgressEntry => {
            ec2.delete_network_acl_entry()
                .network_acl_id(d.id(&b.nacls, "app"))
                .rule_number(110)
                .egress(true)
                .send()
                .await
                .unwrap();
        }
        Mutation::ShadowingDenyBeforeWebAllow => {
            ec2.create_network_acl_entry()
                .network_acl_id(d.id(&b.nacls, "web"))
                .rule_number(90)
                .protocol("6")
                .port_range(aws_sdk_ec2::types::PortRange::builder().from(80).to(80).build())
                .cidr_block("10.0.1.0/24")
                .rule_action(aws_sdk_ec2::types::RuleAction::Deny)
                .egress(false)
                .send()
                .await
                .unwrap();
        }
        Mutation::OpenDatabaseSshToWorld => {
            let p = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build();
            ec2.authorize_security_group_ingress()
                .group_id(d.id(&b.security_groups, "database"))
                .ip_permissions(p)
                .send()
                .await
                .unwrap();
        }
        Mutation::CidrInsteadOfGroupReference => {
            let app = d.id(&b.security_groups, "app");
            let by_ref = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8080)
                .to_port(8080)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(d.id(&b.security_groups, "web")).build())
                .build();
            ec2.revoke_security_group_ingress().group_id(&app).ip_permissions(by_ref).send().await.unwrap();
            let by_cidr = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8080)
                .to_port(8080)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.2.0/24").build())
                .build();
            ec2.authorize_security_group_ingress().group_id(&app).ip_permissions(by_cidr).send().await.unwrap();
        }
        Mutation::WrongGroupReference => {
            let web = d.id(&b.security_groups, "web");
            let pair = |g: String| {
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
                    .build()
            };
            ec2.revoke_security_group_ingress()
                .group_id(&web)
                .ip_permissions(pair(d.id(&b.security_groups, "management")))
                .send()
                .await
                .unwrap();
            ec2.authorize_security_group_ingress()
                .group_id(&web)
                .ip_permissions(pair(d.id(&b.security_groups, "app")))
                .send()
                .await
                .unwrap();
        }
        Mutation::ExtraEgressRule => {
            let p = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(25)
                .to_port(25)
                .ip_ranges(IpRange::builder().cidr_ip("198.51.100.0/24").build())
                .build();
            ec2.authorize_security_group_egress()
                .group_id(d.id(&b.security_groups, "web"))
                .ip_permissions(p)
                .send()
                .await
                .unwrap();
        }
        Mutation::DeleteFlowLog => {
            ec2.delete_flow_logs().flow_log_ids(b.flow_log_id.clone().unwrap()).send().await.unwrap();
        }
        Mutation::FlowLogTrafficReject => {
            let observed = observe::read_live(&d.clients, &vpc).await.unwrap();
            let fl = observed.flow_logs[0].clone();
            ec2.delete_flow_logs().flow_log_ids(&fl.id).send().await.unwrap();
            ec2.create_flow_logs()
                .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::Vpc)
                .resource_ids(&vpc)
                .traffic_type(aws_sdk_ec2::types::TrafficType::Reject)
                .log_destination_type(aws_sdk_ec2::types::LogDestinationType::CloudWatchLogs)
                .log_group_name(fl.log_group_name.unwrap())
                .deliver_logs_permission_arn(fl.deliver_logs_permission_arn.unwrap())
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::VpcFlowLog)
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("microseg:run-id")
                                .value(d.report.run_id.as_str())
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        Mutation::RemoveRolePolicy => {
            d.clients
                .iam
                .delete_role_policy()
                .role_name(b.role_name.clone().unwrap())
                .policy_name("flow-logs-delivery")
                .send()
                .await
                .unwrap();
        }
        Mutation::AlarmThresholdChanged => {
            let plan = recipe();
            let al = plan.alarm.unwrap();
            d.clients
                .cloudwatch
                .put_metric_alarm()
                .alarm_name(b.alarm_name.clone().unwrap())
                .namespace(al.namespace)
                .metric_name(b.metric_name.clone().unwrap())
                .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
                .period(al.period)
                .evaluation_periods(1)
                .threshold(5.0)
                .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
                .send()
                .await
                .unwrap();
        }
        Mutation::DeleteIgwRoute => {
            ec2.delete_route()
                .route_table_id(d.id(&b.route_tables, "public"))
                .destination_cidr_block("0.0.0.0/0")
                .send()
                .await
                .unwrap();
        }
        Mutation::ManagementRoutedToIgw => {
            let rt = ec2
                .create_route_table()
                .vpc_id(&vpc)
                .tag_specifications(tagged(d, ResourceType::RouteTable, "mutation-rt"))
                .send()
                .await
                .unwrap();
            let rt = rt.route_table().and_then(|t| t.route_table_id()).unwrap().to_string();
            ec2.create_route()
                .route_table_id(&rt)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(b.internet_gateway_id.clone().unwrap())
                .send()
                .await
                .unwrap();
            ec2.associate_route_table()
                .route_table_id(&rt)
                .subnet_id(d.id(&b.zones, "management"))
                .send()
                .await
                .unwrap();
        }
        Mutation::WebSubnetAutoPublicIp => {
            ec2.modify_subnet_attribute()
                .subnet_id(d.id(&b.zones, "web"))
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .unwrap();
        }
        Mutation::ExtraSubnet => {
            ec2.create_subnet()
                .vpc_id(&vpc)
                .cidr_block("10.0.9.0/24")
                .tag_specifications(tagged(d, ResourceType::Subnet, "mutation-subnet"))
                .send()
                .await
                .unwrap();
        }
        Mutation::ExtraNacl => {
            ec2.create_network_acl()
                .vpc_id(&vpc)
                .tag_specifications(tagged(d, ResourceType::NetworkAcl, "mutation-nacl"))
                .send()
                .await
                .unwrap();
        }
        Mutation::ExtraGroup => {
            ec2.create_security_group()
                .vpc_id(&vpc)
                .group_name("mutation-sg")
                .description("added by a mutation test")
                .tag_specifications(tagged(d, ResourceType::SecurityGroup, "mutation-sg"))
                .send()
                .await
                .unwrap();
        }
        Mutation::MainTableRouteToIgw => {
            let main = ec2
                .describe_route_tables()
                .filters(Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(Filter::builder().name("association.main").values("true").build())
                .send()
                .await
                .unwrap();
            let main = main.route_tables()[0].route_table_id().unwrap().to_string();
            ec2.create_route()
                .route_table_id(main)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(b.internet_gateway_id.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
        Mutation::S3GatewayEndpoint => {
            let out = ec2
                .create_vpc_endpoint()
                .vpc_id(&vpc)
                // Named, though Gateway is AWS's default: LocalStack 4.14.0 stores no type
                // otherwise, and its DeleteVpcEndpoints then fails (InternalError).
                .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Gateway)
                .service_name(format!("com.amazonaws.{}.s3", d.clients.region))
                .route_table_ids(d.id(&b.route_tables, "public"))
                .send()
                .await
                .unwrap();
            return Added {
                vpc_endpoint: out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()).map(str::to_string),
                ..Added::default()
            };
        }
        Mutation::EgressOnlyGateway => {
            let out = ec2.create_egress_only_internet_gateway().vpc_id(&vpc).send().await.unwrap();
            return Added {
                egress_only_gateway: out
                    .egress_only_internet_gateway()
                    .and_then(|g| g.egress_only_internet_gateway_id())
                    .map(str::to_string),
                ..Added::default()
            };
        }
        Mutation::PeeringToAnotherVpc => {
            // The other VPC carries the run's tag: the sweep deletes it.
            let other = ec2
                .create_vpc()
                .cidr_block("10.99.0.0/16")
                .tag_specifications(tagged(d, ResourceType::Vpc, "mutation-peer"))
                .send()
                .await
                .unwrap();
            let other = other.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
            let out = ec2.create_vpc_peering_connection().vpc_id(&vpc).peer_vpc_id(other).send().await.unwrap();
            return Added {
                peering: out.vpc_peering_connection().and_then(|p| p.vpc_peering_connection_id()).map(str::to_string),
                ..Added::default()
            };
        }
        Mutation::ExtraSubnetFlowLog => {
            let role = format!("arn:aws:iam::000000000000:role/microseg/{}", b.role_name.clone().unwrap());
            ec2.create_flow_logs()
                .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::Subnet)
                .resource_ids(d.id(&b.zones, "web"))
                .traffic_type(aws_sdk_ec2::types::TrafficType::Reject)
                .log_destination_type(aws_sdk_ec2::types::LogDestinationType::CloudWatchLogs)
                .log_group_name(b.log_group_name.clone().unwrap())
                .deliver_logs_permission_arn(role)
                .tag_specifications(tagged(d, ResourceType::VpcFlowLog, "mutation-flow-log"))
                .send()
                .await
                .unwrap();
        }
    }
    Added::default()
}
