//! One connection from a client endpoint to a server endpoint: which destination ports
//! get through, and for one port, which component decides and why.
//!
//! Semantics, as the VPC documentation gives them:
//! - NACLs are stateless and evaluated per direction, lowest rule number first; the first
//!   match decides; what nothing matches is denied. A connection needs the client's NACL
//!   egress and the server's NACL ingress for the request (destination port), and the
//!   server's egress and the client's ingress for the reply to the client's ephemeral
//!   port. Every port of the ephemeral range must pass, since the client picks any.
//! - Security groups are stateful and allow-only: the request needs an egress rule of one
//!   of the client's groups and an ingress rule of one of the server's groups; replies
//!   pass by connection tracking. A group peer matches the members of that group.
//! - Two endpoints in one subnet cross no NACL (NACLs filter at the subnet boundary).
//! - Within the VPC the local route always applies; a flow to or from the internet needs
//!   the zone's route table to send the internet's address to an attached gateway.
//! - A route to a NAT gateway carries outbound connections only. The packets cross the
//!   NAT's subnet twice: its NACL must admit the request from the client and let it out
//!   to the internet, admit the reply to the NAT's translated port (1024-65535) and let
//!   it out to the client's ephemeral port; the NAT's subnet must route to an attached
//!   internet gateway. The internet cannot open a connection through a NAT.

use std::borrow::Cow;
use std::fmt::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::model::{DEFAULT_DENY_RULE_NUMBER, Direction, NaclEntry, PortRange, RuleAction};
use crate::network::{Endpoint, GroupPeer, GroupRule, InternetRoute, NAT_PORTS, Nacl, Network, ProtocolClass};
use crate::ports::PortSet;

/// The ports of `class` a NACL lets through in one direction for one peer address.
pub fn nacl_ports(nacl: &Nacl, dir: Direction, class: ProtocolClass, peer: IpAddr) -> PortSet {
    first_match_ports(nacl.entries(dir).iter().filter(|e| e.cidr.contains(&peer)), class)
}

/// The ports of `class` that a first-match walk of `entries` (in evaluation order, each
/// one's CIDR known to hold the peer) lets through.
pub(crate) fn first_match_ports<'a>(entries: impl IntoIterator<Item = &'a NaclEntry>, class: ProtocolClass) -> PortSet {
    let mut matching = entries.into_iter().filter(|e| class.matched_by(e.protocol));
    if !class.has_ports() {
        // No ports to tell apart: the first entry of the class decides every packet.
        let allows = matching.next().is_some_and(|e| e.action == RuleAction::Allow);
        return if allows { PortSet::full() } else { PortSet::empty() };
    }
    let ranges: Vec<(PortRange, RuleAction)> =
        matching.map(|e| (class.rule_ports(e.protocol, e.ports), e.action)).collect();
    // Verdicts change only where some entry's range starts or ends: the first port of
    // each stretch between those edges decides the whole stretch.
    let mut edges: Vec<u32> = Vec::with_capacity(2 * ranges.len() + 2);
    edges.extend(ranges.iter().flat_map(|(r, _)| [u32::from(r.from), u32::from(r.to) + 1]).chain([0, 65536]));
    edges.sort_unstable();
    edges.dedup();
    let allowed = edges.windows(2).filter(|stretch| {
        let first = stretch[0] as u16;
        ranges.iter().find(|(r, _)| r.contains(first)).is_some_and(|&(_, action)| action == RuleAction::Allow)
    });
    PortSet::from_ranges(allowed.map(|stretch| PortRange { from: stretch[0] as u16, to: (stretch[1] - 1) as u16 }))
}

/// Where the path functions get the filters' verdicts: [`Walk`] works each one out when
/// asked, which suits one pair; the matrix looks them up in tables it builds once for
/// every endpoint (`crate::tables`).
pub(crate) trait Filters {
    /// [`nacl_ports`] of NACL `nacl` (an index into [`Network::nacls`]) for endpoint `peer`.
    fn nacl_ports(&self, nacl: usize, dir: Direction, class: ProtocolClass, peer: usize) -> Cow<'_, PortSet>;
    /// [`nacl_first_match`] of NACL `nacl` for endpoint `peer`.
    fn nacl_first_match(
        &self,
        nacl: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<Decider<'_>>;
    /// [`group_ports`] of endpoint `me` with endpoint `peer`.
    fn group_ports(&self, me: usize, dir: Direction, class: ProtocolClass, peer: usize) -> PortSet;
    /// The first rule of `me`'s groups (in order) that allows `port` of `class` with
    /// `peer`: the index of its group, and the rule in words.
    fn group_first_match(
        &self,
        me: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<(usize, Cow<'_, str>)>;
}

/// Verdicts worked out when asked.
pub(crate) struct Walk<'a>(pub &'a Network);

impl Filters for Walk<'_> {
    fn nacl_ports(&self, nacl: usize, dir: Direction, class: ProtocolClass, peer: usize) -> Cow<'_, PortSet> {
        Cow::Owned(nacl_ports(&self.0.nacls[nacl], dir, class, self.0.endpoints[peer].addr))
    }

