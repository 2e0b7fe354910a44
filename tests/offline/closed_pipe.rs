//! A closed pipe is a normal end: `microseg … | head` stops the output and exits 141 (as
//! a process that SIGPIPE ended), with nothing on stderr: no panic, no backtrace, even
//! with `RUST_BACKTRACE=1`. The reader here goes away before the first line, the
//! strictest case. (The subcommands that need an emulator: tests/localstack/terminal.rs.)

use std::process::Command;

use crate::pipe::with_stdout_closed;

#[test]
fn plan_completions_and_man_end_quietly_on_a_closed_pipe() {
    for args in [
        &["plan"][..],
        &["plan", "--reach"],
        &["plan", "--reach", "--json"],
        &["plan", "--scenario", "microservices", "--variant", "hardened", "--reach"],
        &["completions", "bash"],
        &["man"],
    ] {
        let out = with_stdout_closed(Command::new(env!("CARGO_BIN_EXE_microseg")).args(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} said on stderr: {stderr}");
    }
}
