//! `microseg bench` as a user runs it (the recipe's script left out: it takes a minute):
//! every phase timed and counted, and the call counts held to the floor.

use std::process::Command;

use microseg_cli::exit;

#[test]
fn bench_reports_every_phase_within_ten_percent_of_the_call_floor() {
    let _t = crate::support::timer();
    let out = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["--quiet", "bench", "--runs", "2", "--no-script", "--json"])
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
    assert!(r["run_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["starts"][0]["seconds"]["Ok"].as_f64().is_some(), "{}", r["starts"]);
    assert_eq!(r["evaluator"].as_array().unwrap().len(), 4);
}
