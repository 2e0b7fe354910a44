//! The one model both pictures draw. [`Diagram::new`] turns a [`Topology`] and the
//! evaluator's [`Reachability`] into nodes, clusters and edges with their final ids and
//! label text; the Mermaid writer prints it and the HTML picture lays it out, so the two
//! cannot disagree about what is there (`tests/offline/picture.rs` compares them).
//!
//! Structure, which the layout relies on: nodes outside any cluster (the internet, its
//! gateway, named external ranges), one frame cluster (the VPC) holding a cluster per
//! zone, and nodes (the zone's NACL and security groups) inside zone clusters.

use std::collections::{BTreeMap, BTreeSet};

use microseg_reach::matrix::{CellVerdict, Service};
use microseg_reach::network::ProtocolClass;
use microseg_reach::ports::PortSet;

use super::Topology;
use crate::reach::Reachability;

/// Colours of the recipe's own diagram, zone by zone, then round again.
pub const PALETTE: [&str; 6] = ["#FF6B6B", "#4ECDC4", "#45B7D1", "#96CEB4", "#FFEAA7", "#DDA0DD"];

/// What a node stands for; it decides the node's shape and colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// The internet (drawn round).
    Internet,
    /// The VPC's internet gateway.
    Gateway,
    /// A named address range outside the VPC (the spec's `externals`).
    External,
    /// The NACL a zone's subnet is on.
    Nacl,
    /// A security group of a zone's workloads.
    Group,
}

/// A box with lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Id, unique among nodes and clusters: letters, digits and underscores.
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// Its text, line by line.
    pub lines: Vec<String>,
    /// The cluster it is drawn in (index into [`Diagram::clusters`]).
    pub cluster: Option<usize>,
    /// Fill colour, where it has its own.
    pub fill: Option<&'static str>,
}

/// A box around other boxes: the VPC, or a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Id, unique among nodes and clusters.
    pub id: String,
    /// Its title, line by line.
    pub title: Vec<String>,
    /// The cluster it is drawn in.
    pub parent: Option<usize>,
    /// Border colour, where it has its own.
    pub colour: Option<&'static str>,
}

/// One end of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// A node, by index.
    Node(usize),
    /// A cluster, by index.
    Cluster(usize),
}

/// What an edge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    /// The internet and its gateway (no direction).
    Link,
    /// The gateway and a zone whose route table sends `0.0.0.0/0` to it.
    Route,
    /// A group rule naming another group: traffic from the first to the second.
    Reference,
    /// Traffic the evaluator finds passing from one place to another.
    Traffic,
}

/// An arrow (or, for [`EdgeKind::Link`], a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Where it starts.
    pub from: End,
    /// Where it points.
    pub to: End,
    /// What it says.
    pub kind: EdgeKind,
    /// Its label (protocols and ports), if it has one.
    pub label: Option<String>,
    /// Traffic nobody intended passes here (drawn red).
    pub unintended: bool,
    /// The longer story, for a tooltip.
    pub detail: String,
}

/// Nodes, clusters and edges, ids final.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagram {
    /// Clusters, parents before children.
    pub clusters: Vec<Cluster>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Edges, in the order they are drawn.
    pub edges: Vec<Edge>,
}

/// Hands out ids: letters, digits and underscores, never the same twice (two names
/// that clean up alike get `_2`, `_3`, …).
#[derive(Default)]
struct Ids(BTreeSet<String>);

impl Ids {
    fn id(&mut self, prefix: &str, name: &str) -> String {
        let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let base = if name.is_empty() { prefix.to_string() } else { format!("{prefix}_{clean}") };
        let mut id = base.clone();
        let mut n = 2;
        while !self.0.insert(id.clone()) {
            id = format!("{base}_{n}");
            n += 1;
        }
        id
    }
}

/// Traffic between two ends, merged over the matrix cells that map onto them.
struct Flow {
    from: End,
    to: End,
    services: BTreeMap<ProtocolClass, PortSet>,
    unintended: bool,
    cells: Vec<String>,
}

