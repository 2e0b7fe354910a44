//! `microseg emulator up|status|down`: the reused emulator that `--target reuse` runs on
//! (`microseg_harness::target::reuse` says how it lives and stops).

use std::time::Duration;

use microseg_harness::target::reuse::{self, Status, Stopped, short_duration};

use crate::args::EmulatorAction;
use crate::exit::CliError;
use crate::out::outln;

pub(crate) async fn emulator(action: &EmulatorAction, quiet: bool) -> Result<(), CliError> {
    let unavailable = |e: microseg_harness::target::TargetError| CliError::TargetUnavailable(e.to_string());
    match action {
        EmulatorAction::Up(args) => {
            let exe = std::env::current_exe().map_err(|e| {
                CliError::TargetUnavailable(format!("cannot find the microseg binary to supervise: {e}"))
            })?;
            super::progress(quiet, "▸ starting the reused emulator unless one is up…");
            let (state, started) =
                reuse::ensure_up(&exe, args.idle, args.wait, &args.services).await.map_err(unavailable)?;
            outln!(
                "{} LocalStack {} at {} (stops after {} unused; `microseg emulator down` stops it now)",
                if started { "started" } else { "already up:" },
                state.version,
                state.endpoint,
                short_duration(state.idle_seconds)
            );
            Ok(())
        }
        EmulatorAction::Status => {
            match reuse::status().await {
                Status::Up(s) => {
                    let left = Duration::from_secs(s.idle_seconds).saturating_sub(s.idle_for());
                    outln!(
                        "up: LocalStack {} at {}, supervisor pid {}, started {}s ago, stops in {} unless used (log {})",
                        s.version,
                        s.endpoint,
                        s.supervisor_pid,
                        microseg_harness::run_id::now_unix().saturating_sub(s.started_at),
                        short_duration(left.as_secs()),
                        s.log.display()
                    );
                }
                Status::Stale(s) => outln!(
                    "stale: the state file names {} (supervisor pid {}), which no longer answers; `emulator up` replaces it",
                    s.endpoint,
                    s.supervisor_pid
                ),
                Status::None => outln!("none: no reused emulator (`microseg emulator up` starts one)"),
            }
            Ok(())
        }
        EmulatorAction::Down => {
            match reuse::down().await.map_err(unavailable)? {
                Some(s) => outln!("stopped LocalStack {} at {}", s.version, s.endpoint),
                None => outln!("none was up"),
            }
            Ok(())
        }
        EmulatorAction::Serve(args) => {
            let why = reuse::serve(args.idle, args.wait, &args.services).await.map_err(unavailable)?;
            match why {
                Stopped::Idle(d) => tracing::info!("stopped after {} unused", short_duration(d.as_secs())),
                Stopped::Signalled => tracing::info!("stopped on request"),
                Stopped::Unhealthy(e) => tracing::warn!("stopped: the emulator no longer answers: {e}"),
            }
            Ok(())
        }
    }
}
