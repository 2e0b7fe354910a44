//! Routing and NAT: route tables, their associations and routes, the internet gateway,
//! NAT gateways, and isolated zones kept away from the internet.

use std::collections::BTreeSet;

use super::{Check, CheckResult, list, named, subnet_label, unplanned};
use crate::bindings::Bindings;
use crate::observe::Observed;
use crate::plan::{Plan, RouteTarget};

/// Route tables: associations, the local route, planned routes; the IGW is attached.
pub(super) fn routes(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c = Check::new(
        "routes",
        "route tables: associations, local route, planned routes; IGW attached; no other table or route",
    );
    let vpc = b.vpc_id.clone().unwrap_or_default();
    if plan.internet_gateway.is_some()
        && !b.internet_gateway_id.as_deref().is_some_and(|id| observed.internet_gateway_attached(id, &vpc))
    {
        c.finding(
            "MS-IGW-NOT-ATTACHED",
            format!("internet gateway {}", b.internet_gateway_id.as_deref().unwrap_or("(not found)")),
            format!("attached to {vpc}"),
            "not attached",
        );
    }
    for table in &plan.route_tables {
        let id = b.route_tables.get(&table.name);
        let resource = named("route table", &table.name, id);
        let Some(found) = id.and_then(|id| observed.route_tables.iter().find(|t| &t.id == id)) else {
            c.finding("MS-RT-MISSING", resource, "the route table exists", "no such route table");
            continue;
        };
        let want: BTreeSet<&String> = table.zones.iter().filter_map(|z| b.zones.get(z)).collect();
        let got: BTreeSet<&String> = found.subnet_ids.iter().collect();
        if want != got {
            c.finding(
                "MS-RT-ASSOCIATIONS",
                resource.clone(),
                format!("subnets of zones {}", table.zones.join(", ")),
                list(got.iter().map(|s| b.zone_of_subnet(s).map_or(s.to_string(), |z| format!("{z} ({s})")))),
            );
        }
        let vpc_cidr = plan.vpc.cidr.to_string();
        if !found.routes.iter().any(|r| r.destination == vpc_cidr && r.target == "local") {
            c.finding(
                "MS-RT-NO-LOCAL",
                resource.clone(),
                format!("{vpc_cidr} → local"),
                list(found.routes.iter().map(|r| format!("{} → {}", r.destination, r.target))),
            );
        }
        let planned: Vec<(String, String)> = table
            .routes
            .iter()
            .map(|(dest, target)| {
                let target_id = match target {
                    RouteTarget::InternetGateway => b.internet_gateway_id.clone(),
                    RouteTarget::NatGateway(n) => b.nat_gateways.get(n).cloned(),
                };
                (dest.to_string(), target_id.unwrap_or_else(|| format!("{target} (not found)")))
            })
            .collect();
        for (dest, target_id) in &planned {
            if !found.routes.iter().any(|r| &r.destination == dest && &r.target == target_id) {
                c.finding(
                    "MS-RT-ROUTE-MISSING",
                    resource.clone(),
                    format!("{dest} → {target_id}"),
                    list(found.routes.iter().map(|r| format!("{} → {}", r.destination, r.target))),
                );
            }
        }
        // A route to a destination the plan does not route changes where traffic goes: a
        // finding, named. (A planned destination with the wrong target is reported once,
        // above, as missing, with the target found.)
        for r in &found.routes {
            let planned_destination = planned.iter().any(|(d, _)| d == &r.destination);
            if !planned_destination && r.target != "local" {
                c.finding(
                    "MS-RT-ROUTE-UNEXPECTED",
                    resource.clone(),
                    list(planned.iter().map(|(d, t)| format!("{d} → {t}"))),
                    format!("also {} → {}", r.destination, r.target),
                );
            }
        }
    }
    // Isolated zones: no route that leads to or comes from the internet.
    for zone in plan.zones.iter().filter(|z| z.isolated) {
        let subnet = b.zones.get(&zone.name);
        let Some(table) = subnet.and_then(|s| observed.route_table_of_subnet(s)) else { continue };
        for r in table.routes.iter().filter(|r| leads_outside(r, observed)) {
            c.finding(
                "MS-ISOLATED-ROUTE",
                named("subnet", &zone.name, subnet),
                "no route to or from the internet (the zone is isolated)",
                format!("{} → {} in route table {}", r.destination, r.target, table.id),
            );
        }
    }
    // Closed world: the main table as AWS makes it (the local route only), and no table
    // the plan does not have. A subnet without an explicit association uses the main
    // table, so a route added there reaches every such subnet.
    let planned: Vec<&String> = b.route_tables.values().collect();
    for t in &observed.route_tables {
        let extra: Vec<String> = t
            .routes
            .iter()
            .filter(|r| r.target != "local")
            .map(|r| format!("{} → {}", r.destination, r.target))
            .collect();
        if t.is_main {
            if !extra.is_empty() {
                c.finding(
                    "MS-RT-MAIN-ROUTE",
                    format!("main route table ({})", t.id),
                    "the local route only, as AWS creates it",
                    format!("also {}", extra.join("; ")),
                );
            }
        } else if !planned.contains(&&t.id) {
            c.finding(
                "MS-RT-UNPLANNED",
                unplanned("route table", &t.id, &t.tags),
                "only the spec's route tables and the VPC's main one",
                format!(
                    "a table the spec does not have, for {}, routing {}",
                    list(t.subnet_ids.iter().map(|s| subnet_label(b, observed, s))),
                    list(&extra)
                ),
            );
        }
    }
    c.done()
}

