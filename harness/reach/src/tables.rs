//! The filters of every endpoint, made ready once for the whole matrix.
//!
//! The matrix asks each NACL the same questions again and again: a pair's request and
//! reply cross two NACLs, and every endpoint is in hundreds of pairs. A verdict depends
//! only on which of the NACL's entries hold the peer's address, and most peers are held
//! by the same few (`0.0.0.0/0`, the VPC's range): each distinct list of entries is
//! walked once per class, and the peers that share a list share its port sets.
//!
//! Group verdicts are seldom asked twice (once per pair and class), so they are still
//! worked out when asked, but from each endpoint's rules of one direction, gathered once
//! from all of its groups. Addresses and CIDRs are compared as numbers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::matrix::in_parallel;
use crate::model::{Direction, NaclEntry};
use crate::network::{GroupPeer, GroupRule, Network, ProtocolClass};
use crate::path::{Filters, first_match_ports};
use crate::ports::PortSet;

/// [`Filters`] ready to look up, for the classes the tables were built for.
pub(crate) struct Tables<'n> {
    net: &'n Network,
    classes: Vec<ProtocolClass>,
    /// Every endpoint's address, as a number.
    addrs: Vec<Addr>,
    /// Per NACL, direction and peer endpoint, in that order: the entries that hold the
    /// peer, an index into `holding`.
    nacl_rows: Vec<usize>,
    /// Each distinct list of entries (positions among its NACL's entries of one
    /// direction) that holds some endpoint.
    holding: Vec<Vec<usize>>,
    /// Per list of `holding` and class, in that order: the ports the list lets through.
    nacl_sets: Vec<PortSet>,
    /// Per endpoint and direction, in that order: the rules of all its groups.
    group_rules: Vec<Vec<Allowance<'n>>>,
    /// Bit `endpoint * groups + group` is set when the endpoint is a member of the group.
    members: Vec<u64>,
}

/// Where a direction's rows sit among a NACL's or an endpoint's.
fn side(dir: Direction) -> usize {
    usize::from(dir.is_egress())
}

/// An address as a number, and whether it is IPv6.
type Addr = (bool, u128);

fn addr(a: IpAddr) -> Addr {
    match a {
        IpAddr::V4(a) => (false, u32::from(a).into()),
        IpAddr::V6(a) => (true, a.into()),
    }
}

/// A CIDR as its first and last address: testing an address is two comparisons, where
/// `IpNet::contains` works the range out from the prefix on every call.
#[derive(Debug, Clone, Copy)]
struct Span {
    v6: bool,
    first: u128,
    last: u128,
}

impl Span {
    fn of(net: &IpNet) -> Span {
        let ((v6, first), (_, last)) = (addr(net.network()), addr(net.broadcast()));
        Span { v6, first, last }
    }

    fn holds(self, (v6, a): Addr) -> bool {
        v6 == self.v6 && self.first <= a && a <= self.last
    }
}

/// A group rule of one direction, its peer made ready to test.
struct Allowance<'n> {
    group: usize,
    rule: &'n GroupRule,
    peer: Peer,
}

enum Peer {
    Span(Span),
    Group(usize),
    /// Outside the network: matches no endpoint.
    Nothing,
}

