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

use crate::aws::{AwsError, Clients};
use crate::inventory::{self, Item, Scope};
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

/// The resources of the job's earlier runs, by run: every run with a resource that
/// carries the job's label, with all that run left (a metric filter goes with its log
/// group, whose tags it carries).
pub async fn earlier_runs(clients: &Clients, job: &Job) -> Result<BTreeMap<RunId, Vec<Item>>, AwsError> {
    // One inventory read whatever the account holds: a run's calls do not depend on what
    // other runs left (the sandbox policy's test relies on it).
    let items = inventory::list(clients, &Scope::AllRuns).await?;
    Ok(of_job(items, job))
}

fn of_job(items: Vec<Item>, job: &Job) -> BTreeMap<RunId, Vec<Item>> {
    let runs: BTreeSet<RunId> = items
        .iter()
        .filter(|i| i.tags.get(TAG_JOB).is_some_and(|v| v == job.as_str()))
        .filter_map(|i| i.run_id.clone())
        .collect();
    let mut by_run: BTreeMap<RunId, Vec<Item>> = BTreeMap::new();
    for item in items {
        if let Some(run) = item.run_id.clone().filter(|r| runs.contains(r)) {
            by_run.entry(run).or_default().push(item);
        }
    }
    by_run
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

    #[test]
    fn a_run_belongs_to_the_job_its_label_names_and_brings_all_it_left() {
        use crate::inventory::TagMap;
        use crate::ledger::ResourceKind;
        let job = Job::parse("eu-west-1-recipe").unwrap();
        let (ours, theirs, unlabelled) = (RunId::generate(), RunId::generate(), RunId::generate());
        let item = |run: &RunId, kind: ResourceKind, label: Option<&str>| Item {
            kind,
            id: format!("{kind}-{run}"),
            run_id: Some(run.clone()),
            created_at: None,
            vpc_id: None,
            parent: None,
            tags: label.map(|l| TagMap::from([(TAG_JOB.to_string(), l.to_string())])).unwrap_or_default(),
        };
        let items = vec![
            item(&ours, ResourceKind::Alarm, Some("eu-west-1-recipe")),
            // A resource of the same run that lost its label still goes with the run.
            item(&ours, ResourceKind::Vpc, None),
            item(&theirs, ResourceKind::Vpc, Some("eu-west-1-recipe-hardened")),
            item(&unlabelled, ResourceKind::Vpc, None),
        ];
        let by_run = of_job(items, &job);
        assert_eq!(by_run.keys().collect::<Vec<_>>(), [&ours]);
        assert_eq!(by_run[&ours].len(), 2);
    }
}
