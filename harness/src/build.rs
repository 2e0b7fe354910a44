//! Build: turn a [`Plan`] into resources, recording each in the ledger before the next
//! step.
//!
//! Creations run concurrently within three waves bounded by the dependency depth:
//! 1. VPC, internet gateway, IAM role, log group, Elastic IPs;
//! 2. subnets (with public addressing for public zones), NACLs, security groups, route
//!    tables, IGW attachment, role policy, metric filter and alarm, flow log;
//! 3. NACL entries, NACL associations, security-group rules, the default group's rules
//!    revoked where the spec closes it, NAT gateways (waited until available), then routes
//!    and route-table associations.
//!
//! Every resource is tagged at creation (`TagSpecifications`), so even a resource whose
//! id never reached the ledger (killed between the call and the write) is found by tag.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, FlowLogsResourceType, IcmpTypeCode, IpPermission, IpRange, Ipv6Range,
    LogDestinationType, ResourceType, Tag, TagSpecification, TrafficType, UserIdGroupPair,
};
use ipnet::IpNet;

use crate::aws::{AwsError, Clients, Patience, aws_err, nat_gateway_state, settle};
use crate::bindings::Bindings;
use crate::ledger::{Ledger, LedgerEntry, LedgerError, ResourceKind};
use crate::model::{Direction, NaclEntry, Peer, Protocol, SgRule};
use crate::plan::{Plan, PlannedAlarm, PlannedFlowLog, PlannedNatGateway, PlannedSecurityGroup, RouteTarget};
use crate::run_id::{IAM_PATH, RunId};

/// A point in the build where a test can inject a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    /// After wave 1 (VPC, IGW, role, log group).
    Foundation,
    /// After wave 2 (subnets, NACLs, groups, monitoring).
    Network,
    /// After wave 3 (entries, rules, associations, routes).
    Rules,
}

impl Wave {
    /// Every wave, in order.
    pub const ALL: [Wave; 3] = [Wave::Foundation, Wave::Network, Wave::Rules];

    /// Parses `foundation`, `network` or `rules`.
    pub fn parse(s: &str) -> Option<Wave> {
        match s {
            "foundation" => Some(Wave::Foundation),
            "network" => Some(Wave::Network),
            "rules" => Some(Wave::Rules),
            _ => None,
        }
    }
}

/// An injected failure, for tests of teardown on error and on panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Return an error after this wave.
    ErrorAfter(Wave),
    /// Panic after this wave.
    PanicAfter(Wave),
    /// Stop after this wave until the run is interrupted (tests of Ctrl-C).
    HangAfter(Wave),
}

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An AWS call failed.
    #[error("build failed creating {what}: {source}")]
    Aws {
        /// What was being created.
        what: String,
        /// The call's error.
        source: AwsError,
    },
    /// The ledger could not be written; the build stops rather than create untracked resources.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A test asked for it.
    #[error("injected failure after the {0:?} wave")]
    Injected(Wave),
}

/// What a build needs besides the plan.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// Clients.
    pub clients: &'a Clients,
    /// The run.
    pub run_id: &'a RunId,
    /// Where every created id goes.
    pub ledger: &'a Ledger,
    /// Account id (for ARNs and the trust policy's conditions).
    pub account_id: String,
    /// Injected failure, if any.
    pub fault: Option<Fault>,
    /// Tag the alarm with TagResource after PutMetricAlarm instead of in it. LocalStack
    /// 4.14.0 stores tags given to PutMetricAlarm on the alarm and then fails to encode
    /// every DescribeAlarms answer in CBOR (InternalError), which is what the Rust SDK
    /// speaks. On AWS the tags go in PutMetricAlarm, so the alarm is never untagged.
    pub tag_alarm_separately: bool,
    /// The job label every resource also carries (`run --job`), if any.
    pub job: Option<crate::job::Job>,
    /// The permissions boundary the flow-log role is created with (`--role-boundary`):
    /// the sandbox policy lets microseg create a role only with it, so a role microseg
    /// makes can never hold more than delivery to a run's log group.
    pub role_boundary: Option<String>,
}

