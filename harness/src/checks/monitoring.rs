//! Monitoring: the flow log, its delivery role and log group, the metric filter on
//! rejected records and the alarm on its metric.

use super::{Check, CheckResult, list};
use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::observe::Observed;
use crate::plan::Plan;

/// A flow log on the VPC with the planned traffic type, group and role, delivering.
pub(super) fn flow_log(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let c =
        Check::new("flow-log", "VPC flow log: traffic ALL to the log group through the role, ACTIVE and delivering");
    let mut c = c;
    let vpc = b.vpc_id.clone().unwrap_or_default();
    let fl = plan.flow_log.as_ref().and_then(|_| {
        b.flow_log_id
            .as_ref()
            .and_then(|id| observed.flow_logs.iter().find(|f| &f.id == id))
            .or_else(|| observed.flow_logs.iter().find(|f| f.resource_id == vpc))
    });
    // Closed world: every other flow log on the VPC or its subnets. They change no path,
    // but they send the VPC's traffic records somewhere the spec does not name.
    for f in observed.flow_logs.iter().filter(|f| fl.is_none_or(|p| p.id != f.id)) {
        c.finding(
            "MS-FLOW-UNPLANNED",
            format!("flow log to {} ({} on {})", f.destination_type.as_deref().unwrap_or("?"), f.id, f.resource_id),
            "only the spec's flow log",
            format!(
                "{} traffic of {} to {}",
                f.traffic_type.as_deref().unwrap_or("?"),
                f.resource_id,
                f.log_group_name.as_deref().unwrap_or("its destination")
            ),
        );
    }
    let Some(want) = &plan.flow_log else {
        return if c.result.findings.is_empty() { c.skipped("the scenario has no flow log") } else { c.done() };
    };
    let Some(fl) = fl else {
        c.finding(
            "MS-FLOW-MISSING",
            format!("VPC {vpc}"),
            format!("a flow log of {} traffic to CloudWatch Logs", want.traffic_type),
            "no flow log on the VPC",
        );
        return c.done();
    };
    let resource = format!("flow log {} on {vpc}", fl.id);
    let eq = |a: &Option<String>, b: &str| a.as_deref() == Some(b);
    if !eq(&fl.traffic_type, &want.traffic_type) {
        c.finding(
            "MS-FLOW-TRAFFIC-TYPE",
            resource.clone(),
            format!("traffic type {}", want.traffic_type),
            format!("{:?}", fl.traffic_type),
        );
    }
    if !eq(&fl.destination_type, "cloud-watch-logs") {
        c.finding(
            "MS-FLOW-DESTINATION",
            resource.clone(),
            "destination cloud-watch-logs",
            format!("{:?}", fl.destination_type),
        );
    }
    if let Some(group) = &b.log_group_name
        && fl.log_group_name.as_ref() != Some(group)
    {
        c.finding(
            "MS-FLOW-LOG-GROUP",
            resource.clone(),
            format!("log group {group}"),
            format!("{:?}", fl.log_group_name),
        );
    }
    let role_name = b.role_name.clone().unwrap_or_default();
    if fl.deliver_logs_permission_arn.as_deref().is_none_or(|a| a.rsplit('/').next() != Some(role_name.as_str())) {
        c.finding(
            "MS-FLOW-ROLE",
            resource.clone(),
            format!("delivery role {role_name}"),
            format!("{:?}", fl.deliver_logs_permission_arn),
        );
    }
    // Status and delivery: an emulator reports ACTIVE whatever happens.
    if caps.has(Divergence::FlowLogStatusAlwaysActive) {
        c.divergence(Divergence::FlowLogStatusAlwaysActive);
    } else {
        if !eq(&fl.flow_log_status, "ACTIVE") {
            c.finding("MS-FLOW-NOT-ACTIVE", resource.clone(), "status ACTIVE", format!("{:?}", fl.flow_log_status));
        }
        if eq(&fl.deliver_logs_status, "FAILED") {
            c.finding(
                "MS-FLOW-DELIVERY-FAILED",
                resource.clone(),
                "delivery not FAILED",
                format!("FAILED: {}", fl.deliver_logs_error_message.as_deref().unwrap_or("")),
            );
        }
    }
    role_checks(&mut c, observed, &role_name, b.log_group_name.as_deref().unwrap_or_default());
    match observed.log_groups.iter().find(|g| Some(&g.name) == b.log_group_name.as_ref()) {
        None => c.finding(
            "MS-FLOW-LOG-GROUP-MISSING",
            format!("log group {}", b.log_group_name.as_deref().unwrap_or("?")),
            "the log group exists",
            "no such log group",
        ),
        Some(g) if want.retention_days.is_some() && g.retention_days != want.retention_days => c.finding(
            "MS-LOG-RETENTION",
            format!("log group {}", g.name),
            format!("retention {:?} days", want.retention_days),
            format!("{:?}", g.retention_days),
        ),
        Some(_) => {}
    }
    c.done()
}

