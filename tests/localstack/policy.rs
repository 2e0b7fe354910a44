//! The sandbox role's policy (`.github/aws/sandbox-policy.json`) against what microseg
//! really calls. Every built-in scenario in both variants is run with a job label (its
//! deployment kept), validated by tag, swept, checked gone, and put through `doctor`'s
//! preflight as the sandbox role, on LocalStack; the call counter records every
//! operation. Then:
//! - every operation called is in the engine's list (`permissions::OPERATIONS`), which
//!   says what IAM actions it needs;
//! - the policy allows every action those operations need, and nothing else;
//! - every operation of the list was called here, or is one LocalStack cannot reach
//!   (`permissions::CALLED_ONLY_ON_AWS`, each with why).
//!
//! Resources and conditions are the offline test's part (`tests/offline/sandbox_policy.rs`).
//! A new call (say `EC2:DescribeVpcEndpoints`) fails this test until the list says what
//! it needs and the policy grants it.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use microseg_harness::aws::Clients;
use microseg_harness::capabilities::Capabilities;
use microseg_harness::inventory;
use microseg_harness::job::{EarlierRuns, Job};
use microseg_harness::permissions::{self, CALLED_ONLY_ON_AWS, OPERATIONS};
use microseg_harness::plan::Plan;
use microseg_harness::preflight::{self, PreflightInput};
use microseg_harness::run::{self, RunOptions, RunTarget};
use microseg_harness::spec;
use microseg_harness::sweep::{self, Selection};
use microseg_harness::target::emulator_sdk_config;
use microseg_harness::validate;
use serde_json::Value;

use crate::support::{Group, endpoint, ledger_dir, target_on, timer};

const BOUNDARY: &str = "arn:aws:iam::000000000000:policy/microseg/microseg-flow-log-boundary";

fn aws_file(name: &str) -> String {
    let path = format!("{}/.github/aws/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The actions the policy allows, from its Allow statements.
fn granted() -> BTreeSet<String> {
    let policy: Value = serde_json::from_str(&aws_file("sandbox-policy.json")).unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            other => panic!("Action {other}"),
        })
        .collect()
}

/// The sandbox role on the emulator, as docs/SANDBOX.md sets it up (its trust policy
/// with this emulator's account, the policy inline, the boundary as a managed policy),
/// and clients that act as it: the preflight simulates the role its session belongs to.
async fn as_sandbox_role(group: Group) -> Clients {
    let admin = Clients::new(&emulator_sdk_config(endpoint(group), "us-east-1").await);
    let trust = aws_file("trust-policy.json").replace("ACCOUNT_ID", "000000000000");
    match admin.iam.create_role().role_name("microseg-sandbox").assume_role_policy_document(trust).send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) => {}
        Err(e) => panic!("creating the sandbox role: {}", aws_sdk_iam::error::DisplayErrorContext(e)),
    }
    admin
        .iam
        .put_role_policy()
        .role_name("microseg-sandbox")
        .policy_name("microseg-sandbox")
        .policy_document(aws_file("sandbox-policy.json"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the emulator takes the policy: {}", aws_sdk_iam::error::DisplayErrorContext(e)));
    let session = admin
        .sts
        .assume_role()
        .role_arn("arn:aws:iam::000000000000:role/microseg-sandbox")
        .role_session_name("microseg-policy-test")
        .send()
        .await
        .expect("assume the sandbox role");
    let c = session.credentials().expect("session credentials");
    let creds = aws_sdk_ec2::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "sandbox-role",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint(group))
        .credentials_provider(creds)
        .retry_config(microseg_harness::target::emulator_retry())
        .load()
        .await;
    Clients::new(&config)
}

/// The flow-log role's boundary on the emulator, as docs/SANDBOX.md, "Set up" creates it.
async fn create_boundary(group: Group) {
    let admin = Clients::new(&emulator_sdk_config(endpoint(group), "us-east-1").await);
    match admin
        .iam
        .create_policy()
        .path("/microseg/")
        .policy_name("microseg-flow-log-boundary")
        .policy_document(aws_file("flow-log-role-boundary.json"))
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) => {}
        Err(e) => panic!("creating the boundary: {}", aws_sdk_iam::error::DisplayErrorContext(e)),
    }
}

/// One scenario through everything an account sees of microseg; returns the calls.
async fn exercise(name: &str, group: Group, caps: Capabilities) -> BTreeMap<String, usize> {
    let (s, source) = spec::load(name).unwrap();
    let plan = Plan::from_spec(&s, &source).unwrap();
    let clients = Clients::new(&emulator_sdk_config(endpoint(group), "us-east-1").await);
    let dir = ledger_dir();
    let opts = RunOptions {
        keep: true,
        ledger_dir: Some(dir.path().into()),
        no_signal_handler: true,
        job: Some(Job::parse(&format!("policy-test-{name}-{}", std::process::id())).unwrap()),
        earlier_runs: EarlierRuns::Sweep,
        role_boundary: Some(BOUNDARY.into()),
        ..Default::default()
    };
    let target = RunTarget::new(clients.clone(), "policy test", caps.clone());
    let report = run::run(&plan, &target, &opts).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    let guard = crate::support::SweepOnDrop::new(&clients, &report.run_id);
    assert!(report.kept && report.interruption.is_none(), "{name}: {:?}", report.interruption);
    // validate --tag microseg:run-id=<id>, as the CLI does it.
    let vpcs = validate::vpc_by_tag(&clients, "microseg:run-id", report.run_id.as_str()).await.unwrap();
    assert_eq!(vpcs.len(), 1, "{name}: {vpcs:?}");
    microseg_harness::observe::read_live(&clients, &vpcs[0]).await.unwrap();
    let swept = sweep::sweep(&clients, &Selection::Run(report.run_id.clone())).await.unwrap();
    assert!(swept.leftovers.is_empty(), "{name}: {:?}", swept.leftovers);
    drop(guard);
    // validate --expect-gone --tag …
    let scope = inventory::Scope::Tag { key: "microseg:run-id".into(), value: report.run_id.to_string() };
    let left = inventory::list(&clients, &scope).await.unwrap();
    let (left, _orphans) = inventory::split_emulator_orphans(left, &caps);
    assert!(left.is_empty(), "{name}: {left:?}");
    clients.calls.snapshot()
}

