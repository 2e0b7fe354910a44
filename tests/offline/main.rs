//! Suites that need no emulator: the CLI's input checking and exit codes, and the HTML
//! report rendered in a browser.

#[path = "../common/pipe.rs"]
mod pipe;
#[path = "../common/skip.rs"]
mod skip;

// Bad input: a clear error, exit code 2, and no API call.
mod bad_input;

// The HTML report as a browser shows it.
mod html;

// SARIF against the official schema.
mod sarif;

// `cargo test` after `cargo build` compiles no dependency again.
mod one_compile;

// The README's library example is the example crate's test.
mod readme;

// `| head`: a closed pipe ends the output quietly, exit 141.
mod closed_pipe;

// Shell completions and the man page, from the clap definitions.
mod completions;

// The JSON report against its schema.
mod report_schema;

// The sandbox role's policies against the operations microseg calls.
mod sandbox_policy;
