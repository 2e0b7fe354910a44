//! `doctor`'s preflight: whether a target can take the scenarios before anything is
//! created. It makes read calls only (a test holds it to that): who the credentials are,
//! the account and region allowlists, room in the account's quotas for each scenario, and
//! the caller's permissions by IAM's policy simulation against exactly the operations
//! the scenarios will call ([`crate::permissions`]).
//!
//! Quotas are read where the account keeps them: Service Quotas for the VPC quotas (the
//! applied value, else AWS's default), and EC2's account attribute `vpc-max-elastic-ips`
//! besides Service Quotas for Elastic IPs (the lower of the two counts). What already
//! exists is counted (the default VPC included), and what a scenario needs comes from its
//! plan: VPCs, internet gateways, Elastic IPs, NAT gateways per Availability Zone and
//! security groups per region; subnets, NACLs and route tables per VPC; entries per NACL,
//! routes per route table and rules per group. Several scenarios are taken to run one
//! after another in a region (as the nightly runs them): each quota needs the largest of
//! their needs, not the sum.
//!
//! On an emulator the same calls are made; what the emulator cannot answer is named, and
//! what it does not enforce (quotas, IAM) is shown without deciding the verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum};
use serde::Serialize;

use crate::aws::{AwsError, Clients, aws_err};
use crate::capabilities::Divergence;
use crate::model::Direction;
use crate::permissions::{self, ArnContext, Resource, SampleNames};
use crate::plan::Plan;
use crate::run_id::{TAG_CREATED_AT, TAG_RUN_ID, TAG_SCENARIO};

/// What the preflight is told about the target besides its clients.
#[derive(Debug, Clone, Default)]
pub struct PreflightInput {
    /// The emulator's name, or `None` on AWS.
    pub emulator: Option<String>,
    /// `--allow-account`.
    pub allow_accounts: Vec<String>,
    /// `--allow-region`.
    pub allow_regions: Vec<String>,
    /// The permissions boundary the run will give the flow-log role (`--role-boundary`),
    /// which the shipped policy requires on `iam:CreateRole`.
    pub role_boundary: Option<String>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// As needed.
    Ok,
    /// A quota without room for the scenarios.
    Short,
    /// An action the scenarios need is not allowed.
    Denied,
    /// A check that failed (credentials, an allowlist).
    Failed,
    /// The target could not answer the question.
    Unanswered,
    /// Shown, not judged: the target does not enforce it (an emulator's quotas and IAM).
    NotEnforced,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Short => "SHORT",
            Status::Denied => "DENIED",
            Status::Failed => "FAILED",
            Status::Unanswered => "unanswered",
            Status::NotEnforced => "not enforced",
        })
    }
}

/// Which part of the preflight a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// Who the credentials are.
    Credentials,
    /// `--allow-account`.
    Account,
    /// `--allow-region`.
    Region,
    /// A quota.
    Quota,
    /// The permission simulation.
    Permission,
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Area::Credentials => "credentials",
            Area::Account => "account",
            Area::Region => "region",
            Area::Quota => "quota",
            Area::Permission => "permission",
        })
    }
}

/// One line of the preflight.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its part.
    pub area: Area,
    /// What was checked (`VPCs per Region (L-F678F1CE)`, `ec2:CreateVpc`).
    pub subject: String,
    /// The outcome.
    pub status: Status,
    /// The numbers or the reason.
    pub detail: String,
}

/// Everything the preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightReport {
    /// The account the credentials belong to, if STS said.
    pub account: Option<String>,
    /// The caller's ARN, if STS said.
    pub caller: Option<String>,
    /// The region.
    pub region: String,
    /// The emulator, or `None` on AWS.
    pub emulator: Option<String>,
    /// The scenarios it was run for.
    pub scenarios: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The calls it made, per operation.
    pub calls: BTreeMap<String, usize>,
}

impl PreflightReport {
    /// The checks that make the preflight fail: short quotas, denied actions, failed
    /// checks and, on AWS, questions that went unanswered (on an emulator they are named,
    /// and what it cannot answer is no reason to stop a run on it).
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        let strict = self.emulator.is_none();
        self.checks.iter().filter(move |c| match c.status {
            Status::Short | Status::Denied | Status::Failed => true,
            Status::Unanswered => strict,
            Status::Ok | Status::NotEnforced => false,
        })
    }

    /// Whether the target can take the scenarios.
    pub fn passed(&self) -> bool {
        self.problems().next().is_none()
    }

    fn push(&mut self, area: Area, subject: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.checks.push(Check { area, subject: subject.into(), status, detail: detail.into() });
    }
}

