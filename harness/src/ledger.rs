//! The run ledger: every resource a run creates, recorded before the next step.
//!
//! The ledger lives in memory and on disk (`<cache>/runs/<run id>.json`), written
//! atomically (temp file + rename) with a format version. A lock file is held while the
//! run is alive, so `sweep` can tell a crashed run's ledger from a running one's. After a
//! `SIGKILL`, the file is what `sweep` starts from; tags do the rest.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::run_id::{RunId, now_unix};

/// Version of the on-disk format.
pub const LEDGER_FORMAT_VERSION: u32 = 1;

/// A kind of resource, in the order teardown deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// VPC flow log.
    FlowLog,
    /// CloudWatch alarm.
    Alarm,
    /// CloudWatch Logs metric filter.
    MetricFilter,
    /// CloudWatch Logs group.
    LogGroup,
    /// IAM role (its inline policies go with it).
    Role,
    /// Security group.
    SecurityGroup,
    /// NAT gateway (teardown waits until it is gone: its address and subnet depend on it).
    NatGateway,
    /// Elastic IP address (released).
    ElasticIp,
    /// Network ACL (its subnets are re-associated with the default NACL first).
    NetworkAcl,
    /// Route table (disassociated first).
    RouteTable,
    /// Subnet.
    Subnet,
    /// Internet gateway (detached first).
    InternetGateway,
    /// VPC.
    Vpc,
    /// A VPC's default network ACL, tagged by the capability probe: LocalStack orphans
    /// it when the VPC goes, and every orphan slows that emulator's later NACL calls.
    /// AWS refuses to delete a default NACL but deletes it with its VPC, so it comes
    /// last and "not found" is done. (A run cannot do the same for its own VPC: see
    /// docs/EMULATOR.md, "A VPC's default NACL cannot be freed".)
    DefaultNetworkAcl,
}

impl ResourceKind {
    /// Every kind, in teardown order.
    pub const TEARDOWN_ORDER: [ResourceKind; 14] = [
        ResourceKind::FlowLog,
        ResourceKind::Alarm,
        ResourceKind::MetricFilter,
        ResourceKind::LogGroup,
        ResourceKind::Role,
        ResourceKind::SecurityGroup,
        // A NAT gateway holds its Elastic IP and an interface in its subnet, and an IGW
        // cannot be detached while the VPC has mapped public addresses.
        ResourceKind::NatGateway,
        ResourceKind::ElasticIp,
        // Subnets before their NACLs and route tables: on AWS a deleted subnet takes its
        // associations with it, which saves moving each back to the default NACL and
        // disassociating it. LocalStack 4.14 keeps them (and then refuses DeleteNetworkAcl),
        // so whatever association is still listed is moved or disassociated as before.
        ResourceKind::Subnet,
        ResourceKind::NetworkAcl,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::Vpc,
        ResourceKind::DefaultNetworkAcl,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::FlowLog => "flow-log",
            ResourceKind::Alarm => "alarm",
            ResourceKind::MetricFilter => "metric-filter",
            ResourceKind::LogGroup => "log-group",
            ResourceKind::Role => "iam-role",
            ResourceKind::SecurityGroup => "security-group",
            ResourceKind::NatGateway => "nat-gateway",
            ResourceKind::ElasticIp => "elastic-ip",
            ResourceKind::NetworkAcl => "network-acl",
            ResourceKind::RouteTable => "route-table",
            ResourceKind::Subnet => "subnet",
            ResourceKind::InternetGateway => "internet-gateway",
            ResourceKind::Vpc => "vpc",
            ResourceKind::DefaultNetworkAcl => "default-network-acl",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One created resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Kind.
    pub kind: ResourceKind,
    /// Id (or name, for account-wide resources).
    pub id: String,
    /// Logical name in the plan (`web`, `flow-log`, …).
    pub logical: String,
    /// Parent, where deletion needs it (the log group of a metric filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// The whole ledger of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerData {
    /// [`LEDGER_FORMAT_VERSION`].
    pub format_version: u32,
    /// The run.
    pub run_id: RunId,
    /// Scenario name.
    pub scenario: String,
    /// Target description (never credentials).
    pub target: String,
    /// Endpoint, for emulators, so `sweep` can reach the same one.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Unix seconds at creation.
    pub created_at: u64,
    /// Resources, in creation order.
    pub resources: Vec<LedgerEntry>,
    /// Set once teardown proved the inventory empty.
    pub torn_down: bool,
}

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// File-system error.
    #[error("ledger {}: cannot {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What we tried.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// Not a ledger, or a version we do not read.
    #[error("ledger {}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A live ledger: in memory, mirrored to disk on every change.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    data: Mutex<LedgerData>,
    lock: File,
}

/// Directory of ledgers: `<cache>/runs`.
pub fn runs_dir() -> PathBuf {
    crate::target::python::cache_dir().join("runs")
}

