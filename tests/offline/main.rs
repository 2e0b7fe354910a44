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

// The topology picture: the same in Mermaid and HTML, and clean at 1024, 1300, 1920 px.
mod picture;

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

// One validation, every format: `report --from-json` renders what `validate` prints.
mod from_json;

// docs/GATE.md: the caller's workflow it shows is the linted file; the action's inputs
// and outputs are documented.
mod gate_docs;

// The gate action's install step: a release is installed only with a matching checksum.
mod gate_install;

// The sandbox role's policies against the operations microseg calls.
mod sandbox_policy;
