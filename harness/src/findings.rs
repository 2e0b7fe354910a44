//! The catalogue of finding kinds: every `MS-…` id a check can report, what it means and
//! what to do about it, and the matching rule of the tools security reviewers already
//! use (AWS Config managed rules, Prowler checks, Checkov policies) where one exists.
//! SARIF's rule descriptors, the JSON report and the Markdown table read it from here.
//! A test keeps it complete: an id used in the checks but missing here fails.

use serde::Serialize;

/// One kind of finding.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FindingKind {
    /// Stable id.
    pub id: &'static str,
    /// One line: what is wrong.
    pub summary: &'static str,
    /// What to do about it.
    pub help: &'static str,
    /// AWS Config managed rule identifier.
    pub aws_config: Option<&'static str>,
    /// Prowler check id.
    pub prowler: Option<&'static str>,
    /// Checkov policy id.
    pub checkov: Option<&'static str>,
}

const fn kind(id: &'static str, summary: &'static str, help: &'static str) -> FindingKind {
    FindingKind { id, summary, help, aws_config: None, prowler: None, checkov: None }
}

const fn mapped(
    id: &'static str,
    summary: &'static str,
    help: &'static str,
    aws_config: Option<&'static str>,
    prowler: Option<&'static str>,
    checkov: Option<&'static str>,
) -> FindingKind {
    FindingKind { id, summary, help, aws_config, prowler, checkov }
}

const FLOW: (Option<&str>, Option<&str>, Option<&str>) =
    (Some("VPC_FLOW_LOGS_ENABLED"), Some("vpc_flow_logs_enabled"), Some("CKV2_AWS_11"));
const NACL_ATTACHED: (Option<&str>, Option<&str>, Option<&str>) =
    (Some("VPC_NETWORK_ACL_UNUSED_CHECK"), Some("ec2_networkacl_unused"), Some("CKV2_AWS_1"));

