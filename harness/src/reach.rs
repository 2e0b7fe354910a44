//! Intent verification, first cut: does each flow the spec intends actually pass the
//! NACLs, security groups and routes as deployed (or as designed)?
//!
//! Semantics, as the VPC documentation gives them:
//! - NACLs are stateless and evaluated per direction, lowest rule number first; the first
//!   match decides; the `*` entry denies the rest. A connection from A to B needs A's
//!   NACL egress and B's NACL ingress for the request (destination port), and B's egress
//!   and A's ingress for the reply to A's ephemeral port. Every port of the ephemeral
//!   range (1024–65535 by default) must be allowed, since the client picks any of them.
//! - Security groups are stateful and allow-only: the request needs an egress rule of
//!   one of A's groups and an ingress rule of one of B's groups; replies are automatic.
//!   A group peer matches the endpoints that are members of that group (the zone's
//!   workloads are members of the zone's groups).
//! - Traffic to or from the internet needs the zone's route table (explicit association,
//!   else main) to route the internet address to an internet gateway attached to the VPC.
//!
//! A zone is represented by one address inside its subnet, the internet by 203.0.113.10
//! (TEST-NET-3). Unintended flows, shadowed rules and the zone matrix come later.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::bindings::Bindings;
use crate::model::{DEFAULT_DENY_RULE_NUMBER, Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction};
use crate::observe::{
    NaclAssociation, Observed, ObservedInternetGateway, ObservedNacl, ObservedRoute, ObservedRouteTable,
    ObservedSecurityGroup, ObservedSubnet, ObservedVpc,
};
use crate::plan::{FlowEnd, IntendedFlow, Plan, RouteTarget};

/// The address that stands for "the internet".
pub const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// The verdict on one intended flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowVerdict {
    /// The flow.
    pub flow: IntendedFlow,
    /// Whether it passes everything.
    pub allowed: bool,
    /// Each component that blocks it, named, with the reason.
    pub blocked_by: Vec<String>,
}

struct End<'a> {
    name: String,
    addr: IpAddr,
    nacl: Option<&'a ObservedNacl>,
    groups: Vec<&'a ObservedSecurityGroup>,
    group_names: BTreeSet<String>,
    route_table: Option<&'a ObservedRouteTable>,
    internet: bool,
}

fn end<'a>(e: &FlowEnd, plan: &Plan, observed: &'a Observed, b: &Bindings) -> End<'a> {
    match e {
        FlowEnd::Internet => End {
            name: "internet".into(),
            addr: IpAddr::V4(INTERNET),
            nacl: None,
            groups: vec![],
            group_names: BTreeSet::new(),
            route_table: None,
            internet: true,
        },
        FlowEnd::Zone(z) => {
            let subnet = b.zones.get(z).and_then(|id| observed.subnet(id));
            let addr = subnet.map(|s| host_in(s.cidr)).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let group_names: BTreeSet<String> =
                plan.security_groups.iter().filter(|g| &g.zone == z).map(|g| g.name.clone()).collect();
            End {
                name: z.clone(),
                addr,
                nacl: subnet.and_then(|s| observed.nacl_of_subnet(&s.id)),
                groups: group_names
                    .iter()
                    .filter_map(|g| b.security_groups.get(g))
                    .filter_map(|id| observed.security_group(id))
                    .collect(),
                group_names,
                route_table: subnet.and_then(|s| observed.route_table_of_subnet(&s.id)),
                internet: false,
            }
        }
    }
}

/// An address inside a subnet (its tenth host), standing for the zone's workloads.
fn host_in(net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).saturating_add(10))),
        IpNet::V6(n) => IpAddr::V6(n.network()),
    }
}

fn proto_matches(rule: Protocol, packet: Protocol) -> bool {
    rule == Protocol::All || rule == packet
}

