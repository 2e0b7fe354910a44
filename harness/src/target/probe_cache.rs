//! The capability probe's verdict, kept per emulator instance.
//!
//! The probe learns by behaviour how an emulator departs from AWS: it creates a VPC and
//! NACLs and deletes them again, about a second of calls. An emulator's behaviour does not
//! change while it runs, so each invocation against the same instance (a user's edit-run
//! loop, every test of a suite) need not probe again. The key is the instance's identity:
//! LocalStack's `session_id` from `/_localstack/info`, new each time it starts, so a
//! restarted emulator (or another version) is probed afresh. An emulator without that
//! endpoint (moto) is probed every time.

use std::path::PathBuf;
use std::time::Duration;

use crate::capabilities::Capabilities;

/// The identity of the emulator instance behind `endpoint`, if it says one.
pub fn instance_id(endpoint: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Info {
        session_id: String,
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    let url = format!("{}/_localstack/info", endpoint.trim_end_matches('/'));
    let info: Info = agent.get(&url).call().ok()?.body_mut().read_json().ok()?;
    // The id names a file: keep it to what a session id is made of.
    let id = info.session_id;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(id)
}

/// One file per instance and microseg version: another version may probe for other
/// divergences.
fn path(instance: &str) -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    crate::target::python::cache_dir().join("probes").join(format!("{instance}-microseg-{version}.json"))
}

/// The verdict a probe of this instance reached earlier, if any.
pub fn load(instance: &str) -> Option<Capabilities> {
    serde_json::from_slice(&std::fs::read(path(instance)).ok()?).ok()
}

/// Keeps a probe's verdict for later invocations. Written to a temporary file and
/// renamed, so a concurrent reader sees all of it or nothing; a failure only costs a
/// probe next time.
pub fn store(instance: &str, caps: &Capabilities) {
    let file = path(instance);
    let written = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        let tmp = file.with_extension(format!("json.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(caps).expect("capabilities serialise"))?;
        std::fs::rename(&tmp, &file)
    });
    if let Err(e) = written {
        tracing::debug!("keeping the probe's verdict in {}: {e}", file.display());
    }
    forget_old(&file);
}

/// Removes verdicts older than a week: one file per emulator start would pile up, and
/// an emulator left running that long is probed again at worst.
fn forget_old(kept: &std::path::Path) {
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
    let Some(dir) = kept.parent() else { return };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().unwrap_or_default() > WEEK);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
