//! Shell completions and the man page come from the same clap definitions as the
//! command line itself, so they cannot drift from it.

use std::process::Command;

fn microseg(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_microseg")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const SUBCOMMANDS: [&str; 10] =
    ["run", "plan", "sweep", "validate", "snapshot", "doctor", "report", "bench", "completions", "man"];

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = microseg(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        assert!(script.contains("allow-account") && script.contains("wait"), "{shell}: flags missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("microseg.bash");
    std::fs::write(&file, microseg(&["completions", "bash"])).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(checked.status.success(), "bash -n: {}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn the_man_page_is_roff_with_every_subcommand() {
    let page = microseg(&["man"]);
    assert!(page.starts_with(".ie") || page.contains(".TH microseg"), "{}", &page[..page.len().min(200)]);
    assert!(page.contains(".TH microseg 1"), "no title header");
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!("microseg\\-{sub}")) || page.contains(sub), "no {sub}");
    }
    assert!(page.contains("Tests AWS network micro\\-segmentation"), "the one-line description is missing");
}

#[test]
fn bare_microseg_says_what_it_is_for() {
    let out = Command::new(env!("CARGO_BIN_EXE_microseg")).output().unwrap();
    let help = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{help}");
    assert!(help.starts_with("Tests AWS network micro-segmentation"), "{help}");
    assert!(!help.contains("engine"), "the library's doc line leaked into the help: {help}");
}
