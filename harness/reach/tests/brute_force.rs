//! The evaluator against a brute-force packet enumerator on random small networks.
//!
//! The enumerator knows nothing of port sets: it takes one packet at a time, finds each
//! NACL's deciding entry as the lowest-numbered matching one, tries every ephemeral port
//! for the reply, and looks for any group rule that matches. Random rules only use ports
//! below 64 (ephemeral range 40-63), so every port from 64 up behaves like 64: the
//! enumerator tries 0-70 and 65535.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use microseg_reach::lint::{self, LintKind};
use microseg_reach::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
use microseg_reach::path::allowed_ports;
use microseg_reach::{Endpoint, Group, GroupPeer, GroupRule, Nacl, Network, ProtocolClass, analyse};
use proptest::prelude::*;

const CIDRS: [&str; 10] = [
    "0.0.0.0/0",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.1.0/28",
    "10.0.1.16/28",
    "10.0.1.32/28",
    "10.0.1.5/32",
    "10.0.1.21/32",
    "203.0.113.0/24",
    "10.0.1.0/26",
];
const ZONES: [(&str, &str); 3] = [("a", "10.0.1.5"), ("b", "10.0.1.21"), ("c", "10.0.1.37")];
const EPHEMERAL: PortRange = PortRange { from: 40, to: 63 };

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::All),
        Just(Protocol::Tcp),
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::Number(47))
    ]
}

fn arb_ports() -> impl Strategy<Value = Option<PortRange>> {
    prop_oneof![Just(None), (0u16..64, 0u16..30).prop_map(|(a, w)| Some(PortRange { from: a, to: (a + w).min(63) }))]
}

fn arb_cidr() -> impl Strategy<Value = ipnet::IpNet> {
    (0..CIDRS.len()).prop_map(|i| CIDRS[i].parse().unwrap())
}

fn arb_nacl() -> impl Strategy<Value = Vec<NaclEntry>> {
    prop::collection::vec((any::<bool>(), arb_protocol(), arb_ports(), arb_cidr(), prop::bool::weighted(0.7)), 0..7)
        .prop_flat_map(|raw| {
            let n = raw.len();
            (Just(raw), Just((1..=n as i32).collect::<Vec<_>>()).prop_shuffle())
        })
        .prop_map(|(raw, numbers)| {
            raw.into_iter()
                .zip(numbers)
                .map(|((ingress, protocol, ports, cidr, allow), n)| NaclEntry {
                    rule_number: n * 10,
                    direction: if ingress { Direction::Ingress } else { Direction::Egress },
                    protocol,
                    ports: if protocol.has_ports() { ports } else { None },
                    cidr,
                    action: if allow { RuleAction::Allow } else { RuleAction::Deny },
                })
                .collect()
        })
}

/// A group rule before resolution: its peer a CIDR (`Ok`) or a group index (`Err`).
type RawRule = (Direction, Protocol, Option<PortRange>, Result<ipnet::IpNet, usize>);

fn arb_group(groups: usize) -> impl Strategy<Value = Vec<RawRule>> {
    prop::collection::vec(
        (
            prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
            arb_protocol(),
            arb_ports(),
            prop_oneof![arb_cidr().prop_map(Ok), (0..groups).prop_map(Err)],
        ),
        0..7,
    )
}

/// A NACL that often ends in "allow everything" at #1000 both ways, so that random
/// networks let a good share of traffic through and the comparison has something to bite.
fn arb_zone_nacl() -> impl Strategy<Value = Vec<NaclEntry>> {
    (arb_nacl(), prop::bool::weighted(0.75)).prop_map(|(mut entries, open)| {
        if open {
            for dir in Direction::BOTH {
                entries.push(NaclEntry {
                    rule_number: 1000,
                    direction: dir,
                    protocol: Protocol::All,
                    ports: None,
                    cidr: "0.0.0.0/0".parse().unwrap(),
                    action: RuleAction::Allow,
                });
            }
        }
        entries
    })
}

/// A group that often allows all egress (AWS's default), plus random rules.
fn arb_zone_group(groups: usize) -> impl Strategy<Value = Vec<RawRule>> {
    (arb_group(groups), prop::bool::weighted(0.75)).prop_map(|(mut rules, open)| {
        if open {
            rules.push((Direction::Egress, Protocol::All, None, Ok("0.0.0.0/0".parse().unwrap())));
        }
        rules
    })
}