/// Runs the preflight for `plans` on the target behind `clients`.
pub async fn preflight(clients: &Clients, input: &PreflightInput, plans: &[Plan]) -> PreflightReport {
    let before = clients.calls.snapshot();
    let mut report = PreflightReport {
        account: None,
        caller: None,
        region: clients.region.clone(),
        emulator: input.emulator.clone(),
        scenarios: plans.iter().map(|p| format!("{} ({})", p.scenario, p.variant)).collect(),
        checks: Vec::new(),
        calls: BTreeMap::new(),
    };
    let on_emulator = input.emulator.is_some();
    match clients.sts.get_caller_identity().send().await.map_err(aws_err("GetCallerIdentity")) {
        Ok(id) => {
            let account = id.account().unwrap_or_default().to_string();
            let arn = id.arn().unwrap_or_default().to_string();
            report.push(Area::Credentials, "caller", Status::Ok, format!("{arn} (account {account})"));
            report.account = Some(account);
            report.caller = Some(arn);
        }
        Err(e) => {
            report.push(
                Area::Credentials,
                "caller",
                Status::Failed,
                format!("{e}\n(hint: check --profile and the credentials in the environment)"),
            );
            report.calls = delta(&before, &clients.calls.snapshot());
            return report;
        }
    }
    let account = report.account.clone().unwrap_or_default();
    if on_emulator {
        report.push(Area::Account, "--allow-account", Status::NotEnforced, "an emulator: no real account is touched");
        report.push(Area::Region, "--allow-region", Status::NotEnforced, "an emulator: no real region is touched");
    } else {
        let account_ok = input.allow_accounts.contains(&account);
        report.push(
            Area::Account,
            "--allow-account",
            if account_ok { Status::Ok } else { Status::Failed },
            format!("account {account}; allowed: {}", list_or_none(&input.allow_accounts)),
        );
        let region_ok = input.allow_regions.contains(&report.region);
        report.push(
            Area::Region,
            "--allow-region",
            if region_ok { Status::Ok } else { Status::Failed },
            format!("region {}; allowed: {}", report.region, list_or_none(&input.allow_regions)),
        );
    }
    quotas(clients, plans, on_emulator, &mut report).await;
    permissions_check(clients, input, plans, &account, &mut report).await;
    report.calls = delta(&before, &clients.calls.snapshot());
    report
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

fn delta(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    after.iter().map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect()
}

/// What a quota limits, and so how microseg counts what is in use and what a plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// VPCs in the region.
    Vpcs,
    /// Internet gateways in the region.
    InternetGateways,
    /// NAT gateways in one Availability Zone.
    NatGatewaysPerAz,
    /// Elastic IPs in the region (also EC2's `vpc-max-elastic-ips`).
    ElasticIps,
    /// Security groups in the region.
    SecurityGroups,
    /// Subnets in one VPC.
    SubnetsPerVpc,
    /// NACLs in one VPC (the default one included).
    NaclsPerVpc,
    /// Entries of one NACL in one direction (the `*` entry excluded).
    EntriesPerNacl,
    /// Route tables in one VPC (the main one included).
    RouteTablesPerVpc,
    /// Routes in one route table (the local route included).
    RoutesPerTable,
    /// Rules of one group in one direction.
    RulesPerGroup,
}

/// A quota the preflight reads.
#[derive(Debug, Clone, Copy)]
pub struct QuotaDef {
    /// Service Quotas' service code.
    pub service: &'static str,
    /// Service Quotas' quota code.
    pub code: &'static str,
    /// Its name, as Service Quotas gives it.
    pub name: &'static str,
    /// What it limits.
    pub limits: Limits,
}

/// The quotas, with their codes as Service Quotas lists them.
pub const QUOTAS: &[QuotaDef] = &[
    QuotaDef { service: "vpc", code: "L-F678F1CE", name: "VPCs per Region", limits: Limits::Vpcs },
    QuotaDef {
        service: "vpc",
        code: "L-A4707A72",
        name: "Internet gateways per Region",
        limits: Limits::InternetGateways,
    },
    QuotaDef { service: "ec2", code: "L-0263D0A3", name: "EC2-VPC Elastic IPs", limits: Limits::ElasticIps },
    QuotaDef {
        service: "vpc",
        code: "L-FE5A380F",
        name: "NAT gateways per Availability Zone",
        limits: Limits::NatGatewaysPerAz,
    },
    QuotaDef {
        service: "vpc",
        code: "L-E79EC296",
        name: "VPC security groups per Region",
        limits: Limits::SecurityGroups,
    },
    QuotaDef { service: "vpc", code: "L-407747CB", name: "Subnets per VPC", limits: Limits::SubnetsPerVpc },
    QuotaDef { service: "vpc", code: "L-B4A6D682", name: "Network ACLs per VPC", limits: Limits::NaclsPerVpc },
    QuotaDef { service: "vpc", code: "L-2AEEBF1A", name: "Rules per network ACL", limits: Limits::EntriesPerNacl },
    QuotaDef { service: "vpc", code: "L-589F43AA", name: "Route tables per VPC", limits: Limits::RouteTablesPerVpc },
    QuotaDef { service: "vpc", code: "L-93826ACB", name: "Routes per route table", limits: Limits::RoutesPerTable },
    QuotaDef {
        service: "vpc",
        code: "L-0EA8095F",
        name: "Inbound or outbound rules per security group",
        limits: Limits::RulesPerGroup,
    },
];

