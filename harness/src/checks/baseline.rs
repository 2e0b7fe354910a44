//! The baseline: controls that compliance rules imply and the recipe leaves out (the
//! default group closed, no SSH/RDP from the internet in NACLs, a log retention).

use super::{Check, CheckResult, list};
use crate::bindings::Bindings;
use crate::capabilities::{Capabilities, Divergence};
use crate::model::Direction;
use crate::observe::Observed;
use crate::plan::Plan;
use microseg_reach::ProtocolClass;

/// Controls the compliance rules imply and the recipe leaves out: the VPC's default
/// security group closed (VPC_DEFAULT_SECURITY_GROUP_CLOSED), no NACL admitting SSH or RDP
/// from the internet (NACL_NO_UNRESTRICTED_SSH_RDP, by first match as AWS evaluates it),
/// and a retention on the flow-log group (CW_LOGGROUP_RETENTION_PERIOD_CHECK).
pub(super) fn baseline(plan: &Plan, observed: &Observed, b: &Bindings, caps: &Capabilities) -> CheckResult {
    let mut c =
        Check::new("baseline", "default group closed, no SSH/RDP from the internet in NACLs, log retention set");
    if let Some(g) = crate::reach::default_group(observed) {
        if !g.rules.is_empty() {
            c.finding(
                "MS-DEFAULT-SG-OPEN",
                format!("default security group ({})", g.id),
                "no rules: nothing should rely on the default group",
                list(g.rules.iter()),
            );
        } else if caps.has(Divergence::DefaultSecurityGroupNoSelfIngress) {
            c.divergence(Divergence::DefaultSecurityGroupNoSelfIngress);
        }
    }
    let internet = std::net::IpAddr::V4(crate::reach::INTERNET);
    for n in &plan.nacls {
        let Some(nacl) = b.nacls.get(&n.name).and_then(|id| observed.nacl(id)) else { continue };
        let engine = microseg_reach::Nacl::new(n.name.clone(), nacl.entries.iter().cloned());
        for class in [ProtocolClass::Tcp, ProtocolClass::Udp] {
            let open = microseg_reach::path::nacl_ports(&engine, Direction::Ingress, class, internet);
            for port in [22u16, 3389] {
                if open.contains(port) {
                    let entry =
                        microseg_reach::path::nacl_first_match(&engine, Direction::Ingress, class, internet, port);
                    c.finding(
                        "MS-NACL-SSH-RDP-OPEN",
                        format!("NACL {} ({}) ingress {class}/{port}", n.name, nacl.id),
                        format!("{class}/{port} from the internet denied"),
                        format!("allowed by {}", entry.map_or("?".into(), |e| e.to_string())),
                    );
                }
            }
        }
    }
    if let (Some(_), Some(name)) = (&plan.flow_log, &b.log_group_name)
        && let Some(g) = observed.log_groups.iter().find(|g| &g.name == name)
        && g.retention_days.is_none()
    {
        c.finding(
            "MS-LOG-RETENTION-UNSET",
            format!("flow-log group ({})", g.name),
            "a retention period",
            "kept forever (no retention set)",
        );
    }
    c.note("the default group, every planned NACL's ingress for tcp/udp 22 and 3389 from the internet, the flow-log group's retention")
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::*;
    use crate::model::SgRule;
    use microseg_reach::PortSet;

    fn default_group(rules: Vec<SgRule>) -> crate::observe::ObservedSecurityGroup {
        crate::observe::ObservedSecurityGroup {
            id: "sg-default".into(),
            name: "default".into(),
            description: "default VPC security group".into(),
            rules,
            tags: Default::default(),
        }
    }

    /// AWS creates the default group with ingress from itself and all egress: on AWS that
    /// is a finding unless the spec records it. LocalStack creates it with the egress rule only,
    /// so a default group found empty there may be the emulator's half as much as the
    /// deployment's doing: the named divergence.
    #[test]
    fn baseline_default_group_is_a_finding_on_aws_and_a_divergence_on_the_emulator() {
        let mut plan = recipe();
        let (mut o, b) = deployed(&plan);
        set_default_group(&mut o, vec![crate::model::default_sg_egress()]);
        let r = baseline(&plan, &o, &b, &Capabilities::aws());
        assert!(
            r.findings
                .iter()
                .any(|f| f.id == "MS-DEFAULT-SG-OPEN" && f.resource == "default security group (sg-default)")
        );
        // The recipe records it: it leaves the findings and the check passes, saying why.
        let recorded = expected(&plan, r);
        assert_eq!(recorded.status, Status::Pass, "{recorded:?}");
        assert!(recorded.note.contains("never revokes the default group's rules"), "{}", recorded.note);
        // Without the record it fails.
        plan.expected_findings.clear();
        assert_eq!(expected(&plan, baseline(&plan, &o, &b, &Capabilities::aws())).status, Status::Fail);
        let (mut o, b) = deployed(&plan);
        set_default_group(&mut o, vec![]);
        let r = baseline(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert_eq!(r.divergences, vec!["default-security-group-no-self-ingress".to_string()]);
    }

    /// Replaces the designed deployment's default group with one holding `rules`.
    fn set_default_group(o: &mut Observed, rules: Vec<SgRule>) {
        o.security_groups.retain(|g| g.name != "default");
        o.security_groups.push(default_group(rules));
    }

    /// A zone the spec gives no group stands for instances in the VPC's default group,
    /// which admits only its own members. Here the recipe's management zone loses its
    /// group too, and the management and monitoring NACLs let everything through, so
    /// only the groups decide between the two zones:
    /// - on AWS (self-ingress present) each reaches the other on any port;
    /// - an emulator's default group without that rule, untouched otherwise, is read as
    ///   AWS's, and the intent check names the divergence;
    /// - a default group the deployment emptied admits nothing, AWS or not.
    #[test]
    fn zones_without_a_group_rely_on_the_default_group_and_its_emulator_gap_is_named() {
        let mut plan = recipe();
        for g in &mut plan.security_groups {
            g.zones.retain(|z| z != "management");
        }
        assert_eq!(crate::reach::default_group_members(&plan), ["management", "monitoring"]);
        let (mut o, b) = deployed(&plan);
        let allow_all = |d| NaclEntry {
            rule_number: 100,
            direction: d,
            protocol: Protocol::All,
            ports: None,
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: crate::model::RuleAction::Allow,
        };
        for name in ["management", "monitoring"] {
            let id = &b.nacls[name];
            o.nacls.iter_mut().find(|n| &n.id == id).unwrap().entries.extend(Direction::BOTH.map(allow_all));
        }
        let cell = |r: &crate::reach::Reachability, from: &str, to: &str| {
            r.matrix.cells.iter().find(|c| c.from == from && c.to == to).unwrap().allowed.clone()
        };
        let everything = |r: &crate::reach::Reachability| {
            let allowed = cell(r, "management", "monitoring");
            allowed.iter().any(|s| s.protocol == ProtocolClass::Tcp && s.ports == PortSet::full())
        };

        let (on_aws, undecided) = reachability(&plan, &o, &b, &Capabilities::aws());
        assert!(everything(&on_aws), "{:?}", cell(&on_aws, "management", "monitoring"));
        assert!(undecided.is_empty());

        set_default_group(&mut o, vec![crate::model::default_sg_egress()]);
        let literal = crate::reach::analyse(&plan, &o, &b);
        assert!(cell(&literal, "management", "monitoring").is_empty(), "taken literally, nothing passes");
        let (assumed, undecided) = reachability(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert!(everything(&assumed));
        assert_eq!(undecided, [Divergence::DefaultSecurityGroupNoSelfIngress]);

        set_default_group(&mut o, vec![]);
        let (closed, _) = reachability(&plan, &o, &b, &emulator_caps_with_empty_default());
        assert!(cell(&closed, "management", "monitoring").is_empty());
    }

    fn emulator_caps_with_empty_default() -> Capabilities {
        Capabilities::emulator("LocalStack 4.14.0".into())
    }

    /// By hand: the recipe's DMZ NACL admits tcp 1024-65535 from anywhere at #120, so RDP
    /// (3389) from the internet passes its NACL; SSH (22) does not. A deny of 3389 from
    /// 0.0.0.0/0 numbered before #120 clears it, as first match decides.
    #[test]
    fn baseline_nacl_ssh_rdp_from_the_internet_by_first_match() {
        let mut plan = recipe();
        plan.expected_findings.clear();
        let (mut o, b) = deployed(&plan);
        let ids = |r: &CheckResult| -> Vec<String> {
            r.findings.iter().filter(|f| f.id == "MS-NACL-SSH-RDP-OPEN").map(|f| without_ids(&f.resource)).collect()
        };
        assert_eq!(ids(&baseline(&plan, &o, &b, &Capabilities::aws())), ["NACL dmz ingress tcp/3389"]);
        let dmz = o.nacls.iter_mut().find(|n| n.id == "acl-dmz").unwrap();
        dmz.entries.push(NaclEntry {
            rule_number: 115,
            direction: Direction::Ingress,
            protocol: crate::model::Protocol::Tcp,
            ports: Some(PortRange::single(3389)),
            cidr: "0.0.0.0/0".parse().unwrap(),
            action: crate::model::RuleAction::Deny,
        });
        assert!(ids(&baseline(&plan, &o, &b, &Capabilities::aws())).is_empty());
    }
}
