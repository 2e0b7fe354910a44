//! The other sources' scenarios, and a design of a user's own passed with `--spec`, end
//! to end on LocalStack: built and checked, kept for the gate (`validate`) which must pass
//! it and then catch a break, swept, and proved gone.

use std::process::Output;

use microseg_cli::exit;
use microseg_harness::checks::Status;
use microseg_harness::run_id::RunId;
use microseg_harness::sweep::{self, Selection};
use rstest::rstest;
use serde_json::Value;

use crate::support::{Group, SweepOnDrop, endpoint, inventory_of, microseg_on, on, text};

/// Where a scenario comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A built-in scenario and its variant.
    Builtin(&'static str, &'static str),
    /// A spec file under `tests/fixtures/`.
    File(&'static str),
}

impl Source {
    fn args(self) -> Vec<String> {
        match self {
            Source::Builtin(name, variant) => {
                vec!["--scenario".into(), name.into(), "--variant".into(), variant.into()]
            }
            Source::File(file) => {
                vec!["--spec".into(), format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))]
            }
        }
    }
}

/// A break applied behind the tool's back, and the finding the gate must name for it.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// A route to the internet gateway added to an isolated zone's route table.
    InternetRouteInto(&'static str),
    /// One ingress rule revoked from a group (by the group's spec name).
    RevokeIngressOf(&'static str),
}

fn microseg(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    microseg_on(Group::Nat, &args)
}

/// The design's own verdict, before anything is built: `plan --reach` on the same spec.
fn designed_intent_note(source: Source) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["plan", "--reach", "--json"])
        .args(source.args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let intent = doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == "intent").unwrap();
    intent["note"].as_str().unwrap().to_string()
}

/// "N of M intended flows pass…" → (N, M).
fn counts(note: &str) -> (u32, u32) {
    let mut words = note.split_whitespace();
    let n = words.next().and_then(|w| w.parse().ok());
    let of = words.next();
    let m = words.next().and_then(|w| w.parse().ok());
    match (n, of, m) {
        (Some(n), Some("of"), Some(m)) => (n, m),
        _ => panic!("not an intent note: {note:?}"),
    }
}