/// What one plan needs of a quota, per scope (`""` for the region or for any one VPC,
/// NACL, table or group; the Availability Zone for NAT gateways).
pub fn needs(plan: &Plan, limits: Limits, region: &str) -> BTreeMap<String, u64> {
    let one = |n: usize| BTreeMap::from([(String::new(), n as u64)]);
    let max = |it: &mut dyn Iterator<Item = usize>| it.max().unwrap_or(0);
    match limits {
        Limits::Vpcs => one(1),
        Limits::InternetGateways => one(usize::from(plan.internet_gateway.is_some())),
        Limits::ElasticIps => one(plan.nat_gateways.len()),
        Limits::NatGatewaysPerAz => {
            let mut per_az: BTreeMap<String, u64> = BTreeMap::new();
            for nat in &plan.nat_gateways {
                let suffix = plan.zone(&nat.zone).map(|z| z.az_suffix.as_str()).unwrap_or_default();
                *per_az.entry(format!("{region}{suffix}")).or_default() += 1;
            }
            per_az
        }
        // The new VPC's default group counts too.
        Limits::SecurityGroups => one(plan.security_groups.len() + 1),
        Limits::SubnetsPerVpc => one(plan.zones.len()),
        Limits::NaclsPerVpc => one(plan.nacls.len() + 1),
        Limits::EntriesPerNacl => one(max(&mut plan
            .nacls
            .iter()
            .flat_map(|n| [Direction::Ingress, Direction::Egress].map(|d| n.entries(d).count())))),
        Limits::RouteTablesPerVpc => one(plan.route_tables.len() + 1),
        Limits::RoutesPerTable => one(max(&mut plan.route_tables.iter().map(|t| t.routes.len() + 1))),
        // Every peer of a rule is a rule of its own to AWS; both address families counted
        // together, which can only overstate the need.
        Limits::RulesPerGroup => one(max(&mut plan.security_groups.iter().flat_map(|g| {
            let rules = g.expected_rules();
            [Direction::Ingress, Direction::Egress].map(|d| rules.iter().filter(|r| r.direction == d).count())
        }))),
    }
}

/// The needs of several plans run one after another: per scope, the largest.
fn needs_of_all(plans: &[Plan], limits: Limits, region: &str) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for p in plans {
        for (scope, n) in needs(p, limits, region) {
            let e = all.entry(scope).or_default();
            *e = (*e).max(n);
        }
    }
    all
}

/// A quota's value, and where it came from.
struct Value {
    value: u64,
    source: String,
}

async fn quota_value(clients: &Clients, q: &QuotaDef) -> Result<Value, AwsError> {
    let applied = clients
        .quotas
        .get_service_quota()
        .service_code(q.service)
        .quota_code(q.code)
        .send()
        .await
        .map_err(aws_err("GetServiceQuota"));
    match applied {
        Ok(out) => match out.quota().and_then(|q| q.value()) {
            Some(v) => Ok(Value { value: v as u64, source: "Service Quotas, applied".into() }),
            None => {
                Err(AwsError { operation: "GetServiceQuota", code: None, message: "no value in the answer".into() })
            }
        },
        // No applied value in this account: the quota is AWS's default.
        Err(e) if e.code.as_deref() == Some("NoSuchResourceException") => {
            let out = clients
                .quotas
                .get_aws_default_service_quota()
                .service_code(q.service)
                .quota_code(q.code)
                .send()
                .await
                .map_err(aws_err("GetAWSDefaultServiceQuota"))?;
            let v = out.quota().and_then(|q| q.value()).ok_or_else(|| AwsError {
                operation: "GetAWSDefaultServiceQuota",
                code: None,
                message: "no value in the answer".into(),
            })?;
            Ok(Value { value: v as u64, source: "Service Quotas, AWS default".into() })
        }
        Err(e) => Err(e),
    }
}

/// What exists in the region now, counted for the region-wide quotas.
#[derive(Debug, Default)]
struct InUse {
    vpcs: u64,
    internet_gateways: u64,
    addresses: u64,
    security_groups: u64,
    nat_per_az: BTreeMap<String, u64>,
}

async fn in_use(clients: &Clients) -> Result<InUse, AwsError> {
    use crate::aws::all_items;
    let ec2 = &clients.ec2;
    let (vpcs, igws, addresses, groups, nats, subnets) = tokio::try_join!(
        async { all_items!(ec2.describe_vpcs(), "DescribeVpcs") },
        async { all_items!(ec2.describe_internet_gateways(), "DescribeInternetGateways") },
        async { ec2.describe_addresses().send().await.map_err(aws_err("DescribeAddresses")) },
        async { all_items!(ec2.describe_security_groups(), "DescribeSecurityGroups") },
        async { all_items!(ec2.describe_nat_gateways(), "DescribeNatGateways") },
        async { all_items!(ec2.describe_subnets(), "DescribeSubnets") },
    )?;
    let az_of: BTreeMap<&str, &str> =
        subnets.iter().filter_map(|s| Some((s.subnet_id()?, s.availability_zone()?))).collect();
    let mut nat_per_az: BTreeMap<String, u64> = BTreeMap::new();
    // A NAT gateway counts until it is deleted (or failed).
    for n in nats.iter().filter(|n| !matches!(n.state().map(|s| s.as_str()), Some("deleted" | "failed"))) {
        let az = n.subnet_id().and_then(|s| az_of.get(s)).copied().unwrap_or("(unknown zone)");
        *nat_per_az.entry(az.to_string()).or_default() += 1;
    }
    Ok(InUse {
        vpcs: vpcs.len() as u64,
        internet_gateways: igws.len() as u64,
        addresses: addresses.addresses().iter().filter(|a| a.domain().is_none_or(|d| d.as_str() == "vpc")).count()
            as u64,
        security_groups: groups.len() as u64,
        nat_per_az,
    })
}

/// EC2's own count of Elastic IPs an account may hold in the region.
async fn vpc_max_elastic_ips(clients: &Clients) -> Result<Option<u64>, AwsError> {
    let out = clients.ec2.describe_account_attributes().send().await.map_err(aws_err("DescribeAccountAttributes"))?;
    Ok(out
        .account_attributes()
        .iter()
        .find(|a| a.attribute_name() == Some("vpc-max-elastic-ips"))
        .and_then(|a| a.attribute_values().first()?.attribute_value()?.parse().ok()))
}

