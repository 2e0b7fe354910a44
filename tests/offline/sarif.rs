//! SARIF output against the official SARIF 2.1.0 schema (vendored from
//! oasis-tcs/sarif-spec, `sarif-2.1/schema/sarif-schema-2.1.0.json`).

use microseg_harness::capabilities::Capabilities;
use microseg_harness::plan::Plan;
use microseg_harness::{checks, reach, report, spec};

const SCHEMA: &str = include_str!("../fixtures/schemas/sarif-schema-2.1.0.json");

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::draft4::new(&schema).expect("the SARIF schema compiles")
}

/// The recipe's design checked as if deployed with nothing but its network: flow log,
/// alarm and the recipe's unintended opening's record absent, so many kinds of finding.
fn findings() -> Vec<checks::CheckResult> {
    let (s, src) = spec::load("recipe").unwrap();
    let mut plan = Plan::from_spec(&s, &src).unwrap();
    plan.allowed_by_design.clear();
    let (observed, bindings) = reach::designed(&plan);
    checks::run_checks(&plan, &observed, &bindings, &Capabilities::aws())
}

#[test]
fn sarif_of_real_findings_is_valid_sarif_2_1_0_with_a_rule_per_kind() {
    let checks = findings();
    let n: usize = checks.iter().map(|c| c.findings.len()).sum();
    assert!(n >= 3, "the fixture must have findings to mean anything: {n}");
    let doc: serde_json::Value = serde_json::from_str(&report::sarif(&checks, "scenarios/recipe.toml")).unwrap();
    let v = validator();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let run = &doc["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), n);
    // Each result's rule is described, with the compliance mapping where one exists.
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for r in run["results"].as_array().unwrap() {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
    }
    let flow = rules.iter().find(|r| r["id"] == "MS-FLOW-MISSING").expect("no flow log in the fixture");
    assert_eq!(flow["properties"]["aws-config"], "VPC_FLOW_LOGS_ENABLED");
    assert_eq!(flow["properties"]["checkov"], "CKV2_AWS_11");
    assert!(rules.iter().any(|r| r["id"] == "MS-REACH-UNINTENDED"));
}

#[test]
fn the_schema_check_itself_rejects_a_broken_document() {
    let mut doc: serde_json::Value = serde_json::from_str(&report::sarif(&findings(), "x.toml")).unwrap();
    doc.as_object_mut().unwrap().remove("version");
    assert!(!validator().is_valid(&doc));
    doc["version"] = "2.1.0".into();
    doc["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator().is_valid(&doc), "an unknown level must be rejected");
}
