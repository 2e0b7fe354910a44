//! Jobs: runs that stand for the same thing (a nightly's `eu-west-1-three-tier-hardened`)
//! carry its label in the tag `microseg:job`, so a run can find what the job's earlier
//! runs left and refuse to start beside it, or sweep it first.
//!
//! Why: each run's resources count against the account's quotas (a VPC, Elastic IPs, NAT
//! gateways), and a job that crashed every night for a week would otherwise hold a week
//! of them. The earlier runs are found by the label, never by age: a run of another job
//! is never touched, however old.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_ec2::types::Filter;

use crate::aws::{AwsError, Clients, all_items, aws_err};
use crate::inventory::{self, Item, Scope};
use crate::ledger::ResourceKind;
use crate::run_id::{RunId, TAG_JOB};

/// A job label, checked: 1 to 128 characters that every service microseg tags in
/// accepts in a tag value (letters, digits, spaces and `_ . : / = + - @`), and not
/// starting with `aws:`, which AWS keeps for itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Job(String);

impl Job {
    /// Checks a label given by a user (`run --job`).
    pub fn parse(s: &str) -> Result<Job, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c);
        if s.is_empty() || s.len() > 128 {
            return Err(format!("job label {s:?} must be 1 to 128 characters"));
        }
        if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "job label {s:?} has {bad:?}; use letters, digits, spaces and _ . : / = + - @ (tag values of every service)"
            ));
        }
        if s.to_ascii_lowercase().starts_with("aws:") {
            return Err(format!("job label {s:?} may not start with aws: (AWS keeps that prefix)"));
        }
        Ok(Job(s.to_string()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a run does when the job's earlier runs still have resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EarlierRuns {
    /// Refuse to start, naming them and how to sweep them.
    #[default]
    Refuse,
    /// Sweep them first, and start only if nothing of them is left.
    Sweep,
}

/// The resources of the job's earlier runs, by run.
pub async fn earlier_runs(clients: &Clients, job: &Job, account: &str) -> Result<BTreeMap<RunId, Vec<Item>>, AwsError> {
    // The same two reads whatever the account holds: a run's calls do not depend on
    // what other runs left (the sandbox policy's test relies on it).
    let (tagged, items) = tokio::try_join!(ec2_tagged(clients, job), inventory::list(clients, &Scope::AllRuns))?;
    let runs = runs_of(clients, &items, &tagged, job, account).await?;
    let mut by_run: BTreeMap<RunId, Vec<Item>> = BTreeMap::new();
    for item in items.into_iter().filter(|i| runs.contains(&i.run_id)) {
        by_run.entry(item.run_id.clone()).or_default().push(item);
    }
    Ok(by_run)
}

/// The ids of the EC2 resources that carry the job's label: EC2 answers for all its
/// resource types at once (`DescribeTags` by key and value).
async fn ec2_tagged(clients: &Clients, job: &Job) -> Result<BTreeSet<String>, AwsError> {
    let tagged = all_items!(
        clients
            .ec2
            .describe_tags()
            .filters(Filter::builder().name("key").values(TAG_JOB).build())
            .filters(Filter::builder().name("value").values(job.as_str()).build()),
        "DescribeTags"
    )?;
    Ok(tagged.iter().filter_map(|t| t.resource_id().map(str::to_string)).collect())
}

/// Which of the runs of `items` carry the job's label: those with an EC2 resource among
/// `tagged`, and those with no EC2 resource left whose role, log group or alarm carries it.
async fn runs_of(
    clients: &Clients,
    items: &[Item],
    tagged: &BTreeSet<String>,
    job: &Job,
    account: &str,
) -> Result<BTreeSet<RunId>, AwsError> {
    let ids: BTreeSet<&str> = tagged.iter().map(String::as_str).collect();
    let mut runs: BTreeSet<RunId> =
        items.iter().filter(|i| ids.contains(i.id.as_str())).map(|i| i.run_id.clone()).collect();
    let region = &clients.region;
    let partition = crate::aws::partition_of(region);
    for item in items {
        if runs.contains(&item.run_id) {
            continue;
        }
        let label = match item.kind {
            ResourceKind::Role => {
                match clients.iam.list_role_tags().role_name(&item.id).send().await.map_err(aws_err("ListRoleTags")) {
                    Ok(t) => t.tags().iter().find(|t| t.key() == TAG_JOB).map(|t| t.value().to_string()),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                }
            }
            ResourceKind::LogGroup => {
                let arn = format!("arn:{partition}:logs:{region}:{account}:log-group:{}", item.id);
                match clients
                    .logs
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(aws_err("ListTagsForResource"))
                {
                    Ok(t) => t.tags().and_then(|t| t.get(TAG_JOB)).cloned(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                }
            }
            ResourceKind::Alarm => {
                let arn = format!("arn:{partition}:cloudwatch:{region}:{account}:alarm:{}", item.id);
                match clients
                    .cloudwatch
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(aws_err("ListTagsForResource"))
                {
                    Ok(t) => {
                        t.tags().iter().find(|t| t.key() == Some(TAG_JOB)).and_then(|t| t.value()).map(str::to_string)
                    }
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                }
            }
            // EC2 resources were asked about above; a metric filter has no tags and goes
            // with its log group.
            _ => None,
        };
        if label.as_deref() == Some(job.as_str()) {
            runs.insert(item.run_id.clone());
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_what_every_service_takes_as_a_tag_value() {
        for ok in ["eu-west-1-three-tier-hardened", "nightly/recipe@main", "a b", &"x".repeat(128)] {
            assert_eq!(Job::parse(ok).map(|j| j.to_string()), Ok(ok.to_string()));
        }
        assert!(Job::parse("").unwrap_err().contains("1 to 128"));
        assert!(Job::parse(&"x".repeat(129)).unwrap_err().contains("1 to 128"));
        assert!(Job::parse("night;rm").unwrap_err().contains("';'"));
        assert!(Job::parse("AWS:night").unwrap_err().contains("aws:"));
    }
}
