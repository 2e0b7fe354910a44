//! From a [`Spec`] to a [`Plan`]: the only way to get a plan is to pass every check.
//!
//! Validation runs before any API call and reports *every* problem it finds, each at its
//! spec path with the file, line and offending value, so one edit can fix them all.
//! Checked here: CIDRs parse, lie inside the VPC and do not overlap; rule numbers are in
//! 1..=32766 and unique per NACL and direction; protocols are known; port ranges are
//! present where needed and not inverted; every zone, NACL and group reference resolves.
//!
//! Each part of the spec has its module: `network` (VPC, zones, NAT gateways, NACLs,
//! route tables), `groups` (security groups, workloads), `intent` (intents and the names
//! they use, externals, what the design allows or blocks knowingly), `monitoring` (flow
//! log, alarm) and `source_checks`; [`Plan::from_spec`] calls them in turn.

mod groups;
mod intent;
mod monitoring;
mod network;
mod source_checks;

pub use intent::ExpectedLint;
pub use source_checks::{PlannedSourceCheck, SourceCheckKind, SourceRouteTarget};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use crate::model::{Direction, NaclEntry, PortRange, Protocol, SgRule, default_sg_egress};
use crate::spec::{DeviationSpec, PortsSpec, Spec, SpecSource};

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    /// The spec file.
    pub file: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// Spec path of the field, e.g. `nacls[dmz].ingress[2].rule`.
    pub field: String,
    /// The offending value, as written.
    pub value: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {} = {}: {}", self.field, self.value, self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in {}:\n{}", problems.len(), file.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct PlanError {
    /// The spec file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<SpecProblem>,
}

/// A validated scenario, ready to build or to check a deployment against.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Scenario name.
    pub scenario: String,
    /// Title.
    pub title: String,
    /// Variant.
    pub variant: String,
    /// Where the spec came from.
    pub spec_file: PathBuf,
    /// The VPC.
    pub vpc: PlannedVpc,
    /// `Name` tag of the internet gateway, if any.
    pub internet_gateway: Option<String>,
    /// Zones, in spec order.
    pub zones: Vec<PlannedZone>,
    /// NAT gateways, in spec order.
    pub nat_gateways: Vec<PlannedNatGateway>,
    /// NACLs, in spec order.
    pub nacls: Vec<PlannedNacl>,
    /// Route tables.
    pub route_tables: Vec<PlannedRouteTable>,
    /// Security groups.
    pub security_groups: Vec<PlannedSecurityGroup>,
    /// Workloads (kinds of instances), in spec order.
    pub workloads: Vec<PlannedWorkload>,
    /// Named places outside the VPC.
    pub externals: Vec<PlannedExternal>,
    /// Flow log.
    pub flow_log: Option<PlannedFlowLog>,
    /// Alarm.
    pub alarm: Option<PlannedAlarm>,
    /// Departures from the source.
    pub deviations: Vec<DeviationSpec>,
    /// Flows the design means to allow; all others are meant to be denied.
    pub intent: Vec<IntendedFlow>,
    /// Unintended traffic the design lets through, each explained (expected findings).
    pub allowed_by_design: Vec<Opening>,
    /// Pointless rules the design contains, each explained (expected lint).
    pub expected_lint: Vec<ExpectedLint>,
    /// Other findings the design has, each explained.
    pub expected_findings: Vec<crate::spec::ExpectedFindingSpec>,
    /// What an implementation may add beyond the plan, each explained.
    pub accepted: Vec<crate::spec::ExpectedFindingSpec>,
    /// The source's own validation steps.
    pub source_checks: Vec<PlannedSourceCheck>,
}

/// Traffic the design lets through though no intent asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opening {
    /// Client.
    pub from: FlowEnd,
    /// Server.
    pub to: FlowEnd,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination ports (TCP/UDP); `None` for every port or a portless protocol.
    pub ports: Vec<PortRange>,
    /// Why it is accepted.
    pub why: String,
}

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEnd {
    /// Anywhere outside the VPC, through the internet gateway.
    Internet,
    /// Something inside the VPC: a zone's workloads, or a named workload.
    Zone(String),
    /// A named place outside the VPC (`[[externals]]`).
    External(String),
}

