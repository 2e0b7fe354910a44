//! The recipe's own shell script, run as written with the AWS CLI against LocalStack,
//! then gated by `microseg validate`: an implementation microseg did not write.
//!
//! The script writes ids to fixed /tmp paths and its cleanup runs `rm -f /tmp/*-id`, so
//! two runs at once would share them, and a cleanup would delete another's. Before it
//! runs, every `/tmp/` in the script is rewritten to a directory of this test's own: no
//! mount namespace, no privileges, and it passes from a clone anywhere, as any user.
//! That rewrite is the only change made to the recipe's text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use microseg_cli::exit;
use microseg_harness::checks::without_ids;
use microseg_harness::target::python;

use crate::support::{microseg_on_shared, shared_endpoint};

const RECIPE: &str = include_str!("../fixtures/recipe-microsegmentation-nacl-sg.md");

/// The ```bash blocks of the recipe's sections whose heading starts with one of `sections`.
pub(crate) fn blocks(sections: &[&str]) -> String {
    microseg_harness::bench::shell_blocks(RECIPE, sections)
}

fn aws_cli() -> PathBuf {
    let py = python::find_python().expect("python for the venv");
    python::venv_dir(python::REQUIREMENTS, &py).join("bin")
}

/// The script with each fixed `/tmp/` path moved into `dir`. The recipe leaves its
/// paths unquoted, so `dir` must be a word to the shell.
fn private_tmp(script: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    assert!(
        dir.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "{dir}: the recipe's unquoted paths need a directory without spaces or shell characters (set TMPDIR)"
    );
    script.replace("/tmp/", &format!("{dir}/"))
}

/// Runs a script as written (no `set -e`: the recipe does not use it), its `/tmp/`
/// paths in `tmp`, against the shared emulator.
fn run_script(script: &str, tmp: &Path, home: &Path) -> std::process::Output {
    run_script_at(shared_endpoint(), script, tmp, home)
}

/// [`run_script`] against the emulator at `endpoint`, with the AWS CLI of the host
/// target's venv and the emulator's test credentials.
pub(crate) fn run_script_at(endpoint: &str, script: &str, tmp: &Path, home: &Path) -> std::process::Output {
    let config = home.join("config");
    std::fs::write(&config, "[default]\nregion = us-east-1\noutput = text\n").unwrap();
    let script_path = home.join("script.sh");
    std::fs::write(&script_path, private_tmp(script, tmp)).unwrap();
    Command::new("bash")
        .arg(&script_path)
        .env("PATH", format!("{}:{}", aws_cli().display(), std::env::var("PATH").unwrap_or_default()))
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap()
}

#[test]
fn the_fixed_tmp_paths_move_into_the_tests_own_directory() {
    let _t = crate::support::timer();
    let dir = Path::new("/home/runner/work/tmp.Xy_1");
    let moved = private_tmp("echo $V > /tmp/vpc-id\nrm -f /tmp/*-id\n", dir);
    assert_eq!(moved, "echo $V > /home/runner/work/tmp.Xy_1/vpc-id\nrm -f /home/runner/work/tmp.Xy_1/*-id\n");
    // Every fixed path in the recipe moves: none is left pointing at the shared /tmp.
    let script = blocks(&["Preparation", "Steps", "Cleanup"]);
    assert!(script.contains("/tmp/"), "the recipe no longer writes to /tmp: the rewrite is moot");
    assert!(!private_tmp(&script, dir).contains("/tmp/"));
}

fn validate(args: &[&str]) -> std::process::Output {
    microseg_on_shared(&[&["validate", "--quiet"][..], args].concat())
}

