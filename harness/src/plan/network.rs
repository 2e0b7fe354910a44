//! The network a plan builds: the VPC, its zones (one subnet each) and their NACL
//! associations, NAT gateways, NACLs and their entries, route tables and their routes
//! through the internet or NAT gateways.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net};
use toml::Spanned;

use super::{
    Checker, DEFAULT_EPHEMERAL, DEFAULT_NACL, Names, PlannedNacl, PlannedNatGateway, PlannedRouteTable, PlannedZone,
    RouteTarget, join,
};
use crate::model::{Direction, MAX_USER_RULE_NUMBER, NaclEntry, PortRange, RuleAction};
use crate::spec::{NaclEntrySpec, RouteSpec, Spec, ZoneSpec};

/// The VPC's CIDR and the source ports its clients pick from; each `None` if invalid.
pub(super) fn vpc(c: &mut Checker<'_>, spec: &Spec) -> (Option<Ipv4Net>, Option<PortRange>) {
    let cidr = c.ipv4(spec.vpc.cidr.span().start, "vpc.cidr", spec.vpc.cidr.get_ref());
    let ephemeral = match &spec.vpc.ephemeral_ports {
        Some(p) => c.ephemeral(p.span().start, "vpc.ephemeral_ports", Some(p.get_ref())),
        None => Some(DEFAULT_EPHEMERAL),
    };
    (cidr, ephemeral)
}

/// Zones: CIDRs inside the VPC, not overlapping, names unique, each on a known NACL.
/// A zone whose CIDR is invalid is left out of the plan.
pub(super) fn zones(
    c: &mut Checker<'_>,
    spec: &Spec,
    vpc_cidr: Option<Ipv4Net>,
    names: &Names<'_>,
) -> Vec<PlannedZone> {
    let mut zones = Vec::new();
    let mut seen_zone = BTreeSet::new();
    for (i, z) in spec.zones.iter().enumerate() {
        let at = z.span().start;
        let zone = z.get_ref();
        let field = format!("zones[{}]", zone.name);
        if !seen_zone.insert(zone.name.as_str()) {
            c.problem(Some(at), format!("zones[{i}].name"), format!("{:?}", zone.name), "duplicate zone name");
        }
        let cidr = c.ipv4(at, &format!("{field}.cidr"), &zone.cidr);
        if let (Some(cidr), Some(vpc)) = (cidr, vpc_cidr)
            && !vpc.contains(&cidr)
        {
            c.problem(
                Some(at),
                format!("{field}.cidr"),
                format!("{:?}", zone.cidr),
                format!("outside the VPC's {vpc}"),
            );
        }
        if let Some(cidr) = cidr {
            for other in &zones {
                let other: &PlannedZone = other;
                if other.cidr.contains(&cidr) || cidr.contains(&other.cidr) {
                    c.problem(
                        Some(at),
                        format!("{field}.cidr"),
                        format!("{:?}", zone.cidr),
                        format!("overlaps zone {:?} ({})", other.name, other.cidr),
                    );
                }
            }
        }
        let nacl = zone_nacl(c, at, &field, zone, names);
        if zone.az.is_empty() || !zone.az.chars().all(|ch| ch.is_ascii_lowercase()) {
            c.problem(Some(at), format!("{field}.az"), format!("{:?}", zone.az), "an AZ suffix such as \"a\"");
        }
        let ephemeral = c.ephemeral(at, &format!("{field}.ephemeral_ports"), zone.ephemeral_ports.as_ref());
        if zone.public && zone.isolated {
            c.problem(
                Some(at),
                format!("{field}.public"),
                "true",
                "an isolated zone has no way to or from the internet: it cannot be public too",
            );
        }
        if let Some(cidr) = cidr {
            zones.push(PlannedZone {
                name: zone.name.clone(),
                cidr,
                az_suffix: zone.az.clone(),
                subnet_name: zone.subnet_name.clone(),
                nacl,
                tier: zone.tier.clone(),
                isolated: zone.isolated,
                public: zone.public,
                tags: zone.tags.clone(),
                ephemeral,
            });
        }
    }
    if spec.zones.is_empty() {
        c.problem(None, "zones", "[]", "a scenario needs at least one zone");
    }
    zones
}

