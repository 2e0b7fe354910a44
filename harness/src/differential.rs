//! Differential runs: one scenario on several emulators, and where they disagree about
//! what the same deployment looks like.
//!
//! Every emulator is handed the same build, so the observed models ([`Observed`]) should
//! match once what is unique to an instance is taken out: resource ids, the run id, the
//! account, the creation time. [`normalise`] does that: each id the build bound becomes
//! its logical name (`subnet:web`, `nacl:dmz`), the rest by what they are (`nacl:(default)`,
//! `rtb:(main)`, the `Name` tag) or, last, by their kind alone. [`compare`] then lists
//! every field where the normalised models differ. A disagreement is an emulator bug (or
//! a liberty one of them takes) that could hide a real failure: at most one of them can
//! be AWS's answer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::bindings::Bindings;
use crate::observe::Observed;
use crate::run_id::{RunId, TAG_CREATED_AT};

/// The id prefixes of EC2 resources, longest first so `aclassoc-` wins over `acl-`.
const ID_PREFIXES: [&str; 16] = [
    "rtbassoc", "aclassoc", "eipalloc", "eipassoc", "subnet", "vpce", "eigw", "igw", "nat", "eni", "pcx", "rtb", "acl",
    "vpc", "sg", "fl",
];

/// One normalised model: the target's name and its observed deployment, ids taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Which target observed it (`moto`, `localemu`, `localstack-host`).
    pub target: String,
    /// The normalised model.
    pub value: Value,
}

/// Where the models differ: a field's path and each target's value there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// `nacls[nacl:dmz].entries` or `security_groups[sg:web].rules[{…}]` (a set member).
    pub path: String,
    /// Target → its value (`(absent)` where the field or member is missing).
    pub values: BTreeMap<String, String>,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values: Vec<String> = self.values.iter().map(|(t, v)| format!("{t}: {v}")).collect();
        write!(f, "{}: {}", self.path, values.join("; "))
    }
}

/// The model with every instance-specific value replaced: ids by names, the run id by
/// `<run>`, account ids in ARNs by `<account>`, the creation-time tag dropped. Arrays
/// are sorted, since no emulator promises an order.
pub fn normalise(observed: &Observed, bindings: &Bindings, run_id: &RunId) -> Value {
    let mut names = bound_names(bindings);
    let mut value = serde_json::to_value(observed).expect("the observed model serialises");
    name_the_rest(&value, &mut names);
    rewrite(&mut value, &names, &run_id.to_string());
    value
}

/// Every pair of models compared, field by field: each path where they do not all agree,
/// with every target's value. Empty when all agree.
pub fn compare(models: &[Model]) -> Vec<Disagreement> {
    let flat: Vec<(String, BTreeMap<String, String>)> = models
        .iter()
        .map(|m| {
            let mut out = BTreeMap::new();
            flatten("", &m.value, &mut out);
            (m.target.clone(), out)
        })
        .collect();
    let paths: BTreeSet<&String> = flat.iter().flat_map(|(_, f)| f.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let values: BTreeMap<String, String> = flat
            .iter()
            .map(|(t, f)| (t.clone(), f.get(path).cloned().unwrap_or_else(|| "(absent)".to_string())))
            .collect();
        if values.values().collect::<BTreeSet<_>>().len() > 1 {
            out.push(Disagreement { path: path.clone(), values });
        }
    }
    out
}

fn bound_names(b: &Bindings) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut put = |id: &Option<String>, name: String| {
        if let Some(id) = id {
            names.insert(id.clone(), name);
        }
    };
    put(&b.vpc_id, "vpc".into());
    put(&b.internet_gateway_id, "igw".into());
    put(&b.flow_log_id, "fl:flow-log".into());
    for (prefix, map) in [
        ("subnet", &b.zones),
        ("nacl", &b.nacls),
        ("sg", &b.security_groups),
        ("rtb", &b.route_tables),
        ("nat", &b.nat_gateways),
        ("eipalloc", &b.elastic_ips),
    ] {
        for (logical, id) in map {
            names.insert(id.clone(), format!("{prefix}:{logical}"));
        }
    }
    names
}

