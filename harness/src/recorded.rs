//! The gate's JSON report as a record: what a verdict was computed from, and that
//! verdict computed again, offline, from the report alone.
//!
//! `microseg validate` writes its JSON report with an `inputs` object beside the verdict:
//! the spec (its path as given and its whole text), the zones matched by tag, and the
//! deployment as read. [`read_json_report`] plans that spec and validates that deployment
//! again, with the capabilities and source the report names, and accepts the result only
//! if it is the report it was given. Every other format (text, JUnit, Markdown, SARIF,
//! Mermaid, HTML) is then rendered from the same values a live `validate` renders from,
//! so a CI job gates once and renders as often as it likes (`microseg report
//! --from-json`), and a reader of the JSON sees exactly which spec and which state of the
//! deployment gave the verdict.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capabilities::Capabilities;
use crate::discover::ZoneMapping;
use crate::observe::Observed;
use crate::plan::Plan;
use crate::report::{self, REPORT_SCHEMA_VERSION};
use crate::spec::{self, SpecSource};
use crate::validate::{self, ValidateReport};

/// What a validation was computed from (the JSON report's `inputs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateInputs {
    /// The spec the deployment was checked against.
    pub spec: RecordedSpec,
    /// Zones matched by their subnet's `Zone` tag instead of their CIDR (`--zone-tag`).
    #[serde(default)]
    pub zone_tags: BTreeMap<String, String>,
    /// The deployment as read, live or from a snapshot.
    pub observed: Observed,
}

/// A spec as it was when a verdict was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSpec {
    /// The path as the user gave it (`scenarios/<name>.toml` for a built-in scenario):
    /// where SARIF locates the findings.
    pub path: PathBuf,
    /// The whole text: a later edit of the file changes nothing in the record.
    pub text: String,
}

impl GateInputs {
    /// The inputs of one validation: the spec as loaded, the zone mapping, and what was read.
    pub fn new(spec: &SpecSource, mapping: &ZoneMapping, observed: &Observed) -> GateInputs {
        GateInputs {
            spec: RecordedSpec { path: spec.path.clone(), text: spec.text.clone() },
            zone_tags: mapping.by_tag.clone(),
            observed: observed.clone(),
        }
    }

    /// The zone mapping these inputs were validated with.
    pub fn mapping(&self) -> ZoneMapping {
        ZoneMapping { by_tag: self.zone_tags.clone() }
    }
}

/// A gate's JSON report read back.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The recorded spec, planned again.
    pub plan: Plan,
    /// The verdict, computed again; equal to the one the file holds.
    pub report: ValidateReport,
    /// What the file records the verdict was computed from.
    pub inputs: GateInputs,
    /// The microseg version that wrote the file.
    pub written_by: String,
}

/// Why a file is not a gate report this microseg can render.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Json(String),
    /// A field is missing or has the wrong type.
    #[error("field `{field}`: {message}")]
    Field {
        /// The field's path (`validate.capabilities`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Another schema version.
    #[error("field `schema_version`: {found}, but this microseg reads schema version {REPORT_SCHEMA_VERSION}")]
    SchemaVersion {
        /// The version found.
        found: String,
    },
    /// A run's report: a run cannot be computed again from a file.
    #[error(
        "a run's report (run_id {run_id}), not the gate's: only `microseg validate` records what its verdict was computed from"
    )]
    RunReport {
        /// The run.
        run_id: String,
    },
    /// A gate report of a version that did not record its inputs.
    #[error(
        "no field `inputs`: written by microseg {written_by}, which did not record what the verdict was computed from; validate again with this version"
    )]
    NoInputs {
        /// The version that wrote it.
        written_by: String,
    },
    /// The recorded spec no longer loads or plans (a report edited by hand).
    #[error("the recorded spec does not load: {0}")]
    Spec(#[from] crate::Error),
    /// The verdict computed again is not the one recorded.
    #[error(
        "field `{field}` is not what microseg {ours} computes from the report's own inputs (the report says microseg {written_by} wrote it; was it edited?); render it with the version that wrote it"
    )]
    Mismatch {
        /// The first field that differs.
        field: String,
        /// This microseg's version.
        ours: &'static str,
        /// The version the file names.
        written_by: String,
    },
}

/// Computes a validation again from its inputs, with the capabilities of the target the
/// deployment was read from and the description of where it was read.
pub fn replay(
    inputs: &GateInputs,
    capabilities: &Capabilities,
    source: String,
) -> Result<(Plan, ValidateReport), crate::Error> {
    let (spec, spec_source) =
        spec::parse(SpecSource { path: inputs.spec.path.clone(), text: inputs.spec.text.clone() })?;
    let plan = Plan::from_spec(&spec, &spec_source)?;
    let report = validate::validate(&plan, &inputs.observed, &inputs.mapping(), capabilities, source);
    Ok((plan, report))
}

