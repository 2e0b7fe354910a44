//! Each semantic rule of the evaluator on a case small enough to work out by hand. The
//! expected values come from the VPC documentation's rules applied on paper, written in
//! the comment above each assertion.

mod common;

use common::*;
use microseg_reach::matrix::{CellVerdict, evaluate};
use microseg_reach::model::{Direction, PortRange};
use microseg_reach::path::{allowed_ports, nacl_ports, trace};
use microseg_reach::{Group, Intent, InternetRoute, Nacl, NatHop, Network, ProtocolClass, analyse};

const TCP: ProtocolClass = ProtocolClass::Tcp;

/// Client `a` (10.0.1.10) and server `b` (10.0.2.10), each on its own NACL and group.
fn pair(
    a_nacl: Vec<microseg_reach::model::NaclEntry>,
    b_nacl: Vec<microseg_reach::model::NaclEntry>,
    groups: Vec<Group>,
) -> Network {
    Network {
        nacls: vec![Nacl::new("a", a_nacl), Nacl::new("b", b_nacl)],
        groups,
        endpoints: vec![zone("a", "10.0.1.10", 0, &[0], false), zone("b", "10.0.2.10", 1, &[1], false)],
        ephemeral: Network::DEFAULT_EPHEMERAL,
    }
}

fn open_groups() -> Vec<Group> {
    let all = |name: &str| Group {
        name: name.into(),
        rules: vec![cidr_rule("in", "-1", "", "0.0.0.0/0"), cidr_rule("out", "-1", "", "0.0.0.0/0")],
    };
    vec![all("sg-a"), all("sg-b")]
}

#[test]
fn the_first_match_decides_whatever_comes_later() {
    // #90 denies tcp/80 from 10.0.0.0/16 before #100 allows it from anywhere; no entry
    // names another port. So 10.0.3.10 gets no port at all, and 192.0.2.1 gets 80.
    let n = Nacl::new(
        "n",
        [entry(100, "in", "tcp", "80", "0.0.0.0/0", "allow"), entry(90, "in", "tcp", "80", "10.0.0.0/16", "deny")],
    );
    assert!(nacl_ports(&n, Direction::Ingress, TCP, ip("10.0.3.10")).is_empty());
    assert_eq!(nacl_ports(&n, Direction::Ingress, TCP, ip("192.0.2.1")).to_string(), "80");
    // The same deny numbered after the allow never decides anything.
    let later = Nacl::new(
        "n",
        [entry(100, "in", "tcp", "80", "0.0.0.0/0", "allow"), entry(110, "in", "tcp", "80", "10.0.0.0/16", "deny")],
    );
    assert_eq!(nacl_ports(&later, Direction::Ingress, TCP, ip("10.0.3.10")).to_string(), "80");
}

#[test]
fn a_deny_takes_only_the_ports_it_names_from_a_later_allow() {
    // #100 denies tcp 0-1023 from the app subnet; #200 allows all tcp from the VPC.
    // From app (10.0.3.10): 1024-65535. From the database (10.0.4.10): every port.
    let n = Nacl::new(
        "n",
        [
            entry(200, "in", "tcp", "all", "10.0.0.0/16", "allow"),
            entry(100, "in", "tcp", "0-1023", "10.0.3.0/24", "deny"),
        ],
    );
    assert_eq!(nacl_ports(&n, Direction::Ingress, TCP, ip("10.0.3.10")).to_string(), "1024-65535");
    assert!(nacl_ports(&n, Direction::Ingress, TCP, ip("10.0.4.10")).is_full());
}

