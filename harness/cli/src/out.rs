//! Standard output that a closed pipe ends quietly.
//!
//! `microseg plan --reach | head -2` closes the pipe after two lines. Rust ignores
//! SIGPIPE, so the next write fails with `BrokenPipe`, and `println!` would panic on it
//! (exit 101, and a backtrace where `RUST_BACKTRACE` is set). Every report line goes
//! through [`write`] instead, which turns a closed pipe into [`CliError::ClosedPipe`]:
//! output stops, nothing more is printed, and the process exits 141, the status a shell
//! gives a process that SIGPIPE ended. Teardown is never skipped for it: a run prints its
//! report only after teardown. Lines for stderr go through [`errln`], which drops them
//! when stderr is closed.

use std::fmt;
use std::io::Write;

use crate::exit::CliError;

/// Writes to stdout, and flushes: an error is known at the write that caused it.
pub fn write(text: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(text).and_then(|()| stdout.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::ClosedPipe,
        _ => CliError::Output(format!("cannot write to standard output: {e}")),
    })
}

/// `print!` that returns [`CliError::ClosedPipe`] from the enclosing function when the
/// reader has gone.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*))? };
}

/// `println!` that returns [`CliError::ClosedPipe`] from the enclosing function when the
/// reader has gone.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n"))? };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))? };
}

/// `eprintln!` that never panics: progress, warnings and errors are for people, and a
/// closed stderr (`2>&1 | head`) must not stop a command, least of all mid-teardown.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) use {errln, out, outln};
