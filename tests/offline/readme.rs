//! The README's "Use it from your own tests" shows the example crate's test verbatim: a
//! user who copies it gets code that compiles and passes, because CI runs the file.

#[test]
fn the_readme_shows_the_example_crates_test_verbatim() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let test = std::fs::read_to_string(format!("{root}/harness/example/tests/segmentation.rs")).unwrap();
    let section = readme
        .split("## Use it from your own tests")
        .nth(1)
        .expect("the README has a \"Use it from your own tests\" section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a ```rust block");
    assert_eq!(block, test, "README.md's Rust block differs from harness/example/tests/segmentation.rs");
}