impl BuildContext<'_> {
    fn tags(&self, plan: &Plan, name: &str, extra: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        tags.push(("Name".into(), name.into()));
        tags.extend(self.run_id.tags(&plan.scenario));
        if let Some(job) = &self.job {
            tags.push((crate::run_id::TAG_JOB.into(), job.to_string()));
        }
        tags
    }

    fn ec2_tags(
        &self,
        plan: &Plan,
        rt: ResourceType,
        name: &str,
        extra: &BTreeMap<String, String>,
    ) -> TagSpecification {
        let mut spec = TagSpecification::builder().resource_type(rt);
        for (k, v) in self.tags(plan, name, extra) {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        spec.build()
    }

    fn record(&self, kind: ResourceKind, id: &str, logical: &str, parent: Option<&str>) -> Result<(), LedgerError> {
        self.ledger.record(LedgerEntry {
            kind,
            id: id.into(),
            logical: logical.into(),
            parent: parent.map(str::to_string),
        })
    }

    async fn checkpoint(&self, wave: Wave) -> Result<(), BuildError> {
        match self.fault {
            Some(Fault::ErrorAfter(w)) if w == wave => Err(BuildError::Injected(wave)),
            Some(Fault::PanicAfter(w)) if w == wave => panic!("injected panic after the {wave:?} wave"),
            Some(Fault::HangAfter(w)) if w == wave => {
                tracing::info!("injected hang after the {wave:?} wave");
                std::future::pending::<()>().await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn partition(&self) -> &'static str {
        crate::aws::partition_of(&self.clients.region)
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(AwsError) -> BuildError {
    let what = what.into();
    move |source| BuildError::Aws { what, source }
}

/// Every future to its end, then the first error: unlike `try_join`, a failure does not
/// drop the siblings. A create already sent must finish, and be recorded, before
/// teardown looks for what to delete; a dropped one could create its resource after
/// that inventory, and leak it.
async fn settle_all<T, E>(futures: impl IntoIterator<Item = impl Future<Output = Result<T, E>>>) -> Result<Vec<T>, E> {
    futures::future::join_all(futures).await.into_iter().collect()
}

/// Builds the plan; returns the bindings of what it created.
pub async fn build(plan: &Plan, ctx: &BuildContext<'_>) -> Result<Bindings, BuildError> {
    let mut b = Bindings::default();

    // Wave 1.
    let names = AccountNames::new(plan, ctx.run_id);
    let (vpc, igw, role, log_group, addresses) = tokio::join!(
        create_vpc(plan, ctx),
        async {
            match &plan.internet_gateway {
                Some(name) => create_igw(plan, ctx, name).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            match &plan.flow_log {
                Some(_) => create_role(plan, ctx, &names).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            match &plan.flow_log {
                Some(fl) => create_log_group(plan, ctx, fl, &names).await,
                None => Ok(()),
            }
        },
        settle_all(plan.nat_gateways.iter().map(|n| allocate_address(plan, ctx, n))),
    );
    let (vpc_id, igw_id, role_arn, (), addresses) = (vpc?, igw?, role?, log_group?, addresses?);
    b.elastic_ips = addresses.into_iter().collect();
    b.vpc_id = Some(vpc_id.clone());
    b.internet_gateway_id = igw_id.clone();
    if plan.flow_log.is_some() {
        b.role_name = Some(names.role.clone());
        b.log_group_name = Some(names.log_group.clone());
    }
    ctx.checkpoint(Wave::Foundation).await?;

    // Wave 2.
    let (subnets, nacls, groups, tables, attached, policy, monitoring, flow_log) = tokio::join!(
        settle_all(plan.zones.iter().map(|z| async {
            let az = format!("{}{}", ctx.clients.region, z.az_suffix);
            let out = settle("CreateSubnet", || {
                ctx.clients
                    .ec2
                    .create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(z.cidr.to_string())
                    .availability_zone(&az)
                    .tag_specifications(ctx.ec2_tags(plan, ResourceType::Subnet, &z.subnet_name, &z.tags))
                    .send()
            })
            .await
            .map_err(fail(format!("subnet {}", z.name)))?;
            let id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
            ctx.record(ResourceKind::Subnet, &id, &z.name, None)?;
            if z.public {
                settle("ModifySubnetAttribute", || {
                    ctx.clients
                        .ec2
                        .modify_subnet_attribute()
                        .subnet_id(&id)
                        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                        .send()
                })
                .await
                .map_err(fail(format!("subnet {} public addressing", z.name)))?;
            }
            Ok::<_, BuildError>((z.name.clone(), id))
        })),
        settle_all(plan.nacls.iter().map(|n| async {
            let out = settle("CreateNetworkAcl", || {
                ctx.clients
                    .ec2
                    .create_network_acl()
                    .vpc_id(&vpc_id)
                    .tag_specifications(ctx.ec2_tags(plan, ResourceType::NetworkAcl, &n.tag_name, &n.tags))
                    .send()
            })
            .await
            .map_err(fail(format!("NACL {}", n.name)))?;
            let id = out.network_acl().and_then(|a| a.network_acl_id()).unwrap_or_default().to_string();
            ctx.record(ResourceKind::NetworkAcl, &id, &n.name, None)?;
            Ok::<_, BuildError>((n.name.clone(), id))
        })),
        settle_all(plan.security_groups.iter().map(|g| async {
            let out = settle("CreateSecurityGroup", || {
                ctx.clients
                    .ec2
                    .create_security_group()
                    .vpc_id(&vpc_id)
                    .group_name(&g.group_name)
                    .description(&g.description)
                    .tag_specifications(ctx.ec2_tags(plan, ResourceType::SecurityGroup, &g.group_name, &g.tags))
                    .send()
            })
            .await
            .map_err(fail(format!("security group {}", g.name)))?;
            let id = out.group_id().unwrap_or_default().to_string();
            ctx.record(ResourceKind::SecurityGroup, &id, &g.name, None)?;
            Ok::<_, BuildError>((g.name.clone(), id))
        })),
        settle_all(plan.route_tables.iter().map(|t| async {
            let out = settle("CreateRouteTable", || {
                ctx.clients
                    .ec2
                    .create_route_table()
                    .vpc_id(&vpc_id)
                    .tag_specifications(ctx.ec2_tags(plan, ResourceType::RouteTable, &t.tag_name, &BTreeMap::new()))
                    .send()
            })
            .await
            .map_err(fail(format!("route table {}", t.name)))?;
            let id = out.route_table().and_then(|r| r.route_table_id()).unwrap_or_default().to_string();
            ctx.record(ResourceKind::RouteTable, &id, &t.name, None)?;
            Ok::<_, BuildError>((t.name.clone(), id))
        })),
        async {
            if let Some(igw) = &igw_id {
                settle("AttachInternetGateway", || {
                    ctx.clients.ec2.attach_internet_gateway().internet_gateway_id(igw).vpc_id(&vpc_id).send()
                })
                .await
                .map_err(fail("internet gateway attachment"))?;
            }
            Ok::<(), BuildError>(())
        },
        async {
            match &plan.flow_log {
                Some(fl) => put_role_policy(ctx, fl, &names).await,
                None => Ok(()),
            }
        },
        async {
            match &plan.alarm {
                Some(al) => create_alarm(plan, ctx, al, &names).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            match (&plan.flow_log, &role_arn) {
                (Some(fl), Some(arn)) => create_flow_log(plan, ctx, fl, &vpc_id, arn, &names).await.map(Some),
                _ => Ok(None),
            }
        },
    );
    let (subnets, nacls, groups, tables, (), (), monitoring, flow_log) =
        (subnets?, nacls?, groups?, tables?, attached?, policy?, monitoring?, flow_log?);
    b.zones = subnets.into_iter().collect();
    b.nacls = nacls.into_iter().collect();
    b.security_groups = groups.into_iter().collect();
    b.route_tables = tables.into_iter().collect();
    b.flow_log_id = flow_log;
    if let Some(metric) = monitoring {
        b.metric_filter_name = Some(names.metric_filter.clone());
        b.alarm_name = Some(names.alarm.clone());
        b.metric_name = Some(metric);
    }
    ctx.checkpoint(Wave::Network).await?;

    // Wave 3.
    let (entries, associations, rules, closed, routes) = tokio::join!(
        create_nacl_entries(plan, ctx, &b),
        associate_nacls(plan, ctx, &b, &vpc_id),
        authorize_groups(plan, ctx, &b),
        async {
            match plan.vpc.close_default_group {
                true => close_default_group(ctx, &vpc_id).await,
                false => Ok(()),
            }
        },
        // Routes may point at NAT gateways, which need the subnets and addresses.
        async {
            let nats = create_nat_gateways(plan, ctx, &b).await?;
            let with_nats = Bindings { nat_gateways: nats.clone(), ..b.clone() };
            create_routes(plan, ctx, &with_nats).await.map(|()| nats)
        },
    );
    let ((), (), (), (), nats) = (entries?, associations?, rules?, closed?, routes?);
    b.nat_gateways = nats;
    ctx.checkpoint(Wave::Rules).await?;
    Ok(b)
}

/// Revokes every rule of the VPC's default security group, as AWS created it (ingress
/// from itself, all egress; an emulator may create fewer): whatever lands in the default
/// group by omission can then talk to nothing. The group itself cannot be deleted and
/// goes with the VPC, so nothing is recorded in the ledger.
async fn close_default_group(ctx: &BuildContext<'_>, vpc_id: &str) -> Result<(), BuildError> {
    let out = settle("DescribeSecurityGroups", || {
        ctx.clients
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(Filter::builder().name("group-name").values(crate::reach::DEFAULT_GROUP_NAME).build())
            .send()
    })
    .await
    .map_err(fail("the default security group"))?;
    let Some(group) = out.security_groups().first() else {
        return Err(BuildError::Aws {
            what: "the default security group".into(),
            source: AwsError {
                operation: "DescribeSecurityGroups",
                code: None,
                message: format!("VPC {vpc_id} has no default security group"),
            },
        });
    };
    let id = group.group_id().unwrap_or_default().to_string();
    if !group.ip_permissions().is_empty() {
        settle("RevokeSecurityGroupIngress", || {
            ctx.clients
                .ec2
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(group.ip_permissions().to_vec()))
                .send()
        })
        .await
        .map_err(fail("the default security group's ingress"))?;
    }
    if !group.ip_permissions_egress().is_empty() {
        settle("RevokeSecurityGroupEgress", || {
            ctx.clients
                .ec2
                .revoke_security_group_egress()
                .group_id(&id)
                .set_ip_permissions(Some(group.ip_permissions_egress().to_vec()))
                .send()
        })
        .await
        .map_err(fail("the default security group's egress"))?;
    }
    Ok(())
}

/// Account-wide names of one run: each ends in the run id.
struct AccountNames {
    role: String,
    log_group: String,
    metric_filter: String,
    alarm: String,
}

impl AccountNames {
    fn new(plan: &Plan, run: &RunId) -> AccountNames {
        AccountNames {
            role: plan.flow_log.as_ref().map(|f| run.name(&f.role_name)).unwrap_or_default(),
            log_group: plan.flow_log.as_ref().map(|f| run.name(&f.log_group)).unwrap_or_default(),
            metric_filter: plan.alarm.as_ref().map(|a| run.name(&a.metric_filter_name)).unwrap_or_default(),
            alarm: plan.alarm.as_ref().map(|a| run.name(&a.name)).unwrap_or_default(),
        }
    }
}

async fn create_vpc(plan: &Plan, ctx: &BuildContext<'_>) -> Result<String, BuildError> {
    let name = ctx.run_id.name(&plan.vpc.name);
    let out = ctx
        .clients
        .ec2
        .create_vpc()
        .cidr_block(plan.vpc.cidr.to_string())
        .tag_specifications(ctx.ec2_tags(plan, ResourceType::Vpc, &name, &plan.vpc.tags))
        .send()
        .await
        .map_err(aws_err("CreateVpc"))
        .map_err(fail("VPC"))?;
    let id = out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
    ctx.record(ResourceKind::Vpc, &id, "vpc", None)?;
    Ok(id)
}

async fn create_igw(plan: &Plan, ctx: &BuildContext<'_>, name: &str) -> Result<String, BuildError> {
    let out = ctx
        .clients
        .ec2
        .create_internet_gateway()
        .tag_specifications(ctx.ec2_tags(plan, ResourceType::InternetGateway, name, &BTreeMap::new()))
        .send()
        .await
        .map_err(aws_err("CreateInternetGateway"))
        .map_err(fail("internet gateway"))?;
    let id = out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string();
    ctx.record(ResourceKind::InternetGateway, &id, "internet-gateway", None)?;
    Ok(id)
}

/// The flow-log service's trust policy, with the confused-deputy conditions AWS
/// recommends: only flow logs of this account may assume the role.
pub fn trust_policy(partition: &str, region: &str, account: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "vpc-flow-logs.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": { "aws:SourceAccount": account },
                "ArnLike": { "aws:SourceArn": format!("arn:{partition}:ec2:{region}:{account}:vpc-flow-log/*") }
            }
        }]
    })
}

/// Least privilege for delivery: write and describe on the run's log group only.
pub fn delivery_policy(log_group_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, format!("{log_group_arn}:*")]
        }]
    })
}