/// The NACL a zone is associated with: one from `[[nacls]]`, or [`DEFAULT_NACL`].
fn zone_nacl(c: &mut Checker<'_>, at: usize, field: &str, zone: &ZoneSpec, names: &Names<'_>) -> String {
    match &zone.nacl {
        Some(n) if n == DEFAULT_NACL => n.clone(),
        None => {
            c.problem(
                Some(at),
                format!("{field}.nacl"),
                "(missing)",
                "every zone needs a NACL; name one from [[nacls]], or \"default\" for the VPC's default NACL",
            );
            String::new()
        }
        Some(n) if !names.nacls.contains(n.as_str()) => {
            c.problem(
                Some(at),
                format!("{field}.nacl"),
                format!("{n:?}"),
                format!("no NACL of that name (nor \"default\"); known: {}", join(&names.nacls)),
            );
            n.clone()
        }
        Some(n) => n.clone(),
    }
}

/// NAT gateways: in a zone, names unique, behind an internet gateway.
pub(super) fn nat_gateways(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) -> Vec<PlannedNatGateway> {
    let mut nat_gateways = Vec::new();
    for n in &spec.nat_gateways {
        let (at, nat) = (n.span().start, n.get_ref());
        let field = format!("nat_gateways[{}]", nat.name);
        if nat_gateways.iter().any(|x: &PlannedNatGateway| x.name == nat.name) {
            c.problem(Some(at), format!("{field}.name"), format!("{:?}", nat.name), "duplicate NAT gateway name");
        }
        c.known(Some(at), format!("{field}.zone"), &nat.zone, &names.zones, "zone");
        if spec.internet_gateway.is_none() {
            c.problem(
                Some(at),
                field.clone(),
                format!("{:?}", nat.name),
                "a NAT gateway reaches the internet only through an internet gateway; add [internet_gateway]",
            );
        }
        nat_gateways.push(PlannedNatGateway {
            name: nat.name.clone(),
            zone: nat.zone.clone(),
            tag_name: nat.tag_name.clone(),
        });
    }
    nat_gateways
}

/// NACLs: names unique, entries valid, rule numbers unique per direction.
pub(super) fn nacls(c: &mut Checker<'_>, spec: &Spec) -> Vec<PlannedNacl> {
    let mut nacls = Vec::new();
    let mut seen_nacl = BTreeSet::new();
    for n in &spec.nacls {
        let nacl = n.get_ref();
        if !seen_nacl.insert(nacl.name.as_str()) {
            c.problem(Some(n.span().start), "nacls.name", format!("{:?}", nacl.name), "duplicate NACL name");
        }
        let mut entries = Vec::new();
        for (direction, list) in [(Direction::Ingress, &nacl.ingress), (Direction::Egress, &nacl.egress)] {
            let mut numbers = BTreeMap::new();
            for (i, e) in list.iter().enumerate() {
                let field = format!("nacls[{}].{direction}[{i}]", nacl.name);
                // Duplicates are judged on the raw number, so an entry with another
                // error still counts as taking its number.
                let duplicate = numbers.insert(e.get_ref().rule, i);
                if let Some(first) = duplicate {
                    c.problem(
                        Some(e.span().start),
                        format!("{field}.rule"),
                        e.get_ref().rule,
                        format!("duplicate rule number in {direction}; {direction}[{first}] has it already"),
                    );
                }
                if let Some(entry) = nacl_entry(c, e, &field, direction)
                    && duplicate.is_none()
                {
                    entries.push(entry);
                }
            }
        }
        entries.sort_by_key(|e| (e.direction, e.rule_number));
        nacls.push(PlannedNacl {
            name: nacl.name.clone(),
            tag_name: nacl.tag_name.clone(),
            tags: nacl.tags.clone(),
            entries,
        });
    }
    nacls
}

