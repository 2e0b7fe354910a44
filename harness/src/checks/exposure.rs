//! Exposure: public addresses beyond the design. A subnet that hands out public IPv4 or
//! IPv6 addresses by default, or an interface that holds one, is reachable from the
//! internet wherever a route and the filters let it be, whatever the spec intends.

use super::{Check, CheckResult, subnet_label};
use crate::bindings::Bindings;
use crate::observe::Observed;
use crate::plan::Plan;

/// Subnets' address attributes and interfaces' public addresses, against the zones the
/// spec makes `public`.
pub(super) fn exposure(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c = Check::new("exposure", "public addresses only in the zones the spec makes public");
    let public_zone =
        |subnet_id: &str| b.zone_of_subnet(subnet_id).and_then(|z| plan.zone(z)).is_some_and(|z| z.public);
    for s in &observed.subnets {
        if s.map_public_ip_on_launch && !public_zone(&s.id) {
            c.finding(
                "MS-SUBNET-AUTO-PUBLIC-IP",
                subnet_label(b, observed, &s.id),
                "no public IPv4 address by default (the zone is not public)",
                "MapPublicIpOnLaunch is true: every instance launched here gets a public address",
            );
        }
        if s.assign_ipv6_on_creation {
            c.finding(
                "MS-SUBNET-AUTO-IPV6",
                subnet_label(b, observed, &s.id),
                "no IPv6 address by default (the spec plans no IPv6)",
                "AssignIpv6AddressOnCreation is true: every interface created here gets a globally routable address",
            );
        }
    }
    for n in &observed.network_interfaces {
        // A NAT gateway's interface holds its Elastic IP by design; the gateways check
        // judges whether the NAT gateway itself belongs.
        if n.interface_type == "nat_gateway" || public_zone(&n.subnet_id) {
            continue;
        }
        let addresses: Vec<&String> = n.public_ips.iter().chain(&n.ipv6_addresses).collect();
        if addresses.is_empty() {
            continue;
        }
        c.finding(
            "MS-ENI-PUBLIC-IP",
            format!("network interface in {} ({})", subnet_label(b, observed, &n.subnet_id), n.id),
            "no public address outside the public zones",
            format!(
                "{} interface{} holds {}",
                if n.interface_type.is_empty() { "an" } else { n.interface_type.as_str() },
                if n.description.is_empty() { String::new() } else { format!(" \"{}\"", n.description) },
                addresses.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    c.note("subnets' MapPublicIpOnLaunch and AssignIpv6AddressOnCreation, interfaces' public and IPv6 addresses").done()
}
