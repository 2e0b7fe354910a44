//! Suites that need no emulator: the CLI's input checking and its exit codes.

// Bad input: a clear error, exit code 2, and no API call.
mod bad_input;
