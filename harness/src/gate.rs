//! The acceptance gate as a function: validate a deployment that something else built
//! (the caller's own SDK code, Terraform, CloudFormation) against a scenario, and the
//! assertions a test makes on the verdict.

use std::fmt::Write as _;

use aws_config::SdkConfig;

use crate::Error;
use crate::aws::Clients;
use crate::capabilities::Capabilities;
use crate::checks::{CheckResult, Finding, Status};
use crate::discover::ZoneMapping;
use crate::observe;
use crate::scenario::Scenario;
use crate::validate::{self, ValidateReport};

/// Where the deployment to gate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locate {
    /// By VPC id.
    VpcId(String),
    /// The one VPC that carries this tag (key, value).
    Tag(String, String),
}

impl std::fmt::Display for Locate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locate::VpcId(id) => write!(f, "VPC {id}"),
            Locate::Tag(k, v) => write!(f, "tag {k}={v}"),
        }
    }
}

/// Validates a deployment that microseg did not build against `scenario`: zones are
/// bound by CIDR, NACLs by association, groups by name, and every check runs, as
/// `microseg validate` does. `config` reaches the account or emulator the deployment is
/// in; `capabilities` says how that target departs from AWS
/// ([`crate::capabilities::Capabilities::aws`] for a real account,
/// [`crate::Emulator::capabilities`] for an emulator).
///
/// The verdict's findings are data, not an error: see [`ValidateReport::assert_pass`]
/// and [`ValidateReport::findings`].
pub async fn gate(
    config: &SdkConfig,
    capabilities: &Capabilities,
    scenario: &Scenario,
    locate: &Locate,
) -> Result<ValidateReport, Error> {
    // The spec first: a bad one is an error before any API call.
    let plan = scenario.plan()?;
    // Where CloudWatch cannot answer the SDK (cloudwatch-no-cbor), alarms are not read.
    let clients = Clients::new(config).serving(capabilities);
    let vpcs = match locate {
        Locate::VpcId(id) => vec![id.clone()],
        Locate::Tag(k, v) => validate::vpc_by_tag(&clients, k, v).await?,
    };
    let [vpc] = vpcs.as_slice() else {
        return Err(Error::NotOneVpc { locate: locate.to_string(), found: vpcs });
    };
    let observed = observe::read_live(&clients, vpc).await?;
    Ok(validate::validate(&plan, &observed, &ZoneMapping::default(), capabilities, format!("{vpc} ({locate})")))
}

impl Finding {
    /// The resource by its logical name alone, ids left out (`security group db`, not
    /// `security group db (sg-0f3…)`): the same in every deployment, so a test can
    /// compare it with a literal.
    pub fn resource_name(&self) -> String {
        crate::checks::without_ids(&self.resource)
    }
}

impl ValidateReport {
    /// Whether every check passed or was a named divergence of the target.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Every finding of every failed check, with its check.
    pub fn findings(&self) -> impl Iterator<Item = (&CheckResult, &Finding)> {
        self.checks.iter().filter(|c| c.status == Status::Fail).flat_map(|c| c.findings.iter().map(move |f| (c, f)))
    }

    /// The findings with this id (`MS-SG-OPEN-TO-WORLD`, say).
    pub fn findings_with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Finding> {
        self.findings().map(|(_, f)| f).filter(move |f| f.id == id)
    }

    /// Panics unless the deployment passed, listing each failing finding with its
    /// check, resource, what was expected and what was found.
    #[track_caller]
    pub fn assert_pass(&self) {
        if self.passed() {
            return;
        }
        let mut message = format!("{} ({}) failed the gate on {}:\n", self.scenario, self.variant, self.source);
        for (check, f) in self.findings() {
            let _ = writeln!(
                message,
                "  [{}] {} {}: expected {}; found {}",
                check.id, f.id, f.resource, f.expected, f.found
            );
        }
        panic!("{message}");
    }
}
