//! Security groups: each group's rules with references resolved to logical names, and
//! the rule that stands in for a missing reference named as such.

use std::collections::BTreeSet;

use super::{Check, CheckResult, list, named};
use crate::bindings::Bindings;
use crate::model::{Direction, Peer, SgRule};
use crate::observe::Observed;
use crate::plan::Plan;

/// Each group's rules, with references resolved to logical names, are exactly the spec's.
pub(super) fn security_groups(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c = Check::new(
        "security-groups",
        "security-group rules are the spec's; references point at the right groups; no other group",
    );
    for group in &plan.security_groups {
        let id = b.security_groups.get(&group.name);
        let resource = named("security group", &group.name, id);
        let Some(found) = id.and_then(|id| observed.security_group(id)) else {
            c.finding("MS-SG-MISSING", resource, format!("group {} exists", group.group_name), "no such group");
            continue;
        };
        let want: BTreeSet<SgRule> = group.expected_rules().into_iter().collect();
        let got: BTreeSet<SgRule> =
            found.rules.iter().map(|r| SgRule { peer: b.resolve_peer(&r.peer), ..r.clone() }).collect();
        compare_rules(&mut c, &resource, &want, &got);
    }
    // The default group is AWS's (the baseline check judges its rules).
    let planned: Vec<&String> = b.security_groups.values().collect();
    for g in observed
        .security_groups
        .iter()
        .filter(|g| g.name != crate::reach::DEFAULT_GROUP_NAME && !planned.contains(&&g.id))
    {
        c.finding(
            "MS-SG-UNPLANNED",
            format!("security group {} ({})", g.name, g.id),
            "only the spec's groups and the VPC's default",
            format!("a group the spec does not have, with rules: {}", list(g.rules.iter())),
        );
    }
    c.done()
}

pub(super) fn compare_rules(c: &mut Check, resource: &str, want: &BTreeSet<SgRule>, got: &BTreeSet<SgRule>) {
    let mut extras: Vec<&SgRule> = got.difference(want).collect();
    for missing in want.difference(got) {
        // A missing group reference and an extra rule for the same service are one change:
        // something stands in for the reference. Each extra stands in for one reference at
        // most, so a second rule on that service (0.0.0.0/0 beside the stand-in) is still
        // reported below.
        match take_stand_in(&mut extras, missing) {
            Some(stand_in) => stand_in_finding(c, resource, missing, stand_in),
            None => c.finding("MS-SG-RULE-MISSING", resource, missing.to_string(), "no such rule"),
        }
    }
    for extra in extras {
        let id = match (&extra.peer, extra.direction) {
            (Peer::GroupId(_), _) => "MS-SG-UNKNOWN-REFERENCE",
            (_, Direction::Egress) => "MS-SG-EGRESS-UNEXPECTED",
            (Peer::Cidr(c), _) if c.prefix_len() == 0 => "MS-SG-OPEN-TO-WORLD",
            _ => "MS-SG-RULE-UNEXPECTED",
        };
        c.finding(id, resource, "no such rule", extra.to_string());
    }
}

/// Removes from `extras` the rule that most plausibly replaced a missing group
/// reference: same direction, protocol and ports; another group before an unbound group
/// id before a CIDR, and the whole internet last.
pub(super) fn take_stand_in<'a>(extras: &mut Vec<&'a SgRule>, missing: &SgRule) -> Option<&'a SgRule> {
    if !matches!(missing.peer, Peer::Group(_)) {
        return None;
    }
    let rank = |peer: &Peer| match peer {
        Peer::Group(_) => Some(0),
        Peer::GroupId(_) => Some(1),
        Peer::Cidr(c) if c.prefix_len() > 0 => Some(2),
        Peer::Cidr(_) => Some(3),
        Peer::PrefixList(_) => None,
    };
    let same_service =
        |r: &SgRule| r.direction == missing.direction && r.protocol == missing.protocol && r.ports == missing.ports;
    let (at, _) = extras
        .iter()
        .enumerate()
        .filter(|(_, r)| same_service(r))
        .filter_map(|(i, r)| rank(&r.peer).map(|k| (i, k)))
        .min_by_key(|&(_, k)| k)?;
    Some(extras.remove(at))
}

pub(super) fn stand_in_finding(c: &mut Check, resource: &str, missing: &SgRule, stand_in: &SgRule) {
    let Peer::Group(wanted) = &missing.peer else { return };
    let service = format!("{}{}", missing.protocol, missing.ports.map(|p| format!("/{p}")).unwrap_or_default());
    match &stand_in.peer {
        Peer::Cidr(cidr) => {
            c.finding(
                "MS-SG-CIDR-FOR-REFERENCE",
                resource,
                missing.to_string(),
                format!("{service} with CIDR {cidr} instead of a reference to group {wanted}"),
            );
            // The stand-in opens the service to everyone: say so on its own, as for any rule.
            if cidr.prefix_len() == 0 && stand_in.direction == Direction::Ingress {
                c.finding("MS-SG-OPEN-TO-WORLD", resource, "no such rule", stand_in.to_string());
            }
        }
        Peer::Group(other) => c.finding(
            "MS-SG-WRONG-REFERENCE",
            resource,
            missing.to_string(),
            format!("{service} references group {other} instead of {wanted}"),
        ),
        Peer::GroupId(id) => c.finding(
            "MS-SG-UNKNOWN-REFERENCE",
            resource,
            missing.to_string(),
            format!("{service} references group id {id}, which is bound to no group of the spec, instead of {wanted}"),
        ),
        // Never chosen as a stand-in (`take_stand_in`); reported as an extra rule instead.
        Peer::PrefixList(_) => {}
    }
}

