//! The topology picture, judged as a reader would: the Mermaid graph and the HTML
//! picture show the same nodes, clusters, edges and labels; and the HTML page, rendered
//! by headless Chromium at 1024, 1300 and 1920 px, has no text on another text, a box
//! or an arrow, and nothing past the viewport's width, for every built-in scenario and
//! a 20-zone spec. Chromium measures with its own geometry (`picture_check.js`, run in
//! a page that frames each report; the reports themselves carry no script).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use microseg_harness::plan::Plan;
use microseg_harness::reach::{self, Reachability};
use microseg_harness::spec::{self, SpecSource};
use microseg_harness::topology::{self, Topology, synthetic};

/// Every built-in scenario, as designed, and the 20-zone spec.
fn pictures() -> Vec<(String, Topology, Reachability)> {
    let mut specs: Vec<(String, spec::Spec, SpecSource)> = spec::BUILTIN_SCENARIOS
        .iter()
        .map(|(name, _)| {
            let (s, src) = spec::load(name).unwrap();
            (name.to_string(), s, src)
        })
        .collect();
    let (s, src) = spec::parse(SpecSource { path: "synthetic-20.toml".into(), text: synthetic::spec(20) }).unwrap();
    specs.push(("synthetic-20".into(), s, src));
    specs
        .into_iter()
        .map(|(name, s, src)| {
            let plan = Plan::from_spec(&s, &src).unwrap();
            let (observed, bindings) = reach::designed(&plan);
            let r = reach::analyse(&plan, &observed, &bindings);
            (name, topology::topology(&plan, &observed, &bindings), r)
        })
        .collect()
}

/// What a picture shows: nodes (id → cluster, lines), clusters (id → parent, title),
/// and edges (from, to, kind, label, unintended), sorted.
#[derive(Debug, Default, PartialEq)]
struct Shown {
    nodes: BTreeMap<String, (Option<String>, Vec<String>)>,
    clusters: BTreeMap<String, (Option<String>, Vec<String>)>,
    edges: Vec<(String, String, String, Option<String>, bool)>,
}

