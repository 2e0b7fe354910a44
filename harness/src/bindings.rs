//! Which deployed resource plays which part of a plan: logical names to ids.
//!
//! A run knows its bindings from its ledger (it created everything). The acceptance gate
//! finds them by discovery in a deployment it did not build. Checks take bindings as
//! given and never care which of the two produced them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Peer;

/// Logical names of a plan bound to the ids of one deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    /// The VPC.
    pub vpc_id: Option<String>,
    /// Zone name → subnet id.
    pub zones: BTreeMap<String, String>,
    /// NACL name → NACL id.
    pub nacls: BTreeMap<String, String>,
    /// Security-group name → group id.
    pub security_groups: BTreeMap<String, String>,
    /// Route-table name → route-table id.
    pub route_tables: BTreeMap<String, String>,
    /// The internet gateway.
    pub internet_gateway_id: Option<String>,
    /// NAT-gateway name → NAT gateway id.
    #[serde(default)]
    pub nat_gateways: BTreeMap<String, String>,
    /// NAT-gateway name → allocation id of its Elastic IP.
    #[serde(default)]
    pub elastic_ips: BTreeMap<String, String>,
    /// The flow log.
    pub flow_log_id: Option<String>,
    /// The flow-log role's name.
    pub role_name: Option<String>,
    /// The flow-log group's name.
    pub log_group_name: Option<String>,
    /// The metric filter's name.
    pub metric_filter_name: Option<String>,
    /// The alarm's name.
    pub alarm_name: Option<String>,
    /// The metric name the filter publishes and the alarm watches.
    pub metric_name: Option<String>,
}

impl Bindings {
    /// The logical name of a group id, if the id is bound.
    pub fn group_name_of(&self, id: &str) -> Option<&str> {
        self.security_groups.iter().find(|(_, v)| *v == id).map(|(k, _)| k.as_str())
    }

    /// Rewrites a peer read from EC2 (`GroupId`) to the logical name it is bound to.
    pub fn resolve_peer(&self, peer: &Peer) -> Peer {
        match peer {
            Peer::GroupId(id) => match self.group_name_of(id) {
                Some(name) => Peer::Group(name.to_string()),
                None => peer.clone(),
            },
            other => other.clone(),
        }
    }

    /// The zone name of a subnet id, if bound.
    pub fn zone_of_subnet(&self, subnet_id: &str) -> Option<&str> {
        self.zones.iter().find(|(_, v)| *v == subnet_id).map(|(k, _)| k.as_str())
    }
}