impl fmt::Display for FlowEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowEnd::Internet => f.write_str("internet"),
            FlowEnd::Zone(z) | FlowEnd::External(z) => f.write_str(z),
        }
    }
}

/// A flow the design means to allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntendedFlow {
    /// Who opens the connection.
    pub from: FlowEnd,
    /// Who accepts it.
    pub to: FlowEnd,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination ports (TCP/UDP); `None` for every port or a portless protocol.
    pub ports: Option<PortRange>,
    /// Why, from the source.
    pub why: Option<String>,
    /// Why the design blocks it, when it does (an expected finding).
    pub blocked_by_design: Option<String>,
}

/// The source ports clients pick from unless the spec says otherwise: AWS's NACL
/// guidance, 1024–65535, which covers Linux (32768–60999), Windows (49152–65535), NAT
/// gateways and load balancers (1024–65535).
pub const DEFAULT_EPHEMERAL: PortRange = PortRange { from: 1024, to: 65535 };

/// The VPC.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedVpc {
    /// CIDR.
    pub cidr: Ipv4Net,
    /// Base `Name` tag.
    pub name: String,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
    /// The source ports clients pick from, unless a zone or external names its own.
    pub ephemeral: PortRange,
    /// Whether build revokes the default security group's rules.
    pub close_default_group: bool,
}

/// A zone.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedZone {
    /// Logical name.
    pub name: String,
    /// Subnet CIDR.
    pub cidr: Ipv4Net,
    /// AZ suffix.
    pub az_suffix: String,
    /// Subnet `Name` tag.
    pub subnet_name: String,
    /// Logical NACL name, or [`DEFAULT_NACL`] for the VPC's default NACL.
    pub nacl: String,
    /// Tier, if any.
    pub tier: Option<String>,
    /// Whether the zone must have no route to or from the internet.
    pub isolated: bool,
    /// Whether its endpoints hold public addresses (`public` in the spec).
    pub public: bool,
    /// The source ports its workloads pick from as clients, when not the VPC's.
    pub ephemeral: Option<PortRange>,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
}

impl PlannedZone {
    /// Whether the zone stays on the VPC's default NACL.
    pub fn on_default_nacl(&self) -> bool {
        self.nacl == DEFAULT_NACL
    }
}

/// The NACL name that stands for the VPC's default NACL.
pub const DEFAULT_NACL: &str = "default";

/// A NAT gateway and its Elastic IP.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedNatGateway {
    /// Logical name.
    pub name: String,
    /// The zone whose subnet holds it.
    pub zone: String,
    /// `Name` tag.
    pub tag_name: String,
}

/// A kind of instance.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedWorkload {
    /// Name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// Its groups, by logical name.
    pub groups: Vec<String>,
}

/// A named place outside the VPC.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedExternal {
    /// Name.
    pub name: String,
    /// Address range.
    pub cidr: IpNet,
    /// The source ports its clients pick from, when not the VPC's.
    pub ephemeral: Option<PortRange>,
}

/// A NACL with its entries sorted by direction, then rule number.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedNacl {
    /// Logical name.
    pub name: String,
    /// `Name` tag.
    pub tag_name: String,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
    /// Entries (no implicit default deny).
    pub entries: Vec<NaclEntry>,
}

impl PlannedNacl {
    /// Entries of one direction, in evaluation order.
    pub fn entries(&self, direction: Direction) -> impl Iterator<Item = &NaclEntry> {
        self.entries.iter().filter(move |e| e.direction == direction)
    }
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteTarget {
    /// The VPC's internet gateway.
    InternetGateway,
    /// A NAT gateway of the plan, by logical name.
    NatGateway(String),
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTarget::InternetGateway => f.write_str("internet-gateway"),
            RouteTarget::NatGateway(n) => write!(f, "nat-gateway {n}"),
        }
    }
}