async fn create_role(plan: &Plan, ctx: &BuildContext<'_>, names: &AccountNames) -> Result<String, BuildError> {
    let trust = trust_policy(ctx.partition(), &ctx.clients.region, &ctx.account_id);
    let mut req = ctx
        .clients
        .iam
        .create_role()
        .role_name(&names.role)
        .path(IAM_PATH)
        .description(format!("VPC Flow Logs delivery for microseg run {}", ctx.run_id))
        .assume_role_policy_document(trust.to_string())
        .set_permissions_boundary(ctx.role_boundary.clone());
    for (k, v) in ctx.tags(plan, &names.role, &BTreeMap::new()) {
        req = req.tags(aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value are set"));
    }
    let out = req.send().await.map_err(aws_err("CreateRole")).map_err(fail("flow-log role"))?;
    ctx.record(ResourceKind::Role, &names.role, "flow-log-role", None)?;
    Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
}

async fn put_role_policy(ctx: &BuildContext<'_>, fl: &PlannedFlowLog, names: &AccountNames) -> Result<(), BuildError> {
    let arn =
        format!("arn:{}:logs:{}:{}:log-group:{}", ctx.partition(), ctx.clients.region, ctx.account_id, names.log_group);
    settle("PutRolePolicy", || {
        ctx.clients
            .iam
            .put_role_policy()
            .role_name(&names.role)
            .policy_name(&fl.role_policy_name)
            .policy_document(delivery_policy(&arn).to_string())
            .send()
    })
    .await
    .map_err(fail("flow-log role policy"))?;
    Ok(())
}

async fn create_log_group(
    plan: &Plan,
    ctx: &BuildContext<'_>,
    fl: &PlannedFlowLog,
    names: &AccountNames,
) -> Result<(), BuildError> {
    let mut req = ctx.clients.logs.create_log_group().log_group_name(&names.log_group);
    for (k, v) in ctx.tags(plan, &names.log_group, &BTreeMap::new()) {
        req = req.tags(k, v);
    }
    req.send().await.map_err(aws_err("CreateLogGroup")).map_err(fail("log group"))?;
    ctx.record(ResourceKind::LogGroup, &names.log_group, "flow-log-group", None)?;
    if let Some(days) = fl.retention_days {
        settle("PutRetentionPolicy", || {
            ctx.clients.logs.put_retention_policy().log_group_name(&names.log_group).retention_in_days(days).send()
        })
        .await
        .map_err(fail("log group retention"))?;
    }
    Ok(())
}

/// Creates the metric filter and the alarm on its metric; returns the metric name.
async fn create_alarm(
    plan: &Plan,
    ctx: &BuildContext<'_>,
    al: &PlannedAlarm,
    names: &AccountNames,
) -> Result<String, BuildError> {
    let metric = ctx.run_id.name(&al.metric_name);
    let transformation = aws_sdk_cloudwatchlogs::types::MetricTransformation::builder()
        .metric_namespace(&al.namespace)
        .metric_name(&metric)
        .metric_value(&al.metric_value)
        .build()
        .expect("namespace, name and value are set");
    settle("PutMetricFilter", || {
        ctx.clients
            .logs
            .put_metric_filter()
            .log_group_name(&names.log_group)
            .filter_name(&names.metric_filter)
            .filter_pattern(&al.filter_pattern)
            .metric_transformations(transformation.clone())
            .send()
    })
    .await
    .map_err(fail("metric filter"))?;
    ctx.record(ResourceKind::MetricFilter, &names.metric_filter, "rejected-packets-filter", Some(&names.log_group))?;
    if !ctx.clients.cloudwatch_served {
        // cloudwatch-no-cbor: the target cannot take the alarm; the alarm check names
        // the divergence instead of a missing alarm.
        tracing::warn!("this target's CloudWatch cannot answer the SDK (cloudwatch-no-cbor): no alarm is created");
        return Ok(metric);
    }
    let req = ctx
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&names.alarm)
        .alarm_description(&al.description)
        .namespace(&al.namespace)
        .metric_name(&metric)
        .statistic(aws_sdk_cloudwatch::types::Statistic::from(al.statistic.as_str()))
        .period(al.period)
        .evaluation_periods(al.evaluation_periods)
        .threshold(al.threshold)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::from(al.comparison.as_str()))
        // No flow records means no rejected packets, not an unknown state.
        .treat_missing_data("notBreaching");
    let tags: Vec<aws_sdk_cloudwatch::types::Tag> = ctx
        .tags(plan, &names.alarm, &BTreeMap::new())
        .into_iter()
        .map(|(k, v)| aws_sdk_cloudwatch::types::Tag::builder().key(k).value(v).build())
        .collect();
    if ctx.tag_alarm_separately {
        req.send().await.map_err(aws_err("PutMetricAlarm")).map_err(fail("alarm"))?;
        ctx.record(ResourceKind::Alarm, &names.alarm, "rejected-traffic-alarm", None)?;
        let arn = format!(
            "arn:{}:cloudwatch:{}:{}:alarm:{}",
            ctx.partition(),
            ctx.clients.region,
            ctx.account_id,
            names.alarm
        );
        settle("TagResource", || {
            ctx.clients.cloudwatch.tag_resource().resource_arn(&arn).set_tags(Some(tags.clone())).send()
        })
        .await
        .map_err(fail("alarm tags"))?;
    } else {
        req.set_tags(Some(tags)).send().await.map_err(aws_err("PutMetricAlarm")).map_err(fail("alarm"))?;
        ctx.record(ResourceKind::Alarm, &names.alarm, "rejected-traffic-alarm", None)?;
    }
    Ok(metric)
}

