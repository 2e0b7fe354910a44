//! The evaluator's input: endpoints, the NACLs and security groups that filter them, and
//! whether each can reach the internet. Built from a deployment (live, snapshot or plan)
//! by `microseg-harness`, or synthetically for benchmarks.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::model::{Direction, NaclEntry, PortRange, Protocol, SgRule};

/// A class of traffic that rules treat alike: TCP, UDP, ICMP, a protocol number some
/// rule names, or every other protocol (matched only by `-1` rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolClass {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1). Types and codes are not modelled: an ICMP rule matches every type.
    Icmp,
    /// A protocol number that some rule names.
    Number(u8),
    /// Every protocol that no rule names by number.
    Other,
}

impl ProtocolClass {
    /// The class a rule's protocol names; `None` for `-1` (every class).
    pub fn of(p: Protocol) -> Option<ProtocolClass> {
        match p {
            Protocol::All => None,
            Protocol::Tcp => Some(ProtocolClass::Tcp),
            Protocol::Udp => Some(ProtocolClass::Udp),
            Protocol::Icmp => Some(ProtocolClass::Icmp),
            Protocol::Number(n) => Some(ProtocolClass::Number(n)),
        }
    }

    /// Whether a rule of protocol `p` matches this class.
    pub fn matched_by(self, p: Protocol) -> bool {
        match ProtocolClass::of(p) {
            None => true,
            Some(c) => c == self,
        }
    }

    /// Whether packets of this class carry ports (TCP and UDP).
    pub fn has_ports(self) -> bool {
        matches!(self, ProtocolClass::Tcp | ProtocolClass::Udp)
    }

    /// The ports a rule of protocol `p` with `ports` matches within this class: a port
    /// range only restricts TCP and UDP; any other rule matches every "port".
    pub fn rule_ports(self, p: Protocol, ports: Option<PortRange>) -> PortRange {
        match (self.has_ports() && p.has_ports(), ports) {
            (true, Some(r)) => r,
            _ => PortRange::ALL,
        }
    }
}

impl fmt::Display for ProtocolClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolClass::Tcp => f.write_str("tcp"),
            ProtocolClass::Udp => f.write_str("udp"),
            ProtocolClass::Icmp => f.write_str("icmp"),
            ProtocolClass::Number(n) => write!(f, "proto-{n}"),
            ProtocolClass::Other => f.write_str("other-protocols"),
        }
    }
}

impl Serialize for ProtocolClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A network ACL: its entries per direction, ascending by rule number.
#[derive(Debug, Clone)]
pub struct Nacl {
    /// Name used in findings (`web`, or the id when no logical name is bound).
    pub name: String,
    ingress: Vec<NaclEntry>,
    egress: Vec<NaclEntry>,
}

impl Nacl {
    /// A NACL from its entries in any order. AWS's `*` entries may be present or not:
    /// a packet no entry matches is denied either way.
    pub fn new(name: impl Into<String>, entries: impl IntoIterator<Item = NaclEntry>) -> Nacl {
        let (mut ingress, mut egress): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.direction == Direction::Ingress);
        ingress.sort_by_key(|e| e.rule_number);
        egress.sort_by_key(|e| e.rule_number);
        Nacl { name: name.into(), ingress, egress }
    }

    /// The entries of one direction, in evaluation order.
    pub fn entries(&self, dir: Direction) -> &[NaclEntry] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Where a security-group rule's traffic comes from or goes to, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupPeer {
    /// An address range.
    Cidr(IpNet),
    /// Members of the group at this index of [`Network::groups`].
    Group(usize),
    /// A group or prefix list outside the network: it matches no endpoint.
    Unresolved(String),
}

/// One security-group rule with its peer resolved.
#[derive(Debug, Clone)]
pub struct GroupRule {
    /// The rule as read (for messages).
    pub rule: SgRule,
    /// Its peer, resolved.
    pub peer: GroupPeer,
}

/// A security group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Name used in findings.
    pub name: String,
    /// Its rules, both directions.
    pub rules: Vec<GroupRule>,
}

/// How an endpoint's subnet reaches the internet, read from its route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternetRoute {
    /// A route to an attached internet gateway. The gateway translates only endpoints
    /// that hold a public address: those can open connections to the internet and accept
    /// them from it; one without cannot do either (nothing on the internet can address
    /// it, and the gateway drops what it sends).
    Gateway {
        /// The route, in words (`0.0.0.0/0 → igw-123`).
        route: String,
        /// Whether the endpoint holds a public address.
        public: bool,
    },
    /// A route to a NAT gateway: outbound connections only. On their way out and back
    /// the packets also cross the NAT's own subnet, whose NACL filters them, and leave
    /// through that subnet's route to an internet gateway.
    Nat {
        /// The route, in words (`0.0.0.0/0 → nat-123`).
        route: String,
        /// The NAT gateway.
        nat: NatHop,
    },
}

