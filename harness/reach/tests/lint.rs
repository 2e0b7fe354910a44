//! Shadowed and redundant rules, on cases worked by hand.

mod common;

use common::*;
use microseg_reach::lint::{self, LintKind};
use microseg_reach::{Group, Nacl};

fn kinds(l: &[lint::RuleLint]) -> Vec<(String, LintKind)> {
    l.iter().map(|x| (x.rule.clone(), x.kind)).collect()
}

#[test]
fn an_allow_under_a_broader_earlier_deny_is_shadowed() {
    // #100 denies all tcp from the VPC; #110 allows ssh from the management subnet
    // inside it: #110 never decides a packet.
    let n = Nacl::new(
        "web",
        [entry(100, "in", "tcp", "all", "10.0.0.0/16", "deny"), entry(110, "in", "tcp", "22", "10.0.5.0/24", "allow")],
    );
    let l = lint::nacl(&n);
    assert_eq!(kinds(&l), [("#110 allow tcp/22 10.0.5.0/24".to_string(), LintKind::Shadowed)]);
    assert_eq!(l[0].because, ["#100 deny tcp/all 10.0.0.0/16"]);
}

#[test]
fn an_entry_covered_by_two_earlier_ones_together_is_shadowed() {
    // #100 and #110 allow ports 0-499 and 500-65535; #120 (443) is covered by the pair,
    // though by neither alone.
    let n = Nacl::new(
        "n",
        [
            entry(100, "in", "tcp", "0-499", "0.0.0.0/0", "allow"),
            entry(110, "in", "tcp", "500-65535", "0.0.0.0/0", "allow"),
            entry(120, "in", "tcp", "443", "10.0.0.0/8", "deny"),
        ],
    );
    assert_eq!(kinds(&lint::nacl(&n)), [("#120 deny tcp/443 10.0.0.0/8".to_string(), LintKind::Shadowed)]);
}

#[test]
fn an_explicit_deny_all_is_redundant_with_the_default_deny() {
    // #200 denies everything; nothing after it allows anything, so the implicit * entry
    // would deny the same packets. The allow at #100 is needed and not reported.
    let n = Nacl::new(
        "db",
        [entry(100, "in", "tcp", "3306", "10.0.3.0/24", "allow"), entry(200, "in", "-1", "", "0.0.0.0/0", "deny")],
    );
    let l = lint::nacl(&n);
    assert_eq!(kinds(&l), [("#200 deny all 0.0.0.0/0".to_string(), LintKind::Redundant)]);
    assert_eq!(l[0].because, ["the default deny (*)"]);
}

#[test]
fn an_allow_that_a_later_allow_repeats_is_redundant_but_one_that_a_later_deny_would_flip_is_not() {
    // #100 allows 443 from the VPC and #110 allows all tcp from anywhere: #100 changes
    // nothing. Put a deny of the VPC at #105 instead: #100 now matters.
    let redundant = Nacl::new(
        "n",
        [entry(100, "in", "tcp", "443", "10.0.0.0/16", "allow"), entry(110, "in", "tcp", "all", "0.0.0.0/0", "allow")],
    );
    assert_eq!(kinds(&lint::nacl(&redundant)), [("#100 allow tcp/443 10.0.0.0/16".to_string(), LintKind::Redundant)]);
    let needed = Nacl::new(
        "n",
        [
            entry(100, "in", "tcp", "443", "10.0.0.0/16", "allow"),
            entry(105, "in", "-1", "", "10.0.0.0/16", "deny"),
            entry(110, "in", "tcp", "all", "0.0.0.0/0", "allow"),
        ],
    );
    assert!(lint::nacl(&needed).is_empty(), "{:?}", lint::nacl(&needed));
}

#[test]
fn group_rules_covered_by_broader_ones_are_redundant_in_their_direction_only() {
    // ssh from 10.0.5.0/24 is inside ssh from 10.0.0.0/8; a reference to group mgmt is
    // inside "all tcp from 0.0.0.0/0"... only in the second group. Egress is apart.
    let g = Group {
        name: "web".into(),
        rules: vec![
            cidr_rule("in", "tcp", "22", "10.0.0.0/8"),
            cidr_rule("in", "tcp", "22", "10.0.5.0/24"),
            group_rule("in", "tcp", "22", 1, "mgmt"),
            cidr_rule("out", "tcp", "22", "10.0.5.0/24"),
        ],
    };
    assert_eq!(kinds(&lint::group(&g)), [("ingress tcp/22 from 10.0.5.0/24".to_string(), LintKind::Redundant)]);
    let world = Group {
        name: "web".into(),
        rules: vec![cidr_rule("in", "tcp", "all", "0.0.0.0/0"), group_rule("in", "tcp", "22", 1, "mgmt")],
    };
    let l = lint::group(&world);
    assert_eq!(kinds(&l), [("ingress tcp/22 from group mgmt".to_string(), LintKind::Redundant)]);
    assert_eq!(l[0].because, ["ingress tcp/all from 0.0.0.0/0"]);
}
