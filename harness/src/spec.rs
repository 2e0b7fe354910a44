//! Scenario specs as users write them: plain serde types read from TOML.
//!
//! Nothing here calls AWS and nothing here is trusted: every field is raw text or a raw
//! number until [`crate::plan::Plan::from_spec`] checks it. Unknown keys are errors
//! (`deny_unknown_fields`), so a typo in a rule fails loudly instead of being ignored.
//! Values that validation reports on are wrapped in [`Spanned`] so that each error can
//! name the line it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Scenarios shipped inside the binary, by name. Adding one is a data file plus a line
/// here; no engine code names a scenario.
pub const BUILTIN_SCENARIOS: &[(&str, &str)] = &[
    ("recipe", include_str!("../../scenarios/recipe.toml")),
    ("recipe-hardened", include_str!("../../scenarios/recipe-hardened.toml")),
    ("three-tier", include_str!("../../scenarios/three-tier.toml")),
    ("three-tier-hardened", include_str!("../../scenarios/three-tier-hardened.toml")),
    ("microservices", include_str!("../../scenarios/microservices.toml")),
    ("microservices-hardened", include_str!("../../scenarios/microservices-hardened.toml")),
];

/// A whole scenario spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Name, source and variant of the scenario.
    pub scenario: ScenarioMeta,
    /// The VPC.
    pub vpc: VpcSpec,
    /// The internet gateway, if the scenario has one.
    #[serde(default)]
    pub internet_gateway: Option<IgwSpec>,
    /// Zones, one subnet each, in file order.
    #[serde(default)]
    pub zones: Vec<Spanned<ZoneSpec>>,
    /// NAT gateways, each with an Elastic IP, in a zone's subnet.
    #[serde(default)]
    pub nat_gateways: Vec<Spanned<NatGatewaySpec>>,
    /// Custom network ACLs.
    #[serde(default)]
    pub nacls: Vec<Spanned<NaclSpec>>,
    /// Custom route tables.
    #[serde(default)]
    pub route_tables: Vec<Spanned<RouteTableSpec>>,
    /// Security groups.
    #[serde(default)]
    pub security_groups: Vec<Spanned<SecurityGroupSpec>>,
    /// Workloads: kinds of instances that share a subnet but not their groups (an ALB
    /// and a bastion in one DMZ, say). A zone with workloads is evaluated per workload.
    #[serde(default)]
    pub workloads: Vec<Spanned<WorkloadSpec>>,
    /// Named places outside the VPC (an office's range) that intents can name.
    #[serde(default)]
    pub externals: Vec<Spanned<ExternalSpec>>,
    /// VPC flow log to CloudWatch Logs.
    #[serde(default)]
    pub flow_log: Option<Spanned<FlowLogSpec>>,
    /// Alarm on rejected traffic.
    #[serde(default)]
    pub alarm: Option<Spanned<AlarmSpec>>,
    /// Where this spec departs from its source, and why.
    #[serde(default)]
    pub deviations: Vec<DeviationSpec>,
    /// Flows the design means to allow; every other flow between zones and the internet
    /// is meant to be denied.
    #[serde(default)]
    pub intent: Vec<Spanned<IntentSpec>>,
    /// Traffic the design lets through though no intent asks for it: expected findings
    /// of the evaluator, each explained. Anything else that passes unintended is a finding.
    #[serde(default)]
    pub allowed_by_design: Vec<Spanned<OpeningSpec>>,
    /// Rules the design makes pointless (shadowed or redundant): expected lint, explained.
    #[serde(default)]
    pub expected_lint: Vec<Spanned<ExpectedLintSpec>>,
    /// Findings of other checks that the design has on purpose or by its source's choice:
    /// each explained, shown in the report, not failing the run.
    #[serde(default)]
    pub expected_findings: Vec<ExpectedFindingSpec>,
    /// What an implementation may add beyond the plan (a VPC endpoint, an extra flow log),
    /// each with its reason: the closed-world checks then accept it instead of failing.
    /// Matched as `expected_findings` are, by finding id and resource without ids.
    #[serde(default)]
    pub accepted: Vec<ExpectedFindingSpec>,
    /// The source's own validation steps, each run as a named check.
    #[serde(default)]
    pub source_checks: Vec<Spanned<SourceCheckSpec>>,
}

