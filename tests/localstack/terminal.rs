//! What a run leaves for people: a log file per invocation with every phase, plain text
//! (no colour codes) when nobody is at a terminal.

use microseg_cli::exit;

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
