//! `microseg plan`: the plan, or with `--reach` the design evaluated as AWS would enforce it.

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) fn plan_cmd(args: &PlanArgs) -> i32 {
    match load_plan(&args.spec) {
        Ok(plan) if args.reach => {
            // The design evaluated on AWS semantics before anything is built: the same
            // checks a deployment gets, so the exit code says whether the design is sound.
            let (observed, bindings) = microseg_harness::reach::designed(&plan);
            let (checks, r) = microseg_harness::checks::run_checks_with_reachability(
                &plan,
                &observed,
                &bindings,
                &microseg_harness::capabilities::Capabilities::aws(),
            );
            let reach_checks: Vec<_> = checks.into_iter().filter(|c| c.id == "intent" || c.id == "rule-lint").collect();
            if args.json {
                let doc = serde_json::json!({ "reachability": r, "checks": reach_checks });
                println!("{}", serde_json::to_string_pretty(&doc).expect("analysis serialises"));
            } else {
                print!("{}", microseg_harness::reach::text(&r.intents));
                print!("\n{}", microseg_harness::reach::matrix_text(&r.matrix));
                print!("{}", microseg_harness::report::checks_table_with(&reach_checks, crate::terminal::paint_status));
            }
            if reach_checks.iter().any(|c| c.status == microseg_harness::checks::Status::Fail) {
                exit::FINDINGS
            } else {
                exit::PASS
            }
        }
        Ok(plan) => {
            println!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
