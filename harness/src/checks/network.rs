//! Subnets, their NACL associations, and the NACLs' entries in first-match order.

use super::{Check, CheckResult, list, named, unplanned};
use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::model::{Direction, MAX_USER_RULE_NUMBER, NaclEntry};
use crate::observe::{Observed, ObservedNacl};
use crate::plan::Plan;

/// Each zone's subnet is associated with its zone's NACL, and none stays on the default;
/// no subnet beyond the zones.
pub(super) fn associations(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c = Check::new("associations", "each zone subnet is associated with its zone NACL; no other subnet");
    for zone in &plan.zones {
        let subnet_id = b.zones.get(&zone.name);
        let resource = named("subnet", &zone.name, subnet_id);
        let Some(subnet) = subnet_id.and_then(|id| observed.subnet(id)) else {
            c.finding(
                "MS-ASSOC-SUBNET-MISSING",
                resource,
                format!("a subnet {} for zone {}", zone.cidr, zone.name),
                "no such subnet",
            );
            continue;
        };
        let found = observed.nacl_of_subnet(&subnet.id);
        if zone.on_default_nacl() {
            match found {
                Some(n) if n.is_default => {}
                Some(n) => c.finding(
                    "MS-ASSOC-WRONG-NACL",
                    resource,
                    "on the VPC's default NACL",
                    format!("associated with {}", nacl_label(b, &n.id)),
                ),
                None => c.finding("MS-ASSOC-NONE", resource, "on the VPC's default NACL", "no NACL association"),
            }
            continue;
        }
        let want = b.nacls.get(&zone.nacl);
        match (want, found) {
            (_, Some(n)) if n.is_default => c.finding(
                "MS-ASSOC-DEFAULT-NACL",
                resource,
                format!("associated with {}", named("NACL", &zone.nacl, want)),
                format!("still on the default NACL {}", n.id),
            ),
            (Some(w), Some(n)) if &n.id != w => c.finding(
                "MS-ASSOC-WRONG-NACL",
                resource,
                format!("associated with {}", named("NACL", &zone.nacl, want)),
                format!("associated with {}", nacl_label(b, &n.id)),
            ),
            (None, _) => {
                c.finding("MS-ASSOC-NACL-MISSING", resource, format!("NACL {} exists", zone.nacl), "no such NACL")
            }
            (Some(_), None) => c.finding(
                "MS-ASSOC-NONE",
                resource,
                format!("associated with {}", named("NACL", &zone.nacl, want)),
                "no NACL association",
            ),
            _ => {}
        }
    }
    for s in observed.subnets.iter().filter(|s| b.zone_of_subnet(&s.id).is_none()) {
        let nacl = observed.nacl_of_subnet(&s.id).map_or("no NACL".to_string(), |n| nacl_label(b, &n.id));
        c.finding(
            "MS-SUBNET-UNPLANNED",
            format!("subnet {} ({})", s.cidr, s.id),
            "only the zones' subnets in the VPC",
            format!("a subnet the spec has no zone for, on {nacl}"),
        );
    }
    c.done()
}

pub(super) fn nacl_label(b: &Bindings, id: &str) -> String {
    match b.nacls.iter().find(|(_, v)| *v == id) {
        Some((name, _)) => format!("NACL {name} ({id})"),
        None => format!("NACL {id}"),
    }
}

/// Entries per NACL and direction are exactly the plan's, in first-match order.
pub(super) fn nacl_rules(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let mut c = Check::new(
        "nacl-rules",
        "NACL entries are the spec's, in ascending rule-number (first-match) order; no other NACL",
    );
    for nacl in &plan.nacls {
        let id = b.nacls.get(&nacl.name);
        let resource = named("NACL", &nacl.name, id);
        let Some(found) = id.and_then(|id| observed.nacl(id)) else {
            c.finding("MS-NACL-MISSING", resource, "the NACL exists", "no such NACL");
            continue;
        };
        for direction in Direction::BOTH {
            let want: Vec<&NaclEntry> = nacl.entries(direction).collect();
            compare_entries(&mut c, &resource, direction, &want, found, caps);
        }
    }
    let planned: Vec<&String> = b.nacls.values().collect();
    for n in observed.nacls.iter().filter(|n| !n.is_default && !planned.contains(&&n.id)) {
        c.finding(
            "MS-NACL-UNPLANNED",
            unplanned("NACL", &n.id, &n.tags),
            "only the spec's NACLs and the VPC's default",
            format!(
                "a NACL the spec does not have, associated with {}",
                list(n.associations.iter().map(|a| a.subnet_id.as_str()))
            ),
        );
    }
    c.done()
}

