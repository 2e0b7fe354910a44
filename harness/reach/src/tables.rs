//! The filters of every endpoint, made ready once for the whole matrix.
//!
//! The matrix asks each NACL the same questions again and again: a pair's request and
//! reply cross two NACLs, and every endpoint is in hundreds of pairs. A verdict depends
//! only on which of the NACL's entries hold the peer's address, and most peers are held
//! by the same few (`0.0.0.0/0`, the VPC's range): each distinct list of entries is
//! walked once per class, and the peers that share a list share its port sets.
//!
//! Group verdicts are seldom asked twice (once per pair and class), so they are still
//! worked out when asked, but from each endpoint's rules of one direction and class,
//! gathered once from all of its groups. Addresses and CIDRs are compared as numbers.
//!
//! Every open flow the matrix finds is explained rule by rule, and the same entries and
//! rules explain thousands of them: each is put into words once, here, when first asked
//! (most rules of a small network explain nothing, and it is not worth writing them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;

use crate::matrix::in_parallel;
use crate::model::{Direction, NaclEntry, PortRange};
use crate::network::{GroupPeer, GroupRule, Network, ProtocolClass};
use crate::path::{Decider, Filters, allows_clause, first_match_ports};
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
    /// Per NACL and direction: how a passing step names each entry (`allows_clause`).
    clauses: Vec<Vec<OnceLock<String>>>,
    /// Per endpoint, direction and class, in that order: the rules of all its groups
    /// that match the class.
    group_rules: Vec<Vec<Allowance>>,
    /// Per group and rule: the rule in words.
    rule_texts: Vec<Vec<OnceLock<String>>>,
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

/// A group rule of one direction and class, its ports and peer made ready to test.
struct Allowance {
    group: usize,
    /// The rule's position in its group.
    rule: usize,
    ports: PortRange,
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
        for made in in_parallel(&sides, |entries| side_verdicts(entries, &addrs, classes)) {
            let base = holding.len();
            nacl_rows.extend(made.rows.into_iter().map(|list| base + list));
            holding.extend(made.lists);
            nacl_sets.extend(made.sets);
        }
        let clauses = sides.iter().map(|entries| entries.iter().map(|_| OnceLock::new()).collect()).collect();

        let allowance = |class: ProtocolClass, (group, k, rule): (usize, usize, &GroupRule)| {
            let peer = match &rule.peer {
                GroupPeer::Cidr(c) => Peer::Span(Span::of(c)),
                GroupPeer::Group(g) => Peer::Group(*g),
                GroupPeer::Unresolved(_) => Peer::Nothing,
            };
            Allowance { group, rule: k, ports: class.rule_ports(rule.rule.protocol, rule.rule.ports), peer }
        };
        let mut group_rules = Vec::with_capacity(net.endpoints.len() * 2 * classes.len());
        for e in &net.endpoints {
            for dir in Direction::BOTH {
                for &class in classes {
                    let rules = e
                        .groups
                        .iter()
                        .flat_map(|&g| net.groups[g].rules.iter().enumerate().map(move |(k, r)| (g, k, r)));
                    let matching =
                        rules.filter(|(_, _, r)| r.rule.direction == dir && class.matched_by(r.rule.protocol));
                    group_rules.push(matching.map(|r| allowance(class, r)).collect());
                }
            }
        }

        let rule_texts = net.groups.iter().map(|g| g.rules.iter().map(|_| OnceLock::new()).collect()).collect();

        let mut members = vec![0u64; (net.endpoints.len() * net.groups.len()).div_ceil(64)];
        for (k, e) in net.endpoints.iter().enumerate() {
            for &g in &e.groups {
                let bit = k * net.groups.len() + g;
                members[bit / 64] |= 1 << (bit % 64);
            }
        }
        Tables {
            net,
            classes: classes.to_vec(),
            addrs,
            nacl_rows,
            holding,
            nacl_sets,
            clauses,
            group_rules,
            rule_texts,
            members,
        }
    }

    fn class_index(&self, class: ProtocolClass) -> usize {
        self.classes.iter().position(|&c| c == class).expect("tables built for every class asked")
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
    ) -> impl Iterator<Item = &Allowance> {
        let row = (me * 2 + side(dir)) * self.classes.len() + self.class_index(class);
        self.group_rules[row].iter().filter(move |a| match a.peer {
            Peer::Span(s) => s.holds(self.addrs[peer]),
            Peer::Group(g) => self.is_member(peer, g),
            Peer::Nothing => false,
        })
    }
}

/// One side of a NACL (its entries of one direction), made ready.
struct Side {
    /// Per peer: which of `lists` holds it.
    rows: Vec<usize>,
    /// Each distinct list of entries that holds some peer.
    lists: Vec<Vec<usize>>,
    /// Per list and class: the ports the list lets through.
    sets: Vec<PortSet>,
}

/// The side of a NACL with `entries`, for each of `peers` and `classes`.
fn side_verdicts(entries: &[NaclEntry], peers: &[Addr], classes: &[ProtocolClass]) -> Side {
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
    Side { rows, lists, sets }
}

impl Filters for Tables<'_> {
    fn nacl_ports(&self, nacl: usize, dir: Direction, class: ProtocolClass, peer: usize) -> Cow<'_, PortSet> {
        Cow::Borrowed(&self.nacl_sets[self.nacl_row(nacl, dir, peer) * self.classes.len() + self.class_index(class)])
    }

    fn nacl_first_match(
        &self,
        nacl: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<Decider<'_>> {
        let entries = self.net.nacls[nacl].entries(dir);
        let decides = |&&k: &&usize| {
            let e = &entries[k];
            class.matched_by(e.protocol) && class.rule_ports(e.protocol, e.ports).contains(port)
        };
        let k = *self.holding[self.nacl_row(nacl, dir, peer)].iter().find(decides)?;
        let allows = self.clauses[nacl * 2 + side(dir)][k].get_or_init(|| allows_clause(&entries[k]));
        Some(Decider { entry: &entries[k], allows: Cow::Borrowed(allows) })
    }

    fn group_ports(&self, me: usize, dir: Direction, class: ProtocolClass, peer: usize) -> PortSet {
        let matching = self.group_matches(me, dir, class, peer);
        PortSet::from_ranges(matching.map(|a| a.ports))
    }

    fn group_first_match(
        &self,
        me: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<(usize, Cow<'_, str>)> {
        let mut matching = self.group_matches(me, dir, class, peer);
        let allows = |a: &&Allowance| a.ports.contains(port);
        let a = matching.find(allows)?;
        let text =
            self.rule_texts[a.group][a.rule].get_or_init(|| self.net.groups[a.group].rules[a.rule].rule.to_string());
        Some((a.group, Cow::Borrowed(text.as_str())))
    }
}
