//! Test fixtures shared by the checks' tests: a deployment exactly as planned, on AWS
//! semantics, and small helpers to change it.

#![allow(dead_code)]

pub(crate) use super::*;
pub(crate) use crate::bindings::Bindings;
pub(crate) use crate::capabilities::{Capabilities, Divergence};
pub(crate) use crate::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
pub(crate) use crate::observe::{
    MetricTransformation, NaclAssociation, Observed, ObservedAlarm, ObservedFlowLog, ObservedLogGroup,
    ObservedMetricFilter, ObservedNacl, ObservedRole, ObservedSecurityGroup,
};
pub(crate) use crate::plan::{Plan, PlannedAlarm, PlannedFlowLog};
pub(crate) use crate::spec;

/// The suffix a build gives account-wide names: the checks must take those names from
/// the bindings, never from the plan's base names.
pub(crate) const RUN: &str = "-ms-test";
pub(crate) const ACCOUNT: &str = "000000000000";
pub(crate) const REGION: &str = "us-east-1";

pub(crate) fn recipe() -> Plan {
    let (s, src) = spec::load("recipe").unwrap();
    Plan::from_spec(&s, &src).unwrap()
}

/// A deployment exactly as the plan says, on AWS semantics: `reach::designed` (subnets,
/// NACLs with their `*` entries, groups, route tables, IGW; ids such as `subnet-web`,
/// `acl-web`, `sg-web`, `rtb-public`) plus what it leaves out: the VPC's default NACL,
/// the flow log with its role and log group, the metric filter and the alarm.
pub(crate) fn deployed(plan: &Plan) -> (Observed, Bindings) {
    let (mut o, mut b) = crate::reach::designed(plan);
    o.nacls.push(default_nacl());
    if let Some(fl) = &plan.flow_log {
        add_flow_log(&mut o, &mut b, fl);
    }
    if let Some(al) = &plan.alarm {
        add_alarm(&mut o, &mut b, al);
    }
    (o, b)
}

/// The default NACL as AWS creates it: allow all, then `*` deny, both ways; every
/// subnet has been moved off it.
pub(crate) fn default_nacl() -> ObservedNacl {
    let entry = |rule_number, direction, action| NaclEntry {
        rule_number,
        direction,
        protocol: Protocol::All,
        ports: None,
        cidr: "0.0.0.0/0".parse().unwrap(),
        action,
    };
    let mut entries = Vec::new();
    for d in Direction::BOTH {
        entries.push(entry(100, d, RuleAction::Allow));
        entries.push(entry(crate::model::DEFAULT_DENY_RULE_NUMBER, d, RuleAction::Deny));
    }
    ObservedNacl {
        id: "acl-default".into(),
        is_default: true,
        entries,
        associations: Vec::new(),
        tags: Default::default(),
    }
}

pub(crate) fn log_group_arn(name: &str) -> String {
    format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}")
}

pub(crate) fn add_flow_log(o: &mut Observed, b: &mut Bindings, fl: &PlannedFlowLog) {
    let log_group = format!("{}{RUN}", fl.log_group);
    let role = format!("{}{RUN}", fl.role_name);
    o.flow_logs.push(ObservedFlowLog {
        id: "fl-designed".into(),
        resource_id: b.vpc_id.clone().unwrap(),
        traffic_type: Some(fl.traffic_type.clone()),
        destination_type: Some("cloud-watch-logs".into()),
        log_group_name: Some(log_group.clone()),
        deliver_logs_permission_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/microseg/{role}")),
        flow_log_status: Some("ACTIVE".into()),
        deliver_logs_status: Some("SUCCESS".into()),
        deliver_logs_error_message: None,
        tags: Default::default(),
    });
    o.roles.push(ObservedRole {
        name: role.clone(),
        arn: format!("arn:aws:iam::{ACCOUNT}:role/microseg/{role}"),
        path: "/microseg/".into(),
        trust_policy: crate::build::trust_policy("aws", REGION, ACCOUNT),
        inline_policies: [(fl.role_policy_name.clone(), crate::build::delivery_policy(&log_group_arn(&log_group)))]
            .into(),
        attached_policy_arns: Vec::new(),
        tags: Default::default(),
    });
    o.log_groups.push(ObservedLogGroup {
        name: log_group.clone(),
        arn: Some(log_group_arn(&log_group)),
        retention_days: fl.retention_days,
        metric_filters: Vec::new(),
        tags: Default::default(),
    });
    b.flow_log_id = Some("fl-designed".into());
    b.role_name = Some(role);
    b.log_group_name = Some(log_group);
}

