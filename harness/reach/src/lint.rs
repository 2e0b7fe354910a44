//! Rules that do nothing: NACL entries that are never the first match for any packet
//! (shadowed), and rules whose removal would change no decision (redundant).
//!
//! A rule matches a box of packets: peer × protocol × destination port. The question
//! "is this box covered by those boxes" is answered exactly by cutting the box at every
//! edge of the other boxes inside it and testing one point per piece; with tens of rules
//! that is thousands of points, not the 2^32 × 256 × 65,536 packets it stands for.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Direction, NaclEntry, Peer, Protocol, RuleAction};
use crate::network::{Group, Nacl};

/// What is wrong with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LintKind {
    /// Earlier entries decide every packet it matches: it never takes effect.
    Shadowed,
    /// It decides some packets, but what decides them without it says the same.
    Redundant,
}

/// One rule that does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleLint {
    /// Shadowed or redundant.
    pub kind: LintKind,
    /// `NACL web` or `security group web`.
    pub owner: String,
    /// The rule's direction.
    pub direction: Direction,
    /// The rule, as EC2 would show it.
    pub rule: String,
    /// The rules that make it pointless.
    pub because: Vec<String>,
}

/// Dimensions of a packet box: peer kind (IPv4, IPv6, group), peer, protocol, port.
const DIMS: usize = 4;
const IPV4: u128 = 0;
const IPV6: u128 = 1;
const GROUP: u128 = 2;
/// Beyond this many pieces a rule is left unjudged rather than slow the run down.
const MAX_PIECES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bx {
    lo: [u128; DIMS],
    hi: [u128; DIMS],
}

impl Bx {
    fn contains(&self, p: &[u128; DIMS]) -> bool {
        (0..DIMS).all(|d| self.lo[d] <= p[d] && p[d] <= self.hi[d])
    }

    fn clip(&self, other: &Bx) -> Option<Bx> {
        let mut out = *self;
        for d in 0..DIMS {
            out.lo[d] = self.lo[d].max(other.lo[d]);
            out.hi[d] = self.hi[d].min(other.hi[d]);
            if out.lo[d] > out.hi[d] {
                return None;
            }
        }
        Some(out)
    }
}

fn protocol_span(p: Protocol) -> (u128, u128) {
    match p {
        Protocol::All => (0, 255),
        Protocol::Tcp => (6, 6),
        Protocol::Udp => (17, 17),
        Protocol::Icmp => (1, 1),
        Protocol::Number(n) => (n.into(), n.into()),
    }
}

fn port_span(p: Protocol, ports: Option<crate::model::PortRange>) -> (u128, u128) {
    match ports {
        Some(r) if p.has_ports() => (r.from.into(), r.to.into()),
        _ => (0, 65535),
    }
}