fn nacl_entry(c: &mut Checker<'_>, e: &Spanned<NaclEntrySpec>, field: &str, direction: Direction) -> Option<NaclEntry> {
    let at = e.span().start;
    let entry = e.get_ref();
    let mut ok = true;
    if !(1..=i64::from(MAX_USER_RULE_NUMBER)).contains(&entry.rule) {
        c.problem(
            Some(at),
            format!("{field}.rule"),
            entry.rule,
            format!("rule numbers run from 1 to {MAX_USER_RULE_NUMBER}"),
        );
        ok = false;
    }
    let protocol = c.protocol(at, &format!("{field}.protocol"), &entry.protocol);
    let ports = protocol.and_then(|p| c.ports(at, &format!("{field}.ports"), p, entry.ports.as_ref()));
    let cidr = match entry.cidr.parse::<IpNet>() {
        Ok(net) => Some(net),
        Err(_) => {
            c.problem(
                Some(at),
                format!("{field}.cidr"),
                format!("{:?}", entry.cidr),
                "not a CIDR block (e.g. 0.0.0.0/0)",
            );
            None
        }
    };
    let action = match entry.action.as_str() {
        "allow" => Some(RuleAction::Allow),
        "deny" => Some(RuleAction::Deny),
        other => {
            c.problem(Some(at), format!("{field}.action"), format!("{other:?}"), "allow or deny");
            None
        }
    };
    if !ok {
        return None;
    }
    Some(NaclEntry {
        rule_number: entry.rule as i32,
        direction,
        protocol: protocol?,
        ports: ports?,
        cidr: cidr?,
        action: action?,
    })
}

/// Route tables: associated with known zones, each route to a gateway the plan has.
pub(super) fn route_tables(c: &mut Checker<'_>, spec: &Spec, names: &Names<'_>) -> Vec<PlannedRouteTable> {
    let mut route_tables = Vec::new();
    for r in &spec.route_tables {
        let at = r.span().start;
        let rt = r.get_ref();
        for z in &rt.zones {
            c.known(Some(at), format!("route_tables[{}].zones", rt.name), z, &names.zones, "zone");
        }
        let mut routes = Vec::new();
        for (i, route) in rt.routes.iter().enumerate() {
            let field = format!("route_tables[{}].routes[{i}]", rt.name);
            let dest = c.ipv4(at, &format!("{field}.destination"), &route.destination);
            let target = route_target(c, spec, at, &field, route, names);
            if let (Some(d), Some(t)) = (dest, target) {
                routes.push((d, t));
            }
        }
        route_tables.push(PlannedRouteTable {
            name: rt.name.clone(),
            tag_name: rt.tag_name.clone(),
            zones: rt.zones.clone(),
            routes,
        });
    }
    route_tables
}

fn route_target(
    c: &mut Checker<'_>,
    spec: &Spec,
    at: usize,
    field: &str,
    route: &RouteSpec,
    names: &Names<'_>,
) -> Option<RouteTarget> {
    match route.target.as_str() {
        "nat-gateway" => match &route.nat_gateway {
            Some(n) => c
                .known(Some(at), format!("{field}.nat_gateway"), n, &names.nat_gateways, "NAT gateway")
                .then(|| RouteTarget::NatGateway(n.clone())),
            None => {
                c.problem(
                    Some(at),
                    format!("{field}.nat_gateway"),
                    "(missing)",
                    "a nat-gateway route names its NAT gateway from [[nat_gateways]]",
                );
                None
            }
        },
        _ if route.nat_gateway.is_some() => {
            c.problem(
                Some(at),
                format!("{field}.nat_gateway"),
                format!("{:?}", route.nat_gateway.as_deref().unwrap_or_default()),
                "only a nat-gateway route names a NAT gateway",
            );
            None
        }
        "internet-gateway" if spec.internet_gateway.is_some() => Some(RouteTarget::InternetGateway),
        "internet-gateway" => {
            c.problem(
                Some(at),
                format!("{field}.target"),
                "\"internet-gateway\"",
                "the scenario has no [internet_gateway]",
            );
            None
        }
        other => {
            c.problem(
                Some(at),
                format!("{field}.target"),
                format!("{other:?}"),
                "unknown route target; use \"internet-gateway\" or \"nat-gateway\"",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::{BASE, plan_of};

    #[test]
    fn zone_cidr_outside_the_vpc_is_caught() {
        let text =
            format!("{BASE}[[zones]]\nname = \"b\"\ncidr = \"192.168.0.0/24\"\nsubnet_name = \"b\"\nnacl = \"a\"\n");
        let msgs = plan_of(&text).unwrap_err().to_string();
        assert!(msgs.contains("zones[b].cidr = \"192.168.0.0/24\": outside the VPC's 10.0.0.0/16"), "{msgs}");
    }
}
