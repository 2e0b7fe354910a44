//! The gate image, used as a team without Rust would (docs/GATE.md, "The gate image"):
//! `docker run` it with the endpoint published on loopback, deploy with the team's own
//! tools (here the recipe's own script, with the AWS CLI), and gate the deployment with
//! `microseg validate` inside the container.
//!
//! The image is built by `localstack/build-gate-image.sh` (what `build-image.sh` calls)
//! from this test's own binary, under a tag of the test's own, on the offline LocalStack
//! image: the test checks the code it was built with, and the one layer costs seconds.
//! Container and image are removed when the test ends, panics included.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use microseg_cli::exit;
use microseg_harness::checks::without_ids;
use microseg_harness::target::{container, docker_status, health, python};

use crate::recipe_script::{blocks, run_script_at};
use crate::support::{recipe, text};

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

/// Removes the image when dropped.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "--force", &self.0]);
    }
}

/// Removes the container (running or not) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.0]);
    }
}

/// (check, finding, resource without ids) of every finding in a JSON gate report.
fn findings(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    report["validate"]["checks"]
        .as_array()
        .expect("a gate report has checks")
        .iter()
        .flat_map(|c| {
            c["findings"].as_array().unwrap().iter().map(move |f| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    f["id"].as_str().unwrap().to_string(),
                    without_ids(f["resource"].as_str().unwrap()),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_image_serves_an_endpoint_and_gates_the_recipes_own_script_from_inside() {
    let _t = crate::support::timer();
    let base = container::configured_image();
    if docker_status().is_err() || !container::image_present(&base) {
        // `.ci/run` builds the image (localstack/build-image.sh) wherever Docker answers.
        let why = format!("no Docker engine answers, or image {base} is missing (localstack/build-image.sh builds it)");
        crate::skip::skip("the_gate_image_serves_an_endpoint_and_gates_the_recipes_own_script_from_inside", &why);
        return;
    }
    let py = python::find_python().expect("python >= 3.12 for the AWS CLI's venv");
    python::ensure_venv(&py).expect("the venv with the AWS CLI");

    let image = Image(format!("microseg/gate-test:{}", std::process::id()));
    let built = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/localstack/build-gate-image.sh"))
        .env("MICROSEG_GATE_BINARY", env!("CARGO_BIN_EXE_microseg"))
        .env("MICROSEG_GATE_IMAGE", &image.0)
        .env("MICROSEG_LOCALSTACK_IMAGE", &base)
        .output()
        .unwrap();
    assert!(built.status.success(), "build-gate-image.sh: {}", text(&built));

    // As documented, but on a free port: published on loopback alone.
    let run = docker(&["run", "--detach", "--publish", "127.0.0.1::4566", &image.0]);
    assert!(run.status.success(), "docker run: {}", text(&run));
    let gate = Container(String::from_utf8_lossy(&run.stdout).trim().to_string());
    let port = docker(&["port", &gate.0, "4566/tcp"]);
    let published = String::from_utf8_lossy(&port.stdout).trim().to_string();
    let address: std::net::SocketAddr =
        published.lines().next().unwrap_or_default().parse().unwrap_or_else(|e| panic!("{published:?}: {e}"));
    assert!(address.ip().is_loopback(), "published on {published}");
    let endpoint = format!("http://{address}");
    let id = gate.0.clone();
    let alive = move || {
        let state = docker(&["inspect", "--format", "{{.State.Running}}", &id]);
        (String::from_utf8_lossy(&state.stdout).trim() != "true").then(|| text(&docker(&["logs", "--tail", "30", &id])))
    };
    health::wait_ready(&endpoint, Duration::from_secs(180), alive)
        .await
        .unwrap_or_else(|e| panic!("the gate image's LocalStack never became ready: {e:?}"));

    // The team's own tools: the recipe's script with the AWS CLI, against the endpoint.
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let deployed = run_script_at(&endpoint, &blocks(&["Preparation", "Steps"]), tmp.path(), home.path());
    let vpc = std::fs::read_to_string(tmp.path().join("vpc-id")).unwrap_or_default().trim().to_string();
    assert!(vpc.starts_with("vpc-"), "the recipe's script made no VPC: {}", text(&deployed));

    // The gate inside the container, as documented: the LocalStack beside it on the
    // container's own loopback, the built-in recipe.
    let inside = docker(&[
        "exec",
        &gate.0,
        "microseg",
        "validate",
        "--quiet",
        "--target",
        "endpoint=http://127.0.0.1:4566",
        "--scenario",
        "recipe",
        "--vpc-id",
        &vpc,
        "--format",
        "json",
    ]);
    assert_eq!(inside.status.code(), Some(exit::FINDINGS), "{}", text(&inside));
    let report: serde_json::Value = serde_json::from_slice(&inside.stdout).unwrap();
    assert!(
        report["validate"]["source"].as_str().unwrap().contains("http://127.0.0.1:4566"),
        "the gate read the LocalStack beside it: {}",
        report["validate"]["source"]
    );

    // The recipe's `associate-network-acl` is no AWS CLI command, so every zone of the
    // spec stays on the VPC's default NACL: one association finding per zone.
    let found = findings(&report);
    let associations: BTreeSet<_> = found.iter().filter(|(check, ..)| check == "associations").cloned().collect();
    let expected: BTreeSet<_> = recipe()
        .zones
        .iter()
        .map(|z| ("associations".to_string(), "MS-ASSOC-DEFAULT-NACL".to_string(), format!("subnet {}", z.name)))
        .collect();
    assert_eq!(associations, expected, "{}", serde_json::to_string_pretty(&report["validate"]["checks"]).unwrap());

    // And the image's gate says what this test's binary says from outside.
    let outside = Command::new(env!("CARGO_BIN_EXE_microseg"))
        .args(["validate", "--quiet", "--scenario", "recipe", "--vpc-id", &vpc, "--format", "json"])
        .args(["--target", &format!("endpoint={endpoint}")])
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(exit::FINDINGS), "{}", text(&outside));
    assert_eq!(findings(&serde_json::from_slice(&outside.stdout).unwrap()), found);
}
