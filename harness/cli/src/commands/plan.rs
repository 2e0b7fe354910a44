//! `microseg plan`: the plan, or with `--reach` the design evaluated as AWS would
//! enforce it. No API calls either way.

use crate::out::{out, outln};
use microseg_harness::capabilities::Capabilities;
use microseg_harness::checks::{self, Status};
use microseg_harness::{reach, report};

use super::load_plan;
use crate::args::PlanArgs;
use crate::exit::CliError;
use crate::terminal;

pub(crate) fn plan(args: &PlanArgs) -> Result<(), CliError> {
    let plan = load_plan(&args.spec)?;
    if !args.reach {
        outln!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
        return Ok(());
    }
    // The design evaluated on AWS semantics before anything is built: the same checks a
    // deployment gets, so the exit code says whether the design is sound.
    let (observed, bindings) = reach::designed(&plan);
    let (checks, r) = checks::run_checks_with_reachability(&plan, &observed, &bindings, &Capabilities::aws());
    let reach_checks: Vec<_> = checks.into_iter().filter(|c| c.id == "intent" || c.id == "rule-lint").collect();
    if args.json {
        let doc = serde_json::json!({ "reachability": r, "checks": reach_checks });
        outln!("{}", serde_json::to_string_pretty(&doc).expect("analysis serialises"));
    } else {
        out!("{}", reach::text(&r.intents));
        out!("\n{}", reach::matrix_text(&r.matrix));
        out!("{}", report::checks_table_with(&reach_checks, terminal::paint_status));
    }
    if reach_checks.iter().any(|c| c.status == Status::Fail) { Err(CliError::Findings) } else { Ok(()) }
}