/// Whether a route leads out of the VPC towards the internet: to an internet, egress-only
/// or NAT gateway, or any non-local route whose destination covers public addresses.
pub(super) fn leads_outside(r: &crate::observe::ObservedRoute, observed: &Observed) -> bool {
    let gateway = ["igw-", "eigw-", "nat-"].iter().any(|p| r.target.starts_with(p))
        || observed.nat_gateways.iter().any(|n| n.id == r.target)
        || observed.internet_gateways.iter().any(|g| g.id == r.target);
    r.target != "local" && (gateway || crate::reach::covers_internet(r))
}

/// NAT gateways: present, available, in their zone's subnet, holding their Elastic IP,
/// and in a subnet that routes to an attached internet gateway.
pub(super) fn nat_gateways(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let c = Check::new("nat-gateways", "NAT gateways: available, in their subnet, with their Elastic IP, routed out");
    if plan.nat_gateways.is_empty() {
        return c.skipped("the scenario has no NAT gateways");
    }
    let mut c = c;
    let vpc = b.vpc_id.clone().unwrap_or_default();
    for nat in &plan.nat_gateways {
        let id = b.nat_gateways.get(&nat.name);
        let resource = named("NAT gateway", &nat.name, id);
        let Some(found) = id.and_then(|id| observed.nat_gateway(id)) else {
            c.finding("MS-NAT-MISSING", resource, format!("a NAT gateway in zone {}", nat.zone), "no such NAT gateway");
            continue;
        };
        if found.state != "available" {
            c.finding("MS-NAT-NOT-AVAILABLE", resource.clone(), "state available", format!("state {}", found.state));
        }
        let subnet = b.zones.get(&nat.zone);
        if subnet != Some(&found.subnet_id) {
            c.finding(
                "MS-NAT-WRONG-SUBNET",
                resource.clone(),
                format!("in {}", named("subnet", &nat.zone, subnet)),
                format!("in subnet {}", found.subnet_id),
            );
        }
        match b.elastic_ips.get(&nat.name) {
            Some(eip) if found.allocation_ids.contains(eip) => {}
            want => c.finding(
                "MS-NAT-NO-EIP",
                resource.clone(),
                format!("public, holding Elastic IP {}", want.map_or("(not found)", |s| s.as_str())),
                format!("{} with {}", found.connectivity, list(&found.allocation_ids)),
            ),
        }
        let routed_out = observed.route_table_of_subnet(&found.subnet_id).is_some_and(|t| {
            t.routes
                .iter()
                .any(|r| crate::reach::covers_internet(r) && observed.internet_gateway_attached(&r.target, &vpc))
        });
        if !routed_out {
            c.finding(
                "MS-NAT-NO-IGW-ROUTE",
                resource,
                "its subnet routes 0.0.0.0/0 to the attached internet gateway",
                "no such route: the NAT gateway cannot reach the internet",
            );
        }
    }
    c.done()
}