/// One validation step of the source document, as data: the engine knows the kinds,
/// the spec names the resources.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCheckSpec {
    /// Stable check id, e.g. `recipe-v1-nacl-associations`.
    pub id: String,
    /// What the source's step says.
    pub title: String,
    /// `nacl-associations`, `group-references`, `flow-log-active`, `routes`, `nacl-order`,
    /// `no-admin-from-anywhere` or `no-subnet-on-default-nacl`.
    pub kind: String,
    /// The zone the step looks at.
    #[serde(default)]
    pub zone: Option<String>,
    /// The NACL it looks at.
    #[serde(default)]
    pub nacl: Option<String>,
    /// The group it looks at.
    #[serde(default)]
    pub group: Option<String>,
    /// Groups that must be referenced (`group-references`).
    #[serde(default)]
    pub references: Vec<String>,
    /// Route targets that must be present (`routes`): `local`, `internet-gateway`.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// One intended flow: `from` may open connections to `to` on this protocol and ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    /// A zone name or `internet`.
    pub from: String,
    /// A zone name or `internet`.
    pub to: String,
    /// Protocol.
    pub protocol: String,
    /// Destination ports (TCP/UDP).
    #[serde(default)]
    pub ports: Option<PortsSpec>,
    /// Why the flow exists (quoted from the source).
    #[serde(default)]
    pub why: Option<String>,
    /// Set when the design itself blocks this flow: why (a recorded, explained expected
    /// finding). The intent check then fails if the flow passes, and passes if it is
    /// blocked; a flow without it must pass.
    #[serde(default)]
    pub blocked_by_design: Option<String>,
}

/// Unintended traffic the design lets through: `from` can open `to` on these ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningSpec {
    /// A zone name or `internet`.
    pub from: String,
    /// A zone name or `internet`.
    pub to: String,
    /// Protocol.
    pub protocol: String,
    /// Destination ports (TCP/UDP): a number, a range, or a comma-separated list of both.
    #[serde(default)]
    pub ports: Option<PortsSpec>,
    /// Which rules open it, and why that is accepted (required: an expected finding is
    /// always explained).
    pub why: String,
}

/// A rule that the design makes pointless, recorded as an expected lint finding.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedLintSpec {
    /// `NACL <name>` or `security group <name>`, as the finding says.
    pub owner: String,
    /// The rule as the finding shows it, e.g. `#110 allow tcp/22 10.0.5.0/24`.
    pub rule: String,
    /// `shadowed` or `redundant`.
    pub kind: String,
    /// Why it is accepted.
    pub why: String,
}

/// A finding the design has, recorded so the run passes while showing it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFindingSpec {
    /// The finding's id, e.g. `MS-NACL-SSH-RDP-OPEN`.
    pub id: String,
    /// The finding's resource without ids in parentheses, e.g. `NACL dmz ingress`.
    pub resource: String,
    /// Why the design has it.
    pub why: String,
}

/// Identity of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioMeta {
    /// Short name, used in tags (`microseg:scenario`).
    pub name: String,
    /// One-line title.
    pub title: String,
    /// The source document this scenario encodes.
    #[serde(default)]
    pub source: Option<String>,
    /// Variant (`as-written`, `hardened`, …).
    #[serde(default = "default_variant")]
    pub variant: String,
}

fn default_variant() -> String {
    "as-written".into()
}

/// The VPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// IPv4 CIDR block.
    pub cidr: Spanned<String>,
    /// `Name` tag (the run id is appended).
    pub name: String,
    /// Extra tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The source ports clients pick from (`"32768-60999"`), unless a zone or an
    /// external names its own: replies to every one of them must pass the NACLs.
    /// Default `"1024-65535"`, AWS's NACL guidance, which covers every client.
    #[serde(default)]
    pub ephemeral_ports: Option<Spanned<PortsSpec>>,
    /// Revoke every rule of the VPC's default security group after creating the VPC, so
    /// nothing that lands in it by default can talk (VPC_DEFAULT_SECURITY_GROUP_CLOSED).
    #[serde(default)]
    pub close_default_group: bool,
}