/// The first matching entry of a NACL for one packet, by rule number.
fn first_match(
    nacl: &ObservedNacl,
    dir: Direction,
    proto: Protocol,
    peer: IpAddr,
    port: Option<u16>,
) -> Option<&NaclEntry> {
    let mut entries: Vec<&NaclEntry> = nacl.entries.iter().filter(|e| e.direction == dir).collect();
    entries.sort_by_key(|e| e.rule_number);
    entries.into_iter().find(|e| {
        proto_matches(e.protocol, proto)
            && e.cidr.contains(&peer)
            && match (e.ports, port) {
                (Some(r), Some(p)) => r.contains(p),
                _ => true,
            }
    })
}

/// Whether a NACL lets every port of `ports` through; otherwise why not, naming the
/// deciding entry (or the default deny) and the first port range it stops.
fn nacl_allows(
    label: &str,
    nacl: &ObservedNacl,
    dir: Direction,
    proto: Protocol,
    peer: IpAddr,
    ports: Option<PortRange>,
) -> Result<(), String> {
    let probes: Vec<Option<u16>> = match (proto.has_ports(), ports) {
        (true, Some(r)) => {
            // One port per stretch between entry boundaries decides the whole stretch.
            let mut cuts: BTreeSet<u16> = [r.from].into();
            for e in nacl.entries.iter().filter(|e| e.direction == dir) {
                if let Some(p) = e.ports {
                    for c in [p.from, p.to.saturating_add(1)] {
                        if c > r.from && c <= r.to {
                            cuts.insert(c);
                        }
                    }
                }
            }
            cuts.into_iter().map(Some).collect()
        }
        _ => vec![None],
    };
    for port in probes {
        match first_match(nacl, dir, proto, peer, port) {
            Some(e) if e.action == RuleAction::Allow => {}
            // The `*` entry is "nothing else matched"; say so in those words.
            Some(e) if !e.is_default_deny() => {
                let rule =
                    if e.rule_number == DEFAULT_DENY_RULE_NUMBER { "*".into() } else { e.rule_number.to_string() };
                return Err(format!(
                    "{label} NACL {dir}: rule #{rule} denies {proto}{} {} {peer}",
                    port.map(|p| format!("/{p}")).unwrap_or_default(),
                    if dir == Direction::Ingress { "from" } else { "to" }
                ));
            }
            _ => {
                return Err(format!(
                    "{label} NACL {dir}: no entry matches {proto}{} {} {peer}, default deny",
                    port.map(|p| format!("/{p}")).unwrap_or_default(),
                    if dir == Direction::Ingress { "from" } else { "to" }
                ));
            }
        }
    }
    Ok(())
}

fn sg_allows(
    label: &str,
    me: &End<'_>,
    other: &End<'_>,
    dir: Direction,
    proto: Protocol,
    port: Option<u16>,
    b: &Bindings,
) -> Result<(), String> {
    if me.groups.is_empty() {
        return Err(format!("zone {label} has no security group for its workloads"));
    }
    let ok = me.groups.iter().flat_map(|g| &g.rules).filter(|r| r.direction == dir).any(|r| {
        proto_matches(r.protocol, proto)
            && match (r.ports, port) {
                (Some(range), Some(p)) => range.contains(p),
                _ => true,
            }
            && match b.resolve_peer(&r.peer) {
                Peer::Cidr(c) => c.contains(&other.addr),
                Peer::Group(g) => other.group_names.contains(&g),
                _ => false,
            }
    });
    if ok {
        Ok(())
    } else {
        let names: Vec<&str> = me.groups.iter().map(|g| g.name.as_str()).collect();
        Err(format!(
            "security group(s) {} of {label} {dir}: no rule allows {proto}{} {} {}",
            names.join(", "),
            port.map(|p| format!("/{p}")).unwrap_or_default(),
            if dir == Direction::Ingress { "from" } else { "to" },
            other.name
        ))
    }
}