async fn create_flow_log(
    plan: &Plan,
    ctx: &BuildContext<'_>,
    fl: &PlannedFlowLog,
    vpc_id: &str,
    role_arn: &str,
    names: &AccountNames,
) -> Result<String, BuildError> {
    // A role is not usable by other services for a few seconds after CreateRole on AWS;
    // CreateFlowLogs then reports it in `Unsuccessful`. Retry that, bounded.
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=8 {
        let out = settle("CreateFlowLogs", || {
            ctx.clients
                .ec2
                .create_flow_logs()
                .resource_type(FlowLogsResourceType::Vpc)
                .resource_ids(vpc_id)
                .traffic_type(TrafficType::from(fl.traffic_type.as_str()))
                .log_destination_type(LogDestinationType::CloudWatchLogs)
                .log_group_name(&names.log_group)
                .deliver_logs_permission_arn(role_arn)
                .tag_specifications(ctx.ec2_tags(plan, ResourceType::VpcFlowLog, &names.log_group, &BTreeMap::new()))
                .send()
        })
        .await
        .map_err(fail("flow log"))?;
        if let Some(id) = out.flow_log_ids().first() {
            ctx.record(ResourceKind::FlowLog, id, "flow-log", None)?;
            return Ok(id.clone());
        }
        let err = out.unsuccessful().iter().find_map(|u| u.error()).map(|e| AwsError {
            operation: "CreateFlowLogs",
            code: e.code().map(str::to_string),
            message: e.message().unwrap_or_default().to_string(),
        });
        let err = err.unwrap_or(AwsError {
            operation: "CreateFlowLogs",
            code: None,
            message: "no flow log id returned".into(),
        });
        let role_not_ready = err.message.contains("assume") || err.message.contains("IAM role");
        if !role_not_ready || attempt == 8 {
            return Err(BuildError::Aws { what: "flow log".into(), source: err });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(4));
    }
    unreachable!("the last attempt returns")
}

