//! `microseg bench`: full runs measured.

use super::*;
use crate::args::*;
use crate::exit;

pub(crate) async fn bench_cmd(args: &BenchArgs, quiet: bool) -> i32 {
    let plan = match load_plan(&args.spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let opts = microseg_harness::bench::BenchOptions {
        runs: args.runs,
        recipe: if args.no_script {
            None
        } else {
            args.recipe.clone().or_else(microseg_harness::bench::default_recipe)
        },
        cold: args.cold,
    };
    progress(quiet, format!("▸ bench: {} runs of {} on a LocalStack host process…", opts.runs, plan.scenario));
    match microseg_harness::bench::bench(&plan, count_resources(&plan), &opts).await {
        Ok(r) if args.json => {
            println!("{}", serde_json::to_string_pretty(&r).expect("bench report serialises"));
            exit::PASS
        }
        Ok(r) => {
            print!("{}", microseg_harness::bench::text(&r));
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::TARGET_UNAVAILABLE
        }
    }
}