fn arb_network() -> impl Strategy<Value = Network> {
    (
        prop::collection::vec(arb_zone_nacl(), 3),
        prop::collection::vec(arb_zone_group(3), 3),
        prop::collection::vec(prop::collection::btree_set(0usize..3, 1..3), 3),
        prop::collection::vec(any::<bool>(), 3),
    )
        .prop_map(|(nacls, groups, members, routes)| {
            let groups = groups
                .into_iter()
                .enumerate()
                .map(|(i, rules)| Group {
                    name: format!("g{i}"),
                    rules: rules
                        .into_iter()
                        .map(|(direction, protocol, ports, peer)| {
                            let ports = if protocol.has_ports() { ports } else { None };
                            let (rule_peer, peer) = match peer {
                                Ok(c) => (Peer::Cidr(c), GroupPeer::Cidr(c)),
                                Err(g) => (Peer::Group(format!("g{g}")), GroupPeer::Group(g)),
                            };
                            GroupRule { rule: SgRule { direction, protocol, ports, peer: rule_peer }, peer }
                        })
                        .collect(),
                })
                .collect();
            let mut endpoints: Vec<Endpoint> = ZONES
                .iter()
                .enumerate()
                .map(|(i, (name, addr))| {
                    let mut z = zone(name, addr, i, &[], routes[i]);
                    z.groups = members[i].clone();
                    z
                })
                .collect();
            endpoints.push(Endpoint::internet(ip("203.0.113.10")));
            Network {
                nacls: nacls.into_iter().enumerate().map(|(i, e)| Nacl::new(format!("n{i}"), e)).collect(),
                groups,
                endpoints,
                ephemeral: EPHEMERAL,
            }
        })
}

// ---- the enumerator -------------------------------------------------------------------

fn proto_of(class: ProtocolClass) -> u8 {
    match class {
        ProtocolClass::Tcp => 6,
        ProtocolClass::Udp => 17,
        ProtocolClass::Icmp => 1,
        ProtocolClass::Number(n) => n,
        ProtocolClass::Other => 99,
    }
}

fn matches(p: Protocol, ports: Option<PortRange>, proto: u8, port: u16) -> bool {
    let number = match p {
        Protocol::All => return true,
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Icmp => 1,
        Protocol::Number(n) => n,
    };
    number == proto && (!(proto == 6 || proto == 17) || ports.is_none_or(|r| r.from <= port && port <= r.to))
}

fn nacl_passes(entries: &[NaclEntry], dir: Direction, proto: u8, peer: IpAddr, port: u16) -> bool {
    decide(entries, dir, proto, peer, port).is_some_and(|e| e.action == RuleAction::Allow)
}

fn groups_pass(net: &Network, me: &Endpoint, dir: Direction, proto: u8, port: u16, peer: &Endpoint) -> bool {
    me.groups.iter().flat_map(|&g| &net.groups[g].rules).any(|r| {
        r.rule.direction == dir
            && matches(r.rule.protocol, r.rule.ports, proto, port)
            && match &r.peer {
                GroupPeer::Cidr(c) => c.contains(&peer.addr),
                GroupPeer::Group(g) => peer.groups.contains(g),
                GroupPeer::Unresolved(_) => false,
            }
    })
}

fn decide(list: &[NaclEntry], dir: Direction, proto: u8, peer: IpAddr, port: u16) -> Option<&NaclEntry> {
    list.iter()
        .filter(|e| e.direction == dir && e.cidr.contains(&peer) && matches(e.protocol, e.ports, proto, port))
        .min_by_key(|e| e.rule_number)
}

fn entries_of(net: &Network, e: &Endpoint) -> Vec<NaclEntry> {
    e.nacl.map(|n| Direction::BOTH.iter().flat_map(|&d| net.nacls[n].entries(d).to_vec()).collect()).unwrap_or_default()
}

fn packet_passes(net: &Network, i: usize, j: usize, class: ProtocolClass, port: u16) -> bool {
    let (c, s) = (&net.endpoints[i], &net.endpoints[j]);
    let proto = proto_of(class);
    let (ce, se) = (entries_of(net, c), entries_of(net, s));
    let has_ports = proto == 6 || proto == 17;
    let route = |z: &Endpoint, other: &Endpoint| !other.internet || z.internet_route.is_some();
    let nacl = |z: &Endpoint, entries: &[NaclEntry], dir, peer, p| {
        z.nacl.is_none() || nacl_passes(entries, dir, proto, peer, p)
    };
    let replies: Vec<u16> = if has_ports { (EPHEMERAL.from..=EPHEMERAL.to).collect() } else { vec![0] };
    route(c, s)
        && route(s, c)
        && nacl(c, &ce, Direction::Egress, s.addr, port)
        && nacl(s, &se, Direction::Ingress, c.addr, port)
        && replies
            .iter()
            .all(|&q| nacl(s, &se, Direction::Egress, c.addr, q) && nacl(c, &ce, Direction::Ingress, s.addr, q))
        && (c.internet || groups_pass(net, c, Direction::Egress, proto, port, s))
        && (s.internet || groups_pass(net, s, Direction::Ingress, proto, port, c))
}

