//! Reports of a run for people (text) and machines (JSON).
//!
//! The JSON document is versioned (`schema_version`); a field is never renamed or removed
//! without a bump.

use std::fmt::Write;

use serde::Serialize;

use microseg_reach::matrix::{CellVerdict, Matrix};

use crate::checks::{CheckResult, Status};
use crate::run::{Interruption, RunReport};
use crate::teardown::Outcome;
use crate::validate::ValidateReport;
use crate::verdict::Verdict;

/// Version of the JSON report's schema.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The JSON report: the run report plus its schema version.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// microseg's version.
    pub microseg_version: &'static str,
    /// Exit code the run deserves.
    pub exit_code: i32,
    /// The run.
    #[serde(flatten)]
    pub run: &'a RunReport,
}

/// The run as pretty JSON.
pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(&JsonReport {
        schema_version: REPORT_SCHEMA_VERSION,
        microseg_version: env!("CARGO_PKG_VERSION"),
        exit_code: report.exit_code(),
        run: report,
    })
    .expect("report serialises")
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Divergence => "divergence",
        Status::Skipped => "skipped",
    }
}

/// Draws a check's status word, already padded to its column: the command line colours
/// it at a terminal, the engine leaves it plain (it has no terminal code).
pub type Paint = fn(Status, String) -> String;

/// The [`Paint`] that leaves status words as they are.
pub fn plain(_: Status, word: String) -> String {
    word
}

/// The table of checks and the findings under it, shared by `run` and `validate`.
pub fn checks_table(checks: &[CheckResult]) -> String {
    checks_table_with(checks, plain)
}

/// [`checks_table`] with status words drawn by `paint`.
pub fn checks_table_with(checks: &[CheckResult], paint: Paint) -> String {
    let mut out = String::new();
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "\n{:<width$}  {:<10}  DETAIL", "CHECK", "STATUS");
    for c in checks {
        let detail = match c.status {
            Status::Fail => format!("{} finding(s)", c.findings.len()),
            Status::Divergence => {
                format!("all else matched; not decidable on this target: {}", c.divergences.join(", "))
            }
            _ => c.note.clone(),
        };
        // Padded before painting: escape codes would upset the column widths.
        let word = paint(c.status, format!("{:<10}", status_word(c.status)));
        let _ = writeln!(out, "{:<width$}  {word}  {}", c.id, detail);
    }
    let findings: Vec<_> = checks.iter().flat_map(|c| c.findings.iter().map(move |f| (c, f))).collect();
    if !findings.is_empty() {
        let _ = writeln!(out, "\nFindings:");
        for (c, f) in findings {
            let _ = writeln!(
                out,
                "  [{}] {} ({})\n      expected: {}\n      found:    {}",
                f.id, f.resource, c.id, f.expected, f.found
            );
            if let Some(also) = crate::findings::lookup(&f.id).and_then(crate::findings::compliance_text) {
                let _ = writeln!(out, "      also:     {also}");
            }
        }
    }
    out
}

/// Counts per status, as the verdict line gives them.
fn tally(checks: &[CheckResult]) -> String {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    format!(
        "{} passed, {} failed, {} not decidable on this target, {} skipped",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Divergence),
        count(Status::Skipped)
    )
}

/// The gate's verdict as text.
pub fn validate_text(report: &ValidateReport) -> String {
    validate_text_with(report, plain)
}

/// [`validate_text`] with status words drawn by `paint`.
pub fn validate_text_with(report: &ValidateReport, paint: Paint) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "microseg validate · scenario {} ({}) · {}", report.scenario, report.variant, report.source);
    if !report.capabilities.divergences.is_empty() {
        let ids: Vec<&str> = report.capabilities.divergences.iter().map(|d| d.id()).collect();
        let _ = writeln!(out, "target divergences from AWS: {}", ids.join(", "));
    }
    out.push_str(&checks_table_with(&report.checks, paint));
    if let Some(r) = &report.reachability {
        out.push('\n');
        out.push_str(&crate::reach::matrix_text(&r.matrix));
    }
    let verdict = if report.verdict() == Verdict::Pass { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "verdict: {verdict} ({})", tally(&report.checks));
    out
}

/// The gate's verdict as versioned JSON.
pub fn validate_json(report: &ValidateReport) -> String {
    validate_json_with(report, None)
}