async fn create_nacl_entries(plan: &Plan, ctx: &BuildContext<'_>, b: &Bindings) -> Result<(), BuildError> {
    let calls = plan.nacls.iter().flat_map(|n| {
        let id = b.nacls.get(&n.name).cloned().unwrap_or_default();
        n.entries.iter().map(move |e| (n.name.clone(), id.clone(), e.clone()))
    });
    settle_all(calls.map(|(name, id, e)| async move {
        let mut req = ctx
            .clients
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&id)
            .rule_number(e.rule_number)
            .protocol(e.protocol.nacl_api_value())
            .rule_action(aws_sdk_ec2::types::RuleAction::from(e.action.to_string().as_str()))
            .egress(e.direction.is_egress());
        req = match e.cidr {
            IpNet::V4(_) => req.cidr_block(e.cidr.to_string()),
            IpNet::V6(_) => req.ipv6_cidr_block(e.cidr.to_string()),
        };
        if let Some(p) = e.ports {
            req = req.port_range(
                aws_sdk_ec2::types::PortRange::builder().from(i32::from(p.from)).to(i32::from(p.to)).build(),
            );
        }
        if e.protocol == Protocol::Icmp {
            req = req.icmp_type_code(IcmpTypeCode::builder().r#type(-1).code(-1).build());
        }
        settle("CreateNetworkAclEntry", || req.clone().send())
            .await
            .map_err(fail(format!("NACL {name} entry {}", describe_entry(&e))))
    }))
    .await?;
    Ok(())
}