async fn quotas(clients: &Clients, plans: &[Plan], on_emulator: bool, report: &mut PreflightReport) {
    let region = report.region.clone();
    let (existing, eip_attribute, values) = tokio::join!(
        in_use(clients),
        vpc_max_elastic_ips(clients),
        futures::future::join_all(QUOTAS.iter().map(|q| quota_value(clients, q))),
    );
    let existing = match existing {
        Ok(e) => Some(e),
        Err(e) => {
            report.push(Area::Quota, "resources in use", Status::Unanswered, format!("could not count them: {e}"));
            None
        }
    };
    for (q, value) in QUOTAS.iter().zip(values) {
        let subject = format!("{} ({})", q.name, q.code);
        let mut value = value;
        if q.limits == Limits::ElasticIps {
            value = match (value, &eip_attribute) {
                (Ok(v), Ok(Some(a))) if *a < v.value => Ok(Value {
                    value: *a,
                    source: format!("EC2 vpc-max-elastic-ips (Service Quotas says {})", v.value),
                }),
                (Ok(v), _) => Ok(v),
                (Err(_), Ok(Some(a))) => {
                    Ok(Value { value: *a, source: "EC2 account attribute vpc-max-elastic-ips".into() })
                }
                (Err(e), _) => Err(e),
            };
        }
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                let why = if on_emulator {
                    format!("this emulator cannot answer: {e}")
                } else {
                    format!(
                        "{e}\n(hint: the role needs servicequotas:GetServiceQuota on {subject}; see .github/aws/sandbox-policy.json)"
                    )
                };
                report.push(Area::Quota, subject, Status::Unanswered, why);
                continue;
            }
        };
        let need = needs_of_all(plans, q.limits, &region);
        let used = |scope: &str| -> Option<u64> {
            let e = existing.as_ref()?;
            Some(match q.limits {
                Limits::Vpcs => e.vpcs,
                Limits::InternetGateways => e.internet_gateways,
                Limits::ElasticIps => e.addresses,
                Limits::SecurityGroups => e.security_groups,
                Limits::NatGatewaysPerAz => e.nat_per_az.get(scope).copied().unwrap_or(0),
                // Per VPC, NACL, table or group: the scenario's own, in a new VPC.
                _ => 0,
            })
        };
        let regional = matches!(
            q.limits,
            Limits::Vpcs
                | Limits::InternetGateways
                | Limits::ElasticIps
                | Limits::SecurityGroups
                | Limits::NatGatewaysPerAz
        );
        if need.is_empty() || need.values().all(|n| *n == 0) {
            report.push(
                Area::Quota,
                subject,
                Status::Ok,
                format!("quota {} ({}); the scenarios need none", value.value, value.source),
            );
            continue;
        }
        for (scope, needed) in need.iter().filter(|(_, n)| **n > 0) {
            let subject = if scope.is_empty() { subject.clone() } else { format!("{subject} in {scope}") };
            let Some(used) = (if regional { used(scope) } else { Some(0) }) else {
                report.push(Area::Quota, subject, Status::Unanswered, "what is in use could not be counted");
                continue;
            };
            let room = value.value.saturating_sub(used);
            let numbers = if regional {
                format!("{used} in use + {needed} needed, quota {} ({})", value.value, value.source)
            } else {
                format!("{needed} needed, quota {} ({})", value.value, value.source)
            };
            let status = match (room >= *needed, on_emulator) {
                (true, _) => Status::Ok,
                (false, true) => Status::NotEnforced,
                (false, false) => Status::Short,
            };
            let detail = match status {
                Status::Short => format!(
                    "{numbers}: short by {}\n(hint: {})",
                    needed - room,
                    if regional {
                        format!(
                            "sweep what earlier runs left (microseg sweep --older-than 6h …), delete what is unused, or ask AWS to raise {} for {region}",
                            q.code
                        )
                    } else {
                        format!(
                            "the scenario itself needs more than the quota: ask AWS to raise {} for {region}",
                            q.code
                        )
                    }
                ),
                Status::NotEnforced => {
                    format!("{numbers}: short by {}, but this emulator does not enforce the quota", needed - room)
                }
                _ => numbers,
            };
            report.push(Area::Quota, subject, status, detail);
        }
    }
}

/// The IAM principal whose policies are simulated for a caller ARN: the role behind an
/// assumed-role session (taken to be at path `/`, as docs/SANDBOX.md sets it up), or the
/// user itself. `None` for the account root and federated users, which IAM does not
/// simulate.
pub fn principal_of(caller: &str) -> Option<String> {
    let (prefix, rest) = caller.split_once(":sts::").or_else(|| caller.split_once(":iam::"))?;
    let partition = prefix.strip_prefix("arn:")?;
    let (account, resource) = rest.split_once(':')?;
    if let Some(session) = resource.strip_prefix("assumed-role/") {
        let role = session.split('/').next().filter(|r| !r.is_empty())?;
        return Some(format!("arn:{partition}:iam::{account}:role/{role}"));
    }
    (resource.starts_with("user/") || resource.starts_with("role/")).then(|| caller.to_string())
}

