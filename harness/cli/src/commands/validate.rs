//! `microseg validate` and `microseg report`: check, or draw, a deployment that microseg
//! did not build: live by VPC id or tag, or from a snapshot file; or render again the
//! JSON report of an earlier validation (`--from-json`).

use std::path::Path;

use crate::out::outln;
use microseg_harness::aws::AwsError;
use microseg_harness::discover::ZoneMapping;
use microseg_harness::inventory::{self, Scope};
use microseg_harness::observe::{self, Observed};
use microseg_harness::plan::Plan;
use microseg_harness::recorded::{self, GateInputs};
use microseg_harness::report;
use microseg_harness::validate::{self as gate, Snapshot, ValidateReport};

use super::{existing_target, load_plan_and_source, print_report, start_target};
use crate::args::ValidateArgs;
use crate::exit::CliError;
use crate::render::{Format, Report};

/// `validate` (default format text) and `report` (default mermaid).
pub(crate) async fn validate(args: &ValidateArgs, default_format: Format, quiet: bool) -> Result<(), CliError> {
    let format = args.format.unwrap_or(default_format);
    if let Some(path) = &args.from_json {
        return from_json(path, args.report_json.as_deref(), format);
    }
    let (plan, spec_source) = load_plan_and_source(&args.spec)?;
    let mut mapping = ZoneMapping::default();
    for z in &args.zone_tag {
        if plan.zone(&z.key).is_none() {
            let given = format!("{}={}", z.key, z.value);
            return Err(CliError::Usage(format!("--zone-tag {given:?}: the scenario has no zone {:?}", z.key)));
        }
        mapping.by_tag.insert(z.key.clone(), z.value.clone());
    }
    // The verdict, recorded with what it was computed from, in every format asked for.
    let conclude = |report: &ValidateReport, observed: &Observed| {
        let inputs = GateInputs::new(&spec_source, &mapping, observed);
        if let Some(out) = &args.report_json {
            write_json(out, &report::validate_json_with(report, Some(&inputs)))?;
        }
        print_report(Report::Validate { report, plan: &plan, inputs: &inputs }, format)
    };

    if let Some(path) = &args.from_snapshot {
        let snap = Snapshot::read(path).map_err(|e| CliError::Spec(e.to_string()))?;
        let source = format!("snapshot {} (read from {})", path.display(), snap.target);
        let report = gate::validate(&plan, &snap.observed, &mapping, &snap.capabilities, source);
        return conclude(&report, &snap.observed);
    }

    let opts = existing_target(&args.target)?;
    let target = start_target(&opts, quiet).await?;
    let result = async {
        let clients = target.clients();
        let unavailable = |e: AwsError| CliError::TargetUnavailable(e.to_string());
        let tag = args.tag.as_ref().map(|t| (t.key.as_str(), t.value.as_str()));
        let ids = match (&args.vpc_id, tag) {
            (Some(v), _) => vec![v.clone()],
            (None, Some((k, v))) => gate::vpc_by_tag(&clients, k, v).await.map_err(unavailable)?,
            (None, None) => vec![],
        };
        if args.expect_gone {
            let scope = match (&args.vpc_id, tag) {
                (Some(v), _) => Scope::Vpc(v.clone()),
                (None, Some((k, v))) => Scope::Tag { key: k.to_string(), value: v.to_string() },
                (None, None) => return Err(CliError::Usage("--expect-gone needs --vpc-id or --tag".into())),
            };
            let left = inventory::list(&clients, &scope).await.map_err(unavailable)?;
            let (left, orphans) = inventory::split_emulator_orphans(left, &target.capabilities);
            for o in orphans {
                outln!(
                    "not counted: {o}: orphaned by the emulator's DeleteVpc (divergence delete-vpc-orphans-dependents)"
                );
            }
            if left.is_empty() {
                outln!("expect-gone: PASS, nothing of the deployment remains");
                return Ok(());
            }
            outln!("expect-gone: FAIL, {} resource(s) remain:", left.len());
            for l in left {
                outln!("  {l}");
            }
            return Err(CliError::Findings);
        }
        let [id] = ids.as_slice() else {
            return Err(CliError::Usage(format!("expected exactly one VPC, found {}: {}", ids.len(), ids.join(", "))));
        };
        let observed =
            observe::read_live(&clients, id).await.map_err(|e| CliError::TargetUnavailable(e.to_string()))?;
        let report =
            gate::validate(&plan, &observed, &mapping, &target.capabilities, format!("{id} on {}", target.description));
        conclude(&report, &observed)
    }
    .await;
    target.stop().await;
    result
}

/// A gate's JSON report, its verdict computed again from the inputs it records, in
/// `format`; no target, no credentials.
fn from_json(path: &Path, copy_to: Option<&Path>, format: Format) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Spec(format!("cannot read report {}: {e}", path.display())))?;
    let replayed = recorded::read_json_report(&text).map_err(|e| CliError::Spec(format!("{}: {e}", path.display())))?;
    let plan: &Plan = &replayed.plan;
    if let Some(out) = copy_to {
        write_json(out, &report::validate_json_with(&replayed.report, Some(&replayed.inputs)))?;
    }
    print_report(Report::Validate { report: &replayed.report, plan, inputs: &replayed.inputs }, format)
}

fn write_json(path: &Path, json: &str) -> Result<(), CliError> {
    std::fs::write(path, format!("{json}\n"))
        .map_err(|e| CliError::Output(format!("cannot write {}: {e}", path.display())))
}