#[rstest]
#[case::three_tier(Source::Builtin("three-tier", "as-written"), Break::InternetRouteInto("database"), false)]
#[case::three_tier_hardened(Source::Builtin("three-tier", "hardened"), Break::InternetRouteInto("database"), true)]
#[case::microservices(Source::Builtin("microservices", "as-written"), Break::RevokeIngressOf("db"), false)]
#[case::microservices_hardened(Source::Builtin("microservices", "hardened"), Break::RevokeIngressOf("db"), true)]
#[case::user_spec(Source::File("user-spec-payments.toml"), Break::InternetRouteInto("private"), true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_runs_passes_the_gate_catches_a_break_and_sweeps_to_nothing(
    #[case] source: Source,
    #[case] breaks: Break,
    #[case] every_intent_passes: bool,
) {
    let _t = crate::support::timer();
    let (clients, _, _) = on(Group::Nat).await;
    let designed = counts(&designed_intent_note(source));
    assert_eq!(designed.0 == designed.1, every_intent_passes, "the design's own verdict: {designed:?}");

    // Build, check, keep.
    let cache = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["run", "--quiet", "--keep", "--format", "json"].map(String::from).to_vec();
    args.extend(source.args());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(&args)
        .args(["--target", &format!("endpoint={}", endpoint(Group::Nat))])
        .env("MICROSEG_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let run_id = RunId::parse(report["run_id"].as_str().unwrap()).unwrap();
    let _sweep_however_it_ends = SweepOnDrop::new(&clients, &run_id);
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", text(&out));
    let checks = report["checks"].as_array().unwrap();
    for c in checks {
        let status = c["status"].as_str().unwrap();
        assert!(matches!(status, "pass" | "divergence" | "skipped"), "{} is {status}: {}", c["id"], c["findings"]);
        if status == "divergence" {
            assert!(!c["divergences"].as_array().unwrap().is_empty(), "{}: a divergence must be named", c["id"]);
        }
    }
    let check = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}"));
    // Routes (associations, NAT and IGW routes, isolated zones) are checked on every one.
    assert_eq!(check("routes")["status"], "pass", "{}", check("routes"));
    // The deployment on the emulator reaches the verdict the design reached on paper.
    let live = counts(check("intent")["note"].as_str().unwrap());
    assert_eq!(live, designed, "live intent verdict against the design's");

    // The gate, on a deployment it did not build: passes, then names the break.
    let vpc = report["bindings"]["vpc_id"].as_str().unwrap().to_string();
    let mut gate: Vec<String> = ["validate", "--quiet", "--vpc-id", &vpc].map(String::from).to_vec();
    gate.extend(source.args());
    let passed = microseg(&gate);
    assert_eq!(passed.status.code(), Some(exit::PASS), "{}", text(&passed));
    let bindings = &report["bindings"];
    let expected_finding = match breaks {
        Break::InternetRouteInto(table) => {
            clients
                .ec2
                .create_route()
                .route_table_id(bindings["route_tables"][table].as_str().unwrap())
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(bindings["internet_gateway_id"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            "[MS-ISOLATED-ROUTE]"
        }
        Break::RevokeIngressOf(group) => {
            let group_id = bindings["security_groups"][group].as_str().unwrap();
            let rules = clients
                .ec2
                .describe_security_group_rules()
                .filters(aws_sdk_ec2::types::Filter::builder().name("group-id").values(group_id).build())
                .send()
                .await
                .unwrap();
            let rule = rules.security_group_rules().iter().find(|r| r.is_egress() == Some(false)).unwrap();
            clients
                .ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .security_group_rule_ids(rule.security_group_rule_id().unwrap())
                .send()
                .await
                .unwrap();
            "[MS-SG-RULE-MISSING]"
        }
    };
    let broken = microseg(&gate);
    assert_eq!(broken.status.code(), Some(exit::FINDINGS), "{}", text(&broken));
    assert!(text(&broken).contains(expected_finding), "{expected_finding}: {}", text(&broken));

    // Swept by its tag, nothing is left, and the gate agrees.
    let swept = sweep::sweep(&clients, &Selection::Run(run_id.clone())).await.unwrap();
    assert!(swept.leftovers.is_empty(), "{:?}", swept.leftovers);
    assert!(inventory_of(&clients, &run_id).await.is_empty());
    let gone = microseg(&["validate".into(), "--quiet".into(), "--expect-gone".into(), "--vpc-id".into(), vpc]);
    assert_eq!(gone.status.code(), Some(exit::PASS), "{}", text(&gone));
}

/// Eight runs of four designs at once on one LocalStack, two of each NAT-gateway
/// scenario: every run binds only its own VPC, NAT gateways and Elastic IPs, passes, and
/// is torn down to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runs_of_four_designs_at_once_keep_apart_and_leave_nothing() {
    let _t = crate::support::timer();
    use microseg_harness::plan::Plan;
    use microseg_harness::run::{self, RunOptions, RunTarget};

    let (clients, caps, desc) = on(Group::Nat).await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["three-tier", "three-tier-hardened", "microservices", "microservices-hardened"];
    let plans: Vec<Plan> = names
        .iter()
        .chain(names.iter())
        .map(|n| {
            let (s, src) = microseg_harness::spec::load(n).unwrap();
            Plan::from_spec(&s, &src).unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    let runs = futures::future::join_all(plans.iter().map(|plan| {
        let opts = RunOptions { ledger_dir: Some(dir.path().into()), no_signal_handler: true, ..Default::default() };
        let (clients, caps, desc) = (clients.clone(), caps.clone(), desc.clone());
        async move { run::run(plan, &RunTarget::new(clients, desc, caps), &opts).await.unwrap() }
    }))
    .await;
    eprintln!("eight runs of four designs took {:.1?}", started.elapsed());
    let mut vpcs = std::collections::BTreeSet::new();
    let mut nats = std::collections::BTreeSet::new();
    let mut addresses = std::collections::BTreeSet::new();
    for (r, plan) in runs.iter().zip(&plans) {
        let failed: Vec<_> = r.checks.iter().filter(|c| c.status == Status::Fail).collect();
        assert_eq!(r.exit_code(), exit::PASS, "{} ({}): {failed:?}", r.run_id, plan.scenario);
        assert_eq!(r.bindings.nat_gateways.len(), plan.nat_gateways.len(), "{}", plan.scenario);
        assert!(vpcs.insert(r.bindings.vpc_id.clone()), "two runs share a VPC");
        for id in r.bindings.nat_gateways.values() {
            assert!(nats.insert(id.clone()), "two runs share NAT gateway {id}");
        }
        for id in r.bindings.elastic_ips.values() {
            assert!(addresses.insert(id.clone()), "two runs share Elastic IP {id}");
        }
        assert!(r.leftovers.is_empty(), "{:?}", r.leftovers);
        assert!(inventory_of(&clients, &r.run_id).await.is_empty(), "{} left resources", r.run_id);
    }
}

/// A NAT gateway the gate did not make, created as many templates do: without
/// `ConnectivityType`. AWS then reports its default, `public`; LocalStack reports the
/// literal `None` (divergence `nat-connectivity-type-echoed`). The gate takes it as
/// public, so the NAT flows pass as the design says, and `intent` says it could not
/// decide that instead of passing silently. The swap is made behind the tool's back:
/// each of a kept run's NAT gateways is replaced by one in the same subnet with a fresh
/// Elastic IP, carrying its tags, and its routes re-pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_nat_gateway_without_connectivity_type_is_taken_as_public_and_named() {
    let _t = crate::support::timer();
    use aws_sdk_ec2::types::{DomainType, ResourceType, TagSpecification};

    let (clients, _, _) = on(Group::Nat).await;
    let source = Source::Builtin("three-tier", "hardened");
    let mut args: Vec<String> = ["run", "--quiet", "--keep", "--format", "json"].map(String::from).to_vec();
    args.extend(source.args());
    let out = microseg(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let run_id = RunId::parse(report["run_id"].as_str().unwrap()).unwrap();
    let _sweep_however_it_ends = SweepOnDrop::new(&clients, &run_id);
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", text(&out));
    let bindings = &report["bindings"];
    let vpc = bindings["vpc_id"].as_str().unwrap().to_string();
    let ec2 = &clients.ec2;

    let nats = bindings["nat_gateways"].as_object().unwrap();
    assert!(!nats.is_empty(), "three-tier hardened has NAT gateways");
    for old in nats.values().map(|v| v.as_str().unwrap()) {
        let found = ec2.describe_nat_gateways().nat_gateway_ids(old).send().await.unwrap();
        let nat = &found.nat_gateways()[0];
        assert_eq!(nat.connectivity_type().map(|c| c.as_str()), Some("public"), "microseg's own says public");
        let tags = nat.tags().to_vec();
        let address = ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::ElasticIp).set_tags(Some(tags.clone())).build(),
            )
            .send()
            .await
            .unwrap();
        ec2.delete_nat_gateway().nat_gateway_id(old).send().await.unwrap();
        let made = ec2
            .create_nat_gateway()
            .subnet_id(nat.subnet_id().unwrap())
            .allocation_id(address.allocation_id().unwrap())
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Natgateway).set_tags(Some(tags)).build(),
            )
            .send()
            .await
            .unwrap();
        let new = made.nat_gateway().unwrap();
        assert_eq!(
            new.connectivity_type().map(|c| c.as_str()),
            Some("None"),
            "the divergence this test is about: if LocalStack now reports public, the special case can go"
        );
        let tables = ec2
            .describe_route_tables()
            .filters(aws_sdk_ec2::types::Filter::builder().name("route.nat-gateway-id").values(old).build())
            .send()
            .await
            .unwrap();
        assert!(!tables.route_tables().is_empty(), "some table routes through {old}");
        for t in tables.route_tables() {
            for r in t.routes().iter().filter(|r| r.nat_gateway_id() == Some(old)) {
                ec2.replace_route()
                    .route_table_id(t.route_table_id().unwrap())
                    .destination_cidr_block(r.destination_cidr_block().unwrap())
                    .nat_gateway_id(new.nat_gateway_id().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    let mut gate: Vec<String> =
        ["validate", "--quiet", "--vpc-id", &vpc, "--format", "json"].map(String::from).to_vec();
    gate.extend(source.args());
    let judged = microseg(&gate);
    assert_eq!(judged.status.code(), Some(exit::PASS), "{}", text(&judged));
    let doc: Value = serde_json::from_slice(&judged.stdout).unwrap();
    let checks = doc["validate"]["checks"].as_array().unwrap();
    let check = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}"));
    assert_eq!(check("nat-gateways")["status"], "pass", "{}", check("nat-gateways"));
    let intent = check("intent");
    assert_eq!(intent["status"], "divergence", "{intent}");
    assert_eq!(intent["divergences"], serde_json::json!(["nat-connectivity-type-echoed"]), "{intent}");
    let (passing, of) = counts(intent["note"].as_str().unwrap());
    assert_eq!((passing, of), counts(&designed_intent_note(source)), "the NAT flows pass, as designed");

    let swept = sweep::sweep(&clients, &Selection::Run(run_id.clone())).await.unwrap();
    assert!(swept.leftovers.is_empty(), "{:?}", swept.leftovers);
    assert!(inventory_of(&clients, &run_id).await.is_empty());
}
