//! The source's own validation steps: each of a kind the engine knows, naming the
//! zones, NACLs and groups it looks at.

use super::{Checker, Names};
use crate::spec::Spec;

/// Source checks: a known kind, with what that kind needs, and references that resolve.
pub(super) fn source_checks(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) {
    for (i, sc) in spec.source_checks.iter().enumerate() {
        let at = Some(sc.span().start);
        let check = sc.get_ref();
        let field = format!("source_checks[{i}]");
        let needs: &[&str] = match check.kind.as_str() {
            "nacl-associations" => &["nacl", "zone"],
            "group-references" => &["group"],
            "flow-log-active" => &[],
            "routes" => &["zone"],
            "nacl-order" => &["nacl"],
            "no-admin-from-anywhere" | "no-subnet-on-default-nacl" => &[],
            other => {
                c.problem(
                    at,
                    format!("{field}.kind"),
                    format!("{other:?}"),
                    "one of nacl-associations, group-references, flow-log-active, routes, nacl-order, no-admin-from-anywhere, no-subnet-on-default-nacl",
                );
                &[]
            }
        };
        for (name, value, known) in [
            ("zone", &check.zone, &names.zones),
            ("nacl", &check.nacl, &names.nacls),
            ("group", &check.group, &names.groups),
        ] {
            match value {
                Some(v) => {
                    c.known(at, format!("{field}.{name}"), v, known, name);
                }
                None if needs.contains(&name) => c.problem(
                    at,
                    format!("{field}.{name}"),
                    "(missing)",
                    format!("a {} check needs a {name}", check.kind),
                ),
                _ => {}
            }
        }
        for r in &check.references {
            c.known(at, format!("{field}.references"), r, &names.groups, "security group");
        }
        for t in &check.targets {
            if !["local", "internet-gateway", "nat-gateway"].contains(&t.as_str()) {
                c.problem(at, format!("{field}.targets"), format!("{t:?}"), "local, internet-gateway or nat-gateway");
            }
        }
    }
}
