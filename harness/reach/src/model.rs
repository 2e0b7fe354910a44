//! The vocabulary shared by specs, plans and observed deployments: protocols, port ranges,
//! NACL entries and security-group rules in one normalised form.
//!
//! A spec is parsed into these types by `plan`; a live or snapshotted deployment is read
//! into them by `observe`. Checks and the reachability evaluator then compare like with
//! like, whichever side a value came from.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An IP protocol as NACLs and security groups name it.
///
/// EC2 reports protocols as numbers in NACL entries (`"6"`) and as names or numbers in
/// security-group rules (`"tcp"`, `"-1"`); both normalise to this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Every protocol (`-1`).
    All,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// Any other protocol number.
    #[serde(untagged)]
    Number(u8),
}

impl Protocol {
    /// Parses the forms EC2 and specs use: `-1`/`all`, names, or numbers.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim().to_ascii_lowercase().as_str() {
            "-1" | "all" => Some(Protocol::All),
            "tcp" | "6" => Some(Protocol::Tcp),
            "udp" | "17" => Some(Protocol::Udp),
            "icmp" | "1" => Some(Protocol::Icmp),
            // EC2 names protocol 58 in security-group rules.
            "icmpv6" => Some(Protocol::Number(58)),
            other => other.parse::<u8>().ok().map(Protocol::Number),
        }
    }

    /// The value the EC2 API takes in `CreateNetworkAclEntry` (a number as text).
    pub fn nacl_api_value(self) -> String {
        match self {
            Protocol::All => "-1".into(),
            Protocol::Tcp => "6".into(),
            Protocol::Udp => "17".into(),
            Protocol::Icmp => "1".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }

    /// The value the EC2 API takes in `IpPermission.IpProtocol`.
    pub fn sg_api_value(self) -> String {
        match self {
            Protocol::All => "-1".into(),
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
            Protocol::Icmp => "icmp".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }

    /// Whether rules of this protocol carry a port range (TCP and UDP do).
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::All => f.write_str("all"),
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Number(n) => write!(f, "proto-{n}"),
        }
    }
}

/// An inclusive port range. A single port is `from == to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port, inclusive.
    pub from: u16,
    /// Last port, inclusive.
    pub to: u16,
}

impl PortRange {
    /// Every port, 0–65535.
    pub const ALL: PortRange = PortRange { from: 0, to: 65535 };

    /// One port.
    pub fn single(port: u16) -> PortRange {
        PortRange { from: port, to: port }
    }

    /// Parses `"80"`, `"1024-65535"` or `"all"`. Returns `None` for anything else,
    /// including an inverted range.
    pub fn parse(s: &str) -> Option<PortRange> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Some(PortRange::ALL);
        }
        let range = match s.split_once('-') {
            Some((a, b)) => PortRange { from: a.trim().parse().ok()?, to: b.trim().parse().ok()? },
            None => PortRange::single(s.parse().ok()?),
        };
        (range.from <= range.to).then_some(range)
    }

    /// Whether `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        self.from <= port && port <= self.to
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else if *self == PortRange::ALL {
            f.write_str("all")
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// Traffic direction, seen from the subnet (NACL) or the instance (security group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the subnet or instance.
    Ingress,
    /// Out of the subnet or instance.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// `true` for egress, as EC2's `Egress` flag.
    pub fn is_egress(self) -> bool {
        self == Direction::Egress
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A NACL entry's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Let the packet through.
    Allow,
    /// Drop the packet.
    Deny,
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        })
    }
}

/// The rule number AWS gives the implicit `*` entry that denies what nothing else matched.
pub const DEFAULT_DENY_RULE_NUMBER: i32 = 32767;

/// Highest rule number a user may create (AWS rejects larger; LocalStack accepts them).
pub const MAX_USER_RULE_NUMBER: i32 = 32766;

/// One NACL entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NaclEntry {
    /// Evaluation order: lowest first; 32767 is the implicit default deny.
    pub rule_number: i32,
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol matched.
    pub protocol: Protocol,
    /// Ports matched, for TCP and UDP; `None` means every port.
    pub ports: Option<PortRange>,
    /// Remote address range (source for ingress, destination for egress).
    pub cidr: IpNet,
    /// Verdict on a match.
    pub action: RuleAction,
}

impl NaclEntry {
    /// Whether this is the implicit `*` deny entry that AWS adds to every NACL.
    pub fn is_default_deny(&self) -> bool {
        self.rule_number == DEFAULT_DENY_RULE_NUMBER && self.action == RuleAction::Deny
    }
}

impl fmt::Display for NaclEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule =
            if self.rule_number == DEFAULT_DENY_RULE_NUMBER { "*".to_string() } else { self.rule_number.to_string() };
        write!(f, "#{rule} {} {} {}", self.direction, self.action, self.protocol)?;
        if let Some(p) = self.ports {
            write!(f, "/{p}")?;
        }
        write!(f, " {}", self.cidr)
    }
}

/// Where a security-group rule's traffic comes from (ingress) or goes to (egress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An address range.
    Cidr(IpNet),
    /// Another security group, by the logical name the spec gives it. In an observed
    /// deployment a group id that maps to no logical name stays a [`Peer::GroupId`].
    Group(String),
    /// A group id that could not be mapped to a logical name.
    GroupId(String),
    /// A managed prefix list.
    PrefixList(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Cidr(c) => write!(f, "{c}"),
            Peer::Group(g) => write!(f, "group {g}"),
            Peer::GroupId(g) => write!(f, "group id {g}"),
            Peer::PrefixList(p) => write!(f, "prefix list {p}"),
        }
    }
}

/// One security-group permission for one peer, normalised: EC2's `IpPermission` with
/// several ranges and group pairs becomes several `SgRule`s.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SgRule {
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol allowed.
    pub protocol: Protocol,
    /// Ports allowed for TCP and UDP; `None` means every port.
    pub ports: Option<PortRange>,
    /// The peer.
    pub peer: Peer,
}

impl fmt::Display for SgRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.direction == Direction::Ingress { "from" } else { "to" };
        write!(f, "{} {}", self.direction, self.protocol)?;
        if let Some(p) = self.ports {
            write!(f, "/{p}")?;
        }
        write!(f, " {dir} {}", self.peer)
    }
}

/// The egress rule AWS adds to every new security group: all traffic to 0.0.0.0/0.
pub fn default_sg_egress() -> SgRule {
    SgRule {
        direction: Direction::Egress,
        protocol: Protocol::All,
        ports: None,
        peer: Peer::Cidr("0.0.0.0/0".parse().expect("literal CIDR")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_parses_every_form_ec2_reports() {
        assert_eq!(Protocol::parse("6"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("TCP"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("-1"), Some(Protocol::All));
        assert_eq!(Protocol::parse("17"), Some(Protocol::Udp));
        assert_eq!(Protocol::parse("47"), Some(Protocol::Number(47)));
        assert_eq!(Protocol::parse("smtp"), None);
    }

    #[test]
    fn port_range_rejects_inverted_and_garbage() {
        assert_eq!(PortRange::parse("1024-65535"), Some(PortRange { from: 1024, to: 65535 }));
        assert_eq!(PortRange::parse("80"), Some(PortRange::single(80)));
        assert_eq!(PortRange::parse("443-80"), None);
        assert_eq!(PortRange::parse("70000"), None);
        assert_eq!(PortRange::parse("http"), None);
    }
}
