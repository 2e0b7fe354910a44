//! Builders shared by the engine's tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use microseg_reach::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
use microseg_reach::{Endpoint, GroupPeer, GroupRule, InternetRoute};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ports(s: &str) -> Option<PortRange> {
    if s.is_empty() { None } else { Some(PortRange::parse(s).unwrap()) }
}

/// `entry(100, "in", "tcp", "80", "0.0.0.0/0", "allow")`.
pub fn entry(n: i32, dir: &str, proto: &str, p: &str, cidr: &str, action: &str) -> NaclEntry {
    NaclEntry {
        rule_number: n,
        direction: if dir == "in" { Direction::Ingress } else { Direction::Egress },
        protocol: Protocol::parse(proto).unwrap(),
        ports: ports(p),
        cidr: cidr.parse().unwrap(),
        action: if action == "allow" { RuleAction::Allow } else { RuleAction::Deny },
    }
}

/// Allow everything both ways: for the NACL of a side a test is not about.
pub fn open_nacl() -> Vec<NaclEntry> {
    vec![entry(100, "in", "-1", "", "0.0.0.0/0", "allow"), entry(100, "out", "-1", "", "0.0.0.0/0", "allow")]
}

/// A group rule to or from a CIDR.
pub fn cidr_rule(dir: &str, proto: &str, p: &str, cidr: &str) -> GroupRule {
    let c = cidr.parse().unwrap();
    GroupRule {
        rule: SgRule {
            direction: if dir == "in" { Direction::Ingress } else { Direction::Egress },
            protocol: Protocol::parse(proto).unwrap(),
            ports: ports(p),
            peer: Peer::Cidr(c),
        },
        peer: GroupPeer::Cidr(c),
    }
}

/// A group rule to or from the members of group `g` (named `name`).
pub fn group_rule(dir: &str, proto: &str, p: &str, g: usize, name: &str) -> GroupRule {
    GroupRule {
        rule: SgRule {
            direction: if dir == "in" { Direction::Ingress } else { Direction::Egress },
            protocol: Protocol::parse(proto).unwrap(),
            ports: ports(p),
            peer: Peer::Group(name.into()),
        },
        peer: GroupPeer::Group(g),
    }
}

pub fn zone(name: &str, addr: &str, nacl: usize, groups: &[usize], internet_route: bool) -> Endpoint {
    Endpoint {
        name: name.into(),
        addr: ip(addr),
        internet: false,
        subnet: Some(nacl),
        nacl: Some(nacl),
        groups: groups.iter().copied().collect::<BTreeSet<_>>(),
        internet_route: internet_route
            .then(|| InternetRoute::Gateway { route: "0.0.0.0/0 → igw-test".into(), public: true }),
        problems: vec![],
        ephemeral: None,
    }
}
