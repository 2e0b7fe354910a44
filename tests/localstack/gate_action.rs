//! The gate action's own steps (`.github/actions/gate/action.yml`), run as the runner runs
//! a composite action's bash step (`bash --noprofile --norc -eo pipefail`), with the
//! environment its `env:` blocks give, on a deployment of the shared emulator: one
//! `validate`, every other format rendered from its JSON, SARIF located in the caller's
//! spec, the job summary written, and the last step failing on findings. (The install
//! step is `tests/offline/gate_install.rs`'s.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use microseg_cli::exit;
use microseg_harness::spec;

use crate::support::{SweepOnDrop, kept_recipe_run, shared_endpoint, text};

/// The `run: |` script of the action's step called `name`.
fn step_script(name: &str) -> String {
    let action =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.github/actions/gate/action.yml")).unwrap();
    let step = action
        .split("\n    - name: ")
        .find(|s| s.starts_with(name))
        .unwrap_or_else(|| panic!("action.yml has no step {name:?}"));
    let script = step.split("      run: |\n").nth(1).unwrap_or_else(|| panic!("step {name:?} has no run block"));
    script
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("        "))
        .map(|l| l.strip_prefix("        ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a step's script as the runner does, with `env` and the runner's files.
fn run_step(name: &str, workspace: &Path, runner: &Path, env: &[(&str, &str)]) -> (Output, BTreeMap<String, String>) {
    let script = runner.join("step.sh");
    std::fs::write(&script, step_script(name)).unwrap();
    let outputs = runner.join(format!("output-{}", name.replace(' ', "-")));
    std::fs::write(&outputs, "").unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .current_dir(workspace)
        .env("GITHUB_WORKSPACE", workspace)
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", runner.join("summary.md"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let written = std::fs::read_to_string(&outputs)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (out, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actions_steps_validate_once_and_render_every_format_from_that_report() {
    let _t = crate::support::timer();
    let (clients, _, report) = kept_recipe_run().await;
    let _sweep = SweepOnDrop::new(&clients, &report.run_id);
    // A finding: the database NACL's inbound #100 removed.
    clients
        .ec2
        .delete_network_acl_entry()
        .network_acl_id(&report.bindings.nacls["database"])
        .rule_number(100)
        .egress(false)
        .send()
        .await
        .unwrap();

    // The caller's repository: its spec at a path with a space in it.
    let workspace = tempfile::tempdir().unwrap();
    let runner = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(workspace.path().join("network")).unwrap();
    let (_, source) = spec::load("recipe").unwrap();
    std::fs::write(workspace.path().join("network/recipe spec.toml"), &source.text).unwrap();
    // microseg behind a wrapper that notes each command it is asked for.
    let calls = runner.path().join("calls");
    let wrapper = runner.path().join("microseg");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n", calls.display(), env!("CARGO_BIN_EXE_microseg")),
    )
    .unwrap();
    assert!(Command::new("chmod").arg("755").arg(&wrapper).status().unwrap().success());
    let microseg = wrapper.to_str().unwrap();
    let tag = format!("microseg:run-id={}", report.run_id);
    let target = format!("endpoint={}", shared_endpoint());
    let inputs = |spec: &'static str| {
        vec![
            ("MICROSEG", microseg.to_string()),
            ("SPEC", spec.to_string()),
            ("VPC_ID", String::new()),
            ("TAG", tag.clone()),
            ("TARGET", target.clone()),
            ("ACCOUNT", String::new()),
            ("REGION", String::new()),
            ("ZONE_TAGS", String::new()),
            ("WAIT", String::new()),
            ("REPORT_DIR", "microseg-gate".to_string()),
        ]
    };
    let as_env = |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();

    let env = as_env(&inputs("network/recipe spec.toml"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (validated, outputs) = run_step("Validate (once)", workspace.path(), runner.path(), &env);
    assert!(validated.status.success(), "{}", text(&validated));
    assert_eq!(outputs["exit-code"], exit::FINDINGS.to_string(), "{outputs:?}");
    let dir = workspace.path().join("microseg-gate").canonicalize().unwrap();
    assert_eq!(Path::new(&outputs["report-dir"]), dir);
    assert_eq!(Path::new(&outputs["json"]), dir.join("microseg.json"));
    assert!(
        text(&validated).contains("[MS-NACL-ENTRY-MISSING] NACL database"),
        "the verdict in the log: {}",
        text(&validated)
    );

    let (rendered, files) = run_step(
        "Render every format from that one report",
        workspace.path(),
        runner.path(),
        &[("MICROSEG", microseg), ("JSON", &outputs["json"]), ("DIR", &outputs["report-dir"])],
    );
    assert!(rendered.status.success(), "{}", text(&rendered));
    for (format, file) in [
        ("junit", "microseg.xml"),
        ("markdown", "microseg.md"),
        ("sarif", "microseg.sarif"),
        ("html", "microseg.html"),
        ("mermaid", "microseg.mmd"),
    ] {
        assert_eq!(Path::new(&files[format]), dir.join(file), "{files:?}");
        assert!(std::fs::metadata(dir.join(file)).unwrap().len() > 0, "{file} is empty");
    }
    // One reading of the deployment; every format from its JSON.
    let asked = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), ["validate", "report", "report", "report", "report", "report"]);

    let sarif: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("microseg.sarif")).unwrap()).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "MS-NACL-ENTRY-MISSING"), "{sarif:#}");
    for r in results {
        assert_eq!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "network/recipe%20spec.toml");
    }
    let summary = std::fs::read_to_string(runner.path().join("summary.md")).unwrap();
    assert!(summary.contains("| `MS-NACL-ENTRY-MISSING` | NACL database"), "{summary}");

    // The last step fails the job on findings, and only then.
    let (failed, _) = run_step("Fail on findings", workspace.path(), runner.path(), &[("CODE", "1")]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let (passed, _) = run_step("Fail on findings", workspace.path(), runner.path(), &[("CODE", "0")]);
    assert!(passed.status.success());

    // A spec that is not in the repository: the step stops before microseg is asked.
    std::fs::write(&calls, "").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    let outside_path = outside.path().to_str().unwrap().to_string();
    for (spec, says) in
        [("missing.toml", "is not a file in the repository"), (outside_path.as_str(), "lies outside the repository")]
    {
        let mut env = as_env(&inputs("unused"));
        env.retain(|(k, _)| *k != "SPEC");
        env.push(("SPEC", spec.to_string()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (refused, _) = run_step("Validate (once)", workspace.path(), runner.path(), &env);
        assert_eq!(refused.status.code(), Some(2), "{spec}: {}", text(&refused));
        assert!(text(&refused).contains(says), "{spec}: {}", text(&refused));
    }
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "", "microseg was asked nothing");
}