    fn nacl_first_match(
        &self,
        nacl: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<Decider<'_>> {
        let entry = nacl_first_match(&self.0.nacls[nacl], dir, class, self.0.endpoints[peer].addr, port)?;
        Some(Decider { entry, allows: Cow::Owned(allows_clause(entry)) })
    }

    fn group_ports(&self, me: usize, dir: Direction, class: ProtocolClass, peer: usize) -> PortSet {
        let net = self.0;
        group_ports(net, &net.endpoints[me], dir, class, &net.endpoints[peer])
    }

    fn group_first_match(
        &self,
        me: usize,
        dir: Direction,
        class: ProtocolClass,
        peer: usize,
        port: u16,
    ) -> Option<(usize, Cow<'_, str>)> {
        let (net, peer) = (self.0, &self.0.endpoints[peer]);
        net.endpoints[me].groups.iter().find_map(|&g| {
            let rules = &net.groups[g].rules;
            let allows = |r: &&GroupRule| {
                group_rule_matches(r, dir, class, peer)
                    && class.rule_ports(r.rule.protocol, r.rule.ports).contains(port)
            };
            rules.iter().find(allows).map(|r| (g, Cow::Owned(r.rule.to_string())))
        })
    }
}

/// The NACL entry that decides a packet, and how a step that passes names it.
pub(crate) struct Decider<'a> {
    pub entry: &'a NaclEntry,
    /// [`allows_clause`] of the entry.
    pub allows: Cow<'a, str>,
}

/// How a step that passes names the entry that lets it through (`rule #100 allows
/// tcp/443 from 0.0.0.0/0`).
pub(crate) fn allows_clause(e: &NaclEntry) -> String {
    let to_from = if e.direction == Direction::Ingress { "from" } else { "to" };
    let entry_ports = fmt::from_fn(|f| e.ports.map_or(Ok(()), |p| write!(f, "/{p}")));
    format!("rule #{} allows {}{entry_ports} {to_from} {}", rule_label(e), e.protocol, e.cidr)
}

/// The entry that decides one packet, or `None` when nothing matches (denied).
pub fn nacl_first_match(
    nacl: &Nacl,
    dir: Direction,
    class: ProtocolClass,
    peer: IpAddr,
    port: u16,
) -> Option<&NaclEntry> {
    nacl.entries(dir).iter().find(|e| {
        class.matched_by(e.protocol) && e.cidr.contains(&peer) && class.rule_ports(e.protocol, e.ports).contains(port)
    })
}

fn group_rule_matches(r: &GroupRule, dir: Direction, class: ProtocolClass, peer: &Endpoint) -> bool {
    r.rule.direction == dir
        && class.matched_by(r.rule.protocol)
        && match &r.peer {
            GroupPeer::Cidr(c) => c.contains(&peer.addr),
            GroupPeer::Group(g) => peer.groups.contains(g),
            GroupPeer::Unresolved(_) => false,
        }
}

/// The ports of `class` that `me`'s groups allow in direction `dir` with `peer`.
pub fn group_ports(net: &Network, me: &Endpoint, dir: Direction, class: ProtocolClass, peer: &Endpoint) -> PortSet {
    PortSet::from_ranges(
        me.groups
            .iter()
            .flat_map(|&g| &net.groups[g].rules)
            .filter(|r| group_rule_matches(r, dir, class, peer))
            .map(|r| class.rule_ports(r.rule.protocol, r.rule.ports)),
    )
}

/// The reply range for `class` to `client`: its ephemeral ports (the network's unless it
/// names its own), or "every port" for portless traffic.
pub fn reply_ports(net: &Network, client: &Endpoint, class: ProtocolClass) -> PortRange {
    if class.has_ports() { client.ephemeral.unwrap_or(net.ephemeral) } else { PortRange::ALL }
}