impl Ledger {
    /// Creates and persists a new ledger before the first create, and holds its lock.
    pub fn create(
        dir: &Path,
        run_id: &RunId,
        scenario: &str,
        target: &str,
        endpoint: Option<String>,
        region: &str,
    ) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
            path: dir.into(),
            what: "create the directory",
            source,
        })?;
        let path = dir.join(format!("{run_id}.json"));
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|source| LedgerError::Io {
            path: lock_path.clone(),
            what: "create the lock",
            source,
        })?;
        lock.lock().map_err(|source| LedgerError::Io { path: lock_path, what: "lock", source })?;
        let ledger = Ledger {
            path,
            data: Mutex::new(LedgerData {
                format_version: LEDGER_FORMAT_VERSION,
                run_id: run_id.clone(),
                scenario: scenario.into(),
                target: target.into(),
                endpoint,
                region: region.into(),
                created_at: now_unix(),
                resources: Vec::new(),
                torn_down: false,
            }),
            lock,
        };
        ledger.persist(&ledger.data.lock().unwrap_or_else(|e| e.into_inner()))?;
        Ok(ledger)
    }

    /// Records a created resource and writes the ledger before returning.
    pub fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        data.resources.push(entry);
        self.persist(&data)
    }

    /// Marks the run torn down (inventory proved empty).
    pub fn mark_torn_down(&self) -> Result<(), LedgerError> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        data.torn_down = true;
        self.persist(&data)
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> LedgerData {
        self.data.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the ledger and its lock: for a run that provably left nothing behind and
    /// is not worth remembering (the capability probe's).
    pub fn discard(self) -> Result<(), LedgerError> {
        let lock_path = self.path.with_extension("lock");
        std::fs::remove_file(&self.path).map_err(|source| LedgerError::Io {
            path: self.path.clone(),
            what: "remove",
            source,
        })?;
        drop(self.lock);
        std::fs::remove_file(&lock_path).map_err(|source| LedgerError::Io { path: lock_path, what: "remove", source })
    }

    fn persist(&self, data: &LedgerData) -> Result<(), LedgerError> {
        let dir = self.path.parent().expect("ledger path has a parent");
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| LedgerError::Io {
            path: self.path.clone(),
            what: "create a temp file",
            source,
        })?;
        let json = serde_json::to_vec_pretty(data).expect("ledger serialises");
        tmp.write_all(&json).map_err(|source| LedgerError::Io { path: self.path.clone(), what: "write", source })?;
        tmp.persist(&self.path).map_err(|e| LedgerError::Io {
            path: self.path.clone(),
            what: "rename into place",
            source: e.error,
        })?;
        Ok(())
    }
}

/// Reads a ledger file.
pub fn read(path: &Path) -> Result<LedgerData, LedgerError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LedgerError::Io { path: path.into(), what: "read", source })?;
    let data: LedgerData =
        serde_json::from_str(&text).map_err(|e| LedgerError::Format { path: path.into(), message: e.to_string() })?;
    if data.format_version != LEDGER_FORMAT_VERSION {
        return Err(LedgerError::Format {
            path: path.into(),
            message: format!("format version {} (this microseg reads {LEDGER_FORMAT_VERSION})", data.format_version),
        });
    }
    Ok(data)
}

/// Marks a ledger file torn down (after `sweep` proved its run's inventory empty).
pub fn mark_file_torn_down(path: &Path) -> Result<(), LedgerError> {
    let mut data = read(path)?;
    data.torn_down = true;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| LedgerError::Io {
        path: path.into(),
        what: "create a temp file",
        source,
    })?;
    tmp.write_all(&serde_json::to_vec_pretty(&data).expect("ledger serialises")).map_err(|source| LedgerError::Io {
        path: path.into(),
        what: "write",
        source,
    })?;
    tmp.persist(path).map_err(|e| LedgerError::Io { path: path.into(), what: "rename into place", source: e.error })?;
    Ok(())
}

/// Ledgers in `dir` whose run is not alive (no process holds the lock) and not torn down.
pub fn abandoned(dir: &Path) -> Vec<(PathBuf, LedgerData)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let lock_free = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.with_extension("lock"))
            .map(|f| f.try_lock().is_ok())
            .unwrap_or(true);
        if let (true, Ok(data)) = (lock_free, read(&path))
            && !data.torn_down
        {
            out.push((path, data));
        }
    }
    out.sort_by_key(|(_, d)| d.created_at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_is_on_disk_after_each_record_and_locked_while_alive() {
        let dir = tempfile::tempdir().unwrap();
        let id = RunId::generate();
        let ledger = Ledger::create(dir.path(), &id, "recipe", "test", None, "us-east-1").unwrap();
        ledger
            .record(LedgerEntry { kind: ResourceKind::Vpc, id: "vpc-1".into(), logical: "vpc".into(), parent: None })
            .unwrap();
        let on_disk = read(ledger.path()).unwrap();
        assert_eq!(on_disk.resources.len(), 1);
        assert_eq!(on_disk.run_id, id);
        assert!(abandoned(dir.path()).is_empty(), "a live run's ledger is not abandoned");
        drop(ledger);
        let left = abandoned(dir.path());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.resources[0].id, "vpc-1");
    }

    #[test]
    fn newer_format_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let id = RunId::generate();
        std::fs::write(&p, format!(r#"{{"format_version":9,"run_id":"{id}","scenario":"s","target":"t","endpoint":null,"region":"r","created_at":0,"resources":[],"torn_down":false}}"#)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("format version 9") && e.contains("reads 1"), "{e}");
    }
}