#[test]
fn overlapping_cidrs_are_decided_by_rule_number_not_by_prefix_length() {
    // #100 allow tcp/22 from 10.0.5.0/24; #110 deny all from 10.0.0.0/16; #120 allow all
    // from anywhere. 10.0.5.10: only 22 (23 hits #110). 10.0.6.10: nothing. 8.8.8.8: all.
    let n = Nacl::new(
        "n",
        [
            entry(120, "in", "-1", "", "0.0.0.0/0", "allow"),
            entry(110, "in", "-1", "", "10.0.0.0/16", "deny"),
            entry(100, "in", "tcp", "22", "10.0.5.0/24", "allow"),
        ],
    );
    assert_eq!(nacl_ports(&n, Direction::Ingress, TCP, ip("10.0.5.10")).to_string(), "22");
    assert!(nacl_ports(&n, Direction::Ingress, TCP, ip("10.0.6.10")).is_empty());
    assert!(nacl_ports(&n, Direction::Ingress, TCP, ip("8.8.8.8")).is_full());
    // UDP from 10.0.5.10 meets #110 first (the tcp entry does not match udp).
    assert!(nacl_ports(&n, Direction::Ingress, ProtocolClass::Udp, ip("10.0.5.10")).is_empty());
}

#[test]
fn replies_need_every_ephemeral_port_on_both_nacls() {
    // a sends tcp/443 to b; b's NACL returns only 1024-32767 to a. Linux clients pick
    // 32768-60999, so with the default range (1024-65535) the flow is blocked, and the
    // first port that fails is 32768, on b's egress.
    let b = vec![
        entry(100, "in", "tcp", "443", "10.0.1.0/24", "allow"),
        entry(100, "out", "tcp", "1024-32767", "10.0.1.0/24", "allow"),
    ];
    let mut net = pair(open_nacl(), b, open_groups());
    assert!(allowed_ports(&net, 0, 1, TCP).is_empty());
    let why: Vec<String> = trace(&net, 0, 1, TCP, 443).into_iter().filter(|s| !s.passes).map(|s| s.text).collect();
    assert_eq!(why, ["b NACL egress: no entry matches tcp/32768 to 10.0.1.10, default deny"]);
    // With a client that only uses 1024-32767, the reply fits and only 443 passes.
    net.ephemeral = PortRange { from: 1024, to: 32767 };
    assert_eq!(allowed_ports(&net, 0, 1, TCP).to_string(), "443");
}

#[test]
fn a_clients_own_ephemeral_range_decides_its_replies_and_the_servers_does_not() {
    // As above, b returns only 1024-32767 to a. The network keeps the default range; the
    // client a naming 1024-32767 as its own is enough, and the server's range is beside
    // the point (b picks no source port for a connection it accepts).
    let b = vec![
        entry(100, "in", "tcp", "443", "10.0.1.0/24", "allow"),
        entry(100, "out", "tcp", "1024-32767", "10.0.1.0/24", "allow"),
    ];
    let mut net = pair(open_nacl(), b, open_groups());
    net.endpoints[1].ephemeral = Some(PortRange { from: 1024, to: 32767 });
    assert!(allowed_ports(&net, 0, 1, TCP).is_empty(), "the server's range must not count");
    net.endpoints[0].ephemeral = Some(PortRange { from: 1024, to: 32767 });
    assert_eq!(allowed_ports(&net, 0, 1, TCP).to_string(), "443");
    // The network's range no longer matters for this client, even when it is narrower.
    net.ephemeral = PortRange { from: 40000, to: 40000 };
    net.endpoints[0].ephemeral = Some(PortRange { from: 32768, to: 32768 });
    let why: Vec<String> = trace(&net, 0, 1, TCP, 443).into_iter().filter(|s| !s.passes).map(|s| s.text).collect();
    assert_eq!(why, ["b NACL egress: no entry matches tcp/32768 to 10.0.1.10, default deny"]);
}

