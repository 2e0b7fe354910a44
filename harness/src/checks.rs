//! Checks: the plan compared with what is deployed.
//!
//! Each check has a stable id and yields one [`CheckResult`] with zero or more
//! [`Finding`]s. A finding names the resource, what was expected and what was found.
//! Where the target cannot decide a question (an emulator divergence), the check says so
//! with [`Status::Divergence`] and the divergence's name; it never passes silently.

use serde::{Deserialize, Serialize};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Everything matched.
    Pass,
    /// At least one finding.
    Fail,
    /// Not decidable on this target because of a named divergence; not a failure.
    Divergence,
    /// Not run (nothing to check, or not asked for).
    Skipped,
}

/// One discrepancy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id of the finding kind, e.g. `MS-ASSOC-DEFAULT-NACL`.
    pub id: String,
    /// The resource, by logical name and id (`subnet web (subnet-123)`).
    pub resource: String,
    /// What the spec expects.
    pub expected: String,
    /// What was found.
    pub found: String,
}

/// Result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable check id, e.g. `associations`.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Outcome.
    pub status: Status,
    /// Discrepancies (empty on pass).
    pub findings: Vec<Finding>,
    /// Named emulator divergences that made part of this check undecidable.
    pub divergences: Vec<String>,
    /// A short note for people (what was checked, or why skipped).
    pub note: String,
}

use std::collections::BTreeSet;

use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::model::{Direction, MAX_USER_RULE_NUMBER, NaclEntry, Peer, SgRule};
use crate::observe::{Observed, ObservedNacl};
use crate::plan::{Plan, RouteTarget};
use crate::reach::Reachability;
use microseg_reach::lint::LintKind;
use microseg_reach::{PortSet, ProtocolClass};

/// Collects one check's findings and divergences.
struct Check {
    result: CheckResult,
}

impl Check {
    fn new(id: &str, title: &str) -> Check {
        Check {
            result: CheckResult {
                id: id.into(),
                title: title.into(),
                status: Status::Pass,
                findings: Vec::new(),
                divergences: Vec::new(),
                note: String::new(),
            },
        }
    }

    fn finding(
        &mut self,
        id: &str,
        resource: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.result.findings.push(Finding {
            id: id.into(),
            resource: resource.into(),
            expected: expected.into(),
            found: found.into(),
        });
    }

    fn divergence(&mut self, d: Divergence) {
        if !self.result.divergences.iter().any(|x| x == d.id()) {
            self.result.divergences.push(d.id().to_string());
        }
    }

    fn note(mut self, note: impl Into<String>) -> Check {
        self.result.note = note.into();
        self
    }

    fn done(mut self) -> CheckResult {
        self.result.status = if !self.result.findings.is_empty() {
            Status::Fail
        } else if !self.result.divergences.is_empty() {
            Status::Divergence
        } else {
            Status::Pass
        };
        self.result
    }

    fn skipped(mut self, why: &str) -> CheckResult {
        self.result.status = Status::Skipped;
        self.result.note = why.into();
        self.result
    }
}

fn named(kind: &str, logical: &str, id: Option<&String>) -> String {
    match id {
        Some(id) => format!("{kind} {logical} ({id})"),
        None => format!("{kind} {logical} (not found)"),
    }
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() { "none".into() } else { v.join("; ") }
}

/// Runs every check of the plan against an observed deployment.
pub fn run_checks(plan: &Plan, observed: &Observed, bindings: &Bindings, caps: &Capabilities) -> Vec<CheckResult> {
    run_checks_with_reachability(plan, observed, bindings, caps).0
}

