//! What the design means: the flows it allows (intents) between the names they use
//! (zones, tiers, workloads, externals and the internet), and what it has knowingly:
//! openings (allowed_by_design), blocked intents (blocked_by_design) and expected lint.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net};
use toml::Spanned;

use super::{Checker, FlowEnd, IntendedFlow, Opening, PlannedExternal};
use crate::model::PortRange;
use crate::spec::{PortsSpec, Spec};
use microseg_reach::lint::LintKind;
use serde::Serialize;

/// Names that intents use must say one thing: zones, tiers, workloads, externals.
pub(super) fn distinct_names(c: &mut Checker<'_>, spec: &Spec) {
    let mut namespace: BTreeMap<String, &str> = BTreeMap::from([("internet".to_string(), "the internet")]);
    let mut claim = |c: &mut Checker<'_>, at: usize, field: String, name: &str, what: &'static str| {
        if let Some(other) = namespace.insert(name.to_string(), what)
            && !(other == "tier" && what == "tier")
        {
            c.problem(
                Some(at),
                field,
                format!("{name:?}"),
                format!("already the name of {other}; zones, tiers, workloads and externals need distinct names"),
            );
        }
    };
    for z in &spec.zones {
        claim(c, z.span().start, format!("zones[{}].name", z.get_ref().name), &z.get_ref().name, "a zone");
    }
    for z in &spec.zones {
        if let Some(t) = &z.get_ref().tier {
            claim(c, z.span().start, format!("zones[{}].tier", z.get_ref().name), t, "tier");
        }
    }
    for w in &spec.workloads {
        let name = &w.get_ref().name;
        claim(c, w.span().start, format!("workloads[{name}].name"), name, "a workload");
    }
    for e in &spec.externals {
        let name = &e.get_ref().name;
        claim(c, e.span().start, format!("externals[{name}].name"), name, "an external");
    }
}

/// Externals: outside the VPC.
pub(super) fn externals(c: &mut Checker<'_>, spec: &Spec, vpc_cidr: Option<Ipv4Net>) -> Vec<PlannedExternal> {
    let mut externals = Vec::new();
    for e in &spec.externals {
        let (at, ext) = (e.span().start, e.get_ref());
        match ext.cidr.parse::<IpNet>() {
            Ok(cidr) => {
                if let Some(vpc) = vpc_cidr
                    && let IpNet::V4(v4) = cidr
                    && (vpc.contains(&v4) || v4.contains(&vpc))
                {
                    c.problem(
                        Some(at),
                        format!("externals[{}].cidr", ext.name),
                        format!("{:?}", ext.cidr),
                        format!("overlaps the VPC's {vpc}; an external lies outside the VPC"),
                    );
                }
                let ephemeral =
                    c.ephemeral(at, &format!("externals[{}].ephemeral_ports", ext.name), ext.ephemeral_ports.as_ref());
                externals.push(PlannedExternal { name: ext.name.clone(), cidr, ephemeral });
            }
            Err(_) => c.problem(
                Some(at),
                format!("externals[{}].cidr", ext.name),
                format!("{:?}", ext.cidr),
                "not a CIDR block (e.g. 203.0.113.0/24)",
            ),
        }
    }
    externals
}

/// What a name in an intent may stand for, and the endpoints it expands to.
pub(super) struct FlowNames {
    /// Name → the endpoints it stands for (one for a workload, a zone without workloads
    /// or an external; each endpoint of its zones for a tier or a zone with workloads;
    /// the internet and every external for `internet`).
    expansions: BTreeMap<String, Vec<FlowEnd>>,
}

impl FlowNames {
    pub(super) fn new(spec: &Spec) -> FlowNames {
        let zones = || spec.zones.iter().map(Spanned::get_ref);
        let workloads = || spec.workloads.iter().map(Spanned::get_ref);
        let mut expansions: BTreeMap<String, Vec<FlowEnd>> = BTreeMap::new();
        expansions.insert("internet".into(), vec![FlowEnd::Internet]);
        let zone_ends = |zone: &str| -> Vec<FlowEnd> {
            let in_zone: Vec<FlowEnd> =
                workloads().filter(|w| w.zone == zone).map(|w| FlowEnd::Zone(w.name.clone())).collect();
            if in_zone.is_empty() { vec![FlowEnd::Zone(zone.to_string())] } else { in_zone }
        };
        for z in zones() {
            if let Some(tier) = &z.tier {
                expansions.entry(tier.clone()).or_default().extend(zone_ends(&z.name));
            }
        }
        for z in zones() {
            expansions.insert(z.name.clone(), zone_ends(&z.name));
        }
        for w in workloads() {
            expansions.insert(w.name.clone(), vec![FlowEnd::Zone(w.name.clone())]);
        }
        for e in spec.externals.iter().map(Spanned::get_ref) {
            expansions.insert(e.name.clone(), vec![FlowEnd::External(e.name.clone())]);
            // A named place outside the VPC is part of the internet: what the design
            // means for "the internet" it means for the office too.
            expansions.entry("internet".into()).or_default().push(FlowEnd::External(e.name.clone()));
        }
        FlowNames { expansions }
    }