fn route_to_internet(zone: &End<'_>, observed: &Observed) -> Result<(), String> {
    let vpc = observed.vpc.as_ref().map(|v| v.id.as_str()).unwrap_or_default();
    let ok = zone.route_table.is_some_and(|t| {
        t.routes.iter().any(|r| {
            r.destination.parse::<IpNet>().is_ok_and(|d| d.contains(&IpAddr::V4(INTERNET)))
                && observed
                    .internet_gateways
                    .iter()
                    .any(|g| g.id == r.target && g.attached_vpc_ids.iter().any(|v| v == vpc))
        })
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{} route table: no route to the internet through an attached internet gateway", zone.name))
    }
}

/// Evaluates every intended flow of the plan on a deployment.
pub fn evaluate_intent(plan: &Plan, observed: &Observed, b: &Bindings, ephemeral: PortRange) -> Vec<FlowVerdict> {
    plan.intent
        .iter()
        .map(|flow| {
            let (a, z) = (end(&flow.from, plan, observed, b), end(&flow.to, plan, observed, b));
            let port = flow.ports.map(|p| p.from);
            let mut blocked = Vec::new();
            let mut check = |r: Result<(), String>| {
                if let Err(e) = r {
                    blocked.push(e);
                }
            };
            // Request, then reply to the client's ephemeral ports.
            if let Some(n) = a.nacl {
                check(nacl_allows(&a.name, n, Direction::Egress, flow.protocol, z.addr, flow.ports));
            }
            if let Some(n) = z.nacl {
                check(nacl_allows(&z.name, n, Direction::Ingress, flow.protocol, a.addr, flow.ports));
                check(nacl_allows(&z.name, n, Direction::Egress, flow.protocol, a.addr, Some(ephemeral)));
            }
            if let Some(n) = a.nacl {
                check(nacl_allows(&a.name, n, Direction::Ingress, flow.protocol, z.addr, Some(ephemeral)));
            }
            if !a.internet {
                check(sg_allows(&a.name, &a, &z, Direction::Egress, flow.protocol, port, b));
            }
            if !z.internet {
                check(sg_allows(&z.name, &z, &a, Direction::Ingress, flow.protocol, port, b));
            }
            for (zone, other) in [(&a, &z), (&z, &a)] {
                if other.internet && !zone.internet {
                    check(route_to_internet(zone, observed));
                }
            }
            FlowVerdict { flow: flow.clone(), allowed: blocked.is_empty(), blocked_by: blocked }
        })
        .collect()
}

/// The deployment a plan describes, as it would stand on AWS (default deny entries
/// included), with bindings: for evaluating a design before anything is built.
pub fn designed(plan: &Plan) -> (Observed, Bindings) {
    let mut b = Bindings { vpc_id: Some("vpc-designed".into()), ..Default::default() };
    let mut o = Observed {
        vpc: Some(ObservedVpc { id: "vpc-designed".into(), cidr: IpNet::V4(plan.vpc.cidr), tags: Default::default() }),
        ..Default::default()
    };
    for z in &plan.zones {
        let id = format!("subnet-{}", z.name);
        o.subnets.push(ObservedSubnet {
            id: id.clone(),
            cidr: IpNet::V4(z.cidr),
            availability_zone: z.az_suffix.clone(),
            tags: z.tags.clone(),
        });
        b.zones.insert(z.name.clone(), id);
    }
    let deny_all = |d| NaclEntry {
        rule_number: DEFAULT_DENY_RULE_NUMBER,
        direction: d,
        protocol: Protocol::All,
        ports: None,
        cidr: "0.0.0.0/0".parse().expect("literal"),
        action: RuleAction::Deny,
    };
    for n in &plan.nacls {
        let id = format!("acl-{}", n.name);
        let mut entries = n.entries.clone();
        entries.extend(Direction::BOTH.map(deny_all));
        let associations = plan
            .zones
            .iter()
            .filter(|z| z.nacl == n.name)
            .map(|z| NaclAssociation { id: format!("aclassoc-{}", z.name), subnet_id: format!("subnet-{}", z.name) })
            .collect();
        o.nacls.push(ObservedNacl { id: id.clone(), is_default: false, entries, associations, tags: n.tags.clone() });
        b.nacls.insert(n.name.clone(), id);
    }
    for g in &plan.security_groups {
        b.security_groups.insert(g.name.clone(), format!("sg-{}", g.name));
    }
    for g in &plan.security_groups {
        let rules = g
            .expected_rules()
            .into_iter()
            .map(|mut r| {
                if let Peer::Group(name) = &r.peer {
                    r.peer = Peer::GroupId(format!("sg-{name}"));
                }
                r
            })
            .collect();
        o.security_groups.push(ObservedSecurityGroup {
            id: format!("sg-{}", g.name),
            name: g.group_name.clone(),
            description: g.description.clone(),
            rules,
            tags: g.tags.clone(),
        });
    }
    if plan.internet_gateway.is_some() {
        o.internet_gateways.push(ObservedInternetGateway {
            id: "igw-designed".into(),
            attached_vpc_ids: vec!["vpc-designed".into()],
            tags: Default::default(),
        });
        b.internet_gateway_id = Some("igw-designed".into());
    }
    let local =
        ObservedRoute { destination: plan.vpc.cidr.to_string(), target: "local".into(), state: Some("active".into()) };
    o.route_tables.push(ObservedRouteTable {
        id: "rtb-main".into(),
        is_main: true,
        subnet_ids: vec![],
        routes: vec![local.clone()],
        tags: Default::default(),
    });
    for t in &plan.route_tables {
        let mut routes = vec![local.clone()];
        routes.extend(t.routes.iter().map(|(d, target)| ObservedRoute {
            destination: d.to_string(),
            target: match target {
                RouteTarget::InternetGateway => "igw-designed".into(),
            },
            state: Some("active".into()),
        }));
        let id = format!("rtb-{}", t.name);
        o.route_tables.push(ObservedRouteTable {
            id: id.clone(),
            is_main: false,
            subnet_ids: t.zones.iter().map(|z| format!("subnet-{z}")).collect(),
            routes,
            tags: Default::default(),
        });
        b.route_tables.insert(t.name.clone(), id);
    }
    (o, b)
}

/// The verdicts as a table.
pub fn text(verdicts: &[FlowVerdict]) -> String {
    let mut out = String::new();
    let allowed = verdicts.iter().filter(|v| v.allowed).count();
    let _ = writeln!(out, "intended flows: {allowed} of {} pass", verdicts.len());
    for v in verdicts {
        let f = &v.flow;
        let service = format!("{}{}", f.protocol, f.ports.map(|p| format!("/{p}")).unwrap_or_default());
        let _ = writeln!(out, "  {:<5} {} → {} {service}", if v.allowed { "pass" } else { "BLOCK" }, f.from, f.to);
        for why in &v.blocked_by {
            let _ = writeln!(out, "          {why}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn recipe() -> Plan {
        let (s, src) = spec::load("recipe").unwrap();
        Plan::from_spec(&s, &src).unwrap()
    }

    fn verdicts() -> Vec<FlowVerdict> {
        let plan = recipe();
        let (o, b) = designed(&plan);
        evaluate_intent(&plan, &o, &b, PortRange { from: 1024, to: 65535 })
    }

    fn verdict<'a>(v: &'a [FlowVerdict], from: &str, to: &str, port: u16) -> &'a FlowVerdict {
        v.iter()
            .find(|x| {
                x.flow.from.to_string() == from
                    && x.flow.to.to_string() == to
                    && x.flow.ports.map(|p| p.from) == Some(port)
            })
            .unwrap_or_else(|| panic!("no intended flow {from} → {to} /{port}"))
    }

    /// Worked by hand from the recipe's entries: the DMZ admits 80/443 from anywhere and
    /// returns on 1024-65535 to anywhere (rules 100/110 in, 120 out); the DMZ sends 80/443
    /// to the web subnet (egress 100/110), web admits them (ingress 100/110) and returns
    /// to the DMZ on 1024-65535 (egress 110), which the DMZ admits (ingress 120).
    #[test]
    fn the_recipe_lets_through_only_the_front_door() {
        let v = verdicts();
        for (from, to, port) in
            [("internet", "dmz", 80), ("internet", "dmz", 443), ("dmz", "web", 80), ("dmz", "web", 443)]
        {
            let x = verdict(&v, from, to, port);
            assert!(x.allowed, "{from} → {to}/{port}: {:?}", x.blocked_by);
        }
        assert_eq!(v.iter().filter(|x| x.allowed).count(), 4);
    }

    /// Also by hand: web sends 8080 to app (web egress 100, app ingress 100) and app
    /// replies to web on 1024-65535 (app egress 110), but web's ingress has no entry for
    /// replies from app: 10.0.3.x on 1024-65535 falls to the default deny.
    #[test]
    fn web_to_app_dies_on_the_way_back() {
        let v = verdicts();
        let x = verdict(&v, "web", "app", 8080);
        assert!(!x.allowed);
        assert_eq!(
            x.blocked_by,
            vec!["web NACL ingress: no entry matches tcp/1024 from 10.0.3.10, default deny".to_string()]
        );
    }

    /// The management and monitoring NACLs have no entries: their own egress denies.
    /// Monitoring also has no security group in the recipe.
    #[test]
    fn management_and_monitoring_are_sealed_by_their_own_nacls() {
        let v = verdicts();
        let ssh = verdict(&v, "management", "web", 22);
        assert!(
            ssh.blocked_by
                .iter()
                .any(|b| b == "management NACL egress: no entry matches tcp/22 to 10.0.2.10, default deny"),
            "{:?}",
            ssh.blocked_by
        );
        let snmp = verdict(&v, "monitoring", "app", 161);
        assert!(
            snmp.blocked_by.iter().any(|b| b == "zone monitoring has no security group for its workloads"),
            "{:?}",
            snmp.blocked_by
        );
    }

    /// The database reaches the internet through no gateway: it is not on the public
    /// route table, and no inbound entry admits the replies.
    #[test]
    fn database_updates_have_neither_route_nor_return_path() {
        let v = verdicts();
        let x = verdict(&v, "database", "internet", 443);
        assert!(x.blocked_by.iter().any(|b| b.starts_with("database route table: no route")), "{:?}", x.blocked_by);
        assert!(
            x.blocked_by
                .iter()
                .any(|b| b == "database NACL ingress: no entry matches tcp/1024 from 203.0.113.10, default deny"),
            "{:?}",
            x.blocked_by
        );
    }

    #[test]
    fn first_match_decides_and_a_partial_ephemeral_range_blocks() {
        let nacl = |entries: Vec<NaclEntry>| ObservedNacl {
            id: "acl-1".into(),
            is_default: false,
            entries,
            associations: vec![],
            tags: Default::default(),
        };
        let e = |n, action, ports: (u16, u16), cidr: &str| NaclEntry {
            rule_number: n,
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange { from: ports.0, to: ports.1 }),
            cidr: cidr.parse().unwrap(),
            action,
        };
        let peer: IpAddr = "10.0.3.10".parse().unwrap();
        // A deny at 90 before an allow at 100 blocks; the same deny after it does not.
        let shadowed = nacl(vec![
            e(100, RuleAction::Allow, (80, 80), "0.0.0.0/0"),
            e(90, RuleAction::Deny, (80, 80), "10.0.0.0/16"),
        ]);
        assert!(
            nacl_allows("x", &shadowed, Direction::Ingress, Protocol::Tcp, peer, Some(PortRange::single(80)))
                .unwrap_err()
                .contains("rule #90 denies")
        );
        let later = nacl(vec![
            e(100, RuleAction::Allow, (80, 80), "0.0.0.0/0"),
            e(110, RuleAction::Deny, (80, 80), "10.0.0.0/16"),
        ]);
        assert!(nacl_allows("x", &later, Direction::Ingress, Protocol::Tcp, peer, Some(PortRange::single(80))).is_ok());
        // Only half the ephemeral range open: blocked, and the first closed port named.
        let half = nacl(vec![e(100, RuleAction::Allow, (1024, 32767), "10.0.0.0/16")]);
        assert!(
            nacl_allows("x", &half, Direction::Ingress, Protocol::Tcp, peer, Some(PortRange { from: 1024, to: 65535 }))
                .unwrap_err()
                .contains("tcp/32768")
        );
        // A /16 entry covers a /24 peer; a udp entry does not match tcp.
        let udp =
            nacl(vec![NaclEntry { protocol: Protocol::Udp, ..e(100, RuleAction::Allow, (80, 80), "10.0.0.0/16") }]);
        assert!(nacl_allows("x", &udp, Direction::Ingress, Protocol::Tcp, peer, Some(PortRange::single(80))).is_err());
    }
}