#[cfg(test)]
mod tests {

    use crate::checks::fixtures::*;

    #[test]
    fn a_cidr_standing_in_for_a_group_reference() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let old = sg_rule(Direction::Ingress, 80, Peer::GroupId("sg-dmz".into()));
        replace_rule(&mut o, "sg-web", &old, sg_rule(Direction::Ingress, 80, cidr("10.0.1.0/24")));
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-CIDR-FOR-REFERENCE", "security group web (sg-web)")])
        );
    }

    #[test]
    fn a_reference_to_the_wrong_group() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let old = sg_rule(Direction::Ingress, 22, Peer::GroupId("sg-management".into()));
        replace_rule(&mut o, "sg-web", &old, sg_rule(Direction::Ingress, 22, Peer::GroupId("sg-app".into())));
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-WRONG-REFERENCE", "security group web (sg-web)")])
        );
        // The recipe's step 2 no longer sees the management reference either.
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v2-sg-references"),
            pairs(&[("MS-SOURCE-GROUP-REFERENCE", "security group web (sg-web)")])
        );
    }

    #[test]
    fn an_extra_egress_rule() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        group(&mut o, "sg-web").rules.push(sg_rule(Direction::Egress, 443, cidr("0.0.0.0/0")));
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-EGRESS-UNEXPECTED", "security group web (sg-web)")])
        );
    }

    #[test]
    fn ssh_open_to_the_world() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        group(&mut o, "sg-database").rules.push(sg_rule(Direction::Ingress, 22, cidr("0.0.0.0/0")));
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-OPEN-TO-WORLD", "security group database (sg-database)")])
        );
    }

    #[test]
    fn a_world_open_rule_beside_a_cidr_stand_in_is_not_hidden() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let old = sg_rule(Direction::Ingress, 22, Peer::GroupId("sg-management".into()));
        replace_rule(&mut o, "sg-web", &old, sg_rule(Direction::Ingress, 22, cidr("10.0.5.0/24")));
        group(&mut o, "sg-web").rules.push(sg_rule(Direction::Ingress, 22, cidr("0.0.0.0/0")));
        let web = "security group web (sg-web)";
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-CIDR-FOR-REFERENCE", web), ("MS-SG-OPEN-TO-WORLD", web)])
        );
    }

    #[test]
    fn the_world_standing_in_for_a_reference_is_also_open_to_the_world() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let old = sg_rule(Direction::Ingress, 80, Peer::GroupId("sg-dmz".into()));
        replace_rule(&mut o, "sg-web", &old, sg_rule(Direction::Ingress, 80, cidr("0.0.0.0/0")));
        let web = "security group web (sg-web)";
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[("MS-SG-CIDR-FOR-REFERENCE", web), ("MS-SG-OPEN-TO-WORLD", web)])
        );
    }

    #[test]
    fn a_reference_to_a_group_bound_to_no_logical_name() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        // In place of a planned reference, and as an extra rule.
        let old = sg_rule(Direction::Ingress, 22, Peer::GroupId("sg-management".into()));
        replace_rule(&mut o, "sg-web", &old, sg_rule(Direction::Ingress, 22, Peer::GroupId("sg-stranger".into())));
        group(&mut o, "sg-app").rules.push(sg_rule(Direction::Ingress, 9000, Peer::GroupId("sg-stranger".into())));
        let got = findings(&plan, &o, &b, "security-groups");
        assert_eq!(
            got,
            pairs(&[
                ("MS-SG-UNKNOWN-REFERENCE", "security group web (sg-web)"),
                ("MS-SG-UNKNOWN-REFERENCE", "security group app (sg-app)"),
            ])
        );
        let results = run_checks(&plan, &o, &b, &Capabilities::aws());
        let web = &result(&results, "security-groups").findings[0];
        assert!(web.found.contains("sg-stranger"), "{web:?}");
    }

    #[test]
    fn a_missing_group_and_a_missing_rule() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        o.security_groups.retain(|g| g.id != "sg-dmz");
        // The management group loses its only ingress rule.
        group(&mut o, "sg-management").rules.retain(|r| r.direction == Direction::Egress);
        assert_eq!(
            findings(&plan, &o, &b, "security-groups"),
            pairs(&[
                ("MS-SG-MISSING", "security group dmz (sg-dmz)"),
                ("MS-SG-RULE-MISSING", "security group management (sg-management)"),
            ])
        );
    }
}