/// Every finding kind, by id.
pub const CATALOGUE: &[FindingKind] = &[
    mapped(
        "MS-DEFAULT-SG-OPEN",
        "the VPC's default security group has rules",
        "Revoke every rule of the default group; give workloads their own groups.",
        Some("VPC_DEFAULT_SECURITY_GROUP_CLOSED"),
        Some("ec2_securitygroup_default_restrict_traffic"),
        Some("CKV2_AWS_12"),
    ),
    mapped(
        "MS-NACL-SSH-RDP-OPEN",
        "a NACL admits SSH or RDP from the internet",
        "Deny 22 and 3389 from 0.0.0.0/0 before the entry that allows them (an ephemeral-port range from anywhere includes 3389).",
        Some("NACL_NO_UNRESTRICTED_SSH_RDP"),
        Some("ec2_networkacl_allow_ingress_tcp_port_22"),
        None,
    ),
    mapped(
        "MS-LOG-RETENTION-UNSET",
        "the flow-log group keeps records forever",
        "Set a retention period on the log group.",
        Some("CW_LOGGROUP_RETENTION_PERIOD_CHECK"),
        Some("cloudwatch_log_group_retention_policy_specific_days_enabled"),
        Some("CKV_AWS_66"),
    ),
    kind(
        "MS-ALARM-CONFIG",
        "the alarm's metric, statistic, period, comparison or threshold differs from the spec",
        "Set the alarm's configuration to the spec's values.",
    ),
    kind(
        "MS-ALARM-FILTER-METRIC",
        "the metric filter publishes another metric than the alarm watches",
        "Point the filter's metric transformation at the alarm's namespace and metric.",
    ),
    kind(
        "MS-ALARM-FILTER-MISSING",
        "no metric filter on the flow-log group feeds the alarm",
        "Create a metric filter on REJECT records of the flow-log group.",
    ),
    kind(
        "MS-ALARM-FILTER-PATTERN",
        "the metric filter's pattern differs from the spec",
        "Use the spec's filter pattern (REJECT records).",
    ),
    kind("MS-ALARM-MISSING", "no alarm watches rejected traffic", "Create the alarm on the filter's metric."),
    mapped(
        "MS-ASSOC-DEFAULT-NACL",
        "a zone subnet is still on the VPC's default NACL",
        "Associate the subnet with its zone NACL (ReplaceNetworkAclAssociation; associate-network-acl does not exist).",
        NACL_ATTACHED.0,
        NACL_ATTACHED.1,
        NACL_ATTACHED.2,
    ),
    kind(
        "MS-ASSOC-NACL-MISSING",
        "the zone's NACL does not exist",
        "Create the zone NACL and associate the subnet with it.",
    ),
    mapped(
        "MS-ASSOC-NONE",
        "a zone subnet has no NACL association",
        "Associate the subnet with its zone NACL.",
        NACL_ATTACHED.0,
        NACL_ATTACHED.1,
        NACL_ATTACHED.2,
    ),
    kind(
        "MS-ASSOC-SUBNET-MISSING",
        "a zone's subnet does not exist",
        "Create the subnet with the zone's CIDR (or map the zone with --zone-tag).",
    ),
    mapped(
        "MS-ASSOC-WRONG-NACL",
        "a zone subnet is on another zone's NACL",
        "Associate the subnet with its own zone NACL.",
        NACL_ATTACHED.0,
        NACL_ATTACHED.1,
        NACL_ATTACHED.2,
    ),
    mapped(
        "MS-FLOW-DELIVERY-FAILED",
        "the flow log cannot deliver",
        "Fix the delivery role's trust and permissions; see the delivery error.",
        FLOW.0,
        FLOW.1,
        FLOW.2,
    ),
    kind(
        "MS-FLOW-DESTINATION",
        "the flow log delivers elsewhere than CloudWatch Logs",
        "Deliver to the spec's CloudWatch Logs group.",
    ),
    kind("MS-FLOW-LOG-GROUP", "the flow log delivers to another log group", "Deliver to the spec's log group."),
    kind("MS-FLOW-LOG-GROUP-MISSING", "the flow log's log group does not exist", "Create the log group."),
    mapped(
        "MS-FLOW-MISSING",
        "the VPC has no flow log",
        "Create a VPC flow log of ALL traffic to CloudWatch Logs.",
        FLOW.0,
        FLOW.1,
        FLOW.2,
    ),
    mapped(
        "MS-FLOW-NOT-ACTIVE",
        "the flow log is not ACTIVE",
        "Check the flow log's status and delivery role.",
        FLOW.0,
        FLOW.1,
        FLOW.2,
    ),
    kind("MS-FLOW-ROLE", "the flow log delivers through another role", "Use the spec's delivery role."),
    kind(
        "MS-FLOW-TRAFFIC-TYPE",
        "the flow log records another traffic type",
        "Record the spec's traffic type (ALL: REJECT alone hides what was allowed).",
    ),
    kind(
        "MS-IGW-NOT-ATTACHED",
        "no internet gateway is attached to the VPC",
        "Attach the internet gateway to the VPC.",
    ),
    kind(
        "MS-ISOLATED-ROUTE",
        "an isolated zone's route table leads to or from the internet",
        "Remove the route: an isolated tier (a database tier) keeps only the local route and routes to private destinations.",
    ),
    kind(
        "MS-INTENT-BLOCKED",
        "an intended flow is blocked",
        "Open the named component: a NACL entry (both ways, ephemeral replies included), a group rule, or a route.",
    ),
    kind(
        "MS-INTENT-UNEXPECTEDLY-ALLOWED",
        "a flow the design blocks passes: the deployment does not enforce the design's rules",
        "Find the rule that lets it through (the NACLs may not be associated).",
    ),
    kind(
        "MS-LINT-DESIGN-DRIFT",
        "a pointless rule the spec records is not there as recorded",
        "Update the spec's expected_lint or the deployment.",
    ),
    mapped(
        "MS-LOG-RETENTION",
        "the flow-log group's retention differs from the spec",
        "Set the log group's retention.",
        Some("CW_LOGGROUP_RETENTION_PERIOD_CHECK"),
        Some("cloudwatch_log_group_retention_policy_specific_days_enabled"),
        Some("CKV_AWS_66"),
    ),
    kind(
        "MS-NAT-MISSING",
        "a NAT gateway of the spec does not exist",
        "Create the NAT gateway in its zone's public subnet, with its Elastic IP.",
    ),
    kind(
        "MS-NAT-NO-EIP",
        "a NAT gateway does not hold the Elastic IP allocated for it",
        "Create it as a public NAT gateway with the run's Elastic IP allocation.",
    ),
    kind(
        "MS-NAT-NO-IGW-ROUTE",
        "a NAT gateway's subnet has no route to an attached internet gateway",
        "Route 0.0.0.0/0 of the NAT gateway's subnet to the VPC's internet gateway: without it, nothing behind the NAT reaches out.",
    ),
    kind(
        "MS-NAT-NOT-AVAILABLE",
        "a NAT gateway is not in state available",
        "Wait for it, or read its failure message (DescribeNatGateways) and recreate it.",
    ),
    kind(
        "MS-NAT-WRONG-SUBNET",
        "a NAT gateway sits in another subnet than its zone's",
        "Recreate it in the zone's subnet: routes that point at it expect it there.",
    ),
    kind(
        "MS-NACL-ENTRY-CHANGED",
        "a NACL entry differs from the spec under the same rule number",
        "Restore the entry's protocol, ports, CIDR and action.",
    ),
    kind(
        "MS-NACL-ENTRY-MISSING",
        "a NACL entry of the spec is missing",
        "Create the entry (create-network-acl-entry needs --ingress or --egress).",
    ),
    kind("MS-NACL-ENTRY-UNEXPECTED", "a NACL has an entry the spec does not", "Remove it, or add it to the spec."),
    kind("MS-NACL-MISSING", "a NACL of the spec does not exist", "Create the NACL."),
    kind(
        "MS-NACL-NO-DEFAULT-DENY",
        "a NACL lacks the `*` deny entry",
        "On AWS every NACL ends in `*` deny; its absence means the NACL is not what AWS enforces.",
    ),
    kind(
        "MS-NACL-REDUNDANT",
        "a NACL entry changes no decision",
        "Remove it; what decides its packets without it says the same.",
    ),
    kind(
        "MS-NACL-RULE-NUMBER-RANGE",
        "a NACL rule number is outside 1–32766",
        "Renumber the entry: AWS rejects numbers above 32766.",
    ),
    kind(
        "MS-NACL-SHADOWED",
        "a NACL entry is never the first match for any packet",
        "Renumber it before the entries that shadow it, or remove it.",
    ),
    kind(
        "MS-REACH-DESIGN-DRIFT",
        "traffic the design lets through (allowed_by_design) does not pass",
        "The deployment is stricter than the design: update the spec or the deployment.",
    ),
    kind(
        "MS-TRAFFIC-DISAGREES",
        "a real connection between instance containers did not do what the evaluator says, and no named enforcement divergence explains it",
        "Read the probe's line in the traffic section: either the emulator enforces a rule as AWS does not (name it in docs/EMULATOR.md and harness/src/traffic.rs) or the evaluator is wrong.",
    ),
    kind(
        "MS-TRAFFIC-LEFTOVER",
        "an instance container of the traffic run is still present after it",
        "Remove it with `docker rm -f <container>`; it is removed again when the emulator stops.",
    ),
    mapped(
        "MS-REACH-UNINTENDED",
        "traffic passes that no intended flow covers",
        "Close the rules named in the finding, or record the flow as intended or allowed_by_design.",
        Some("VPC_SG_OPEN_ONLY_TO_AUTHORIZED_PORTS"),
        None,
        None,
    ),
    mapped(
        "MS-ROLE-CONFUSED-DEPUTY",
        "the delivery role's trust policy has no aws:SourceAccount/aws:SourceArn condition",
        "Add the confused-deputy conditions to the trust policy.",
        None,
        Some("iam_role_cross_service_confused_deputy_prevention"),
        None,
    ),
    kind("MS-ROLE-MISSING", "the flow log's delivery role does not exist", "Create the role."),
    kind(
        "MS-ROLE-POLICY-BROAD",
        "the delivery role's policy allows more than delivery",
        "Allow only logs:CreateLogStream, PutLogEvents, DescribeLogGroups and DescribeLogStreams.",
    ),
    kind(
        "MS-ROLE-POLICY-MISSING",
        "the delivery role has no policy that allows delivery",
        "Attach the delivery policy (the recipe's managed policy does not exist).",
    ),
    kind(
        "MS-ROLE-POLICY-SCOPE",
        "the delivery role's policy is not scoped to the flow-log group",
        "Scope the policy's resources to the log group.",
    ),
    kind(
        "MS-ROLE-TRUST",
        "the delivery role cannot be assumed by vpc-flow-logs.amazonaws.com",
        "Trust vpc-flow-logs.amazonaws.com with sts:AssumeRole.",
    ),
    kind(
        "MS-RT-ASSOCIATIONS",
        "a route table serves other subnets than the spec",
        "Associate the spec's subnets with the table.",
    ),
    kind("MS-RT-MISSING", "a route table of the spec does not exist", "Create the route table and its associations."),
    kind(
        "MS-RT-NO-LOCAL",
        "a route table has no local route for the VPC",
        "The local route is implicit on AWS; its absence means a broken table.",
    ),
    kind(
        "MS-RT-ROUTE-MISSING",
        "a route of the spec is missing",
        "Create the route (e.g. 0.0.0.0/0 to the internet gateway).",
    ),
    kind(
        "MS-RT-ROUTE-UNEXPECTED",
        "a route table has a route the spec does not",
        "Remove the route, or add it to the spec: every route changes where traffic can go.",
    ),
    kind(
        "MS-SG-CIDR-FOR-REFERENCE",
        "a CIDR stands where the spec references a group",
        "Reference the group: a CIDR admits every host in it, not just the group's members.",
    ),
    kind("MS-SG-EGRESS-UNEXPECTED", "a group has egress the spec does not", "Revoke it, or add it to the spec."),
    kind("MS-SG-MISSING", "a security group of the spec does not exist", "Create the group."),
    mapped(
        "MS-SG-OPEN-TO-WORLD",
        "a group admits 0.0.0.0/0 where the spec does not",
        "Restrict the source.",
        Some("INCOMING_SSH_DISABLED"),
        Some("ec2_securitygroup_allow_ingress_from_internet_to_any_port"),
        Some("CKV_AWS_24"),
    ),
    kind("MS-SG-REDUNDANT", "a group rule is covered by the group's other rules", "Remove it."),
    kind("MS-SG-RULE-MISSING", "a group rule of the spec is missing", "Authorize the rule."),
    kind("MS-SG-RULE-UNEXPECTED", "a group has a rule the spec does not", "Revoke it, or add it to the spec."),
    kind("MS-SG-UNKNOWN-REFERENCE", "a group references a group outside the deployment", "Reference the spec's group."),
    kind("MS-SG-WRONG-REFERENCE", "a group references another group than the spec", "Reference the spec's group."),
    mapped(
        "MS-SOURCE-FLOW-LOG",
        "the source's own validation: the flow log is not active",
        "See MS-FLOW-*.",
        FLOW.0,
        FLOW.1,
        FLOW.2,
    ),
    mapped(
        "MS-SOURCE-ADMIN-FROM-ANYWHERE",
        "the source's own audit: a group admits SSH or RDP from anywhere",
        "Admit 22 and 3389 only from the administrators' range or a bastion's group.",
        Some("INCOMING_SSH_DISABLED"),
        Some("ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22"),
        Some("CKV_AWS_24"),
    ),
    kind(
        "MS-SOURCE-DEFAULT-NACL-IN-USE",
        "the source's own audit: a subnet is left on the VPC's default NACL",
        "Associate the subnet with its zone's custom NACL. See MS-ASSOC-*.",
    ),
    kind("MS-SOURCE-GROUP-REFERENCE", "the source's own validation: a group reference is missing", "See MS-SG-*."),
    mapped(
        "MS-SOURCE-NACL-ASSOCIATIONS",
        "the source's own validation: a NACL has no subnet",
        "See MS-ASSOC-*.",
        NACL_ATTACHED.0,
        NACL_ATTACHED.1,
        NACL_ATTACHED.2,
    ),
    kind(
        "MS-SOURCE-NACL-ORDER",
        "the source's own validation: NACL entries are not in the order it shows",
        "See MS-NACL-*.",
    ),
    kind("MS-SOURCE-ROUTE", "the source's own validation: a route it expects is missing", "See MS-RT-*."),
    kind(
        "MS-TEARDOWN-LEFTOVER",
        "a resource tagged with the run survived teardown",
        "Run `microseg sweep --run-id …`; report what it cannot delete.",
    ),
    // Closed world: what an implementation adds beyond the plan.
    mapped(
        "MS-ENI-PUBLIC-IP",
        "a network interface outside the public zones holds a public address",
        "Release the Elastic IP or launch without a public address; or make the zone public in the spec, or accept the interface with a reason.",
        Some("EC2_INSTANCE_NO_PUBLIC_IP"),
        Some("ec2_instance_public_ip"),
        Some("CKV_AWS_88"),
    ),
    kind(
        "MS-EIGW-UNPLANNED",
        "an egress-only internet gateway the spec does not have is attached: IPv6 traffic can leave",
        "Detach and delete it, or accept it in the spec with a reason.",
    ),
    kind(
        "MS-FLOW-UNPLANNED",
        "a flow log the spec does not have records the VPC's traffic",
        "Delete it, or accept it in the spec with a reason (e.g. an organisation-wide S3 flow log).",
    ),
    mapped(
        "MS-IGW-UNPLANNED",
        "an internet gateway the spec does not have is attached to the VPC",
        "Detach and delete it; a spec without an internet gateway means no way to or from the internet.",
        Some("INTERNET_GATEWAY_AUTHORIZED_VPC_ONLY"),
        None,
        None,
    ),
    kind(
        "MS-NACL-UNPLANNED",
        "a NACL the spec does not have exists in the VPC",
        "Delete it (move its subnets to their zone NACLs first), or accept it in the spec with a reason.",
    ),
    kind(
        "MS-NAT-UNPLANNED",
        "a NAT gateway the spec does not have is in the VPC",
        "Delete it and release its Elastic IP, or add it to the spec.",
    ),
    kind(
        "MS-PEERING-UNPLANNED",
        "the VPC is peered with another VPC the spec does not name",
        "Delete the peering connection, or accept it in the spec with a reason.",
    ),
    kind(
        "MS-RT-MAIN-ROUTE",
        "the main route table has routes beyond the local one",
        "Keep the main table as AWS creates it; give routed zones their own tables.",
    ),
    kind(
        "MS-RT-UNPLANNED",
        "a route table the spec does not have exists in the VPC",
        "Delete it (its subnets fall back to the main table), or add it to the spec.",
    ),
    kind(
        "MS-SG-UNPLANNED",
        "a security group the spec does not have exists in the VPC",
        "Delete it, or add it to the spec so its rules are checked.",
    ),
    kind(
        "MS-SUBNET-AUTO-IPV6",
        "a subnet gives every new interface an IPv6 address",
        "Set AssignIpv6AddressOnCreation to false: the spec plans no IPv6, and IPv6 addresses are public.",
    ),
    mapped(
        "MS-SUBNET-AUTO-PUBLIC-IP",
        "a subnet of a zone that is not public gives instances public IPv4 addresses",
        "Set MapPublicIpOnLaunch to false, or mark the zone `public` in the spec if the design means it.",
        Some("SUBNET_AUTO_ASSIGN_PUBLIC_IP_DISABLED"),
        Some("vpc_subnet_no_public_ip_by_default"),
        Some("CKV_AWS_130"),
    ),
    kind(
        "MS-SUBNET-UNPLANNED",
        "a subnet the spec has no zone for exists in the VPC",
        "Delete it, or add a zone for it to the spec (with --zone-tag for a foreign deployment).",
    ),
    kind(
        "MS-VPCE-UNPLANNED",
        "a VPC endpoint the spec does not have is in the VPC",
        "Delete it, or accept it in the spec with a reason (endpoints add routes or interfaces).",
    ),
    kind("MS-VPC-MISSING", "the deployment's VPC was not found", "Check --vpc-id or --tag."),
];

