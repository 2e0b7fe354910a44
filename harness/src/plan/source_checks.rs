//! The source's own validation steps: each of a kind the engine knows, naming the
//! zones, NACLs and groups it looks at. The spec's `kind` string becomes a
//! [`SourceCheckKind`] here, with exactly the fields that kind needs, so a check the
//! engine does not know is refused while planning instead of being skipped when run.

use serde::Serialize;

use super::{Checker, Names};
use crate::spec::{SourceCheckSpec, Spec};

/// One of the source's validation steps, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSourceCheck {
    /// Stable check id, e.g. `recipe-v1-nacl-associations`.
    pub id: String,
    /// What the source's step says.
    pub title: String,
    /// What it looks at, and how.
    pub kind: SourceCheckKind,
}

/// The kinds of validation step the sources contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SourceCheckKind {
    /// The NACL is associated with exactly the zone's subnet.
    NaclAssociations {
        /// The NACL, by logical name.
        nacl: String,
        /// The zone whose subnet it must hold.
        zone: String,
    },
    /// The group has a rule referencing each of these groups.
    GroupReferences {
        /// The group, by logical name.
        group: String,
        /// Groups it must reference.
        references: Vec<String>,
    },
    /// The flow log reports ACTIVE.
    FlowLogActive,
    /// The zone's route table has a route to each of these targets.
    Routes {
        /// The zone.
        zone: String,
        /// Targets that must be present.
        targets: Vec<SourceRouteTarget>,
    },
    /// The NACL's entries are the plan's, in order.
    NaclOrder {
        /// The NACL, by logical name.
        nacl: String,
    },
    /// No group admits SSH or RDP from 0.0.0.0/0.
    NoAdminFromAnywhere,
    /// No subnet is left on the VPC's default NACL.
    NoSubnetOnDefaultNacl,
}

/// A route target a source's routes step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceRouteTarget {
    /// The VPC's local route.
    Local,
    /// The scenario's internet gateway.
    InternetGateway,
    /// Any of the scenario's NAT gateways.
    NatGateway,
}

impl std::fmt::Display for SourceRouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceRouteTarget::Local => "local",
            SourceRouteTarget::InternetGateway => "internet-gateway",
            SourceRouteTarget::NatGateway => "nat-gateway",
        })
    }
}

const KINDS: &str = "one of nacl-associations, group-references, flow-log-active, routes, nacl-order, no-admin-from-anywhere, no-subnet-on-default-nacl";

/// Source checks: a known kind, with what that kind needs, and references that resolve.
/// `None` where any is wrong (the problems are in `c`).
pub(super) fn source_checks(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) -> Vec<PlannedSourceCheck> {
    let mut planned = Vec::new();
    for (i, sc) in spec.source_checks.iter().enumerate() {
        let at = Some(sc.span().start);
        let check = sc.get_ref();
        let field = format!("source_checks[{i}]");
        let before = c.problems.len();
        let needs: &[&str] = match check.kind.as_str() {
            "nacl-associations" => &["nacl", "zone"],
            "group-references" => &["group"],
            "routes" => &["zone"],
            "nacl-order" => &["nacl"],
            "flow-log-active" | "no-admin-from-anywhere" | "no-subnet-on-default-nacl" => &[],
            other => {
                c.problem(at, format!("{field}.kind"), format!("{other:?}"), KINDS);
                continue;
            }
        };
        for (name, value, known) in [
            ("zone", &check.zone, &names.zones),
            ("nacl", &check.nacl, &names.nacls),
            ("group", &check.group, &names.groups),
        ] {
            match value {
                Some(v) if needs.contains(&name) => {
                    c.known(at, format!("{field}.{name}"), v, known, name);
                }
                // A field the kind does not read would be ignored: say so instead.
                Some(v) => c.problem(
                    at,
                    format!("{field}.{name}"),
                    format!("{v:?}"),
                    format!("nothing: a {} check does not read {name}", check.kind),
                ),
                None if needs.contains(&name) => c.problem(
                    at,
                    format!("{field}.{name}"),
                    "(missing)",
                    format!("a {} check needs a {name}", check.kind),
                ),
                None => {}
            }
        }
        for r in &check.references {
            c.known(at, format!("{field}.references"), r, &names.groups, "security group");
        }
        if !check.references.is_empty() && check.kind != "group-references" {
            c.problem(
                at,
                format!("{field}.references"),
                format!("{:?}", check.references),
                "only a group-references check has references",
            );
        }
        let mut targets = Vec::new();
        for t in &check.targets {
            match t.as_str() {
                "local" => targets.push(SourceRouteTarget::Local),
                "internet-gateway" => targets.push(SourceRouteTarget::InternetGateway),
                "nat-gateway" => targets.push(SourceRouteTarget::NatGateway),
                _ => c.problem(
                    at,
                    format!("{field}.targets"),
                    format!("{t:?}"),
                    "local, internet-gateway or nat-gateway",
                ),
            }
        }
        if !check.targets.is_empty() && check.kind != "routes" {
            c.problem(
                at,
                format!("{field}.targets"),
                format!("{:?}", check.targets),
                "only a routes check has targets",
            );
        }
        if c.problems.len() > before {
            continue;
        }
        planned.push(PlannedSourceCheck {
            id: check.id.clone(),
            title: check.title.clone(),
            kind: typed(check, targets),
        });
    }
    planned
}

/// The typed kind of a check whose fields were all found present above.
fn typed(check: &SourceCheckSpec, targets: Vec<SourceRouteTarget>) -> SourceCheckKind {
    let field = |v: &Option<String>| v.clone().expect("checked present above");
    match check.kind.as_str() {
        "nacl-associations" => SourceCheckKind::NaclAssociations { nacl: field(&check.nacl), zone: field(&check.zone) },
        "group-references" => {
            SourceCheckKind::GroupReferences { group: field(&check.group), references: check.references.clone() }
        }
        "routes" => SourceCheckKind::Routes { zone: field(&check.zone), targets },
        "nacl-order" => SourceCheckKind::NaclOrder { nacl: field(&check.nacl) },
        "flow-log-active" => SourceCheckKind::FlowLogActive,
        "no-admin-from-anywhere" => SourceCheckKind::NoAdminFromAnywhere,
        "no-subnet-on-default-nacl" => SourceCheckKind::NoSubnetOnDefaultNacl,
        other => unreachable!("kind {other} was refused above"),
    }
}