/// A route table.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRouteTable {
    /// Logical name.
    pub name: String,
    /// `Name` tag.
    pub tag_name: String,
    /// Zones associated.
    pub zones: Vec<String>,
    /// Routes besides `local`.
    pub routes: Vec<(Ipv4Net, RouteTarget)>,
}

/// A security group with its expected rules (peers by logical name).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSecurityGroup {
    /// Logical name.
    pub name: String,
    /// Base `GroupName`.
    pub group_name: String,
    /// Description.
    pub description: String,
    /// Zones whose workloads are members (empty when workloads name the group).
    pub zones: Vec<String>,
    /// Extra tags.
    pub tags: BTreeMap<String, String>,
    /// Rules to authorise, without the default egress.
    pub rules: Vec<SgRule>,
    /// Whether the default allow-all egress stays.
    pub keep_default_egress: bool,
}

impl PlannedSecurityGroup {
    /// Every rule the group must end up with, the default egress included when kept.
    pub fn expected_rules(&self) -> Vec<SgRule> {
        let mut rules = self.rules.clone();
        if self.keep_default_egress {
            rules.push(default_sg_egress());
        }
        rules.sort();
        rules.dedup();
        rules
    }
}

/// The flow log.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFlowLog {
    /// `ALL`, `ACCEPT` or `REJECT`.
    pub traffic_type: String,
    /// Base log group name.
    pub log_group: String,
    /// Retention in days.
    pub retention_days: Option<i32>,
    /// Base role name.
    pub role_name: String,
    /// Inline policy name.
    pub role_policy_name: String,
}

/// The alarm and its metric filter.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAlarm {
    /// Base alarm name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Base metric filter name.
    pub metric_filter_name: String,
    /// Filter pattern.
    pub filter_pattern: String,
    /// Metric value.
    pub metric_value: String,
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Statistic.
    pub statistic: String,
    /// Period, seconds.
    pub period: i32,
    /// Evaluation periods.
    pub evaluation_periods: i32,
    /// Threshold.
    pub threshold: f64,
    /// Comparison operator.
    pub comparison: String,
}

/// Collects problems while walking a spec.
struct Checker<'a> {
    source: &'a SpecSource,
    problems: Vec<SpecProblem>,
}

