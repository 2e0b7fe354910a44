//! Intent and lint: the reachability the deployment gives, compared with the flows the
//! spec intends, and the NACL entries and group rules that decide nothing.

use super::{Check, CheckResult, list};
use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::reach::Reachability;
use microseg_reach::lint::LintKind;
use microseg_reach::{PortSet, ProtocolClass};

/// The deployment's reachability, on AWS semantics, as far as the target lets it be
/// decided; and the divergences that left part of it undecided.
///
/// - Where the target echoes a NAT gateway's missing connectivity type (`None`, a value
///   AWS never reports), the gateway is taken as AWS's default, public.
/// - Where the target creates a VPC's default group without AWS's ingress-from-itself
///   rule, a default group still exactly as the emulator made it (all egress, nothing
///   else) is taken as AWS would have made it. The rule matters only between two
///   endpoints that both rely on the default group; only then is it undecided.
///
/// Either way the intent check says it could not decide (`divergence`) instead of
/// failing the flows or passing them silently.
pub(super) fn reachability(
    plan: &Plan,
    observed: &Observed,
    bindings: &Bindings,
    caps: &Capabilities,
) -> (crate::reach::Reachability, Vec<Divergence>) {
    let mut assumed = std::borrow::Cow::Borrowed(observed);
    let mut undecided = Vec::new();
    let echoed = |n: &crate::observe::ObservedNatGateway| !matches!(n.connectivity.as_str(), "public" | "private");
    if caps.has(Divergence::NatConnectivityTypeEchoed) && observed.nat_gateways.iter().any(echoed) {
        for n in assumed.to_mut().nat_gateways.iter_mut().filter(|n| echoed(n)) {
            n.connectivity = "public".into();
        }
        undecided.push(Divergence::NatConnectivityTypeEchoed);
    }
    if caps.has(Divergence::DefaultSecurityGroupNoSelfIngress)
        && let Some(g) = crate::reach::default_group(observed)
        && crate::reach::default_group_members(plan).len() >= 2
    {
        if g.rules == [crate::model::default_sg_egress()] {
            let id = g.id.clone();
            let g = assumed.to_mut().security_groups.iter_mut().find(|x| x.id == id).expect("found above");
            g.rules.insert(0, crate::reach::default_sg_self_ingress(&id));
        }
        undecided.push(Divergence::DefaultSecurityGroupNoSelfIngress);
    }
    (crate::reach::analyse(plan, &assumed, bindings), undecided)
}

/// The intended flows, evaluated through NACLs, groups and routes (`reach`): each must
/// pass, except those the spec records as blocked by the design, which must stay blocked.
/// Then the other way round: traffic that passes though no intent asks for it is a
/// finding, unless the spec records the design as letting exactly that through.
pub(super) fn intent(plan: &Plan, r: &Reachability) -> CheckResult {
    let c = Check::new("intent", "exactly the intended flows pass NACLs (both ways), security groups and routes");
    if plan.intent.is_empty() {
        return c.skipped("the scenario states no intended flows");
    }
    let mut c = c;
    let mut expected_blocked = 0;
    for v in &r.intents {
        let f = &v.flow;
        let resource = format!(
            "flow {} → {} {}{}",
            f.from,
            f.to,
            f.protocol,
            f.ports.map(|p| format!("/{p}")).unwrap_or_default()
        );
        match (&f.blocked_by_design, v.allowed) {
            (None, false) => c.finding("MS-INTENT-BLOCKED", resource, "allowed", v.blocked_by.join("; ")),
            (Some(why), true) => c.finding(
                "MS-INTENT-UNEXPECTEDLY-ALLOWED",
                resource,
                format!("blocked, as the design does ({why})"),
                "allowed: the deployment does not enforce the design's rules",
            ),
            (Some(_), false) => expected_blocked += 1,
            (None, true) => {}
        }
    }

    // What the design accepts, per (from, to, class); `None` protocol covers every class.
    let accepted = |from: &str, to: &str, class: ProtocolClass| -> PortSet {
        plan.allowed_by_design
            .iter()
            .filter(|o| o.from.to_string() == from && o.to.to_string() == to && class.matched_by(o.protocol))
            .fold(PortSet::empty(), |acc, o| {
                let ports = if class.has_ports() && o.protocol.has_ports() {
                    PortSet::from_ranges(o.ports.iter().copied())
                } else {
                    PortSet::full()
                };
                acc.union(&ports)
            })
    };
    let mut expected_open = 0;
    for u in &r.unintended {
        let class = u.service.protocol;
        let unexpected = u.service.ports.subtract(&accepted(&u.from, &u.to, class));
        if unexpected.is_empty() {
            expected_open += 1;
            continue;
        }
        let what = if class.has_ports() { format!("{class}/{unexpected}") } else { class.to_string() };
        c.finding(
            "MS-REACH-UNINTENDED",
            format!("flow {} → {} {what}", u.from, u.to),
            "denied: no intended flow covers it",
            format!("allowed by {}", u.allowed_by.join("; ")),
        );
    }
    for o in &plan.allowed_by_design {
        let (from, to) = (o.from.to_string(), o.to.to_string());
        let class = ProtocolClass::of(o.protocol);
        let open: PortSet = r
            .unintended
            .iter()
            .filter(|u| u.from == from && u.to == to && class.is_none_or(|c| c == u.service.protocol))
            .fold(PortSet::empty(), |acc, u| acc.union(&u.service.ports));
        let want = if o.protocol.has_ports() { PortSet::from_ranges(o.ports.iter().copied()) } else { PortSet::full() };
        let missing = want.subtract(&open);
        if !missing.is_empty() {
            c.finding(
                "MS-REACH-DESIGN-DRIFT",
                format!("flow {from} → {to} {}/{}", o.protocol, PortSet::from_ranges(o.ports.iter().copied())),
                format!("allowed, as the design does ({})", o.why),
                format!("not passing: {}", if o.protocol.has_ports() { missing.to_string() } else { "blocked".into() }),
            );
        }
    }
    let passing = r.intents.iter().filter(|v| v.allowed).count();
    c.note(format!(
        "{passing} of {} intended flows pass; {expected_blocked} blocked and {expected_open} unintended opening(s) as the spec records the design does",
        r.intents.len()
    ))
    .done()
}

