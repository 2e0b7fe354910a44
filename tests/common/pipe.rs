//! Runs the binary as `microseg … | head` would, at its strictest: the reader of stdout
//! (and with [`with_both_closed`], of stderr) goes away before the first line.

use std::process::{Child, Command, Output, Stdio};

/// Spawns `cmd` with both streams piped and `RUST_BACKTRACE=1`, so a panic would show,
/// and closes the readers asked for.
fn spawn_closing(cmd: &mut Command, close_stderr: bool) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .expect("the binary starts");
    drop(child.stdout.take());
    if close_stderr {
        drop(child.stderr.take());
    }
    child
}

/// Runs `cmd` with its stdout's reader closed from the start.
pub fn with_stdout_closed(cmd: &mut Command) -> Output {
    spawn_closing(cmd, false).wait_with_output().expect("the binary ends")
}

/// As [`with_stdout_closed`], with stderr's reader gone too (`2>&1 | head`): only the
/// exit status is left to tell a quiet end (141) from a panic (101).
#[allow(dead_code)] // the offline suite has no command that writes to stderr
pub fn with_both_closed(cmd: &mut Command) -> std::process::ExitStatus {
    spawn_closing(cmd, true).wait().expect("the binary ends")
}
