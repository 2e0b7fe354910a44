//! The sandbox role's policies in `.github/aws/`, judged against the engine's list of
//! operations (`microseg_harness::permissions`) by a small IAM evaluator:
//! - every action an operation needs is allowed on every resource it is authorised
//!   against, with the tags and context a run's request carries;
//! - nothing is allowed that no operation needs (no action, no resource pattern);
//! - the tag conditions bite: without the run tag, a create or a change of a run's
//!   resource is denied, except where docs/SANDBOX.md says why AWS offers no condition;
//! - regions outside the list are denied;
//! - the trust policy admits only this repository's `sandbox` environment.
//!
//! Which operations microseg really calls is the LocalStack test's part
//! (`tests/localstack/policy.rs`); this one needs no emulator.
//!
//! The evaluator knows the few operators the policy uses and panics on any other, so a
//! new condition is judged, never ignored.

use std::collections::{BTreeMap, BTreeSet};

use microseg_harness::permissions::{self, ArnContext, OPERATIONS, Resource, SampleNames};
use microseg_harness::plan::Plan;
use serde_json::Value;

fn read(name: &str) -> Value {
    let path = format!("{}/.github/aws/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("a string").to_string()).collect(),
        other => panic!("expected a string or a list of strings, found {other}"),
    }
}

/// IAM's wildcards: `*` any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
    dp[0][0] = true;
    for i in 1..=p.len() {
        dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
        for j in 1..=t.len() {
            dp[i][j] = match p[i - 1] {
                '*' => dp[i - 1][j] || dp[i][j - 1],
                '?' => dp[i - 1][j - 1],
                c => dp[i - 1][j - 1] && c == t[j - 1],
            };
        }
    }
    dp[p.len()][t.len()]
}

/// The request context: condition keys and their values.
type Context = BTreeMap<String, Vec<String>>;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Decision {
    Allow,
    ImplicitDeny,
    ExplicitDeny,
}

fn condition_holds(condition: &Value, ctx: &Context) -> bool {
    condition.as_object().expect("Condition is an object").iter().all(|(operator, keys)| {
        keys.as_object().expect("an operator maps keys").iter().all(|(key, wanted)| {
            let wanted = strings(wanted);
            let got = ctx.get(key);
            match operator.as_str() {
                "StringEquals" => got.is_some_and(|g| g.iter().any(|v| wanted.contains(v))),
                "StringLike" | "ArnLike" => got.is_some_and(|g| g.iter().any(|v| wanted.iter().any(|w| glob(w, v)))),
                // Negated operators hold when the key is absent (as IAM evaluates them).
                "StringNotEquals" => got.is_none_or(|g| g.iter().all(|v| !wanted.contains(v))),
                other => panic!("the evaluator does not know the operator {other}: teach it before using it"),
            }
        })
    })
}

fn statement_matches(s: &Value, action: &str, resource: &str, ctx: &Context) -> bool {
    assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none(), "Not* elements are not used: {s}");
    let actions = strings(&s["Action"]);
    let resources = strings(&s["Resource"]);
    actions.iter().any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
        && resources.iter().any(|r| glob(r, resource))
        && s.get("Condition").is_none_or(|c| condition_holds(c, ctx))
}

