//! `microseg bench`: full runs measured against the floor of calls, target start times,
//! the recipe's own script, and the evaluator.

use crate::out::{out, outln};
use microseg_harness::bench::{self, BenchOptions};

use super::{count_resources, load_plan, progress};
use crate::args::{BenchArgs, Variant};
use crate::exit::CliError;

pub(crate) async fn bench(args: &BenchArgs, quiet: bool) -> Result<(), CliError> {
    let plan = load_plan(&args.spec)?;
    let opts = BenchOptions {
        runs: args.runs,
        recipe: if args.no_script { None } else { args.recipe.clone().or_else(bench::default_recipe) },
        cold: args.cold,
        spec_args: match &args.spec.spec {
            Some(path) => vec!["--spec".into(), path.display().to_string()],
            None => vec![
                "--scenario".into(),
                args.spec.scenario.clone(),
                "--variant".into(),
                match args.spec.variant {
                    Variant::AsWritten => "as-written".into(),
                    Variant::Hardened => "hardened".into(),
                },
            ],
        },
    };
    progress(quiet, format!("▸ bench: {} runs of {} on a LocalStack host process…", opts.runs, plan.scenario));
    let r = bench::bench(&plan, count_resources(&plan), &opts).await.map_err(CliError::TargetUnavailable)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r).expect("bench report serialises"));
    } else {
        out!("{}", bench::text(&r));
    }
    Ok(())
}