/// `doctor` on an emulator: the same preflight, what LocalStack cannot answer named, the
/// verdict not held against it, and reads only.
#[test]
fn doctor_on_an_emulator_names_what_it_cannot_answer() {
    let _t = timer();
    let out = crate::support::microseg_on_shared(&["doctor", "--quiet", "--all-scenarios"]);
    assert_eq!(out.status.code(), Some(microseg_cli::exit::PASS), "{}", crate::support::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for scenario in spec::BUILTIN_SCENARIOS.iter().map(|(n, _)| *n) {
        assert!(stdout.contains(&format!("{scenario} (")), "{scenario} missing: {stdout}");
    }
    // LocalStack does not emulate Service Quotas: each quota says so; EC2's own count of
    // Elastic IPs still answers.
    let quota_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("quota ")).collect();
    let unanswered = quota_lines.iter().filter(|l| l.contains("unanswered") && l.contains("service-quotas")).count();
    assert!(unanswered >= 10, "{stdout}");
    assert!(
        quota_lines.iter().any(|l| l.contains("EC2-VPC Elastic IPs") && l.contains("vpc-max-elastic-ips")),
        "{stdout}"
    );
    assert!(stdout.contains("calls: ") && stdout.contains(", all of them reads"), "{stdout}");
    assert!(stdout.contains("verdict: READY (") && stdout.contains("could not answer"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sandbox_policy_grants_exactly_what_microseg_calls() {
    let _t = timer();
    let shared = target_on(Group::Shared).await.capabilities.clone();
    let nat = target_on(Group::Nat).await.capabilities.clone();
    create_boundary(Group::Shared).await;
    create_boundary(Group::Nat).await;
    // The scenarios with NAT gateways on the NAT group's emulator (support.rs says why),
    // all at once: each run keeps to its own tags.
    let runs = spec::BUILTIN_SCENARIOS.iter().map(|(name, text)| {
        let group = if text.contains("[[nat_gateways]]") { Group::Nat } else { Group::Shared };
        let caps = if group == Group::Nat { nat.clone() } else { shared.clone() };
        exercise(name, group, caps)
    });
    let mut called: BTreeMap<String, usize> = BTreeMap::new();
    for calls in join_all(runs).await {
        for (op, n) in calls {
            *called.entry(op).or_default() += n;
        }
    }
    // doctor's preflight, as the sandbox role, for every scenario.
    let plans: Vec<Plan> = spec::BUILTIN_SCENARIOS
        .iter()
        .map(|(n, _)| {
            let (s, src) = spec::load(n).unwrap();
            Plan::from_spec(&s, &src).unwrap()
        })
        .collect();
    let role = as_sandbox_role(Group::Shared).await;
    let input = PreflightInput {
        emulator: shared.emulator.clone(),
        role_boundary: Some(BOUNDARY.into()),
        ..Default::default()
    };
    let report = preflight::preflight(&role, &input, &plans).await;
    assert!(
        report.calls.keys().all(|op| !permissions::is_mutating(op)),
        "the preflight changed something: {:?}",
        report.calls
    );
    for (op, n) in role.calls.snapshot() {
        *called.entry(op).or_default() += n;
    }
    eprintln!("operations called: {called:?}");

    let unknown: Vec<&String> = called.keys().filter(|op| permissions::operation(op).is_none()).collect();
    assert!(
        unknown.is_empty(),
        "microseg called {unknown:?}, which permissions::OPERATIONS does not list: add each with the IAM actions it \
         needs, and grant them in .github/aws/sandbox-policy.json (docs/SANDBOX.md says how)"
    );
    for (op, why) in CALLED_ONLY_ON_AWS {
        assert!(
            !called.contains_key(*op),
            "{op} was called on the emulator after all; take it off CALLED_ONLY_ON_AWS ({why})"
        );
    }
    let operations: BTreeSet<&str> =
        called.keys().map(String::as_str).chain(CALLED_ONLY_ON_AWS.iter().map(|(op, _)| *op)).collect();
    let never: Vec<&str> = OPERATIONS.iter().map(|o| o.name).filter(|o| !operations.contains(o)).collect();
    assert!(
        never.is_empty(),
        "permissions::OPERATIONS lists {never:?}, which nothing called here: remove them (doctor would simulate them, \
         and the policy must not grant them), or say in CALLED_ONLY_ON_AWS why only AWS reaches them"
    );
    let (needed, _) = permissions::actions_of(operations.iter().copied());
    let needed: BTreeSet<String> = needed.into_iter().map(str::to_string).collect();
    let granted = granted();
    let missing: Vec<&String> = needed.difference(&granted).collect();
    let unused: Vec<&String> = granted.difference(&needed).collect();
    assert!(missing.is_empty(), "microseg needs {missing:?}, which .github/aws/sandbox-policy.json does not grant");
    assert!(unused.is_empty(), ".github/aws/sandbox-policy.json grants {unused:?}, which nothing microseg calls needs");
}