/// The internet gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgwSpec {
    /// `Name` tag.
    pub name: String,
}

/// One zone: a subnet and the NACL it must be associated with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Logical zone name (`dmz`, `web`, …).
    pub name: String,
    /// The subnet's CIDR block, inside the VPC's.
    pub cidr: String,
    /// Availability-zone suffix appended to the region (`a` → `us-east-1a`).
    #[serde(default = "default_az")]
    pub az: String,
    /// The subnet's `Name` tag.
    pub subnet_name: String,
    /// Logical name of the NACL the subnet is associated with, or `default` to leave it
    /// on the VPC's default NACL.
    pub nacl: Option<String>,
    /// The tier the zone belongs to (`web`, `database`): intents and openings may name a
    /// tier for all of its zones.
    #[serde(default)]
    pub tier: Option<String>,
    /// The zone must have no route to or from the internet (no internet or NAT gateway
    /// route): checked on the deployment.
    #[serde(default)]
    pub isolated: bool,
    /// The zone's endpoints hold public addresses: the subnet gives instances a public
    /// IPv4 address (`MapPublicIpOnLaunch`, set by build), or they are internet-facing
    /// load balancers. Only a public zone with a route to an internet gateway is
    /// reachable from the internet, or reaches it without a NAT gateway.
    #[serde(default)]
    pub public: bool,
    /// Extra tags on the subnet.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The source ports the zone's workloads pick from as clients, when not the VPC's.
    #[serde(default)]
    pub ephemeral_ports: Option<PortsSpec>,
}

/// A NAT gateway and its Elastic IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGatewaySpec {
    /// Logical name, used by routes.
    pub name: String,
    /// The zone whose subnet holds it (a public one).
    pub zone: String,
    /// `Name` tag of the gateway and (with `-eip`) of its address.
    pub tag_name: String,
}

/// A kind of instance: where it runs and which groups it is a member of.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name, used by intents.
    pub name: String,
    /// The zone whose subnet it runs in.
    pub zone: String,
    /// Its security groups, by logical name.
    pub groups: Vec<String>,
}

/// A named place outside the VPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// Name, used by intents.
    pub name: String,
    /// Its address range.
    pub cidr: String,
    /// The source ports its clients pick from, when not the VPC's.
    #[serde(default)]
    pub ephemeral_ports: Option<PortsSpec>,
}

fn default_az() -> String {
    "a".into()
}

/// A custom NACL and its entries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NaclSpec {
    /// Logical name.
    pub name: String,
    /// `Name` tag.
    pub tag_name: String,
    /// Extra tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Inbound entries.
    #[serde(default)]
    pub ingress: Vec<Spanned<NaclEntrySpec>>,
    /// Outbound entries.
    #[serde(default)]
    pub egress: Vec<Spanned<NaclEntrySpec>>,
}

/// One NACL entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NaclEntrySpec {
    /// Rule number, 1..=32766.
    pub rule: i64,
    /// `tcp`, `udp`, `icmp`, `all`/`-1`, or a protocol number.
    pub protocol: String,
    /// `"80"`, `"1024-65535"` or a number; required for TCP and UDP.
    #[serde(default)]
    pub ports: Option<PortsSpec>,
    /// Remote CIDR.
    pub cidr: String,
    /// `allow` or `deny`.
    pub action: String,
}

/// Ports as a number or as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortsSpec {
    /// `ports = 443`
    Number(i64),
    /// `ports = "1024-65535"`
    Text(String),
}

impl std::fmt::Display for PortsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortsSpec::Number(n) => write!(f, "{n}"),
            PortsSpec::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// A custom route table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableSpec {
    /// Logical name.
    pub name: String,
    /// `Name` tag.
    pub tag_name: String,
    /// Zones whose subnets are associated with this table.
    pub zones: Vec<String>,
    /// Routes besides the implicit `local` one.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination CIDR.
    pub destination: String,
    /// `internet-gateway` or `nat-gateway`.
    pub target: String,
    /// The NAT gateway's logical name, for `nat-gateway` targets.
    #[serde(default)]
    pub nat_gateway: Option<String>,
}