impl Checker<'_> {
    /// Reports `value` at `field` unless it names one of `known`, the names of a `what`;
    /// returns whether it does.
    fn known(
        &mut self,
        offset: Option<usize>,
        field: impl Into<String>,
        value: &str,
        known: &BTreeSet<&str>,
        what: &str,
    ) -> bool {
        let is_known = known.contains(value);
        if !is_known {
            self.problem(
                offset,
                field,
                format!("{value:?}"),
                format!("no {what} of that name; known: {}", join(known)),
            );
        }
        is_known
    }

    fn problem(
        &mut self,
        offset: Option<usize>,
        field: impl Into<String>,
        value: impl fmt::Display,
        message: impl Into<String>,
    ) {
        self.problems.push(SpecProblem {
            file: self.source.path.clone(),
            line: offset.map(|o| self.source.line_of(o)),
            field: field.into(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    fn ipv4(&mut self, at: usize, field: &str, text: &str) -> Option<Ipv4Net> {
        match text.parse::<Ipv4Net>() {
            Ok(net) if net.network() == net.addr() => Some(net),
            Ok(net) => {
                self.problem(
                    Some(at),
                    field,
                    format!("{text:?}"),
                    format!("host bits set; did you mean {}?", net.trunc()),
                );
                None
            }
            Err(_) => {
                self.problem(Some(at), field, format!("{text:?}"), "not an IPv4 CIDR block (e.g. 10.0.1.0/24)");
                None
            }
        }
    }

    fn protocol(&mut self, at: usize, field: &str, text: &str) -> Option<Protocol> {
        let p = Protocol::parse(text);
        if p.is_none() {
            self.problem(
                Some(at),
                field,
                format!("{text:?}"),
                "unknown protocol; use tcp, udp, icmp, all (-1) or a number 0-255",
            );
        }
        p
    }

    /// An ephemeral range: clients pick source ports from 1 up, never 0.
    fn ephemeral(&mut self, at: usize, field: &str, ports: Option<&PortsSpec>) -> Option<PortRange> {
        let p = ports?;
        let parsed = match p {
            PortsSpec::Number(_) => None,
            PortsSpec::Text(t) => PortRange::parse(t).filter(|r| r.from >= 1 && r.from < r.to),
        };
        if parsed.is_none() {
            self.problem(
                Some(at),
                field,
                p,
                "not an ascending port range within 1-65535 (e.g. \"32768-60999\"; \"1024-65535\" covers every client)",
            );
        }
        parsed
    }

    fn ports(
        &mut self,
        at: usize,
        field: &str,
        protocol: Protocol,
        ports: Option<&PortsSpec>,
    ) -> Option<Option<PortRange>> {
        match (protocol.has_ports(), ports) {
            (true, None) => {
                self.problem(Some(at), field, "(missing)", format!("{protocol} rules need a port range"));
                None
            }
            (false, Some(p)) => {
                self.problem(Some(at), field, p, format!("{protocol} rules take no port range; remove it"));
                None
            }
            (false, None) => Some(None),
            (true, Some(p)) => {
                let parsed = match p {
                    PortsSpec::Number(n) => u16::try_from(*n).ok().map(PortRange::single),
                    PortsSpec::Text(t) => PortRange::parse(t),
                };
                if parsed.is_none() {
                    self.problem(
                        Some(at),
                        field,
                        p,
                        "not a port or an ascending range within 0-65535 (e.g. 443 or \"1024-65535\")",
                    );
                }
                parsed.map(Some)
            }
        }
    }
}

/// The names each kind of thing has in the spec, for checking references to it. They
/// come from the spec, not the plan, so that a thing with an error of its own still
/// resolves, and each problem is reported once, where it is.
struct Names<'a> {
    zones: BTreeSet<&'a str>,
    nacls: BTreeSet<&'a str>,
    nat_gateways: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
}

impl<'a> Names<'a> {
    fn of(spec: &'a Spec) -> Names<'a> {
        Names {
            zones: spec.zones.iter().map(|z| z.get_ref().name.as_str()).collect(),
            nacls: spec.nacls.iter().map(|n| n.get_ref().name.as_str()).collect(),
            nat_gateways: spec.nat_gateways.iter().map(|n| n.get_ref().name.as_str()).collect(),
            groups: spec.security_groups.iter().map(|g| g.get_ref().name.as_str()).collect(),
        }
    }
}

impl Plan {
    /// Validates a spec; on success the plan holds only checked values.
    pub fn from_spec(spec: &Spec, source: &SpecSource) -> Result<Plan, PlanError> {
        let mut c = Checker { source, problems: Vec::new() };
        let names = Names::of(spec);

        // Problems are sorted by line alone, so this order decides which of one line's
        // problems comes first.
        let (vpc_cidr, ephemeral) = network::vpc(&mut c, spec);
        let zones = network::zones(&mut c, spec, vpc_cidr, &names);
        intent::distinct_names(&mut c, spec);
        let nat_gateways = network::nat_gateways(&mut c, spec, &names);
        let externals = intent::externals(&mut c, spec, vpc_cidr);
        let nacls = network::nacls(&mut c, spec);
        let route_tables = network::route_tables(&mut c, spec, &names);
        let security_groups = groups::security_groups(&mut c, spec, &names);
        let workloads = groups::workloads(&mut c, spec, &names);
        let flow_log = monitoring::flow_log(&mut c, spec);
        let alarm = monitoring::alarm(&mut c, spec);
        let flow_names = intent::FlowNames::new(spec);
        let intents = intent::intents(&mut c, spec, &flow_names);
        let allowed_by_design = intent::allowed_by_design(&mut c, spec, &flow_names);
        let expected_lint = intent::expected_lint(&mut c, spec);
        let source_checks = source_checks::source_checks(&mut c, spec, &names);
        // A recorded finding with an id no check reports would never match: a typo that
        // silently accepts nothing.
        for (table, items) in [("expected_findings", &spec.expected_findings), ("accepted", &spec.accepted)] {
            for (i, f) in items.iter().enumerate() {
                if crate::findings::lookup(&f.id).is_none() {
                    c.problem(
                        None,
                        format!("{table}[{i}].id"),
                        format!("{:?}", f.id),
                        "a finding id of the catalogue (docs/FINDINGS.md)",
                    );
                }
            }
        }

        if !c.problems.is_empty() {
            c.problems.sort_by_key(|p| p.line.unwrap_or(0));
            return Err(PlanError { file: source.path.clone(), problems: c.problems });
        }
        Ok(Plan {
            scenario: spec.scenario.name.clone(),
            title: spec.scenario.title.clone(),
            variant: spec.scenario.variant.clone(),
            spec_file: source.path.clone(),
            vpc: PlannedVpc {
                cidr: vpc_cidr.expect("no problems means the VPC CIDR parsed"),
                name: spec.vpc.name.clone(),
                tags: spec.vpc.tags.clone(),
                ephemeral: ephemeral.expect("no problems means the ephemeral range parsed"),
                close_default_group: spec.vpc.close_default_group,
            },
            internet_gateway: spec.internet_gateway.as_ref().map(|i| i.name.clone()),
            zones,
            nat_gateways,
            nacls,
            route_tables,
            security_groups,
            workloads,
            externals,
            flow_log,
            alarm,
            deviations: spec.deviations.clone(),
            intent: intents,
            allowed_by_design,
            expected_lint,
            expected_findings: spec.expected_findings.clone(),
            accepted: spec.accepted.clone(),
            source_checks,
        })
    }

    /// The zone of a logical name.
    pub fn zone(&self, name: &str) -> Option<&PlannedZone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The NACL of a logical name.
    pub fn nacl(&self, name: &str) -> Option<&PlannedNacl> {
        self.nacls.iter().find(|n| n.name == name)
    }

    /// The security group of a logical name.
    pub fn security_group(&self, name: &str) -> Option<&PlannedSecurityGroup> {
        self.security_groups.iter().find(|g| g.name == name)
    }

    /// The NAT gateway of a logical name.
    pub fn nat_gateway(&self, name: &str) -> Option<&PlannedNatGateway> {
        self.nat_gateways.iter().find(|n| n.name == name)
    }

    /// Where the members of a group run: its zones, and the zones of the workloads
    /// that list it.
    pub fn zones_of_group(&self, group: &str) -> Vec<&str> {
        let mut zones: Vec<&str> =
            self.security_group(group).map(|g| g.zones.iter().map(String::as_str).collect()).unwrap_or_default();
        for w in self.workloads.iter().filter(|w| w.groups.iter().any(|g| g == group)) {
            if !zones.contains(&w.zone.as_str()) {
                zones.push(&w.zone);
            }
        }
        zones
    }
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    pub(super) fn plan_of(text: &str) -> Result<Plan, PlanError> {
        let (spec, source) = spec::parse(SpecSource { path: "t.toml".into(), text: text.into() }).expect("parses");
        Plan::from_spec(&spec, &source)
    }

    /// A valid spec with one zone on one NACL, for tests to append to.
    pub(super) const BASE: &str = r#"
[scenario]
name = "t"
title = "t"
[vpc]
cidr = "10.0.0.0/16"
name = "v"
[[zones]]
name = "a"
cidr = "10.0.1.0/24"
subnet_name = "a"
nacl = "a"
[[nacls]]
name = "a"
tag_name = "a"
"#;

    #[test]
    fn builtin_recipe_plans_with_six_zones() {
        let (spec, source) = spec::load("recipe").unwrap();
        let plan = Plan::from_spec(&spec, &source).unwrap();
        assert_eq!(plan.zones.len(), 6);
        assert_eq!(plan.nacls.len(), 6);
        assert_eq!(plan.security_groups.len(), 5);
    }

    #[test]
    fn each_problem_names_file_line_field_and_value() {
        let text = format!(
            "{BASE}ingress = [\n  {{ rule = 0, protocol = \"tcp\", ports = 80, cidr = \"0.0.0.0/0\", action = \"allow\" }},\n]\n"
        );
        let err = plan_of(&text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.file, PathBuf::from("t.toml"));
        assert_eq!(p.line, Some(17), "line 1 is BASE's leading blank line");
        assert_eq!(p.field, "nacls[a].ingress[0].rule");
        assert_eq!(p.value, "0");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = format!(
            "{BASE}ingress = [\n  {{ rule = 40000, protocol = \"tcp\", ports = \"443-80\", cidr = \"0.0.0.0/0\", action = \"allow\" }},\n  {{ rule = 100, protocol = \"smtp\", cidr = \"0.0.0.0/0\", action = \"allow\" }},\n  {{ rule = 100, protocol = \"udp\", ports = 53, cidr = \"0.0.0.0/0\", action = \"allow\" }},\n]\n[[zones]]\nname = \"b\"\ncidr = \"10.0.1.128/25\"\nsubnet_name = \"b\"\nnacl = \"z\"\n"
        );
        let err = plan_of(&text).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"nacls[a].ingress[0].rule"), "{err}");
        assert!(fields.contains(&"nacls[a].ingress[0].ports"), "{err}");
        assert!(fields.contains(&"nacls[a].ingress[1].protocol"), "{err}");
        assert!(fields.contains(&"nacls[a].ingress[2].rule"), "{err}");
        assert!(fields.contains(&"zones[b].cidr"), "overlap: {err}");
        assert!(fields.contains(&"zones[b].nacl"), "unknown nacl: {err}");
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::{self, BUILTIN_SCENARIOS};

    /// One edit of the recipe's text: at a position, delete some bytes and insert some
    /// text drawn from what TOML and the spec's values are made of.
    fn edit() -> impl Strategy<Value = (usize, usize, String)> {
        let pieces = prop::sample::select(vec![
            "",
            "\"",
            "=",
            "[",
            "]",
            "{",
            "}",
            ",",
            "\n",
            "-",
            ".",
            "/",
            "0",
            "9",
            "32767",
            "-1",
            "65536",
            "tcp",
            "icmp",
            "all",
            "allow",
            "deny",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "300.1.2.3/33",
            "ports",
            "group",
            "cidr",
            "#",
            "[[nacls]]",
            "[[zones]]",
            "\u{00e9}",
        ]);
        (any::<usize>(), 0usize..12, prop::collection::vec(pieces, 0..4).prop_map(|v| v.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the text, loading and planning end in a plan or in errors that name
        /// the file, never in a panic.
        #[test]
        fn mangled_specs_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
            let mut text = BUILTIN_SCENARIOS[0].1.to_string();
            for (at, delete, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, &insert);
            }
            let source = SpecSource { path: "fuzz.toml".into(), text };
            match spec::parse(source) {
                Ok((spec, source)) => {
                    if let Err(e) = Plan::from_spec(&spec, &source) {
                        prop_assert!(!e.problems.is_empty());
                        prop_assert!(e.problems.iter().all(|p| p.file.as_os_str() == "fuzz.toml"));
                    }
                }
                Err(e) => prop_assert!(e.to_string().starts_with("fuzz.toml:")),
            }
        }
    }
}