/// Names for the resources the build did not bind (the VPC's defaults, associations): by
/// their role, their `Name` tag, or else their kind alone.
fn name_the_rest(value: &Value, names: &mut BTreeMap<String, String>) {
    let Value::Object(top) = value else { return };
    for (list, kind) in [
        ("nacls", "nacl"),
        ("security_groups", "sg"),
        ("route_tables", "rtb"),
        ("internet_gateways", "igw"),
        ("nat_gateways", "nat"),
        ("vpc_endpoints", "vpce"),
        ("peering_connections", "pcx"),
        ("network_interfaces", "eni"),
        ("flow_logs", "fl"),
    ] {
        for item in top.get(list).and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = item.get("id").and_then(Value::as_str) else { continue };
            if names.contains_key(id) {
                continue;
            }
            let tag = item.get("tags").and_then(|t| t.get("Name")).and_then(Value::as_str);
            // An interface by what it is and where: the subnet is a bound name by now.
            let subnet =
                item.get("subnet_id").and_then(Value::as_str).map(|s| names.get(s).cloned().unwrap_or_default());
            let name = if kind == "eni" {
                let kind_of = item.get("interface_type").and_then(Value::as_str).unwrap_or("interface");
                let mut name = format!("eni:{kind_of}@{}", subnet.unwrap_or_default());
                let base = name.clone();
                let mut n = 1;
                while names.values().any(|v| v == &name) {
                    n += 1;
                    name = format!("{base}#{n}");
                }
                name
            } else if item.get("is_default").and_then(Value::as_bool) == Some(true) {
                format!("{kind}:(default)")
            } else if item.get("is_main").and_then(Value::as_bool) == Some(true) {
                format!("{kind}:(main)")
            } else if kind == "sg" && item.get("name").and_then(Value::as_str) == Some("default") {
                "sg:(default)".to_string()
            } else if let Some(tag) = tag {
                format!("{kind}:{tag}")
            } else {
                format!("{kind}:?")
            };
            names.insert(id.to_string(), name);
        }
    }
}

/// Fields whose values the emulator picks from a pool, as AWS does: only whether one
/// was assigned is compared.
const ASSIGNED: [&str; 2] = ["private_ip", "public_ips"];

fn rewrite(value: &mut Value, names: &BTreeMap<String, String>, run: &str) {
    match value {
        Value::Object(map) if ASSIGNED.iter().any(|k| map.contains_key(*k)) => {
            for k in ASSIGNED {
                match map.get_mut(k) {
                    Some(Value::String(s)) => *s = "<assigned>".into(),
                    Some(Value::Array(items)) => items.iter_mut().for_each(|i| *i = Value::String("<assigned>".into())),
                    _ => {}
                }
            }
            let keys: Vec<String> = map.keys().filter(|k| !ASSIGNED.contains(&k.as_str())).cloned().collect();
            for k in keys {
                rewrite(map.get_mut(&k).expect("key listed"), names, run);
            }
            map.remove(TAG_CREATED_AT);
        }
        Value::String(s) => *s = rewrite_text(s, names, run),
        Value::Array(items) => {
            for item in items.iter_mut() {
                rewrite(item, names, run);
            }
            items.sort_by_key(|v| v.to_string());
        }
        Value::Object(map) => {
            // The creation time is the one tag that differs by design.
            map.remove(TAG_CREATED_AT);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let mut v = map.remove(&k).expect("key listed");
                rewrite(&mut v, names, run);
                map.insert(rewrite_text(&k, names, run), v);
            }
        }
        _ => {}
    }
}

