//! docs/GATE.md stays true to the gate action: the caller's workflow it shows is the file
//! CI lints with zizmor (`docs/examples/gate-caller.yml`), and every input and output of
//! `.github/actions/gate/action.yml` is documented there, none that does not exist.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_guide_shows_the_linted_caller_workflow_verbatim() {
    let guide = read("docs/GATE.md");
    let example = read("docs/examples/gate-caller.yml");
    let section = guide.split("## A worked example").nth(1).expect("docs/GATE.md has its worked example");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the worked example has a ```yaml block");
    assert_eq!(block, example, "docs/GATE.md's workflow differs from docs/examples/gate-caller.yml");
    // The example calls the action it documents, and gates both kinds of target.
    assert!(example.contains("/.github/actions/gate@"));
    assert!(example.contains("target: endpoint=http://localhost:4566") && example.contains("target: aws"));
}

/// The keys of a top-level mapping (`inputs:`, `outputs:`) of action.yml: the lines
/// indented by two spaces under it.
fn keys(action: &str, mapping: &str) -> BTreeSet<String> {
    action
        .split(&format!("\n{mapping}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("action.yml has no {mapping}"))
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| l.strip_prefix("  ").filter(|k| !k.starts_with(' ')))
        .filter_map(|l| l.strip_suffix(':'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_input_and_output_of_the_action_is_documented() {
    let action = read(".github/actions/gate/action.yml");
    let guide = read("docs/GATE.md");
    let inputs = keys(&action, "inputs");
    let outputs = keys(&action, "outputs");
    assert!(inputs.contains("spec") && inputs.contains("allow-account"), "{inputs:?}");
    assert!(outputs.contains("exit-code") && outputs.contains("microseg"), "{outputs:?}");
    let section = guide.split("## The GitHub action").nth(1).unwrap().split("\n## ").next().unwrap();
    for (kind, names) in [("input", &inputs), ("output", &outputs)] {
        for name in names {
            assert!(section.contains(&format!("`{name}`")), "the action's {kind} `{name}` is not in docs/GATE.md");
        }
    }
    // The retired input stays retired: it was never used.
    assert!(!inputs.contains("microseg-ref"));
    // Each permission the action's header asks for is in the guide's table.
    for permission in ["contents: read", "security-events: write", "actions: read", "id-token: write"] {
        assert!(action.contains(permission), "{permission}");
        assert!(section.contains(&format!("| `{permission}` |")), "{permission} is not in docs/GATE.md's table");
    }
}
