//! `microseg snapshot`: write a deployment to a file for an offline `validate`.

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) async fn snapshot_cmd(args: &SnapshotArgs, quiet: bool) -> i32 {
    let opts = match existing_target(&args.target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {}", e.0);
            return exit::USAGE;
        }
    };
    let target = match start_target(&opts, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let code = match microseg_harness::observe::read_live(&target.clients(), &args.vpc_id).await {
        Ok(observed) => {
            let snap = microseg_harness::validate::Snapshot {
                format_version: microseg_harness::validate::SNAPSHOT_FORMAT_VERSION,
                captured_at: microseg_harness::run_id::now_unix(),
                target: target.description.clone(),
                capabilities: target.capabilities.clone(),
                observed,
            };
            match std::fs::write(&args.out, serde_json::to_string_pretty(&snap).expect("snapshot serialises")) {
                Ok(()) => {
                    progress(quiet, format!("wrote {}", args.out.display()));
                    exit::PASS
                }
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", args.out.display());
                    exit::USAGE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    };
    target.stop().await;
    code
}