/// [`run_checks`], and the reachability analysis the intent and lint checks read, for
/// reports that show it (the analysis is the costly part: done once).
pub fn run_checks_with_reachability(
    plan: &Plan,
    observed: &Observed,
    bindings: &Bindings,
    caps: &Capabilities,
) -> (Vec<CheckResult>, crate::reach::Reachability) {
    let (reach, undecided) = reachability(plan, observed, bindings, caps);
    let with_undecided = |mut r: CheckResult| {
        if !undecided.is_empty() && r.status == Status::Pass {
            r.status = Status::Divergence;
            r.divergences.extend(undecided.iter().map(|d| d.id().to_string()));
        }
        r
    };
    let results: Vec<CheckResult> = vec![
        associations(plan, observed, bindings),
        nacl_rules(plan, observed, bindings, caps),
        security_groups(plan, observed, bindings),
        flow_log(plan, observed, bindings, caps),
        alarm(plan, observed, bindings),
        routes(plan, observed, bindings),
        nat_gateways(plan, observed, bindings),
        with_undecided(intent(plan, &reach)),
        rule_lint(plan, &reach),
        baseline(plan, observed, bindings, caps),
    ]
    .into_iter()
    .chain(plan.source_checks.iter().map(|sc| source_check(sc, plan, observed, bindings, caps)))
    .collect();
    (results.into_iter().map(|r| expected(plan, r)).collect(), reach)
}

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
fn reachability(
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

/// A finding's resource without the ids in parentheses: `NACL dmz (acl-1) ingress` is
/// `NACL dmz ingress`, the same in every deployment.
pub fn without_ids(resource: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for ch in resource.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Takes the findings the spec records as the design's (`[[expected_findings]]`) out of a
/// result: they move to the note, with their reason, and a check left with none passes.
/// (A recorded finding that does not occur is not one: the deployment is then stricter
/// than its design on a point the design only accepts.)
fn expected(plan: &Plan, mut r: CheckResult) -> CheckResult {
    let mut accepted = Vec::new();
    r.findings.retain(|f| {
        match plan.expected_findings.iter().find(|e| e.id == f.id && e.resource == without_ids(&f.resource)) {
            Some(e) => {
                accepted.push(format!("{} {} ({})", f.id, f.resource, e.why));
                false
            }
            None => true,
        }
    });
    if accepted.is_empty() {
        return r;
    }
    if r.findings.is_empty() && r.status == Status::Fail {
        r.status = if r.divergences.is_empty() { Status::Pass } else { Status::Divergence };
    }
    let note = format!("expected by the design: {}", accepted.join("; "));
    r.note = if r.note.is_empty() { note } else { format!("{}; {note}", r.note) };
    r
}

/// Controls the compliance rules imply and the recipe leaves out: the VPC's default
/// security group closed (VPC_DEFAULT_SECURITY_GROUP_CLOSED), no NACL admitting SSH or RDP
/// from the internet (NACL_NO_UNRESTRICTED_SSH_RDP, by first match as AWS evaluates it),
/// and a retention on the flow-log group (CW_LOGGROUP_RETENTION_PERIOD_CHECK).
fn baseline(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let mut c =
        Check::new("baseline", "default group closed, no SSH/RDP from the internet in NACLs, log retention set");
    if let Some(g) = crate::reach::default_group(observed) {
        if !g.rules.is_empty() {
            c.finding(
                "MS-DEFAULT-SG-OPEN",
                format!("default security group ({})", g.id),
                "no rules: nothing should rely on the default group",
                list(g.rules.iter()),
            );
        } else if caps.has(Divergence::DefaultSecurityGroupNoSelfIngress) {
            c.divergence(Divergence::DefaultSecurityGroupNoSelfIngress);
        }
    }
    let internet = std::net::IpAddr::V4(crate::reach::INTERNET);
    for n in &plan.nacls {
        let Some(nacl) = b.nacls.get(&n.name).and_then(|id| observed.nacl(id)) else { continue };
        let engine = microseg_reach::Nacl::new(n.name.clone(), nacl.entries.iter().cloned());
        for class in [ProtocolClass::Tcp, ProtocolClass::Udp] {
            let open = microseg_reach::path::nacl_ports(&engine, Direction::Ingress, class, internet);
            for port in [22u16, 3389] {
                if open.contains(port) {
                    let entry =
                        microseg_reach::path::nacl_first_match(&engine, Direction::Ingress, class, internet, port);
                    c.finding(
                        "MS-NACL-SSH-RDP-OPEN",
                        format!("NACL {} ({}) ingress {class}/{port}", n.name, nacl.id),
                        format!("{class}/{port} from the internet denied"),
                        format!("allowed by {}", entry.map_or("?".into(), |e| e.to_string())),
                    );
                }
            }
        }
    }
    if let (Some(_), Some(name)) = (&plan.flow_log, &b.log_group_name)
        && let Some(g) = observed.log_groups.iter().find(|g| &g.name == name)
        && g.retention_days.is_none()
    {
        c.finding(
            "MS-LOG-RETENTION-UNSET",
            format!("flow-log group ({})", g.name),
            "a retention period",
            "kept forever (no retention set)",
        );
    }
    c.note("the default group, every planned NACL's ingress for tcp/udp 22 and 3389 from the internet, the flow-log group's retention")
        .done()
}

/// The intended flows, evaluated through NACLs, groups and routes (`reach`): each must
/// pass, except those the spec records as blocked by the design, which must stay blocked.
/// Then the other way round: traffic that passes though no intent asks for it is a
/// finding, unless the spec records the design as letting exactly that through.
fn intent(plan: &Plan, r: &Reachability) -> CheckResult {
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
fn rule_lint(plan: &Plan, r: &Reachability) -> CheckResult {
    let mut c = Check::new("rule-lint", "every NACL entry and group rule decides something");
    let mut expected = 0;
    for l in &r.lint {
        let kind = match l.kind {
            LintKind::Shadowed => "shadowed",
            LintKind::Redundant => "redundant",
        };
        if plan.expected_lint.iter().any(|e| e.owner == l.owner && e.rule == l.rule && e.kind == kind) {
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
        let found = r.lint.iter().any(|l| {
            l.owner == e.owner
                && l.rule == e.rule
                && matches!(
                    (l.kind, e.kind.as_str()),
                    (LintKind::Shadowed, "shadowed") | (LintKind::Redundant, "redundant")
                )
        });
        if !found {
            c.finding(
                "MS-LINT-DESIGN-DRIFT",
                format!("{} {}", e.owner, e.rule),
                format!("{}, as the design has it ({})", e.kind, e.why),
                "not found as such in the deployment",
            );
        }
    }
    c.note(format!("{} rule(s) flagged, {expected} of them recorded in the spec as the design's", r.lint.len())).done()
}

/// One of the source document's own validation steps, run as it describes it.
fn source_check(
    sc: &crate::spec::SourceCheckSpec,
    plan: &Plan,
    observed: &Observed,
    b: &Bindings,
    caps: &Capabilities,
) -> CheckResult {
    let mut c = Check::new(&sc.id, &sc.title);
    let zone = sc.zone.as_deref().unwrap_or_default();
    let subnet = b.zones.get(zone);
    match sc.kind.as_str() {
        "nacl-associations" => {
            let nacl = sc.nacl.as_deref().unwrap_or_default();
            let id = b.nacls.get(nacl);
            let found: Vec<String> = id
                .and_then(|id| observed.nacl(id))
                .map(|n| n.associations.iter().map(|a| a.subnet_id.clone()).collect())
                .unwrap_or_default();
            if subnet.is_none_or(|s| found != vec![s.clone()]) {
                c.finding(
                    "MS-SOURCE-NACL-ASSOCIATIONS",
                    named("NACL", nacl, id),
                    format!("associations: the {zone} subnet {}", subnet.map_or("?", |s| s.as_str())),
                    list(&found),
                );
            }
        }
        "group-references" => {
            let group = sc.group.as_deref().unwrap_or_default();
            let id = b.security_groups.get(group);
            let peers: BTreeSet<Peer> = id
                .and_then(|id| observed.security_group(id))
                .map(|g| g.rules.iter().map(|r| b.resolve_peer(&r.peer)).collect())
                .unwrap_or_default();
            for r in &sc.references {
                if !peers.contains(&Peer::Group(r.clone())) {
                    c.finding(
                        "MS-SOURCE-GROUP-REFERENCE",
                        named("security group", group, id),
                        format!("a rule referencing group {r}"),
                        list(&peers),
                    );
                }
            }
        }
        "flow-log-active" => {
            let fl = observed.flow_logs.iter().find(|f| Some(&f.id) == b.flow_log_id.as_ref());
            match fl {
                None => c.finding("MS-SOURCE-FLOW-LOG", "flow log (not found)", "status ACTIVE", "no flow log"),
                Some(_) if caps.has(Divergence::FlowLogStatusAlwaysActive) => {
                    c.divergence(Divergence::FlowLogStatusAlwaysActive)
                }
                Some(f) if f.flow_log_status.as_deref() != Some("ACTIVE") => c.finding(
                    "MS-SOURCE-FLOW-LOG",
                    format!("flow log {}", f.id),
                    "status ACTIVE",
                    format!("{:?}", f.flow_log_status),
                ),
                Some(_) => {}
            }
        }
        "routes" => {
            let table = subnet.and_then(|s| observed.route_table_of_subnet(s));
            let targets: Vec<String> = table
                .map(|t| t.routes.iter().map(|r| format!("{} → {}", r.destination, r.target)).collect())
                .unwrap_or_default();
            for t in &sc.targets {
                let ok = table.is_some_and(|tb| {
                    tb.routes.iter().any(|r| match t.as_str() {
                        "local" => r.target == "local",
                        "nat-gateway" => b.nat_gateways.values().any(|n| n == &r.target),
                        _ => r.target.starts_with("igw-") && Some(&r.target) == b.internet_gateway_id.as_ref(),
                    })
                });
                if !ok {
                    c.finding(
                        "MS-SOURCE-ROUTE",
                        named("subnet", zone, subnet),
                        format!("a {t} route in its route table"),
                        list(&targets),
                    );
                }
            }
        }
        "nacl-order" => {
            let nacl = sc.nacl.as_deref().unwrap_or_default();
            let id = b.nacls.get(nacl);
            let got: Vec<&NaclEntry> = id
                .and_then(|id| observed.nacl(id))
                .map(|n| n.entries.iter().filter(|e| !e.is_default_deny()).collect())
                .unwrap_or_default();
            let want: Vec<&NaclEntry> = plan.nacl(nacl).map(|n| n.entries.iter().collect()).unwrap_or_default();
            if got != want {
                c.finding("MS-SOURCE-NACL-ORDER", named("NACL", nacl, id), list(&want), list(&got));
            }
        }
        "no-admin-from-anywhere" => {
            // The source matches only rules whose FromPort or ToPort is 22 or 3389; a range
            // holding them (0-65535, protocol -1) admits them just as well, so it counts.
            for g in &observed.security_groups {
                for r in g.rules.iter().filter(|r| r.direction == Direction::Ingress) {
                    let Peer::Cidr(cidr) = &r.peer else { continue };
                    if cidr.prefix_len() != 0 || !ProtocolClass::Tcp.matched_by(r.protocol) {
                        continue;
                    }
                    let ports = ProtocolClass::Tcp.rule_ports(r.protocol, r.ports);
                    for (port, what) in [(22u16, "SSH"), (3389, "RDP")].into_iter().filter(|(p, _)| ports.contains(*p))
                    {
                        c.finding(
                            "MS-SOURCE-ADMIN-FROM-ANYWHERE",
                            format!(
                                "{} tcp/{port}",
                                named("security group", b.group_name_of(&g.id).unwrap_or(&g.name), Some(&g.id))
                            ),
                            format!("no {what} access from anywhere"),
                            format!("admitted by {r}"),
                        );
                    }
                }
            }
        }
        "no-subnet-on-default-nacl" => {
            // Every VPC has a default NACL, so the source's test ("is there one?") flags
            // every VPC; what it guards against is a subnet left on it.
            for s in &observed.subnets {
                if let Some(n) = observed.nacl_of_subnet(&s.id).filter(|n| n.is_default) {
                    let zone = b.zones.iter().find(|(_, id)| **id == s.id).map_or(s.id.as_str(), |(z, _)| z.as_str());
                    c.finding(
                        "MS-SOURCE-DEFAULT-NACL-IN-USE",
                        named("subnet", zone, Some(&s.id)),
                        "associated with a custom NACL",
                        format!("on the VPC's default NACL ({})", n.id),
                    );
                }
            }
        }
        _ => {}
    }
    c.done()
}

/// The teardown check: the inventory by run tag after cleanup must be empty.
pub fn check_teardown(leftovers: &[String]) -> CheckResult {
    let mut c = Check::new("teardown", "nothing tagged with the run is left (inventory by tag, not DeleteVpc's word)");
    for l in leftovers {
        c.finding("MS-TEARDOWN-LEFTOVER", l.clone(), "deleted", "still present");
    }
    c.note("inventory by run tag across EC2, IAM, CloudWatch Logs and CloudWatch is empty").done()
}

/// Each zone's subnet is associated with its zone's NACL, and none stays on the default.
fn associations(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c = Check::new("associations", "each zone subnet is associated with its zone NACL");
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
    c.done()
}

fn nacl_label(b: &Bindings, id: &str) -> String {
    match b.nacls.iter().find(|(_, v)| *v == id) {
        Some((name, _)) => format!("NACL {name} ({id})"),
        None => format!("NACL {id}"),
    }
}

/// Entries per NACL and direction are exactly the plan's, in first-match order.
fn nacl_rules(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let mut c = Check::new("nacl-rules", "NACL entries are the spec's, in ascending rule-number (first-match) order");
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
    c.done()
}

fn compare_entries(
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
fn overlaps(a: &NaclEntry, b: &NaclEntry) -> bool {
    use crate::model::Protocol;
    let proto = a.protocol == b.protocol || a.protocol == Protocol::All || b.protocol == Protocol::All;
    let ports = match (a.ports, b.ports) {
        (Some(x), Some(y)) => x.from <= y.to && y.from <= x.to,
        _ => true,
    };
    let cidr = a.cidr.contains(&b.cidr) || b.cidr.contains(&a.cidr);
    proto && ports && cidr
}

/// Each group's rules, with references resolved to logical names, are exactly the spec's.
fn security_groups(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c =
        Check::new("security-groups", "security-group rules are the spec's; references point at the right groups");
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
    c.done()
}

fn compare_rules(c: &mut Check, resource: &str, want: &BTreeSet<SgRule>, got: &BTreeSet<SgRule>) {
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
fn take_stand_in<'a>(extras: &mut Vec<&'a SgRule>, missing: &SgRule) -> Option<&'a SgRule> {
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

fn stand_in_finding(c: &mut Check, resource: &str, missing: &SgRule, stand_in: &SgRule) {
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

/// A flow log on the VPC with the planned traffic type, group and role, delivering.
fn flow_log(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let c =
        Check::new("flow-log", "VPC flow log: traffic ALL to the log group through the role, ACTIVE and delivering");
    let Some(want) = &plan.flow_log else { return c.skipped("the scenario has no flow log") };
    let mut c = c;
    let vpc = b.vpc_id.clone().unwrap_or_default();
    let fl = b
        .flow_log_id
        .as_ref()
        .and_then(|id| observed.flow_logs.iter().find(|f| &f.id == id))
        .or_else(|| observed.flow_logs.iter().find(|f| f.resource_id == vpc));
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

fn statements(doc: &serde_json::Value) -> Vec<&serde_json::Value> {
    match &doc["Statement"] {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    }
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn role_checks(c: &mut Check, observed: &Observed, role_name: &str, log_group: &str) {
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
fn alarm(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
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

/// Route tables: associations, the local route, planned routes; the IGW is attached.
fn routes(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let c = Check::new("routes", "route tables: associations, local route, planned routes; IGW attached");
    if plan.route_tables.is_empty() && plan.internet_gateway.is_none() {
        return c.skipped("the scenario has no route tables or internet gateway");
    }
    let mut c = c;
    let vpc = b.vpc_id.clone().unwrap_or_default();
    if plan.internet_gateway.is_some()
        && !b.internet_gateway_id.as_deref().is_some_and(|id| observed.internet_gateway_attached(id, &vpc))
    {
        c.finding(
            "MS-IGW-NOT-ATTACHED",
            format!("internet gateway {}", b.internet_gateway_id.as_deref().unwrap_or("(not found)")),
            format!("attached to {vpc}"),
            "not attached",
        );
    }
    for table in &plan.route_tables {
        let id = b.route_tables.get(&table.name);
        let resource = named("route table", &table.name, id);
        let Some(found) = id.and_then(|id| observed.route_tables.iter().find(|t| &t.id == id)) else {
            c.finding("MS-RT-MISSING", resource, "the route table exists", "no such route table");
            continue;
        };
        let want: BTreeSet<&String> = table.zones.iter().filter_map(|z| b.zones.get(z)).collect();
        let got: BTreeSet<&String> = found.subnet_ids.iter().collect();
        if want != got {
            c.finding(
                "MS-RT-ASSOCIATIONS",
                resource.clone(),
                format!("subnets of zones {}", table.zones.join(", ")),
                list(got.iter().map(|s| b.zone_of_subnet(s).map_or(s.to_string(), |z| format!("{z} ({s})")))),
            );
        }
        let vpc_cidr = plan.vpc.cidr.to_string();
        if !found.routes.iter().any(|r| r.destination == vpc_cidr && r.target == "local") {
            c.finding(
                "MS-RT-NO-LOCAL",
                resource.clone(),
                format!("{vpc_cidr} → local"),
                list(found.routes.iter().map(|r| format!("{} → {}", r.destination, r.target))),
            );
        }
        let planned: Vec<(String, String)> = table
            .routes
            .iter()
            .map(|(dest, target)| {
                let target_id = match target {
                    RouteTarget::InternetGateway => b.internet_gateway_id.clone(),
                    RouteTarget::NatGateway(n) => b.nat_gateways.get(n).cloned(),
                };
                (dest.to_string(), target_id.unwrap_or_else(|| format!("{target} (not found)")))
            })
            .collect();
        for (dest, target_id) in &planned {
            if !found.routes.iter().any(|r| &r.destination == dest && &r.target == target_id) {
                c.finding(
                    "MS-RT-ROUTE-MISSING",
                    resource.clone(),
                    format!("{dest} → {target_id}"),
                    list(found.routes.iter().map(|r| format!("{} → {}", r.destination, r.target))),
                );
            }
        }
        // A route to a destination the plan does not route changes where traffic goes: a
        // finding, named. (A planned destination with the wrong target is reported once,
        // above, as missing, with the target found.)
        for r in &found.routes {
            let planned_destination = planned.iter().any(|(d, _)| d == &r.destination);
            if !planned_destination && r.target != "local" {
                c.finding(
                    "MS-RT-ROUTE-UNEXPECTED",
                    resource.clone(),
                    list(planned.iter().map(|(d, t)| format!("{d} → {t}"))),
                    format!("also {} → {}", r.destination, r.target),
                );
            }
        }
    }
    // Isolated zones: no route that leads to or comes from the internet.
    for zone in plan.zones.iter().filter(|z| z.isolated) {
        let subnet = b.zones.get(&zone.name);
        let Some(table) = subnet.and_then(|s| observed.route_table_of_subnet(s)) else { continue };
        for r in table.routes.iter().filter(|r| leads_outside(r, observed)) {
            c.finding(
                "MS-ISOLATED-ROUTE",
                named("subnet", &zone.name, subnet),
                "no route to or from the internet (the zone is isolated)",
                format!("{} → {} in route table {}", r.destination, r.target, table.id),
            );
        }
    }
    c.done()
}

/// Whether a route leads out of the VPC towards the internet: to an internet, egress-only
/// or NAT gateway, or any non-local route whose destination covers public addresses.
fn leads_outside(r: &crate::observe::ObservedRoute, observed: &Observed) -> bool {
    let gateway = ["igw-", "eigw-", "nat-"].iter().any(|p| r.target.starts_with(p))
        || observed.nat_gateways.iter().any(|n| n.id == r.target)
        || observed.internet_gateways.iter().any(|g| g.id == r.target);
    r.target != "local" && (gateway || crate::reach::covers_internet(r))
}

/// NAT gateways: present, available, in their zone's subnet, holding their Elastic IP,
/// and in a subnet that routes to an attached internet gateway.
fn nat_gateways(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let c = Check::new("nat-gateways", "NAT gateways: available, in their subnet, with their Elastic IP, routed out");
    if plan.nat_gateways.is_empty() {
        return c.skipped("the scenario has no NAT gateways");
    }
    let mut c = c;
    let vpc = b.vpc_id.clone().unwrap_or_default();
    for nat in &plan.nat_gateways {
        let id = b.nat_gateways.get(&nat.name);
        let resource = named("NAT gateway", &nat.name, id);
        let Some(found) = id.and_then(|id| observed.nat_gateway(id)) else {
            c.finding("MS-NAT-MISSING", resource, format!("a NAT gateway in zone {}", nat.zone), "no such NAT gateway");
            continue;
        };
        if found.state != "available" {
            c.finding("MS-NAT-NOT-AVAILABLE", resource.clone(), "state available", format!("state {}", found.state));
        }
        let subnet = b.zones.get(&nat.zone);
        if subnet != Some(&found.subnet_id) {
            c.finding(
                "MS-NAT-WRONG-SUBNET",
                resource.clone(),
                format!("in {}", named("subnet", &nat.zone, subnet)),
                format!("in subnet {}", found.subnet_id),
            );
        }
        match b.elastic_ips.get(&nat.name) {
            Some(eip) if found.allocation_ids.contains(eip) => {}
            want => c.finding(
                "MS-NAT-NO-EIP",
                resource.clone(),
                format!("public, holding Elastic IP {}", want.map_or("(not found)", |s| s.as_str())),
                format!("{} with {}", found.connectivity, list(&found.allocation_ids)),
            ),
        }
        let routed_out = observed.route_table_of_subnet(&found.subnet_id).is_some_and(|t| {
            t.routes
                .iter()
                .any(|r| crate::reach::covers_internet(r) && observed.internet_gateway_attached(&r.target, &vpc))
        });
        if !routed_out {
            c.finding(
                "MS-NAT-NO-IGW-ROUTE",
                resource,
                "its subnet routes 0.0.0.0/0 to the attached internet gateway",
                "no such route: the NAT gateway cannot reach the internet",
            );
        }
    }
    c.done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PortRange, Protocol, RuleAction};
    use crate::observe::{
        MetricTransformation, NaclAssociation, ObservedAlarm, ObservedFlowLog, ObservedLogGroup, ObservedMetricFilter,
        ObservedRole, ObservedSecurityGroup,
    };
    use crate::plan::{PlannedAlarm, PlannedFlowLog};
    use crate::spec;

    /// The suffix a build gives account-wide names: the checks must take those names from
    /// the bindings, never from the plan's base names.
    const RUN: &str = "-ms-test";
    const ACCOUNT: &str = "000000000000";
    const REGION: &str = "us-east-1";

    fn recipe() -> Plan {
        let (s, src) = spec::load("recipe").unwrap();
        Plan::from_spec(&s, &src).unwrap()
    }

    /// A deployment exactly as the plan says, on AWS semantics: `reach::designed` (subnets,
    /// NACLs with their `*` entries, groups, route tables, IGW; ids such as `subnet-web`,
    /// `acl-web`, `sg-web`, `rtb-public`) plus what it leaves out: the VPC's default NACL,
    /// the flow log with its role and log group, the metric filter and the alarm.
    fn deployed(plan: &Plan) -> (Observed, Bindings) {
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
    fn default_nacl() -> ObservedNacl {
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

    fn log_group_arn(name: &str) -> String {
        format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}")
    }

    fn add_flow_log(o: &mut Observed, b: &mut Bindings, fl: &PlannedFlowLog) {
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

    fn add_alarm(o: &mut Observed, b: &mut Bindings, al: &PlannedAlarm) {
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

    fn emulator_caps() -> Capabilities {
        let mut caps = Capabilities::emulator("LocalStack 4.14.0".into());
        caps.divergences.insert(Divergence::NaclWithoutDefaultDeny);
        caps.divergences.insert(Divergence::NaclRuleNumberUnbounded);
        caps
    }

    fn result<'a>(results: &'a [CheckResult], id: &str) -> &'a CheckResult {
        results.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id} in {results:?}"))
    }

    /// Runs every check on AWS semantics and returns one check's findings as (id, resource).
    fn findings(plan: &Plan, o: &Observed, b: &Bindings, check: &str) -> Vec<(String, String)> {
        let results = run_checks(plan, o, b, &Capabilities::aws());
        let c = result(&results, check);
        let found: Vec<_> = c.findings.iter().map(|f| (f.id.clone(), f.resource.clone())).collect();
        assert_eq!(c.status, if found.is_empty() { Status::Pass } else { Status::Fail }, "{c:?}");
        found
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn nacl<'a>(o: &'a mut Observed, id: &str) -> &'a mut ObservedNacl {
        o.nacls.iter_mut().find(|n| n.id == id).unwrap()
    }

    fn group<'a>(o: &'a mut Observed, id: &str) -> &'a mut ObservedSecurityGroup {
        o.security_groups.iter_mut().find(|g| g.id == id).unwrap()
    }

    fn tcp(port: u16) -> Option<crate::model::PortRange> {
        Some(crate::model::PortRange::single(port))
    }

    fn sg_rule(direction: Direction, port: u16, peer: Peer) -> SgRule {
        SgRule { direction, protocol: Protocol::Tcp, ports: tcp(port), peer }
    }

    fn cidr(s: &str) -> Peer {
        Peer::Cidr(s.parse().unwrap())
    }

    /// Replaces one observed rule of a group with another.
    fn replace_rule(o: &mut Observed, group_id: &str, old: &SgRule, new: SgRule) {
        let g = group(o, group_id);
        let at = g.rules.iter().position(|r| r == old).unwrap_or_else(|| panic!("{old} in {group_id}"));
        g.rules[at] = new;
    }

    #[test]
    fn a_deployment_as_planned_passes_every_check_on_aws() {
        let plan = recipe();
        let (o, b) = deployed(&plan);
        let results = run_checks(&plan, &o, &b, &Capabilities::aws());
        let ids: Vec<&str> = results.iter().map(|c| c.id.as_str()).collect();
        let mut want = vec![
            "associations",
            "nacl-rules",
            "security-groups",
            "flow-log",
            "alarm",
            "routes",
            "nat-gateways",
            "intent",
            "rule-lint",
            "baseline",
        ];
        want.extend([
            "recipe-v1-nacl-associations",
            "recipe-v2-sg-references",
            "recipe-v3-flow-log-active",
            "recipe-v4-routes",
            "recipe-v5-nacl-order",
        ]);
        assert_eq!(ids, want);
        for c in &results {
            // The recipe has no NAT gateway: that check has nothing to look at, and says so.
            let status = if c.id == "nat-gateways" { Status::Skipped } else { Status::Pass };
            assert_eq!((c.status, c.findings.len(), c.divergences.len()), (status, 0, 0), "{c:?}");
        }
    }

    /// A NAT gateway reported with connectivity `None`: on AWS that value does not exist
    /// and the NAT flows fail; on a target known to echo the missing request parameter,
    /// the gateway is taken as public and the intent check names the divergence.
    #[test]
    fn an_echoed_nat_connectivity_is_a_named_divergence_not_a_pass_or_a_failure() {
        let (s, src) = spec::load("three-tier-hardened").unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (mut o, b) = deployed(&plan);
        for n in &mut o.nat_gateways {
            n.connectivity = "None".into();
        }
        let on_aws = result(&run_checks(&plan, &o, &b, &Capabilities::aws()), "intent").clone();
        assert_eq!(on_aws.status, Status::Fail);
        assert!(on_aws.findings.iter().all(|f| f.id == "MS-INTENT-BLOCKED" && f.resource.contains("→ internet")));
        assert_eq!(on_aws.findings.len(), 2, "{on_aws:?}");
        let emulator = Capabilities::emulator("LocalStack".into());
        let there = result(&run_checks(&plan, &o, &b, &emulator), "intent").clone();
        assert_eq!(
            (there.status, there.findings.len(), there.divergences.clone()),
            (Status::Divergence, 0, vec!["nat-connectivity-type-echoed".to_string()])
        );
        // Reported as AWS reports it, nothing is undecided.
        for n in &mut o.nat_gateways {
            n.connectivity = "public".into();
        }
        assert_eq!(result(&run_checks(&plan, &o, &b, &emulator), "intent").status, Status::Pass);
    }

    /// Every built-in scenario, deployed exactly as planned on AWS semantics, passes every
    /// check: its as-written flaws are all recorded in the spec (blocked_by_design,
    /// expected_findings, expected_lint), each with its reason, and nothing else fails.
    #[test]
    fn every_builtin_scenario_as_planned_passes_every_check_on_aws() {
        for (name, _) in spec::BUILTIN_SCENARIOS {
            let (s, src) = spec::load(name).unwrap();
            let plan = Plan::from_spec(&s, &src).unwrap();
            let (o, b) = deployed(&plan);
            for c in run_checks(&plan, &o, &b, &Capabilities::aws()) {
                let has_nothing_to_check = (c.id == "nat-gateways" && plan.nat_gateways.is_empty())
                    || (c.id == "alarm" && plan.alarm.is_none())
                    || (c.id == "flow-log" && plan.flow_log.is_none());
                let want = if has_nothing_to_check { Status::Skipped } else { Status::Pass };
                assert_eq!((c.status, c.findings.len()), (want, 0), "{name}: {c:?}");
            }
        }
    }

    /// The microservices document's own audit, run on its design: the cache subnet sits
    /// on the default NACL (recorded in the as-written spec, gone in the hardened one);
    /// no group admits SSH or RDP from anywhere until one is made to, by a range that
    /// holds 22 and 3389 (which the source's FromPort/ToPort test would miss) or by
    /// protocol -1; 443 from anywhere and SSH from the office range stay fine.
    #[test]
    fn the_microservices_audit_flags_default_nacl_use_and_admin_ports_from_anywhere() {
        let load = |name: &str| {
            let (s, src) = spec::load(name).unwrap();
            Plan::from_spec(&s, &src).unwrap()
        };
        let audit = |plan: &Plan, o: &Observed, b: &Bindings, id: &str| -> Vec<(String, String)> {
            let sc = plan.source_checks.iter().find(|s| s.id == id).unwrap();
            source_check(sc, plan, o, b, &Capabilities::aws())
                .findings
                .into_iter()
                .map(|f| (f.id, without_ids(&f.resource)))
                .collect()
        };
        let plan = load("microservices");
        let (mut o, b) = deployed(&plan);
        assert_eq!(
            audit(&plan, &o, &b, "microservices-audit-network-acls"),
            [("MS-SOURCE-DEFAULT-NACL-IN-USE".to_string(), "subnet cache-net".to_string())]
        );
        assert!(audit(&plan, &o, &b, "microservices-audit-security-groups").is_empty());
        let hardened = load("microservices-hardened");
        let (ho, hb) = deployed(&hardened);
        assert!(audit(&hardened, &ho, &hb, "microservices-audit-network-acls").is_empty());

        let anywhere = |protocol, ports| SgRule {
            direction: Direction::Ingress,
            protocol,
            ports,
            peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
        };
        let db = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("db")).unwrap();
        db.rules.push(anywhere(Protocol::Tcp, Some(PortRange::single(443))));
        assert!(audit(&plan, &o, &b, "microservices-audit-security-groups").is_empty(), "443 is no admin port");
        let db = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("db")).unwrap();
        db.rules.push(anywhere(Protocol::Tcp, Some(PortRange { from: 1, to: 65535 })));
        let cache = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("cache")).unwrap();
        cache.rules.push(anywhere(Protocol::All, None));
        let found: Vec<String> =
            audit(&plan, &o, &b, "microservices-audit-security-groups").into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            found,
            [
                "security group db tcp/22",
                "security group db tcp/3389",
                "security group cache tcp/22",
                "security group cache tcp/3389"
            ]
        );
    }

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

    #[test]
    fn route_table_without_the_igw_route() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.routes.retain(|r| r.target != "igw-designed");
        assert_eq!(
            findings(&plan, &o, &b, "routes"),
            pairs(&[("MS-RT-ROUTE-MISSING", "route table public (rtb-public)")])
        );
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v4-routes"),
            pairs(&[("MS-SOURCE-ROUTE", "subnet web (subnet-web)")])
        );
    }

    #[test]
    fn a_wrong_target_is_one_missing_route_and_an_extra_destination_is_unexpected() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        let igw_route = rt.routes.iter_mut().find(|r| r.target == "igw-designed").unwrap();
        igw_route.target = crate::observe::NO_TARGET.into();
        let got = findings(&plan, &o, &b, "routes");
        assert_eq!(got, pairs(&[("MS-RT-ROUTE-MISSING", "route table public (rtb-public)")]));
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.routes.push(crate::observe::ObservedRoute {
            destination: "192.168.0.0/16".into(),
            target: "pcx-elsewhere".into(),
            state: Some("active".into()),
        });
        let got = findings(&plan, &o, &b, "routes");
        assert_eq!(
            got,
            pairs(&[
                ("MS-RT-ROUTE-MISSING", "route table public (rtb-public)"),
                ("MS-RT-ROUTE-UNEXPECTED", "route table public (rtb-public)")
            ])
        );
    }

    #[test]
    fn route_table_associations_local_route_and_igw_attachment() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.subnet_ids.push("subnet-app".into());
        rt.routes.retain(|r| r.target != "local");
        o.internet_gateways[0].attached_vpc_ids.clear();
        let got = findings(&plan, &o, &b, "routes");
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, vec!["MS-IGW-NOT-ATTACHED", "MS-RT-ASSOCIATIONS", "MS-RT-NO-LOCAL"]);
        assert!(got[0].1.contains("igw-designed"), "{got:?}");
        assert_eq!(got[1].1, "route table public (rtb-public)");
    }

    #[test]
    fn parts_the_plan_leaves_out_are_skipped_with_a_note() {
        let mut plan = recipe();
        let (o, b) = deployed(&plan);
        plan.alarm = None;
        plan.flow_log = None;
        plan.source_checks.clear();
        let results = run_checks(&plan, &o, &b, &Capabilities::aws());
        for id in ["flow-log", "alarm"] {
            let c = result(&results, id);
            assert_eq!(c.status, Status::Skipped, "{c:?}");
            assert!(!c.note.is_empty());
        }
        // The source's own steps come from the spec, not from the engine.
        assert!(results.iter().all(|c| !c.id.starts_with("recipe-")), "{results:?}");
    }

    #[test]
    fn teardown_passes_only_on_an_empty_inventory() {
        let c = check_teardown(&[]);
        assert_eq!((c.id.as_str(), c.status, c.findings.len()), ("teardown", Status::Pass, 0));
        let left =
            ["vpc vpc-123 (microseg:run-id=ms-test)".to_string(), "IAM role VPCFlowLogsRole-ms-test".to_string()];
        let c = check_teardown(&left);
        assert_eq!(c.status, Status::Fail);
        let got: Vec<(&str, &str)> = c.findings.iter().map(|f| (f.id.as_str(), f.resource.as_str())).collect();
        assert_eq!(got, vec![("MS-TEARDOWN-LEFTOVER", left[0].as_str()), ("MS-TEARDOWN-LEFTOVER", left[1].as_str())]);
    }

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
    fn default_group(rules: Vec<SgRule>) -> crate::observe::ObservedSecurityGroup {
        crate::observe::ObservedSecurityGroup {
            id: "sg-default".into(),
            name: "default".into(),
            description: "default VPC security group".into(),
            rules,
            tags: Default::default(),
        }
    }

    /// AWS creates the default group with ingress from itself and all egress: on AWS that
    /// is a finding unless the spec records it. LocalStack creates it with the egress rule only,
    /// so a default group found empty there may be the emulator's half as much as the
    /// deployment's doing: the named divergence.
    #[test]
    fn baseline_default_group_is_a_finding_on_aws_and_a_divergence_on_the_emulator() {
        let mut plan = recipe();
        let (mut o, b) = deployed(&plan);
        set_default_group(&mut o, vec![crate::model::default_sg_egress()]);
        let r = baseline(&plan, &o, &b, &Capabilities::aws());
        assert!(
            r.findings
                .iter()
                .any(|f| f.id == "MS-DEFAULT-SG-OPEN" && f.resource == "default security group (sg-default)")
        );
        // The recipe records it: it leaves the findings and the check passes, saying why.
        let recorded = expected(&plan, r);
        assert_eq!(recorded.status, Status::Pass, "{recorded:?}");
        assert!(recorded.note.contains("never revokes the default group's rules"), "{}", recorded.note);
        // Without the record it fails.
        plan.expected_findings.clear();
        assert_eq!(expected(&plan, baseline(&plan, &o, &b, &Capabilities::aws())).status, Status::Fail);
        let (mut o, b) = deployed(&plan);
        set_default_group(&mut o, vec![]);
        let r = baseline(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert_eq!(r.divergences, vec!["default-security-group-no-self-ingress".to_string()]);
    }

    /// Replaces the designed deployment's default group with one holding `rules`.
    fn set_default_group(o: &mut Observed, rules: Vec<SgRule>) {
        o.security_groups.retain(|g| g.name != "default");
        o.security_groups.push(default_group(rules));
    }

    /// A zone the spec gives no group stands for instances in the VPC's default group,
    /// which admits only its own members. Here the recipe's management zone loses its
    /// group too, and the management and monitoring NACLs let everything through, so
    /// only the groups decide between the two zones:
    /// - on AWS (self-ingress present) each reaches the other on any port;
    /// - an emulator's default group without that rule, untouched otherwise, is read as
    ///   AWS's, and the intent check names the divergence;
    /// - a default group the deployment emptied admits nothing, AWS or not.
    #[test]
    fn zones_without_a_group_rely_on_the_default_group_and_its_emulator_gap_is_named() {
        let mut plan = recipe();
        for g in &mut plan.security_groups {
            g.zones.retain(|z| z != "management");
        }
        assert_eq!(crate::reach::default_group_members(&plan), ["management", "monitoring"]);
        let (mut o, b) = deployed(&plan);
        let allow_all = |d| NaclEntry {
            rule_number: 100,
            direction: d,
            protocol: Protocol::All,
            ports: None,
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: crate::model::RuleAction::Allow,
        };
        for name in ["management", "monitoring"] {
            let id = &b.nacls[name];
            o.nacls.iter_mut().find(|n| &n.id == id).unwrap().entries.extend(Direction::BOTH.map(allow_all));
        }
        let cell = |r: &crate::reach::Reachability, from: &str, to: &str| {
            r.matrix.cells.iter().find(|c| c.from == from && c.to == to).unwrap().allowed.clone()
        };
        let everything = |r: &crate::reach::Reachability| {
            let allowed = cell(r, "management", "monitoring");
            allowed.iter().any(|s| s.protocol == ProtocolClass::Tcp && s.ports == PortSet::full())
        };

        let (on_aws, undecided) = reachability(&plan, &o, &b, &Capabilities::aws());
        assert!(everything(&on_aws), "{:?}", cell(&on_aws, "management", "monitoring"));
        assert!(undecided.is_empty());

        set_default_group(&mut o, vec![crate::model::default_sg_egress()]);
        let literal = crate::reach::analyse(&plan, &o, &b);
        assert!(cell(&literal, "management", "monitoring").is_empty(), "taken literally, nothing passes");
        let (assumed, undecided) = reachability(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert!(everything(&assumed));
        assert_eq!(undecided, [Divergence::DefaultSecurityGroupNoSelfIngress]);

        set_default_group(&mut o, vec![]);
        let (closed, _) = reachability(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert!(cell(&closed, "management", "monitoring").is_empty());
    }

    fn emulator_caps_with_empty_default() -> Capabilities {
        Capabilities::emulator("LocalStack 4.14.0".into())
    }

    /// By hand: the recipe's DMZ NACL admits tcp 1024-65535 from anywhere at #120, so RDP
    /// (3389) from the internet passes its NACL; SSH (22) does not. A deny of 3389 from
    /// 0.0.0.0/0 numbered before #120 clears it, as first match decides.
    #[test]
    fn baseline_nacl_ssh_rdp_from_the_internet_by_first_match() {
        let mut plan = recipe();
        plan.expected_findings.clear();
        let (mut o, b) = deployed(&plan);
        let ids = |r: &CheckResult| -> Vec<String> {
            r.findings.iter().filter(|f| f.id == "MS-NACL-SSH-RDP-OPEN").map(|f| without_ids(&f.resource)).collect()
        };
        assert_eq!(ids(&baseline(&plan, &o, &b, &Capabilities::aws())), ["NACL dmz ingress tcp/3389"]);
        let dmz = o.nacls.iter_mut().find(|n| n.id == "acl-dmz").unwrap();
        dmz.entries.push(NaclEntry {
            rule_number: 115,
            direction: Direction::Ingress,
            protocol: crate::model::Protocol::Tcp,
            ports: Some(PortRange::single(3389)),
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: crate::model::RuleAction::Deny,
        });
        assert!(ids(&baseline(&plan, &o, &b, &Capabilities::aws())).is_empty());
    }
}
