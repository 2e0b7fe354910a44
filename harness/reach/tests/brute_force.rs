//! The evaluator against a brute-force packet enumerator on random small networks.
//!
//! The enumerator knows nothing of port sets: it takes one packet at a time, finds each
//! NACL's deciding entry as the lowest-numbered matching one, tries every ephemeral port
//! for the reply (the client's own range where it names one), and looks for any group
//! rule that matches. Random rules only use ports below 64 or ranges that run to 65535
//! (ephemeral range 40-63; a zone's own 40-50 or 52-63), so every port from 64 up
//! behaves like 64: the enumerator tries 0-70 and 65535. Zones route to the internet
//! directly, through a NAT gateway in some zone's subnet, or not at all, and two zones
//! sometimes share a subnet.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use microseg_reach::lint::{self, LintKind};
use microseg_reach::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
use microseg_reach::path::{allowed_ports, trace};
use microseg_reach::{
    Endpoint, Group, GroupPeer, GroupRule, InternetRoute, Nacl, NatHop, Network, ProtocolClass, analyse,
};
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
/// Where a NAT gateway in each zone's subnet stands.
const NAT_ADDRESSES: [&str; 3] = ["10.0.1.6", "10.0.1.22", "10.0.1.38"];
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
    prop_oneof![
        2 => Just(None),
        2 => (0u16..64, 0u16..30).prop_map(|(a, w)| Some(PortRange { from: a, to: (a + w).min(63) })),
        // Open-ended ranges (`40-65535`) tell replies to the NAT (1024-65535) apart from
        // replies to clients (40-63) while every port from 64 up still behaves alike.
        1 => (0u16..64).prop_map(|a| Some(PortRange { from: a, to: 65535 })),
        // Ranges on the zones' own ephemeral edges (40-50, 52-63), so that replies to a
        // zone's range and to the network's range are often decided differently.
        1 => prop_oneof![Just(40u16), Just(51), Just(52)]
            .prop_flat_map(|a| prop_oneof![Just(50u16), Just(63)].prop_map(move |b| (a, b)))
            .prop_filter("ascending", |(a, b)| a <= b)
            .prop_map(|(a, b)| Some(PortRange { from: a, to: b })),
    ]
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
        // Route kinds: none, internet gateway, NAT gateway (weighted to exercise NATs).
        prop::collection::vec(prop_oneof![1 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8)], 3),
        (0usize..3, prop::bool::weighted(0.3)),
        // A zone's own ephemeral range, inside the network's 40-63, or the network's.
        prop::collection::vec(
            prop_oneof![
                2 => Just(None),
                1 => Just(Some(PortRange { from: 40, to: 50 })),
                1 => Just(Some(PortRange { from: 52, to: 63 })),
            ],
            3,
        ),
    )
        .prop_map(|(nacls, groups, members, routes, (nat_at, shared), ephemeral)| {
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
                    // Zone b sometimes shares a's subnet (and so its NACL).
                    let home = if shared && i == 1 { 0 } else { i };
                    let mut z = zone(name, addr, home, &[], routes[i] == 1);
                    z.groups = members[i].clone();
                    z.ephemeral = ephemeral[i];
                    z
                })
                .collect();
            // Route kind 2: through a NAT gateway in zone `nat_at`'s subnet, which gets
            // out only if that zone routes to the internet gateway.
            let nat = NatHop {
                name: "nat".into(),
                addr: ip(NAT_ADDRESSES[nat_at]),
                subnet: endpoints[nat_at].subnet,
                nacl: endpoints[nat_at].nacl,
                upstream: (routes[nat_at] == 1).then(|| "0.0.0.0/0 → igw".to_string()),
                problems: vec![],
            };
            for (i, z) in endpoints.iter_mut().enumerate() {
                if routes[i] == 2 {
                    z.internet_route = Some(InternetRoute::Nat { route: "0.0.0.0/0 → nat".into(), nat: nat.clone() });
                }
            }
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
    // The internet opens connections only through an internet gateway, to an endpoint
    // with a public address; a zone reaches the internet through a NAT gateway, or
    // through an internet gateway with a public address of its own.
    let inbound_ok = !c.internet || matches!(s.internet_route, Some(InternetRoute::Gateway { public: true, .. }));
    let outbound_ok = !s.internet
        || matches!(c.internet_route, Some(InternetRoute::Nat { .. } | InternetRoute::Gateway { public: true, .. }));
    // NACLs lie between two endpoints only when their subnets differ.
    let apart = c.internet || s.internet || c.subnet != s.subnet;
    let nacl = |z: &Endpoint, entries: &[NaclEntry], dir, peer, p| {
        !apart || z.nacl.is_none() || nacl_passes(entries, dir, proto, peer, p)
    };
    let range = c.ephemeral.unwrap_or(EPHEMERAL);
    let replies: Vec<u16> = if has_ports { (range.from..=range.to).collect() } else { vec![0] };
    // Every port from 64 up behaves like 64, so the NAT's 1024-65535 is one port here.
    let nat_replies: Vec<u16> = if has_ports { vec![1024, 65535] } else { vec![0] };
    let nat_ok = match (&c.internet_route, s.internet) {
        (Some(InternetRoute::Nat { nat, .. }), true) => {
            let ne: Vec<NaclEntry> = nat
                .nacl
                .map(|n| Direction::BOTH.iter().flat_map(|&d| net.nacls[n].entries(d).to_vec()).collect())
                .unwrap_or_default();
            let pass = |dir, peer, p| nat.nacl.is_none() || nacl_passes(&ne, dir, proto, peer, p);
            let crossing = nat.subnet != c.subnet;
            nat.upstream.is_some()
                && (!crossing || pass(Direction::Ingress, c.addr, port))
                && pass(Direction::Egress, s.addr, port)
                && nat_replies.iter().all(|&q| pass(Direction::Ingress, s.addr, q))
                && (!crossing || replies.iter().all(|&q| pass(Direction::Egress, c.addr, q)))
        }
        _ => true,
    };
    inbound_ok
        && outbound_ok
        && nat_ok
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

    /// The matrix looks the NACLs' verdicts up in tables built once; the rules it names
    /// for each unintended flow are the ones the single-pair trace names.
    #[test]
    fn unintended_flows_are_explained_as_the_single_pair_trace_explains_them(net in arb_network()) {
        for u in analyse(&net, &[]).unintended {
            let (i, j) = (net.endpoint(&u.from).unwrap(), net.endpoint(&u.to).unwrap());
            let port = u.service.ports.ranges()[0].from;
            let steps = trace(&net, i, j, u.service.protocol, port);
            let passing: Vec<String> = steps.into_iter().filter(|s| s.passes).map(|s| s.text).collect();
            prop_assert_eq!(u.allowed_by, passing);
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