pub(super) fn compare_entries(
    c: &mut Check,
    resource: &str,
    direction: Direction,
    want: &[&NaclEntry],
    found: &ObservedNacl,
    caps: &Capabilities,
) {
    let got: Vec<&NaclEntry> =
        found.entries.iter().filter(|e| e.direction == direction && !e.is_default_deny()).collect();
    let at = |n: i32| format!("{resource} {direction} rule #{n}");
    for w in want {
        match got.iter().find(|g| g.rule_number == w.rule_number) {
            None => {
                c.finding("MS-NACL-ENTRY-MISSING", at(w.rule_number), w.to_string(), "no entry with that rule number")
            }
            Some(g) if *g != *w => c.finding("MS-NACL-ENTRY-CHANGED", at(w.rule_number), w.to_string(), g.to_string()),
            Some(_) => {}
        }
    }
    for g in &got {
        if !want.iter().any(|w| w.rule_number == g.rule_number) {
            c.finding("MS-NACL-ENTRY-UNEXPECTED", at(g.rule_number), "no such entry", g.to_string());
            if g.rule_number > MAX_USER_RULE_NUMBER {
                c.finding(
                    "MS-NACL-RULE-NUMBER-RANGE",
                    at(g.rule_number),
                    format!("rule number in 1..={MAX_USER_RULE_NUMBER}"),
                    g.rule_number.to_string(),
                );
            }
        }
    }
    // First-match order: an entry that is not in the plan but comes before a planned one
    // decides first for the packets they share. Name both, since that is what changes
    // behaviour even when every planned entry is present.
    for g in got.iter().filter(|g| !want.iter().any(|w| w.rule_number == g.rule_number)) {
        if let Some(w) = want.iter().find(|w| w.rule_number > g.rule_number && overlaps(g, w) && w.action != g.action) {
            c.finding(
                "MS-NACL-SHADOWED",
                at(w.rule_number),
                format!("{w} decides first for its traffic"),
                format!("rule #{} ({}) matches first and {}s it", g.rule_number, g, g.action),
            );
        }
    }
    let has_default = found.entries.iter().any(|e| e.direction == direction && e.is_default_deny());
    if !has_default {
        if caps.has(Divergence::NaclWithoutDefaultDeny) {
            c.divergence(Divergence::NaclWithoutDefaultDeny);
        } else {
            c.finding(
                "MS-NACL-NO-DEFAULT-DENY",
                format!("{resource} {direction}"),
                "the * (32767) deny entry",
                "absent",
            );
        }
    }
}

/// Whether two entries can match the same packet (protocol, ports, CIDR).
pub(super) fn overlaps(a: &NaclEntry, b: &NaclEntry) -> bool {
    use crate::model::Protocol;
    let proto = a.protocol == b.protocol || a.protocol == Protocol::All || b.protocol == Protocol::All;
    let ports = match (a.ports, b.ports) {
        (Some(x), Some(y)) => x.from <= y.to && y.from <= x.to,
        _ => true,
    };
    let cidr = a.cidr.contains(&b.cidr) || b.cidr.contains(&a.cidr);
    proto && ports && cidr
}

#[cfg(test)]
mod tests {

    use crate::checks::fixtures::*;

    #[test]
    fn on_aws_a_missing_default_deny_is_a_finding_per_nacl_and_direction() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        for n in o.nacls.iter_mut().filter(|n| !n.is_default) {
            n.entries.retain(|e| !e.is_default_deny());
        }
        let got = findings(&plan, &o, &b, "nacl-rules");
        let mut want = Vec::new();
        for n in &plan.nacls {
            for d in Direction::BOTH {
                want.push(("MS-NACL-NO-DEFAULT-DENY".to_string(), format!("NACL {0} (acl-{0}) {d}", n.name)));
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn on_an_emulator_without_default_deny_the_nacl_check_is_a_divergence_not_a_failure() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        for n in o.nacls.iter_mut().filter(|n| !n.is_default) {
            n.entries.retain(|e| !e.is_default_deny());
        }
        let results = run_checks(&plan, &o, &b, &emulator_caps());
        assert!(results.iter().all(|c| c.status != Status::Fail), "{results:?}");
        let c = result(&results, "nacl-rules");
        assert_eq!(c.status, Status::Divergence);
        assert_eq!(c.divergences, vec!["nacl-without-default-deny".to_string()]);

        // A real finding on the same target still fails, and the divergence stays listed.
        let web = nacl(&mut o, "acl-web");
        web.entries.retain(|e| !(e.direction == Direction::Ingress && e.rule_number == 130));
        let results = run_checks(&plan, &o, &b, &emulator_caps());
        let c = result(&results, "nacl-rules");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.divergences, vec!["nacl-without-default-deny".to_string()]);
        assert_eq!(c.findings.len(), 1, "{c:?}");
        assert_eq!(c.findings[0].id, "MS-NACL-ENTRY-MISSING");
        assert_eq!(c.findings[0].resource, "NACL web (acl-web) ingress rule #130");
    }

