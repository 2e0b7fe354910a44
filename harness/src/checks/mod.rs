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

use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::observe::Observed;
use crate::plan::Plan;

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

/// How a resource the plan does not know is named in a finding: its `Name` tag where it
/// has one, then its id in parentheses (so the name without ids stays stable for
/// `[[accepted]]`).
fn unplanned(kind: &str, id: &str, tags: &crate::observe::Tags) -> String {
    match tags.get("Name") {
        Some(name) => format!("{kind} {name} ({id})"),
        None => format!("{kind} ({id})"),
    }
}

/// A subnet by its zone where it is bound to one, else by its CIDR.
fn subnet_label(b: &Bindings, observed: &Observed, subnet_id: &str) -> String {
    match (b.zone_of_subnet(subnet_id), observed.subnet(subnet_id)) {
        (Some(zone), _) => format!("subnet {zone} ({subnet_id})"),
        (None, Some(s)) => format!("subnet {} ({subnet_id})", s.cidr),
        (None, None) => format!("subnet ({subnet_id})"),
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
        alarm(plan, observed, bindings, caps),
        routes(plan, observed, bindings),
        nat_gateways(plan, observed, bindings),
        gateways(plan, observed, bindings),
        exposure(plan, observed, bindings),
        with_undecided(intent(plan, &reach)),
        rule_lint(plan, &reach),
        baseline(plan, observed, bindings, caps),
    ]
    .into_iter()
    .chain(plan.source_checks.iter().map(|sc| source_check(sc, plan, observed, bindings, caps)))
    .collect();
    (results.into_iter().map(|r| expected(plan, r)).collect(), reach)
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

/// Takes the findings the spec records out of a result: those it records as the
/// design's (`[[expected_findings]]`) and what it accepts an implementation adding
/// (`[[accepted]]`). They move to the note, with their reason, and a check left with none
/// passes. (A recorded finding that does not occur is not one: the deployment is then
/// stricter than its design on a point the design only accepts.)
fn expected(plan: &Plan, mut r: CheckResult) -> CheckResult {
    let mut by_design = Vec::new();
    let mut accepted = Vec::new();
    let recorded = |list: &[crate::spec::ExpectedFindingSpec], f: &Finding| {
        list.iter().find(|e| e.id == f.id && e.resource == without_ids(&f.resource)).map(|e| e.why.clone())
    };
    r.findings.retain(|f| {
        if let Some(why) = recorded(&plan.expected_findings, f) {
            by_design.push(format!("{} {} ({why})", f.id, f.resource));
            false
        } else if let Some(why) = recorded(&plan.accepted, f) {
            accepted.push(format!("{} {} ({why})", f.id, f.resource));
            false
        } else {
            true
        }
    });
    if by_design.is_empty() && accepted.is_empty() {
        return r;
    }
    if r.findings.is_empty() && r.status == Status::Fail {
        r.status = if r.divergences.is_empty() { Status::Pass } else { Status::Divergence };
    }
    for (what, items) in [("expected by the design", by_design), ("accepted by the spec", accepted)] {
        if items.is_empty() {
            continue;
        }
        let note = format!("{what}: {}", items.join("; "));
        r.note = if r.note.is_empty() { note } else { format!("{}; {note}", r.note) };
    }
    r
}

mod baseline;
mod exposure;
#[cfg(test)]
pub(crate) mod fixtures;
mod groups;
mod intent;
mod lifecycle;
mod monitoring;
mod network;
mod routing;
mod source;

use baseline::baseline;
use exposure::exposure;
use groups::security_groups;
use intent::{intent, reachability, rule_lint};
pub use lifecycle::{check_teardown, check_vpc};
use monitoring::{alarm, flow_log};
use network::{associations, nacl_rules};
use routing::{gateways, nat_gateways, routes};
use source::source_check;

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::*;

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
            "gateways",
            "exposure",
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

    #[test]
    fn parts_the_plan_leaves_out_are_skipped_with_a_note() {
        let mut plan = recipe();
        plan.alarm = None;
        plan.flow_log = None;
        plan.source_checks.clear();
        let (o, b) = deployed(&plan);
        let results = run_checks(&plan, &o, &b, &Capabilities::aws());
        for id in ["flow-log", "alarm"] {
            let c = result(&results, id);
            assert_eq!(c.status, Status::Skipped, "{c:?}");
            assert!(!c.note.is_empty());
        }
        // The source's own steps come from the spec, not from the engine.
        assert!(results.iter().all(|c| !c.id.starts_with("recipe-")), "{results:?}");
    }
}
