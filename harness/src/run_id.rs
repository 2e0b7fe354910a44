//! Run ids and the tags that carry them.
//!
//! Every resource a run creates carries `microseg:run-id`, `microseg:scenario` and
//! `microseg:created-at`; account-wide names end in `-<run id>`. That is how teardown,
//! `sweep` and the inventory find a run's resources, and how they refuse to touch
//! anything else.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Tag key holding the run id.
pub const TAG_RUN_ID: &str = "microseg:run-id";
/// Tag key holding the scenario name.
pub const TAG_SCENARIO: &str = "microseg:scenario";
/// Tag key holding the creation time, in Unix seconds (for `sweep --older-than`).
pub const TAG_CREATED_AT: &str = "microseg:created-at";
/// Tag key holding a run's job label (`run --job`), by which a run finds what the job's
/// earlier runs left ([`crate::job`]).
pub const TAG_JOB: &str = "microseg:job";
/// IAM path of every role a run creates, so roles can be listed without a full scan.
pub const IAM_PATH: &str = "/microseg/";

/// A run id: `ms-` and ten lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh id, unique across processes and machines for practical purposes.
    pub fn generate() -> RunId {
        // RandomState is seeded from the OS's randomness; mixing in the time and pid keeps
        // two ids apart even if a platform seeded it poorly.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        RunId(format!("ms-{:010x}", h.finish() & 0xff_ffff_ffff))
    }

    /// Parses an id given by a user (`sweep --run-id`).
    pub fn parse(s: &str) -> Result<RunId, String> {
        let hex = s.strip_prefix("ms-").ok_or_else(|| format!("run id {s:?} must start with \"ms-\""))?;
        if hex.len() == 10 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            Ok(RunId(s.to_string()))
        } else {
            Err(format!("run id {s:?} must be \"ms-\" and ten lowercase hex digits, e.g. ms-0123456789"))
        }
    }

    /// The run id a resource name ends with, if any (`VPCFlowLogsRole-ms-0123456789`).
    pub fn suffix_of(name: &str) -> Option<RunId> {
        let tail = name.get(name.len().checked_sub(13)?..)?;
        RunId::parse(tail).ok()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tags that make a resource this run's, for the inventory, teardown and
    /// `sweep`: the run id, the scenario and the creation time (now).
    pub fn tags(&self, scenario: &str) -> [(String, String); 3] {
        [
            (TAG_RUN_ID.into(), self.0.clone()),
            (TAG_SCENARIO.into(), scenario.into()),
            (TAG_CREATED_AT.into(), now_unix().to_string()),
        ]
    }

    /// `base-<run id>`: an account-wide name that cannot collide across runs.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tags_carry_the_id_the_scenario_and_a_current_time() {
        let id = RunId::generate();
        let before = now_unix();
        let tags: std::collections::BTreeMap<String, String> = id.tags("three-tier").into_iter().collect();
        assert_eq!(tags.get(TAG_RUN_ID).map(|v| RunId::parse(v)), Some(Ok(id)));
        assert_eq!(tags.get(TAG_SCENARIO).map(String::as_str), Some("three-tier"));
        let at: u64 = tags[TAG_CREATED_AT].parse().unwrap();
        assert!((before..=now_unix()).contains(&at), "{at} is not the time of the call");
    }

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = RunId::generate();
        let b = RunId::generate();
        assert_ne!(a, b);
        assert_eq!(RunId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(RunId::suffix_of(&a.name("VPCFlowLogsRole")), Some(a));
    }

    #[test]
    fn bad_ids_are_rejected_with_the_expected_shape() {
        assert!(RunId::parse("ms-XYZ").unwrap_err().contains("ten lowercase hex"));
        assert!(RunId::parse("run-0123456789").unwrap_err().contains("\"ms-\""));
        assert_eq!(RunId::suffix_of("VPCFlowLogsRole"), None);
    }
}