/// Reads a gate's JSON report (what `microseg validate --format json` prints and
/// `--report-json` writes), computes its verdict again from the inputs it records, and
/// returns it only if that is the verdict the file holds: whatever is rendered from it
/// says what the file says.
pub fn read_json_report(text: &str) -> Result<Replayed, ReplayError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| ReplayError::Json(e.to_string()))?;
    let field = |name: &str, message: &str| ReplayError::Field { field: name.into(), message: message.into() };
    let obj = doc.as_object().ok_or_else(|| field("(top level)", "expected a JSON object"))?;
    match obj.get("schema_version") {
        None => return Err(field("schema_version", "missing: not a microseg report")),
        Some(v) if v.as_u64() == Some(u64::from(REPORT_SCHEMA_VERSION)) => {}
        Some(v) => return Err(ReplayError::SchemaVersion { found: v.to_string() }),
    }
    let written_by = obj.get("microseg_version").and_then(Value::as_str).unwrap_or("(unknown)").to_string();
    if let Some(run_id) = obj.get("run_id") {
        return Err(ReplayError::RunReport { run_id: run_id.as_str().unwrap_or_default().to_string() });
    }
    let verdict = obj.get("validate").ok_or_else(|| field("validate", "missing: not a gate report"))?;
    let inputs = obj.get("inputs").ok_or_else(|| ReplayError::NoInputs { written_by: written_by.clone() })?;
    let inputs: GateInputs = serde_json::from_value(inputs.clone()).map_err(|e| field("inputs", &e.to_string()))?;
    let capabilities: Capabilities =
        serde_json::from_value(verdict.get("capabilities").cloned().unwrap_or(Value::Null))
            .map_err(|e| field("validate.capabilities", &e.to_string()))?;
    let source = verdict
        .get("source")
        .and_then(Value::as_str)
        .ok_or_else(|| field("validate.source", "missing, or not a string"))?
        .to_string();
    let (plan, report) = replay(&inputs, &capabilities, source)?;

    let again: Value = serde_json::from_str(&report::validate_json_with(&report, Some(&inputs)))
        .expect("the report serialises to JSON");
    if let Some(path) = first_difference(&doc, &again, "") {
        return Err(ReplayError::Mismatch { field: path, ours: env!("CARGO_PKG_VERSION"), written_by });
    }
    Ok(Replayed { plan, report, inputs, written_by })
}

/// The path of the first place two documents differ (`validate.checks[3].status`), the
/// writer's version aside; `None` when they are the same.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    let join = |key: &str| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().filter(|k| !(at.is_empty() && *k == "microseg_version")).find_map(|k| {
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, &join(k)),
                    _ => Some(join(k)),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() { "(top level)".into() } else { at.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Capabilities;
    use crate::{reach, spec};

    /// The recipe as designed, its database NACL's inbound #100 removed: a verdict with
    /// a finding, as JSON with its inputs.
    fn recorded() -> (ValidateReport, GateInputs, String) {
        let (s, src) = spec::load("recipe").unwrap();
        let plan = Plan::from_spec(&s, &src).unwrap();
        let (mut observed, bindings) = reach::designed(&plan);
        let db = bindings.nacls["database"].clone();
        let nacl = observed.nacls.iter_mut().find(|n| n.id == db).unwrap();
        nacl.entries.retain(|e| !(e.rule_number == 100 && e.direction == crate::model::Direction::Ingress));
        let mapping = ZoneMapping::default();
        let r = validate::validate(&plan, &observed, &mapping, &Capabilities::aws(), "designed".into());
        let inputs = GateInputs::new(&src, &mapping, &observed);
        let json = report::validate_json_with(&r, Some(&inputs));
        (r, inputs, json)
    }

    #[test]
    fn a_report_reads_back_as_the_same_verdict() {
        let (r, inputs, json) = recorded();
        assert!(r.checks.iter().any(|c| c.findings.iter().any(|f| f.id == "MS-NACL-ENTRY-MISSING")));
        let back = read_json_report(&json).unwrap();
        assert_eq!(back.report.checks, r.checks);
        assert_eq!(back.inputs, inputs);
        assert_eq!(back.report.source, "designed");
        assert_eq!(report::validate_json_with(&back.report, Some(&back.inputs)), json);
        assert_eq!(back.plan.spec_file, PathBuf::from("scenarios/recipe.toml"));
    }

    #[test]
    fn an_edited_verdict_is_refused_naming_the_field() {
        let (_, _, json) = recorded();
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc["exit_code"] = 0.into();
        let e = read_json_report(&doc.to_string()).unwrap_err();
        assert!(matches!(&e, ReplayError::Mismatch { field, .. } if field == "exit_code"), "{e}");
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc["validate"]["checks"][1]["status"] = "pass".into();
        let e = read_json_report(&doc.to_string()).unwrap_err();
        assert!(e.to_string().contains("field `validate.checks[1].status`"), "{e}");
        // Another writer's version alone is no difference.
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc["microseg_version"] = "0.0.9".into();
        assert_eq!(read_json_report(&doc.to_string()).unwrap().written_by, "0.0.9");
    }

    #[test]
    fn what_is_not_a_gate_report_says_why() {
        let (_, _, json) = recorded();
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc.as_object_mut().unwrap().remove("inputs");
        assert!(matches!(read_json_report(&doc.to_string()), Err(ReplayError::NoInputs { .. })));
        doc["schema_version"] = 2.into();
        let e = read_json_report(&doc.to_string()).unwrap_err();
        assert!(e.to_string().contains("field `schema_version`: 2"), "{e}");
        let e = read_json_report(r#"{"schema_version": 1, "run_id": "ms-0123456789"}"#).unwrap_err();
        assert!(e.to_string().contains("a run's report (run_id ms-0123456789)"), "{e}");
        assert!(matches!(read_json_report("<xml/>"), Err(ReplayError::Json(_))));
        let e = read_json_report("{}").unwrap_err();
        assert!(e.to_string().contains("field `schema_version`"), "{e}");
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc["inputs"]["spec"]["text"] = "[vpc]\ncidr = 7\n".into();
        assert!(matches!(read_json_report(&doc.to_string()), Err(ReplayError::Spec(_))));
    }
}