/// [`validate_json`] with what the verdict was computed from (`inputs`), as `microseg
/// validate` writes it: enough to compute the same verdict again from the file alone
/// ([`crate::recorded::read_json_report`]).
pub fn validate_json_with(report: &ValidateReport, inputs: Option<&crate::recorded::GateInputs>) -> String {
    let mut doc = serde_json::json!({
        "schema_version": REPORT_SCHEMA_VERSION,
        "microseg_version": env!("CARGO_PKG_VERSION"),
        "exit_code": report.exit_code(),
        "validate": report,
    });
    if let Some(inputs) = inputs {
        doc["inputs"] = serde_json::to_value(inputs).expect("inputs serialise");
    }
    serde_json::to_string_pretty(&doc).expect("report serialises")
}

/// The run as a table and a verdict, for terminals and logs.
pub fn text(report: &RunReport) -> String {
    text_with(report, plain)
}

/// [`text`] with status words drawn by `paint`.
pub fn text_with(report: &RunReport, paint: Paint) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "microseg run {} · scenario {} ({}) · {}",
        report.run_id, report.scenario, report.variant, report.target
    );
    if !report.capabilities.divergences.is_empty() {
        let ids: Vec<&str> = report.capabilities.divergences.iter().map(|d| d.id()).collect();
        let _ = writeln!(out, "target divergences from AWS: {}", ids.join(", "));
    }
    if let Some(i) = &report.interruption {
        let _ = match i {
            Interruption::Error(e) => writeln!(out, "\nrun stopped early: {e}"),
            Interruption::Panic(p) => writeln!(out, "\nrun stopped early by a panic: {p}"),
            Interruption::CtrlC => writeln!(out, "\nrun interrupted by Ctrl-C"),
        };
    }
    out.push_str(&checks_table_with(&report.checks, paint));
    if let Some(r) = &report.reachability {
        out.push('\n');
        out.push_str(&crate::reach::matrix_text(&r.matrix));
    }
    if let Some(t) = &report.traffic {
        out.push('\n');
        out.push_str(&crate::traffic::text(t));
    }
    if let Some(td) = &report.teardown {
        let failed: Vec<_> = td
            .outcomes
            .iter()
            .filter_map(|(i, o)| match o {
                Outcome::Failed(e) => Some(format!("  {i}: {e}")),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nTeardown failures:\n{}", failed.join("\n"));
        }
    }
    if !report.leftovers.is_empty() {
        let _ = writeln!(out, "\nLeft behind (finish with `microseg sweep --run-id {}`):", report.run_id);
        for l in &report.leftovers {
            let _ = writeln!(out, "  {l}");
        }
    }
    let phases: Vec<String> =
        report.phases.iter().map(|p| format!("{} {:.2}s/{} calls", p.name, p.wall.as_secs_f64(), p.calls)).collect();
    let _ = writeln!(out, "\nphases: {}", phases.join(" · "));
    if report.kept {
        let _ = writeln!(
            out,
            "deployment kept (VPC {}); remove it with: microseg sweep --run-id {}",
            report.bindings.vpc_id.as_deref().unwrap_or("?"),
            report.run_id
        );
    }
    let verdict = match report.verdict() {
        Verdict::Pass => "PASS",
        Verdict::Interrupted => "INTERRUPTED",
        Verdict::TeardownIncomplete => "FAIL (teardown incomplete)",
        Verdict::Findings => "FAIL",
    };
    let _ = writeln!(out, "verdict: {verdict} ({})", tally(&report.checks));
    out
}

