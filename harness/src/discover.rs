//! Discovery: bind a plan's logical names to a deployment that microseg did not build.
//!
//! The acceptance gate has no ledger. Zones are found by subnet CIDR (or by a `Zone` tag
//! when the CIDRs differ and the caller maps them); a zone's NACL is the one its subnet is
//! associated with unless that is the default NACL, in which case the NACL is looked up
//! by its `Zone` or `Name` tag so that the association check can report the stray
//! subnet. Groups are found by group name (exact, or with a suffix such as a run id or a
//! stack name), then by `Zone` tag. The flow log is the VPC's; role, log group, metric
//! filter and alarm follow from it.

use std::collections::BTreeMap;

use crate::bindings::Bindings;
use crate::observe::{Observed, ObservedNacl, ObservedSecurityGroup};
use crate::plan::Plan;

/// How zones are matched to subnets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneMapping {
    /// Zone name → value of the subnet's `Zone` tag, used instead of the CIDR.
    pub by_tag: BTreeMap<String, String>,
}

/// Binds the plan's names to the observed deployment; what cannot be found stays
/// unbound, and the checks report it as missing.
pub fn discover(plan: &Plan, observed: &Observed, mapping: &ZoneMapping) -> Bindings {
    let mut b = Bindings { vpc_id: observed.vpc.as_ref().map(|v| v.id.clone()), ..Default::default() };

    for zone in &plan.zones {
        let subnet = match mapping.by_tag.get(&zone.name) {
            Some(tag) => observed.subnets.iter().find(|s| s.tags.get("Zone") == Some(tag)),
            None => observed.subnets.iter().find(|s| s.cidr == ipnet::IpNet::V4(zone.cidr)),
        };
        if let Some(s) = subnet {
            b.zones.insert(zone.name.clone(), s.id.clone());
        }
    }

    for nacl in &plan.nacls {
        let zones: Vec<&str> = plan.zones.iter().filter(|z| z.nacl == nacl.name).map(|z| z.name.as_str()).collect();
        let by_association = zones
            .iter()
            .filter_map(|z| b.zones.get(*z))
            .filter_map(|subnet| observed.nacl_of_subnet(subnet))
            .find(|n| !n.is_default);
        let found = by_association.or_else(|| find_by_tags(&observed.nacls, &nacl.name, &nacl.tag_name, &nacl.tags));
        if let Some(n) = found {
            b.nacls.insert(nacl.name.clone(), n.id.clone());
        }
    }

    for nat in &plan.nat_gateways {
        let in_subnet = b.zones.get(&nat.zone).and_then(|s| observed.nat_gateways.iter().find(|n| &n.subnet_id == s));
        let by_tag = || observed.nat_gateways.iter().find(|n| n.tags.get("Name").is_some_and(|t| t == &nat.tag_name));
        if let Some(n) = in_subnet.or_else(by_tag) {
            b.nat_gateways.insert(nat.name.clone(), n.id.clone());
            if let Some(eip) = n.allocation_ids.first() {
                b.elastic_ips.insert(nat.name.clone(), eip.clone());
            }
        }
    }

    for group in &plan.security_groups {
        let zone = plan.zones_of_group(&group.name).first().copied().unwrap_or_default();
        if let Some(g) = find_group(&observed.security_groups, &group.group_name, zone) {
            b.security_groups.insert(group.name.clone(), g.id.clone());
        }
    }

    for table in &plan.route_tables {
        let by_tag = observed.route_tables.iter().find(|t| t.tags.get("Name").is_some_and(|n| n == &table.tag_name));
        let by_association = table
            .zones
            .iter()
            .filter_map(|z| b.zones.get(z))
            .find_map(|s| observed.route_tables.iter().find(|t| !t.is_main && t.subnet_ids.contains(s)));
        if let Some(t) = by_tag.or(by_association) {
            b.route_tables.insert(table.name.clone(), t.id.clone());
        }
    }

    b.internet_gateway_id = observed.internet_gateways.first().map(|g| g.id.clone());

    if let Some(fl) = observed.flow_logs.first() {
        b.flow_log_id = Some(fl.id.clone());
        b.log_group_name = fl.log_group_name.clone();
        b.role_name = fl.deliver_logs_permission_arn.as_deref().and_then(|a| a.rsplit('/').next()).map(str::to_string);
    }
    if let Some(plan_alarm) = &plan.alarm {
        let filter = observed
            .log_groups
            .iter()
            .filter(|g| Some(&g.name) == b.log_group_name.as_ref())
            .flat_map(|g| &g.metric_filters)
            .find(|f| f.metrics.iter().any(|m| m.namespace == plan_alarm.namespace));
        if let Some(f) = filter {
            b.metric_filter_name = Some(f.name.clone());
            b.metric_name = f.metrics.first().map(|m| m.name.clone());
        }
        let alarm = observed.alarms.iter().find(|a| a.metric_name.is_some() && a.metric_name == b.metric_name);
        b.alarm_name = alarm.map(|a| a.name.clone());
    }
    b
}