/// Which destination ports of `class` a connection from `client` to `server` can use.
/// Portless classes come back as every port or none.
pub fn allowed_ports(net: &Network, client: usize, server: usize, class: ProtocolClass) -> PortSet {
    allowed_ports_with(net, &Walk(net), client, server, class)
}

/// [`allowed_ports`], with the filters' verdicts taken from `filters`.
pub(crate) fn allowed_ports_with(
    net: &Network,
    filters: &impl Filters,
    client: usize,
    server: usize,
    class: ProtocolClass,
) -> PortSet {
    let (c, s) = (&net.endpoints[client], &net.endpoints[server]);
    if !c.problems.is_empty() || !s.problems.is_empty() || c.internet == s.internet && c.internet {
        return PortSet::empty();
    }
    // The internet opens connections only through an internet gateway, and only to an
    // endpoint with a public address. Out, an internet gateway also needs the endpoint's
    // public address; a NAT gateway lends its own.
    if c.internet && !matches!(s.internet_route, Some(InternetRoute::Gateway { public: true, .. })) {
        return PortSet::empty();
    }
    if s.internet
        && !matches!(c.internet_route, Some(InternetRoute::Nat { .. } | InternetRoute::Gateway { public: true, .. }))
    {
        return PortSet::empty();
    }
    let reply = reply_ports(net, c, class);
    let crosses = !c.same_subnet(s);
    let reply_ok = |n: Option<usize>, dir, peer: usize, ports: PortRange| {
        n.is_none_or(|n| filters.nacl_ports(n, dir, class, peer).contains_range(ports))
    };
    if crosses
        && (!reply_ok(s.nacl, Direction::Egress, client, reply) || !reply_ok(c.nacl, Direction::Ingress, server, reply))
    {
        return PortSet::empty();
    }
    let mut ports = PortSet::full();
    if crosses {
        if let Some(n) = c.nacl {
            ports = ports.intersect(&filters.nacl_ports(n, Direction::Egress, class, server));
        }
        if let Some(n) = s.nacl {
            ports = ports.intersect(&filters.nacl_ports(n, Direction::Ingress, class, client));
        }
    }
    if let (true, Some(InternetRoute::Nat { nat, .. })) = (s.internet, &c.internet_route) {
        if !nat.problems.is_empty() || nat.upstream.is_none() {
            return PortSet::empty();
        }
        let nat_reply = if class.has_ports() { NAT_PORTS } else { PortRange::ALL };
        let via_nat_subnet = nat.subnet.is_none() || nat.subnet != c.subnet;
        if !reply_ok(nat.nacl, Direction::Ingress, server, nat_reply)
            || via_nat_subnet && !reply_ok(nat.nacl, Direction::Egress, client, reply)
        {
            return PortSet::empty();
        }
        if let Some(n) = nat.nacl {
            if via_nat_subnet {
                ports = ports.intersect(&filters.nacl_ports(n, Direction::Ingress, class, client));
            }
            ports = ports.intersect(&filters.nacl_ports(n, Direction::Egress, class, server));
        }
    }
    // Groups last: they cost the most to work out, and nothing is left to ask them about
    // in most pairs by then.
    if !c.internet && !ports.is_empty() {
        ports = ports.intersect(&filters.group_ports(client, Direction::Egress, class, server));
    }
    if !s.internet && !ports.is_empty() {
        ports = ports.intersect(&filters.group_ports(server, Direction::Ingress, class, client));
    }
    ports
}

/// One component's say on one packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Whether it lets the packet through.
    pub passes: bool,
    /// The component and the deciding rule, in words.
    pub text: String,
    /// Which kind of component it is, for a reader that must tell a group's say from a
    /// NACL's without parsing [`Step::text`]. Not serialised: the text says it.
    #[serde(skip)]
    pub part: Part,
}

/// The kinds of component a [`Step`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Something wrong with an endpoint or a NAT gateway, found before any packet moves.
    Problem,
    /// A NACL, one direction of one subnet (the zone's or a NAT gateway's).
    Nacl,
    /// The client's security groups, on the way out.
    ClientGroups,
    /// The server's security groups, on the way in.
    ServerGroups,
    /// A route table.
    Route,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn service(class: ProtocolClass, port: Option<u16>) -> String {
    match port {
        Some(p) if class.has_ports() => format!("{class}/{p}"),
        _ => class.to_string(),
    }
}

