//! The public API for test authors (`Emulator`, `Scenario`, `Deployment`, `gate`) on the
//! shared emulator, where the example crate (harness/example) cannot reach: a deployment
//! dropped by a panic, an explicit teardown's report, and the errors a user meets.

use futures::FutureExt;
use microseg_harness::{Deployment, Emulator, EmulatorKind, Error, Locate, Scenario};

use crate::support::{inventory_of, shared_endpoint, timer};

async fn emulator() -> Emulator {
    Emulator::start(EmulatorKind::Endpoint(shared_endpoint().to_string())).await.expect("the shared emulator")
}

/// A test that panics halfway still leaves nothing: the deployment's `Drop` tears the
/// run down, on a thread of its own, before the panic reaches the test harness.
#[tokio::test]
async fn a_deployment_dropped_by_a_panic_leaves_nothing() {
    let _t = timer();
    let emulator = emulator().await;
    let mut run = None;
    let outcome = std::panic::AssertUnwindSafe(async {
        let deployment: Deployment = emulator.deploy(&Scenario::builtin("recipe")).await.unwrap();
        run = Some(deployment.run_id().clone());
        assert!(!inventory_of(deployment.clients(), deployment.run_id()).await.is_empty(), "nothing was deployed");
        panic!("a failing assertion in the user's test");
    })
    .catch_unwind()
    .await;
    assert!(outcome.is_err(), "the test body panicked");
    let run = run.expect("the deployment was made before the panic");
    let (clients, _, _) = crate::support::shared().await;
    let left = inventory_of(&clients, &run).await;
    assert!(left.is_empty(), "the dropped deployment left {left:?}");
}

/// `teardown()` says what it deleted and proves by inventory that nothing is left.
#[tokio::test]
async fn an_explicit_teardown_reports_every_resource_and_leaves_nothing() {
    let _t = timer();
    let emulator = emulator().await;
    let deployment = emulator.deploy(&Scenario::builtin("three-tier")).await.unwrap();
    let verdict = deployment.check().await.unwrap();
    assert_eq!(verdict.scenario, "three-tier");
    assert!(verdict.checks.iter().any(|c| c.id == "routes"), "the three-tier checks ran: {:?}", verdict.checks);
    let run = deployment.run_id().clone();
    let made = deployment.bindings().zones.len() + deployment.bindings().nat_gateways.len();
    let teardown = deployment.teardown().await.unwrap();
    teardown.assert_complete();
    assert!(
        teardown.report.outcomes.len() > made,
        "{} outcomes for {made} zones and NAT gateways",
        teardown.report.outcomes.len()
    );
    assert_eq!(teardown.report.failures().count(), 0);
    let (clients, _, _) = crate::support::shared().await;
    assert!(inventory_of(&clients, &run).await.is_empty());
}

/// The verdict's assertion lists each failing finding: check, finding id, resource,
/// expected and found.
#[tokio::test]
async fn assert_pass_names_each_failing_finding() {
    let _t = timer();
    let emulator = emulator().await;
    // As written, the recipe's own rules block 11 of its 15 intended flows; the spec
    // records them, so it passes. A spec that records none of them must fail.
    let spec = microseg_harness::spec::BUILTIN_SCENARIOS.iter().find(|(n, _)| *n == "recipe").unwrap().1;
    let unrecorded: String =
        spec.lines().filter(|l| !l.trim_start().starts_with("blocked_by_design")).collect::<Vec<_>>().join("\n");
    let deployment = emulator.deploy(&Scenario::from_toml("recipe-unrecorded.toml", unrecorded)).await.unwrap();
    let verdict = deployment.check().await.unwrap();
    assert!(!verdict.passed());
    let message = std::panic::catch_unwind(|| verdict.assert_pass()).unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("[intent] MS-INTENT-BLOCKED flow web → app tcp/8080"), "{message}");
    assert!(message.contains("expected ") && message.contains("; found "), "{message}");
    deployment.teardown().await.unwrap().assert_complete();
}

/// A bad spec is an error naming its file before any call; a gate that finds no VPC by
/// its tag says where it looked.
#[tokio::test]
async fn errors_name_the_file_or_the_place_looked() {
    let _t = timer();
    let emulator = emulator().await;
    let bad = Scenario::from_toml("ours.toml", "[scenario]\nname = \"ours\"\n");
    match emulator.deploy(&bad).await {
        Err(e @ (Error::Spec(_) | Error::Plan(_))) => assert!(e.to_string().contains("ours.toml"), "{e}"),
        other => panic!("expected a spec error, got {other:?}"),
    }
    let nowhere = Locate::Tag("microseg-test".into(), format!("no-such-{}", std::process::id()));
    match emulator.gate(&Scenario::builtin("recipe"), &nowhere).await {
        Err(e @ Error::NotOneVpc { .. }) => {
            assert!(e.to_string().contains("tag microseg-test=no-such-"), "{e}");
        }
        other => panic!("expected NotOneVpc, got {other:?}"),
    }
}