fn ports_to_try(class: ProtocolClass) -> Vec<u16> {
    if class.has_ports() { (0..=70).chain([1000, 65535]).collect() } else { vec![0] }
}

/// Addresses that tell every CIDR of [`CIDRS`] apart, and protocols that tell every
/// rule's protocol apart (99 stands for every protocol no rule names).
const ADDRESSES: [&str; 12] = [
    "10.0.1.5",
    "10.0.1.6",
    "10.0.1.21",
    "10.0.1.22",
    "10.0.1.37",
    "10.0.1.50",
    "10.0.1.70",
    "10.0.2.1",
    "10.1.0.1",
    "203.0.113.10",
    "198.51.100.1",
    "8.8.8.8",
];
const PROTOCOLS: [u8; 5] = [6, 17, 1, 47, 99];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn allowed_ports_agree_with_packet_by_packet_enumeration(net in arb_network()) {
        let analysis = analyse(&net, &[]);
        for i in 0..net.endpoints.len() {
            for j in 0..net.endpoints.len() {
                if i == j || (net.endpoints[i].internet && net.endpoints[j].internet) {
                    continue;
                }
                for class in net.classes() {
                    let fast = allowed_ports(&net, i, j, class);
                    for port in ports_to_try(class) {
                        prop_assert_eq!(
                            fast.contains(port),
                            packet_passes(&net, i, j, class, port),
                            "{} → {} {}/{}", net.endpoints[i].name, net.endpoints[j].name, class, port
                        );
                    }
                    // The matrix says the same as the single-pair evaluation.
                    let cell = analysis.matrix.cell(&net.endpoints[i].name, &net.endpoints[j].name).unwrap();
                    let in_cell = cell.allowed.iter().find(|s| s.protocol == class).map(|s| s.ports.clone()).unwrap_or_default();
                    prop_assert_eq!(in_cell, fast);
                }
            }
        }
    }

    /// A NACL entry is shadowed exactly when it decides no packet, and redundant exactly
    /// when it decides some but deleting it changes no decision.
    #[test]
    fn nacl_lint_agrees_with_enumeration(entries in arb_nacl()) {
        let nacl = Nacl::new("n", entries.clone());
        let found: BTreeSet<(String, LintKind)> = lint::nacl(&nacl).into_iter().map(|l| (l.rule, l.kind)).collect();
        for e in &entries {
            let without: Vec<NaclEntry> = entries.iter().filter(|x| *x != e).cloned().collect();
            let (mut first_somewhere, mut changes) = (false, false);
            for addr in ADDRESSES.iter().map(|a| ip(a)) {
                for proto in PROTOCOLS {
                    for port in (0..=70).chain([65535]) {
                        let winner = decide(&entries, e.direction, proto, addr, port);
                        if winner == Some(e) {
                            first_somewhere = true;
                            let after = decide(&without, e.direction, proto, addr, port).map_or(RuleAction::Deny, |x| x.action);
                            changes |= after != e.action;
                        }
                    }
                }
            }
            let text = {
                let ports = e.ports.map(|p| format!("/{p}")).unwrap_or_default();
                format!("#{} {} {}{ports} {}", e.rule_number, e.action, e.protocol, e.cidr)
            };
            let expected = if !first_somewhere { Some(LintKind::Shadowed) } else if !changes { Some(LintKind::Redundant) } else { None };
            let got = found.iter().find(|(r, _)| *r == text).map(|(_, k)| *k);
            prop_assert_eq!(got, expected, "{}", text);
        }
    }
}

/// The comparison above only means something if random networks let traffic through:
/// at least a third of them must allow some traffic between some pair.
#[test]
fn random_networks_let_enough_traffic_through_to_test_anything() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_network();
    let samples = 200;
    let open = (0..samples)
        .filter(|_| {
            let net = strategy.new_tree(&mut runner).unwrap().current();
            let n = net.endpoints.len();
            (0..n).any(|i| {
                (0..n).any(|j| i != j && net.classes().into_iter().any(|c| !allowed_ports(&net, i, j, c).is_empty()))
            })
        })
        .count();
    assert!(open * 3 >= samples, "only {open} of {samples} random networks allow any traffic");
}