fn rule_label(e: &NaclEntry) -> impl fmt::Display + '_ {
    fmt::from_fn(|f| {
        if e.rule_number == DEFAULT_DENY_RULE_NUMBER { f.write_str("*") } else { write!(f, "{}", e.rule_number) }
    })
}

/// `format!`, with room for a whole step's text made up front: the matrix writes a step
/// for each filter on every open flow, and growing the strings as they are written costs
/// more than writing them.
fn text(args: fmt::Arguments<'_>) -> String {
    let mut s = String::with_capacity(128);
    s.write_fmt(args).expect("a String takes any text");
    s
}

/// The NACL's say on the packets of `ports` (all must pass), given the ports it allows
/// and the entry that decides each port; named by the first packet that fails, or by the
/// entry that lets the first one through.
fn nacl_step<'a>(
    label: &str,
    allowed: &PortSet,
    decide: impl Fn(u16) -> Option<Decider<'a>>,
    dir: Direction,
    class: ProtocolClass,
    peer: IpAddr,
    ports: PortRange,
) -> Step {
    let to_from = if dir == Direction::Ingress { "from" } else { "to" };
    let failing = allowed.first_missing(ports);
    let port = failing.unwrap_or(ports.from);
    match (failing, decide(port)) {
        (None, Some(d)) => {
            let range = fmt::from_fn(|f| {
                if ports.from == ports.to || !class.has_ports() {
                    Ok(())
                } else {
                    write!(f, " (replies to ports {ports})")
                }
            });
            Step { passes: true, text: text(format_args!("{label} NACL {dir}: {}{range}", d.allows)), part: Part::Nacl }
        }
        (Some(_), Some(d)) if !d.entry.is_default_deny() => Step {
            passes: false,
            text: format!(
                "{label} NACL {dir}: rule #{} denies {} {to_from} {peer}",
                rule_label(d.entry),
                service(class, Some(port))
            ),
            part: Part::Nacl,
        },
        _ => Step {
            passes: false,
            text: format!(
                "{label} NACL {dir}: no entry matches {} {to_from} {peer}, default deny",
                service(class, Some(port))
            ),
            part: Part::Nacl,
        },
    }
}