impl<'n> Tables<'n> {
    /// The tables of `net`, for each of `classes`.
    pub(crate) fn new(net: &'n Network, classes: &[ProtocolClass]) -> Tables<'n> {
        let addrs: Vec<Addr> = net.endpoints.iter().map(|e| addr(e.addr)).collect();
        let sides: Vec<&[NaclEntry]> =
            net.nacls.iter().flat_map(|n| Direction::BOTH.map(|dir| n.entries(dir))).collect();
        let (mut nacl_rows, mut holding, mut nacl_sets) = (Vec::new(), Vec::new(), Vec::new());
        for (rows, lists, sets) in in_parallel(&sides, |entries| side_verdicts(entries, &addrs, classes)) {
            let base = holding.len();
            nacl_rows.extend(rows.into_iter().map(|list| base + list));
            holding.extend(lists);
            nacl_sets.extend(sets);
        }

        let allowance = |(group, rule): (usize, &'n GroupRule)| {
            let peer = match &rule.peer {
                GroupPeer::Cidr(c) => Peer::Span(Span::of(c)),
                GroupPeer::Group(g) => Peer::Group(*g),
                GroupPeer::Unresolved(_) => Peer::Nothing,
            };
            Allowance { group, rule, peer }
        };
        let group_rules = net
            .endpoints
            .iter()
            .flat_map(|e| Direction::BOTH.map(|dir| (e, dir)))
            .map(|(e, dir)| {
                let rules = e.groups.iter().flat_map(|&g| net.groups[g].rules.iter().map(move |r| (g, r)));
                rules.filter(|(_, r)| r.rule.direction == dir).map(allowance).collect()
            })
            .collect();

        let mut members = vec![0u64; (net.endpoints.len() * net.groups.len()).div_ceil(64)];
        for (k, e) in net.endpoints.iter().enumerate() {
            for &g in &e.groups {
                let bit = k * net.groups.len() + g;
                members[bit / 64] |= 1 << (bit % 64);
            }
        }
        Tables { net, classes: classes.to_vec(), addrs, nacl_rows, holding, nacl_sets, group_rules, members }
    }

    fn nacl_row(&self, nacl: usize, dir: Direction, peer: usize) -> usize {
        self.nacl_rows[(nacl * 2 + side(dir)) * self.addrs.len() + peer]
    }

    fn is_member(&self, endpoint: usize, group: usize) -> bool {
        let bit = endpoint * self.net.groups.len() + group;
        group < self.net.groups.len() && self.members[bit / 64] >> (bit % 64) & 1 == 1
    }

    /// The rules of `me`'s groups in direction `dir` that match `class` with `peer`.
    fn group_matches(
        &self,
        me: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
    ) -> impl Iterator<Item = &Allowance<'n>> {
        self.group_rules[me * 2 + side(dir)].iter().filter(move |a| {
            class.matched_by(a.rule.rule.protocol)
                && match a.peer {
                    Peer::Span(s) => s.holds(self.addrs[peer]),
                    Peer::Group(g) => self.is_member(peer, g),
                    Peer::Nothing => false,
                }
        })
    }
}

/// One side of a NACL (its `entries` of one direction) and each of `peers`: which
/// distinct list of entries holds the peer, the lists, and the ports each list lets
/// through, one set per class.
fn side_verdicts(
    entries: &[NaclEntry],
    peers: &[Addr],
    classes: &[ProtocolClass],
) -> (Vec<usize>, Vec<Vec<usize>>, Vec<PortSet>) {
    let spans: Vec<Span> = entries.iter().map(|e| Span::of(&e.cidr)).collect();
    let (mut lists, mut sets) = (Vec::new(), Vec::new());
    let mut seen: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut holding = Vec::with_capacity(entries.len());
    let rows = peers
        .iter()
        .map(|&peer| {
            holding.clear();
            holding.extend((0..entries.len()).filter(|&k| spans[k].holds(peer)));
            if let Some(&list) = seen.get(&holding) {
                return list;
            }
            let walk = |&class| first_match_ports(holding.iter().map(|&k| &entries[k]), class);
            sets.extend(classes.iter().map(walk));
            seen.insert(holding.clone(), lists.len());
            lists.push(holding.clone());
            lists.len() - 1
        })
        .collect();
    (rows, lists, sets)
}

impl Filters for Tables<'_> {
    fn nacl_ports(&self, nacl: usize, dir: Direction, class: ProtocolClass, peer: usize) -> Cow<'_, PortSet> {
        let class = self.classes.iter().position(|&c| c == class).expect("tables built for every class asked");
        Cow::Borrowed(&self.nacl_sets[self.nacl_row(nacl, dir, peer) * self.classes.len() + class])
    }

    fn nacl_first_match(
        &self,
        nacl: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<&NaclEntry> {
        let entries = self.net.nacls[nacl].entries(dir);
        let holding = self.holding[self.nacl_row(nacl, dir, peer)].iter().map(|&k| &entries[k]);
        holding
            .into_iter()
            .find(|e| class.matched_by(e.protocol) && class.rule_ports(e.protocol, e.ports).contains(port))
    }

    fn group_ports(&self, me: usize, dir: Direction, class: ProtocolClass, peer: usize) -> PortSet {
        let matching = self.group_matches(me, dir, class, peer);
        PortSet::from_ranges(matching.map(|a| class.rule_ports(a.rule.rule.protocol, a.rule.rule.ports)))
    }

    fn group_first_match(
        &self,
        me: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<(usize, &GroupRule)> {
        let mut matching = self.group_matches(me, dir, class, peer);
        let allows = |a: &&Allowance| class.rule_ports(a.rule.rule.protocol, a.rule.rule.ports).contains(port);
        matching.find(allows).map(|a| (a.group, a.rule))
    }
}