#[test]
fn groups_are_stateful_and_need_egress_on_one_side_and_ingress_on_the_other() {
    // b admits tcp/5432 from group a; b has no egress rule at all; a may send anything.
    // a → b on 5432 passes (b's reply rides connection tracking). b → a passes nothing:
    // a's group admits nothing and b's has no egress.
    let groups = vec![
        Group { name: "sg-a".into(), rules: vec![cidr_rule("out", "-1", "", "0.0.0.0/0")] },
        Group { name: "sg-b".into(), rules: vec![group_rule("in", "tcp", "5432", 0, "sg-a")] },
    ];
    let net = pair(open_nacl(), open_nacl(), groups);
    assert_eq!(allowed_ports(&net, 0, 1, TCP).to_string(), "5432");
    assert!(allowed_ports(&net, 1, 0, TCP).is_empty());
}

#[test]
fn a_group_reference_matches_members_not_addresses() {
    // b admits tcp/5432 from group a. A third endpoint c sits in a's very subnet but is
    // not a member of group a: it is refused; a is admitted.
    let groups = vec![
        Group { name: "sg-a".into(), rules: vec![cidr_rule("out", "-1", "", "0.0.0.0/0")] },
        Group { name: "sg-b".into(), rules: vec![group_rule("in", "tcp", "5432", 0, "sg-a")] },
        Group { name: "sg-c".into(), rules: vec![cidr_rule("out", "-1", "", "0.0.0.0/0")] },
    ];
    let mut net = pair(open_nacl(), open_nacl(), groups);
    net.endpoints.push(zone("c", "10.0.1.20", 0, &[2], false));
    assert_eq!(allowed_ports(&net, 0, 1, TCP).to_string(), "5432");
    assert!(allowed_ports(&net, 2, 1, TCP).is_empty());
    let why: Vec<String> = trace(&net, 2, 1, TCP, 5432).into_iter().filter(|s| !s.passes).map(|s| s.text).collect();
    assert_eq!(why, ["security group(s) sg-b of b ingress: no rule allows tcp/5432 from c"]);
}

#[test]
fn protocol_minus_one_matches_every_protocol_and_port() {
    // Open NACLs and groups that allow -1: tcp and udp on every port, icmp and any other
    // protocol. A NACL that allows only tcp lets no udp or icmp through.
    let net = pair(open_nacl(), open_nacl(), open_groups());
    for class in net.classes() {
        assert!(allowed_ports(&net, 0, 1, class).is_full(), "{class}");
    }
    let tcp_only = vec![
        entry(100, "in", "tcp", "all", "0.0.0.0/0", "allow"),
        entry(100, "out", "tcp", "all", "0.0.0.0/0", "allow"),
    ];
    let net = pair(open_nacl(), tcp_only, open_groups());
    assert!(allowed_ports(&net, 0, 1, TCP).is_full());
    assert!(allowed_ports(&net, 0, 1, ProtocolClass::Udp).is_empty());
    assert!(allowed_ports(&net, 0, 1, ProtocolClass::Icmp).is_empty());
    assert!(allowed_ports(&net, 0, 1, ProtocolClass::Other).is_empty());
}

#[test]
fn a_port_range_intent_is_blocked_at_its_first_closed_port() {
    // b's NACL admits tcp 8000-8049 only; the intent is 8000-8099: blocked, and the trace
    // names port 8050 on b's ingress.
    let b = vec![
        entry(100, "in", "tcp", "8000-8049", "10.0.1.0/24", "allow"),
        entry(100, "out", "tcp", "1024-65535", "10.0.1.0/24", "allow"),
    ];
    let net = pair(open_nacl(), b, open_groups());
    let v = evaluate(&net, &Intent { from: 0, to: 1, class: Some(TCP), ports: PortRange { from: 8000, to: 8099 } });
    assert!(!v.allowed);
    assert_eq!(v.blocked_by, ["b NACL ingress: no entry matches tcp/8050 from 10.0.1.10, default deny"]);
}