/// The catalogue entry of an id.
pub fn lookup(id: &str) -> Option<&'static FindingKind> {
    CATALOGUE.iter().find(|k| k.id == id)
}

/// `AWS Config X · Prowler y · Checkov Z`, or `None` when nothing maps.
pub fn compliance_text(k: &FindingKind) -> Option<String> {
    let parts: Vec<String> = [("AWS Config", k.aws_config), ("Prowler", k.prowler), ("Checkov", k.checkov)]
        .into_iter()
        .filter_map(|(tool, id)| id.map(|i| format!("{tool} {i}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The catalogue as the Markdown reference `docs/FINDINGS.md` holds it, sorted by id.
pub fn catalogue_markdown() -> String {
    let mut kinds: Vec<&FindingKind> = CATALOGUE.iter().collect();
    kinds.sort_by_key(|k| k.id);
    let mut out = String::from(
        "# Finding catalogue\n\n\
         Every finding id a check can report, what it means, what to do about it, and the\n\
         matching rule of AWS Config, Prowler and Checkov where one exists. Ids in\n\
         `[[expected_findings]]` and `[[accepted]]` must be from this list. Generated from\n\
         `harness/src/findings.rs`; a test keeps it current (`MICROSEG_BLESS=1 cargo test\n\
         findings` rewrites it).\n\n\
         | id | what is wrong | what to do | AWS Config · Prowler · Checkov |\n|---|---|---|---|\n",
    );
    for k in kinds {
        let tools = compliance_text(k).unwrap_or_default();
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", k.id, k.summary, k.help.replace('|', "\\|"), tools));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"MS-…"` literal in the sources that report findings is catalogued, once.
    #[test]
    fn every_finding_id_in_the_checks_is_catalogued_once() {
        // Every file of the checks folder, so a new family cannot slip past.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<_> = std::fs::read_dir(dir.join("checks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .chain([dir.join("validate.rs")])
            .collect();
        files.sort();
        assert!(files.len() > 8, "{files:?}");
        for source in files.iter().map(|f| std::fs::read_to_string(f).unwrap()) {
            for piece in source.split("\"MS-").skip(1) {
                let id = format!("MS-{}", piece.split('"').next().unwrap());
                if id.chars().all(|c| c.is_ascii_uppercase() || c == '-' || c.is_ascii_digit()) && id.len() > 4 {
                    assert!(lookup(&id).is_some(), "{id} is reported but not catalogued");
                }
            }
        }
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|k| k.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "an id is catalogued twice");
    }

    /// docs/FINDINGS.md is the catalogue as it is.
    #[test]
    fn the_findings_reference_is_the_catalogue() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FINDINGS.md");
        let want = catalogue_markdown();
        if std::env::var_os("MICROSEG_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let got = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(got == want, "docs/FINDINGS.md is out of date: run MICROSEG_BLESS=1 cargo test findings");
    }
}