fn describe_entry(e: &NaclEntry) -> String {
    e.to_string()
}

async fn associate_nacls(plan: &Plan, ctx: &BuildContext<'_>, b: &Bindings, vpc_id: &str) -> Result<(), BuildError> {
    if plan.zones.is_empty() {
        return Ok(());
    }
    // Each new subnet starts on the default NACL; ReplaceNetworkAclAssociation moves it.
    // (The recipe's associate-network-acl is not an EC2 operation: deviation D1.)
    // A subnet created a moment ago may not be listed on the default NACL yet (eventual
    // consistency): look again, bounded, until every subnet that moves is.
    let moving: Vec<&String> =
        plan.zones.iter().filter(|z| !z.on_default_nacl()).filter_map(|z| b.zones.get(&z.name)).collect();
    let mut patience = Patience::consistency();
    let current: BTreeMap<String, String> = loop {
        let acls = ctx
            .clients
            .ec2
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(Filter::builder().name("default").values("true").build())
            .send()
            .await
            .map_err(aws_err("DescribeNetworkAcls"))
            .map_err(fail("default NACL lookup"))?;
        let current: BTreeMap<String, String> = acls
            .network_acls()
            .iter()
            .flat_map(|a| a.associations())
            .filter_map(|a| Some((a.subnet_id()?.to_string(), a.network_acl_association_id()?.to_string())))
            .collect();
        if moving.iter().all(|s| current.contains_key(*s)) || !patience.has_time() {
            break current;
        }
        patience.pause().await;
    };
    // A zone on the default NACL stays where every new subnet starts.
    settle_all(plan.zones.iter().filter(|z| !z.on_default_nacl()).map(|z| {
        let subnet = b.zones.get(&z.name).cloned().unwrap_or_default();
        let nacl = b.nacls.get(&z.nacl).cloned().unwrap_or_default();
        let assoc = current.get(&subnet).cloned();
        async move {
            let Some(assoc) = assoc else {
                return Err(BuildError::Aws {
                    what: format!("NACL association of zone {}", z.name),
                    source: AwsError {
                        operation: "DescribeNetworkAcls",
                        code: None,
                        message: format!("subnet {subnet} has no current NACL association"),
                    },
                });
            };
            settle("ReplaceNetworkAclAssociation", || {
                ctx.clients.ec2.replace_network_acl_association().association_id(&assoc).network_acl_id(&nacl).send()
            })
            .await
            .map_err(fail(format!("NACL association of zone {}", z.name)))
        }
    }))
    .await?;
    Ok(())
}