/// `me`'s groups' say, given the first rule that allows the packet (and its group).
fn group_step(
    net: &Network,
    me: &Endpoint,
    hit: Option<(usize, Cow<'_, str>)>,
    dir: Direction,
    class: ProtocolClass,
    peer: &Endpoint,
    port: u16,
) -> Step {
    // Egress is the client's say, ingress the server's.
    let part = if dir == Direction::Egress { Part::ClientGroups } else { Part::ServerGroups };
    if me.groups.is_empty() {
        return Step { passes: false, text: format!("zone {} has no security group for its workloads", me.name), part };
    }
    let to_from = if dir == Direction::Ingress { "from" } else { "to" };
    match hit {
        Some((g, rule)) => Step {
            passes: true,
            text: text(format_args!("security group {} of {}: {rule}", net.groups[g].name, me.name)),
            part,
        },
        None => {
            let names: Vec<&str> = me.groups.iter().map(|&g| net.groups[g].name.as_str()).collect();
            Step {
                passes: false,
                text: format!(
                    "security group(s) {} of {} {dir}: no rule allows {} {to_from} {}",
                    names.join(", "),
                    me.name,
                    service(class, Some(port)),
                    peer.name
                ),
                part,
            }
        }
    }
}

/// Every component's say on a connection from `client` to `server` on `port` (ignored
/// for portless classes), in the order a packet meets them: request, reply, groups,
/// routes (and the NAT gateway's subnet, when the way out is through one).
pub fn trace(net: &Network, client: usize, server: usize, class: ProtocolClass, port: u16) -> Vec<Step> {
    trace_with(net, &Walk(net), client, server, class, port)
}

/// [`trace`], with the filters' verdicts taken from `filters`.
pub(crate) fn trace_with(
    net: &Network,
    filters: &impl Filters,
    client: usize,
    server: usize,
    class: ProtocolClass,
    port: u16,
) -> Vec<Step> {
    let (c, s) = (&net.endpoints[client], &net.endpoints[server]);
    // NACL `n`'s say, in direction `dir`, on the packets of `ports` with endpoint `peer`.
    let nacl = |label: &str, n: usize, dir, peer: usize, ports| {
        let allowed = filters.nacl_ports(n, dir, class, peer);
        let decide = |port| filters.nacl_first_match(n, dir, class, peer, port);
        nacl_step(label, &allowed, decide, dir, class, net.endpoints[peer].addr, ports)
    };
    // `me`'s groups' say, in direction `dir`, on the packet with endpoint `peer`.
    let group = |me: usize, dir, peer: usize| {
        let hit = filters.group_first_match(me, dir, class, peer, port);
        group_step(net, &net.endpoints[me], hit, dir, class, &net.endpoints[peer], port)
    };
    let mut steps: Vec<Step> = c
        .problems
        .iter()
        .chain(&s.problems)
        .map(|p| Step { passes: false, text: p.clone(), part: Part::Problem })
        .collect();
    let request = if class.has_ports() { PortRange::single(port) } else { PortRange::ALL };
    let reply = reply_ports(net, c, class);
    if !c.same_subnet(s) {
        if let Some(n) = c.nacl {
            steps.push(nacl(&c.name, n, Direction::Egress, server, request));
        }
        if let Some(n) = s.nacl {
            steps.push(nacl(&s.name, n, Direction::Ingress, client, request));
            steps.push(nacl(&s.name, n, Direction::Egress, client, reply));
        }
        if let Some(n) = c.nacl {
            steps.push(nacl(&c.name, n, Direction::Ingress, server, reply));
        }
    }
    if !c.internet {
        steps.push(group(client, Direction::Egress, server));
    }
    if !s.internet {
        steps.push(group(server, Direction::Ingress, client));
    }
    if c.internet && !s.internet {
        steps.push(match &s.internet_route {
            Some(InternetRoute::Gateway { route, public: true }) => {
                Step { passes: true, text: format!("{} route table: {route}", s.name), part: Part::Route }
            }
            Some(InternetRoute::Gateway { route, public: false }) => Step {
                passes: false,
                text: format!(
                    "{} route table: {route}, but {} holds no public address: nothing on the internet can reach it",
                    s.name, s.name
                ),
                part: Part::Route,
            },
            Some(InternetRoute::Nat { route, .. }) => Step {
                passes: false,
                text: format!(
                    "{} route table: {route} is a NAT gateway, which accepts no connection from the internet",
                    s.name
                ),
                part: Part::Route,
            },
            None => no_route(s),
        });
    }
    if s.internet && !c.internet {
        match &c.internet_route {
            Some(InternetRoute::Gateway { route, public }) => steps.push(Step {
                passes: *public,
                text: if *public {
                    format!("{} route table: {route}", c.name)
                } else {
                    format!(
                        "{} route table: {route}, but {} holds no public address: the internet gateway does not translate it (a NAT gateway would)",
                        c.name, c.name
                    )
                },
                part: Part::Route,
            }),
            Some(InternetRoute::Nat { route, nat }) => {
                steps.push(Step { passes: true, text: format!("{} route table: {route}", c.name), part: Part::Route });
                steps.extend(nat.problems.iter().map(|p| Step { passes: false, text: p.clone(), part: Part::Problem }));
                let label = format!("NAT gateway {}'s subnet", nat.name);
                if let Some(n) = nat.nacl {
                    let via = nat.subnet.is_none() || nat.subnet != c.subnet;
                    if via {
                        steps.push(nacl(&label, n, Direction::Ingress, client, request));
                    }
                    steps.push(nacl(&label, n, Direction::Egress, server, request));
                    let nat_reply = if class.has_ports() { NAT_PORTS } else { PortRange::ALL };
                    steps.push(nacl(&label, n, Direction::Ingress, server, nat_reply));
                    if via {
                        steps.push(nacl(&label, n, Direction::Egress, client, reply));
                    }
                }
                steps.push(match &nat.upstream {
                    Some(up) => Step { passes: true, text: format!("{label} route table: {up}"), part: Part::Route },
                    None => Step {
                        passes: false,
                        text: format!(
                            "{label} route table: no route to the internet through an attached internet gateway"
                        ),
                        part: Part::Route,
                    },
                });
            }
            None => steps.push(no_route(c)),
        }
    }
    steps
}

fn no_route(zone: &Endpoint) -> Step {
    Step {
        passes: false,
        text: format!(
            "{} route table: no route to the internet (through an attached internet gateway or a NAT gateway)",
            zone.name
        ),
        part: Part::Route,
    }
}
