//! `microseg snapshot`: write what a deployment looks like to a file, for an offline
//! `validate`.

use microseg_harness::observe;
use microseg_harness::run_id;
use microseg_harness::validate::{SNAPSHOT_FORMAT_VERSION, Snapshot};

use super::{existing_target, progress, start_target};
use crate::args::SnapshotArgs;
use crate::exit::CliError;

pub(crate) async fn snapshot(args: &SnapshotArgs, quiet: bool) -> Result<(), CliError> {
    let opts = existing_target(&args.target)?;
    let target = start_target(&opts, quiet).await?;
    let result = async {
        let observed = observe::read_live(&target.clients(), &args.vpc_id)
            .await
            .map_err(|e| CliError::TargetUnavailable(e.to_string()))?;
        let snap = Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            captured_at: run_id::now_unix(),
            target: target.description.clone(),
            capabilities: target.capabilities.clone(),
            observed,
        };
        std::fs::write(&args.out, serde_json::to_string_pretty(&snap).expect("snapshot serialises"))
            .map_err(|e| CliError::Output(format!("cannot write {}: {e}", args.out.display())))?;
        progress(quiet, format!("wrote {}", args.out.display()));
        Ok(())
    }
    .await;
    target.stop().await;
    result
}