/// One `IpPermission` per rule: EC2 merges them per protocol and port range itself.
fn permission(rule: &SgRule, b: &Bindings) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(rule.protocol.sg_api_value());
    match (rule.protocol, rule.ports) {
        (Protocol::Tcp | Protocol::Udp, Some(ports)) => {
            p = p.from_port(i32::from(ports.from)).to_port(i32::from(ports.to))
        }
        (Protocol::Icmp, _) => p = p.from_port(-1).to_port(-1),
        _ => {}
    }
    p = match &rule.peer {
        Peer::Cidr(IpNet::V4(_)) => p.ip_ranges(IpRange::builder().cidr_ip(rule_peer_text(rule)).build()),
        Peer::Cidr(IpNet::V6(_)) => p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(rule_peer_text(rule)).build()),
        Peer::Group(name) => p.user_id_group_pairs(
            UserIdGroupPair::builder().group_id(b.security_groups.get(name).cloned().unwrap_or_default()).build(),
        ),
        Peer::GroupId(id) => p.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build()),
        Peer::PrefixList(id) => {
            p.prefix_list_ids(aws_sdk_ec2::types::PrefixListId::builder().prefix_list_id(id).build())
        }
    };
    p.build()
}

fn rule_peer_text(rule: &SgRule) -> String {
    match &rule.peer {
        Peer::Cidr(c) => c.to_string(),
        other => other.to_string(),
    }
}

async fn authorize_groups(plan: &Plan, ctx: &BuildContext<'_>, b: &Bindings) -> Result<(), BuildError> {
    settle_all(plan.security_groups.iter().map(|g| authorize_group(ctx, g, b))).await?;
    Ok(())
}

async fn authorize_group(ctx: &BuildContext<'_>, g: &PlannedSecurityGroup, b: &Bindings) -> Result<(), BuildError> {
    let id = b.security_groups.get(&g.name).cloned().unwrap_or_default();
    let ingress: Vec<IpPermission> =
        g.rules.iter().filter(|r| r.direction == Direction::Ingress).map(|r| permission(r, b)).collect();
    let egress: Vec<IpPermission> =
        g.rules.iter().filter(|r| r.direction == Direction::Egress).map(|r| permission(r, b)).collect();
    if !ingress.is_empty() {
        settle("AuthorizeSecurityGroupIngress", || {
            ctx.clients
                .ec2
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(ingress.clone()))
                .send()
        })
        .await
        .map_err(fail(format!("ingress rules of group {}", g.name)))?;
    }
    if !g.keep_default_egress {
        settle("RevokeSecurityGroupEgress", || {
            ctx.clients
                .ec2
                .revoke_security_group_egress()
                .group_id(&id)
                .ip_permissions(permission(&crate::model::default_sg_egress(), b))
                .send()
        })
        .await
        .map_err(fail(format!("default egress of group {}", g.name)))?;
    }
    if !egress.is_empty() {
        settle("AuthorizeSecurityGroupEgress", || {
            ctx.clients
                .ec2
                .authorize_security_group_egress()
                .group_id(&id)
                .set_ip_permissions(Some(egress.clone()))
                .send()
        })
        .await
        .map_err(fail(format!("egress rules of group {}", g.name)))?;
    }
    Ok(())
}

/// Allocates the Elastic IP of one NAT gateway; returns (NAT name, allocation id).
async fn allocate_address(
    plan: &Plan,
    ctx: &BuildContext<'_>,
    nat: &PlannedNatGateway,
) -> Result<(String, String), BuildError> {
    let out = ctx
        .clients
        .ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .tag_specifications(ctx.ec2_tags(
            plan,
            ResourceType::ElasticIp,
            &format!("{}-eip", nat.tag_name),
            &BTreeMap::new(),
        ))
        .send()
        .await
        .map_err(aws_err("AllocateAddress"))
        .map_err(fail(format!("Elastic IP of NAT gateway {}", nat.name)))?;
    let id = out.allocation_id().unwrap_or_default().to_string();
    ctx.record(ResourceKind::ElasticIp, &id, &nat.name, None)?;
    Ok((nat.name.clone(), id))
}

