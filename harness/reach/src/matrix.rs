//! The whole network at once: what every endpoint can open to every other, compared with
//! what the design intends. Intended flows that are blocked say what blocks them;
//! allowed flows that nobody intended say which rules let them through.

use std::fmt;

use serde::Serialize;

use crate::model::PortRange;
use crate::network::{Network, ProtocolClass};
use crate::path::{Step, allowed_ports, allowed_ports_with, trace, trace_with};
use crate::ports::PortSet;
use crate::tables::Tables;

/// A flow the design means to allow, by endpoint index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Client endpoint.
    pub from: usize,
    /// Server endpoint.
    pub to: usize,
    /// Class of traffic; `None` for every class (protocol `-1`).
    pub class: Option<ProtocolClass>,
    /// Destination ports (every port for portless classes).
    pub ports: PortRange,
}

impl Intent {
    fn covers(&self, class: ProtocolClass) -> bool {
        self.class.is_none_or(|c| c == class)
    }

    fn ports_in(&self, class: ProtocolClass) -> PortSet {
        if class.has_ports() { self.ports.into() } else { PortSet::full() }
    }
}

/// Ports of one class of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Class of traffic.
    pub protocol: ProtocolClass,
    /// Destination ports (`all` for portless classes).
    pub ports: PortSet,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protocol.has_ports() {
            write!(f, "{}/{}", self.protocol, self.ports)
        } else {
            write!(f, "{}", self.protocol)
        }
    }
}

/// How one cell compares with the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellVerdict {
    /// Nothing intended, nothing allowed.
    Closed,
    /// Exactly what is intended is allowed.
    AsIntended,
    /// Some intended traffic is blocked; nothing else is allowed.
    Blocked,
    /// Everything intended passes, and more.
    Open,
    /// Some intended traffic is blocked and some unintended traffic passes.
    BlockedAndOpen,
}

impl CellVerdict {
    /// Whether the cell departs from the design.
    pub fn is_finding(self) -> bool {
        !matches!(self, CellVerdict::Closed | CellVerdict::AsIntended)
    }
}

/// What one endpoint can open to another.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Client.
    pub from: String,
    /// Server.
    pub to: String,
    /// Traffic that passes, per class (classes with no port left out).
    pub allowed: Vec<Service>,
    /// Traffic the design intends, per class.
    pub intended: Vec<Service>,
    /// The comparison.
    pub verdict: CellVerdict,
}

/// Every ordered pair of distinct endpoints (the internet to itself left out).
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Endpoint names, in rows' and columns' order.
    pub endpoints: Vec<String>,
    /// Cells, row by row.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// The cell from one endpoint to another.
    pub fn cell(&self, from: &str, to: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.from == from && c.to == to)
    }
}

/// An intended flow's fate.
#[derive(Debug, Clone, Serialize)]
pub struct IntentVerdict {
    /// Whether every intended port passes.
    pub allowed: bool,
    /// The components that block it, for the first port that does not pass.
    pub blocked_by: Vec<String>,
}

/// Traffic that passes though the design does not intend it.
#[derive(Debug, Clone, Serialize)]
pub struct Unintended {
    /// Client.
    pub from: String,
    /// Server.
    pub to: String,
    /// The traffic.
    pub service: Service,
    /// Each component's rule that lets its first port through.
    pub allowed_by: Vec<String>,
}

/// The full evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The zone matrix.
    pub matrix: Matrix,
    /// One verdict per intent, in the order given.
    pub intents: Vec<IntentVerdict>,
    /// Allowed traffic that no intent covers.
    pub unintended: Vec<Unintended>,
}

fn texts(steps: Vec<Step>, passing: bool) -> Vec<String> {
    steps.into_iter().filter(|s| s.passes == passing).map(|s| s.text).collect()
}

/// One intent, on its own: cheaper than the whole matrix when only intents matter.
pub fn evaluate(net: &Network, intent: &Intent) -> IntentVerdict {
    let classes: Vec<ProtocolClass> = match intent.class {
        Some(c) => vec![c],
        None => net.classes(),
    };
    for class in classes {
        let want = intent.ports_in(class);
        let have = allowed_ports(net, intent.from, intent.to, class);
        if let Some(port) = have.first_missing(want.ranges()[0]) {
            return IntentVerdict {
                allowed: false,
                blocked_by: texts(trace(net, intent.from, intent.to, class, port), false),
            };
        }
    }
    IntentVerdict { allowed: true, blocked_by: vec![] }
}

/// Every pair, every class: the matrix, the intents' verdicts, and the unintended flows.
pub fn analyse(net: &Network, intents: &[Intent]) -> Analysis {
    let classes = net.classes();
    let tables = Tables::new(net, &classes);
    let n = net.endpoints.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && !(net.endpoints[i].internet && net.endpoints[j].internet))
        .collect();
    let per_pair = in_parallel(&pairs, |&(i, j)| cell(net, &tables, &classes, intents, i, j));
    let mut cells = Vec::with_capacity(pairs.len());
    let mut unintended = Vec::new();
    for (c, extra) in per_pair {
        cells.push(c);
        unintended.extend(extra);
    }
    Analysis {
        matrix: Matrix { endpoints: net.endpoints.iter().map(|e| e.name.clone()).collect(), cells },
        intents: intents.iter().map(|t| evaluate(net, t)).collect(),
        unintended,
    }
}

/// The cell from endpoint `i` to endpoint `j`, and the unintended flows in it.
fn cell(
    net: &Network,
    tables: &Tables,
    classes: &[ProtocolClass],
    intents: &[Intent],
    i: usize,
    j: usize,
) -> (Cell, Vec<Unintended>) {
    let (mut blocked, mut open) = (false, false);
    let (mut allowed_services, mut intended_services, mut unintended) = (Vec::new(), Vec::new(), Vec::new());
    for &class in classes {
        let have = allowed_ports_with(net, tables, i, j, class);
        let want = intents
            .iter()
            .filter(|t| t.from == i && t.to == j && t.covers(class))
            .fold(PortSet::empty(), |acc, t| acc.union(&t.ports_in(class)));
        blocked |= !want.subtract(&have).is_empty();
        let extra = have.subtract(&want);
        if let Some(first) = extra.ranges().first() {
            open = true;
            unintended.push(Unintended {
                from: net.endpoints[i].name.clone(),
                to: net.endpoints[j].name.clone(),
                allowed_by: texts(trace_with(net, tables, i, j, class, first.from), true),
                service: Service { protocol: class, ports: extra },
            });
        }
        if !have.is_empty() {
            allowed_services.push(Service { protocol: class, ports: have });
        }
        if !want.is_empty() {
            intended_services.push(Service { protocol: class, ports: want });
        }
    }
    let verdict = match (blocked, open) {
        (true, true) => CellVerdict::BlockedAndOpen,
        (true, false) => CellVerdict::Blocked,
        (false, true) => CellVerdict::Open,
        (false, false) if intended_services.is_empty() => CellVerdict::Closed,
        (false, false) => CellVerdict::AsIntended,
    };
    let cell = Cell {
        from: net.endpoints[i].name.clone(),
        to: net.endpoints[j].name.clone(),
        allowed: allowed_services,
        intended: intended_services,
        verdict,
    };
    (cell, unintended)
}

/// `f` of every item, in order, the items split across the machine's cores: the pairs of
/// endpoints (tens of thousands in large networks) and the sides of NACLs are each
/// independent. A handful of items is not worth a thread.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || items.len() < 16 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>())).collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().expect("evaluator thread panicked"));
        }
        out
    })
}