/// The context every simulated request carries: the region, the run tag in the request
/// and on the resource, the tag keys, and the boundary the run gives its role.
fn context_entries(region: &str, boundary: Option<&str>, create_action: Option<&str>) -> Vec<ContextEntry> {
    let run = permissions::sample_run_id().to_string();
    let entry = |key: &str, values: Vec<String>, kind: ContextKeyTypeEnum| {
        ContextEntry::builder()
            .context_key_name(key)
            .set_context_key_values(Some(values))
            .context_key_type(kind)
            .build()
    };
    let mut entries = vec![
        entry("aws:RequestedRegion", vec![region.into()], ContextKeyTypeEnum::String),
        entry(&format!("aws:RequestTag/{TAG_RUN_ID}"), vec![run.clone()], ContextKeyTypeEnum::String),
        entry(&format!("aws:ResourceTag/{TAG_RUN_ID}"), vec![run], ContextKeyTypeEnum::String),
        entry(
            "aws:TagKeys",
            vec![TAG_RUN_ID.into(), TAG_SCENARIO.into(), TAG_CREATED_AT.into(), "Name".into()],
            ContextKeyTypeEnum::StringList,
        ),
    ];
    if let Some(b) = boundary {
        entries.push(entry("iam:PermissionsBoundary", vec![b.into()], ContextKeyTypeEnum::String));
    }
    if let Some(a) = create_action {
        entries.push(entry("ec2:CreateAction", vec![a.into()], ContextKeyTypeEnum::String));
    }
    entries
}

