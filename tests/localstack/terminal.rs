//! What a run leaves for people: a log file per invocation with every phase, plain text
//! (no colour codes) when nobody is at a terminal.

use microseg_cli::exit;

use crate::pipe::{with_both_closed, with_stdout_closed};
use crate::support::microseg_on_shared;

#[test]
fn a_run_names_its_log_file_which_records_every_phase_in_plain_text() {
    let _t = crate::support::timer();
    let out = microseg_on_shared(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::PASS), "{stderr}");
    let path = stderr.lines().find_map(|l| l.strip_prefix("log: ")).unwrap_or_else(|| panic!("no log line: {stderr}"));
    let log = std::fs::read_to_string(path).unwrap();
    for phase in ["build", "observe", "checks", "teardown", "inventory"] {
        assert!(log.contains(&format!("phase=\"{phase}\"")), "{phase} missing from {path}:\n{log}");
    }
    // Piped, nothing is coloured: not the log, not the report, not the progress lines.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (what, text) in [("log", log.as_str()), ("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains('\u{1b}'), "escape codes in {what}");
    }
    assert!(stdout.contains("teardown                     pass"), "{stdout}");
}

/// `| head` on every subcommand that talks to an emulator, in every format: the output
/// stops, the process exits 141 with no panic and no backtrace, and a run still tears
/// down what it built (its report, written to a file, proves it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_and_format_ends_quietly_on_a_closed_pipe() {
    let _t = crate::support::timer();
    let endpoint = format!("endpoint={}", crate::support::shared_endpoint());
    let closed = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_microseg"));
        cmd.arg("--quiet").args(args);
        let out = with_stdout_closed(&mut cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(exit::CLOSED_PIPE), "{args:?}: {stderr}");
        for said in ["panicked", "Broken pipe", "os error 32", "stack backtrace"] {
            assert!(!stderr.contains(said), "{args:?} said {said:?} on stderr:\n{stderr}");
        }
    };
    let formats = ["text", "json", "junit", "markdown", "sarif", "mermaid", "html"];
    let dir = tempfile::tempdir().unwrap();
    let (clients, _, _) = crate::support::shared().await;
    for format in formats {
        let report = dir.path().join(format!("run-{format}.json"));
        closed(&["run", "--target", &endpoint, "--format", format, "--report-json", report.to_str().unwrap()]);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let run = microseg_harness::run_id::RunId::parse(written["run_id"].as_str().unwrap()).unwrap();
        assert!(crate::support::inventory_of(&clients, &run).await.is_empty(), "run --format {format} left resources");
    }
    // `2>&1 | head`: progress lines (no --quiet) and the report both meet closed pipes.
    let report = dir.path().join("run-both-closed.json");
    let status = with_both_closed(std::process::Command::new(env!("CARGO_BIN_EXE_microseg")).args([
        "run",
        "--target",
        &endpoint,
        "--report-json",
        report.to_str().unwrap(),
    ]));
    assert_eq!(status.code(), Some(exit::CLOSED_PIPE), "a run with stdout and stderr closed: {status}");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let run = microseg_harness::run_id::RunId::parse(written["run_id"].as_str().unwrap()).unwrap();
    assert!(crate::support::inventory_of(&clients, &run).await.is_empty(), "the run with stderr closed left resources");
    // A deployment to validate and draw, kept until the sweep below.
    let (clients, _, kept) = crate::support::kept_recipe_run().await;
    let _sweep = crate::support::SweepOnDrop::new(&clients, &kept.run_id);
    let vpc = kept.bindings.vpc_id.clone().unwrap();
    for format in formats {
        closed(&["validate", "--target", &endpoint, "--vpc-id", &vpc, "--format", format]);
    }
    closed(&["report", "--target", &endpoint, "--vpc-id", &vpc]);
    closed(&["validate", "--target", &endpoint, "--vpc-id", &vpc, "--expect-gone"]);
    closed(&["doctor", "--target", &endpoint]);
    closed(&["sweep", "--target", &endpoint, "--run-id", kept.run_id.as_str()]);
    closed(&["bench", "--runs", "1", "--no-script"]);
}
