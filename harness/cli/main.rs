//! The `microseg` binary: a thin shell over `microseg_harness::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let code = microseg_harness::cli::main().await;
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
