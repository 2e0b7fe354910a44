//! `microseg validate` and `microseg report`: check or draw a deployment microseg did not build.

use microseg_harness::plan::Plan;

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) async fn validate_cmd(args: &ValidateArgs, default_format: Format, quiet: bool) -> i32 {
    let format = args.format.unwrap_or(default_format);
    let usage = |e: UsageError| {
        eprintln!("error: {}", e.0);
        exit::USAGE
    };
    let plan = match load_plan(&args.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut mapping = microseg_harness::discover::ZoneMapping::default();
    for z in &args.zone_tag {
        match split_pair("--zone-tag", z) {
            Ok((zone, tag)) if plan.zone(zone).is_some() => {
                mapping.by_tag.insert(zone.to_string(), tag.to_string());
            }
            Ok((zone, _)) => return usage(UsageError(format!("--zone-tag {z:?}: the scenario has no zone {zone:?}"))),
            Err(e) => return usage(e),
        }
    }
    let tag = match args.tag.as_deref().map(|t| split_pair("--tag", t)).transpose() {
        Ok(t) => t,
        Err(e) => return usage(e),
    };

    if let Some(path) = &args.from_snapshot {
        let snap = match microseg_harness::validate::Snapshot::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let source = format!("snapshot {} (read from {})", path.display(), snap.target);
        let report = microseg_harness::validate::validate(&plan, &snap.observed, &mapping, &snap.capabilities, source);
        return print_validate(&report, format, &plan, &snap.observed);
    }

    let opts = match existing_target(&args.target) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let target = match start_target(&opts, quiet).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let clients = target.clients();
    let vpc_ids = match (&args.vpc_id, tag) {
        (Some(v), _) => Ok(vec![v.clone()]),
        (None, Some((k, v))) => microseg_harness::validate::vpc_by_tag(&clients, k, v).await,
        (None, None) => Ok(vec![]),
    };
    let code = match vpc_ids {
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
        Ok(_) if args.expect_gone => {
            let left = match (&args.vpc_id, tag) {
                (Some(v), _) => microseg_harness::validate::leftovers_in_vpc(&clients, v).await,
                (None, Some((k, v))) => microseg_harness::validate::leftovers_by_tag(&clients, k, v).await,
                (None, None) => Ok(vec![]),
            };
            let left = left.map(|l| microseg_harness::validate::split_emulator_orphans(l, &target.capabilities));
            if let Ok((_, orphans)) = &left {
                for o in orphans {
                    println!(
                        "not counted: {o}: orphaned by the emulator's DeleteVpc (divergence delete-vpc-orphans-dependents)"
                    );
                }
            }
            match left.map(|(real, _)| real) {
                Ok(left) if left.is_empty() => {
                    println!("expect-gone: PASS, nothing of the deployment remains");
                    exit::PASS
                }
                Ok(left) => {
                    println!("expect-gone: FAIL, {} resource(s) remain:", left.len());
                    for l in left {
                        println!("  {l}");
                    }
                    exit::FINDINGS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::TARGET_UNAVAILABLE
                }
            }
        }
        Ok(ids) if ids.len() != 1 => {
            eprintln!("error: expected exactly one VPC, found {}: {}", ids.len(), ids.join(", "));
            exit::USAGE
        }
        Ok(ids) => match microseg_harness::observe::read_live(&clients, &ids[0]).await {
            Ok(observed) => {
                let report = microseg_harness::validate::validate(
                    &plan,
                    &observed,
                    &mapping,
                    &target.capabilities,
                    format!("{} on {}", ids[0], target.description),
                );
                print_validate(&report, format, &plan, &observed)
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::TARGET_UNAVAILABLE
            }
        },
    };
    target.stop().await;
    code
}

pub(crate) fn print_validate(
    report: &microseg_harness::validate::ValidateReport,
    format: Format,
    plan: &Plan,
    observed: &microseg_harness::observe::Observed,
) -> i32 {
    let title = format!("microseg validate · {} · {}", report.scenario, report.source);
    match format {
        Format::Sarif => {
            println!("{}", microseg_harness::report::sarif(&report.checks, &plan.spec_file.display().to_string()))
        }
        Format::Mermaid => {
            let t = microseg_harness::topology::topology(plan, observed, &report.bindings);
            print!("{}", microseg_harness::topology::mermaid(&t, report.reachability.as_ref()));
        }
        Format::Html => {
            let t = microseg_harness::topology::topology(plan, observed, &report.bindings);
            print!("{}", microseg_harness::topology::html(&title, &t, report.reachability.as_ref(), &report.checks));
        }
        Format::Text => {
            print!("{}", microseg_harness::report::validate_text_with(report, crate::terminal::paint_status))
        }
        Format::Json => println!("{}", microseg_harness::report::validate_json(report)),
        Format::Junit => println!("{}", microseg_harness::report::junit(&report.scenario, &report.checks)),
        Format::Markdown => print!(
            "{}",
            microseg_harness::report::markdown(
                &format!("microseg validate · {} · {}", report.scenario, report.source),
                &report.checks,
                report.reachability.as_ref().map(|r| &r.matrix)
            )
        ),
    }
    report.exit_code()
}
