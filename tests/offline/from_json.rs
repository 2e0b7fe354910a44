//! One validation, every format: what `microseg report --from-json` renders from a gate's
//! JSON report is byte for byte what `microseg validate` prints in that format, exit code
//! included. This is what lets the gate action call `validate` once.
//!
//! The deployment is a snapshot file (the recipe as designed, with a subnet moved to the
//! default NACL and the database NACL's inbound #100 removed, read from an emulator with
//! divergences), so the run needs no emulator; the spec lies at a relative path in a
//! directory of the test's own, as it would in a caller's repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::ValueEnum;
use microseg_cli::exit;
use microseg_cli::render::Format;
use microseg_harness::capabilities::{Capabilities, Divergence};
use microseg_harness::model::Direction;
use microseg_harness::plan::Plan;
use microseg_harness::validate::{SNAPSHOT_FORMAT_VERSION, Snapshot};
use microseg_harness::{reach, spec};

/// Where the spec sits in the "repository", relative to its root.
const SPEC: &str = "network/segmentation spec.toml";

fn microseg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(args)
        .current_dir(dir)
        .env_remove("MICROSEG_TARGET")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A repository with the recipe's spec at [`SPEC`] and a snapshot of a broken deployment.
fn repository() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (s, src) = spec::load("recipe").unwrap();
    let plan = Plan::from_spec(&s, &src).unwrap();
    let (mut observed, bindings) = reach::designed(&plan);
    // The web subnet back on the default NACL, and the database NACL's inbound #100 gone.
    let web = bindings.zones["web"].clone();
    let default = observed.nacls.iter().position(|n| n.is_default).expect("the design has a default NACL");
    let from = observed.nacls.iter().position(|n| n.associations.iter().any(|a| a.subnet_id == web)).unwrap();
    let association = observed.nacls[from].associations.iter().position(|a| a.subnet_id == web).unwrap();
    let moved = observed.nacls[from].associations.remove(association);
    observed.nacls[default].associations.push(moved);
    let db = bindings.nacls["database"].clone();
    let nacl = observed.nacls.iter_mut().find(|n| n.id == db).unwrap();
    nacl.entries.retain(|e| !(e.rule_number == 100 && e.direction == Direction::Ingress));
    let mut capabilities = Capabilities::emulator("LocalStack 4.14.0".into());
    capabilities.divergences.insert(Divergence::NaclWithoutDefaultDeny);
    let snapshot = Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        captured_at: 1_700_000_000,
        target: "LocalStack 4.14.0 (a test's snapshot)".into(),
        capabilities,
        observed,
    };
    std::fs::create_dir_all(dir.path().join("network")).unwrap();
    std::fs::write(dir.path().join(SPEC), &src.text).unwrap();
    let snap = dir.path().join("deployment.json");
    std::fs::write(&snap, serde_json::to_string_pretty(&snapshot).unwrap()).unwrap();
    (dir, snap)
}

fn name(f: Format) -> String {
    f.to_possible_value().expect("every format has a name").get_name().to_string()
}

#[test]
fn every_format_renders_from_the_json_report_as_from_the_validation_itself() {
    let (dir, snap) = repository();
    let snap = snap.to_str().unwrap();
    let live =
        |format: &str| microseg(dir.path(), &["validate", "--from-snapshot", snap, "--spec", SPEC, "--format", format]);

    // Once, as the gate action does: the verdict to the log, the JSON to a file.
    let once = microseg(
        dir.path(),
        &["validate", "--from-snapshot", snap, "--spec", SPEC, "--format", "text", "--report-json", "gate.json"],
    );
    assert_eq!(once.status.code(), Some(exit::FINDINGS), "{}", String::from_utf8_lossy(&once.stderr));
    assert_eq!(once.stdout, live("text").stdout, "--report-json changes nothing on stdout");

    let formats = Format::value_variants();
    assert_eq!(formats.len(), 7, "a new format is covered here by itself; check the list: {formats:?}");
    for &format in formats {
        let f = name(format);
        let expected = live(&f);
        assert_eq!(expected.status.code(), Some(exit::FINDINGS), "{f}: {}", String::from_utf8_lossy(&expected.stderr));
        assert!(!expected.stdout.is_empty(), "{f}");
        for command in ["report", "validate"] {
            let rendered = microseg(dir.path(), &[command, "--from-json", "gate.json", "--format", &f]);
            assert_eq!(
                rendered.status.code(),
                expected.status.code(),
                "{command} {f}: {}",
                String::from_utf8_lossy(&rendered.stderr)
            );
            assert!(
                rendered.stdout == expected.stdout,
                "{command} --from-json --format {f} differs from validate --format {f}:\n--- from the JSON\n{}\n--- validate\n{}",
                String::from_utf8_lossy(&rendered.stdout),
                String::from_utf8_lossy(&expected.stdout)
            );
        }
    }
    // `report` draws by default, from the JSON too.
    let drawn = microseg(dir.path(), &["report", "--from-json", "gate.json"]);
    assert_eq!(drawn.stdout, live("mermaid").stdout);

    // The JSON file is what `--format json` prints.
    assert_eq!(std::fs::read(dir.path().join("gate.json")).unwrap(), live("json").stdout);
}

#[test]
fn sarif_locates_the_findings_in_the_spec_as_the_caller_names_it() {
    let (dir, snap) = repository();
    let out = microseg(
        dir.path(),
        &["validate", "--from-snapshot", snap.to_str().unwrap(), "--spec", SPEC, "--format", "sarif"],
    );
    assert_eq!(out.status.code(), Some(exit::FINDINGS), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "MS-ASSOC-DEFAULT-NACL"), "{doc:#}");
    assert!(results.iter().any(|r| r["ruleId"] == "MS-NACL-ENTRY-MISSING"), "{doc:#}");
    for r in results {
        // A URI reference: the space percent-encoded, relative to the repository's root.
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "network/segmentation%20spec.toml"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("example.invalid"), "no placeholder address in what users upload");
}

#[test]
fn a_report_that_cannot_be_rendered_again_is_refused_naming_file_and_field() {
    let (dir, snap) = repository();
    let gate = microseg(
        dir.path(),
        &["validate", "--from-snapshot", snap.to_str().unwrap(), "--spec", SPEC, "--format", "json"],
    );
    let mut doc: serde_json::Value = serde_json::from_slice(&gate.stdout).unwrap();

    // A verdict edited by hand: not what its own inputs give.
    doc["exit_code"] = 0.into();
    std::fs::write(dir.path().join("edited.json"), doc.to_string()).unwrap();
    let out = microseg(dir.path(), &["report", "--from-json", "edited.json", "--format", "sarif"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::USAGE), "{err}");
    assert!(err.contains("edited.json") && err.contains("field `exit_code`"), "{err}");
    assert!(out.stdout.is_empty(), "nothing rendered from a report that is not what it claims");

    // No such file; and a spec or a target beside --from-json is a usage error.
    let out = microseg(dir.path(), &["report", "--from-json", "missing.json"]);
    assert_eq!(out.status.code(), Some(exit::USAGE));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read report missing.json"));
    for extra in [&["--spec", SPEC][..], &["--scenario", "three-tier"], &["--region", "eu-west-1"]] {
        let out = microseg(dir.path(), &[&["report", "--from-json", "edited.json"][..], extra].concat());
        assert_eq!(out.status.code(), Some(exit::USAGE), "{extra:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{extra:?}");
    }
}