    #[test]
    fn web_subnet_back_on_the_default_nacl() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        nacl(&mut o, "acl-web").associations.clear();
        nacl(&mut o, "acl-default")
            .associations
            .push(NaclAssociation { id: "aclassoc-x".into(), subnet_id: "subnet-web".into() });
        assert_eq!(
            findings(&plan, &o, &b, "associations"),
            pairs(&[("MS-ASSOC-DEFAULT-NACL", "subnet web (subnet-web)")])
        );
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v1-nacl-associations"),
            pairs(&[("MS-SOURCE-NACL-ASSOCIATIONS", "NACL web (acl-web)")])
        );
    }

    #[test]
    fn a_subnet_on_another_zones_nacl_or_missing_is_named() {
        let plan = recipe();
        let (mut o, mut b) = deployed(&plan);
        // web's subnet moved to the app NACL; the dmz subnet is gone.
        nacl(&mut o, "acl-web").associations.clear();
        nacl(&mut o, "acl-app")
            .associations
            .push(NaclAssociation { id: "aclassoc-x".into(), subnet_id: "subnet-web".into() });
        o.subnets.retain(|s| s.id != "subnet-dmz");
        assert_eq!(
            findings(&plan, &o, &b, "associations"),
            pairs(&[
                ("MS-ASSOC-SUBNET-MISSING", "subnet dmz (subnet-dmz)"),
                ("MS-ASSOC-WRONG-NACL", "subnet web (subnet-web)"),
            ])
        );
        // An unbound zone and an unbound NACL.
        b.zones.remove("dmz");
        b.nacls.remove("app");
        let got = findings(&plan, &o, &b, "associations");
        assert!(got.contains(&("MS-ASSOC-SUBNET-MISSING".into(), "subnet dmz (not found)".into())), "{got:?}");
        assert!(got.contains(&("MS-ASSOC-NACL-MISSING".into(), "subnet app (subnet-app)".into())), "{got:?}");
    }

    #[test]
    fn a_deleted_nacl_entry_is_missing() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        nacl(&mut o, "acl-app").entries.retain(|e| !(e.direction == Direction::Egress && e.rule_number == 110));
        assert_eq!(
            findings(&plan, &o, &b, "nacl-rules"),
            pairs(&[("MS-NACL-ENTRY-MISSING", "NACL app (acl-app) egress rule #110")])
        );
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v5-nacl-order"),
            pairs(&[("MS-SOURCE-NACL-ORDER", "NACL app (acl-app)")])
        );
    }

    #[test]
    fn a_changed_entry_and_an_out_of_range_rule_number() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let db = nacl(&mut o, "acl-database");
        let e = db.entries.iter_mut().find(|e| e.direction == Direction::Ingress && e.rule_number == 100).unwrap();
        e.ports = tcp(3307);
        let mut big = e.clone();
        big.rule_number = 40000;
        db.entries.push(big);
        let got = findings(&plan, &o, &b, "nacl-rules");
        assert_eq!(
            got,
            pairs(&[
                ("MS-NACL-ENTRY-CHANGED", "NACL database (acl-database) ingress rule #100"),
                ("MS-NACL-ENTRY-UNEXPECTED", "NACL database (acl-database) ingress rule #40000"),
                ("MS-NACL-RULE-NUMBER-RANGE", "NACL database (acl-database) ingress rule #40000"),
            ])
        );
    }

    #[test]
    fn a_deny_at_90_shadows_the_planned_allow_at_100() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let web = nacl(&mut o, "acl-web");
        let allow = web.entries.iter().find(|e| e.direction == Direction::Ingress && e.rule_number == 100).unwrap();
        assert_eq!(allow.action, RuleAction::Allow);
        let deny = NaclEntry { rule_number: 90, action: RuleAction::Deny, ..allow.clone() };
        web.entries.insert(0, deny);
        let results = run_checks(&plan, &o, &b, &Capabilities::aws());
        let c = result(&results, "nacl-rules");
        let got: Vec<_> = c.findings.iter().map(|f| (f.id.clone(), f.resource.clone())).collect();
        assert_eq!(
            got,
            pairs(&[
                ("MS-NACL-ENTRY-UNEXPECTED", "NACL web (acl-web) ingress rule #90"),
                ("MS-NACL-SHADOWED", "NACL web (acl-web) ingress rule #100"),
            ])
        );
        // Both rule numbers are named.
        assert!(c.findings[1].found.contains("rule #90"), "{:?}", c.findings[1]);
    }
}
