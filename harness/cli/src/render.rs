//! Every report format, rendered from one report value: a run's or a validation's.
//!
//! `run`, `validate` and `report` print through [`Report::render`], so a format is chosen
//! in one match and a new one is added in one place. The pieces (tables, JSON, JUnit,
//! SARIF, Mermaid, HTML) are the engine's (`microseg_harness::report` and `topology`);
//! what differs between a run and a validation is their title, their text and JSON
//! documents, and where the observed deployment comes from.

use std::borrow::Cow;

use clap::ValueEnum;
use microseg_harness::bindings::Bindings;
use microseg_harness::checks::CheckResult;
use microseg_harness::observe::Observed;
use microseg_harness::plan::Plan;
use microseg_harness::reach::Reachability;
use microseg_harness::recorded::GateInputs;
use microseg_harness::run::RunReport;
use microseg_harness::validate::ValidateReport;
use microseg_harness::verdict::Verdict;
use microseg_harness::{report, topology};

use crate::terminal;

/// Report formats (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table and a verdict.
    Text,
    /// The versioned JSON report.
    Json,
    /// JUnit XML, one test case per check.
    Junit,
    /// Markdown for a CI job summary.
    Markdown,
    /// The deployed topology and the traffic between zones as a Mermaid graph.
    Mermaid,
    /// One self-contained HTML page: checks, topology, zone matrix.
    Html,
    /// SARIF 2.1.0 for code scanning.
    Sarif,
}

/// One report, whichever command made it: what every format renders from.
#[derive(Debug, Clone, Copy)]
pub enum Report<'a> {
    /// A run microseg built, checked and tore down.
    Run {
        /// The run.
        report: &'a RunReport,
        /// What it built.
        plan: &'a Plan,
    },
    /// A deployment microseg did not build, checked against a plan.
    Validate {
        /// The gate's verdict.
        report: &'a ValidateReport,
        /// What the deployment should implement.
        plan: &'a Plan,
        /// What the verdict was computed from: the spec's text, the zone mapping, and
        /// what was read of the deployment (live or from a snapshot). The JSON report
        /// records it, so that every format can be rendered again from that file.
        inputs: &'a GateInputs,
    },
}

impl Report<'_> {
    /// The report in `format`, exactly as it goes to stdout.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => match self {
                Report::Run { report: r, .. } => report::text_with(r, terminal::paint_status),
                Report::Validate { report: r, .. } => report::validate_text_with(r, terminal::paint_status),
            },
            Format::Json => match self {
                Report::Run { report: r, .. } => line(report::json(r)),
                Report::Validate { report: r, inputs, .. } => line(report::validate_json_with(r, Some(inputs))),
            },
            Format::Junit => line(report::junit(self.scenario(), self.checks())),
            Format::Sarif => line(report::sarif(self.checks(), &report::spec_uri(&self.plan().spec_file))),
            Format::Markdown => report::markdown(&self.title(), self.checks(), self.reachability().map(|r| &r.matrix)),
            Format::Mermaid => topology::mermaid(&self.topology(), self.reachability()),
            Format::Html => topology::html(&self.title(), &self.topology(), self.reachability(), self.checks()),
        }
    }

    /// What the run or the validation concluded.
    pub fn verdict(&self) -> Verdict {
        match self {
            Report::Run { report, .. } => report.verdict(),
            Report::Validate { report, .. } => report.verdict(),
        }
    }

    /// The heading of the Markdown summary and the HTML page.
    pub fn title(&self) -> String {
        match self {
            Report::Run { report: r, .. } => format!("microseg run {} · {} ({})", r.run_id, r.scenario, r.variant),
            Report::Validate { report: r, .. } => format!("microseg validate · {} · {}", r.scenario, r.source),
        }
    }

    fn plan(&self) -> &Plan {
        match self {
            Report::Run { plan, .. } | Report::Validate { plan, .. } => plan,
        }
    }

    fn scenario(&self) -> &str {
        match self {
            Report::Run { report, .. } => &report.scenario,
            Report::Validate { report, .. } => &report.scenario,
        }
    }

    fn checks(&self) -> &[CheckResult] {
        match self {
            Report::Run { report, .. } => &report.checks,
            Report::Validate { report, .. } => &report.checks,
        }
    }

    fn reachability(&self) -> Option<&Reachability> {
        match self {
            Report::Run { report, .. } => report.reachability.as_ref(),
            Report::Validate { report, .. } => report.reachability.as_ref(),
        }
    }

    fn bindings(&self) -> &Bindings {
        match self {
            Report::Run { report, .. } => &report.bindings,
            Report::Validate { report, .. } => &report.bindings,
        }
    }

    /// A run is drawn from what it observed before teardown (nothing, if it stopped
    /// before observing); a validation from what it read.
    fn observed(&self) -> Cow<'_, Observed> {
        match self {
            Report::Run { report, .. } => {
                report.observed.as_ref().map_or_else(|| Cow::Owned(Observed::default()), Cow::Borrowed)
            }
            Report::Validate { inputs, .. } => Cow::Borrowed(&inputs.observed),
        }
    }

    fn topology(&self) -> topology::Topology {
        topology::topology(self.plan(), &self.observed(), self.bindings())
    }
}

/// The machine formats are printed as one line would be, with a final newline.
fn line(mut s: String) -> String {
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use microseg_harness::capabilities::Capabilities;
    use microseg_harness::discover::ZoneMapping;
    use microseg_harness::{reach, spec, validate};

    use super::*;

    fn recipe() -> (Plan, GateInputs, ValidateReport) {
        let (s, src) = spec::load("recipe").unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (observed, _) = reach::designed(&plan);
        let mapping = ZoneMapping::default();
        let r = validate::validate(&plan, &observed, &mapping, &Capabilities::aws(), "designed".into());
        (plan, GateInputs::new(&src, &mapping, &observed), r)
    }

    #[test]
    fn every_format_renders_from_the_one_report() {
        // Plain, as when stdout is not a terminal (the test's may be one).
        console::set_colors_enabled(false);
        let (plan, inputs, r) = recipe();
        let report = Report::Validate { report: &r, plan: &plan, inputs: &inputs };
        let render = |f| report.render(f);
        // Stdout as `validate` printed it before the formats were rendered in one place.
        assert_eq!(render(Format::Text), report::validate_text(&r));
        assert_eq!(render(Format::Json), format!("{}\n", report::validate_json_with(&r, Some(&inputs))));
        assert_eq!(render(Format::Junit), format!("{}\n", report::junit("recipe", &r.checks)));
        assert!(render(Format::Sarif).ends_with("}\n"));
        assert!(render(Format::Markdown).contains("microseg validate · recipe · designed"));
        assert!(render(Format::Mermaid).starts_with("graph TB\n"));
        assert!(render(Format::Html).contains("<title>microseg validate · recipe · designed</title>"));
        assert_eq!(report.verdict(), r.verdict());
    }
}