/// Creates the NAT gateways and waits until each is available (AWS takes a minute or
/// two; routes to a pending NAT gateway would not carry traffic yet). The wait is
/// bounded: 10 minutes, polls from 250 ms growing to 10 s.
async fn create_nat_gateways(
    plan: &Plan,
    ctx: &BuildContext<'_>,
    b: &Bindings,
) -> Result<BTreeMap<String, String>, BuildError> {
    let created = settle_all(plan.nat_gateways.iter().map(|n| async move {
        let out = settle("CreateNatGateway", || {
            ctx.clients
                .ec2
                .create_nat_gateway()
                .subnet_id(b.zones.get(&n.zone).cloned().unwrap_or_default())
                .allocation_id(b.elastic_ips.get(&n.name).cloned().unwrap_or_default())
                // Public is AWS's default; said explicitly because LocalStack (moto)
                // echoes the parameter and reports a NAT gateway created without it as
                // connectivity "None" (docs/EMULATOR.md, "Divergences from AWS":
                // nat-connectivity-type-echoed).
                .connectivity_type(aws_sdk_ec2::types::ConnectivityType::Public)
                .tag_specifications(ctx.ec2_tags(plan, ResourceType::Natgateway, &n.tag_name, &BTreeMap::new()))
                .send()
        })
        .await
        .map_err(fail(format!("NAT gateway {}", n.name)))?;
        let id = out.nat_gateway().and_then(|g| g.nat_gateway_id()).unwrap_or_default().to_string();
        ctx.record(ResourceKind::NatGateway, &id, &n.name, None)?;
        wait_available(ctx, &n.name, &id).await?;
        Ok::<_, BuildError>((n.name.clone(), id))
    }))
    .await?;
    Ok(created.into_iter().collect())
}

async fn wait_available(ctx: &BuildContext<'_>, name: &str, id: &str) -> Result<(), BuildError> {
    let mut patience = Patience::new(Duration::from_secs(600), Duration::from_secs(10));
    let problem = |source: AwsError| BuildError::Aws { what: format!("NAT gateway {name}"), source };
    let says = |message: String| problem(AwsError { operation: "DescribeNatGateways", code: None, message });
    loop {
        // Not listed yet right after the create: "not available yet", not a failure.
        let state = nat_gateway_state(&ctx.clients.ec2, id).await.map_err(problem)?;
        match state.as_deref() {
            Some("available") => return Ok(()),
            Some(s @ ("failed" | "deleting" | "deleted")) => return Err(says(format!("{id} is {s}"))),
            other if patience.expired() => {
                return Err(says(format!("{id} still {} after 10 minutes", other.unwrap_or("not listed"))));
            }
            _ => patience.pause().await,
        }
    }
}

async fn create_routes(plan: &Plan, ctx: &BuildContext<'_>, b: &Bindings) -> Result<(), BuildError> {
    let routes = plan.route_tables.iter().flat_map(|t| t.routes.iter().map(move |r| (t, r)));
    let associations = plan.route_tables.iter().flat_map(|t| t.zones.iter().map(move |z| (t, z)));
    let create = settle_all(routes.map(|(t, (dest, target))| async move {
        let table = b.route_tables.get(&t.name).cloned().unwrap_or_default();
        let req = ctx.clients.ec2.create_route().route_table_id(table).destination_cidr_block(dest.to_string());
        let req = match target {
            RouteTarget::InternetGateway => req.gateway_id(b.internet_gateway_id.clone().unwrap_or_default()),
            RouteTarget::NatGateway(n) => req.nat_gateway_id(b.nat_gateways.get(n).cloned().unwrap_or_default()),
        };
        settle("CreateRoute", || req.clone().send()).await.map_err(fail(format!("route {dest} in table {}", t.name)))
    }));
    let associate = settle_all(associations.map(|(t, zone)| async move {
        let table = b.route_tables.get(&t.name).cloned().unwrap_or_default();
        let subnet = b.zones.get(zone).cloned().unwrap_or_default();
        settle("AssociateRouteTable", || {
            ctx.clients.ec2.associate_route_table().route_table_id(&table).subnet_id(&subnet).send()
        })
        .await
        .map_err(fail(format!("route table {} association with zone {zone}", t.name)))
    }));
    let (created, associated) = tokio::join!(create, associate);
    ((), ()) = (created.map(|_| ())?, associated.map(|_| ())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_carries_confused_deputy_conditions() {
        let p = trust_policy("aws", "eu-west-1", "123456789012");
        let cond = &p["Statement"][0]["Condition"];
        assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "123456789012");
        assert_eq!(cond["ArnLike"]["aws:SourceArn"], "arn:aws:ec2:eu-west-1:123456789012:vpc-flow-log/*");
        assert_eq!(p["Statement"][0]["Principal"]["Service"], "vpc-flow-logs.amazonaws.com");
    }

    #[test]
    fn delivery_policy_is_scoped_to_the_log_group() {
        let p = delivery_policy("arn:aws:logs:eu-west-1:123456789012:log-group:/x");
        let resources = p["Statement"][0]["Resource"].as_array().unwrap();
        assert!(
            resources
                .iter()
                .all(|r| r.as_str().unwrap().starts_with("arn:aws:logs:eu-west-1:123456789012:log-group:/x"))
        );
        assert!(!resources.iter().any(|r| r == "*"));
    }
}