/// Ids (whole or inside ARNs and descriptions) by name, the run id by `<run>`, and a
/// 12-digit account in an ARN by `<account>`.
fn rewrite_text(s: &str, names: &BTreeMap<String, String>, run: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        // An id starts at a word boundary: the previous character is not part of a word.
        let at_boundary = out.chars().last().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'));
        if at_boundary && let Some((id, len)) = id_at(rest) {
            out.push_str(names.get(id).map(String::as_str).unwrap_or_else(|| id.split('-').next().unwrap_or(id)));
            if !names.contains_key(id) {
                out.push_str(":?");
            }
            rest = &rest[len..];
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let out = if run.is_empty() { out } else { out.replace(run, "<run>") };
    account_out(&out)
}

/// The EC2 id at the start of `s` (prefix, `-`, 8 to 17 hex digits, then no more word
/// characters), and its length.
fn id_at(s: &str) -> Option<(&str, usize)> {
    for prefix in ID_PREFIXES {
        let Some(tail) = s.strip_prefix(prefix).and_then(|t| t.strip_prefix('-')) else { continue };
        let hex = tail.chars().take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()).count();
        let next = tail[hex..].chars().next();
        if (8..=17).contains(&hex) && next.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            let len = prefix.len() + 1 + hex;
            return Some((&s[..len], len));
        }
    }
    None
}

/// `arn:aws:iam::123456789012:role/x` → `arn:aws:iam::<account>:role/x`, and a bare
/// 12-digit string (a policy's `aws:SourceAccount`) → `<account>`.
fn account_out(s: &str) -> String {
    let account = |p: &str| p.len() == 12 && p.chars().all(|c| c.is_ascii_digit());
    if account(s) {
        return "<account>".into();
    }
    if !s.contains("arn:") {
        return s.to_string();
    }
    let parts: Vec<&str> = s.split(':').collect();
    parts.iter().map(|p| if account(p) { "<account>" } else { p }).collect::<Vec<_>>().join(":")
}