/// Closed world for what joins the VPC to anything else: internet, NAT and egress-only
/// gateways, VPC endpoints and peering connections are the plan's, or accepted by the
/// spec. Each one the plan does not have is a way in or out that no other check weighs.
pub(super) fn gateways(plan: &Plan, observed: &Observed, b: &Bindings) -> CheckResult {
    let mut c =
        Check::new("gateways", "no internet, NAT or egress-only gateway, VPC endpoint or peering beyond the plan");
    let vpc = b.vpc_id.clone().unwrap_or_default();
    for g in &observed.internet_gateways {
        if plan.internet_gateway.is_none() || b.internet_gateway_id.as_ref() != Some(&g.id) {
            c.finding(
                "MS-IGW-UNPLANNED",
                unplanned("internet gateway", &g.id, &g.tags),
                if plan.internet_gateway.is_none() {
                    "no internet gateway: the spec has none".to_string()
                } else {
                    format!("only {}", b.internet_gateway_id.as_deref().unwrap_or("the spec's gateway"))
                },
                format!("attached to {vpc}"),
            );
        }
    }
    let planned_nats: Vec<&String> = b.nat_gateways.values().collect();
    for n in observed.nat_gateways.iter().filter(|n| !planned_nats.contains(&&n.id)) {
        c.finding(
            "MS-NAT-UNPLANNED",
            format!("{} in {}", unplanned("NAT gateway", &n.id, &n.tags), subnet_label(b, observed, &n.subnet_id)),
            "only the spec's NAT gateways",
            format!("{} NAT gateway, {}", n.connectivity, n.state),
        );
    }
    for g in &observed.egress_only_internet_gateways {
        c.finding(
            "MS-EIGW-UNPLANNED",
            unplanned("egress-only internet gateway", &g.id, &g.tags),
            "no egress-only internet gateway: the spec has none",
            format!("attached to {vpc}: IPv6 traffic can leave the VPC"),
        );
    }
    for e in &observed.vpc_endpoints {
        let placed = if e.endpoint_type.eq_ignore_ascii_case("gateway") {
            format!("routes in {}", list(&e.route_table_ids))
        } else {
            format!("interfaces in {}", list(e.subnet_ids.iter().map(|s| subnet_label(b, observed, s))))
        };
        c.finding(
            "MS-VPCE-UNPLANNED",
            format!("VPC endpoint {} ({})", e.service_name, e.id),
            "no VPC endpoint: the spec has none",
            format!("a {} endpoint, {}, with {placed}", e.endpoint_type, e.state),
        );
    }
    for p in &observed.peering_connections {
        let other = if p.requester_vpc_id == vpc { &p.accepter_vpc_id } else { &p.requester_vpc_id };
        c.finding(
            "MS-PEERING-UNPLANNED",
            format!("peering connection ({}, with {other})", p.id),
            "no peering connection: the spec has none",
            format!("{} peering with {other}", p.status),
        );
    }
    c.note("internet gateways attached, NAT gateways in the VPC, egress-only gateways, endpoints and peering connections of either side").done()
}

#[cfg(test)]
mod tests {

    use crate::checks::fixtures::*;

    #[test]
    fn route_table_without_the_igw_route() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.routes.retain(|r| r.target != "igw-designed");
        assert_eq!(
            findings(&plan, &o, &b, "routes"),
            pairs(&[("MS-RT-ROUTE-MISSING", "route table public (rtb-public)")])
        );
        assert_eq!(
            findings(&plan, &o, &b, "recipe-v4-routes"),
            pairs(&[("MS-SOURCE-ROUTE", "subnet web (subnet-web)")])
        );
    }

    #[test]
    fn a_wrong_target_is_one_missing_route_and_an_extra_destination_is_unexpected() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        let igw_route = rt.routes.iter_mut().find(|r| r.target == "igw-designed").unwrap();
        igw_route.target = crate::observe::NO_TARGET.into();
        let got = findings(&plan, &o, &b, "routes");
        assert_eq!(got, pairs(&[("MS-RT-ROUTE-MISSING", "route table public (rtb-public)")]));
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.routes.push(crate::observe::ObservedRoute {
            destination: "192.168.0.0/16".into(),
            target: "pcx-elsewhere".into(),
            state: Some("active".into()),
        });
        let got = findings(&plan, &o, &b, "routes");
        assert_eq!(
            got,
            pairs(&[
                ("MS-RT-ROUTE-MISSING", "route table public (rtb-public)"),
                ("MS-RT-ROUTE-UNEXPECTED", "route table public (rtb-public)")
            ])
        );
    }

    #[test]
    fn route_table_associations_local_route_and_igw_attachment() {
        let plan = recipe();
        let (mut o, b) = deployed(&plan);
        let rt = o.route_tables.iter_mut().find(|t| t.id == "rtb-public").unwrap();
        rt.subnet_ids.push("subnet-app".into());
        rt.routes.retain(|r| r.target != "local");
        o.internet_gateways[0].attached_vpc_ids.clear();
        let got = findings(&plan, &o, &b, "routes");
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, vec!["MS-IGW-NOT-ATTACHED", "MS-RT-ASSOCIATIONS", "MS-RT-NO-LOCAL"]);
        assert!(got[0].1.contains("igw-designed"), "{got:?}");
        assert_eq!(got[1].1, "route table public (rtb-public)");
    }
}
