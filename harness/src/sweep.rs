//! `sweep`: finish what a killed run left behind, by run id or by age.
//!
//! Sweep starts from the on-disk ledgers of runs that are no longer alive and then
//! scans by tag, so a resource whose id never reached the ledger is found too. It deletes
//! only what carries a microseg run tag (see `inventory`), in teardown order, and then
//! lists again: what is still there is reported, never assumed gone.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::aws::{AwsError, Clients};
use crate::inventory::{self, Item, Scope};
use crate::run_id::{RunId, now_unix};
use crate::teardown::{self, Backoff, TeardownReport};

/// Which runs to sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One run.
    Run(RunId),
    /// Every run created more than this long ago.
    OlderThan(Duration),
    /// Every run.
    All,
}

/// What a sweep did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Runs swept.
    pub runs: Vec<RunId>,
    /// Resources found before deleting.
    pub found: Vec<Item>,
    /// Per-resource outcomes.
    pub teardown: TeardownReport,
    /// Still there afterwards.
    pub leftovers: Vec<Item>,
}

/// Sweeps the selected runs.
pub async fn sweep(clients: &Clients, selection: &Selection) -> Result<SweepReport, AwsError> {
    let scope = match selection {
        Selection::Run(id) => Scope::Run(id.clone()),
        _ => Scope::AllRuns,
    };
    let items = inventory::list(clients, &scope).await?;
    let chosen = select(items, selection, now_unix());
    let mut runs: Vec<RunId> = chosen.iter().filter_map(|i| i.run_id.clone()).collect();
    runs.sort();
    runs.dedup();
    let teardown = teardown::teardown(clients, &chosen, Backoff::default()).await;
    let after = inventory::list(clients, &scope).await?;
    let leftovers = after.into_iter().filter(|i| i.run_id.as_ref().is_some_and(|r| runs.contains(r))).collect();
    Ok(SweepReport { runs, found: chosen, teardown, leftovers })
}

/// Picks the items of the selected runs. A run's age is that of its oldest tagged
/// resource; a run whose age is unknown (only untimed resources left) is swept by
/// `--older-than` too, since nothing alive would leave only those.
pub fn select(items: Vec<Item>, selection: &Selection, now: u64) -> Vec<Item> {
    match selection {
        Selection::Run(_) | Selection::All => items,
        Selection::OlderThan(age) => {
            let mut born: BTreeMap<RunId, Option<u64>> = BTreeMap::new();
            for i in &items {
                let Some(run) = &i.run_id else { continue };
                let e = born.entry(run.clone()).or_insert(None);
                if let Some(t) = i.created_at {
                    *e = Some(e.map_or(t, |old| old.min(t)));
                }
            }
            let cutoff = now.saturating_sub(age.as_secs());
            items
                .into_iter()
                .filter(|i| {
                    i.run_id.as_ref().is_some_and(|r| born.get(r).copied().flatten().is_none_or(|t| t <= cutoff))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ResourceKind;

    fn item(run: &RunId, kind: ResourceKind, at: Option<u64>) -> Item {
        Item {
            kind,
            id: format!("{kind}-{run}"),
            run_id: Some(run.clone()),
            created_at: at,
            vpc_id: None,
            parent: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn older_than_keeps_young_runs_and_takes_whole_old_runs() {
        let old = RunId::generate();
        let young = RunId::generate();
        let now = 100_000;
        let items = vec![
            item(&old, ResourceKind::Vpc, Some(now - 7 * 3600)),
            item(&old, ResourceKind::MetricFilter, None),
            item(&young, ResourceKind::Vpc, Some(now - 60)),
        ];
        let chosen = select(items, &Selection::OlderThan(Duration::from_secs(6 * 3600)), now);
        assert_eq!(chosen.len(), 2);
        assert!(chosen.iter().all(|i| i.run_id.as_ref() == Some(&old)));
    }
}
