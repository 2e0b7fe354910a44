//! Suites that need an emulator. One LocalStack host process serves the whole binary
//! (started on first use, stopped at exit by the reaper); tests of the targets
//! themselves start their own.
#![cfg(feature = "localstack")]

#[path = "../common/pipe.rs"]
mod pipe;
#[path = "../common/skip.rs"]
mod skip;
mod support;

// Targets: host, container, endpoint, aws guard; nothing left running.
mod targets;
// The self-started moto and localemu targets: probe, one run, nothing left running.
mod emulators;
// Real traffic between localemu's instance containers, compared with the evaluator.
mod traffic;
// The recipe end to end: build, checks, teardown on success, error, panic; keep + sweep.
mod scenario;
// Single mutations of a live deployment, each caught by the right finding.
mod mutations;
// The other sources' scenarios and a user's own spec: run, gated, broken, swept.
mod scenarios;
// The acceptance gate: validate, snapshot, expect-gone through the CLI.
mod gate;
// validate --expect-gone: one leftover of every kind per scenario, listed exactly.
mod leftovers;
// The reused emulator: emulator up/status/down, --target reuse, idle stop, a killed supervisor.
mod reuse;
// The recipe's own bash script, run as written, then gated.
mod recipe_script;
// The gate image: LocalStack plus microseg, deployed to with the AWS CLI, gated inside.
mod gate_image;
// The gate action's steps, run as the runner runs them: validate once, render from it.
mod gate_action;
// A CloudFormation implementation, correct and broken, gated.
mod cloudformation;
// `microseg bench`: phases timed, calls held to the floor.
mod bench;
// The log file and plain output when piped.
mod terminal;
// The public API for test authors: drop on panic, explicit teardown, errors.
mod api;
// A fault-injecting proxy between the SDK and LocalStack.
mod faults;
// The sandbox role's policy against every operation microseg calls.
mod policy;
// Jobs: an earlier run's leftovers refuse the next run of its job, or are swept first.
mod jobs;