/// A security group and its rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Logical name, used by group references.
    pub name: String,
    /// `GroupName`; unique per VPC, so it needs no run id.
    pub group_name: String,
    /// Description.
    pub description: String,
    /// Zone whose workloads are members of this group.
    #[serde(default)]
    pub zone: Option<String>,
    /// Zones whose workloads are members of this group (instead of `zone`). A group
    /// that `[[workloads]]` list needs neither.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Extra tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<Spanned<SgRuleSpec>>,
    /// Outbound rules besides the default allow-all, which `keep_default_egress` governs.
    #[serde(default)]
    pub egress: Vec<Spanned<SgRuleSpec>>,
    /// Keep the allow-all egress rule AWS adds to every new group (default `true`).
    #[serde(default = "yes")]
    pub keep_default_egress: bool,
}

fn yes() -> bool {
    true
}

/// One security-group rule as written: exactly one of `cidr` and `group`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleSpec {
    /// Protocol.
    pub protocol: String,
    /// Ports, required for TCP and UDP.
    #[serde(default)]
    pub ports: Option<PortsSpec>,
    /// Peer address range.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Peer group, by logical name.
    #[serde(default)]
    pub group: Option<String>,
}

/// The flow log and what it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogSpec {
    /// `ALL`, `ACCEPT` or `REJECT`.
    pub traffic_type: String,
    /// Log group name (the run id is appended).
    pub log_group: String,
    /// Retention of the log group, in days, if set.
    #[serde(default)]
    pub retention_days: Option<i32>,
    /// Role the flow-log service assumes (the run id is appended).
    pub role_name: String,
    /// Name of the role's inline policy.
    pub role_policy_name: String,
}

/// The alarm on rejected traffic, fed by a metric filter on the flow-log group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSpec {
    /// Alarm name (the run id is appended).
    pub name: String,
    /// Description.
    pub description: String,
    /// Metric filter name (the run id is appended).
    pub metric_filter_name: String,
    /// Filter pattern over flow-log records.
    pub filter_pattern: String,
    /// Metric value per matching record (`$packets`, `1`, …).
    pub metric_value: String,
    /// Metric namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Statistic (`Sum`, …).
    pub statistic: String,
    /// Period in seconds.
    pub period: i32,
    /// Evaluation periods.
    #[serde(default = "one")]
    pub evaluation_periods: i32,
    /// Threshold.
    pub threshold: f64,
    /// Comparison operator (`GreaterThanThreshold`, …).
    pub comparison: String,
}

fn one() -> i32 {
    1
}

/// A departure from the source document, with its reason.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviationSpec {
    /// Stable id (`D1`, …).
    pub id: String,
    /// What the source says.
    pub source_says: String,
    /// What this spec does instead.
    pub spec_does: String,
    /// Why.
    pub reason: String,
}

/// Where a spec came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSource {
    /// File path as the user gave it, or `scenarios/<name>.toml` for a built-in.
    pub path: PathBuf,
    /// The whole text, to turn byte offsets into line numbers.
    pub text: String,
}

impl SpecSource {
    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }
}

/// Why a spec could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No built-in scenario has that name.
    #[error("no scenario named {name:?}\n(hint: built-in scenarios are {known}; or pass a spec file with --spec)")]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// Names that exist.
        known: String,
    },
    /// The TOML did not parse or did not fit the schema.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

/// Loads a built-in scenario by name, or a spec file when `name` is a path to one.
pub fn load(name_or_path: &str) -> Result<(Spec, SpecSource), SpecError> {
    if let Some((name, text)) = BUILTIN_SCENARIOS.iter().find(|(n, _)| *n == name_or_path) {
        let source = SpecSource { path: PathBuf::from(format!("scenarios/{name}.toml")), text: (*text).to_string() };
        return parse(source);
    }
    let path = Path::new(name_or_path);
    if path.extension().is_some() || path.exists() {
        return load_file(path);
    }
    Err(SpecError::UnknownScenario {
        name: name_or_path.into(),
        known: BUILTIN_SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
    })
}

