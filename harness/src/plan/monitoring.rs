//! What watches the VPC once it is built: the flow log to CloudWatch Logs, and the
//! alarm on the metric its filter reads from the log group.

use super::{Checker, PlannedAlarm, PlannedFlowLog};
use crate::spec::Spec;

const TRAFFIC_TYPES: &[&str] = &["ALL", "ACCEPT", "REJECT"];
const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
const COMPARISONS: &[&str] =
    &["GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"];
const LOG_RETENTION_DAYS: &[i32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// The flow log: a traffic type and a retention CloudWatch accepts.
pub(super) fn flow_log(c: &mut Checker<'_>, spec: &Spec) -> Option<PlannedFlowLog> {
    spec.flow_log.as_ref().map(|f| {
        let at = f.span().start;
        let fl = f.get_ref();
        if !TRAFFIC_TYPES.contains(&fl.traffic_type.as_str()) {
            c.problem(
                Some(at),
                "flow_log.traffic_type",
                format!("{:?}", fl.traffic_type),
                "one of ALL, ACCEPT, REJECT",
            );
        }
        if let Some(days) = fl.retention_days
            && !LOG_RETENTION_DAYS.contains(&days)
        {
            c.problem(
                Some(at),
                "flow_log.retention_days",
                days,
                format!("CloudWatch Logs accepts only {LOG_RETENTION_DAYS:?}"),
            );
        }
        PlannedFlowLog {
            traffic_type: fl.traffic_type.clone(),
            log_group: fl.log_group.clone(),
            retention_days: fl.retention_days,
            role_name: fl.role_name.clone(),
            role_policy_name: fl.role_policy_name.clone(),
        }
    })
}

/// The alarm: on a flow log, with a statistic, comparison and period CloudWatch accepts.
pub(super) fn alarm(c: &mut Checker<'_>, spec: &Spec) -> Option<PlannedAlarm> {
    spec.alarm.as_ref().map(|a| {
        let at = a.span().start;
        let al = a.get_ref();
        if spec.flow_log.is_none() {
            c.problem(
                Some(at),
                "alarm",
                "[alarm]",
                "the alarm's metric filter reads the flow-log group; add [flow_log]",
            );
        }
        if !STATISTICS.contains(&al.statistic.as_str()) {
            c.problem(Some(at), "alarm.statistic", format!("{:?}", al.statistic), format!("one of {STATISTICS:?}"));
        }
        if !COMPARISONS.contains(&al.comparison.as_str()) {
            c.problem(Some(at), "alarm.comparison", format!("{:?}", al.comparison), format!("one of {COMPARISONS:?}"));
        }
        if al.period < 10
            || (al.period >= 60 && al.period % 60 != 0)
            || (al.period < 60 && ![10, 20, 30].contains(&al.period))
        {
            c.problem(Some(at), "alarm.period", al.period, "10, 20, 30 or a multiple of 60 seconds");
        }
        if al.evaluation_periods < 1 {
            c.problem(Some(at), "alarm.evaluation_periods", al.evaluation_periods, "at least 1");
        }
        PlannedAlarm {
            name: al.name.clone(),
            description: al.description.clone(),
            metric_filter_name: al.metric_filter_name.clone(),
            filter_pattern: al.filter_pattern.clone(),
            metric_value: al.metric_value.clone(),
            namespace: al.namespace.clone(),
            metric_name: al.metric_name.clone(),
            statistic: al.statistic.clone(),
            period: al.period,
            evaluation_periods: al.evaluation_periods,
            threshold: al.threshold,
            comparison: al.comparison.clone(),
        }
    })
}