impl InternetRoute {
    /// The route, in words.
    pub fn route(&self) -> &str {
        match self {
            InternetRoute::Gateway { route, .. } | InternetRoute::Nat { route, .. } => route,
        }
    }
}

/// A NAT gateway as a hop on the way to the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatHop {
    /// Name used in explanations.
    pub name: String,
    /// Its private address, in its subnet.
    pub addr: IpAddr,
    /// Its subnet (see [`Endpoint::subnet`]).
    pub subnet: Option<usize>,
    /// The NACL of its subnet, an index into [`Network::nacls`].
    pub nacl: Option<usize>,
    /// Its subnet's route to an attached internet gateway, in words; `None` when that
    /// subnet has none (then nothing gets out), or when the NAT is not available.
    pub upstream: Option<String>,
    /// Why the NAT cannot carry traffic (not available, say), if it cannot.
    pub problems: Vec<String>,
}

/// Ports a NAT gateway translates source ports to; replies from the internet come back
/// to these (AWS: "the NAT gateway uses ports 1024–65535").
pub const NAT_PORTS: PortRange = PortRange { from: 1024, to: 65535 };

/// Something that sends or receives: a zone's workloads, a named workload, the internet
/// or a named place on it (an office range, say).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name (`web`, `internet`).
    pub name: String,
    /// The address that stands for it.
    pub addr: IpAddr,
    /// Whether this is outside the VPC, filtered by nothing of ours.
    pub internet: bool,
    /// Its subnet, as an opaque number: two endpoints in one subnet talk without
    /// crossing a NACL. `None` for the internet.
    pub subnet: Option<usize>,
    /// The NACL of its subnet, an index into [`Network::nacls`].
    pub nacl: Option<usize>,
    /// The groups its workloads are members of, indices into [`Network::groups`].
    pub groups: BTreeSet<usize>,
    /// How it reaches the internet, if its route table sends the internet's address to
    /// an attached gateway.
    pub internet_route: Option<InternetRoute>,
    /// Why it cannot be evaluated (its subnet is missing, say); every flow to or from it
    /// is then blocked with these reasons.
    pub problems: Vec<String>,
    /// The source ports it picks from as a client, where they differ from the network's
    /// [`Network::ephemeral`] (Linux hosts use 32768–60999, say).
    pub ephemeral: Option<PortRange>,
}

impl Endpoint {
    /// The internet, standing at `addr`.
    pub fn internet(addr: IpAddr) -> Endpoint {
        Endpoint::external("internet", addr)
    }

    /// A named place outside the VPC (an office's range), standing at `addr`.
    pub fn external(name: impl Into<String>, addr: IpAddr) -> Endpoint {
        Endpoint {
            name: name.into(),
            addr,
            internet: true,
            subnet: None,
            nacl: None,
            groups: BTreeSet::new(),
            internet_route: None,
            problems: vec![],
            ephemeral: None,
        }
    }

    /// Whether two endpoints share a subnet (so no NACL lies between them).
    pub fn same_subnet(&self, other: &Endpoint) -> bool {
        self.subnet.is_some() && self.subnet == other.subnet
    }
}

/// Everything the evaluator needs.
#[derive(Debug, Clone)]
pub struct Network {
    /// NACLs.
    pub nacls: Vec<Nacl>,
    /// Security groups.
    pub groups: Vec<Group>,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Ports a client picks its source port from, unless the client says otherwise
    /// ([`Endpoint::ephemeral`]): replies must reach all of them.
    pub ephemeral: PortRange,
}

impl Network {
    /// Default ephemeral range: what AWS's NACL guidance uses (1024–65535), which covers
    /// Linux's 32768–60999 and Windows' 49152–65535.
    pub const DEFAULT_EPHEMERAL: PortRange = PortRange { from: 1024, to: 65535 };

    /// The index of an endpoint by name.
    pub fn endpoint(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.name == name)
    }

    /// The classes of traffic worth telling apart here: TCP, UDP, ICMP, each protocol
    /// number a rule names, and every other protocol.
    pub fn classes(&self) -> Vec<ProtocolClass> {
        let mut named: BTreeSet<ProtocolClass> =
            [ProtocolClass::Tcp, ProtocolClass::Udp, ProtocolClass::Icmp].into_iter().collect();
        let nacl_protocols = self.nacls.iter().flat_map(|n| n.ingress.iter().chain(&n.egress)).map(|e| e.protocol);
        let group_protocols = self.groups.iter().flat_map(|g| &g.rules).map(|r| r.rule.protocol);
        named.extend(nacl_protocols.chain(group_protocols).filter_map(ProtocolClass::of));
        named.insert(ProtocolClass::Other);
        named.into_iter().collect()
    }
}