#[test]
fn the_internet_needs_a_route_through_an_attached_gateway() {
    // Everything open, but a has no internet route: a → internet and internet → a are
    // both blocked by a's route table; with the route, both pass.
    let mut net = pair(open_nacl(), open_nacl(), open_groups());
    net.endpoints.push(microseg_reach::Endpoint::internet(ip("203.0.113.10")));
    assert!(allowed_ports(&net, 0, 2, TCP).is_empty());
    assert!(allowed_ports(&net, 2, 0, TCP).is_empty());
    net.endpoints[0].internet_route =
        Some(InternetRoute::Gateway { route: "0.0.0.0/0 → igw-1".into(), public: true });
    assert!(allowed_ports(&net, 0, 2, TCP).is_full());
    assert!(allowed_ports(&net, 2, 0, TCP).is_full());
}

#[test]
fn the_matrix_names_blocked_intent_and_unintended_traffic_with_its_rules() {
    // a → b: intended tcp/443 and tcp/80. b's NACL admits 443 and 8080 (not 80) from a
    // and returns 1024-65535; groups allow everything. So a → b: 80 blocked (b ingress
    // default deny), 8080 open though not intended, 443 as intended. b → a: a's NACL is
    // open, b's NACL sends only 1024-65535 to a, and a's NACL returns anything: b → a
    // can open 1024-65535... but b's NACL admits replies from a only on 443 and 8080, so
    // nothing passes: closed.
    let b = vec![
        entry(100, "in", "tcp", "443", "10.0.1.0/24", "allow"),
        entry(110, "in", "tcp", "8080", "10.0.1.0/24", "allow"),
        entry(100, "out", "tcp", "1024-65535", "10.0.1.0/24", "allow"),
    ];
    let net = pair(open_nacl(), b, open_groups());
    let intents = [
        Intent { from: 0, to: 1, class: Some(TCP), ports: PortRange::single(443) },
        Intent { from: 0, to: 1, class: Some(TCP), ports: PortRange::single(80) },
    ];
    let a = analyse(&net, &intents);
    let ab = a.matrix.cell("a", "b").unwrap();
    assert_eq!(ab.verdict, CellVerdict::BlockedAndOpen);
    assert_eq!(ab.allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["tcp/443,8080"]);
    assert_eq!(a.matrix.cell("b", "a").unwrap().verdict, CellVerdict::Closed);
    assert!(a.intents[0].allowed);
    assert_eq!(a.intents[1].blocked_by, ["b NACL ingress: no entry matches tcp/80 from 10.0.1.10, default deny"]);
    assert_eq!(a.unintended.len(), 1);
    let u = &a.unintended[0];
    assert_eq!((u.from.as_str(), u.to.as_str(), u.service.to_string().as_str()), ("a", "b", "tcp/8080"));
    assert!(
        u.allowed_by.contains(&"b NACL ingress: rule #110 allows tcp/8080 from 10.0.1.0/24".to_string()),
        "{:?}",
        u.allowed_by
    );
}

#[test]
fn two_endpoints_in_one_subnet_cross_no_nacl() {
    // The NACLs deny everything, the groups allow everything. Apart, nothing passes;
    // once b sits in a's subnet (same subnet number), the NACLs no longer lie between
    // them and every port passes; the trace then names only the groups.
    let deny = vec![entry(100, "in", "-1", "", "0.0.0.0/0", "deny"), entry(100, "out", "-1", "", "0.0.0.0/0", "deny")];
    let mut net = pair(deny.clone(), deny, open_groups());
    assert!(allowed_ports(&net, 0, 1, TCP).is_empty());
    net.endpoints[1].subnet = net.endpoints[0].subnet;
    net.endpoints[1].nacl = net.endpoints[0].nacl;
    assert!(allowed_ports(&net, 0, 1, TCP).is_full());
    assert!(trace(&net, 0, 1, TCP, 80).iter().all(|s| s.passes && s.text.starts_with("security group")));
}

