//! The source document's own validation steps, each run as the source describes it.

use std::collections::BTreeSet;

use super::{Check, CheckResult, list, named};
use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::model::{Direction, NaclEntry, Peer};
use crate::observe::Observed;
use crate::plan::{Plan, PlannedSourceCheck, SourceCheckKind, SourceRouteTarget};
use microseg_reach::ProtocolClass;

/// One of the source document's own validation steps, run as it describes it.
pub(super) fn source_check(
    sc: &PlannedSourceCheck,
    plan: &Plan,
    observed: &Observed,
    b: &Bindings,
    caps: &Capabilities,
) -> CheckResult {
    let mut c = Check::new(&sc.id, &sc.title);
    match &sc.kind {
        SourceCheckKind::NaclAssociations { nacl, zone } => {
            let subnet = b.zones.get(zone);
            let id = b.nacls.get(nacl);
            let found: Vec<String> = id
                .and_then(|id| observed.nacl(id))
                .map(|n| n.associations.iter().map(|a| a.subnet_id.clone()).collect())
                .unwrap_or_default();
            if subnet.is_none_or(|s| found != vec![s.clone()]) {
                c.finding(
                    "MS-SOURCE-NACL-ASSOCIATIONS",
                    named("NACL", nacl, id),
                    format!("associations: the {zone} subnet {}", subnet.map_or("?", |s| s.as_str())),
                    list(&found),
                );
            }
        }
        SourceCheckKind::GroupReferences { group, references } => {
            let id = b.security_groups.get(group);
            let peers: BTreeSet<Peer> = id
                .and_then(|id| observed.security_group(id))
                .map(|g| g.rules.iter().map(|r| b.resolve_peer(&r.peer)).collect())
                .unwrap_or_default();
            for r in references {
                if !peers.contains(&Peer::Group(r.clone())) {
                    c.finding(
                        "MS-SOURCE-GROUP-REFERENCE",
                        named("security group", group, id),
                        format!("a rule referencing group {r}"),
                        list(&peers),
                    );
                }
            }
        }
        SourceCheckKind::FlowLogActive => {
            let fl = observed.flow_logs.iter().find(|f| Some(&f.id) == b.flow_log_id.as_ref());
            match fl {
                None => c.finding("MS-SOURCE-FLOW-LOG", "flow log (not found)", "status ACTIVE", "no flow log"),
                Some(_) if caps.has(Divergence::FlowLogStatusAlwaysActive) => {
                    c.divergence(Divergence::FlowLogStatusAlwaysActive)
                }
                Some(f) if f.flow_log_status.as_deref() != Some("ACTIVE") => c.finding(
                    "MS-SOURCE-FLOW-LOG",
                    format!("flow log {}", f.id),
                    "status ACTIVE",
                    format!("{:?}", f.flow_log_status),
                ),
                Some(_) => {}
            }
        }
        SourceCheckKind::Routes { zone, targets: wanted } => {
            let subnet = b.zones.get(zone);
            let table = subnet.and_then(|s| observed.route_table_of_subnet(s));
            let targets: Vec<String> = table
                .map(|t| t.routes.iter().map(|r| format!("{} → {}", r.destination, r.target)).collect())
                .unwrap_or_default();
            for t in wanted {
                let ok = table.is_some_and(|tb| {
                    tb.routes.iter().any(|r| match t {
                        SourceRouteTarget::Local => r.target == "local",
                        SourceRouteTarget::NatGateway => b.nat_gateways.values().any(|n| n == &r.target),
                        SourceRouteTarget::InternetGateway => {
                            r.target.starts_with("igw-") && Some(&r.target) == b.internet_gateway_id.as_ref()
                        }
                    })
                });
                if !ok {
                    c.finding(
                        "MS-SOURCE-ROUTE",
                        named("subnet", zone, subnet),
                        format!("a {t} route in its route table"),
                        list(&targets),
                    );
                }
            }
        }
        SourceCheckKind::NaclOrder { nacl } => {
            let id = b.nacls.get(nacl);
            let got: Vec<&NaclEntry> = id
                .and_then(|id| observed.nacl(id))
                .map(|n| n.entries.iter().filter(|e| !e.is_default_deny()).collect())
                .unwrap_or_default();
            let want: Vec<&NaclEntry> = plan.nacl(nacl).map(|n| n.entries.iter().collect()).unwrap_or_default();
            if got != want {
                c.finding("MS-SOURCE-NACL-ORDER", named("NACL", nacl, id), list(&want), list(&got));
            }
        }
        SourceCheckKind::NoAdminFromAnywhere => {
            // The source matches only rules whose FromPort or ToPort is 22 or 3389; a range
            // holding them (0-65535, protocol -1) admits them just as well, so it counts.
            for g in &observed.security_groups {
                for r in g.rules.iter().filter(|r| r.direction == Direction::Ingress) {
                    let Peer::Cidr(cidr) = &r.peer else { continue };
                    if cidr.prefix_len() != 0 || !ProtocolClass::Tcp.matched_by(r.protocol) {
                        continue;
                    }
                    let ports = ProtocolClass::Tcp.rule_ports(r.protocol, r.ports);
                    for (port, what) in [(22u16, "SSH"), (3389, "RDP")].into_iter().filter(|(p, _)| ports.contains(*p))
                    {
                        c.finding(
                            "MS-SOURCE-ADMIN-FROM-ANYWHERE",
                            format!(
                                "{} tcp/{port}",
                                named("security group", b.group_name_of(&g.id).unwrap_or(&g.name), Some(&g.id))
                            ),
                            format!("no {what} access from anywhere"),
                            format!("admitted by {r}"),
                        );
                    }
                }
            }
        }
        SourceCheckKind::NoSubnetOnDefaultNacl => {
            // Every VPC has a default NACL, so the source's test ("is there one?") flags
            // every VPC; what it guards against is a subnet left on it.
            for s in &observed.subnets {
                if let Some(n) = observed.nacl_of_subnet(&s.id).filter(|n| n.is_default) {
                    let zone = b.zones.iter().find(|(_, id)| **id == s.id).map_or(s.id.as_str(), |(z, _)| z.as_str());
                    c.finding(
                        "MS-SOURCE-DEFAULT-NACL-IN-USE",
                        named("subnet", zone, Some(&s.id)),
                        "associated with a custom NACL",
                        format!("on the VPC's default NACL ({})", n.id),
                    );
                }
            }
        }
    }
    c.done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::*;

    /// The microservices document's own audit, run on its design: the cache subnet sits
    /// on the default NACL (recorded in the as-written spec, gone in the hardened one);
    /// no group admits SSH or RDP from anywhere until one is made to, by a range that
    /// holds 22 and 3389 (which the source's FromPort/ToPort test would miss) or by
    /// protocol -1; 443 from anywhere and SSH from the office range stay fine.
    #[test]
    fn the_microservices_audit_flags_default_nacl_use_and_admin_ports_from_anywhere() {
        let load = |name: &str| {
            let (s, src) = spec::load(name).unwrap();
            Plan::from_spec(&s, &src).unwrap()
        };
        let audit = |plan: &Plan, o: &Observed, b: &Bindings, id: &str| -> Vec<(String, String)> {
            let sc = plan.source_checks.iter().find(|s| s.id == id).unwrap();
            source_check(sc, plan, o, b, &Capabilities::aws())
                .findings
                .into_iter()
                .map(|f| (f.id, without_ids(&f.resource)))
                .collect()
        };
        let plan = load("microservices");
        let (mut o, b) = deployed(&plan);
        assert_eq!(
            audit(&plan, &o, &b, "microservices-audit-network-acls"),
            [("MS-SOURCE-DEFAULT-NACL-IN-USE".to_string(), "subnet cache-net".to_string())]
        );
        assert!(audit(&plan, &o, &b, "microservices-audit-security-groups").is_empty());
        let hardened = load("microservices-hardened");
        let (ho, hb) = deployed(&hardened);
        assert!(audit(&hardened, &ho, &hb, "microservices-audit-network-acls").is_empty());

        let anywhere = |protocol, ports| SgRule {
            direction: Direction::Ingress,
            protocol,
            ports,
            peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
        };
        let db = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("db")).unwrap();
        db.rules.push(anywhere(Protocol::Tcp, Some(PortRange::single(443))));
        assert!(audit(&plan, &o, &b, "microservices-audit-security-groups").is_empty(), "443 is no admin port");
        let db = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("db")).unwrap();
        db.rules.push(anywhere(Protocol::Tcp, Some(PortRange { from: 1, to: 65535 })));
        let cache = o.security_groups.iter_mut().find(|g| Some(&g.id) == b.security_groups.get("cache")).unwrap();
        cache.rules.push(anywhere(Protocol::All, None));
        let found: Vec<String> =
            audit(&plan, &o, &b, "microservices-audit-security-groups").into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            found,
            [
                "security group db tcp/22",
                "security group db tcp/3389",
                "security group cache tcp/22",
                "security group cache tcp/3389"
            ]
        );
    }
}