fn evaluate(policy: &Value, action: &str, resource: &str, ctx: &Context) -> Decision {
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    let matching =
        |effect: &str| statements.iter().any(|s| s["Effect"] == effect && statement_matches(s, action, resource, ctx));
    if matching("Deny") {
        Decision::ExplicitDeny
    } else if matching("Allow") {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const CALLER: &str = "arn:aws:iam::123456789012:role/microseg-sandbox";
const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/microseg/microseg-flow-log-boundary";

/// Which tags the context carries.
#[derive(Debug, Clone, Copy)]
struct Tags {
    request: bool,
    resource: bool,
}

/// The context of one of microseg's requests: region, boundary and, as asked, the run
/// tag in the request and on the resource.
fn context(tags: Tags, create_action: Option<&str>, region: &str) -> Context {
    let run = permissions::sample_run_id().to_string();
    let mut ctx = Context::new();
    ctx.insert("aws:RequestedRegion".into(), vec![region.into()]);
    ctx.insert("iam:PermissionsBoundary".into(), vec![BOUNDARY.into()]);
    if tags.request {
        ctx.insert("aws:RequestTag/microseg:run-id".into(), vec![run.clone()]);
        ctx.insert(
            "aws:TagKeys".into(),
            ["microseg:run-id", "microseg:scenario", "microseg:created-at", "Name"].map(String::from).to_vec(),
        );
    }
    if tags.resource {
        ctx.insert("aws:ResourceTag/microseg:run-id".into(), vec![run]);
    }
    if let Some(a) = create_action {
        ctx.insert("ec2:CreateAction".into(), vec![a.into()]);
    }
    ctx
}

/// Every built-in scenario's plan: their names decide the sample ARNs (role, log
/// group, alarm), and each one's must be allowed.
fn plans() -> Vec<Plan> {
    microseg_harness::spec::BUILTIN_SCENARIOS
        .iter()
        .map(|(name, _)| {
            let (spec, source) = microseg_harness::spec::load(name).unwrap();
            Plan::from_spec(&spec, &source).unwrap()
        })
        .collect()
}

fn arn(resource: Resource, names: &SampleNames) -> String {
    resource.sample_arn(&ArnContext { partition: "aws", region: REGION, account: ACCOUNT, caller_role: CALLER, names })
}

/// What tag a request of `action` on `resource` carries that a condition can test.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// A resource being created: the run tag is in the request.
    InRequest,
    /// A run's existing resource: the run tag is on it.
    OnResource,
    /// Not a run's resource (a read, another deployment's, the VPC's default NACL, a
    /// quota, the caller itself): no tag to test.
    Untagged,
}

/// The creates outside EC2 whose tags arrive in the request.
const TAGGED_CREATES: &[&str] = &[
    "iam:CreateRole",
    "iam:TagRole",
    "logs:CreateLogGroup",
    "logs:TagResource",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:TagResource",
];

fn expect(op: &permissions::Operation, grant: &permissions::Grant, resource: Resource) -> Expect {
    use Resource as R;
    match resource {
        R::Any | R::AnyRole | R::AnyLogGroup | R::AnyAlarm | R::CallerRole | R::Quota(..) | R::DefaultNetworkAcl => {
            return Expect::Untagged;
        }
        // docs/SANDBOX.md, "Where a condition is absent": the subnet side carries the
        // condition; the NACL side cannot, since teardown may move a subnet back to the
        // VPC's default NACL, which AWS creates untagged.
        R::NetworkAcl if grant.action == "ec2:ReplaceNetworkAclAssociation" => return Expect::Untagged,
        // The same for the default group, whose rules a hardened build revokes: revoking
        // only narrows what a group admits.
        R::SecurityGroup | R::DefaultSecurityGroup if grant.action.starts_with("ec2:RevokeSecurityGroup") => {
            return Expect::Untagged;
        }
        _ => {}
    }
    let created = op
        .grants
        .iter()
        .any(|t| t.create_action.is_some_and(|c| grant.action == format!("ec2:{c}")) && t.on.contains(&resource));
    if grant.action == "ec2:CreateTags" || created || TAGGED_CREATES.contains(&grant.action) {
        Expect::InRequest
    } else {
        Expect::OnResource
    }
}

#[test]
fn the_policy_allows_every_action_each_operation_needs_on_every_resource() {
    let policy = read("sandbox-policy.json");
    let full = Tags { request: true, resource: true };
    let mut checked = 0;
    for plan in plans() {
        let names = SampleNames::of(&plan);
        for op in permissions::for_plan(&plan) {
            for grant in op.grants {
                for &resource in grant.on {
                    let arn = arn(resource, &names);
                    let ctx = context(full, grant.create_action, REGION);
                    let got = evaluate(&policy, grant.action, &arn, &ctx);
                    assert_eq!(
                        got,
                        Decision::Allow,
                        "{} needs {} on {arn}; the policy gives {got:?}",
                        op.name,
                        grant.action
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} checks: the catalogue or the scenarios went missing");
}

#[test]
fn the_policy_allows_nothing_that_no_operation_needs() {
    let policy = read("sandbox-policy.json");
    let names: Vec<SampleNames> = plans().iter().map(SampleNames::of).collect();
    // (action, sample ARN) of every grant of every operation.
    let mut needed: BTreeSet<(String, String)> = BTreeSet::new();
    for g in OPERATIONS.iter().flat_map(|o| o.grants) {
        for r in g.on {
            for n in &names {
                needed.insert((g.action.to_string(), arn(*r, n)));
            }
        }
    }
    let needed_actions: BTreeSet<&str> = needed.iter().map(|(a, _)| a.as_str()).collect();
    for s in policy["Statement"].as_array().unwrap().iter().filter(|s| s["Effect"] == "Allow") {
        let sid = s["Sid"].as_str().expect("every statement has a Sid (docs/SANDBOX.md explains each)");
        let statement_actions = strings(&s["Action"]);
        for action in &statement_actions {
            assert!(
                !action.contains('*') && !action.contains('?'),
                "{sid}: {action}: no wildcard in an allowed action"
            );
            assert!(needed_actions.contains(action.as_str()), "{sid} allows {action}, which no operation needs");
            for pattern in strings(&s["Resource"]) {
                // CloudWatch Logs authorises some calls on `log-group:<name>` and others on
                // `log-group:<name>:*`; the policy grants both forms of a group.
                let base = match pattern.strip_suffix(":*") {
                    Some(group) if group.starts_with("arn:aws:logs:") && group.contains("log-group:") => group,
                    _ => pattern.as_str(),
                };
                let used = needed.iter().any(|(a, arn)| statement_actions.contains(a) && glob(base, arn));
                assert!(used, "{sid}: resource {pattern} is needed by none of the statement's actions");
            }
        }
    }
}

#[test]
fn tag_conditions_deny_a_request_without_the_run_tag() {
    let policy = read("sandbox-policy.json");
    let none = Tags { request: false, resource: false };
    let request_only = Tags { request: true, resource: false };
    let resource_only = Tags { request: false, resource: true };
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for plan in plans() {
        let names = SampleNames::of(&plan);
        for op in permissions::for_plan(&plan) {
            for grant in op.grants {
                for &resource in grant.on {
                    let arn = arn(resource, &names);
                    let decide =
                        |tags| evaluate(&policy, grant.action, &arn, &context(tags, grant.create_action, REGION));
                    let what = format!("{} ({}) on {arn}", grant.action, op.name);
                    let kind = expect(op, grant, resource);
                    match kind {
                        Expect::Untagged => assert_eq!(decide(none), Decision::Allow, "{what}: needs no tag"),
                        Expect::InRequest => {
                            assert_eq!(decide(none), Decision::ImplicitDeny, "{what}: allowed without the run tag");
                            assert_eq!(
                                decide(resource_only),
                                Decision::ImplicitDeny,
                                "{what}: the tag must be in the request"
                            );
                            assert_eq!(decide(request_only), Decision::Allow, "{what}");
                        }
                        Expect::OnResource => {
                            assert_eq!(decide(none), Decision::ImplicitDeny, "{what}: allowed on an untagged resource");
                            assert_eq!(
                                decide(request_only),
                                Decision::ImplicitDeny,
                                "{what}: a tagged request must not open an untagged resource"
                            );
                            assert_eq!(decide(resource_only), Decision::Allow, "{what}");
                        }
                    }
                    *by_kind.entry(format!("{kind:?}")).or_default() += 1;
                }
            }
        }
    }
    // Each kind is exercised: a catalogue that lost its creates or its deletes fails here.
    assert!(by_kind.values().all(|n| *n > 5) && by_kind.len() == 3, "{by_kind:?}");
}

#[test]
fn a_tag_that_is_not_a_run_id_opens_nothing() {
    let policy = read("sandbox-policy.json");
    let mut ctx = context(Tags { request: false, resource: false }, None, REGION);
    ctx.insert("aws:ResourceTag/microseg:run-id".into(), vec!["prod".into()]);
    let vpc = arn(Resource::Vpc, &SampleNames::of(&plans()[0]));
    assert_eq!(evaluate(&policy, "ec2:DeleteVpc", &vpc, &ctx), Decision::ImplicitDeny);
}

#[test]
fn regions_outside_the_sandbox_list_are_denied_even_for_reads() {
    let policy = read("sandbox-policy.json");
    let full = Tags { request: true, resource: true };
    assert_eq!(evaluate(&policy, "ec2:DescribeVpcs", "*", &context(full, None, "us-east-1")), Decision::Allow);
    for action in ["ec2:DescribeVpcs", "ec2:DeleteVpc", "logs:DeleteLogGroup", "servicequotas:GetServiceQuota"] {
        assert_eq!(
            evaluate(&policy, action, "*", &context(full, None, "ap-south-1")),
            Decision::ExplicitDeny,
            "{action} in ap-south-1"
        );
    }
}

#[test]
fn docs_sandbox_explains_every_statement() {
    let doc = std::fs::read_to_string(format!("{}/docs/SANDBOX.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for s in read("sandbox-policy.json")["Statement"].as_array().unwrap() {
        let sid = s["Sid"].as_str().expect("a Sid");
        assert!(doc.contains(&format!("`{sid}`")), "docs/SANDBOX.md does not explain statement {sid}");
    }
}

#[test]
fn the_policy_fits_a_roles_inline_policy_and_the_boundary_a_managed_one() {
    // IAM counts characters without white space: 10,240 for a role's inline policies,
    // 6,144 for a managed policy (docs/SANDBOX.md, "Set up").
    let compact = |v: &Value| serde_json::to_string(v).unwrap().chars().filter(|c| !c.is_whitespace()).count();
    let policy = compact(&read("sandbox-policy.json"));
    assert!(policy <= 10_240, "the sandbox policy has {policy} characters");
    let boundary = compact(&read("flow-log-role-boundary.json"));
    assert!(boundary <= 6_144, "the boundary has {boundary} characters");
}

#[test]
fn the_boundary_allows_the_delivery_policy_microseg_gives_the_role() {
    let boundary = read("flow-log-role-boundary.json");
    let delivery = microseg_harness::build::delivery_policy(
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/vpc/flowlogs-ms-0000000000",
    );
    let ctx = Context::new();
    for s in delivery["Statement"].as_array().unwrap() {
        for action in strings(&s["Action"]) {
            for resource in strings(&s["Resource"]) {
                assert_eq!(evaluate(&boundary, &action, &resource, &ctx), Decision::Allow, "{action} on {resource}");
            }
        }
    }
    // And nothing beyond delivery to a run's log group.
    let other = "arn:aws:logs:eu-west-1:123456789012:log-group:/prod/app";
    assert_eq!(evaluate(&boundary, "logs:PutLogEvents", other, &ctx), Decision::ImplicitDeny);
    assert_eq!(evaluate(&boundary, "iam:CreateRole", "*", &ctx), Decision::ImplicitDeny);
}

/// Why a trust policy admits more than this repository's `sandbox` environment, or
/// `None` when it admits exactly that.
fn trust_problem(trust: &Value) -> Option<String> {
    trust_check(trust).err()
}

fn trust_check(trust: &Value) -> Result<(), String> {
    let statements = trust["Statement"].as_array().ok_or("no Statement list")?;
    if statements.len() != 1 {
        return Err(format!("{} statements; one is expected", statements.len()));
    }
    let s = &statements[0];
    if s["Effect"] != "Allow" {
        return Err("the statement must allow".into());
    }
    let federated = s["Principal"].as_object().filter(|p| p.len() == 1).and_then(|p| p.get("Federated"));
    let provider = federated.and_then(Value::as_str).unwrap_or_default();
    let account_ok = |a: &str| a == "ACCOUNT_ID" || (a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()));
    match provider.strip_prefix("arn:aws:iam::").and_then(|r| r.split_once(":oidc-provider/")) {
        Some((account, "token.actions.githubusercontent.com")) if account_ok(account) => {}
        _ => return Err(format!("principal {} is not GitHub's OIDC provider alone", s["Principal"])),
    }
    if s["Action"] != "sts:AssumeRoleWithWebIdentity" {
        return Err(format!("action {} is not sts:AssumeRoleWithWebIdentity alone", s["Action"]));
    }
    let condition = s["Condition"].as_object().ok_or("no Condition: any GitHub repository could assume the role")?;
    if condition.keys().any(|op| op != "StringEquals") {
        return Err(format!("operators {:?}: only StringEquals (exact values) is admitted", condition.keys()));
    }
    let equals = condition["StringEquals"].as_object().ok_or("StringEquals is not an object")?;
    let value = |k: &str| equals.get(k).and_then(Value::as_str);
    if equals.len() != 2 || value("token.actions.githubusercontent.com:aud") != Some("sts.amazonaws.com") {
        return Err(format!("conditions {equals:?}: exactly aud = sts.amazonaws.com and one sub"));
    }
    let sub = value("token.actions.githubusercontent.com:sub").unwrap_or_default();
    if sub.contains(['*', '?']) {
        return Err(format!("sub {sub:?} has a wildcard"));
    }
    let rest = sub.strip_prefix("repo:").unwrap_or_default();
    let (repository, claim) = rest.split_once(':').unwrap_or_default();
    let repository_ok =
        repository.split_once('/').is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
    if !repository_ok || claim != "environment:sandbox" {
        return Err(format!("sub {sub:?} is not repo:<owner>/<repo>:environment:sandbox"));
    }
    Ok(())
}

#[test]
fn the_trust_policy_admits_only_this_repositorys_sandbox_environment() {
    let trust = read("trust-policy.json");
    assert_eq!(trust_problem(&trust), None);
    // The placeholder the setup replaces (docs/SANDBOX.md, "Set up").
    let sub = &trust["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"];
    assert_eq!(sub, "repo:OWNER/REPO:environment:sandbox");
}

#[test]
fn the_trust_check_rejects_every_broader_admission() {
    let trust = read("trust-policy.json");
    let sub = "/Statement/0/Condition/StringEquals/token.actions.githubusercontent.com:sub";
    let with = |path: &str, v: Value| {
        let mut t = trust.clone();
        *t.pointer_mut(path).unwrap_or_else(|| panic!("{path}")) = v;
        t
    };
    let mut broader = vec![
        ("any ref", with(sub, "repo:OWNER/REPO:*".into())),
        ("any branch", with(sub, "repo:OWNER/REPO:ref:refs/heads/*".into())),
        ("pull requests", with(sub, "repo:OWNER/REPO:pull_request".into())),
        ("another environment", with(sub, "repo:OWNER/REPO:environment:prod".into())),
        ("any repository", with(sub, "repo:*".into())),
        ("a one-character wildcard", with(sub, "repo:OWNER/REP?:environment:sandbox".into())),
        ("any principal", with("/Statement/0/Principal", "*".into())),
        ("an AWS principal", with("/Statement/0/Principal", serde_json::json!({"AWS": "*"}))),
        ("another action", with("/Statement/0/Action", "sts:*".into())),
        (
            "any audience",
            with("/Statement/0/Condition/StringEquals/token.actions.githubusercontent.com:aud", "*".into()),
        ),
    ];
    let mut like = trust.clone();
    let cond = like.pointer_mut("/Statement/0/Condition").unwrap();
    *cond = serde_json::json!({"StringLike": cond["StringEquals"].clone()});
    broader.push(("StringLike", like));
    let mut no_condition = trust.clone();
    no_condition["Statement"][0].as_object_mut().unwrap().remove("Condition");
    broader.push(("no condition", no_condition));
    let mut two = trust.clone();
    let first = two["Statement"][0].clone();
    two["Statement"].as_array_mut().unwrap().push(first);
    broader.push(("a second statement", two));
    for (what, t) in broader {
        assert!(trust_problem(&t).is_some(), "{what} was admitted: {t}");
    }
}

#[test]
fn the_evaluator_matches_iams_wildcards() {
    assert!(glob("arn:aws:iam::*:role/microseg/*-ms-??????????", "arn:aws:iam::1:role/microseg/R-ms-0123456789"));
    assert!(!glob("arn:aws:iam::*:role/microseg/*-ms-??????????", "arn:aws:iam::1:role/microseg/R-ms-012345678"));
    assert!(!glob("arn:aws:iam::*:role/microseg/*-ms-??????????", "arn:aws:iam::1:role/other/R-ms-0123456789"));
    assert!(glob("*", ""));
    assert!(!glob("a?", "a"));
}