/// `a` (10.0.1.10) is private and routes to a NAT gateway at 10.0.2.5 in `b`'s subnet
/// (NACL "b"), which routes to an internet gateway. The internet stands at 203.0.113.10.
fn behind_nat(nat_nacl: Vec<microseg_reach::model::NaclEntry>) -> Network {
    let mut net = pair(open_nacl(), nat_nacl, open_groups());
    net.endpoints.push(microseg_reach::Endpoint::internet(ip("203.0.113.10")));
    net.endpoints[0].internet_route = Some(InternetRoute::Nat {
        route: "0.0.0.0/0 → nat-1".into(),
        nat: NatHop {
            name: "nat-1".into(),
            addr: ip("10.0.2.5"),
            subnet: Some(1),
            nacl: Some(1),
            upstream: Some("0.0.0.0/0 → igw-1".into()),
            problems: vec![],
        },
    });
    net
}

#[test]
fn a_nat_gateway_carries_outbound_connections_only() {
    // Everything open: a opens anything to the internet through the NAT; the internet
    // opens nothing to a, whatever the rules say (a NAT accepts no inbound connection).
    let net = behind_nat(open_nacl());
    assert!(allowed_ports(&net, 0, 2, TCP).is_full());
    assert!(allowed_ports(&net, 2, 0, TCP).is_empty());
    let steps = trace(&net, 2, 0, TCP, 443);
    assert!(steps.iter().any(|s| !s.passes && s.text.contains("NAT gateway")), "{steps:?}");
    // Without the NAT subnet's route to the internet gateway nothing gets out.
    let mut net = net;
    if let Some(InternetRoute::Nat { nat, .. }) = &mut net.endpoints[0].internet_route {
        nat.upstream = None;
    }
    assert!(allowed_ports(&net, 0, 2, TCP).is_empty());
}

#[test]
fn the_nat_subnets_nacl_filters_both_legs_and_the_replies() {
    // The NAT subnet's NACL, entry by entry, for a → internet tcp/443:
    // - in from a (10.0.1.10) on 443: #100 allows tcp/443 from 10.0.0.0/16;
    // - out to the internet on 443: #100 allows tcp/443 to 0.0.0.0/0;
    // - in from the internet to the NAT's ports 1024-65535: #110 allows them;
    // - out to a on its ephemeral ports 1024-65535: #110 allows 1024-65535 to 10.0.0.0/16.
    // Port 80 is admitted from a by nothing: only 443 passes.
    let nacl = vec![
        entry(100, "in", "tcp", "443", "10.0.0.0/16", "allow"),
        entry(110, "in", "tcp", "1024-65535", "0.0.0.0/0", "allow"),
        entry(100, "out", "tcp", "443", "0.0.0.0/0", "allow"),
        entry(110, "out", "tcp", "1024-65535", "10.0.0.0/16", "allow"),
    ];
    let net = behind_nat(nacl.clone());
    assert_eq!(allowed_ports(&net, 0, 2, TCP).to_string(), "443");
    // Replies to the NAT from the internet narrowed to 32768-65535: the NAT may pick any
    // port from 1024, so the connection no longer works.
    let mut narrow = nacl.clone();
    narrow[1] = entry(110, "in", "tcp", "32768-65535", "0.0.0.0/0", "allow");
    assert!(allowed_ports(&behind_nat(narrow), 0, 2, TCP).is_empty());
    // The NAT's way back to a blocked: replies cannot reach a.
    let mut no_return = nacl;
    no_return[3] = entry(110, "out", "tcp", "1024-65535", "10.0.3.0/24", "allow");
    let net = behind_nat(no_return);
    assert!(allowed_ports(&net, 0, 2, TCP).is_empty());
    let steps = trace(&net, 0, 2, TCP, 443);
    assert!(
        steps.iter().any(|s| !s.passes
            && s.text
                == "NAT gateway nat-1's subnet NACL egress: no entry matches tcp/1024 to 10.0.1.10, default deny"),
        "{steps:?}"
    );
}