fn find_by_tags<'a>(
    nacls: &'a [ObservedNacl],
    name: &str,
    tag_name: &str,
    tags: &BTreeMap<String, String>,
) -> Option<&'a ObservedNacl> {
    let custom = || nacls.iter().filter(|n| !n.is_default);
    custom()
        .find(|n| n.tags.get("Name").is_some_and(|v| v == tag_name))
        .or_else(|| custom().find(|n| tags.get("Zone").is_some_and(|z| n.tags.get("Zone") == Some(z))))
        .or_else(|| custom().find(|n| n.tags.get("Zone").is_some_and(|z| z == name)))
}

fn find_group<'a>(
    groups: &'a [ObservedSecurityGroup],
    group_name: &str,
    zone: &str,
) -> Option<&'a ObservedSecurityGroup> {
    groups
        .iter()
        .find(|g| g.name == group_name)
        // Terraform and CloudFormation often add a prefix or suffix to names.
        .or_else(|| {
            groups
                .iter()
                .find(|g| g.name != "default" && (g.name.starts_with(group_name) || g.name.ends_with(group_name)))
        })
        .or_else(|| groups.iter().find(|g| g.name != "default" && g.tags.get("Zone").is_some_and(|z| z == zone)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{NaclAssociation, ObservedSubnet};
    use crate::spec;

    fn recipe() -> Plan {
        let (s, src) = spec::load("recipe").unwrap();
        Plan::from_spec(&s, &src).unwrap()
    }

    fn subnet(id: &str, cidr: &str, zone: &str) -> ObservedSubnet {
        ObservedSubnet {
            id: id.into(),
            cidr: cidr.parse().unwrap(),
            availability_zone: "us-east-1a".into(),
            map_public_ip_on_launch: false,
            assign_ipv6_on_creation: false,
            tags: [("Zone".to_string(), zone.to_string())].into(),
        }
    }

    fn nacl(id: &str, default: bool, subnets: &[&str], name: &str) -> ObservedNacl {
        ObservedNacl {
            id: id.into(),
            is_default: default,
            entries: vec![],
            associations: subnets
                .iter()
                .map(|s| NaclAssociation { id: format!("aclassoc-{s}"), subnet_id: s.to_string() })
                .collect(),
            tags: [("Name".to_string(), name.to_string())].into(),
        }
    }

    #[test]
    fn zones_bind_by_cidr_and_by_zone_tag_when_cidrs_differ() {
        let plan = recipe();
        let observed = Observed {
            subnets: vec![subnet("subnet-a", "10.0.2.0/24", "web"), subnet("subnet-b", "172.16.9.0/24", "frontend")],
            ..Default::default()
        };
        let by_cidr = discover(&plan, &observed, &ZoneMapping::default());
        assert_eq!(by_cidr.zones.get("web").map(String::as_str), Some("subnet-a"));
        assert_eq!(by_cidr.zones.get("dmz"), None, "no subnet has the DMZ's CIDR");
        let mapping = ZoneMapping { by_tag: [("dmz".to_string(), "frontend".to_string())].into() };
        let by_tag = discover(&plan, &observed, &mapping);
        assert_eq!(by_tag.zones.get("dmz").map(String::as_str), Some("subnet-b"));
    }

    #[test]
    fn a_zone_nacl_is_found_by_tag_when_its_subnet_sits_on_the_default() {
        let plan = recipe();
        let observed = Observed {
            subnets: vec![subnet("subnet-web", "10.0.2.0/24", "web"), subnet("subnet-app", "10.0.3.0/24", "app")],
            nacls: vec![
                nacl("acl-default", true, &["subnet-web"], ""),
                nacl("acl-web", false, &[], "web-nacl"),
                nacl("acl-app", false, &["subnet-app"], "something-else"),
            ],
            ..Default::default()
        };
        let b = discover(&plan, &observed, &ZoneMapping::default());
        assert_eq!(
            b.nacls.get("web").map(String::as_str),
            Some("acl-web"),
            "by Name tag, since the subnet is on the default"
        );
        assert_eq!(b.nacls.get("app").map(String::as_str), Some("acl-app"), "by association");
    }
}