async fn permissions_check(
    clients: &Clients,
    input: &PreflightInput,
    plans: &[Plan],
    account: &str,
    report: &mut PreflightReport,
) {
    let on_emulator = input.emulator.is_some();
    let caller = report.caller.clone().unwrap_or_default();
    let Some(principal) = principal_of(&caller) else {
        let (status, why) = if on_emulator {
            (
                Status::Unanswered,
                format!(
                    "the caller {caller} is not a role or a user, which IAM does not simulate; and this emulator does not \
                     enforce IAM ({})",
                    Divergence::IamNotEnforced
                ),
            )
        } else {
            (
                Status::Failed,
                format!(
                    "the caller {caller} is not a role or a user, which IAM does not simulate\n(hint: run the preflight \
                     with the sandbox role's credentials, as the nightly does)"
                ),
            )
        };
        report.push(Area::Permission, "simulation", status, why);
        return;
    };
    let partition = caller.split(':').nth(1).unwrap_or("aws").to_string();
    // Each (resource, create action) is one simulation: the actions authorised against
    // that resource, with the context that a request on it carries.
    let mut groups: BTreeMap<(String, Option<&'static str>), BTreeSet<&'static str>> = BTreeMap::new();
    for plan in plans {
        let names = SampleNames::of(plan);
        let c = ArnContext {
            partition: &partition,
            region: &report.region,
            account,
            caller_role: &principal,
            names: &names,
        };
        for op in permissions::for_plan(plan) {
            for grant in op.grants {
                for resource in grant.on {
                    // ec2:CreateAction is the create that tags the resource at creation.
                    let create_action =
                        op.grants.iter().find_map(|g| g.create_action.filter(|_| g.on.contains(resource)));
                    let create_action = if *resource == Resource::Any { None } else { create_action };
                    groups.entry((resource.sample_arn(&c), create_action)).or_default().insert(grant.action);
                }
            }
        }
    }
    let mut denied = 0;
    let mut decided = 0;
    for ((arn, create_action), actions) in &groups {
        let mut request = clients
            .iam
            .simulate_principal_policy()
            .policy_source_arn(&principal)
            .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
            .set_context_entries(Some(context_entries(&report.region, input.role_boundary.as_deref(), *create_action)));
        if arn != "*" {
            request = request.resource_arns(arn);
        }
        let results = request
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(aws_err("SimulatePrincipalPolicy"));
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                let hint = if e.code.as_deref() == Some("NoSuchEntity") {
                    format!(
                        "\n(hint: {principal} was derived from the session {caller}; a role with a path cannot be told from its \
                         session, so the sandbox role must live at path /, as docs/SANDBOX.md sets it up)"
                    )
                } else if on_emulator {
                    String::new()
                } else {
                    "\n(hint: the role needs iam:SimulatePrincipalPolicy on itself; see .github/aws/sandbox-policy.json)".into()
                };
                report.push(Area::Permission, format!("simulation on {arn}"), Status::Unanswered, format!("{e}{hint}"));
                continue;
            }
        };
        for r in results {
            let action = r.eval_action_name().to_string();
            let decision = r.eval_decision().as_str().to_string();
            decided += 1;
            if decision == "allowed" {
                continue;
            }
            denied += 1;
            let missing = r.missing_context_values();
            let mut detail = format!("{decision} for {principal} on {arn}");
            if !missing.is_empty() {
                detail
                    .push_str(&format!("; the policy asks for context the simulation lacked: {}", missing.join(", ")));
            }
            if action == "iam:CreateRole" && input.role_boundary.is_none() {
                detail.push_str("\n(hint: the shipped policy lets microseg create the flow-log role only with a permissions boundary: pass --role-boundary <policy ARN>)");
            }
            let status = if on_emulator { Status::NotEnforced } else { Status::Denied };
            report.push(Area::Permission, action, status, detail);
        }
    }
    let summary = format!(
        "{} of {decided} action-resource pairs allowed for {principal} ({} simulations){}",
        decided - denied,
        groups.len(),
        if on_emulator {
            format!("; this emulator does not enforce IAM ({})", Divergence::IamNotEnforced)
        } else {
            String::new()
        }
    );
    let status = match (denied, on_emulator) {
        (0, _) => Status::Ok,
        (_, true) => Status::NotEnforced,
        (_, false) => Status::Denied,
    };
    report.push(Area::Permission, "simulation", status, summary);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{self, Answer, Replay, Request};

    fn plan(name: &str) -> Plan {
        let (spec, source) = crate::spec::load(name).unwrap();
        Plan::from_spec(&spec, &source).unwrap()
    }

    #[test]
    fn the_quotas_read_are_those_the_policy_lets_the_role_read() {
        let codes: BTreeSet<(&str, &str)> = QUOTAS.iter().map(|q| (q.service, q.code)).collect();
        let granted: BTreeSet<(&str, &str)> = permissions::QUOTA_RESOURCES
            .iter()
            .map(|r| match r {
                Resource::Quota(s, c) => (*s, *c),
                other => panic!("{other:?} is not a quota"),
            })
            .collect();
        assert_eq!(codes, granted);
    }

    #[test]
    fn needs_come_from_the_plan() {
        let p = plan("three-tier");
        // Counted here from the plan's parts, independently of `needs`.
        let nats = p.nat_gateways.len() as u64;
        assert!(nats > 0, "three-tier has NAT gateways");
        assert_eq!(needs(&p, Limits::ElasticIps, "eu-west-1")[""], nats);
        assert_eq!(needs(&p, Limits::NatGatewaysPerAz, "eu-west-1").values().sum::<u64>(), nats);
        assert!(needs(&p, Limits::NatGatewaysPerAz, "eu-west-1").keys().all(|az| az.starts_with("eu-west-1")));
        assert_eq!(needs(&p, Limits::SecurityGroups, "x")[""], p.security_groups.len() as u64 + 1);
        let most_entries = p
            .nacls
            .iter()
            .map(|n| n.entries.iter().filter(|e| e.direction == Direction::Ingress).count())
            .chain(p.nacls.iter().map(|n| n.entries.iter().filter(|e| e.direction == Direction::Egress).count()))
            .max()
            .unwrap();
        assert_eq!(needs(&p, Limits::EntriesPerNacl, "x")[""], most_entries as u64);
        // Two scenarios one after another need the larger of their needs, not the sum.
        let r = plan("recipe");
        let both = needs_of_all(&[r.clone(), p.clone()], Limits::ElasticIps, "x");
        assert_eq!(both[""], nats.max(r.nat_gateways.len() as u64));
    }

    #[test]
    fn the_principal_is_the_role_behind_a_session_or_the_user() {
        assert_eq!(
            principal_of("arn:aws:sts::123456789012:assumed-role/microseg-sandbox/microseg-nightly-42").as_deref(),
            Some("arn:aws:iam::123456789012:role/microseg-sandbox")
        );
        assert_eq!(
            principal_of("arn:aws-us-gov:sts::123456789012:assumed-role/r/s").as_deref(),
            Some("arn:aws-us-gov:iam::123456789012:role/r")
        );
        assert_eq!(
            principal_of("arn:aws:iam::123456789012:user/ops/ana").as_deref(),
            Some("arn:aws:iam::123456789012:user/ops/ana")
        );
        assert_eq!(principal_of("arn:aws:iam::000000000000:root"), None);
        assert_eq!(principal_of("arn:aws:sts::123456789012:federated-user/bob"), None);
    }

    /// A sandbox account as AWS answers it: its VPCs, addresses, NAT gateways, groups,
    /// quotas, and a policy simulation that denies `denied`.
    struct Account {
        vpcs: usize,
        addresses: usize,
        vpc_quota: Option<f64>,
        eip_attribute: u64,
        denied: &'static [&'static str],
    }

    impl Account {
        fn replay(self) -> Replay {
            Replay::new(move |r: &Request| {
                let items = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<String>();
                Some(match r.operation.as_str() {
                    "GetCallerIdentity" => Answer::ok(replay::query(
                        replay::STS,
                        "GetCallerIdentity",
                        "<Arn>arn:aws:sts::123456789012:assumed-role/microseg-sandbox/microseg-nightly-7</Arn>\
                         <UserId>AROAEXAMPLE:microseg-nightly-7</UserId><Account>123456789012</Account>",
                    )),
                    "DescribeVpcs" => Answer::ok(replay::ec2(
                        "DescribeVpcs",
                        &format!(
                            "<vpcSet>{}</vpcSet>",
                            items(self.vpcs, &|i| format!(
                                "<item><vpcId>vpc-{i:017x}</vpcId><state>available</state><cidrBlock>172.31.0.0/16</cidrBlock>\
                                 <isDefault>{}</isDefault></item>",
                                i == 0
                            ))
                        ),
                    )),
                    "DescribeInternetGateways" => Answer::ok(replay::ec2(
                        "DescribeInternetGateways",
                        "<internetGatewaySet><item><internetGatewayId>igw-0a</internetGatewayId><attachmentSet/><tagSet/></item></internetGatewaySet>",
                    )),
                    "DescribeAddresses" => Answer::ok(replay::ec2(
                        "DescribeAddresses",
                        &format!(
                            "<addressesSet>{}</addressesSet>",
                            items(self.addresses, &|i| format!(
                                "<item><publicIp>198.51.100.{i}</publicIp><allocationId>eipalloc-{i:017x}</allocationId><domain>vpc</domain></item>"
                            ))
                        ),
                    )),
                    "DescribeSecurityGroups" => Answer::ok(replay::ec2(
                        "DescribeSecurityGroups",
                        "<securityGroupInfo><item><groupId>sg-0a</groupId><groupName>default</groupName><vpcId>vpc-0</vpcId>\
                         <ipPermissions/><ipPermissionsEgress/></item></securityGroupInfo>",
                    )),
                    "DescribeNatGateways" => Answer::ok(replay::ec2(
                        "DescribeNatGateways",
                        "<natGatewaySet><item><natGatewayId>nat-0a</natGatewayId><subnetId>subnet-0a</subnetId>\
                         <state>available</state></item><item><natGatewayId>nat-0b</natGatewayId><subnetId>subnet-0a</subnetId>\
                         <state>deleted</state></item></natGatewaySet>",
                    )),
                    "DescribeSubnets" => Answer::ok(replay::ec2(
                        "DescribeSubnets",
                        "<subnetSet><item><subnetId>subnet-0a</subnetId><availabilityZone>eu-west-1a</availabilityZone>\
                         <vpcId>vpc-0</vpcId><cidrBlock>172.31.0.0/20</cidrBlock></item></subnetSet>",
                    )),
                    "DescribeAccountAttributes" => Answer::ok(replay::ec2(
                        "DescribeAccountAttributes",
                        &format!(
                            "<accountAttributeSet><item><attributeName>vpc-max-elastic-ips</attributeName><attributeValueSet>\
                             <item><attributeValue>{}</attributeValue></item></attributeValueSet></item>\
                             <item><attributeName>max-instances</attributeName><attributeValueSet><item>\
                             <attributeValue>20</attributeValue></item></attributeValueSet></item></accountAttributeSet>",
                            self.eip_attribute
                        ),
                    )),
                    "GetServiceQuota" => {
                        let q: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                        let code = q["QuotaCode"].as_str().unwrap().to_string();
                        let service = q["ServiceCode"].as_str().unwrap().to_string();
                        match (code.as_str(), self.vpc_quota) {
                            ("L-F678F1CE", Some(v)) => quota_answer(&service, &code, v),
                            ("L-F678F1CE", None) => Answer::json_error(
                                400,
                                "NoSuchResourceException",
                                "The request failed because the specified service quota does not exist.",
                            ),
                            _ => quota_answer(&service, &code, default_of(&code)),
                        }
                    }
                    "GetAWSDefaultServiceQuota" => {
                        let q: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                        quota_answer(q["ServiceCode"].as_str().unwrap(), q["QuotaCode"].as_str().unwrap(), 5.0)
                    }
                    "SimulatePrincipalPolicy" => {
                        let resource = r.form("ResourceArns.member.1").unwrap_or_else(|| "*".into());
                        let members: String = r
                            .form_values("ActionNames.member.")
                            .iter()
                            .map(|a| {
                                let decision = if self.denied.contains(&a.as_str()) { "implicitDeny" } else { "allowed" };
                                format!(
                                    "<member><EvalActionName>{a}</EvalActionName><EvalResourceName>{resource}</EvalResourceName>\
                                     <EvalDecision>{decision}</EvalDecision><MatchedStatements/><MissingContextValues/></member>"
                                )
                            })
                            .collect();
                        Answer::ok(replay::query(
                            replay::IAM,
                            "SimulatePrincipalPolicy",
                            &format!(
                                "<IsTruncated>false</IsTruncated><EvaluationResults>{members}</EvaluationResults>"
                            ),
                        ))
                    }
                    _ => return None,
                })
            })
        }
    }

    /// AWS's documented defaults (used only as the replayed account's applied values).
    fn default_of(code: &str) -> f64 {
        match code {
            "L-F678F1CE" | "L-A4707A72" | "L-FE5A380F" | "L-0263D0A3" => 5.0,
            "L-E79EC296" => 2500.0,
            "L-407747CB" | "L-B4A6D682" | "L-589F43AA" => 200.0,
            "L-2AEEBF1A" => 20.0,
            "L-93826ACB" => 50.0,
            "L-0EA8095F" => 60.0,
            other => panic!("no default for {other}"),
        }
    }

    fn quota_answer(service: &str, code: &str, value: f64) -> Answer {
        Answer::ok(format!(
            r#"{{"Quota":{{"ServiceCode":"{service}","QuotaArn":"arn:aws:servicequotas:eu-west-1:123456789012:{service}/{code}","QuotaCode":"{code}","QuotaName":"q","Value":{value},"Unit":"None","Adjustable":true,"GlobalQuota":false}}}}"#
        ))
    }

    fn input() -> PreflightInput {
        PreflightInput {
            emulator: None,
            allow_accounts: vec!["123456789012".into()],
            allow_regions: vec!["eu-west-1".into()],
            role_boundary: Some("arn:aws:iam::123456789012:policy/microseg/microseg-flow-log-boundary".into()),
        }
    }

    async fn run(account: Account, plans: &[Plan]) -> (PreflightReport, Vec<Request>) {
        let replay = account.replay();
        let clients = Clients::new(&replay.sdk_config("eu-west-1").await);
        let report = preflight(&clients, &input(), plans).await;
        (report, replay.requests())
    }

    fn assert_no_mutating_call(requests: &[Request]) {
        let mutating: Vec<&str> =
            requests.iter().map(|r| r.operation.as_str()).filter(|op| permissions::is_mutating(op)).collect();
        assert!(mutating.is_empty(), "the preflight changed something: {mutating:?}");
        assert!(requests.iter().all(|r| r.operation != "unknown"), "{requests:?}");
    }

    #[tokio::test]
    async fn an_account_with_room_and_permissions_passes() {
        let plans = [plan("three-tier-hardened"), plan("microservices-hardened")];
        let (report, requests) =
            run(Account { vpcs: 1, addresses: 0, vpc_quota: Some(5.0), eip_attribute: 5, denied: &[] }, &plans).await;
        assert!(report.passed(), "{:#?}", report.problems().collect::<Vec<_>>());
        assert_no_mutating_call(&requests);
        // Every operation the scenarios need was simulated, as the catalogue lists them.
        let simulated: BTreeSet<String> = requests
            .iter()
            .filter(|r| r.operation == "SimulatePrincipalPolicy")
            .flat_map(|r| r.form_values("ActionNames.member."))
            .collect();
        let needed: BTreeSet<String> = plans
            .iter()
            .flat_map(permissions::for_plan)
            .flat_map(|o| o.grants.iter().map(|g| g.action.to_string()))
            .collect();
        assert_eq!(simulated, needed);
        assert!(requests.iter().filter(|r| r.operation == "SimulatePrincipalPolicy").all(|r| {
            r.form("PolicySourceArn").as_deref() == Some("arn:aws:iam::123456789012:role/microseg-sandbox")
        }));
    }

    #[tokio::test]
    async fn a_full_vpc_quota_is_a_clear_error_and_nothing_is_created() {
        // The default VPC and four leftovers fill the default quota of 5.
        let (report, requests) = run(
            Account { vpcs: 5, addresses: 0, vpc_quota: Some(5.0), eip_attribute: 5, denied: &[] },
            &[plan("recipe")],
        )
        .await;
        assert!(!report.passed());
        let problems: Vec<&Check> = report.problems().collect();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!((problems[0].status, problems[0].subject.as_str()), (Status::Short, "VPCs per Region (L-F678F1CE)"));
        assert!(
            problems[0].detail.starts_with("5 in use + 1 needed, quota 5 (Service Quotas, applied): short by 1"),
            "{}",
            problems[0].detail
        );
        assert!(problems[0].detail.contains("microseg sweep"), "{}", problems[0].detail);
        assert_no_mutating_call(&requests);
    }

    #[tokio::test]
    async fn elastic_ips_for_two_scenarios_in_turn_are_the_larger_need_against_the_lower_quota() {
        let plans = [plan("three-tier"), plan("microservices")];
        let need = plans.iter().map(|p| p.nat_gateways.len() as u64).max().unwrap();
        // Service Quotas says 5, EC2's attribute 3 (a quota lowered by AWS): the lower
        // decides. Two addresses in use leave one.
        let (report, requests) =
            run(Account { vpcs: 1, addresses: 2, vpc_quota: Some(5.0), eip_attribute: 3, denied: &[] }, &plans).await;
        let eip = report.checks.iter().find(|c| c.subject.starts_with("EC2-VPC Elastic IPs")).unwrap();
        assert_eq!(eip.status, if 2 + need > 3 { Status::Short } else { Status::Ok }, "{eip:?}");
        assert!(
            eip.detail.starts_with(&format!(
                "2 in use + {need} needed, quota 3 (EC2 vpc-max-elastic-ips (Service Quotas says 5))"
            )),
            "{}",
            eip.detail
        );
        assert_no_mutating_call(&requests);
    }

    #[tokio::test]
    async fn a_quota_without_an_applied_value_is_aws_default() {
        let (report, requests) =
            run(Account { vpcs: 1, addresses: 0, vpc_quota: None, eip_attribute: 5, denied: &[] }, &[plan("recipe")])
                .await;
        let vpcs = report.checks.iter().find(|c| c.subject.starts_with("VPCs per Region")).unwrap();
        assert_eq!(vpcs.status, Status::Ok);
        assert!(vpcs.detail.contains("quota 5 (Service Quotas, AWS default)"), "{}", vpcs.detail);
        let defaults: Vec<&Request> = requests.iter().filter(|r| r.operation == "GetAWSDefaultServiceQuota").collect();
        assert_eq!(defaults.len(), 1);
        assert!(defaults[0].body.contains("L-F678F1CE"));
    }

    #[tokio::test]
    async fn a_denied_action_is_named_with_the_resource() {
        let (report, requests) = run(
            Account {
                vpcs: 1,
                addresses: 0,
                vpc_quota: Some(5.0),
                eip_attribute: 5,
                denied: &["ec2:DeleteNatGateway"],
            },
            &[plan("three-tier")],
        )
        .await;
        assert!(!report.passed());
        let denied: Vec<&Check> = report.problems().filter(|c| c.area == Area::Permission).collect();
        assert_eq!(denied.len(), 2, "{denied:#?}");
        assert_eq!(denied[0].subject, "ec2:DeleteNatGateway");
        assert_eq!(
            denied[0].detail,
            "implicitDeny for arn:aws:iam::123456789012:role/microseg-sandbox on arn:aws:ec2:eu-west-1:123456789012:natgateway/nat-0123456789abcdef0"
        );
        assert_eq!(denied[1].subject, "simulation");
        assert_no_mutating_call(&requests);
        // The recipe has no NAT gateway: the same account passes it.
        let (report, _) = run(
            Account {
                vpcs: 1,
                addresses: 0,
                vpc_quota: Some(5.0),
                eip_attribute: 5,
                denied: &["ec2:DeleteNatGateway"],
            },
            &[plan("recipe")],
        )
        .await;
        assert!(report.passed(), "{:#?}", report.problems().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn bad_credentials_stop_the_preflight_at_once() {
        let replay = Replay::new(|r| {
            (r.operation == "GetCallerIdentity").then(|| Answer::with_status(
                403,
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>x</RequestId></ErrorResponse>",
            ))
        });
        let clients = Clients::new(&replay.sdk_config("eu-west-1").await);
        let report = preflight(&clients, &input(), &[plan("recipe")]).await;
        let problems: Vec<&Check> = report.problems().collect();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].detail.contains("InvalidClientTokenId"), "{}", problems[0].detail);
        assert_eq!(replay.requests().len(), 1);
    }
}
