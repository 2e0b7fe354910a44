//! A second implementation of the recipe, in CloudFormation
//! (`tests/fixtures/recipe-cloudformation.yaml`), deployed into LocalStack's CloudFormation
//! and gated by `microseg validate`, then deleted and proved gone (`--expect-gone`).

use std::collections::BTreeSet;
use std::process::Command;

use microseg_cli::exit;
use microseg_harness::target::python;

use crate::support::{microseg_on_shared, shared_endpoint};

const TEMPLATE: &str = include_str!("../fixtures/recipe-cloudformation.yaml");

fn aws(args: &[&str]) -> std::process::Output {
    let py = python::find_python().unwrap();
    Command::new(python::venv_dir(python::REQUIREMENTS, &py).join("bin/aws"))
        .args(["--endpoint-url", shared_endpoint(), "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap()
}

/// The stack's status, asked over CloudFormation's query API directly (a poll through
/// the AWS CLI costs a Python start, about a second); `None` once the stack is gone.
/// LocalStack reads the service and region from the credential scope and checks no
/// signature.
fn stack_status(name: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent
        .post(shared_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cloudformation/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send(format!("Action=DescribeStacks&Version=2010-05-15&StackName={name}"))
        .expect("DescribeStacks answers");
    let body = resp.body_mut().read_to_string().unwrap();
    let status = body.split("<StackStatus>").nth(1).and_then(|rest| rest.split('<').next());
    match status {
        Some(s) => Some(s.to_string()),
        None if body.contains("does not exist") => None,
        None => panic!("DescribeStacks {name}: {body}"),
    }
}

/// Polls the stack every 100 ms until it leaves its `*_IN_PROGRESS` states, for at most
/// two minutes: the AWS CLI's own waiters sleep 5 s (`deploy`) and 30 s (`wait
/// stack-delete-complete`) between polls, far longer than LocalStack takes.
fn settle_stack(name: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = stack_status(name);
        if !status.as_deref().is_some_and(|s| s.ends_with("_IN_PROGRESS")) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "stack {name} still {status:?} after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Deploys a template as a stack; returns its VPC id.
fn deploy(name: &str, template: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("template.yaml");
    std::fs::write(&file, template).unwrap();
    let body = format!("file://{}", file.display());
    let out = aws(&[
        "cloudformation",
        "create-stack",
        "--stack-name",
        name,
        "--template-body",
        &body,
        "--capabilities",
        "CAPABILITY_IAM",
    ]);
    assert!(out.status.success(), "create-stack {name}: {}", String::from_utf8_lossy(&out.stderr));
    let status = settle_stack(name);
    assert_eq!(status.as_deref(), Some("CREATE_COMPLETE"), "stack {name}");
    let out = aws(&[
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        name,
        "--query",
        "Stacks[0].Outputs[?OutputKey=='VpcId'].OutputValue",
        "--output",
        "text",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn delete(name: &str) {
    let out = aws(&["cloudformation", "delete-stack", "--stack-name", name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = settle_stack(name);
    assert!(matches!(status.as_deref(), None | Some("DELETE_COMPLETE")), "stack {name} after delete: {status:?}");
}

fn validate(args: &[&str]) -> std::process::Output {
    microseg_on_shared(&[&["validate", "--quiet"][..], args].concat())
}

/// `(check, finding id)` pairs of a validate JSON report.
fn findings(vpc: &str) -> (Option<i32>, BTreeSet<(String, String)>) {
    let out = validate(&["--vpc-id", vpc, "--format", "json"]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let set = report["validate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| (c["id"].as_str().unwrap().to_string(), f["id"].as_str().unwrap().to_string()))
        })
        .collect();
    (out.status.code(), set)
}

fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(c, f)| (c.to_string(), f.to_string())).collect()
}

/// LocalStack 4.14.0 community's CloudFormation reports CREATE_COMPLETE for a stack of
/// this template while it silently skips AWS::EC2::NetworkAclEntry,
/// AWS::EC2::SubnetNetworkAclAssociation, AWS::EC2::FlowLog and AWS::Logs::MetricFilter
/// ("Deployment of resource type … succeeded, but will fail in upcoming LocalStack
/// releases unless CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES is explicitly enabled"), and it
/// drops the groups' inline ingress rules and the IGW route. So on this emulator the gate
/// cannot show a correct CloudFormation deployment passing; what it must show, and does,
/// is that a deployment whose stack says CREATE_COMPLETE is not what its template says:
/// each skipped resource is a finding. On AWS the same template is expected to pass.
#[test]
fn the_gate_catches_what_localstack_cloudformation_silently_skips() {
    let _t = crate::support::timer();
    let stack = format!("microseg-gate-cfn-{}", std::process::id());
    let vpc = deploy(&stack, TEMPLATE);
    assert!(vpc.starts_with("vpc-"), "{vpc}");
    let (code, found) = findings(&vpc);
    let expected = pairs(&[
        // NetworkAclEntry skipped.
        ("nacl-rules", "MS-NACL-ENTRY-MISSING"),
        ("recipe-v5-nacl-order", "MS-SOURCE-NACL-ORDER"),
        // SubnetNetworkAclAssociation skipped.
        ("associations", "MS-ASSOC-DEFAULT-NACL"),
        ("recipe-v1-nacl-associations", "MS-SOURCE-NACL-ASSOCIATIONS"),
        // Inline SecurityGroupIngress dropped.
        ("security-groups", "MS-SG-RULE-MISSING"),
        ("recipe-v2-sg-references", "MS-SOURCE-GROUP-REFERENCE"),
        // FlowLog skipped.
        ("flow-log", "MS-FLOW-MISSING"),
        ("recipe-v3-flow-log-active", "MS-SOURCE-FLOW-LOG"),
        // MetricFilter skipped, so no alarm watches a filter's metric.
        ("alarm", "MS-ALARM-FILTER-MISSING"),
        ("alarm", "MS-ALARM-MISSING"),
        // The default route is there with no target (LocalStack's CloudFormation drops
        // its GatewayId), so the route to the IGW is not.
        ("routes", "MS-RT-ROUTE-MISSING"),
        ("recipe-v4-routes", "MS-SOURCE-ROUTE"),
        // With no ingress rules and no IGW route, even the front door (internet → DMZ,
        // DMZ → web) is shut.
        ("intent", "MS-INTENT-BLOCKED"),
        // ... and the design's one unintended opening (DMZ to the internet's high ports)
        // is gone with the route.
        ("intent", "MS-REACH-DESIGN-DRIFT"),
    ]);
    assert_eq!(found, expected, "what the gate reports on LocalStack's CloudFormation deployment");
    assert_eq!(code, Some(exit::FINDINGS));
    delete(&stack);
    let gone = validate(&["--expect-gone", "--vpc-id", &vpc]);
    let text = String::from_utf8_lossy(&gone.stdout);
    assert_eq!(gone.status.code(), Some(exit::PASS), "stack deletion left:\n{text}");
}

/// Broken variants of the same template, each one change away from it: the gate must
/// report exactly the base deployment's findings plus the ones the change causes. (The
/// changes are to resources LocalStack's CloudFormation does deploy; a change to one it
/// skips could not show.)
#[test]
fn broken_variants_add_exactly_the_findings_of_their_break() {
    let _t = crate::support::timer();
    let base_stack = format!("microseg-gate-cfn-base-{}", std::process::id());
    let base_vpc = deploy(&base_stack, TEMPLATE);
    let (_, base) = findings(&base_vpc);
    delete(&base_stack);
    let web_association = "  WebRouteTableAssociation:\n    Type: AWS::EC2::SubnetRouteTableAssociation\n    Properties: {SubnetId: !Ref WebSubnet, RouteTableId: !Ref PublicRouteTable}\n";
    assert!(TEMPLATE.contains(web_association));
    let igw_attachment = "  IgwAttachment:\n    Type: AWS::EC2::VPCGatewayAttachment\n    Properties: {VpcId: !Ref Vpc, InternetGatewayId: !Ref Igw}\n";
    assert!(TEMPLATE.contains(igw_attachment) && TEMPLATE.contains("    DependsOn: IgwAttachment\n"));
    // (name, template, findings added, findings gone)
    type Variant<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);
    let variants: [Variant; 2] = [
        // The web subnet left on the main route table: its association is missing.
        ("no-web-rt-association", TEMPLATE.replace(web_association, ""), &[("routes", "MS-RT-ASSOCIATIONS")], &[]),
        // The internet gateway created but never attached (the attachment and the
        // route's dependency on it removed): the unattached gateway is reported. The
        // base's missing route stays missing (LocalStack's CloudFormation leaves the
        // default route with no target either way).
        (
            "igw-not-attached",
            TEMPLATE.replace(igw_attachment, "").replace("    DependsOn: IgwAttachment\n", ""),
            &[("routes", "MS-IGW-NOT-ATTACHED")],
            &[],
        ),
    ];
    for (name, template, added, gone) in variants {
        let stack = format!("microseg-gate-cfn-{name}-{}", std::process::id());
        let vpc = deploy(&stack, &template);
        let (code, found) = findings(&vpc);
        delete(&stack);
        let extra: BTreeSet<_> = found.difference(&base).cloned().collect();
        let lost: BTreeSet<_> = base.difference(&found).cloned().collect();
        assert_eq!((extra, lost), (pairs(added), pairs(gone)), "variant {name}");
        assert_eq!(code, Some(exit::FINDINGS), "variant {name}");
    }
}