/// JUnit XML: one test case per check, findings in the failure's text with expected and
/// found values, so CI systems show them natively. A divergence is a pass whose
/// system-out names what this target could not decide.
pub fn junit(suite: &str, checks: &[CheckResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut ts = TestSuite::new(suite);
    for c in checks {
        let status = match c.status {
            Status::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let first = &c.findings[0];
                s.set_message(format!("{} finding(s); first: [{}] {}", c.findings.len(), first.id, first.resource));
                s.set_type(first.id.clone());
                s.set_description(
                    c.findings
                        .iter()
                        .map(|f| {
                            format!("[{}] {}\n  expected: {}\n  found:    {}", f.id, f.resource, f.expected, f.found)
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                s
            }
            Status::Skipped => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(c.note.clone());
                s
            }
            Status::Pass | Status::Divergence => TestCaseStatus::success(),
        };
        let mut tc = TestCase::new(c.id.clone(), status);
        tc.set_classname(format!("microseg.{suite}"));
        if c.status == Status::Divergence {
            tc.set_system_out(format!("not decidable on this target: {}", c.divergences.join(", ")));
        }
        ts.add_test_case(tc);
    }
    let mut report = Report::new("microseg");
    report.add_test_suite(ts);
    report.to_string().expect("JUnit serialises")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown for `$GITHUB_STEP_SUMMARY`: the check table, the findings and, when the
/// deployment was read, the zone matrix.
pub fn markdown(title: &str, checks: &[CheckResult], matrix: Option<&Matrix>) -> String {
    let mut out = format!("### {title}\n\n| check | status | detail |\n|---|---|---|\n");
    for c in checks {
        let detail = match c.status {
            Status::Fail => format!("{} finding(s)", c.findings.len()),
            Status::Divergence => format!("not decidable on this target: {}", c.divergences.join(", ")),
            _ => c.note.clone(),
        };
        let icon = match c.status {
            Status::Pass => "✅ pass",
            Status::Fail => "❌ fail",
            Status::Divergence => "⚠️ divergence",
            Status::Skipped => "⏭️ skipped",
        };
        let _ = writeln!(out, "| `{}` | {icon} | {} |", c.id, md_escape(&detail));
    }
    let findings: Vec<_> = checks.iter().flat_map(|c| c.findings.iter()).collect();
    if !findings.is_empty() {
        out.push_str("\n| finding | resource | expected | found | also |\n|---|---|---|---|---|\n");
        for f in findings {
            let also = crate::findings::lookup(&f.id).and_then(crate::findings::compliance_text).unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                f.id,
                md_escape(&f.resource),
                md_escape(&f.expected),
                md_escape(&f.found),
                md_escape(&also)
            );
        }
    }
    if let Some(m) = matrix {
        out.push('\n');
        out.push_str(&matrix_markdown(m));
    }
    out
}

/// The zone matrix as a Markdown table: each cell shows what passes, marked by its
/// verdict against the design (✅ as intended, ⛔ intended but blocked, ⚠️ open though
/// not intended, · closed as intended).
pub fn matrix_markdown(m: &Matrix) -> String {
    let mut out = String::from("#### Reachability (rows: from, columns: to)\n\n| from \\ to |");
    for e in &m.endpoints {
        let _ = write!(out, " {} |", md_escape(e));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(m.endpoints.len()));
    out.push('\n');
    for from in &m.endpoints {
        let _ = write!(out, "| **{}** |", md_escape(from));
        for to in &m.endpoints {
            let cell = match m.cell(from, to) {
                None => "—".to_string(),
                Some(c) => {
                    let icon = match c.verdict {
                        CellVerdict::Closed => "·",
                        CellVerdict::AsIntended => "✅",
                        CellVerdict::Blocked => "⛔",
                        CellVerdict::Open => "⚠️",
                        CellVerdict::BlockedAndOpen => "⛔⚠️",
                    };
                    let services: Vec<String> = c.allowed.iter().map(|s| s.to_string()).collect();
                    if services.is_empty() { icon.to_string() } else { format!("{icon} {}", services.join(" ")) }
                }
            };
            let _ = write!(out, " {} |", md_escape(&cell));
        }
        out.push('\n');
    }
    out
}

/// The spec's path as a SARIF artifact URI: a relative path stays relative (code
/// scanning resolves it against the repository's root, so `--spec` should be given from
/// there), with `.` segments dropped, `/` between segments and each segment
/// percent-encoded; an absolute path becomes a `file://` URI.
pub fn spec_uri(path: &std::path::Path) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    use std::path::Component;
    // What a URI path segment may not hold as it is (RFC 3986: not pchar).
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let mut segments = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => segments.push(utf8_percent_encode(&s.to_string_lossy(), SEGMENT).to_string()),
            Component::ParentDir => segments.push("..".to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let joined = segments.join("/");
    if path.is_absolute() { format!("file:///{joined}") } else { joined }
}

/// SARIF 2.1.0 for code scanning: one rule per finding kind that occurs (summary, help,
/// and the matching AWS Config / Prowler / Checkov ids as properties), one result per
/// finding, located in the spec file (physically, as code scanning needs: `spec_uri`, see
/// [`spec_uri`]) and at the resource (logically).
pub fn sarif(checks: &[CheckResult], spec_uri: &str) -> String {
    use serde_json::json;
    let mut rule_ids: Vec<&str> = checks.iter().flat_map(|c| c.findings.iter().map(|f| f.id.as_str())).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let rules: Vec<serde_json::Value> = rule_ids
        .iter()
        .map(|id| {
            let k = crate::findings::lookup(id);
            let summary = k.map_or("a microseg finding", |k| k.summary);
            let help = k.map_or("See the finding's expected and found values.", |k| k.help);
            let compliance = k.and_then(crate::findings::compliance_text);
            json!({
                "id": id,
                "name": id.trim_start_matches("MS-").to_lowercase().replace('-', "_"),
                "shortDescription": { "text": summary },
                "fullDescription": { "text": format!("{summary}.{}", compliance.as_ref().map(|c| format!(" Also: {c}.")).unwrap_or_default()) },
                "help": { "text": help },
                "defaultConfiguration": { "level": "error" },
                "properties": {
                    "tags": ["security", "network"],
                    "aws-config": k.and_then(|k| k.aws_config),
                    "prowler": k.and_then(|k| k.prowler),
                    "checkov": k.and_then(|k| k.checkov),
                },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = checks
        .iter()
        .flat_map(|c| c.findings.iter().map(move |f| (c, f)))
        .map(|(c, f)| {
            json!({
                "ruleId": f.id,
                "ruleIndex": rule_ids.iter().position(|r| *r == f.id),
                "level": "error",
                "message": { "text": format!("{}: expected {}; found {}", f.resource, f.expected, f.found) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": spec_uri }, "region": { "startLine": 1 } },
                    "logicalLocations": [{ "name": f.resource, "kind": "resource" }],
                }],
                "partialFingerprints": { "microsegFinding/v1": format!("{}|{}", f.id, f.resource) },
                "properties": { "check": c.id, "expected": f.expected, "found": f.found },
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "microseg",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    }))
    .expect("SARIF serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Finding;

    fn checks() -> Vec<CheckResult> {
        let finding = Finding {
            id: "MS-X".into(),
            resource: "NACL web (acl-1) <ingress>".into(),
            expected: "a | b".into(),
            found: "c & d".into(),
        };
        vec![
            CheckResult {
                id: "ok".into(),
                title: "t".into(),
                status: Status::Pass,
                findings: vec![],
                divergences: vec![],
                note: String::new(),
            },
            CheckResult {
                id: "bad".into(),
                title: "t".into(),
                status: Status::Fail,
                findings: vec![finding],
                divergences: vec![],
                note: String::new(),
            },
            CheckResult {
                id: "div".into(),
                title: "t".into(),
                status: Status::Divergence,
                findings: vec![],
                divergences: vec!["d1".into()],
                note: String::new(),
            },
        ]
    }

    #[test]
    fn junit_has_one_case_per_check_and_escapes_the_finding() {
        let xml = junit("recipe", &checks());
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert!(
            xml.contains("expected: a | b") && xml.contains("c &amp; d") && xml.contains("&lt;ingress&gt;"),
            "{xml}"
        );
        assert!(xml.contains("not decidable on this target: d1"), "{xml}");
    }

    #[test]
    fn the_spec_path_becomes_a_uri_reference_code_scanning_resolves() {
        use std::path::Path;
        assert_eq!(spec_uri(Path::new("network/microseg.toml")), "network/microseg.toml");
        assert_eq!(spec_uri(Path::new("./network/./microseg.toml")), "network/microseg.toml");
        assert_eq!(spec_uri(Path::new("specs/our design#2 [v1].toml")), "specs/our%20design%232%20%5Bv1%5D.toml");
        assert_eq!(spec_uri(Path::new("/home/runner/work/x/spec.toml")), "file:///home/runner/work/x/spec.toml");
        assert_eq!(spec_uri(Path::new("../elsewhere/spec.toml")), "../elsewhere/spec.toml");
        let doc: serde_json::Value = serde_json::from_str(&sarif(&checks(), "network/microseg.toml")).unwrap();
        let location = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "network/microseg.toml");
    }

    #[test]
    fn markdown_escapes_table_pipes() {
        let md = markdown("t", &checks(), None);
        assert!(md.contains("| `MS-X` | NACL web (acl-1) <ingress> | a \\| b | c & d |"), "{md}");
        assert!(md.contains("| `bad` | ❌ fail | 1 finding(s) |"), "{md}");
    }
}
