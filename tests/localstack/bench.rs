//! `microseg bench` as a user runs it (the recipe's script left out: it takes a minute):
//! every phase timed and counted, and the call counts held to the floor.

use std::process::Command;

use microseg_cli::exit;

#[test]
fn bench_reports_every_phase_within_ten_percent_of_the_call_floor() {
    let _t = crate::support::timer();
    // Its own reused emulator, apart from a developer's.
    let reuse_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "bench", "--runs", "2", "--no-script", "--json"])
        .env("MICROSEG_REUSE_DIR", reuse_dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::PASS), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["build", "observe", "checks", "teardown", "inventory"]);
    let phase = |name: &str| r["phases"].as_array().unwrap().iter().find(|p| p["phase"] == name).unwrap().clone();

    // Build: one create per planned resource is the floor; within 10% of it.
    let floor = r["planned_resources"].as_u64().unwrap();
    let mutating = phase("build")["mutating"].as_u64().unwrap();
    assert!(mutating >= floor && mutating * 10 <= floor * 11, "build: {mutating} mutating calls, floor {floor}");
    // Observe: each resource type read once (pagination aside, nothing read twice).
    assert_eq!(phase("observe")["mutating"], 0);
    assert_eq!(phase("observe")["repeated_reads"], serde_json::json!({}));
    // Teardown: every call beyond one delete per resource has its reason, and with the
    // floor they add up to every call teardown made.
    let above = r["teardown_above_floor"].as_array().unwrap();
    let unexplained: Vec<_> = above.iter().filter(|a| a["reason"].is_null()).collect();
    assert!(unexplained.is_empty(), "teardown calls nobody accounts for: {unexplained:?}");
    let accounted =
        above.iter().map(|a| a["calls"].as_u64().unwrap()).sum::<u64>() + r["teardown_resources"].as_u64().unwrap();
    assert_eq!(Some(accounted), phase("teardown")["calls"].as_u64(), "{above:?}");
    // Whole processes, reused emulator and fresh, measured; the bench stops the reused
    // emulator it started.
    let whole = &r["whole_process"]["Ok"];
    assert!(
        whole["reuse_seconds"].as_f64().is_some() && whole["fresh_seconds"].as_f64().is_some(),
        "{}",
        r["whole_process"]
    );
    assert!(!reuse_dir.path().join("localstack.json").exists(), "the bench left its reused emulator up");
    assert!(r["run_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["starts"][0]["seconds"]["Ok"].as_f64().is_some(), "{}", r["starts"]);
    assert_eq!(r["evaluator"].as_array().unwrap().len(), 4);
}
