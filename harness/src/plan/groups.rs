//! Security groups, their rules and the groups those rules reference, and the workloads
//! that are members of them.

use std::collections::BTreeSet;

use ipnet::IpNet;
use toml::Spanned;

use super::{Checker, Names, PlannedSecurityGroup, PlannedWorkload, join};
use crate::model::{Direction, Peer, SgRule};
use crate::spec::{SecurityGroupSpec, SgRuleSpec, Spec};

/// Security groups: names unique, members placed, rules valid, references resolve.
pub(super) fn security_groups(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) -> Vec<PlannedSecurityGroup> {
    let mut security_groups = Vec::new();
    let mut seen_group = BTreeSet::new();
    for g in &spec.security_groups {
        let sg = g.get_ref();
        let field = format!("security_groups[{}]", sg.name);
        if !seen_group.insert(sg.name.as_str()) {
            c.problem(
                Some(g.span().start),
                format!("{field}.name"),
                format!("{:?}", sg.name),
                "duplicate security group name",
            );
        }
        let member_zones = member_zones(c, spec, g, &field, names);
        let mut rules = Vec::new();
        for (direction, list) in [(Direction::Ingress, &sg.ingress), (Direction::Egress, &sg.egress)] {
            for (i, r) in list.iter().enumerate() {
                let field = format!("{field}.{direction}[{i}]");
                if let Some(rule) = sg_rule(c, r, &field, direction, &names.groups) {
                    rules.push(rule);
                }
            }
        }
        security_groups.push(PlannedSecurityGroup {
            name: sg.name.clone(),
            group_name: sg.group_name.clone(),
            description: sg.description.clone(),
            zones: member_zones,
            tags: sg.tags.clone(),
            rules,
            keep_default_egress: sg.keep_default_egress,
        });
    }
    security_groups
}

/// The zones whose workloads are the group's members. A group's members run either in
/// zones it names or in workloads that list it; a zone with workloads is left to them.
fn member_zones(
    c: &mut Checker<'_>,
    spec: &Spec,
    g: &Spanned<SecurityGroupSpec>,
    field: &str,
    names: &Names<'_>,
) -> Vec<String> {
    let sg = g.get_ref();
    let member_zones: Vec<String> = match (&sg.zone, sg.zones.is_empty()) {
        (Some(z), true) => vec![z.clone()],
        (None, _) => sg.zones.clone(),
        (Some(z), false) => {
            c.problem(Some(g.span().start), format!("{field}.zone"), format!("{z:?}"), "give zone or zones, not both");
            sg.zones.clone()
        }
    };
    let in_workload = spec.workloads.iter().any(|w| w.get_ref().groups.contains(&sg.name));
    if member_zones.is_empty() && !in_workload {
        c.problem(
            Some(g.span().start),
            format!("{field}.zone"),
            "(missing)",
            "say where the group's members run: zone, zones, or a [[workloads]] entry that lists it",
        );
    }
    for z in &member_zones {
        if c.known(Some(g.span().start), format!("{field}.zone"), z, &names.zones, "zone")
            && spec.workloads.iter().any(|w| &w.get_ref().zone == z)
        {
            c.problem(
                Some(g.span().start),
                format!("{field}.zone"),
                format!("{z:?}"),
                "that zone has [[workloads]]; list the group in the workload that uses it",
            );
        }
    }
    member_zones
}

fn sg_rule(
    c: &mut Checker<'_>,
    r: &Spanned<SgRuleSpec>,
    field: &str,
    direction: Direction,
    groups: &BTreeSet<&str>,
) -> Option<SgRule> {
    let at = r.span().start;
    let rule = r.get_ref();
    let protocol = c.protocol(at, &format!("{field}.protocol"), &rule.protocol);
    let ports = protocol.and_then(|p| c.ports(at, &format!("{field}.ports"), p, rule.ports.as_ref()));
    let peer = match (&rule.cidr, &rule.group) {
        (Some(cidr), None) => match cidr.parse::<IpNet>() {
            Ok(net) => Some(Peer::Cidr(net)),
            Err(_) => {
                c.problem(Some(at), format!("{field}.cidr"), format!("{cidr:?}"), "not a CIDR block");
                None
            }
        },
        (None, Some(g)) if groups.contains(g.as_str()) => Some(Peer::Group(g.clone())),
        (None, Some(g)) => {
            c.problem(
                Some(at),
                format!("{field}.group"),
                format!("{g:?}"),
                format!("no security group of that name; known: {}", join(groups)),
            );
            None
        }
        (Some(_), Some(_)) => {
            c.problem(Some(at), field.to_string(), "cidr and group", "give exactly one of cidr and group");
            None
        }
        (None, None) => {
            c.problem(Some(at), field.to_string(), "(no peer)", "give exactly one of cidr and group");
            None
        }
    };
    Some(SgRule { direction, protocol: protocol?, ports: ports?, peer: peer? })
}

/// Workloads: in a known zone, members of known groups.
pub(super) fn workloads(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) -> Vec<PlannedWorkload> {
    let mut workloads = Vec::new();
    for w in &spec.workloads {
        let (at, wl) = (w.span().start, w.get_ref());
        let field = format!("workloads[{}]", wl.name);
        c.known(Some(at), format!("{field}.zone"), &wl.zone, &names.zones, "zone");
        for g in &wl.groups {
            c.known(Some(at), format!("{field}.groups"), g, &names.groups, "security group");
        }
        workloads.push(PlannedWorkload { name: wl.name.clone(), zone: wl.zone.clone(), groups: wl.groups.clone() });
    }
    workloads
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::{BASE, plan_of};

    #[test]
    fn unknown_group_reference_is_caught() {
        let text = format!(
            "{BASE}[[security_groups]]\nname = \"g\"\ngroup_name = \"g\"\ndescription = \"d\"\nzone = \"a\"\ningress = [{{ protocol = \"tcp\", ports = 22, group = \"nope\" }}]\n"
        );
        let msgs = plan_of(&text).unwrap_err().to_string();
        assert!(msgs.contains("security_groups[g].ingress[0].group = \"nope\""), "{msgs}");
    }
}
