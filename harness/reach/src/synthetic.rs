//! Synthetic networks of any size, for benchmarks and property tests: subnets in
//! 10.0.0.0/8, one NACL each, groups spread over the subnets, and rules that look like
//! real ones (service ports, ephemeral ranges, peers that are subnets, the VPC, the
//! world or other groups). Deterministic for a given seed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::model::{Direction, NaclEntry, Peer, PortRange, Protocol, RuleAction, SgRule};
use crate::network::{Endpoint, Group, GroupPeer, GroupRule, InternetRoute, Nacl, Network};

/// How big a network to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Subnets (each a zone endpoint with its own NACL).
    pub subnets: usize,
    /// Security groups, spread evenly over the subnets.
    pub groups: usize,
    /// Rules in all: half NACL entries, half group rules.
    pub rules: usize,
}

/// A small, fast, seedable generator (xorshift64*): reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn subnet(i: usize) -> Ipv4Net {
    let i = i as u32;
    Ipv4Net::new(Ipv4Addr::new(10, (i >> 8) as u8, (i & 0xff) as u8, 0), 24).expect("valid prefix")
}

const SERVICE_PORTS: [u16; 8] = [22, 80, 161, 443, 3306, 5432, 6379, 8080];

fn ports(rng: &mut Rng) -> (Protocol, Option<PortRange>) {
    match rng.below(10) {
        0 => (Protocol::All, None),
        1 => (Protocol::Icmp, None),
        2 => (Protocol::Udp, Some(PortRange::single(SERVICE_PORTS[rng.below(SERVICE_PORTS.len())]))),
        3 | 4 => (Protocol::Tcp, Some(PortRange { from: 1024, to: 65535 })),
        _ => (Protocol::Tcp, Some(PortRange::single(SERVICE_PORTS[rng.below(SERVICE_PORTS.len())]))),
    }
}

/// A network of the given size.
pub fn network(size: Size, seed: u64) -> Network {
    let mut rng = Rng(seed.max(1));
    let s = size.subnets.max(1);
    let vpc: IpNet = "10.0.0.0/8".parse().expect("literal");
    let world: IpNet = "0.0.0.0/0".parse().expect("literal");
    let cidr = |rng: &mut Rng| -> IpNet {
        match rng.below(10) {
            0 => world,
            1 => vpc,
            _ => IpNet::V4(subnet(rng.below(s))),
        }
    };

    let nacl_entries = size.rules / 2;
    let nacls: Vec<Nacl> = (0..s)
        .map(|i| {
            let count = nacl_entries / s + usize::from(i < nacl_entries % s);
            let entries = (0..count).map(|k| {
                let (protocol, ports) = ports(&mut rng);
                NaclEntry {
                    rule_number: 100 + 10 * (k / 2) as i32,
                    direction: if k % 2 == 0 { Direction::Ingress } else { Direction::Egress },
                    protocol,
                    ports,
                    cidr: cidr(&mut rng),
                    action: if rng.chance(15) { RuleAction::Deny } else { RuleAction::Allow },
                }
            });
            Nacl::new(format!("nacl-{i}"), entries)
        })
        .collect();

    let g = size.groups.max(1);
    let group_rules = size.rules - nacl_entries;
    let groups: Vec<Group> = (0..g)
        .map(|i| {
            let count = group_rules / g + usize::from(i < group_rules % g);
            let rules = (0..count)
                .map(|k| {
                    let (protocol, ports) = ports(&mut rng);
                    let direction = if k % 2 == 0 { Direction::Ingress } else { Direction::Egress };
                    let (rule_peer, peer) = if rng.chance(60) {
                        let other = rng.below(g);
                        (Peer::Group(format!("sg-{other}")), GroupPeer::Group(other))
                    } else {
                        let c = cidr(&mut rng);
                        (Peer::Cidr(c), GroupPeer::Cidr(c))
                    };
                    GroupRule { rule: SgRule { direction, protocol, ports, peer: rule_peer }, peer }
                })
                .collect();
            Group { name: format!("sg-{i}"), rules }
        })
        .collect();

    let mut endpoints: Vec<Endpoint> = (0..s)
        .map(|i| Endpoint {
            name: format!("zone-{i}"),
            addr: IpAddr::V4(Ipv4Addr::from(u32::from(subnet(i).network()) + 10)),
            internet: false,
            subnet: Some(i),
            nacl: Some(i),
            groups: (0..g).filter(|k| k % s == i).collect::<BTreeSet<_>>(),
            internet_route: (i % 4 == 0)
                .then(|| InternetRoute::Gateway { route: "0.0.0.0/0 → igw-synthetic".into(), public: i % 8 == 0 }),
            problems: vec![],
            ephemeral: None,
        })
        .collect();
    endpoints.push(Endpoint::internet(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))));
    Network { nacls, groups, endpoints, ephemeral: Network::DEFAULT_EPHEMERAL }
}
