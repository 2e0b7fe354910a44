//! `cargo test` after `cargo build` compiles no dependency a second time.
//!
//! Cargo resolves features once for a normal build and once for a test build, where
//! dev-dependencies join the graph. If a dev-dependency turns on another feature of a
//! crate the AWS SDK is built from (serde's `alloc`, say), that crate and everything
//! above it, the whole SDK included, compiles again for the tests: 12.5 minutes on a
//! 2-core machine. The root package pins those features (Cargo.toml, "Declared only for
//! their features"); this test fails when a new dependency brings the difference back.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Packages the test build may compile again, each with the reason it costs little.
const MAY_DIFFER: &[(&str, &str)] = &[
    // Built for the host only in the test build, for rstest's proc macro
    // (rstest_macros → proc-macro-crate → toml_edit); the normal build's copies are
    // target ones, which the tests reuse unchanged.
    ("toml_parser", "host copy for rstest's proc macro"),
    ("winnow", "host copy for rstest's proc macro"),
];

/// `name version` → each feature set it is built with, over the whole workspace.
fn resolved(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--workspace", "--features", "localstack", "--offline", "--locked", "--prefix", "none"])
        .args(["-e", edges, "-f", "{p}|{f}"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree -e {edges}: {}", String::from_utf8_lossy(&out.stderr));
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, features)) = line.trim_end_matches(" (*)").split_once('|') else { continue };
        // `name v1.2.3 (/path)` for workspace members: name and version are enough.
        let key = package.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        map.entry(key).or_default().insert(features.to_string());
    }
    map
}

#[test]
fn the_test_build_resolves_every_shared_dependency_as_the_normal_build_does() {
    let normal = resolved("normal,build");
    let test = resolved("normal,build,dev");
    assert!(normal.keys().any(|k| k.starts_with("aws-sdk-ec2 ")), "the normal graph holds the SDK: {normal:?}");
    let differ: Vec<String> = normal
        .iter()
        .filter(|(key, _)| !MAY_DIFFER.iter().any(|(name, _)| key.split(' ').next() == Some(name)))
        // This workspace's own crates compile for the tests anyway (the example crate
        // turns on microseg-harness's `testing` feature).
        .filter(|(key, _)| !key.starts_with("microseg"))
        // A feature set the normal build has not built is a new compile of that crate
        // and of everything above it. (Fewer sets is fine: with `debug = 0` a host and a
        // target copy with the same features are one compile.)
        .filter(|(key, features)| !test.get(*key).is_some_and(|t| t.is_subset(features)))
        .map(|(key, features)| format!("{key}: normal build {features:?}, test build {:?}", test.get(key)))
        .collect();
    assert!(
        differ.is_empty(),
        "the test build turns on other features of these, so they and everything built on them compile twice; \
         pin the test build's features in the root Cargo.toml:\n{}",
        differ.join("\n")
    );
}
