//! microseg's reachability engine, pure and offline.
//!
//! Given endpoints (zones' workloads and the internet), the NACLs and security groups
//! that filter them and their routes to the internet ([`network`]), it computes which
//! traffic actually gets through ([`path`]), for every pair at once as a zone matrix
//! compared with the design's intent ([`matrix`]), and finds rules that do nothing
//! ([`lint`]). It knows nothing of AWS's APIs: `microseg-harness` builds a [`Network`]
//! from a live deployment, a snapshot or a plan.
#![warn(missing_docs)]

pub mod lint;
pub mod matrix;
pub mod model;
pub mod network;
pub mod path;
pub mod ports;
pub mod synthetic;
mod tables;

pub use matrix::{Analysis, Intent, analyse};
pub use network::{Endpoint, Group, GroupPeer, GroupRule, InternetRoute, Nacl, NatHop, Network, ProtocolClass};
pub use ports::PortSet;