fn cidr_span(c: &IpNet) -> (u128, u128, u128) {
    match c {
        IpNet::V4(n) => (IPV4, u32::from(n.network()).into(), u32::from(n.broadcast()).into()),
        IpNet::V6(n) => (IPV6, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn bx(kind: u128, peer: (u128, u128), protocol: Protocol, ports: Option<crate::model::PortRange>) -> Bx {
    let (p0, p1) = protocol_span(protocol);
    let (q0, q1) = port_span(protocol, ports);
    Bx { lo: [kind, peer.0, p0, q0], hi: [kind, peer.1, p1, q1] }
}

fn entry_box(e: &NaclEntry) -> Bx {
    let (kind, a, b) = cidr_span(&e.cidr);
    bx(kind, (a, b), e.protocol, e.ports)
}

/// Representative points, one per piece of `target` cut at the edges of `others`
/// (already clipped to it); `None` when there would be more than [`MAX_PIECES`].
fn pieces(target: &Bx, others: &[Bx]) -> Option<Vec<[u128; DIMS]>> {
    let cuts: Vec<Vec<u128>> = (0..DIMS)
        .map(|d| {
            let mut v = vec![target.lo[d]];
            for o in others {
                v.push(o.lo[d]);
                if o.hi[d] < target.hi[d] {
                    v.push(o.hi[d] + 1);
                }
            }
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    if cuts.iter().map(Vec::len).try_fold(1usize, |acc, n| acc.checked_mul(n)).is_none_or(|n| n > MAX_PIECES) {
        return None;
    }
    let mut points = vec![[0u128; DIMS]];
    for (d, cut) in cuts.iter().enumerate() {
        points = points
            .into_iter()
            .flat_map(|p| {
                cut.iter().map(move |&c| {
                    let mut q = p;
                    q[d] = c;
                    q
                })
            })
            .collect();
    }
    Some(points)
}

/// The entries of `range` that overlap `target`, each with its overlap.
fn clipped<'a>(range: &'a [NaclEntry], target: &Bx) -> Vec<(&'a NaclEntry, Bx)> {
    range.iter().filter_map(|o| entry_box(o).clip(target).map(|b| (o, b))).collect()
}

fn entry_text(e: &NaclEntry) -> String {
    let ports = e.ports.map(|p| format!("/{p}")).unwrap_or_default();
    format!("#{} {} {}{ports} {}", e.rule_number, e.action, e.protocol, e.cidr)
}

/// Shadowed and redundant entries of a NACL, both directions. AWS's `*` entries are
/// not judged: they are not the user's to remove.
pub fn nacl(n: &Nacl) -> Vec<RuleLint> {
    let mut out = Vec::new();
    for dir in Direction::BOTH {
        let entries = n.entries(dir);
        for (k, e) in entries.iter().enumerate() {
            if e.is_default_deny() {
                continue;
            }
            let target = entry_box(e);
            let (earlier, later) = (clipped(&entries[..k], &target), clipped(&entries[k + 1..], &target));
            let all: Vec<Bx> = earlier.iter().chain(&later).map(|(_, b)| *b).collect();
            let Some(points) = pieces(&target, &all) else { continue };
            let mut decides_some = false;
            let mut takers: Vec<String> = Vec::new();
            let mut changes_some = false;
            for p in points {
                if earlier.iter().any(|(_, b)| b.contains(&p)) {
                    continue;
                }
                decides_some = true;
                let next = later.iter().find(|(_, b)| b.contains(&p));
                let (action, who) = match next {
                    Some((o, _)) => (o.action, entry_text(o)),
                    None => (RuleAction::Deny, "the default deny (*)".to_string()),
                };
                if action != e.action {
                    changes_some = true;
                    break;
                }
                if !takers.contains(&who) {
                    takers.push(who);
                }
            }
            let lint = |kind, because| RuleLint {
                kind,
                owner: format!("NACL {}", n.name),
                direction: dir,
                rule: entry_text(e),
                because,
            };
            if !decides_some {
                out.push(lint(LintKind::Shadowed, earlier.iter().map(|(o, _)| entry_text(o)).collect()));
            } else if !changes_some {
                out.push(lint(LintKind::Redundant, takers));
            }
        }
    }
    out
}

/// Rules of a group that other rules of the same group and direction already allow.
/// A group reference is covered by the same reference or by `0.0.0.0/0` (every member
/// of a group in a VPC has an IPv4 address); other CIDRs are not assumed to hold it.
pub fn group(g: &Group) -> Vec<RuleLint> {
    let mut peers: BTreeMap<String, u128> = BTreeMap::new();
    let mut boxes = |peer: &Peer, protocol, ports| -> Vec<Bx> {
        match peer {
            Peer::Cidr(c) => {
                let (kind, a, b) = cidr_span(c);
                let mut v = vec![bx(kind, (a, b), protocol, ports)];
                if c.prefix_len() == 0 && kind == IPV4 {
                    v.push(bx(GROUP, (0, u128::MAX), protocol, ports));
                }
                v
            }
            other => {
                let next = peers.len() as u128;
                let id = *peers.entry(other.to_string()).or_insert(next);
                vec![bx(GROUP, (id, id), protocol, ports)]
            }
        }
    };
    let rules: Vec<(&crate::model::SgRule, Vec<Bx>)> =
        g.rules.iter().map(|r| (&r.rule, boxes(&r.rule.peer, r.rule.protocol, r.rule.ports))).collect();
    let mut out = Vec::new();
    for (k, (rule, mine)) in rules.iter().enumerate() {
        // Of two identical rules, the later one is the redundant one.
        let others: Vec<&(&crate::model::SgRule, Vec<Bx>)> = rules
            .iter()
            .enumerate()
            .filter(|&(j, (o, _))| j != k && o.direction == rule.direction && !(j > k && o == rule))
            .map(|(_, r)| r)
            .collect();
        let mut because: Vec<String> = Vec::new();
        let covered = mine.iter().all(|target| {
            let clipped: Vec<(&crate::model::SgRule, Bx)> =
                others.iter().flat_map(|(o, bs)| bs.iter().filter_map(|b| b.clip(target).map(|c| (*o, c)))).collect();
            if clipped.is_empty() {
                return false;
            }
            let all: Vec<Bx> = clipped.iter().map(|(_, b)| *b).collect();
            let Some(points) = pieces(target, &all) else { return false };
            let ok = points.iter().all(|p| clipped.iter().any(|(_, b)| b.contains(p)));
            if ok {
                for (o, _) in &clipped {
                    let t = o.to_string();
                    if !because.contains(&t) {
                        because.push(t);
                    }
                }
            }
            ok
        });
        if covered {
            out.push(RuleLint {
                kind: LintKind::Redundant,
                owner: format!("security group {}", g.name),
                direction: rule.direction,
                rule: rule.to_string(),
                because,
            });
        }
    }
    out
}