    fn known(&self) -> String {
        self.expansions.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl Checker<'_> {
    /// One end of a flow: `internet`, an external, a workload, a zone or a tier; the
    /// endpoints it stands for.
    fn flow_end(&mut self, at: usize, field: &str, name: &str, names: &FlowNames) -> Option<Vec<FlowEnd>> {
        let found = names.expansions.get(name).cloned();
        if found.is_none() {
            self.problem(
                Some(at),
                field,
                format!("{name:?}"),
                format!(
                    "no zone, tier, workload or external of that name (nor \"internet\"); known: {}",
                    names.known()
                ),
            );
        }
        found
    }
}

/// Intents: ends that name something, a known protocol and its ports.
pub(super) fn intents(c: &mut Checker<'_>, spec: &Spec, flow_names: &FlowNames) -> Vec<IntendedFlow> {
    let mut intent = Vec::new();
    for (i, f) in spec.intent.iter().enumerate() {
        let at = f.span().start;
        let flow = f.get_ref();
        let field = format!("intent[{i}]");
        let from = c.flow_end(at, &format!("{field}.from"), &flow.from, flow_names);
        let to = c.flow_end(at, &format!("{field}.to"), &flow.to, flow_names);
        let protocol = c.protocol(at, &format!("{field}.protocol"), &flow.protocol);
        let ports = protocol.and_then(|p| c.ports(at, &format!("{field}.ports"), p, flow.ports.as_ref()));
        if let (Some(from), Some(to), Some(protocol), Some(ports)) = (from, to, protocol, ports) {
            // A tier (or a zone with workloads) stands for each of its endpoints.
            for (a, b) in pairs(&from, &to) {
                intent.push(IntendedFlow {
                    from: a,
                    to: b,
                    protocol,
                    ports,
                    why: flow.why.clone(),
                    blocked_by_design: flow.blocked_by_design.clone(),
                });
            }
        }
    }
    intent
}

/// Openings: like intents, with a list of ports allowed, and each explained.
pub(super) fn allowed_by_design(c: &mut Checker<'_>, spec: &Spec, flow_names: &FlowNames) -> Vec<Opening> {
    let mut allowed_by_design = Vec::new();
    for (i, o) in spec.allowed_by_design.iter().enumerate() {
        let at = o.span().start;
        let opening = o.get_ref();
        let field = format!("allowed_by_design[{i}]");
        let from = c.flow_end(at, &format!("{field}.from"), &opening.from, flow_names);
        let to = c.flow_end(at, &format!("{field}.to"), &opening.to, flow_names);
        let protocol = c.protocol(at, &format!("{field}.protocol"), &opening.protocol);
        let ports = match (protocol, &opening.ports) {
            (Some(p), Some(PortsSpec::Text(t))) if p.has_ports() && t.contains(',') => {
                let parsed: Option<Vec<PortRange>> = t.split(',').map(PortRange::parse).collect();
                if parsed.is_none() {
                    c.problem(
                        Some(at),
                        format!("{field}.ports"),
                        format!("{t:?}"),
                        "a comma-separated list of ports or ranges, e.g. \"80,443,1024-65535\"",
                    );
                }
                parsed
            }
            (Some(p), ports) => {
                c.ports(at, &format!("{field}.ports"), p, ports.as_ref()).map(|r| r.into_iter().collect())
            }
            (None, _) => None,
        };
        if opening.why.trim().is_empty() {
            c.problem(Some(at), format!("{field}.why"), "\"\"", "explain why the design lets this through");
        }
        if let (Some(from), Some(to), Some(protocol), Some(ports)) = (from, to, protocol, ports) {
            for (a, b) in pairs(&from, &to) {
                allowed_by_design.push(Opening {
                    from: a,
                    to: b,
                    protocol,
                    ports: ports.clone(),
                    why: opening.why.clone(),
                });
            }
        }
    }
    allowed_by_design
}

/// A rule the design makes pointless, recorded as an expected lint finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedLint {
    /// `NACL <name>` or `security group <name>`, as the finding says.
    pub owner: String,
    /// The rule as the finding shows it, e.g. `#110 allow tcp/22 10.0.5.0/24`.
    pub rule: String,
    /// What the lint says of it.
    pub kind: LintKind,
    /// Why it is accepted.
    pub why: String,
}

/// Expected lint: of a kind the lint reports.
pub(super) fn expected_lint(c: &mut Checker<'_>, spec: &Spec) -> Vec<ExpectedLint> {
    let mut planned = Vec::new();
    for (i, l) in spec.expected_lint.iter().enumerate() {
        let e = l.get_ref();
        let kind = match e.kind.as_str() {
            "shadowed" => LintKind::Shadowed,
            "redundant" => LintKind::Redundant,
            other => {
                c.problem(
                    Some(l.span().start),
                    format!("expected_lint[{i}].kind"),
                    format!("{other:?}"),
                    "shadowed or redundant",
                );
                continue;
            }
        };
        planned.push(ExpectedLint { owner: e.owner.clone(), rule: e.rule.clone(), kind, why: e.why.clone() });
    }
    planned
}

/// Every (from, to) pair of two expansions, a flow from an endpoint to itself excluded.
fn pairs(from: &[FlowEnd], to: &[FlowEnd]) -> Vec<(FlowEnd, FlowEnd)> {
    from.iter().flat_map(|a| to.iter().filter(move |b| *b != a).map(move |b| (a.clone(), b.clone()))).collect()
}