pub(super) fn statements(doc: &serde_json::Value) -> Vec<&serde_json::Value> {
    match &doc["Statement"] {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    }
}

pub(super) fn strings(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn role_checks(c: &mut Check, observed: &Observed, role_name: &str, log_group: &str) {
    let resource = format!("IAM role {role_name}");
    let Some(role) = observed.roles.iter().find(|r| r.name == role_name) else {
        c.finding("MS-ROLE-MISSING", resource, "the flow-log role exists", "no such role");
        return;
    };
    let trust = statements(&role.trust_policy);
    let service = trust.iter().find(|s| {
        s["Effect"] == "Allow" && strings(&s["Principal"]["Service"]).contains(&"vpc-flow-logs.amazonaws.com")
    });
    match service {
        None => c.finding(
            "MS-ROLE-TRUST",
            resource.clone(),
            "trust policy lets vpc-flow-logs.amazonaws.com assume the role",
            role.trust_policy.to_string(),
        ),
        Some(s) => {
            let cond = s["Condition"].to_string();
            if !(cond.contains("aws:SourceAccount") || cond.contains("aws:SourceArn")) {
                c.finding(
                    "MS-ROLE-CONFUSED-DEPUTY",
                    resource.clone(),
                    "a condition on aws:SourceAccount or aws:SourceArn",
                    "no condition: any account's flow logs could use the role",
                );
            }
        }
    }
    let grants = |action: &str| {
        role.inline_policies
            .values()
            .flat_map(statements)
            .filter(|s| s["Effect"] == "Allow")
            .filter(|s| strings(&s["Action"]).iter().any(|a| *a == action || *a == "logs:*" || *a == "*"))
            .flat_map(|s| strings(&s["Resource"]))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
        let resources = grants(action);
        if resources.is_empty() && role.attached_policy_arns.is_empty() {
            c.finding(
                "MS-ROLE-POLICY-MISSING",
                resource.clone(),
                format!("{action} allowed on the log group"),
                "not allowed by any policy",
            );
        } else if resources.iter().any(|r| r == "*") {
            c.finding(
                "MS-ROLE-POLICY-BROAD",
                resource.clone(),
                format!("{action} scoped to log group {log_group}"),
                "Resource \"*\"",
            );
        } else if !resources.is_empty() && !resources.iter().any(|r| r.contains(log_group)) {
            c.finding(
                "MS-ROLE-POLICY-SCOPE",
                resource.clone(),
                format!("{action} on log group {log_group}"),
                list(&resources),
            );
        }
    }
}

/// The metric filter on REJECT records and the alarm on its metric.
pub(super) fn alarm(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let c = Check::new("alarm", "metric filter on rejected flow records, alarm on its metric");
    let Some(want) = &plan.alarm else { return c.skipped("the scenario has no alarm") };
    let mut c = c;
    let group = b.log_group_name.clone().unwrap_or_default();
    let filter = observed
        .log_groups
        .iter()
        .filter(|g| g.name == group)
        .flat_map(|g| &g.metric_filters)
        .find(|f| Some(&f.name) == b.metric_filter_name.as_ref());
    let metric = b.metric_name.clone().unwrap_or_default();
    match filter {
        None => c.finding(
            "MS-ALARM-FILTER-MISSING",
            format!("log group {group}"),
            format!("metric filter {}", b.metric_filter_name.as_deref().unwrap_or("?")),
            "no such filter",
        ),
        Some(f) => {
            let resource = format!("metric filter {}", f.name);
            if f.pattern != want.filter_pattern {
                c.finding("MS-ALARM-FILTER-PATTERN", resource.clone(), want.filter_pattern.clone(), f.pattern.clone());
            }
            if !f
                .metrics
                .iter()
                .any(|m| m.namespace == want.namespace && m.name == metric && m.value == want.metric_value)
            {
                c.finding(
                    "MS-ALARM-FILTER-METRIC",
                    resource,
                    format!("{}/{} = {}", want.namespace, metric, want.metric_value),
                    list(f.metrics.iter().map(|m| format!("{}/{} = {}", m.namespace, m.name, m.value))),
                );
            }
        }
    }
    // The filter is decided; an alarm cannot be made or read where CloudWatch does not
    // answer the SDK.
    if caps.has(Divergence::CloudwatchNoCbor) {
        c.divergence(Divergence::CloudwatchNoCbor);
        return c.done();
    }
    let name = b.alarm_name.clone().unwrap_or_default();
    match observed.alarms.iter().find(|a| a.name == name) {
        None => c.finding(
            "MS-ALARM-MISSING",
            if name.is_empty() {
                "alarm (none watches the filter's metric)".to_string()
            } else {
                format!("alarm {name}")
            },
            format!("an alarm on {}/{}", want.namespace, if metric.is_empty() { &want.metric_name } else { &metric }),
            "no such alarm",
        ),
        Some(a) => {
            let resource = format!("alarm {name}");
            let found = format!(
                "{:?} {:?} {:?} over {:?}s, {:?} {:?}",
                a.namespace, a.metric_name, a.statistic, a.period, a.comparison, a.threshold
            );
            let expected = format!(
                "{} {metric} {} over {}s, {} {}",
                want.namespace, want.statistic, want.period, want.comparison, want.threshold
            );
            let matches = a.namespace.as_deref() == Some(want.namespace.as_str())
                && a.metric_name.as_deref() == Some(metric.as_str())
                && a.statistic.as_deref() == Some(want.statistic.as_str())
                && a.period == Some(want.period)
                && a.comparison.as_deref() == Some(want.comparison.as_str())
                && a.threshold == Some(want.threshold);
            if !matches {
                c.finding("MS-ALARM-CONFIG", resource, expected, found);
            }
        }
    }
    c.done()
}

#[cfg(test)]
mod tests {

    use crate::checks::fixtures::*;

    #[test]
    fn flow_log_of_rejected_traffic_only() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.flow_logs[0].traffic_type = Some("REJECT".into());
        assert_eq!(
            findings(&plan, &o, &b, "flow-log"),
            pairs(&[("MS-FLOW-TRAFFIC-TYPE", "flow log fl-designed on vpc-designed")])
        );
    }

    #[test]
    fn no_flow_log() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.flow_logs.clear();
        assert_eq!(findings(&plan, &o, &b, "flow-log"), pairs(&[("MS-FLOW-MISSING", "VPC vpc-designed")]));
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v3-flow-log-active"),
            pairs(&[("MS-SOURCE-FLOW-LOG", "flow log (not found)")])
        );
    }

    #[test]
    fn flow_log_attributes_each_named() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let fl = &mut o.flow_logs[0];
        fl.destination_type = Some("s3".into());
        fl.log_group_name = Some("some-other-group".into());
        fl.deliver_logs_permission_arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/SomeOtherRole"));
        let resource = "flow log fl-designed on vpc-designed";
        assert_eq!(
            findings(&plan, &o, &b, "flow-log"),
            pairs(&[("MS-FLOW-DESTINATION", resource), ("MS-FLOW-LOG-GROUP", resource), ("MS-FLOW-ROLE", resource)])
        );
    }

    #[test]
    fn flow_log_status_fails_on_aws_and_is_a_divergence_on_the_emulator() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.flow_logs[0].flow_log_status = Some("INACTIVE".into());
        o.flow_logs[0].deliver_logs_status = Some("FAILED".into());
        let resource = "flow log fl-designed on vpc-designed";
        assert_eq!(
            findings(&plan, &o, &b, "flow-log"),
            pairs(&[("MS-FLOW-NOT-ACTIVE", resource), ("MS-FLOW-DELIVERY-FAILED", resource)])
        );
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v3-flow-log-active"),
            pairs(&[("MS-SOURCE-FLOW-LOG", "flow log fl-designed")])
        );
        let results = run_checks(&plan, &o, &b, &emulator_caps());
        for id in ["flow-log", "recipe-v3-flow-log-active"] {
            let c = result(&results, id);
            assert_eq!(c.status, Status::Divergence, "{c:?}");
            assert_eq!(c.divergences, vec!["flow-log-status-always-active".to_string()]);
        }
        // The attributes are still checked on the emulator.
        o.flow_logs[0].traffic_type = Some("REJECT".into());
        let results = run_checks(&plan, &o, &b, &emulator_caps());
        let c = result(&results, "flow-log");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec!["MS-FLOW-TRAFFIC-TYPE"]);
        assert_eq!(c.divergences, vec!["flow-log-status-always-active".to_string()]);
    }

    #[test]
    fn trust_policy_without_a_condition_is_a_confused_deputy() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let role = &mut o.roles[0];
        role.trust_policy["Statement"][0].as_object_mut().unwrap().remove("Condition");
        let role_name = format!("IAM role {}{RUN}", plan.flow_log.as_ref().unwrap().role_name);
        assert_eq!(findings(&plan, &o, &b, "flow-log"), vec![("MS-ROLE-CONFUSED-DEPUTY".to_string(), role_name)]);
    }

    #[test]
    fn delivery_policy_on_every_resource_is_too_broad() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        for doc in o.roles[0].inline_policies.values_mut() {
            doc["Statement"][0]["Resource"] = serde_json::json!("*");
        }
        let role_name = format!("IAM role {}{RUN}", plan.flow_log.as_ref().unwrap().role_name);
        // One finding per action the flow-log service needs.
        assert_eq!(
            findings(&plan, &o, &b, "flow-log"),
            vec![
                ("MS-ROLE-POLICY-BROAD".to_string(), role_name.clone()),
                ("MS-ROLE-POLICY-BROAD".to_string(), role_name)
            ]
        );
    }

    #[test]
    fn missing_role_policy_and_log_group() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.roles[0].inline_policies.clear();
        o.log_groups.clear();
        let fl = plan.flow_log.as_ref().unwrap();
        let role = format!("IAM role {}{RUN}", fl.role_name);
        let group = format!("log group {}{RUN}", fl.log_group);
        assert_eq!(
            findings(&plan, &o, &b, "flow-log"),
            vec![
                ("MS-ROLE-POLICY-MISSING".to_string(), role.clone()),
                ("MS-ROLE-POLICY-MISSING".to_string(), role),
                ("MS-FLOW-LOG-GROUP-MISSING".to_string(), group),
            ]
        );
        o.roles.clear();
        let got = findings(&plan, &o, &b, "flow-log");
        assert_eq!(got[0], ("MS-ROLE-MISSING".to_string(), format!("IAM role {}{RUN}", fl.role_name)));
    }

    #[test]
    fn alarm_with_the_wrong_threshold() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.alarms[0].threshold = Some(plan.alarm.as_ref().unwrap().threshold + 1.0);
        let name = format!("alarm {}{RUN}", plan.alarm.as_ref().unwrap().name);
        assert_eq!(findings(&plan, &o, &b, "alarm"), vec![("MS-ALARM-CONFIG".to_string(), name)]);
    }

    #[test]
    fn metric_filter_with_another_pattern_or_metric() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let f = &mut o.log_groups[0].metric_filters[0];
        f.pattern = "[..., action=\"ACCEPT\", log_status]".into();
        f.metrics[0].namespace = "AWS/VPC".into();
        let name = format!("metric filter {}{RUN}", plan.alarm.as_ref().unwrap().metric_filter_name);
        assert_eq!(
            findings(&plan, &o, &b, "alarm"),
            vec![("MS-ALARM-FILTER-PATTERN".to_string(), name.clone()), ("MS-ALARM-FILTER-METRIC".to_string(), name)]
        );
        o.log_groups[0].metric_filters.clear();
        o.alarms.clear();
        let got: Vec<String> = findings(&plan, &o, &b, "alarm").into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec!["MS-ALARM-FILTER-MISSING", "MS-ALARM-MISSING"]);
    }
}