impl Diagram {
    /// The picture of a topology, with the traffic the evaluator finds passing between
    /// zones when `reach` is given. A group used in several zones is drawn in each,
    /// and a reference between groups joins every drawing of one to every drawing of
    /// the other. Traffic between endpoints of one zone is left to the matrix.
    pub fn new(t: &Topology, reach: Option<&Reachability>) -> Diagram {
        let mut ids = Ids::default();
        let mut d = Diagram::default();
        let internet = d.node(ids.id("INTERNET", ""), NodeKind::Internet, vec!["Internet".into()], None, None);
        let gateway = t.internet_gateway.as_ref().map(|igw| {
            let lines = vec!["Internet Gateway".into(), igw.clone()];
            d.node(ids.id("IGW", ""), NodeKind::Gateway, lines, None, None)
        });
        let externals: BTreeMap<&str, usize> = t
            .externals
            .iter()
            .map(|(name, cidr)| {
                let lines = vec![format!("external {name}"), cidr.clone()];
                (name.as_str(), d.node(ids.id("X", name), NodeKind::External, lines, None, None))
            })
            .collect();
        let vpc_title = t.vpc.as_ref().map_or("VPC (not found)".to_string(), |(id, cidr)| format!("VPC {id} ({cidr})"));
        d.clusters.push(Cluster { id: ids.id("VPC", ""), title: vec![vpc_title], parent: None, colour: None });
        let vpc = d.clusters.len() - 1;

        let groups_spread: BTreeMap<&str, usize> =
            t.zones.iter().flat_map(|z| &z.groups).fold(BTreeMap::new(), |mut m, (logical, _, _)| {
                *m.entry(logical.as_str()).or_default() += 1;
                m
            });
        let mut zone_cluster: BTreeMap<&str, usize> = BTreeMap::new();
        let mut nacl_node: BTreeMap<&str, usize> = BTreeMap::new();
        let mut group_nodes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, z) in t.zones.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let subnet =
                z.subnet.as_ref().map_or("subnet not found".to_string(), |(id, cidr)| format!("{id} ({cidr})"));
            d.clusters.push(Cluster {
                id: ids.id("Z", &z.name),
                title: vec![format!("{} zone", z.name), subnet],
                parent: Some(vpc),
                colour: Some(colour),
            });
            let c = d.clusters.len() - 1;
            zone_cluster.insert(&z.name, c);
            let nacl = match &z.nacl {
                Some((name, id)) => vec![
                    format!("NACL {name}"),
                    id.clone(),
                    format!("{} in · {} out", z.nacl_entries.0, z.nacl_entries.1),
                ],
                None => vec!["no NACL association".into()],
            };
            nacl_node.insert(&z.name, d.node(ids.id("NACL", &z.name), NodeKind::Nacl, nacl, Some(c), Some(colour)));
            for (logical, name, id) in &z.groups {
                let node_id = if groups_spread.get(logical.as_str()).copied().unwrap_or(0) > 1 {
                    ids.id("SG", &format!("{logical}_{}", z.name))
                } else {
                    ids.id("SG", logical)
                };
                let n = d.node(node_id, NodeKind::Group, vec![format!("SG {name}"), id.clone()], Some(c), None);
                group_nodes.entry(logical).or_default().push(n);
            }
        }

        if let Some(igw) = gateway {
            d.edges.push(Edge {
                from: End::Node(internet),
                to: End::Node(igw),
                kind: EdgeKind::Link,
                label: None,
                unintended: false,
                detail: "the internet gateway attached to the VPC".into(),
            });
            for z in t.zones.iter().filter(|z| z.internet_route) {
                d.edges.push(Edge {
                    from: End::Node(igw),
                    to: End::Node(nacl_node[z.name.as_str()]),
                    kind: EdgeKind::Route,
                    label: None,
                    unintended: false,
                    detail: format!("zone {}: its route table sends 0.0.0.0/0 to the internet gateway", z.name),
                });
            }
        }
        for r in &t.references {
            let (Some(from), Some(to)) = (group_nodes.get(r.from.as_str()), group_nodes.get(r.to.as_str())) else {
                continue;
            };
            for &a in from {
                for &b in to {
                    d.edges.push(Edge {
                        from: End::Node(a),
                        to: End::Node(b),
                        kind: EdgeKind::Reference,
                        label: Some(r.service.clone()),
                        unintended: false,
                        detail: format!("group {} → group {}: {}", r.from, r.to, r.service),
                    });
                }
            }
        }

        let Some(reach) = reach else { return d };
        let end = |name: &str| -> Option<End> {
            if name == "internet" {
                return Some(End::Node(internet));
            }
            if let Some(&x) = externals.get(name) {
                return Some(End::Node(x));
            }
            let zone = t.endpoints.get(name).map_or(name, String::as_str);
            zone_cluster.get(zone).map(|&c| End::Cluster(c))
        };
        let mut flows: Vec<Flow> = Vec::new();
        for c in reach.matrix.cells.iter().filter(|c| !c.allowed.is_empty()) {
            let (Some(from), Some(to)) = (end(&c.from), end(&c.to)) else { continue };
            if from == to {
                continue;
            }
            let at = match flows.iter().position(|f| f.from == from && f.to == to) {
                Some(i) => i,
                None => {
                    flows.push(Flow { from, to, services: BTreeMap::new(), unintended: false, cells: vec![] });
                    flows.len() - 1
                }
            };
            let f = &mut flows[at];
            for s in &c.allowed {
                let ports = f.services.entry(s.protocol).or_insert_with(PortSet::empty);
                *ports = ports.union(&s.ports);
            }
            let unintended = matches!(c.verdict, CellVerdict::Open | CellVerdict::BlockedAndOpen);
            f.unintended |= unintended;
            let passes: Vec<String> = c.allowed.iter().map(ToString::to_string).collect();
            let note = if unintended { ", not all of it intended" } else { "" };
            f.cells.push(format!("{} → {}: {}{note}", c.from, c.to, passes.join(" ")));
        }
        for f in flows {
            let services: Vec<String> =
                f.services.into_iter().map(|(protocol, ports)| Service { protocol, ports }.to_string()).collect();
            d.edges.push(Edge {
                from: f.from,
                to: f.to,
                kind: EdgeKind::Traffic,
                label: Some(services.join(" ")),
                unintended: f.unintended,
                detail: format!("passes: {}", f.cells.join("; ")),
            });
        }
        d
    }

    fn node(
        &mut self,
        id: String,
        kind: NodeKind,
        lines: Vec<String>,
        cluster: Option<usize>,
        fill: Option<&'static str>,
    ) -> usize {
        self.nodes.push(Node { id, kind, lines, cluster, fill });
        self.nodes.len() - 1
    }

    /// The id of an edge's end.
    pub fn id_of(&self, end: End) -> &str {
        match end {
            End::Node(n) => &self.nodes[n].id,
            End::Cluster(c) => &self.clusters[c].id,
        }
    }

    /// The cluster with no parent (the VPC).
    pub fn frame(&self) -> Option<usize> {
        self.clusters.iter().position(|c| c.parent.is_none())
    }

    /// Whether `inner` is `outer` or lies (at any depth) inside it.
    pub fn within(&self, inner: usize, outer: usize) -> bool {
        let mut at = Some(inner);
        while let Some(c) = at {
            if c == outer {
                return true;
            }
            at = self.clusters[c].parent;
        }
        false
    }
}
