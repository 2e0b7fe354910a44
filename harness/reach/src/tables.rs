//! Every NACL's verdict on every endpoint, worked out once for the whole matrix.
//!
//! The matrix asks each NACL the same questions again and again: a pair's request and
//! reply cross two NACLs, and every endpoint is in hundreds of pairs. A verdict depends
//! only on which of the NACL's entries hold the peer's address, and most peers are held
//! by the same few (`0.0.0.0/0`, the VPC's range): each distinct list of entries is
//! walked once per class, and the peers that share a list share its port sets.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::model::Direction;
use crate::network::{Network, ProtocolClass};
use crate::path::{NaclVerdicts, first_match_ports};
use crate::ports::PortSet;

/// [`NaclVerdicts`] looked up, for the classes the tables were built for.
pub(crate) struct NaclTables {
    classes: Vec<ProtocolClass>,
    endpoints: usize,
    /// Per NACL, direction and peer endpoint, in that order: where the peer's port sets
    /// start in `sets`, one per class.
    start: Vec<usize>,
    sets: Vec<PortSet>,
}

impl NaclTables {
    /// The verdicts of every NACL of `net`, both directions, on every endpoint, for each
    /// of `classes`.
    pub(crate) fn new(net: &Network, classes: &[ProtocolClass]) -> NaclTables {
        let mut start = Vec::with_capacity(net.nacls.len() * 2 * net.endpoints.len());
        let mut sets = Vec::new();
        for nacl in &net.nacls {
            for dir in Direction::BOTH {
                let entries = nacl.entries(dir);
                let mut walked: HashMap<Vec<usize>, usize> = HashMap::new();
                for peer in &net.endpoints {
                    let holding: Vec<usize> = entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.cidr.contains(&peer.addr))
                        .map(|(k, _)| k)
                        .collect();
                    let at = *walked.entry(holding).or_insert_with_key(|holding| {
                        let at = sets.len();
                        let walk = |&class| first_match_ports(holding.iter().map(|&k| &entries[k]), class);
                        sets.extend(classes.iter().map(walk));
                        at
                    });
                    start.push(at);
                }
            }
        }
        NaclTables { classes: classes.to_vec(), endpoints: net.endpoints.len(), start, sets }
    }
}

impl NaclVerdicts for NaclTables {
    fn ports(&self, nacl: usize, dir: Direction, class: ProtocolClass, peer: usize) -> Cow<'_, PortSet> {
        let row = (nacl * 2 + usize::from(dir.is_egress())) * self.endpoints + peer;
        let class = self.classes.iter().position(|&c| c == class).expect("tables built for every class asked");
        Cow::Borrowed(&self.sets[self.start[row] + class])
    }
}
