//! The JSON report against its documented schema (`harness/schemas/report-v1.schema.json`):
//! a real validate report passes, and the schema catches a report that breaks it. (The
//! run report is checked the same way in `tests/localstack/scenario.rs`, on a real run.)

use microseg_harness::capabilities::Capabilities;
use microseg_harness::discover::ZoneMapping;
use microseg_harness::plan::Plan;
use microseg_harness::recorded::GateInputs;
use microseg_harness::{reach, report, spec, validate};

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../harness/schemas/report-v1.schema.json")).unwrap();
    jsonschema::validator_for(&schema).expect("the report schema compiles")
}

fn validate_report() -> serde_json::Value {
    let (s, src) = spec::load("recipe").unwrap();
    let plan = Plan::from_spec(&s, &src).unwrap();
    let (observed, _) = reach::designed(&plan);
    let mapping = ZoneMapping::default();
    let r = validate::validate(&plan, &observed, &mapping, &Capabilities::aws(), "designed".into());
    // As `microseg validate` writes it: with what the verdict was computed from.
    let inputs = GateInputs::new(&src, &mapping, &observed);
    serde_json::from_str(&report::validate_json_with(&r, Some(&inputs))).unwrap()
}

#[test]
fn a_validate_report_keeps_the_documented_schema() {
    let doc = validate_report();
    assert!(doc["validate"]["reachability"]["matrix"]["cells"].as_array().is_some_and(|c| !c.is_empty()));
    let errors: Vec<String> = validator().iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_rejects_a_report_that_breaks_it() {
    let mut doc = validate_report();
    doc["validate"].as_object_mut().unwrap().remove("checks");
    assert!(!validator().is_valid(&doc), "a report without checks");
    let mut doc = validate_report();
    doc["validate"]["checks"][0]["status"] = "ok".into();
    assert!(!validator().is_valid(&doc), "an unknown status");
    let mut doc = validate_report();
    doc["inputs"].as_object_mut().unwrap().remove("observed");
    assert!(!validator().is_valid(&doc), "inputs without the deployment");
    let mut doc = validate_report();
    doc["schema_version"] = 2.into();
    assert!(!validator().is_valid(&doc), "another schema version");
}