#[test]
fn the_recipes_own_script_fails_the_gate_exactly_where_it_departs_from_its_intent() {
    let _t = crate::support::timer();
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // The recipe assumes one shell session from preparation to cleanup; keep its
    // variables for the cleanup blocks, as that session would.
    let build = run_script(
        &format!(
            "{}\ndeclare -p | grep -vE '^declare -[a-zA-Z]*r' > /tmp/.recipe-session\n",
            blocks(&["Preparation", "Steps"])
        ),
        tmp.path(),
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&build.stderr);
    // As docs/EMULATOR.md, "The recipe's own script against LocalStack", records: the
    // association command does not exist, and the managed policy does not either; the
    // script carries on regardless.
    assert!(stderr.contains("associate-network-acl"), "{stderr}");
    assert!(stderr.contains("NoSuchEntity"), "{stderr}");
    let vpc = std::fs::read_to_string(tmp.path().join("vpc-id")).unwrap().trim().to_string();
    assert!(vpc.starts_with("vpc-"), "{vpc}");

    let out = validate(&["--vpc-id", &vpc, "--format", "json"]);
    assert_eq!(out.status.code(), Some(exit::FINDINGS), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<(String, String, String)> = report["validate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["findings"].as_array().unwrap().iter().map(move |f| {
                let resource = without_ids(f["resource"].as_str().unwrap());
                (c["id"].as_str().unwrap().to_string(), f["id"].as_str().unwrap().to_string(), resource)
            })
        })
        .collect();
    let s = |c: &str, f: &str, r: &str| (c.to_string(), f.to_string(), r.to_string());
    let mut expected: BTreeSet<_> = ["dmz", "web", "app", "database", "management", "monitoring"]
        .iter()
        .map(|z| s("associations", "MS-ASSOC-DEFAULT-NACL", &format!("subnet {z}")))
        .collect();
    expected.extend([
        // attach-role-policy failed: the role can deliver nothing; its trust policy has no condition.
        s("flow-log", "MS-ROLE-POLICY-MISSING", "IAM role VPCFlowLogsRole"),
        s("flow-log", "MS-ROLE-CONFUSED-DEPUTY", "IAM role VPCFlowLogsRole"),
        // No metric filter publishes what the alarm watches.
        s("alarm", "MS-ALARM-FILTER-MISSING", "log group /aws/vpc/microsegmentation/flowlogs"),
        s("alarm", "MS-ALARM-MISSING", "alarm"),
        // Every inbound entry: the recipe gives create-network-acl-entry neither --ingress
        // nor --no-egress, and Egress is a required parameter, so each call fails.
        s("recipe-v5-nacl-order", "MS-SOURCE-NACL-ORDER", "NACL app"),
        // The IGW is attached, but no route leads to it.
        s("routes", "MS-RT-MISSING", "route table public"),
        // The recipe's own validation steps 1 and 4 fail on its own deployment.
        s("recipe-v1-nacl-associations", "MS-SOURCE-NACL-ASSOCIATIONS", "NACL web"),
        s("recipe-v4-routes", "MS-SOURCE-ROUTE", "subnet web"),
        // Intent, worked by hand: every subnet sits on the default NACL (allow all), so
        // the groups and routes decide. With no route to the IGW the internet cannot
        // reach the DMZ; and flows the recipe's own NACLs would block (web → app,
        // app → database, management's SSH) pass here, because those NACLs are not in
        // force. The tiers have no route out.
        s("intent", "MS-INTENT-BLOCKED", "flow internet → dmz tcp/80"),
        s("intent", "MS-INTENT-BLOCKED", "flow internet → dmz tcp/443"),
        s("intent", "MS-INTENT-UNEXPECTEDLY-ALLOWED", "flow web → app tcp/8080"),
        s("intent", "MS-INTENT-UNEXPECTEDLY-ALLOWED", "flow app → database tcp/3306"),
        s("intent", "MS-INTENT-UNEXPECTEDLY-ALLOWED", "flow management → web tcp/22"),
        s("intent", "MS-INTENT-UNEXPECTEDLY-ALLOWED", "flow management → app tcp/22"),
        s("intent", "MS-INTENT-UNEXPECTEDLY-ALLOWED", "flow management → database tcp/22"),
        // Unintended traffic, by hand from the same facts: the DMZ group admits 80/443
        // from 0.0.0.0/0, which inside the VPC means every zone; the management group
        // admits ssh from 10.0.0.0/8, so every other zone can ssh into management. That
        // includes monitoring, which has no group of its own: its instances get the VPC's
        // default group, which lets everything out. No NACL stops any of it.
        s("intent", "MS-REACH-UNINTENDED", "flow web → dmz tcp/80,443"),
        s("intent", "MS-REACH-UNINTENDED", "flow app → dmz tcp/80,443"),
        s("intent", "MS-REACH-UNINTENDED", "flow database → dmz tcp/80,443"),
        s("intent", "MS-REACH-UNINTENDED", "flow management → dmz tcp/80,443"),
        s("intent", "MS-REACH-UNINTENDED", "flow monitoring → dmz tcp/80,443"),
        s("intent", "MS-REACH-UNINTENDED", "flow dmz → management tcp/22"),
        s("intent", "MS-REACH-UNINTENDED", "flow web → management tcp/22"),
        s("intent", "MS-REACH-UNINTENDED", "flow app → management tcp/22"),
        s("intent", "MS-REACH-UNINTENDED", "flow database → management tcp/22"),
        s("intent", "MS-REACH-UNINTENDED", "flow monitoring → management tcp/22"),
        // And the opening the design has (DMZ to the internet's high ports) is not there:
        // without an IGW route nothing reaches the internet.
        s("intent", "MS-REACH-DESIGN-DRIFT", "flow dmz → internet tcp/1024-65535"),
    ]);
    for (nacl, rules) in [
        ("dmz", &[100, 110, 120][..]),
        ("web", &[100, 110, 120, 130]),
        ("app", &[100, 110, 120]),
        ("database", &[100, 110, 120]),
    ] {
        for r in rules {
            expected.insert(s("nacl-rules", "MS-NACL-ENTRY-MISSING", &format!("NACL {nacl} ingress rule #{r}")));
        }
    }
    assert_eq!(
        found,
        expected,
        "the gate's findings on the recipe's script:\n{}",
        serde_json::to_string_pretty(&report["validate"]["checks"]).unwrap()
    );

    // The script's cleanup, then proof of what it leaves.
    let cleanup =
        run_script(&format!(". /tmp/.recipe-session 2>/dev/null\n{}", blocks(&["Cleanup"])), tmp.path(), home.path());
    assert!(String::from_utf8_lossy(&cleanup.stderr).contains("associate-network-acl"));
    let gone = validate(&["--expect-gone", "--vpc-id", &vpc]);
    let text = String::from_utf8_lossy(&gone.stdout).to_string();
    eprintln!("expect-gone after the recipe's cleanup:\n{text}");
    // On LocalStack the cleanup removes everything but the VPC's default NACL, which the
    // emulator's DeleteVpc orphans (docs/EMULATOR.md, "A VPC's default NACL cannot be
    // freed"): named as that divergence, not counted.
    assert_eq!(gone.status.code(), Some(exit::PASS), "{text}");
    let orphan = "not counted: default-network-acl acl-";
    assert!(
        text.contains(orphan) && text.contains(&format!("({vpc}): orphaned by the emulator's DeleteVpc")),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("not counted:")).count(), 1, "{text}");
}
