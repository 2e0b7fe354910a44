//! `microseg doctor`: which targets can serve here, their versions and divergences;
//! with `--target`, that target started and probed.

use crate::out::outln;
use std::time::Instant;

use microseg_harness::capabilities::Divergence;
use microseg_harness::target::{self, Target, TargetKind, python};

use super::target_options;
use crate::args::TargetArgs;
use crate::exit::CliError;

pub(crate) async fn doctor(args: &TargetArgs) -> Result<(), CliError> {
    outln!("microseg {} doctor", env!("CARGO_PKG_VERSION"));
    match python::find_python() {
        Ok(p) => {
            let venv = python::venv_dir(python::REQUIREMENTS, &p);
            let state = if venv.join(".ready").exists() {
                "cached"
            } else {
                "not built yet (first start installs it, ~1-2 min)"
            };
            outln!(
                "localstack-host:      Python {}.{} at {}; venv {} ({state})",
                p.version.0,
                p.version.1,
                p.path.display(),
                venv.display()
            );
        }
        Err(e) => outln!("localstack-host:      unavailable: {e}"),
    }
    let image = target::container::configured_image();
    match target::docker_status() {
        Ok(v) if target::container::image_present(&image) => {
            outln!("localstack-container: Docker {v}; image {image} present")
        }
        Ok(v) => outln!(
            "localstack-container: Docker {v}; image {image} NOT present (no registry here: run localstack/build-image.sh and set MICROSEG_LOCALSTACK_IMAGE=microseg/localstack:4.14.0)"
        ),
        Err(e) => outln!("localstack-container: unavailable: {e}"),
    }
    let (kind, why) = target::choose_auto();
    outln!("auto:                 would use {kind} ({why})");
    outln!(
        "aws:                  needs --allow-account <id>; credentials from the standard chain{}",
        args.profile.as_ref().map(|p| format!(" (profile {p})")).unwrap_or_default()
    );
    outln!("\nKnown divergences of emulators (probed ones are confirmed at start):");
    for d in Divergence::ALL {
        outln!("  {:<34} {}{}", d.id(), d.description(), if d.probed() { " [probed]" } else { "" });
    }
    if args.target != TargetKind::Auto {
        let opts = target_options(args);
        let started = Instant::now();
        match Target::start(&opts).await {
            Ok(t) => {
                outln!("\nstarted {} in {:.1}s", t.description, started.elapsed().as_secs_f64());
                let ids: Vec<&str> = t.capabilities.divergences.iter().map(|d| d.id()).collect();
                outln!("divergences: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
                t.stop().await;
            }
            Err(e) => {
                // Part of doctor's table, on stdout, rather than an error line.
                outln!("\n{} cannot serve: {e}", opts.kind);
                return Err(CliError::TargetUnavailableShown);
            }
        }
    }
    Ok(())
}