/// Reads the Mermaid graph back: `subgraph ID["a<br/>b"]` … `end`, `ID["a<br/>b"]`,
/// `ID((a))`, the four arrow forms, and `linkStyle N stroke:#d00` for red edges.
fn read_mermaid(m: &str) -> Shown {
    let mut shown = Shown::default();
    let mut stack: Vec<String> = Vec::new();
    let mut red = Vec::new();
    let lines_of = |s: &str| s.split("<br/>").map(str::to_string).collect::<Vec<_>>();
    for line in m.lines().skip(1).map(str::trim) {
        if let Some(rest) = line.strip_prefix("subgraph ") {
            let (id, title) = rest.split_once("[\"").unwrap();
            let title = title.strip_suffix("\"]").unwrap();
            shown.clusters.insert(id.into(), (stack.last().cloned(), lines_of(title)));
            stack.push(id.into());
        } else if line == "end" {
            stack.pop().unwrap();
        } else if let Some(rest) = line.strip_prefix("linkStyle ") {
            assert!(rest.contains("stroke:#d00"), "{line}");
            red.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
        } else if line.starts_with("style ") {
        } else if let Some((from, rest)) = line.split_once(" -. \"") {
            let (label, to) = rest.split_once("\" .-> ").unwrap();
            shown.edges.push((from.into(), to.into(), "reference".into(), Some(label.into()), false));
        } else if let Some((from, rest)) = line.split_once(" ==>|\"") {
            let (label, to) = rest.split_once("\"| ").unwrap();
            shown.edges.push((from.into(), to.into(), "traffic".into(), Some(label.into()), false));
        } else if let Some((from, to)) = line.split_once(" --> ") {
            shown.edges.push((from.into(), to.into(), "route".into(), None, false));
        } else if let Some((from, to)) = line.split_once(" --- ") {
            shown.edges.push((from.into(), to.into(), "link".into(), None, false));
        } else if let Some((id, text)) = line.split_once("[\"") {
            shown.nodes.insert(id.into(), (stack.last().cloned(), lines_of(text.strip_suffix("\"]").unwrap())));
        } else if let Some((id, text)) = line.split_once("((") {
            shown.nodes.insert(id.into(), (stack.last().cloned(), lines_of(text.strip_suffix("))").unwrap())));
        } else {
            panic!("a Mermaid line this reader does not know: {line}");
        }
    }
    for i in red {
        shown.edges[i].4 = true;
    }
    shown.edges.sort();
    shown
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// Mermaid's label escaping (quotes and angle brackets would end its labels), applied
/// to the HTML's text so the two compare.
fn as_mermaid(s: &str) -> String {
    s.replace('"', "'").replace('<', "‹").replace('>', "›")
}

/// Reads the SVG picture back from the page: `g.node`, `g.cluster` and `g.edge`
/// elements, their data attributes and their text.
fn read_svg(page: &str) -> Shown {
    let start = page.find("<svg class=\"topology\"").expect("the page has the topology");
    let svg = &page[start..start + page[start..].find("</svg>").unwrap()];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(unescape(&tag[at..at + tag[at..].find('"')?]))
    };
    let mut shown = Shown::default();
    for group in svg.split("<g class=\"").skip(1) {
        let tag = &group[..group.find('>').unwrap()];
        let body = &group[..group.find("</g>").unwrap()];
        let texts: Vec<String> = body
            .split("<text ")
            .skip(1)
            .map(|t| as_mermaid(&unescape(&t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()])))
            .collect();
        let kind = &tag[..tag.find('"').unwrap()];
        match kind {
            "node" => {
                shown.nodes.insert(attr(tag, "data-id").unwrap(), (attr(tag, "data-cluster"), texts));
            }
            "cluster" => {
                shown.clusters.insert(attr(tag, "data-id").unwrap(), (attr(tag, "data-parent"), texts));
            }
            "edge" => {
                let label = attr(tag, "data-label").map(|s| as_mermaid(&s));
                // The label as drawn, line by line, is the whole label.
                let drawn = texts.concat().replace(' ', "");
                assert_eq!(drawn, label.clone().unwrap_or_default().replace(' ', ""), "edge {tag}");
                shown.edges.push((
                    attr(tag, "data-from").unwrap(),
                    attr(tag, "data-to").unwrap(),
                    attr(tag, "data-kind").unwrap(),
                    label,
                    attr(tag, "data-unintended").unwrap() == "true",
                ));
            }
            other => panic!("unknown group {other}"),
        }
    }
    shown.edges.sort();
    shown
}

#[test]
fn mermaid_and_html_show_the_same_nodes_clusters_edges_and_labels() {
    for (name, t, r) in pictures() {
        let m = read_mermaid(&topology::mermaid(&t, Some(&r)));
        let h = read_svg(&topology::html(&name, &t, Some(&r), &[]));
        assert_eq!(m.clusters, h.clusters, "{name}: clusters");
        assert_eq!(m.nodes, h.nodes, "{name}: nodes");
        assert_eq!(m.edges, h.edges, "{name}: edges");
        // Not two empty pictures: a zone cluster each (and the VPC), a NACL and the
        // groups in each zone, and edges of every kind the scenario has.
        assert_eq!(m.clusters.len(), t.zones.len() + 1, "{name}");
        let groups: usize = t.zones.iter().map(|z| z.groups.len()).sum();
        assert!(m.nodes.len() > t.zones.len() + groups, "{name}: {:?}", m.nodes.keys());
        let kinds: std::collections::BTreeSet<&str> = m.edges.iter().map(|e| e.2.as_str()).collect();
        assert!(kinds.contains("traffic") && kinds.contains("reference"), "{name}: {kinds:?}");
    }
}

/// Pixel widths the picture is judged at.
const WIDTHS: [u32; 3] = [1024, 1300, 1920];

