//! The `microseg` binary: a shim over `microseg_cli`, compiled by the root package so
//! that the integration suites get `CARGO_BIN_EXE_microseg` (root Cargo.toml).

fn main() -> std::process::ExitCode {
    microseg_cli::main()
}