pub(crate) fn add_alarm(o: &mut Observed, b: &mut Bindings, al: &PlannedAlarm) {
    let metric = format!("{}{RUN}", al.metric_name);
    let filter = format!("{}{RUN}", al.metric_filter_name);
    let alarm = format!("{}{RUN}", al.name);
    let group = o.log_groups.iter_mut().find(|g| Some(&g.name) == b.log_group_name.as_ref()).unwrap();
    group.metric_filters.push(ObservedMetricFilter {
        name: filter.clone(),
        pattern: al.filter_pattern.clone(),
        metrics: vec![MetricTransformation {
            namespace: al.namespace.clone(),
            name: metric.clone(),
            value: al.metric_value.clone(),
        }],
    });
    o.alarms.push(ObservedAlarm {
        name: alarm.clone(),
        arn: None,
        namespace: Some(al.namespace.clone()),
        metric_name: Some(metric.clone()),
        statistic: Some(al.statistic.clone()),
        period: Some(al.period),
        evaluation_periods: Some(al.evaluation_periods),
        threshold: Some(al.threshold),
        comparison: Some(al.comparison.clone()),
        dimensions: Default::default(),
        state: Some("OK".into()),
        tags: Default::default(),
    });
    b.metric_filter_name = Some(filter);
    b.alarm_name = Some(alarm);
    b.metric_name = Some(metric);
}

pub(crate) fn emulator_caps() -> Capabilities {
    let mut caps = Capabilities::emulator("LocalStack 4.14.0".into());
    caps.divergences.insert(Divergence::NaclWithoutDefaultDeny);
    caps.divergences.insert(Divergence::NaclRuleNumberUnbounded);
    caps
}

pub(crate) fn result<'a>(results: &'a [CheckResult], id: &str) -> &'a CheckResult {
    results.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id} in {results:?}"))
}

/// Runs every check on AWS semantics and returns one check's findings as (id, resource).
pub(crate) fn findings(plan: &Plan, o: &Observed, b: &Bindings, check: &str) -> Vec<(String, String)> {
    let results = run_checks(plan, o, b, &Capabilities::aws());
    let c = result(&results, check);
    let found: Vec<_> = c.findings.iter().map(|f| (f.id.clone(), f.resource.clone())).collect();
    assert_eq!(c.status, if found.is_empty() { Status::Pass } else { Status::Fail }, "{c:?}");
    found
}

pub(crate) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

pub(crate) fn nacl<'a>(o: &'a mut Observed, id: &str) -> &'a mut ObservedNacl {
    o.nacls.iter_mut().find(|n| n.id == id).unwrap()
}

pub(crate) fn group<'a>(o: &'a mut Observed, id: &str) -> &'a mut ObservedSecurityGroup {
    o.security_groups.iter_mut().find(|g| g.id == id).unwrap()
}

pub(crate) fn tcp(port: u16) -> Option<crate::model::PortRange> {
    Some(crate::model::PortRange::single(port))
}

pub(crate) fn sg_rule(direction: Direction, port: u16, peer: Peer) -> SgRule {
    SgRule { direction, protocol: Protocol::Tcp, ports: tcp(port), peer }
}

pub(crate) fn cidr(s: &str) -> Peer {
    Peer::Cidr(s.parse().unwrap())
}

/// Replaces one observed rule of a group with another.
pub(crate) fn replace_rule(o: &mut Observed, group_id: &str, old: &SgRule, new: SgRule) {
    let g = group(o, group_id);
    let at = g.rules.iter().position(|r| r == old).unwrap_or_else(|| panic!("{old} in {group_id}"));
    g.rules[at] = new;
}