/// Frames each report page in one document at `width` px (800 px tall, so the page
/// scrolls and its scrollbar takes its width as on a screen), runs the check, and
/// returns its verdict per page.
fn judge(browser: &Path, dir: &Path, width: u32, pages: &[(String, String)]) -> serde_json::Value {
    let attr = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;");
    let mut doc = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"margin:0\">\n");
    for (name, page) in pages {
        doc.push_str(&format!(
            "<iframe data-name=\"{name}\" style=\"display:block;border:0;width:{width}px;height:800px\" srcdoc=\"{}\">\
</iframe>\n",
            attr(page)
        ));
    }
    doc.push_str("<pre id=\"verdict\"></pre>\n<script>\n");
    doc.push_str(include_str!("picture_check.js"));
    doc.push_str("</script></body></html>\n");
    let file = dir.join(format!("judge-{width}.html"));
    std::fs::write(&file, doc).unwrap();
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000"])
        .arg(format!("--window-size={},900", width + 40))
        .arg(format!("--user-data-dir={}", dir.join(format!("profile-{width}")).display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let verdict = dom
        .split("<pre id=\"verdict\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no verdict at {width} px: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(&unescape(verdict)).unwrap()
}

#[test]
fn the_html_picture_reads_cleanly_at_1024_1300_and_1920_px() {
    let test = "the_html_picture_reads_cleanly_at_1024_1300_and_1920_px";
    let Some(browser) = crate::html::chromium() else {
        crate::skip::skip(
            test,
            "no chromium on PATH (Debian: apt-get install chromium); the page cannot be rendered here",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<(String, String)> = pictures()
        .into_iter()
        .map(|(name, t, r)| {
            let page = topology::html(&format!("microseg · {name} as designed"), &t, Some(&r), &[]);
            (name, page)
        })
        .collect();
    // A page the check must fault: an arrow's label moved onto the first node's first
    // line, and a paragraph wider than any screen.
    let recipe = &pages.iter().find(|(n, _)| n == "recipe").unwrap().1;
    let node_text = recipe.split("<g class=\"node\"").nth(1).unwrap();
    let spot = |s: &str| {
        let t = &s[s.find("<text x=\"").unwrap()..];
        t[..t.find(" font-size").unwrap()].to_string()
    };
    let label_text = recipe.split("<g class=\"edge\"").find(|e| e.contains("<text ")).unwrap();
    let sabotaged = recipe
        .replacen(&spot(label_text), &spot(node_text), 1)
        .replace("<h2>Topology</h2>", "<h2>Topology</h2><p style=\"width:3000px\">wide</p>");
    assert_ne!(&sabotaged, recipe);
    let mut pages = pages;
    pages.push(("sabotaged".into(), sabotaged));

    let mut failures = Vec::new();
    for width in WIDTHS {
        let verdict = judge(&browser, dir.path(), width, &pages);
        let faults = verdict["sabotaged"]["problems"].to_string();
        assert!(faults.contains("lies on node") && faults.contains("overlaps"), "at {width} px: {faults}");
        assert!(faults.contains("scrolls sideways") && faults.contains("<p> reaches"), "at {width} px: {faults}");
        for (name, _) in pages.iter().filter(|(n, _)| n != "sabotaged") {
            let v = &verdict[name.as_str()];
            let count = |k: &str| v[k].as_u64().unwrap_or(0);
            // The check saw the picture: its texts, boxes and arrows.
            assert!(count("texts") > 20 && count("boxes") > 5 && count("arrows") > 5, "{name} at {width} px: {v}");
            assert!(count("segments") > 3 * count("arrows"), "{name} at {width} px: {v}");
            for p in v["problems"].as_array().unwrap() {
                failures.push(format!("{name} at {width} px: {}", p.as_str().unwrap()));
            }
        }
        eprintln!(
            "{width} px: {}",
            pages
                .iter()
                .filter(|(n, _)| n != "sabotaged")
                .map(|(n, _)| format!("{n} {} texts {} arrows", verdict[n]["texts"], verdict[n]["arrows"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
