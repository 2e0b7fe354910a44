//! What a test does when a tool it needs is missing: outside CI it says why and skips;
//! with `CI=true` (set by GitHub Actions and by `.ci/run`) a skip would hide a gap in
//! coverage, so it fails instead.

/// Whether this is a CI run, where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the calling test with `why` (the caller returns right after), or fails it
/// under CI.
pub fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why}; under CI=true this test must run, not skip");
    eprintln!("SKIP {test}: {why}");
}