/// Path → value. Arrays of objects with an `id` or `name` are keyed by it; other arrays
/// are sets, each member its own path (`…[{json}]` → `present`).
fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, v, out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.insert(path.to_string(), "[]".into());
            }
            for item in items {
                let key = item.get("id").or_else(|| item.get("name")).and_then(Value::as_str);
                match key {
                    Some(k) => flatten(&format!("{path}[{k}]"), item, out),
                    None => {
                        out.insert(format!("{path}[{item}]"), "present".into());
                    }
                }
            }
        }
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_names_and_unknown_ids_their_kind() {
        let names: BTreeMap<String, String> =
            [("subnet-0123456789abcdef0".to_string(), "subnet:web".to_string())].into_iter().collect();
        assert_eq!(rewrite_text("subnet-0123456789abcdef0", &names, ""), "subnet:web");
        assert_eq!(rewrite_text("aclassoc-1a2b3c4d", &names, ""), "aclassoc:?");
        // Not an id: a word that merely starts like one, or too few digits.
        assert_eq!(rewrite_text("subnet-web", &names, ""), "subnet-web");
        assert_eq!(rewrite_text("my-vpc-0123456789", &names, ""), "my-vpc-0123456789");
        assert_eq!(
            rewrite_text("arn:aws:iam::123456789012:role/flow-ms-abc", &names, "ms-abc"),
            "arn:aws:iam::<account>:role/flow-<run>"
        );
    }

    /// The checks' fixture deployment (ids such as `subnet-web`) as one emulator would
    /// answer it: every id made an EC2-style one (`subnet-` and 17 hex digits) from
    /// `salt`, the account and the run id its own.
    fn as_emulator(salt: u64, account: &str, run: &RunId) -> (Observed, Bindings) {
        use crate::checks::fixtures::{ACCOUNT, RUN, deployed, recipe};
        let (o, b) = deployed(&recipe());
        let mut ids = BTreeMap::new();
        let mut o = serde_json::to_value(&o).unwrap();
        let mut b = serde_json::to_value(&b).unwrap();
        fn walk(v: &mut Value, f: &mut impl FnMut(&str) -> Option<String>) {
            match v {
                Value::String(s) => {
                    if let Some(new) = f(s) {
                        *s = new;
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
                Value::Object(m) => m.values_mut().for_each(|x| walk(x, f)),
                _ => {}
            }
        }
        let mut rename = |s: &str| -> Option<String> {
            let (prefix, rest) = s.split_once('-')?;
            if !ID_PREFIXES.contains(&prefix) || rest.contains(':') || id_at(s).is_some() {
                return s
                    .contains(RUN)
                    .then(|| s.replace(RUN, &format!("-{run}")))
                    .map(|s| s.replace(ACCOUNT, account));
            }
            let n = ids.len() as u64 + 1;
            // Spread like real ids (no run of twelve zeros to pass for the account).
            let id = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            Some(ids.entry(s.to_string()).or_insert_with(|| format!("{prefix}-0{id:016x}")).clone())
        };
        walk(&mut o, &mut rename);
        walk(&mut b, &mut rename);
        let mut text = o.to_string();
        text = text.replace(RUN, &format!("-{run}")).replace(ACCOUNT, account);
        (serde_json::from_str(&text).unwrap(), serde_json::from_value(b).unwrap())
    }

    #[test]
    fn the_same_deployment_under_other_ids_account_and_run_is_the_same_model() {
        let (run_a, run_b) = (RunId::generate(), RunId::generate());
        let (oa, ba) = as_emulator(1, "000000000000", &run_a);
        let (ob, bb) = as_emulator(99, "123456789012", &run_b);
        assert_ne!(oa, ob, "the two answers differ before normalising");
        let a = normalise(&oa, &ba, &run_a);
        let b = normalise(&ob, &bb, &run_b);
        assert_eq!(compare(&[model("a", a.clone()), model("b", b)]), vec![]);
        // Bound ids became the build's logical names.
        assert!(a["nacls"].as_array().unwrap().iter().any(|n| n["id"] == "nacl:web"), "{}", a["nacls"]);
        assert!(!a.to_string().contains(&run_a.to_string()), "the run id is left in {a}");

        // One NACL entry changed on one emulator: exactly that entry, present on one side
        // and absent on the other, is the disagreement.
        let (mut oc, bc) = as_emulator(5, "000000000000", &run_a);
        let web = bc.nacls["web"].clone();
        let nacl = oc.nacls.iter_mut().find(|n| n.id == web).unwrap();
        nacl.entries[0].rule_number += 1;
        let found = compare(&[model("a", normalise(&oa, &ba, &run_a)), model("c", normalise(&oc, &bc, &run_a))]);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found.iter().all(|d| d.path.starts_with("nacls[nacl:web].entries[")), "{found:#?}");
        let sides: BTreeSet<(String, String)> =
            found.iter().map(|d| (d.values["a"].clone(), d.values["c"].clone())).collect();
        assert_eq!(
            sides,
            [("(absent)".to_string(), "present".to_string()), ("present".to_string(), "(absent)".to_string())]
                .into_iter()
                .collect()
        );
    }

    fn model(target: &str, v: Value) -> Model {
        Model { target: target.into(), value: v }
    }

    #[test]
    fn models_that_agree_have_no_disagreement_and_order_does_not_matter() {
        let mut a = serde_json::json!({"nacls": [{"id": "nacl:web", "entries": [1, 2]}]});
        let mut b = serde_json::json!({"nacls": [{"id": "nacl:web", "entries": [2, 1]}]});
        rewrite(&mut a, &BTreeMap::new(), "");
        rewrite(&mut b, &BTreeMap::new(), "");
        assert_eq!(compare(&[model("moto", a), model("localemu", b)]), vec![]);
    }

    #[test]
    fn a_missing_entry_and_a_changed_field_are_each_named_with_every_targets_value() {
        let a = serde_json::json!({"nacls": [{"id": "nacl:web", "entries": [{"rule": 100}], "is_default": false}]});
        let b = serde_json::json!({"nacls": [{"id": "nacl:web", "entries": [], "is_default": true}]});
        let found = compare(&[model("moto", a), model("localemu", b)]);
        let paths: Vec<(&str, &str, &str)> =
            found.iter().map(|d| (d.path.as_str(), d.values["moto"].as_str(), d.values["localemu"].as_str())).collect();
        assert_eq!(
            paths,
            [
                ("nacls[nacl:web].entries", "(absent)", "[]"),
                ("nacls[nacl:web].entries[{\"rule\":100}]", "present", "(absent)"),
                ("nacls[nacl:web].is_default", "false", "true"),
            ]
        );
    }
}