/// Rules of the planned NACLs and groups that do nothing: shadowed NACL entries (never
/// the first match), redundant entries and group rules (removing them changes nothing).
pub(super) fn rule_lint(plan: &Plan, r: &Reachability) -> CheckResult {
    let mut c = Check::new("rule-lint", "every NACL entry and group rule decides something");
    let mut expected = 0;
    for l in &r.lint {
        let kind = match l.kind {
            LintKind::Shadowed => "shadowed",
            LintKind::Redundant => "redundant",
        };
        if plan.expected_lint.iter().any(|e| e.owner == l.owner && e.rule == l.rule && e.kind == l.kind) {
            expected += 1;
            continue;
        }
        let id = match (l.kind, l.owner.starts_with("NACL")) {
            (LintKind::Shadowed, _) => "MS-NACL-SHADOWED",
            (LintKind::Redundant, true) => "MS-NACL-REDUNDANT",
            (LintKind::Redundant, false) => "MS-SG-REDUNDANT",
        };
        let expected_text = match l.kind {
            LintKind::Shadowed => "the entry is the first match for some packet",
            LintKind::Redundant => "removing the rule would change some decision",
        };
        // Group rules name their direction themselves (`ingress tcp/22 from …`).
        let resource = if l.owner.starts_with("NACL") {
            format!("{} {} {}", l.owner, l.direction, l.rule)
        } else {
            format!("{} {}", l.owner, l.rule)
        };
        c.finding(
            id,
            resource,
            expected_text,
            format!("{kind}: {} decide(s) every packet it matches the same way", list(&l.because)),
        );
    }
    for e in &plan.expected_lint {
        let found = r.lint.iter().any(|l| l.owner == e.owner && l.rule == e.rule && l.kind == e.kind);
        if !found {
            let kind = match e.kind {
                LintKind::Shadowed => "shadowed",
                LintKind::Redundant => "redundant",
            };
            c.finding(
                "MS-LINT-DESIGN-DRIFT",
                format!("{} {}", e.owner, e.rule),
                format!("{kind}, as the design has it ({})", e.why),
                "not found as such in the deployment",
            );
        }
    }
    c.note(format!("{} rule(s) flagged, {expected} of them recorded in the spec as the design's", r.lint.len())).done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::*;

    #[test]
    fn intent_fails_when_an_expected_flow_is_blocked_or_a_blocked_one_passes() {
        let mut plan = recipe();
        let (mut observed, b) = crate::reach::designed(&plan);
        // Claim web → app works: the design blocks it, so the check must say so.
        let flow = plan
            .intent
            .iter_mut()
            .find(|f| {
                f.to.to_string() == "app"
                    && f.protocol == crate::model::Protocol::Tcp
                    && f.ports.map(|p| p.from) == Some(8080)
            })
            .unwrap();
        flow.blocked_by_design = None;
        let c = intent(&plan, &crate::reach::analyse(&plan, &observed, &b));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.findings.len(), 1);
        assert_eq!(c.findings[0].id, "MS-INTENT-BLOCKED");
        assert_eq!(c.findings[0].resource, "flow web → app tcp/8080");
        assert!(c.findings[0].found.contains("web NACL ingress"), "{:?}", c.findings[0]);
        // Open web's NACL to everything: flows the design blocks now pass, and that fails.
        let plan = recipe();
        let web = observed.nacls.iter_mut().find(|n| n.id == "acl-web").unwrap();
        web.entries.insert(
            0,
            NaclEntry {
                rule_number: 1,
                direction: Direction::Ingress,
                protocol: crate::model::Protocol::All,
                ports: None,
                cidr: "0.0.0.0/0".parse().unwrap(),
                action: crate::model::RuleAction::Allow,
            },
        );
        let c = intent(&plan, &crate::reach::analyse(&plan, &observed, &b));
        assert!(
            c.findings
                .iter()
                .any(|f| f.id == "MS-INTENT-UNEXPECTEDLY-ALLOWED" && f.resource == "flow web → app tcp/8080"),
            "{:?}",
            c.findings
        );
    }
    fn reach_checks(plan: &Plan, o: &Observed, b: &Bindings) -> (CheckResult, CheckResult) {
        let r = crate::reach::analyse(plan, o, b);
        (intent(plan, &r), rule_lint(plan, &r))
    }

    /// The recipe's DMZ can open internet high ports (its #120 entries both ways and the
    /// default egress); the spec records it. Without the record it is a finding naming
    /// each rule that opens it.
    #[test]
    fn an_unrecorded_unintended_opening_is_a_finding_with_the_rules_that_open_it() {
        let mut plan = recipe();
        let (o, b) = deployed(&plan);
        assert_eq!(reach_checks(&plan, &o, &b).0.status, Status::Pass);
        plan.allowed_by_design.clear();
        let (c, _) = reach_checks(&plan, &o, &b);
        assert_eq!(c.status, Status::Fail);
        let f: Vec<(&str, &str)> = c.findings.iter().map(|f| (f.id.as_str(), f.resource.as_str())).collect();
        assert_eq!(f, [("MS-REACH-UNINTENDED", "flow dmz → internet tcp/1024-65535")]);
        for rule in
            ["dmz NACL egress: rule #120", "dmz NACL ingress: rule #120", "egress all to 0.0.0.0/0", "dmz route table"]
        {
            assert!(c.findings[0].found.contains(rule), "{rule}: {}", c.findings[0].found);
        }
    }

    /// A deployment that closes what the design leaves open departs from the design too:
    /// keep the DMZ group's egress inside the VPC and the recorded opening is gone, while
    /// the intended flows still pass (replies to the internet ride connection tracking).
    #[test]
    fn a_recorded_opening_that_no_longer_passes_is_drift() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let dmz = o.security_groups.iter_mut().find(|g| g.id == "sg-dmz").unwrap();
        let egress = dmz.rules.iter_mut().find(|r| r.direction == Direction::Egress).unwrap();
        egress.peer = Peer::Cidr("10.0.0.0/16".parse().unwrap());
        let (c, _) = reach_checks(&plan, &o, &b);
        let f: Vec<(&str, &str)> = c.findings.iter().map(|f| (f.id.as_str(), f.resource.as_str())).collect();
        assert_eq!(f, [("MS-REACH-DESIGN-DRIFT", "flow dmz → internet tcp/1024-65535")]);
        assert_eq!(c.findings[0].found, "not passing: 1024-65535");
    }

    /// A deny at #90 for exactly what #100 allows shadows #100 (the web tier then loses
    /// HTTP from the DMZ, which the intent check reports too); a management rule inside
    /// the group's own broader rule is redundant.
    #[test]
    fn shadowed_entries_and_redundant_group_rules_are_findings() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let web = o.nacls.iter_mut().find(|n| n.id == "acl-web").unwrap();
        web.entries.push(NaclEntry {
            rule_number: 90,
            direction: Direction::Ingress,
            protocol: crate::model::Protocol::Tcp,
            ports: Some(PortRange::single(80)),
            cidr: "10.0.1.0/24".parse().unwrap(),
            action: crate::model::RuleAction::Deny,
        });
        let mgmt = o.security_groups.iter_mut().find(|g| g.id == "sg-management").unwrap();
        mgmt.rules.push(SgRule {
            direction: Direction::Ingress,
            protocol: crate::model::Protocol::Tcp,
            ports: Some(PortRange::single(22)),
            peer: Peer::Cidr("10.0.5.0/24".parse().unwrap()),
        });
        let (intent_check, lint) = reach_checks(&plan, &o, &b);
        let f: Vec<(&str, &str)> = lint.findings.iter().map(|f| (f.id.as_str(), f.resource.as_str())).collect();
        assert_eq!(
            f,
            [
                ("MS-NACL-SHADOWED", "NACL web ingress #100 allow tcp/80 10.0.1.0/24"),
                ("MS-SG-REDUNDANT", "security group management ingress tcp/22 from 10.0.5.0/24"),
            ]
        );
        assert!(lint.findings[0].found.contains("#90 deny tcp/80 10.0.1.0/24"), "{:?}", lint.findings[0]);
        assert!(lint.findings[1].found.contains("ingress tcp/22 from 10.0.0.0/8"), "{:?}", lint.findings[1]);
        assert!(
            intent_check.findings.iter().any(|f| f.id == "MS-INTENT-BLOCKED" && f.resource == "flow dmz → web tcp/80"),
            "{:?}",
            intent_check.findings
        );
    }
}