/// Loads a spec file.
pub fn load_file(path: &Path) -> Result<(Spec, SpecSource), SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.into(), source })?;
    parse(SpecSource { path: path.into(), text })
}

/// Parses spec text.
pub fn parse(source: SpecSource) -> Result<(Spec, SpecSource), SpecError> {
    match toml::from_str::<Spec>(&source.text) {
        Ok(spec) => Ok((spec, source)),
        Err(e) => {
            let line = e.span().map(|s| source.line_of(s.start)).unwrap_or(1);
            Err(SpecError::Parse { path: source.path.clone(), line, message: e.message().trim().to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_scenario_parses() {
        for (name, _) in BUILTIN_SCENARIOS {
            load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    /// The keys a table accepts, as the loader says when it meets one it does not.
    fn accepted_keys(toml_with_unknown_key: &str) -> Vec<String> {
        let err = parse(SpecSource { path: "k.toml".into(), text: toml_with_unknown_key.into() }).unwrap_err();
        let msg = err.to_string();
        let listed = msg.split("expected one of ").nth(1).or_else(|| msg.split("expected ").nth(1));
        let listed = listed.unwrap_or_else(|| panic!("no key list in: {msg}"));
        // "`a`, `b`" or "`a` or `b`" or "`a`": the quoted words.
        let line = listed.lines().next().unwrap_or_default();
        line.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    /// Every table docs/SPEC.md documents: its heading; a spec whose one unknown key makes
    /// the loader list the keys the table accepts; and where the table's instances sit in a
    /// spec, as keys from the root with `[]` for every element of an array.
    const TABLES: [(&str, &str, &[&[&str]]); 23] = [
        ("Top level", "zzz = 1\n", &[&[]]),
        ("`[scenario]`", "[scenario]\nzzz = 1\n", &[&["scenario"]]),
        ("`[vpc]`", "[vpc]\nzzz = 1\n", &[&["vpc"]]),
        ("`[internet_gateway]`", "[internet_gateway]\nzzz = 1\n", &[&["internet_gateway"]]),
        ("`[[zones]]`", "[[zones]]\nzzz = 1\n", &[&["zones", "[]"]]),
        ("`[[nat_gateways]]`", "[[nat_gateways]]\nzzz = 1\n", &[&["nat_gateways", "[]"]]),
        ("`[[nacls]]`", "[[nacls]]\nzzz = 1\n", &[&["nacls", "[]"]]),
        (
            "NACL entry (in `ingress` and `egress`)",
            "[[nacls]]\ningress = [{ zzz = 1 }]\n",
            &[&["nacls", "[]", "ingress", "[]"], &["nacls", "[]", "egress", "[]"]],
        ),
        ("`[[route_tables]]`", "[[route_tables]]\nzzz = 1\n", &[&["route_tables", "[]"]]),
        (
            "Route (in `routes`)",
            "[[route_tables]]\nroutes = [{ zzz = 1 }]\n",
            &[&["route_tables", "[]", "routes", "[]"]],
        ),
        ("`[[security_groups]]`", "[[security_groups]]\nzzz = 1\n", &[&["security_groups", "[]"]]),
        (
            "Group rule (in `ingress` and `egress`)",
            "[[security_groups]]\negress = [{ zzz = 1 }]\n",
            &[&["security_groups", "[]", "ingress", "[]"], &["security_groups", "[]", "egress", "[]"]],
        ),
        ("`[[workloads]]`", "[[workloads]]\nzzz = 1\n", &[&["workloads", "[]"]]),
        ("`[[externals]]`", "[[externals]]\nzzz = 1\n", &[&["externals", "[]"]]),
        ("`[flow_log]`", "[flow_log]\nzzz = 1\n", &[&["flow_log"]]),
        ("`[alarm]`", "[alarm]\nzzz = 1\n", &[&["alarm"]]),
        ("`[[deviations]]`", "[[deviations]]\nzzz = 1\n", &[&["deviations", "[]"]]),
        ("`[[intent]]`", "[[intent]]\nzzz = 1\n", &[&["intent", "[]"]]),
        ("`[[allowed_by_design]]`", "[[allowed_by_design]]\nzzz = 1\n", &[&["allowed_by_design", "[]"]]),
        ("`[[expected_lint]]`", "[[expected_lint]]\nzzz = 1\n", &[&["expected_lint", "[]"]]),
        ("`[[expected_findings]]`", "[[expected_findings]]\nzzz = 1\n", &[&["expected_findings", "[]"]]),
        ("`[[accepted]]`", "[[accepted]]\nzzz = 1\n", &[&["accepted", "[]"]]),
        ("`[[source_checks]]`", "[[source_checks]]\nzzz = 1\n", &[&["source_checks", "[]"]]),
    ];

    const SPEC_DOC: &str = include_str!("../../docs/SPEC.md");

    /// The section of docs/SPEC.md under `### {heading}`, up to the next one.
    fn doc_section(heading: &str) -> &'static str {
        let start = SPEC_DOC.find(&format!("### {heading}\n")).unwrap_or_else(|| panic!("no section {heading}"));
        let rest = &SPEC_DOC[start + 4..];
        &rest[..rest.find("\n### ").unwrap_or(rest.len())]
    }

    /// docs/SPEC.md lists every key of every table the loader accepts: adding a field
    /// without documenting it fails here.
    #[test]
    fn the_spec_reference_lists_every_key_the_loader_accepts() {
        for (heading, toml, _) in TABLES {
            let keys = accepted_keys(toml);
            assert!(!keys.is_empty(), "{heading}: {keys:?}");
            let text = doc_section(heading);
            for key in &keys {
                assert!(text.contains(&format!("| `{key}` |")), "docs/SPEC.md, {heading}: key `{key}` is not listed");
            }
            // And nothing listed that the loader would refuse.
            for line in text.lines().filter(|l| l.starts_with("| `")) {
                let listed = line.split('`').nth(1).unwrap_or_default();
                assert!(keys.iter().any(|k| k == listed), "docs/SPEC.md, {heading}: `{listed}` is not a key");
            }
        }
        // A table added to the page but not to TABLES would escape both tests.
        for section in SPEC_DOC.split("\n### ").skip(1) {
            let heading = section.lines().next().unwrap_or_default();
            if section.contains("\n| key |") {
                assert!(TABLES.iter().any(|(h, _, _)| *h == heading), "docs/SPEC.md: table {heading} is not in TABLES");
            }
        }
    }

    /// A spec that uses every key of every table, and plans: what the marks test removes
    /// keys from, one at a time. It is not meant to be deployed or evaluated (its lint and
    /// openings are made up), only to load and plan.
    const EVERY_KEY: &str = r##"
[scenario]
name = "every-key"
title = "Every key of every table, once"
source = "harness/src/spec.rs"
variant = "as-written"

[vpc]
cidr = "10.9.0.0/16"
name = "every-key-vpc"
tags = { Owner = "tests" }
ephemeral_ports = "1024-65535"
close_default_group = false

[internet_gateway]
name = "every-key-igw"

[[zones]]
name = "public"
cidr = "10.9.1.0/24"
az = "a"
subnet_name = "every-key-public"
nacl = "public"
tier = "front"
isolated = false
public = true
tags = { Zone = "public" }
ephemeral_ports = "32768-60999"

[[zones]]
name = "private"
cidr = "10.9.2.0/24"
subnet_name = "every-key-private"
nacl = "default"

[[zones]]
name = "admin"
cidr = "10.9.3.0/24"
subnet_name = "every-key-admin"
nacl = "default"

[[nat_gateways]]
name = "nat"
zone = "public"
tag_name = "every-key-nat"

[[nacls]]
name = "public"
tag_name = "every-key-public-nacl"
tags = { Zone = "public" }
ingress = [{ rule = 100, protocol = "tcp", ports = 443, cidr = "0.0.0.0/0", action = "allow" }]
egress = [{ rule = 100, protocol = "tcp", ports = "1024-65535", cidr = "0.0.0.0/0", action = "allow" }]

[[route_tables]]
name = "public"
tag_name = "every-key-public-rt"
zones = ["public"]
routes = [{ destination = "0.0.0.0/0", target = "internet-gateway" }]

[[route_tables]]
name = "private"
tag_name = "every-key-private-rt"
zones = ["private", "admin"]
routes = [{ destination = "0.0.0.0/0", target = "nat-gateway", nat_gateway = "nat" }]

[[security_groups]]
name = "web"
group_name = "every-key-web"
description = "443 from the internet, 8080 to the app"
zone = "public"
tags = { Tier = "web" }
keep_default_egress = false
ingress = [{ protocol = "tcp", ports = 443, cidr = "0.0.0.0/0" }]
egress = [{ protocol = "tcp", ports = 8080, group = "app" }]

[[security_groups]]
name = "app"
group_name = "every-key-app"
description = "8080 from the web tier"
zones = ["private"]
ingress = [{ protocol = "tcp", ports = 8080, group = "web" }]

[[security_groups]]
name = "bastion"
group_name = "every-key-bastion"
description = "SSH from the office"
ingress = [{ protocol = "tcp", ports = 22, cidr = "203.0.113.0/24" }]

[[workloads]]
name = "jumpbox"
zone = "admin"
groups = ["bastion"]

[[externals]]
name = "office"
cidr = "203.0.113.0/24"
ephemeral_ports = "49152-65535"

[flow_log]
traffic_type = "REJECT"
log_group = "every-key-flow-logs"
retention_days = 30
role_name = "every-key-flow-logs"
role_policy_name = "every-key-flow-logs-delivery"

[alarm]
name = "every-key-rejects"
description = "rejected traffic"
metric_filter_name = "every-key-rejects"
filter_pattern = "[version, account, eni, source, destination, srcport, destport, protocol, packets, bytes, start, end, action = REJECT, status]"
metric_value = "$packets"
namespace = "Microseg/Tests"
metric_name = "RejectedPackets"
statistic = "Sum"
period = 300
evaluation_periods = 1
threshold = 100.0
comparison = "GreaterThanThreshold"

[[deviations]]
id = "D1"
source_says = "nothing: the spec has no source"
spec_does = "every key of every table, once"
reason = "a test removes each key in turn"

[[intent]]
from = "internet"
to = "public"
protocol = "tcp"
ports = 443
why = "customers reach the web tier"

[[intent]]
from = "office"
to = "jumpbox"
protocol = "tcp"
ports = 22
blocked_by_design = "the admin zone has no route from the internet"

[[allowed_by_design]]
from = "private"
to = "public"
protocol = "tcp"
ports = 443
why = "the app group keeps the default egress and the web group admits 443 from anywhere"

[[expected_lint]]
owner = "NACL public"
rule = "#100 allow tcp/443 0.0.0.0/0"
kind = "redundant"
why = "made up: this spec only has to plan"

[[expected_findings]]
id = "MS-DEFAULT-SG-OPEN"
resource = "default security group"
why = "the spec leaves the VPC's default group as AWS creates it"

[[accepted]]
id = "MS-VPCE-UNPLANNED"
resource = "VPC endpoint com.amazonaws.us-east-1.s3"
why = "the implementation reaches S3 privately"

[[source_checks]]
id = "every-key-associations"
title = "the public subnet is on the public NACL"
kind = "nacl-associations"
zone = "public"
nacl = "public"

[[source_checks]]
id = "every-key-references"
title = "the web group references the app group"
kind = "group-references"
group = "web"
references = ["app"]

[[source_checks]]
id = "every-key-routes"
title = "the public subnet has the local route"
kind = "routes"
zone = "public"
targets = ["local"]
"##;

    /// The instances of a table in a spec: `path` as in [`TABLES`].
    fn instances_mut<'a>(v: &'a mut toml::Value, path: &[&str]) -> Vec<&'a mut toml::Table> {
        match path.split_first() {
            None => v.as_table_mut().into_iter().collect(),
            Some((&"[]", rest)) => {
                v.as_array_mut().into_iter().flatten().flat_map(|e| instances_mut(e, rest)).collect()
            }
            Some((key, rest)) => v.get_mut(*key).into_iter().flat_map(|e| instances_mut(e, rest)).collect(),
        }
    }

    /// What becomes of a spec that lacks one key.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Without {
        /// The loader refuses it: serde's "missing field".
        DoesNotLoad,
        /// It loads, and the plan refuses it with a problem at that key.
        PlanRefuses,
        /// It loads.
        Loads,
    }

    /// The *required* column of docs/SPEC.md says what the loader does, judged by its
    /// behaviour: each key in turn is removed from the first instance of its table that
    /// has it in [`EVERY_KEY`]. `yes` holds exactly when the spec then fails with
    /// "missing field"; `yes (checked by plan)` when it loads but the plan names the key;
    /// `no` when it loads. An optional key may still be needed in some cases (`ports` for
    /// tcp), so for `no` the plan's verdict is not judged: whether the plan needs a key
    /// depends on the rest of the spec, and the meaning column says when.
    #[test]
    fn the_spec_reference_marks_required_keys_as_the_loader_requires_them() {
        let (spec, source) = parse(SpecSource { path: "every-key.toml".into(), text: EVERY_KEY.into() }).unwrap();
        // Any refusal below is then the removed key's doing.
        if let Err(e) = crate::plan::Plan::from_spec(&spec, &source) {
            panic!("EVERY_KEY must plan: {e}");
        }
        let complete: toml::Value = toml::from_str(EVERY_KEY).unwrap();
        let (mut unexercised, mut wrong) = (Vec::new(), Vec::new());
        for (heading, unknown, paths) in TABLES {
            let section = doc_section(heading);
            for key in accepted_keys(unknown) {
                let row = section.lines().find(|l| l.starts_with(&format!("| `{key}` |")));
                let mark = row.and_then(|r| r.split('|').nth(2)).map(str::trim).unwrap_or_default();
                let documented = match mark {
                    "yes" => Without::DoesNotLoad,
                    "yes (checked by plan)" => Without::PlanRefuses,
                    m if m == "no" || m.starts_with("no (") => Without::Loads,
                    m => {
                        panic!("docs/SPEC.md, {heading}: `{key}` is marked {m:?}, not yes, yes (checked by plan) or no")
                    }
                };
                let mut without = complete.clone();
                let removed = paths.iter().any(|path| {
                    instances_mut(&mut without, path).into_iter().find_map(|t| t.remove(key.as_str())).is_some()
                });
                if !removed {
                    unexercised.push(format!("{heading}: `{key}`"));
                    continue;
                }
                let text = toml::to_string(&without).unwrap();
                let outcome = match parse(SpecSource { path: "without.toml".into(), text }) {
                    Err(SpecError::Parse { message, .. }) if message == format!("missing field `{key}`") => {
                        Without::DoesNotLoad
                    }
                    Err(e) => panic!("{heading}: without `{key}` the loader says something else: {e}"),
                    Ok((spec, source)) => match crate::plan::Plan::from_spec(&spec, &source) {
                        Err(e)
                            if e.problems.iter().any(|p| p.field == key || p.field.ends_with(&format!(".{key}"))) =>
                        {
                            Without::PlanRefuses
                        }
                        _ => Without::Loads,
                    },
                };
                // Only `yes (checked by plan)` asks the plan: see above.
                let agrees = match documented {
                    Without::Loads => outcome != Without::DoesNotLoad,
                    _ => outcome == documented,
                };
                if !agrees {
                    wrong.push(format!("{heading}: `{key}` is marked {mark:?}, but without it: {outcome:?}"));
                }
            }
        }
        assert!(
            unexercised.is_empty(),
            "EVERY_KEY does not use these keys, so their marks went unchecked; add them:\n{}",
            unexercised.join("\n")
        );
        assert!(wrong.is_empty(), "docs/SPEC.md's required marks disagree with the loader:\n{}", wrong.join("\n"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text =
            "[scenario]\nname = \"x\"\ntitle = \"t\"\n[vpc]\ncidr = \"10.0.0.0/16\"\nname = \"v\"\ncolour = \"red\"\n";
        let err = parse(SpecSource { path: "x.toml".into(), text: text.into() }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("x.toml:7:"), "{msg}");
        assert!(msg.contains("colour"), "{msg}");
    }
}
