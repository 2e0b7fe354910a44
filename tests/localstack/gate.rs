//! The acceptance gate from the outside: `microseg validate`, `snapshot` and
//! `--expect-gone` driven as a user would, on a deployment the test does not hand over.

use std::process::{Command, Output};

use microseg_cli::exit;
use microseg_harness::sweep::{self, Selection};

use crate::support::{kept_recipe_run, microseg_on_shared, text};

fn microseg(args: &[&str]) -> Output {
    microseg_on_shared(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_snapshot_and_expect_gone_gate_a_deployment() {
    let _t = crate::support::timer();
    let (clients, _, report) = kept_recipe_run().await;
    let vpc = report.bindings.vpc_id.clone().unwrap();
    let run_tag = format!("microseg:run-id={}", report.run_id);

    // Live, by VPC id and by tag: the deployment passes.
    let by_id = microseg(&["validate", "--quiet", "--vpc-id", &vpc]);
    assert_eq!(by_id.status.code(), Some(exit::PASS), "{}", text(&by_id));
    let by_tag = microseg(&["validate", "--quiet", "--tag", &run_tag, "--format", "json"]);
    assert_eq!(by_tag.status.code(), Some(exit::PASS), "{}", text(&by_tag));
    let json: serde_json::Value = serde_json::from_slice(&by_tag.stdout).unwrap();
    assert_eq!(json["validate"]["bindings"]["vpc_id"], vpc.as_str());

    // Offline from a snapshot: same verdict, no emulator needed.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.json");
    let s = microseg(&["snapshot", "--quiet", "--vpc-id", &vpc, "--out", snap.to_str().unwrap()]);
    assert_eq!(s.status.code(), Some(exit::PASS), "{}", text(&s));
    let offline = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["validate", "--from-snapshot", snap.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(exit::PASS), "{}", text(&offline));

    // The same snapshot drawn: `report` defaults to Mermaid, from what was observed (ids
    // included), with the recipe's group references and routes.
    let drawn = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["report", "--from-snapshot", snap.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(drawn.status.code(), Some(exit::PASS), "{}", text(&drawn));
    let m = String::from_utf8_lossy(&drawn.stdout);
    assert!(m.starts_with("graph TB\n"), "{m}");
    assert!(m.contains(&format!("VPC {vpc} (10.0.0.0/16)")), "{m}");
    for edge in [r#"SG_dmz -. "tcp/80, tcp/443" .-> SG_web"#, r#"SG_web -. "tcp/8080" .-> SG_app"#, "IGW --> NACL_web"]
    {
        assert!(m.contains(edge), "{edge}: {m}");
    }
    assert!(m.contains(&format!("NACL database<br/>{}<br/>3 in · 2 out", report.bindings.nacls["database"])), "{m}");

    // A broken deployment fails with the finding named.
    clients
        .ec2
        .delete_network_acl_entry()
        .network_acl_id(&report.bindings.nacls["database"])
        .rule_number(100)
        .egress(false)
        .send()
        .await
        .unwrap();
    let broken = microseg(&["validate", "--quiet", "--vpc-id", &vpc]);
    assert_eq!(broken.status.code(), Some(exit::FINDINGS), "{}", text(&broken));
    assert!(text(&broken).contains("[MS-NACL-ENTRY-MISSING] NACL database"), "{}", text(&broken));
    let junit = microseg(&["validate", "--quiet", "--vpc-id", &vpc, "--format", "junit"]);
    assert_eq!(junit.status.code(), Some(exit::FINDINGS));
    let xml = String::from_utf8_lossy(&junit.stdout);
    assert!(xml.contains(r#"<testcase name="nacl-rules""#) && xml.contains("<failure"), "{xml}");
    let md = microseg(&["validate", "--quiet", "--vpc-id", &vpc, "--format", "markdown"]);
    assert!(String::from_utf8_lossy(&md.stdout).contains("| `MS-NACL-ENTRY-MISSING` | NACL database"), "{}", text(&md));

    let sarif = microseg(&["validate", "--quiet", "--vpc-id", &vpc, "--format", "sarif"]);
    assert_eq!(sarif.status.code(), Some(exit::FINDINGS));
    let doc: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "MS-NACL-ENTRY-MISSING"), "{doc}");
    let page = microseg(&["validate", "--quiet", "--vpc-id", &vpc, "--format", "html"]);
    assert_eq!(page.status.code(), Some(exit::FINDINGS));
    let html = String::from_utf8_lossy(&page.stdout);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"), "{html}");
    // The deleted entry shows in the drawing: the database NACL's box, named by its id,
    // now counts 2 inbound entries.
    let node = html.split(r#"<g class="node" data-id="NACL_database""#).nth(1).expect("database NACL drawn");
    let node = &node[..node.find("</g>").unwrap()];
    assert!(node.contains(&report.bindings.nacls["database"]) && node.contains(">2 in · 2 out<"), "{node}");

    // Before cleanup, expect-gone lists what is there; after, it passes.
    let early = microseg(&["validate", "--quiet", "--expect-gone", "--tag", &run_tag]);
    assert_eq!(early.status.code(), Some(exit::FINDINGS), "{}", text(&early));
    assert!(text(&early).contains(&format!("vpc {vpc}")), "{}", text(&early));
    sweep::sweep(&clients, &Selection::Run(report.run_id.clone())).await.unwrap();
    let gone = microseg(&["validate", "--quiet", "--expect-gone", "--tag", &run_tag]);
    assert_eq!(gone.status.code(), Some(exit::PASS), "{}", text(&gone));
}

#[test]
fn validate_refuses_to_start_an_empty_emulator() {
    let _t = crate::support::timer();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["validate", "--vpc-id", "vpc-1", "--target", "localstack-host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE));
    assert!(text(&out).contains("reads an existing deployment"), "{}", text(&out));
}
