use microseg_example::{Flaw, deploy};
use microseg_harness::testing::{deployed, emulator};
use microseg_harness::{Deployment, Emulator, Locate, Scenario};
use rstest::rstest;

// A built-in scenario, deployed on the shared emulator and torn down when the test ends.
#[rstest]
#[tokio::test]
async fn the_hardened_recipe_passes(#[future(awt)] deployed: Deployment) {
    deployed.check().await.unwrap().assert_pass();
}

// Several scenarios, one case each; an explicit teardown returns what it did.
#[rstest]
#[case::recipe(Scenario::builtin("recipe").hardened())]
#[case::three_tier(Scenario::builtin("three-tier").hardened())]
#[case::microservices(Scenario::builtin("microservices").hardened())]
#[tokio::test]
async fn each_hardened_scenario_passes(emulator: &'static Emulator, #[case] scenario: Scenario) {
    let deployment = emulator.deploy(&scenario).await.unwrap();
    deployment.check().await.unwrap().assert_pass();
    deployment.teardown().await.unwrap().assert_complete();
}

// Our own network code, gated against our own spec: the one flaw we made is the one
// finding.
#[rstest]
#[tokio::test]
async fn the_gate_finds_the_flaw_in_our_own_deployment(emulator: &'static Emulator) {
    let tag = format!("example-{}", std::process::id());
    let ours = deploy(&emulator.sdk_config().await, &tag, Flaw::DbOpenToAppCidr).await.unwrap();
    let spec = Scenario::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/specs/two-zone.toml"));
    let verdict = emulator.gate(&spec, &Locate::Tag("app".into(), tag)).await;
    ours.remove().await.unwrap();
    let verdict = verdict.unwrap();
    let found: Vec<_> = verdict.findings().map(|(c, f)| (c.id.as_str(), f.id.as_str(), f.resource_name())).collect();
    assert_eq!(found, [("security-groups", "MS-SG-CIDR-FOR-REFERENCE", "security group db".to_string())]);
}
